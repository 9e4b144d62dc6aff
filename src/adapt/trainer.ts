/**
 * What the three AE-Adapt-V training phases (align.ts, phases.ts) share, on the generic loop (src/train/loop.ts):
 * options with checks, a held-out split, the epoch order, gradient accumulation, evaluation records, atomic
 * checkpoints with exact resume, train.jsonl + loss.png / eval.png.
 *
 * The checkpoint (checkpoint.safetensors) holds only what training changes: the trainable tensors (`model.<key>`),
 * their EMA shadows (`ema.<key>`) and AdamW moments (`adam_m.<key>`, `adam_v.<key>`); frozen weights are read again
 * from the phase's inputs (recorded in the options) on --resume. The metadata `dcvg_train` holds the options, step,
 * both RNG states, the epoch order and position, and the counters. Resume is bit-exact.
 */
import { join, resolve } from 'node:path';
import { sweepStaleTemps } from '../io/files.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { TrainingError, ValueError } from '../errors.js';
import * as ops from '../tensor/ops.js';
import { Rng } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import { CKPT, loadState, readCheckpointJson, rngStateProblem, stateTensors, writeCheckpoint } from '../train/checkpoint.js';
import { heldOutIndices } from '../train/data.js';
import { Ema } from '../train/ema.js';
import { LOG, appendLine, readLogRecords, resetLog, writeLossPlot } from '../train/log.js';
import { NewRunGuard, checkNewRunFolder, runLoop, scheduledLr } from '../train/loop.js';
import { AdamW } from '../train/optim.js';
import { writeLinePlotPng } from '../metrics/plot.js';
import { anyInt, badOptionOf, expected, nonNeg, nonNegInt, nullable, oneOf, posInt, positive, unit, unitOpen, type Check } from '../train/options.js';

/** Options every phase has. */
export interface CommonOptions {
  data: string;
  out: string;
  steps: number;
  /** samples per micro-batch */
  batch: number;
  /** micro-batches per optimizer step (gradient accumulation): one step sees batch·accum samples */
  accum: number;
  lr: number;
  warmup: number;
  schedule: 'constant' | 'cosine';
  minLrRatio: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  /** max global gradient norm, 0 = none */
  clip: number;
  /** EMA decay, 0 = no EMA */
  emaDecay: number;
  seed: number;
  ckptEvery: number;
  evalEvery: number;
  /** samples held out for evaluation (null: 1 per 20, at least 1 when there are 4 or more, else 0) */
  holdout: number | null;
}

export const COMMON_CHECKS: readonly (readonly [keyof CommonOptions, string, Check])[] = [
  ['steps', '--steps', posInt],
  ['batch', '--batch', posInt],
  ['accum', '--accum', posInt],
  ['lr', '--lr', positive],
  ['warmup', '--warmup', nonNegInt],
  ['schedule', '--schedule', oneOf('constant', 'cosine')],
  ['minLrRatio', '--min-lr-ratio', unit],
  ['weightDecay', '--weight-decay', nonNeg],
  ['beta1', '--beta1', unitOpen],
  ['beta2', '--beta2', unitOpen],
  ['clip', '--clip', nonNeg],
  ['emaDecay', '--ema', unitOpen],
  ['seed', '--seed', anyInt],
  ['ckptEvery', '--ckpt-every', posInt],
  ['evalEvery', '--eval-every', posInt],
  ['holdout', '--holdout', nullable(nonNegInt)],
];

export function defaultHoldout(n: number): number {
  return n >= 4 ? Math.max(1, Math.floor(n / 20)) : 0;
}

/** What a phase provides to the runner (built after the options are settled, before any state is loaded). */
export interface PhaseModel {
  /** the model (phases 2 and 3), for inspection */
  module?: Module;
  /** the tensors the optimiser updates, by their reference key */
  trainable: [string, Tensor][];
  /** all parameters of the model (for the counts) */
  paramCount: number;
  /** one micro-batch: the loss (mean over its samples) and what the log should record */
  micro(ids: number[], rng: Rng): { loss: Tensor; record: Record<string, unknown> };
  /** the held-out objective(s), deterministic (same noise and timesteps every time) */
  evaluate(ids: number[]): Record<string, number>;
  /** writes the phase's output weights (live or EMA) into the run folder */
  exportWeights(runDir: string, step: number, ema: Ema | null): void;
  /** extra run-folder files the phase writes */
  files: string[];
  /** extra checkpoint metadata (e.g. the model config), kept as written */
  meta: Record<string, unknown>;
}

export interface PhaseCallbacks {
  onStart?: (info: { startStep: number; steps: number; samples: number; heldOut: number; params: number; trainable: number; resumed: boolean }) => void;
  onStep?: (r: Record<string, unknown> & { step: number; loss: number; lr: number }) => void;
  onEval?: (r: { step: number; eval: Record<string, number> }) => void;
  onCheckpoint?: (step: number, path: string) => void;
  onMessage?: (msg: string) => void;
  shouldStop?: () => boolean;
}

interface Meta<O> {
  format: string;
  step: number;
  options: O;
  dataRng: number[];
  noiseRng: number[];
  order: number[];
  pos: number;
  samples: number;
  adamSteps: number;
  emaUpdates: number;
  phase: Record<string, unknown>;
}

function shuffled(ids: readonly number[], rng: Rng): number[] {
  const p = [...ids];
  for (let i = p.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

export interface PhaseSpec<O extends CommonOptions> {
  /** the command (`adapt align`) for messages */
  command: string;
  format: string;
  defaults: Omit<O, 'data' | 'out'>;
  checks: readonly (readonly [keyof O, string, Check])[];
  /** option keys that hold paths (resolved for the checkpoint) */
  pathKeys: (keyof O)[];
  /** number of samples in the data (read cheaply before the model is built) */
  build(o: O): { model: PhaseModel; samples: number };
}

/** Runs (or resumes) a phase. */
export async function runPhase<O extends CommonOptions>(spec: PhaseSpec<O>, opts: Partial<O> & { out: string; resume?: boolean }, cb: PhaseCallbacks = {}): Promise<{ steps: number; stoppedEarly: boolean; runDir: string; lastEval: Record<string, number> | null }> {
  const runDir = opts.out;
  if (typeof runDir !== 'string' || !runDir) throw new ValueError(`${spec.command} needs --out <run dir>`);
  const ckptPath = join(runDir, CKPT);
  const logPath = join(runDir, LOG);
  const checks = [...COMMON_CHECKS, ...spec.checks] as readonly (readonly [string, string, Check])[];
  let o: O;
  let meta: Meta<O> | null = null;
  if (opts.resume) {
    const r = readCheckpointJson(runDir, spec.format, spec.command);
    meta = r.meta as unknown as Meta<O>;
    const damaged = (f: string, why: string) => new TrainingError(`${r.path}: checkpoint metadata field "${f}" ${why}; the checkpoint is damaged or not from this version of dcvg ${spec.command}`);
    if (typeof meta.options !== 'object' || meta.options === null) throw damaged('options', expected('an object', meta.options));
    const b = badOptionOf(checks, meta.options as unknown as Record<string, unknown>, false);
    if (b) throw damaged(b.split(' ')[0]!, b.split(' ').slice(1).join(' '));
    if (!(Number.isSafeInteger(meta.step) && meta.step >= 0 && meta.step <= meta.options.steps)) throw damaged('step', expected(`an integer in [0, ${meta.options.steps}]`, meta.step));
    for (const k of ['dataRng', 'noiseRng'] as const) {
      const why = rngStateProblem(meta[k]);
      if (why) throw damaged(k, why);
    }
    for (const k of ['adamSteps', 'emaUpdates', 'pos', 'samples'] as const) {
      const why = nonNegInt(meta[k]);
      if (why) throw damaged(k, why);
    }
    if (!Array.isArray(meta.order) || !meta.order.every((i) => Number.isSafeInteger(i) && i >= 0 && i < meta!.samples) || meta.pos > meta.order.length)
      throw damaged('order', 'must be a list of sample indices with pos inside it');
    o = { ...meta.options, out: runDir };
    if (opts.steps !== undefined && opts.steps !== o.steps) {
      const why = posInt(opts.steps);
      if (why) throw new ValueError(`--steps ${why}`);
      cb.onMessage?.(`resume: total steps changed from ${o.steps} to ${opts.steps}`);
      o.steps = opts.steps;
    }
    if (meta.step >= o.steps) throw new TrainingError(`${runDir} already finished ${meta.step} of ${o.steps} steps (pass a larger --steps to continue)`);
  } else {
    o = { ...spec.defaults, ...(opts as O) } as O;
    delete (o as { resume?: boolean }).resume;
    if (typeof o.data !== 'string' || !o.data) throw new ValueError(`${spec.command} needs --data <latent folder>`);
    const b = badOptionOf(checks, o as unknown as Record<string, unknown>, true);
    if (b) throw new ValueError(b);
    o.data = resolve(o.data);
    for (const k of spec.pathKeys) if (typeof o[k] === 'string' && o[k]) (o as Record<string, unknown>)[k as string] = resolve(o[k] as string);
  }

  const { model, samples } = spec.build(o);
  const runFiles = [CKPT, LOG, 'loss.png', 'eval.png', ...model.files];
  if (!meta) checkNewRunFolder(runDir, runFiles);
  if (meta && meta.samples !== samples) throw new TrainingError(`resume: ${o.data} holds ${samples} samples, the run was trained on ${meta.samples} (recorded in ${ckptPath})`);
  const holdout = o.holdout ?? defaultHoldout(samples);
  const held = heldOutIndices(samples, holdout);
  const heldSet = new Set(held);
  const trainIds = Array.from({ length: samples }, (_, i) => i).filter((i) => !heldSet.has(i));
  if (!trainIds.length) throw new ValueError(`${spec.command}: --holdout ${holdout} leaves no training samples of ${samples}`);

  const trainable = model.trainable;
  const opt = new AdamW([{ name: 'trainable', params: trainable, lr: o.lr, weightDecay: o.weightDecay }], { lr: o.lr, betas: [o.beta1, o.beta2], weightDecay: o.weightDecay });
  const ema = o.emaDecay > 0 ? new Ema(trainable, o.emaDecay) : null;
  const dataRng = new Rng(o.seed * 7919 + 17);
  const noiseRng = new Rng(o.seed * 104729 + 31);
  let order = shuffled(trainIds, dataRng);
  let pos = 0;
  let startStep = 0;
  if (meta) {
    const f = SafetensorsFile.open(ckptPath);
    try {
      loadState(f, ckptPath, {
        params: [{ prefix: 'model.', named: trainable }],
        ...(ema ? { ema: [{ prefix: 'ema.', ema, updates: meta.emaUpdates }] } : {}),
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
  const nextIds = (): number[] => {
    const ids: number[] = [];
    for (let b = 0; b < o.batch; b++) {
      if (pos >= order.length) {
        order = shuffled(trainIds, dataRng);
        pos = 0;
      }
      ids.push(order[pos++]!);
    }
    return ids;
  };

  const guard = meta ? null : new NewRunGuard(runDir, runFiles);
  let lastEval: Record<string, number> | null = null;
  try {
    sweepStaleTemps(runDir);
    resetLog(logPath, meta ? startStep : null);
    const plots = () => {
      try {
        const { steps, evals } = readLogRecords<{ step: number; loss: number }, { step: number; eval: Record<string, number> }>(logPath);
        const keys = Object.keys(steps[0] ?? {}).filter((k) => k === 'loss' || k.startsWith('loss_'));
        writeLossPlot(
          join(runDir, 'loss.png'),
          steps,
          keys.map((k) => ({ name: k, value: (r: Record<string, number>) => r[k] })),
        );
        if (evals.length) {
          const ek = Object.keys(evals[0]!.eval).filter((k) => k !== 'samples');
          writeLinePlotPng(join(runDir, 'eval.png'), {
            title: 'held-out objective (per evaluation)',
            xLabel: `evaluation (steps ${evals.map((e) => e.step).slice(0, 3).join(', ')}...)`,
            yLabel: 'loss',
            xScale: 1,
            series: ek.map((k) => ({ name: k, values: evals.map((e) => e.eval[k] ?? NaN) })),
          });
        }
      } catch (e) {
        cb.onMessage?.(`could not write plots: ${(e as Error).message}`);
      }
    };
    const save = (step: number) => {
      const m: Meta<O> = {
        format: spec.format,
        step,
        options: { ...o, out: undefined as unknown as string },
        dataRng: dataRng.state(),
        noiseRng: noiseRng.state(),
        order,
        pos,
        samples,
        adamSteps: opt.stepCount,
        emaUpdates: ema?.updates ?? 0,
        phase: model.meta,
      };
      writeCheckpoint(
        ckptPath,
        stateTensors({ params: [{ prefix: 'model.', named: trainable }], ...(ema ? { ema: [{ prefix: 'ema.', ema }] } : {}), adamw: [{ m: 'adam_m.', v: 'adam_v.', opt }] }),
        m,
      );
      model.exportWeights(runDir, step, ema);
      plots();
      guard?.disarm();
      cb.onCheckpoint?.(step, ckptPath);
    };
    const evaluate = (step: number) => {
      if (!held.length) return;
      const run = () => model.evaluate(held);
      const e = { ...(ema ? ema.withWeights(run) : run()), samples: held.length };
      lastEval = e;
      const rec = { step, eval: e };
      appendLine(logPath, rec);
      cb.onEval?.(rec);
    };
    cb.onStart?.({ startStep, steps: o.steps, samples: trainIds.length, heldOut: held.length, params: model.paramCount, trainable: trainable.reduce((s, [, t]) => s + t.size, 0), resumed: !!meta });
    const schedule = { kind: o.schedule, warmup: o.warmup, total: o.steps, minRatio: o.minLrRatio };
    type Out = { record: Record<string, unknown>; lossMean: number };
    const r = await runLoop<Out>({
      task: {
        // gradient accumulation: micro-batches 1..N-1 are backpropagated here with loss/N; the loop backpropagates the
        // last one (returned as loss/N), so the summed gradient is that of the mean loss over the N micro-batches
        forward: (step) => {
          const recs: Record<string, unknown>[] = [];
          let sum = 0;
          let last: Tensor | null = null;
          for (let i = 0; i < o.accum; i++) {
            const { loss, record } = model.micro(nextIds(), noiseRng);
            const v = loss.item();
            if (!Number.isFinite(v)) throw new TrainingError(`loss is ${v} at step ${step} (micro-batch ${i + 1} of ${o.accum}); stopping. Lower --lr or check the data.`);
            sum += v;
            recs.push(record);
            const scaled = o.accum === 1 ? loss : ops.mul(loss, 1 / o.accum);
            if (i < o.accum - 1) scaled.backward();
            else last = scaled;
          }
          const record: Record<string, unknown> = {};
          for (const k of Object.keys(recs[0]!)) {
            const vs = recs.map((x) => x[k]);
            record[k] = vs.every((x) => typeof x === 'number') ? (vs as number[]).reduce((a, b) => a + b, 0) / vs.length : vs.flat();
          }
          return { loss: last!, record, lossMean: sum / o.accum };
        },
        record: (base, out) => ({ ...base, loss: out.lossMean, ...out.record }),
      },
      startStep,
      steps: o.steps,
      opt,
      lr: (step, peak) => scheduledLr(step, peak, schedule),
      clip: o.clip,
      ema,
      ckptEvery: o.ckptEvery,
      evalEvery: held.length ? o.evalEvery : null,
      evaluate,
      logPath,
      save,
      checkpointPath: ckptPath,
      onStep: (rec) => cb.onStep?.(rec as Record<string, unknown> & { step: number; loss: number; lr: number }),
      onMessage: cb.onMessage,
      shouldStop: cb.shouldStop,
      onStoppedBeforeFirst: () => guard?.undo(),
    });
    return { ...r, runDir, lastEval };
  } catch (e) {
    guard?.undo();
    throw e;
  } finally {
    guard?.disarm();
  }
}

/** The records of a phase's log. */
export function readPhaseLog(runDir: string): { steps: (Record<string, unknown> & { step: number; loss: number })[]; evals: { step: number; eval: Record<string, number> }[] } {
  const r = readLogRecords<Record<string, unknown> & { step: number; loss: number }, { step: number; eval: Record<string, number> }>(join(runDir, LOG));
  return { steps: r.steps, evals: r.evals };
}
