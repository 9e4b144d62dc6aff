/** Normalisation layers: LayerNorm (affine or not), RMSNorm, RMSNorm3d (channel RMS norm of (B, C, T, H, W)). */
import { ValueError } from '../errors.js';
import { layerNorm, rmsNorm, rmsNorm3d } from '../tensor/nn_ops.js';
import type { Tensor } from '../tensor/tensor.js';
import { onesInit, zerosInit } from './init.js';
import { Module, type Param } from './module.js';

function checkC(what: string, c: number): void {
  if (!Number.isInteger(c) || c < 1) throw new ValueError(`${what}: the channel count must be a positive integer, got ${c}`);
}

/** LayerNorm over the last axis; keys `weight`, `bias` when affine (torch.nn.LayerNorm elementwise_affine). */
export class LayerNorm extends Module {
  readonly weight: Param | null;
  readonly bias: Param | null;
  constructor(
    readonly channels: number,
    readonly eps = 1e-5,
    opts: { affine?: boolean } = {},
  ) {
    super();
    checkC('LayerNorm', channels);
    const affine = opts.affine ?? true;
    this.weight = affine ? this.param('weight', [channels]) : null;
    this.bias = affine ? this.param('bias', [channels]) : null;
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight ? this.weight.value : null, this.bias ? this.bias.value : null, this.eps);
  }
  resetParameters(): void {
    this.weight?.set(onesInit([this.channels]));
    this.bias?.set(zerosInit([this.channels]));
  }
}

/** RMSNorm over the last axis with a scale; key `weight`. */
export class RMSNorm extends Module {
  readonly weight: Param;
  constructor(
    readonly channels: number,
    readonly eps = 1e-6,
  ) {
    super();
    checkC('RMSNorm', channels);
    this.weight = this.param('weight', [channels]);
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight.value, this.eps);
  }
  resetParameters(): void {
    this.weight.set(onesInit([this.channels]));
  }
}

/** RMS norm over the channel axis of (B, C, T, H, W), then scale and shift per channel; keys `weight`, `bias`. */
export class RMSNorm3d extends Module {
  readonly weight: Param;
  readonly bias: Param;
  constructor(
    readonly channels: number,
    readonly eps = 1e-5,
  ) {
    super();
    checkC('RMSNorm3d', channels);
    this.weight = this.param('weight', [channels]);
    this.bias = this.param('bias', [channels]);
  }
  forward(x: Tensor): Tensor {
    return rmsNorm3d(x, this.weight.value, this.bias.value, this.eps);
  }
  resetParameters(): void {
    this.weight.set(onesInit([this.channels]));
    this.bias.set(zerosInit([this.channels]));
  }
}
