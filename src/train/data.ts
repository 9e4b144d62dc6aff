/**
 * Training data for the autoencoder: every clip of a folder decoded once into memory as uint8 frames, a
 * deterministic held-out split, and random training windows (whole chunks in time, random crop, random horizontal
 * flip, optionally a still frame repeated as a static clip).
 *
 * All randomness comes from the Rng handed to `sampleBatch`, so a trainer that checkpoints that Rng's state
 * resumes with exactly the same data order.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { framesToTensor, readFrameBytes } from '../io/video.js';
import { ValueError } from '../errors.js';
import type { Rng } from '../tensor/random.js';
import { Tensor } from '../tensor/tensor.js';

const VIDEO_EXT = new Set(['.mp4', '.webm', '.avi', '.mov', '.mkv', '.mpg', '.mpeg', '.ogv', '.gif', '.y4m']);
const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.bmp', '.webp']);

export interface Clip {
  name: string;
  frames: number;
  height: number;
  width: number;
  /** frames x H x W x 3, interleaved RGB */
  data: Uint8Array;
  /** a still image (usable only as a static clip) */
  still: boolean;
}

export interface ClipSet {
  dir: string;
  train: Clip[];
  heldOut: Clip[];
}

export interface LoadOptions {
  /** number of clips kept out of training for evaluation (default: 3 when there are >= 8 videos, else 0) */
  holdout?: number;
  /** decode at most this many frames per clip (default: all) */
  maxFrames?: number;
  /** called after each file is decoded (in the order they finish) */
  onClip?: (done: number, total: number, name: string) => void;
  /** files decoded at once (default LOAD_CONCURRENCY) */
  concurrency?: number;
}

/** Files decoded at once by loadClipSet: enough to overlap the processes' start-up on 2 cores. */
export const LOAD_CONCURRENCY = 4;

/** Video and image files of a folder, sorted by name (the order the split and the samplers see). */
export function listMedia(dir: string): { videos: string[]; images: string[] } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ValueError(`training data: ${dir} is not a folder`);
  const names = readdirSync(dir).sort();
  const videos = names.filter((n) => VIDEO_EXT.has(extname(n).toLowerCase()));
  const images = names.filter((n) => IMAGE_EXT.has(extname(n).toLowerCase()));
  if (!videos.length && !images.length) throw new ValueError(`training data: no video or image files in ${dir} (looked for ${[...VIDEO_EXT, ...IMAGE_EXT].join(' ')})`);
  return { videos, images };
}

/** Indices of the held-out videos: k clips spread evenly over the sorted list (deterministic, no seed). */
export function heldOutIndices(n: number, k: number): number[] {
  if (!Number.isInteger(k) || k < 0 || k >= Math.max(1, n)) {
    if (k === 0) return [];
    throw new ValueError(`holdout: ${k} held-out clips leaves none of ${n} videos for training`);
  }
  const out: number[] = [];
  for (let i = 0; i < k; i++) out.push(Math.floor(((i + 0.5) * n) / k));
  return out;
}

/**
 * An in-process memo of decoded folders, off unless a caller turns it on (`useClipCache`): `dcvg study adapt` runs
 * several train-ae commands on one folder in one process (a pretraining run, then the main one, for each
 * autoencoder), and decoding 2,000 clips costs 10-25 min each time. An entry is reused only while the folder's media
 * files (names, sizes, modification times) and the load options are the same; the clips are shared, never copied
 * (nothing writes into a Clip's frames).
 */
let clipCache: Map<string, { key: string; set: ClipSet }> | null = null;

/** Turns the memo of loadClipSet on (a fresh, empty one) or off (dropping what it holds). */
export function useClipCache(on: boolean): void {
  clipCache = on ? new Map() : null;
}

export async function loadClipSet(dir: string, opts: LoadOptions = {}): Promise<ClipSet> {
  const { videos, images } = listMedia(dir);
  const k = opts.holdout ?? (videos.length >= 8 ? 3 : 0);
  let key = '';
  if (clipCache) {
    const stamp = (n: string) => {
      const st = statSync(join(dir, n));
      return [n, st.size, st.mtimeMs];
    };
    key = JSON.stringify([k, opts.maxFrames ?? null, videos.map(stamp), images.map(stamp)]);
    const hit = clipCache.get(resolve(dir));
    if (hit && hit.key === key) return { dir, train: [...hit.set.train], heldOut: [...hit.set.heldOut] };
  }
  const set = await decodeClipSet(dir, videos, images, k, opts);
  clipCache?.set(resolve(dir), { key, set: { dir, train: [...set.train], heldOut: [...set.heldOut] } });
  return set;
}

async function decodeClipSet(dir: string, videos: string[], images: string[], k: number, opts: LoadOptions): Promise<ClipSet> {
  const held = new Set(heldOutIndices(videos.length, k));
  const train: Clip[] = [];
  const heldOut: Clip[] = [];
  const all = [...videos.map((n) => ({ n, still: false })), ...images.map((n) => ({ n, still: true }))];
  // each file costs two short processes (ffprobe, ffmpeg: ~0.5 CPU-s for a 16-frame clip, most of it start-up), so a
  // few run at once; the clips keep the sorted order whatever order they finish in. The first error stops new reads,
  // waits for the running ones and is thrown.
  const clips: Clip[] = new Array(all.length);
  let next = 0;
  let done = 0;
  let failed: unknown = null;
  const worker = async (): Promise<void> => {
    while (failed === null && next < all.length) {
      const i = next++;
      const { n, still } = all[i]!;
      try {
        const c = await readFrameBytes(join(dir, n), { maxFrames: still ? 1 : opts.maxFrames });
        if (!c.frames) throw new ValueError(`training data: ${n} has no frames`);
        clips[i] = { name: n, still, ...c };
      } catch (e) {
        failed ??= e;
        return;
      }
      opts.onClip?.(++done, all.length, n);
    }
  };
  const width = Math.max(1, Math.min(opts.concurrency ?? LOAD_CONCURRENCY, all.length));
  await Promise.all(Array.from({ length: width }, worker));
  if (failed !== null) throw failed;
  for (const [i, clip] of clips.entries()) (!clip.still && held.has(i) ? heldOut : train).push(clip);
  return { dir, train, heldOut };
}

export interface SampleOptions {
  batch: number;
  /** frames per window (a whole number of chunks) */
  frames: number;
  /** square crop side (a multiple of the spatial factor) */
  crop: number;
  /** probability that a sample is one frame repeated (a still image as a static clip) */
  stillProb: number;
  /** random horizontal flips (default true) */
  flip?: boolean;
  /**
   * probability that a sample's colours are changed (default 0): its RGB channels permuted (one of the 6 orders,
   * uniformly) and its saturation scaled by a factor log-uniform in [0.5, 2] around the Rec. 601 luma, clamped to
   * [0, 255]. Teaches the model to carry colours the few training clips do not have.
   */
  colorAug?: number;
}

/** The 6 orders of R, G, B. */
const PERMS: readonly (readonly [number, number, number])[] = [
  [0, 1, 2],
  [0, 2, 1],
  [1, 0, 2],
  [1, 2, 0],
  [2, 0, 1],
  [2, 1, 0],
];
const SAT_MIN = 0.5;
const SAT_MAX = 2;

/** What one training sample was made of (logged, so a run's data order can be audited). */
export interface SampleInfo {
  clip: string;
  start: number;
  y: number;
  x: number;
  flip: boolean;
  still: boolean;
  /** colour change (colorAug): channel order (indices into R, G, B) and saturation factor; absent when none */
  color?: { perm: [number, number, number]; sat: number };
}

/** Checks that the windows fit the videos; returns the clips usable for windows of `frames` frames. */
export function checkSampling(clips: readonly Clip[], o: SampleOptions): Clip[] {
  const videos = clips.filter((c) => !c.still);
  const long = videos.filter((c) => c.frames >= o.frames);
  if (!long.length && !clips.some((c) => c.still))
    throw new ValueError(`training data: no clip has ${o.frames} frames (longest: ${Math.max(0, ...videos.map((c) => c.frames))})`);
  for (const c of clips)
    if (c.height < o.crop || c.width < o.crop)
      throw new ValueError(`training data: ${c.name} is ${c.width}x${c.height}, smaller than the ${o.crop}x${o.crop} crop (use --crop or resize the data)`);
  return long;
}

/**
 * One batch (B, 3, frames, crop, crop) in [-1, 1]. Draw order per sample (fixed, so the stream is reproducible):
 * still?, clip, start frame, crop y, crop x, flip, then only when colorAug > 0: colour?, channel order, saturation.
 */
export function sampleBatch(clips: readonly Clip[], o: SampleOptions, rng: Rng): { x: Tensor; info: SampleInfo[] } {
  const videos = clips.filter((c) => !c.still && c.frames >= o.frames);
  const stills = clips.filter((c) => c.still);
  const { frames: T, crop: S, batch: B } = o;
  const out = new Float32Array(B * 3 * T * S * S);
  const info: SampleInfo[] = [];
  const plane = T * S * S;
  for (let b = 0; b < B; b++) {
    const wantStill = rng.uniform() < o.stillProb || !videos.length;
    // a still comes from an image file if there are any, else from a random frame of a video
    const pool = wantStill && stills.length ? stills : videos;
    const clip = pool[rng.int(pool.length)]!;
    const start = wantStill ? rng.int(clip.frames) : rng.int(clip.frames - T + 1);
    const y0 = rng.int(clip.height - S + 1);
    const x0 = rng.int(clip.width - S + 1);
    const flip = (o.flip ?? true) && rng.uniform() < 0.5;
    let color: SampleInfo['color'];
    if ((o.colorAug ?? 0) > 0 && rng.uniform() < o.colorAug!) {
      const perm = PERMS[rng.int(PERMS.length)]!;
      const sat = Math.exp(Math.log(SAT_MIN) + rng.uniform() * (Math.log(SAT_MAX) - Math.log(SAT_MIN)));
      color = { perm: [perm[0], perm[1], perm[2]], sat };
    }
    info.push({ clip: clip.name, start, y: y0, x: x0, flip, still: wantStill, ...(color ? { color } : {}) });
    const base = b * 3 * plane;
    const fb = clip.height * clip.width * 3;
    for (let t = 0; t < T; t++) {
      const src = (wantStill ? start : start + t) * fb;
      for (let yy = 0; yy < S; yy++) {
        const row = src + ((y0 + yy) * clip.width + x0) * 3;
        const dst = t * S * S + yy * S;
        for (let xx = 0; xx < S; xx++) {
          const s = row + (flip ? S - 1 - xx : xx) * 3;
          const d = dst + xx;
          if (color) {
            putRecolored(out, base + d, plane, clip.data[s + color.perm[0]]!, clip.data[s + color.perm[1]]!, clip.data[s + color.perm[2]]!, color.sat);
            continue;
          }
          out[base + d] = clip.data[s]! / 127.5 - 1;
          out[base + plane + d] = clip.data[s + 1]! / 127.5 - 1;
          out[base + 2 * plane + d] = clip.data[s + 2]! / 127.5 - 1;
        }
      }
    }
  }
  return { x: new Tensor(out, [B, 3, T, S, S]), info };
}

/**
 * Writes the pixel (r, g, b) with its saturation scaled by `sat` around the Rec. 601 luma, clamped to [0, 255], as
 * three planar values in [-1, 1] at out[i], out[i + plane], out[i + 2 plane] (no allocation: called per pixel).
 */
function putRecolored(out: Float32Array, i: number, plane: number, r: number, g: number, b: number, sat: number): void {
  const y = 0.299 * r + 0.587 * g + 0.114 * b;
  out[i] = Math.min(255, Math.max(0, y + sat * (r - y))) / 127.5 - 1;
  out[i + plane] = Math.min(255, Math.max(0, y + sat * (g - y))) / 127.5 - 1;
  out[i + 2 * plane] = Math.min(255, Math.max(0, y + sat * (b - y))) / 127.5 - 1;
}

/** A clip (or its first `frames` frames) as a tensor (1, 3, T, H, W) in [-1, 1]. */
export function clipTensor(c: Clip, frames = c.frames): Tensor {
  const T = Math.min(frames, c.frames);
  return framesToTensor(c.data.subarray(0, T * c.height * c.width * 3), c.height, c.width);
}
