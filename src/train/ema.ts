/**
 * Exponential moving average of parameters: after each optimizer step, ema = d * ema + (1 - d) * param with
 * d = min(decay, (1 + n) / (10 + n)) for the n-th update (n = 0 first), so early averages are not dominated by the
 * random initialisation. Kept in float32 beside the weights; swap it in for evaluation and export.
 */
import { ShapeError, ValueError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';

export class Ema {
  readonly shadow: Float32Array[];
  /** number of updates applied */
  updates = 0;

  constructor(
    readonly params: readonly Tensor[],
    readonly decay: number,
  ) {
    if (!(decay >= 0 && decay < 1)) throw new ValueError(`EMA decay must be in [0, 1), got ${decay}`);
    this.shadow = params.map((p) => Float32Array.from(p.data()));
  }

  /** The decay applied at the next update. */
  currentDecay(): number {
    return Math.min(this.decay, (1 + this.updates) / (10 + this.updates));
  }

  update(): void {
    const d = this.currentDecay();
    const a = 1 - d;
    this.params.forEach((p, i) => {
      const s = this.shadow[i]!;
      const x = p.data();
      for (let j = 0; j < s.length; j++) s[j] = d * s[j]! + a * x[j]!;
    });
    this.updates++;
  }

  /** Runs fn with the EMA weights in the parameters, then restores the live weights (also when fn throws). */
  withWeights<T>(fn: () => T): T {
    const saved = this.params.map((p) => Float32Array.from(p.data()));
    this.params.forEach((p, i) => p.data().set(this.shadow[i]!));
    try {
      return fn();
    } finally {
      this.params.forEach((p, i) => p.data().set(saved[i]!));
    }
  }

  load(shadow: readonly Float32Array[], updates: number): void {
    if (shadow.length !== this.shadow.length) throw new ShapeError(`EMA state has ${shadow.length} buffers, expected ${this.shadow.length}`);
    shadow.forEach((s, i) => {
      if (s.length !== this.shadow[i]!.length) throw new ShapeError(`EMA buffer ${i} has ${s.length} values, expected ${this.shadow[i]!.length}`);
      this.shadow[i]!.set(s);
    });
    this.updates = updates;
  }
}
