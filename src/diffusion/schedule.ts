/**
 * Flow-matching σ grids for sampling (spec §4.2).
 *
 * Precision follows the references so that our grids are bit-identical to theirs:
 * - diffusers `UniPCMultistepScheduler` (use_flow_sigmas) builds the grid with numpy in float64 — linspace, the shift,
 *   the 1e-6 nudge of σ₀ and `timesteps = trunc(1000·σ)` all happen in double — and only then casts the σ array to
 *   float32 (`np.concatenate(...).astype(np.float32)`). The sampler works with those float32 σ's. So `sigmas` below
 *   holds the float32-rounded values (as doubles) and `timesteps` is truncated from the unrounded double grid. This
 *   reproduces sampler/unipc.safetensors exactly (timesteps and every σ bit for bit).
 * - Wan's `FlowUniPCMultistepScheduler` does the same except that its σ_max is a float32 value read back from a
 *   torch tensor (float32(0.999) = 0.99900001287...), and there is no σ₀ nudge.
 */
import { ValueError } from '../errors.js';

/** Timestep shift: σ ↦ sσ / (1 + (s−1)σ), in double, with numpy's evaluation order. */
export function flowShift(sigma: number, shift: number): number {
  return (shift * sigma) / (1 + (shift - 1) * sigma);
}

/** Float32 version of the shift as a torch float32 tensor evaluates it (each op rounded to float32). */
export function flowShiftF32(sigma: number, shift: number): number {
  const f = Math.fround;
  return f(f(f(shift) * sigma) / f(1 + f(f(shift - 1) * sigma)));
}

/**
 * numpy.linspace(start, stop, num) in float64, element for element: numpy computes i·step + start (not a cumulative
 * sum, not start + i·(stop−start)/div) and pins the last element to `stop`; the last digits of the grid depend on it.
 */
export function npLinspace(start: number, stop: number, num: number): Float64Array {
  if (!Number.isInteger(num) || num < 0) throw new ValueError(`linspace: num must be a non-negative integer, got ${num}`);
  const out = new Float64Array(num);
  if (num === 0) return out;
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  out[num - 1] = stop;
  return out;
}

export type FlowScheduleVariant = 'diffusers' | 'wan';

export interface FlowScheduleOptions {
  /** 'diffusers' (UniPCMultistepScheduler, the released pipelines; default) or 'wan' (FlowUniPCMultistepScheduler). */
  variant?: FlowScheduleVariant;
  numTrainTimesteps?: number;
}

/** A sampling grid: N steps, N+1 σ's ending in 0. */
export interface FlowSchedule {
  readonly steps: number;
  readonly shift: number;
  readonly variant: FlowScheduleVariant;
  /** σ₀..σ_N as the sampler uses them: float32 values stored as doubles, σ_N = 0. */
  readonly sigmas: Float64Array;
  /** The same grid before the float32 cast (what the integer timesteps were truncated from). */
  readonly sigmasF64: Float64Array;
  /** Integer model timesteps t₀..t_{N−1} = trunc(numTrain·σᵢ). */
  readonly timesteps: Int32Array;
}

/**
 * The UniPC flow σ grid (spec §4.2).
 * diffusers: σᵢ = shift(linspace(1, 1/T, N+1)[:N]); if |σ₀ − 1| < 1e-6 then σ₀ −= 1e-6 (so that λ = log(α/σ) is finite).
 * wan:       σᵢ = shift(linspace(σ_max, 0, N+1)[:N]) with σ_max = float32(1 − 1/T).
 */
export function flowSchedule(steps: number, shift: number, opts: FlowScheduleOptions = {}): FlowSchedule {
  const variant = opts.variant ?? 'diffusers';
  const T = opts.numTrainTimesteps ?? 1000;
  if (!Number.isInteger(steps) || steps < 1) throw new ValueError(`flowSchedule: steps must be a positive integer, got ${steps}`);
  if (!(shift > 0) || !Number.isFinite(shift)) throw new ValueError(`flowSchedule: shift must be a positive number, got ${shift}`);
  if (!Number.isInteger(T) || T < 2) throw new ValueError(`flowSchedule: numTrainTimesteps must be an integer >= 2, got ${T}`);
  if (variant !== 'diffusers' && variant !== 'wan') throw new ValueError(`flowSchedule: unknown variant ${String(variant)}`);

  let base: Float64Array;
  if (variant === 'diffusers') base = npLinspace(1, 1 / T, steps + 1);
  else {
    // Wan's σ_max comes from a float32 torch tensor via .item(); σ_min = float32(1 − 1) = 0 exactly.
    base = npLinspace(Math.fround(1 - 1 / T), 0, steps + 1);
  }
  const sig = new Float64Array(steps + 1);
  for (let i = 0; i < steps; i++) sig[i] = flowShift(base[i]!, shift);
  if (variant === 'diffusers') {
    const eps = 1e-6;
    if (Math.abs(sig[0]! - 1) < eps) sig[0] = sig[0]! - eps;
  }
  sig[steps] = 0;
  const timesteps = new Int32Array(steps);
  for (let i = 0; i < steps; i++) timesteps[i] = Math.trunc(sig[i]! * T);
  const sigmas = new Float64Array(steps + 1);
  for (let i = 0; i <= steps; i++) sigmas[i] = Math.fround(sig[i]!);
  return { steps, shift, variant, sigmas, sigmasF64: sig, timesteps };
}

/** Shorthand for the Wan original grid. */
export function wanFlowSchedule(steps: number, shift: number, numTrainTimesteps = 1000): FlowSchedule {
  return flowSchedule(steps, shift, { variant: 'wan', numTrainTimesteps });
}

/**
 * torch.linspace(start, end, steps) for a float32 tensor on an AVX2 CPU, element for element.
 * torch's kernel is not numpy's: step = (end−start)/(steps−1) is rounded to float32; whole pairs of 8-lane vectors
 * start from base = start + step·idx (idx < steps/2) or end − step·(steps−idx−1) and fill lanes base + k·step; the tail
 * that does not fill two vectors uses the scalar symmetric formula. Emulating that lane structure (no FMA) is what
 * reproduces the reference's 50-point training grid bit for bit; the plain symmetric or numpy formulas differ in a
 * handful of last bits.
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float64Array {
  if (!Number.isInteger(steps) || steps < 0) throw new ValueError(`linspace: steps must be a non-negative integer, got ${steps}`);
  const f = Math.fround;
  const out = new Float64Array(steps);
  if (steps === 0) return out;
  const a = f(start);
  const b = f(end);
  if (steps === 1) {
    out[0] = a;
    return out;
  }
  const step = f(f(b - a) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const at = (idx: number): number => (idx < halfway ? f(a + f(step * idx)) : f(b - f(step * (steps - idx - 1))));
  const W = 8;
  const vecEnd = Math.floor(steps / (2 * W)) * 2 * W;
  for (let s0 = 0; s0 < vecEnd; s0 += W) {
    const base = at(s0);
    for (let k = 0; k < W; k++) out[s0 + k] = f(base + f(k * step));
  }
  for (let i = vecEnd; i < steps; i++) out[i] = at(i);
  return out;
}
