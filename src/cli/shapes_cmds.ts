/**
 * The shapes world (../shared/docs/shapes-world.md) on the command line:
 * - `dcvg data shapes`: a training or held-out data set (lossless .mkv videos, a caption sidecar each, manifest.json),
 *   in the layout `dcvg train-ae` and `dcvg latents` read; resumable;
 * - `dcvg score shapes`: the semantic score of videos against their captions, training and held-out combinations apart;
 * - `dcvg shapes render` / `dcvg shapes score`: several videos in one file, and one video against one caption.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { assertOutputsSafe, sweepStaleTemps, writeFileAtomic } from '../io/files.js';
import { openVideoWriter, readFrameBytes, writeVideo } from '../io/video.js';
import {
  SHAPES_ATTRIBUTES,
  SHAPES_FRAMES,
  SHAPES_MANIFEST,
  SHAPES_SIZE,
  isHeldOut,
  maskAreaVariance,
  parseShapesCaption,
  randomShapesVideos,
  renderShapes,
  scoreShapes,
  shapesAccuracy,
  shapesCaption,
  shapesIndices,
  shapesScoreSummary,
  type ShapesGroupScore,
  type ShapesReading,
  type ShapesSplit,
  type ShapesVideo,
} from '../metrics/shapes_world.js';
import { clipCaption, readCaptionsTsv, readCaptionsTsvFile } from '../adapt/latents.js';
import { listMedia } from '../train/data.js';
import { ValueError } from '../errors.js';
import { Rng } from '../tensor/random.js';
import { Progress } from './progress.js';
import { parse, parseValues, type Out } from './common.js';

/** The world's nominal frame rate. */
const FPS = 8;

const CAPTION_FORM = '"a {size} {color} {shape} moving {direction} on a {background} background"';

function intFlag(v: string | boolean | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new ValueError(`--${name} must be an integer in [${min}, ${max}], got "${String(v)}"`);
  return n;
}

/**
 * Runs fn on every item, `n` at a time: each video is an ffmpeg process whose start-up dominates, so a few overlap.
 * The first error stops new work and is thrown once the running ones end.
 */
async function inPool<T>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown = null;
  const worker = async () => {
    while (failed === null && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failed !== null) throw failed;
}

/** ffmpeg processes at once in data shapes / score shapes. */
const POOL = 4;

/** A video of the world from a file: its frames, refused unless 128x128. */
async function readWorldVideo(path: string, what: string): Promise<{ data: Uint8Array; frames: number }> {
  const clip = await readFrameBytes(path, { what });
  if (clip.width !== SHAPES_SIZE || clip.height !== SHAPES_SIZE) throw new ValueError(`${path}: shapes-world videos are ${SHAPES_SIZE}x${SHAPES_SIZE}, got ${clip.width}x${clip.height}`);
  return clip;
}

async function render(args: string[], out: Out): Promise<number> {
  const v = parseValues(args, { output: { type: 'string' }, seed: { type: 'string' }, count: { type: 'string' }, 'held-out': { type: 'string' }, captions: { type: 'string' }, json: { type: 'boolean' } }, 'shapes render', false);
  const output = v.output as string | undefined;
  if (!output) throw new ValueError('shapes render needs --output <video | dir/ for PNGs>');
  const seed = intFlag(v.seed, 'seed', 0, 0, 2 ** 31 - 1);
  const count = intFlag(v.count, 'count', 1, 1, 10_000);
  const held = (v['held-out'] as string | undefined) ?? 'exclude';
  if (!['exclude', 'include', 'only'].includes(held)) throw new ValueError(`--held-out must be exclude, include or only, got "${held}"`);
  const captionsPath = v.captions as string | undefined;
  assertOutputsSafe({ '--output': output, '--captions': captionsPath }, {}, { directoryOk: ['--output'] });
  const split: ShapesSplit = held === 'exclude' ? 'train' : held === 'only' ? 'held-out' : 'all';
  const videos = randomShapesVideos(new Rng(seed), count, split);
  // The clips follow one another in one video.
  const w = await openVideoWriter(output, { width: SHAPES_SIZE, height: SHAPES_SIZE, fps: FPS });
  try {
    for (const s of videos) await w.write(renderShapes(s));
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  }
  const list = videos.map((s, i) => ({ caption: shapesCaption(s), start: s.start.map((x) => +x.toFixed(3)), frames: [i * SHAPES_FRAMES, (i + 1) * SHAPES_FRAMES], held_out: isHeldOut(s) }));
  if (captionsPath) writeFileAtomic(captionsPath, JSON.stringify({ seed, fps: FPS, frames_per_video: SHAPES_FRAMES, videos: list }, null, 1) + '\n');
  if (v.json) out(JSON.stringify({ output, seed, videos: list }, null, 1) + '\n');
  else out(`rendered ${count} shapes-world video${count > 1 ? 's' : ''} (${count * SHAPES_FRAMES} frames, ${SHAPES_SIZE}x${SHAPES_SIZE}) -> ${output}\n` + list.map((l) => `  ${l.caption}\n`).join(''));
  return 0;
}

async function score(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, { caption: { type: 'string' }, json: { type: 'boolean' } }, 'shapes score');
  const { caption, json } = values;
  const input = positionals[0];
  if (!input || positionals.length > 1) throw new ValueError('shapes score needs exactly one video (frames of 128x128)');
  if (!existsSync(input)) throw new ValueError(`input not found: ${input}`);
  const truth = caption === undefined ? null : parseShapesCaption(String(caption));
  if (caption !== undefined && !truth) throw new ValueError(`--caption must read ${CAPTION_FORM}, got "${String(caption)}"`);
  const clip = await readWorldVideo(input, 'shapes score');
  const reading = scoreShapes(clip.data, clip.frames);
  const acc = truth ? shapesAccuracy(reading, truth) : null;
  if (json) out(JSON.stringify({ input, reading, ...(acc ? { caption, ...acc } : {}) }, null, 1) + '\n');
  else {
    const said = (['size', 'color', 'shape', 'direction', 'background'] as const).map((k) => reading[k] ?? '?');
    out(`${input}: reads as "a ${said[0]} ${said[1]} ${said[2]} moving ${said[3]} on a ${said[4]} background" (object in ${reading.framesWithObject}/${clip.frames} frames)\n`);
    if (acc) out(`attribute accuracy ${(acc.accuracy * 100).toFixed(0)}% (${acc.allCorrect ? 'all correct' : 'not all correct'})\n`);
  }
  return 0;
}

export async function cmdShapes(args: string[], out: Out): Promise<number> {
  const [what, ...rest] = args;
  if (what === 'render') return render(rest, out);
  if (what === 'score') return score(rest, out);
  throw new ValueError(`shapes: unknown subcommand "${what ?? ''}" (render, score)`);
}

// ---------------------------------------------------------------------------------------------------------------
// dcvg data shapes

// the data set's description (SHAPES_MANIFEST) is written before any video (complete: false) and again when every
// file exists

interface ManifestVideo {
  file: string;
  caption: string;
  color: string;
  shape: string;
  size: string;
  direction: string;
  background: string;
  indices: ReturnType<typeof shapesIndices>;
  /** the object's centre at frame 0 (pixels; full precision, so the render is reproducible) */
  start: [number, number];
  held_out: boolean;
}

interface ShapesManifest {
  world: 'shapes';
  seed: number;
  split: 'train' | 'held-out';
  count: number;
  frames: number;
  size: number;
  fps: number;
  format: string;
  complete: boolean;
  videos: ManifestVideo[];
}

function manifestVideo(v: ShapesVideo, file: string): ManifestVideo {
  const { color, shape, size, direction, background } = v;
  return { file, caption: shapesCaption(v), color, shape, size, direction, background, indices: shapesIndices(v), start: [v.start[0], v.start[1]], held_out: isHeldOut(v) };
}

/** The manifest already in `dir`, checked against this request; null when there is none. */
function existingManifest(dir: string, want: ShapesManifest): ShapesManifest | null {
  const p = join(dir, SHAPES_MANIFEST);
  if (!existsSync(p)) {
    const other = readdirSync(dir).filter((n) => !n.startsWith('.'));
    if (other.length) throw new ValueError(`${dir} is not empty and has no ${SHAPES_MANIFEST} (it holds ${other.slice(0, 3).join(', ')}${other.length > 3 ? ', ...' : ''}); give a new or empty folder`);
    return null;
  }
  let m: ShapesManifest;
  try {
    m = JSON.parse(readFileSync(p, 'utf8')) as ShapesManifest;
  } catch (e) {
    throw new ValueError(`${p} is not valid JSON (${(e as Error).message})`);
  }
  if (m.world !== 'shapes' || m.seed !== want.seed || m.split !== want.split)
    throw new ValueError(`${dir} holds the ${String(m.split)} split of seed ${String(m.seed)} (${SHAPES_MANIFEST}), not the ${want.split} split of seed ${want.seed}; give another --out`);
  if (!Array.isArray(m.videos) || m.videos.length > want.count)
    throw new ValueError(`${dir} already holds ${Array.isArray(m.videos) ? m.videos.length : '?'} videos of seed ${want.seed}; pass --count >= that, or another --out`);
  for (const [i, v] of m.videos.entries()) {
    const w = want.videos[i]!;
    if (v.file !== w.file || v.caption !== w.caption || v.start?.[0] !== w.start[0] || v.start?.[1] !== w.start[1])
      throw new ValueError(`${join(dir, SHAPES_MANIFEST)} entry ${i} (${String(v.file)}) differs from what seed ${want.seed} renders now (another version wrote it); give another --out`);
  }
  return m;
}

async function dataShapes(args: string[], out: Out): Promise<number> {
  const v = parseValues(args, { out: { type: 'string' }, count: { type: 'string' }, seed: { type: 'string' }, split: { type: 'string' }, json: { type: 'boolean' } }, 'data shapes', false);
  const outDir = v.out as string | undefined;
  if (!outDir) throw new ValueError('data shapes needs --out <folder>');
  if (v.count === undefined) throw new ValueError('data shapes needs --count N (the number of videos)');
  const count = intFlag(v.count, 'count', 1, 1, 1_000_000);
  const seed = intFlag(v.seed, 'seed', 0, 0, 2 ** 31 - 1);
  const split = (v.split as string | undefined) ?? 'train';
  if (split !== 'train' && split !== 'held-out') throw new ValueError(`--split must be train or held-out, got "${split}"`);
  const dir = resolve(outDir);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new ValueError(`--out ${outDir} exists and is not a folder`);

  const name = (i: number) => `${split}_${String(i).padStart(6, '0')}`;
  const videos = randomShapesVideos(new Rng(seed), count, split);
  const manifest: ShapesManifest = {
    world: 'shapes',
    seed,
    split,
    count,
    frames: SHAPES_FRAMES,
    size: SHAPES_SIZE,
    fps: FPS,
    format: 'mkv (FFV1, lossless RGB) with a caption sidecar <stem>.txt each',
    complete: false,
    videos: videos.map((s, i) => manifestVideo(s, `${name(i)}.mkv`)),
  };
  mkdirSync(dir, { recursive: true });
  sweepStaleTemps(dir);
  existingManifest(dir, manifest);
  const manifestPath = join(dir, SHAPES_MANIFEST);
  writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 1) + '\n');

  // Each video, then its caption, appears whole (written beside and renamed): an existing file is a complete one.
  const bar = new Progress('data shapes', count, 'videos');
  let rendered = 0;
  let done = 0;
  await inPool(videos, POOL, async (s, i) => {
    const e = manifest.videos[i]!;
    const video = join(dir, e.file);
    const txt = join(dir, `${name(i)}.txt`);
    if (!existsSync(video)) {
      await writeVideo(video, renderShapes(s), { width: SHAPES_SIZE, height: SHAPES_SIZE, fps: FPS });
      rendered++;
    }
    if (!existsSync(txt)) writeFileAtomic(txt, e.caption + '\n');
    else if (readFileSync(txt, 'utf8').trim() !== e.caption) throw new ValueError(`${txt} does not hold the caption of ${e.file} ("${e.caption}"); it was changed after writing`);
    bar.update(++done);
  });
  bar.done();
  manifest.complete = true;
  writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 1) + '\n');
  const summary = { out: outDir, seed, split, count, rendered, kept: count - rendered, manifest: manifestPath };
  if (v.json) out(JSON.stringify(summary) + '\n');
  else out(`${count} ${split} video${count === 1 ? '' : 's'} in ${outDir} (${rendered} rendered, ${count - rendered} already there), manifest ${manifestPath}\n`);
  return 0;
}

export async function cmdData(args: string[], out: Out): Promise<number> {
  const [what, ...rest] = args;
  if (what === 'shapes') return dataShapes(rest, out);
  throw new ValueError(`data: unknown data set "${what ?? ''}" (shapes)`);
}

// ---------------------------------------------------------------------------------------------------------------
// dcvg score shapes

/** The video files to score: files as given; a folder's videos (by name), or the folder itself if it is a PNG sequence. */
function scoreInputs(paths: string[]): string[] {
  const files: string[] = [];
  for (const p of paths) {
    if (!existsSync(p)) throw new ValueError(`${p} not found`);
    if (!statSync(p).isDirectory()) {
      files.push(p);
      continue;
    }
    const { videos } = listMedia(p);
    if (videos.length) files.push(...videos.map((n) => join(p, n)));
    else files.push(p); // only images: one video as a PNG sequence
  }
  return files;
}

/** Captions from a --captions file: a data-shapes manifest (or any JSON with videos[].file and caption) or a .tsv. */
function captionsFile(p: string): Map<string, string> {
  if (!existsSync(p)) throw new ValueError(`--captions ${p} not found`);
  if (!p.toLowerCase().endsWith('.json')) return readCaptionsTsvFile(p);
  let j: { videos?: { file?: unknown; caption?: unknown }[] };
  try {
    j = JSON.parse(readFileSync(p, 'utf8')) as typeof j;
  } catch (e) {
    throw new ValueError(`--captions ${p} is not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(j.videos)) throw new ValueError(`--captions ${p}: expected {"videos": [{"file", "caption"}, ...]} (a data shapes manifest)`);
  const m = new Map<string, string>();
  for (const v of j.videos) {
    if (typeof v.file !== 'string' || typeof v.caption !== 'string') throw new ValueError(`--captions ${p}: every entry of "videos" needs a "file" and a "caption" string`);
    m.set(v.file, v.caption);
  }
  return m;
}

export interface ShapesScoredVideo {
  file: string;
  caption: string;
  held_out: boolean;
  reading: ShapesReading;
  accuracy: number;
  all_correct: boolean;
  mask_area_variance: number;
}

const pct = (x: number | null) => (x === null ? '-' : `${x.toFixed(1)}%`);

function scoreTable(groups: Record<'train' | 'held_out' | 'all', ShapesGroupScore>): string {
  const head = ['', 'videos', 'accuracy', 'all-correct', ...SHAPES_ATTRIBUTES, 'mask-area var'];
  const rows = (
    [
      ['training', groups.train],
      ['held-out', groups.held_out],
      ['all', groups.all],
    ] as const
  ).map(([label, g]) => [
    label,
    String(g.videos),
    pct(g.accuracy),
    pct(g.all_correct),
    ...SHAPES_ATTRIBUTES.map((k) => pct(g.per_attribute[k])),
    g.mask_area_variance === null ? '-' : g.mask_area_variance.toFixed(1),
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  return [head, ...rows].map((r) => r.map((x, c) => (c ? x.padStart(widths[c]!) : x.padEnd(widths[c]!))).join('  ') + '\n').join('');
}

async function scoreShapesCmd(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, { captions: { type: 'string' }, json: { type: 'boolean' } }, 'score shapes');
  if (!positionals.length) throw new ValueError('score shapes needs videos or folders of videos (with captions: <stem>.txt, captions.tsv or --captions FILE)');
  const given = values.captions === undefined ? null : captionsFile(values.captions);
  const files = scoreInputs(positionals);
  const tsvs = new Map<string, Map<string, string> | null>();
  const captionOf = (f: string): string => {
    if (given) return given.get(basename(f)) ?? given.get(f) ?? '';
    const d = dirname(f);
    if (!tsvs.has(d)) tsvs.set(d, readCaptionsTsv(d));
    return clipCaption(d, basename(f), tsvs.get(d)!);
  };
  // every caption before any video is decoded
  const jobs = files.map((file) => {
    const caption = captionOf(file);
    if (!caption) throw new ValueError(`no caption for ${file} (a sidecar ${basename(file).replace(/\.[^.]*$/, '')}.txt, captions.tsv in its folder, or --captions FILE)`);
    const truth = parseShapesCaption(caption);
    if (!truth) throw new ValueError(`the caption of ${file} must read ${CAPTION_FORM}, got "${caption}"`);
    return { file, caption, truth };
  });
  const bar = new Progress('score shapes', jobs.length, 'videos');
  const scored: ShapesScoredVideo[] = new Array(jobs.length);
  let done = 0;
  await inPool(jobs, POOL, async (j, i) => {
    const clip = await readWorldVideo(j.file, 'score shapes');
    const reading = scoreShapes(clip.data, clip.frames);
    const acc = shapesAccuracy(reading, j.truth);
    scored[i] = { file: j.file, caption: j.caption, held_out: isHeldOut(j.truth), reading, accuracy: acc.accuracy, all_correct: acc.allCorrect, mask_area_variance: maskAreaVariance(reading) };
    bar.update(++done);
  });
  bar.done();
  const groups = shapesScoreSummary(jobs.map((j, i) => ({ truth: j.truth, reading: scored[i]!.reading })));
  if (values.json) out(JSON.stringify({ ...groups, videos: scored }, null, 1) + '\n');
  else {
    out(`semantic score of ${scored.length} video${scored.length === 1 ? '' : 's'} (mean attribute accuracy; mask-area variance in pixels^2 measures flicker)\n`);
    out(scoreTable(groups));
  }
  return 0;
}

export async function cmdScore(args: string[], out: Out): Promise<number> {
  const [what, ...rest] = args;
  if (what === 'shapes') return scoreShapesCmd(rest, out);
  throw new ValueError(`score: unknown scorer "${what ?? ''}" (shapes)`);
}
