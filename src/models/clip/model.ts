/**
 * The visual tower of Wan's CLIP (`VisionTransformer` of wan/modules/clip.py as `XLMRobertaCLIP.visual` builds it),
 * on the src/nn layers, with the checkpoint's key paths (`visual.transformer.3.attn.to_qkv.weight`, ...):
 *
 *   x = patch_embedding(pixels)            Conv2d(3, dim, patch, stride patch, no bias), patches row-major
 *   x = [cls_embedding, x] + pos_embedding  (no interpolation: the input must be image_size square)
 *   x = pre_norm(x)                         LayerNorm eps norm_eps
 *   per block: x += proj(attn(norm1(x)));  x += mlp(norm2(x))      mlp = Linear, GELU (erf), Linear
 *   attn: to_qkv (dim -> 3 dim, bias) viewed (B, L, 3, heads, head_dim); softmax(q k^T / sqrt(head_dim)) v, no mask
 *
 * Image-to-video takes the tokens after all blocks but the last (`use_31_block=True`); the forward never applies
 * post_norm or head (they exist for the key layout). Everything runs in float32; bf16 / f16 weights stay in their
 * dtype and are widened by the kernels (the reference runs this tower in fp16 with flash attention; the fixtures and
 * the spec's "[HEAD]" comment use fp32).
 */
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import { Container } from '../../nn/container.js';
import { Conv2d } from '../../nn/conv.js';
import { Linear } from '../../nn/linear.js';
import { Mlp } from '../../nn/mlp.js';
import { Module, type Param } from '../../nn/module.js';
import { LayerNorm } from '../../nn/norm.js';
import { attention } from '../../tensor/nn_ops.js';
import * as ops from '../../tensor/ops.js';
import { type Tensor, noGrad } from '../../tensor/tensor.js';
import type { ImageEncoder } from '../../pipelines/components.js';
import { clipTokens, validateClipConfig, type ClipConfig } from './config.js';
import { clipPreprocess } from './preprocess.js';

const geluErf = (x: Tensor) => ops.gelu(x, 'none');

/** `SelfAttention`: one fused q/k/v projection with bias, and the output projection. */
export class ClipSelfAttention extends Module {
  readonly to_qkv: Linear;
  readonly proj: Linear;
  constructor(
    readonly dim: number,
    readonly numHeads: number,
  ) {
    super();
    this.to_qkv = this.module('to_qkv', new Linear(dim, 3 * dim));
    this.proj = this.module('proj', new Linear(dim, dim));
  }
  forward(x: Tensor): Tensor {
    const [B, L] = x.shape as [number, number, number];
    const n = this.numHeads;
    const d = this.dim / n;
    // (B, L, 3 dim) viewed (B, L, 3, heads, d): q, k, v are the column blocks [0, dim), [dim, 2 dim), [2 dim, 3 dim)
    const qkv = ops.permute(ops.reshape(this.to_qkv.forward(x), [B, L, 3, n, d]), [2, 0, 3, 1, 4]);
    const [q, k, v] = [0, 1, 2].map((i) => ops.squeeze(ops.slice(qkv, 0, i, i + 1), 0)) as [Tensor, Tensor, Tensor];
    const o = attention(q, k, v, 1 / Math.sqrt(d));
    return this.proj.forward(ops.reshape(ops.permute(o, [0, 2, 1, 3]), [B, L, this.dim]));
  }
}

/** `AttentionBlock` (pre-LN: post_norm false). */
export class ClipBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: ClipSelfAttention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  constructor(dim: number, mlpRatio: number, numHeads: number, eps: number) {
    super();
    this.norm1 = this.module('norm1', new LayerNorm(dim, eps));
    this.attn = this.module('attn', new ClipSelfAttention(dim, numHeads));
    this.norm2 = this.module('norm2', new LayerNorm(dim, eps));
    this.mlp = this.module('mlp', new Mlp(dim, dim * mlpRatio, dim, geluErf, { names: ['0', '2'] }));
  }
  forward(x: Tensor): Tensor {
    const h = ops.add(x, this.attn.forward(this.norm1.forward(x)));
    return ops.add(h, this.mlp.forward(this.norm2.forward(h)));
  }
}

/** `VisionTransformer` with pool_type 'token' and pre_norm: the `visual` of XLMRobertaCLIP. */
export class ClipVisionTransformer extends Module {
  readonly cls_embedding: Param;
  readonly pos_embedding: Param;
  readonly head: Param;
  readonly patch_embedding: Conv2d;
  readonly pre_norm: LayerNorm;
  readonly transformer: Container<ClipBlock>;
  readonly post_norm: LayerNorm;
  constructor(readonly config: ClipConfig) {
    super();
    const c = config;
    const D = c.vision_dim;
    // registration order = the reference's state-dict order: own parameters first, then the children
    this.cls_embedding = this.param('cls_embedding', [1, 1, D]);
    this.pos_embedding = this.param('pos_embedding', [1, clipTokens(c), D]);
    this.head = this.param('head', [D, c.embed_dim]);
    this.patch_embedding = this.module('patch_embedding', new Conv2d(3, D, c.patch_size, { bias: false, stride: c.patch_size, padding: [0, 0] }));
    this.pre_norm = this.module('pre_norm', new LayerNorm(D, c.norm_eps));
    this.transformer = this.module('transformer', new Container<ClipBlock>());
    for (let i = 0; i < c.vision_layers; i++) this.transformer.append(new ClipBlock(D, c.vision_mlp_ratio, c.vision_heads, c.norm_eps));
    this.post_norm = this.module('post_norm', new LayerNorm(D, c.norm_eps));
  }

  /** The tokens after `blocks` transformer blocks (vision_layers - 1 for image-to-video). */
  forward(pixelValues: Tensor, blocks = this.config.vision_layers - 1): Tensor {
    const c = this.config;
    const S = c.image_size;
    if (pixelValues.ndim !== 4 || pixelValues.shape[1] !== 3 || pixelValues.shape[2] !== S || pixelValues.shape[3] !== S || pixelValues.shape[0]! < 1)
      throw new ShapeError(`CLIP visual: pixel_values must be (B, 3, ${S}, ${S}) (preprocessed images), got ${fmtShape(pixelValues.shape)}`);
    if (!Number.isInteger(blocks) || blocks < 0 || blocks > c.vision_layers) throw new ValueError(`CLIP visual: blocks must be an integer in [0, ${c.vision_layers}], got ${blocks}`);
    const B = pixelValues.shape[0]!;
    const D = c.vision_dim;
    const g = S / c.patch_size;
    // The patch conv (kernel = stride, no padding, no bias) as one GEMM over the patches laid out (B, g*g, 3*P*P) in
    // the weight's (channel, row, column) order: the same sums as Conv2d, 2-3x faster than a 14x14 strided conv here.
    const P = c.patch_size;
    const cols = ops.reshape(ops.permute(ops.reshape(pixelValues, [B, 3, g, P, g, P]), [0, 2, 4, 1, 3, 5]), [B, g * g, 3 * P * P]);
    const patches = ops.linear(cols, ops.reshape(this.patch_embedding.weight.value, [D, 3 * P * P]));
    const cls = ops.expand(this.cls_embedding.value, [B, 1, D]);
    let x = this.pre_norm.forward(ops.add(ops.cat([cls, patches], 1), this.pos_embedding.value));
    for (let i = 0; i < blocks; i++) x = this.transformer.at(i).forward(x);
    return x;
  }
}

/** Which of the checkpoint's visual weights a ClipVisual reads and can run. */
export type ClipBlocksMode = 'penultimate' | 'all';

/**
 * The image encoder of image-to-video: the whole `visual.*` key layout (shape-only until loaded; loadClipVisual reads
 * only what `blocks` needs), Wan's preprocessing, and the features.
 */
export class ClipVisual extends Module implements ImageEncoder {
  readonly visual: ClipVisionTransformer;
  readonly config: ClipConfig;
  /** set by the loader (see run.ts); 'unloaded' until weights are attached */
  fingerprint = 'unloaded';
  constructor(config: ClipConfig) {
    super();
    this.config = validateClipConfig(config);
    this.visual = this.module('visual', new ClipVisionTransformer(this.config));
  }

  get dim(): number {
    return this.config.vision_dim;
  }

  /** Tokens per image: 1 + (image_size / patch_size)^2 (257 for ViT-H/14 at 224). */
  get tokens(): number {
    return clipTokens(this.config);
  }

  /** images (3, H, W) in [-1, 1] -> pixel_values (B, 3, S, S): torch bicubic to S x S, then CLIP's normalisation. */
  preprocess(images: readonly Tensor[]): Tensor {
    return clipPreprocess(images, this.config);
  }

  /** The penultimate block's tokens (B, tokens, dim): Wan's `visual(..., use_31_block=True)`, the I2V `clip_fea`. */
  features(pixelValues: Tensor): Tensor {
    return this.run(pixelValues, this.config.vision_layers - 1);
  }

  /** The tokens after every block (Wan's `visual(...)` without use_31_block); needs weights loaded with blocks 'all'. */
  featuresAllBlocks(pixelValues: Tensor): Tensor {
    const last = this.config.vision_layers - 1;
    if (!this.visual.transformer.at(last).norm1.weight!.loaded)
      throw new ValueError(`CLIP visual: the last block (visual.transformer.${last}) was not loaded; load the weights with { blocks: 'all' } to run all blocks`);
    return this.run(pixelValues, last + 1);
  }

  /** The last block applied to features() output: equals featuresAllBlocks(pixelValues) without running the rest again. */
  lastBlock(features: Tensor): Tensor {
    const last = this.config.vision_layers - 1;
    if (!this.visual.transformer.at(last).norm1.weight!.loaded)
      throw new ValueError(`CLIP visual: the last block (visual.transformer.${last}) was not loaded; load the weights with { blocks: 'all' } to run all blocks`);
    return noGrad(() => this.visual.transformer.at(last).forward(features));
  }

  /** images -> features in one call. */
  encodeImages(images: readonly Tensor[]): Tensor {
    return this.features(this.preprocess(images));
  }

  private run(pixelValues: Tensor, blocks: number): Tensor {
    if (!this.visual.patch_embedding.weight.loaded) throw new ValueError('CLIP visual: no weights loaded (use loadClipVisual, or loadClipVisualWeights on this model)');
    return noGrad(() => this.visual.forward(pixelValues, blocks));
  }
}
