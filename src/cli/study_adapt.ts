/**
 * `dcvg study adapt`: the small-scale AE-Adapt-V study of issue #21, as a resumable graph of stages over one output
 * folder. Every training and encoding step is a real `dcvg` command (train-ae, latents, train-dit, adapt ...) run
 * in-process with arguments built from the study config; the study records each command line in commands.jsonl, so
 * the report can list exactly what ran.
 *
 * Stages (each in its own subfolder of --out, marked complete by `<stage>/done.json`, skipped when complete):
 *   data          shapes-world training / held-out videos with captions (dcvg data shapes), and the fixed evaluation
 *                 prompt set
 *   autoencoders  the base autoencoder (the Wan-VAE topology, dcvg train-ae --model wan-vae:...) and DC-AE-V (dcvg
 *                 train-ae), then each one's latent normalisation measured on training clips: the Wan VAE's per-channel
 *                 latents_mean / latents_std (of mu), DC-AE-V's scaling factor (1 / std of its latents)
 *   text          a SentencePiece-unigram tokenizer from the training captions' words and a small umT5 with frozen
 *                 random weights (umt5RandomState; the reference's init scales)
 *   latents       dcvg latents with DC-AE-V (--dc-ae), the base autoencoder as the Wan VAE (--wan-vae) and the text
 *                 encoder: latents/adapt (DC latents + the base latents as wan_latents); derived: latents/base (the
 *                 base latents as a train-dit folder)
 *   base          the base Wan-topology DiT (patch 1x2x2) trained with flow matching (dcvg train-dit) in segments,
 *                 each followed by an evaluation (generate + score the prompt set); stops at the target or budget
 *   adapt         AE-Adapt-V: align (phase 1), assemble, tune (phase 2, with evaluations), lora (phase 3, evaluated
 *                 through adapt merge)
 *   arms          (a) without alignment, (b) full fine-tuning instead of LoRA, (c) the DC DiT from scratch, (d) latency
 *   report        report.md, plots and contact sheets from the folder (src/study/report.ts)
 *
 * Resuming: a study folder keeps its config (study.json). Running again on the folder continues it: complete stages
 * are skipped, complete evaluations kept, and an interrupted training run continues through its trainer's exact
 * --resume (Ctrl-C / SIGTERM stop the running trainer after its current step with a checkpoint; the study then
 * stops). The final outputs equal those of an uninterrupted run (tested).
 *
 * This orchestration lives in src/cli because it runs the CLI's commands; its library pieces are in src/study
 * (config.ts, world.ts, report.ts).
 */
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { SafetensorsFile, saveSafetensors, type WritableTensor } from '../io/safetensors.js';
import { readAllFrames } from '../io/video.js';
import { encodePng } from '../metrics/plot.js';
import { tensorToUint8Frames } from '../metrics/metrics.js';
import { configFromReference, configToReference } from '../models/dcaev/config.js';
import { parseWanConfig, wanConfigToJson, type WanConfig } from '../models/wan/config.js';
import { wanVaeConfigToJson } from '../models/wan_vae/config.js';
import { WanVAE } from '../models/wan_vae/model.js';
import { loadWanVaeWeights } from '../models/wan_vae/run.js';
import { adaptFrameCounts } from '../adapt/latents.js';
import { resolveAEConfig } from '../train/ae_models.js';
import { useClipCache } from '../train/data.js';
import { resolveUmt5Config, umt5ConfigToJson, umt5RandomState } from '../models/umt5/index.js';
import { asAutoencoder, loadAutoencoder, type VideoAutoencoder } from '../pipelines/autoencoder.js';
import { defaultEncoderLoaders } from '../pipelines/encoders.js';
import { decodeInto, denoise, encodePrompts, planGeneration } from '../pipelines/generation.js';
import { folderModels, resolveModelFolder } from '../pipelines/model_folder.js';
import { initStudent, PATCH_EMBEDDING_FORMAT } from '../adapt/align.js';
import { DcvgError, ValueError } from '../errors.js';
import { Rng } from '../tensor/random.js';
import { noGrad, type Tensor } from '../tensor/tensor.js';
import { cmdTrainAE, cmdTrainDiT } from './train_cmds.js';
import { cmdAdapt, cmdLatents } from './adapt_cmds.js';
import { cmdData } from './shapes_cmds.js';
import { aeSpecInfo, dcTopologyConfig, resolveStudyConfig, type AeSpec, type DitRunConfig, type EvalConfig, type StudyConfig } from '../study/config.js';
import { readScores, shellQuote, type ScoreRecord } from '../study/report.js';
import { gateAutoencoder } from '../study/ae_gate.js';
import { evalPromptSet, readShapesData, scoreClip, writeCaptionTokenizer, SHAPES_FRAMES, SHAPES_SIZE, type EvalPrompt, type RenderedVideo } from '../study/world.js';

export const STAGES = ['data', 'autoencoders', 'text', 'latents', 'base', 'adapt', 'arms', 'report'] as const;
export type StageName = (typeof STAGES)[number];

/** What each stage reads from earlier ones. */
const NEEDS: Record<StageName, StageName[]> = {
  data: [],
  autoencoders: ['data'],
  text: ['data'],
  latents: ['autoencoders', 'text'],
  base: ['latents'],
  adapt: ['base'],
  arms: ['adapt'],
  report: ['arms'],
};

/** Thrown when a trainer was stopped by a signal (its checkpoint written): the study stops; run it again to resume. */
export class StudyInterrupted extends DcvgError {
  constructor(
    readonly exitCode: number,
    where: string,
  ) {
    super('ERR_DCVG_STUDY_INTERRUPTED', `stopped during ${where}; run the same command again to resume`);
    this.name = 'StudyInterrupted';
  }
}

export interface StudyCallbacks {
  /** one progress line (stage starts, evaluations, skips) */
  log?: (line: string) => void;
  /** polled between units of work (evaluation clips, stages) */
  shouldStop?: () => boolean;
  /** --log-every for the trainers' progress lines */
  logEvery?: number;
}

export interface StudyRunOptions {
  out: string;
  config: StudyConfig;
  stages?: StageName[];
}

type Ctx = {
  out: string;
  c: StudyConfig;
  cb: StudyCallbacks;
  stage: StageName;
};

const J = (p: string) => JSON.parse(readFileSync(p, 'utf8'));
const writeJson = (p: string, v: unknown) => {
  mkdirSync(dirname(p), { recursive: true });
  writeFileAtomic(p, JSON.stringify(v, null, 1) + '\n');
};

// ---------------------------------------------------------------------------------------------------------------
// running dcvg commands

const COMMANDS: Record<string, (args: string[], out: (s: string) => void) => Promise<number>> = {
  data: cmdData,
  'train-ae': cmdTrainAE,
  'train-dit': cmdTrainDiT,
  latents: cmdLatents,
  adapt: cmdAdapt,
};

/**
 * Runs `dcvg <argv>` in-process, recording it in commands.jsonl (not when it only regenerates files a stage already
 * made: `record` false); returns its stdout. A stop by signal becomes StudyInterrupted.
 */
async function dcvg(ctx: Ctx, argv: string[], record = true): Promise<string> {
  if (record) appendFileSync(join(ctx.out, 'commands.jsonl'), JSON.stringify({ stage: ctx.stage, argv }) + '\n');
  ctx.cb.log?.(`[${ctx.stage}] dcvg ${argv.map(shellQuote).join(' ')}`);
  const chunks: string[] = [];
  let code: number;
  try {
    code = await COMMANDS[argv[0]!]!(argv.slice(1), (s) => void chunks.push(s));
  } catch (e) {
    if (e instanceof DcvgError) throw new ValueError(`study adapt, stage ${ctx.stage}: dcvg ${argv.slice(0, 2).join(' ')} failed: ${e.message}`);
    throw e;
  }
  if (code === 130 || code === 143) throw new StudyInterrupted(code, `stage ${ctx.stage} (dcvg ${argv[0]})`);
  if (code !== 0) throw new ValueError(`study adapt, stage ${ctx.stage}: dcvg ${argv.join(' ')} exited with ${code}`);
  return chunks.join('');
}

/** Lets pending signal handlers run (they fire only when the event loop turns), then stops if one asked to. */
const turn = () => new Promise((r) => setImmediate(r));
async function checkStop(ctx: Ctx, where: string): Promise<void> {
  await turn();
  if (ctx.cb.shouldStop?.()) throw new StudyInterrupted(130, where);
}

/** The step a safetensors file of a run folder records (read by `step` from its metadata), or null without the file. */
function recordedStep(p: string, step: (metadata: Record<string, string>) => unknown, where: string): number | null {
  if (!existsSync(p)) return null;
  const f = SafetensorsFile.open(p);
  try {
    const s = step(f.metadata);
    if (!Number.isSafeInteger(s)) throw new ValueError(`${p}: no step in its ${where}`);
    return s as number;
  } finally {
    f.close();
  }
}

/** The step of a run folder's checkpoint, or null when it has none. */
export function checkpointStep(runDir: string): number | null {
  return recordedStep(join(runDir, 'checkpoint.safetensors'), (m) => (JSON.parse(m.dcvg_train ?? '{}') as { step?: number }).step, 'dcvg_train metadata');
}

/**
 * The step of the weights a run folder's trainer wrote last (model.safetensors' `step` metadata, written with every
 * checkpoint by every dcvg trainer), or null without them.
 */
export function weightsStep(runDir: string): number | null {
  return recordedStep(join(runDir, 'model.safetensors'), (m) => (m.step !== undefined && Number(m.step) >= 0 ? Number(m.step) : undefined), 'metadata');
}

/**
 * Trains `runDir` up to `steps`: a new run with `startArgs` (the command and its settings, without --out / --steps),
 * or `--resume` of the one there. A folder left by a run stopped before its first checkpoint is started again. A
 * finished run needs only its weights: a study folder carried to another machine keeps the checkpoints of unfinished
 * runs alone (docs/studies/adapt.md "Across machines"), and a run whose checkpoint is missing but whose weights are at
 * `steps` is complete.
 */
async function trainTo(ctx: Ctx, runDir: string, steps: number, startArgs: string[], final = true): Promise<void> {
  const cur = checkpointStep(runDir);
  const common = ['--out', runDir, '--steps', String(steps), '--log-every', String(ctx.cb.logEvery ?? 50)];
  if (cur === null) {
    const w = weightsStep(runDir);
    if (w !== steps) {
      if (w !== null && w > 0)
        throw new ValueError(`study adapt: ${runDir} has weights at step ${w} of ${steps} but no checkpoint.safetensors to continue from (was the folder copied without it?); restore the checkpoint, or delete the folder to train the run again`);
      rmSync(runDir, { recursive: true, force: true });
      await dcvg(ctx, [...startArgs, ...common]);
    }
  } else if (cur < steps) await dcvg(ctx, [...startArgs.slice(0, startArgs[0] === 'adapt' ? 2 : 1), ...common, '--resume']);
  else if (cur > steps) throw new ValueError(`study adapt: ${runDir} is at step ${cur}, past the ${steps} this study asks for (was the config changed?)`);
  // at its last step: a copy of the folder needs its weights only (checkpointsToCarry)
  if (final) writeJson(join(runDir, FINISHED), { steps });
}

/** Marks a run folder the study will not train further (written by trainTo). */
const FINISHED = 'finished.json';

/**
 * Whether a run folder is finished: its finished.json names the step its checkpoint is at (a run finished at a lower
 * budget and resumed past it, or one whose budget was raised, is not).
 */
function finishedAt(runDir: string): boolean {
  const f = join(runDir, FINISHED);
  if (!existsSync(f)) return false;
  return (J(f) as { steps?: number }).steps === checkpointStep(runDir);
}

/**
 * The trainer checkpoints that continuing the study from a copy of its folder needs (docs/studies/adapt.md "Across
 * machines"), relative to `out`: those of the runs in stages not complete, except finished runs (their weights are
 * enough: trainTo). The rendered videos and latents are remade (restoreRegenerated); checkpoints of finished runs and
 * of complete stages are never read again.
 */
export function checkpointsToCarry(out: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name === 'checkpoint.safetensors' && !finishedAt(d)) found.push(relative(out, join(d, e.name)));
    }
  };
  for (const s of STAGES) if (s !== 'report' && !stageDone(out, s) && existsSync(join(out, s))) walk(join(out, s));
  return found.sort();
}

// ---------------------------------------------------------------------------------------------------------------
// stage helpers

function stageDone(out: string, s: StageName): boolean {
  return existsSync(join(out, s, 'done.json'));
}

/**
 * The autoencoder model spec as a train-ae --model argument (objects written to a file beside the runs; a Wan-VAE
 * config object as `wan-vae:<file>`).
 */
export function aeModelArg(spec: AeSpec, dir: string, name: string): string {
  if (typeof spec === 'string') return spec;
  const path = join(dir, `${name}.model.json`);
  if ('dcaev_topology' in spec) {
    const cfg = dcTopologyConfig(spec.dcaev_topology as Record<string, unknown>, `study-${name}`);
    writeJson(path, configToReference(cfg));
    return path;
  }
  writeJson(path, spec);
  return `wan-vae:${path}`;
}

/** A trained autoencoder: its config file (with the measured normalisation) and weights, and its family. */
interface AeInfo {
  family: 'dc-ae-v' | 'wan-vae';
  config: string;
  weights: string;
  channels: number;
  spatial: number;
  temporal: number;
  /** DC-AE-V: 1 / std of its latents; null for the Wan VAE (per-channel latents_mean / latents_std instead) */
  scalingFactor: number | null;
  /** Wan VAE: the measured per-channel mean / std of mu */
  latentsMean?: number[];
  latentsStd?: number[];
}

/** The per-channel mean and std of an autoencoder's latents over (up to 8) clips' first `frames` frames, and over all values. */
async function latentMoments(ae: VideoAutoencoder, clipsDir: string, clips: RenderedVideo[], frames: number): Promise<{ mean: number[]; std: number[]; all: { mean: number; std: number } }> {
  const C = ae.latentChannels;
  const s = new Float64Array(C);
  const s2 = new Float64Array(C);
  let per = 0;
  for (const v of clips.slice(0, 8)) {
    const x = await readAllFrames(join(clipsDir, v.file), { maxFrames: frames });
    const lat = noGrad(() => ae.encodeClip(x).latent);
    const z = lat.readSync();
    const inner = z.length / C; // N = 1
    for (let c = 0; c < C; c++)
      for (let i = c * inner; i < (c + 1) * inner; i++) {
        s[c] += z[i]!;
        s2[c] += z[i]! * z[i]!;
      }
    per += inner;
  }
  const sd = (a: number, b: number, n: number) => Math.sqrt(Math.max(b / n - (a / n) ** 2, 1e-12));
  const tot = (a: Float64Array) => a.reduce((x, y) => x + y, 0);
  return {
    mean: Array.from(s, (a) => +(a / per).toPrecision(6)),
    std: Array.from(s, (a, c) => +sd(a, s2[c]!, per).toPrecision(6)),
    all: { mean: tot(s) / (per * C), std: sd(tot(s), tot(s2), per * C) },
  };
}

/**
 * The latent normalisation of a trained autoencoder, measured on (up to 8) training clips of the frames `dcvg
 * latents` encodes, so the DiTs see latents of about zero mean and unit variance (what the released models' constants
 * do), written into a copy of its config that `dcvg latents` and the model folders use:
 * - the Wan VAE: per-channel latents_mean / latents_std of mu (its encode gives (mu - mean) / std and its decode
 *   inverts it, as the released Wan2.1 VAE's constants);
 * - DC-AE-V: the scaling factor 1 / std over all its latents.
 */
async function measureScaling(runDir: string, clipsDir: string, clips: RenderedVideo[], outConfig: string, latentFrames: number): Promise<AeInfo> {
  const weights = join(runDir, 'model.safetensors');
  const raw = J(join(runDir, 'config.json')) as Record<string, unknown>;
  const { family, config } = resolveAEConfig(join(runDir, 'config.json'));
  if (family === 'wan-vae') {
    // the raw mu: the run's config without normalisation
    const C = config.z_dim;
    const m = new WanVAE({ ...config, latents_mean: new Array<number>(C).fill(0), latents_std: new Array<number>(C).fill(1) });
    loadWanVaeWeights(m, weights);
    const ae = asAutoencoder(m);
    const mo = await latentMoments(ae, clipsDir, clips, adaptFrameCounts(latentFrames, ae.temporal, ae.temporal).wan);
    writeJson(outConfig, { name: `study-${basename(runDir)}`, ...wanVaeConfigToJson({ ...config, latents_mean: mo.mean, latents_std: mo.std }) });
    return { family, config: outConfig, weights, channels: C, spatial: ae.spatial, temporal: ae.temporal, scalingFactor: null, latentsMean: mo.mean, latentsStd: mo.std };
  }
  const ae = loadAutoencoder({ weights }, 'study adapt');
  const sf = +(1 / (await latentMoments(ae, clipsDir, clips, latentFrames * ae.temporal)).all.std).toPrecision(6);
  const cfg = configFromReference(raw, `study-${basename(runDir)}`, join(runDir, 'config.json'));
  writeJson(outConfig, configToReference({ ...cfg, scalingFactor: sf }));
  return { family, config: outConfig, weights, channels: ae.latentChannels, spatial: ae.spatial, temporal: ae.temporal, scalingFactor: sf };
}




/**
 * A latent folder made of tensors of others, shard by shard (they must cover the same clips in the same shards):
 * `parts` maps an output key to [folder, key]; the null embedding and clip list come from `textFrom`.
 */
function combineLatents(out: string, parts: Record<string, [string, string]>, textFrom: string): void {
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const m = J(join(textFrom, 'manifest.json')) as { shards: string[]; null_context?: string; clips: { file: string }[] };
  for (const [k, [dir]] of Object.entries(parts)) {
    const o = J(join(dir, 'manifest.json')) as { shards: string[]; clips: { file: string }[] };
    if (JSON.stringify(o.clips.map((c) => c.file)) !== JSON.stringify(m.clips.map((c) => c.file)) || o.shards.length !== m.shards.length)
      throw new ValueError(`study adapt: ${dir} and ${textFrom} do not hold the same clips (for "${k}")`);
  }
  for (const shard of m.shards) {
    const t: Record<string, WritableTensor> = {};
    const files: SafetensorsFile[] = [];
    try {
      for (const [k, [dir, key]] of Object.entries(parts)) {
        const f = SafetensorsFile.open(join(dir, shard));
        files.push(f);
        t[k] = f.tensor(key);
      }
      const f = SafetensorsFile.open(join(textFrom, shard));
      files.push(f);
      t.context = f.tensor('context');
      saveSafetensors(join(tmp, shard), t, { metadata: { clips: f.metadata.clips ?? '[]' } });
    } finally {
      for (const f of files) f.close();
    }
  }
  if (m.null_context) copyFileSync(join(textFrom, m.null_context), join(tmp, m.null_context));
  writeJson(join(tmp, 'manifest.json'), { ...m, combined_from: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, v.join('#')])) });
  rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out);
}

// ---------------------------------------------------------------------------------------------------------------
// model folders and evaluation

interface FolderParts {
  ditWeights: string;
  ditConfig: WanConfig;
  ae: AeInfo;
  textDir: string;
}

/** A Wan-layout model folder (docs/generate.md) for `dcvg generate` and the evaluations. */
export function writeModelFolder(dir: string, p: FolderParts): void {
  mkdirSync(join(dir, 'google', 'umt5-xxl'), { recursive: true });
  writeJson(join(dir, 'config.json'), { _class_name: 'WanModel', ...wanConfigToJson(p.ditConfig) });
  copyFileSync(p.ditWeights, join(dir, 'diffusion_pytorch_model.safetensors'));
  copyFileSync(join(p.textDir, 'umt5.safetensors'), join(dir, 'models_t5_umt5-xxl-enc-bf16.safetensors'));
  copyFileSync(join(p.textDir, 'umt5.json'), join(dir, 'models_t5_umt5-xxl-enc-bf16.json'));
  copyFileSync(join(p.textDir, 'tokenizer', 'tokenizer.json'), join(dir, 'google', 'umt5-xxl', 'tokenizer.json'));
  const stem = p.ae.family === 'wan-vae' ? 'Wan2.1_VAE' : 'dc-ae-v-study';
  copyFileSync(p.ae.weights, join(dir, `${stem}.safetensors`));
  copyFileSync(p.ae.config, join(dir, `${stem}.json`));
}

export interface EvalOutcome {
  record: ScoreRecord;
  clips: { caption: string; split: string; seed: number; accuracy: number; allCorrect: boolean }[];
  /** seed-0 frames of each prompt (for contact sheets) */
  sheetFrames: Uint8Array[][];
  seconds: { denoise: number; decode: number };
  tokens: number;
}

/** Generates every (prompt, seed) of the set with the folder's models (src/pipelines) and scores the clips. */
export async function evaluateFolder(dir: string, prompts: EvalPrompt[], ev: EvalConfig, seed0: number, shouldStop?: () => boolean): Promise<EvalOutcome> {
  const models = folderModels(resolveModelFolder(dir), defaultEncoderLoaders);
  const cfg = models.ditConfig;
  const plan = planGeneration(cfg, models.aeGeometry, { frames: SHAPES_FRAMES, width: SHAPES_SIZE, height: SHAPES_SIZE }, 't2v');
  const enc = await encodePrompts(models, [...prompts.map((p) => p.caption), ''], cfg.text_len, cfg.text_dim, null);
  const nullCtx = enc.embeddings[prompts.length]!;
  const dit = await models.dit();
  const ae = await models.autoencoder();
  const clips: EvalOutcome['clips'] = [];
  const sheetFrames: Uint8Array[][] = [];
  const seconds = { denoise: 0, decode: 0 };
  for (let i = 0; i < prompts.length; i++) {
    for (let s = 0; s < ev.seeds; s++) {
      await turn();
      if (shouldStop?.()) throw new StudyInterrupted(130, `an evaluation of ${dir}`);
      const seed = seed0 + s;
      let t = performance.now();
      const z = denoise(dit, plan, enc.embeddings[i]!, nullCtx, { steps: ev.steps, guidance: ev.guidance, shift: ev.shift, seed, sampler: ev.sampler });
      seconds.denoise += (performance.now() - t) / 1000;
      t = performance.now();
      const frames: Uint8Array[] = [];
      await decodeInto(ae, z, plan, { write: async (y: Tensor) => void frames.push(...tensorToUint8Frames(y)[0]!.map((f) => Uint8Array.from(f))) });
      seconds.decode += (performance.now() - t) / 1000;
      const sc = scoreClip(frames, prompts[i]!.attrs);
      clips.push({ caption: prompts[i]!.caption, split: prompts[i]!.split, seed, accuracy: sc.accuracy, allCorrect: sc.allCorrect });
      if (s === 0) sheetFrames.push(frames);
    }
  }
  const agg = (split: string) => {
    const cs = clips.filter((c) => c.split === split);
    if (!cs.length) return null;
    return { accuracy: +((100 * cs.reduce((a, c) => a + c.accuracy, 0)) / cs.length).toFixed(3), allCorrect: +((100 * cs.filter((c) => c.allCorrect).length) / cs.length).toFixed(3), clips: cs.length };
  };
  return { record: { step: 0, train: agg('train'), heldOut: agg('held-out') }, clips, sheetFrames, seconds, tokens: plan.tokens };
}

/** A PNG grid: one row per clip, every second frame across (128x128 each). */
export function contactSheet(rows: Uint8Array[][], every = 2): Buffer {
  const S = SHAPES_SIZE;
  const cols = Math.ceil((rows[0]?.length ?? 1) / every);
  const W = cols * S;
  const H = rows.length * S;
  const rgb = new Uint8Array(W * H * 3);
  rows.forEach((frames, r) => {
    for (let c = 0; c < cols; c++) {
      const f = frames[c * every];
      if (!f) continue;
      for (let y = 0; y < S; y++) rgb.set(f.subarray(y * S * 3, (y + 1) * S * 3), ((r * S + y) * W + c * S) * 3);
    }
  });
  return encodePng(W, H, rgb);
}

interface EvalRun {
  /** run folder of the trainer */
  runDir: string;
  /** where scores.jsonl, clips-N.json and sheet-N.png go */
  evalDir: string;
  budget: DitRunConfig | { steps: number; evalEvery: number; target?: number };
  startArgs: string[];
  /** the DiT weights to evaluate once the run is at `step` (may run a command, e.g. adapt merge) */
  weightsAt: (step: number) => Promise<string>;
  ditConfig: WanConfig;
  ae: AeInfo;
  /** also evaluate the starting weights (step 0) */
  evalInit?: string;
}

/** Trains a run in segments of evalEvery steps with an evaluation after each (kept across resumes). Returns the scores. */
async function trainWithEvals(ctx: Ctx, r: EvalRun, prompts: EvalPrompt[]): Promise<ScoreRecord[]> {
  mkdirSync(r.evalDir, { recursive: true });
  const points: number[] = [];
  if (r.evalInit) points.push(0);
  for (let k = r.budget.evalEvery; k < r.budget.steps; k += r.budget.evalEvery) points.push(k);
  points.push(r.budget.steps);
  const target = 'target' in r.budget ? (r.budget.target ?? 0) : 0;
  let scores = readScores(r.evalDir);
  for (const k of points) {
    const have = scores.find((s) => s.step === k);
    if (!have) {
      if (k > 0) await trainTo(ctx, r.runDir, k, r.startArgs, k === r.budget.steps);
      await checkStop(ctx, `stage ${ctx.stage}`);
      const weights = k === 0 ? r.evalInit! : await r.weightsAt(k);
      const folder = join(r.evalDir, 'model');
      rmSync(folder, { recursive: true, force: true });
      writeModelFolder(folder, { ditWeights: weights, ditConfig: r.ditConfig, ae: r.ae, textDir: join(ctx.out, 'text') });
      const e = await evaluateFolder(folder, prompts, ctx.c.eval, ctx.c.seed, ctx.cb.shouldStop);
      const rec = { ...e.record, step: k };
      writeJson(join(r.evalDir, `clips-${k}.json`), e.clips);
      writeFileAtomic(join(r.evalDir, `sheet-${k}.png`), contactSheet(e.sheetFrames));
      appendFileSync(join(r.evalDir, 'scores.jsonl'), JSON.stringify(rec) + '\n');
      scores = readScores(r.evalDir);
      ctx.cb.log?.(`[${ctx.stage}] ${basename(r.runDir)} step ${k}: score train ${rec.train?.accuracy ?? '-'}%, held-out ${rec.heldOut?.accuracy ?? '-'}%`);
    }
    const s = scores.find((x) => x.step === k)!;
    if (target > 0 && k > 0 && (s.train?.accuracy ?? 0) >= target) break;
  }
  return scores;
}

// ---------------------------------------------------------------------------------------------------------------
// the stages

function ditConfig(c: StudyConfig, patch: [number, number, number], channels: number, name: string): WanConfig {
  return parseWanConfig(
    {
      model_type: 't2v',
      patch_size: patch,
      text_len: c.text.textLen,
      in_dim: channels,
      out_dim: channels,
      dim: c.dit.dim,
      ffn_dim: c.dit.ffn_dim,
      freq_dim: c.dit.freq_dim,
      text_dim: c.text.umt5.dim,
      num_heads: c.dit.num_heads,
      num_layers: c.dit.num_layers,
      eps: 1e-6,
    },
    name,
  );
}

function ditTrainArgs(cfgPath: string, data: string, b: DitRunConfig, extra: string[] = []): string[] {
  return ['train-dit', '--model', cfgPath, '--data', data, '--batch', String(b.batch), '--lr', String(b.lr), '--ema', String(b.ema), '--seed', String(b.seed), '--ckpt-every', String(Math.min(b.evalEvery, 250)), ...extra];
}

function loadPrompts(out: string): EvalPrompt[] {
  return J(join(out, 'data', 'prompts.json')).prompts as EvalPrompt[];
}

function aeInfos(out: string): { base: AeInfo; dc: AeInfo } {
  return J(join(out, 'autoencoders', 'done.json')).models as { base: AeInfo; dc: AeInfo };
}

/** The seed of the held-out split's `dcvg data shapes` (another stream than the training split's). */
export const heldOutSeed = (seed: number) => seed + 1_000_003;

async function stageData(ctx: Ctx): Promise<unknown> {
  return renderData(ctx, true);
}

/** The data stage's work (also restoreRegenerated's, not recorded then). */
async function renderData(ctx: Ctx, record: boolean): Promise<unknown> {
  const d = ctx.c.data;
  const dir = join(ctx.out, 'data');
  // dcvg data shapes resumes by itself (finished videos are kept)
  await dcvg(ctx, ['data', 'shapes', '--out', join(dir, 'train'), '--count', String(d.train), '--seed', String(d.seed), '--split', 'train'], record);
  await checkStop(ctx, 'stage data');
  await dcvg(ctx, ['data', 'shapes', '--out', join(dir, 'held-out'), '--count', String(d.heldOut), '--seed', String(heldOutSeed(d.seed)), '--split', 'held-out'], record);
  const train = readShapesData(join(dir, 'train'));
  const held = readShapesData(join(dir, 'held-out'));
  const prompts = evalPromptSet(train, held, ctx.c.eval.trainPrompts, ctx.c.eval.heldOutPrompts);
  writeJson(join(dir, 'prompts.json'), { seeds: Array.from({ length: ctx.c.eval.seeds }, (_, i) => ctx.c.seed + i), prompts });
  return { train: train.length, heldOut: held.length, prompts: prompts.length };
}

/** Whether a `dcvg data shapes` folder is complete with every video it lists. */
function shapesFolderComplete(dir: string): boolean {
  try {
    return readShapesData(dir).every((v) => existsSync(join(dir, v.file)));
  } catch {
    return false;
  }
}

/**
 * Regenerates the bulk a complete stage made and a stage still to run reads, where it is missing: the rendered videos
 * (`data/train`, `data/held-out`) and the latents (`latents/adapt`, `latents/base`). A study folder carried to another
 * machine (a fresh clone) leaves them out (docs/studies/adapt.md "Across machines"): both are pure functions of the
 * config and the earlier stages' files, remade with the stage's own commands (not recorded again in commands.jsonl).
 * The videos are checked against the study's: the evaluation prompt set they give must be the one in prompts.json.
 */
async function restoreRegenerated(out: string, c: StudyConfig, cb: StudyCallbacks, toRun: StageName[]): Promise<void> {
  const pending = toRun.filter((s) => s !== 'report' && !stageDone(out, s));
  const needsLatents = stageDone(out, 'latents') && pending.some((s) => ['base', 'adapt', 'arms'].includes(s)) && !(existsSync(join(out, 'latents', 'adapt', 'manifest.json')) && existsSync(join(out, 'latents', 'base', 'manifest.json')));
  const needsData = stageDone(out, 'data') && (needsLatents || pending.some((s) => ['autoencoders', 'text', 'latents'].includes(s)));
  if (needsData && !(shapesFolderComplete(join(out, 'data', 'train')) && shapesFolderComplete(join(out, 'data', 'held-out')))) {
    cb.log?.('[data] complete, but its videos are missing here: rendering them again (dcvg data shapes, the same commands)');
    const saved = readFileSync(join(out, 'data', 'prompts.json'), 'utf8');
    await renderData({ out, c, cb, stage: 'data' }, false);
    if (readFileSync(join(out, 'data', 'prompts.json'), 'utf8') !== saved)
      throw new ValueError(`study adapt: the videos rendered again in ${join(out, 'data')} give another evaluation prompt set than the study's data/prompts.json: this dcvg renders the world differently from the one that started the study`);
  }
  if (needsLatents) {
    cb.log?.('[latents] complete, but the latents are missing here: encoding them again (dcvg latents, the same command)');
    await encodeLatents({ out, c, cb, stage: 'latents' }, false);
  }
}

async function stageAutoencoders(ctx: Ctx): Promise<unknown> {
  // the training folder is decoded once for all the stage's train-ae runs (not once per run)
  useClipCache(true);
  try {
    return await trainAutoencoders(ctx);
  } finally {
    useClipCache(false);
  }
}

async function trainAutoencoders(ctx: Ctx): Promise<unknown> {
  const dir = join(ctx.out, 'autoencoders');
  mkdirSync(dir, { recursive: true });
  const data = join(ctx.out, 'data', 'train');
  const clips = readShapesData(data);
  const models: Record<string, AeInfo> = {};
  for (const name of ['base', 'dc'] as const) {
    const a = ctx.c.autoencoders[name];
    const run = join(dir, name);
    const extra = Object.entries(a.extra).flatMap(([k, v]) => [`--${k}`, v]);
    const model = aeModelArg(a.model, dir, name);
    const { family, temporal: t } = aeSpecInfo(a.model); // its family was checked with the config (resolveStudyConfig)
    // windows of the frames dcvg latents encodes: the Wan VAE's 1 + t·(n - 1), DC-AE-V's t·n
    const frames = family === 'wan-vae' ? adaptFrameCounts(ctx.c.latents.latentFrames, t, t).wan : ctx.c.latents.latentFrames * t;
    const trainArgs = (modelArg: string, batch: number, windowFrames: number, crop: number): string[] =>
      ['train-ae', '--model', modelArg, '--data', data, '--batch', String(batch), '--frames', String(windowFrames), '--crop', String(crop), '--lr', String(a.lr), '--warmup', String(a.warmup), '--seed', String(a.seed), ...extra];
    const init: string[] = [];
    // folders started before the pretraining option have none
    if ((a.pretrain?.steps ?? 0) > 0) {
      // the first run (cheaper, more varied samples) starts the main one; its folder is complete once at its steps
      const pre = join(dir, `${name}-pretrain`);
      // a shorter chunk (a DC-AE-V topology, checked with the config): the same topology with it, as its own model file
      const chunk = a.pretrain.chunk ?? 0;
      const preModel = chunk > 0 ? aeModelArg({ dcaev_topology: { ...(a.model as { dcaev_topology: Record<string, unknown> }).dcaev_topology, chunk } }, dir, `${name}-pretrain`) : model;
      await trainTo(ctx, pre, a.pretrain.steps, trainArgs(preModel, a.pretrain.batch, a.pretrain.frames, a.pretrain.crop));
      await checkStop(ctx, 'stage autoencoders');
      init.push('--init', join(pre, 'model.safetensors'));
    }
    await trainTo(ctx, run, a.steps, [...trainArgs(model, a.batch, frames, a.crop), ...init]);
    await checkStop(ctx, 'stage autoencoders');
    models[name] = await measureScaling(run, data, clips, join(dir, `${name}.scaled.json`), ctx.c.latents.latentFrames);
    const m = models[name]!;
    const norm = m.family === 'wan-vae' ? `latents_std ${Math.min(...m.latentsStd!)}..${Math.max(...m.latentsStd!)}` : `scaling factor ${m.scalingFactor}`;
    ctx.cb.log?.(`[autoencoders] ${name}: ${m.family} f${m.spatial}t${m.temporal}c${m.channels}, ${norm}`);
    await checkStop(ctx, 'stage autoencoders');
    await gateStage(ctx, name, m, join(dir, `${name}.gate.json`));
  }
  return { models };
}

/**
 * The autoencoder gate (src/study/ae_gate.ts): reconstructs the first held-out videos, scores the reconstructions
 * and writes `<name>.gate.json`; stops the study when they score below the config's minimum.
 */
async function gateStage(ctx: Ctx, name: 'base' | 'dc', m: AeInfo, out: string): Promise<void> {
  const g = ctx.c.aeGate;
  const heldDir = join(ctx.out, 'data', 'held-out');
  const videos = readShapesData(heldDir).slice(0, g.clips);
  const ae = loadAutoencoder({ model: m.config, weights: m.weights }, 'study adapt');
  const r = await gateAutoencoder(ae, heldDir, videos);
  writeJson(out, { minAccuracy: g.minAccuracy, passed: r.accuracy >= g.minAccuracy, ...r });
  const line = `${r.accuracy.toFixed(1)}% attribute accuracy (${r.allCorrect.toFixed(0)}% of clips all right), object PSNR ${r.objectPsnr.toFixed(2)} dB, whole-frame ${r.psnr.toFixed(2)} dB, ${r.strays} stray pixels (${r.cornerStrays} at frame corners)`;
  ctx.cb.log?.(`[autoencoders] ${name} gate on ${videos.length} held-out reconstructions: ${line}`);
  if (r.accuracy < g.minAccuracy)
    throw new ValueError(
      `study adapt: the ${name} autoencoder fails its gate: its reconstructions of ${videos.length} held-out videos read ${line}, below the ${g.minAccuracy}% required ("aeGate.minAccuracy"); per clip: ${out}. ` +
        `A DiT cannot learn what its latents lose: train it longer (dcvg study adapt --out ${ctx.out} --resume --config FILE, FILE {"autoencoders": {"${name}": {"steps": N}}} with N above its ${ctx.c.autoencoders[name].steps}), or with another recipe (move its run folders away, then autoencoders.${name}.* in --config)`,
    );
}

async function stageText(ctx: Ctx): Promise<unknown> {
  const dir = join(ctx.out, 'text');
  const captions = readShapesData(join(ctx.out, 'data', 'train')).map((v) => v.caption);
  const vocab = writeCaptionTokenizer(join(dir, 'tokenizer'), captions);
  const t = ctx.c.text.umt5;
  const cfg = resolveUmt5Config({ name: 'study-umt5', vocab, ...t, shared_pos: false, eps: 1e-6 });
  writeJson(join(dir, 'umt5.json'), umt5ConfigToJson(cfg));
  saveSafetensors(join(dir, 'umt5.safetensors'), umt5RandomState(cfg, ctx.c.text.seed));
  return { vocab, umt5: umt5ConfigToJson(cfg), frozen: 'random weights (umt5RandomState, seed ' + ctx.c.text.seed + '), never trained' };
}

async function stageLatents(ctx: Ctx): Promise<unknown> {
  return encodeLatents(ctx, true);
}

/** The latents stage's work (also restoreRegenerated's, not recorded then). */
async function encodeLatents(ctx: Ctx, record: boolean): Promise<unknown> {
  const dir = join(ctx.out, 'latents');
  const { base, dc } = aeInfos(ctx.out);
  const videos = join(ctx.out, 'data', 'train');
  const text = ['--text-encoder', join(ctx.out, 'text', 'umt5.safetensors'), '--tokenizer', join(ctx.out, 'text', 'tokenizer'), '--text-len', String(ctx.c.text.textLen)];
  // one pass: DC latents, the base autoencoder's as the Wan VAE's (its 1 + 4k frames), the captions' embeddings;
  // `dcvg latents` resumes by itself (finished shards are kept)
  const adapt = join(dir, 'adapt');
  await dcvg(ctx, ['latents', '--videos', videos, '--size', `${SHAPES_SIZE}x${SHAPES_SIZE}`, '--latent-frames', String(ctx.c.latents.latentFrames), '--per-shard', String(ctx.c.latents.perShard), '--out', adapt, '--dc-ae', `${dc.config}:${dc.weights}`, '--wan-vae', `${base.config}:${base.weights}`, ...text, '--json'], record);
  combineLatents(join(dir, 'base'), { latents: [adapt, 'wan_latents'] }, adapt);
  const m = J(join(adapt, 'manifest.json')) as { clips: unknown[] };
  return { samples: m.clips.length };
}

async function stageBase(ctx: Ctx): Promise<unknown> {
  const dir = join(ctx.out, 'base');
  const { base } = aeInfos(ctx.out);
  const cfg = ditConfig(ctx.c, [1, 2, 2], base.channels, 'study-base');
  const cfgPath = join(dir, 'dit.json');
  writeJson(cfgPath, wanConfigToJson(cfg));
  const run = join(dir, 'run');
  const b = ctx.c.base;
  const scores = await trainWithEvals(
    ctx,
    { runDir: run, evalDir: join(dir, 'evals'), budget: b, startArgs: ditTrainArgs(cfgPath, join(ctx.out, 'latents', 'base'), b), weightsAt: async () => join(run, 'model.safetensors'), ditConfig: cfg, ae: base },
    loadPrompts(ctx.out),
  );
  const last = scores[scores.length - 1]!;
  writeModelFolder(join(dir, 'model'), { ditWeights: join(run, 'model.safetensors'), ditConfig: cfg, ae: base, textDir: join(ctx.out, 'text') });
  return { step: checkpointStep(run) ?? weightsStep(run), score: last, reachedTarget: (last.train?.accuracy ?? 0) >= b.target, config: cfgPath };
}

/** Phases 2 and 3 from an assembled DiT (shared by the main path and arm a). */
async function tuneAndLora(ctx: Ctx, dir: string, assembled: string, cfg: WanConfig, dc: AeInfo, prompts: EvalPrompt[]): Promise<{ tune: ScoreRecord[]; lora: ScoreRecord[]; merged: string }> {
  const a = ctx.c.adapt;
  const data = join(ctx.out, 'latents', 'adapt');
  const phase = (p: typeof a.tune) => ['--batch', String(p.batch), '--lr', String(p.lr), '--warmup', String(p.warmup), '--ema', String(p.ema), '--seed', String(p.seed), '--eval-every', String(p.evalEvery), '--ckpt-every', String(Math.min(p.evalEvery, 250))];
  const tuneRun = join(dir, 'tune');
  const tune = await trainWithEvals(
    ctx,
    { runDir: tuneRun, evalDir: join(dir, 'tune-evals'), budget: a.tune, startArgs: ['adapt', 'tune', '--init', assembled, '--data', data, ...phase(a.tune)], weightsAt: async () => join(tuneRun, 'model.safetensors'), ditConfig: cfg, ae: dc, evalInit: assembled },
    prompts,
  );
  const loraRun = join(dir, 'lora');
  const merge = async (step: number) => {
    const p = join(dir, 'lora-merged', `step-${step}.safetensors`);
    if (!existsSync(p)) {
      mkdirSync(dirname(p), { recursive: true });
      await dcvg(ctx, ['adapt', 'merge', loraRun, '-o', p]);
    }
    return p;
  };
  const loraArgs = ['adapt', 'lora', '--init', join(tuneRun, 'model.safetensors'), '--data', data, '--rank', String(a.lora.rank), '--alpha', String(a.lora.alpha), ...phase(a.lora)];
  const lora = await trainWithEvals(ctx, { runDir: loraRun, evalDir: join(dir, 'lora-evals'), budget: a.lora, startArgs: loraArgs, weightsAt: merge, ditConfig: cfg, ae: dc }, prompts);
  return { tune, lora, merged: await merge(a.lora.steps) };
}

async function stageAdapt(ctx: Ctx): Promise<unknown> {
  const dir = join(ctx.out, 'adapt');
  const { dc } = aeInfos(ctx.out);
  const baseRun = join(ctx.out, 'base', 'run');
  const a = ctx.c.adapt;
  const align = join(dir, 'align');
  await trainTo(ctx, align, a.align.steps, ['adapt', 'align', '--teacher', join(baseRun, 'model.safetensors'), '--data', join(ctx.out, 'latents', 'adapt'), '--batch', String(a.align.batch), '--lr', String(a.align.lr), '--seed', String(a.align.seed), '--eval-every', String(a.align.steps), '--ckpt-every', String(Math.min(a.align.steps, 250))]);
  const assembled = join(dir, 'assembled.safetensors');
  if (!existsSync(assembled)) await dcvg(ctx, ['adapt', 'assemble', '--base', join(baseRun, 'model.safetensors'), '--patch', join(align, 'patch_embedding.safetensors'), '-o', assembled, '--json']);
  const cfg = ditConfig(ctx.c, [1, 1, 1], dc.channels, 'study-dc');
  writeJson(join(dir, 'dit.json'), wanConfigToJson(cfg));
  const r = await tuneAndLora(ctx, dir, assembled, cfg, dc, loadPrompts(ctx.out));
  writeModelFolder(join(dir, 'model'), { ditWeights: r.merged, ditConfig: cfg, ae: dc, textDir: join(ctx.out, 'text') });
  return { tune: r.tune[r.tune.length - 1], lora: r.lora[r.lora.length - 1] };
}

/** The latency of one generation (median of runs): sampling and decoding timed apart. */
async function latency(dir: string, ev: EvalConfig, prompt: string, runs: number): Promise<{ tokens: number; frames: number; denoise: number; decode: number }> {
  const models = folderModels(resolveModelFolder(dir), defaultEncoderLoaders);
  const plan = planGeneration(models.ditConfig, models.aeGeometry, { frames: SHAPES_FRAMES, width: SHAPES_SIZE, height: SHAPES_SIZE }, 't2v');
  const enc = await encodePrompts(models, [prompt, ''], models.ditConfig.text_len, models.ditConfig.text_dim, null);
  const dit = await models.dit();
  const ae = await models.autoencoder();
  const d: number[] = [];
  const k: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t = performance.now();
    const z = denoise(dit, plan, enc.embeddings[0]!, enc.embeddings[1]!, { steps: ev.steps, guidance: ev.guidance, shift: ev.shift, seed: i, sampler: ev.sampler });
    d.push((performance.now() - t) / 1000);
    t = performance.now();
    await decodeInto(ae, z, plan, { write: async () => {} });
    k.push((performance.now() - t) / 1000);
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { tokens: plan.tokens, frames: plan.frames, denoise: +med(d).toFixed(4), decode: +med(k).toFixed(4) };
}

async function stageArms(ctx: Ctx): Promise<unknown> {
  const dir = join(ctx.out, 'arms');
  mkdirSync(dir, { recursive: true });
  const { dc } = aeInfos(ctx.out);
  const prompts = loadPrompts(ctx.out);
  const cfg = ditConfig(ctx.c, [1, 1, 1], dc.channels, 'study-dc');
  const result: Record<string, unknown> = {};
  const a = ctx.c.adapt;
  if (ctx.c.arms.noAlign) {
    // (a) a randomly initialised patch embedder (phase 1's student init, unaligned) and the zero head, then phases 2-3
    const d = join(dir, 'no-align');
    const patch = join(d, 'patch_embedding.safetensors');
    if (!existsSync(patch)) {
      const { weight, bias } = initStudent(cfg.dim, dc.channels, new Rng(a.align.seed));
      mkdirSync(d, { recursive: true });
      saveSafetensors(patch, { 'patch_embedding.weight': weight, 'patch_embedding.bias': bias }, { metadata: { format: PATCH_EMBEDDING_FORMAT, in_dim: String(dc.channels), dim: String(cfg.dim), patch_size: '[1,1,1]', step: '0', teacher: 'none (random init)' } });
    }
    const assembled = join(d, 'assembled.safetensors');
    if (!existsSync(assembled)) await dcvg(ctx, ['adapt', 'assemble', '--base', join(ctx.out, 'base', 'run', 'model.safetensors'), '--patch', patch, '-o', assembled, '--json']);
    const r = await tuneAndLora(ctx, d, assembled, cfg, dc, prompts);
    result.noAlign = { tune: r.tune.at(-1), lora: r.lora.at(-1) };
  }
  if (ctx.c.arms.fullFinetune) {
    // (b) the parameters LoRA adapts (and those it trains fully), trained in full with phase 3's recipe
    const d = join(dir, 'full-ft');
    const run = join(d, 'run');
    const l = a.lora;
    const re = '^(patch_embedding|head\\.head|head\\.modulation|blocks\\.\\d+\\.self_attn\\.[qkvo]|blocks\\.\\d+\\.ffn\\.[02]|time_embedding\\.[02]|time_projection\\.1)(\\.|$)';
    const start = ['adapt', 'tune', '--init', join(ctx.out, 'adapt', 'tune', 'model.safetensors'), '--data', join(ctx.out, 'latents', 'adapt'), '--train-only', re, '--batch', String(l.batch), '--lr', String(l.lr), '--warmup', String(l.warmup), '--ema', String(l.ema), '--seed', String(l.seed), '--eval-every', String(l.evalEvery), '--ckpt-every', String(Math.min(l.evalEvery, 250))];
    const s = await trainWithEvals(ctx, { runDir: run, evalDir: join(d, 'evals'), budget: l, startArgs: start, weightsAt: async () => join(run, 'model.safetensors'), ditConfig: cfg, ae: dc }, prompts);
    result.fullFinetune = s.at(-1);
  }
  {
    // (c) the same DC-latent DiT from scratch with the base recipe
    const d = join(dir, 'scratch');
    const run = join(d, 'run');
    const cfgPath = join(d, 'dit.json');
    writeJson(cfgPath, wanConfigToJson(cfg));
    const b = ctx.c.arms.scratch;
    const s = await trainWithEvals(ctx, { runDir: run, evalDir: join(d, 'evals'), budget: b, startArgs: ditTrainArgs(cfgPath, join(ctx.out, 'latents', 'adapt'), b), weightsAt: async () => join(run, 'model.safetensors'), ditConfig: cfg, ae: dc }, prompts);
    result.scratch = s.at(-1);
  }
  {
    // (d) latency at the same pixels, steps and CFG; timings are machine-dependent and kept apart from the scores. Both
    // are asked for 16 frames: the base (Wan VAE, 1 + 4k frames) makes 13 of them from 4 latent frames, DC-AE-V 16
    // from 4; the token counts (and so the DiT's work) are what the paper's bound compares
    await checkStop(ctx, 'stage arms (latency)');
    const prompt = prompts[0]!.caption;
    const runs = ctx.c.arms.latency.runs;
    const base = await latency(join(ctx.out, 'base', 'model'), ctx.c.eval, prompt, runs);
    const adapted = await latency(join(ctx.out, 'adapt', 'model'), ctx.c.eval, prompt, runs);
    writeJson(join(dir, 'latency.json'), { prompt, runs, steps: ctx.c.eval.steps, guidance: ctx.c.eval.guidance, frames: SHAPES_FRAMES, size: SHAPES_SIZE, base, adapted, tokenRatio: base.tokens / adapted.tokens });
    result.latency = 'latency.json';
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// the study

/** Study folder bookkeeping: the config is fixed at the first run; later runs must give the same one. */
export function openStudyFolder(out: string, config: StudyConfig | null): StudyConfig {
  const p = join(out, 'study.json');
  if (existsSync(p)) {
    const saved = (J(p) as { config: StudyConfig }).config;
    if (config && JSON.stringify(config) !== JSON.stringify(saved)) {
      const diff = firstDiff(saved, config, '');
      throw new ValueError(`study adapt: ${out} holds a study with another config (${diff}); use --resume alone to continue it, or another --out`);
    }
    return saved;
  }
  if (!config) throw new ValueError(`study adapt: nothing to resume in ${out} (no study.json)`);
  if (existsSync(out) && readdirSync(out).length) throw new ValueError(`study adapt: --out ${out} exists and is not a study folder (no study.json); choose a new folder`);
  writeJson(p, { format: 'dcvg-study-adapt-1', config });
  return config;
}

/**
 * The keys `study adapt --resume --config FILE` may change, while the autoencoders stage is not complete: an
 * autoencoder's main step budget (lowered only above the step its run has reached), and the rest of its recipe (its
 * model, pretraining run, learning rate, warm-up, seed, batch, crop, extra train-ae flags) only while none of its runs
 * has a folder yet.
 */
const AE_KEY = /^autoencoders\.(base|dc)\.(steps|model|lr|warmup|seed|batch|crop|pretrain\.\w+|extra\.[\w-]+)$/;

/**
 * Keys a started study may also change before the first stage that reads them has a folder (nothing was made with
 * them yet): the DiT, the base DiT's recipe and the sampling of evaluations (base stage on), the adaptation's phases,
 * the arms. The evaluation prompt set (eval.seeds, eval.*Prompts) is the data stage's, the text encoder the text stage's.
 */
const LATE_KEYS: readonly [RegExp, StageName][] = [
  [/^(dit|base)\.\w+$/, 'base'],
  [/^eval\.(steps|guidance|shift|sampler)$/, 'base'],
  [/^adapt\.(align|tune|lora)\.\w+$/, 'adapt'],
  [/^arms\.(noAlign|fullFinetune)$|^arms\.(scratch|latency)\.\w+$/, 'arms'],
];

const CHANGEABLE =
  "an autoencoder's steps (lower only above the step its run has reached) and the rest of its recipe (model, pretrain.*, lr, warmup, seed, batch, crop, extra.*: before its runs start), while the autoencoders stage is not complete, and dit.*, base.*, eval.steps / guidance / shift / sampler, adapt.*, arms.* (while their stage has not started)";

/**
 * `--resume --config FILE` on a study folder, while the autoencoders stage is not complete:
 * - raises the step budget of an autoencoder (e.g. after it failed its gate): its train-ae run continues from its
 *   checkpoint with the new `--steps` (train-ae stretches the cosine schedule); or lowers it while its run is below
 *   the new budget (a cost the machine cannot pay: the schedule is recomputed for the new total from the step
 *   reached, so the learning rate there moves to the new schedule's value);
 * - changes the rest of the recipe (model, pretraining, lr, warm-up, seed, batch, crop, extra flags) of an
 *   autoencoder none of whose runs has started (no `autoencoders/<name>` or `<name>-pretrain` folder: nothing was
 *   trained with the old one), e.g. a narrower DC-AE-V or no pretraining run; the new values are checked like a
 *   config's.
 * - sets a key of LATE_KEYS (the DiTs, evaluation sampling, adaptation, arms) whose stage has no folder yet.
 * study.json records each change (`changes`: key, from, to, time). Anything else in FILE, a budget at or below the
 * step its run reached, a recipe key of an autoencoder whose runs have started, a key whose stage has started, or a complete autoencoders
 * stage is refused, naming the key; a value of the wrong type or range too (the config's own checks). Returns the
 * updated config.
 */
export function changeStartedStudy(out: string, override: unknown, source: string): StudyConfig {
  const p = join(out, 'study.json');
  if (!existsSync(p)) throw new ValueError(`study adapt: nothing to resume in ${out} (no study.json)`);
  const file = J(p) as { format: string; config: StudyConfig; changes?: { key: string; from: unknown; to: unknown; at: string }[] };
  const leaves: [string, unknown][] = [];
  const walk = (v: unknown, path: string): void => {
    // a model spec is one value (free-form, replaced whole)
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && !path.endsWith('.model')) for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
    else leaves.push([path, v]);
  };
  walk(override, '');
  if (!leaves.length || leaves.some(([k]) => k === '')) throw new ValueError(`study adapt --resume --config ${source}: expected a JSON object such as {"autoencoders": {"base": {"steps": 9000}}}`);
  const changes = [...(file.changes ?? [])];
  const cfg = JSON.parse(JSON.stringify(file.config)) as StudyConfig;
  const refuse = (msg: string) => new ValueError(`study adapt --resume --config ${source}: ${msg}`);
  for (const [key, to] of leaves) {
    const late = LATE_KEYS.find(([re]) => re.test(key));
    if (late) {
      const stage = join(out, late[1]);
      if (existsSync(stage)) throw refuse(`"${key}": the ${late[1]} stage has started (${stage}); use another --out for another config`);
    } else {
      if (!AE_KEY.test(key)) throw refuse(`"${key}" cannot change in a started study (only ${CHANGEABLE} can); use another --out for another config`);
      if (stageDone(out, 'autoencoders')) throw refuse(`"${key}": the autoencoders stage is complete (later stages use its models); use another --out`);
      const name = key.split('.')[1] as 'base' | 'dc';
      if (key !== `autoencoders.${name}.steps`) {
        const started = [name, `${name}-pretrain`].map((r) => join(out, 'autoencoders', r)).filter((d) => existsSync(d));
        if (started.length)
          throw refuse(`"${key}": the ${name} autoencoder's training has started with its recipe (${started.join(', ')}); another ${key.split('.').slice(2).join('.')} needs those folders gone (move them away to keep them)`);
      } else {
        const from = cfg.autoencoders[name].steps;
        if (typeof to !== 'number' || !Number.isInteger(to) || to < 1 || to === from) throw refuse(`"${key}" must be a positive integer other than its current ${from}, got ${JSON.stringify(to)}`);
        if (to < from) {
          // a lower budget only for a run that has not got there: its cosine schedule is recomputed for the new total
          const run = join(out, 'autoencoders', name);
          const reached = existsSync(run) ? (checkpointStep(run) ?? weightsStep(run)) : 0;
          if (reached === null) throw refuse(`"${key}": ${run} holds neither a checkpoint nor weights to tell how far it got`);
          if (reached >= to) throw refuse(`"${key}": the ${name} autoencoder's run has reached step ${reached} (${run}), at or past the ${to} asked for`);
        }
        // a run finished at the old budget is unfinished at the new one (its checkpoint is carried again)
        rmSync(join(out, 'autoencoders', name, FINISHED), { force: true });
      }
    }
    // every allowed key names a leaf (or a model spec) of the config
    const parts = key.split('.');
    let node = cfg as unknown as Record<string, unknown>;
    for (const k of parts.slice(0, -1)) node = node[k] as Record<string, unknown>;
    // a value the file restates (e.g. a whole `pretrain` object with one key changed) is no change
    if (JSON.stringify(node[parts.at(-1)!]) === JSON.stringify(to)) continue;
    changes.push({ key, from: node[parts.at(-1)!], to, at: new Date().toISOString() });
    node[parts.at(-1)!] = to;
  }
  // the new values through the config's own checks (types, ranges, an autoencoder's family)
  resolveStudyConfig(cfg.scale, cfg, source);
  writeJson(p, { ...file, config: cfg, changes });
  return cfg;
}

function firstDiff(a: unknown, b: unknown, path: string): string {
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null && !Array.isArray(a)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b as object)])) {
      const d = firstDiff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
    return '';
  }
  return JSON.stringify(a) === JSON.stringify(b) ? '' : `"${path}": ${JSON.stringify(a)} there, ${JSON.stringify(b)} given`;
}

const RUNNERS: Record<Exclude<StageName, 'report'>, (ctx: Ctx) => Promise<unknown>> = {
  data: stageData,
  autoencoders: stageAutoencoders,
  text: stageText,
  latents: stageLatents,
  base: stageBase,
  adapt: stageAdapt,
  arms: stageArms,
};

export interface StageSummary {
  stage: StageName;
  status: 'skipped (complete)' | 'ran';
  seconds: number;
  /** CPU time of this process (all threads) in the stage: less sensitive to other work on the machine than seconds */
  cpuSeconds?: number;
}

/** Runs the stages asked for (default all) in order; each needs its inputs complete. */
export async function runAdaptStudy(o: StudyRunOptions, cb: StudyCallbacks = {}, report?: (out: string, c: StudyConfig) => Promise<unknown>): Promise<StageSummary[]> {
  const stages = o.stages ?? [...STAGES];
  const out = o.out;
  mkdirSync(out, { recursive: true });
  const summary: StageSummary[] = [];
  await restoreRegenerated(out, o.config, cb, stages);
  for (const s of STAGES) {
    if (!stages.includes(s)) continue;
    const ctx: Ctx = { out, c: o.config, cb, stage: s };
    if (s !== 'report' && stageDone(out, s)) {
      cb.log?.(`[${s}] complete; skipped`);
      summary.push({ stage: s, status: 'skipped (complete)', seconds: 0 });
      continue;
    }
    for (const need of NEEDS[s]) if (!stageDone(out, need)) throw new ValueError(`study adapt: stage ${s} needs stage ${need} complete first (run --stages ${need})`);
    await checkStop(ctx, `before stage ${s}`);
    cb.log?.(`[${s}] starting`);
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const r = s === 'report' ? await report?.(out, o.config) : await RUNNERS[s](ctx);
    const seconds = +((performance.now() - t0) / 1000).toFixed(1);
    if (s !== 'report') writeJson(join(out, s, 'done.json'), { stage: s, ...(r as object) });
    const cpu = process.cpuUsage(cpu0);
    const cpuSeconds = +((cpu.user + cpu.system) / 1e6).toFixed(1);
    cb.log?.(`[${s}] done in ${seconds}s (${cpuSeconds}s of CPU)`);
    summary.push({ stage: s, status: 'ran', seconds, cpuSeconds });
  }
  return summary;
}

