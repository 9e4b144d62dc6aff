/** Embedding: rows of `weight` (num, dim) picked by integer ids (int32 tensors); key `weight` (torch.nn.Embedding). */
import { ValueError } from '../errors.js';
import { embedding } from '../tensor/nn_ops.js';
import type { Rng } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { normalInit } from './init.js';
import { Module, type Param } from './module.js';

export class Embedding extends Module {
  readonly weight: Param;
  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
  ) {
    super();
    for (const [n, v] of [['numEmbeddings', numEmbeddings], ['embeddingDim', embeddingDim]] as const)
      if (!Number.isInteger(v) || v < 1) throw new ValueError(`Embedding: ${n} must be a positive integer, got ${v}`);
    this.weight = this.param('weight', [numEmbeddings, embeddingDim]);
  }

  /** ids of any shape -> (...ids.shape, dim). */
  forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight.value);
  }

  /** torch.nn.Embedding.reset_parameters: N(0, 1). */
  resetParameters(rng: Rng): void {
    this.weight.set(normalInit(this.weight.shape, 1, rng));
  }
}
