/**
 * Tensor: an n-d array (shape, strides and offset over a shared, opaque backend Storage) with reverse-mode autograd.
 * Element types: f32 (all arithmetic), bf16 / f16 (weights kept in their checkpoint dtype; widened inside the kernels
 * that read them) and i32 (token ids). Views (reshape of contiguous data, permute, slice, expand) share storage;
 * everything else allocates, and every op's output is f32.
 *
 * The math lives in ops.ts / nn_ops.ts; the methods here delegate to it so `x.add(y).sum()` reads naturally.
 */
import { backend } from '../backend/index.js';
import { f32ToF16 } from '../backend/convert.js';
import { AutogradError, AxisError, DTypeError, ShapeError, ValueError, fmtShape } from '../errors.js';
import { MAX_ELEMENTS, adviseLarge, allocFailed, allocFloat32, checkAllocSize } from './alloc.js';
import * as ops from './ops.js';
import { DTYPES, type DType } from './dtype.js';
import { Storage, storageArray, storageF32, type HostArray } from './storage.js';

export { Storage } from './storage.js';

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
  /**
   * The underlying storage, possibly shared with other views: an opaque backend handle (dtype and length only). Read
   * and write the elements with readSync / read / readInto / write / item / toArray.
   */
  readonly storage: Storage;
  #requiresGrad = false;
  grad: Tensor | null = null;
  gradFn: GradFn | null = null;

  /**
   * A tensor over `storage` (not copied). A Float32Array or Int32Array is wrapped as an f32 or i32 storage; bf16 / f16
   * data come as a Storage (see fromHostArray).
   */
  constructor(storage: Storage | Float32Array | Int32Array, shape: readonly number[], strides?: readonly number[], offset = 0, requiresGrad = false) {
    if (storage instanceof Float32Array) storage = new Storage(storage, 'f32');
    else if (storage instanceof Int32Array) storage = new Storage(storage, 'i32');
    else if (!(storage instanceof Storage)) {
      const kind = (storage as object)?.constructor?.name ?? typeof storage;
      throw new DTypeError(`tensor storage must be a Storage, Float32Array or Int32Array, got ${kind}`);
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
   * Whether gradients flow to this tensor. Only f32 tensors can require grad: a bf16 / f16 / i32 tensor is data (a
   * frozen weight, token ids), and asking for its gradient is a DTypeError.
   */
  get requiresGrad(): boolean {
    return this.#requiresGrad;
  }

  set requiresGrad(flag: boolean) {
    if (flag && this.storage.dtype !== 'f32')
      throw new DTypeError(`a ${this.storage.dtype} tensor cannot require grad (only f32 tensors are trainable; convert with .to('f32'))`);
    this.#requiresGrad = flag;
  }

  // ---- explicit host transfers: the only way code outside src/tensor and src/backend reaches the elements ----

  /** The elements as a plain array of numbers (i32 exact; bf16 / f16 widened). */
  toArray(): number[] {
    if (this.storage.dtype === 'i32') return Array.from(denseStored(this) as Int32Array);
    return Array.from(this.readSync());
  }

  /** The element type held in memory. */
  get dtype(): DType {
    return this.storage.dtype;
  }

  /** A fresh dense row-major float32 copy of the elements (a synchronous host read; bf16 / f16 / i32 converted). */
  readSync(): Float32Array {
    const d = denseF32(this);
    return this.storage.dtype === 'f32' && this.isContiguous() ? d.slice() : d;
  }

  /**
   * A fresh dense row-major copy in the stored dtype: Float32Array (f32), Uint16Array of bit patterns (bf16, f16) or
   * Int32Array (i32). For writers that keep the dtype (safetensors).
   */
  readStoredSync(): HostArray {
    const d = denseStored(this);
    return this.isContiguous() ? d.slice() : d;
  }

  /** The same as readSync(), as a promise: a device backend resolves it when its readback lands. */
  read(): Promise<Float32Array> {
    return Promise.resolve(this.readSync());
  }

  /** Reads the elements (dense, row-major, as float32) into `out`, which must hold exactly `size` values; returns it. */
  readInto(out: Float32Array): Float32Array {
    if (!(out instanceof Float32Array) || out.length !== this.size)
      throw new ShapeError(`readInto: the buffer must be a Float32Array of ${this.size} values for shape ${fmtShape(this.shape)}`);
    if (this.storage.dtype !== 'f32') out.set(denseF32(this));
    else if (this.isContiguous()) out.set(f32Of(this).subarray(this.offset, this.offset + this.size));
    else if (out.length) backend().stridedCopy({ data: f32Of(this), offset: this.offset, strides: this.strides }, this.shape, out);
    return out;
  }

  /**
   * A host write: copies `src` (dense, row-major, `size` values) into this tensor's elements in place (views write
   * through to the storage they share). Returns this tensor.
   */
  write(src: ArrayLike<number>): this {
    if (src.length !== this.size) throw new ShapeError(`write: got ${src.length} values for shape ${fmtShape(this.shape)} (${this.size})`);
    const dt = this.storage.dtype;
    if (dt === 'f32') {
      const buf = f32Of(this);
      if (this.isContiguous()) buf.set(src, this.offset);
      else {
        const d = src instanceof Float32Array ? src : Float32Array.from(src);
        if (d.length) backend().stridedScatter(d, this.shape, { data: buf, offset: this.offset, strides: this.strides });
      }
      return this;
    }
    // Other dtypes: convert to the stored type first (bf16 rounds to nearest even; i32 needs integers), then place.
    let conv: Uint16Array | Int32Array;
    if (dt === 'i32') {
      conv = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i]!;
        if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) throw new ValueError(`write: an i32 tensor needs integers, got ${v} at ${i}`);
        conv[i] = v;
      }
    } else {
      conv = new Uint16Array(src.length);
      const f = src instanceof Float32Array ? src : Float32Array.from(src);
      if (dt === 'bf16') backend().narrowBf16(f, conv);
      else f32ToF16(f, conv);
    }
    scatterStrided(conv, this.shape, storageArray(this.storage) as Uint16Array | Int32Array, this.offset, this.strides);
    return this;
  }

  item(): number {
    if (this.size !== 1) throw new ShapeError(`item() needs a tensor with one element, got shape ${fmtShape(this.shape)}`);
    const a = storageArray(this.storage);
    const v = a[this.offset]!;
    if (this.storage.dtype === 'bf16' || this.storage.dtype === 'f16') {
      const o = new Float32Array(1);
      backend().widen(this.storage.dtype, Uint16Array.of(v), o);
      return o[0]!;
    }
    return v;
  }

  /** A copy converted to `dtype` (this tensor itself when it already has it). f32 -> bf16 rounds to nearest even. */
  to(dtype: DType): Tensor {
    return castTo(this, dtype);
  }

  toString(): string {
    const dt = this.storage.dtype === 'f32' ? '' : `, dtype=${this.storage.dtype}`;
    return `Tensor(shape=${fmtShape(this.shape)}${dt}${this.requiresGrad ? ', requiresGrad' : ''})`;
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

/**
 * A tensor over `data` (not copied) with `shape` (defaults to 1-D). Accepts a Float32Array or a number array (f32), or
 * an Int32Array (i32, e.g. token ids).
 */
export function tensor(data: Float32Array | readonly number[], shape?: readonly number[], requiresGrad = false): Tensor {
  let arr: Float32Array;
  if (data instanceof Float32Array) arr = data;
  else if (Array.isArray(data)) {
    for (const v of data) if (typeof v !== 'number') throw new DTypeError(`tensor() data must be numbers, got ${typeof v}`);
    arr = Float32Array.from(data);
  } else {
    const kind = (data as object)?.constructor?.name ?? typeof data;
    throw new DTypeError(
      `tensor() makes float32 tensors from a Float32Array or number[], got ${kind} (int32 ids: intTensor(); bf16 / f16 data: fromHostArray())`,
    );
  }
  const s = shape ? checkShape(shape) : [arr.length];
  if (numelOf(s) !== arr.length)
    throw new ShapeError(`data of length ${arr.length} does not fill shape ${fmtShape(s)} (${numelOf(s)} elements)`);
  return new Tensor(arr, s, undefined, 0, requiresGrad);
}

/** An int32 tensor (token ids) over `data` (not copied when an Int32Array); a number[] must hold int32 values. */
export function intTensor(data: Int32Array | readonly number[], shape?: readonly number[]): Tensor {
  let arr: Int32Array;
  if (data instanceof Int32Array) arr = data;
  else if (Array.isArray(data)) {
    data.forEach((v, i) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31)
        throw new DTypeError(`intTensor() data must be int32 values, got ${String(v)} at index ${i}`);
    });
    arr = Int32Array.from(data);
  } else {
    const kind = (data as object)?.constructor?.name ?? typeof data;
    throw new DTypeError(`intTensor() needs an Int32Array or number[], got ${kind}`);
  }
  const s = shape ? checkShape(shape) : [arr.length];
  if (numelOf(s) !== arr.length)
    throw new ShapeError(`data of length ${arr.length} does not fill shape ${fmtShape(s)} (${numelOf(s)} elements)`);
  return new Tensor(arr, s);
}

export function scalar(v: number): Tensor {
  return new Tensor(Float32Array.of(v), []);
}

/** A zero-filled tensor (f32 unless `dtype` says otherwise). */
export function zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
  const s = checkShape(shape);
  if (dtype === 'f32') return new Tensor(allocFloat32(numelOf(s), s), s);
  return new Tensor(allocStorage(dtype, numelOf(s), s), s);
}

export function full(shape: readonly number[], value: number): Tensor {
  const t = zeros(shape);
  if (value !== 0 && t.size) backend().fill(f32Of(t), value);
  return t;
}

/** A zeroed storage of n elements of `dtype`, size-checked like every float32 allocation. */
function allocStorage(dtype: DType, n: number, shape?: readonly number[]): Storage {
  if (!DTYPES.includes(dtype)) throw new DTypeError(`unknown dtype "${String(dtype)}" (expected ${DTYPES.join(', ')})`);
  checkAllocSize(n, shape);
  try {
    if (dtype === 'f32') return new Storage(new Float32Array(n), 'f32');
    if (dtype === 'i32') return new Storage(new Int32Array(n), 'i32');
    return new Storage(new Uint16Array(n), dtype);
  } catch (e) {
    return allocFailed(e, n, shape, 'tensor');
  }
}

/**
 * A tensor over a host array (not copied) of the given dtype: Float32Array for f32, Uint16Array of bit patterns for
 * bf16 / f16, Int32Array for i32. How loaders hand checkpoint data to a tensor without widening it.
 */
export function fromHostArray(data: HostArray, shape: readonly number[], dtype: DType): Tensor {
  const s = checkShape(shape);
  const st = new Storage(data, dtype);
  if (numelOf(s) !== st.length)
    throw new ShapeError(`data of length ${st.length} does not fill shape ${fmtShape(s)} (${numelOf(s)} elements)`);
  return new Tensor(st, s);
}

export function ones(shape: readonly number[]): Tensor {
  return full(shape, 1);
}

/**
 * A tensor whose elements are NOT initialised: for outputs that a kernel overwrites completely (the backend
 * contract for outputs unless a kernel documents accumulation). Saves the zero-fill and, for large tensors, the
 * fresh zero pages a zeroed allocation costs.
 */
export function empty(shape: readonly number[], dtype: DType = 'f32'): Tensor {
  const s = checkShape(shape);
  if (dtype !== 'f32') return new Tensor(allocStorage(dtype, numelOf(s), s), s);
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
      out = adviseLarge(new Float32Array(b.buffer, b.byteOffset, n));
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
  if (t.dtype !== 'f32') throw new DTypeError(`parameter(): a ${t.dtype} tensor cannot be trainable (convert with .to('f32') first)`);
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

// ---------------------------------------------------------------------------------------------------------------
// INTERNAL host access (src/tensor and src/backend only; not exported from the package index)

/** The Float32Array behind an f32 tensor's storage (the whole storage: mind t.offset); DTypeError for other dtypes. */
export function f32Of(t: Tensor, what?: string): Float32Array {
  return storageF32(t.storage, what);
}

/** Gathers a strided view of any typed array into a dense array of the same kind (a plain loop: used for non-f32). */
function gatherStrided<T extends HostArray>(src: T, offset: number, strides: readonly number[], shape: readonly number[], out: T): T {
  const n = out.length;
  const nd = shape.length;
  if (!n) return out;
  const idx = new Array<number>(nd).fill(0);
  let p = offset;
  for (let i = 0; i < n; i++) {
    out[i] = src[p]!;
    for (let a = nd - 1; a >= 0; a--) {
      if (++idx[a]! < shape[a]!) {
        p += strides[a]!;
        break;
      }
      p -= (shape[a]! - 1) * strides[a]!;
      idx[a] = 0;
    }
  }
  return out;
}

/** Scatters a dense array into a strided view of the same kind of array (views that write never overlap themselves). */
function scatterStrided<T extends Uint16Array | Int32Array>(src: T, shape: readonly number[], dst: T, offset: number, strides: readonly number[]): void {
  const n = src.length;
  const nd = shape.length;
  const idx = new Array<number>(nd).fill(0);
  let p = offset;
  for (let i = 0; i < n; i++) {
    dst[p] = src[i]!;
    for (let a = nd - 1; a >= 0; a--) {
      if (++idx[a]! < shape[a]!) {
        p += strides[a]!;
        break;
      }
      p -= (shape[a]! - 1) * strides[a]!;
      idx[a] = 0;
    }
  }
}

/** Dense elements in the stored dtype: a view of the storage when contiguous (do not write to it), else a copy. */
export function denseStored(t: Tensor): HostArray {
  const a = storageArray(t.storage);
  if (t.isContiguous()) return a.subarray(t.offset, t.offset + t.size);
  if (t.storage.dtype === 'f32') return denseF32(t);
  const out = (a instanceof Int32Array ? new Int32Array(t.size) : new Uint16Array(t.size)) as HostArray;
  return gatherStrided(a, t.offset, t.strides, t.shape, out);
}

/**
 * Dense float32 elements of t: a view of the storage when t is a contiguous f32 tensor (no copy; kernels read it),
 * otherwise a fresh array (strided gather, and bf16 / f16 / i32 widened to f32).
 */
export function denseF32(t: Tensor): Float32Array {
  const dt = t.storage.dtype;
  if (dt === 'f32') {
    const buf = f32Of(t);
    if (t.isContiguous()) return buf.subarray(t.offset, t.offset + t.size);
    const out = allocUninit(t.size);
    if (out.length) backend().stridedCopy({ data: buf, offset: t.offset, strides: t.strides }, t.shape, out);
    return out;
  }
  const src = denseStored(t);
  const out = allocUninit(t.size);
  if (dt === 'i32') out.set(src);
  else backend().widen(dt, src as Uint16Array, out);
  return out;
}

/** An f32 tensor with t's values: t itself when it is f32, else a widened dense copy (no autograd: non-f32 has none). */
export function asF32(t: Tensor): Tensor {
  return t.storage.dtype === 'f32' ? t : new Tensor(denseF32(t), t.shape);
}

/** Converts t to `dtype` (t itself when it already has it). Autograd flows only through f32 -> f32 (identity). */
export function castTo(t: Tensor, dtype: DType): Tensor {
  if (!DTYPES.includes(dtype)) throw new DTypeError(`unknown dtype "${String(dtype)}" (expected ${DTYPES.join(', ')})`);
  if (t.storage.dtype === dtype) return t;
  if (dtype === 'f32') return new Tensor(denseF32(t), t.shape);
  const f = denseF32(t);
  if (dtype === 'i32') {
    const o = new Int32Array(f.length);
    for (let i = 0; i < f.length; i++) {
      const v = f[i]!;
      if (!Number.isInteger(v)) throw new ValueError(`to('i32'): element ${i} is ${v}, not an integer`);
      o[i] = v;
    }
    return new Tensor(o, t.shape);
  }
  const o = new Uint16Array(f.length);
  if (dtype === 'bf16') backend().narrowBf16(f, o);
  else f32ToF16(f, o);
  return new Tensor(new Storage(o, dtype), t.shape);
}
