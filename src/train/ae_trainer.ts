/**
 * DC-AE-V training: `dcvg train-ae`.
 *
 * One step: sample a batch of windows (whole chunks, random crop and flip, optionally a still frame as a static
 * clip) -> encode -> decode -> L1 + w * (1 - SSIM) [+ adversarial hinge term for the decoder in the optional second
 * stage] -> backward -> clip the global gradient norm -> AdamW at the scheduled learning rate (linear warmup, cosine)
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
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { SafetensorsFile, saveSafetensors, type WritableTensor } from '../io/safetensors.js';
import { tensorToUint8Frames, videoMetrics } from '../metrics/metrics.js';
import { equalBudgetBaseline, latentBudget } from '../metrics/baseline.js';
import { writeLinePlotPng } from '../metrics/plot.js';
import { configFromReference, configToReference, compressionFactors, chunkFrames, type DCAEVConfig } from '../models/dcaev/config.js';
import { DCAEV, decodeVideo, encodeVideo, loadWeights, resolveConfig } from '../models/dcaev/autoencoder.js';
import { DcvgError, ValueError } from '../tensor/errors.js';
import { l1Loss, mseLoss } from '../tensor/nn_ops.js';
import * as ops from '../tensor/ops.js';
import { Rng } from '../tensor/random.js';
import { Tensor, noGrad } from '../tensor/tensor.js';
import { checkSampling, clipTensor, loadClipSet, sampleBatch, type Clip, type ClipSet, type SampleOptions } from './data.js';
import { Ema } from './ema.js';
import { initForTraining } from './init.js';
import { PatchDiscriminator, hingeDLoss, hingeGLoss, ssimLoss } from './losses.js';
import { AdamW, clipGradNorm } from './optim.js';
import { lrAt } from './schedule.js';

export class TrainingError extends DcvgError {
  constructor(message: string) {
    super('ERR_DCVG_TRAINING', message);
  }
}

/** Everything that defines a run (saved in the checkpoint; a resumed run takes it from there). */
export interface TrainAEOptions {
  /** preset name, JSON config path, or config object */
  model: string | DCAEVConfig;
  /** folder of training clips (and optional still images) */
  data: string;
  /** run folder */
  out: string;
  steps: number;
  batch: number;
  /** frames per training window; default two chunks (chunk-causal) or 16 */
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
  /** reconstruction term: mean absolute error (default) or mean squared error (what PSNR measures) */
  loss?: 'l1' | 'mse';
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

const CKPT = 'checkpoint.safetensors';
const LOG = 'train.jsonl';
const FORMAT = 'dcvg-train-ae-1';

function validate(o: TrainAEOptions, cfg: DCAEVConfig): { frames: number; spatial: number } {
  const { spatial, temporal } = compressionFactors(cfg);
  const L = chunkFrames(cfg);
  const frames = o.frames ?? (L ?? 8) * 2;
  const posInt = (v: number, name: string) => {
    if (!Number.isInteger(v) || v < 1) throw new ValueError(`${name} must be a positive integer, got ${v}`);
  };
  posInt(o.steps, '--steps');
  posInt(o.batch, '--batch');
  posInt(frames, '--frames');
  posInt(o.ckptEvery, '--ckpt-every');
  posInt(o.evalEvery, '--eval-every');
  if (L !== null && frames % L !== 0) throw new ValueError(`--frames ${frames} must be a whole number of ${L}-frame chunks for this chunk-causal model`);
  if (frames % temporal !== 0) throw new ValueError(`--frames ${frames} must be a multiple of the temporal factor ${temporal}`);
  if (o.crop !== undefined && (!Number.isInteger(o.crop) || o.crop < spatial || o.crop % spatial !== 0))
    throw new ValueError(`--crop ${o.crop} must be a positive multiple of the spatial factor ${spatial}`);
  for (const [v, name] of [
    [o.lr, '--lr'],
    [o.discLr, '--disc-lr'],
    [o.clip, '--clip'],
  ] as const)
    if (!(v > 0) || !Number.isFinite(v)) throw new ValueError(`${name} must be > 0, got ${v}`);
  if (!(o.emaDecay >= 0 && o.emaDecay < 1)) throw new ValueError(`--ema ${o.emaDecay} must be in [0, 1)`);
  if (!(o.stillProb >= 0 && o.stillProb <= 1)) throw new ValueError(`--still-prob ${o.stillProb} must be in [0, 1]`);
  if (!((o.colorAug ?? 0) >= 0 && (o.colorAug ?? 0) <= 1)) throw new ValueError(`--color-aug ${o.colorAug} must be in [0, 1]`);
  if (o.trainOnly) {
    try {
      new RegExp(o.trainOnly);
    } catch (e) {
      throw new ValueError(`--train-only: not a regular expression: ${(e as Error).message}`);
    }
  }
  if (o.loss !== undefined && o.loss !== 'l1' && o.loss !== 'mse') throw new ValueError(`--loss must be l1 or mse, got "${String(o.loss)}"`);
  if (!(o.ssimWeight >= 0)) throw new ValueError(`--ssim-weight must be >= 0, got ${o.ssimWeight}`);
  if (!(o.warmup >= 0) || !Number.isInteger(o.warmup)) throw new ValueError(`--warmup must be an integer >= 0, got ${o.warmup}`);
  if (o.advStart !== null && !(Number.isInteger(o.advStart) && o.advStart >= 0)) throw new ValueError(`--adv-start must be an integer >= 0, got ${o.advStart}`);
  if (!Number.isInteger(o.seed)) throw new ValueError(`--seed must be an integer, got ${o.seed}`);
  return { frames, spatial };
}

/** State tensors of a run, keyed as in the checkpoint. */
function stateTensors(model: DCAEV, opt: AdamW, ema: Ema, disc: PatchDiscriminator | null, dopt: AdamW | null): Map<string, WritableTensor> {
  const t = new Map<string, WritableTensor>();
  const named = model.namedParams();
  for (const [k, p] of named) t.set(`model.${k}`, p.value);
  named.forEach(([k, p], i) => t.set(`ema.${k}`, new Tensor(ema.shadow[i]!, p.shape)));
  const os = opt.stateDict();
  named.forEach(([k, p], i) => {
    t.set(`adam_m.${k}`, new Tensor(os.m[i]!, p.shape));
    t.set(`adam_v.${k}`, new Tensor(os.v[i]!, p.shape));
  });
  if (disc && dopt) {
    const dn = disc.namedParams();
    for (const [k, p] of dn) t.set(`disc.${k}`, p.value);
    const ds = dopt.stateDict();
    dn.forEach(([k, p], i) => {
      t.set(`disc_adam_m.${k}`, new Tensor(ds.m[i]!, p.shape));
      t.set(`disc_adam_v.${k}`, new Tensor(ds.v[i]!, p.shape));
    });
  }
  return t;
}

interface CheckpointMeta {
  format: string;
  step: number;
  options: TrainAEOptions;
  config: ReturnType<typeof configToReference> & { name: string };
  dataRng: number[];
  adamSteps: number;
  discAdamSteps: number;
  emaUpdates: number;
  trainClips: string[];
  heldOutClips: string[];
}

/** Reads a run's checkpoint metadata (options, step) without loading tensors. */
export function readCheckpointMeta(runDir: string): CheckpointMeta {
  const path = join(runDir, CKPT);
  if (!existsSync(path)) throw new TrainingError(`no checkpoint to resume in ${runDir} (expected ${CKPT})`);
  const f = SafetensorsFile.open(path);
  try {
    const raw = f.metadata.dcvg_train;
    if (!raw) throw new TrainingError(`${path} is not a dcvg train-ae checkpoint (no dcvg_train metadata)`);
    const m = JSON.parse(raw) as CheckpointMeta;
    if (m.format !== FORMAT) throw new TrainingError(`${path}: unsupported checkpoint format ${m.format} (expected ${FORMAT})`);
    return m;
  } finally {
    f.close();
  }
}

function loadInto(f: SafetensorsFile, key: string, dst: Float32Array, path: string): void {
  if (!f.keys().includes(key)) throw new TrainingError(`${path}: checkpoint lacks ${key}`);
  const t = f.tensor(key);
  if (t.size !== dst.length) throw new TrainingError(`${path}: ${key} has ${t.size} values, expected ${dst.length}`);
  dst.set(t.data());
}

function modelConfigJson(cfg: DCAEVConfig) {
  return { name: cfg.name, ...configToReference(cfg) };
}

/** A smoothed, bucketed series for plots: mean of each run of `k` points. */
function bucketMeans(v: readonly number[], maxPoints = 400): { values: number[]; k: number } {
  const k = Math.max(1, Math.ceil(v.length / maxPoints));
  const out: number[] = [];
  for (let i = 0; i < v.length; i += k) {
    const s = v.slice(i, i + k);
    out.push(s.reduce((a, b) => a + b, 0) / s.length);
  }
  return { values: out, k };
}

/** Writes loss.png (and eval.png when there are evaluations) from a run's train.jsonl. */
export function writeTrainingPlots(runDir: string): void {
  const { steps, evals } = readLog(join(runDir, LOG));
  if (steps.length) {
    const loss = bucketMeans(steps.map((r) => r.loss));
    const mse = steps.some((r) => r.mse !== undefined);
    const l1 = bucketMeans(steps.map((r) => (mse ? r.mse : r.l1) ?? NaN));
    const ss = bucketMeans(steps.map((r) => r.ssim));
    const first = steps[0]!.step;
    writeLinePlotPng(join(runDir, 'loss.png'), {
      title: `training loss (mean of ${loss.k} steps per point, from step ${first})`,
      xLabel: 'step',
      yLabel: 'loss',
      xScale: loss.k,
      series: [
        { name: 'total', values: loss.values },
        { name: mse ? 'MSE' : 'L1', values: l1.values },
        { name: '1 - SSIM', values: ss.values },
      ],
    });
  }
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
  const steps: StepRecord[] = [];
  const evals: EvalRecord[] = [];
  const lines: string[] = [];
  if (!existsSync(path)) return { steps, evals, lines };
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let r: StepRecord | EvalRecord;
    try {
      r = JSON.parse(line);
    } catch {
      continue; // a line cut short by a kill
    }
    lines.push(line);
    if ('eval' in r) evals.push(r);
    else steps.push(r);
  }
  return { steps, evals, lines };
}

/** A whole clip through the model (streamed for chunk-causal models, padded spatially when needed), and its latent size. */
function reconstructClip(model: DCAEV, x: Tensor): { y: Tensor; latentSize: number } {
  const { spatial } = compressionFactors(model.config);
  const pad = x.shape[3]! % spatial !== 0 || x.shape[4]! % spatial !== 0;
  return noGrad(() => {
    const e = encodeVideo(model, x, { padSpatial: pad });
    return { y: decodeVideo(model, e.latent, { numFrames: e.numFrames, height: e.height, width: e.width }), latentSize: e.latent.size };
  });
}

/** Reconstructs held-out clips (whole clips, streamed for chunk-causal models) and measures PSNR / SSIM. */
export function evaluateClips(model: DCAEV, clips: readonly Clip[], frames = 0): { psnr: number; ssim: number; frames: number } {
  let psnrSum = 0;
  let ssimSum = 0;
  let n = 0;
  for (const c of clips) {
    const x = clipTensor(c, frames > 0 ? frames : c.frames);
    const m = videoMetrics(x, reconstructClip(model, x).y);
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
export function evaluateWithBaseline(model: DCAEV, clips: readonly Clip[], temporalFactors: number[], onClip?: (name: string) => void) {
  const { spatial, temporal } = compressionFactors(model.config);
  const L = chunkFrames(model.config);
  const out: ClipScore[] = [];
  const sum = { mp: 0, ms: 0, bp: 0, bs: 0, n: 0 };
  const perTf = new Map<number, { p: number; s: number; n: number }>();
  for (const c of clips) {
    onClip?.(c.name);
    const x = clipTensor(c);
    const { y, latentSize: budget } = reconstructClip(model, x);
    if (budget !== latentBudget(c.frames, c.height, c.width, spatial, temporal, model.config.latentChannels, L)) throw new TrainingError('latent size disagrees with latentBudget');
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

/** Trains (or resumes) a DC-AE-V. */
export async function trainAE(opts: TrainAEOptions & { resume?: boolean }, cb: TrainCallbacks = {}): Promise<TrainResult> {
  const runDir = opts.out;
  const ckptPath = join(runDir, CKPT);
  const logPath = join(runDir, LOG);
  let o: TrainAEOptions;
  let meta: CheckpointMeta | null = null;
  if (opts.resume) {
    meta = readCheckpointMeta(runDir);
    o = { ...meta.options, out: runDir };
    if (opts.steps !== undefined && opts.steps !== meta.options.steps) {
      cb.onMessage?.(`resume: total steps changed from ${meta.options.steps} to ${opts.steps} (the cosine schedule stretches accordingly)`);
      o.steps = opts.steps;
    }
    if (meta.step >= o.steps) throw new TrainingError(`${runDir} already finished ${meta.step} of ${o.steps} steps (pass a larger --steps to continue)`);
  } else {
    if (existsSync(ckptPath)) throw new TrainingError(`${runDir} already holds a training run; pass --resume to continue it, or choose another --out`);
    o = { ...TRAIN_DEFAULTS, ...opts };
    o.data = resolve(o.data); // saved in the checkpoint: resume works from any working directory
  }
  const cfg = meta ? configFromReference(meta.config, meta.config.name) : resolveConfig(o.model);
  const { frames } = validate(o, cfg);
  mkdirSync(runDir, { recursive: true });

  const data: ClipSet = await loadClipSet(o.data, { holdout: o.holdout, onClip: (d, t, n) => cb.onMessage?.(`loaded ${d}/${t} ${n}`) });
  if (meta && JSON.stringify(data.train.map((c) => c.name)) !== JSON.stringify(meta.trainClips))
    throw new TrainingError(`resume: the training clips in ${o.data} differ from the run's (${meta.trainClips.length} clips: ${meta.trainClips.slice(0, 5).join(', ')}...)`);
  const crop = o.crop ?? Math.min(128, Math.floor(Math.min(...data.train.map((c) => Math.min(c.height, c.width))) / compressionFactors(cfg).spatial) * compressionFactors(cfg).spatial);
  if (!(crop > 0)) throw new ValueError(`training data: clips are smaller than the spatial factor ${compressionFactors(cfg).spatial}`);
  const so: SampleOptions = { batch: o.batch, frames, crop, stillProb: o.stillProb, colorAug: o.colorAug ?? 0 };
  checkSampling(data.train, so);

  const model = new DCAEV(cfg);
  initForTraining(model, o.seed, { residual: o.residualInit ?? 'shortcut' });
  if (o.init && !meta) loadWeights(model, o.init);
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
  const params = named.map(([, p]) => p.value);
  const opt = new AdamW(params, { lr: o.lr, weightDecay: o.weightDecay });
  const ema = new Ema(params, o.emaDecay);
  const disc = o.advStart !== null ? new PatchDiscriminator({}) : null;
  disc?.init(o.seed + 1);
  disc?.setTrainable(true);
  const dparams = disc ? disc.namedParams().map(([, p]) => p.value) : [];
  const dopt = disc ? new AdamW(dparams, { lr: o.discLr, betas: [0.5, 0.9], weightDecay: 0 }) : null;
  const dataRng = new Rng(o.seed * 7919 + 17);
  let startStep = 0;

  if (meta) {
    const f = SafetensorsFile.open(ckptPath);
    try {
      const os = opt.stateDict();
      named.forEach(([k, p], i) => {
        loadInto(f, `model.${k}`, p.value.data(), ckptPath);
        loadInto(f, `adam_m.${k}`, os.m[i]!, ckptPath);
        loadInto(f, `adam_v.${k}`, os.v[i]!, ckptPath);
      });
      const shadow = named.map(([k, p]) => {
        const s = new Float32Array(p.size);
        loadInto(f, `ema.${k}`, s, ckptPath);
        return s;
      });
      ema.load(shadow, meta.emaUpdates);
      opt.loadStateDict({ step: meta.adamSteps, m: os.m, v: os.v });
      if (disc && dopt) {
        const ds = dopt.stateDict();
        disc.namedParams().forEach(([k, p], i) => {
          loadInto(f, `disc.${k}`, p.value.data(), ckptPath);
          loadInto(f, `disc_adam_m.${k}`, ds.m[i]!, ckptPath);
          loadInto(f, `disc_adam_v.${k}`, ds.v[i]!, ckptPath);
        });
        dopt.loadStateDict({ step: meta.discAdamSteps, m: ds.m, v: ds.v });
      }
    } finally {
      f.close();
    }
    dataRng.setState(meta.dataRng);
    startStep = meta.step;
    // The log keeps exactly the lines up to the checkpoint: later lines belong to the lost part of the killed run.
    const { lines } = readLog(logPath);
    const kept = lines.filter((l) => (JSON.parse(l) as { step: number }).step <= startStep);
    writeFileAtomic(logPath, kept.length ? kept.join('\n') + '\n' : '');
  } else {
    writeFileAtomic(logPath, '');
  }
  writeFileAtomic(join(runDir, 'config.json'), JSON.stringify(modelConfigJson(cfg), null, 2) + '\n');

  const saveCheckpoint = (step: number) => {
    const m: CheckpointMeta = {
      format: FORMAT,
      step,
      options: { ...o, model: typeof o.model === 'string' ? o.model : cfg.name },
      config: modelConfigJson(cfg),
      dataRng: dataRng.state(),
      adamSteps: opt.stepCount,
      discAdamSteps: dopt?.stepCount ?? 0,
      emaUpdates: ema.updates,
      trainClips: data.train.map((c) => c.name),
      heldOutClips: data.heldOut.map((c) => c.name),
    };
    saveSafetensors(ckptPath, stateTensors(model, opt, ema, disc, dopt), { metadata: { dcvg_train: JSON.stringify(m) } });
    const emaWeights = new Map<string, WritableTensor>(named.map(([k, p], i) => [k, new Tensor(ema.shadow[i]!, p.shape)]));
    saveSafetensors(join(runDir, 'model.safetensors'), emaWeights, {
      metadata: { config: JSON.stringify(modelConfigJson(cfg)), step: String(step), format: 'dcvg-dcaev-weights' },
    });
    try {
      writeTrainingPlots(runDir);
    } catch (e) {
      cb.onMessage?.(`could not write plots: ${(e as Error).message}`);
    }
    cb.onCheckpoint?.(step, ckptPath);
  };

  let lastEval: EvalRecord | null = null;
  const runEval = (step: number) => {
    if (!data.heldOut.length) return;
    const r = ema.withWeights(() => evaluateClips(model, data.heldOut, o.evalFrames));
    lastEval = { step, eval: { psnr: r.psnr, ssim: r.ssim, frames: r.frames, clips: data.heldOut.map((c) => c.name) } };
    appendLine(logPath, lastEval);
    cb.onEval?.(lastEval);
  };

  cb.onStart?.({ startStep, steps: o.steps, train: data.train.length, heldOut: data.heldOut.length, params: model.parameterCount(), resumed: !!meta });
  const schedule = { lr: o.lr, warmup: o.warmup, total: o.steps, minRatio: o.minLrRatio };
  let stoppedEarly = false;
  for (let step = startStep + 1; step <= o.steps; step++) {
    // Let the event loop run between steps, so signal handlers (Ctrl-C -> checkpoint and stop) are serviced.
    await new Promise((resolve) => setImmediate(resolve));
    const t0 = performance.now();
    const lr = lrAt(step, schedule);
    opt.lr = lr;
    const { x } = sampleBatch(data.train, so, dataRng);
    const adv = disc !== null && o.advStart !== null && step > o.advStart;
    if (adv) model.encoder.setTrainable(false);
    const z = adv ? noGrad(() => model.encodeRaw(x)) : model.encodeRaw(x);
    const y = model.decodeRaw(z);
    const rec = o.loss === 'mse' ? mseLoss(y, x) : l1Loss(y, x);
    const ss = ssimLoss(y, x);
    let loss = o.ssimWeight > 0 ? ops.add(rec, ops.mul(ss, o.ssimWeight)) : rec;
    let gAdv: Tensor | null = null;
    if (adv) {
      gAdv = hingeGLoss(disc!.forward(y));
      loss = ops.add(loss, ops.mul(gAdv, o.advWeight));
    }
    const lossV = loss.item();
    if (!Number.isFinite(lossV))
      throw new TrainingError(`loss is ${lossV} at step ${step}; stopping (last checkpoint: ${existsSync(ckptPath) ? ckptPath : 'none'}). Lower --lr or check the data.`);
    loss.backward();
    const gradNorm = clipGradNorm(params, o.clip);
    opt.step();
    opt.zeroGrad();
    ema.update();
    let dLossV: number | undefined;
    if (adv) {
      dopt!.zeroGrad();
      const yd = y.detach();
      const dl = hingeDLoss(disc!.forward(x), disc!.forward(yd));
      dLossV = dl.item();
      dl.backward();
      clipGradNorm(dparams, o.clip);
      dopt!.step();
      dopt!.zeroGrad();
    }
    const record: StepRecord = { step, loss: lossV, [o.loss === 'mse' ? 'mse' : 'l1']: rec.item(), ssim: ss.item(), lr, gradNorm, ms: Math.round(performance.now() - t0) };
    if (gAdv) record.adv = gAdv.item();
    if (dLossV !== undefined) record.disc = dLossV;
    appendLine(logPath, record);
    cb.onStep?.(record);
    const stop = cb.shouldStop?.() ?? false;
    const last = step === o.steps;
    if (step % o.evalEvery === 0 || last) runEval(step);
    if (step % o.ckptEvery === 0 || last || stop) saveCheckpoint(step);
    if (stop && !last) {
      stoppedEarly = true;
      cb.onMessage?.(`stopped after step ${step}; continue with --resume`);
      return { steps: step, stoppedEarly, lastEval, runDir };
    }
  }
  return { steps: o.steps, stoppedEarly, lastEval, runDir };
}

function appendLine(path: string, rec: object): void {
  writeFileSync(path, JSON.stringify(rec) + '\n', { flag: 'a' });
}
