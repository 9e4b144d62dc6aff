/**
 * Random weights for a Wan VAE of any config, with activations of order one through the whole network (unlike
 * Module.initRandom's N(0, 0.02) everywhere, which would also set every RMS_norm gamma near zero): conv weights
 * N(0, 1 / fan_in), RMS_norm gammas 1, biases N(0, 0.02). For tests of tiling and streaming on a model whose outputs are
 * not dominated by biases, and for the benchmark (both implementations load the same safetensors).
 */
import { Rng } from '../../tensor/random.js';
import { tensor } from '../../tensor/tensor.js';
import type { WanVAE } from './model.js';

export function wanVaeRandomInit(model: WanVAE, seed: number): void {
  const rng = new Rng(seed);
  for (const [name, p] of model.namedParams()) {
    const d = new Float32Array(p.size);
    if (name.endsWith('.gamma')) d.fill(1);
    else if (p.shape.length > 1) {
      const std = Math.sqrt(1 / (p.size / p.shape[0]!));
      for (let i = 0; i < d.length; i++) d[i] = std * rng.normal();
    } else for (let i = 0; i < d.length; i++) d[i] = 0.02 * rng.normal();
    p.set(tensor(d, p.shape));
  }
}
