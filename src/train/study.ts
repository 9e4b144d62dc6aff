/**
 * `dcvg study temporal`: the paper's temporal-design comparison at small scale. Three DC-AE-V with identical widths,
 * depths, compression (f32t4, 32 latent channels) and training budget differ only in how every conv treats time:
 * chunk-causal (chunks of 8 frames, bidirectional inside, causal across), causal, non-causal. Each trains on short
 * windows (two chunks = 16 frames) of the same clips with the same seed, data stream and recipe; then all three
 * reconstruct whole clips (160 frames, 10x the training length):
 *
 * - "stream": as each design can run on an unbounded video. Chunk-causal and causal: 16-frame windows in order with
 *   the feature cache (exact: equals the whole-clip pass, checked and reported). Non-causal has no exact streaming
 *   form, so it runs on independent 16-frame windows (temporal tiling without overlap).
 * - "whole": one pass over the whole clip (for non-causal: every frame sees its full temporal context).
 *
 * Outputs in --out: one training run folder per design (resumable), study.json (all numbers), per-frame PSNR plots
 * (psnr_stream.png, psnr_whole.png, chunk boundaries dashed) and report.md (tables).
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { MetricsAccumulator, tensorToUint8Frames } from '../metrics/metrics.js';
import { writeLinePlotPng } from '../metrics/plot.js';
import { configFromReference, topologyConfig, type DCAEVConfig, type TemporalMode } from '../models/dcaev/config.js';
import { DCAEV, loadWeights } from '../models/dcaev/autoencoder.js';
import type { FeatureCache } from '../models/dcaev/model.js';
import { ValueError } from '../errors.js';
import * as ops from '../tensor/ops.js';
import { Tensor, noGrad } from '../tensor/tensor.js';
import { TRAIN_DEFAULTS, readCheckpointMeta, readLog, trainAE, type TrainCallbacks } from './ae_trainer.js';
import { clipTensor, heldOutIndices, listMedia, loadClipSet, type Clip } from './data.js';

export const STUDY_DESIGNS: readonly TemporalMode[] = ['chunk_causal', 'causal', 'non_causal'];

export interface StudyOptions {
  data: string;
  out: string;
  /** training steps per design (identical budget) */
  steps: number;
  crop: number;
  /** training window: two chunks */
  frames: number;
  chunk: number;
  widths: number[];
  depths: number[];
  latentChannels: number;
  lr: number;
  warmup: number;
  seed: number;
  holdout?: number;
  stillProb: number;
  /** designs to train (default all); evaluation needs all three finished */
  designs: TemporalMode[];
  train: boolean;
  evaluate: boolean;
  /** evaluate on the first N frames of each clip (0: whole clips) */
  evalFrames: number;
  /** also evaluate on the training clips (at full length, 10x the training window) */
  evalTrainClips: boolean;
}

export const STUDY_DEFAULTS: Omit<StudyOptions, 'data' | 'out'> = {
  steps: 1500,
  crop: 96,
  frames: 16,
  chunk: 8,
  widths: [16, 32, 64, 64, 64, 64, 64],
  depths: [0, 1, 1, 1, 1, 1, 1],
  latentChannels: 32,
  lr: 5e-4,
  warmup: 200,
  seed: 0,
  stillProb: 0,
  designs: [...STUDY_DESIGNS],
  train: true,
  evaluate: true,
  evalFrames: 0,
  evalTrainClips: true,
};

export function studyConfig(o: Pick<StudyOptions, 'widths' | 'depths' | 'latentChannels' | 'chunk'>, mode: TemporalMode): DCAEVConfig {
  return topologyConfig({ name: `study-${mode}`, widths: o.widths, depths: o.depths, latentChannels: o.latentChannels, chunk: o.chunk, mode });
}

/** Reconstruction of one clip by one design in one mode. */
function reconstruct(model: DCAEV, x: Tensor, mode: 'stream' | 'whole', window: number): Tensor {
  return noGrad(() => {
    const T = x.shape[2]!;
    const padded = T % window === 0 ? x : ops.cat([x, ops.expand(ops.slice(x, 2, T - 1, T), [1, 3, Math.ceil(T / window) * window - T, x.shape[3]!, x.shape[4]!])], 2);
    let y: Tensor;
    if (mode === 'whole') y = model.decodeRaw(model.encodeRaw(padded));
    else {
      const streaming = model.config.encoder.projectIn.mode !== 'non_causal';
      const encCache: FeatureCache | null = streaming ? new Map() : null;
      const decCache: FeatureCache | null = streaming ? new Map() : null;
      const parts: Tensor[] = [];
      for (let t = 0; t < padded.shape[2]!; t += window) {
        const w = ops.contiguous(ops.slice(padded, 2, t, t + window));
        parts.push(model.decodeRaw(model.encodeRaw(w, encCache), decCache));
      }
      y = ops.cat(parts, 2);
    }
    return ops.contiguous(ops.slice(y, 2, 0, T));
  });
}

interface ModeResult {
  psnr: number;
  ssim: number;
  temporal: number;
  /** mean over clips of PSNR at each frame index */
  psnrCurve: number[];
  /** mean PSNR of frames right after a chunk boundary (first frame of each 8-frame chunk, frame 0 excluded) */
  boundaryPsnr: number;
  /** mean PSNR of the other frames */
  interiorPsnr: number;
  /** mean PSNR of the first and the last `window` frames (drift along the clip) */
  firstWindowPsnr: number;
  lastWindowPsnr: number;
}

function summarise(acc: MetricsAccumulator, curves: number[][], chunk: number, window: number): ModeResult {
  const r = acc.result();
  const n = Math.max(...curves.map((c) => c.length));
  const curve: number[] = [];
  for (let t = 0; t < n; t++) {
    const v = curves.filter((c) => t < c.length && Number.isFinite(c[t]!)).map((c) => c[t]!);
    curve.push(v.reduce((a, b) => a + b, 0) / Math.max(1, v.length));
  }
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
  const boundary = curve.filter((_, t) => t > 0 && t % chunk === 0);
  const interior = curve.filter((_, t) => t === 0 || t % chunk !== 0);
  return {
    psnr: r.psnr.mean,
    ssim: r.ssim.mean,
    temporal: r.temporal.mean,
    psnrCurve: curve,
    boundaryPsnr: mean(boundary),
    interiorPsnr: mean(interior),
    firstWindowPsnr: mean(curve.slice(0, window)),
    lastWindowPsnr: mean(curve.slice(-window)),
  };
}

export interface StudyResult {
  options: StudyOptions;
  heldOut: string[];
  train: string[];
  designs: Record<string, {
    steps: number;
    finalTrainLoss: number;
    /** max |stream - whole| over the clips (0 up to float rounding for the designs that stream exactly) */
    streamVsWholeMaxAbs: number;
    heldOut: Record<'stream' | 'whole', ModeResult>;
    trainClips?: Record<'stream' | 'whole', ModeResult>;
  }>;
}

export async function runTemporalStudy(opts: Partial<StudyOptions> & { data: string; out: string }, cb: TrainCallbacks & { onDesign?: (d: TemporalMode, phase: 'train' | 'eval') => void } = {}): Promise<StudyResult | null> {
  const o: StudyOptions = { ...STUDY_DEFAULTS, ...opts };
  checkStudyOptions(o);
  // Everything checked: create --out, and remove it again (when this call created it and nothing of value is in
  // it, i.e. it is empty) if the study fails.
  const created = !existsSync(o.out);
  mkdirSync(o.out, { recursive: true });
  try {
    return await studyIn(o, cb);
  } catch (e) {
    if (created) {
      try {
        rmdirSync(o.out); // only when empty: a design trained up to a checkpoint is kept (it resumes)
      } catch {
        /* not empty */
      }
    }
    throw e;
  }
}

/** Checks the study's options and its data folder (and that evaluation will have held-out clips) before any work. */
function checkStudyOptions(o: StudyOptions): void {
  if (typeof o.data !== 'string' || !o.data) throw new ValueError('study temporal needs --data <folder of clips>');
  if (typeof o.out !== 'string' || !o.out) throw new ValueError('study temporal needs --out <dir>');
  if (!Array.isArray(o.designs) || !o.designs.length) throw new ValueError(`study: --designs is empty (known: ${STUDY_DESIGNS.join(', ')})`);
  for (const d of o.designs) if (!STUDY_DESIGNS.includes(d)) throw new ValueError(`study: unknown design "${d}" (known: ${STUDY_DESIGNS.join(', ')})`);
  const posInt = (v: number, flag: string) => {
    if (!Number.isSafeInteger(v) || v < 1) throw new ValueError(`study: ${flag} must be a positive integer, got ${v}`);
  };
  const nonNegInt = (v: number, flag: string) => {
    if (!Number.isSafeInteger(v) || v < 0) throw new ValueError(`study: ${flag} must be an integer >= 0, got ${v}`);
  };
  posInt(o.steps, '--steps');
  posInt(o.crop, '--crop');
  posInt(o.frames, '--frames');
  posInt(o.chunk, 'chunk');
  nonNegInt(o.warmup, '--warmup');
  nonNegInt(o.evalFrames, '--eval-frames');
  if (o.holdout !== undefined) nonNegInt(o.holdout, '--holdout');
  if (!Number.isSafeInteger(o.seed)) throw new ValueError(`study: --seed must be an integer, got ${o.seed}`);
  if (!(Number.isFinite(o.lr) && o.lr > 0)) throw new ValueError(`study: --lr must be a finite number > 0, got ${o.lr}`);
  if (!(o.stillProb >= 0 && o.stillProb <= 1)) throw new ValueError(`study: --still-prob must be in [0, 1], got ${o.stillProb}`);
  if (o.frames % o.chunk !== 0) throw new ValueError(`study: --frames ${o.frames} must be a whole number of ${o.chunk}-frame chunks`);
  if (existsSync(o.out) && !statSync(o.out).isDirectory()) throw new ValueError(`study: --out ${o.out} is a file; the study needs a folder`);
  const { videos } = listMedia(o.data);
  const held = o.holdout ?? (videos.length >= 8 ? 3 : 0);
  heldOutIndices(videos.length, held); // throws when it would leave no training clip
  if (o.evaluate && held === 0)
    throw new ValueError(`study: evaluation needs held-out clips, but ${o.data} has ${videos.length} videos and --holdout is ${o.holdout ?? 'not given'} (pass --holdout N, or --no-eval)`);
}

/** The study's config.json of a design's run, read as a model config (a clear error when missing or damaged). */
function designConfig(dir: string): DCAEVConfig {
  const path = join(dir, 'config.json');
  try {
    const j = JSON.parse(readFileSync(path, 'utf8')) as { name?: unknown };
    return configFromReference(j, typeof j?.name === 'string' ? j.name : 'study');
  } catch (e) {
    throw new ValueError(`study: cannot read the model config ${path}: ${(e as Error).message}`);
  }
}

async function studyIn(o: StudyOptions, cb: TrainCallbacks & { onDesign?: (d: TemporalMode, phase: 'train' | 'eval') => void }): Promise<StudyResult | null> {
  const runDir = (d: TemporalMode) => join(o.out, d);

  if (o.train) {
    for (const d of o.designs) {
      cb.onDesign?.(d, 'train');
      const dir = runDir(d);
      let resume = false;
      if (existsSync(join(dir, 'checkpoint.safetensors'))) {
        const meta = readCheckpointMeta(dir);
        if (meta.step >= meta.options.steps) continue; // finished
        resume = true;
      }
      const common = {
        out: dir,
        steps: o.steps,
        batch: 1,
        frames: o.frames,
        crop: o.crop,
        lr: o.lr,
        warmup: o.warmup,
        seed: o.seed,
        holdout: o.holdout,
        stillProb: o.stillProb,
        evalEvery: o.steps,
        evalFrames: 32,
        ckptEvery: 250,
      };
      if (resume) await trainAE({ ...TRAIN_DEFAULTS, model: '', data: o.data, ...common, resume: true }, cb);
      else await trainAE({ ...TRAIN_DEFAULTS, model: studyConfig(o, d), data: o.data, ...common }, cb);
    }
  }
  if (!o.evaluate) return null;

  const missing = STUDY_DESIGNS.filter((d) => {
    if (!existsSync(join(runDir(d), 'checkpoint.safetensors'))) return true;
    const meta = readCheckpointMeta(runDir(d));
    return meta.step < meta.options.steps;
  });
  if (missing.length) throw new ValueError(`study: cannot evaluate yet, unfinished designs: ${missing.join(', ')} (train them first)`);

  const data = await loadClipSet(o.data, { holdout: o.holdout, maxFrames: o.evalFrames || undefined });
  const videos = (cs: Clip[]) => cs.filter((c) => !c.still);
  const result: StudyResult = { options: o, heldOut: data.heldOut.map((c) => c.name), train: videos(data.train).map((c) => c.name), designs: {} };
  for (const d of STUDY_DESIGNS) {
    cb.onDesign?.(d, 'eval');
    const model = new DCAEV(designConfig(runDir(d)));
    loadWeights(model, join(runDir(d), 'model.safetensors'));
    let maxDiff = 0;
    const evalSet = (clips: Clip[]) => {
      const out = {} as Record<'stream' | 'whole', ModeResult>;
      const recs = new Map<string, Tensor>();
      for (const mode of ['whole', 'stream'] as const) {
        const acc = new MetricsAccumulator({ height: clips[0]!.height, width: clips[0]!.width });
        const curves: number[][] = [];
        for (const c of clips) {
          const x = clipTensor(c);
          const y = reconstruct(model, x, mode, o.frames);
          if (mode === 'whole') recs.set(c.name, y);
          else if (d !== 'non_causal') {
            const a = y.readSync();
            const b = recs.get(c.name)!.readSync();
            for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
          }
          const of = tensorToUint8Frames(x)[0]!;
          const rf = tensorToUint8Frames(y)[0]!;
          acc.newClip();
          const before = acc.result().psnr.perFrame.length;
          for (let t = 0; t < of.length; t++) acc.add(of[t]!, rf[t]!);
          curves.push(acc.result().psnr.perFrame.slice(before));
        }
        out[mode] = summarise(acc, curves, o.chunk, o.frames);
      }
      return out;
    };
    const { steps } = readLog(join(runDir(d), 'train.jsonl'));
    const losses = steps.slice(-100).map((r) => r.loss);
    result.designs[d] = {
      steps: steps.length,
      finalTrainLoss: losses.reduce((a, b) => a + b, 0) / Math.max(1, losses.length),
      streamVsWholeMaxAbs: 0,
      heldOut: evalSet(data.heldOut),
    };
    if (o.evalTrainClips && videos(data.train).length) result.designs[d]!.trainClips = evalSet(videos(data.train));
    result.designs[d]!.streamVsWholeMaxAbs = d === 'non_causal' ? NaN : maxDiff;
  }
  writeStudyOutputs(o.out, result);
  return result;
}

const LABEL: Record<string, string> = { chunk_causal: 'chunk-causal', causal: 'causal', non_causal: 'non-causal' };

function writeStudyOutputs(dir: string, r: StudyResult): void {
  writeFileAtomic(join(dir, 'study.json'), JSON.stringify(r, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 1) + '\n');
  const chunk = r.options.chunk;
  for (const mode of ['stream', 'whole'] as const) {
    const n = Math.max(...STUDY_DESIGNS.map((d) => r.designs[d]!.heldOut[mode].psnrCurve.length));
    const markers: number[] = [];
    for (let t = chunk; t < n; t += chunk) markers.push(t);
    writeLinePlotPng(join(dir, `psnr_${mode}.png`), {
      title: `held-out clips, ${mode === 'stream' ? 'streamed (non-causal: independent 16-frame windows)' : 'whole-clip pass'}: PSNR per frame`,
      xLabel: 'frame',
      yLabel: 'PSNR dB',
      series: STUDY_DESIGNS.map((d) => ({ name: LABEL[d]!, values: r.designs[d]!.heldOut[mode].psnrCurve })),
      verticalMarkers: markers,
    });
  }
  const f = (v: number, p = 2) => (Number.isFinite(v) ? v.toFixed(p) : '—');
  const table = (set: 'heldOut' | 'trainClips', title: string) => {
    const lines = [
      `### ${title}`,
      '',
      '| design | mode | PSNR dB | SSIM | temporal err | PSNR after chunk boundary | PSNR inside chunks | first 16 frames | last 16 frames |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ];
    for (const d of STUDY_DESIGNS)
      for (const mode of ['stream', 'whole'] as const) {
        const m = r.designs[d]![set]?.[mode];
        if (!m) continue;
        lines.push(`| ${LABEL[d]} | ${mode} | ${f(m.psnr)} | ${f(m.ssim, 4)} | ${f(m.temporal, 3)} | ${f(m.boundaryPsnr)} | ${f(m.interiorPsnr)} | ${f(m.firstWindowPsnr)} | ${f(m.lastWindowPsnr)} |`);
      }
    return lines.join('\n');
  };
  const md = [
    `## Temporal-design study: results`,
    '',
    `Held-out clips: ${r.heldOut.join(', ')}; training clips: ${r.train.length}. Each design: ${r.options.steps} steps, batch 1, ` +
      `${r.options.frames}-frame windows (two ${chunk}-frame chunks), ${r.options.crop}x${r.options.crop} crops, lr ${r.options.lr}, seed ${r.options.seed}.`,
    '',
    table('heldOut', 'Held-out clips, whole length'),
    '',
    r.designs.chunk_causal!.trainClips ? table('trainClips', 'Training clips, whole length (seen only as 16-frame windows in training)') : '',
    '',
    '| design | final train loss (mean of last 100 steps) | max abs stream − whole |',
    '|---|---:|---:|',
    ...STUDY_DESIGNS.map((d) => `| ${LABEL[d]} | ${f(r.designs[d]!.finalTrainLoss, 4)} | ${d === 'non_causal' ? 'n/a (no exact streaming)' : r.designs[d]!.streamVsWholeMaxAbs.toExponential(1)} |`),
    '',
  ].join('\n');
  writeFileAtomic(join(dir, 'report.md'), md);
}
