/**
 * Flow-matching samplers on the shifted σ grid (spec §4.3–4.5): UniPC multistep (order 2, bh2, predict-x₀,
 * lower_order_final, final σ = 0, flow prediction) as in diffusers' `UniPCMultistepScheduler`, plain Euler, and a
 * generic sampling loop with classifier-free guidance.
 *
 * The solvers are stateful (like the diffusers scheduler): call `step(v, x)` once per grid point with the model's
 * velocity v at the sample x it was evaluated on; it returns the next sample. They work on Float64Array, Float32Array
 * or `Tensor`s. Per-element arithmetic is done in double and stored in the sample's own precision; on Tensors it runs
 * as one backend op per update (linearCombination: each update is a weighted sum of the sample, the velocity and the
 * stored x₀ estimates, rounded once), so no tensor data passes through host loops. The scalar coefficients are
 * computed in double by default.
 *
 * `emulateFloat32Scalars`: the reference keeps σ in a float32 torch tensor, so every scalar coefficient (log, expm1,
 * the 2×2 solve, ...) is evaluated in float32 and only then promoted. With this flag on we round each scalar op the
 * same way; against the F64 fixture that reproduces the N=8 trajectory exactly and N=20/N=50 to ~1e-16 / 3e-8 (the
 * remaining difference is one float32 log near a rounding tie where torch's logf rounds the other way). Off (default),
 * the coefficients are more accurate than the reference's and the trajectories agree to ~1e-7 relative.
 */
import { ShapeError, ValueError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import { linearCombination } from '../tensor/inplace.js';
import { flowSchedule, type FlowSchedule, type FlowScheduleVariant } from './schedule.js';

export type FloatArray = Float32Array | Float64Array;
export type Sample = FloatArray | Tensor;

export interface SolverOptions {
  /** Round every scalar coefficient op to float32, as the PyTorch reference does (default false: double). */
  emulateFloat32Scalars?: boolean;
}

/** What both solvers offer to a sampling loop. */
export interface FlowSolver {
  readonly schedule: FlowSchedule;
  /** Index of the grid point the next `step` call advances from. */
  readonly index: number;
  readonly done: boolean;
  /** Integer model timestep at the current grid point. */
  readonly timestep: number;
  /** σ at the current grid point. */
  readonly sigma: number;
  step(v: Tensor, x: Tensor): Tensor;
  step<A extends FloatArray>(v: FloatArray, x: A): A;
  reset(): void;
}

const ident = (v: number) => v;

function newLike<A extends FloatArray>(x: A, n = x.length): A {
  return (x instanceof Float64Array ? new Float64Array(n) : new Float32Array(n)) as A;
}

function checkPair(v: { length: number }, x: { length: number }, what: string): void {
  if (v.length !== x.length) throw new ShapeError(`${what}: velocity has ${v.length} elements, sample has ${x.length}`);
}

abstract class SolverBase {
  readonly schedule: FlowSchedule;
  protected i = 0;
  protected readonly F: (v: number) => number;

  constructor(schedule: FlowSchedule, opts: SolverOptions) {
    if (!schedule || !(schedule.sigmas instanceof Float64Array) || schedule.sigmas.length !== schedule.steps + 1)
      throw new ValueError('solver: schedule must come from flowSchedule()');
    this.schedule = schedule;
    this.F = opts.emulateFloat32Scalars ? Math.fround : ident;
  }

  get index(): number {
    return this.i;
  }
  get done(): boolean {
    return this.i >= this.schedule.steps;
  }
  get timestep(): number {
    this.checkNotDone();
    return this.schedule.timesteps[this.i]!;
  }
  get sigma(): number {
    this.checkNotDone();
    return this.schedule.sigmas[this.i]!;
  }

  protected checkNotDone(): void {
    if (this.done) throw new ValueError(`solver: all ${this.schedule.steps} steps have been taken (call reset() to start again)`);
  }

  step(v: Tensor, x: Tensor): Tensor;
  step<A extends FloatArray>(v: FloatArray, x: A): A;
  step(v: Sample, x: Sample): Sample {
    this.checkNotDone();
    if (x instanceof Tensor) {
      if (!(v instanceof Tensor)) throw new ValueError('step: v must be a Tensor');
      if (v.shape.length !== x.shape.length || v.shape.some((d, j) => d !== x.shape[j]))
        throw new ShapeError(`step: velocity [${v.shape.join(', ')}] and sample [${x.shape.join(', ')}] shapes differ`);
      return this.stepTensors(v, x);
    }
    if (!(x instanceof Float64Array || x instanceof Float32Array)) throw new ValueError('step: x must be a Tensor, Float32Array or Float64Array');
    if (!(v instanceof Float64Array || v instanceof Float32Array)) throw new ValueError('step: v must be a Float32Array or Float64Array when x is an array');
    checkPair(v, x, 'step');
    return this.stepArrays(v, x);
  }

  protected abstract stepArrays<A extends FloatArray>(v: FloatArray, x: A): A;
  /** The same update on Tensors, as backend ops (linearCombination). */
  protected abstract stepTensors(v: Tensor, x: Tensor): Tensor;
  abstract reset(): void;
}

/** Euler on the flow grid: x_{i+1} = x_i + (σ_{i+1} − σ_i)·v_i. */
export class EulerSolver extends SolverBase implements FlowSolver {
  constructor(schedule: FlowSchedule, opts: SolverOptions = {}) {
    super(schedule, opts);
  }

  protected stepArrays<A extends FloatArray>(v: FloatArray, x: A): A {
    const s = this.schedule.sigmas;
    const dt = this.F(s[this.i + 1]! - s[this.i]!);
    const out = newLike(x);
    for (let k = 0; k < x.length; k++) out[k] = x[k]! + dt * v[k]!;
    this.i++;
    return out;
  }

  protected stepTensors(v: Tensor, x: Tensor): Tensor {
    const s = this.schedule.sigmas;
    const dt = this.F(s[this.i + 1]! - s[this.i]!);
    const out = linearCombination([
      [1, x],
      [dt, v],
    ]);
    this.i++;
    return out;
  }

  reset(): void {
    this.i = 0;
  }
}

/**
 * UniPC-bh2, order 2, predict-x₀ (spec §4.3). At grid point i the model output is converted to mᵢ = xᵢ − σᵢvᵢ; from
 * i ≥ 1 the UniC corrector first refines xᵢ using the previous predictor's start point, then UniP predicts x_{i+1}.
 * The step order is min(2, N − i, steps so far + 1), so the first and the last steps are first order; the last step
 * (σ_N = 0) reduces exactly to x_N = m_{N−1}.
 */
export class UniPCSolver extends SolverBase implements FlowSolver {
  /** m_{i−1}, m_i (newest last), at most two. */
  private ms: FloatArray[] = [];
  private lastSample: FloatArray | null = null;
  private lastOrder = 0;
  private lowerOrderNums = 0;
  /** The Tensor path's m_{i−1}, m_i and last predictor start point (the same roles as ms and lastSample). */
  private tms: Tensor[] = [];
  private tLast: Tensor | null = null;
  /** λ(σ) = log α − log σ, cached per grid index. */
  private readonly lambdas: Float64Array;

  constructor(schedule: FlowSchedule, opts: SolverOptions = {}) {
    super(schedule, opts);
    const F = this.F;
    const s = schedule.sigmas;
    this.lambdas = new Float64Array(s.length);
    for (let j = 0; j < s.length; j++) {
      const sg = s[j]!;
      this.lambdas[j] = sg === 0 ? Infinity : F(F(Math.log(F(1 - sg))) - F(Math.log(sg)));
    }
  }

  reset(): void {
    this.i = 0;
    this.ms = [];
    this.lastSample = null;
    this.tms = [];
    this.tLast = null;
    this.lastOrder = 0;
    this.lowerOrderNums = 0;
  }

  /** h, φ = expm1(−h) (= B for bh2) and the base coefficients σ_t/σ_s0, α_t·φ between grid points s and t. */
  private coefs(s: number, t: number): { h: number; phi: number; c1: number; c2: number } {
    const F = this.F;
    const sig = this.schedule.sigmas;
    const h = F(this.lambdas[t]! - this.lambdas[s]!);
    const phi = F(Math.expm1(-h));
    const at = F(1 - sig[t]!);
    return { h, phi, c1: F(sig[t]! / sig[s]!), c2: F(at * phi) };
  }

  protected stepArrays<A extends FloatArray>(v: FloatArray, x: A): A {
    const F = this.F;
    const i = this.i;
    const N = this.schedule.steps;
    const sig = this.schedule.sigmas;
    const n = x.length;
    if (this.ms.length && this.ms[0]!.length !== n) throw new ShapeError(`UniPC step: sample has ${n} elements, earlier steps had ${this.ms[0]!.length}`);

    // Convert the velocity to an x₀ estimate (kept in the sample's precision, like the reference's model_outputs).
    const sigI = sig[i]!;
    const m = newLike(x);
    for (let k = 0; k < n; k++) m[k] = x[k]! - sigI * v[k]!;

    // UniC: correct x_i using the step that produced it.
    let xc: FloatArray = x;
    if (i > 0 && this.lastSample) {
      const last = this.lastSample;
      const mp = this.ms[this.ms.length - 1]!;
      const { h, phi, c1, c2 } = this.coefs(i - 1, i);
      const c3 = c2; // α_t·B_h with B_h = φ (bh2)
      const out = newLike(x);
      if (this.lastOrder === 1) {
        for (let k = 0; k < n; k++) out[k] = c1 * last[k]! - c2 * mp[k]! - c3 * (0.5 * (m[k]! - mp[k]!));
      } else {
        const mpp = this.ms[this.ms.length - 2]!;
        const r = F(F(this.lambdas[i - 2]! - this.lambdas[i - 1]!) / h);
        const hh = -h;
        const g1 = F(F(phi / hh) - 1);
        const b0 = F(g1 / phi);
        const g2 = F(F(g1 / hh) - 0.5);
        const b1 = F(F(g2 * 2) / phi);
        // R = [[1, 1], [r, 1]]; r < 0 on a decreasing σ grid, so 1 − r never vanishes.
        const rho1 = F(F(b1 - F(r * b0)) / F(1 - r));
        const rho0 = F(b0 - rho1);
        for (let k = 0; k < n; k++) {
          const D = (mpp[k]! - mp[k]!) / r;
          out[k] = c1 * last[k]! - c2 * mp[k]! - c3 * (rho0 * D + rho1 * (m[k]! - mp[k]!));
        }
      }
      xc = out;
    }

    this.ms.push(m);
    if (this.ms.length > 2) this.ms.shift();
    const order = Math.min(2, N - i, this.lowerOrderNums + 1);
    // Keep our own copy: the caller may reuse its buffer before the next corrector reads it.
    this.lastSample = xc === x ? x.slice() : xc;
    this.lastOrder = order;

    // UniP: predict x_{i+1}.
    const out = newLike(x);
    if (sig[i + 1] === 0) {
      // λ_t = +∞ ⇒ φ = B = −1 and σ_t/σ_s0 = 0: the update is exactly the x₀ estimate (needs order 1, which
      // lower_order_final guarantees on the last step).
      out.set(m);
    } else {
      const { h, c1, c2 } = this.coefs(i, i + 1);
      const c3 = c2;
      if (order === 1) {
        for (let k = 0; k < n; k++) out[k] = c1 * xc[k]! - c2 * m[k]!;
      } else {
        const mp = this.ms[0]!;
        const r = F(F(this.lambdas[i - 1]! - this.lambdas[i]!) / h);
        for (let k = 0; k < n; k++) out[k] = c1 * xc[k]! - c2 * m[k]! - c3 * (0.5 * ((mp[k]! - m[k]!) / r));
      }
    }
    if (this.lowerOrderNums < 2) this.lowerOrderNums++;
    this.i++;
    return out;
  }
  /** Corrector coefficients (UniC at grid point i, from the step that produced x_i), as in stepArrays. */
  private correctorCoefs(i: number): { c1: number; c2: number; c3: number; r: number; rho0: number; rho1: number } {
    const F = this.F;
    const { h, phi, c1, c2 } = this.coefs(i - 1, i);
    if (this.lastOrder === 1) return { c1, c2, c3: c2, r: 1, rho0: 0, rho1: 0.5 };
    const r = F(F(this.lambdas[i - 2]! - this.lambdas[i - 1]!) / h);
    const hh = -h;
    const g1 = F(F(phi / hh) - 1);
    const b0 = F(g1 / phi);
    const g2 = F(F(g1 / hh) - 0.5);
    const b1 = F(F(g2 * 2) / phi);
    const rho1 = F(F(b1 - F(r * b0)) / F(1 - r));
    const rho0 = F(b0 - rho1);
    return { c1, c2, c3: c2, r, rho0, rho1 };
  }

  /**
   * stepArrays on Tensors. Each update is rewritten as one weighted sum of whole tensors (the same terms, expanded),
   * so it runs as a single backend linearCombination per update:
   *   m = x − σ_i v;
   *   UniC order 1: c1·last − c2·mp − c3·½(m − mp) = c1·last + (½c3 − c2)·mp − ½c3·m;
   *   UniC order 2: with D = (mpp − mp)/r: c1·last − c2·mp − c3(ρ0 D + ρ1(m − mp))
   *                = c1·last + (c3ρ0/r + c3ρ1 − c2)·mp − (c3ρ0/r)·mpp − c3ρ1·m;
   *   UniP order 1: c1·xc − c2·m;  order 2: c1·xc − c2·m − c3·½(mp − m)/r = c1·xc + (c3/(2r) − c2)·m − c3/(2r)·mp.
   */
  protected stepTensors(v: Tensor, x: Tensor): Tensor {
    const i = this.i;
    const N = this.schedule.steps;
    const sig = this.schedule.sigmas;
    if (this.tms.length && this.tms[0]!.size !== x.size) throw new ShapeError(`UniPC step: sample has ${x.size} elements, earlier steps had ${this.tms[0]!.size}`);
    const m = linearCombination([
      [1, x],
      [-sig[i]!, v],
    ]);
    let xc = x;
    if (i > 0 && this.tLast) {
      const last = this.tLast;
      const mp = this.tms[this.tms.length - 1]!;
      const { c1, c2, c3, r, rho0, rho1 } = this.correctorCoefs(i);
      if (this.lastOrder === 1) {
        xc = linearCombination([
          [c1, last],
          [0.5 * c3 - c2, mp],
          [-0.5 * c3, m],
        ]);
      } else {
        const mpp = this.tms[this.tms.length - 2]!;
        const a = (c3 * rho0) / r;
        xc = linearCombination([
          [c1, last],
          [a + c3 * rho1 - c2, mp],
          [-a, mpp],
          [-c3 * rho1, m],
        ]);
      }
    }
    this.tms.push(m);
    if (this.tms.length > 2) this.tms.shift();
    const order = Math.min(2, N - i, this.lowerOrderNums + 1);
    // Keep our own copy: the caller may write into its sample before the next corrector reads it.
    this.tLast = xc === x ? linearCombination([[1, x]]) : xc;
    this.lastOrder = order;
    let out: Tensor;
    if (sig[i + 1] === 0) out = linearCombination([[1, m]]);
    else {
      const { h, c1, c2 } = this.coefs(i, i + 1);
      const c3 = c2;
      if (order === 1) {
        out = linearCombination([
          [c1, xc],
          [-c2, m],
        ]);
      } else {
        const mp = this.tms[0]!;
        const F = this.F;
        const r = F(F(this.lambdas[i - 1]! - this.lambdas[i]!) / h);
        const a = (0.5 * c3) / r;
        out = linearCombination([
          [c1, xc],
          [a - c2, m],
          [-a, mp],
        ]);
      }
    }
    if (this.lowerOrderNums < 2) this.lowerOrderNums++;
    this.i++;
    return out;
  }
}

export type SolverKind = 'unipc' | 'euler';

export function makeSolver(kind: SolverKind, schedule: FlowSchedule, opts: SolverOptions = {}): FlowSolver {
  if (kind === 'unipc') return new UniPCSolver(schedule, opts);
  if (kind === 'euler') return new EulerSolver(schedule, opts);
  throw new ValueError(`unknown solver ${String(kind)} (expected 'unipc' or 'euler')`);
}

// ---------------------------------------------------------------------------------------------------------------
// classifier-free guidance and the sampling loop

/** v = v_u + w·(v_c − v_u), in double per element, stored in the operands' precision. */
export function cfgCombine(vCond: Tensor, vUncond: Tensor, scale: number): Tensor;
export function cfgCombine<A extends FloatArray>(vCond: A, vUncond: FloatArray, scale: number): A;
export function cfgCombine(vCond: Sample, vUncond: Sample, scale: number): Sample {
  if (!Number.isFinite(scale)) throw new ValueError(`cfgCombine: guidance scale must be finite, got ${scale}`);
  if (vCond instanceof Tensor) {
    if (!(vUncond instanceof Tensor)) throw new ValueError('cfgCombine: both velocities must be Tensors');
    if (vCond.shape.length !== vUncond.shape.length || vCond.shape.some((d, j) => d !== vUncond.shape[j]))
      throw new ShapeError(`cfgCombine: conditional [${vCond.shape.join(', ')}] and unconditional [${vUncond.shape.join(', ')}] shapes differ`);
    // u + w·c − w·u, one backend op (double per element, rounded once).
    return linearCombination([
      [1, vUncond],
      [scale, vCond],
      [-scale, vUncond],
    ]);
  }
  if (vUncond instanceof Tensor) throw new ValueError('cfgCombine: both velocities must be arrays');
  checkPair(vCond, vUncond, 'cfgCombine');
  const out = newLike(vCond);
  for (let k = 0; k < vCond.length; k++) out[k] = vUncond[k]! + scale * (vCond[k]! - vUncond[k]!);
  return out;
}

/** A velocity model: sample x at grid point `step` with integer timestep t and noise level σ → v. */
export type VelocityModel<X extends Sample> = (x: X, t: number, sigma: number, step: number) => X;

export interface SampleOptions<X extends Sample> {
  /** The (conditional) velocity model. */
  model: VelocityModel<X>;
  /** The initial sample at σ₀ (standard-normal noise). */
  noise?: X;
  /** Alias of `noise`. */
  x0?: X;
  /** Number of steps and shift of the grid; ignored when `schedule` is given. */
  steps?: number;
  shift?: number;
  /** Grid variant (default 'diffusers'). */
  variant?: FlowScheduleVariant;
  /** A prebuilt grid. */
  schedule?: FlowSchedule;
  /** Default 'unipc'. */
  solver?: SolverKind;
  /**
   * CFG: v = v_u + scale·(v_c − v_u). With scale 1 the unconditional model is not called. `both`, when given,
   * replaces the two calls of a step (`model`, then `uncond`) by one that returns [v_c, v_u] (e.g. one batched
   * forward; it must give what the two calls would).
   */
  guidance?: { scale: number; uncond: VelocityModel<X>; both?: (x: X, t: number, sigma: number, step: number) => [X, X] };
  emulateFloat32Scalars?: boolean;
  /** Called after every step with the new sample. */
  onStep?: (info: { step: number; t: number; sigma: number; x: X }) => void;
}

/** Run the whole sampling loop from noise at σ₀ down to σ = 0 and return the final sample. */
export function sample<X extends Sample>(opts: SampleOptions<X>): X {
  const init = opts.noise ?? opts.x0;
  if (init === undefined) throw new ValueError('sample: pass the initial noise as `noise` (or `x0`)');
  if (opts.noise !== undefined && opts.x0 !== undefined) throw new ValueError('sample: pass either `noise` or `x0`, not both');
  if (typeof opts.model !== 'function') throw new ValueError('sample: `model` must be a function (x, t, sigma, step) => v');
  let schedule = opts.schedule;
  if (!schedule) {
    if (opts.steps === undefined || opts.shift === undefined) throw new ValueError('sample: give `steps` and `shift`, or a `schedule`');
    schedule = flowSchedule(opts.steps, opts.shift, { variant: opts.variant });
  }
  const g = opts.guidance;
  if (g && (typeof g.uncond !== 'function' || !Number.isFinite(g.scale) || (g.both !== undefined && typeof g.both !== 'function')))
    throw new ValueError('sample: guidance needs a finite `scale` and an `uncond` model function (and `both`, if given, a function)');
  const solver = makeSolver(opts.solver ?? 'unipc', schedule, { emulateFloat32Scalars: opts.emulateFloat32Scalars });
  let x = init;
  while (!solver.done) {
    const step = solver.index;
    const t = solver.timestep;
    const sigma = solver.sigma;
    let v: X;
    if (g && g.scale !== 1) {
      const [vc, vu] = g.both ? g.both(x, t, sigma, step) : [opts.model(x, t, sigma, step), g.uncond(x, t, sigma, step)];
      v = (vc instanceof Tensor ? cfgCombine(vc, vu as Tensor, g.scale) : cfgCombine(vc as FloatArray, vu as FloatArray, g.scale)) as X;
    } else v = opts.model(x, t, sigma, step);
    x = (x instanceof Tensor ? solver.step(v as Tensor, x) : solver.step(v as FloatArray, x as FloatArray)) as X;
    opts.onStep?.({ step, t, sigma, x });
  }
  return x;
}
