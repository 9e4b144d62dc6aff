/**
 * The kernel interface every backend implements.
 *
 * Kernels work on flat Float32Arrays. Unless a parameter says otherwise, every array is dense, row-major
 * (C-contiguous) for the shape given alongside it, and starts at index 0 of the array passed (callers pass
 * `subarray` views for offsets). Output arrays are preallocated by the caller and fully overwritten unless the
 * kernel documents accumulation.
 *
 * Kernels trust the tensor layer for shape logic but must still never read or write outside the arrays they are
 * given: the native backend re-validates every length before touching memory and throws a `RangeError` otherwise.
 */

export type UnaryOp =
  | 'neg'
  | 'exp'
  | 'log'
  | 'sqrt'
  | 'rsqrt'
  | 'abs'
  | 'sign'
  | 'sin'
  | 'cos'
  | 'tanh'
  | 'sigmoid'
  | 'relu'
  | 'silu'
  | 'gelu_tanh'
  | 'gelu_erf'
  | 'square'
  | 'recip';

export type BinaryOp =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'max'
  | 'min'
  | 'pow'
  /** 1 where a == b, else 0 */
  | 'eq'
  /** 1 where a > b, else 0 */
  | 'gt';

/** A strided view of an array: element (i0..ik) lives at data[offset + sum(i_j * strides[j])]. Strides may be 0. */
export interface StridedView {
  data: Float32Array;
  offset: number;
  strides: readonly number[];
}

export type ReduceOp = 'sum' | 'max';

export interface Conv3dParams {
  /** (N, C, T, H, W) */
  xShape: readonly [number, number, number, number, number];
  /** (Cout, Cin / groups, KT, KH, KW) */
  wShape: readonly [number, number, number, number, number];
  /** (N, Cout, To, Ho, Wo) */
  yShape: readonly [number, number, number, number, number];
  /** (st, sh, sw) */
  stride: readonly [number, number, number];
  /** (t_front, t_back, h_top, h_bottom, w_left, w_right): zero padding, may be asymmetric */
  padding: readonly [number, number, number, number, number, number];
  groups: number;
}

export interface Backend {
  readonly name: 'native' | 'reference';

  /** out[i] = value for i in [0, n) of `out` */
  fill(out: Float32Array, value: number): void;

  /**
   * Gather a strided view into a dense array: out (dense, row-major for `shape`) = src viewed with `strides` from
   * `offset`. Strides may be 0 (broadcast) or any non-negative value; they are in elements.
   */
  stridedCopy(src: StridedView, shape: readonly number[], out: Float32Array): void;

  /** Scatter-add a dense array into a strided view of `dst` (views here never overlap themselves): dst[view] += src. */
  stridedAccumulate(src: Float32Array, shape: readonly number[], dst: StridedView): void;

  /**
   * Scatter a dense array into a strided view of `dst`, overwriting: dst[view] = src. The view must not overlap
   * itself (RangeError otherwise). Used to assemble outputs (cat, pad) without reading the destination first.
   */
  stridedScatter(src: Float32Array, shape: readonly number[], dst: StridedView): void;

  /** out = op(x) elementwise over n = out.length entries (dense). `alpha` is unused by all current ops. */
  unary(op: UnaryOp, x: Float32Array, out: Float32Array): void;

  /**
   * gx = gy * d op(x) / dx elementwise (dense, equal lengths). `y` is op(x) (provided because some derivatives are
   * cheapest from the output, e.g. exp, tanh, sigmoid, sqrt).
   */
  unaryBackward(op: UnaryOp, x: Float32Array, y: Float32Array, gy: Float32Array, gx: Float32Array): void;

  /** out = a * x + b elementwise (dense). */
  affine(x: Float32Array, a: number, b: number, out: Float32Array): void;

  /** out = x ** p elementwise (dense). */
  powScalar(x: Float32Array, p: number, out: Float32Array): void;

  /**
   * Broadcasting binary op: `a` and `b` are strided views already expanded to `shape` (0 strides on broadcast axes);
   * out is dense of `shape`.
   */
  binary(op: BinaryOp, a: StridedView, b: StridedView, shape: readonly number[], out: Float32Array): void;

  /** In place: acc[i] += x[i] * scale (dense, equal lengths). Gradient accumulation. */
  axpy(acc: Float32Array, x: Float32Array, scale: number): void;

  /**
   * Reduce the middle axis of a dense (outer, r, inner) array: out[o, i] = op over j of x[o, j, i].
   * out has outer * inner entries. r may be 0 only for 'sum' (result 0).
   */
  reduce(op: ReduceOp, x: Float32Array, outer: number, r: number, inner: number, out: Float32Array): void;

  /**
   * C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for b in [0, batch).
   * op(A) is M x K (A stored K x M when transA), op(B) is K x N (B stored N x K when transB), C is M x N, all dense
   * row-major; consecutive batch matrices are strideA/strideB/strideC elements apart (0 broadcasts one matrix).
   */
  gemm(
    transA: boolean,
    transB: boolean,
    batch: number,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: Float32Array,
    strideA: number,
    B: Float32Array,
    strideB: number,
    beta: number,
    C: Float32Array,
    strideC: number,
  ): void;

  /** y = conv3d(x, w) + bias (bias may be null). Cross-correlation, as torch.nn.functional.conv3d. */
  conv3dForward(p: Conv3dParams, x: Float32Array, w: Float32Array, bias: Float32Array | null, y: Float32Array): void;

  /** gx = d/dx of sum(y * gy) (overwrites gx). */
  conv3dBackwardData(p: Conv3dParams, gy: Float32Array, w: Float32Array, gx: Float32Array): void;

  /** gw = d/dw of sum(y * gy) (overwrites gw); gb (if not null) = sum of gy over N, T, H, W (overwrites gb). */
  conv3dBackwardWeights(
    p: Conv3dParams,
    x: Float32Array,
    gy: Float32Array,
    gw: Float32Array,
    gb: Float32Array | null,
  ): void;

  /**
   * Softmax (or log-softmax when `log`) over the last axis of a dense (rows, cols) array.
   */
  softmax(x: Float32Array, rows: number, cols: number, log: boolean, out: Float32Array): void;

  /**
   * Backward of softmax / log-softmax given the forward output y:
   * softmax: gx = y * (gy - sum(gy * y)); log-softmax: gx = gy - exp(y) * sum(gy).
   */
  softmaxBackward(y: Float32Array, gy: Float32Array, rows: number, cols: number, log: boolean, gx: Float32Array): void;

  /**
   * Normalise axis 1 of a dense (outer, c, inner) array at every (outer, inner) position.
   * kind 'layer': y = (x - mean) * rstd * w + b;  kind 'rms': y = x * rstd * w + b with rstd = 1/sqrt(mean(x^2)+eps).
   * w and b (length c) may be null (treated as 1 and 0). Writes y, and the per-position statistics into
   * mean (layer only; may be null for rms) and rstd, each of length outer * inner.
   */
  norm(
    kind: 'layer' | 'rms',
    x: Float32Array,
    outer: number,
    c: number,
    inner: number,
    w: Float32Array | null,
    b: Float32Array | null,
    eps: number,
    y: Float32Array,
    mean: Float32Array | null,
    rstd: Float32Array,
  ): void;

  /**
   * Backward of `norm` using the saved statistics. Overwrites gx; gw and gb (if not null) are overwritten with the
   * parameter gradients (sum over all positions).
   */
  normBackward(
    kind: 'layer' | 'rms',
    x: Float32Array,
    outer: number,
    c: number,
    inner: number,
    w: Float32Array | null,
    mean: Float32Array | null,
    rstd: Float32Array,
    gy: Float32Array,
    gx: Float32Array,
    gw: Float32Array | null,
    gb: Float32Array | null,
  ): void;

  /**
   * Scaled dot-product attention without a mask, for bh independent heads:
   * q (bh, lq, d), k (bh, lk, d), v (bh, lk, dv) -> out (bh, lq, dv) = softmax(q k^T * scale) v.
   * Also writes lse (bh, lq): the log-sum-exp of each row of the scaled scores (for the backward pass).
   * Must not allocate an lq x lk matrix for long sequences (tile over keys).
   */
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    bh: number,
    lq: number,
    lk: number,
    d: number,
    dv: number,
    scale: number,
    out: Float32Array,
    lse: Float32Array,
  ): void;

  /** Backward of `attention` (recomputes probabilities from lse). Overwrites gq, gk, gv. */
  attentionBackward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    out: Float32Array,
    lse: Float32Array,
    gout: Float32Array,
    bh: number,
    lq: number,
    lk: number,
    d: number,
    dv: number,
    scale: number,
    gq: Float32Array,
    gk: Float32Array,
    gv: Float32Array,
  ): void;

  /**
   * One AdamW step in place, torch semantics: p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
   * p -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps). `step` counts from 1.
   */
  adamw(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    step: number,
  ): void;

  /** Sum of squares of x (in double precision internally). For gradient-norm clipping. */
  sumSquares(x: Float32Array): number;

  /**
   * Exponential moving average in place: shadow[i] = decay * shadow[i] + (1 - decay) * x[i], computed in double and
   * rounded once to float32 (dense, equal lengths).
   */
  ema(shadow: Float32Array, x: Float32Array, decay: number): void;

  /**
   * Dtype widening: out[i] = src[i] as float32, where src holds bf16 or f16 bit patterns (kind says which). Equal
   * lengths (RangeError otherwise). Exact: every bf16 and f16 value is a float32.
   */
  widen(kind: 'bf16' | 'f16', src: Uint16Array, out: Float32Array): void;

  /** Dtype narrowing: out[i] = bf16(src[i]), rounded to nearest even (NaN stays NaN). Equal lengths. */
  narrowBf16(src: Float32Array, out: Uint16Array): void;

  /**
   * A linear layer on bf16 weights for few input rows: out[r, o] = (accumulate ? out[r, o] : 0) + sum_i x[r, i] *
   * w[o, i], x dense [rows, I] float32, w dense [O, I] bf16 bit patterns (widened exactly on the fly, never as a
   * whole), out dense [rows, O]. Products and sums in float32, in an order of the backend's choosing.
   */
  linearBf16(x: Float32Array, w: Uint16Array, rows: number, O: number, I: number, out: Float32Array, accumulate: boolean): void;

  /**
   * Linear combination: out[k] = sum over j of coefs[j] * xs[j][k], accumulated in double in the order given and
   * rounded once to float32 (dense, equal lengths; `out` may be one of the xs). The samplers' update rule.
   */
  lincomb(coefs: readonly number[], xs: readonly Float32Array[], out: Float32Array): void;
}
