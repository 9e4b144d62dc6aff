/**
 * The reference backend: every kernel of `Backend` written as plain loops over Float32Arrays.
 *
 * This is the oracle the native backend is tested against and the fallback where the addon cannot be built, so the
 * priorities are, in order: exactly the semantics documented in backend.ts (torch conventions where it is silent),
 * readable code, then speed. Reductions and dot products accumulate in float64, so results are at least as accurate as
 * a float32 implementation; every value is rounded to float32 once, when it is stored.
 *
 * Validation is cheap and up front: sizes must be non-negative integers, every array must be long enough for what the
 * kernel reads or writes (RangeError otherwise; for strided views the largest index reached is computed from shape and
 * strides), and unknown op names throw a TypeError. Zero-size problems are no-ops, except that kernels documented to
 * overwrite an output with a sum (gradients) still write zeros there.
 */
import { bf16ToF32, f16ToF32, f32ToBf16 } from './convert.js';
import type { Backend, BinaryOp, Conv3dParams, ReduceOp, StridedView, UnaryOp } from './backend.js';

// ---------------------------------------------------------------------------------------------------------------------
// Validation helpers
// ---------------------------------------------------------------------------------------------------------------------

/** A size, count or index: a safe integer >= min. Non-integers are a TypeError, out-of-range values a RangeError. */
function checkInt(fn: string, name: string, v: number, min = 0): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new TypeError(`${fn}: ${name} must be an integer, got ${v}`);
  if (v < min) throw new RangeError(`${fn}: ${name} must be >= ${min}, got ${v}`);
  return v;
}

function checkShape(fn: string, shape: readonly number[]): number {
  let numel = 1;
  for (let d = 0; d < shape.length; d++) numel *= checkInt(fn, `shape[${d}]`, shape[d]);
  return numel;
}

/** The array must hold at least `needed` elements. */
function checkLen(fn: string, name: string, a: Float32Array, needed: number): void {
  if (!(a instanceof Float32Array)) throw new TypeError(`${fn}: ${name} must be a Float32Array`);
  if (a.length < needed) throw new RangeError(`${fn}: ${name} has ${a.length} elements, needs at least ${needed}`);
}

/**
 * Dense elementwise kernels take arrays of equal length (the tensor layer always passes exact sizes); a mismatch means a
 * caller bug, so it is a RangeError rather than silently using the shorter length.
 */
function checkSameLen(fn: string, n: number, arrays: Record<string, Float32Array>): void {
  for (const [name, a] of Object.entries(arrays)) {
    checkLen(fn, name, a, 0);
    if (a.length !== n) throw new RangeError(`${fn}: ${name} has ${a.length} elements, expected ${n}`);
  }
}

/** Like checkLen, but null is allowed (an absent optional array). */
function checkOptLen(fn: string, name: string, a: Float32Array | null, needed: number): void {
  if (a !== null) checkLen(fn, name, a, needed);
}

/**
 * A strided view over `shape` must only reach indices inside its array. With non-negative strides the largest index
 * is offset + sum((shape[d] - 1) * strides[d]). Call only for non-empty shapes (an empty view reads nothing).
 */
function checkView(fn: string, name: string, v: StridedView, shape: readonly number[]): void {
  if (!(v.data instanceof Float32Array)) throw new TypeError(`${fn}: ${name}.data must be a Float32Array`);
  if (v.strides.length !== shape.length) {
    throw new RangeError(`${fn}: ${name} has ${v.strides.length} strides for a rank-${shape.length} shape`);
  }
  let maxIndex = checkInt(fn, `${name}.offset`, v.offset);
  for (let d = 0; d < shape.length; d++) maxIndex += (shape[d] - 1) * checkInt(fn, `${name}.strides[${d}]`, v.strides[d]);
  if (maxIndex >= v.data.length) {
    throw new RangeError(`${fn}: ${name} reaches index ${maxIndex} but its array has ${v.data.length} elements`);
  }
}

function hasOp<T extends string>(table: Readonly<Record<T, unknown>>, op: string): op is T {
  return typeof op === 'string' && Object.prototype.hasOwnProperty.call(table, op);
}

// ---------------------------------------------------------------------------------------------------------------------
// Strided iteration
// ---------------------------------------------------------------------------------------------------------------------

/** Row-major strides of a dense array of `shape`. */
function denseStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

/**
 * Simplify an iteration space shared by several operands: drop size-1 axes and merge an axis into the one before it
 * whenever, for every operand, the outer stride steps exactly over the whole inner axis. This visits the same elements
 * in the same order, but with longer inner rows (a dense copy becomes one row), which keeps the per-row overhead of
 * `forEachRow` low.
 */
function coalesce(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    const n = shape[d];
    if (n === 1) continue;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((s, k) => outStrides[k][last] === s[d] * n)) {
      outShape[last] *= n;
      for (let k = 0; k < strides.length; k++) outStrides[k][last] = strides[k][d];
    } else {
      outShape.push(n);
      for (let k = 0; k < strides.length; k++) outStrides[k].push(strides[k][d]);
    }
  }
  if (outShape.length === 0) {
    // A single element (rank 0, or all axes of size 1): one row of length 1.
    outShape.push(1);
    for (const s of outStrides) s.push(0);
  }
  return { shape: outShape, strides: outStrides };
}

/**
 * Visit a non-empty strided iteration space row by row, for several operands at once. `row` receives, per operand,
 * the index of the row's first element, the row length, and per operand the stride along the row; the caller's inner
 * loop does the per-element work. `base` is reused between calls (no per-row allocation), so do not keep it.
 */
function forEachRow(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
  offsets: readonly number[],
  row: (base: readonly number[], n: number, inner: readonly number[]) => void,
): void {
  const c = coalesce(shape, strides);
  const rank = c.shape.length;
  const nOps = strides.length;
  const n = c.shape[rank - 1];
  const inner = c.strides.map((s) => s[rank - 1]);
  const base = offsets.slice();
  // Odometer over the outer axes (all but the last), updating each operand's base index incrementally.
  const idx = new Array<number>(rank - 1).fill(0);
  for (;;) {
    row(base, n, inner);
    let d = rank - 2;
    for (; d >= 0; d--) {
      idx[d]++;
      if (idx[d] < c.shape[d]) {
        for (let k = 0; k < nOps; k++) base[k] += c.strides[k][d];
        break;
      }
      // Axis d wraps around: rewind it and carry into axis d - 1.
      for (let k = 0; k < nOps; k++) base[k] -= c.strides[k][d] * (c.shape[d] - 1);
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Scalar math
// ---------------------------------------------------------------------------------------------------------------------

const TWO_OVER_SQRT_PI = 2 / Math.sqrt(Math.PI);
const INV_SQRT_PI = 1 / Math.sqrt(Math.PI);
const INV_SQRT_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
/** sqrt(2/pi) and the cubic coefficient of the tanh approximation of GELU. */
const GELU_TANH_BETA = Math.sqrt(2 / Math.PI);
const GELU_TANH_KAPPA = 0.044715;

/**
 * The error function, accurate to about 1e-15 absolute (far below float32 resolution).
 *
 * For |x| < 2.5 we sum the everywhere-convergent series with positive terms (no cancellation)
 *   erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_{n>=0} (2x^2)^n x / (1*3*5*...*(2n+1)),
 * and beyond it the classical continued fraction (Laplace)
 *   erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))),
 * evaluated with the modified Lentz method; it converges quickly for large x. For |x| >= 6, erfc(x) < 2.2e-17 is below
 * half an ulp of 1, so erf(x) is exactly +-1 in double precision.
 */
export function erf(x: number): number {
  if (x !== x) return NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return x > 0 ? 1 : -1;
  let r: number;
  if (ax < 2.5) {
    const twoX2 = 2 * ax * ax;
    let term = ax;
    let sum = ax;
    for (let n = 1; term > 1e-17 * sum; n++) {
      term *= twoX2 / (2 * n + 1);
      sum += term;
    }
    r = TWO_OVER_SQRT_PI * Math.exp(-ax * ax) * sum;
  } else {
    // Modified Lentz for the continued fraction  b0 + a1/(b1 + a2/(b2 + ...)) with b_n = x, a_n = n/2.
    const tiny = 1e-300;
    let f = ax;
    let C = f;
    let D = 0;
    for (let n = 1; n < 500; n++) {
      const a = n / 2;
      D = ax + a * D;
      if (D === 0) D = tiny;
      C = ax + a / C;
      if (C === 0) C = tiny;
      D = 1 / D;
      const delta = C * D;
      f *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    r = 1 - (INV_SQRT_PI * Math.exp(-ax * ax)) / f;
  }
  return x < 0 ? -r : r;
}

/**
 * pow with C / torch semantics. JavaScript's `**` differs from C's pow in two corners: 1 ** NaN and (+-1) ** (+-Inf)
 * are NaN in JavaScript but 1 in C (and therefore in torch.pow).
 */
function cpow(x: number, p: number): number {
  if (x === 1) return 1;
  if (x === -1 && (p === Infinity || p === -Infinity)) return 1;
  return Math.pow(x, p);
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** Forward scalar functions of the unary ops, evaluated in double precision. */
const UNARY: Readonly<Record<UnaryOp, (x: number) => number>> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  abs: Math.abs,
  // torch.sign(NaN) is 0; sign(+-0) is 0.
  sign: (x) => (x > 0 ? 1 : x < 0 ? -1 : 0),
  sin: Math.sin,
  cos: Math.cos,
  tanh: Math.tanh,
  sigmoid,
  // NaN propagates through relu as in torch (x < 0 is false for NaN).
  relu: (x) => (x < 0 ? 0 : x),
  // torch's form x / (1 + exp(-x)), not x * sigmoid(x), so the same inputs give the same non-finite results.
  silu: (x) => x / (1 + Math.exp(-x)),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(GELU_TANH_BETA * (x + GELU_TANH_KAPPA * x * x * x))),
  gelu_erf: (x) => 0.5 * x * (1 + erf(x * INV_SQRT_2)),
  square: (x) => x * x,
  recip: (x) => 1 / x,
};

/**
 * Backward scalar functions: (x, y = op(x), gy) -> gy * op'(x). Where torch's autograd formula uses the output (exp,
 * sqrt, rsqrt, tanh, sigmoid, recip) we use y too, so special values (0, inf) behave as in torch.
 */
const UNARY_BACKWARD: Readonly<Record<UnaryOp, (x: number, y: number, gy: number) => number>> = {
  neg: (_x, _y, gy) => -gy,
  exp: (_x, y, gy) => gy * y,
  log: (x, _y, gy) => gy / x,
  sqrt: (_x, y, gy) => gy / (2 * y),
  rsqrt: (_x, y, gy) => -0.5 * gy * y * y * y,
  // d|x|/dx = sign(x), with sign(0) = 0 (torch's subgradient choice).
  abs: (x, _y, gy) => gy * (x > 0 ? 1 : x < 0 ? -1 : 0),
  // torch returns zeros (not gy * 0, which would be NaN for infinite gy).
  sign: () => 0,
  sin: (x, _y, gy) => gy * Math.cos(x),
  cos: (x, _y, gy) => -gy * Math.sin(x),
  tanh: (_x, y, gy) => gy * (1 - y * y),
  sigmoid: (_x, y, gy) => gy * y * (1 - y),
  // relu'(0) = 0. Like torch (threshold_backward on the output) the test is y <= 0, so a NaN input passes gy through.
  relu: (_x, y, gy) => (y <= 0 ? 0 : gy),
  silu: (x, _y, gy) => {
    const s = sigmoid(x);
    return gy * s * (1 + x * (1 - s));
  },
  gelu_tanh: (x, _y, gy) => {
    // Same decomposition as torch's GeluBackward (tanh approximation).
    const x2 = x * x;
    const t = Math.tanh(GELU_TANH_BETA * (x + GELU_TANH_KAPPA * x2 * x));
    const left = 0.5 * (1 + t);
    const right = 0.5 * x * (1 - t * t) * GELU_TANH_BETA * (1 + 3 * GELU_TANH_KAPPA * x2);
    return gy * (left + right);
  },
  gelu_erf: (x, _y, gy) => {
    // d/dx [x * Phi(x)] = Phi(x) + x * phi(x)
    const cdf = 0.5 * (1 + erf(x * INV_SQRT_2));
    const pdf = INV_SQRT_2PI * Math.exp(-0.5 * x * x);
    return gy * (cdf + x * pdf);
  },
  square: (x, _y, gy) => 2 * x * gy,
  recip: (_x, y, gy) => -gy * y * y,
};

/** Binary scalar functions. max/min use Math.max/min, which propagate NaN like torch.maximum/minimum. */
const BINARY: Readonly<Record<BinaryOp, (a: number, b: number) => number>> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  max: Math.max,
  min: Math.min,
  pow: cpow,
  eq: (a, b) => (a === b ? 1 : 0),
  gt: (a, b) => (a > b ? 1 : 0),
};

const REDUCE_OPS: Readonly<Record<ReduceOp, true>> = { sum: true, max: true };
const NORM_KINDS: Readonly<Record<'layer' | 'rms', true>> = { layer: true, rms: true };

// ---------------------------------------------------------------------------------------------------------------------
// Convolution helpers
// ---------------------------------------------------------------------------------------------------------------------

/** Validated, unpacked Conv3dParams. */
interface ConvGeom {
  N: number;
  C: number;
  T: number;
  H: number;
  W: number;
  Cout: number;
  cinG: number;
  coutG: number;
  KT: number;
  KH: number;
  KW: number;
  To: number;
  Ho: number;
  Wo: number;
  st: number;
  sh: number;
  sw: number;
  /** padding before each spatial axis (front, top, left); the padding after only determines To/Ho/Wo */
  pt: number;
  ph: number;
  pw: number;
  groups: number;
  xSize: number;
  wSize: number;
  ySize: number;
}

function convGeom(fn: string, p: Conv3dParams): ConvGeom {
  if (p.xShape.length !== 5 || p.wShape.length !== 5 || p.yShape.length !== 5) {
    throw new RangeError(`${fn}: xShape, wShape and yShape must have 5 entries`);
  }
  if (p.stride.length !== 3 || p.padding.length !== 6) throw new RangeError(`${fn}: stride needs 3 and padding 6 entries`);
  const [N, C, T, H, W] = p.xShape.map((v, i) => checkInt(fn, `xShape[${i}]`, v));
  const [Cout, cinG, KT, KH, KW] = p.wShape.map((v, i) => checkInt(fn, `wShape[${i}]`, v));
  const [yN, yC, To, Ho, Wo] = p.yShape.map((v, i) => checkInt(fn, `yShape[${i}]`, v));
  const [st, sh, sw] = p.stride.map((v, i) => checkInt(fn, `stride[${i}]`, v, 1));
  const pad = p.padding.map((v, i) => checkInt(fn, `padding[${i}]`, v));
  const groups = checkInt(fn, 'groups', p.groups, 1);
  if (KT < 1 || KH < 1 || KW < 1) throw new RangeError(`${fn}: kernel sizes must be >= 1`);
  if (C !== cinG * groups) throw new RangeError(`${fn}: x has ${C} channels but w expects ${cinG} x ${groups} groups`);
  if (Cout % groups !== 0) throw new RangeError(`${fn}: ${Cout} output channels not divisible by ${groups} groups`);
  if (yN !== N || yC !== Cout) throw new RangeError(`${fn}: yShape (${p.yShape}) does not match N=${N}, Cout=${Cout}`);
  // The output extent is fixed by the input, kernel, stride and padding (torch's formula); a mismatch means the
  // caller computed shapes differently, which would silently drop or invent outputs.
  const outLen = (inLen: number, before: number, after: number, k: number, s: number): number => {
    const span = inLen + before + after - k;
    if (span < 0) throw new RangeError(`${fn}: kernel ${k} larger than padded input ${inLen + before + after}`);
    return Math.floor(span / s) + 1;
  };
  const expect = [outLen(T, pad[0], pad[1], KT, st), outLen(H, pad[2], pad[3], KH, sh), outLen(W, pad[4], pad[5], KW, sw)];
  if (expect[0] !== To || expect[1] !== Ho || expect[2] !== Wo) {
    throw new RangeError(`${fn}: yShape spatial (${To},${Ho},${Wo}) should be (${expect.join(',')})`);
  }
  return {
    N,
    C,
    T,
    H,
    W,
    Cout,
    cinG,
    coutG: Cout / groups,
    KT,
    KH,
    KW,
    To,
    Ho,
    Wo,
    st,
    sh,
    sw,
    pt: pad[0],
    ph: pad[2],
    pw: pad[4],
    groups,
    xSize: N * C * T * H * W,
    wSize: Cout * cinG * KT * KH * KW,
    ySize: N * Cout * To * Ho * Wo,
  };
}

/**
 * For one kernel tap k along an axis, the half-open range [lo, hi) of output positions o whose input position
 * i = o * stride - padBefore + k lies inside [0, inLen). Outside it the tap reads zero padding and contributes nothing,
 * so the inner loops need no bounds checks.
 */
function tapRange(outLen: number, stride: number, padBefore: number, k: number, inLen: number): [number, number] {
  const lo = Math.max(0, Math.ceil((padBefore - k) / stride));
  const hi = Math.min(outLen, Math.floor((inLen - 1 + padBefore - k) / stride) + 1);
  return [lo, hi];
}

/**
 * Visit every (kernel tap, output position) pair of one input plane / output plane pair in which the input position is
 * inside the input (not padding): calls `tap(wIndex, ...)` once per kernel tap with the output index and input index
 * of each row start, and the caller loops the W axis. Shared by the three conv kernels so that they agree exactly on
 * which positions pair up.
 */
function forEachTap(
  g: ConvGeom,
  body: (kIndex: number, yRow: number, xRow: number, wo0: number, wo1: number, xStep: number) => void,
): void {
  const { KT, KH, KW, To, Ho, Wo, T, H, W, st, sh, sw, pt, ph, pw } = g;
  for (let kt = 0; kt < KT; kt++) {
    const [t0, t1] = tapRange(To, st, pt, kt, T);
    for (let kh = 0; kh < KH; kh++) {
      const [h0, h1] = tapRange(Ho, sh, ph, kh, H);
      for (let kw = 0; kw < KW; kw++) {
        const [w0, w1] = tapRange(Wo, sw, pw, kw, W);
        if (t0 >= t1 || h0 >= h1 || w0 >= w1) continue;
        const kIndex = (kt * KH + kh) * KW + kw;
        for (let to = t0; to < t1; to++) {
          const t = to * st - pt + kt;
          for (let ho = h0; ho < h1; ho++) {
            const h = ho * sh - ph + kh;
            // Output row (to, ho, wo0..wo1) pairs with input row (t, h, wo*sw - pw + kw).
            body(kIndex, (to * Ho + ho) * Wo, (t * H + h) * W + (w0 * sw - pw + kw), w0, w1, sw);
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------------------------------------

export const referenceBackend: Backend = {
  name: 'reference',

  fill(out, value) {
    checkLen('fill', 'out', out, 0);
    out.fill(value);
  },

  stridedCopy(src, shape, out) {
    const fn = 'stridedCopy';
    const numel = checkShape(fn, shape);
    checkLen(fn, 'out', out, numel);
    if (numel === 0) return;
    checkView(fn, 'src', src, shape);
    const data = src.data;
    forEachRow(shape, [src.strides, denseStrides(shape)], [src.offset, 0], (base, n, inner) => {
      const s0 = base[0], o0 = base[1], ss = inner[0], os = inner[1];
      for (let t = 0; t < n; t++) out[o0 + t * os] = data[s0 + t * ss];
    });
  },

  stridedAccumulate(src, shape, dst) {
    const fn = 'stridedAccumulate';
    const numel = checkShape(fn, shape);
    checkLen(fn, 'src', src, numel);
    if (numel === 0) return;
    checkView(fn, 'dst', dst, shape);
    const data = dst.data;
    forEachRow(shape, [denseStrides(shape), dst.strides], [0, dst.offset], (base, n, inner) => {
      const s0 = base[0], d0 = base[1], ss = inner[0], ds = inner[1];
      for (let t = 0; t < n; t++) data[d0 + t * ds] += src[s0 + t * ss];
    });
  },

  stridedScatter(src, shape, dst) {
    const fn = 'stridedScatter';
    const numel = checkShape(fn, shape);
    checkLen(fn, 'src', src, numel);
    if (numel === 0) return;
    checkView(fn, 'dst', dst, shape);
    if (!viewIsInjective(shape, dst.strides)) throw new RangeError(`${fn}: the destination view overlaps itself`);
    const data = dst.data;
    forEachRow(shape, [denseStrides(shape), dst.strides], [0, dst.offset], (base, n, inner) => {
      const s0 = base[0], d0 = base[1], ss = inner[0], ds = inner[1];
      for (let t = 0; t < n; t++) data[d0 + t * ds] = src[s0 + t * ss];
    });
  },

  unary(op, x, out) {
    if (!hasOp(UNARY, op)) throw new TypeError(`unary: unknown op '${op}'`);
    const n = out.length;
    checkSameLen('unary', n, { x });
    const f = UNARY[op];
    for (let i = 0; i < n; i++) out[i] = f(x[i]);
  },

  unaryBackward(op, x, y, gy, gx) {
    const fn = 'unaryBackward';
    if (!hasOp(UNARY_BACKWARD, op)) throw new TypeError(`${fn}: unknown op '${op}'`);
    const n = gx.length;
    checkSameLen(fn, n, { x, y, gy });
    const f = UNARY_BACKWARD[op];
    for (let i = 0; i < n; i++) gx[i] = f(x[i], y[i], gy[i]);
  },

  affine(x, a, b, out) {
    const n = out.length;
    checkSameLen('affine', n, { x });
    for (let i = 0; i < n; i++) out[i] = a * x[i] + b;
  },

  powScalar(x, p, out) {
    const n = out.length;
    checkSameLen('powScalar', n, { x });
    for (let i = 0; i < n; i++) out[i] = cpow(x[i], p);
  },

  binary(op, a, b, shape, out) {
    const fn = 'binary';
    if (!hasOp(BINARY, op)) throw new TypeError(`${fn}: unknown op '${op}'`);
    const numel = checkShape(fn, shape);
    checkLen(fn, 'out', out, numel);
    if (numel === 0) return;
    checkView(fn, 'a', a, shape);
    checkView(fn, 'b', b, shape);
    const f = BINARY[op];
    const ad = a.data, bd = b.data;
    forEachRow(shape, [a.strides, b.strides, denseStrides(shape)], [a.offset, b.offset, 0], (base, n, inner) => {
      const a0 = base[0], b0 = base[1], o0 = base[2], as = inner[0], bs = inner[1], os = inner[2];
      for (let t = 0; t < n; t++) out[o0 + t * os] = f(ad[a0 + t * as], bd[b0 + t * bs]);
    });
  },

  axpy(acc, x, scale) {
    const n = acc.length;
    checkSameLen('axpy', n, { x });
    for (let i = 0; i < n; i++) acc[i] += x[i] * scale;
  },

  reduce(op, x, outer, r, inner, out) {
    const fn = 'reduce';
    if (!hasOp(REDUCE_OPS, op)) throw new TypeError(`${fn}: unknown op '${op}'`);
    checkInt(fn, 'outer', outer);
    checkInt(fn, 'r', r);
    checkInt(fn, 'inner', inner);
    checkLen(fn, 'out', out, outer * inner);
    checkLen(fn, 'x', x, outer * r * inner);
    if (outer * inner === 0) return;
    if (op === 'max' && r === 0) throw new RangeError(`${fn}: max over an empty axis`);
    // Walk x in memory order, keeping one running value per inner position (float64 for sums).
    const acc = new Float64Array(inner);
    for (let o = 0; o < outer; o++) {
      acc.fill(op === 'sum' ? 0 : -Infinity);
      for (let j = 0; j < r; j++) {
        const row = (o * r + j) * inner;
        if (op === 'sum') {
          for (let i = 0; i < inner; i++) acc[i] += x[row + i];
        } else {
          // Math.max keeps NaN once seen, like torch.amax.
          for (let i = 0; i < inner; i++) acc[i] = Math.max(acc[i], x[row + i]);
        }
      }
      out.set(acc, o * inner);
    }
  },

  gemm(transA, transB, batch, M, N, K, alpha, A, strideA, B, strideB, beta, C, strideC) {
    const fn = 'gemm';
    checkInt(fn, 'batch', batch);
    checkInt(fn, 'M', M);
    checkInt(fn, 'N', N);
    checkInt(fn, 'K', K);
    checkInt(fn, 'strideA', strideA);
    checkInt(fn, 'strideB', strideB);
    checkInt(fn, 'strideC', strideC);
    if (batch === 0 || M * N === 0) return;
    if (batch > 1 && strideC < M * N) throw new RangeError(`${fn}: strideC ${strideC} makes output matrices overlap`);
    if (M * K > 0) checkLen(fn, 'A', A, (batch - 1) * strideA + M * K);
    if (K * N > 0) checkLen(fn, 'B', B, (batch - 1) * strideB + K * N);
    checkLen(fn, 'C', C, (batch - 1) * strideC + M * N);
    // One output row at a time, accumulated in float64. Without transB, B's rows are contiguous, so the row is built
    // as a sum of scaled B rows (i-k-j order); with transB, each entry is a contiguous dot product with a row of B.
    const row = new Float64Array(N);
    // op(A)[i, k] lives at A[a0 + i * ai + k * ak].
    const ai = transA ? 1 : K;
    const ak = transA ? M : 1;
    for (let bi = 0; bi < batch; bi++) {
      const a0 = bi * strideA, b0 = bi * strideB, c0 = bi * strideC;
      for (let i = 0; i < M; i++) {
        if (!transB) {
          row.fill(0);
          for (let k = 0; k < K; k++) {
            const aik = A[a0 + i * ai + k * ak];
            const bRow = b0 + k * N;
            for (let j = 0; j < N; j++) row[j] += aik * B[bRow + j];
          }
        } else {
          for (let j = 0; j < N; j++) {
            const bRow = b0 + j * K;
            let s = 0;
            for (let k = 0; k < K; k++) s += A[a0 + i * ai + k * ak] * B[bRow + k];
            row[j] = s;
          }
        }
        const cRow = c0 + i * N;
        // beta == 0 means "ignore C" (BLAS convention): never multiply, so NaN/Inf garbage in C cannot leak through.
        if (beta === 0) {
          for (let j = 0; j < N; j++) C[cRow + j] = alpha * row[j];
        } else {
          for (let j = 0; j < N; j++) C[cRow + j] = alpha * row[j] + beta * C[cRow + j];
        }
      }
    }
  },

  conv3dForward(p, x, w, bias, y) {
    const fn = 'conv3dForward';
    const g = convGeom(fn, p);
    checkLen(fn, 'x', x, g.xSize);
    checkLen(fn, 'w', w, g.wSize);
    checkOptLen(fn, 'bias', bias, g.Cout);
    checkLen(fn, 'y', y, g.ySize);
    const xPlane = g.T * g.H * g.W;
    const yPlane = g.To * g.Ho * g.Wo;
    const kVol = g.KT * g.KH * g.KW;
    if (yPlane === 0) return;
    // One output channel plane at a time, accumulated in float64: for each input channel of the group and each kernel
    // tap, add the tap's weight times the shifted (strided) input rows.
    const acc = new Float64Array(yPlane);
    for (let n = 0; n < g.N; n++) {
      for (let co = 0; co < g.Cout; co++) {
        const grp = Math.floor(co / g.coutG);
        acc.fill(0);
        for (let ci = 0; ci < g.cinG; ci++) {
          const xBase = (n * g.C + grp * g.cinG + ci) * xPlane;
          const wBase = (co * g.cinG + ci) * kVol;
          forEachTap(g, (kIndex, yRow, xRow, wo0, wo1, xStep) => {
            const wv = w[wBase + kIndex];
            let xi = xBase + xRow;
            for (let wo = wo0; wo < wo1; wo++, xi += xStep) acc[yRow + wo] += wv * x[xi];
          });
        }
        const b = bias === null ? 0 : bias[co];
        const yBase = (n * g.Cout + co) * yPlane;
        for (let i = 0; i < yPlane; i++) y[yBase + i] = acc[i] + b;
      }
    }
  },

  conv3dBackwardData(p, gy, w, gx) {
    const fn = 'conv3dBackwardData';
    const g = convGeom(fn, p);
    checkLen(fn, 'gy', gy, g.ySize);
    checkLen(fn, 'w', w, g.wSize);
    checkLen(fn, 'gx', gx, g.xSize);
    const xPlane = g.T * g.H * g.W;
    const yPlane = g.To * g.Ho * g.Wo;
    const kVol = g.KT * g.KH * g.KW;
    if (xPlane === 0) return;
    // The transpose of the forward pass: one input channel plane at a time (float64), scattering every output
    // gradient of the group's output channels back through each kernel tap to the input position it read.
    const acc = new Float64Array(xPlane);
    for (let n = 0; n < g.N; n++) {
      for (let c = 0; c < g.C; c++) {
        const grp = Math.floor(c / g.cinG);
        const ci = c - grp * g.cinG;
        acc.fill(0);
        for (let co = grp * g.coutG; co < (grp + 1) * g.coutG; co++) {
          const yBase = (n * g.Cout + co) * yPlane;
          const wBase = (co * g.cinG + ci) * kVol;
          forEachTap(g, (kIndex, yRow, xRow, wo0, wo1, xStep) => {
            const wv = w[wBase + kIndex];
            let xi = xRow;
            for (let wo = wo0; wo < wo1; wo++, xi += xStep) acc[xi] += wv * gy[yBase + yRow + wo];
          });
        }
        const xBase = (n * g.C + c) * xPlane;
        for (let i = 0; i < xPlane; i++) gx[xBase + i] = acc[i];
      }
    }
  },

  conv3dBackwardWeights(p, x, gy, gw, gb) {
    const fn = 'conv3dBackwardWeights';
    const g = convGeom(fn, p);
    checkLen(fn, 'x', x, g.xSize);
    checkLen(fn, 'gy', gy, g.ySize);
    checkLen(fn, 'gw', gw, g.wSize);
    checkOptLen(fn, 'gb', gb, g.Cout);
    const xPlane = g.T * g.H * g.W;
    const yPlane = g.To * g.Ho * g.Wo;
    const kVol = g.KT * g.KH * g.KW;
    // gw[co, ci, tap] = sum over n and output positions of gy * (the input value that tap read), in float64.
    const acc = new Float64Array(kVol);
    for (let co = 0; co < g.Cout; co++) {
      const grp = Math.floor(co / g.coutG);
      for (let ci = 0; ci < g.cinG; ci++) {
        acc.fill(0);
        for (let n = 0; n < g.N; n++) {
          const xBase = (n * g.C + grp * g.cinG + ci) * xPlane;
          const yBase = (n * g.Cout + co) * yPlane;
          forEachTap(g, (kIndex, yRow, xRow, wo0, wo1, xStep) => {
            let s = 0;
            let xi = xBase + xRow;
            for (let wo = wo0; wo < wo1; wo++, xi += xStep) s += gy[yBase + yRow + wo] * x[xi];
            acc[kIndex] += s;
          });
        }
        const wBase = (co * g.cinG + ci) * kVol;
        for (let k = 0; k < kVol; k++) gw[wBase + k] = acc[k];
      }
    }
    if (gb !== null) {
      for (let co = 0; co < g.Cout; co++) {
        let s = 0;
        for (let n = 0; n < g.N; n++) {
          const yBase = (n * g.Cout + co) * yPlane;
          for (let i = 0; i < yPlane; i++) s += gy[yBase + i];
        }
        gb[co] = s;
      }
    }
  },

  softmax(x, rows, cols, log, out) {
    const fn = 'softmax';
    checkInt(fn, 'rows', rows);
    checkInt(fn, 'cols', cols);
    checkLen(fn, 'x', x, rows * cols);
    checkLen(fn, 'out', out, rows * cols);
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      // Subtract the row max so exp cannot overflow; the sum is in float64.
      let m = -Infinity;
      for (let j = 0; j < cols; j++) m = Math.max(m, x[o + j]);
      let sum = 0;
      for (let j = 0; j < cols; j++) sum += Math.exp(x[o + j] - m);
      if (log) {
        const lse = m + Math.log(sum);
        for (let j = 0; j < cols; j++) out[o + j] = x[o + j] - lse;
      } else {
        const inv = 1 / sum;
        for (let j = 0; j < cols; j++) out[o + j] = Math.exp(x[o + j] - m) * inv;
      }
    }
  },

  softmaxBackward(y, gy, rows, cols, log, gx) {
    const fn = 'softmaxBackward';
    checkInt(fn, 'rows', rows);
    checkInt(fn, 'cols', cols);
    checkLen(fn, 'y', y, rows * cols);
    checkLen(fn, 'gy', gy, rows * cols);
    checkLen(fn, 'gx', gx, rows * cols);
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let s = 0;
      if (log) {
        // gx = gy - softmax * sum(gy), softmax = exp(log-softmax output)
        for (let j = 0; j < cols; j++) s += gy[o + j];
        for (let j = 0; j < cols; j++) gx[o + j] = gy[o + j] - Math.exp(y[o + j]) * s;
      } else {
        // gx = y * (gy - sum(gy * y))
        for (let j = 0; j < cols; j++) s += gy[o + j] * y[o + j];
        for (let j = 0; j < cols; j++) gx[o + j] = y[o + j] * (gy[o + j] - s);
      }
    }
  },

  norm(kind, x, outer, c, inner, w, b, eps, y, mean, rstd) {
    const fn = 'norm';
    if (!hasOp(NORM_KINDS, kind)) throw new TypeError(`${fn}: unknown kind '${kind}'`);
    checkInt(fn, 'outer', outer);
    checkInt(fn, 'c', c);
    checkInt(fn, 'inner', inner);
    const positions = outer * inner;
    checkLen(fn, 'x', x, positions * c);
    checkLen(fn, 'y', y, positions * c);
    checkOptLen(fn, 'w', w, c);
    checkOptLen(fn, 'b', b, c);
    if (kind === 'layer' && mean === null) throw new TypeError(`${fn}: layer norm needs a mean output`);
    checkOptLen(fn, 'mean', mean, positions);
    checkLen(fn, 'rstd', rstd, positions);
    // Statistics for all `inner` positions of one outer index at once, walking x row by row (channel c is the row
    // x[o, c, :]), in float64. Layer norm uses the two-pass (centred) biased variance, like torch.
    const mu = new Float64Array(inner);
    const sq = new Float64Array(inner);
    for (let o = 0; o < outer; o++) {
      const base = o * c * inner;
      mu.fill(0);
      sq.fill(0);
      if (kind === 'layer') {
        for (let ch = 0; ch < c; ch++) {
          const row = base + ch * inner;
          for (let i = 0; i < inner; i++) mu[i] += x[row + i];
        }
        for (let i = 0; i < inner; i++) mu[i] = c > 0 ? mu[i] / c : 0;
      }
      // For rms mu stays 0, so sq accumulates the mean square instead of the variance.
      for (let ch = 0; ch < c; ch++) {
        const row = base + ch * inner;
        for (let i = 0; i < inner; i++) {
          const d = x[row + i] - mu[i];
          sq[i] += d * d;
        }
      }
      for (let i = 0; i < inner; i++) sq[i] = 1 / Math.sqrt((c > 0 ? sq[i] / c : 0) + eps); // now rstd
      for (let ch = 0; ch < c; ch++) {
        const row = base + ch * inner;
        const wc = w === null ? 1 : w[ch];
        const bc = b === null ? 0 : b[ch];
        for (let i = 0; i < inner; i++) y[row + i] = (x[row + i] - mu[i]) * sq[i] * wc + bc;
      }
      if (mean !== null) for (let i = 0; i < inner; i++) mean[o * inner + i] = kind === 'layer' ? mu[i] : 0;
      rstd.set(sq, o * inner);
    }
  },

  normBackward(kind, x, outer, c, inner, w, mean, rstd, gy, gx, gw, gb) {
    const fn = 'normBackward';
    if (!hasOp(NORM_KINDS, kind)) throw new TypeError(`${fn}: unknown kind '${kind}'`);
    checkInt(fn, 'outer', outer);
    checkInt(fn, 'c', c);
    checkInt(fn, 'inner', inner);
    const positions = outer * inner;
    checkLen(fn, 'x', x, positions * c);
    checkLen(fn, 'gy', gy, positions * c);
    checkLen(fn, 'gx', gx, positions * c);
    checkOptLen(fn, 'w', w, c);
    if (kind === 'layer' && mean === null) throw new TypeError(`${fn}: layer norm needs the saved mean`);
    checkOptLen(fn, 'mean', mean, positions);
    checkLen(fn, 'rstd', rstd, positions);
    checkOptLen(fn, 'gw', gw, c);
    checkOptLen(fn, 'gb', gb, c);
    // With xhat = (x - mean) * rstd (mean = 0 for rms) and g = gy * w:
    //   layer: gx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
    //   rms:   gx = rstd * (g - xhat * mean_c(g * xhat))
    //   gw = sum over positions of gy * xhat,  gb = sum of gy.
    const layer = kind === 'layer';
    const sumG = new Float64Array(inner);
    const sumGX = new Float64Array(inner);
    const gwAcc = new Float64Array(c);
    const gbAcc = new Float64Array(c);
    for (let o = 0; o < outer; o++) {
      const base = o * c * inner;
      const st = o * inner;
      sumG.fill(0);
      sumGX.fill(0);
      for (let ch = 0; ch < c; ch++) {
        const row = base + ch * inner;
        const wc = w === null ? 1 : w[ch];
        let gwc = 0;
        let gbc = 0;
        for (let i = 0; i < inner; i++) {
          const xhat = (x[row + i] - (layer ? mean![st + i] : 0)) * rstd[st + i];
          const gyv = gy[row + i];
          sumG[i] += gyv * wc;
          sumGX[i] += gyv * wc * xhat;
          gwc += gyv * xhat;
          gbc += gyv;
        }
        gwAcc[ch] += gwc;
        gbAcc[ch] += gbc;
      }
      for (let ch = 0; ch < c; ch++) {
        const row = base + ch * inner;
        const wc = w === null ? 1 : w[ch];
        for (let i = 0; i < inner; i++) {
          const r = rstd[st + i];
          const xhat = (x[row + i] - (layer ? mean![st + i] : 0)) * r;
          const meanG = layer ? sumG[i] / c : 0;
          gx[row + i] = r * (gy[row + i] * wc - meanG - (xhat * sumGX[i]) / c);
        }
      }
    }
    if (gw !== null) gw.set(gwAcc);
    if (gb !== null) gb.set(gbAcc);
  },

  attention(q, k, v, bh, lq, lk, d, dv, scale, out, lse) {
    const fn = 'attention';
    checkInt(fn, 'bh', bh);
    checkInt(fn, 'lq', lq);
    checkInt(fn, 'lk', lk);
    checkInt(fn, 'd', d);
    checkInt(fn, 'dv', dv);
    checkLen(fn, 'q', q, bh * lq * d);
    checkLen(fn, 'k', k, bh * lk * d);
    checkLen(fn, 'v', v, bh * lk * dv);
    checkLen(fn, 'out', out, bh * lq * dv);
    checkLen(fn, 'lse', lse, bh * lq);
    // One query row at a time: its scaled scores against all keys live in an lk-long float64 scratch (memory O(lk),
    // never lq x lk), then softmax-weighted values are summed into a dv-long float64 accumulator.
    const scores = new Float64Array(lk);
    const acc = new Float64Array(dv);
    for (let h = 0; h < bh; h++) {
      const qh = h * lq * d, kh = h * lk * d, vh = h * lk * dv;
      for (let i = 0; i < lq; i++) {
        const qi = qh + i * d;
        let m = -Infinity;
        for (let j = 0; j < lk; j++) {
          const kj = kh + j * d;
          let s = 0;
          for (let t = 0; t < d; t++) s += q[qi + t] * k[kj + t];
          s *= scale;
          scores[j] = s;
          m = Math.max(m, s);
        }
        let sum = 0;
        acc.fill(0);
        for (let j = 0; j < lk; j++) {
          const e = Math.exp(scores[j] - m);
          sum += e;
          const vj = vh + j * dv;
          for (let t = 0; t < dv; t++) acc[t] += e * v[vj + t];
        }
        const oi = (h * lq + i) * dv;
        // No keys: an empty weighted sum (0) and log(sum of nothing) = -inf.
        for (let t = 0; t < dv; t++) out[oi + t] = lk === 0 ? 0 : acc[t] / sum;
        lse[h * lq + i] = lk === 0 ? -Infinity : m + Math.log(sum);
      }
    }
  },

  attentionBackward(q, k, v, out, lse, gout, bh, lq, lk, d, dv, scale, gq, gk, gv) {
    const fn = 'attentionBackward';
    checkInt(fn, 'bh', bh);
    checkInt(fn, 'lq', lq);
    checkInt(fn, 'lk', lk);
    checkInt(fn, 'd', d);
    checkInt(fn, 'dv', dv);
    checkLen(fn, 'q', q, bh * lq * d);
    checkLen(fn, 'k', k, bh * lk * d);
    checkLen(fn, 'v', v, bh * lk * dv);
    checkLen(fn, 'out', out, bh * lq * dv);
    checkLen(fn, 'lse', lse, bh * lq);
    checkLen(fn, 'gout', gout, bh * lq * dv);
    checkLen(fn, 'gq', gq, bh * lq * d);
    checkLen(fn, 'gk', gk, bh * lk * d);
    checkLen(fn, 'gv', gv, bh * lk * dv);
    // For query row i, with p_j = exp(s_j - lse_i) recomputed from the saved log-sum-exp:
    //   dp_j = gout_i . v_j,  D_i = sum_j p_j dp_j = gout_i . out_i,  ds_j = p_j (dp_j - D_i)
    //   gq_i = scale * sum_j ds_j k_j,  gk_j += scale * ds_j q_i,  gv_j += p_j gout_i
    // gk and gv of one head accumulate over all query rows in float64 scratch (the size of k and v of one head).
    const gqAcc = new Float64Array(d);
    const gkAcc = new Float64Array(lk * d);
    const gvAcc = new Float64Array(lk * dv);
    for (let h = 0; h < bh; h++) {
      const qh = h * lq * d, kh = h * lk * d, vh = h * lk * dv, oh = h * lq * dv;
      gkAcc.fill(0);
      gvAcc.fill(0);
      for (let i = 0; i < lq; i++) {
        const qi = qh + i * d, oi = oh + i * dv;
        const L = lse[h * lq + i];
        let D = 0;
        for (let t = 0; t < dv; t++) D += gout[oi + t] * out[oi + t];
        gqAcc.fill(0);
        for (let j = 0; j < lk; j++) {
          const kj = kh + j * d, vj = vh + j * dv;
          let s = 0;
          for (let t = 0; t < d; t++) s += q[qi + t] * k[kj + t];
          const p = Math.exp(s * scale - L);
          let dp = 0;
          for (let t = 0; t < dv; t++) dp += gout[oi + t] * v[vj + t];
          const ds = p * (dp - D) * scale;
          for (let t = 0; t < d; t++) {
            gqAcc[t] += ds * k[kj + t];
            gkAcc[j * d + t] += ds * q[qi + t];
          }
          for (let t = 0; t < dv; t++) gvAcc[j * dv + t] += p * gout[oi + t];
        }
        for (let t = 0; t < d; t++) gq[qi + t] = gqAcc[t];
      }
      gk.set(gkAcc, kh);
      gv.set(gvAcc, vh);
    }
  },

  adamw(p, g, m, v, lr, beta1, beta2, eps, weightDecay, step) {
    const fn = 'adamw';
    checkInt(fn, 'step', step, 1);
    const n = p.length;
    checkSameLen(fn, n, { g, m, v });
    // torch.optim.AdamW (single-tensor path): the scalars are computed in double, and each in-place tensor op
    // stores float32, so p after decay, m and v are rounded to float32 before use (Math.fround), as there.
    const decay = 1 - lr * weightDecay;
    const bc1 = 1 - Math.pow(beta1, step);
    const bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
    const stepSize = lr / bc1;
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      const pi = Math.fround(p[i] * decay);
      const mi = Math.fround(beta1 * m[i] + (1 - beta1) * gi);
      const vi = Math.fround(beta2 * v[i] + (1 - beta2) * gi * gi);
      m[i] = mi;
      v[i] = vi;
      p[i] = pi - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
    }
  },

  sumSquares(x) {
    checkLen('sumSquares', 'x', x, 0);
    let s = 0;
    for (let i = 0; i < x.length; i++) s += x[i] * x[i];
    return s;
  },

  ema(shadow, x, decay) {
    const fn = 'ema';
    checkSameLen(fn, shadow.length, { x });
    if (!(decay >= 0 && decay <= 1)) throw new RangeError(`${fn}: decay must be in [0, 1], got ${decay}`);
    const a = 1 - decay;
    for (let i = 0; i < shadow.length; i++) shadow[i] = decay * shadow[i] + a * x[i];
  },

  widen(kind, src, out) {
    if (!(src instanceof Uint16Array)) throw new TypeError('widen: argument \'src\' must be a Uint16Array');
    if (!(out instanceof Float32Array)) throw new TypeError('widen: argument \'out\' must be a Float32Array');
    if (out.length !== src.length) throw new RangeError(`widen: 'out' has ${out.length} elements, 'src' has ${src.length}`);
    if (kind === 'bf16') bf16ToF32(src, out);
    else if (kind === 'f16') f16ToF32(src, out);
    else throw new TypeError(`widen: argument 'kind' must be "bf16" or "f16", got "${String(kind)}"`);
  },

  linearBf16(x, w, rows, O, I, out, accumulate) {
    const fn = 'linearBf16';
    if (!(x instanceof Float32Array)) throw new TypeError(`${fn}: argument 'x' must be a Float32Array`);
    if (!(w instanceof Uint16Array)) throw new TypeError(`${fn}: argument 'w' must be a Uint16Array`);
    if (!(out instanceof Float32Array)) throw new TypeError(`${fn}: argument 'out' must be a Float32Array`);
    for (const [k, v] of [['rows', rows], ['O', O], ['I', I]] as const)
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${fn}: '${k}' must be a non-negative integer, got ${v}`);
    if (x.length < rows * I) throw new RangeError(`${fn}: 'x' has ${x.length} elements, needs ${rows * I}`);
    if (w.length < O * I) throw new RangeError(`${fn}: 'w' has ${w.length} elements, needs ${O * I}`);
    if (out.length < rows * O) throw new RangeError(`${fn}: 'out' has ${out.length} elements, needs ${rows * O}`);
    const row = new Float32Array(I);
    for (let o = 0; o < O; o++) {
      bf16ToF32(w.subarray(o * I, (o + 1) * I), row);
      for (let r = 0; r < rows; r++) {
        let t = 0;
        for (let i = 0; i < I; i++) t = Math.fround(t + Math.fround(x[r * I + i]! * row[i]!));
        out[r * O + o] = accumulate ? Math.fround(out[r * O + o]! + t) : t;
      }
    }
  },

  narrowBf16(src, out) {
    if (!(src instanceof Float32Array)) throw new TypeError('narrowBf16: argument \'src\' must be a Float32Array');
    if (!(out instanceof Uint16Array)) throw new TypeError('narrowBf16: argument \'out\' must be a Uint16Array');
    if (out.length !== src.length) throw new RangeError(`narrowBf16: 'out' has ${out.length} elements, 'src' has ${src.length}`);
    f32ToBf16(src, out);
  },

  lincomb(coefs, xs, out) {
    const fn = 'lincomb';
    if (coefs.length !== xs.length || coefs.length === 0) throw new RangeError(`${fn}: needs as many coefficients as arrays (at least one), got ${coefs.length} and ${xs.length}`);
    for (let j = 0; j < xs.length; j++) {
      if (!Number.isFinite(coefs[j]!)) throw new RangeError(`${fn}: coefficient ${j} must be finite, got ${coefs[j]}`);
      checkLen(fn, `xs[${j}]`, xs[j]!, out.length);
    }
    const n = out.length;
    const J = xs.length;
    for (let k = 0; k < n; k++) {
      let acc = coefs[0]! * xs[0]![k]!;
      for (let j = 1; j < J; j++) acc += coefs[j]! * xs[j]![k]!;
      out[k] = acc;
    }
  },
};

/** No two elements of the view share a location: with dims sorted by stride, each stride exceeds the reach of the smaller ones. */
function viewIsInjective(shape: readonly number[], strides: readonly number[]): boolean {
  const dims = shape.map((n, i) => [strides[i]!, n] as const).filter(([, n]) => n > 1).sort((a, b) => a[0] - b[0]);
  let reach = 0;
  for (const [st, n] of dims) {
    if (st <= reach) return false;
    reach += st * (n - 1);
  }
  return true;
}
