/**
 * The shapes world's data set and scorer (issue #21 item 1): the scorer on rendered truth of both splits and on
 * corrupted videos, the split property of the video lists, `dcvg data shapes` (lossless read-back, caption sidecars,
 * manifest, resume, refusals) and `dcvg score shapes` end to end. The renderer against the shared fixture videos is
 * test/shapes_world.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFrameBytes, writeVideo } from '../src/io/video.js';
import { cmdData, cmdScore } from '../src/cli/shapes_cmds.js';
import { clipCaption, readCaptionsTsv } from '../src/adapt/latents.js';
import { listMedia } from '../src/train/data.js';
import {
  SHAPES_ATTRIBUTES,
  SHAPES_BACKGROUNDS,
  SHAPES_COLORS,
  SHAPES_DIRECTIONS,
  SHAPES_SHAPES,
  isHeldOut,
  maskAreaVariance,
  parseShapesCaption,
  randomShapesVideos,
  renderShapes,
  scoreShapes,
  shapesAccuracy,
  shapesCaption,
  shapesScoreSummary,
  type ShapesAttribute,
  type ShapesVideo,
} from '../src/metrics/shapes_world.js';
import { Rng } from '../src/tensor/random.js';
import { repoRoot } from './helpers.js';

const FRAME = 128 * 128 * 3;

/** The attributes the scorer gets wrong on a video, against the truth. */
function wrongAttributes(frames: Uint8Array, truth: ShapesVideo): ShapesAttribute[] {
  const r = scoreShapes(frames, frames.length / FRAME);
  return SHAPES_ATTRIBUTES.filter((k) => r[k] !== truth[k]);
}

describe('shapes world: the scorer', () => {
  it('reads every attribute of the rendered truth, for many random videos of both splits, with no flicker', () => {
    for (const split of ['train', 'held-out'] as const) {
      const videos = randomShapesVideos(new Rng(split === 'train' ? 11 : 12), 30, split);
      const items = videos.map((v) => ({ truth: v, reading: scoreShapes(renderShapes(v), 16) }));
      for (const [i, x] of items.entries()) {
        assert.deepEqual(shapesAccuracy(x.reading, x.truth), { accuracy: 1, allCorrect: true }, `${shapesCaption(videos[i]!)} read as ${JSON.stringify(x.reading)}`);
        // the object moves by whole pixels, so its anti-aliased mask has the same area in every frame
        assert.equal(maskAreaVariance(x.reading), 0);
        assert.equal(x.reading.maskAreas.length, 16);
      }
      const s = shapesScoreSummary(items);
      const group = split === 'train' ? s.train : s.held_out;
      assert.equal(group.videos, 30);
      assert.equal((split === 'train' ? s.held_out : s.train).videos, 0);
      assert.equal(group.accuracy, 100);
      assert.equal(group.all_correct, 100);
      for (const k of SHAPES_ATTRIBUTES) assert.equal(group.per_attribute[k], 100);
    }
  });

  // Each corruption changes one thing; the scorer must find exactly the attribute(s) it breaks and no other.
  const videos = randomShapesVideos(new Rng(21), 12, 'all');
  const colors = Object.keys(SHAPES_COLORS) as (keyof typeof SHAPES_COLORS)[];

  it('no object (background only): only the background is right', () => {
    for (const v of videos) {
      const bg = SHAPES_BACKGROUNDS[v.background];
      const blank = new Uint8Array(16 * FRAME).map((_, i) => bg[i % 3]!);
      const r = scoreShapes(blank, 16);
      assert.equal(r.framesWithObject, 0);
      assert.deepEqual(wrongAttributes(blank, v), ['color', 'shape', 'size', 'direction']);
      assert.deepEqual(shapesAccuracy(r, v), { accuracy: 0.2, allCorrect: false });
    }
  });

  it('a recoloured object: the colour is wrong, the rest right', () => {
    for (const [i, v] of videos.entries()) {
      const other = colors[(colors.indexOf(v.color) + 1 + (i % (colors.length - 1))) % colors.length]!;
      assert.notEqual(other, v.color);
      assert.deepEqual(wrongAttributes(renderShapes({ ...v, color: other }), v), ['color'], `${shapesCaption(v)} recoloured ${other}`);
    }
  });

  it('another shape: the shape is wrong, the rest right', () => {
    for (const [i, v] of videos.entries()) {
      const other = SHAPES_SHAPES[(SHAPES_SHAPES.indexOf(v.shape) + 1 + (i % 2)) % 3]!;
      assert.deepEqual(wrongAttributes(renderShapes({ ...v, shape: other }), v), ['shape'], `${shapesCaption(v)} drawn as a ${other}`);
    }
  });

  it('a static object (frame 0 repeated): the direction is wrong, the rest right, and no flicker', () => {
    for (const v of videos) {
      const first = renderShapes(v, 1);
      const still = new Uint8Array(16 * FRAME);
      for (let f = 0; f < 16; f++) still.set(first, f * FRAME);
      const r = scoreShapes(still, 16);
      assert.equal(r.direction, null);
      assert.deepEqual(wrongAttributes(still, v), ['direction']);
      assert.equal(maskAreaVariance(r), 0);
    }
  });

  it('frames in reverse order: the opposite direction is read', () => {
    const opposite = { left: 'right', right: 'left', up: 'down', down: 'up' } as const;
    for (const v of videos) {
      const fwd = renderShapes(v);
      const rev = new Uint8Array(fwd.length);
      for (let f = 0; f < 16; f++) rev.set(fwd.subarray(f * FRAME, (f + 1) * FRAME), (15 - f) * FRAME);
      assert.equal(scoreShapes(rev, 16).direction, opposite[v.direction]);
      assert.deepEqual(wrongAttributes(rev, v), ['direction']);
    }
  });

  it('an object that vanishes in every other frame flickers: the mask-area variance is (area/2)^2', () => {
    const v = videos[0]!;
    const frames = renderShapes(v);
    const bg = SHAPES_BACKGROUNDS[v.background];
    for (let f = 1; f < 16; f += 2) for (let p = 0; p < FRAME; p++) frames[f * FRAME + p] = bg[p % 3]!;
    const r = scoreShapes(frames, 16);
    const area = scoreShapes(renderShapes(v), 16).maskAreas[0]!;
    // 8 frames of area a and 8 of 0: mean a/2, every deviation a/2
    assert.equal(maskAreaVariance(r), (area / 2) ** 2);
  });

  it('captions read back into their attributes, and nothing else parses', () => {
    for (const v of videos) assert.deepEqual(parseShapesCaption(shapesCaption(v)), { size: v.size, color: v.color, shape: v.shape, direction: v.direction, background: v.background });
    for (const bad of ['a purple blob', 'a small red circle moving left on a black background.', 'a huge red circle moving left on a black background', ''])
      assert.equal(parseShapesCaption(bad), null, bad);
  });
});

describe('shapes world: the data splits', () => {
  it('train never holds a held-out triple and held-out only those; both cover all their triples; longer lists extend shorter ones', () => {
    const key = (v: ShapesVideo) => `${v.color} ${v.shape} ${v.direction}`;
    const train = randomShapesVideos(new Rng(5), 2000, 'train');
    const held = randomShapesVideos(new Rng(5), 300, 'held-out');
    assert.ok(train.every((v) => !isHeldOut(v)));
    assert.ok(held.every((v) => isHeldOut(v)));
    // 7 x 3 x 4 = 84 triples, 12 held out
    assert.equal(new Set(train.map(key)).size, 72);
    assert.equal(new Set(held.map(key)).size, 12);
    const all = randomShapesVideos(new Rng(5), 2000, 'all');
    assert.equal(new Set(all.map(key)).size, 84);
    // every size, background, direction appears on both sides
    for (const list of [train, held]) {
      assert.equal(new Set(list.map((v) => v.size)).size, 2);
      assert.equal(new Set(list.map((v) => v.background)).size, 2);
      assert.equal(new Set(list.map((v) => v.direction)).size, Object.keys(SHAPES_DIRECTIONS).length);
    }
    assert.deepEqual(randomShapesVideos(new Rng(5), 50, 'held-out'), held.slice(0, 50));
  });
});

const noFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 ? false : 'ffmpeg not installed';

/** A CLI command run in this process: exit code and stdout (errors are thrown, as main() would print them). */
async function run(cmd: typeof cmdData, args: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = '';
  const code = await cmd(args, (s) => void (stdout += s));
  return { code, stdout };
}

interface Manifest {
  seed: number;
  split: string;
  count: number;
  complete: boolean;
  videos: { file: string; caption: string; color: string; shape: string; size: string; direction: string; background: string; start: [number, number]; held_out: boolean }[];
}

describe('dcvg data shapes / score shapes', { skip: noFfmpeg }, () => {
  const root = mkdtempSync(join(tmpdir(), 'dcvg-shapes-data-'));
  const trainDir = join(root, 'train');
  const heldDir = join(root, 'held');
  const manifest = (dir: string) => JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;

  it('.mkv (FFV1 RGB) reads back bit for bit, on noise', async () => {
    const rng = new Rng(3);
    const frames = new Uint8Array(3 * 48 * 64 * 3).map(() => Math.floor(rng.uniform() * 256));
    const p = join(root, 'noise.mkv');
    await writeVideo(p, frames, { width: 64, height: 48, fps: 8 });
    const back = await readFrameBytes(p);
    assert.deepEqual([back.frames, back.height, back.width], [3, 48, 64]);
    assert.ok(Buffer.from(back.data).equals(Buffer.from(frames)), 'mkv round trip differs');
  });

  it('writes N videos that read back equal to the render, caption sidecars, and a manifest; train-ae and latents see them', async () => {
    const r = await run(cmdData, ['shapes', '--out', trainDir, '--count', '4', '--seed', '9', '--json']);
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.stdout), { out: trainDir, seed: 9, split: 'train', count: 4, rendered: 4, kept: 0, manifest: join(trainDir, 'manifest.json') });
    const m = manifest(trainDir);
    assert.deepEqual([m.seed, m.split, m.count, m.complete, m.videos.length], [9, 'train', 4, true, 4]);
    const want = randomShapesVideos(new Rng(9), 4, 'train');
    const { videos } = listMedia(trainDir);
    assert.deepEqual(videos, m.videos.map((v) => v.file));
    const tsv = readCaptionsTsv(trainDir);
    for (const [i, e] of m.videos.entries()) {
      const v: ShapesVideo = { color: e.color, shape: e.shape, size: e.size, direction: e.direction, background: e.background, start: e.start } as ShapesVideo;
      assert.deepEqual(v, want[i]);
      assert.equal(e.held_out, false);
      assert.equal(clipCaption(trainDir, e.file, tsv), shapesCaption(v));
      const back = await readFrameBytes(join(trainDir, e.file));
      assert.equal(back.frames, 16);
      assert.ok(Buffer.from(back.data).equals(Buffer.from(renderShapes(v))), `${e.file} differs from its render`);
    }
    assert.deepEqual(readdirSync(trainDir).filter((n) => n.startsWith('.')), [], 'no temporaries left');
  });

  it('held-out split: only held-out triples', async () => {
    const r = await run(cmdData, ['shapes', '--out', heldDir, '--count', '3', '--seed', '9', '--split', 'held-out']);
    assert.equal(r.code, 0);
    const m = manifest(heldDir);
    assert.equal(m.videos.length, 3);
    for (const e of m.videos) {
      assert.equal(e.held_out, true);
      assert.equal(isHeldOut(parseShapesCaption(e.caption)!), true);
      assert.match(e.file, /^held-out_\d{6}\.mkv$/);
    }
  });

  it('resumes: a rerun keeps complete files, renders only the missing ones, and extends to a larger --count', async () => {
    const again = await run(cmdData, ['shapes', '--out', trainDir, '--count', '4', '--seed', '9', '--json']);
    assert.equal((JSON.parse(again.stdout) as { rendered: number }).rendered, 0);
    const m = manifest(trainDir);
    rmSync(join(trainDir, m.videos[1]!.file));
    rmSync(join(trainDir, m.videos[2]!.file.replace('.mkv', '.txt')));
    const more = await run(cmdData, ['shapes', '--out', trainDir, '--count', '6', '--seed', '9', '--json']);
    assert.deepEqual(JSON.parse(more.stdout), { out: trainDir, seed: 9, split: 'train', count: 6, rendered: 3, kept: 3, manifest: join(trainDir, 'manifest.json') });
    const m7 = manifest(trainDir);
    assert.deepEqual(m7.videos.slice(0, 4), m.videos);
    assert.equal(listMedia(trainDir).videos.length, 6);
    const re = await readFrameBytes(join(trainDir, m.videos[1]!.file));
    assert.ok(Buffer.from(re.data).equals(Buffer.from(renderShapes(randomShapesVideos(new Rng(9), 2, 'train')[1]!))));
    assert.equal(readFileSync(join(trainDir, m.videos[2]!.file.replace('.mkv', '.txt')), 'utf8'), m.videos[2]!.caption + '\n');
  });

  it('refuses another seed or split, fewer videos than there are, a foreign folder and bad options, changing nothing', async () => {
    const before = readdirSync(trainDir).sort();
    const manifestBefore = readFileSync(join(trainDir, 'manifest.json'), 'utf8');
    await assert.rejects(run(cmdData, ['shapes', '--out', trainDir, '--count', '6', '--seed', '10']), /holds the train split of seed 9 .*not the train split of seed 10/);
    await assert.rejects(run(cmdData, ['shapes', '--out', trainDir, '--count', '6', '--seed', '9', '--split', 'held-out']), /not the held-out split of seed 9/);
    await assert.rejects(run(cmdData, ['shapes', '--out', trainDir, '--count', '3', '--seed', '9']), /already holds 6 videos of seed 9; pass --count >= that/);
    assert.deepEqual(readdirSync(trainDir).sort(), before);
    assert.equal(readFileSync(join(trainDir, 'manifest.json'), 'utf8'), manifestBefore);
    const foreign = join(root, 'foreign');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'clip.mp4'), 'x');
    await assert.rejects(run(cmdData, ['shapes', '--out', foreign, '--count', '2']), /is not empty and has no manifest.json/);
    assert.deepEqual(readdirSync(foreign), ['clip.mp4']);
    await assert.rejects(run(cmdData, ['shapes', '--out', join(root, 'x'), '--count', '2', '--split', 'test']), /--split must be train or held-out, got "test"/);
    await assert.rejects(run(cmdData, ['shapes', '--out', join(root, 'x'), '--count', '0']), /--count must be an integer in \[1, 1000000\]/);
    await assert.rejects(run(cmdData, ['shapes', '--out', join(root, 'x')]), /needs --count N/);
    assert.equal(existsSync(join(root, 'x')), false);
  });

  it('score shapes: 100% on both folders, each split in its row, the JSON keys; captions from sidecars, captions.tsv or --captions', async () => {
    const r = await run(cmdScore, ['shapes', trainDir, heldDir, '--json']);
    assert.equal(r.code, 0);
    const j = JSON.parse(r.stdout) as Record<string, unknown> & { videos: { file: string; held_out: boolean; accuracy: number; all_correct: boolean; mask_area_variance: number }[] };
    assert.deepEqual(Object.keys(j).sort(), ['all', 'held_out', 'train', 'videos']);
    const groups = j as unknown as Record<'train' | 'held_out' | 'all', Record<string, unknown>>;
    for (const g of ['train', 'held_out', 'all'] as const) {
      assert.deepEqual(Object.keys(groups[g]).sort(), ['accuracy', 'all_correct', 'mask_area_mean', 'mask_area_variance', 'per_attribute', 'videos']);
      assert.equal(groups[g].accuracy, 100);
      assert.equal(groups[g].all_correct, 100);
      assert.equal(groups[g].mask_area_variance, 0);
      assert.deepEqual(Object.keys(groups[g].per_attribute as object).sort(), [...SHAPES_ATTRIBUTES].sort());
    }
    assert.deepEqual([groups.train.videos, groups.held_out.videos, groups.all.videos], [6, 3, 9]);
    assert.equal(j.videos.filter((v) => v.held_out).length, 3);
    assert.ok(j.videos.every((v) => v.accuracy === 1 && v.all_correct));

    // a video whose caption lies: read from captions.tsv (no sidecar) and then from --captions (the manifest)
    const lie = join(root, 'lie');
    mkdirSync(lie);
    const e = manifest(trainDir).videos[0]!;
    const v = parseShapesCaption(e.caption)!;
    // another colour whose triple is still a training one, so the video stays in the training row
    const otherColor = (Object.keys(SHAPES_COLORS) as (keyof typeof SHAPES_COLORS)[]).find((c) => c !== v.color && !isHeldOut({ ...v, color: c }))!;
    const said = shapesCaption({ ...v, color: otherColor });
    writeFileSync(join(lie, e.file), readFileSync(join(trainDir, e.file)));
    writeFileSync(join(lie, 'captions.tsv'), `file\tcaption\n${e.file}\t${said}\n`);
    const t = JSON.parse((await run(cmdScore, ['shapes', lie, '--json'])).stdout) as { all: { accuracy: number; per_attribute: Record<string, number> } };
    assert.equal(t.all.accuracy, 80);
    assert.equal(t.all.per_attribute.color, 0);
    const viaManifest = JSON.parse((await run(cmdScore, ['shapes', join(lie, e.file), '--captions', join(trainDir, 'manifest.json'), '--json'])).stdout) as { all: { accuracy: number } };
    assert.equal(viaManifest.all.accuracy, 100);

    const text = (await run(cmdScore, ['shapes', lie])).stdout;
    assert.match(text, /^semantic score of 1 video /);
    assert.match(text, /\ntraining +1 +80\.0% +0\.0% +0\.0% +100\.0%/);
    assert.match(text, /\nheld-out +0 +- +-/);
  });

  it('score shapes refuses a video without a caption, a caption outside the world and a wrong size', async () => {
    const d = join(root, 'bad');
    mkdirSync(d);
    writeFileSync(join(d, 'a.mkv'), readFileSync(join(trainDir, 'train_000000.mkv')));
    await assert.rejects(run(cmdScore, ['shapes', d]), /no caption for .*a\.mkv \(a sidecar a\.txt, captions\.tsv in its folder, or --captions FILE\)/);
    writeFileSync(join(d, 'a.txt'), 'a purple blob\n');
    await assert.rejects(run(cmdScore, ['shapes', d]), /the caption of .*a\.mkv must read "a \{size\} \{color\}/);
    const small = join(root, 'small.mkv');
    await writeVideo(small, new Uint8Array(2 * 32 * 32 * 3), { width: 32, height: 32, fps: 8 });
    writeFileSync(join(root, 'small.txt'), e0Caption(trainDir));
    await assert.rejects(run(cmdScore, ['shapes', small]), /shapes-world videos are 128x128, got 32x32/);
    await assert.rejects(run(cmdScore, ['shapes', join(root, 'nope.mkv')]), /nope\.mkv not found/);
  });

  it('the dcvg binary routes data / score shapes, and shapes score still reads one video against --caption', () => {
    const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
    const dir = join(root, 'cli');
    const d = spawnSync(process.execPath, [bin, 'data', 'shapes', '--out', dir, '--count', '1', '--seed', '4', '--split', 'held-out'], { encoding: 'utf8' });
    assert.equal(d.status, 0, d.stderr);
    assert.match(d.stdout, /1 held-out video in .* \(1 rendered, 0 already there\)/);
    const s = spawnSync(process.execPath, [bin, 'score', 'shapes', dir, '--json'], { encoding: 'utf8' });
    assert.equal(s.status, 0, s.stderr);
    assert.equal((JSON.parse(s.stdout) as { held_out: { accuracy: number } }).held_out.accuracy, 100);
    const file = join(dir, 'held-out_000000.mkv');
    const one = spawnSync(process.execPath, [bin, 'shapes', 'score', file, '--caption', readFileSync(join(dir, 'held-out_000000.txt'), 'utf8').trim(), '--json'], { encoding: 'utf8' });
    assert.equal(one.status, 0, one.stderr);
    assert.equal((JSON.parse(one.stdout) as { allCorrect: boolean }).allCorrect, true);
    const bad = spawnSync(process.execPath, [bin, 'score', 'nothing'], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /unknown scorer "nothing" \(shapes\)/);
  });
});

function e0Caption(dir: string): string {
  return readFileSync(join(dir, 'train_000000.txt'), 'utf8');
}
