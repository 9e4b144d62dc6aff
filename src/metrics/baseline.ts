/**
 * The equal-budget resampling baseline for a video autoencoder: keep as many values per clip as the latent has, by
 * shrinking the video (spatially with antialiased bicubic, and optionally in time), then grow it back and measure
 * PSNR / SSIM with the project's metrics (uint8 frames, per-frame, averaged; see metrics.ts).
 *
 * Resampling follows PyTorch 1.13's `F.interpolate` exactly (up to float rounding; this code accumulates in float64):
 *
 * - `bicubicResize(..., { antialias: false })` = `mode='bicubic', align_corners=False`: source coordinate
 *   (i + 0.5)·in/out − 0.5, Keys cubic with A = −0.75, the four taps clamped to the border.
 * - `bicubicResize(..., { antialias: true })` = `mode='bicubic', antialias=True` (PIL's scheme): centre (i + 0.5)·s
 *   with s = in/out, support 2·max(s, 1), taps trunc(centre ± support + 0.5) clipped to the image, weights
 *   cubic((j − centre + 0.5) / max(s, 1)) with A = −0.5 (torch uses PIL's A for the antialiased kernel), normalised
 *   to sum 1. This is the low-pass downsampler; for upsampling use antialias: false.
 * - `linearResizeTime` = `mode='linear', align_corners=False` along time: source (i + 0.5)·in/out − 0.5 clamped at 0,
 *   two taps, the upper one clamped to the last frame. Used to bring the frames back.
 * - `areaResizeTime` = `mode='area'` (adaptive average pooling) along time: output frame i averages input frames
 *   floor(i·T/n) .. ceil((i+1)·T/n) − 1. When T is a multiple of the factor this is the plain mean of each group of
 *   tf frames.
 *
 * Temporal downsampling in the baseline: `linearResizeTime` by default (what torch `mode='trilinear'` does in time;
 * it samples at tf·i + (tf−1)/2, i.e. the mean of the two middle frames of each group for even tf, the same as 'area'
 * for tf = 2), or `areaResizeTime` with `temporalDown: 'area'` (mean of each whole group of tf frames). Linear is the
 * default because it gives the baseline the higher PSNR: on six clips128 clips it scored the same as area or up to
 * 0.4 dB higher at tf 4 and 8 (area's wider box plus the linear way back up blurs motion more; SSIM is mixed, within
 * ±0.003), and it reproduces the torch trilinear measurement.
 *
 * Layouts: `bicubicResize` takes C planes of H×W (row-major, plane after plane); the time resizers take T frames of
 * `frameSize` values each, frame after frame, and resample every value position independently.
 */
import { ShapeError, ValueError } from '../errors.js';
import { MetricsAccumulator } from './metrics.js';

/** Keys' cubic coefficient of torch's plain bicubic (OpenCV's). */
export const BICUBIC_A = -0.75;
/** The coefficient torch uses for antialiased bicubic (PIL's). */
export const BICUBIC_AA_A = -0.5;

function checkPosInt(v: number, name: string, what: string): void {
  if (!Number.isInteger(v) || v < 1) throw new ValueError(`${what}: ${name} must be a positive integer, got ${v}`);
}

/** Keys cubic convolution kernel with coefficient a, at distance x. */
function cubicKernel(x: number, a: number): number {
  const t = Math.abs(x);
  if (t <= 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/**
 * Resampling of one axis as a sparse matrix: output i = Σ_k w[i·taps + k] · input[idx[i·taps + k]]. Unused taps have
 * weight 0 and index 0.
 */
interface AxisWeights {
  taps: number;
  idx: Int32Array;
  w: Float64Array;
}

function identityWeights(n: number): AxisWeights {
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  return { taps: 1, idx, w: new Float64Array(n).fill(1) };
}

/** torch's upsample_bicubic2d (align_corners=False) weights along one axis. */
function cubicAxisWeights(inSize: number, outSize: number): AxisWeights {
  if (inSize === outSize) return identityWeights(outSize);
  const scale = inSize / outSize;
  const taps = 4;
  const idx = new Int32Array(outSize * taps);
  const w = new Float64Array(outSize * taps);
  const A = BICUBIC_A;
  for (let i = 0; i < outSize; i++) {
    const src = scale * (i + 0.5) - 0.5;
    const x0 = Math.floor(src);
    const t = src - x0;
    const ws = [cubicKernel(t + 1, A), cubicKernel(t, A), cubicKernel(1 - t, A), cubicKernel(2 - t, A)];
    for (let k = 0; k < taps; k++) {
      const j = Math.min(Math.max(x0 - 1 + k, 0), inSize - 1);
      idx[i * taps + k] = j;
      w[i * taps + k] = ws[k]!;
    }
  }
  return { taps, idx, w };
}

/** torch's antialiased bicubic (PIL-style) weights along one axis. */
function cubicAaAxisWeights(inSize: number, outSize: number): AxisWeights {
  if (inSize === outSize) return identityWeights(outSize);
  const scale = inSize / outSize;
  const support = scale >= 1 ? 2 * scale : 2;
  const invscale = scale >= 1 ? 1 / scale : 1;
  const taps = Math.ceil(support) * 2 + 1;
  const idx = new Int32Array(outSize * taps);
  const w = new Float64Array(outSize * taps);
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xsize = Math.min(Math.min(Math.trunc(center + support + 0.5), inSize) - xmin, taps);
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      const v = cubicKernel((j + xmin - center + 0.5) * invscale, BICUBIC_AA_A);
      w[i * taps + j] = v;
      idx[i * taps + j] = xmin + j;
      total += v;
    }
    if (total !== 0) for (let j = 0; j < xsize; j++) w[i * taps + j]! /= total;
  }
  return { taps, idx, w };
}

export interface BicubicOptions {
  /** torch's `antialias=True` (for downsampling); default false (plain bicubic, for upsampling). */
  antialias?: boolean;
}

/**
 * Resizes C planes of H×W (one after the other, row-major) to outH×outW like torch
 * `F.interpolate(x, size=(outH, outW), mode='bicubic', align_corners=False, antialias=opts.antialias)`.
 * Separable: rows first, then columns, accumulated in float64. No clamping (bicubic overshoots, as torch's does).
 */
export function bicubicResize(src: Float32Array | Float64Array, C: number, H: number, W: number, outH: number, outW: number, opts: BicubicOptions = {}): Float32Array {
  const what = 'bicubicResize';
  for (const [v, n] of [[C, 'C'], [H, 'H'], [W, 'W'], [outH, 'outH'], [outW, 'outW']] as const) checkPosInt(v, n, what);
  if (src.length !== C * H * W) throw new ShapeError(`${what}: source has ${src.length} values, expected C·H·W = ${C}·${H}·${W} = ${C * H * W}`);
  const out = new Float32Array(C * outH * outW);
  if (H === outH && W === outW) {
    out.set(src);
    return out;
  }
  const make = opts.antialias ? cubicAaAxisWeights : cubicAxisWeights;
  const wx = make(W, outW);
  const wy = make(H, outH);
  const tmp = new Float64Array(H * outW);
  for (let c = 0; c < C; c++) {
    const base = c * H * W;
    // horizontal pass: H rows of W -> H rows of outW
    for (let y = 0; y < H; y++) {
      const row = base + y * W;
      for (let x = 0; x < outW; x++) {
        let s = 0;
        const o = x * wx.taps;
        for (let k = 0; k < wx.taps; k++) s += wx.w[o + k]! * src[row + wx.idx[o + k]!]!;
        tmp[y * outW + x] = s;
      }
    }
    // vertical pass
    const ob = c * outH * outW;
    for (let y = 0; y < outH; y++) {
      const o = y * wy.taps;
      for (let x = 0; x < outW; x++) {
        let s = 0;
        for (let k = 0; k < wy.taps; k++) s += wy.w[o + k]! * tmp[wy.idx[o + k]! * outW + x]!;
        out[ob + y * outW + x] = s;
      }
    }
  }
  return out;
}

function checkTime(src: Float32Array | Float64Array, T: number, frameSize: number, outT: number, what: string): void {
  checkPosInt(T, 'T', what);
  checkPosInt(frameSize, 'frameSize', what);
  checkPosInt(outT, 'outT', what);
  if (src.length !== T * frameSize) throw new ShapeError(`${what}: source has ${src.length} values, expected T·frameSize = ${T}·${frameSize} = ${T * frameSize}`);
}

/**
 * T frames of `frameSize` values (frame after frame) -> outT frames, like torch
 * `F.interpolate(x, size=outT, mode='linear', align_corners=False)` along time (no antialiasing).
 */
export function linearResizeTime(src: Float32Array | Float64Array, T: number, frameSize: number, outT: number): Float32Array {
  checkTime(src, T, frameSize, outT, 'linearResizeTime');
  const out = new Float32Array(outT * frameSize);
  if (T === outT) {
    out.set(src);
    return out;
  }
  const scale = T / outT;
  for (let i = 0; i < outT; i++) {
    const s = Math.max(scale * (i + 0.5) - 0.5, 0);
    const i0 = Math.floor(s);
    const i1 = i0 < T - 1 ? i0 + 1 : i0;
    const l1 = s - i0;
    const l0 = 1 - l1;
    const a = i0 * frameSize;
    const b = i1 * frameSize;
    const o = i * frameSize;
    for (let p = 0; p < frameSize; p++) out[o + p] = l0 * src[a + p]! + l1 * src[b + p]!;
  }
  return out;
}

/**
 * T frames of `frameSize` values -> outT frames, like torch `F.interpolate(x, size=outT, mode='area')` along time
 * (adaptive average pooling: frame i is the mean of frames floor(i·T/outT) .. ceil((i+1)·T/outT) − 1).
 */
export function areaResizeTime(src: Float32Array | Float64Array, T: number, frameSize: number, outT: number): Float32Array {
  checkTime(src, T, frameSize, outT, 'areaResizeTime');
  const out = new Float32Array(outT * frameSize);
  const acc = new Float64Array(frameSize);
  for (let i = 0; i < outT; i++) {
    const start = Math.floor((i * T) / outT);
    const end = Math.ceil(((i + 1) * T) / outT);
    acc.fill(0);
    for (let t = start; t < end; t++) {
      const a = t * frameSize;
      for (let p = 0; p < frameSize; p++) acc[p]! += src[a + p]!;
    }
    const n = end - start;
    const o = i * frameSize;
    for (let p = 0; p < frameSize; p++) out[o + p] = acc[p]! / n;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------------------------
// budget

/**
 * Values in the latent of a clip of `frames` × height × width: latentChannels · latentFrames · ⌈H/sf⌉ · ⌈W/sf⌉.
 * The encoder pads time by repeating the last frame up to a whole chunk (`chunkFrames`, 40 pixel frames for the
 * chunk-causal presets) or, for designs without chunks, up to a multiple of the temporal factor, and then divides by
 * the temporal factor; so latentFrames = ⌈T / chunk⌉ · chunk / tf (T/4 when T is a multiple of the chunk), and
 * ⌈T / tf⌉ when `chunkFrames` is omitted. Spatial sizes that are not multiples of sf are padded (padSpatial).
 */
export function latentBudget(
  frames: number,
  height: number,
  width: number,
  spatialFactor: number,
  temporalFactor: number,
  latentChannels: number,
  chunkFrames?: number | null,
): number {
  const what = 'latentBudget';
  for (const [v, n] of [[frames, 'frames'], [height, 'height'], [width, 'width'], [spatialFactor, 'spatialFactor'], [temporalFactor, 'temporalFactor'], [latentChannels, 'latentChannels']] as const)
    checkPosInt(v, n, what);
  const mult = chunkFrames ?? temporalFactor;
  checkPosInt(mult, 'chunkFrames', what);
  if (mult % temporalFactor !== 0) throw new ValueError(`${what}: chunkFrames ${mult} is not a multiple of the temporal factor ${temporalFactor}`);
  const latentFrames = (Math.ceil(frames / mult) * mult) / temporalFactor;
  return latentChannels * latentFrames * Math.ceil(height / spatialFactor) * Math.ceil(width / spatialFactor);
}

/**
 * The largest h×w (by pixel count) with h·w <= maxPixels, 1 <= h <= H, 1 <= w <= W, and w = round(h·W/H) (clamped to
 * [1, W]), so h/w follows H/W as closely as integers allow. Null when maxPixels < 1.
 */
export function fitSpatialSize(H: number, W: number, maxPixels: number): { h: number; w: number } | null {
  checkPosInt(H, 'H', 'fitSpatialSize');
  checkPosInt(W, 'W', 'fitSpatialSize');
  let best: { h: number; w: number } | null = null;
  for (let h = 1; h <= H; h++) {
    const w = Math.min(W, Math.max(1, Math.round((h * W) / H)));
    if (h * w > maxPixels) continue;
    if (!best || h * w > best.h * best.w) best = { h, w };
  }
  return best;
}

// ------------------------------------------------------------------------------------------------------------------
// the baseline

export interface BaselineCandidate {
  /** temporal factor: ⌈T/tf⌉ frames kept */
  tf: number;
  /** frames kept, ⌈T/tf⌉ */
  keptFrames: number;
  /** spatial size kept */
  h: number;
  w: number;
  /** values kept: 3 · ⌈T/tf⌉ · h · w (<= the budget) */
  values: number;
  /** mean PSNR over frames (+Infinity when every frame is reproduced exactly), dB */
  psnr: number;
  /** mean SSIM over frames (NaN when ssim: false) */
  ssim: number;
}

export interface BaselineResult {
  /** the candidate with the highest PSNR, with its reconstruction (unless keepFrames: false) */
  best: BaselineCandidate & { frames: Uint8Array[] };
  /** every candidate tried, in the order of temporalFactors (factors whose budget allows no pixel are left out) */
  all: BaselineCandidate[];
}

export interface BaselineOptions {
  /** temporal factors to try (default [1, 2, 4, 8]) */
  temporalFactors?: number[];
  /** temporal downsampling: 'linear' (default; torch mode='linear'/'trilinear') or 'area' (mean of each group of tf frames) */
  temporalDown?: 'area' | 'linear';
  /** compute SSIM (default true); it is the slow part */
  ssim?: boolean;
  /** keep the best candidate's frames in the result (default true) */
  keepFrames?: boolean;
}

/** Interleaved HxWx3 uint8 -> 3 planes of H×W, float. */
function frameToPlanes(f: Uint8Array, hw: number): Float32Array {
  const p = new Float32Array(3 * hw);
  for (let i = 0, s = 0; i < hw; i++, s += 3) {
    p[i] = f[s]!;
    p[hw + i] = f[s + 1]!;
    p[2 * hw + i] = f[s + 2]!;
  }
  return p;
}

/** 3 planes of H×W (0..255 scale) -> interleaved uint8, clamped and rounded half up. */
function planesToFrame(p: Float32Array, hw: number): Uint8Array {
  const f = new Uint8Array(3 * hw);
  for (let c = 0; c < 3; c++) {
    const b = c * hw;
    for (let i = 0; i < hw; i++) {
      const v = p[b + i]!;
      if (Number.isNaN(v)) throw new ValueError(`equalBudgetBaseline: NaN in the reconstruction (channel ${c}, pixel ${i})`);
      f[i * 3 + c] = Math.round(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
  return f;
}

/**
 * Reconstruction of a clip through a (tf, h, w) bottleneck: per frame antialiased bicubic down to h×w, temporal
 * down to ⌈T/tf⌉ frames, linear back up to T frames, plain bicubic up to H×W, clamp and round to uint8.
 */
export function resampleThroughBottleneck(
  frames: readonly Uint8Array[],
  height: number,
  width: number,
  tf: number,
  h: number,
  w: number,
  temporalDown: 'area' | 'linear' = 'linear',
): Uint8Array[] {
  const what = 'resampleThroughBottleneck';
  checkFrames(frames, height, width, what);
  checkPosInt(tf, 'tf', what);
  checkPosInt(h, 'h', what);
  checkPosInt(w, 'w', what);
  const T = frames.length;
  const hw = height * width;
  const small = 3 * h * w;
  let lo: Float32Array = new Float32Array(T * small);
  for (let t = 0; t < T; t++) lo.set(bicubicResize(frameToPlanes(frames[t]!, hw), 3, height, width, h, w, { antialias: true }), t * small);
  const Tt = Math.ceil(T / tf);
  if (Tt !== T) {
    const down = temporalDown === 'linear' ? linearResizeTime(lo, T, small, Tt) : areaResizeTime(lo, T, small, Tt);
    lo = linearResizeTime(down, Tt, small, T);
  }
  const out: Uint8Array[] = [];
  for (let t = 0; t < T; t++) out.push(planesToFrame(bicubicResize(lo.subarray(t * small, (t + 1) * small), 3, h, w, height, width), hw));
  return out;
}

function checkFrames(frames: readonly Uint8Array[], height: number, width: number, what: string): void {
  checkPosInt(height, 'height', what);
  checkPosInt(width, 'width', what);
  if (!Array.isArray(frames) || frames.length === 0) throw new ValueError(`${what}: need at least one frame`);
  const n = height * width * 3;
  frames.forEach((f, i) => {
    if (!(f instanceof Uint8Array)) throw new ShapeError(`${what}: frame ${i} is not a Uint8Array (HxWx3 RGB)`);
    if (f.length !== n) throw new ShapeError(`${what}: frame ${i} has ${f.length} bytes, expected ${height}x${width}x3 = ${n}`);
  });
}

/**
 * The equal-budget baseline of one clip: for each temporal factor tf, the largest aspect-preserving h×w with
 * 3·⌈T/tf⌉·h·w <= budgetValues, reconstructed by `resampleThroughBottleneck` and scored with the project's metrics
 * (per-frame PSNR / SSIM on uint8, averaged). Returns the best candidate by PSNR and all candidates.
 */
export function equalBudgetBaseline(
  frames: readonly Uint8Array[],
  height: number,
  width: number,
  budgetValues: number,
  opts: BaselineOptions = {},
): BaselineResult {
  const what = 'equalBudgetBaseline';
  checkFrames(frames, height, width, what);
  if (!(Number.isFinite(budgetValues) && budgetValues > 0)) throw new ValueError(`${what}: budgetValues must be a positive number, got ${budgetValues}`);
  const factors = opts.temporalFactors ?? [1, 2, 4, 8];
  if (factors.length === 0) throw new ValueError(`${what}: temporalFactors is empty`);
  for (const tf of factors) checkPosInt(tf, 'temporal factor', what);
  const temporalDown = opts.temporalDown ?? 'linear';
  if (temporalDown !== 'area' && temporalDown !== 'linear') throw new ValueError(`${what}: temporalDown must be 'area' or 'linear', got '${temporalDown}'`);
  const T = frames.length;
  const all: BaselineCandidate[] = [];
  let best: (BaselineCandidate & { frames: Uint8Array[] }) | null = null;
  for (const tf of factors) {
    const Tt = Math.ceil(T / tf);
    const size = fitSpatialSize(height, width, Math.floor(budgetValues / (3 * Tt)));
    if (!size) continue;
    const recon = resampleThroughBottleneck(frames, height, width, tf, size.h, size.w, temporalDown);
    const acc = new MetricsAccumulator({ height, width, ssim: opts.ssim ?? true });
    for (let t = 0; t < T; t++) acc.add(frames[t]!, recon[t]!);
    const m = acc.result();
    const cand: BaselineCandidate = { tf, keptFrames: Tt, h: size.h, w: size.w, values: 3 * Tt * size.h * size.w, psnr: m.psnr.mean, ssim: m.ssim.mean };
    all.push(cand);
    if (!best || cand.psnr > best.psnr) best = { ...cand, frames: opts.keepFrames === false ? [] : recon };
  }
  if (!best) throw new ValueError(`${what}: a budget of ${budgetValues} values cannot keep even one 1x1 RGB frame for any temporal factor in [${factors.join(', ')}] (T = ${T})`);
  return { best, all };
}
