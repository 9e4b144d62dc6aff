/**
 * Flow-matching training of a Wan DiT (text to video): `dcvg train-dit`, on a folder of precomputed latents and text
 * embeddings (src/train/dit_data.ts), on the generic loop (src/train/loop.ts).
 *
 * One step, the reference objective of spec §5.5: draw `batch` samples (a fresh shuffle of the set every epoch), for
 * each an integer t ~ U{0..999} snapped to the nearest point of the 50-point training grid shifted by --shift
 * (σ_k), noise x = (1 − σ_k)·x₀ + σ_k·ε, velocity target ε − x₀; with probability --text-drop the sample's text context
 * is replaced by the null embedding (CFG dropout); the network sees the raw integer t (the reference's quirk); loss =
 * mean of w_k·(v̂ − target)² with the grid's loss weights. Then clip, AdamW, EMA (loop.ts).
 *
 * The run folder: config.json (the Wan config), train.jsonl, checkpoint.safetensors (weights, EMA, AdamW moments by
 * parameter name, both RNG states and the epoch order: resume is bit-exact), model.safetensors (the EMA weights in
 * Wan's key names plus `null_embedding`, loadable by `dcvg run wan` / loadWanWeights), loss.png.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sweepStaleTemps, writeFileAtomic } from '../io/files.js';
import { SafetensorsFile, saveSafetensors, type WritableTensor } from '../io/safetensors.js';
import { TrainingError, ValueError } from '../errors.js';
import { dropTextContext, flowMatchInputs, flowMatchLoss, sampleTrainingTimesteps, trainingGrid } from '../diffusion/flow_matching.js';
import { WanModel, loadWanWeights, parseWanConfig, resolveWanConfig, wanConfigToJson, type WanConfig } from '../models/wan/index.js';
import * as ops from '../tensor/ops.js';
import { Rng, randn } from '../tensor/random.js';
import { ones } from '../tensor/tensor.js';
import { CKPT, loadState, readCheckpointJson, rngStateProblem, stateTensors, writeCheckpoint } from './checkpoint.js';
import { loadLatentSet, type LatentSet } from './dit_data.js';
import { Ema } from './ema.js';
import { LOG, readLogRecords, resetLog, writeLossPlot } from './log.js';
import { NewRunGuard, checkNewRunFolder, runLoop, scheduledLr } from './loop.js';
import { AdamW } from './optim.js';
import { anyInt, badOptionOf, expected, nonNeg, nonNegInt, nullable, oneOf, posInt, positive, regex, text, unit, unitOpen, type Check } from './options.js';

export interface TrainDiTOptions {
  /** Wan preset name, config JSON path (path#entry for a file of several), or config object */
  model: string | object;
  /** latent folder (see dit_data.ts) */
  data: string;
  out: string;
  /** weights to start from (any layout loadWanWeights reads); default a random initialisation */
  init?: string | null;
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  schedule: 'constant' | 'cosine';
  minLrRatio: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  /** max global gradient norm; 0 = no clipping */
  clip: number;
  emaDecay: number;
  /** flow shift of the training grid */
  shift: number;
  /** probability of replacing a sample's text context by the null embedding */
  textDrop: number;
  seed: number;
  ckptEvery: number;
  /** train only the parameters whose names match this regular expression */
  trainOnly?: string | null;
}

/** Spec §5.4/§5.6 (phases 2 and 3, T2V): constant lr 1e-4, betas (0.9, 0.999), no weight decay, clip 0.1, shift 8, 10% text dropout. */
export const DIT_DEFAULTS: Omit<TrainDiTOptions, 'model' | 'data' | 'out'> = {
  init: null,
  steps: 1000,
  batch: 1,
  lr: 1e-4,
  warmup: 0,
  schedule: 'constant',
  minLrRatio: 0.1,
  weightDecay: 0,
  beta1: 0.9,
  beta2: 0.999,
  clip: 0.1,
  emaDecay: 0.9999,
  shift: 8,
  textDrop: 0.1,
  seed: 0,
  ckptEvery: 250,
  trainOnly: null,
};

export interface DiTStepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  ms: number;
  /** the integer timesteps drawn (what the network was conditioned on) */
  t: number[];
  /** samples whose text was dropped to the null embedding */
  dropped: number;
}

export interface DiTCallbacks {
  onStart?: (info: { startStep: number; steps: number; samples: number; params: number; trainable: number; resumed: boolean }) => void;
  onStep?: (r: DiTStepRecord) => void;
  onCheckpoint?: (step: number, path: string) => void;
  onMessage?: (msg: string) => void;
  shouldStop?: () => boolean;
}

const FORMAT = 'dcvg-train-dit-1';
const RUN_FILES = [CKPT, LOG, 'config.json', 'model.safetensors', 'loss.png'];

const nonNegFinite: Check = nonNeg;
const OPTION_CHECKS: readonly (readonly [keyof TrainDiTOptions, string, Check])[] = [
  ['steps', '--steps', posInt],
  ['batch', '--batch', posInt],
  ['lr', '--lr', positive],
  ['warmup', '--warmup', nonNegInt],
  ['schedule', '--schedule', oneOf('constant', 'cosine')],
  ['minLrRatio', '--min-lr-ratio', unit],
  ['weightDecay', '--weight-decay', nonNegFinite],
  ['beta1', '--beta1', unitOpen],
  ['beta2', '--beta2', unitOpen],
  ['clip', '--clip', nonNegFinite],
  ['emaDecay', '--ema', unitOpen],
  ['shift', '--shift', positive],
  ['textDrop', '--text-drop', unit],
  ['seed', '--seed', anyInt],
  ['ckptEvery', '--ckpt-every', posInt],
  ['init', '--init', nullable(text)],
  ['trainOnly', '--train-only', nullable(regex)],
];

interface Meta {
  format: string;
  step: number;
  options: TrainDiTOptions;
  config: Record<string, unknown> & { name: string };
  dataRng: number[];
  noiseRng: number[];
  /** the current epoch's sample order and the position in it */
  order: number[];
  pos: number;
  samples: number;
  adamSteps: number;
  emaUpdates: number;
}

function checkModelAgainstData(cfg: WanConfig, d: LatentSet): void {
  if (cfg.model_type !== 't2v') throw new ValueError(`train-dit trains text-to-video models; ${cfg.name} is ${cfg.model_type} (image conditioning is not supported yet)`);
  const [C, F, H, W] = d.latentShape as [number, number, number, number];
  if (cfg.in_dim !== C || cfg.out_dim !== C) throw new ValueError(`${cfg.name}: in_dim ${cfg.in_dim} / out_dim ${cfg.out_dim} must equal the latents' ${C} channels (${d.dir})`);
  const [pt, ph, pw] = cfg.patch_size;
  if (F % pt || H % ph || W % pw) throw new ValueError(`${cfg.name}: patch size [${cfg.patch_size.join(', ')}] does not divide the latents' F, H, W = ${F}, ${H}, ${W}`);
  if (cfg.text_dim !== d.textDim) throw new ValueError(`${cfg.name}: text_dim ${cfg.text_dim} differs from the embeddings' ${d.textDim} (${d.dir})`);
  if (d.textLen > cfg.text_len || d.nullContext.shape[0]! > cfg.text_len)
    throw new ValueError(`${cfg.name}: text_len ${cfg.text_len} is shorter than the embeddings' ${Math.max(d.textLen, d.nullContext.shape[0]!)} tokens`);
}

function readMeta(runDir: string): { path: string; meta: Meta } {
  const { path, meta } = readCheckpointJson(runDir, FORMAT, 'train-dit');
  const m = meta as unknown as Meta;
  const badField = (f: string, why: string) => new TrainingError(`${path}: checkpoint metadata field "${f}" ${why}; the checkpoint is damaged or not from this version of dcvg train-dit`);
  if (typeof m.options !== 'object' || m.options === null) throw badField('options', expected('an object', m.options));
  const bad = badOptionOf(OPTION_CHECKS, m.options as unknown as Record<string, unknown>, false);
  if (bad) throw badField(bad.split(' ')[0]!, bad.split(' ').slice(1).join(' '));
  if (!(Number.isSafeInteger(m.step) && m.step >= 0 && m.step <= m.options.steps)) throw badField('step', expected(`an integer in [0, ${m.options.steps}]`, m.step));
  for (const k of ['dataRng', 'noiseRng'] as const) {
    const why = rngStateProblem(m[k]);
    if (why) throw badField(k, why);
  }
  for (const k of ['adamSteps', 'emaUpdates', 'pos'] as const) {
    const why = nonNegInt(m[k]);
    if (why) throw badField(k, why);
  }
  const why = posInt(m.samples);
  if (why) throw badField('samples', why);
  if (!Array.isArray(m.order) || m.order.length !== m.samples || !m.order.every((i) => Number.isSafeInteger(i) && i >= 0 && i < m.samples) || new Set(m.order).size !== m.samples)
    throw badField('order', `must be a permutation of 0..${m.samples - 1}`);
  if (m.pos > m.samples) throw badField('pos', expected(`an integer in [0, ${m.samples}]`, m.pos));
  if (typeof m.config !== 'object' || m.config === null) throw badField('config', expected('an object', m.config));
  return { path, meta: m };
}

/** Fisher–Yates shuffle of 0..n-1 with the data RNG. */
function shuffled(n: number, rng: Rng): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/** The random initialisation of a model trained from scratch: N(0, 0.02) matrices, zero biases, unit norm weights. */
export function initFromScratch(model: WanModel, seed: number): void {
  model.initRandom(seed, 0.02);
  for (const [k, p] of model.namedParams()) if (p.shape.length === 1 && /norm[^.]*\.weight$/.test(k)) p.set(ones(p.shape), k);
}

export async function trainDiT(opts: Partial<TrainDiTOptions> & { out: string; resume?: boolean }, cb: DiTCallbacks = {}): Promise<{ steps: number; stoppedEarly: boolean; runDir: string }> {
  const runDir = opts.out;
  if (typeof runDir !== 'string' || runDir === '') throw new ValueError('train-dit needs --out <run dir>');
  const ckptPath = join(runDir, CKPT);
  const logPath = join(runDir, LOG);
  let o: TrainDiTOptions;
  let meta: Meta | null = null;
  let cfg: WanConfig;
  if (opts.resume) {
    meta = readMeta(runDir).meta;
    o = { ...meta.options, out: runDir };
    try {
      cfg = parseWanConfig(meta.config, meta.config.name);
    } catch (e) {
      throw new TrainingError(`${ckptPath}: checkpoint metadata field "config" is not a valid Wan config (${(e as Error).message})`);
    }
    if (opts.steps !== undefined && opts.steps !== o.steps) {
      const why = posInt(opts.steps);
      if (why) throw new ValueError(`--steps ${why}`);
      cb.onMessage?.(`resume: total steps changed from ${o.steps} to ${opts.steps}`);
      o.steps = opts.steps;
    }
    if (meta.step >= o.steps) throw new TrainingError(`${runDir} already finished ${meta.step} of ${o.steps} steps (pass a larger --steps to continue)`);
  } else {
    checkNewRunFolder(runDir, RUN_FILES);
    o = { ...DIT_DEFAULTS, ...(opts as TrainDiTOptions) };
    delete (o as { resume?: boolean }).resume;
    if (o.model === undefined) throw new ValueError('train-dit needs --model <preset | config.json>');
    if (typeof o.data !== 'string' || o.data === '') throw new ValueError('train-dit needs --data <latent folder>');
    const bad = badOptionOf(OPTION_CHECKS, o as unknown as Record<string, unknown>, true);
    if (bad) throw new ValueError(bad);
    o.data = resolve(o.data);
    if (o.init) o.init = resolve(o.init);
    cfg = resolveWanConfig(o.model);
  }
  const data = loadLatentSet(o.data);
  checkModelAgainstData(cfg, data);
  if (meta && meta.samples !== data.latents.length)
    throw new TrainingError(`resume: ${o.data} holds ${data.latents.length} samples, the run was trained on ${meta.samples} (recorded in ${ckptPath})`);

  const model = new WanModel(cfg);
  initFromScratch(model, o.seed);
  let nullContext = data.nullContext;
  if (o.init && !meta) {
    const r = loadWanWeights(model, o.init);
    if (r.nullEmbedding && !existsSync(join(o.data, 'null_context.safetensors')) && r.nullEmbedding.ndim === 2 && r.nullEmbedding.shape[1] === cfg.text_dim && r.nullEmbedding.shape[0]! <= cfg.text_len)
      nullContext = r.nullEmbedding;
  }
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
  // only trainable parameters get optimiser and EMA state (frozen ones stay as loaded, and are saved as such)
  const trainable = named.filter(([, p]) => p.trainable).map(([k, p]) => [k, p.value] as const);
  const opt = new AdamW([{ name: 'all', params: trainable, lr: o.lr, weightDecay: o.weightDecay }], { lr: o.lr, betas: [o.beta1, o.beta2], weightDecay: o.weightDecay });
  const ema = new Ema(trainable, o.emaDecay);
  const allNamed = named.map(([k, p]) => [k, p.value] as const);
  const dataRng = new Rng(o.seed * 7919 + 17);
  const noiseRng = new Rng(o.seed * 104729 + 31);
  const grid = trainingGrid(o.shift);
  const N = data.latents.length;
  let order = shuffled(N, dataRng);
  let pos = 0;
  let startStep = 0;
  // a null context padded to the data's length, so a batch can mix dropped and kept samples in one tensor
  const nullPadded = nullContext.shape[0] === data.textLen ? nullContext : nullContext.shape[0]! < data.textLen ? ops.pad(nullContext, [0, 0, 0, data.textLen - nullContext.shape[0]!]) : nullContext;
  if (nullPadded.shape[0] !== data.textLen) throw new ValueError(`null_context has ${nullContext.shape[0]} tokens, more than the samples' ${data.textLen}`);

  if (meta) {
    const f = SafetensorsFile.open(ckptPath);
    try {
      loadState(f, ckptPath, {
        params: [{ prefix: 'model.', named: allNamed }],
        ema: [{ prefix: 'ema.', ema, updates: meta.emaUpdates }],
        adamw: [{ m: 'adam_m.', v: 'adam_v.', opt, step: meta.adamSteps }],
      });
    } finally {
      f.close();
    }
    dataRng.setState(meta.dataRng);
    noiseRng.setState(meta.noiseRng);
    order = [...meta.order];
    pos = meta.pos;
    startStep = meta.step;
  }

  const nextBatch = (): number[] => {
    const ids: number[] = [];
    for (let b = 0; b < o.batch; b++) {
      if (pos >= N) {
        order = shuffled(N, dataRng);
        pos = 0;
      }
      ids.push(order[pos++]!);
    }
    return ids;
  };

  const guard = meta ? null : new NewRunGuard(runDir, RUN_FILES);
  try {
    sweepStaleTemps(runDir);
    resetLog(logPath, meta ? startStep : null);
    const configJson = { name: cfg.name, ...wanConfigToJson(cfg) };
    const configText = JSON.stringify(configJson, null, 2) + '\n';
    if (!existsSync(join(runDir, 'config.json')) || readFileSync(join(runDir, 'config.json'), 'utf8') !== configText) writeFileAtomic(join(runDir, 'config.json'), configText);

    const save = (step: number) => {
      const m: Meta = {
        format: FORMAT,
        step,
        // the run folder is not an option of the run: it is wherever the checkpoint is
        options: { ...o, out: undefined as unknown as string, model: typeof o.model === 'string' ? o.model : cfg.name },
        config: configJson,
        dataRng: dataRng.state(),
        noiseRng: noiseRng.state(),
        order,
        pos,
        samples: N,
        adamSteps: opt.stepCount,
        emaUpdates: ema.updates,
      };
      writeCheckpoint(ckptPath, stateTensors({ params: [{ prefix: 'model.', named: allNamed }], ema: [{ prefix: 'ema.', ema }], adamw: [{ m: 'adam_m.', v: 'adam_v.', opt }] }), m);
      // the EMA weights where trained, the (frozen) weights elsewhere, and the null embedding for CFG sampling
      const shadows = ema.shadows();
      const weights = new Map<string, WritableTensor>(allNamed.map(([k, t]) => [k, shadows.get(k) ?? t]));
      weights.set('null_embedding', nullContext);
      saveSafetensors(join(runDir, 'model.safetensors'), weights, { metadata: { config: JSON.stringify(configJson), step: String(step), format: 'dcvg-wan-weights' } });
      try {
        const { steps } = readLogRecords<DiTStepRecord, never>(logPath);
        writeLossPlot(join(runDir, 'loss.png'), steps, [{ name: 'flow-matching loss', value: (r: DiTStepRecord) => r.loss }]);
      } catch (e) {
        cb.onMessage?.(`could not write plots: ${(e as Error).message}`);
      }
      guard?.disarm();
      cb.onCheckpoint?.(step, ckptPath);
    };

    cb.onStart?.({ startStep, steps: o.steps, samples: N, params: model.parameterCount(), trainable: trainable.reduce((s, [, t]) => s + t.size, 0), resumed: !!meta });
    const schedule = { kind: o.schedule, warmup: o.warmup, total: o.steps, minRatio: o.minLrRatio };
    type Out = { t: number[]; dropped: number };
    const r = await runLoop<Out>({
      task: {
        forward: () => {
          const ids = nextBatch();
          const x0 = ops.stack(ids.map((i) => data.latents[i]!), 0);
          const ctx = ops.stack(ids.map((i) => data.contexts[i]!), 0);
          const t = sampleTrainingTimesteps(ids.length, noiseRng, grid.numTrainTimesteps);
          const drop = dropTextContext(ctx, nullPadded, o.textDrop, noiseRng);
          const noise = randn(x0.shape, noiseRng);
          const inp = flowMatchInputs(x0, noise, t, grid);
          const pred = model.forward(inp.noisy, inp.t, drop.contexts);
          return { loss: flowMatchLoss(pred, inp.target, inp.weights), t, dropped: drop.dropped.filter(Boolean).length };
        },
        record: (base, out) => ({ ...base, t: out.t, dropped: out.dropped }),
      },
      startStep,
      steps: o.steps,
      opt,
      lr: (step, peak) => scheduledLr(step, peak, schedule),
      clip: o.clip,
      ema,
      ckptEvery: o.ckptEvery,
      evalEvery: null,
      logPath,
      save,
      checkpointPath: ckptPath,
      onStep: (rec) => cb.onStep?.(rec as unknown as DiTStepRecord),
      onMessage: cb.onMessage,
      shouldStop: cb.shouldStop,
      onStoppedBeforeFirst: () => guard?.undo(),
    });
    return { ...r, runDir };
  } catch (e) {
    guard?.undo();
    throw e;
  } finally {
    guard?.disarm();
  }
}

/** The step records of a train-dit run's log. */
export function readDiTLog(runDir: string): DiTStepRecord[] {
  return readLogRecords<DiTStepRecord, never>(join(runDir, LOG)).steps;
}
