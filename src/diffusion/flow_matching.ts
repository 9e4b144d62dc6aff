/**
 * The reference flow-matching training objective (spec §5.5), quirk included: the noise level is snapped to a
 * 50-point shifted grid, but the network is conditioned on the raw integer timestep that was drawn.
 *
 * The grid is built in float32 exactly as the reference's torch code does (torch.linspace on CPU, then the shift and
 * the weight formula op by op in float32); σ's and timesteps come out bit-identical to sampler/flowmatch.safetensors.
 * The weights agree to ~3e-7 relative: they go through torch's float32 exp and sum, whose last bits we do not emulate.
 */
import { ShapeError, ValueError } from '../errors.js';
import { add, cat, mean, mul, slice, square, sub, reshape } from '../tensor/ops.js';
import { Rng } from '../tensor/random.js';
import { Tensor } from '../tensor/tensor.js';
import { flowShiftF32, torchLinspaceF32 } from './schedule.js';

export interface TrainingGrid {
  readonly n: number;
  readonly shift: number;
  readonly numTrainTimesteps: number;
  /** σ_k = shift(linspace(1, 0, n+1)[:n]), float32 values, σ₀ = 1. */
  readonly sigmas: Float64Array;
  /** τ_k = T·σ_k (float32 values, not integers). */
  readonly timesteps: Float64Array;
  /** Loss weight per grid point; mean 1, and 0 at the τ = T end. */
  readonly weights: Float64Array;
}

/**
 * The training grid and its loss weights:
 * y_k = exp(−2·((τ_k − T/2)/T)²), w = (y − min y) scaled to sum n.
 */
export function trainingGrid(shift: number, n = 50, numTrainTimesteps = 1000): TrainingGrid {
  if (!(shift > 0) || !Number.isFinite(shift)) throw new ValueError(`trainingGrid: shift must be a positive number, got ${shift}`);
  if (!Number.isInteger(n) || n < 2) throw new ValueError(`trainingGrid: n must be an integer >= 2, got ${n}`);
  const T = numTrainTimesteps;
  if (!Number.isInteger(T) || T < 1) throw new ValueError(`trainingGrid: numTrainTimesteps must be a positive integer, got ${T}`);
  const f = Math.fround;
  const lin = torchLinspaceF32(1, 0, n + 1);
  const sigmas = new Float64Array(n);
  const timesteps = new Float64Array(n);
  const y = new Float64Array(n);
  let ymin = Infinity;
  for (let k = 0; k < n; k++) {
    sigmas[k] = flowShiftF32(lin[k]!, shift);
    timesteps[k] = f(sigmas[k]! * T);
    const q = f(f(timesteps[k]! - T / 2) / T);
    y[k] = f(Math.exp(f(-2 * f(q * q))));
    if (y[k]! < ymin) ymin = y[k]!;
  }
  let sum = 0;
  for (let k = 0; k < n; k++) {
    y[k] = f(y[k]! - ymin);
    sum += y[k]!;
  }
  if (!(sum > 0)) throw new ValueError(`trainingGrid: degenerate weights (all grid timesteps equal) for shift ${shift}, n ${n}`);
  const scale = f(n / f(sum));
  const weights = new Float64Array(n);
  for (let k = 0; k < n; k++) weights[k] = f(y[k]! * scale);
  return { n, shift, numTrainTimesteps: T, sigmas, timesteps, weights };
}

/** Grid index nearest to the integer timestep t: argmin_k |τ_k − t| (float32 difference; first index on ties). */
export function snapToGrid(grid: TrainingGrid, t: number): number {
  if (!Number.isFinite(t)) throw new ValueError(`snapToGrid: timestep must be finite, got ${t}`);
  let best = 0;
  let bestD = Infinity;
  for (let k = 0; k < grid.n; k++) {
    const d = Math.abs(Math.fround(grid.timesteps[k]! - t));
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

/** One integer timestep per sample, uniform on {0, …, T−1}. */
export function sampleTrainingTimesteps(batch: number, rng: Rng | number, numTrainTimesteps = 1000): number[] {
  if (!Number.isInteger(batch) || batch < 0) throw new ValueError(`sampleTrainingTimesteps: batch must be a non-negative integer, got ${batch}`);
  const r = rng instanceof Rng ? rng : new Rng(rng);
  const out: number[] = [];
  for (let b = 0; b < batch; b++) out.push(r.int(numTrainTimesteps));
  return out;
}

export interface FlowMatchInputs {
  /** (1 − σ)·x₀ + σ·ε, the network input. */
  noisy: Tensor;
  /** ε − x₀, the velocity target. */
  target: Tensor;
  /** The raw integer timesteps: this is what the network is conditioned on (the reference's quirk). */
  t: number[];
  /** Snapped grid indices, σ's and loss weights per sample. */
  ids: number[];
  sigmas: number[];
  weights: number[];
}

/** A [B, 1, 1, …] tensor holding one value per sample, for broadcasting over a sample's elements. */
function perSample(values: readonly number[], ndim: number): Tensor {
  const shape = [values.length, ...new Array<number>(Math.max(0, ndim - 1)).fill(1)];
  return new Tensor(Float32Array.from(values), shape);
}

function checkBatch(x: Tensor, what: string): number {
  if (!(x instanceof Tensor)) throw new ValueError(`${what} must be a Tensor`);
  if (x.ndim < 1 || x.shape[0] === 0) throw new ShapeError(`${what} needs a leading batch axis, got [${x.shape.join(', ')}]`);
  return x.shape[0]!;
}

function sameShape(a: Tensor, b: Tensor): boolean {
  return a.ndim === b.ndim && a.shape.every((d, i) => d === b.shape[i]);
}

/**
 * Noisy inputs, targets and weights for a batch: sample b is noised at the grid point nearest to t[b].
 * Arithmetic is float32 tensor ops, as in the reference.
 */
export function flowMatchInputs(x0: Tensor, noise: Tensor, t: readonly number[], grid: TrainingGrid): FlowMatchInputs {
  const B = checkBatch(x0, 'flowMatchInputs: x0');
  if (!sameShape(x0, noise)) throw new ShapeError(`flowMatchInputs: x0 [${x0.shape.join(', ')}] and noise [${noise.shape.join(', ')}] differ`);
  if (t.length !== B) throw new ShapeError(`flowMatchInputs: ${t.length} timesteps for a batch of ${B}`);
  const ids = t.map((tb) => snapToGrid(grid, tb));
  const sigmas = ids.map((k) => grid.sigmas[k]!);
  const weights = ids.map((k) => grid.weights[k]!);
  const s = perSample(sigmas, x0.ndim);
  const a = perSample(sigmas.map((v) => Math.fround(1 - v)), x0.ndim);
  const noisy = add(mul(a, x0), mul(s, noise));
  const target = sub(noise, x0);
  return { noisy, target, t: [...t], ids, sigmas, weights };
}

/** mean over all elements of w_b·(pred − target)², with w_b the weight of sample b (differentiable in pred). */
export function flowMatchLoss(pred: Tensor, target: Tensor, weights: readonly number[]): Tensor {
  const B = checkBatch(pred, 'flowMatchLoss: pred');
  if (!sameShape(pred, target)) throw new ShapeError(`flowMatchLoss: pred [${pred.shape.join(', ')}] and target [${target.shape.join(', ')}] differ`);
  if (weights.length !== B) throw new ShapeError(`flowMatchLoss: ${weights.length} weights for a batch of ${B}`);
  return mean(mul(perSample(weights, pred.ndim), square(sub(pred, target))));
}

/** Draw t for each sample of x0 and noise it: the inputs of one training step (noise drawn by the caller). */
export function prepareFlowMatchBatch(x0: Tensor, noise: Tensor, grid: TrainingGrid, rng: Rng | number): FlowMatchInputs {
  const B = checkBatch(x0, 'prepareFlowMatchBatch: x0');
  return flowMatchInputs(x0, noise, sampleTrainingTimesteps(B, rng, grid.numTrainTimesteps), grid);
}

/**
 * Text-conditioning dropout for CFG training: each sample's context is replaced by the null embedding with
 * probability p. One uniform is drawn per sample whatever p is, so the random stream does not depend on p.
 * Accepts per-sample contexts (a list, lengths may differ) or a batched [B, L, D] tensor (null: [L, D] or [1, L, D]).
 */
export function dropTextContext(contexts: readonly Tensor[], nullContext: Tensor, p: number, rng: Rng | number): { contexts: Tensor[]; dropped: boolean[] };
export function dropTextContext(contexts: Tensor, nullContext: Tensor, p: number, rng: Rng | number): { contexts: Tensor; dropped: boolean[] };
export function dropTextContext(
  contexts: Tensor | readonly Tensor[],
  nullContext: Tensor,
  p: number,
  rng: Rng | number,
): { contexts: Tensor | Tensor[]; dropped: boolean[] } {
  if (!(p >= 0 && p <= 1)) throw new ValueError(`dropTextContext: p must be in [0, 1], got ${p}`);
  if (!(nullContext instanceof Tensor)) throw new ValueError('dropTextContext: nullContext must be a Tensor');
  const r = rng instanceof Rng ? rng : new Rng(rng);
  if (Array.isArray(contexts)) {
    const list = contexts as readonly Tensor[];
    const dropped = list.map(() => r.uniform() < p);
    return { contexts: list.map((c, b) => (dropped[b] ? nullContext : c)), dropped };
  }
  const batch = contexts as Tensor;
  if (!(batch instanceof Tensor) || batch.ndim < 2) throw new ShapeError('dropTextContext: a batched context must be a [B, ...] tensor');
  const row = batch.shape.slice(1);
  const nul = nullContext.ndim === row.length ? reshape(nullContext, [1, ...row]) : nullContext;
  if (nul.ndim !== batch.ndim || nul.shape[0] !== 1 || !row.every((d, i) => d === nul.shape[i + 1]))
    throw new ShapeError(`dropTextContext: null context [${nullContext.shape.join(', ')}] does not match a sample [${row.join(', ')}]`);
  const B = batch.shape[0]!;
  const dropped: boolean[] = [];
  for (let b = 0; b < B; b++) dropped.push(r.uniform() < p);
  if (!dropped.some(Boolean)) return { contexts: batch, dropped };
  const parts = dropped.map((d, b) => (d ? nul : slice(batch, 0, b, b + 1)));
  return { contexts: cat(parts, 0), dropped };
}
