/**
 * PSNR / SSIM / temporal-error kernels of the native addon (native/src/metrics.cc), with the same definitions and the
 * same double-precision arithmetic, in the same order, as the TypeScript reference in metrics.ts: the results are
 * bit-identical, not merely close. The Gaussian taps and the SSIM constants are computed here in JS and handed to the
 * addon, so not even `exp` / `pow` can differ.
 *
 * The addon returns, per frame, the sum of squared differences (an integer), the SSIM (mean over the three channels'
 * SSIM maps) and the sum of |e_t − e_{t−1}| against the previous frame (an integer; NaN when there is none). PSNR,
 * MSE and the temporal mean are then formed here exactly as metrics.ts forms them.
 *
 * `scoreFramesAsync` runs on a libuv worker thread (napi async work) on private copies of the frames, so the caller
 * may reuse or drop its buffers as soon as the call returns, and the model can keep the main thread busy meanwhile.
 */
import { loadNativeAddon } from '../backend/native.js';

interface MetricsAddon {
  metricsFrames(...args: MetricsArgs): Float64Array;
  metricsFramesAsync(...args: MetricsArgs): Promise<Float64Array>;
}

export type MetricsArgs = [
  orig: Uint8Array,
  recon: Uint8Array,
  prevOrig: Uint8Array | null,
  prevRecon: Uint8Array | null,
  frames: number,
  height: number,
  width: number,
  taps: Float64Array,
  c1: number,
  c2: number,
  crop: boolean,
  ssim: boolean,
  threads: number,
];

let addon: MetricsAddon | null | undefined;

/** The addon's metric kernels, or null when the addon (or a build of it with metrics.cc) is absent. */
export function metricsAddon(): MetricsAddon | null {
  if (addon === undefined) {
    const a = loadNativeAddon() as unknown as Partial<MetricsAddon> | null;
    addon = a && typeof a.metricsFrames === 'function' && typeof a.metricsFramesAsync === 'function' ? (a as MetricsAddon) : null;
  }
  return addon;
}

export function nativeMetricsAvailable(): boolean {
  return metricsAddon() !== null;
}

/** Per-frame raw figures of one block of frames (see the module comment). */
export interface FrameScores {
  /** sum over pixels and channels of (orig − recon)², per frame */
  ssd: number[];
  /** SSIM per frame (empty when SSIM was not asked for) */
  ssim: number[];
  /** sum of |e_t − e_{t−1}| per frame; NaN for a first frame with no previous one */
  temporal: number[];
}

export function unpackScores(out: Float64Array, frames: number, ssim: boolean): FrameScores {
  const r: FrameScores = { ssd: [], ssim: [], temporal: [] };
  for (let t = 0; t < frames; t++) {
    r.ssd.push(out[3 * t]!);
    if (ssim) r.ssim.push(out[3 * t + 1]!);
    r.temporal.push(out[3 * t + 2]!);
  }
  return r;
}
