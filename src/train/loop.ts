/**
 * The generic training loop every task runs on (src/train/ae_trainer.ts: DC-AE-V; src/train/dit_trainer.ts: the Wan
 * DiT with flow matching). See docs/training.md.
 *
 * One step: the task's forward pass gives a scalar loss (a NaN or Inf stops the run with a TrainingError naming the
 * last checkpoint) -> backward -> clip the global gradient norm -> AdamW at the scheduled learning rate -> EMA update
 * -> the task's extra work (e.g. a discriminator step) -> one line in train.jsonl. Every `evalEvery` steps (and at
 * the end) the task evaluates; every `ckptEvery` steps (and at the end, and when stopped) the task's checkpoint is
 * written. `shouldStop` is polled between steps (the event loop runs there, so signal handlers are serviced): a stop
 * finishes the current step, writes a checkpoint and returns.
 *
 * The run folder: a new run refuses a folder holding any of its files; what a new run creates is removed again if it
 * fails or the process exits before its first checkpoint (such a run cannot be resumed).
 */
import { existsSync, mkdirSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { TrainingError, ValueError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { CKPT } from './checkpoint.js';
import { appendLine } from './log.js';
import type { Ema } from './ema.js';
import { AdamW, clipGradNorm } from './optim.js';
import { lrAt, type LrSchedule } from './schedule.js';

/**
 * What a new run creates (its folder and the folders above it that did not exist, and its files), removed again if
 * the run fails or the process exits before the first checkpoint. Disarmed by the first checkpoint.
 */
export class NewRunGuard {
  private readonly createdDirs: string[] = [];
  private armed = true;
  private readonly onExit = () => this.undo();

  constructor(
    private readonly runDir: string,
    private readonly runFiles: readonly string[],
  ) {
    // the folders mkdir -p will create, outermost first
    for (let d = resolve(runDir); !existsSync(d); d = resolve(d, '..')) this.createdDirs.unshift(d);
    mkdirSync(runDir, { recursive: true });
    process.on('exit', this.onExit); // a second Ctrl-C exits from its signal handler
  }

  /** The run has a checkpoint: from now on it is kept whatever happens. */
  disarm(): void {
    this.armed = false;
    process.off('exit', this.onExit);
  }

  /** Removes the run's files and the folders this run created (only when empty: never what someone else put there). */
  undo(): void {
    if (!this.armed) return;
    this.disarm();
    for (const f of this.runFiles) {
      try {
        unlinkSync(join(this.runDir, f));
      } catch {
        /* not written yet */
      }
    }
    for (const d of [...this.createdDirs].reverse()) {
      try {
        rmdirSync(d);
      } catch {
        break; // not empty: keep it and the folders above
      }
    }
  }
}

/** A new run's --out: a new folder, or an existing one holding none of a run's files (never overwrite a user's file). */
export function checkNewRunFolder(runDir: string, runFiles: readonly string[]): void {
  if (!existsSync(runDir)) return;
  if (!statSync(runDir).isDirectory()) throw new ValueError(`--out ${runDir} is a file; a run needs a folder (a new one, or an empty one)`);
  if (existsSync(join(runDir, CKPT))) throw new TrainingError(`${runDir} already holds a training run; pass --resume to continue it, or choose another --out`);
  const present = runFiles.filter((f) => existsSync(join(runDir, f)));
  if (present.length)
    throw new ValueError(`--out ${runDir} already holds ${present.join(', ')} (but no checkpoint to resume); choose another --out, or remove them to start a new run there`);
}

export type ScheduleKind = 'cosine' | 'constant';

/** Learning rate of update `step` for a group whose peak is `peak`: linear warmup, then cosine to the floor or constant. */
export function scheduledLr(step: number, peak: number, s: { kind: ScheduleKind; warmup: number; total: number; minRatio: number }): number {
  const sched: LrSchedule = { lr: peak, warmup: s.warmup, total: s.total, minRatio: s.kind === 'constant' ? 1 : s.minRatio };
  return lrAt(step, sched);
}

/** The base fields of every step record; a task adds its own (its loss terms). */
export interface BaseStepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  ms: number;
}

/** One training step of a task: the forward pass (building the autograd graph) and, after the update, extras. */
export interface TaskStep<Out> {
  /** forward pass for update `step`; `loss` must be a one-element tensor that requires grad */
  forward(step: number): Out & { loss: Tensor };
  /** after the optimizer and EMA updates (e.g. a discriminator step) */
  afterUpdate?(step: number, out: Out & { loss: Tensor }): void;
  /** the log line of the step from its base fields and the forward pass's outputs (key order as the task wants) */
  record(base: BaseStepRecord, out: Out & { loss: Tensor }): BaseStepRecord & Record<string, unknown>;
}

export interface LoopSpec<Out> {
  task: TaskStep<Out>;
  /** steps done before (0 for a new run) and the step to stop after */
  startStep: number;
  steps: number;
  opt: AdamW;
  /** learning rate of each group for update `step` from its peak */
  lr: (step: number, peak: number) => number;
  /** max global gradient norm (0 = no clipping, the norm is still measured and logged) */
  clip: number;
  ema: Ema | null;
  ckptEvery: number;
  evalEvery: number | null;
  logPath: string;
  save(step: number): void;
  evaluate?(step: number): void;
  /** the last checkpoint on disk, for the NaN message */
  checkpointPath: string;
  onStep?: (r: BaseStepRecord & Record<string, unknown>) => void;
  onMessage?: (msg: string) => void;
  shouldStop?: () => boolean;
  /** called when a new run stops before its first step (nothing worth keeping) */
  onStoppedBeforeFirst?: () => void;
}

/** Runs the steps; returns the last step done and whether the run was stopped before its end. */
export async function runLoop<Out>(s: LoopSpec<Out>): Promise<{ steps: number; stoppedEarly: boolean }> {
  let lastSaved = s.startStep;
  const save = (step: number) => {
    s.save(step);
    lastSaved = step;
  };
  const stopNow = (done: number) => {
    if (done > lastSaved) save(done);
    s.onMessage?.(done > 0 ? `stopped after step ${done}; continue with --resume` : 'stopped before the first step; nothing written');
    return { steps: done, stoppedEarly: true };
  };
  const params = s.opt.params;
  for (let step = s.startStep + 1; step <= s.steps; step++) {
    // Let the event loop run between steps, so signal handlers (Ctrl-C -> checkpoint and stop) are serviced; a stop
    // asked for during the previous step takes effect here, before another step.
    await new Promise((r) => setImmediate(r));
    if (s.shouldStop?.()) {
      if (step - 1 === 0) s.onStoppedBeforeFirst?.();
      return stopNow(step - 1);
    }
    const t0 = performance.now();
    s.opt.schedule((peak) => s.lr(step, peak));
    const lr = s.opt.lr;
    const out = s.task.forward(step);
    const lossV = out.loss.item();
    if (!Number.isFinite(lossV))
      throw new TrainingError(`loss is ${lossV} at step ${step}; stopping (last checkpoint: ${existsSync(s.checkpointPath) ? s.checkpointPath : 'none'}). Lower --lr or check the data.`);
    out.loss.backward();
    const gradNorm = s.clip > 0 ? clipGradNorm(params, s.clip) : gradNormOf(params);
    s.opt.step();
    s.opt.zeroGrad();
    s.ema?.update();
    s.task.afterUpdate?.(step, out);
    const record = s.task.record({ step, loss: lossV, lr, gradNorm, ms: Math.round(performance.now() - t0) }, out);
    appendLine(s.logPath, record);
    s.onStep?.(record);
    const stop = s.shouldStop?.() ?? false;
    const last = step === s.steps;
    if (s.evaluate && s.evalEvery !== null && (step % s.evalEvery === 0 || last)) s.evaluate(step);
    if (step % s.ckptEvery === 0 || last) save(step);
    if (stop && !last) return stopNow(step);
  }
  return { steps: s.steps, stoppedEarly: false };
}

/** The global gradient norm without clipping (what clipGradNorm returns). */
function gradNormOf(params: readonly Tensor[]): number {
  return clipGradNorm(params, Number.MAX_VALUE);
}
