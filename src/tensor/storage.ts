/**
 * Storage: the opaque, backend-owned memory behind a tensor. It knows its element type and length; its buffer sits in
 * an ES private field, so code outside src/tensor and src/backend cannot index it, enumerate it or hand it to a typed
 * array. Those two folders reach the buffer through `storageArray()` (and the typed helpers below), which the public
 * index does not export. Host transfers go through the tensor's explicit calls (readSync / read / readInto / write /
 * item / toArray), shaped so that a device backend can later hold the buffer on the device and read it back
 * asynchronously.
 */
import { DTypeError } from '../errors.js';
import type { DType } from './dtype.js';

/** The host arrays a storage may hold: f32 -> Float32Array, bf16 / f16 -> Uint16Array (raw bits), i32 -> Int32Array. */
export type HostArray = Float32Array | Uint16Array | Int32Array;

let peek: (s: Storage) => HostArray;

function arrayKind(a: unknown): string {
  return (a as object)?.constructor?.name ?? typeof a;
}

/** The typed-array class each dtype is held in. */
export function arrayMatchesDType(a: unknown, dtype: DType): boolean {
  switch (dtype) {
    case 'f32':
      return a instanceof Float32Array;
    case 'bf16':
    case 'f16':
      return a instanceof Uint16Array;
    case 'i32':
      return a instanceof Int32Array;
  }
}

export class Storage {
  /** element type */
  readonly dtype: DType;
  /** number of elements */
  readonly length: number;
  #buf: HostArray;

  constructor(buf: HostArray, dtype: DType) {
    if (!arrayMatchesDType(buf, dtype)) throw new DTypeError(`a ${dtype} storage cannot hold a ${arrayKind(buf)}`);
    this.#buf = buf;
    this.dtype = dtype;
    this.length = buf.length;
    Object.freeze(this);
  }

  static {
    peek = (s) => s.#buf;
  }

  /** Bytes of memory the elements take. */
  get byteLength(): number {
    return this.#buf.byteLength;
  }

  toString(): string {
    return `Storage(${this.dtype}, ${this.length} elements)`;
  }

  toJSON(): { dtype: DType; length: number } {
    return { dtype: this.dtype, length: this.length };
  }
}

/** INTERNAL (src/tensor and src/backend only): the host array behind a storage. */
export function storageArray(s: Storage): HostArray {
  return peek(s);
}

/** INTERNAL: the Float32Array behind an f32 storage; a DTypeError naming `what` for any other dtype. */
export function storageF32(s: Storage, what = 'this op'): Float32Array {
  if (s.dtype !== 'f32') throw new DTypeError(`${what} needs float32 data, got a ${s.dtype} tensor`);
  return peek(s) as Float32Array;
}
