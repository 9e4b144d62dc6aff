/**
 * Initialisation for training from scratch: conv and linear weights uniform, by default in ±sqrt(3 / fan_in)
 * (variance 1 / fan_in, LeCun's: a linear layer keeps its input's variance) or, with scale 'torch', in
 * ±1/sqrt(fan_in) (PyTorch's default, kaiming_uniform with a = sqrt(5): variance 1 / (3 fan_in), each layer shrinks
 * the signal's variance threefold); zero biases, RMSNorm scales 1 and shifts 0 (the Wan VAE's RMS_norm scales,
 * `gamma` of shape (C, 1, 1, 1), 1 too). Deterministic from the seed; the two scales draw the same numbers.
 *
 * Why LeCun's by default: under the shortcut init below the untrained Wan VAE is a chain of about ten plain convs
 * (no norm, no activation between them), and PyTorch's default makes its latent a fifth of its input and lets the
 * decoder's biases win; on the shapes world it then sat on a background-only plateau for about a thousand steps
 * before it learned the object, where with variance 1 / fan_in it learns it from the start (docs/studies/adapt.md,
 * "The init scale was the plateau"; the official PyTorch module behaves alike under both scales).
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
   * docs/studies/adapt.md). The Wan VAE's temporal resampling convs (`time_conv`) start as frame selection and
   * repetition, as the official module's `Resample.init_weight` / `init_weight2` set them (defined there, not called
   * by its constructor): the encoder's stride-2 conv passes its middle tap (every second frame), the decoder's
   * conv gives both of its output frames the current frame (each latent frame repeated), so the untrained model's
   * time axis is subsampling down and repetition up rather than a random mix of frames. Default 'shortcut';
   * 'default' uses the plain init.
   */
  residual?: 'shortcut' | 'default';
  /** the weights' scale: 'lecun' (default, variance 1 / fan_in) or 'torch' (PyTorch's default, 1 / (3 fan_in)) */
  scale?: 'lecun' | 'torch';
}

const RES_NORM = /\.stages\.\d+\.op_list\.\d+\.main\.conv2\.norm\.weight$/;
const RESAMPLE_CONV = /\.stages\.\d+\.op_list\.\d+\.main\.conv\.conv\.(weight|bias)$/;
const WAN_RES_CONV = /\.residual\.6\.(weight|bias)$|\.middle\.1\.proj\.(weight|bias)$/;
const WAN_TIME_CONV = /(^|\.)time_conv\.weight$/;

/**
 * A Wan VAE time_conv weight (Cout, Cin, 3, 1, 1) as frame selection: output channel o reads input channel o mod Cin
 * at one tap, the middle one for the encoder's stride-2 conv (Cout = Cin), the last (the current frame under causal
 * padding) for the decoder's (Cout = 2 Cin: both halves, the two output frames, the identity).
 */
function timeConvIdentity(d: Float32Array, shape: readonly number[]): void {
  const [co, ci, kt, kh, kw] = shape as [number, number, number, number, number];
  if (shape.length !== 5 || kh !== 1 || kw !== 1 || (co !== ci && co !== 2 * ci)) throw new Error(`time_conv weight of shape [${shape.join(', ')}]: not a Wan VAE temporal resampling conv`);
  const tap = co === ci ? 1 : kt - 1;
  d.fill(0);
  for (let o = 0; o < co; o++) d[(o * ci + (o % ci)) * kt + tap] = 1;
}

export function initForTraining(model: Module, seed: number, opts: InitOptions = {}): void {
  const rng = new Rng(seed);
  const zeroRes = (opts.residual ?? 'shortcut') === 'shortcut';
  const gain = (opts.scale ?? 'lecun') === 'lecun' ? Math.sqrt(3) : 1;
  for (const [key, p] of model.namedParams()) {
    const d = new Float32Array(p.size);
    if (zeroRes && (RES_NORM.test(key) || RESAMPLE_CONV.test(key) || WAN_RES_CONV.test(key))) {
      // zeros (drawn values skipped on purpose: the init does not depend on the residual mode's RNG use)
    } else if (key.endsWith('.gamma')) d.fill(1); // the Wan VAE's RMS_norm scale
    else if (p.shape.length > 1) {
      const fanIn = p.size / p.shape[0]!;
      const bound = gain / Math.sqrt(fanIn);
      for (let i = 0; i < d.length; i++) d[i] = (2 * rng.uniform() - 1) * bound;
      // drawn first, so the parameters after it get the same values as without this override
      if (zeroRes && WAN_TIME_CONV.test(key)) timeConvIdentity(d, p.shape);
    } else if (/(^|\.)weight$/.test(key)) d.fill(1); // a norm's scale (1-D weights exist only in norms)
    p.set(new Tensor(d, p.shape), key);
  }
}
