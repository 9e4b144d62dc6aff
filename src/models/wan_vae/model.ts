/**
 * The Wan-2.1 VAE (`WanVAE_` of Wan-Video/Wan2.1 `wan/modules/vae.py`): encoder, decoder and the 1x1x1 `conv1` /
 * `conv2`, with the reference's key paths, built shape-only (weights attached later by key).
 *
 * Time is handled as one whole-sequence computation that any chunking reproduces (fixtures README, "Temporal
 * rules"): every CausalConv3d is causal over the whole clip; a temporal downsample keeps frame 0 and then convolves
 * windows (0,1,2), (2,3,4), ... with stride 2; a temporal upsample passes frame 0 through unchanged and turns every
 * later frame t into frames 2t, 2t+1 through a causal conv whose history starts at frame 1. Streams (WanVaeEncodeStream,
 * WanVaeDecodeStream) carry each layer's state between pieces in a FeatureCache, so memory does not grow with length.
 */
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import { Container } from '../../nn/container.js';
import { Conv2d, Conv3d, type FeatureCache } from '../../nn/conv.js';
import { Module } from '../../nn/module.js';
import { RMSNorm3d } from '../../nn/norm.js';
import * as ops from '../../tensor/ops.js';
import { attention, upsampleNearest3d } from '../../tensor/nn_ops.js';
import { Tensor, noGrad, tensor } from '../../tensor/tensor.js';
import {
  type PlanBlock,
  type WanVaeConfig,
  decoderPlan,
  encoderPlan,
  stageDims,
  validateWanVaeConfig,
  wanVaeFactors,
  wanVaeParameterCounts,
} from './config.js';
import { WanVaeStepRunner, type WanVaeTiling, type WanVaeTilingOptions, resolveWanVaeTiling, wholeClipTiled } from './tiling.js';

const frames = (x: Tensor) => x.shape[2]!;

/*
 * The reference's layers, as src/nn layers with the reference's keys and shapes:
 * - CausalConv3d(cin, cout, 3, padding=1): two zero frames before the clip, one pixel around each frame: a 'causal'
 *   Conv3d, whose FeatureCache entry carries the last two input frames from one piece to the next. With padding 0
 *   (1x1x1 shortcuts, conv1 / conv2) a plain Conv3d; the temporal downsample's time_conv is a 'valid' one.
 * - RMS_norm(dim, images): F.normalize over channels * sqrt(C) * gamma, no bias: an RMSNorm3d with key `gamma` of
 *   shape (C, 1, 1, 1) ((C, 1, 1) when images=True) and eps 1e-12 on the norm.
 * - nn.Conv2d on the frames folded into the batch: a Conv2d on (N, C, T, H, W).
 */
const causalConv3 = (cin: number, cout: number) => new Conv3d(cin, cout, 3, { temporalPadding: 'causal' });
const pointConv = (cin: number, cout: number) => new Conv3d(cin, cout, 1);
const rmsNorm = (dim: number, images = false) => new RMSNorm3d(dim, 1e-12, { bias: false, scaleKey: 'gamma', trailingAxes: images ? 2 : 3, epsOn: 'norm' });

/** Gives every layer that keeps state in a FeatureCache (the convs, the temporal resamplers) its key path. */
function keyFeatureCache(root: Module): void {
  for (const [path, m] of root.namedModules()) if (m instanceof Conv3d || m instanceof Resample) m.cacheKey = `${path}.`;
}

export class ResidualBlock extends Module {
  readonly residual: Container;
  readonly norm1: RMSNorm3d;
  readonly conv1: Conv3d;
  readonly norm2: RMSNorm3d;
  readonly conv2: Conv3d;
  readonly shortcut: Conv3d | null;

  constructor(cin: number, cout: number) {
    super();
    // indices of the reference's nn.Sequential: 0 RMS_norm, 1 SiLU, 2 conv, 3 RMS_norm, 4 SiLU, 5 Dropout, 6 conv
    this.residual = this.module('residual', new Container());
    this.norm1 = this.residual.add('0', rmsNorm(cin));
    this.conv1 = this.residual.add('2', causalConv3(cin, cout));
    this.norm2 = this.residual.add('3', rmsNorm(cout));
    this.conv2 = this.residual.add('6', causalConv3(cout, cout));
    this.shortcut = cin !== cout ? this.module('shortcut', pointConv(cin, cout)) : null;
  }

  forward(x: Tensor, cache: FeatureCache | null): Tensor {
    const h = this.shortcut ? this.shortcut.forward(x) : x;
    let y = this.conv1.forward(ops.silu(this.norm1.forward(x)), cache);
    y = this.conv2.forward(ops.silu(this.norm2.forward(y)), cache);
    return ops.add(y, h);
  }
}

/** Single-head self-attention over the H*W positions of each frame, on RMS-normalised input, plus the input. */
export class AttentionBlock extends Module {
  readonly norm: RMSNorm3d;
  readonly to_qkv: Conv2d;
  readonly proj: Conv2d;

  constructor(readonly dim: number) {
    super();
    this.norm = this.module('norm', rmsNorm(dim, true));
    this.to_qkv = this.module('to_qkv', new Conv2d(dim, 3 * dim, 1));
    this.proj = this.module('proj', new Conv2d(dim, dim, 1));
  }

  forward(x: Tensor): Tensor {
    const [N, C, T, H, W] = x.shape as [number, number, number, number, number];
    const qkv = this.to_qkv.forward(this.norm.forward(x)); // (N, 3C, T, H, W)
    // (N, 3C, T, H, W) -> (N*T, H*W, 3C): one sequence of H*W tokens per frame
    const seq = ops.reshape(ops.permute(qkv, [0, 2, 3, 4, 1]), [N * T, H * W, 3 * C]);
    const q = ops.slice(seq, 2, 0, C);
    const k = ops.slice(seq, 2, C, 2 * C);
    const v = ops.slice(seq, 2, 2 * C, 3 * C);
    const a = attention(ops.contiguous(q), ops.contiguous(k), ops.contiguous(v)); // scale 1/sqrt(C)
    const back = ops.permute(ops.reshape(a, [N, T, H, W, C]), [0, 4, 1, 2, 3]);
    return ops.add(this.proj.forward(ops.contiguous(back)), x);
  }
}

/**
 * Spatial (2d) or spatio-temporal (3d) resampling, with the reference's `resample.1` conv and `time_conv`. In a stream
 * the temporal downsample's carried frames are its time_conv's FeatureCache entry (whose presence also says frame 0
 * has passed), the temporal upsample marks its own entry 'started' once frame 0 has passed.
 */
export class Resample extends Module {
  readonly resample: Container;
  readonly conv: Conv2d;
  readonly time_conv: Conv3d | null;
  /** This layer's key in a FeatureCache (set by the model to its path). */
  cacheKey = '';

  constructor(
    readonly dim: number,
    readonly mode: 'downsample2d' | 'downsample3d' | 'upsample2d' | 'upsample3d',
  ) {
    super();
    this.resample = this.module('resample', new Container());
    const up = mode.startsWith('up');
    // Sequential index 0 is the parameter-free ZeroPad2d((0, 1, 0, 1)) / Upsample
    this.conv = this.resample.add('1', up ? new Conv2d(dim, dim / 2, 3) : new Conv2d(dim, dim, 3, { stride: 2, padding: [0, 1, 0, 1] }));
    if (mode === 'downsample3d') this.time_conv = this.module('time_conv', new Conv3d(dim, dim, [3, 1, 1], { temporalPadding: 'valid', stride: [2, 1, 1] }));
    else if (mode === 'upsample3d') this.time_conv = this.module('time_conv', new Conv3d(dim, 2 * dim, [3, 1, 1], { temporalPadding: 'causal' }));
    else this.time_conv = null;
  }

  /** Without a cache the call is a whole sequence starting at frame 0. */
  forward(x: Tensor, cache: FeatureCache | null): Tensor {
    switch (this.mode) {
      case 'downsample2d':
        return this.conv.forward(x);
      case 'upsample2d':
        return this.conv.forward(upsampleNearest3d(x, [1, 2, 2]));
      case 'downsample3d':
        return this.downTime(this.conv.forward(x), cache);
      case 'upsample3d':
        return this.conv.forward(upsampleNearest3d(this.upTime(x, cache), [1, 2, 2]));
    }
  }

  /** [frame 0] + time_conv over windows (0,1,2), (2,3,4), ... of the whole sequence (kernel 3, stride 2, no padding). */
  private downTime(y: Tensor, cache: FeatureCache | null): Tensor {
    const conv = this.time_conv!;
    const first = !cache?.has(conv.cacheKey);
    const z = conv.forward(y, cache);
    if (first) return frames(z) ? ops.cat([ops.slice(y, 2, 0, 1), z], 2) : ops.slice(y, 2, 0, 1);
    if (!frames(z)) throw new ShapeError(`downsample3d: a piece of ${frames(y)} frame(s) completes no output frame (pieces after the first must hold a multiple of the temporal factor)`);
    return z;
  }

  /** Frame 0 unchanged; every later frame t -> frames 2t, 2t+1 from channels [0, C) and [C, 2C) of a causal conv. */
  private upTime(x: Tensor, cache: FeatureCache | null): Tensor {
    let rest = x;
    const parts: Tensor[] = [];
    if (!cache?.has(this.cacheKey)) {
      parts.push(ops.slice(x, 2, 0, 1));
      rest = ops.slice(x, 2, 1, frames(x));
      cache?.set(this.cacheKey, 'started');
    }
    const t = frames(rest);
    if (t > 0) {
      const y = this.time_conv!.forward(t === frames(x) ? x : ops.contiguous(rest), cache); // (N, 2C, t, H, W)
      const [N, C2, , H, W] = y.shape as [number, number, number, number, number];
      const C = C2 / 2;
      const inter = ops.reshape(ops.permute(ops.reshape(y, [N, 2, C, t, H, W]), [0, 2, 3, 1, 4, 5]), [N, C, 2 * t, H, W]);
      parts.push(inter);
    }
    return parts.length === 1 ? ops.contiguous(parts[0]!) : ops.cat(parts, 2);
  }
}

type Block = ResidualBlock | AttentionBlock | Resample;

function makeBlock(b: PlanBlock): Block {
  if (b.kind === 'res') return new ResidualBlock(b.cin, b.cout);
  if (b.kind === 'attn') return new AttentionBlock(b.c);
  return new Resample(b.c, b.mode);
}

function runBlock(m: Block, x: Tensor, cache: FeatureCache | null): Tensor {
  return m instanceof AttentionBlock ? m.forward(x) : m.forward(x, cache);
}

/** RMS_norm, SiLU, conv3 (Sequential indices 0, 1, 2). */
class Head extends Container {
  readonly norm: RMSNorm3d;
  readonly conv: Conv3d;
  constructor(cin: number, cout: number) {
    super();
    this.norm = this.add('0', rmsNorm(cin));
    this.conv = this.add('2', causalConv3(cin, cout));
  }
  forward(x: Tensor, cache: FeatureCache | null): Tensor {
    return this.conv.forward(ops.silu(this.norm.forward(x)), cache);
  }
}

class Middle extends Container {
  readonly blocks: Block[];
  constructor(c: number) {
    super();
    this.blocks = [this.add('0', new ResidualBlock(c, c)), this.add('1', new AttentionBlock(c)), this.add('2', new ResidualBlock(c, c))];
  }
  forward(x: Tensor, cache: FeatureCache | null): Tensor {
    for (const b of this.blocks) x = runBlock(b, x, cache);
    return x;
  }
}

export class Encoder3d extends Module {
  readonly conv1: Conv3d;
  readonly downsamples: Container;
  readonly blocks: Block[];
  readonly middle: Middle;
  readonly head: Head;

  constructor(c: WanVaeConfig) {
    super();
    const dims = stageDims(c).enc;
    this.conv1 = this.module('conv1', causalConv3(3, dims[0]!));
    this.downsamples = this.module('downsamples', new Container());
    this.blocks = encoderPlan(c).map((e, i) => this.downsamples.add(String(i), makeBlock(e.block)));
    const top = dims[dims.length - 1]!;
    this.middle = this.module('middle', new Middle(top));
    this.head = this.module('head', new Head(top, 2 * c.z_dim));
    keyFeatureCache(this);
  }

  forward(x: Tensor, cache: FeatureCache | null): Tensor {
    x = this.conv1.forward(x, cache);
    for (const b of this.blocks) x = runBlock(b, x, cache);
    return this.head.forward(this.middle.forward(x, cache), cache);
  }
}

export class Decoder3d extends Module {
  readonly conv1: Conv3d;
  readonly middle: Middle;
  readonly upsamples: Container;
  readonly blocks: Block[];
  readonly head: Head;

  constructor(c: WanVaeConfig) {
    super();
    const dims = stageDims(c).dec;
    this.conv1 = this.module('conv1', causalConv3(c.z_dim, dims[0]!));
    this.middle = this.module('middle', new Middle(dims[0]!));
    this.upsamples = this.module('upsamples', new Container());
    this.blocks = decoderPlan(c).map((e, i) => this.upsamples.add(String(i), makeBlock(e.block)));
    this.head = this.module('head', new Head(dims[dims.length - 1]!, 3));
    keyFeatureCache(this);
  }

  forward(x: Tensor, cache: FeatureCache | null): Tensor {
    x = this.middle.forward(this.conv1.forward(x, cache), cache);
    for (const b of this.blocks) x = runBlock(b, x, cache);
    return this.head.forward(x, cache);
  }
}

export interface WanVaeStreamOptions extends WanVaeTilingOptions {
  /**
   * Encoder: frames per internal step after the first frame (a multiple of the temporal factor; default the factor,
   * 4, as the reference). Decoder: latent frames per internal step (default 1, as the reference). Results do not
   * depend on it beyond float rounding; memory grows with it.
   */
  chunk?: number;
  // tile / overlap / memoryBudgetBytes: spatial tiling (tiling.ts), resolved when the first piece gives the frame size
}

/** The whole VAE: `encoder`, `conv1`, `conv2`, `decoder` (the reference's registration and state-dict order). */
export class WanVAE extends Module {
  readonly config: WanVaeConfig;
  readonly encoder: Encoder3d;
  readonly conv1: Conv3d;
  readonly conv2: Conv3d;
  readonly decoder: Decoder3d;
  /** encoder spatial / temporal compression, decoder temporal expansion */
  readonly factors: { spatial: number; temporal: number; decoderTemporal: number };
  private readonly mean: Tensor;
  private readonly invStd: Tensor;

  /** Shape only: no parameter is allocated until a state dict is loaded (or initRandom). */
  constructor(config: WanVaeConfig) {
    super();
    this.config = validateWanVaeConfig(config);
    const z = config.z_dim;
    this.encoder = this.module('encoder', new Encoder3d(config));
    this.conv1 = this.module('conv1', pointConv(2 * z, 2 * z));
    this.conv2 = this.module('conv2', pointConv(z, z));
    this.decoder = this.module('decoder', new Decoder3d(config));
    keyFeatureCache(this); // the encoder's and decoder's keys rooted at the whole model's paths
    this.factors = wanVaeFactors(config);
    // float32 mean and 1/std, as the reference's scale = [mean, 1.0 / std] (float32 tensors)
    this.mean = tensor(Float32Array.from(config.latents_mean), [1, z, 1, 1, 1]);
    const std = Float32Array.from(config.latents_std);
    this.invStd = tensor(std.map((s) => Math.fround(1 / s)), [1, z, 1, 1, 1]);
  }

  get zDim(): number {
    return this.config.z_dim;
  }

  parameterCounts() {
    return wanVaeParameterCounts(this.config);
  }

  /** Latent frames for `t` input frames; throws a ValueError naming the valid counts when t is not 1 + f*k. */
  latentFrames(t: number): number {
    const f = this.factors.temporal;
    if (!Number.isInteger(t) || t < 1 || (t - 1) % f !== 0) {
      const lo = t > 1 ? 1 + f * Math.floor((t - 1) / f) : 1;
      throw new ValueError(`the Wan VAE encodes 1 + ${f}k frames (1, ${1 + f}, ${1 + 2 * f}, ...); got ${t}${t > 1 ? `: crop to ${lo} or pad to ${lo + f}` : ''}`);
    }
    return 1 + (t - 1) / f;
  }

  /** Output frames for `t` latent frames: 1 + f*(t-1). */
  outputFrames(t: number): number {
    return 1 + this.factors.decoderTemporal * (t - 1);
  }

  checkVideo(x: Tensor, what = 'video'): void {
    const s = this.factors.spatial;
    if (x.ndim !== 5 || x.shape[1] !== 3) throw new ShapeError(`Wan VAE: ${what} must be (N, 3, T, H, W), got ${fmtShape(x.shape)}`);
    if (x.shape.some((d) => d < 1)) throw new ShapeError(`Wan VAE: ${what} ${fmtShape(x.shape)} is empty`);
    if (x.shape[3]! % s || x.shape[4]! % s) throw new ShapeError(`Wan VAE: height and width must be multiples of ${s}, got ${fmtShape(x.shape)}`);
  }

  checkLatent(z: Tensor, what = 'latent'): void {
    if (z.ndim !== 5 || z.shape[1] !== this.zDim) throw new ShapeError(`Wan VAE: ${what} must be (N, ${this.zDim}, T, H, W), got ${fmtShape(z.shape)}`);
    if (z.shape.some((d) => d < 1)) throw new ShapeError(`Wan VAE: ${what} ${fmtShape(z.shape)} is empty`);
  }

  /** conv1(encoder(x)) for one piece of a stream (or a whole clip without a cache). */
  encodeChunk(x: Tensor, cache: FeatureCache | null): Tensor {
    return this.conv1.forward(this.encoder.forward(x, cache));
  }

  /** decoder(conv2(z)) for one piece of a stream. */
  decodeChunk(z: Tensor, cache: FeatureCache | null): Tensor {
    return this.decoder.forward(this.conv2.forward(z), cache);
  }

  /** conv1's output (N, 2*z_dim, T', H/8, W/8) for a whole clip of 1 + 4k frames: mu then log_var. */
  encodeMoments(x: Tensor, opts: WanVaeStreamOptions = {}): Tensor {
    this.checkVideo(x);
    this.latentFrames(x.shape[2]!);
    // Tiled, the whole clip goes tile by tile (each tile streamed over all its frames with one cache, then dropped):
    // the same numbers as the tiled stream, with one tile's state alive instead of every tile's.
    const tiling = resolveWanVaeTiling(this.config, 'encode', x.shape[3]!, x.shape[4]!, opts.chunk ?? this.factors.temporal, opts);
    if (tiling) return wholeClipTiled('encode', x, tiling, this.factors.spatial, (xt) => this.encodeMoments(xt, { chunk: opts.chunk }));
    const s = new WanVaeEncodeStream(this, opts);
    const out = s.push(x);
    s.finish();
    return out!;
  }

  /** The raw latent mean: `WanVAE_.encode(x)[0]`. */
  encodeMu(x: Tensor, opts: WanVaeStreamOptions = {}): Tensor {
    return this.splitMoments(this.encodeMoments(x, opts)).mu;
  }

  /** The normalised latent the DiT sees: (mu - mean) * (1 / std), as `WanVAE.encode`. */
  encode(x: Tensor, opts: WanVaeStreamOptions = {}): Tensor {
    return this.normalize(this.encodeMu(x, opts));
  }

  splitMoments(m: Tensor): { mu: Tensor; logVar: Tensor } {
    const z = this.zDim;
    return { mu: ops.contiguous(ops.slice(m, 1, 0, z)), logVar: ops.contiguous(ops.slice(m, 1, z, 2 * z)) };
  }

  normalize(mu: Tensor): Tensor {
    return noGrad(() => ops.mul(ops.sub(mu, this.mean), this.invStd));
  }

  /** latent / (1 / std) + mean, as `WanVAE_.decode(z, scale)` begins. */
  denormalize(latent: Tensor): Tensor {
    return noGrad(() => ops.add(ops.div(latent, this.invStd), this.mean));
  }

  /** Decoder output for raw latents (not normalised), unclamped: `WanVAE_.decode(z)`. */
  decodeRaw(z: Tensor, opts: WanVaeStreamOptions = {}): Tensor {
    this.checkLatent(z);
    const f = this.factors;
    const tiling = resolveWanVaeTiling(this.config, 'decode', z.shape[3]! * f.spatial, z.shape[4]! * f.spatial, (opts.chunk ?? 1) * f.decoderTemporal, opts);
    if (tiling) return wholeClipTiled('decode', z, tiling, f.spatial, (zt) => this.decodeRaw(zt, { chunk: opts.chunk }));
    const s = new WanVaeDecodeStream(this, opts);
    const out = s.push(z);
    s.finish();
    return out;
  }

  /** Pixels in [-1, 1] for normalised latents: `WanVAE.decode`. */
  decode(latent: Tensor, opts: WanVaeStreamOptions = {}): Tensor {
    return this.clampPixels(this.decodeRaw(this.denormalize(latent), opts));
  }

  /** The clamp to [-1, 1] that `WanVAE.decode` applies to the decoder output. */
  clampPixels(x: Tensor): Tensor {
    return noGrad(() => ops.clamp(x, -1, 1));
  }

  encodeStream(opts: WanVaeStreamOptions = {}): WanVaeEncodeStream {
    return new WanVaeEncodeStream(this, opts);
  }

  decodeStream(opts: WanVaeStreamOptions = {}): WanVaeDecodeStream {
    return new WanVaeDecodeStream(this, opts);
  }
}

function positiveChunk(v: number | undefined, dflt: number, multiple: number, what: string): number {
  const c = v ?? dflt;
  if (!Number.isInteger(c) || c < 1 || c % multiple !== 0) throw new ValueError(`${what} must be a positive multiple of ${multiple}, got ${c}`);
  return c;
}

/**
 * Encodes a clip pushed in pieces of any size: frame 0 alone, then every complete group of `temporal` frames (up to
 * `chunk` at a time) as soon as it has arrived; each push returns the moments of the latent frames it completed
 * (null when none). finish() checks that the frames added up to 1 + 4k. Equal to the whole-clip pass.
 */
export class WanVaeEncodeStream {
  private runner: WanVaeStepRunner | null = null;
  private pending: Tensor | null = null;
  private pos = 0;
  private started = false;
  private framesIn = 0;
  private shape: number[] | null = null;
  private readonly chunk: number;
  private done = false;

  constructor(
    readonly model: WanVAE,
    private readonly opts: WanVaeStreamOptions = {},
  ) {
    const f = model.factors.temporal;
    this.chunk = positiveChunk(opts.chunk, f, f, 'Wan VAE encode chunk (frames)');
  }

  get frames(): number {
    return this.framesIn;
  }

  /** Bytes of layer state carried to the next piece, all tiles together (bounded: it does not grow with length). */
  get cacheBytes(): number {
    return this.runner?.bytes() ?? 0;
  }

  /** The spatial tiling in use (null: untiled), known after the first push. */
  get tiling(): WanVaeTiling | null {
    return this.runner?.tiling ?? null;
  }

  push(x: Tensor): Tensor | null {
    if (this.done) throw new ValueError('Wan VAE encode stream: push after finish');
    this.model.checkVideo(x, 'video piece');
    const [N, , , H, W] = x.shape as [number, number, number, number, number];
    if (this.shape && (this.shape[0] !== N || this.shape[1] !== H || this.shape[2] !== W))
      throw new ShapeError(`Wan VAE encode stream: piece ${fmtShape(x.shape)} does not match the earlier pieces' batch and size [${this.shape.join(', ')}]`);
    this.shape = [N, H, W];
    this.runner ??= new WanVaeStepRunner(
      (p, c) => this.model.encodeChunk(p, c),
      'encode',
      this.model.factors.spatial,
      resolveWanVaeTiling(this.model.config, 'encode', H, W, this.chunk, this.opts),
    );
    this.framesIn += x.shape[2]!;
    // frames not yet encoded: `pending` from frame `pos` on (views; only a remainder is copied, once per push)
    if (this.pending && this.pos < frames(this.pending)) this.pending = ops.cat([ops.slice(this.pending, 2, this.pos, frames(this.pending)), x], 2);
    else this.pending = x;
    this.pos = 0;
    const f = this.model.factors.temporal;
    const outs: Tensor[] = [];
    noGrad(() => {
      const src = this.pending!;
      const T = frames(src);
      while (this.pos < T) {
        const have = T - this.pos;
        const take = !this.started ? 1 : Math.min(this.chunk, Math.floor(have / f) * f);
        if (take < 1) break;
        const piece = take === T ? src : ops.contiguous(ops.slice(src, 2, this.pos, this.pos + take));
        this.pos += take;
        this.started = true;
        outs.push(this.runner!.run(piece));
      }
    });
    if (this.pos >= frames(this.pending)) this.pending = null;
    if (outs.length === 0) return null;
    return outs.length === 1 ? outs[0]! : ops.cat(outs, 2);
  }

  /** Checks the frame count (1 + 4k) and releases the caches. */
  finish(): void {
    this.done = true;
    this.runner?.clear();
    const left = this.pending ? frames(this.pending) - this.pos : 0;
    this.pending = null;
    if (this.framesIn === 0) throw new ValueError('Wan VAE encode stream: no frames were pushed');
    if (left) this.model.latentFrames(this.framesIn); // throws, naming the valid counts
  }
}

/**
 * Decodes raw latents pushed in pieces of any size, `chunk` latent frames per internal step (default 1, as the
 * reference); each push returns the pixels of the frames it completed (the first latent gives 1 frame, each later
 * one 4). Equal to the whole-clip pass.
 */
export class WanVaeDecodeStream {
  private runner: WanVaeStepRunner | null = null;
  private readonly chunk: number;
  private shape: number[] | null = null;
  private latentsIn = 0;
  private done = false;

  constructor(
    readonly model: WanVAE,
    private readonly opts: WanVaeStreamOptions = {},
  ) {
    this.chunk = positiveChunk(opts.chunk, 1, 1, 'Wan VAE decode chunk (latent frames)');
  }

  get latents(): number {
    return this.latentsIn;
  }

  /** Bytes of layer state carried to the next piece, all tiles together (bounded: it does not grow with length). */
  get cacheBytes(): number {
    return this.runner?.bytes() ?? 0;
  }

  /** The spatial tiling in use (null: untiled; tile size in output pixels), known after the first push. */
  get tiling(): WanVaeTiling | null {
    return this.runner?.tiling ?? null;
  }

  push(z: Tensor): Tensor {
    if (this.done) throw new ValueError('Wan VAE decode stream: push after finish');
    this.model.checkLatent(z, 'latent piece');
    const [N, , T, H, W] = z.shape as [number, number, number, number, number];
    if (this.shape && (this.shape[0] !== N || this.shape[1] !== H || this.shape[2] !== W))
      throw new ShapeError(`Wan VAE decode stream: piece ${fmtShape(z.shape)} does not match the earlier pieces' batch and size [${this.shape.join(', ')}]`);
    this.shape = [N, H, W];
    const s = this.model.factors.spatial;
    this.runner ??= new WanVaeStepRunner(
      (p, c) => this.model.decodeChunk(p, c),
      'decode',
      s,
      resolveWanVaeTiling(this.model.config, 'decode', H * s, W * s, this.chunk * this.model.factors.decoderTemporal, this.opts),
    );
    this.latentsIn += T;
    const outs: Tensor[] = [];
    noGrad(() => {
      for (let t = 0; t < T; t += this.chunk) {
        const e = Math.min(T, t + this.chunk);
        const piece = t === 0 && e === T ? z : ops.contiguous(ops.slice(z, 2, t, e));
        outs.push(this.runner!.run(piece));
      }
    });
    return outs.length === 1 ? outs[0]! : ops.cat(outs, 2);
  }

  finish(): void {
    this.done = true;
    this.runner?.clear();
  }
}
