/**
 * In-place tensor updates that optimisers, EMA, gradient clipping and samplers use. They run as backend ops on the
 * tensors' own storage, so the same code drives a host backend today and a device backend later: nothing here hands a
 * host array to the caller.
 */
import { backend } from '../backend/index.js';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import type { Tensor } from './tensor.js';

function sameShape(fn: string, a: Tensor, b: Tensor, an: string, bn: string): void {
  if (a.ndim !== b.ndim || a.shape.some((d, i) => d !== b.shape[i]))
    throw new ShapeError(`${fn}: ${bn} ${fmtShape(b.shape)} does not match ${an} ${fmtShape(a.shape)}`);
}

/** The dense storage range of a tensor that is updated in place (it must be contiguous). */
function denseTarget(fn: string, t: Tensor, what: string): Float32Array {
  if (!t.isContiguous()) throw new ShapeError(`${fn}: ${what} ${fmtShape(t.shape)} must be contiguous to be updated in place`);
  return t.storage.subarray(t.offset, t.offset + t.size);
}

/** Dense values of an input (a view when contiguous, else a copy). */
function denseSource(t: Tensor): Float32Array {
  return t.data();
}

/** dst <- src, element by element (shapes must match). */
export function copyInto(dst: Tensor, src: Tensor): void {
  sameShape('copyInto', dst, src, 'destination', 'source');
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
 * dst <- dst + src in place, element by element (shapes must match). dst may be a strided view (e.g. one frame of a
 * larger tensor): the sum lands in the storage it shares. For inference code (no autograd record).
 */
export function accumulateInto(dst: Tensor, src: Tensor): void {
  sameShape('accumulateInto', dst, src, 'destination', 'source');
  if (!dst.size) return;
  backend().stridedAccumulate(denseSource(src), dst.shape, { data: dst.storage, offset: dst.offset, strides: dst.strides });
}
