/**
 * Tensor: a float32 n-d array (shape, strides and offset over a shared Float32Array storage) with reverse-mode
 * autograd. Views (reshape of contiguous data, permute, slice, expand) share storage; everything else allocates.
 *
 * The math lives in ops.ts / nn_ops.ts; the methods here delegate to it so `x.add(y).sum()` reads naturally.
 */
import { backend } from '../backend/index.js';
import { AutogradError, AxisError, DTypeError, ShapeError, ValueError, fmtShape } from '../errors.js';
import { MAX_ELEMENTS, allocFailed, allocFloat32, checkAllocSize } from './alloc.js';
import * as ops from './ops.js';
import type { DType } from './dtype.js';

/** A node of the autograd tape: how to turn the output gradient into gradients for each input. */
export interface GradFn {
  readonly name: string;
  readonly inputs: readonly Tensor[];
  /** Returns one gradient per input (null where the input needs none). Runs under noGrad. */
  backward(gradOut: Tensor): (Tensor | null)[];
}

let noGradDepth = 0;

/** True when new ops should record autograd history. */
export function isGradEnabled(): boolean {
  return noGradDepth === 0;
}

/** Runs fn without recording autograd history (like torch.no_grad()). */
export function noGrad<T>(fn: () => T): T {
  noGradDepth++;
  try {
    return fn();
  } finally {
    noGradDepth--;
  }
}

/** Index of the first NaN or +-Inf in `d` (-1 when all are finite): one scan for every finiteness check. */
export function firstNonFinite(d: ArrayLike<number>): number {
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    // v - v is 0 for every finite v and NaN for NaN and +-Inf.
    if (v - v !== 0) return i;
  }
  return -1;
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function checkShape(shape: readonly number[], what = 'shape'): number[] {
  if (!Array.isArray(shape)) throw new ShapeError(`${what} must be an array of sizes, got ${String(shape)}`);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${what} ${fmtShape(shape)} has an invalid size ${d}`);
  }
  return [...shape];
}

/** Normalises a possibly negative axis against ndim, throwing AxisError when out of range. */
export function normAxis(axis: number, ndim: number, shape?: readonly number[]): number {
  if (!Number.isInteger(axis) || axis < -ndim || axis >= ndim) {
    const s = shape ? ` for shape ${fmtShape(shape)}` : '';
    throw new AxisError(`axis ${axis} is out of range [${-ndim}, ${ndim - 1}]${s}`);
  }
  return axis < 0 ? axis + ndim : axis;
}

/**
 * Throws unless every element of the view (shape, strides, offset) lies inside a storage of `length` elements, so a
 * tensor can never read past its data (or before it).
 */
function checkView(length: number, shape: readonly number[], strides: readonly number[], offset: number): void {
  if (strides.length !== shape.length) throw new ShapeError(`strides ${fmtShape(strides)} do not match shape ${fmtShape(shape)}`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new ShapeError(`tensor offset must be a non-negative integer, got ${offset}`);
  let lo = offset;
  let hi = offset;
  let empty = false;
  for (let i = 0; i < shape.length; i++) {
    const st = strides[i]!;
    if (!Number.isSafeInteger(st)) throw new ShapeError(`strides ${fmtShape(strides)} must be integers`);
    if (shape[i] === 0) empty = true;
    else if (st > 0) hi += (shape[i]! - 1) * st;
    else lo += (shape[i]! - 1) * st;
  }
  if (empty) {
    if (offset > length) throw new ShapeError(`tensor offset ${offset} is past the end of its data (length ${length})`);
    return;
  }
  if (lo < 0 || hi >= length)
    throw new ShapeError(
      `a view of shape ${fmtShape(shape)}, strides ${fmtShape(strides)}, offset ${offset} reaches elements [${lo}, ${hi}] but the data has length ${length}`,
    );
}

export type TensorLike = Tensor | number;

export class Tensor {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  /** The underlying storage, possibly shared with other views. */
  readonly storage: Float32Array;
  requiresGrad: boolean;
  grad: Tensor | null = null;
  gradFn: GradFn | null = null;

  constructor(storage: Float32Array, shape: readonly number[], strides?: readonly number[], offset = 0, requiresGrad = false) {
    if (!(storage instanceof Float32Array)) {
      const kind = (storage as object)?.constructor?.name ?? typeof storage;
      throw new DTypeError(`tensor storage must be a Float32Array, got ${kind}`);
    }
    this.shape = Object.freeze(checkShape(shape));
    this.strides = Object.freeze(strides ? [...strides] : contiguousStrides(shape));
    this.offset = offset;
    this.storage = storage;
    this.requiresGrad = requiresGrad;
    if (this.strides.length !== this.shape.length)
      throw new ShapeError(`strides ${fmtShape(this.strides)} do not match shape ${fmtShape(this.shape)}`);
    checkView(storage.length, this.shape, this.strides, offset);
  }

  get ndim(): number {
    return this.shape.length;
  }

  get size(): number {
    return numelOf(this.shape);
  }

  /** Same as `size` (torch naming). */
  numel(): number {
    return this.size;
  }

  isContiguous(): boolean {
    let expect = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      const d = this.shape[i]!;
      if (d !== 1 && this.strides[i] !== expect) return false;
      expect *= d;
    }
    return true;
  }

  /**
   * The elements as a dense row-major Float32Array. For a contiguous tensor this is a view of the storage (no copy;
   * writing to it writes the tensor); otherwise a fresh copy.
   */
  data(): Float32Array {
    if (this.isContiguous()) return this.storage.subarray(this.offset, this.offset + this.size);
    const out = allocUninit(this.size);
    if (out.length) backend().stridedCopy({ data: this.storage, offset: this.offset, strides: this.strides }, this.shape, out);
    return out;
  }

  /** A dense copy of the elements. */
  toFloat32Array(): Float32Array {
    return this.isContiguous() ? this.data().slice() : this.data();
  }

  toArray(): number[] {
    return Array.from(this.data());
  }

  // ---- explicit host transfers: the only way code outside src/tensor and src/backend reaches the elements ----

  /** The element type held in memory. */
  get dtype(): DType {
    return 'f32';
  }

  /** A fresh dense row-major float32 copy of the elements (a synchronous host read). */
  readSync(): Float32Array {
    return this.toFloat32Array();
  }

  /** The same as readSync(), as a promise: a device backend resolves it when its readback lands. */
  read(): Promise<Float32Array> {
    return Promise.resolve(this.readSync());
  }

  /** Reads the elements (dense, row-major, as float32) into `out`, which must hold exactly `size` values; returns it. */
  readInto(out: Float32Array): Float32Array {
    if (!(out instanceof Float32Array) || out.length !== this.size)
      throw new ShapeError(`readInto: the buffer must be a Float32Array of ${this.size} values for shape ${fmtShape(this.shape)}`);
    if (this.isContiguous()) out.set(this.storage.subarray(this.offset, this.offset + this.size));
    else if (out.length) backend().stridedCopy({ data: this.storage, offset: this.offset, strides: this.strides }, this.shape, out);
    return out;
  }

  /**
   * A host write: copies `src` (dense, row-major, `size` values) into this tensor's elements in place (views write
   * through to the storage they share). Returns this tensor.
   */
  write(src: ArrayLike<number>): this {
    if (src.length !== this.size) throw new ShapeError(`write: got ${src.length} values for shape ${fmtShape(this.shape)} (${this.size})`);
    if (this.isContiguous()) this.storage.set(src, this.offset);
    else {
      const d = src instanceof Float32Array ? src : Float32Array.from(src);
      if (d.length) backend().stridedScatter(d, this.shape, { data: this.storage, offset: this.offset, strides: this.strides });
    }
    return this;
  }

  item(): number {
    if (this.size !== 1) throw new ShapeError(`item() needs a tensor with one element, got shape ${fmtShape(this.shape)}`);
    return this.storage[this.offset]!;
  }

  toString(): string {
    return `Tensor(shape=${fmtShape(this.shape)}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  /** A tensor sharing this one's data but with no autograd history. */
  detach(): Tensor {
    return new Tensor(this.storage, this.shape, this.strides, this.offset, false);
  }

  requiresGrad_(flag = true): this {
    if (this.gradFn && !flag) throw new AutogradError('cannot clear requiresGrad on a non-leaf tensor; use detach()');
    this.requiresGrad = flag;
    return this;
  }

  /** A contiguous tensor with the same values (this tensor itself when already contiguous). */
  contiguous(): Tensor {
    return ops.contiguous(this);
  }

  clone(): Tensor {
    return ops.clone(this);
  }

  /**
   * Reverse-mode backpropagation from this tensor. Without `grad` the tensor must hold one element (gradient 1).
   * Gradients accumulate into `.grad` of leaf tensors that require grad.
   */
  backward(grad?: Tensor): void {
    backward(this, grad);
  }

  // ---- views and shape ops ----
  reshape(...shape: number[] | [number[]]): Tensor {
    return ops.reshape(this, flatArgs(shape));
  }
  view(...shape: number[] | [number[]]): Tensor {
    return ops.reshape(this, flatArgs(shape));
  }
  flatten(startAxis = 0, endAxis = -1): Tensor {
    return ops.flatten(this, startAxis, endAxis);
  }
  permute(...axes: number[] | [number[]]): Tensor {
    return ops.permute(this, flatArgs(axes));
  }
  transpose(a: number, b: number): Tensor {
    return ops.transpose(this, a, b);
  }
  slice(axis: number, start: number, end?: number, step = 1): Tensor {
    return ops.slice(this, axis, start, end, step);
  }
  narrow(axis: number, start: number, length: number): Tensor {
    return ops.slice(this, axis, start, start + length);
  }
  expand(...shape: number[] | [number[]]): Tensor {
    return ops.expand(this, flatArgs(shape));
  }
  unsqueeze(axis: number): Tensor {
    return ops.unsqueeze(this, axis);
  }
  squeeze(axis?: number): Tensor {
    return ops.squeeze(this, axis);
  }

  // ---- elementwise ----
  add(o: TensorLike): Tensor {
    return ops.add(this, o);
  }
  sub(o: TensorLike): Tensor {
    return ops.sub(this, o);
  }
  mul(o: TensorLike): Tensor {
    return ops.mul(this, o);
  }
  div(o: TensorLike): Tensor {
    return ops.div(this, o);
  }
  pow(p: TensorLike): Tensor {
    return ops.pow(this, p);
  }
  neg(): Tensor {
    return ops.neg(this);
  }
  exp(): Tensor {
    return ops.exp(this);
  }
  log(): Tensor {
    return ops.log(this);
  }
  sqrt(): Tensor {
    return ops.sqrt(this);
  }
  rsqrt(): Tensor {
    return ops.rsqrt(this);
  }
  abs(): Tensor {
    return ops.abs(this);
  }
  square(): Tensor {
    return ops.square(this);
  }
  tanh(): Tensor {
    return ops.tanh(this);
  }
  sigmoid(): Tensor {
    return ops.sigmoid(this);
  }
  relu(): Tensor {
    return ops.relu(this);
  }
  silu(): Tensor {
    return ops.silu(this);
  }

  // ---- reductions ----
  sum(axes?: number | number[], keepdim = false): Tensor {
    return ops.sum(this, axes, keepdim);
  }
  mean(axes?: number | number[], keepdim = false): Tensor {
    return ops.mean(this, axes, keepdim);
  }
  max(axes?: number | number[], keepdim = false): Tensor {
    return ops.amax(this, axes, keepdim);
  }

  matmul(o: Tensor): Tensor {
    return ops.matmul(this, o);
  }
}

function flatArgs(a: number[] | [number[]]): number[] {
  if (a.length === 1 && Array.isArray(a[0])) return a[0];
  return a as number[];
}

// ---------------------------------------------------------------------------------------------------------------
// construction

/** A tensor over `data` (not copied) with `shape` (defaults to 1-D). Accepts Float32Array or a number array. */
export function tensor(data: Float32Array | readonly number[], shape?: readonly number[], requiresGrad = false): Tensor {
  let arr: Float32Array;
  if (data instanceof Float32Array) arr = data;
  else if (Array.isArray(data)) {
    for (const v of data) if (typeof v !== 'number') throw new DTypeError(`tensor() data must be numbers, got ${typeof v}`);
    arr = Float32Array.from(data);
  } else {
    const kind = (data as object)?.constructor?.name ?? typeof data;
    throw new DTypeError(`tensor() needs a Float32Array or number[], got ${kind} (convert other dtypes explicitly)`);
  }
  const s = shape ? checkShape(shape) : [arr.length];
  if (numelOf(s) !== arr.length)
    throw new ShapeError(`data of length ${arr.length} does not fill shape ${fmtShape(s)} (${numelOf(s)} elements)`);
  return new Tensor(arr, s, undefined, 0, requiresGrad);
}

export function scalar(v: number): Tensor {
  return new Tensor(Float32Array.of(v), []);
}

export function zeros(shape: readonly number[]): Tensor {
  const s = checkShape(shape);
  return new Tensor(allocFloat32(numelOf(s), s), s);
}

export function full(shape: readonly number[], value: number): Tensor {
  const t = zeros(shape);
  if (value !== 0 && t.size) backend().fill(t.storage, value);
  return t;
}

export function ones(shape: readonly number[]): Tensor {
  return full(shape, 1);
}

/**
 * A tensor whose elements are NOT initialised: for outputs that a kernel overwrites completely (the backend
 * contract for outputs unless a kernel documents accumulation). Saves the zero-fill and, for large tensors, the
 * fresh zero pages a zeroed allocation costs.
 */
export function empty(shape: readonly number[]): Tensor {
  const s = checkShape(shape);
  return new Tensor(allocUninit(numelOf(s), s), s);
}

/** Below this many elements an uninitialised allocation is not worth it (small arrays come from V8's heap). */
const UNINIT_MIN = 4096;
const POISON_UNINIT = typeof process !== 'undefined' && !!process.env?.DCVG_POISON_UNINIT;
const hasBuffer = typeof Buffer !== 'undefined' && typeof Buffer.allocUnsafeSlow === 'function';

/**
 * A Float32Array of n elements with unspecified contents (Node's Buffer.allocUnsafeSlow: malloc without zeroing;
 * zeroed elsewhere). DCVG_POISON_UNINIT=1 fills them with NaN, so a kernel that leaves part of an output unwritten
 * shows up as NaN in the tests.
 */
export function allocUninit(n: number, shape?: readonly number[]): Float32Array {
  let out: Float32Array;
  if (!hasBuffer || n < UNINIT_MIN) out = allocFloat32(n, shape);
  else {
    // Buffer's own limit is in bytes (4x fewer float32 elements than a Float32Array may hold): check both.
    checkAllocSize(n, shape);
    if (n * 4 > MAX_ELEMENTS) out = allocFloat32(n, shape);
    else {
      let b: Buffer;
      try {
        b = Buffer.allocUnsafeSlow(n * 4);
      } catch (e) {
        return allocFailed(e, n, shape, 'tensor');
      }
      out = new Float32Array(b.buffer, b.byteOffset, n);
    }
  }
  if (POISON_UNINIT) out.fill(NaN);
  return out;
}

export function zerosLike(t: Tensor): Tensor {
  return zeros(t.shape);
}

export function arange(start: number, end?: number, step = 1): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  if (step === 0 || !Number.isFinite(step)) throw new ValueError(`arange step must be finite and non-zero, got ${step}`);
  if (!Number.isFinite(start) || !Number.isFinite(end)) throw new ValueError(`arange bounds must be finite, got ${start} to ${end}`);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const out = allocFloat32(n, [n], 'arange');
  for (let i = 0; i < n; i++) out[i] = start + i * step;
  return new Tensor(out, [n]);
}

/** A leaf tensor that requires grad (a trainable parameter). */
export function parameter(t: Tensor): Tensor {
  const c = t.isContiguous() && t.offset === 0 && t.storage.length === t.size ? t.detach() : t.detach().clone();
  c.requiresGrad = true;
  return c;
}

// ---------------------------------------------------------------------------------------------------------------
// autograd engine

/** Creates the op output and, when any input needs grad (and grad mode is on), attaches the tape node. */
export function attach(out: Tensor, name: string, inputs: readonly Tensor[], bw: (g: Tensor) => (Tensor | null)[]): Tensor {
  if (noGradDepth === 0 && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.gradFn = { name, inputs, backward: bw };
  }
  return out;
}

function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad)
    throw new AutogradError(`backward() called on a tensor that does not require grad (shape ${fmtShape(root.shape)})`);
  let g0: Tensor;
  if (grad === undefined) {
    if (root.size !== 1)
      throw new AutogradError(
        `backward() without a gradient needs a one-element tensor, got shape ${fmtShape(root.shape)}; pass grad`,
      );
    g0 = ones(root.shape);
  } else {
    if (grad.shape.length !== root.shape.length || grad.shape.some((d, i) => d !== root.shape[i]))
      throw new ShapeError(`gradient shape ${fmtShape(grad.shape)} does not match tensor shape ${fmtShape(root.shape)}`);
    g0 = grad.detach();
  }
  // Topological order by iterative DFS (recursion would overflow on deep graphs).
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    const inputs = t.gradFn ? t.gradFn.inputs : [];
    if (i < inputs.length) {
      top[1]++;
      const c = inputs[i]!;
      if (c.requiresGrad && !seen.has(c)) {
        seen.add(c);
        stack.push([c, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, g0);
  noGrad(() => {
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k]!;
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t); // free intermediate gradients as soon as they are consumed
      if (!t.gradFn) {
        accumulateLeaf(t, g);
        continue;
      }
      const ins = t.gradFn.inputs;
      const gs = t.gradFn.backward(g);
      for (let j = 0; j < ins.length; j++) {
        const inp = ins[j]!;
        const gi = gs[j];
        if (!gi || !inp.requiresGrad) continue;
        if (gi.shape.length !== inp.shape.length || gi.shape.some((d, q) => d !== inp.shape[q]))
          throw new ShapeError(
            `internal: ${t.gradFn.name} produced gradient ${fmtShape(gi.shape)} for input ${fmtShape(inp.shape)}`,
          );
        const prev = grads.get(inp);
        grads.set(inp, prev ? ops.add(prev, gi) : gi);
      }
    }
  });
}

function accumulateLeaf(t: Tensor, g: Tensor): void {
  // The first gradient is stored as is (no copy: it is usually a fresh tensor); later ones make a new sum rather than
  // writing in place, because the stored gradient may share storage with another leaf's (e.g. both inputs of an add).
  t.grad = t.grad === null ? g : ops.add(t.grad, g);
}
