/** Deterministic Wan DiT weights and inputs of the benchmarks (bench:wan, bench:adapt). */
import { Tensor } from '../src/tensor/tensor.js';
import { Rng } from '../src/tensor/random.js';
import type { WanModel } from '../src/models/wan/index.js';

/**
 * Deterministic weights at a realistic scale, drawn param by param (state-dict order) from one seeded generator:
 * linear / patch weights N(0, 1/fan_in), biases N(0, 0.02^2), RMSNorm and LayerNorm weights 1 + N(0, 0.1^2),
 * LayerNorm biases N(0, 0.02^2), modulation tables N(0, 1/D) (Wan's init).
 */
export function randomWeights(model: WanModel, seed: number): Map<string, Tensor> {
  const rng = new Rng(seed);
  const D = model.config.dim;
  const out = new Map<string, Tensor>();
  for (const [key, p] of model.namedParams()) {
    const d = new Float32Array(p.size);
    const isNorm = /(^|\.)norm(_q|_k|_k_img|3)\./.test(key);
    let mean = 0;
    let std: number;
    if (key.endsWith('modulation')) std = 1 / Math.sqrt(D);
    else if (isNorm && key.endsWith('.weight')) [mean, std] = [1, 0.1];
    else if (key.endsWith('.bias')) std = 0.02;
    else std = 1 / Math.sqrt(p.shape.slice(1).reduce((a, b) => a * b, 1));
    for (let i = 0; i < d.length; i++) d[i] = mean + std * rng.normal();
    out.set(key, new Tensor(d, p.shape));
  }
  return out;
}

export function randn(shape: number[], rng: Rng, std = 1): Tensor {
  const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < d.length; i++) d[i] = std * rng.normal();
  return new Tensor(d, shape);
}

/** (1, textLen, textDim): `valid` rows of N(0, 1), then zero rows, as umT5 embeddings padded to text_len. */
export function textContext(textLen: number, textDim: number, valid: number, rng: Rng): Tensor {
  const d = new Float32Array(textLen * textDim);
  for (let i = 0; i < valid * textDim; i++) d[i] = rng.normal();
  return new Tensor(d, [1, textLen, textDim]);
}
