/**
 * Initialisation for training from scratch: PyTorch's defaults for convolutions (weights uniform in
 * ±1/sqrt(fan_in), as kaiming_uniform with a = sqrt(5) gives), zero biases, RMSNorm scales 1 and shifts 0.
 * Deterministic from the seed.
 */
import type { Module } from '../nn/module.js';
import { Rng } from '../tensor/random.js';
import { Tensor } from '../tensor/tensor.js';

export function initForTraining(model: Module, seed: number): void {
  const rng = new Rng(seed);
  for (const [key, p] of model.namedParams()) {
    const d = new Float32Array(p.size);
    if (p.shape.length > 1) {
      const fanIn = p.size / p.shape[0]!;
      const bound = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < d.length; i++) d[i] = (2 * rng.uniform() - 1) * bound;
    } else if (/(^|\.)weight$/.test(key)) d.fill(1); // a norm's scale (1-D weights exist only in norms)
    p.set(new Tensor(d, p.shape), key);
  }
}
