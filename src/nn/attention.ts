/**
 * Multi-head attention: q/k/v/o linears (keys `q`, `k`, `v`, `o`), optional RMS norms on the full-width q and k
 * (`norm_q`, `norm_k`, as Wan applies them before splitting heads), and an optional position hook (RoPE) applied to
 * q and k in (B, L, heads, head_dim) layout. Scaled dot-product attention with scale 1/sqrt(head_dim).
 */
import { ValueError } from '../errors.js';
import { attention } from '../tensor/nn_ops.js';
import * as ops from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import { Linear } from './linear.js';
import { Module } from './module.js';
import { RMSNorm } from './norm.js';

/** Maps q or k of shape (B, L, heads, head_dim) to the same shape (e.g. a rotary embedding). */
export type PositionHook = (t: Tensor) => Tensor;

/** Splits (B, L, D) into heads: (B, heads, L, d). */
export function splitHeads(x: Tensor, n: number): Tensor {
  const [B, L, D] = x.shape as [number, number, number];
  return ops.permute(ops.reshape(x, [B, L, n, D / n]), [0, 2, 1, 3]);
}

/** (B, heads, L, d) -> (B, L, D). */
export function mergeHeads(x: Tensor): Tensor {
  const [B, n, L, d] = x.shape as [number, number, number, number];
  return ops.reshape(ops.permute(x, [0, 2, 1, 3]), [B, L, n * d]);
}

export interface AttentionOptions {
  /** RMS-normalise q and k (over the full width) with this eps; null/undefined: no norms */
  qkNormEps?: number | null;
  /** the linears' bias (default true) */
  bias?: boolean;
}

/**
 * The q/k/v/o projections and norms, and the steps of attention (queries, keysValues, attend, project), without a
 * fixed forward signature: model blocks (Wan's self- and cross-attention) extend it with their own forward.
 */
export class AttentionLayers extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly norm_q: RMSNorm | null;
  readonly norm_k: RMSNorm | null;
  constructor(
    readonly dim: number,
    readonly numHeads: number,
    opts: AttentionOptions = {},
  ) {
    super();
    if (!Number.isInteger(numHeads) || numHeads < 1 || dim % numHeads)
      throw new ValueError(`MultiHeadAttention: dim ${dim} must be a multiple of a positive head count, got ${numHeads}`);
    const bias = opts.bias ?? true;
    this.q = this.module('q', new Linear(dim, dim, { bias }));
    this.k = this.module('k', new Linear(dim, dim, { bias }));
    this.v = this.module('v', new Linear(dim, dim, { bias }));
    this.o = this.module('o', new Linear(dim, dim, { bias }));
    const eps = opts.qkNormEps;
    this.norm_q = eps != null ? this.module('norm_q', new RMSNorm(dim, eps)) : null;
    this.norm_k = eps != null ? this.module('norm_k', new RMSNorm(dim, eps)) : null;
  }

  get headDim(): number {
    return this.dim / this.numHeads;
  }

  /** q projected (and normed), in heads (B, heads, L, d), the position hook applied. */
  queries(x: Tensor, pos: PositionHook | null = null): Tensor {
    let q = this.q.forward(x);
    if (this.norm_q) q = this.norm_q.forward(q);
    return this.toHeads(q, pos);
  }

  /** k and v of a context, in heads; k normed and the position hook applied. */
  keysValues(ctx: Tensor, pos: PositionHook | null = null): [Tensor, Tensor] {
    let k = this.k.forward(ctx);
    if (this.norm_k) k = this.norm_k.forward(k);
    return [this.toHeads(k, pos), splitHeads(this.v.forward(ctx), this.numHeads)];
  }

  protected toHeads(t: Tensor, pos: PositionHook | null): Tensor {
    if (!pos) return splitHeads(t, this.numHeads);
    const [B, L, D] = t.shape as [number, number, number];
    return ops.permute(pos(ops.reshape(t, [B, L, this.numHeads, D / this.numHeads])), [0, 2, 1, 3]);
  }

  /** Output projection of attended heads (B, heads, L, d) -> (B, L, D). */
  project(heads: Tensor): Tensor {
    return this.o.forward(mergeHeads(heads));
  }

  /** x (B, L, D) attends to ctx (B, S, D) (ctx = x: self-attention); pos is applied to q and k. */
  attend(x: Tensor, ctx: Tensor | null = null, pos: PositionHook | null = null): Tensor {
    const q = this.queries(x, pos);
    const [k, v] = this.keysValues(ctx ?? x, pos);
    return this.project(attention(q, k, v));
  }
}

/** Multi-head attention with forward(x, ctx = x, pos = none). */
export class MultiHeadAttention extends AttentionLayers {
  forward(x: Tensor, ctx: Tensor | null = null, pos: PositionHook | null = null): Tensor {
    return this.attend(x, ctx, pos);
  }
}
