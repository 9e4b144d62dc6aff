/** Linear: y = x W^T + b, W (out, in), optional bias; keys `weight`, `bias` (torch.nn.Linear). */
import { ValueError } from '../errors.js';
import * as ops from '../tensor/ops.js';
import type { Rng } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { torchDefaultInit } from './init.js';
import { Module, type Param } from './module.js';

export interface LinearOptions {
  /** default true */
  bias?: boolean;
  /** take over this layer's parameter slots (same Param objects, so their values and freeze state carry over) */
  share?: Linear;
}

export class Linear extends Module {
  readonly weight: Param;
  readonly bias: Param | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LinearOptions = {},
  ) {
    super();
    for (const [n, v] of [['inFeatures', inFeatures], ['outFeatures', outFeatures]] as const)
      if (!Number.isInteger(v) || v < 0) throw new ValueError(`Linear: ${n} must be a non-negative integer, got ${v}`);
    const s = opts.share;
    if (s) {
      if (s.inFeatures !== inFeatures || s.outFeatures !== outFeatures)
        throw new ValueError(`Linear: cannot share the parameters of a ${s.inFeatures} -> ${s.outFeatures} layer with a ${inFeatures} -> ${outFeatures} one`);
      this.weight = this.adoptParam('weight', s.weight);
      this.bias = s.bias ? this.adoptParam('bias', s.bias) : null;
    } else {
      this.weight = this.param('weight', [outFeatures, inFeatures]);
      this.bias = opts.bias ?? true ? this.param('bias', [outFeatures]) : null;
    }
  }

  forward(x: Tensor): Tensor {
    return ops.linear(x, this.weight.value, this.bias ? this.bias.value : null);
  }

  /** torch.nn.Linear.reset_parameters: kaiming_uniform(a = sqrt(5)) weight, uniform(+-1/sqrt(in)) bias. */
  resetParameters(rng: Rng): void {
    torchDefaultInit(this.weight, this.bias, rng);
  }
}
