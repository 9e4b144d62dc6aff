/**
 * The umT5 encoder (official Wan `wan/modules/t5.py` `T5Encoder`, as `umt5_xxl(encoder_only=True)` builds it), module
 * for module, so key paths are the official checkpoint's (`blocks.3.attn.q.weight`,
 * `blocks.3.pos_embedding.embedding.weight`, `blocks.3.ffn.gate.0.weight`, `norm.weight`, ...). Parameters start
 * shape-only: the 5.68 B-parameter XXL can be built and inspected without allocating it.
 *
 * Semantics (fixtures README, umt5/): x = token_embedding(ids), unscaled; per block x += attn(norm1(x)),
 * x += ffn(norm2(x)); final norm. T5 norm = x * rsqrt(mean(x^2) + eps) * w (no centring, no bias). Attention: bias-free
 * q/k/v/o, no 1/sqrt(d) scaling, logits + position bias (+ mask: a key with mask 0 gets the float32 minimum instead of
 * its position bias), softmax in float32. Each block has its own (num_buckets, heads) position table (shared_pos false).
 * FFN = fc2(fc1(x) * gelu_tanh(gate.0(x))).
 */
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import * as ops from '../../tensor/ops.js';
import { softmax } from '../../tensor/nn_ops.js';
import { Tensor, empty, intTensor, isGradEnabled } from '../../tensor/tensor.js';
import { widenInto } from '../../tensor/inplace.js';
import { Module } from '../../nn/module.js';
import { Linear } from '../../nn/linear.js';
import { Embedding } from '../../nn/embedding.js';
import { RMSNorm } from '../../nn/norm.js';
import { Container } from '../../nn/container.js';
import { mergeHeads, splitHeads } from '../../nn/attention.js';
import { validateUmt5Config, type Umt5Config } from './config.js';

/** The float32 minimum, which the reference writes over the position bias of masked keys (torch.finfo(float32).min). */
export const F32_MIN = -3.4028234663852886e38;

/**
 * The bucket of relative offset rel = k - q (bidirectional): keys after the query use the upper half. Within a half
 * of nb = num_buckets / 2 buckets, distances r < nb / 2 are exact; larger ones get
 * nb/2 + trunc(log(r / (nb/2)) / log(max_dist / (nb/2)) * (nb - nb/2)), at most nb - 1. The logarithm is evaluated in
 * float32 as the reference does (torch.log of a float32 tensor, divided by a Python float and multiplied, each
 * rounded to float32), so the truncation falls the same way at the exact powers where it matters.
 */
export function umt5RelativeBucket(rel: number, numBuckets: number, maxDist: number, bidirectional = true): number {
  let nb = numBuckets;
  let base = 0;
  let r: number;
  if (bidirectional) {
    nb = Math.floor(numBuckets / 2);
    base = rel > 0 ? nb : 0;
    r = Math.abs(rel);
  } else r = -Math.min(rel, 0);
  const exact = Math.floor(nb / 2);
  if (r < exact) return base + r;
  const f = Math.fround;
  const ratio = f(f(r) / exact);
  const q = f(f(Math.log(ratio)) / f(Math.log(maxDist / exact)));
  const large = exact + Math.trunc(f(q * (nb - exact)));
  return base + Math.min(large, nb - 1);
}

/** Buckets of the offsets k - q = i - (L - 1), i = 0 .. 2L - 2 (the layout of the fixture's rel_buckets_by_offset). */
export function umt5BucketsByOffset(L: number, numBuckets: number, maxDist: number): Int32Array {
  const out = new Int32Array(Math.max(0, 2 * L - 1));
  for (let i = 0; i < out.length; i++) out[i] = umt5RelativeBucket(i - (L - 1), numBuckets, maxDist);
  return out;
}

/** `pos_embedding`: the (num_buckets, heads) table behind the position bias (key `embedding.weight`). */
export class Umt5RelativeEmbedding extends Module {
  readonly embedding: Embedding;
  constructor(
    readonly numBuckets: number,
    readonly numHeads: number,
    readonly maxDist: number,
  ) {
    super();
    this.embedding = this.module('embedding', new Embedding(numBuckets, numHeads));
  }

  /**
   * The additive attention bias (B', heads, L, L): bias[h, q, k] = table[bucket(k - q), h]. With a mask (B, L) that
   * has zeros, B' = B and keys with mask 0 get F32_MIN instead (the reference's masked_fill); otherwise B' = 1.
   */
  bias(L: number, mask: Float32Array | null = null, B = 1): Tensor {
    const n = this.numHeads;
    const table = this.embedding.weight.value.readSync(); // (buckets, heads): a few KiB
    const buckets = umt5BucketsByOffset(L, this.numBuckets, this.maxDist);
    const one = new Float32Array(n * L * L);
    for (let h = 0; h < n; h++)
      for (let q = 0; q < L; q++) {
        const row = (h * L + q) * L;
        const off = L - 1 - q;
        for (let k = 0; k < L; k++) one[row + k] = table[buckets[off + k]! * n + h]!;
      }
    if (!mask || mask.every((m) => m !== 0)) return new Tensor(one, [1, n, L, L]);
    const all = new Float32Array(B * n * L * L);
    for (let b = 0; b < B; b++) {
      const dst = all.subarray(b * n * L * L, (b + 1) * n * L * L);
      dst.set(one);
      for (let k = 0; k < L; k++) {
        if (mask[b * L + k] !== 0) continue;
        for (let r = 0; r < n * L; r++) dst[r * L + k] = F32_MIN;
      }
    }
    return new Tensor(all, [B, n, L, L]);
  }
}

/**
 * Float32 scratch buffers, one per weight shape, into which a bf16 / f16 weight is widened whole just before its linear
 * runs (inference only). The stored weights stay bf16; the scratch costs one float32 copy of each distinct weight shape
 * (umT5-XXL: 4096^2 + 2 x 10240 x 4096 values, 384 MiB) and turns each linear into one widening and one GEMM instead of
 * a widening and a GEMM per 4 MiB block of rows (about 190 of each per XXL layer), which dominates at prompt lengths.
 */
export class WidenScratch {
  private readonly bufs = new Map<string, Tensor>();
  /** x @ layer.weight^T, through the scratch when the weight is half precision and no gradient is recorded. */
  linear(layer: Linear, x: Tensor): Tensor {
    const w = layer.weight.value;
    // Few rows on bf16 weights: ops.linear reads the weight once, widened in registers (no scratch needed).
    const rows = x.size / Math.max(1, x.shape[x.ndim - 1]!);
    if (w.dtype === 'f32' || isGradEnabled() || (w.dtype === 'bf16' && rows <= ops.BF16_DIRECT_MAX_ROWS)) return layer.forward(x);
    const key = w.shape.join('x');
    let buf = this.bufs.get(key);
    if (!buf) this.bufs.set(key, (buf = empty(w.shape)));
    widenInto(buf, w);
    return ops.linear(x, buf, layer.bias ? layer.bias.value : null);
  }
  /** Frees the buffers (they are made again on the next use). */
  clear(): void {
    this.bufs.clear();
  }
}

const direct = { linear: (layer: Linear, x: Tensor) => layer.forward(x) };
type Lin = { linear(layer: Linear, x: Tensor): Tensor };

/** Bias-free q/k/v (dim -> dim_attn) and o (dim_attn -> dim); unscaled attention with an additive bias. */
export class Umt5Attention extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  constructor(
    readonly dim: number,
    readonly dimAttn: number,
    readonly numHeads: number,
  ) {
    super();
    this.q = this.module('q', new Linear(dim, dimAttn, { bias: false }));
    this.k = this.module('k', new Linear(dim, dimAttn, { bias: false }));
    this.v = this.module('v', new Linear(dim, dimAttn, { bias: false }));
    this.o = this.module('o', new Linear(dimAttn, dim, { bias: false }));
  }

  /** Attention of q, k, v (B, L, dim_attn) with an additive bias (1 or B, heads, L, L) -> (B, L, dim_attn). */
  private attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor): Tensor {
    const n = this.numHeads;
    // T5 does not scale the logits
    const s = ops.add(ops.matmul(splitHeads(q, n), ops.transpose(splitHeads(k, n), -1, -2)), bias);
    return mergeHeads(ops.matmul(softmax(s, -1), splitHeads(v, n)));
  }

  /** x (B, L, dim), bias (1 or B, heads, L, L) -> (B, L, dim). */
  forward(x: Tensor, bias: Tensor, lin: Lin = direct): Tensor {
    return lin.linear(this.o, this.attend(lin.linear(this.q, x), lin.linear(this.k, x), lin.linear(this.v, x), bias));
  }

  /**
   * Several sequences packed along the token axis, x (1, sum L_i, dim): the projections run once over all tokens (one
   * pass over the weights), attention within each sequence alone (bias_i (1, heads, L_i, L_i)).
   */
  forwardPacked(x: Tensor, lens: readonly number[], biases: readonly Tensor[], lin: Lin = direct): Tensor {
    if (lens.length === 1) return this.forward(x, biases[0]!, lin);
    const q = lin.linear(this.q, x);
    const k = lin.linear(this.k, x);
    const v = lin.linear(this.v, x);
    const parts: Tensor[] = [];
    let off = 0;
    for (const [i, L] of lens.entries()) {
      const cut = (t: Tensor) => ops.slice(t, 1, off, off + L);
      parts.push(this.attend(cut(q), cut(k), cut(v), biases[i]!));
      off += L;
    }
    return lin.linear(this.o, ops.cat(parts, 1));
  }
}

/** fc2(fc1(x) * gelu_tanh(gate.0(x))); keys `gate.0`, `fc1`, `fc2` (the gate is a Sequential(Linear, GELU)). */
export class Umt5FeedForward extends Module {
  readonly gate: Linear;
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(dim: number, dimFfn: number) {
    super();
    const g = this.module('gate', new Container());
    this.gate = g.add('0', new Linear(dim, dimFfn, { bias: false }));
    this.fc1 = this.module('fc1', new Linear(dim, dimFfn, { bias: false }));
    this.fc2 = this.module('fc2', new Linear(dimFfn, dim, { bias: false }));
  }
  forward(x: Tensor, lin: Lin = direct): Tensor {
    return lin.linear(this.fc2, ops.mul(lin.linear(this.fc1, x), ops.gelu(lin.linear(this.gate, x), 'tanh')));
  }
}

export class Umt5Block extends Module {
  readonly norm1: RMSNorm;
  readonly attn: Umt5Attention;
  readonly norm2: RMSNorm;
  readonly ffn: Umt5FeedForward;
  readonly pos_embedding: Umt5RelativeEmbedding | null;
  constructor(c: Umt5Config) {
    super();
    this.norm1 = this.module('norm1', new RMSNorm(c.dim, c.eps));
    this.attn = this.module('attn', new Umt5Attention(c.dim, c.dim_attn, c.num_heads));
    this.norm2 = this.module('norm2', new RMSNorm(c.dim, c.eps));
    this.ffn = this.module('ffn', new Umt5FeedForward(c.dim, c.dim_ffn));
    this.pos_embedding = c.shared_pos ? null : this.module('pos_embedding', new Umt5RelativeEmbedding(c.num_buckets, c.num_heads, c.max_dist));
  }
  forward(x: Tensor, bias: Tensor, lin: Lin = direct): Tensor {
    x = ops.add(x, this.attn.forward(this.norm1.forward(x), bias, lin));
    return ops.add(x, this.ffn.forward(this.norm2.forward(x), lin));
  }
  /** Packed sequences (see Umt5Attention.forwardPacked): every step but attention is per token. */
  forwardPacked(x: Tensor, lens: readonly number[], biases: readonly Tensor[], lin: Lin = direct): Tensor {
    x = ops.add(x, this.attn.forwardPacked(this.norm1.forward(x), lens, biases, lin));
    return ops.add(x, this.ffn.forward(this.norm2.forward(x), lin));
  }
}

/** Mask values as float32 (1 real, 0 pad), checked to be 0 or 1; null when absent. */
function maskValues(mask: Tensor | null, B: number, L: number): Float32Array | null {
  if (!mask) return null;
  if (mask.ndim !== 2 || mask.shape[0] !== B || mask.shape[1] !== L) throw new ShapeError(`mask must be (${B}, ${L}) like ids, got ${fmtShape(mask.shape)}`);
  const m = mask.readSync();
  for (let i = 0; i < m.length; i++)
    if (m[i] !== 0 && m[i] !== 1) throw new ValueError(`mask[${Math.floor(i / L)}, ${i % L}] is ${m[i]}; a mask holds 1 (real token) or 0 (padding)`);
  return m;
}

export class Umt5Model extends Module {
  readonly config: Umt5Config;
  readonly token_embedding: Embedding;
  readonly pos_embedding: Umt5RelativeEmbedding | null;
  readonly blocks: Umt5Block[];
  readonly norm: RMSNorm;
  /**
   * Half-precision weights are widened whole into reused float32 buffers for inference (see WidenScratch); set
   * `widenScratch = null` to widen block by block inside each linear instead (no extra memory, slower at short
   * lengths).
   */
  widenScratch: WidenScratch | null = new WidenScratch();

  constructor(config: Umt5Config) {
    super();
    const c = validateUmt5Config({ ...config });
    this.config = c;
    this.token_embedding = this.module('token_embedding', new Embedding(c.vocab, c.dim));
    this.pos_embedding = c.shared_pos ? this.module('pos_embedding', new Umt5RelativeEmbedding(c.num_buckets, c.num_heads, c.max_dist)) : null;
    const blocks = this.module('blocks', new Container());
    this.blocks = [];
    for (let i = 0; i < c.num_layers; i++) this.blocks.push(blocks.add(String(i), new Umt5Block(c)));
    this.norm = this.module('norm', new RMSNorm(c.dim, c.eps));
  }

  /** Checks ids (B, L): integral values in [0, vocab). Returns them as an i32 tensor. */
  private checkIds(ids: Tensor): Tensor {
    if (ids.ndim !== 2) throw new ShapeError(`ids must be (B, L) token ids, got ${fmtShape(ids.shape)}`);
    if (ids.shape[0]! < 1 || ids.shape[1]! < 1) throw new ShapeError(`ids ${fmtShape(ids.shape)} is empty`);
    if (ids.dtype === 'i32') return ids; // embedding() checks the range
    const v = ids.readSync();
    const V = this.config.vocab;
    const out = new Int32Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const x = v[i]!;
      if (!Number.isInteger(x) || x < 0 || x >= V) throw new ValueError(`ids: element ${i} is ${x}, not a token id in [0, ${V})`);
      out[i] = x;
    }
    return intTensor(out, ids.shape);
  }

  /**
   * Hidden states (B, L, dim) at every position, padding included, exactly as the reference's T5Encoder.forward(ids,
   * mask): mask (B, L) (1 real, 0 pad) or null (every key attended).
   */
  forward(ids: Tensor, mask: Tensor | null = null): Tensor {
    const tok = this.checkIds(ids);
    const [B, L] = tok.shape as [number, number];
    const m = maskValues(mask, B, L);
    let x = this.token_embedding.forward(tok);
    const shared = this.pos_embedding ? this.pos_embedding.bias(L, m, B) : null;
    const lin = this.widenScratch ?? direct;
    for (const blk of this.blocks) x = blk.forward(x, shared ?? blk.pos_embedding!.bias(L, m, B), lin);
    return this.norm.forward(x);
  }

  /**
   * The hidden states (L_i, dim) of several token sequences, each attending only within itself: the same as
   * forward() on each sequence alone, with the tokens of all sequences packed into one (1, sum L_i) row so that every
   * weight is read (and, for bf16, widened) once per call instead of once per sequence. No padding is computed.
   */
  forwardSequences(seqs: readonly Int32Array[]): Tensor[] {
    if (seqs.length === 0) return [];
    const lens = seqs.map((s) => s.length);
    if (lens.some((n) => n < 1)) throw new ShapeError('forwardSequences: every sequence needs at least one token');
    const all = new Int32Array(lens.reduce((a, b) => a + b, 0));
    let off = 0;
    for (const s of seqs) {
      all.set(s, off);
      off += s.length;
    }
    const tok = this.checkIds(intTensor(all, [1, all.length]));
    let x = this.token_embedding.forward(tok);
    const biasesOf = (pe: Umt5RelativeEmbedding) => {
      const byLen = new Map<number, Tensor>();
      return lens.map((L) => {
        let b = byLen.get(L);
        if (!b) byLen.set(L, (b = pe.bias(L)));
        return b;
      });
    };
    const shared = this.pos_embedding ? biasesOf(this.pos_embedding) : null;
    const lin = this.widenScratch ?? direct;
    for (const blk of this.blocks) x = blk.forwardPacked(x, lens, shared ?? biasesOf(blk.pos_embedding!), lin);
    const h = ops.squeeze(this.norm.forward(x), 0);
    if (seqs.length === 1) return [h];
    return ops.split(h, lens, 0).map((t) => ops.contiguous(t));
  }
}
