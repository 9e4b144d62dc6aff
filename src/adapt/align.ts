/**
 * AE-Adapt-V phase 1, video embedding space alignment (`dcvg adapt align`, spec §5.2).
 *
 * Teacher: the base DiT's frozen patch embedder, Conv3d(C_wan → D, kernel = stride = 1x2x2), on a clip's Wan latent.
 * Student: a new Conv3d(C_dc → D, kernel = stride = 1x1x1) on the same clip's DC-AE-V latent, xavier-uniform on the
 * weight flattened to [D, C·∏p], bias uniform(±1/√(C·∏p)). Loss ("downsample", the one optimised): plain MSE between
 * the teacher embedding average-pooled to the student's grid (ratio inferred from the shapes; a longer student axis
 * would be pooled instead) and the student embedding. Logged, not optimised: "avgpool" (both sides averaged over H, W)
 * and "upsample" (student nearest-upsampled to the teacher grid). Only the student trains; no transformer block runs:
 * only the teacher's two patch-embedding tensors are read from the base checkpoint.
 *
 * Output: `patch_embedding.safetensors` in the run folder, `patch_embedding.weight` (D, C_dc, 1, 1, 1) and
 * `patch_embedding.bias` (D), float32, metadata {format: "dcvg-adapt-patch-embedding-1", in_dim, dim, patch_size,
 * step, teacher} — what `dcvg adapt assemble` takes (docs/adapt.md "Formats").
 */
import { join } from 'node:path';
import { saveSafetensors } from '../io/safetensors.js';
import { openWeights, inWeightsFile } from '../io/weights.js';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { uniformInit, xavierUniformBound } from '../nn/init.js';
import * as ops from '../tensor/ops.js';
import { avgPool3d, conv3d, mseLoss, upsampleNearest3d } from '../tensor/nn_ops.js';
import { Rng } from '../tensor/random.js';
import { Tensor, noGrad, parameter } from '../tensor/tensor.js';
import type { Ema } from '../train/ema.js';
import { text, type Check } from '../train/options.js';
import { isI2vAdaptSet, loadAdaptSet } from './latents.js';
import { runPhase, type CommonOptions, type PhaseCallbacks, type PhaseSpec } from './trainer.js';

export interface AlignOptions extends CommonOptions {
  /** the base DiT checkpoint (Wan or diffusers keys); only patch_embedding.{weight,bias} are read */
  teacher: string;
}

/** Spec §5.2: AdamW lr 2e-4, betas (0.9, 0.9), wd 0, constant, 20k steps, batch 4, no EMA, checkpoint every 1k. */
export const ALIGN_DEFAULTS: Omit<AlignOptions, 'data' | 'out'> = {
  teacher: '',
  steps: 20000,
  batch: 4,
  accum: 1,
  lr: 2e-4,
  warmup: 0,
  schedule: 'constant',
  minLrRatio: 0.1,
  weightDecay: 0,
  beta1: 0.9,
  beta2: 0.9,
  clip: 0,
  emaDecay: 0,
  seed: 0,
  ckptEvery: 1000,
  evalEvery: 1000,
  holdout: null,
};

export const ALIGN_FORMAT = 'dcvg-adapt-align-1';
export const PATCH_EMBEDDING_FORMAT = 'dcvg-adapt-patch-embedding-1';
export const PATCH_EMBEDDING_FILE = 'patch_embedding.safetensors';

/** The teacher's patch embedder read from a base DiT checkpoint (Wan, diffusers or [562] `0.`-prefixed keys). */
export function readTeacherPatchEmbedding(path: string): { weight: Tensor; bias: Tensor } {
  const w = openWeights(path, { dtype: 'f32' });
  try {
    const keys = [...w.tensors.keys()];
    const find = (suffix: string) => keys.find((k) => k === suffix || k === `0.${suffix}` || k === `model.${suffix}`);
    const kw = find('patch_embedding.weight');
    const kb = find('patch_embedding.bias');
    if (!kw || !kb) throw new ValueError(`${w.source}: no patch_embedding.weight / patch_embedding.bias (not a Wan DiT checkpoint?)`);
    const weight = ops.contiguous(w.tensors.get(kw));
    const bias = ops.contiguous(w.tensors.get(kb));
    if (weight.ndim !== 5 || bias.ndim !== 1 || bias.shape[0] !== weight.shape[0])
      throw new ShapeError(`${w.source}: patch_embedding.weight ${fmtShape(weight.shape)} / bias ${fmtShape(bias.shape)} are not a Conv3d's (D, C, pt, ph, pw) / (D)`);
    return { weight, bias };
  } catch (e) {
    throw inWeightsFile(e, w.source);
  } finally {
    w.close();
  }
}

/** The reference's student init: xavier-uniform on the weight viewed as [D, C·∏p], then bias uniform(±1/√(C·∏p)). */
export function initStudent(dim: number, inDim: number, rng: Rng, patch: readonly [number, number, number] = [1, 1, 1]): { weight: Tensor; bias: Tensor } {
  const fanIn = inDim * patch[0] * patch[1] * patch[2];
  const bw = xavierUniformBound([dim, fanIn]);
  const weight = uniformInit([dim, inDim, ...patch], -bw, bw, rng);
  const bb = 1 / Math.sqrt(fanIn);
  const bias = uniformInit([dim], -bb, bb, rng);
  return { weight, bias };
}

/** Per-axis integer ratio between two grids; which side is longer on each axis. */
function ratios(a: readonly number[], b: readonly number[], what: string): { pa: [number, number, number]; pb: [number, number, number] } {
  const pa: [number, number, number] = [1, 1, 1];
  const pb: [number, number, number] = [1, 1, 1];
  for (let i = 0; i < 3; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x >= y) {
      if (x % y) throw new ShapeError(`${what}: teacher grid ${fmtShape(a)} and student grid ${fmtShape(b)} are not integer multiples`);
      pa[i] = x / y;
    } else {
      if (y % x) throw new ShapeError(`${what}: teacher grid ${fmtShape(a)} and student grid ${fmtShape(b)} are not integer multiples`);
      pb[i] = y / x;
    }
  }
  return { pa, pb };
}

const pool = (x: Tensor, k: [number, number, number]) => (k.every((v) => v === 1) ? x : avgPool3d(x, k));

/**
 * The three alignment losses for teacher embedding te (B, D, F, H, W) and student embedding se (B, D, f, h, w):
 * downsample = MSE(avgpool(te → student grid), se) (the objective), avgpool = MSE(mean_HW te, mean_HW se) (frames
 * aligned by pooling the longer side), upsample = MSE(te, nearest-upsample(se → teacher grid)).
 */
export function alignmentLosses(te: Tensor, se: Tensor): { downsample: Tensor; avgpool: Tensor; upsample: Tensor } {
  if (te.ndim !== 5 || se.ndim !== 5 || te.shape[0] !== se.shape[0] || te.shape[1] !== se.shape[1])
    throw new ShapeError(`alignment: teacher ${fmtShape(te.shape)} and student ${fmtShape(se.shape)} embeddings must be (B, D, F, H, W) with equal B and D`);
  const { pa, pb } = ratios(te.shape.slice(2), se.shape.slice(2), 'alignment');
  const downsample = mseLoss(pool(te, pa), pool(se, pb));
  const ft: [number, number, number] = [pa[0], 1, 1];
  const fs: [number, number, number] = [pb[0], 1, 1];
  const avgpool = mseLoss(ops.mean(pool(te, ft), [3, 4]), ops.mean(pool(se, fs), [3, 4]));
  // upsample: the student to the teacher's spatial grid (frames aligned by pooling, as above)
  const up: [number, number, number] = [1, pa[1], pa[2]];
  const upsample = mseLoss(pool(pool(te, ft), [1, pb[1], pb[2]]), upsampleNearest3d(pool(se, fs), up));
  return { downsample, avgpool, upsample };
}

/** Teacher embedding (no grad) of Wan latents (B, C, F, H, W). */
export function teacherEmbed(wan: Tensor, t: { weight: Tensor; bias: Tensor }): Tensor {
  const p = t.weight.shape.slice(2) as [number, number, number];
  return noGrad(() => conv3d(wan, t.weight, t.bias, { stride: p }));
}

/** Student embedding of DC latents (B, C, f, h, w): a 1x1x1 conv (kernel = stride = its patch). */
export function studentEmbed(dc: Tensor, weight: Tensor, bias: Tensor): Tensor {
  const p = weight.shape.slice(2) as [number, number, number];
  return conv3d(dc, weight, bias, { stride: p });
}

const ALIGN_CHECKS: readonly (readonly [keyof AlignOptions, string, Check])[] = [['teacher', '--teacher', text]];

export const ALIGN_SPEC: PhaseSpec<AlignOptions> = {
  command: 'adapt align',
  format: ALIGN_FORMAT,
  defaults: ALIGN_DEFAULTS,
  checks: ALIGN_CHECKS,
  pathKeys: ['teacher'],
  build(o) {
    // I2V (spec §5.2): the teacher sees [Wan latent, mask, Wan condition latent] (16 + 4 + 16 = 36 channels), the
    // student [DC latent, mask, DC condition latent] (32 + 4 + 32 = 68), both concatenated on channels as the DiT does
    const i2v = isI2vAdaptSet(o.data);
    const data = loadAdaptSet(o.data, { wan: true, i2v });
    if (i2v && !data.wanImgFeat) throw new ValueError(`adapt align: ${o.data} holds I2V data without wan_img_feat (encode with --wan-vae and --i2v)`);
    const teacher = readTeacherPatchEmbedding(o.teacher);
    const [D, Ct] = teacher.weight.shape as [number, number];
    const Cw = data.wan![0]!.shape[0]! + (i2v ? data.wanImgFeat![0]!.shape[0]! : 0);
    if (Ct !== Cw)
      throw new ShapeError(
        `adapt align: the teacher patch embedder takes ${Ct} channels, the Wan ${i2v ? 'latents and their I2V condition have' : 'latents have'} ${Cw}${!i2v && Ct > Cw ? ' (an I2V teacher needs I2V data: dcvg latents --i2v)' : ''}`,
      );
    const Cs = data.dc[0]!.shape[0]! + (i2v ? data.imgFeat![0]!.shape[0]! : 0);
    const init = initStudent(D, Cs, new Rng(o.seed));
    const weight = parameter(init.weight);
    const bias = parameter(init.bias);
    const trainable: [string, Tensor][] = [
      ['patch_embedding.weight', weight],
      ['patch_embedding.bias', bias],
    ];
    const input = (x: Tensor, y: Tensor | undefined) => (y ? ops.cat([x, y], 0) : x);
    const batch = (ids: number[]) => ({
      wan: ops.stack(ids.map((i) => input(data.wan![i]!, data.wanImgFeat?.[i])), 0),
      dc: ops.stack(ids.map((i) => input(data.dc[i]!, data.imgFeat?.[i])), 0),
    });
    const tp = teacher.weight.shape.slice(2);
    return {
      samples: data.dc.length,
      model: {
        trainable,
        paramCount: weight.size + bias.size,
        files: [PATCH_EMBEDDING_FILE],
        meta: { teacher: { in_dim: Ct, dim: D, patch_size: tp }, student: { in_dim: Cs, dim: D, patch_size: [1, 1, 1] } },
        micro(ids) {
          const b = batch(ids);
          const l = alignmentLosses(teacherEmbed(b.wan, teacher), studentEmbed(b.dc, weight, bias));
          return { loss: l.downsample, record: { loss_avgpool: noGrad(() => l.avgpool.item()), loss_upsample: noGrad(() => l.upsample.item()) } };
        },
        evaluate(ids) {
          return noGrad(() => {
            let d = 0;
            let a = 0;
            let u = 0;
            for (const i of ids) {
              const b = batch([i]);
              const l = alignmentLosses(teacherEmbed(b.wan, teacher), studentEmbed(b.dc, weight, bias));
              d += l.downsample.item();
              a += l.avgpool.item();
              u += l.upsample.item();
            }
            return { downsample: d / ids.length, avgpool: a / ids.length, upsample: u / ids.length };
          });
        },
        exportWeights(runDir: string, step: number, _ema: Ema | null) {
          saveSafetensors(
            join(runDir, PATCH_EMBEDDING_FILE),
            { 'patch_embedding.weight': weight, 'patch_embedding.bias': bias },
            { metadata: { format: PATCH_EMBEDDING_FORMAT, in_dim: String(Cs), dim: String(D), patch_size: '[1,1,1]', step: String(step), teacher: o.teacher } },
          );
        },
      },
    };
  },
};

export function trainAlign(opts: Partial<AlignOptions> & { out: string; resume?: boolean }, cb: PhaseCallbacks = {}) {
  return runPhase(ALIGN_SPEC, opts, cb);
}
