/**
 * Spatial tiling for the Wan VAE's streams, so that the activation memory of one step is bounded by a tile rather
 * than by the frame.
 *
 * The cutting, blending and stitching are DC-AE-V's model-independent `tiledEncode` / `tiledDecode` / `chooseTile`
 * (src/models/dcaev/tiling.ts: square pixel tiles every round((1 - overlap) * tile) pixels, linear ramps over the
 * overlap, the top-left stride x stride block of every tile kept). What is Wan-specific lives here:
 * - Streams: every spatial tile has its own FeatureCache, and each stream step (frame 0, then every group of 4
 *   frames; one latent at a time in the decoder) runs all tiles of that step, tile k with cache k. That is the
 *   whole-clip computation of each tile column (its own causal history over time) evaluated step by step, so a tiled
 *   stream in pieces of any size equals tiling the whole clip at once. Alive: one tile's activations, the step's
 *   stitched output, the blend strips, and every tile's carried state (two frames of each causal conv's input, over
 *   the frame area times (tile / stride)^2: it is the frame-sized part that time-streaming cannot drop).
 * - Whole clips (encodeMoments / decodeRaw / encode / decode with a tile): tile-outer, each tile streamed over the
 *   whole clip with one cache that is dropped before the next tile (wholeClipTiled), so only one tile's activations
 *   and state are alive besides the clip's output. Same numbers as the stream.
 * - Encode tiles are cut in pixel space and the moments (mu and log_var) blended in latent space; decode tiles are cut
 *   in latent space (tile / 8 latents) and the pixels blended. The tile size is always given in pixels.
 * - The memory estimate for 'auto' (wanVaePeakBytesPerPixelFrame) follows the config's layer plan.
 *
 * Tiling is an approximation: a tile's convolutions see zeros beyond its edge instead of the neighbour's pixels (the
 * receptive field of the encoder is far wider than a 25% overlap), and any attention block sees only the tile. The
 * blend hides the seams. The stated bound (docs/wan-vae.md): the blend is convex, so a tiled value lies between the
 * covering tiles' own results and its error is at most the worst of theirs; a tile's own result is exact (attention
 * aside) where the encoder's convs do not reach its inner edges (wanVaeEncoderReach); the rest is measured there.
 */
import { freemem } from 'node:os';
import { ValueError } from '../../errors.js';
import { type FeatureCache, featureCacheBytes } from '../../nn/conv.js';
import type { Tensor } from '../../tensor/tensor.js';
import { chooseTile, tileGeometry, tiledDecode, tiledEncode } from '../dcaev/tiling.js';
import { type WanVaeConfig, decoderPlan, encoderPlan, stageDims, wanVaeFactors } from './config.js';

/** A resolved spatial tiling: pixel tile size (a multiple of 8) and overlap fraction (default 0.25). */
export interface WanVaeTiling {
  size: number;
  overlap: number;
}

export interface WanVaeTilingOptions {
  /**
   * Spatial tiling: a pixel tile size (a multiple of the spatial factor, 8), 'auto' (tiles only when one step of the
   * whole frame would exceed `memoryBudgetBytes`, the largest tile that fits otherwise), or null / absent (untiled).
   */
  tile?: number | 'auto' | null;
  /** Fraction of a tile shared with its neighbour, in [0, 1) (default 0.25, as DC-AE-V and diffusers' Wan VAE). */
  overlap?: number;
  /**
   * Budget for one step's activations plus one tile's carried state under 'auto' (default: half of the free memory
   * when the stream starts). A tiled *stream* also carries every other tile's state (wanVaeCacheBytesPerPixel).
   */
  memoryBudgetBytes?: number;
}

export const WAN_VAE_DEFAULT_OVERLAP = 0.25;

/**
 * Taken off the budget before choosing a tile: what does not scale with the tile (the conv library's workspaces and
 * blocked copies, the clip's input and output, blend strips, allocator slack). Measured 100-200 MB above the per-tile
 * estimate on the released config (docs/wan-vae.md).
 */
export const WAN_VAE_FIXED_OVERHEAD_BYTES = 256 * 2 ** 20;

/**
 * Tensors of the widest layer alive at once during one step, counted in units of that layer's activation: the block
 * input (kept for the residual), the RMS-norm and SiLU outputs, the conv input with the two cached frames in front,
 * the conv output, the conv library's blocked-layout copies of its input and output (oneDNN reorders), the residual
 * sum, and allowance for the allocator keeping freed blocks. Checked against measured peak RSS in docs/wan-vae.md
 * (the encoder needed more than 8).
 */
const LIVE_TENSORS = 10;

/**
 * Peak live activation bytes per pixel per frame of one step, for the encoder or the decoder: the widest feature map
 * relative to the pixel grid and the step's pixel frames (channels / (pixels per position * frames per position)),
 * times LIVE_TENSORS float32 copies. Walks the layer plan, including the decoder's upsample, whose nearest-neighbour
 * doubling produces the input width at the output resolution before its conv halves it.
 */
export function wanVaePeakBytesPerPixelFrame(config: WanVaeConfig, side: 'encode' | 'decode'): number {
  const dims = stageDims(config);
  const f = wanVaeFactors(config);
  let worst = 0;
  const see = (channels: number, area: number, frames: number) => {
    worst = Math.max(worst, channels / (area * frames));
  };
  if (side === 'encode') {
    // area: pixels per feature position; frames: pixel frames per feature frame
    let area = 1;
    let frames = 1;
    see(dims.enc[0]!, area, frames);
    for (const e of encoderPlan(config)) {
      const b = e.block;
      if (b.kind === 'res') see(Math.max(b.cin, b.cout), area, frames);
      else if (b.kind === 'attn') see(3 * b.c, area, frames); // to_qkv's output
      else {
        see(b.c, area, frames);
        area *= 4;
        if (b.mode === 'downsample3d') frames *= 2;
        see(b.c, area, frames);
      }
    }
    see(2 * config.z_dim, area, frames);
  } else {
    // the decoder starts at 1/spatial resolution and 1/decoderTemporal of the output frames
    let area = f.spatial * f.spatial;
    let frames = f.decoderTemporal;
    see(dims.dec[0]!, area, frames);
    for (const e of decoderPlan(config)) {
      const b = e.block;
      if (b.kind === 'res') see(Math.max(b.cin, b.cout), area, frames);
      else if (b.kind === 'attn') see(3 * b.c, area, frames);
      else {
        if (b.mode === 'upsample3d') {
          see(2 * b.c, area, frames); // time_conv's output, before it is interleaved into twice the frames
          frames /= 2;
        }
        area /= 4;
        see(b.c, area, frames); // the nearest-upsampled input, before the conv halves the width
      }
    }
  }
  return Math.ceil(worst * 4 * LIVE_TENSORS);
}

/**
 * Bytes per pixel of the state a stream carries between steps (FeatureCache: two frames of every causal conv's input,
 * the temporal resamplers' pending frames), independent of the step's length. A tiled stream holds this for every
 * tile, over the frame area times about (tile / stride)^2; a tiled whole-clip call for one tile at a time.
 */
export function wanVaeCacheBytesPerPixel(config: WanVaeConfig, side: 'encode' | 'decode'): number {
  const dims = stageDims(config);
  const f = wanVaeFactors(config);
  let ch = 0; // cached channel-frames per pixel
  const conv = (cin: number, area: number) => {
    ch += (2 * cin) / area;
  };
  if (side === 'encode') {
    let area = 1;
    conv(3, area);
    for (const e of encoderPlan(config)) {
      const b = e.block;
      if (b.kind === 'res') {
        conv(b.cin, area);
        conv(b.cout, area);
      } else if (b.kind === 'resample') {
        area *= 4;
        if (b.mode === 'downsample3d') conv(b.c, area);
      }
    }
    const top = dims.enc[dims.enc.length - 1]!;
    for (let i = 0; i < 5; i++) conv(top, area); // middle: two residual blocks; head
  } else {
    let area = f.spatial * f.spatial;
    conv(config.z_dim, area);
    for (let i = 0; i < 4; i++) conv(dims.dec[0]!, area); // middle
    for (const e of decoderPlan(config)) {
      const b = e.block;
      if (b.kind === 'res') {
        conv(b.cin, area);
        conv(b.cout, area);
      } else if (b.kind === 'resample') {
        if (b.mode === 'upsample3d') conv(b.c, area);
        area /= 4;
      }
    }
    conv(dims.dec[dims.dec.length - 1]!, area); // head
  }
  return Math.ceil(ch * 4);
}

/**
 * How far the encoder's convolutions reach: latent position q (pixels [f*q, f*q + f - 1] along H or W, f the spatial
 * factor) depends, through the convs, on pixels [f*q - before, f*q + f - 1 + after] of the input. Every 3x3 conv at
 * scale s (one feature = s pixels) widens the field by s on both sides; a spatial downsample (ZeroPad2d((0, 1, 0, 1)),
 * 3x3 stride 2) at scale s maps position j to inputs 2j..2j+2, which adds s after and nothing before; the RMS norms,
 * 1x1 convs and time_convs (kernel 1 in space) add nothing. The per-frame attention blocks are not counted: they see
 * the whole frame (or tile). Released config: before 101, after 108 pixels. Used to state which latents of a tile
 * can equal the untiled pass (docs/wan-vae.md, "Spatial tiling").
 */
export function wanVaeEncoderReach(config: WanVaeConfig): { before: number; after: number } {
  let s = 1;
  let conv3 = 0; // pixels added on both sides by the 3x3 convs
  let down = 0; // pixels added after by the downsamples
  conv3 += s; // encoder.conv1
  for (const e of encoderPlan(config)) {
    const b = e.block;
    if (b.kind === 'res') conv3 += 2 * s;
    else if (b.kind === 'resample') {
      down += s;
      s *= 2;
    }
  }
  conv3 += 2 * 2 * s + s; // middle: two residual blocks; head
  return { before: conv3, after: conv3 + down };
}

/**
 * Resolves tiling options for a stream side and a frame of height x width pixels whose steps take `stepFrames` pixel
 * frames (encode: the chunk; decode: decoderTemporal * latent chunk). null = untiled. Invalid tile / overlap values
 * get the geometry's errors (which name the valid choices).
 */
export function resolveWanVaeTiling(
  config: WanVaeConfig,
  side: 'encode' | 'decode',
  height: number,
  width: number,
  stepFrames: number,
  opts: WanVaeTilingOptions,
): WanVaeTiling | null {
  const t = opts.tile;
  if (t === undefined || t === null) return null;
  const overlap = opts.overlap ?? WAN_VAE_DEFAULT_OVERLAP;
  const factor = wanVaeFactors(config).spatial;
  const where = `Wan VAE ${side} tiling`;
  if (t === 'auto') {
    const total = opts.memoryBudgetBytes ?? Math.floor(freemem() / 2);
    if (!(typeof total === 'number' && total > WAN_VAE_FIXED_OVERHEAD_BYTES))
      throw new ValueError(
        `${where}: memory budget ${String(total)} bytes is too small: at least the fixed overhead of ${WAN_VAE_FIXED_OVERHEAD_BYTES} bytes plus one tile's activations is needed`,
      );
    const budget = total - WAN_VAE_FIXED_OVERHEAD_BYTES;
    // + 2: the cached frames every causal conv puts in front of the step. The carried state of one tile is spread
    // over the step's frames so that chooseTile's tile^2 * frames * perPixelFrame counts it once.
    const frames = stepFrames + 2;
    const size = chooseTile({
      height,
      width,
      frames,
      factor,
      peakBytesPerPixelFrame: wanVaePeakBytesPerPixelFrame(config, side) + wanVaeCacheBytesPerPixel(config, side) / frames,
      budgetBytes: budget,
      overlap,
    });
    return size === null ? null : { size, overlap };
  }
  if (typeof t !== 'number') throw new ValueError(`${where}: tile must be a number of pixels, 'auto' or null, got ${String(t)}`);
  tileGeometry(where, { tile: t, overlap, factor });
  return { size: t, overlap };
}

/**
 * A whole clip tiled tile by tile: `run` (the untiled whole-clip encode or decode, itself streamed over time) on each
 * tile in turn, results blended as in the streams. Blending acts on each (channel, frame) plane separately, so this
 * equals the tiled stream (step-outer) up to float rounding; but only one tile's activations and carried state are
 * alive at a time, besides the clip's output and the blend strips.
 */
export function wholeClipTiled(side: 'encode' | 'decode', x: Tensor, tiling: WanVaeTiling, factor: number, run: (t: Tensor) => Tensor): Tensor {
  const o = { tile: tiling.size, overlap: tiling.overlap, factor };
  return side === 'encode' ? tiledEncode(run, x, o) : tiledDecode(run, x, o);
}

/**
 * Runs one stream step untiled (cache 0) or tile by tile (tile k with cache k). The tile grid depends only on the
 * frame size, which a stream keeps fixed, so tile k is the same spatial window at every step.
 */
export class WanVaeStepRunner {
  private readonly caches: FeatureCache[] = [];

  constructor(
    private readonly step: (x: Tensor, cache: FeatureCache) => Tensor,
    private readonly side: 'encode' | 'decode',
    private readonly factor: number,
    readonly tiling: WanVaeTiling | null,
  ) {}

  run(x: Tensor): Tensor {
    if (!this.tiling) return this.step(x, this.cache(0));
    let k = 0;
    const fn = (t: Tensor) => this.step(t, this.cache(k++));
    const o = { tile: this.tiling.size, overlap: this.tiling.overlap, factor: this.factor };
    return this.side === 'encode' ? tiledEncode(fn, x, o) : tiledDecode(fn, x, o);
  }

  /** Number of spatial tiles (1 untiled; 0 before the first step). */
  get tiles(): number {
    return this.caches.length;
  }

  bytes(): number {
    return this.caches.reduce((n, c) => n + featureCacheBytes(c), 0);
  }

  clear(): void {
    for (const c of this.caches) c.clear();
    this.caches.length = 0;
  }

  private cache(k: number): FeatureCache {
    return (this.caches[k] ??= new Map());
  }
}
