/**
 * Autoencoder training: `dcvg train-ae`, for DC-AE-V and the Wan-2.1 VAE topology (ae_models.ts: what differs).
 *
 * One step: sample a batch of windows (whole chunks, random crop and flip, optionally a still frame as a static
 * clip) -> encode -> decode -> L1 + w * (1 - SSIM) [+ adversarial hinge term for the decoder in the optional second
 * stage; + the KL term for the Wan VAE, whose latent is sampled from (mu, log_var)] -> backward -> clip the global gradient norm -> AdamW at the scheduled learning rate (linear warmup, cosine)
 * -> EMA update [-> one discriminator step]. Held-out clips are reconstructed with the EMA weights every
 * `evalEvery` steps (PSNR/SSIM on uint8 frames, the project's metrics protocol).
 *
 * The run folder holds: config.json (the model, reference vocabulary), train.jsonl (one line per step and per
 * evaluation), checkpoint.safetensors (everything needed to continue: weights, EMA, AdamW moments, discriminator,
 * the data sampler's RNG state and the options, written atomically every `ckptEvery` steps), model.safetensors (the
 * EMA weights alone, loadable with --weights), loss.png and eval.png.
 *
 * Resume is exact: a run killed after checkpoint N and resumed continues with the same weights, moments, EMA and
 * data stream as if it had never stopped (tested bit for bit on a tiny model).
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sweepStaleTemps, writeFileAtomic } from '../io/files.js';
import { SafetensorsFile, saveSafetensors, type WritableTensor } from '../io/safetensors.js';
import { tensorToUint8Frames, videoMetrics } from '../metrics/metrics.js';
import { equalBudgetBaseline, latentBudget } from '../metrics/baseline.js';
import { writeLinePlotPng } from '../metrics/plot.js';
import { compressionFactors, chunkFrames } from '../models/dcaev/config.js';
import { DCAEV } from '../models/dcaev/autoencoder.js';
import type { Module } from '../nn/module.js';
import { TrainingError, ValueError } from '../errors.js';
import * as ops from '../tensor/ops.js';
import { Rng } from '../tensor/random.js';
import { Tensor, noGrad } from '../tensor/tensor.js';
import { CKPT, loadState, readCheckpointJson, rngStateProblem, stateTensors, writeCheckpoint } from './checkpoint.js';
import { LOG, appendLine, readLogRecords, resetLog, writeLossPlot } from './log.js';
import { NewRunGuard, checkNewRunFolder, runLoop, scheduledLr } from './loop.js';
import { anyInt, badOptionOf, expected, nonNeg, nonNegInt, nullable, oneOf, optional, posInt, positive, regex, shown, text, unit, unitOpen, type Check } from './options.js';
import { checkSampling, clipTensor, loadClipSet, sampleBatch, type Clip, type ClipSet, type SampleOptions } from './data.js';
import { Ema } from './ema.js';
import type { VideoAutoencoder } from '../pipelines/autoencoder.js';
import { initForTraining } from './init.js';
import { PatchDiscriminator, hingeDLoss, hingeGLoss, reconstructionLoss, ssimLoss } from './losses.js';
import { AdamW, clipGradNorm } from './optim.js';
import { aeConfigFromJson, aeConfigJson, resolveAEConfig, trainableAE, type AEConfig, type AEModelSpec, type TrainableAE } from './ae_models.js';

/** Everything that defines a run (saved in the checkpoint; a resumed run takes it from there). */
export interface TrainAEOptions {
  /**
   * DC-AE-V: preset name, JSON config path, or config object; Wan VAE: `wan-vae:<preset | config.json>`, a Wan VAE preset
   * (`wan-vae-shapes`), a Wan config file, or `{ family: 'wan-vae', config }` (ae_models.ts)
   */
  model: AEModelSpec;
  /** folder of training clips (and optional still images) */
  data: string;
  /** run folder */
  out: string;
  steps: number;
  batch: number;
  /** frames per training window; default two chunks (chunk-causal) or 16; Wan VAE: 1 + 4k, default 13 */
  frames?: number;
  /** square crop side; default the largest multiple of the spatial factor that fits (at most 128) */
  crop?: number;
  lr: number;
  warmup: number;
  /** cosine floor as a fraction of lr */
  minLrRatio: number;
  weightDecay: number;
  /** max global gradient norm */
  clip: number;
  emaDecay: number;
  /** weight of (1 - SSIM) next to the reconstruction term */
  ssimWeight: number;
  /**
   * Wan VAE only: weight of the KL term (KL to N(0, I) summed over latent values / pixel values); > 0 samples the
   * latent (mu + std * eps), 0 trains mu as a plain autoencoder latent. Default 1e-6 for the Wan VAE (absent: DC-AE-V)
   */
  klWeight?: number;
  /** reconstruction term: mean absolute error (default) or mean squared error (what PSNR measures) */
  loss?: 'l1' | 'mse';
  /**
   * foreground weighting of the reconstruction term (default 0: none): each value weighs 1 + W * (its pixel's
   * distance from the sample's median colour) / 2, normalised to mean 1 (losses.ts foregroundWeights)
   */
  fgWeight?: number;
  /**
   * whose foreground --fg-weight weighs: the original's (default) or the original's and the reconstruction's (values
   * the reconstruction puts off the background weigh like the object: halos, stray pixels)
   */
  fgOf?: 'orig' | 'both';
  /** probability of a still frame as a static clip */
  stillProb: number;
  /** probability of a colour change of a sample (channel order, saturation; see SampleOptions.colorAug) */
  colorAug?: number;
  /** held-out clips (default: 3 when the folder has >= 8 videos) */
  holdout?: number;
  seed: number;
  /** start the adversarial stage after this step (decoder only, encoder frozen); null = never */
  advStart: number | null;
  advWeight: number;
  discLr: number;
  ckptEvery: number;
  evalEvery: number;
  /** evaluate on the first N frames of each held-out clip; 0 = whole clips */
  evalFrames: number;
  /** optional weights to start from (fine-tuning) instead of the random initialisation */
  init?: string | null;
  /** 'shortcut' (default): residual branches start at zero (see initForTraining); 'default': plain init */
  residualInit?: 'shortcut' | 'default';
  /** the random weights' scale (see initForTraining): 'lecun' (default, variance 1 / fan_in) or 'torch' (1 / (3 fan_in)) */
  initScale?: 'lecun' | 'torch';
  /** train only the parameters whose names match this regular expression (the others stay as initialised) */
  trainOnly?: string | null;
}

export const TRAIN_DEFAULTS: Omit<TrainAEOptions, 'model' | 'data' | 'out'> = {
  steps: 2000,
  batch: 1,
  lr: 3e-4,
  warmup: 100,
  minLrRatio: 0.1,
  weightDecay: 0.01,
  clip: 1.0,
  emaDecay: 0.999,
  ssimWeight: 0.2,
  stillProb: 0,
  seed: 0,
  advStart: null,
  advWeight: 0.05,
  discLr: 1e-4,
  ckptEvery: 250,
  evalEvery: 500,
  evalFrames: 0,
  init: null,
};

export interface StepRecord {
  step: number;
  loss: number;
  /** the reconstruction term: l1 with --loss l1 (the default), mse with --loss mse */
  l1?: number;
  mse?: number;
  ssim: number;
  /** the KL term (Wan VAE with --kl-weight > 0) */
  kl?: number;
  adv?: number;
  disc?: number;
  lr: number;
  gradNorm: number;
  ms: number;
}

export interface EvalRecord {
  step: number;
  eval: { psnr: number; ssim: number; frames: number; clips: string[] };
}

export interface TrainCallbacks {
  /** after loading data / before the loop */
  onStart?: (info: { startStep: number; steps: number; train: number; heldOut: number; params: number; resumed: boolean }) => void;
  onStep?: (r: StepRecord) => void;
  onEval?: (r: EvalRecord) => void;
  onCheckpoint?: (step: number, path: string) => void;
  onMessage?: (msg: string) => void;
  /** polled after every step: true stops the run after writing a checkpoint */
  shouldStop?: () => boolean;
}

export interface TrainResult {
  steps: number;
  stoppedEarly: boolean;
  lastEval: EvalRecord | null;
  runDir: string;
}

const FORMAT = 'dcvg-train-ae-1';

/**
 * Every option of a run: its key, its command-line flag (named in errors of a new run) and its check. The same table
 * checks the options a checkpoint carries on --resume (named there by their key).
 */
const OPTION_CHECKS: readonly [keyof TrainAEOptions, string, Check][] = [
  ['steps', '--steps', posInt],
  ['batch', '--batch', posInt],
  ['frames', '--frames', optional(posInt)],
  ['crop', '--crop', optional(posInt)],
  ['lr', '--lr', positive],
  ['warmup', '--warmup', nonNegInt],
  ['minLrRatio', '--min-lr-ratio', unit],
  ['weightDecay', '--weight-decay', nonNeg],
  ['clip', '--clip', positive],
  ['emaDecay', '--ema', unitOpen],
  ['ssimWeight', '--ssim-weight', nonNeg],
  ['klWeight', '--kl-weight', optional(nonNeg)],
  ['loss', '--loss', optional(oneOf('l1', 'mse'))],
  ['fgWeight', '--fg-weight', optional(nonNeg)],
  ['fgOf', '--fg-of', optional(oneOf('orig', 'both'))],
  ['stillProb', '--still-prob', unit],
  ['colorAug', '--color-aug', optional(unit)],
  ['holdout', '--holdout', optional(nonNegInt)],
  ['seed', '--seed', anyInt],
  ['advStart', '--adv-start', nullable(nonNegInt)],
  ['advWeight', '--adv-weight', nonNeg],
  ['discLr', '--disc-lr', positive],
  ['ckptEvery', '--ckpt-every', posInt],
  ['evalEvery', '--eval-every', posInt],
  ['evalFrames', '--eval-frames', nonNegInt],
  ['init', '--init', nullable(text)],
  ['residualInit', '--residual-init', optional(oneOf('shortcut', 'default'))],
  ['initScale', '--init-scale', optional(oneOf('lecun', 'torch'))],
  ['trainOnly', '--train-only', nullable(regex)],
];

/** The first option that fails its check, as "<name> must be ..., got ..." (name: the flag, or `options.<key>`). */
function badOption(o: Record<string, unknown>, byFlag: boolean): string | null {
  return badOptionOf(OPTION_CHECKS, o, byFlag);
}

/** The KL weight a run uses: the option, else 1e-6 for a variational model (the Wan VAE), else none. */
const DEFAULT_KL_WEIGHT = 1e-6;
const klWeightOf = (o: TrainAEOptions, net: TrainableAE) => o.klWeight ?? (net.variational ? DEFAULT_KL_WEIGHT : 0);

/** Checks the options against each other and the model; returns the window length and the spatial factor. */
function validate(o: TrainAEOptions, net: TrainableAE): { frames: number; spatial: number } {
  const bad = badOption(o as unknown as Record<string, unknown>, true);
  if (bad) throw new ValueError(bad);
  const { spatial } = net;
  const frames = o.frames ?? net.defaultFrames();
  const why = net.framesProblem(frames);
  if (why) throw new ValueError(why);
  if (o.crop !== undefined && (o.crop < spatial || o.crop % spatial !== 0)) throw new ValueError(`--crop ${o.crop} must be a positive multiple of the spatial factor ${spatial}`);
  if ((o.klWeight ?? 0) > 0 && !net.variational) throw new ValueError(`--kl-weight ${o.klWeight}: a ${net.family} has no latent distribution (the KL term is for the Wan VAE)`);
  return { frames, spatial };
}

/** The parts of a run's state, under their checkpoint prefixes (model., ema., adam_m., adam_v., disc., disc_adam_*.). */
function stateParts(model: Module, opt: AdamW, ema: Ema, disc: PatchDiscriminator | null, dopt: AdamW | null) {
  const named = model.namedParams().map(([k, p]) => [k, p.value] as const);
  return {
    params: [{ prefix: 'model.', named }, ...(disc ? [{ prefix: 'disc.', named: disc.namedParams().map(([k, p]) => [k, p.value] as const) }] : [])],
    ema: [{ prefix: 'ema.', ema }],
    adamw: [{ m: 'adam_m.', v: 'adam_v.', opt }, ...(disc && dopt ? [{ m: 'disc_adam_m.', v: 'disc_adam_v.', opt: dopt }] : [])],
  };
}

interface CheckpointMeta {
  format: string;
  step: number;
  options: TrainAEOptions;
  /** the model config (aeConfigJson: DC-AE-V reference vocabulary, or the Wan VAE's with "family": "wan-vae") */
  config: Record<string, unknown> & { name: string };
  dataRng: number[];
  adamSteps: number;
  discAdamSteps: number;
  emaUpdates: number;
  trainClips: string[];
  heldOutClips: string[];
}

/** A field of a checkpoint's metadata that is missing, of the wrong type or out of range. */
function badMeta(path: string, field: string, why: string): TrainingError {
  return new TrainingError(`${path}: checkpoint metadata field "${field}" ${why}; the checkpoint is damaged or not from this version of dcvg train-ae`);
}

const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Checks every field of a checkpoint's parsed dcvg_train metadata (types and ranges) and returns it typed. */
function checkMeta(path: string, m: unknown): CheckpointMeta {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new TrainingError(`${path}: dcvg_train metadata must be a JSON object, got ${shown(m)}`);
  const r = m as Record<string, unknown>;
  if (r.format !== FORMAT) throw new TrainingError(`${path}: unsupported checkpoint format ${shown(r.format)} (expected ${FORMAT})`);
  const opts = r.options;
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) throw badMeta(path, 'options', expected('an object', opts));
  const o = opts as Record<string, unknown>;
  for (const k of ['model', 'data'] as const) {
    const why = text(o[k]);
    if (why) throw badMeta(path, `options.${k}`, why);
  }
  const bad = badOption(o, false);
  if (bad) {
    const [field, ...rest] = bad.split(' ');
    throw badMeta(path, field!, rest.join(' '));
  }
  const steps = o.steps as number;
  if (!(Number.isSafeInteger(r.step) && (r.step as number) >= 0 && (r.step as number) <= steps)) throw badMeta(path, 'step', expected(`an integer in [0, ${steps}] (the run's steps)`, r.step));
  for (const k of ['adamSteps', 'discAdamSteps', 'emaUpdates'] as const) {
    const why = nonNegInt(r[k]);
    if (why) throw badMeta(path, k, why);
  }
  const rng = rngStateProblem(r.dataRng);
  if (rng) throw badMeta(path, 'dataRng', rng);
  for (const k of ['trainClips', 'heldOutClips'] as const) if (!isStringList(r[k])) throw badMeta(path, k, expected('an array of file names', r[k]));
  const cfg = r.config as { name?: unknown } | null;
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw badMeta(path, 'config', expected('an object (the model config)', cfg));
  if (typeof cfg.name !== 'string') throw badMeta(path, 'config.name', expected('a string', cfg.name));
  return m as CheckpointMeta;
}

/** The checkpoint's model config, or a TrainingError naming the checkpoint. */
function metaConfig(path: string, meta: CheckpointMeta): AEConfig {
  try {
    return aeConfigFromJson(meta.config);
  } catch (e) {
    throw badMeta(path, 'config', `is not a valid model config (${(e as Error).message})`);
  }
}

/** Reads and checks a run's checkpoint metadata (options, step, sampler state) without loading tensors. */
export function readCheckpointMeta(runDir: string): CheckpointMeta {
  const { path, meta } = readCheckpointJson(runDir, FORMAT, 'train-ae');
  return checkMeta(path, meta);
}

const modelConfigJson = (cfg: AEConfig) => aeConfigJson(cfg);

/**
 * A run's trained weights as they are at its latest checkpoint (the checkpoint's `model.*` tensors, not the EMA that
 * model.safetensors holds), written to `out` as a weights file like model.safetensors (config, step and format in
 * its metadata). Early in a run started from other weights (--init), the EMA is still mostly those weights.
 */
export function writeRawWeights(runDir: string, out: string): void {
  const meta = readCheckpointMeta(runDir);
  const path = join(runDir, CKPT);
  const cfg = metaConfig(path, meta);
  const f = SafetensorsFile.open(path);
  try {
    const t: Record<string, WritableTensor> = {};
    for (const k of f.keys()) if (k.startsWith('model.')) t[k.slice('model.'.length)] = f.tensor(k);
    if (!Object.keys(t).length) throw new TrainingError(`${path}: no model.* tensors`);
    saveSafetensors(out, t, { metadata: { config: JSON.stringify(modelConfigJson(cfg)), step: String(meta.step), format: trainableAE(cfg).weightsFormat } });
  } finally {
    f.close();
  }
}

/** Writes loss.png (and eval.png when there are evaluations) from a run's train.jsonl. */
export function writeTrainingPlots(runDir: string): void {
  const { steps, evals } = readLog(join(runDir, LOG));
  const mse = steps.some((r) => r.mse !== undefined);
  writeLossPlot(join(runDir, 'loss.png'), steps, [
    { name: 'total', value: (r: StepRecord) => r.loss },
    { name: mse ? 'MSE' : 'L1', value: (r: StepRecord) => (mse ? r.mse : r.l1) },
    { name: '1 - SSIM', value: (r: StepRecord) => r.ssim },
    ...(steps.some((r) => r.kl !== undefined) ? [{ name: 'KL', value: (r: StepRecord) => r.kl }] : []),
  ]);
  if (evals.length) {
    writeLinePlotPng(join(runDir, 'eval.png'), {
      title: `held-out PSNR (dB) at evaluation steps ${evals.map((e) => e.step).join(', ').slice(0, 60)}`,
      xLabel: 'evaluation #',
      yLabel: 'PSNR dB',
      series: [{ name: 'PSNR', values: evals.map((e) => e.eval.psnr) }],
    });
  }
}

export function readLog(path: string): { steps: StepRecord[]; evals: EvalRecord[]; lines: string[] } {
  return readLogRecords<StepRecord, EvalRecord>(path);
}

/** A whole clip through a DC-AE-V (streamed for chunk-causal models, padded spatially when needed), and its latent size. */
function reconstructClip(model: DCAEV, x: Tensor): { y: Tensor; latentSize: number } {
  return trainableOf(model).reconstruct(x);
}

/** The trainer's view of an existing DC-AE-V (same module, same weights). */
const trainableOf = (model: DCAEV): TrainableAE => trainableAE({ family: 'dc-ae-v', config: model.config }, model);

/** reconstructClip through the VideoAutoencoder interface (frame counts padded to what the model takes, cropped back). */
export function reconstructClipWith(ae: VideoAutoencoder, x: Tensor): { y: Tensor; latentSize: number } {
  const padSpatial = x.shape[3]! % ae.spatial !== 0 || x.shape[4]! % ae.spatial !== 0;
  return noGrad(() => {
    const e = ae.encodeClip(x, { padSpatial, padFrames: true });
    return { y: ae.decodeClip(e.latent, { numFrames: e.numFrames, height: e.height, width: e.width }), latentSize: e.latent.size };
  });
}

/**
 * Reconstructs held-out clips (whole clips, streamed for chunk-causal models; the Wan VAE pads to 1 + 4k frames and
 * crops back) and measures PSNR / SSIM.
 */
export function evaluateClips(model: DCAEV | TrainableAE, clips: readonly Clip[], frames = 0): { psnr: number; ssim: number; frames: number } {
  const net = model instanceof DCAEV ? trainableOf(model) : model;
  let psnrSum = 0;
  let ssimSum = 0;
  let n = 0;
  for (const c of clips) {
    const x = clipTensor(c, frames > 0 ? frames : c.frames);
    const m = videoMetrics(x, net.reconstruct(x).y);
    psnrSum += m.psnr.perFrame.reduce((a, b) => a + (Number.isFinite(b) ? b : 100), 0);
    ssimSum += m.ssim.perFrame.reduce((a, b) => a + b, 0);
    n += m.frames;
  }
  return { psnr: psnrSum / Math.max(1, n), ssim: ssimSum / Math.max(1, n), frames: n };
}

export interface ClipScore {
  name: string;
  frames: number;
  /** values in the latent (= the baseline's budget) */
  budget: number;
  model: { psnr: number; ssim: number };
  baseline: { psnr: number; ssim: number; tf: number; h: number; w: number };
}

/**
 * The model against the equal-budget bicubic baseline on whole clips: per clip, the baseline keeps at most as many
 * values as the latent (best temporal factor for that clip among `temporalFactors`). Means are over all frames.
 */
export function evaluateWithBaseline(ae: DCAEV | VideoAutoencoder, clips: readonly Clip[], temporalFactors: number[], onClip?: (name: string) => void) {
  // a DC-AE-V runs exactly as before (its latent size checked against latentBudget); any other autoencoder through the
  // VideoAutoencoder interface, with the frame count padded to what it takes (padFrames) and cropped back
  const model = ae instanceof DCAEV ? ae : ae.model instanceof DCAEV ? ae.model : null;
  const other = model ? null : (ae as VideoAutoencoder);
  const { spatial, temporal } = model ? compressionFactors(model.config) : { spatial: other!.spatial, temporal: other!.temporal };
  const L = model ? chunkFrames(model.config) : null;
  const out: ClipScore[] = [];
  const sum = { mp: 0, ms: 0, bp: 0, bs: 0, n: 0 };
  const perTf = new Map<number, { p: number; s: number; n: number }>();
  for (const c of clips) {
    onClip?.(c.name);
    const x = clipTensor(c);
    const { y, latentSize: budget } = model ? reconstructClip(model, x) : reconstructClipWith(other!, x);
    if (model && budget !== latentBudget(c.frames, c.height, c.width, spatial, temporal, model.config.latentChannels, L)) throw new TrainingError('latent size disagrees with latentBudget');
    const m = videoMetrics(x, y);
    const frames = tensorToUint8Frames(x)[0]!;
    const b = equalBudgetBaseline(frames, c.height, c.width, budget, { temporalFactors, keepFrames: false });
    const bm = b.best;
    for (const cand of b.all) {
      const a = perTf.get(cand.tf) ?? { p: 0, s: 0, n: 0 };
      a.p += cand.psnr * m.frames;
      a.s += cand.ssim * m.frames;
      a.n += m.frames;
      perTf.set(cand.tf, a);
    }
    // per-frame sums so the overall mean is over frames, as the metrics protocol
    sum.mp += m.psnr.mean * m.frames;
    sum.ms += m.ssim.mean * m.frames;
    sum.bp += bm.psnr * m.frames;
    sum.bs += bm.ssim * m.frames;
    sum.n += m.frames;
    out.push({ name: c.name, frames: m.frames, budget, model: { psnr: m.psnr.mean, ssim: m.ssim.mean }, baseline: { psnr: bm.psnr, ssim: bm.ssim, tf: bm.tf, h: bm.h, w: bm.w } });
  }
  // one temporal factor for every clip (only factors every clip could use)
  const fixed = [...perTf].filter(([, a]) => a.n === sum.n).map(([tf, a]) => ({ tf, psnr: a.p / a.n, ssim: a.s / a.n }));
  const bestFixed = fixed.reduce<(typeof fixed)[number] | null>((a, f) => (!a || f.psnr > a.psnr ? f : a), null);
  return {
    clips: out,
    frames: sum.n,
    model: { psnr: sum.mp / sum.n, ssim: sum.ms / sum.n },
    /** bicubic with the best temporal factor per clip (chosen with the original in hand) */
    baseline: { psnr: sum.bp / sum.n, ssim: sum.bs / sum.n },
    /** bicubic with one temporal factor for all clips: each factor's means over frames, and the best of them */
    fixed,
    bestFixed,
  };
}

/** The files a run writes in its folder; a new run refuses a folder that already holds any of them. */
const RUN_FILES = [CKPT, LOG, 'config.json', 'model.safetensors', 'loss.png', 'eval.png'];

/** The options a resumed run continues with: the checkpoint's, checked against its model, with a new --steps. */
function resumeOptions(meta: CheckpointMeta, net: TrainableAE, runDir: string, ckptPath: string, steps: number | undefined, cb: TrainCallbacks): TrainAEOptions {
  const o: TrainAEOptions = { ...meta.options, out: runDir };
  try {
    validate(o, net);
  } catch (e) {
    if (e instanceof ValueError) throw new TrainingError(`${ckptPath}: the checkpoint's options do not fit its model: ${e.message}`);
    throw e;
  }
  if (steps !== undefined && steps !== meta.options.steps) {
    const why = posInt(steps);
    if (why) throw new ValueError(`--steps ${why}`);
    cb.onMessage?.(`resume: total steps changed from ${meta.options.steps} to ${steps} (the cosine schedule stretches accordingly)`);
    o.steps = steps;
  }
  if (meta.step >= o.steps) throw new TrainingError(`${runDir} already finished ${meta.step} of ${o.steps} steps (pass a larger --steps to continue)`);
  return o;
}

/** Clip names as one short line for messages. */
const clipList = (names: readonly string[]) => `${names.length} clips: ${names.slice(0, 5).join(', ')}${names.length > 5 ? ', ...' : ''}`;

/** Trains (or resumes) a DC-AE-V or a Wan VAE. Everything is checked before the run folder is created or changed. */
export async function trainAE(opts: TrainAEOptions & { resume?: boolean }, cb: TrainCallbacks = {}): Promise<TrainResult> {
  const runDir = opts.out;
  if (typeof runDir !== 'string' || runDir === '') throw new ValueError('train-ae needs --out <run dir>');
  const ckptPath = join(runDir, CKPT);
  const logPath = join(runDir, LOG);
  let o: TrainAEOptions;
  let meta: CheckpointMeta | null = null;
  let cfg: AEConfig;
  let net: TrainableAE;
  if (opts.resume) {
    meta = readCheckpointMeta(runDir);
    cfg = metaConfig(ckptPath, meta);
    net = trainableAE(cfg);
    o = resumeOptions(meta, net, runDir, ckptPath, opts.steps, cb);
  } else {
    checkNewRunFolder(runDir, RUN_FILES);
    o = { ...TRAIN_DEFAULTS, ...opts };
    if (typeof o.data !== 'string' || o.data === '') throw new ValueError('train-ae needs --data <folder of clips>');
    o.data = resolve(o.data); // saved in the checkpoint: resume works from any working directory
    cfg = resolveAEConfig(o.model);
    net = trainableAE(cfg);
  }
  const { frames, spatial } = validate(o, net);
  const klWeight = klWeightOf(o, net);
  // The run's plots are images: written into the data folder they would become training stills.
  if (existsSync(runDir) && existsSync(o.data) && realpathSync(runDir) === realpathSync(o.data))
    throw new ValueError(`--out ${runDir} is the --data folder; choose a run folder of its own`);

  const data: ClipSet = await loadClipSet(o.data, { holdout: o.holdout, onClip: (d, t, n) => cb.onMessage?.(`loaded ${d}/${t} ${n}`) });
  if (meta) {
    const train = data.train.map((c) => c.name);
    const held = data.heldOut.map((c) => c.name);
    if (JSON.stringify(train) !== JSON.stringify(meta.trainClips))
      throw new TrainingError(`resume: the training clips in ${o.data} (${clipList(train)}) differ from the run's (${clipList(meta.trainClips)}, recorded in ${ckptPath})`);
    if (JSON.stringify(held) !== JSON.stringify(meta.heldOutClips))
      throw new TrainingError(`resume: the held-out clips in ${o.data} (${clipList(held)}) differ from the run's (${clipList(meta.heldOutClips)}, recorded in ${ckptPath})`);
  }
  const crop = o.crop ?? Math.min(128, Math.floor(Math.min(...data.train.map((c) => Math.min(c.height, c.width))) / spatial) * spatial);
  if (!(crop > 0)) throw new ValueError(`training data: clips are smaller than the spatial factor ${spatial}`);
  const so: SampleOptions = { batch: o.batch, frames, crop, stillProb: o.stillProb, colorAug: o.colorAug ?? 0 };
  checkSampling(data.train, so);

  const model = net.module;
  initForTraining(model, o.seed, { residual: o.residualInit ?? 'shortcut', scale: o.initScale ?? 'lecun' });
  if (o.init && !meta) net.loadInit(o.init);
  model.setTrainable(true);
  const named = model.namedParams();
  if (o.trainOnly) {
    const re = new RegExp(o.trainOnly);
    let n = 0;
    for (const [k, p] of named) {
      if (re.test(k)) n++;
      else {
        p.trainable = false;
        p.value.requiresGrad = false;
      }
    }
    if (n === 0) throw new ValueError(`--train-only ${o.trainOnly} matches none of the model's ${named.length} parameter tensors (e.g. ${named[0]?.[0]})`);
  }
  const namedValues = named.map(([k, p]) => [k, p.value] as const);
  const opt = new AdamW(namedValues, { lr: o.lr, weightDecay: o.weightDecay });
  const ema = new Ema(namedValues, o.emaDecay);
  const disc = o.advStart !== null ? new PatchDiscriminator({}) : null;
  disc?.init(o.seed + 1);
  disc?.setTrainable(true);
  const dnamed = disc ? disc.namedParams().map(([k, p]) => [k, p.value] as const) : [];
  const dparams = dnamed.map(([, t]) => t);
  const dopt = disc ? new AdamW(dnamed, { lr: o.discLr, betas: [0.5, 0.9], weightDecay: 0 }) : null;
  const dataRng = new Rng(o.seed * 7919 + 17);
  let startStep = 0;
  const parts = stateParts(model, opt, ema, disc, dopt);

  if (meta) {
    // Every tensor is checked (present, float, the model's shape) and read before anything changes.
    const f = SafetensorsFile.open(ckptPath);
    try {
      loadState(f, ckptPath, {
        params: parts.params,
        ema: [{ prefix: 'ema.', ema, updates: meta.emaUpdates }],
        adamw: [{ m: 'adam_m.', v: 'adam_v.', opt, step: meta.adamSteps }, ...(disc && dopt ? [{ m: 'disc_adam_m.', v: 'disc_adam_v.', opt: dopt, step: meta.discAdamSteps }] : [])],
      });
    } finally {
      f.close();
    }
    dataRng.setState(meta.dataRng);
    startStep = meta.step;
  }

  // Everything is checked: from here on the run folder is written.
  const guard = meta ? null : new NewRunGuard(runDir, RUN_FILES);
  try {
    // temporaries a kill -9 left behind (their process is gone) would otherwise stay for the rest of the run
    sweepStaleTemps(runDir);
    // The log keeps exactly the lines up to the checkpoint: later lines belong to the lost part of the killed run.
    resetLog(logPath, meta ? startStep : null);
    const configText = JSON.stringify(modelConfigJson(cfg), null, 2) + '\n';
    if (!existsSync(join(runDir, 'config.json')) || readFileSync(join(runDir, 'config.json'), 'utf8') !== configText) writeFileAtomic(join(runDir, 'config.json'), configText);

    const saveCheckpoint = (step: number) => {
      const m: CheckpointMeta = {
        format: FORMAT,
        step,
        options: { ...o, model: typeof o.model === 'string' ? o.model : cfg.config.name },
        config: modelConfigJson(cfg),
        dataRng: dataRng.state(),
        adamSteps: opt.stepCount,
        discAdamSteps: dopt?.stepCount ?? 0,
        emaUpdates: ema.updates,
        trainClips: data.train.map((c) => c.name),
        heldOutClips: data.heldOut.map((c) => c.name),
      };
      writeCheckpoint(ckptPath, stateTensors(parts), m);
      const emaWeights = new Map<string, WritableTensor>(ema.shadows());
      saveSafetensors(join(runDir, 'model.safetensors'), emaWeights, {
        metadata: { config: JSON.stringify(modelConfigJson(cfg)), step: String(step), format: net.weightsFormat },
      });
      try {
        writeTrainingPlots(runDir);
      } catch (e) {
        cb.onMessage?.(`could not write plots: ${(e as Error).message}`);
      }
      guard?.disarm(); // resumable from now on
      cb.onCheckpoint?.(step, ckptPath);
    };

    let lastEval: EvalRecord | null = null;
    const runEval = (step: number) => {
      if (!data.heldOut.length) return;
      const r = ema.withWeights(() => evaluateClips(net, data.heldOut, o.evalFrames));
      lastEval = { step, eval: { psnr: r.psnr, ssim: r.ssim, frames: r.frames, clips: data.heldOut.map((c) => c.name) } };
      appendLine(logPath, lastEval);
      cb.onEval?.(lastEval);
    };

    cb.onStart?.({ startStep, steps: o.steps, train: data.train.length, heldOut: data.heldOut.length, params: model.parameterCount(), resumed: !!meta });
    const schedule = { kind: 'cosine' as const, warmup: o.warmup, total: o.steps, minRatio: o.minLrRatio };
    type Out = { rec: Tensor; ss: Tensor; kl: Tensor | null; y: Tensor; x: Tensor; adv: boolean; gAdv: Tensor | null; dLoss?: number };
    const r = await runLoop<Out>({
      task: {
        forward: (step) => {
          const { x } = sampleBatch(data.train, so, dataRng);
          const adv = disc !== null && o.advStart !== null && step > o.advStart;
          if (adv) net.freezeEncoder();
          // the KL term belongs to the encoder: not in the adversarial (decoder-only) stage, whose latent is then mu
          const kw = adv ? 0 : klWeight;
          const { z, kl } = adv ? noGrad(() => net.encodeTrain(x, kw, dataRng)) : net.encodeTrain(x, kw, dataRng);
          const y = net.decodeTrain(z);
          const rec = reconstructionLoss(y, x, o.loss ?? 'l1', o.fgWeight ?? 0, o.fgOf ?? 'orig');
          const ss = ssimLoss(y, x);
          let loss = o.ssimWeight > 0 ? ops.add(rec, ops.mul(ss, o.ssimWeight)) : rec;
          if (kl) loss = ops.add(loss, ops.mul(kl, kw));
          let gAdv: Tensor | null = null;
          if (adv) {
            gAdv = hingeGLoss(disc!.forward(y));
            loss = ops.add(loss, ops.mul(gAdv, o.advWeight));
          }
          return { loss, rec, ss, kl, y, x, adv, gAdv };
        },
        afterUpdate: (_step, out) => {
          if (!out.adv) return;
          // one discriminator step on the detached reconstruction
          dopt!.zeroGrad();
          const dl = hingeDLoss(disc!.forward(out.x), disc!.forward(out.y.detach()));
          out.dLoss = dl.item();
          dl.backward();
          clipGradNorm(dparams, o.clip);
          dopt!.step();
          dopt!.zeroGrad();
        },
        record: (base, out) => {
          const record: StepRecord = { step: base.step, loss: base.loss, [o.loss === 'mse' ? 'mse' : 'l1']: out.rec.item(), ssim: out.ss.item(), lr: base.lr, gradNorm: base.gradNorm, ms: base.ms };
          if (out.kl) record.kl = out.kl.item();
          if (out.gAdv) record.adv = out.gAdv.item();
          if (out.dLoss !== undefined) record.disc = out.dLoss;
          return record as StepRecord & Record<string, unknown>;
        },
      },
      startStep,
      steps: o.steps,
      opt,
      lr: (step, peak) => scheduledLr(step, peak, schedule),
      clip: o.clip,
      ema,
      ckptEvery: o.ckptEvery,
      evalEvery: o.evalEvery,
      logPath,
      save: saveCheckpoint,
      evaluate: runEval,
      checkpointPath: ckptPath,
      onStep: (rec) => cb.onStep?.(rec as unknown as StepRecord),
      onMessage: cb.onMessage,
      shouldStop: cb.shouldStop,
      onStoppedBeforeFirst: () => guard?.undo(), // a new run stopped before its first step: nothing worth keeping
    });
    return { steps: r.steps, stoppedEarly: r.stoppedEarly, lastEval, runDir };
  } catch (e) {
    guard?.undo(); // a new run that failed before its first checkpoint leaves nothing behind
    throw e;
  } finally {
    guard?.disarm();
  }
}
