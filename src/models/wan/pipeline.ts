/**
 * Text-to-video sampling with a Wan DiT in latent space: UniPC (or Euler) on the shifted flow grid with
 * classifier-free guidance, under noGrad. Text contexts are the (L, text_dim) embeddings the model takes; the
 * unconditional context is the null / negative-prompt embedding.
 */
import { sample, type SolverKind } from '../../diffusion/unipc.js';
import { ShapeError } from '../../errors.js';
import { randn } from '../../tensor/random.js';
import { Tensor, noGrad } from '../../tensor/tensor.js';
import type { WanConditioning, WanModel } from './model.js';

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
  const ts = (t: number) => new Array<number>(B).fill(t);
  return noGrad(() =>
    sample<Tensor>({
      noise,
      steps,
      shift: o.shift ?? 5,
      solver: o.solver,
      model: (x, t) => model.forward(x, ts(t), o.context, o.cond),
      guidance: w === 1 ? undefined : { scale: w, uncond: (x, t) => model.forward(x, ts(t), o.nullContext!, o.cond) },
      onStep: o.onStep ? ({ step }) => o.onStep!(step + 1, steps) : undefined,
    }),
  );
}
