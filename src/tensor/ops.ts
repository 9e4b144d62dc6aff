/**
 * Core tensor operations with autograd: views, elementwise math with broadcasting, reductions, matmul.
 * Layer-level ops (conv, norms, attention, pixel shuffle, losses) are in nn_ops.ts.
 */
import { backend } from '../backend/index.js';
import type { BinaryOp, StridedView, UnaryOp } from '../backend/backend.js';
import { AxisError, DTypeError, ShapeError, ValueError, fmtShape } from '../errors.js';
import { allocFloat32 } from './alloc.js';
import { Tensor, attach, checkShape, contiguousStrides, denseF32, denseStored, empty, f32Of, normAxis, numelOf, scalar, zeros, type TensorLike } from './tensor.js';

// ---------------------------------------------------------------------------------------------------------------
// helpers

/** A strided f32 view of t for the kernels (a bf16 / f16 / i32 tensor is widened to a dense copy first). */
function viewOf(t: Tensor): StridedView {
  if (t.dtype !== 'f32') return { data: denseF32(t), offset: 0, strides: contiguousStrides(t.shape) };
  return { data: f32Of(t), offset: t.offset, strides: t.strides };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function asTensor(x: TensorLike, what: string): Tensor {
  if (x instanceof Tensor) return x;
  if (typeof x === 'number') return scalar(x);
  throw new ValueError(`${what} must be a Tensor or a number, got ${typeof x}`);
}

/** An output the kernel overwrites completely (uninitialised storage). */
function fresh(shape: readonly number[]): Tensor {
  return empty(shape);
}

/** Dense f32 data of t (a view when already contiguous f32; non-f32 inputs are widened to a copy). */
function dense(t: Tensor): Float32Array {
  return denseF32(t);
}

export function broadcastShapes(a: readonly number[], b: readonly number[], op = 'broadcast'): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1)
      throw new ShapeError(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together (axis ${i})`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** A strided view of t broadcast to `shape` (strides 0 on broadcast axes). */
function broadcastView(t: Tensor, shape: readonly number[]): StridedView {
  const n = shape.length;
  const k = t.ndim;
  const strides = new Array<number>(n).fill(0);
  // bf16 / f16 / i32 operands (small ones: biases, norm weights) are widened to a dense f32 copy.
  const wide = t.dtype !== 'f32';
  const ts = wide ? contiguousStrides(t.shape) : t.strides;
  for (let i = 0; i < k; i++) {
    const j = n - k + i;
    strides[j] = t.shape[i] === 1 && shape[j] !== 1 ? 0 : ts[i]!;
  }
  return wide ? { data: denseF32(t), offset: 0, strides } : { data: f32Of(t), offset: t.offset, strides };
}

/** Sums a gradient over broadcast axes so it has `shape` again. */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead) axes.push(i);
    else if (shape[i - lead] === 1 && g.shape[i] !== 1) axes.push(i);
  }
  const s = axes.length ? sum(g, axes, true) : g;
  return reshape(s, shape);
}

// ---------------------------------------------------------------------------------------------------------------
// copies and views

export function contiguous(t: Tensor): Tensor {
  if (t.isContiguous()) return t;
  return clone(t);
}

export function clone(t: Tensor): Tensor {
  const out = fresh(t.shape);
  if (t.size) {
    if (t.isContiguous()) f32Of(out).set(denseF32(t));
    else backend().stridedCopy(viewOf(t), t.shape, f32Of(out));
  }
  return attach(out, 'clone', [t], (g) => [g]);
}

export function reshape(t: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  const neg = s.filter((d) => d === -1).length;
  if (neg > 1) throw new ShapeError(`reshape: more than one -1 in ${fmtShape(shape)}`);
  if (neg === 1) {
    const known = s.reduce((p, d) => (d === -1 ? p : p * d), 1);
    const idx = s.indexOf(-1);
    if (known === 0 || t.size % known !== 0)
      throw new ShapeError(`reshape: cannot reshape ${fmtShape(t.shape)} (${t.size} elements) into ${fmtShape(shape)}`);
    s[idx] = t.size / known;
  }
  checkShape(s, 'reshape target');
  if (numelOf(s) !== t.size)
    throw new ShapeError(`reshape: cannot reshape ${fmtShape(t.shape)} (${t.size} elements) into ${fmtShape(shape)}`);
  if (sameShape(s, t.shape)) return t;
  const src = contiguous(t);
  const out = new Tensor(src.storage, s, contiguousStrides(s), src.offset);
  const inShape = t.shape;
  return attach(out, 'reshape', [src], (g) => [reshape(g, inShape)]);
}

export function flatten(t: Tensor, startAxis = 0, endAxis = -1): Tensor {
  if (t.ndim === 0) return reshape(t, [1]);
  const a = normAxis(startAxis, t.ndim, t.shape);
  const b = normAxis(endAxis, t.ndim, t.shape);
  if (a > b) throw new AxisError(`flatten: start axis ${startAxis} is after end axis ${endAxis}`);
  const s = [...t.shape.slice(0, a), numelOf(t.shape.slice(a, b + 1)), ...t.shape.slice(b + 1)];
  return reshape(t, s);
}

export function permute(t: Tensor, axes: readonly number[]): Tensor {
  if (axes.length !== t.ndim)
    throw new AxisError(`permute: got ${axes.length} axes [${axes.join(', ')}] for a ${t.ndim}-d tensor ${fmtShape(t.shape)}`);
  const ax = axes.map((a) => normAxis(a, t.ndim, t.shape));
  if (new Set(ax).size !== ax.length) throw new AxisError(`permute: repeated axis in [${axes.join(', ')}]`);
  const out = new Tensor(
    t.storage,
    ax.map((a) => t.shape[a]!),
    ax.map((a) => t.strides[a]!),
    t.offset,
  );
  const inv = new Array<number>(ax.length);
  ax.forEach((a, i) => (inv[a] = i));
  return attach(out, 'permute', [t], (g) => [permute(g, inv)]);
}

export function transpose(t: Tensor, a: number, b: number): Tensor {
  const axes = t.shape.map((_, i) => i);
  const x = normAxis(a, t.ndim, t.shape);
  const y = normAxis(b, t.ndim, t.shape);
  axes[x] = y;
  axes[y] = x;
  return permute(t, axes);
}

/** Python-style slice along one axis (negative indices count from the end; bounds are clamped). */
export function slice(t: Tensor, axis: number, start: number, end?: number, step = 1): Tensor {
  const ax = normAxis(axis, t.ndim, t.shape);
  const n = t.shape[ax]!;
  if (!Number.isInteger(step) || step < 1) throw new ValueError(`slice: step must be a positive integer, got ${step}`);
  const norm = (i: number) => Math.min(n, Math.max(0, i < 0 ? i + n : i));
  const s = norm(start);
  const e = end === undefined ? n : norm(end);
  const len = Math.max(0, Math.ceil((e - s) / step));
  const shape = [...t.shape];
  shape[ax] = len;
  const strides = [...t.strides];
  strides[ax] = t.strides[ax]! * step;
  const out = new Tensor(t.storage, shape, strides, t.offset + (len ? s * t.strides[ax]! : 0));
  const inShape = t.shape;
  return attach(out, 'slice', [t], (g) => {
    const gx = zeros(inShape);
    if (g.size) {
      const gs = [...gx.strides];
      gs[ax] = gx.strides[ax]! * step;
      backend().stridedScatter(dense(g), g.shape, { data: f32Of(gx), offset: s * gx.strides[ax]!, strides: gs });
    }
    return [gx];
  });
}

export function expand(t: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  if (s.length < t.ndim)
    throw new ShapeError(`expand: target ${fmtShape(shape)} has fewer dims than tensor ${fmtShape(t.shape)}`);
  const lead = s.length - t.ndim;
  const strides = new Array<number>(s.length).fill(0);
  for (let i = 0; i < s.length; i++) {
    if (i < lead) {
      if (s[i] === -1) throw new ShapeError(`expand: -1 not allowed for new leading dims in ${fmtShape(shape)}`);
      continue;
    }
    const d = t.shape[i - lead]!;
    if (s[i] === -1) s[i] = d;
    if (d === s[i]) strides[i] = t.strides[i - lead]!;
    else if (d === 1) strides[i] = 0;
    else throw new ShapeError(`expand: cannot expand ${fmtShape(t.shape)} to ${fmtShape(shape)} (axis ${i})`);
  }
  checkShape(s, 'expand target');
  if (sameShape(s, t.shape)) return t;
  const out = new Tensor(t.storage, s, strides, t.offset);
  const inShape = t.shape;
  return attach(out, 'expand', [t], (g) => [sumToShape(g, inShape)]);
}

export function unsqueeze(t: Tensor, axis: number): Tensor {
  const ax = normAxis(axis, t.ndim + 1);
  const shape = [...t.shape];
  const strides = [...t.strides];
  shape.splice(ax, 0, 1);
  strides.splice(ax, 0, ax < t.ndim ? t.strides[ax]! * t.shape[ax]! : 1);
  const out = new Tensor(t.storage, shape, strides, t.offset);
  return attach(out, 'unsqueeze', [t], (g) => [squeeze(g, ax)]);
}

export function squeeze(t: Tensor, axis?: number): Tensor {
  let keep: number[];
  if (axis === undefined) keep = t.shape.map((_, i) => i).filter((i) => t.shape[i] !== 1);
  else {
    const ax = normAxis(axis, t.ndim, t.shape);
    if (t.shape[ax] !== 1) return t;
    keep = t.shape.map((_, i) => i).filter((i) => i !== ax);
  }
  if (keep.length === t.ndim) return t;
  const out = new Tensor(
    t.storage,
    keep.map((i) => t.shape[i]!),
    keep.map((i) => t.strides[i]!),
    t.offset,
  );
  const inShape = t.shape;
  return attach(out, 'squeeze', [t], (g) => [reshape(g, inShape)]);
}

export function cat(ts: readonly Tensor[], axis = 0): Tensor {
  if (!ts.length) throw new ShapeError('cat: needs at least one tensor');
  const first = ts[0]!;
  const ax = normAxis(axis, first.ndim, first.shape);
  let total = 0;
  for (const t of ts) {
    if (t.ndim !== first.ndim || t.shape.some((d, i) => i !== ax && d !== first.shape[i]))
      throw new ShapeError(
        `cat: shapes ${ts.map((x) => fmtShape(x.shape)).join(', ')} differ outside axis ${ax}`,
      );
    total += t.shape[ax]!;
  }
  const shape = [...first.shape];
  shape[ax] = total;
  const out = zeros(shape);
  const B = backend();
  let off = 0;
  const offsets: number[] = [];
  for (const t of ts) {
    offsets.push(off);
    if (t.size) B.stridedScatter(dense(t), t.shape, { data: f32Of(out), offset: off * out.strides[ax]!, strides: out.strides });
    off += t.shape[ax]!;
  }
  return attach(out, 'cat', ts, (g) => ts.map((t, i) => slice(g, ax, offsets[i]!, offsets[i]! + t.shape[ax]!)));
}

export function stack(ts: readonly Tensor[], axis = 0): Tensor {
  if (!ts.length) throw new ShapeError('stack: needs at least one tensor');
  const ax = normAxis(axis, ts[0]!.ndim + 1);
  for (const t of ts)
    if (!sameShape(t.shape, ts[0]!.shape))
      throw new ShapeError(`stack: all shapes must match, got ${ts.map((x) => fmtShape(x.shape)).join(', ')}`);
  return cat(
    ts.map((t) => unsqueeze(t, ax)),
    ax,
  );
}

/** Splits along `axis` into pieces of the given sizes (an array) or of `size` each (last may be smaller). Views. */
export function split(t: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const ax = normAxis(axis, t.ndim, t.shape);
  const n = t.shape[ax]!;
  let parts: number[];
  if (typeof sizes === 'number') {
    if (!Number.isInteger(sizes) || sizes < 1) throw new ValueError(`split: size must be a positive integer, got ${sizes}`);
    parts = [];
    for (let i = 0; i < n; i += sizes) parts.push(Math.min(sizes, n - i));
  } else {
    parts = [...sizes];
    if (parts.reduce((a, b) => a + b, 0) !== n || parts.some((p) => !Number.isInteger(p) || p < 0))
      throw new ShapeError(`split: sizes [${parts.join(', ')}] do not add up to ${n} (axis ${ax} of ${fmtShape(t.shape)})`);
  }
  const out: Tensor[] = [];
  let o = 0;
  for (const p of parts) {
    out.push(slice(t, ax, o, o + p));
    o += p;
  }
  return out;
}

/** Splits into `n` nearly equal chunks (torch.chunk). */
export function chunk(t: Tensor, n: number, axis = 0): Tensor[] {
  const ax = normAxis(axis, t.ndim, t.shape);
  if (!Number.isInteger(n) || n < 1) throw new ValueError(`chunk: count must be a positive integer, got ${n}`);
  return split(t, Math.max(1, Math.ceil(t.shape[ax]! / n)), ax);
}

/** torch.repeat_interleave with an integer count: each slice along `axis` repeated `repeats` times in a row. */
export function repeatInterleave(t: Tensor, repeats: number, axis: number): Tensor {
  const ax = normAxis(axis, t.ndim, t.shape);
  if (!Number.isInteger(repeats) || repeats < 1) throw new ValueError(`repeatInterleave: repeats must be >= 1, got ${repeats}`);
  const u = unsqueeze(t, ax + 1);
  const es = [...u.shape];
  es[ax + 1] = repeats;
  const shape = [...t.shape];
  shape[ax] = t.shape[ax]! * repeats;
  return reshape(expand(u, es), shape);
}

/**
 * Constant padding, torch.nn.functional.pad order: pads = [last_lo, last_hi, prev_lo, prev_hi, ...].
 * Negative pads are not supported (use slice).
 */
export function pad(t: Tensor, pads: readonly number[], value = 0): Tensor {
  if (pads.length % 2 !== 0 || pads.length / 2 > t.ndim)
    throw new ShapeError(`pad: ${pads.length} pad values do not fit a ${t.ndim}-d tensor ${fmtShape(t.shape)}`);
  for (const p of pads)
    if (!Number.isInteger(p) || p < 0) throw new ValueError(`pad: pads must be non-negative integers, got [${pads.join(', ')}]`);
  const shape = [...t.shape];
  const lo = new Array<number>(t.ndim).fill(0);
  for (let i = 0; i < pads.length / 2; i++) {
    const ax = t.ndim - 1 - i;
    lo[ax] = pads[2 * i]!;
    shape[ax] = t.shape[ax]! + pads[2 * i]! + pads[2 * i + 1]!;
  }
  const out = zeros(shape);
  if (value !== 0 && out.size) backend().fill(f32Of(out), value);
  let off = 0;
  for (let i = 0; i < t.ndim; i++) off += lo[i]! * out.strides[i]!;
  if (t.size) backend().stridedScatter(dense(t), t.shape, { data: f32Of(out), offset: off, strides: out.strides });
  const inShape = t.shape;
  return attach(out, 'pad', [t], (g) => {
    let r = g;
    for (let i = 0; i < inShape.length; i++) if (g.shape[i] !== inShape[i]) r = slice(r, i, lo[i]!, lo[i]! + inShape[i]!);
    return [r];
  });
}

// ---------------------------------------------------------------------------------------------------------------
// elementwise

function unaryOp(op: UnaryOp, x: Tensor): Tensor {
  const xd = dense(x);
  const out = fresh(x.shape);
  if (x.size) backend().unary(op, xd, f32Of(out));
  return attach(out, op, [x], (g) => {
    const gx = fresh(x.shape);
    if (x.size) backend().unaryBackward(op, xd, f32Of(out), dense(g), f32Of(gx));
    return [gx];
  });
}

export const neg = (x: Tensor) => unaryOp('neg', x);
export const exp = (x: Tensor) => unaryOp('exp', x);
export const log = (x: Tensor) => unaryOp('log', x);
export const sqrt = (x: Tensor) => unaryOp('sqrt', x);
export const rsqrt = (x: Tensor) => unaryOp('rsqrt', x);
export const abs = (x: Tensor) => unaryOp('abs', x);
export const sign = (x: Tensor) => unaryOp('sign', x);
export const sin = (x: Tensor) => unaryOp('sin', x);
export const cos = (x: Tensor) => unaryOp('cos', x);
export const tanh = (x: Tensor) => unaryOp('tanh', x);
export const sigmoid = (x: Tensor) => unaryOp('sigmoid', x);
export const relu = (x: Tensor) => unaryOp('relu', x);
export const silu = (x: Tensor) => unaryOp('silu', x);
export const square = (x: Tensor) => unaryOp('square', x);
export const reciprocal = (x: Tensor) => unaryOp('recip', x);

/** GELU; approximate 'tanh' (Wan's FFN, text embedding) or 'none' (exact erf form). */
export function gelu(x: Tensor, approximate: 'tanh' | 'none' = 'none'): Tensor {
  if (approximate !== 'tanh' && approximate !== 'none')
    throw new ValueError(`gelu: approximate must be "tanh" or "none", got ${String(approximate)}`);
  return unaryOp(approximate === 'tanh' ? 'gelu_tanh' : 'gelu_erf', x);
}

/** a * x + b elementwise with scalar a, b. */
export function affine(x: Tensor, a: number, b: number): Tensor {
  const xd = dense(x);
  const out = fresh(x.shape);
  if (x.size) backend().affine(xd, a, b, f32Of(out));
  return attach(out, 'affine', [x], (g) => [a === 1 ? g : affine(g, a, 0)]);
}

function powScalar(x: Tensor, p: number): Tensor {
  const xd = dense(x);
  const out = fresh(x.shape);
  if (x.size) backend().powScalar(xd, p, f32Of(out));
  return attach(out, 'pow', [x], (g) => [mul(g, affine(powScalar(x, p - 1), p, 0))]);
}

function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShapes(a.shape, b.shape, op);
  const out = fresh(shape);
  if (out.size) backend().binary(op, broadcastView(a, shape), broadcastView(b, shape), shape, f32Of(out));
  return out;
}

export function add(x: TensorLike, y: TensorLike): Tensor {
  if (typeof y === 'number' && x instanceof Tensor) return affine(x, 1, y);
  if (typeof x === 'number' && y instanceof Tensor) return affine(y, 1, x);
  const a = asTensor(x, 'add'),
    b = asTensor(y, 'add');
  const out = binaryRaw('add', a, b);
  return attach(out, 'add', [a, b], (g) => [a.requiresGrad ? sumToShape(g, a.shape) : null, b.requiresGrad ? sumToShape(g, b.shape) : null]);
}

export function sub(x: TensorLike, y: TensorLike): Tensor {
  if (typeof y === 'number' && x instanceof Tensor) return affine(x, 1, -y);
  if (typeof x === 'number' && y instanceof Tensor) return affine(y, -1, x);
  const a = asTensor(x, 'sub'),
    b = asTensor(y, 'sub');
  const out = binaryRaw('sub', a, b);
  return attach(out, 'sub', [a, b], (g) => [
    a.requiresGrad ? sumToShape(g, a.shape) : null,
    b.requiresGrad ? sumToShape(neg(g), b.shape) : null,
  ]);
}

export function mul(x: TensorLike, y: TensorLike): Tensor {
  if (typeof y === 'number' && x instanceof Tensor) return affine(x, y, 0);
  if (typeof x === 'number' && y instanceof Tensor) return affine(y, x, 0);
  const a = asTensor(x, 'mul'),
    b = asTensor(y, 'mul');
  const out = binaryRaw('mul', a, b);
  return attach(out, 'mul', [a, b], (g) => [
    a.requiresGrad ? sumToShape(mul(g, b), a.shape) : null,
    b.requiresGrad ? sumToShape(mul(g, a), b.shape) : null,
  ]);
}

export function div(x: TensorLike, y: TensorLike): Tensor {
  const a = asTensor(x, 'div'),
    b = asTensor(y, 'div');
  const out = binaryRaw('div', a, b);
  return attach(out, 'div', [a, b], (g) => [
    a.requiresGrad ? sumToShape(div(g, b), a.shape) : null,
    b.requiresGrad ? sumToShape(neg(div(mul(g, out), b)), b.shape) : null,
  ]);
}

export function pow(x: TensorLike, y: TensorLike): Tensor {
  if (typeof y === 'number' && x instanceof Tensor) return powScalar(x, y);
  const a = asTensor(x, 'pow'),
    b = asTensor(y, 'pow');
  const out = binaryRaw('pow', a, b);
  return attach(out, 'pow', [a, b], (g) => [
    a.requiresGrad ? sumToShape(mul(g, mul(b, pow(a, sub(b, 1)))), a.shape) : null,
    b.requiresGrad ? sumToShape(mul(g, mul(out, log(a))), b.shape) : null,
  ]);
}

function minmax(op: 'max' | 'min', x: TensorLike, y: TensorLike): Tensor {
  const a = asTensor(x, op),
    b = asTensor(y, op);
  const out = binaryRaw(op, a, b);
  return attach(out, op === 'max' ? 'maximum' : 'minimum', [a, b], (g) => {
    // torch splits the gradient evenly where a == b.
    const eq = binaryRaw('eq', a, b);
    const win = op === 'max' ? binaryRaw('gt', a, b) : binaryRaw('gt', b, a);
    const wa = add(win, mul(eq, 0.5));
    return [
      a.requiresGrad ? sumToShape(mul(g, wa), a.shape) : null,
      b.requiresGrad ? sumToShape(mul(g, sub(1, wa)), b.shape) : null,
    ];
  });
}

export const maximum = (a: TensorLike, b: TensorLike) => minmax('max', a, b);
export const minimum = (a: TensorLike, b: TensorLike) => minmax('min', a, b);

/** 1 where a == b else 0 (no gradient). */
export const eq = (a: TensorLike, b: TensorLike) => binaryRaw('eq', asTensor(a, 'eq'), asTensor(b, 'eq'));
/** 1 where a > b else 0 (no gradient). */
export const gt = (a: TensorLike, b: TensorLike) => binaryRaw('gt', asTensor(a, 'gt'), asTensor(b, 'gt'));

export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  return minimum(maximum(x, lo), hi);
}

// ---------------------------------------------------------------------------------------------------------------
// reductions

function normAxes(t: Tensor, axes?: number | readonly number[]): number[] {
  if (axes === undefined) return t.shape.map((_, i) => i);
  const list = typeof axes === 'number' ? [axes] : [...axes];
  const out = [...new Set(list.map((a) => normAxis(a, t.ndim, t.shape)))];
  if (out.length !== list.length) throw new AxisError(`repeated axis in [${list.join(', ')}] for shape ${fmtShape(t.shape)}`);
  return out.sort((p, q) => p - q);
}

function reducedShape(shape: readonly number[], axes: readonly number[], keepdim: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (axes.includes(i)) {
      if (keepdim) out.push(1);
    } else out.push(d);
  });
  return out;
}

/** Reduces dense data over sorted axes, merging runs of adjacent axes into one pass each. */
function reduceDense(op: 'sum' | 'max', data: Float32Array, shape: readonly number[], axes: readonly number[]): Float32Array {
  let cur = data;
  let curShape = [...shape];
  const B = backend();
  // Process runs from the last axis backwards so indices of earlier axes stay valid.
  let i = axes.length - 1;
  while (i >= 0) {
    let j = i;
    while (j > 0 && axes[j - 1] === axes[j]! - 1) j--;
    const a0 = axes[j]!,
      a1 = axes[i]!;
    const outer = numelOf(curShape.slice(0, a0));
    const r = numelOf(curShape.slice(a0, a1 + 1));
    const inner = numelOf(curShape.slice(a1 + 1));
    const next = allocFloat32(outer * inner, [...curShape.slice(0, a0), ...curShape.slice(a1 + 1)], 'reduction output');
    if (next.length) B.reduce(op, cur, outer, r, inner, next);
    cur = next;
    curShape = [...curShape.slice(0, a0), ...curShape.slice(a1 + 1)];
    i = j - 1;
  }
  return cur;
}

export function sum(t: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const ax = normAxes(t, axes);
  const shape = reducedShape(t.shape, ax, keepdim);
  const out = new Tensor(ax.length ? reduceDense('sum', dense(t), t.shape, ax) : dense(t).slice(), shape);
  const keptShape = reducedShape(t.shape, ax, true);
  return attach(out, 'sum', [t], (g) => [expand(reshape(g, keptShape), t.shape)]);
}

export function mean(t: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const ax = normAxes(t, axes);
  const n = ax.reduce((p, a) => p * t.shape[a]!, 1);
  if (n === 0) throw new ShapeError(`mean over an empty axis of shape ${fmtShape(t.shape)}`);
  return affine(sum(t, ax, keepdim), 1 / n, 0);
}

/** Maximum over axes (torch.amax semantics: ties share the gradient evenly). */
export function amax(t: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const ax = normAxes(t, axes);
  for (const a of ax) if (t.shape[a] === 0) throw new ShapeError(`max over empty axis ${a} of shape ${fmtShape(t.shape)}`);
  if (t.size === 0) throw new ShapeError(`max of an empty tensor ${fmtShape(t.shape)}`);
  const shape = reducedShape(t.shape, ax, keepdim);
  const out = new Tensor(ax.length ? reduceDense('max', dense(t), t.shape, ax) : dense(t).slice(), shape);
  const keptShape = reducedShape(t.shape, ax, true);
  return attach(out, 'amax', [t], (g) => {
    const m = reshape(out, keptShape);
    const mask = eq(t, m);
    const count = sum(mask, ax, true);
    return [mul(div(mask, count), reshape(g, keptShape))];
  });
}

/** Variance over axes (population, like torch unbiased=False). */
export function variance(t: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const m = mean(t, axes, true);
  return mean(square(sub(t, m)), axes, keepdim);
}

// ---------------------------------------------------------------------------------------------------------------
// matmul

interface MatOperand {
  data: Float32Array;
  trans: boolean;
  stride: number;
}

/**
 * Describes t (already broadcast to [...batch, r, c]) as a GEMM operand without copying when possible: the last two
 * axes may be row-major or transposed, and the batch axes must be either all broadcast or a dense run of matrices.
 */
function matOperand(t: Tensor, batch: readonly number[], r: number, c: number): MatOperand {
  const full = [...batch, r, c];
  const v = expand(t, full);
  const nb = batch.length;
  const s = v.strides;
  const rs = s[nb]!,
    cs = s[nb + 1]!;
  let trans: boolean | null = null;
  if ((cs === 1 || c === 1) && (rs === c || r === 1)) trans = false;
  else if ((rs === 1 || r === 1) && (cs === r || c === 1)) trans = true;
  let bstride: number | null = null;
  if (trans !== null) {
    const bs = s.slice(0, nb);
    const nontriv = batch.map((d, i) => (d === 1 ? -1 : i)).filter((i) => i >= 0);
    if (nontriv.every((i) => bs[i] === 0)) bstride = 0;
    else {
      // dense run: innermost batch stride == r*c and each outer one the product of the inner sizes
      let expect = r * c;
      let ok = true;
      for (let i = nb - 1; i >= 0; i--) {
        if (batch[i] === 1) continue;
        if (bs[i] !== expect) {
          ok = false;
          break;
        }
        expect *= batch[i]!;
      }
      if (ok) bstride = r * c;
    }
  }
  if (trans === null || bstride === null) {
    const cv = clone(v.detach());
    return { data: f32Of(cv), trans: false, stride: numelOf(batch) > 1 ? r * c : 0 };
  }
  return { data: f32Of(v).subarray(v.offset), trans, stride: bstride };
}

/** Matrix product with numpy/torch broadcasting of batch axes (1-D operands are not promoted: use reshape). */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.ndim < 2 || b.ndim < 2)
    throw new ShapeError(`matmul needs operands with >= 2 dims, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  const M = a.shape[a.ndim - 2]!,
    K = a.shape[a.ndim - 1]!;
  const K2 = b.shape[b.ndim - 2]!,
    N = b.shape[b.ndim - 1]!;
  if (K !== K2) throw new ShapeError(`matmul: inner sizes differ: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)}`);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul batch');
  const nb = numelOf(batch);
  if (a.dtype !== 'f32' || b.dtype !== 'f32') return matmulWiden(a, b);
  const out = fresh([...batch, M, N]);
  if (out.size) {
    // Fold a broadcast-free 2-D right operand into one big GEMM: (batch*M, K) @ (K, N).
    if (b.ndim === 2 && a.isContiguous() && nb > 1) {
      const A = f32Of(a).subarray(a.offset);
      const Bo = matOperand(b, [], K, N);
      backend().gemm(false, Bo.trans, 1, nb * M, N, K, 1, A, 0, Bo.data, 0, 0, f32Of(out), 0);
    } else {
      const Ao = matOperand(a, batch, M, K);
      const Bo = matOperand(b, batch, K, N);
      backend().gemm(Ao.trans, Bo.trans, nb, M, N, K, 1, Ao.data, Ao.stride, Bo.data, Bo.stride, 0, f32Of(out), M * N);
    }
  }
  return attach(out, 'matmul', [a, b], (g) => [
    a.requiresGrad ? sumToShape(matmul(g, transpose(b, -1, -2)), a.shape) : null,
    b.requiresGrad ? sumToShape(matmul(transpose(a, -1, -2), g), b.shape) : null,
  ]);
}

// ---------------------------------------------------------------------------------------------------------------
// bf16 / f16 weights: widened inside the kernels, a bounded block of rows at a time

/** Bytes of float32 one widened weight block may take: big weights are never widened whole. */
export const WIDEN_BLOCK_BYTES = 4 << 20;

/** Up to this many input rows, a linear on a bf16 weight of more than one widened block runs on `linearBf16`. */
export const BF16_DIRECT_MAX_ROWS = 32;

function checkFloat(t: Tensor, op: string, what: string): void {
  if (t.dtype === 'i32') throw new DTypeError(`${op}: ${what} is an i32 tensor; it needs floating-point data (f32, bf16 or f16)`);
}

/** Rows per widened block of a matrix with `cols` columns. */
function blockRows(cols: number): number {
  return Math.max(1, Math.floor(WIDEN_BLOCK_BYTES / 4 / Math.max(1, cols)));
}

/**
 * Calls fn(r0, nr, block) for consecutive row blocks of the 2-D tensor w (any dtype), block holding rows [r0, r0+nr)
 * widened to dense float32 (a reused buffer of at most WIDEN_BLOCK_BYTES, or one row).
 */
function forEachRowBlock(w: Tensor, fn: (r0: number, nr: number, block: Float32Array) => void): void {
  const [R, C] = w.shape as [number, number];
  const br = Math.min(R, blockRows(C));
  const buf = new Float32Array(br * C);
  const contig = w.isContiguous();
  const stored = contig ? denseStored(w) : null;
  for (let r0 = 0; r0 < R; r0 += br) {
    const nr = Math.min(br, R - r0);
    const blk = buf.subarray(0, nr * C);
    if (stored && w.dtype !== 'f32' && w.dtype !== 'i32') backend().widen(w.dtype as 'bf16' | 'f16', (stored as Uint16Array).subarray(r0 * C, (r0 + nr) * C), blk);
    else blk.set(denseF32(slice(w, 0, r0, r0 + nr)));
    fn(r0, nr, blk);
  }
}

/** matmul with a bf16 / f16 operand: a 2-D right operand (a weight) is widened K-row block by block. */
function matmulWiden(a: Tensor, b: Tensor): Tensor {
  checkFloat(a, 'matmul', 'the left operand');
  checkFloat(b, 'matmul', 'the right operand');
  const K = a.shape[a.ndim - 1]!;
  const N = b.shape[b.ndim - 1]!;
  const small = (t: Tensor) => t.dtype === 'f32' || t.size * 4 <= WIDEN_BLOCK_BYTES;
  // Small operands and batched right operands: widen (outputs are f32 either way), then the f32 path.
  if (b.ndim !== 2 || (small(a) && small(b))) {
    const aw = a.dtype === 'f32' ? a : new Tensor(denseF32(a), a.shape);
    const bw = b.dtype === 'f32' ? b : new Tensor(denseF32(b), b.shape);
    const out = matmul(aw.detach(), bw.detach());
    return attach(out, 'matmul', [a, b], (g) => [
      a.requiresGrad ? sumToShape(matmul(g, transpose(b, -1, -2)), a.shape) : null,
      null, // b is not f32, so it cannot require grad
    ]);
  }
  const aw = a.dtype === 'f32' ? a : new Tensor(denseF32(a), a.shape);
  const rows = numelOf(a.shape.slice(0, -1));
  const out = fresh([...a.shape.slice(0, -1), N]);
  if (out.size) {
    const ad = dense(aw);
    const o = f32Of(out);
    if (K === 0) o.fill(0);
    const B = backend();
    let ablk: Float32Array | null = null;
    // out = sum over row blocks k of A[:, k] @ B[k, :]
    forEachRowBlock(b, (k0, nk, bblk) => {
      let A: Float32Array;
      if (nk === K) A = ad;
      else {
        ablk ??= new Float32Array(rows * blockRows(N));
        A = ablk.subarray(0, rows * nk);
        B.stridedCopy({ data: ad, offset: k0, strides: [K, 1] }, [rows, nk], A);
      }
      B.gemm(false, false, 1, rows, N, nk, 1, A, 0, bblk, 0, k0 > 0 ? 1 : 0, o, 0);
    });
  }
  // g @ b^T is linear(g, b): the weight's rows stay contiguous, so the backward widens the same row blocks.
  return attach(out, 'matmul', [a, b], (g) => [a.requiresGrad ? linear(g, b) : null, null]);
}

/** linear with a bf16 / f16 weight [O, I]: out columns computed one widened row block of the weight at a time. */
function linearWiden(x: Tensor, w: Tensor, b: Tensor | null | undefined, rows: number, outShape: number[]): Tensor {
  checkFloat(w, 'linear', 'the weight');
  const [O, I] = w.shape as [number, number];
  const out = fresh(outShape);
  const xd = dense(x);
  const B = backend();
  if (out.size) {
    const o = f32Of(out);
    if (b) B.stridedCopy({ data: dense(b), offset: 0, strides: [0, 1] }, [rows, O], o);
    else if (I === 0) o.fill(0);
    if (w.dtype === 'bf16' && rows <= BF16_DIRECT_MAX_ROWS && O * I * 4 > WIDEN_BLOCK_BYTES && w.isContiguous()) {
      // Few rows (a prompt's tokens) on a big weight: read each bf16 weight once and widen it in registers, instead of
      // widening the matrix block by block for a GEMM whose cost the widening would dominate. (A weight of one widened
      // block keeps the one-block path: its widening is cheap.)
      B.linearBf16(xd, denseStored(w) as Uint16Array, rows, O, I, o, !!b);
    } else if (blockRows(I) >= O) {
      forEachRowBlock(w, (_r0, _n, wd) => B.gemm(false, true, 1, rows, O, I, 1, xd, 0, wd, 0, b ? 1 : 0, o, 0));
    } else {
      const tmp = new Float32Array(rows * blockRows(I));
      forEachRowBlock(w, (o0, no, wd) => {
        const t = tmp.subarray(0, rows * no);
        B.gemm(false, true, 1, rows, no, I, 1, xd, 0, wd, 0, 0, t, 0);
        const dst = { data: o, offset: o0, strides: [O, 1] };
        if (b) B.stridedAccumulate(t, [rows, no], dst);
        else B.stridedScatter(t, [rows, no], dst);
      });
    }
  }
  const inputs = b ? [x, w, b] : [x, w];
  return attach(out, 'linear', inputs, (g) => {
    const gd = dense(g);
    const res: (Tensor | null)[] = [];
    if (x.requiresGrad) {
      // gx = g @ W = sum over weight row blocks of g[:, o0:o0+no] @ W[o0:o0+no, :]
      const gx = fresh(x.shape);
      if (gx.size) {
        const gxd = f32Of(gx);
        if (O === 0) gxd.fill(0);
        let gblk: Float32Array | null = null;
        forEachRowBlock(w, (o0, no, wd) => {
          let G: Float32Array;
          if (no === O) G = gd;
          else {
            gblk ??= new Float32Array(rows * blockRows(I));
            G = gblk.subarray(0, rows * no);
            B.stridedCopy({ data: gd, offset: o0, strides: [O, 1] }, [rows, no], G);
          }
          B.gemm(false, false, 1, rows, I, no, 1, G, 0, wd, 0, o0 > 0 ? 1 : 0, gxd, 0);
        });
      }
      res.push(gx);
    } else res.push(null);
    res.push(null); // a bf16 / f16 weight is frozen: it cannot require grad
    if (b) {
      if (b.requiresGrad) {
        const gb = fresh([O]);
        if (O) B.reduce('sum', gd, 1, rows, O, f32Of(gb));
        res.push(gb);
      } else res.push(null);
    }
    return res;
  });
}

/** y = x @ w^T + b with w of shape [out, in] (torch.nn.functional.linear). w may be bf16 / f16 (widened in blocks). */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  if (w.ndim !== 2) throw new ShapeError(`linear: weight must be 2-D [out, in], got ${fmtShape(w.shape)}`);
  const [O, I] = w.shape as [number, number];
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== I)
    throw new ShapeError(`linear: input ${fmtShape(x.shape)} does not end in ${I} (weight ${fmtShape(w.shape)})`);
  if (b && (b.ndim !== 1 || b.shape[0] !== O))
    throw new ShapeError(`linear: bias ${fmtShape(b.shape)} does not match weight ${fmtShape(w.shape)}`);
  const rows = numelOf(x.shape.slice(0, -1));
  const outShape = [...x.shape.slice(0, -1), O];
  if (w.dtype !== 'f32') return linearWiden(x, w, b, rows, outShape);
  const out = fresh(outShape);
  const xd = dense(x);
  const wd = dense(w);
  const B = backend();
  if (out.size) {
    if (b) B.stridedCopy({ data: dense(b), offset: 0, strides: [0, 1] }, [rows, O], f32Of(out));
    B.gemm(false, true, 1, rows, O, I, 1, xd, 0, wd, 0, b ? 1 : 0, f32Of(out), 0);
  }
  const inputs = b ? [x, w, b] : [x, w];
  return attach(out, 'linear', inputs, (g) => {
    const gd = dense(g);
    const res: (Tensor | null)[] = [];
    if (x.requiresGrad) {
      const gx = fresh(x.shape);
      if (gx.size) B.gemm(false, false, 1, rows, I, O, 1, gd, 0, wd, 0, 0, f32Of(gx), 0);
      res.push(gx);
    } else res.push(null);
    if (w.requiresGrad) {
      const gw = fresh(w.shape);
      if (gw.size) B.gemm(true, false, 1, O, I, rows, 1, gd, 0, xd, 0, 0, f32Of(gw), 0);
      res.push(gw);
    } else res.push(null);
    if (b) {
      if (b.requiresGrad) {
        const gb = fresh([O]);
        if (O) B.reduce('sum', gd, 1, rows, O, f32Of(gb));
        res.push(gb);
      } else res.push(null);
    }
    return res;
  });
}
