/**
 * Convolutions. Conv3d (weight (out, in, kt, kh, kw), keys `weight`, `bias`) with a temporal padding mode and a
 * per-conv feature cache for streaming; Conv2d (weight (out, in, kh, kw)), on (N, C, H, W) or frame by frame on
 * (N, C, T, H, W). Spatial padding is `same` (k // 2 on each side) unless given.
 *
 * Temporal padding (Conv3d):
 * - 'zero': kt // 2 zero frames on both sides (a plain conv).
 * - 'causal': kt - 1 frames on the left only: zeros at the clip start, the cached last frames of the previous call
 *   when a FeatureCache is passed (streaming), so a clip cut into pieces gives the whole clip's result. Fewer cached
 *   frames than kt - 1 (a stream whose first piece was shorter) stand in for the last of the zero frames. Temporal
 *   stride 1 for streaming.
 * - 'chunk-causal': time is cut into chunks of `chunk` frames; inside a chunk the conv is bidirectional, across chunks
 *   causal: each chunk's left context is the last frame(s) of the previous chunk of this conv's own input (or the
 *   feature cache for the first chunk of a call, or zeros), its right context always zero. When T is not a multiple of
 *   the chunk, a plain zero-padded conv without the cache (DC-AE-V's inference fallback).
 * - 'valid': no temporal padding, any temporal stride: output frame j sees input frames [j * st, j * st + kt) of the
 *   whole sequence (the Wan VAE's temporal downsample: kernel 3, stride 2, windows (0,1,2), (2,3,4), ...). With a
 *   FeatureCache the input frames that no complete window has consumed yet (from the next window's start on) are
 *   carried to the next call, so pieces of any size give the whole sequence's windows; a piece that completes no
 *   window gives zero output frames.
 */
import { ValueError, fmtShape, ShapeError } from '../errors.js';
import * as ops from '../tensor/ops.js';
import { chunkCausalConv3d, conv3d } from '../tensor/nn_ops.js';
import { addInto } from '../tensor/inplace.js';
import type { Rng } from '../tensor/random.js';
import { Tensor, isGradEnabled, zeros } from '../tensor/tensor.js';
import { torchDefaultInit } from './init.js';
import { Module, type Param } from './module.js';

/**
 * State carried between the pieces of one streaming pass, keyed by each layer's cacheKey: a conv's context frames,
 * or 'started', a mark a layer sets once it has seen the stream's first frame (the Wan VAE's temporal upsample, which
 * passes frame 0 through and convolves only the later ones).
 */
export type FeatureCacheEntry = Tensor | 'started';
export type FeatureCache = Map<string, FeatureCacheEntry>;

/** The frames cached under `key` (null: none yet); a mark there means two layers share a key. */
export function cachedFrames(cache: FeatureCache | null, key: string): Tensor | null {
  const v = cache?.get(key);
  if (v === undefined) return null;
  if (!(v instanceof Tensor)) throw new ValueError(`feature cache: the entry ${JSON.stringify(key)} holds ${JSON.stringify(v)}, not frames (two layers share this cacheKey)`);
  return v;
}

/** Bytes of the frames a FeatureCache holds (float32), for memory reports; marks count 0. */
export function featureCacheBytes(cache: FeatureCache): number {
  let n = 0;
  for (const v of cache.values()) if (v instanceof Tensor) n += 4 * v.size;
  return n;
}

export type TemporalPadding = 'zero' | 'causal' | 'chunk-causal' | 'valid';

type Triple = readonly [number, number, number];

function triple(v: number | Triple, what: string): [number, number, number] {
  const t: number[] = typeof v === 'number' ? [v, v, v] : [...v];
  if (t.length !== 3 || t.some((d) => !Number.isInteger(d) || d < 1)) throw new ValueError(`Conv3d: ${what} must be a positive integer or 3 of them, got ${String(v)}`);
  return t as [number, number, number];
}

export interface Conv3dLayerOptions {
  /** default true */
  bias?: boolean;
  /** default 'zero' */
  temporalPadding?: TemporalPadding;
  /** frames per chunk ('chunk-causal' only) */
  chunk?: number;
  /** spatial padding [h, w] on each side; default [kh // 2, kw // 2] */
  spatialPadding?: readonly [number, number];
  /** default 1; the temporal stride must be 1 for 'chunk-causal' (and for streaming 'causal') */
  stride?: number | Triple;
  /** take over this conv's parameter slots (same Param objects; its kernel, padding and cache key are copied too) */
  share?: Conv3d;
}

export class Conv3d extends Module {
  readonly weight: Param;
  readonly bias: Param | null;
  readonly kernel: [number, number, number];
  readonly stride: [number, number, number];
  readonly temporalPadding: TemporalPadding;
  readonly chunk: number | null;
  readonly spatialPadding: [number, number];
  /** This conv's key in a FeatureCache (the owning model sets it to a unique path). */
  cacheKey = '';

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernel: number | Triple,
    opts: Conv3dLayerOptions = {},
  ) {
    super();
    for (const [n, v] of [['inChannels', inChannels], ['outChannels', outChannels]] as const)
      if (!Number.isInteger(v) || v < 1) throw new ValueError(`Conv3d: ${n} must be a positive integer, got ${v}`);
    this.kernel = triple(kernel, 'kernel');
    this.stride = triple(opts.stride ?? 1, 'stride');
    this.temporalPadding = opts.temporalPadding ?? 'zero';
    if (!['zero', 'causal', 'chunk-causal', 'valid'].includes(this.temporalPadding))
      throw new ValueError(`Conv3d: temporalPadding must be 'zero', 'causal', 'chunk-causal' or 'valid', got ${JSON.stringify(opts.temporalPadding)}`);
    if (this.temporalPadding === 'chunk-causal') {
      if (!Number.isInteger(opts.chunk) || opts.chunk! < 1) throw new ValueError(`Conv3d: 'chunk-causal' needs a positive integer chunk, got ${opts.chunk}`);
      if (this.stride[0] !== 1) throw new ValueError(`Conv3d: 'chunk-causal' needs temporal stride 1, got ${this.stride[0]}`);
    }
    this.chunk = this.temporalPadding === 'chunk-causal' ? opts.chunk! : null;
    this.spatialPadding = opts.spatialPadding ? [opts.spatialPadding[0], opts.spatialPadding[1]] : [this.kernel[1] >> 1, this.kernel[2] >> 1];
    const s = opts.share;
    if (s) {
      if (s.inChannels !== inChannels || s.outChannels !== outChannels || s.kernel.some((d, i) => d !== this.kernel[i]))
        throw new ValueError(`Conv3d: cannot share the parameters of a conv with another shape`);
      this.weight = this.adoptParam('weight', s.weight);
      this.bias = s.bias ? this.adoptParam('bias', s.bias) : null;
      this.cacheKey = s.cacheKey;
    } else {
      this.weight = this.param('weight', [outChannels, inChannels, ...this.kernel]);
      this.bias = opts.bias ?? true ? this.param('bias', [outChannels]) : null;
    }
  }

  /** Options that rebuild this conv's geometry (kernel aside) for a layer sharing its parameters. */
  geometry(): Conv3dLayerOptions {
    return {
      bias: this.bias !== null,
      temporalPadding: this.temporalPadding,
      ...(this.chunk !== null ? { chunk: this.chunk } : {}),
      spatialPadding: this.spatialPadding,
      stride: this.stride,
    };
  }

  resetParameters(rng: Rng): void {
    torchDefaultInit(this.weight, this.bias, rng);
  }

  /** x (N, C, T, H, W). With a cache, runs as one piece of a streaming pass (reads and updates this conv's entry). */
  forward(x: Tensor, cache: FeatureCache | null = null): Tensor {
    if (x.ndim !== 5 || x.shape[1] !== this.inChannels)
      throw new ShapeError(`Conv3d: input must be (N, ${this.inChannels}, T, H, W), got ${fmtShape(x.shape)}`);
    return this.convolve(x, this.weight.value, this.bias ? this.bias.value : null, cache);
  }

  /** The conv with this layer's padding rules and a given weight/bias (LoRA merges reuse it). */
  protected convolve(x: Tensor, w: Tensor, b: Tensor | null, cache: FeatureCache | null): Tensor {
    const [kt] = this.kernel;
    const [ph, pw] = this.spatialPadding;
    const stride = this.stride;
    const pt = kt >> 1;
    const T = x.shape[2]!;
    const mode = this.temporalPadding;
    if (mode === 'zero') return conv3d(x, w, b, { padding: [pt, pt, ph, ph, pw, pw], stride });
    if (mode === 'causal') {
      // The left context is kt-1 frames: the cached frames when streaming, zeros for what the cache lacks.
      const need = kt - 1;
      const prev = need > 0 ? cachedFrames(cache, this.cacheKey) : null;
      const inp = prev ? ops.cat([prev, x], 2) : x;
      const y = conv3d(inp, w, b, { padding: [need - (prev ? prev.shape[2]! : 0), 0, ph, ph, pw, pw], stride });
      if (cache && need > 0) cache.set(this.cacheKey, lastFrames(inp, need));
      return y;
    }
    if (mode === 'valid') return this.validConv(x, w, b, cache);
    const L = this.chunk!;
    // The reference's inference fallback: plain symmetric zero padding, cache neither read nor written.
    if (T % L !== 0) return conv3d(x, w, b, { padding: [pt, pt, ph, ph, pw, pw], stride });
    const n = T / L;
    const cached = cachedFrames(cache, this.cacheKey);
    const outs: Tensor[] = [];
    const training = isGradEnabled() && (x.requiresGrad || w.requiresGrad || (b?.requiresGrad ?? false));
    // Training (autograd, whole windows without a cache): one conv over the clip with the chunk-boundary term removed,
    // instead of a slice + concatenation per chunk and their gradient copies and sums.
    if (training && !cached && kt === 3 && pt === 1 && ph === pw && stride[1] === 1 && stride[2] === 1 && this.kernel[1] === this.kernel[2]) {
      if (cache) cache.set(this.cacheKey, ops.contiguous(ops.slice(x, 2, T - pt, T)).detach());
      return chunkCausalConv3d(x, w, b, L, ph);
    }
    // Inference fast path (no autograd, one frame of left context): convolve the chunk with zero padding, then add
    // the left frame's contribution (kernel tap 0 only) into output frame 0 in place, instead of copying the whole
    // chunk to prepend one frame. Same arithmetic terms, so results agree to float rounding.
    const inPlace = pt === 1 && kt === 3 && !training;
    let w0: Tensor | null = null;
    for (let k = 0; k < n; k++) {
      const cur = n === 1 ? x : ops.slice(x, 2, k * L, (k + 1) * L);
      let left: Tensor | null;
      if (pt === 0) left = null;
      else if (k > 0) left = ops.slice(x, 2, k * L - pt, k * L);
      else left = cached;
      if (left && inPlace) {
        const y = conv3d(cur, w, b, { padding: [pt, pt, ph, ph, pw, pw], stride });
        w0 ??= ops.contiguous(ops.slice(w, 2, 0, 1));
        const corr = conv3d(left, w0, null, { padding: [0, 0, ph, ph, pw, pw], stride });
        addInto(ops.slice(y, 2, 0, 1), corr);
        outs.push(y);
        continue;
      }
      const inp = left ? ops.cat([left, cur], 2) : cur;
      const padLeft = left ? 0 : pt;
      outs.push(conv3d(inp, w, b, { padding: [padLeft, pt, ph, ph, pw, pw], stride }));
    }
    if (cache && pt > 0) cache.set(this.cacheKey, ops.contiguous(ops.slice(x, 2, T - pt, T)).detach());
    return n === 1 ? outs[0]! : ops.cat(outs, 2);
  }

  /** 'valid': the complete windows of (cached frames + x); the frames from the next window's start on are carried. */
  private validConv(x: Tensor, w: Tensor, b: Tensor | null, cache: FeatureCache | null): Tensor {
    const [kt, kh, kw] = this.kernel;
    const [st, sh, sw] = this.stride;
    const [ph, pw] = this.spatialPadding;
    const prev = cachedFrames(cache, this.cacheKey);
    const inp = prev ? ops.cat([prev, x], 2) : x;
    const T = inp.shape[2]!;
    const n = T >= kt ? Math.floor((T - kt) / st) + 1 : 0;
    if (cache) cache.set(this.cacheKey, ops.clone(ops.slice(inp, 2, n * st, T)).detach());
    if (n === 0) {
      const [N, , , H, W] = inp.shape as [number, number, number, number, number];
      return zeros([N, this.outChannels, 0, Math.floor((H + 2 * ph - kh) / sh) + 1, Math.floor((W + 2 * pw - kw) / sw) + 1]);
    }
    const used = (n - 1) * st + kt;
    return conv3d(used === T ? inp : ops.slice(inp, 2, 0, used), w, b, { padding: [0, 0, ph, ph, pw, pw], stride: this.stride });
  }
}

/** A copy of the last `n` frames of x (all of them when it has fewer), for the cache. */
function lastFrames(x: Tensor, n: number): Tensor {
  const T = x.shape[2]!;
  return ops.clone(T > n ? ops.slice(x, 2, T - n, T) : x).detach();
}

export interface Conv2dLayerOptions {
  /** default true */
  bias?: boolean;
  /**
   * [h, w] zeros on each side, or [top, bottom, left, right] (e.g. torch's ZeroPad2d((0, 1, 0, 1)) before a stride-2
   * conv: [0, 1, 0, 1]); default [kh // 2, kw // 2]
   */
  padding?: readonly [number, number] | readonly [number, number, number, number];
  stride?: number | readonly [number, number];
}

/**
 * 2-D convolution of (N, C, H, W), run as a conv3d over one frame; or of every frame of (N, C, T, H, W) (torch's
 * nn.Conv2d on the frames folded into the batch, as the Wan VAE's resamplers and attention do).
 */
export class Conv2d extends Module {
  readonly weight: Param;
  readonly bias: Param | null;
  readonly kernel: [number, number];
  /** [top, bottom, left, right] */
  readonly padding: [number, number, number, number];
  readonly stride: [number, number];
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernel: number | readonly [number, number],
    opts: Conv2dLayerOptions = {},
  ) {
    super();
    for (const [n, v] of [['inChannels', inChannels], ['outChannels', outChannels]] as const)
      if (!Number.isInteger(v) || v < 1) throw new ValueError(`Conv2d: ${n} must be a positive integer, got ${v}`);
    const k = typeof kernel === 'number' ? [kernel, kernel] : [...kernel];
    const s = opts.stride === undefined ? [1, 1] : typeof opts.stride === 'number' ? [opts.stride, opts.stride] : [...opts.stride];
    for (const [what, v] of [['kernel', k], ['stride', s]] as const)
      if (v.length !== 2 || v.some((d) => !Number.isInteger(d) || d < 1)) throw new ValueError(`Conv2d: ${what} must be a positive integer or 2 of them, got ${String(v)}`);
    this.kernel = [k[0]!, k[1]!];
    this.stride = [s[0]!, s[1]!];
    const p = opts.padding ? [...opts.padding] : [k[0]! >> 1, k[1]! >> 1];
    if ((p.length !== 2 && p.length !== 4) || p.some((d) => !Number.isInteger(d) || d < 0))
      throw new ValueError(`Conv2d: padding must be 2 or 4 non-negative integers, got ${String(p)}`);
    this.padding = p.length === 2 ? [p[0]!, p[0]!, p[1]!, p[1]!] : [p[0]!, p[1]!, p[2]!, p[3]!];
    this.weight = this.param('weight', [outChannels, inChannels, ...this.kernel]);
    this.bias = opts.bias ?? true ? this.param('bias', [outChannels]) : null;
  }

  resetParameters(rng: Rng): void {
    torchDefaultInit(this.weight, this.bias, rng);
  }

  /** x (N, C, H, W), or (N, C, T, H, W) convolved frame by frame. */
  forward(x: Tensor): Tensor {
    if ((x.ndim !== 4 && x.ndim !== 5) || x.shape[1] !== this.inChannels)
      throw new ShapeError(`Conv2d: input must be (N, ${this.inChannels}, H, W) or (N, ${this.inChannels}, T, H, W), got ${fmtShape(x.shape)}`);
    const [t, b, l, r] = this.padding;
    const y = conv3d(x.ndim === 4 ? ops.unsqueeze(x, 2) : x, ops.unsqueeze(this.weight.value, 2), this.bias ? this.bias.value : null, {
      padding: [0, 0, t, b, l, r],
      stride: [1, this.stride[0], this.stride[1]],
    });
    return x.ndim === 4 ? ops.squeeze(y, 2) : y;
  }
}
