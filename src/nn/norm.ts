/** Normalisation layers: LayerNorm (affine or not), RMSNorm, RMSNorm3d (channel RMS norm of (B, C, T, H, W)). */
import { ValueError } from '../errors.js';
import { layerNorm, rmsNorm, rmsNorm3d } from '../tensor/nn_ops.js';
import * as ops from '../tensor/ops.js';
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

export interface RMSNorm3dOptions {
  /** a per-channel shift (key `bias`); default true */
  bias?: boolean;
  /** the scale's key; default `weight` (the Wan VAE's RMS_norm: `gamma`) */
  scaleKey?: string;
  /**
   * singleton axes after C in the stored parameter shapes: 0 (default) stores (C); the Wan VAE's RMS_norm stores
   * (C, 1, 1, 1) (3) for video features and (C, 1, 1) (2) in its attention blocks
   */
  trailingAxes?: number;
  /**
   * where eps enters: 'mean' (default), x / sqrt(mean(x^2) + eps); 'norm', torch's F.normalize(x, dim=1) * sqrt(C) =
   * x / max(||x||, eps) * sqrt(C) (the Wan VAE, eps 1e-12), computed as x / sqrt(mean(x^2) + eps^2 / C): the same away
   * from ||x|| ~ eps, and an all-zero vector maps to 0 as F.normalize does
   */
  epsOn?: 'mean' | 'norm';
}

/**
 * RMS norm over the channel axis of (B, C, T, H, W), then scale and shift per channel; keys `weight`, `bias` (DC-AE-V),
 * or, with options, `gamma` of (C, 1, 1, 1) without a shift and F.normalize's eps (the Wan VAE's RMS_norm).
 */
export class RMSNorm3d extends Module {
  readonly weight: Param;
  readonly bias: Param | null;
  private readonly meanEps: number;
  constructor(
    readonly channels: number,
    readonly eps = 1e-5,
    opts: RMSNorm3dOptions = {},
  ) {
    super();
    checkC('RMSNorm3d', channels);
    const trailing = opts.trailingAxes ?? 0;
    if (!Number.isInteger(trailing) || trailing < 0 || trailing > 3) throw new ValueError(`RMSNorm3d: trailingAxes must be 0 to 3, got ${trailing}`);
    if (!['mean', 'norm', undefined].includes(opts.epsOn)) throw new ValueError(`RMSNorm3d: epsOn must be 'mean' or 'norm', got ${JSON.stringify(opts.epsOn)}`);
    const shape = [channels, ...Array<number>(trailing).fill(1)];
    this.weight = this.param(opts.scaleKey ?? 'weight', shape);
    this.bias = opts.bias ?? true ? this.param('bias', shape) : null;
    this.meanEps = opts.epsOn === 'norm' ? (eps * eps) / channels : eps;
  }
  forward(x: Tensor): Tensor {
    const c = this.channels;
    const vec = (p: Param) => (p.shape.length === 1 ? p.value : ops.reshape(p.value, [c]));
    return rmsNorm3d(x, vec(this.weight), this.bias ? vec(this.bias) : null, this.meanEps);
  }
  resetParameters(): void {
    this.weight.set(onesInit(this.weight.shape));
    this.bias?.set(zerosInit(this.bias.shape));
  }
}
