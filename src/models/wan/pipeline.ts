/**
 * Text-to-video sampling with a Wan DiT in latent space: UniPC (or Euler) on the shifted flow grid with
 * classifier-free guidance, under noGrad. Text contexts are the (L, text_dim) embeddings the model takes; the
 * unconditional context is the null / negative-prompt embedding.
 */
import { sample, type SolverKind } from '../../diffusion/unipc.js';
import { ShapeError } from '../../errors.js';
import { randn } from '../../tensor/random.js';
import * as ops from '../../tensor/ops.js';
import { Tensor, noGrad } from '../../tensor/tensor.js';
import type { WanConditioning, WanModel, WanPreparedContext } from './model.js';

export interface GenerateOptions {
  /** latent shape (B, C, F, H, W) */
  shape: readonly [number, number, number, number, number];
  /** one text embedding (L, text_dim) per sample */
  context: Tensor[];
  /** the unconditional embedding per sample (required when guidance != 1) */
  nullContext?: Tensor[];
  guidance?: number;
  steps?: number;
  shift?: number;
  seed?: number;
  solver?: SolverKind;
  /** i2v: the conditioning channels y and CLIP features, given to both the conditional and unconditional passes */
  cond?: WanConditioning;
  onStep?: (step: number, total: number) => void;
  /**
   * Classifier-free guidance's two passes as one forward of the doubled batch (cond rows, then uncond rows) instead
   * of two: true, false, or 'auto' (the default: batched when the doubled batch has at most CFG_BATCH_TOKENS tokens,
   * where a forward's fixed costs weigh most and the activations are small).
   */
  cfgBatch?: boolean | 'auto';
}

/** 'auto' CFG batching's limit: tokens of the doubled batch (2 B x tokens per sample). */
export const CFG_BATCH_TOKENS = 4096;

/** Tokens per sample of a latent shape (B, C, F, H, W) under the model's patch size. */
function tokensPerSample(model: WanModel, shape: readonly number[]): number {
  const [pt, ph, pw] = model.config.patch_size;
  return Math.ceil(shape[2]! / pt) * Math.ceil(shape[3]! / ph) * Math.ceil(shape[4]! / pw);
}

/** Generates latents (unscaled by the AE's scaling factor: divide by it before decoding). */
export function generateLatents(model: WanModel, o: GenerateOptions): Tensor {
  const [B] = o.shape;
  if (o.context.length !== B) throw new ShapeError(`generateLatents: ${o.context.length} contexts for batch ${B}`);
  const w = o.guidance ?? 5;
  if (w !== 1 && (!o.nullContext || o.nullContext.length !== B))
    throw new ShapeError(`generateLatents: guidance ${w} needs one null context per sample (got ${o.nullContext?.length ?? 0})`);
  const steps = o.steps ?? 50;
  const noise = randn(o.shape, o.seed ?? 42);
  const ts = (t: number, n = B) => new Array<number>(n).fill(t);
  const batch = w !== 1 && (o.cfgBatch === 'auto' || o.cfgBatch === undefined ? 2 * B * tokensPerSample(model, o.shape) <= CFG_BATCH_TOKENS : o.cfgBatch);
  const twice = (t: Tensor | null | undefined) => (t ? ops.cat([t, t], 0) : t);
  return noGrad(() => {
    // the contexts' embeddings and cross-attention keys / values, once for all steps (the same arithmetic as each
    // forward computing them); the image features go into them, y stays with each forward
    const y = o.cond?.y ? { y: o.cond.y } : {};
    let ctx: WanPreparedContext | null = null;
    let nullCtx: WanPreparedContext | null = null;
    const uncond = (x: Tensor, t: number) => model.forward(x, ts(t), (nullCtx ??= model.prepareContext(o.nullContext!, B, o.cond)), y);
    const ctx2 = batch ? model.prepareContext([...o.context, ...o.nullContext!], 2 * B, o.cond ? { clipFea: twice(o.cond.clipFea) } : {}) : null;
    const y2 = batch && o.cond?.y ? { y: twice(o.cond.y) } : {};
    const both = (x: Tensor, t: number): [Tensor, Tensor] => {
      const v = model.forward(ops.cat([x, x], 0), ts(t, 2 * B), ctx2!, y2);
      return [ops.slice(v, 0, 0, B), ops.slice(v, 0, B, 2 * B)];
    };
    return sample<Tensor>({
      noise,
      steps,
      shift: o.shift ?? 5,
      solver: o.solver,
      model: (x, t) => model.forward(x, ts(t), (ctx ??= model.prepareContext(o.context, B, o.cond)), y),
      guidance: w === 1 ? undefined : { scale: w, uncond, both: batch ? both : undefined },
      onStep: o.onStep ? ({ step }) => o.onStep!(step + 1, steps) : undefined,
    });
  });
}
