/**
 * Exponential moving average of parameters: after each optimizer step, ema = d * ema + (1 - d) * param with
 * d = min(decay, (1 + n) / (10 + n)) for the n-th update (n = 0 first), so early averages are not dominated by the
 * random initialisation. The shadows are float32 Tensors keyed by parameter name, updated by a backend op; swap them
 * in for evaluation and export.
 */
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { copyInto, emaUpdate } from '../tensor/inplace.js';
import { Tensor, zeros } from '../tensor/tensor.js';
import { namedParamList } from './optim.js';

export class Ema {
  /** parameter name -> [live parameter, shadow] */
  private readonly slots = new Map<string, { p: Tensor; s: Tensor }>();
  /** number of updates applied */
  updates = 0;

  /** `params`: a plain list (named by position "0", "1", ...) or [name, tensor] pairs. */
  constructor(
    params: Iterable<Tensor> | Iterable<readonly [string, Tensor]>,
    readonly decay: number,
  ) {
    if (!(decay >= 0 && decay < 1)) throw new ValueError(`EMA decay must be in [0, 1), got ${decay}`);
    for (const [n, p] of namedParamList('EMA', params)) {
      const s = zeros(p.shape);
      copyInto(s, p);
      this.slots.set(n, { p, s });
    }
  }

  get names(): string[] {
    return [...this.slots.keys()];
  }

  /** The shadow tensors by parameter name (the EMA's own: read them, don't change them). */
  shadows(): Map<string, Tensor> {
    return new Map([...this.slots].map(([n, x]) => [n, x.s]));
  }

  /** Host copies of the shadows in parameter order (for inspection and tests). */
  get shadow(): Float32Array[] {
    return [...this.slots.values()].map((x) => x.s.readSync());
  }

  /** The decay applied at the next update. */
  currentDecay(): number {
    return Math.min(this.decay, (1 + this.updates) / (10 + this.updates));
  }

  update(): void {
    const d = this.currentDecay();
    for (const { p, s } of this.slots.values()) emaUpdate(s, p, d);
    this.updates++;
  }

  /** Runs fn with the EMA weights in the parameters, then restores the live weights (also when fn throws). */
  withWeights<T>(fn: () => T): T {
    const saved = [...this.slots.values()].map(({ p }) => {
      const c = zeros(p.shape);
      copyInto(c, p);
      return c;
    });
    for (const { p, s } of this.slots.values()) copyInto(p, s);
    try {
      return fn();
    } finally {
      [...this.slots.values()].forEach(({ p }, i) => copyInto(p, saved[i]!));
    }
  }

  /** Loads shadows by name; every parameter must be present with its shape (checked before anything changes). */
  load(get: (name: string, shape: readonly number[]) => Tensor, updates: number): void {
    if (!Number.isSafeInteger(updates) || updates < 0) throw new ValueError(`EMA update count must be an integer >= 0, got ${updates}`);
    const loaded = new Map<string, Tensor>();
    for (const [n, { p }] of this.slots) {
      const t = get(n, p.shape);
      if (t.ndim !== p.ndim || t.shape.some((d, i) => d !== p.shape[i])) throw new ShapeError(`EMA shadow of ${n} has shape ${fmtShape(t.shape)}, expected ${fmtShape(p.shape)}`);
      loaded.set(n, t);
    }
    for (const [n, { s }] of this.slots) copyInto(s, loaded.get(n)!);
    this.updates = updates;
  }
}
