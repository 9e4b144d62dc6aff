/**
 * Guarded float32 allocation: every tensor buffer made from a shape goes through here, so an absurd shape (from a
 * config, a file header or an API call) becomes a typed ShapeError naming the shape and the bytes it would need,
 * never a bare RangeError from the typed-array constructor or an abort.
 */
import { constants as bufferConstants } from 'node:buffer';
import { ShapeError, fmtShape } from '../errors.js';

/**
 * The most elements one typed array can hold in this Node (V8's limit, in elements for every typed array kind:
 * 2^32 on Node 20). Buffer's MAX_LENGTH is exactly that limit for Uint8Array.
 */
export const MAX_ELEMENTS: number = bufferConstants.MAX_LENGTH;

/** A byte count for messages: 1.5 GiB, 64 TiB, ... */
export function fmtBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  if (u === units.length - 1 && v >= 1024) return `${n.toExponential(2)} bytes`;
  return u === 0 ? `${n} bytes` : `${v.toFixed(1)} ${units[u]}`;
}

/** Describes the shape (or, without one, the count) for an error message. */
function describe(n: number, shape: readonly number[] | undefined, what: string): string {
  const s = shape ? ` of shape ${fmtShape(shape)}` : '';
  return `${what}${s}: ${n.toLocaleString('en-US')} float32 elements (${fmtBytes(n * 4)})`;
}

/**
 * Throws a ShapeError when n elements cannot be one float32 buffer (negative, not an integer, or beyond
 * MAX_ELEMENTS). `what` names the thing being allocated in the caller's terms (e.g. "zeros", "matmul output").
 */
export function checkAllocSize(n: number, shape?: readonly number[], what = 'tensor'): void {
  if (!Number.isInteger(n) || n < 0)
    throw new ShapeError(`${what}${shape ? ` of shape ${fmtShape(shape)}` : ''}: invalid element count ${n}`);
  if (n > MAX_ELEMENTS)
    throw new ShapeError(`${describe(n, shape, what)} is more than one tensor can hold (${MAX_ELEMENTS.toLocaleString('en-US')} elements)`);
}

/** Turns a failed allocation (out of memory) into a ShapeError naming the shape and the bytes. */
export function allocFailed(e: unknown, n: number, shape: readonly number[] | undefined, what: string): never {
  const why = e instanceof Error ? e.message : String(e);
  throw new ShapeError(`${describe(n, shape, what)} could not be allocated (${why})`);
}

/**
 * Large fresh buffers are offered to a memory adviser before their first write: the native addon registers one that
 * asks for transparent huge pages (see adviseHugePages in native/src/addon.cc). A multi-megabyte tensor then costs one
 * page fault per 2 MiB instead of one per 4 KiB when a kernel first writes it. Below LARGE_ALLOC_ELEMENTS (4 MiB) a
 * buffer cannot hold an aligned 2 MiB page with room to spare, so it is not offered.
 */
export const LARGE_ALLOC_ELEMENTS = 1 << 20;
let largeAllocAdviser: ((a: Float32Array) => unknown) | null = null;

/** INTERNAL (src/backend): sets (or with null clears) the adviser large new float32 buffers are offered to. */
export function setLargeAllocAdviser(fn: ((a: Float32Array) => unknown) | null): void {
  largeAllocAdviser = fn;
}

/** INTERNAL: the adviser now set (null when none). */
export function getLargeAllocAdviser(): ((a: Float32Array) => unknown) | null {
  return largeAllocAdviser;
}

/** Offers a freshly allocated, not yet written buffer to the adviser when it is large. */
export function adviseLarge(a: Float32Array): Float32Array {
  if (largeAllocAdviser !== null && a.length >= LARGE_ALLOC_ELEMENTS) largeAllocAdviser(a);
  return a;
}

/** A zeroed Float32Array of n elements, checked first (see checkAllocSize). */
export function allocFloat32(n: number, shape?: readonly number[], what = 'tensor'): Float32Array {
  checkAllocSize(n, shape, what);
  try {
    return adviseLarge(new Float32Array(n));
  } catch (e) {
    return allocFailed(e, n, shape, what);
  }
}
