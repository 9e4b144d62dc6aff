/**
 * `dcvg shapes render` / `dcvg shapes score`: videos of the shapes world (../shared/docs/shapes-world.md) with their
 * captions, and the semantic scorer on any video.
 */
import { existsSync } from 'node:fs';
import { assertOutputsSafe, writeFileAtomic } from '../io/files.js';
import { openVideoWriter, readFrameBytes } from '../io/video.js';
import {
  SHAPES_FRAMES,
  SHAPES_SIZE,
  isHeldOut,
  randomShapesVideo,
  renderShapes,
  scoreShapes,
  shapesAccuracy,
  shapesCaption,
  type ShapesVideo,
} from '../metrics/shapes_world.js';
import { ValueError } from '../errors.js';
import { Rng } from '../tensor/random.js';
import { parse, parseValues, type Out } from './common.js';

const CAPTION = /^a (small|large) (red|green|blue|yellow|magenta|cyan|white) (square|circle|triangle) moving (left|right|up|down) on a (black|gray) background$/;

function intFlag(v: string | boolean | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new ValueError(`--${name} must be an integer in [${min}, ${max}], got "${String(v)}"`);
  return n;
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
  const rng = new Rng(seed);
  const videos: ShapesVideo[] = [];
  while (videos.length < count) {
    const s = randomShapesVideo(rng, { trainOnly: held === 'exclude' });
    if (held === 'only' && !isHeldOut(s)) continue;
    videos.push(s);
  }
  // The world's nominal rate is 8 fps; the clips follow one another in one video.
  const w = await openVideoWriter(output, { width: SHAPES_SIZE, height: SHAPES_SIZE, fps: 8 });
  try {
    for (const s of videos) await w.write(renderShapes(s));
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  }
  const list = videos.map((s, i) => ({ caption: shapesCaption(s), start: s.start.map((x) => +x.toFixed(3)), frames: [i * SHAPES_FRAMES, (i + 1) * SHAPES_FRAMES], held_out: isHeldOut(s) }));
  if (captionsPath) writeFileAtomic(captionsPath, JSON.stringify({ seed, fps: 8, frames_per_video: SHAPES_FRAMES, videos: list }, null, 1) + '\n');
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
  const m = caption === undefined ? null : CAPTION.exec(String(caption));
  if (caption !== undefined && !m) throw new ValueError(`--caption must read "a {size} {color} {shape} moving {direction} on a {background} background", got "${String(caption)}"`);
  const clip = await readFrameBytes(input, { what: 'shapes score' });
  if (clip.width !== SHAPES_SIZE || clip.height !== SHAPES_SIZE) throw new ValueError(`${input}: shapes-world videos are ${SHAPES_SIZE}x${SHAPES_SIZE}, got ${clip.width}x${clip.height}`);
  const reading = scoreShapes(clip.data, clip.frames);
  const truth = m ? { size: m[1], color: m[2], shape: m[3], direction: m[4], background: m[5] } : null;
  const acc = truth ? shapesAccuracy(reading, truth as Parameters<typeof shapesAccuracy>[1]) : null;
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
