#!/usr/bin/env -S node --single-threaded-gc --initial-old-space-size=256
/**
 * dcvg: the dcvideogen command line. Results go to stdout (human text, or JSON with --json); progress and
 * diagnostics to stderr; errors exit non-zero with one clear line.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { backend, getNativeAddon, nativeUnavailableReason } from '../backend/index.js';
import { DcvgError } from '../errors.js';
import { cmdInfo } from './info.js';
import { cmdConvert, cmdDecode, cmdEncode } from './ae_cmds.js';
import { cmdReconstruct, decodeToVideoFile, encodeVideoFile } from './video_cmds.js';
import { cmdRun } from './wan_cmds.js';
import { cmdGenerate } from './generate_cmds.js';
import { cmdCompareAE } from './compare_cmds.js';
import { cmdData, cmdScore, cmdShapes } from './shapes_cmds.js';
import { cmdTokenize } from './text_cmds.js';
import { cmdEvalAE, cmdStudy, cmdTrainAE, cmdTrainDiT } from './train_cmds.js';
import { cmdAdapt, cmdLatents } from './adapt_cmds.js';
import { cmdStudyAdapt } from './study_adapt_cmds.js';
import { cmdStudyExport } from './study_export_cmds.js';
import { cmdStudyGate } from './study_gate_cmds.js';

const here = dirname(fileURLToPath(import.meta.url));

function packageVersion(): string {
  for (const p of [resolve(here, '..', '..', 'package.json'), resolve(here, '..', '..', '..', 'package.json')]) {
    try {
      return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
    } catch {
      /* try the next location */
    }
  }
  return 'unknown';
}

const HELP = `dcvg ${packageVersion()} — DC-VideoGen in TypeScript

Usage:
  dcvg info --model <preset|config.json|wan2.1-vae> [--weights file] [--keys] [--json]
                         architecture, parameter counts, keys and shapes (without allocating weights);
                         with --weights, checks a .safetensors or torch .pt checkpoint against the model
                         (exit code 3 when it does not match)
  dcvg encode <video | input.safetensors> -o latent.safetensors [--model M --weights W]
              [--input-key input] [--stream | --whole] [--tile N|auto] [--overlap F] [--pad] [--pad-frames]
              [--resize WxH [--crop cover|stretch]] [--start N] [--frames N] [--fps F] [--json]
                         encode a video (any format ffmpeg reads, or a PNG sequence) or a raw NCTHW tensor in
                         [-1, 1] (key "input"); writes key "latent" (unscaled) with metadata (model, scaling factor,
                         frame count, size, fps)
  dcvg decode latent.safetensors -o <video | out.safetensors> [--model M --weights W] [--latent-key latent]
              [--fps F] [--tile ...] [--json]
                         decode to a video (.mp4 H.264 yuv420p, .gif, .y4m lossless, dir/ or %05d.png for PNGs) or
                         to key "reconstruction", cropped to the encoded frame count and size
  dcvg reconstruct <video> -o <video> [--model M --weights W] [--metrics m.json] [--plot psnr.png]
              [--resize WxH] [--start N] [--frames N] [--tile ...] [--pad] [--pad-frames] [--crf N] [--json]
                         encode + decode chunk by chunk and score: PSNR / SSIM per frame and overall (uint8 RGB,
                         the reference protocol), temporal error, and a per-frame PSNR plot with chunk boundaries;
                         --json adds latent values per frame, frames/s and peak memory (maxrss)
  dcvg compare-ae <video> [--model A --weights WA] --compare-model B [--compare-weights WB] [--frames N]
              [--resize WxH] [--pad-frames] [--json]
                         both autoencoders on the same frames, one row each: PSNR, SSIM, latent values per frame,
                         frames/s, peak memory (each model in a child process); dcvg compare-ae --help
  dcvg train-ae --model <preset|config.json> --data <dir> --out <run dir> [--steps --batch --frames --crop
              --lr --seed --resume ...]
                         train a DC-AE-V, or a Wan VAE with --model wan-vae:<preset|config.json> (+ KL term)
                         (L1 + SSIM, optional adversarial stage, AdamW warmup + cosine, EMA, held-out PSNR/SSIM,
                         atomic checkpoints, exact --resume); dcvg train-ae --help for all options
  dcvg train-dit --model <preset|config.json> --data <latent dir> --out <run dir> [--init W --steps --lr ...]
                         flow-matching training of a Wan T2V DiT on precomputed latents + text embeddings
                         (exact --resume); dcvg train-dit --help for all options
  dcvg latents --videos <dir> --out <dir> --size WxH [--dc-ae M:W] [--wan-vae W] [--text-encoder P --tokenizer T
              | --embeddings DIR] [--i2v --clip C]
                         AE-Adapt-V latent dataset: both autoencoders on the same latent frames, caption embeddings,
                         I2V condition latents + CLIP features, sharded and resumable; dcvg latents --help
  dcvg adapt align|tune|lora --data <latent dir> --out <run dir> [...]
                         AE-Adapt-V training phases (embedding alignment, patch+head tuning, LoRA) with exact
                         --resume, held-out evaluation and --accum; dcvg adapt <sub> --help
  dcvg eval-ae --data <dir> [--model M --weights W] [--split held-out|train|all] [--json]
                         PSNR / SSIM of a model (default: the shipped one) and of the equal-budget bicubic
                         baseline on whole clips of the train-ae split
  dcvg study temporal --data <dir> --out <dir> [--steps N --designs a,b --no-train --no-eval]
                         train chunk-causal / causal / non-causal AEs with equal budgets on short windows and compare
                         them on whole clips (streamed and whole-clip); report.md, study.json, per-frame PSNR plots
  dcvg study adapt --out <dir> [--scale real|smoke] [--config F] [--stages a,b] [--resume] [--publish F] [--json]
                         the small-scale AE-Adapt-V study: data, autoencoders, text, latents, base DiT, adapt phases
                         1-3, arms, report; every stage resumable; dcvg study adapt --help
  dcvg study gate --weights <W> --data <dir> [--model M] [--clips N] [--min P] [--json]
                         the study's autoencoder gate on any autoencoder: reconstructions read by the shapes scorer,
                         object / whole-frame PSNR; dcvg study gate --help
  dcvg study export --out <dir> --to <folder> [--force] [--json]
                         the adapted model of a study adapt folder as a generate-ready folder with its model card
                         (--to assets/shapes-t2v ships the default model); dcvg study export --help
  dcvg convert <ckpt.pt|.safetensors> -o out.safetensors [--dtype bf16|f16|f32] [--prefer ema|model]
                         official torch checkpoint (EMA weights first) to safetensors, without Python
  dcvg run wan --config cfg.json[#entry] --weights w.safetensors --inputs io.safetensors -o out.safetensors
                         run the Wan DiT on tensors named x, t, context0..N (and y, clip_fea for I2V); writes "out"
                         (the config is one entry of wan_fixtures.json's shape, or a bare Wan config)
  dcvg run wan-vae --config <wan2.1-vae | cfg.json[#entry]> --weights W --inputs io.safetensors -o out.safetensors
                         run the Wan-2.1 VAE on "input" (and input2, ...: NCTHW in [-1, 1], 1 + 4k frames); writes
                         moments, mu, latent (normalised), reconstruction_raw and reconstruction (+ suffix 2, ...)
  dcvg run clip [--config <open-clip-xlm-roberta-large-vit-huge-14 | cfg.json[#entry]>] --weights W
              --inputs io.safetensors -o out.safetensors [--all-blocks]
                         Wan's CLIP image encoder (models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth; the text
                         tower is never read) on "pixel_values" (B, 3, S, S) or images "image0..N" (3, H, W) in
                         [-1, 1]; writes "features" (the penultimate block's tokens), its own "pixel_values" for
                         images, and with --all-blocks "features_all_blocks"
  dcvg run umt5 --config <umt5-xxl | cfg.json[#entry]> --weights <.pth|.safetensors|text_encoder/> --inputs io.safetensors -o out.safetensors
                         run the umT5 text encoder on "ids" and "mask" (B, L; I64 / I32); writes hidden_states (B, L, dim)
                         at every position and context0..B-1, each prompt's real-token rows
  dcvg generate "PROMPT" [--model DIR] -o out.mp4 [--image first.png] [--prompt-file F] [--negative TEXT]
              [--frames N] [--size WxH] [--steps N] [--guidance W] [--shift S] [--sampler unipc|euler]
              [--seed N] [--cache-dir DIR | --no-cache] [--json]
                         text-to-video (image-to-video with --image) with a diffusers- or Wan-layout model folder
                         (DC-VideoGen on DC-AE-V, or base Wan-2.1 on the Wan VAE); per-step progress with ETA, the
                         video written atomically; dcvg generate --help and docs/generate.md for the folder files;
                         without --model, the shapes-world model shipped in assets/shapes-t2v (128x128, 16 frames)
  dcvg data shapes --out DIR --count N [--seed S] [--split train|held-out] [--json]
                         a shapes-world data set: N videos (lossless .mkv, 16 frames of 128x128) with caption sidecars
                         <stem>.txt and manifest.json (seed, split, attributes, start positions), as train-ae and
                         latents read it; train never holds a held-out (color, shape, direction) triple, held-out only
                         those; rerunning skips the videos already there
  dcvg score shapes <videos | folders> [--captions captions.tsv|manifest.json] [--json]
                         the semantic score against each video's caption (sidecar <stem>.txt, captions.tsv, or
                         --captions): mean attribute accuracy, all-correct, per attribute, and the mask-area variance
                         (flicker), for training and held-out combinations separately
  dcvg shapes render --output <video | dir/> [--seed N] [--count K] [--held-out exclude|include|only]
              [--captions captions.json] [--json]
                         videos of the shapes world (16 frames of 128x128 each, one after another, 8 fps) and
                         their captions (held-out attribute triples excluded unless asked)
  dcvg shapes score <video> [--caption "a small red circle moving left on a black background"] [--json]
                         the semantic scorer: background, colour, shape, size and direction read from the pixels,
                         and the attribute accuracy against a caption
  dcvg tokenize --tokenizer <spiece.model|tokenizer.json|folder> [--text-len N] [--no-byte-fallback] [--json] TEXT...
                         what umT5 receives for each prompt: Wan's cleaned text, SentencePiece pieces, ids (eos
                         last), input_ids truncated / padded to --text-len (default 512, Wan's) and the mask; --json
                         prints one object per text with the keys of the tokenizer fixture's cases;
                         --no-byte-fallback gives one <unk> per unknown span, as a converted fast tokenizer does
  dcvg env [--json] [--peak]
                         the compute backend in use, library versions, threads (and measured FMA peak)
  dcvg --version         print the version
  dcvg --help            this text

Wan-2.1 VAE: encode, decode, reconstruct, eval-ae, compare-ae and info take --model wan2.1-vae --weights
Wan2.1_VAE.pth (or .safetensors in the original or diffusers names), a Wan VAE config .json (reference or diffusers
vocabulary; file.json#entry picks one entry) with --weights, or a diffusers vae/ folder (its own weights). It takes
1 + 4k frames: other counts are refused with the counts to crop (--frames N) or pad to; --pad-frames repeats the last
frame up to the next 1 + 4k and decode / reconstruct crop back. Latent files record the model that wrote them, and
decode refuses another model (DC-AE-V vs Wan VAE, or another architecture). Wan latents are normalised
((mu - mean) / std, what the Wan DiT takes); decoded pixels are clamped to [-1, 1].

Models: --model (preset or config.json) with --weights: a .safetensors file, a sharded *.safetensors.index.json, a
torch .pt/.pth, or a model folder (diffusers / Wan layout, a train-ae run folder); --weights alone for files (or run
folders) written by train-ae (they carry their config); neither for the default model shipped in assets/default-ae.

Environment:
  DCVG_BACKEND=native|reference   choose the kernel backend (default: native when built)
  DCVG_NATIVE_ADDON=PATH          load the native addon from PATH (e.g. a DCVG_MARCH build), nothing else
  OMP_NUM_THREADS=N               threads for the native kernels (default: all cores)
  OMP_WAIT_POLICY=passive         recommended on machines shared with other work (see README, Training)
`;

function cmdEnv(args: string[]): void {
  const json = args.includes('--json');
  const addon = getNativeAddon();
  const info: Record<string, unknown> = {
    version: packageVersion(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    backend: backend().name,
    native: addon ? { available: true, threads: addon.getNumThreads(), ...addon.versions() } : { available: false, reason: nativeUnavailableReason() },
  };
  if (addon && args.includes('--peak')) info.peak_gflops = +addon.peakGflops(addon.getNumThreads(), 0.3).toFixed(1);
  if (json) {
    process.stdout.write(JSON.stringify(info, null, 1) + '\n');
    return;
  }
  for (const [k, v] of Object.entries(info)) process.stdout.write(`${k.padEnd(12)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`);
}

/** One line for the user. Errors of ours carry their own message; an allocation the engine did not foresee says what it is. */
function describeError(e: unknown): string {
  if (e instanceof DcvgError) return e.message;
  if (e instanceof RangeError && /allocation failed|Invalid (typed )?array length|out of range/i.test(e.message))
    return `out of memory (${e.message}); for large frames try --tile auto or a smaller --resize`;
  if (e instanceof Error) return (e as NodeJS.ErrnoException).code ? e.message : `internal error: ${e.message} (please report it)`;
  return String(e);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
      process.stdout.write(HELP);
      return cmd ? 0 : 1;
    }
    if (cmd === '--version' || cmd === '-v') {
      process.stdout.write(packageVersion() + '\n');
      return 0;
    }
    const out = (s: string) => void process.stdout.write(s);
    if (cmd === 'info') return cmdInfo(rest, out);
    if (cmd === 'encode') return await cmdEncode(rest, out, encodeVideoFile);
    if (cmd === 'decode') return await cmdDecode(rest, out, decodeToVideoFile);
    if (cmd === 'reconstruct') return await cmdReconstruct(rest, out);
    if (cmd === 'compare-ae') return await cmdCompareAE(rest, out);
    if (cmd === 'run') return cmdRun(rest, out);
    if (cmd === 'generate') return await cmdGenerate(rest, out);
    if (cmd === 'train-ae') return await cmdTrainAE(rest, out);
    if (cmd === 'train-dit') return await cmdTrainDiT(rest, out);
    if (cmd === 'study') {
      if (rest[0] === 'adapt') return await cmdStudyAdapt(rest.slice(1), out);
      if (rest[0] === 'export') return await cmdStudyExport(rest.slice(1), out);
      if (rest[0] === 'gate') return await cmdStudyGate(rest.slice(1), out);
      return await cmdStudy(rest, out);
    }
    if (cmd === 'latents') return await cmdLatents(rest, out);
    if (cmd === 'adapt') return await cmdAdapt(rest, out);
    if (cmd === 'eval-ae') return await cmdEvalAE(rest, out);
    if (cmd === 'convert') return cmdConvert(rest, out);
    if (cmd === 'shapes') return await cmdShapes(rest, out);
    if (cmd === 'data') return await cmdData(rest, out);
    if (cmd === 'score') return await cmdScore(rest, out);
    if (cmd === 'tokenize') return await cmdTokenize(rest, out);
    if (cmd === 'env') {
      cmdEnv(rest);
      return 0;
    }
    process.stderr.write(`dcvg: unknown command "${cmd}" (see dcvg --help)\n`);
    return 2;
  } catch (e) {
    process.stderr.write(`dcvg ${cmd}: ${describeError(e)}\n`);
    return 1;
  }
}

function invokedDirectly(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}
if (invokedDirectly()) main(process.argv.slice(2)).then((code) => (process.exitCode = code));
