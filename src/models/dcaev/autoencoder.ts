/**
 * The DC-AE-V user API: build a model from a preset / config / JSON file, load weights (safetensors or the official
 * torch checkpoint), and encode / decode whole clips or streams.
 *
 * Streaming: chunk-causal models take chunks of `chunkFrames` pixel frames (40 for the presets) and emit their
 * latents (`chunkFrames / 4`) as soon as a chunk is complete, carrying the per-layer feature cache between chunks, so
 * memory does not grow with video length and the result equals the whole-clip pass (spec §2.1).
 *
 * Frame counts: like the reference's `reconstruct_video`, the end is padded by repeating the last frame up to a whole
 * number of chunks, and decoding crops back to the original count (`numFrames`).
 * Sizes: height and width must be multiples of the spatial factor (32 or 64); with `padSpatial` the bottom/right
 * edge is replicated up to the next multiple and decoding crops it away.
 */
import { freemem } from 'node:os';
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import * as ops from '../../tensor/ops.js';
import { Tensor, noGrad } from '../../tensor/tensor.js';
import { inWeightsFile, openWeights } from '../../io/weights.js';
import type { LoadReport } from '../../nn/module.js';
import { chunkFrames, compressionFactors, resolveConfigSpec, validateConfig, type DCAEVConfig } from './config.js';
import { DCAEV, type FeatureCache } from './model.js';
import { chooseTile, tiledDecode, tiledEncode } from './tiling.js';

export { DCAEV };

/** A preset name, a path to a JSON config (reference vocabulary), or a config object. */
export type ModelSpec = string | DCAEVConfig;

export function resolveConfig(spec: ModelSpec): DCAEVConfig {
  if (typeof spec !== 'string') {
    validateConfig(spec); // a config built in code gets the same bounds as one read from a file
    return spec;
  }
  return resolveConfigSpec(spec); // preset, or a config file read and checked (config.ts)
}

/**
 * Loads weights into a model (strict key and shape check with a readable report, made from the file's header or pickle
 * before any tensor data is read; NaN or Inf weights are refused). Accepts .safetensors (F32/BF16/F16) and torch
 * checkpoints (zip + pickle; `ema_model_state_dict` first entry, else `model_state_dict`).
 */
export function loadWeights(model: DCAEV, path: string): { source: string; report: LoadReport } {
  const w = openWeights(path);
  try {
    return { source: w.source, report: model.loadStateDict(w.tensors) };
  } catch (e) {
    throw inWeightsFile(e, w.source);
  } finally {
    w.close();
  }
}

export function createModel(spec: ModelSpec, weights?: string): DCAEV {
  const m = new DCAEV(resolveConfig(spec));
  if (weights) loadWeights(m, weights);
  return m;
}

// ---------------------------------------------------------------------------------------------------------------
// geometry helpers

export interface Geometry {
  spatial: number;
  temporal: number;
  /** pixel frames per chunk, or null for designs without chunks (causal / non-causal) */
  chunk: number | null;
}

export function geometry(model: DCAEV): Geometry {
  const f = compressionFactors(model.config);
  return { spatial: f.spatial, temporal: f.temporal, chunk: chunkFrames(model.config) };
}

/** Pads time at the end by repeating the last frame up to a multiple of `mult`. */
function padFramesTo(x: Tensor, mult: number): Tensor {
  const T = x.shape[2]!;
  const target = Math.ceil(T / mult) * mult;
  if (target === T) return x;
  const last = ops.slice(x, 2, T - 1, T);
  const rep = ops.expand(last, [x.shape[0]!, x.shape[1]!, target - T, x.shape[3]!, x.shape[4]!]);
  return ops.cat([x, rep], 2);
}

/** Replicates the bottom row / right column up to multiples of f. */
function padSpatialTo(x: Tensor, f: number): Tensor {
  const [B, C, T, H, W] = x.shape as [number, number, number, number, number];
  let y = x;
  const H2 = Math.ceil(H / f) * f;
  const W2 = Math.ceil(W / f) * f;
  if (H2 !== H) y = ops.cat([y, ops.expand(ops.slice(y, 3, H - 1, H), [B, C, T, H2 - H, W])], 3);
  if (W2 !== W) y = ops.cat([y, ops.expand(ops.slice(y, 4, W - 1, W), [B, C, T, H2, W2 - W])], 4);
  return y;
}

function checkPixels(model: DCAEV, x: Tensor, padSpatial: boolean): void {
  const g = geometry(model);
  if (x.ndim !== 5 || x.shape[1] !== model.config.inChannels)
    throw new ShapeError(`expected video of shape (B, ${model.config.inChannels}, T, H, W), got ${fmtShape(x.shape)}`);
  const [, , T, H, W] = x.shape as [number, number, number, number, number];
  if (T < 1) throw new ShapeError(`video has no frames: ${fmtShape(x.shape)}`);
  if (!padSpatial && (H % g.spatial || W % g.spatial))
    throw new ShapeError(
      `frame size ${W}x${H} (width x height) is not a multiple of ${g.spatial}, the model's spatial factor; resize the video ` +
        `(dcvg --resize WxH), or pad and crop back (dcvg --pad; padSpatial: true in the API)`,
    );
}

// ---------------------------------------------------------------------------------------------------------------
// streaming

export interface SpatialTiling {
  /** tile size in pixels (a multiple of the spatial factor) */
  size: number;
  /** fraction of overlap between neighbouring tiles (default 0.25, as the reference) */
  overlap?: number;
}

export interface StreamOptions {
  /** replicate-pad height/width to the spatial factor (the decoder crops back when given the original size) */
  padSpatial?: boolean;
  /** spatial tiling with linear blending (the reference's scheme); each tile keeps its own feature cache */
  tile?: SpatialTiling | null;
}

/**
 * Runs one temporal chunk through the model, spatially tiled or not. Tile k of every chunk uses cache k, so this is
 * the reference's order (each spatial tile temporally tiled with its own cache) computed chunk by chunk, which keeps
 * memory bounded by one chunk of one tile.
 */
class ChunkRunner {
  private readonly caches: FeatureCache[] = [];
  constructor(
    private readonly model: DCAEV,
    private readonly tile: SpatialTiling | null,
  ) {}

  encode(x: Tensor): Tensor {
    if (!this.tile) return this.model.encodeRaw(x, this.cache(0));
    let k = 0;
    const f = geometry(this.model).spatial;
    return tiledEncode((xt) => this.model.encodeRaw(xt, this.cache(k++)), x, { tile: this.tile.size, overlap: this.tile.overlap, factor: f });
  }

  decode(z: Tensor): Tensor {
    if (!this.tile) return this.model.decodeRaw(z, this.cache(0));
    let k = 0;
    const f = geometry(this.model).spatial;
    return tiledDecode((zt) => this.model.decodeRaw(zt, this.cache(k++)), z, { tile: this.tile.size, overlap: this.tile.overlap, factor: f });
  }

  private cache(k: number): FeatureCache {
    let c = this.caches[k];
    if (!c) this.caches[k] = c = new Map();
    return c;
  }
}

/**
 * Encodes a stream of frames chunk by chunk. push() accepts any number of frames and returns the latents of every
 * chunk it completed (or null); finish() pads the tail by repeating the last frame and returns the last latents.
 */
export class StreamingEncoder {
  readonly model: DCAEV;
  readonly chunk: number;
  private readonly runner: ChunkRunner;
  private pending: Tensor[] = [];
  private pendingFrames = 0;
  private shape: [number, number, number, number] | null = null; // B, C, H, W
  /** frames pushed so far (before padding) */
  framesIn = 0;
  /** latent frames emitted so far */
  latentsOut = 0;
  private finished = false;

  constructor(
    model: DCAEV,
    private readonly opts: StreamOptions = {},
  ) {
    const g = geometry(model);
    if (g.chunk === null)
      throw new ValueError(`model ${model.config.name} has no temporal chunks (causal or non-causal design); use encodeVideo() for whole clips`);
    this.model = model;
    this.chunk = g.chunk;
    this.runner = new ChunkRunner(model, opts.tile ?? null);
  }

  push(frames: Tensor): Tensor | null {
    if (this.finished) throw new ValueError('StreamingEncoder: push() after finish()');
    checkPixels(this.model, frames, this.opts.padSpatial ?? false);
    const [B, C, T, H, W] = frames.shape as [number, number, number, number, number];
    if (this.shape && (this.shape[0] !== B || this.shape[2] !== H || this.shape[3] !== W))
      throw new ShapeError(`StreamingEncoder: frames ${fmtShape(frames.shape)} do not match earlier frames (B=${this.shape[0]}, ${this.shape[2]}x${this.shape[3]})`);
    this.shape = [B, C, H, W];
    this.framesIn += T;
    this.pending.push(frames);
    this.pendingFrames += T;
    const out: Tensor[] = [];
    while (this.pendingFrames >= this.chunk) {
      const all = this.pending.length === 1 ? this.pending[0]! : ops.cat(this.pending, 2);
      const take = ops.slice(all, 2, 0, this.chunk);
      const rest = ops.slice(all, 2, this.chunk);
      this.pending = rest.shape[2]! > 0 ? [ops.contiguous(rest)] : [];
      this.pendingFrames -= this.chunk;
      out.push(this.encodeChunk(take));
    }
    return out.length ? (out.length === 1 ? out[0]! : ops.cat(out, 2)) : null;
  }

  /** Pads the tail (repeating the last frame) to a whole chunk and encodes it. Returns null if nothing is pending. */
  finish(): Tensor | null {
    if (this.finished) throw new ValueError('StreamingEncoder: finish() called twice');
    this.finished = true;
    if (!this.pendingFrames) return null;
    const all = this.pending.length === 1 ? this.pending[0]! : ops.cat(this.pending, 2);
    this.pending = [];
    this.pendingFrames = 0;
    return this.encodeChunk(padFramesTo(all, this.chunk));
  }

  private encodeChunk(x: Tensor): Tensor {
    const g = geometry(this.model);
    const inp = this.opts.padSpatial ? padSpatialTo(x, g.spatial) : x;
    const z = noGrad(() => this.runner.encode(inp));
    this.latentsOut += z.shape[2]!;
    return z;
  }
}

/** Decodes a stream of latents chunk by chunk (chunk / temporal factor latent frames each). */
export class StreamingDecoder {
  readonly model: DCAEV;
  readonly latentChunk: number;
  private readonly runner: ChunkRunner;
  private pending: Tensor[] = [];
  private pendingFrames = 0;
  private finished = false;
  /** pixel frames emitted so far (after cropping) */
  framesOut = 0;

  /**
   * @param numFrames the original frame count: output beyond it (tail padding) is dropped. Omit to keep all.
   * @param size the original (height, width) to crop to after decoding (for padSpatial encodes)
   */
  constructor(
    model: DCAEV,
    private readonly numFrames: number | null = null,
    private readonly size: [number, number] | null = null,
    tile: SpatialTiling | null = null,
  ) {
    const g = geometry(model);
    if (g.chunk === null) throw new ValueError(`model ${model.config.name} has no temporal chunks; use decodeVideo() for whole clips`);
    this.model = model;
    this.latentChunk = g.chunk / g.temporal;
    this.runner = new ChunkRunner(model, tile);
  }

  push(latents: Tensor): Tensor | null {
    if (this.finished) throw new ValueError('StreamingDecoder: push() after finish()');
    if (latents.ndim !== 5 || latents.shape[1] !== this.model.config.latentChannels)
      throw new ShapeError(`expected latents (B, ${this.model.config.latentChannels}, t, h, w), got ${fmtShape(latents.shape)}`);
    this.pending.push(latents);
    this.pendingFrames += latents.shape[2]!;
    const out: Tensor[] = [];
    while (this.pendingFrames >= this.latentChunk) {
      const all = this.pending.length === 1 ? this.pending[0]! : ops.cat(this.pending, 2);
      const take = ops.slice(all, 2, 0, this.latentChunk);
      const rest = ops.slice(all, 2, this.latentChunk);
      this.pending = rest.shape[2]! > 0 ? [ops.contiguous(rest)] : [];
      this.pendingFrames -= this.latentChunk;
      const y = this.decodeChunk(take);
      if (y) out.push(y);
    }
    return out.length ? (out.length === 1 ? out[0]! : ops.cat(out, 2)) : null;
  }

  /**
   * Decodes what is left. A partial latent chunk goes through the reference's fallback (non-chunked) path, as
   * the reference does for a tail tile.
   */
  finish(): Tensor | null {
    if (this.finished) throw new ValueError('StreamingDecoder: finish() called twice');
    this.finished = true;
    if (!this.pendingFrames) return null;
    const all = this.pending.length === 1 ? this.pending[0]! : ops.cat(this.pending, 2);
    this.pending = [];
    this.pendingFrames = 0;
    return this.decodeChunk(all);
  }

  private decodeChunk(z: Tensor): Tensor | null {
    let y = noGrad(() => this.runner.decode(z));
    if (this.size) y = ops.slice(ops.slice(y, 3, 0, this.size[0]), 4, 0, this.size[1]);
    if (this.numFrames !== null) {
      const keep = Math.max(0, Math.min(y.shape[2]!, this.numFrames - this.framesOut));
      if (keep === 0) return null;
      if (keep < y.shape[2]!) y = ops.slice(y, 2, 0, keep);
    }
    y = ops.contiguous(y);
    this.framesOut += y.shape[2]!;
    return y;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// whole clips

export interface EncodeResult {
  /** unscaled latent (multiply by config.scalingFactor for the DiT) */
  latent: Tensor;
  /** frames before temporal padding */
  numFrames: number;
  /** original frame size before spatial padding */
  height: number;
  width: number;
}

export interface VideoOptions {
  padSpatial?: boolean;
  /**
   * 'stream' (default for chunk-causal models): chunk by chunk with the feature cache, bounded memory.
   * 'whole': one pass over the padded clip (the reference's single-call encode).
   */
  mode?: 'stream' | 'whole';
  /** spatial tiling: a tile size, 'auto' (from memoryBudgetBytes), or none (default) */
  tile?: number | 'auto' | null;
  overlap?: number;
  /** memory budget for 'auto' tiling (default: half of the free memory) */
  memoryBudgetBytes?: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Rough peak activation bytes per pixel-frame of one temporal chunk: the widest stage's feature map relative to the
 * pixel grid, times the tensors alive at once in a residual block (input, two conv outputs, the sum, and the conv
 * library's blocked-layout copies). Used to pick a tile size for a memory budget.
 */
export function peakBytesPerPixelFrame(model: DCAEV): number {
  const c = model.config;
  let worst = 0;
  for (const sec of [c.encoder, c.decoder]) {
    let area = c.encoder.projectIn.sf * c.encoder.projectIn.sf;
    let rate = c.encoder.projectIn.tf;
    for (let s = 0; s < sec.widthList.length; s++) {
      if (!sec.depthList[s]) continue;
      worst = Math.max(worst, sec.widthList[s]! / (area * rate));
      const r = 'downsampleBlockType' in sec ? sec.downsampleBlockType[s] : (sec as typeof c.decoder).upsampleBlockType[s];
      if (r && s < sec.widthList.length - 1) {
        area *= r.sf * r.sf;
        rate *= r.tf;
      }
    }
  }
  return Math.ceil(worst * 4 * 8);
}

/** Resolves VideoOptions.tile into a tiling (or null) for a frame size. */
export function resolveTiling(model: DCAEV, height: number, width: number, opts: VideoOptions): SpatialTiling | null {
  if (opts.tile === undefined || opts.tile === null) return null;
  const g = geometry(model);
  if (opts.tile === 'auto') {
    const budget = opts.memoryBudgetBytes ?? Math.floor(freemem() / 2);
    const size = chooseTile({
      height,
      width,
      frames: g.chunk ?? 4 * g.temporal,
      factor: g.spatial,
      peakBytesPerPixelFrame: peakBytesPerPixelFrame(model),
      budgetBytes: budget,
      overlap: opts.overlap,
    });
    return size === null ? null : { size, overlap: opts.overlap };
  }
  return { size: opts.tile, overlap: opts.overlap };
}

/** Encodes a whole clip (B, 3, T, H, W) in [-1, 1]; any T (tail padded by repeating the last frame). */
export function encodeVideo(model: DCAEV, x: Tensor, opts: VideoOptions = {}): EncodeResult {
  checkPixels(model, x, opts.padSpatial ?? false);
  const g = geometry(model);
  const [, , T, H, W] = x.shape as [number, number, number, number, number];
  const mode = opts.mode ?? (g.chunk !== null ? 'stream' : 'whole');
  const tile = resolveTiling(model, H, W, opts);
  if (mode === 'whole' || g.chunk === null) {
    const mult = g.chunk ?? g.temporal;
    let inp = padFramesTo(x, mult);
    if (opts.padSpatial) inp = padSpatialTo(inp, g.spatial);
    const run = (v: Tensor) => model.encodeRaw(v);
    const latent = noGrad(() => (tile ? tiledEncode(run, inp, { tile: tile.size, overlap: tile.overlap, factor: g.spatial }) : run(inp)));
    opts.onProgress?.(T, T);
    return { latent, numFrames: T, height: H, width: W };
  }
  const enc = new StreamingEncoder(model, { padSpatial: opts.padSpatial, tile });
  const parts: Tensor[] = [];
  for (let t = 0; t < T; t += g.chunk) {
    const z = enc.push(ops.slice(x, 2, t, Math.min(T, t + g.chunk)));
    if (z) parts.push(z);
    opts.onProgress?.(Math.min(T, t + g.chunk), T);
  }
  const tail = enc.finish();
  if (tail) parts.push(tail);
  return { latent: parts.length === 1 ? parts[0]! : ops.cat(parts, 2), numFrames: T, height: H, width: W };
}

export interface DecodeOptions {
  /** crop to this many frames (the encoder's numFrames) */
  numFrames?: number;
  /** crop to this size (the encoder's height/width) */
  height?: number;
  width?: number;
  mode?: 'stream' | 'whole';
  /** spatial tiling in output pixels (a number), 'auto', or none */
  tile?: number | 'auto' | null;
  overlap?: number;
  memoryBudgetBytes?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Decodes latents (B, C, t, h, w) to pixels (unclamped, as the reference). */
export function decodeVideo(model: DCAEV, z: Tensor, opts: DecodeOptions = {}): Tensor {
  const g = geometry(model);
  if (z.ndim !== 5 || z.shape[1] !== model.config.latentChannels)
    throw new ShapeError(`expected latents (B, ${model.config.latentChannels}, t, h, w), got ${fmtShape(z.shape)}`);
  const size: [number, number] | null = opts.height !== undefined && opts.width !== undefined ? [opts.height, opts.width] : null;
  const t = z.shape[2]!;
  const mode = opts.mode ?? (g.chunk !== null ? 'stream' : 'whole');
  const tile = resolveTiling(model, z.shape[3]! * g.spatial, z.shape[4]! * g.spatial, opts);
  if (mode === 'whole' || g.chunk === null) {
    const run = (v: Tensor) => model.decodeRaw(v);
    let y = noGrad(() => (tile ? tiledDecode(run, z, { tile: tile.size, overlap: tile.overlap, factor: g.spatial }) : run(z)));
    if (size) y = ops.slice(ops.slice(y, 3, 0, size[0]), 4, 0, size[1]);
    if (opts.numFrames !== undefined) y = ops.slice(y, 2, 0, opts.numFrames);
    opts.onProgress?.(t, t);
    return ops.contiguous(y);
  }
  const dec = new StreamingDecoder(model, opts.numFrames ?? null, size, tile);
  const lc = g.chunk / g.temporal;
  const parts: Tensor[] = [];
  for (let i = 0; i < t; i += lc) {
    const y = dec.push(ops.slice(z, 2, i, Math.min(t, i + lc)));
    if (y) parts.push(y);
    opts.onProgress?.(Math.min(t, i + lc), t);
  }
  const tail = dec.finish();
  if (tail) parts.push(tail);
  if (!parts.length) throw new ShapeError(`nothing decoded from latents ${fmtShape(z.shape)} (numFrames ${opts.numFrames})`);
  return parts.length === 1 ? parts[0]! : ops.cat(parts, 2);
}
