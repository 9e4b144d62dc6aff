/**
 * `dcvg train-ae`: train a DC-AE-V or a Wan VAE on a folder of clips (see src/train/ae_trainer.ts for what a run writes).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TemporalMode } from '../models/dcaev/config.js';
import { STUDY_DEFAULTS, runTemporalStudy, type StudyOptions } from '../train/study.js';
import { TRAIN_DEFAULTS, evaluateWithBaseline, trainAE, type TrainAEOptions } from '../train/ae_trainer.js';
import { listMedia, loadClipSet } from '../train/data.js';
import { DIT_DEFAULTS, trainDiT, type TrainDiTOptions } from '../train/dit_trainer.js';
import { ValueError } from '../errors.js';
import { Progress, fmtSecs } from './progress.js';
import { loadAutoencoder, parseValues, type Out } from './common.js';

export const TRAIN_HELP = `dcvg train-ae --model <preset|config.json> --data <dir> --out <run dir> [options]
  --model M          DC-AE-V: a preset (dc-ae-v-f32t4c32-1.0, ..., the small dcaev-shapes-f32c32) or a config .json;
                     Wan-2.1 VAE topology: wan-vae:<preset | config.json>, a Wan VAE preset (wan-vae-shapes) or a
                     config .json in the Wan vocabulary (z_dim, dim_mult, ...)
  --steps N          optimizer steps in all (default ${TRAIN_DEFAULTS.steps})
  --batch N          clips per step (default ${TRAIN_DEFAULTS.batch})
  --frames N         frames per window, whole chunks (default: two chunks); Wan VAE: 1 + 4k (default 13)
  --crop N           square crop side, multiple of the spatial factor (default: largest that fits, <= 128)
  --lr F             peak learning rate (default ${TRAIN_DEFAULTS.lr}); --warmup N steps (default ${TRAIN_DEFAULTS.warmup}), then cosine
                     to --min-lr-ratio (default ${TRAIN_DEFAULTS.minLrRatio})
  --weight-decay F   AdamW weight decay (default ${TRAIN_DEFAULTS.weightDecay})
  --clip F           max global gradient norm (default ${TRAIN_DEFAULTS.clip})
  --ema F            EMA decay (default ${TRAIN_DEFAULTS.emaDecay})
  --loss l1|mse      reconstruction term: mean absolute error (default) or mean squared error (what PSNR measures)
  --fg-weight F      weight the reconstruction term towards the foreground: a value weighs 1 + F * (its pixel's
                     distance from the sample's median colour) / 2, normalised to mean 1 (default 0: none); for
                     video that is mostly one flat colour with a small object (docs/studies/adapt.md)
  --fg-of orig|both  whose foreground --fg-weight weighs: the original's (default), or the original's and the
                     reconstruction's (values put off the background where the original has none, halos and stray
                     pixels, weigh like the object)
  --ssim-weight F    weight of (1 - SSIM) next to it (default ${TRAIN_DEFAULTS.ssimWeight})
  --kl-weight F      Wan VAE: weight of the KL term (KL to N(0, I) summed over latent values per pixel value;
                     default 1e-6); > 0 samples the latent from (mu, log_var), 0 trains mu as a plain latent
  --still-prob F     probability of a still frame as a static clip (default ${TRAIN_DEFAULTS.stillProb}); image files
                     in --data are used as stills only
  --color-aug F      probability of a colour change per sample: RGB channels permuted, saturation scaled 0.5-2x
                     (default 0)
  --holdout N        clips held out for evaluation (default 3 when the folder has >= 8 videos)
  --eval-every N     evaluate the EMA weights on the held-out clips (default ${TRAIN_DEFAULTS.evalEvery})
  --eval-frames N    evaluate on the first N frames of each held-out clip (default: whole clips)
  --ckpt-every N     write checkpoint.safetensors atomically (default ${TRAIN_DEFAULTS.ckptEvery})
  --adv-start N      after step N, train the decoder only with an added patch-discriminator hinge loss
  --adv-weight F     weight of that term (default ${TRAIN_DEFAULTS.advWeight}); --disc-lr F (default ${TRAIN_DEFAULTS.discLr})
  --init W           start from these weights instead of the random initialisation
  --residual-init M  shortcut (default: residual branches start at zero, the model starts as its shortcut
                     autoencoder) or default (PyTorch-style init everywhere)
  --init-scale S     the random weights' scale: lecun (default: uniform, variance 1 / fan_in) or torch (PyTorch's
                     default, variance 1 / (3 fan_in); on the shapes world it starts a plateau: docs/studies/adapt.md)
  --train-only RE    train only the parameters whose names match the regular expression RE (the others keep
                     their initial or --init values; e.g. 'conv[12]\\.' = the residual blocks)
  --seed N           (default ${TRAIN_DEFAULTS.seed})
  --resume           continue the run in --out from its checkpoint (same data order and RNG state);
                     only --steps may change
  --json             print the final summary as JSON
  --log-every N      a progress line every N steps when stderr is not a terminal (default 50; terminals get a bar)
  Ctrl-C stops after the current step and writes a checkpoint.`;

const SIGNAL_NUMBER: Record<string, number> = { SIGINT: 2, SIGTERM: 15 };

/**
 * SIGINT (Ctrl-C) or SIGTERM: stop after the current step with a checkpoint. A second signal: leave at once, between
 * steps (JS runs no handler inside a step, so never in the middle of a checkpoint write); the last checkpoint stays
 * valid, and a new run without one removes what it wrote (see NewRunGuard in src/train/loop.ts).
 */
export function stopOnSignals(cmd: string): { stopped: () => boolean; exitCode: () => number; release: () => void } {
  let stopSignal: NodeJS.Signals | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopSignal) process.exit(128 + SIGNAL_NUMBER[sig]!);
    stopSignal = sig;
    process.stderr.write(`\n${cmd}: ${sig === 'SIGINT' ? '' : `${sig}: `}stopping after this step (${sig === 'SIGINT' ? 'Ctrl-C' : 'the signal'} again to quit at once)\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    stopped: () => stopSignal !== null,
    // stopped by a signal: the shell's convention for it (130 for SIGINT, 143 for SIGTERM)
    exitCode: () => 128 + SIGNAL_NUMBER[stopSignal ?? 'SIGINT']!,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

function num(v: string | undefined, name: string, int = false): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || (int && !Number.isInteger(x))) throw new ValueError(`--${name} must be ${int ? 'an integer' : 'a number'}, got "${v}"`);
  return x;
}

/** An optional flag that must be a positive integer. */
function positiveInt(v: string | undefined, name: string): number | undefined {
  const x = num(v, name, true);
  if (x !== undefined && x < 1) throw new ValueError(`--${name} must be a positive integer, got "${v}"`);
  return x;
}

/**
 * What train-ae and train-dit share on the command line: every flag in `strOpts` as a string plus --resume / --json,
 * --out always required, --model and --data unless resuming, and on --resume nothing but --steps / --log-every / --json
 * (the run's settings come from its checkpoint). Returns the parsed values and an options object to fill with `set`.
 */
function parseTrainArgs<O>(args: string[], cmd: 'train-ae' | 'train-dit', strOpts: readonly string[], dataWhat: string) {
  const options: Record<string, { type: 'string' | 'boolean' }> = Object.fromEntries(strOpts.map((k) => [k, { type: 'string' as const }]));
  options.resume = { type: 'boolean' };
  options.json = { type: 'boolean' };
  const v = parseValues(args, options, cmd, false);
  const s = (k: string) => v[k] as string | undefined;
  if (!s('out')) throw new ValueError(`${cmd} needs --out <run dir>`);
  const resume = !!v.resume;
  if (!resume && !s('model')) throw new ValueError(`${cmd} needs --model <preset | config.json> (or --resume)`);
  if (!resume && !s('data')) throw new ValueError(`${cmd} needs --data <${dataWhat}>`);
  if (resume) {
    const allowed = new Set(['out', 'steps', 'resume', 'json', 'log-every']);
    const extra = Object.keys(v).filter((k) => v[k] !== undefined && !allowed.has(k));
    if (extra.length) throw new ValueError(`--resume takes the run's own settings from its checkpoint; only --steps may change (got --${extra.join(', --')})`);
  }
  const o: Record<string, unknown> = { out: s('out')!, resume };
  const set = (k: keyof O & string, val: unknown) => {
    if (val !== undefined) o[k] = val;
  };
  return { v, s, o, set };
}

export async function cmdTrainAE(args: string[], out: Out): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out(TRAIN_HELP + '\n');
    return 0;
  }
  const strOpts = [
      'model', 'data', 'out', 'steps', 'batch', 'frames', 'crop', 'lr', 'warmup', 'min-lr-ratio', 'weight-decay', 'clip', 'ema',
      'ssim-weight', 'kl-weight', 'loss', 'fg-weight', 'fg-of', 'still-prob', 'color-aug', 'holdout', 'eval-every', 'eval-frames', 'ckpt-every', 'adv-start', 'adv-weight', 'disc-lr',
      'init', 'seed', 'log-every', 'residual-init', 'init-scale', 'train-only',
    ];
  const { v, s, o, set } = parseTrainArgs<TrainAEOptions>(args, 'train-ae', strOpts, 'folder of clips');
  set('model', s('model'));
  set('data', s('data'));
  set('steps', num(s('steps'), 'steps', true));
  set('batch', num(s('batch'), 'batch', true));
  set('frames', num(s('frames'), 'frames', true));
  set('crop', num(s('crop'), 'crop', true));
  set('lr', num(s('lr'), 'lr'));
  set('warmup', num(s('warmup'), 'warmup', true));
  set('minLrRatio', num(s('min-lr-ratio'), 'min-lr-ratio'));
  set('weightDecay', num(s('weight-decay'), 'weight-decay'));
  set('clip', num(s('clip'), 'clip'));
  set('emaDecay', num(s('ema'), 'ema'));
  set('ssimWeight', num(s('ssim-weight'), 'ssim-weight'));
  set('klWeight', num(s('kl-weight'), 'kl-weight'));
  set('loss', s('loss'));
  set('fgWeight', num(s('fg-weight'), 'fg-weight'));
  set('fgOf', s('fg-of'));
  set('stillProb', num(s('still-prob'), 'still-prob'));
  set('colorAug', num(s('color-aug'), 'color-aug'));
  set('holdout', num(s('holdout'), 'holdout', true));
  set('evalEvery', num(s('eval-every'), 'eval-every', true));
  set('evalFrames', num(s('eval-frames'), 'eval-frames', true));
  set('ckptEvery', num(s('ckpt-every'), 'ckpt-every', true));
  set('advStart', num(s('adv-start'), 'adv-start', true));
  set('advWeight', num(s('adv-weight'), 'adv-weight'));
  set('discLr', num(s('disc-lr'), 'disc-lr'));
  set('seed', num(s('seed'), 'seed', true));
  set('init', s('init'));
  set('residualInit', s('residual-init'));
  set('initScale', s('init-scale'));
  set('trainOnly', s('train-only'));
  const logEvery = positiveInt(s('log-every'), 'log-every') ?? 50;

  const signals = stopOnSignals('train-ae');
  let bar: Progress | null = null;
  let start = 0;
  let total = 0;
  let recent: number[] = [];
  const t0 = performance.now();
  try {
    const r = await trainAE(o as unknown as TrainAEOptions & { resume: boolean }, {
      onMessage: (m) => {
        if (!m.startsWith('loaded ')) process.stderr.write(`train-ae: ${m}\n`);
      },
      onStart: (i) => {
        start = i.startStep;
        total = i.steps;
        process.stderr.write(
          `train-ae: ${i.resumed ? `resuming at step ${i.startStep}` : 'new run'}; ${i.steps} steps, ${i.params.toLocaleString('en-US')} parameters, ` +
            `${i.train} training clips, ${i.heldOut} held out -> ${o.out}\n`,
        );
        bar = new Progress('train', i.steps - i.startStep, 'steps');
      },
      onStep: (rec) => {
        recent.push(rec.loss);
        if (recent.length > 20) recent = recent.slice(-20);
        const avg = recent.reduce((a, b) => a + b, 0) / recent.length;
        bar?.update(rec.step - start, `step ${rec.step} loss ${avg.toFixed(4)}`);
        if (!process.stderr.isTTY && (rec.step % logEvery === 0 || rec.step === total)) {
          const secs = (performance.now() - t0) / 1000;
          const rate = (rec.step - start) / secs;
          process.stderr.write(
            `step ${rec.step}/${total} loss ${avg.toFixed(4)} (${rec.mse !== undefined ? `mse ${rec.mse.toFixed(5)}` : `l1 ${(rec.l1 ?? NaN).toFixed(4)}`}, 1-ssim ${rec.ssim.toFixed(4)}) lr ${rec.lr.toExponential(2)} ` +
              `${rate.toFixed(2)} steps/s ETA ${fmtSecs((total - rec.step) / Math.max(rate, 1e-9))}\n`,
          );
        }
      },
      onEval: (e) => process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}eval @${e.step}: held-out PSNR ${e.eval.psnr.toFixed(2)} dB, SSIM ${e.eval.ssim.toFixed(4)} (${e.eval.frames} frames)\n`),
      shouldStop: signals.stopped,
    });
    (bar as Progress | null)?.done();
    const summary = { runDir: r.runDir, steps: r.steps, stoppedEarly: r.stoppedEarly, eval: r.lastEval?.eval ?? null, seconds: +((performance.now() - t0) / 1000).toFixed(1) };
    if (v.json) out(JSON.stringify(summary) + '\n');
    else if (r.steps === 0) out('stopped before the first step; nothing written\n');
    else
      out(
        `${r.stoppedEarly ? 'stopped' : 'finished'} at step ${r.steps} in ${fmtSecs(summary.seconds)}; weights (EMA): ${r.runDir}/model.safetensors` +
          (r.lastEval ? `; held-out PSNR ${r.lastEval.eval.psnr.toFixed(2)} dB, SSIM ${r.lastEval.eval.ssim.toFixed(4)}` : '') +
          '\n',
      );
    // stopped by a signal: the shell's convention for it (130 for SIGINT, 143 for SIGTERM)
    return r.stoppedEarly ? signals.exitCode() : 0;
  } finally {
    signals.release();
  }
}

export const STUDY_HELP = `dcvg study temporal --data <dir> --out <dir> [options]
  Trains chunk-causal, causal and non-causal DC-AE-V with identical widths, compression (f32t4c32) and budget on
  two-chunk windows, then reconstructs whole clips streamed and whole-clip; writes report.md, study.json and
  per-frame PSNR plots. Interrupted training resumes where it stopped when run again.
  --steps N          training steps per design (default ${STUDY_DEFAULTS.steps})
  --crop N           training crop (default ${STUDY_DEFAULTS.crop}); --frames N window (default ${STUDY_DEFAULTS.frames} = two chunks)
  --lr F --warmup N --seed N --holdout N --still-prob F   as for train-ae
  --designs a,b      train only these (chunk_causal, causal, non_causal), e.g. to run them as parallel processes
  --no-train         only evaluate finished runs;  --no-eval   only train
  --eval-frames N    evaluate on the first N frames of each clip (default: whole clips)
  --held-out-only    skip the (slower) evaluation on the training clips`;

export async function cmdStudy(args: string[], out: Out): Promise<number> {
  const [what, ...rest] = args;
  // `study adapt` is dispatched by main.ts (src/cli/study_adapt.ts runs train-ae / train-dit through this module, so
  // importing it here would make an import cycle)
  if (!what || what === '--help' || what === '-h' || rest.includes('--help')) {
    out(STUDY_HELP + '\n');
    return what ? 0 : 1;
  }
  if (what !== 'temporal') throw new ValueError(`unknown study "${what}" (known: temporal, adapt, export)`);
  const studyOptions = Object.fromEntries([
    ...['data', 'out', 'steps', 'crop', 'frames', 'lr', 'warmup', 'seed', 'holdout', 'still-prob', 'designs', 'eval-frames', 'log-every'].map((k) => [k, { type: 'string' as const }]),
    ...['no-train', 'no-eval', 'held-out-only', 'json'].map((k) => [k, { type: 'boolean' as const }]),
  ]);
  const v = parseValues(rest, studyOptions, 'study', false);
  const s = (k: string) => v[k] as string | undefined;
  if (!s('data')) throw new ValueError('study temporal needs --data <folder of clips>');
  if (!s('out')) throw new ValueError('study temporal needs --out <dir>');
  const o: Partial<StudyOptions> & { data: string; out: string } = { data: s('data')!, out: s('out')! };
  const setNum = (k: keyof StudyOptions, flag: string, int = true) => {
    const x = num(s(flag), flag, int);
    if (x !== undefined) (o as Record<string, unknown>)[k] = x;
  };
  setNum('steps', 'steps');
  setNum('crop', 'crop');
  setNum('frames', 'frames');
  setNum('lr', 'lr', false);
  setNum('warmup', 'warmup');
  setNum('seed', 'seed');
  setNum('holdout', 'holdout');
  setNum('stillProb', 'still-prob', false);
  setNum('evalFrames', 'eval-frames');
  if (s('designs')) o.designs = s('designs')!.split(',').map((d) => d.trim().replace(/-/g, '_')) as TemporalMode[];
  o.train = !v['no-train'];
  o.evaluate = !v['no-eval'];
  o.evalTrainClips = !v['held-out-only'];
  const logEvery = positiveInt(s('log-every'), 'log-every') ?? 100;
  let current = '';
  let t0 = performance.now();
  const r = await runTemporalStudy(o, {
    onDesign: (d, phase) => {
      current = d;
      t0 = performance.now();
      process.stderr.write(`study: ${phase === 'train' ? 'training' : 'evaluating'} ${d}\n`);
    },
    onMessage: (m) => {
      if (!m.startsWith('loaded ')) process.stderr.write(`study: ${m}\n`);
    },
    onStep: (rec) => {
      if (rec.step % logEvery === 0) {
        const secs = (performance.now() - t0) / 1000;
        process.stderr.write(`study ${current}: step ${rec.step} loss ${rec.loss.toFixed(4)} (${fmtSecs(secs)} in this session)\n`);
      }
    },
    onEval: (e) => process.stderr.write(`study ${current}: eval @${e.step} held-out PSNR ${e.eval.psnr.toFixed(2)} dB (first ${e.eval.frames} frames)\n`),
  });
  if (!r) {
    out(`trained ${o.designs?.join(', ') ?? 'all designs'} in ${o.out}\n`);
    return 0;
  }
  if (v.json) out(JSON.stringify(r) + '\n');
  else out(readFileSync(join(o.out, 'report.md'), 'utf8'));
  return 0;
}

export const EVAL_HELP = `dcvg eval-ae --data <dir> [--model M --weights W] [--split held-out|train|all] [--holdout N]
            [--frames N] [--baseline-tf 1,2,4,8,16,32] [--json]
  Reconstructs each clip (whole length, streamed) with the model (default: the shipped default model) and with the
  equal-budget bicubic baseline (the same number of values per clip as the latent: per-clip best temporal factor,
  antialiased bicubic down, linear in time, bicubic up), and prints PSNR / SSIM per clip and the means over frames,
  then the baseline's means with one temporal factor for all clips (each factor, and the best).
  The split is the one train-ae uses (same --holdout). --model wan2.1-vae --weights Wan2.1_VAE.pth (or any Wan VAE
  config / diffusers vae/ folder) evaluates the Wan-2.1 VAE; clips whose length is not 1 + 4k are padded by repeating
  the last frame and cropped back (the padded latent counts in the budget).`;

export async function cmdEvalAE(args: string[], out: Out): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out(EVAL_HELP + '\n');
    return 0;
  }
  const evalOptions = Object.fromEntries([
    ...['data', 'model', 'weights', 'split', 'holdout', 'frames', 'baseline-tf'].map((k) => [k, { type: 'string' as const }]),
    ['json', { type: 'boolean' as const }],
  ]);
  const v = parseValues(args, evalOptions, 'eval-ae', false);
  const s = (k: string) => v[k] as string | undefined;
  if (!s('data')) throw new ValueError('eval-ae needs --data <folder of clips>');
  const split = s('split') ?? 'held-out';
  if (!['held-out', 'train', 'all'].includes(split)) throw new ValueError(`--split must be held-out, train or all, got "${split}"`);
  // every flag checked before the (slow) model load and decoding
  const tfs = (s('baseline-tf') ?? '1,2,4,8,16,32').split(',').map((t) => positiveInt(t.trim(), 'baseline-tf')!);
  const holdout = num(s('holdout'), 'holdout', true);
  if (holdout !== undefined && holdout < 0) throw new ValueError(`--holdout must be an integer >= 0, got "${s('holdout')}"`);
  const maxFrames = positiveInt(s('frames'), 'frames');
  listMedia(s('data')!); // the folder exists and has clips
  const model = loadAutoencoder({ model: s('model'), weights: s('weights') }, 'eval-ae');
  const set = await loadClipSet(s('data')!, { holdout, maxFrames });
  const clips = (split === 'held-out' ? set.heldOut : split === 'train' ? set.train : [...set.train, ...set.heldOut]).filter((c) => !c.still);
  if (!clips.length) throw new ValueError(`eval-ae: no clips in the ${split} split of ${s('data')} (holdout ${set.heldOut.length})`);
  const r = evaluateWithBaseline(model, clips, tfs, (name) => process.stderr.write(`eval-ae: ${name}\n`));
  if (v.json) {
    out(JSON.stringify({ modelName: model.name, family: model.family, split, ...r }) + '\n');
    return 0;
  }
  out(`model ${model.name}; ${split} clips: ${clips.map((c) => c.name).join(', ')}\n`);
  out('| clip | frames | latent values | model PSNR | model SSIM | bicubic PSNR | bicubic SSIM | bicubic kept (tf, h x w) |\n|---|---:|---:|---:|---:|---:|---:|---|\n');
  for (const c of r.clips)
    out(`| ${c.name} | ${c.frames} | ${c.budget} | ${c.model.psnr.toFixed(2)} | ${c.model.ssim.toFixed(4)} | ${c.baseline.psnr.toFixed(2)} | ${c.baseline.ssim.toFixed(4)} | ${c.baseline.tf}, ${c.baseline.h}x${c.baseline.w} |\n`);
  out(`| **mean over frames** | ${r.frames} | | **${r.model.psnr.toFixed(2)}** | **${r.model.ssim.toFixed(4)}** | **${r.baseline.psnr.toFixed(2)}** | **${r.baseline.ssim.toFixed(4)}** | |\n`);
  if (r.fixed.length > 1 && r.bestFixed)
    out(`\nbicubic with one temporal factor for all clips (PSNR / SSIM, means over frames): ${r.fixed.map((f) => `tf ${f.tf} ${f.psnr.toFixed(2)} / ${f.ssim.toFixed(4)}`).join('; ')}; best: tf ${r.bestFixed.tf}\n`);
  return 0;
}

export const TRAIN_DIT_HELP = `dcvg train-dit --model <preset|config.json> --data <latent dir> --out <run dir> [options]
  Flow-matching training of a Wan text-to-video DiT (spec §5.5) on precomputed latents and text embeddings
  (folder format: docs/training.md; build one from clips with scripts/dit-latents.mjs).
  --init W           start from these weights (Wan or diffusers names, .safetensors / .pt / folder); default random
  --steps N          optimizer steps in all (default ${DIT_DEFAULTS.steps})
  --batch N          samples per step (default ${DIT_DEFAULTS.batch}); a fresh shuffle of the set every epoch
  --lr F             peak learning rate (default ${DIT_DEFAULTS.lr}); --warmup N linear warmup steps (default ${DIT_DEFAULTS.warmup})
  --schedule S       constant (default) or cosine (to --min-lr-ratio, default ${DIT_DEFAULTS.minLrRatio}, of --lr)
  --weight-decay F   AdamW weight decay (default ${DIT_DEFAULTS.weightDecay}); --beta1 F --beta2 F (default ${DIT_DEFAULTS.beta1}, ${DIT_DEFAULTS.beta2})
  --clip F           max global gradient norm (default ${DIT_DEFAULTS.clip}; 0 = no clipping)
  --ema F            EMA decay (default ${DIT_DEFAULTS.emaDecay}); model.safetensors holds the EMA weights
  --shift F          flow shift of the 50-point training grid (default ${DIT_DEFAULTS.shift}, the T2V recipe; 5 for I2V)
  --text-drop F      probability of replacing a sample's text by the null embedding (default ${DIT_DEFAULTS.textDrop})
  --train-only RE    train only the parameters whose names match RE (e.g. 'patch_embedding|head\\.')
  --ckpt-every N     write checkpoint.safetensors atomically (default ${DIT_DEFAULTS.ckptEvery})
  --seed N           (default ${DIT_DEFAULTS.seed})
  --resume           continue the run in --out from its checkpoint (bit-exact); only --steps may change
  --json             print the final summary as JSON;  --log-every N  progress lines when stderr is not a terminal
  Ctrl-C (or SIGTERM) stops after the current step and writes a checkpoint (exit 130 / 143); a second one quits.`;

export async function cmdTrainDiT(args: string[], out: Out): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out(TRAIN_DIT_HELP + '\n');
    return 0;
  }
  const strOpts = ['model', 'data', 'out', 'init', 'steps', 'batch', 'lr', 'warmup', 'schedule', 'min-lr-ratio', 'weight-decay', 'beta1', 'beta2', 'clip', 'ema', 'shift', 'text-drop', 'train-only', 'ckpt-every', 'seed', 'log-every'];
  const { v, s, o, set } = parseTrainArgs<TrainDiTOptions>(args, 'train-dit', strOpts, 'latent folder');
  set('model', s('model'));
  set('data', s('data'));
  set('init', s('init'));
  set('steps', num(s('steps'), 'steps', true));
  set('batch', num(s('batch'), 'batch', true));
  set('lr', num(s('lr'), 'lr'));
  set('warmup', num(s('warmup'), 'warmup', true));
  set('schedule', s('schedule'));
  set('minLrRatio', num(s('min-lr-ratio'), 'min-lr-ratio'));
  set('weightDecay', num(s('weight-decay'), 'weight-decay'));
  set('beta1', num(s('beta1'), 'beta1'));
  set('beta2', num(s('beta2'), 'beta2'));
  set('clip', num(s('clip'), 'clip'));
  set('emaDecay', num(s('ema'), 'ema'));
  set('shift', num(s('shift'), 'shift'));
  set('textDrop', num(s('text-drop'), 'text-drop'));
  set('trainOnly', s('train-only'));
  set('ckptEvery', num(s('ckpt-every'), 'ckpt-every', true));
  set('seed', num(s('seed'), 'seed', true));
  const logEvery = positiveInt(s('log-every'), 'log-every') ?? 50;

  const signals = stopOnSignals('train-dit');
  let bar: Progress | null = null;
  let start = 0;
  let total = 0;
  let recent: number[] = [];
  const t0 = performance.now();
  try {
    const r = await trainDiT(o as unknown as TrainDiTOptions & { resume: boolean }, {
      onMessage: (m) => process.stderr.write(`train-dit: ${m}\n`),
      onStart: (i) => {
        start = i.startStep;
        total = i.steps;
        process.stderr.write(
          `train-dit: ${i.resumed ? `resuming at step ${i.startStep}` : 'new run'}; ${i.steps} steps, ${i.params.toLocaleString('en-US')} parameters ` +
            `(${i.trainable.toLocaleString('en-US')} trained), ${i.samples} samples -> ${o.out}\n`,
        );
        bar = new Progress('train', i.steps - i.startStep, 'steps');
      },
      onStep: (rec) => {
        recent.push(rec.loss);
        if (recent.length > 20) recent = recent.slice(-20);
        const avg = recent.reduce((a, b) => a + b, 0) / recent.length;
        bar?.update(rec.step - start, `step ${rec.step} loss ${avg.toFixed(4)}`);
        if (!process.stderr.isTTY && (rec.step % logEvery === 0 || rec.step === total)) {
          const rate = (rec.step - start) / ((performance.now() - t0) / 1000);
          process.stderr.write(`step ${rec.step}/${total} loss ${avg.toFixed(4)} lr ${rec.lr.toExponential(2)} ${rate.toFixed(2)} steps/s ETA ${fmtSecs((total - rec.step) / Math.max(rate, 1e-9))}\n`);
        }
      },
      shouldStop: signals.stopped,
    });
    (bar as Progress | null)?.done();
    const summary = { runDir: r.runDir, steps: r.steps, stoppedEarly: r.stoppedEarly, seconds: +((performance.now() - t0) / 1000).toFixed(1) };
    if (v.json) out(JSON.stringify(summary) + '\n');
    else if (r.steps === 0) out('stopped before the first step; nothing written\n');
    else out(`${r.stoppedEarly ? 'stopped' : 'finished'} at step ${r.steps} in ${fmtSecs(summary.seconds)}; weights (EMA): ${r.runDir}/model.safetensors\n`);
    return r.stoppedEarly ? signals.exitCode() : 0;
  } finally {
    signals.release();
  }
}
