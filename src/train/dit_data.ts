/**
 * The training data of `dcvg train-dit`: a folder of precomputed latents and text embeddings.
 *
 *   <dir>/manifest.json   {"format": "dcvg-dit-latents-1", "shards": ["shard-00000.safetensors", ...],
 *                          "null_context": "null_context.safetensors" (optional), ...free fields (source, autoencoder,
 *                          scaling_factor, captions) kept for people, ignored by the trainer}
 *   <dir>/<shard>         safetensors with `latents` (n, C, F, H, W), the scaled latents the DiT sees, and `context`
 *                         (n, L, text_dim), the text encoder's output per sample (rows after the prompt's tokens zero,
 *                         as umT5 gives them); every shard has the same C, F, H, W, L and text_dim
 *   <dir>/<null_context>  safetensors with `null_context` (L0, text_dim), the embedding samples are replaced by under
 *                         text dropout (spec §3.4: the negative prompt's embedding). Without it the null embedding is
 *                         zeros (L, text_dim).
 *
 * Samples are numbered in shard order. buildLatentFolder() writes such a folder from video clips with a DC-AE-V
 * (the default model in assets/default-ae) and random fixed text embeddings (for tests and experiments without a
 * text encoder); scripts/dit-latents.mjs runs it.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { SafetensorsFile, saveSafetensors } from '../io/safetensors.js';
import { ValueError, fmtShape } from '../errors.js';
import { encodeVideo } from '../models/dcaev/autoencoder.js';
import type { DCAEV } from '../models/dcaev/model.js';
import * as ops from '../tensor/ops.js';
import { randn, Rng } from '../tensor/random.js';
import { Tensor, noGrad, zeros } from '../tensor/tensor.js';
import { sumSquares } from '../tensor/inplace.js';
import { clipTensor, loadClipSet } from './data.js';

export const LATENTS_FORMAT = 'dcvg-dit-latents-1';

export interface LatentSet {
  dir: string;
  /** per sample: latent (C, F, H, W) and context (L, text_dim) */
  latents: Tensor[];
  contexts: Tensor[];
  nullContext: Tensor;
  latentShape: number[];
  textLen: number;
  textDim: number;
}

const bad = (dir: string, why: string) => new ValueError(`train-dit data ${dir}: ${why}`);

/** Reads a latent folder (all of it, in memory), checking shapes against each other. */
export function loadLatentSet(dir: string): LatentSet {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ValueError(`train-dit data: ${dir} is not a folder`);
  const mpath = join(dir, 'manifest.json');
  if (!existsSync(mpath)) throw bad(dir, 'no manifest.json (see docs/training.md for the folder format)');
  let m: { format?: unknown; shards?: unknown; null_context?: unknown };
  try {
    m = JSON.parse(readFileSync(mpath, 'utf8'));
  } catch (e) {
    throw bad(dir, `manifest.json is not valid JSON (${(e as Error).message})`);
  }
  if (typeof m !== 'object' || m === null) throw bad(dir, 'manifest.json must hold an object');
  if (m.format !== LATENTS_FORMAT) throw bad(dir, `manifest.json format must be "${LATENTS_FORMAT}", got ${JSON.stringify(m.format)}`);
  if (!Array.isArray(m.shards) || !m.shards.length || !m.shards.every((s) => typeof s === 'string' && s !== ''))
    throw bad(dir, 'manifest.json "shards" must be a non-empty list of file names');
  const latents: Tensor[] = [];
  const contexts: Tensor[] = [];
  let latentShape: number[] | null = null;
  let ctxShape: number[] | null = null;
  for (const s of m.shards as string[]) {
    const f = SafetensorsFile.open(join(dir, s));
    try {
      for (const k of ['latents', 'context']) if (!f.has(k)) throw bad(dir, `${s} lacks tensor "${k}"`);
      const lat = f.tensor('latents');
      const ctx = f.tensor('context');
      if (lat.ndim !== 5) throw bad(dir, `${s}: latents must be (n, C, F, H, W), got ${fmtShape(lat.shape)}`);
      if (ctx.ndim !== 3) throw bad(dir, `${s}: context must be (n, L, text_dim), got ${fmtShape(ctx.shape)}`);
      if (ctx.shape[0] !== lat.shape[0]) throw bad(dir, `${s}: ${lat.shape[0]} latents but ${ctx.shape[0]} contexts`);
      const ls = lat.shape.slice(1);
      const cs = ctx.shape.slice(1);
      latentShape ??= ls;
      ctxShape ??= cs;
      if (ls.some((d, i) => d !== latentShape![i])) throw bad(dir, `${s}: latents ${fmtShape(ls)} differ from the first shard's ${fmtShape(latentShape)}`);
      if (cs.some((d, i) => d !== ctxShape![i])) throw bad(dir, `${s}: context ${fmtShape(cs)} differs from the first shard's ${fmtShape(ctxShape)}`);
      for (let i = 0; i < lat.shape[0]!; i++) {
        latents.push(ops.contiguous(ops.squeeze(ops.slice(lat, 0, i, i + 1), 0)));
        contexts.push(ops.contiguous(ops.squeeze(ops.slice(ctx, 0, i, i + 1), 0)));
      }
    } finally {
      f.close();
    }
  }
  if (!latents.length) throw bad(dir, 'the shards hold no samples');
  const [textLen, textDim] = ctxShape!;
  let nullContext: Tensor = zeros([textLen!, textDim!]);
  if (m.null_context !== undefined) {
    if (typeof m.null_context !== 'string') throw bad(dir, 'manifest.json "null_context" must be a file name');
    const f = SafetensorsFile.open(join(dir, m.null_context));
    try {
      if (!f.has('null_context')) throw bad(dir, `${m.null_context} lacks tensor "null_context"`);
      nullContext = f.tensor('null_context');
    } finally {
      f.close();
    }
    if (nullContext.ndim !== 2 || nullContext.shape[1] !== textDim) throw bad(dir, `null_context must be (L, ${textDim}), got ${fmtShape(nullContext.shape)}`);
  }
  return { dir: resolve(dir), latents, contexts, nullContext, latentShape: latentShape!, textLen: textLen!, textDim: textDim! };
}

export interface BuildLatentsOptions {
  /** a folder of video clips */
  videos: string;
  out: string;
  ae: DCAEV;
  /** use the first `count` clips (sorted by name); default all */
  count?: number;
  /** frames per clip from the start (a whole number of the AE's chunks) */
  frames: number;
  /** centre crop side in pixels (a multiple of the AE's spatial factor); default the whole frame */
  crop?: number;
  /** random fixed text embeddings: L tokens of text_dim values, N(0, 1), seeded */
  textLen: number;
  textDim: number;
  seed?: number;
  /** latents are multiplied by this (default: the AE config's scaling_factor, else 1 / RMS of the set) */
  scale?: number;
  samplesPerShard?: number;
  onClip?: (name: string) => void;
}

/** Encodes clips into a latent folder for train-dit (random text embeddings: a stand-in for a text encoder). */
export async function buildLatentFolder(o: BuildLatentsOptions): Promise<{ count: number; latentShape: number[]; scale: number }> {
  const set = await loadClipSet(o.videos, { holdout: 0, maxFrames: o.frames });
  const clips = set.train.filter((c) => !c.still).slice(0, o.count ?? Infinity);
  if (!clips.length) throw new ValueError(`dit latents: no video clips in ${o.videos}`);
  const raw: Tensor[] = [];
  for (const c of clips) {
    if (c.frames < o.frames) throw new ValueError(`dit latents: ${c.name} has ${c.frames} frames, fewer than ${o.frames}`);
    let x = clipTensor(c, o.frames);
    if (o.crop !== undefined) {
      if (o.crop > c.height || o.crop > c.width) throw new ValueError(`dit latents: crop ${o.crop} is larger than ${c.name} (${c.width}x${c.height})`);
      const y0 = (c.height - o.crop) >> 1;
      const x0 = (c.width - o.crop) >> 1;
      x = ops.contiguous(ops.slice(ops.slice(x, 3, y0, y0 + o.crop), 4, x0, x0 + o.crop));
    }
    raw.push(noGrad(() => encodeVideo(o.ae, x).latent));
    o.onClip?.(c.name);
  }
  let scale = o.scale ?? o.ae.config.scalingFactor ?? 0;
  if (!scale) {
    const n = raw.reduce((s, t) => s + t.size, 0);
    scale = 1 / Math.sqrt(raw.reduce((s, t) => s + sumSquares(t), 0) / n);
  }
  const lat = ops.affine(ops.cat(raw, 0), scale, 0);
  const rng = new Rng(o.seed ?? 0);
  const ctx = randn([clips.length, o.textLen, o.textDim], rng);
  mkdirSync(o.out, { recursive: true });
  const per = o.samplesPerShard ?? 64;
  const shards: string[] = [];
  for (let i = 0; i < clips.length; i += per) {
    const name = `shard-${String(shards.length).padStart(5, '0')}.safetensors`;
    const j = Math.min(clips.length, i + per);
    saveSafetensors(join(o.out, name), { latents: ops.contiguous(ops.slice(lat, 0, i, j)), context: ops.contiguous(ops.slice(ctx, 0, i, j)) });
    shards.push(name);
  }
  const manifest = {
    format: LATENTS_FORMAT,
    shards,
    source: resolve(o.videos),
    clips: clips.map((c) => c.name),
    frames: o.frames,
    crop: o.crop ?? null,
    autoencoder: o.ae.config.name,
    scaling_factor: scale,
    text: `random N(0, 1) embeddings, seed ${o.seed ?? 0} (no text encoder)`,
  };
  writeFileAtomic(join(o.out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return { count: clips.length, latentShape: lat.shape.slice(1), scale };
}
