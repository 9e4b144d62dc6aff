/**
 * AdamW with PyTorch semantics (decoupled weight decay, bias correction), parameter groups, and gradient clipping by
 * global norm.
 *
 * Every parameter has a name (the model's key path, or its position "0", "1", ... when a plain list is given) and the
 * moments are Tensors keyed by that name, so a checkpoint's optimiser state is matched to parameters by name, never
 * by position. The arithmetic runs as backend ops (src/tensor/inplace.ts): nothing here touches a host array.
 */
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { adamwUpdate, copyInto, sumSquares } from '../tensor/inplace.js';
import { Tensor, noGrad, zeros } from '../tensor/tensor.js';
import { affine } from '../tensor/ops.js';

export interface AdamWOptions {
  lr?: number;
  betas?: readonly [number, number];
  eps?: number;
  weightDecay?: number;
}

/** A group of named parameters with its own peak learning rate and weight decay (the optimiser's when left out). */
export interface ParamGroupSpec {
  /** a label for messages (default "group <i>") */
  name?: string;
  params: Iterable<readonly [string, Tensor]>;
  lr?: number;
  weightDecay?: number;
}

export interface ParamGroup {
  readonly name: string;
  readonly names: readonly string[];
  /** the group's peak (unscheduled) learning rate */
  readonly baseLr: number;
  /** the learning rate the next step uses */
  lr: number;
  readonly weightDecay: number;
}

/** The parameters an optimiser or EMA takes: a plain list (named by position), named pairs, or groups of named pairs. */
export type ParamsInput = Iterable<Tensor> | Iterable<readonly [string, Tensor]> | readonly ParamGroupSpec[];

function isGroupList(x: unknown[]): x is ParamGroupSpec[] {
  return x.length > 0 && x.every((g) => typeof g === 'object' && g !== null && !(g instanceof Tensor) && !Array.isArray(g) && 'params' in g);
}

/** Named parameters from any accepted input form (names checked unique, tensors dense leaves). */
export function namedParamList(what: string, input: Iterable<Tensor> | Iterable<readonly [string, Tensor]>): [string, Tensor][] {
  const out: [string, Tensor][] = [];
  let i = 0;
  for (const e of input as Iterable<unknown>) {
    if (e instanceof Tensor) out.push([String(i), e]);
    else if (Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && e[1] instanceof Tensor) out.push([e[0], e[1]]);
    else throw new ValueError(`${what}: parameter ${i} must be a Tensor or a [name, Tensor] pair`);
    i++;
  }
  const seen = new Set<string>();
  for (const [n, p] of out) {
    if (seen.has(n)) throw new ValueError(`${what}: parameter name "${n}" appears twice`);
    seen.add(n);
    if (!p.isContiguous() || p.offset !== 0) throw new ShapeError(`${what}: parameter ${n} ${fmtShape(p.shape)} must be a dense leaf tensor (use parameter())`);
  }
  return out;
}

interface Slot {
  readonly p: Tensor;
  readonly m: Tensor;
  readonly v: Tensor;
  readonly group: ParamGroup;
}

export class AdamW {
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly groups: ParamGroup[];
  /** Step count (the number of step() calls so far). */
  stepCount = 0;
  private readonly slots = new Map<string, Slot>();

  constructor(params: ParamsInput, opts: AdamWOptions = {}) {
    const lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 1e-2;
    const checkHyper = (name: string, v: number) => {
      if (!Number.isFinite(v) || v < 0) throw new ValueError(`AdamW: ${name} must be finite and >= 0, got ${v}`);
    };
    for (const [name, v] of [['lr', lr], ['beta1', this.betas[0]], ['beta2', this.betas[1]], ['eps', this.eps], ['weightDecay', this.weightDecay]] as const) checkHyper(name, v);
    if (this.betas[0] >= 1 || this.betas[1] >= 1) throw new ValueError(`AdamW: betas must be < 1, got [${this.betas.join(', ')}]`);
    const list = [...(params as Iterable<unknown>)];
    const specs: ParamGroupSpec[] = isGroupList(list) ? list : [{ params: namedParamList('AdamW', list as Tensor[]) }];
    this.groups = specs.map((g, gi) => {
      const name = g.name ?? `group ${gi}`;
      const glr = g.lr ?? lr;
      const wd = g.weightDecay ?? this.weightDecay;
      checkHyper(`${name} lr`, glr);
      checkHyper(`${name} weightDecay`, wd);
      const named = namedParamList(`AdamW ${name}`, g.params);
      const group: ParamGroup = { name, names: named.map(([n]) => n), baseLr: glr, lr: glr, weightDecay: wd };
      for (const [n, p] of named) {
        if (this.slots.has(n)) throw new ValueError(`AdamW: parameter "${n}" is in two groups`);
        this.slots.set(n, { p, m: zeros(p.shape), v: zeros(p.shape), group });
      }
      return group;
    });
  }

  /** The parameters in order, with their names. */
  namedParams(): [string, Tensor][] {
    return [...this.slots].map(([n, s]) => [n, s.p]);
  }

  get params(): Tensor[] {
    return [...this.slots.values()].map((s) => s.p);
  }

  /** The first group's learning rate; setting it sets every group's (the single-group case). */
  get lr(): number {
    return this.groups[0]?.lr ?? 0;
  }

  set lr(v: number) {
    for (const g of this.groups) g.lr = v;
  }

  /** Sets each group's learning rate from its peak, e.g. `opt.schedule((peak) => lrAt(step, { ...s, lr: peak }))`. */
  schedule(fn: (baseLr: number, group: ParamGroup) => number): void {
    for (const g of this.groups) g.lr = fn(g.baseLr, g);
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    this.stepCount++;
    for (const [n, s] of this.slots) {
      const g = s.p.grad;
      if (!g) continue;
      if (g.size !== s.p.size) throw new ShapeError(`AdamW: gradient ${fmtShape(g.shape)} of ${n} does not match parameter ${fmtShape(s.p.shape)}`);
      const grad = g.ndim === s.p.ndim && g.shape.every((d, i) => d === s.p.shape[i]) ? g : g.reshape([...s.p.shape]);
      adamwUpdate(s.p, grad, s.m, s.v, { lr: s.group.lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: s.group.weightDecay, step: this.stepCount });
    }
  }

  zeroGrad(): void {
    for (const s of this.slots.values()) s.p.grad = null;
  }

  /** The moments by parameter name (the optimiser's own tensors: a checkpoint writer reads them, never changes them). */
  moments(): Map<string, { m: Tensor; v: Tensor }> {
    return new Map([...this.slots].map(([n, s]) => [n, { m: s.m, v: s.v }]));
  }

  /** Loads moments by name; every parameter must be present with its shape (checked before anything changes). */
  loadMoments(step: number, get: (name: string, which: 'm' | 'v', shape: readonly number[]) => Tensor): void {
    if (!Number.isSafeInteger(step) || step < 0) throw new ValueError(`AdamW: step count must be an integer >= 0, got ${step}`);
    const loaded = new Map<string, { m: Tensor; v: Tensor }>();
    for (const [n, s] of this.slots) {
      const m = get(n, 'm', s.p.shape);
      const v = get(n, 'v', s.p.shape);
      for (const [w, t] of [['m', m], ['v', v]] as const)
        if (t.ndim !== s.p.ndim || t.shape.some((d, i) => d !== s.p.shape[i])) throw new ShapeError(`AdamW state ${w} of ${n} has shape ${fmtShape(t.shape)}, expected ${fmtShape(s.p.shape)}`);
      loaded.set(n, { m, v });
    }
    for (const [n, s] of this.slots) {
      copyInto(s.m, loaded.get(n)!.m);
      copyInto(s.v, loaded.get(n)!.v);
    }
    this.stepCount = step;
  }
}

/**
 * Scales all gradients so their global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_). Returns the norm
 * before clipping.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new ValueError(`clipGradNorm: maxNorm must be > 0, got ${maxNorm}`);
  const ps = [...params].filter((p) => p.grad);
  let ss = 0;
  for (const p of ps) ss += sumSquares(p.grad!);
  const norm = Math.sqrt(ss);
  const coef = maxNorm / (norm + 1e-6);
  // New tensors (a backend op) rather than scaleInPlace: a stored gradient may share storage with another leaf's
  // (autograd stores the first gradient as is, e.g. the same tensor for both inputs of an add, or a view of it), and
  // scaling in place would scale such storage twice.
  if (coef < 1) for (const p of ps) p.grad = noGrad(() => affine(p.grad!, coef, 0));
  return norm;
}
