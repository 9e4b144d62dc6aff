/**
 * Reconstruction metrics following the DC-AE-V evaluation protocol (spec §6.1): every metric is computed per frame
 * on uint8 RGB and then averaged over frames, so numbers are comparable with the reference trainer
 * (`staecore/trainer.py`, which flattens (B, 3, T, H, W) uint8 videos to B·T images before PSNR and SSIM).
 *
 * Frames are `Uint8Array`s of H·W·3 bytes, interleaved RGB, row-major (the layout decoders and PNG use).
 *
 * SSIM border convention. The reference builds `torchmetrics.image.StructuralSimilarityIndexMeasure(data_range=(0, 255))`
 * with torchmetrics unpinned. Since torchmetrics 1.4.2 (PR #2721, Sep 2024; the 2025 DC-Gen code postdates it) the
 * images are padded by (11-1)/2 = 5 pixels with torch `reflect` padding (mirror without repeating the edge pixel:
 * `d c b | a b c d`), filtered with a valid 11x11 Gaussian, and the SSIM map is averaged over the **whole H×W** map,
 * padded borders included. torchmetrics <= 1.4.1 cropped those 5-pixel borders before averaging, which is the same
 * as averaging only fully-inside windows (what skimage does with `gaussian_weights=True, use_sample_covariance=False`).
 * `border: 'reflect'` (the default) reproduces current torchmetrics; `border: 'crop'` the older figure. skimage's
 * own default (`use_sample_covariance=True`) additionally scales the variances by 121/120 and matches neither.
 *
 * The reference passes uint8 tensors; torchmetrics' `clamp(0.0, 255.0)` promotes them to float32, so it computes in
 * float32. This code filters in float64, so it agrees with it to float32 rounding (about 1e-6).
 */
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { quantizeClip } from '../io/video/frames.js';
import { Tensor } from '../tensor/tensor.js';
import { metricsAddon, unpackScores, type MetricsArgs } from './native_metrics.js';

/** torchmetrics' defaults; the Gaussian support int(3.5·σ + 0.5)·2 + 1 is 11 taps for σ = 1.5. */
export const SSIM_SIGMA = 1.5;
export const SSIM_K1 = 0.01;
export const SSIM_K2 = 0.03;
export const DATA_RANGE = 255;

export type SsimBorder = 'reflect' | 'crop';

export interface SsimOptions {
  /** 'reflect' (default): torchmetrics >= 1.4.2; 'crop': torchmetrics <= 1.4.1 / skimage without sample covariance. */
  border?: SsimBorder;
}

export interface MetricsResult {
  /** Frames added (all clips together). */
  frames: number;
  /**
   * `mean` is over frames with finite PSNR (identical frames give +Infinity and are left out, as in the protocol);
   * it is +Infinity when every frame was identical and NaN when there were no frames.
   */
  psnr: { mean: number; perFrame: number[]; infiniteFrames: number };
  ssim: { mean: number; perFrame: number[] };
  /**
   * Temporal error flicker, in uint8 units: for consecutive frames of one clip,
   * mean over pixels and channels of |(r_t − r_{t−1}) − (o_t − o_{t−1})|, which equals |e_t − e_{t−1}| with the
   * error e = r − o. 0 when the reconstruction error is static (a constant colour shift does not count); it grows
   * with flicker, jitter and chunk-boundary jumps the original does not have. `perPair[p]` belongs to the p-th
   * consecutive pair in the order added (pairs never span clips); `mean` is over all pairs, NaN when there are none.
   */
  temporal: { mean: number; perPair: number[] };
}

function checkDims(height: number, width: number, what: string): void {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height <= 0 || width <= 0) {
    throw new ValueError(`${what}: frame size must be positive integers, got ${height}x${width}`);
  }
}

function checkFrame(f: Uint8Array, height: number, width: number, what: string): void {
  if (!(f instanceof Uint8Array)) throw new ShapeError(`${what}: frames must be Uint8Array (HxWx3 RGB), got ${Object.prototype.toString.call(f)}`);
  if (f.length !== height * width * 3) {
    throw new ShapeError(`${what}: frame has ${f.length} bytes, expected ${height}x${width}x3 = ${height * width * 3}`);
  }
}

/** Sum of squared differences; integer-exact in float64 up to ~1.3e8 pixels. */
function sumSquaredDiff(a: Uint8Array, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    s += d * d;
  }
  return s;
}

/** Mean squared error over all pixels and channels, in uint8 units². */
export function mseFrame(orig: Uint8Array, recon: Uint8Array): number {
  if (orig.length !== recon.length) throw new ShapeError(`mseFrame: frames have ${orig.length} and ${recon.length} bytes`);
  if (orig.length === 0) throw new ShapeError('mseFrame: empty frames');
  return sumSquaredDiff(orig, recon) / orig.length;
}

/** 10·log10(255² / MSE); +Infinity for identical frames. */
export function psnrFrame(orig: Uint8Array, recon: Uint8Array): number {
  const mse = mseFrame(orig, recon);
  return mse === 0 ? Infinity : 10 * Math.log10((DATA_RANGE * DATA_RANGE) / mse);
}

/** Mean |(r_t − r_{t−1}) − (o_t − o_{t−1})| over pixels and channels (see MetricsResult.temporal). */
export function temporalPairError(origPrev: Uint8Array, origCur: Uint8Array, reconPrev: Uint8Array, reconCur: Uint8Array): number {
  const n = origCur.length;
  if (origPrev.length !== n || reconPrev.length !== n || reconCur.length !== n) {
    throw new ShapeError(`temporalPairError: frames have ${origPrev.length}, ${origCur.length}, ${reconPrev.length}, ${reconCur.length} bytes`);
  }
  if (n === 0) throw new ShapeError('temporalPairError: empty frames');
  let s = 0;
  for (let i = 0; i < n; i++) {
    const d = reconCur[i]! - reconPrev[i]! - (origCur[i]! - origPrev[i]!);
    s += d < 0 ? -d : d;
  }
  return s / n;
}

/** The normalised 1-D Gaussian torchmetrics uses (`_gaussian`): taps at −r..r, r = int(3.5σ + 0.5). */
export function gaussianTaps(sigma = SSIM_SIGMA): Float64Array {
  const r = Math.trunc(3.5 * sigma + 0.5);
  const g = new Float64Array(2 * r + 1);
  let sum = 0;
  for (let k = -r; k <= r; k++) {
    const v = Math.exp(-((k / sigma) ** 2) / 2);
    g[k + r] = v;
    sum += v;
  }
  for (let i = 0; i < g.length; i++) g[i]! /= sum;
  return g;
}

/** torch `reflect` padding index (no edge repeat); valid while the pad is smaller than the size. */
function reflectIndex(i: number, n: number): number {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

/**
 * SSIM over uint8 RGB frames of one size. Holds the scratch buffers, so one instance per stream avoids reallocating
 * five H·W float64 planes per frame.
 */
export class SsimComputer {
  readonly height: number;
  readonly width: number;
  readonly border: SsimBorder;
  private readonly g: Float64Array;
  private readonly r: number;
  // Horizontally filtered x, y, x², y², xy of one channel.
  private readonly hx: Float64Array;
  private readonly hy: Float64Array;
  private readonly hxx: Float64Array;
  private readonly hyy: Float64Array;
  private readonly hxy: Float64Array;
  // One padded source row per quantity, so the horizontal taps need no index arithmetic.
  private readonly px: Float64Array;
  private readonly py: Float64Array;
  private readonly pxx: Float64Array;
  private readonly pyy: Float64Array;
  private readonly pxy: Float64Array;
  // Vertical accumulators for one output row.
  private readonly ax: Float64Array;
  private readonly ay: Float64Array;
  private readonly axx: Float64Array;
  private readonly ayy: Float64Array;
  private readonly axy: Float64Array;

  constructor(height: number, width: number, opts: SsimOptions = {}) {
    checkDims(height, width, 'SsimComputer');
    this.height = height;
    this.width = width;
    this.border = opts.border ?? 'reflect';
    if (this.border !== 'reflect' && this.border !== 'crop') throw new ValueError(`SsimComputer: unknown border "${String(this.border)}" (use 'reflect' or 'crop')`);
    this.g = gaussianTaps(SSIM_SIGMA);
    this.r = (this.g.length - 1) / 2;
    const r = this.r;
    // torch's reflect pad needs pad < size; cropping needs at least one fully-inside window.
    if (this.border === 'reflect' && (height <= r || width <= r)) {
      throw new ShapeError(`ssim: frame ${height}x${width} is too small for reflect padding by ${r} (needs both sides > ${r})`);
    }
    if (this.border === 'crop' && (height <= 2 * r || width <= 2 * r)) {
      throw new ShapeError(`ssim: frame ${height}x${width} has no ${2 * r + 1}x${2 * r + 1} window inside (needs both sides > ${2 * r})`);
    }
    const n = height * width;
    this.hx = new Float64Array(n);
    this.hy = new Float64Array(n);
    this.hxx = new Float64Array(n);
    this.hyy = new Float64Array(n);
    this.hxy = new Float64Array(n);
    const pw = width + 2 * r;
    this.px = new Float64Array(pw);
    this.py = new Float64Array(pw);
    this.pxx = new Float64Array(pw);
    this.pyy = new Float64Array(pw);
    this.pxy = new Float64Array(pw);
    this.ax = new Float64Array(width);
    this.ay = new Float64Array(width);
    this.axx = new Float64Array(width);
    this.ayy = new Float64Array(width);
    this.axy = new Float64Array(width);
  }

  /** Mean SSIM of one frame pair: the SSIM map averaged over pixels, then over the three channels. */
  compute(orig: Uint8Array, recon: Uint8Array): number {
    const { height: H, width: W } = this;
    checkFrame(orig, H, W, 'ssim orig');
    checkFrame(recon, H, W, 'ssim recon');
    let total = 0;
    for (let c = 0; c < 3; c++) total += this.channelMean(orig, recon, c);
    return total / 3;
  }

  private channelMean(xs: Uint8Array, ys: Uint8Array, c: number): number {
    const { height: H, width: W, g, r } = this;
    const { hx, hy, hxx, hyy, hxy, px, py, pxx, pyy, pxy, ax, ay, axx, ayy, axy } = this;
    const gc = g[r]!;

    // Horizontal pass; the kernel is symmetric, so pair taps r−k and r+k to halve the multiplies.
    for (let i = 0; i < H; i++) {
      const rowBase = i * W * 3 + c;
      for (let j = -r; j < W + r; j++) {
        const jj = reflectIndex(j, W);
        const x = xs[rowBase + jj * 3]!;
        const y = ys[rowBase + jj * 3]!;
        const p = j + r;
        px[p] = x;
        py[p] = y;
        pxx[p] = x * x;
        pyy[p] = y * y;
        pxy[p] = x * y;
      }
      const o = i * W;
      for (let j = 0; j < W; j++) {
        const m = j + r;
        let sx = gc * px[m]!;
        let sy = gc * py[m]!;
        let sxx = gc * pxx[m]!;
        let syy = gc * pyy[m]!;
        let sxy = gc * pxy[m]!;
        for (let k = 1; k <= r; k++) {
          const w = g[r - k]!;
          sx += w * (px[m - k]! + px[m + k]!);
          sy += w * (py[m - k]! + py[m + k]!);
          sxx += w * (pxx[m - k]! + pxx[m + k]!);
          syy += w * (pyy[m - k]! + pyy[m + k]!);
          sxy += w * (pxy[m - k]! + pxy[m + k]!);
        }
        hx[o + j] = sx;
        hy[o + j] = sy;
        hxx[o + j] = sxx;
        hyy[o + j] = syy;
        hxy[o + j] = sxy;
      }
    }

    const c1 = (SSIM_K1 * DATA_RANGE) ** 2;
    const c2 = (SSIM_K2 * DATA_RANGE) ** 2;
    const crop = this.border === 'crop';
    const i0 = crop ? r : 0;
    const i1 = crop ? H - r : H;
    const j0 = crop ? r : 0;
    const j1 = crop ? W - r : W;
    let sum = 0;
    // Vertical pass row by row into small accumulators, reading whole rows of the planes (cache friendly).
    for (let i = i0; i < i1; i++) {
      const o = i * W;
      for (let j = j0; j < j1; j++) {
        ax[j] = gc * hx[o + j]!;
        ay[j] = gc * hy[o + j]!;
        axx[j] = gc * hxx[o + j]!;
        ayy[j] = gc * hyy[o + j]!;
        axy[j] = gc * hxy[o + j]!;
      }
      for (let k = 1; k <= r; k++) {
        const w = g[r - k]!;
        const a = reflectIndex(i - k, H) * W;
        const b = reflectIndex(i + k, H) * W;
        for (let j = j0; j < j1; j++) {
          ax[j]! += w * (hx[a + j]! + hx[b + j]!);
          ay[j]! += w * (hy[a + j]! + hy[b + j]!);
          axx[j]! += w * (hxx[a + j]! + hxx[b + j]!);
          ayy[j]! += w * (hyy[a + j]! + hyy[b + j]!);
          axy[j]! += w * (hxy[a + j]! + hxy[b + j]!);
        }
      }
      for (let j = j0; j < j1; j++) {
        const mx = ax[j]!;
        const my = ay[j]!;
        const mxx = mx * mx;
        const myy = my * my;
        const mxy = mx * my;
        // Same order and clamps as torchmetrics: E[x²] − μ² can go slightly negative from rounding.
        const vx = Math.max(axx[j]! - mxx, 0);
        const vy = Math.max(ayy[j]! - myy, 0);
        const cxy = axy[j]! - mxy;
        sum += ((2 * mxy + c1) * (2 * cxy + c2)) / ((mxx + myy + c1) * (vx + vy + c2));
      }
    }
    return sum / ((i1 - i0) * (j1 - j0));
  }
}

/** SSIM of one frame pair (allocates scratch; use SsimComputer or MetricsAccumulator for streams). */
export function ssimFrame(orig: Uint8Array, recon: Uint8Array, height: number, width: number, opts: SsimOptions = {}): number {
  return new SsimComputer(height, width, opts).compute(orig, recon);
}

function meanOf(v: readonly number[]): number {
  if (v.length === 0) return NaN;
  let s = 0;
  for (const x of v) s += x;
  return s / v.length;
}

export interface AccumulatorOptions extends SsimOptions {
  height: number;
  width: number;
  /** Skip SSIM (the costly part) when only PSNR and temporal figures are wanted; ssim.perFrame stays empty. */
  ssim?: boolean;
  /**
   * Score with the native kernels (native_metrics.ts) when the addon has them (default true); they give bit-identical
   * figures. false: always the TypeScript reference in this file.
   */
  native?: boolean;
  /** OpenMP threads of the native kernels' synchronous calls (default 0: OpenMP's own default). */
  threads?: number;
  /** Threads of `addFramesAsync`'s background work (default 1: it runs beside the model, which has the cores). */
  asyncThreads?: number;
}

function checkThreads(v: number | undefined, def: number, what: string): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v < 0 || v > 256) throw new ValueError(`MetricsAccumulator: ${what} must be an integer in 0..256, got ${v}`);
  return v;
}

/** 10·log10(255² / MSE) from a sum of squared differences over n values, formed exactly as psnrFrame forms it. */
function psnrFromSsd(ssd: number, n: number): number {
  const mse = ssd / n;
  return mse === 0 ? Infinity : 10 * Math.log10((DATA_RANGE * DATA_RANGE) / mse);
}

/**
 * Computes the metrics while frames stream by: `add` each (original, reconstruction) pair in time order and call
 * `newClip()` between videos so that no temporal pair spans two clips. Frames are copied where needed, so callers
 * may reuse their buffers. `addFrames` / `addFramesAsync` take a block of frames at once; the async form scores them
 * on a background thread (native addon), and `settled()` waits for every block still being scored.
 */
export class MetricsAccumulator {
  readonly height: number;
  readonly width: number;
  private readonly ssimComputer: SsimComputer | null;
  private readonly ssimOn: boolean;
  private readonly crop: boolean;
  private readonly taps: Float64Array;
  private readonly c1 = (SSIM_K1 * DATA_RANGE) ** 2;
  private readonly c2 = (SSIM_K2 * DATA_RANGE) ** 2;
  private readonly native: ReturnType<typeof metricsAddon>;
  private readonly threads: number;
  private readonly asyncThreads: number;
  private readonly psnrs: number[] = [];
  private readonly ssims: number[] = [];
  private readonly pairs: number[] = [];
  private prevOrig: Uint8Array;
  private prevRecon: Uint8Array;
  private hasPrev = false;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown = null;

  constructor(opts: AccumulatorOptions) {
    checkDims(opts.height, opts.width, 'MetricsAccumulator');
    this.height = opts.height;
    this.width = opts.width;
    this.ssimOn = opts.ssim !== false;
    this.ssimComputer = this.ssimOn ? new SsimComputer(opts.height, opts.width, opts) : null;
    this.crop = (opts.border ?? 'reflect') === 'crop';
    this.taps = gaussianTaps(SSIM_SIGMA);
    this.threads = checkThreads(opts.threads, 0, 'threads');
    this.asyncThreads = checkThreads(opts.asyncThreads, 1, 'asyncThreads');
    this.native = opts.native === false ? null : metricsAddon();
    const n = opts.height * opts.width * 3;
    this.prevOrig = new Uint8Array(n);
    this.prevRecon = new Uint8Array(n);
  }

  get frames(): number {
    return this.psnrs.length;
  }

  /** Whether this accumulator scores with the native kernels. */
  get usesNative(): boolean {
    return this.native !== null;
  }

  add(origFrame: Uint8Array, reconFrame: Uint8Array): void {
    const { height: H, width: W } = this;
    checkFrame(origFrame, H, W, 'MetricsAccumulator.add orig');
    checkFrame(reconFrame, H, W, 'MetricsAccumulator.add recon');
    if (this.native) {
      this.addFrames(origFrame, reconFrame);
      return;
    }
    this.psnrs.push(psnrFrame(origFrame, reconFrame));
    if (this.ssimComputer) this.ssims.push(this.ssimComputer.compute(origFrame, reconFrame));
    if (this.hasPrev) this.pairs.push(temporalPairError(this.prevOrig, origFrame, this.prevRecon, reconFrame));
    this.prevOrig.set(origFrame);
    this.prevRecon.set(reconFrame);
    this.hasPrev = true;
  }

  /** Frames of a block, checked: whole H·W·3 frames, the same number in both. */
  private blockFrames(orig: Uint8Array, recon: Uint8Array, what: string): number {
    const fb = this.height * this.width * 3;
    if (!(orig instanceof Uint8Array) || !(recon instanceof Uint8Array)) throw new ShapeError(`${what}: frames must be Uint8Arrays (n x HxWx3 RGB)`);
    if (orig.length !== recon.length) throw new ShapeError(`${what}: original has ${orig.length} bytes, reconstruction ${recon.length}`);
    if (orig.length % fb !== 0) throw new ShapeError(`${what}: ${orig.length} bytes are not whole ${this.height}x${this.width}x3 frames`);
    return orig.length / fb;
  }

  /** Scores n frames (frame-major, n·H·W·3 bytes each) in time order, synchronously. */
  addFrames(orig: Uint8Array, recon: Uint8Array): void {
    const n = this.blockFrames(orig, recon, 'MetricsAccumulator.addFrames');
    if (n === 0) return;
    const fb = this.height * this.width * 3;
    if (!this.native) {
      for (let t = 0; t < n; t++) this.add(orig.subarray(t * fb, (t + 1) * fb), recon.subarray(t * fb, (t + 1) * fb));
      return;
    }
    const out = this.native.metricsFrames(...this.nativeArgs(orig, recon, n, this.threads));
    const slot = this.reserve(n);
    this.advance(orig, recon, n);
    this.fill(slot, out, n);
  }

  /**
   * Scores n frames in time order on a background thread when the native kernels are present (synchronously
   * otherwise). The frames are copied before this returns, so the caller may reuse its buffers at once. Results land
   * in order, whatever order the blocks finish in; `result()` needs `await settled()` first.
   */
  addFramesAsync(orig: Uint8Array, recon: Uint8Array): Promise<void> {
    let n: number;
    try {
      n = this.blockFrames(orig, recon, 'MetricsAccumulator.addFramesAsync');
      if (n === 0) return Promise.resolve();
      if (!this.native) {
        this.addFrames(orig, recon);
        return Promise.resolve();
      }
    } catch (e) {
      return Promise.reject(e);
    }
    const work = this.native.metricsFramesAsync(...this.nativeArgs(orig, recon, n, this.asyncThreads));
    const slot = this.reserve(n);
    this.advance(orig, recon, n);
    const p: Promise<void> = work.then(
      (out) => {
        this.fill(slot, out, n);
        this.inFlight.delete(p);
      },
      (e) => {
        this.failure ??= e;
        this.inFlight.delete(p);
        throw e;
      },
    );
    this.inFlight.add(p);
    p.catch(() => {}); // reported through settled() / result() as well as to the caller
    return p;
  }

  /** Waits for every block handed to addFramesAsync; rejects with the first failure. */
  async settled(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
    if (this.failure) throw this.failure;
  }

  private nativeArgs(orig: Uint8Array, recon: Uint8Array, n: number, threads: number): MetricsArgs {
    const prev = this.hasPrev;
    return [orig, recon, prev ? this.prevOrig : null, prev ? this.prevRecon : null, n, this.height, this.width, this.taps, this.c1, this.c2, this.crop, this.ssimOn, threads];
  }

  /** Placeholders for n frames (and their temporal pairs), filled by fill(). */
  private reserve(n: number): { psnr: number; ssim: number; pair: number; firstHasPair: boolean } {
    const slot = { psnr: this.psnrs.length, ssim: this.ssims.length, pair: this.pairs.length, firstHasPair: this.hasPrev };
    for (let t = 0; t < n; t++) {
      this.psnrs.push(NaN);
      if (this.ssimOn) this.ssims.push(NaN);
      if (t > 0 || this.hasPrev) this.pairs.push(NaN);
    }
    return slot;
  }

  /** The last frame of a block becomes the previous frame of the next one. */
  private advance(orig: Uint8Array, recon: Uint8Array, n: number): void {
    const fb = this.height * this.width * 3;
    this.prevOrig.set(orig.subarray((n - 1) * fb, n * fb));
    this.prevRecon.set(recon.subarray((n - 1) * fb, n * fb));
    this.hasPrev = true;
  }

  private fill(slot: { psnr: number; ssim: number; pair: number; firstHasPair: boolean }, out: Float64Array, n: number): void {
    const s = unpackScores(out, n, this.ssimOn);
    const fb = this.height * this.width * 3;
    let pair = slot.pair;
    for (let t = 0; t < n; t++) {
      this.psnrs[slot.psnr + t] = psnrFromSsd(s.ssd[t]!, fb);
      if (this.ssimOn) this.ssims[slot.ssim + t] = s.ssim[t]!;
      if (t > 0 || slot.firstHasPair) this.pairs[pair++] = s.temporal[t]! / fb;
    }
  }

  /** The next frame starts a new video: it forms no temporal pair with the previous one. */
  newClip(): void {
    this.hasPrev = false;
  }

  result(): MetricsResult {
    if (this.inFlight.size) throw new ValueError('MetricsAccumulator.result: blocks are still being scored; await settled() first');
    if (this.failure) throw this.failure;
    const finite = this.psnrs.filter((v) => Number.isFinite(v));
    const infiniteFrames = this.psnrs.length - finite.length;
    const psnrMean = finite.length ? meanOf(finite) : this.psnrs.length ? Infinity : NaN;
    return {
      frames: this.psnrs.length,
      psnr: { mean: psnrMean, perFrame: [...this.psnrs], infiniteFrames },
      ssim: { mean: meanOf(this.ssims), perFrame: [...this.ssims] },
      temporal: { mean: meanOf(this.pairs), perPair: [...this.pairs] },
    };
  }
}

/**
 * Float NCTHW video in [−1, 1] (C = 3) to uint8 frames, indexed [n][t], each H·W·3 interleaved RGB, by the quantiser
 * that also writes video files (quantizeClip: clamp to [−1, 1], round((x + 1)·127.5), the reference's
 * `(255·(x·0.5 + 0.5) + 0.5).clamp(0, 255).to(uint8)`). NaN is an error rather than a silent 0, so a broken
 * reconstruction cannot pass as a metric.
 */
export function tensorToUint8Frames(x: Tensor): Uint8Array[][] {
  if (x.ndim !== 5 || x.shape[1] !== 3) throw new ShapeError(`tensorToUint8Frames: expected NCTHW with C = 3, got ${fmtShape(x.shape)}`);
  const [N, , T, H, W] = x.shape as [number, number, number, number, number];
  const d = x.readSync();
  const frameBytes = H * W * 3;
  const out: Uint8Array[][] = [];
  for (let n = 0; n < N; n++) {
    const nanAt = (t: number, c: number, y: number, xx: number) => new ValueError(`tensorToUint8Frames: NaN at [${n}, ${c}, ${t}, ${y}, ${xx}] of ${fmtShape(x.shape)}`);
    const clip = quantizeClip(d, n * 3 * T * H * W, T, H, W, nanAt);
    out.push(Array.from({ length: T }, (_, t) => clip.subarray(t * frameBytes, (t + 1) * frameBytes)));
  }
  return out;
}

/**
 * Metrics of a reconstructed batch of videos against the originals, both float NCTHW in [−1, 1]. Frames of all N
 * clips are pooled (as the reference does over B·T); temporal pairs stay within each clip.
 */
export function videoMetrics(orig: Tensor, recon: Tensor, opts: SsimOptions & { ssim?: boolean } = {}): MetricsResult {
  if (orig.shape.length !== recon.shape.length || orig.shape.some((d, i) => d !== recon.shape[i])) {
    throw new ShapeError(`videoMetrics: original ${fmtShape(orig.shape)} and reconstruction ${fmtShape(recon.shape)} differ`);
  }
  const o = tensorToUint8Frames(orig);
  const r = tensorToUint8Frames(recon);
  const acc = new MetricsAccumulator({ ...opts, height: orig.shape[3]!, width: orig.shape[4]! });
  for (let n = 0; n < o.length; n++) {
    acc.newClip();
    for (let t = 0; t < o[n]!.length; t++) acc.add(o[n]![t]!, r[n]![t]!);
  }
  return acc.result();
}
