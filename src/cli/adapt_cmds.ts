/**
 * `dcvg latents` (AE-Adapt-V latent datasets) and the training phases `dcvg adapt align | tune | lora`
 * (src/adapt/; docs/adapt.md "Training phases"). Other `dcvg adapt` subcommands register in ADAPT_SUBCOMMANDS.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ValueError } from '../errors.js';
import { loadAutoencoder } from '../pipelines/autoencoder.js';
import type { PromptTokenizer, TextEncoder } from '../pipelines/components.js';
import { ALIGN_DEFAULTS, trainAlign, type AlignOptions } from '../adapt/align.js';
import { buildAdaptLatents, encoderEmbedder, folderEmbedder, type CaptionEmbedder } from '../adapt/latents.js';
import { LORA_DEFAULTS, TUNE_DEFAULTS, trainLora, trainTune, type LoraPhaseOptions } from '../adapt/phases.js';
import type { CommonOptions, PhaseCallbacks } from '../adapt/trainer.js';
import { Progress, fmtSecs } from './progress.js';
import { parseValues, type Out } from './common.js';
import { adaptAssembleMain, adaptMergeMain } from './adapt_merge_cmds.js';
import { loadUmt5 } from '../models/umt5/index.js';
import { loadClipVisual } from '../models/clip/index.js';
import { embeddedWanVaeConfig } from '../models/wan_vae/run.js';
import { loadTokenizer } from '../text/index.js';
import { stopOnSignals } from './train_cmds.js';

function num(v: string | undefined, name: string, int = false): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || (int && !Number.isInteger(x))) throw new ValueError(`--${name} must be ${int ? 'an integer' : 'a number'}, got "${v}"`);
  return x;
}

export const LATENTS_HELP = `dcvg latents --videos DIR --out DIR --size WxH [--dc-ae M[:W]] [--wan-vae W] [text] [options]
  Encodes every clip of DIR (resized to cover WxH, center-cropped) with DC-AE-V on n·4 frames and the Wan VAE on
  (n-1)·4+1 frames (same n latent frames; 80 and 77 for n = 20), with its caption's text embedding, into sharded
  safetensors (a train-dit latent folder with wan_latents added; docs/adapt.md). Resumable: finished shards are kept.
  --dc-ae SPEC       DC-AE-V: a config (preset / .json) and weights as "CONFIG:WEIGHTS", a train-ae weights file,
                     or "default" (the shipped model)
  --wan-vae SPEC     Wan VAE weights (Wan2.1_VAE.pth, .safetensors, a diffusers vae/ folder), or "CONFIG:WEIGHTS"
                     for another Wan VAE config (file.json#entry)
  --latent-frames N  latent frames per clip (default 20); clips with fewer frames are skipped (listed)
  --count N          only the first N clips (by name);  --per-shard N  clips per shard (default 16)
  Captions: a sidecar <clip>.txt, or <clip>.json (extended_prompt / prompt / caption), else DIR/captions.tsv.
  Text (one of, optional for phase 1 data):
  --text-encoder P --tokenizer T   umT5 (src/models/umt5 loadUmt5) and its tokenizer (src/text loadTokenizer)
                     [--negative-prompt S]  the null embedding's text (default ""; the reference uses Wan's
                     Chinese sample_neg_prompt)
  --embeddings DIR   precomputed: DIR/<clip stem>.safetensors holding "context" (L, dim); DIR/null.safetensors
  --text-len N       rows per context (captions zero-padded to it; default 512)
  --i2v --clip SPEC  image-to-video data (needs --dc-ae): per clip the mask + DC-AE-V condition latent of its first
                     frame (img_feat; with --wan-vae also the Wan VAE's, wan_img_feat) and the CLIP features of that
                     frame (clip_feat), built by the I2V generation code. SPEC: Wan's CLIP .pth / .safetensors, a
                     diffusers image_encoder/ folder, or "CONFIG:WEIGHTS" (a <weights stem>.json beside is read too)
  --json             summary as JSON`;

async function loadTextModules(encoderPath: string, tokenizerPath: string): Promise<{ tok: PromptTokenizer; enc: TextEncoder }> {
  const tok = await loadTokenizer(tokenizerPath);
  return { tok, enc: loadUmt5(encoderPath) };
}

export async function cmdLatents(args: string[], out: Out): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out(LATENTS_HELP + '\n');
    return 0;
  }
  const keys = ['videos', 'out', 'size', 'dc-ae', 'wan-vae', 'latent-frames', 'count', 'per-shard', 'text-encoder', 'tokenizer', 'negative-prompt', 'embeddings', 'text-len', 'clip'];
  const v = parseValues(args, { ...Object.fromEntries(keys.map((k) => [k, { type: 'string' as const }])), json: { type: 'boolean' }, i2v: { type: 'boolean' } }, 'latents', false);
  const s = (k: string) => v[k] as string | undefined;
  if (!s('videos')) throw new ValueError('latents needs --videos <folder of clips>');
  if (!s('out')) throw new ValueError('latents needs --out <folder>');
  const m = /^(\d+)x(\d+)$/.exec(s('size') ?? '');
  if (!m) throw new ValueError(`latents needs --size WIDTHxHEIGHT (e.g. 832x480), got ${JSON.stringify(s('size') ?? '')}`);
  if (s('text-encoder') && s('embeddings')) throw new ValueError('give --text-encoder or --embeddings, not both');
  if (!!s('text-encoder') !== !!s('tokenizer')) throw new ValueError('--text-encoder and --tokenizer go together');
  const textLen = num(s('text-len'), 'text-len', true) ?? 512;
  let dcae = null;
  const dcSpec = s('dc-ae');
  if (dcSpec) {
    if (dcSpec === 'default') dcae = loadAutoencoder({}, 'latents');
    else {
      const i = dcSpec.lastIndexOf(':');
      const [model, weights] = i > 0 && !existsSync(dcSpec) ? [dcSpec.slice(0, i), dcSpec.slice(i + 1)] : [undefined, dcSpec];
      dcae = loadAutoencoder({ model, weights }, 'latents');
    }
    if (dcae.family !== 'dc-ae-v') throw new ValueError(`--dc-ae ${dcSpec} is a ${dcae.family}, not a DC-AE-V`);
  }
  let wanVae = null;
  const wanSpec = s('wan-vae');
  if (wanSpec) {
    const i = wanSpec.lastIndexOf(':');
    // bare weights: the released VAE's config, unless the file is a `dcvg train-ae` Wan VAE carrying its own
    const [model, weights] = i > 0 && !existsSync(wanSpec) ? [wanSpec.slice(0, i), wanSpec.slice(i + 1)] : [embeddedWanVaeConfig(wanSpec) ? undefined : 'wan2.1-vae', wanSpec];
    wanVae = loadAutoencoder({ model, weights }, 'latents');
    if (wanVae.family !== 'wan-vae') throw new ValueError(`--wan-vae ${wanSpec} is a ${wanVae.family}, not a Wan VAE`);
  }
  if (!!v.i2v !== !!s('clip')) throw new ValueError('--i2v and --clip go together (I2V data needs the CLIP image encoder)');
  let imageEncoder = null;
  const clipSpec = s('clip');
  if (clipSpec) {
    const i = clipSpec.lastIndexOf(':');
    const [config, weights] = i > 0 && !existsSync(clipSpec) ? [clipSpec.slice(0, i), clipSpec.slice(i + 1)] : [undefined, clipSpec];
    const side = weights.replace(/\.(pth|pt|safetensors)$/i, '.json');
    imageEncoder = loadClipVisual(weights, { ...(config ? { config } : side !== weights && existsSync(side) ? { config: side } : {}) });
  }
  let text: CaptionEmbedder | null = null;
  if (s('embeddings')) text = folderEmbedder(s('embeddings')!);
  else if (s('text-encoder')) {
    const { tok, enc } = await loadTextModules(s('text-encoder')!, s('tokenizer')!);
    text = encoderEmbedder(tok, enc, textLen, s('negative-prompt') ?? '');
  }
  let bar: Progress | null = null;
  const t0 = performance.now();
  const r = await buildAdaptLatents({
    videos: s('videos')!,
    out: s('out')!,
    width: Number(m[1]),
    height: Number(m[2]),
    latentFrames: num(s('latent-frames'), 'latent-frames', true) ?? 20,
    count: num(s('count'), 'count', true),
    perShard: num(s('per-shard'), 'per-shard', true) ?? 16,
    dcae,
    wanVae,
    text,
    textLen,
    i2v: imageEncoder ? { imageEncoder } : null,
    onClip: (done, total, file) => {
      bar ??= new Progress('latents', total, 'clips');
      bar.update(done, file);
    },
    onMessage: (msg) => process.stderr.write(`latents: ${msg}\n`),
  });
  (bar as Progress | null)?.done();
  const summary = { ...r, out: s('out'), seconds: +((performance.now() - t0) / 1000).toFixed(1) };
  if (v.json) out(JSON.stringify(summary) + '\n');
  else out(`${r.samples} samples in ${r.shards} shards (${r.reused} kept from before, ${r.skipped.length} clips skipped) -> ${s('out')} in ${fmtSecs(summary.seconds)}\n`);
  return 0;
}

const COMMON_FLAGS = `  --steps N --batch N   optimizer steps, samples per micro-batch
  --accum N          micro-batches per step (gradient accumulation: a step sees batch·accum samples; default 1)
  --lr F --warmup N  peak learning rate, linear warm-up steps;  --schedule constant|cosine (--min-lr-ratio F)
  --beta1 F --beta2 F --weight-decay F   AdamW;  --clip F  max gradient norm (0 = none);  --ema F  (0 = none)
  --holdout N        samples held out for evaluation (default 1 per 20, at least 1 from 4 samples on)
  --eval-every N --ckpt-every N --seed N
  --resume           continue the run in --out (bit-exact); only --steps may change
  --json             summary as JSON;  --log-every N  progress lines when stderr is not a terminal
  Ctrl-C (or SIGTERM) stops after the current step and writes a checkpoint.`;

const defaultsLine = (d: Omit<CommonOptions, 'data' | 'out'>) =>
  `  Defaults: steps ${d.steps}, batch ${d.batch}, lr ${d.lr}, warmup ${d.warmup}, ${d.schedule}, betas (${d.beta1}, ${d.beta2}), wd ${d.weightDecay}, clip ${d.clip || 'none'}, EMA ${d.emaDecay || 'none'}, checkpoint every ${d.ckptEvery}.`;

export const ALIGN_HELP = `dcvg adapt align --teacher BASE_DIT --data LATENTS --out RUN [options]
  Phase 1 (spec §5.2): trains a new 1x1x1 patch embedder on DC-AE-V latents so its output matches the base DiT's
  frozen 1x2x2 patch embedder on the Wan latents of the same clips, average-pooled to the DC grid (MSE). Logs the
  avgpool and upsample variants too. Writes RUN/patch_embedding.safetensors (for dcvg adapt assemble).
${defaultsLine(ALIGN_DEFAULTS)}
${COMMON_FLAGS}`;

export const TUNE_HELP = `dcvg adapt tune --init ASSEMBLED_DIT --data LATENTS --out RUN [--model CFG] [options]
  Phase 2 (spec §5.4): flow matching (§5.5) training only patch_embedding, head.head and head.modulation.
  --shift F          training flow shift (default 8 for a T2V DiT, 5 for an I2V one, as the spec's recipes)
  An I2V DiT (in_dim = C + 4 + C, img_emb) trains on I2V latents (dcvg latents --i2v): img_feat as its condition
  channels and clip_feat as its image features, as image-to-video generation feeds them.
  --text-drop F      text dropout to the null embedding (default ${TUNE_DEFAULTS.textDrop})
  --train-only RE    what trains (default ${TUNE_DEFAULTS.trainOnly})
  --model CFG        Wan preset / config JSON (default: the --init file's "config" metadata)
${defaultsLine(TUNE_DEFAULTS)}
${COMMON_FLAGS}`;

export const LORA_HELP = `dcvg adapt lora --init PHASE2_MODEL --data LATENTS --out RUN [--model CFG] [options]
  Phase 3 (spec §5.6): LoRA on self-attention q/k/v/o, ffn.0/ffn.2, time_embedding.0/.2, time_projection.1, with
  patch_embedding, head.head and head.modulation fully trained; the rest frozen. Writes RUN/model.safetensors: EMA
  weights plus <layer>.lora_A.weight / lora_B.weight (for dcvg adapt merge).
  --rank N --alpha F (default ${LORA_DEFAULTS.rank}, ${LORA_DEFAULTS.alpha});  --lora-targets RE (default ${LORA_DEFAULTS.loraTargets})
  --shift F --text-drop F --train-only RE --model CFG   as for adapt tune
${defaultsLine(LORA_DEFAULTS)}
${COMMON_FLAGS}`;

const COMMON_KEYS = ['data', 'out', 'steps', 'batch', 'accum', 'lr', 'warmup', 'schedule', 'min-lr-ratio', 'weight-decay', 'beta1', 'beta2', 'clip', 'ema', 'holdout', 'eval-every', 'ckpt-every', 'seed', 'log-every'];
const FLAG_KEY: Record<string, [string, 'int' | 'num' | 'str']> = {
  data: ['data', 'str'],
  steps: ['steps', 'int'],
  batch: ['batch', 'int'],
  accum: ['accum', 'int'],
  lr: ['lr', 'num'],
  warmup: ['warmup', 'int'],
  schedule: ['schedule', 'str'],
  'min-lr-ratio': ['minLrRatio', 'num'],
  'weight-decay': ['weightDecay', 'num'],
  beta1: ['beta1', 'num'],
  beta2: ['beta2', 'num'],
  clip: ['clip', 'num'],
  ema: ['emaDecay', 'num'],
  holdout: ['holdout', 'int'],
  'eval-every': ['evalEvery', 'int'],
  'ckpt-every': ['ckptEvery', 'int'],
  seed: ['seed', 'int'],
  teacher: ['teacher', 'str'],
  init: ['init', 'str'],
  model: ['model', 'str'],
  shift: ['shift', 'num'],
  'text-drop': ['textDrop', 'num'],
  'train-only': ['trainOnly', 'str'],
  rank: ['rank', 'int'],
  alpha: ['alpha', 'num'],
  'lora-targets': ['loraTargets', 'str'],
};

type Trainer = (o: Record<string, unknown> & { out: string; resume?: boolean }, cb: PhaseCallbacks) => Promise<{ steps: number; stoppedEarly: boolean; runDir: string; lastEval: Record<string, number> | null }>;

async function runPhaseCmd(sub: string, args: string[], out: Out, help: string, extra: string[], required: string[], train: Trainer, output: string): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out(help + '\n');
    return 0;
  }
  const cmd = `adapt ${sub}`;
  const keys = [...COMMON_KEYS, ...extra];
  const v = parseValues(args, { ...Object.fromEntries(keys.map((k) => [k, { type: 'string' as const }])), resume: { type: 'boolean' }, json: { type: 'boolean' } }, cmd, false);
  const s = (k: string) => v[k] as string | undefined;
  if (!s('out')) throw new ValueError(`${cmd} needs --out <run dir>`);
  const resume = !!v.resume;
  if (resume) {
    const allowed = new Set(['out', 'steps', 'resume', 'json', 'log-every']);
    const bad = Object.keys(v).filter((k) => v[k] !== undefined && !allowed.has(k));
    if (bad.length) throw new ValueError(`--resume takes the run's own settings from its checkpoint; only --steps may change (got --${bad.join(', --')})`);
  } else for (const r of ['data', ...required]) if (!s(r)) throw new ValueError(`${cmd} needs --${r}`);
  const o: Record<string, unknown> & { out: string; resume?: boolean } = { out: s('out')!, resume };
  for (const k of keys) {
    const f = FLAG_KEY[k];
    if (!f || s(k) === undefined) continue;
    o[f[0]] = f[1] === 'str' ? s(k) : num(s(k), k, f[1] === 'int');
  }
  const logEvery = num(s('log-every'), 'log-every', true) ?? 50;
  const signals = stopOnSignals(cmd);
  let bar: Progress | null = null;
  let start = 0;
  let total = 0;
  let recent: number[] = [];
  const t0 = performance.now();
  try {
    const r = await train(o, {
      onMessage: (msg) => process.stderr.write(`${cmd}: ${msg}\n`),
      onStart: (i) => {
        start = i.startStep;
        total = i.steps;
        process.stderr.write(
          `${cmd}: ${i.resumed ? `resuming at step ${i.startStep}` : 'new run'}; ${i.steps} steps, ${i.params.toLocaleString('en-US')} parameters (${i.trainable.toLocaleString('en-US')} trained), ` +
            `${i.samples} training samples, ${i.heldOut} held out -> ${o.out}\n`,
        );
        bar = new Progress(sub, i.steps - i.startStep, 'steps');
      },
      onStep: (rec) => {
        recent.push(rec.loss);
        if (recent.length > 20) recent = recent.slice(-20);
        const avg = recent.reduce((a, b) => a + b, 0) / recent.length;
        bar?.update(rec.step - start, `step ${rec.step} loss ${avg.toPrecision(4)}`);
        if (!process.stderr.isTTY && (rec.step % logEvery === 0 || rec.step === total)) {
          const rate = (rec.step - start) / ((performance.now() - t0) / 1000);
          process.stderr.write(`step ${rec.step}/${total} loss ${avg.toPrecision(4)} lr ${rec.lr.toExponential(2)} ${rate.toFixed(2)} steps/s ETA ${fmtSecs((total - rec.step) / Math.max(rate, 1e-9))}\n`);
        }
      },
      onEval: (e) =>
        process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}eval @${e.step}: ${Object.entries(e.eval).map(([k, x]) => `${k} ${k === 'samples' ? x : x.toPrecision(4)}`).join(', ')}\n`),
      shouldStop: signals.stopped,
    });
    (bar as Progress | null)?.done();
    const summary = { runDir: r.runDir, steps: r.steps, stoppedEarly: r.stoppedEarly, eval: r.lastEval, seconds: +((performance.now() - t0) / 1000).toFixed(1) };
    if (v.json) out(JSON.stringify(summary) + '\n');
    else if (r.steps === 0) out('stopped before the first step; nothing written\n');
    else out(`${r.stoppedEarly ? 'stopped' : 'finished'} at step ${r.steps} in ${fmtSecs(summary.seconds)}; ${join(r.runDir, output)}\n`);
    return r.stoppedEarly ? signals.exitCode() : 0;
  } finally {
    signals.release();
  }
}

/** `dcvg adapt <sub>`: subcommand name -> handler; other work adds assemble / merge here. */
export const ADAPT_SUBCOMMANDS: Record<string, (args: string[], out: Out) => Promise<number> | number> = {
  align: (a, out) => runPhaseCmd('align', a, out, ALIGN_HELP, ['teacher'], ['teacher'], trainAlign as unknown as Trainer, 'patch_embedding.safetensors'),
  tune: (a, out) => runPhaseCmd('tune', a, out, TUNE_HELP, ['init', 'model', 'shift', 'text-drop', 'train-only'], ['init'], trainTune as unknown as Trainer, 'model.safetensors'),
  lora: (a, out) =>
    runPhaseCmd('lora', a, out, LORA_HELP, ['init', 'model', 'shift', 'text-drop', 'train-only', 'rank', 'alpha', 'lora-targets'], ['init'], trainLora as unknown as Trainer, 'model.safetensors'),
  assemble: (a, out) => adaptAssembleMain(a, out),
  merge: (a, out) => adaptMergeMain(a, out),
};

export const ADAPT_HELP = `dcvg adapt <align | assemble | tune | lora | merge> [options]   (dcvg adapt <sub> --help)
  AE-Adapt-V (spec §5): align (phase 1), assemble, tune (phase 2), lora (phase 3), merge; data from dcvg latents.`;

export async function cmdAdapt(args: string[], out: Out): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === '--help' || sub === '-h') {
    out(`${ADAPT_HELP}\n  subcommands: ${Object.keys(ADAPT_SUBCOMMANDS).join(', ')}\n`);
    return sub ? 0 : 1;
  }
  const h = ADAPT_SUBCOMMANDS[sub];
  if (!h) throw new ValueError(`unknown adapt subcommand "${sub}" (known: ${Object.keys(ADAPT_SUBCOMMANDS).join(', ')})`);
  return await h(rest, out);
}

export type { AlignOptions, LoraPhaseOptions };
