/**
 * AdamW with PyTorch semantics (decoupled weight decay, bias correction) and gradient clipping by global norm.
 */
import { backend } from '../backend/index.js';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { Tensor, noGrad } from '../tensor/tensor.js';
import { affine } from '../tensor/ops.js';

export interface AdamWOptions {
  lr?: number;
  betas?: readonly [number, number];
  eps?: number;
  weightDecay?: number;
}

export class AdamW {
  lr: number;
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly params: Tensor[];
  /** Step count (the number of step() calls so far). */
  stepCount = 0;
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];

  constructor(params: Iterable<Tensor>, opts: AdamWOptions = {}) {
    this.params = [...params];
    this.lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 1e-2;
    for (const [name, v] of [
      ['lr', this.lr],
      ['beta1', this.betas[0]],
      ['beta2', this.betas[1]],
      ['eps', this.eps],
      ['weightDecay', this.weightDecay],
    ] as const)
      if (!Number.isFinite(v) || v < 0) throw new ValueError(`AdamW: ${name} must be finite and >= 0, got ${v}`);
    if (this.betas[0] >= 1 || this.betas[1] >= 1) throw new ValueError(`AdamW: betas must be < 1, got [${this.betas.join(', ')}]`);
    this.params.forEach((p, i) => {
      if (!p.isContiguous() || p.offset !== 0)
        throw new ShapeError(`AdamW: parameter ${i} ${fmtShape(p.shape)} must be a dense leaf tensor (use parameter())`);
    });
    this.m = this.params.map((p) => new Float32Array(p.size));
    this.v = this.params.map((p) => new Float32Array(p.size));
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    this.stepCount++;
    const B = backend();
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      if (p.grad.size !== p.size) throw new ShapeError(`AdamW: gradient ${fmtShape(p.grad.shape)} does not match parameter ${fmtShape(p.shape)}`);
      B.adamw(p.data(), p.grad.data(), this.m[i]!, this.v[i]!, this.lr, this.betas[0], this.betas[1], this.eps, this.weightDecay, this.stepCount);
    });
  }

  zeroGrad(): void {
    for (const p of this.params) p.grad = null;
  }

  /** Moment buffers, for checkpoints. */
  stateDict(): { step: number; m: Float32Array[]; v: Float32Array[] } {
    return { step: this.stepCount, m: this.m, v: this.v };
  }

  loadStateDict(s: { step: number; m: Float32Array[]; v: Float32Array[] }): void {
    if (s.m.length !== this.m.length || s.v.length !== this.v.length)
      throw new ShapeError(`AdamW state has ${s.m.length} buffers, optimizer has ${this.m.length} parameters`);
    s.m.forEach((b, i) => {
      if (b.length !== this.m[i]!.length) throw new ShapeError(`AdamW state buffer ${i} has ${b.length} entries, expected ${this.m[i]!.length}`);
      this.m[i]!.set(b);
      this.v[i]!.set(s.v[i]!);
    });
    this.stepCount = s.step;
  }
}

/**
 * Scales all gradients so their global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_). Returns the norm
 * before clipping.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new ValueError(`clipGradNorm: maxNorm must be > 0, got ${maxNorm}`);
  const B = backend();
  const ps = [...params].filter((p) => p.grad);
  let ss = 0;
  for (const p of ps) ss += B.sumSquares(p.grad!.data());
  const norm = Math.sqrt(ss);
  const coef = maxNorm / (norm + 1e-6);
  // New tensors rather than in-place scaling: one gradient tensor may be shared by several parameters.
  if (coef < 1) for (const p of ps) p.grad = noGrad(() => affine(p.grad!, coef, 0));
  return norm;
}
