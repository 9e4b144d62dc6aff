/**
 * In-place tensor updates that optimisers, EMA, gradient clipping and samplers use. They run as backend ops on the
 * tensors' own storage, so the same code drives a host backend today and a device backend later: nothing here hands a
 * host array to the caller.
 */
import { backend } from '../backend/index.js';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { denseF32, denseStored, empty, f32Of, firstNonFinite, type Tensor } from './tensor.js';

function sameShape(fn: string, a: Tensor, b: Tensor, an: string, bn: string): void {
  if (a.ndim !== b.ndim || a.shape.some((d, i) => d !== b.shape[i]))
    throw new ShapeError(`${fn}: ${bn} ${fmtShape(b.shape)} does not match ${an} ${fmtShape(a.shape)}`);
}

/** The dense storage range of a tensor that is updated in place (it must be contiguous). */
function denseTarget(fn: string, t: Tensor, what: string): Float32Array {
  if (!t.isContiguous()) throw new ShapeError(`${fn}: ${what} ${fmtShape(t.shape)} must be contiguous to be updated in place`);
  return f32Of(t, `${fn} (${what}, updated in place)`).subarray(t.offset, t.offset + t.size);
}

/** Dense float32 values of an input (a view when contiguous f32, else a copy; bf16 / f16 / i32 widened). */
function denseSource(t: Tensor): Float32Array {
  return denseF32(t);
}

/** dst <- src, element by element (shapes must match). */
export function copyInto(dst: Tensor, src: Tensor): void {
  sameShape('copyInto', dst, src, 'destination', 'source');
  if (dst.dtype === 'f32' && src.dtype === 'f32' && dst.isContiguous() && src.isContiguous()) {
    if (dst.size) denseTarget('copyInto', dst, 'destination').set(denseSource(src));
    return;
  }
  dst.write(denseSource(src));
}

/** t <- t * s in place. */
export function scaleInPlace(t: Tensor, s: number): void {
  const d = denseTarget('scaleInPlace', t, 'tensor');
  backend().affine(d, s, 0, d);
}

/** The sum of squares of all elements (accumulated in double). */
export function sumSquares(t: Tensor): number {
  return backend().sumSquares(denseSource(t));
}

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** the step number, counting from 1 */
  step: number;
}

/** One AdamW update of p with gradient g and moments m, v (torch semantics; see Backend.adamw). */
export function adamwUpdate(p: Tensor, g: Tensor, m: Tensor, v: Tensor, h: AdamWHyper): void {
  for (const [n, t] of [['gradient', g], ['first moment', m], ['second moment', v]] as const) sameShape('adamwUpdate', p, t, 'parameter', n);
  backend().adamw(
    denseTarget('adamwUpdate', p, 'parameter'),
    denseSource(g),
    denseTarget('adamwUpdate', m, 'first moment'),
    denseTarget('adamwUpdate', v, 'second moment'),
    h.lr,
    h.beta1,
    h.beta2,
    h.eps,
    h.weightDecay,
    h.step,
  );
}

/** shadow <- decay * shadow + (1 - decay) * x. */
export function emaUpdate(shadow: Tensor, x: Tensor, decay: number): void {
  sameShape('emaUpdate', shadow, x, 'shadow', 'value');
  if (!(decay >= 0 && decay <= 1)) throw new ValueError(`emaUpdate: decay must be in [0, 1], got ${decay}`);
  backend().ema(denseTarget('emaUpdate', shadow, 'shadow'), denseSource(x), decay);
}

/**
 * sum over terms of c * t, a new dense f32 tensor of the terms' common shape, computed by the backend in double per
 * element and rounded once (the samplers' update rule: no host arithmetic on tensor data). No autograd.
 */
export function linearCombination(terms: readonly (readonly [number, Tensor])[]): Tensor {
  if (!terms.length) throw new ValueError('linearCombination: needs at least one term');
  const first = terms[0]![1];
  for (const [c, t] of terms) {
    sameShape('linearCombination', first, t, 'first term', 'term');
    if (!Number.isFinite(c)) throw new ValueError(`linearCombination: coefficients must be finite, got ${c}`);
  }
  const out = empty(first.shape);
  if (out.size) backend().lincomb(terms.map(([c]) => c), terms.map(([, t]) => denseSource(t)), f32Of(out));
  return out;
}

/**
 * The first NaN or +-Inf of t in row-major order, as its flat index and value, or null when every element is finite.
 * Scans the storage where it lies (no host copy of a contiguous tensor; bf16 / f16 checked on their bit patterns).
 */
export function findNonFinite(t: Tensor): { index: number; value: number } | null {
  if (t.dtype === 'i32') return null;
  if (t.dtype === 'f32') {
    const d = denseSource(t);
    const i = firstNonFinite(d);
    return i < 0 ? null : { index: i, value: d[i]! };
  }
  const h = denseStored(t) as Uint16Array;
  // Non-finite exactly when the exponent bits are all ones (bf16: 8 bits at 7..14; f16: 5 bits at 10..14).
  const mask = t.dtype === 'bf16' ? 0x7f80 : 0x7c00;
  for (let i = 0; i < h.length; i++) {
    if ((h[i]! & mask) === mask) {
      const v = new Float32Array(1);
      backend().widen(t.dtype, h.subarray(i, i + 1), v);
      return { index: i, value: v[0]! };
    }
  }
  return null;
}

/**
 * dst += src in place, element by element (shapes must match). `dst` may be a strided view (a slice of a larger tensor:
 * it writes through), but not a broadcast one (a 0 stride over more than one element would add twice).
 */
export function addInto(dst: Tensor, src: Tensor): void {
  sameShape('addInto', dst, src, 'destination', 'source');
  if (dst.shape.some((d, i) => d > 1 && dst.strides[i] === 0))
    throw new ShapeError(`addInto: destination ${fmtShape(dst.shape)} is a broadcast view (stride 0); it cannot be updated in place`);
  if (!dst.size) return;
  const buf = f32Of(dst, 'addInto (destination, updated in place)');
  backend().stridedAccumulate(denseSource(src), dst.shape, { data: buf, offset: dst.offset, strides: dst.strides });
}

/**
 * dst <- src widened to float32 without a temporary: dst a contiguous f32 tensor (a reused scratch buffer), src a bf16
 * or f16 tensor of the same shape (f32 / strided sources are copied through copyInto). Lets a model widen one stored
 * bf16 weight at a time into the same buffer instead of allocating a float32 copy per use.
 */
export function widenInto(dst: Tensor, src: Tensor): void {
  sameShape('widenInto', dst, src, 'destination', 'source');
  if ((src.dtype !== 'bf16' && src.dtype !== 'f16') || !src.isContiguous()) return copyInto(dst, src);
  const d = denseTarget('widenInto', dst, 'destination');
  if (d.length) backend().widen(src.dtype, denseStored(src) as Uint16Array, d);
}
