/**
 * Convolutions. Conv3d (weight (out, in, kt, kh, kw), keys `weight`, `bias`) with a temporal padding mode and a
 * per-conv feature cache for streaming; Conv2d (weight (out, in, kh, kw)). Spatial padding is `same` (k // 2 on each
 * side) unless given.
 *
 * Temporal padding (Conv3d, stride 1 in time for the causal modes' caches):
 * - 'zero': kt // 2 zero frames on both sides (a plain conv).
 * - 'causal': kt - 1 frames on the left only: zeros at the clip start, the cached last frames of the previous call
 *   when a FeatureCache is passed (streaming), so a clip cut into pieces gives the whole clip's result.
 * - 'chunk-causal': time is cut into chunks of `chunk` frames; inside a chunk the conv is bidirectional, across chunks
 *   causal: each chunk's left context is the last frame(s) of the previous chunk of this conv's own input (or the
 *   feature cache for the first chunk of a call, or zeros), its right context always zero. When T is not a multiple of
 *   the chunk, a plain zero-padded conv without the cache (DC-AE-V's inference fallback).
 */
import { ValueError, fmtShape, ShapeError } from '../errors.js';
import * as ops from '../tensor/ops.js';
import { chunkCausalConv3d, conv3d } from '../tensor/nn_ops.js';
import { addInto } from '../tensor/inplace.js';
import type { Rng } from '../tensor/random.js';
import { Tensor, isGradEnabled, zeros } from '../tensor/tensor.js';
import { torchDefaultInit } from './init.js';
import { Module, type Param } from './module.js';

/** Per-conv temporal context carried between the pieces of one streaming pass, keyed by each conv's cacheKey. */
export type FeatureCache = Map<string, Tensor>;

export type TemporalPadding = 'zero' | 'causal' | 'chunk-causal';

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
  /** default 1; the temporal stride must be 1 for 'chunk-causal' */
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
    if (!['zero', 'causal', 'chunk-causal'].includes(this.temporalPadding))
      throw new ValueError(`Conv3d: temporalPadding must be 'zero', 'causal' or 'chunk-causal', got ${JSON.stringify(opts.temporalPadding)}`);
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
      // The left context is kt-1 frames: zeros at the clip start, the cached frames when streaming.
      const need = kt - 1;
      const prev = cache?.get(this.cacheKey);
      let y: Tensor;
      if (prev && need > 0) y = conv3d(ops.cat([prev, x], 2), w, b, { padding: [0, 0, ph, ph, pw, pw], stride });
      else y = conv3d(x, w, b, { padding: [need, 0, ph, ph, pw, pw], stride });
      if (cache && need > 0) cache.set(this.cacheKey, lastFrames(x, need, prev ?? null));
      return y;
    }
    const L = this.chunk!;
    // The reference's inference fallback: plain symmetric zero padding, cache neither read nor written.
    if (T % L !== 0) return conv3d(x, w, b, { padding: [pt, pt, ph, ph, pw, pw], stride });
    const n = T / L;
    const cached = cache?.get(this.cacheKey) ?? null;
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
}

/** The last `n` frames of cat([prev, x]) along time (prev may be null = zeros). */
function lastFrames(x: Tensor, n: number, prev: Tensor | null): Tensor {
  const T = x.shape[2]!;
  if (T >= n) return ops.contiguous(ops.slice(x, 2, T - n, T)).detach();
  const base = prev ?? zeros([x.shape[0]!, x.shape[1]!, n, x.shape[3]!, x.shape[4]!]);
  return ops.contiguous(ops.slice(ops.cat([base, x], 2), 2, T, T + n)).detach();
}

export interface Conv2dLayerOptions {
  /** default true */
  bias?: boolean;
  /** [h, w] on each side; default [kh // 2, kw // 2] */
  padding?: readonly [number, number];
  stride?: number | readonly [number, number];
}

/** 2-D convolution of (N, C, H, W), run as a conv3d over one frame. */
export class Conv2d extends Module {
  readonly weight: Param;
  readonly bias: Param | null;
  readonly kernel: [number, number];
  readonly padding: [number, number];
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
    this.padding = opts.padding ? [opts.padding[0], opts.padding[1]] : [k[0]! >> 1, k[1]! >> 1];
    this.weight = this.param('weight', [outChannels, inChannels, ...this.kernel]);
    this.bias = opts.bias ?? true ? this.param('bias', [outChannels]) : null;
  }

  resetParameters(rng: Rng): void {
    torchDefaultInit(this.weight, this.bias, rng);
  }

  forward(x: Tensor): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.inChannels)
      throw new ShapeError(`Conv2d: input must be (N, ${this.inChannels}, H, W), got ${fmtShape(x.shape)}`);
    const [ph, pw] = this.padding;
    const y = conv3d(ops.unsqueeze(x, 2), ops.unsqueeze(this.weight.value, 2), this.bias ? this.bias.value : null, {
      padding: [0, 0, ph, ph, pw, pw],
      stride: [1, this.stride[0], this.stride[1]],
    });
    return ops.squeeze(y, 2);
  }
}
