/**
 * Initialisation for training from scratch: PyTorch's defaults for convolutions (weights uniform in
 * ±1/sqrt(fan_in), as kaiming_uniform with a = sqrt(5) gives), zero biases, RMSNorm scales 1 and shifts 0 (the Wan
 * VAE's RMS_norm scales, `gamma` of shape (C, 1, 1, 1), 1 too). Deterministic from the seed.
 */
import type { Module } from '../nn/module.js';
import { Rng } from '../tensor/random.js';
import { Tensor } from '../tensor/tensor.js';

export interface InitOptions {
  /**
   * Residual branches start as the identity: the closing RMSNorm scale of every residual block and the conv of
   * every residual up/down-sampling block start at zero (their shortcuts carry the signal), so the untrained model
   * is the shortcut autoencoder (pixel-unshuffle + channel averaging down, channel duplication + pixel-shuffle up)
   * between the project-in/out convs, and training refines it. In the Wan VAE the closing conv of every residual
   * branch (`residual.6`) and the output projection of the middle attention blocks (`middle.1.proj`) start at zero,
   * so each residual block and attention block starts as its shortcut (with a random projection the attention's
   * global average outweighs the spatial signal beside it, and the untrained model barely sees where an object is:
   * docs/studies/adapt.md). Default 'shortcut'; 'default' uses the plain init.
   */
  residual?: 'shortcut' | 'default';
}

const RES_NORM = /\.stages\.\d+\.op_list\.\d+\.main\.conv2\.norm\.weight$/;
const RESAMPLE_CONV = /\.stages\.\d+\.op_list\.\d+\.main\.conv\.conv\.(weight|bias)$/;
const WAN_RES_CONV = /\.residual\.6\.(weight|bias)$|\.middle\.1\.proj\.(weight|bias)$/;

export function initForTraining(model: Module, seed: number, opts: InitOptions = {}): void {
  const rng = new Rng(seed);
  const zeroRes = (opts.residual ?? 'shortcut') === 'shortcut';
  for (const [key, p] of model.namedParams()) {
    const d = new Float32Array(p.size);
    if (zeroRes && (RES_NORM.test(key) || RESAMPLE_CONV.test(key) || WAN_RES_CONV.test(key))) {
      // zeros (drawn values skipped on purpose: the init does not depend on the residual mode's RNG use)
    } else if (key.endsWith('.gamma')) d.fill(1); // the Wan VAE's RMS_norm scale
    else if (p.shape.length > 1) {
      const fanIn = p.size / p.shape[0]!;
      const bound = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < d.length; i++) d[i] = (2 * rng.uniform() - 1) * bound;
    } else if (/(^|\.)weight$/.test(key)) d.fill(1); // a norm's scale (1-D weights exist only in norms)
    p.set(new Tensor(d, p.shape), key);
  }
}
