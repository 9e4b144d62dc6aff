/**
 * `dcvg generate "prompt" [--image x.png] --model DIR -o out.mp4 [...]`: text-to-video, or image-to-video with
 * --image, from a diffusers- or Wan-layout model folder (src/pipelines/model_folder.ts, docs/generate.md).
 *
 * Everything that can be checked is checked before any weight is read: the options, the prompt (file), the image,
 * the folder and its configs, the size against the autoencoder and the DiT's patch, the output path. The video is
 * written atomically (nothing at -o on any error).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertOutputsSafe } from '../io/files.js';
import { ValueError } from '../errors.js';
import { defaultEncoderLoaders } from '../pipelines/encoders.js';
import { checkGenerationOptions, planGeneration, type GenerationOptions, type GenerationResult, type GenerationStage } from '../pipelines/generation.js';
import { folderModels, resolveModelFolder, vaeGeometry, type EncoderLoaders } from '../pipelines/model_folder.js';
import { imageToVideo, loadConditionImage } from '../pipelines/i2v.js';
import { textToVideo } from '../pipelines/t2v.js';
import { SHAPES_FRAMES, SHAPES_SIZE } from '../metrics/shapes_world.js';
import { Progress } from './progress.js';
import { parse, type Out } from './common.js';

/** Spec §4.5 / §4.2 / §2.4: 50 UniPC steps, guidance 5, shift 5, seed 42, 81 frames (DC-AE-V: 80, 20 latents), 16 fps. */
export const GENERATE_DEFAULTS = { frames: 81, framesDc: 80, width: 832, height: 480, steps: 50, guidance: 5, shift: 5, seed: 42, sampler: 'unipc', fps: 16 } as const;

/** The model used without --model: trained on the shapes world (issue #21), in the folder layout below. */
export const DEFAULT_T2V_MODEL = 'assets/shapes-t2v';
/** Its generation defaults: the world's clips (16 frames of 128x128 at 8 fps), not Wan's 832x480. */
export const DEFAULT_T2V_GEOMETRY = { width: SHAPES_SIZE, height: SHAPES_SIZE, frames: SHAPES_FRAMES, fps: 8 } as const;

const here = dirname(fileURLToPath(import.meta.url));

/** assets/shapes-t2v of this installation (the folder holding package.json, from src/cli or dist/src/cli). */
export function defaultT2vModelDir(): string {
  const roots = [resolve(here, '..', '..'), resolve(here, '..', '..', '..')];
  const root = roots.find((r) => existsSync(join(r, 'package.json'))) ?? roots[1]!;
  return join(root, DEFAULT_T2V_MODEL);
}

export const GENERATE_HELP = `dcvg generate "PROMPT" [--model DIR] -o out.mp4 [options]
dcvg generate --prompt-file prompt.txt --image first.png --model DIR -o out.mp4 [options]

Text-to-video (or image-to-video with --image) with a DC-VideoGen or Wan-2.1 model folder: the diffusers layout
(model_index.json, transformer/, text_encoder/, tokenizer/, vae/, scheduler/, image_encoder/) or the Wan layout
(config.json, the DiT weights, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/, Wan2.1_VAE.pth or a DC-AE-V
checkpoint, models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth); docs/generate.md lists the files.

Options:
  --model DIR            the model folder (default: ${DEFAULT_T2V_MODEL}, the shipped shapes-world model; with it
                         the defaults of --size, --frames and --fps are ${DEFAULT_T2V_GEOMETRY.width}x${DEFAULT_T2V_GEOMETRY.height}, ${DEFAULT_T2V_GEOMETRY.frames} and ${DEFAULT_T2V_GEOMETRY.fps})
                         A folder's dcvg_generate.json, when present, gives its own defaults (size, frames, fps,
                         steps, guidance, shift, sampler; docs/generate.md)
  -o, --output PATH      the video: .mp4, .gif, .y4m, or a folder / %05d.png pattern for PNGs (required)
  --prompt-file FILE     read the prompt from a UTF-8 text file instead of the command line
  --negative TEXT        negative prompt (default: the DiT checkpoint's null embedding if it has one, else "")
  --image FILE           image-to-video: the first frame (resized to cover --size and center-cropped)
  --frames N             frames (default ${GENERATE_DEFAULTS.framesDc} with DC-AE-V, ${GENERATE_DEFAULTS.frames} with the Wan VAE; DC-AE-V makes
                         multiples of 4 (81 -> 80), the Wan VAE 1 + 4k; other counts are floored, with a note)
  --size WxH             width x height (default ${GENERATE_DEFAULTS.width}x${GENERATE_DEFAULTS.height}); multiples of 32 for DC-AE-V with a
                         patch-1 DiT, of 16 for the Wan VAE with a 1x2x2 DiT
  --steps N              denoising steps (default ${GENERATE_DEFAULTS.steps})
  --guidance W           classifier-free guidance scale (default ${GENERATE_DEFAULTS.guidance}; 1 turns CFG off)
  --shift S              flow shift of the sigma schedule (default: the scheduler folder's flow_shift, else ${GENERATE_DEFAULTS.shift})
  --sampler unipc|euler  (default: the scheduler folder's, else unipc)
  --seed N               seed of the initial noise (default ${GENERATE_DEFAULTS.seed}); the same seed gives the same video
  --fps F                frame rate of the file (default ${GENERATE_DEFAULTS.fps})
  --crf N                mp4 quality (x264 CRF, default 18)
  --cache-dir DIR        prompt-embedding cache (default $DCVG_CACHE_DIR, else ~/.cache/dcvideogen/prompt-embeddings)
  --no-cache             neither read nor write the cache
  --json                 print a JSON summary (timings per stage, latent shape, DiT tokens, ...)
`;

const MAX_PROMPT_BYTES = 1 << 20;

/** A prompt file: UTF-8 text, not empty, not binary, at most 1 MiB. */
export function readPromptFile(path: string): string {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new ValueError(`--prompt-file ${path} not found`);
  }
  if (!st.isFile()) throw new ValueError(`--prompt-file ${path} is not a regular file`);
  if (st.size > MAX_PROMPT_BYTES) throw new ValueError(`--prompt-file ${path} is ${st.size} bytes; a prompt file holds at most ${MAX_PROMPT_BYTES} bytes of text`);
  const buf = readFileSync(path);
  if (buf.includes(0)) throw new ValueError(`--prompt-file ${path} is not a text file (it contains NUL bytes)`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    throw new ValueError(`--prompt-file ${path} is not valid UTF-8 text`);
  }
  text = text.replace(/^\uFEFF/, '').trim();
  if (!text) throw new ValueError(`--prompt-file ${path} is empty`);
  return text;
}

function num(v: string | undefined, flag: string, int: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (int && !Number.isInteger(n))) throw new ValueError(`${flag} must be ${int ? 'an integer' : 'a number'}, got "${v}"`);
  return n;
}

export function parseSize(s: string): { width: number; height: number } {
  const m = /^(\d+)x(\d+)$/.exec(s);
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new ValueError(`--size must be WIDTHxHEIGHT with positive sides (e.g. 832x480), got "${s}"`);
  return { width: Number(m[1]), height: Number(m[2]) };
}

export function defaultCacheDir(): string {
  if (process.env.DCVG_CACHE_DIR) return process.env.DCVG_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'dcvideogen', 'prompt-embeddings');
}

/**
 * `defaultModel` replaces assets/shapes-t2v as the folder used without --model (for tests: a tiny folder, or a
 * missing one).
 */
export async function cmdGenerate(args: string[], out: Out, loaders: EncoderLoaders = defaultEncoderLoaders, opts: { defaultModel?: string } = {}): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out(GENERATE_HELP);
    return 0;
  }
  const { values: v, positionals } = parse(
    args,
    {
      model: { type: 'string' },
      output: { type: 'string', short: 'o' },
      'prompt-file': { type: 'string' },
      negative: { type: 'string' },
      image: { type: 'string' },
      frames: { type: 'string' },
      size: { type: 'string' },
      steps: { type: 'string' },
      guidance: { type: 'string' },
      shift: { type: 'string' },
      sampler: { type: 'string' },
      seed: { type: 'string' },
      fps: { type: 'string' },
      crf: { type: 'string' },
      'cache-dir': { type: 'string' },
      'no-cache': { type: 'boolean' },
      json: { type: 'boolean' },
    },
    'generate',
  );
  if (positionals.length > 1) throw new ValueError(`generate takes one prompt (quote it), got ${positionals.length} arguments: ${positionals.map((p) => JSON.stringify(p)).join(' ')}`);
  if (positionals.length && v['prompt-file']) throw new ValueError('give the prompt either on the command line or with --prompt-file, not both');
  if (!v.output) throw new ValueError('generate needs -o <output video>');
  const usingDefault = v.model === undefined;
  let modelDir = v.model;
  if (modelDir === undefined) {
    const d = opts.defaultModel ?? defaultT2vModelDir();
    if (!existsSync(d) || !statSync(d).isDirectory()) throw new ValueError(`no default model in ${opts.defaultModel ?? DEFAULT_T2V_MODEL}; pass --model DIR (generate needs --model until a model is installed at ${d})`);
    modelDir = d;
  }
  const prompt = v['prompt-file'] ? readPromptFile(v['prompt-file']) : positionals[0];
  if (prompt === undefined) throw new ValueError('generate needs a prompt: dcvg generate "a prompt" ... or --prompt-file FILE');
  if (!prompt.trim()) throw new ValueError('the prompt is empty');
  if (v.image !== undefined && !existsSync(v.image)) throw new ValueError(`--image ${v.image} not found`);
  if (v['no-cache'] && v['cache-dir']) throw new ValueError('--no-cache and --cache-dir contradict each other');
  const crf = num(v.crf, '--crf', true);
  if (crf !== undefined && (crf < 0 || crf > 51)) throw new ValueError(`--crf must be in 0..51, got ${crf}`);

  const folder = resolveModelFolder(modelDir);
  // the folder's own defaults (dcvg_generate.json), else the shipped model's geometry when it is the default folder
  const fd = folder.generateDefaults ?? {};
  const geometry = { ...(usingDefault ? DEFAULT_T2V_GEOMETRY : {}), ...fd } as Partial<typeof DEFAULT_T2V_GEOMETRY>;
  const sampler = v.sampler ?? fd.sampler ?? folder.scheduler?.sampler ?? GENERATE_DEFAULTS.sampler;
  if (sampler !== 'unipc' && sampler !== 'euler') throw new ValueError(`--sampler must be unipc or euler, got "${sampler}"`);
  const size = v.size ? parseSize(v.size) : { width: geometry.width ?? GENERATE_DEFAULTS.width, height: geometry.height ?? GENERATE_DEFAULTS.height };
  const o: GenerationOptions = {
    prompt,
    negativePrompt: v.negative ?? null,
    frames: num(v.frames, '--frames', true) ?? geometry.frames ?? (folder.vae.family === 'dc-ae-v' ? GENERATE_DEFAULTS.framesDc : GENERATE_DEFAULTS.frames),
    ...size,
    steps: num(v.steps, '--steps', true) ?? fd.steps ?? GENERATE_DEFAULTS.steps,
    guidance: num(v.guidance, '--guidance', false) ?? fd.guidance ?? GENERATE_DEFAULTS.guidance,
    shift: num(v.shift, '--shift', false) ?? fd.shift ?? folder.scheduler?.shift ?? GENERATE_DEFAULTS.shift,
    seed: num(v.seed, '--seed', true) ?? GENERATE_DEFAULTS.seed,
    sampler,
    fps: num(v.fps, '--fps', false) ?? geometry.fps ?? GENERATE_DEFAULTS.fps,
    ...(crf !== undefined ? { crf } : {}),
    cacheDir: v['no-cache'] ? null : (v['cache-dir'] ?? defaultCacheDir()),
  };
  checkGenerationOptions(o);
  const mode = v.image !== undefined ? 'i2v' : 't2v';
  // the request against the folder (size, frames, t2v vs i2v) before anything loads
  const plan = planGeneration(folder.dit.parsed, vaeGeometry(folder.vae), o, mode, { dit: `the DiT (${folder.dit.config})`, ae: `the autoencoder (${folder.vae.config ?? folder.vae.path})` });
  assertOutputsSafe({ '-o': v.output }, { '--model': modelDir, '--image': v.image, '--prompt-file': v['prompt-file'] }, { directoryOk: ['-o'] });
  for (const n of plan.notes) process.stderr.write(`note: ${n}\n`);

  // progress on stderr: one line per stage, a bar per denoising step (with ETA) and per decoded chunk
  let bar: Progress | null = null;
  const stageNames: Record<GenerationStage, string> = { text: 'encoding the prompt', image: 'CLIP image features', condition: 'encoding the conditioning image', denoise: 'denoising', decode: 'decoding' };
  o.onStage = (s) => {
    bar?.done();
    bar = s === 'denoise' ? new Progress('denoise', o.steps, 'steps') : s === 'decode' ? new Progress('decode', plan.frames, 'frames') : null;
    if (!v.json && !process.stderr.isTTY) process.stderr.write(`${stageNames[s]}...\n`);
  };
  o.onStep = (s) => bar?.update(s);
  o.onFrames = (f) => bar?.update(f);

  const models = folderModels(folder, loaders);
  let r: GenerationResult;
  if (mode === 'i2v') {
    const image = await loadConditionImage(v.image!, plan.width, plan.height);
    r = await imageToVideo(models, { ...o, image }, v.output);
  } else r = await textToVideo(models, o, v.output);
  (bar as Progress | null)?.done();

  if (v.json) out(JSON.stringify({ ...r, prompt, image: v.image ?? null, model_folder: modelDir, layout: folder.layout }) + '\n');
  else {
    const s = r.seconds;
    out(
      `generated ${r.output} (${r.frames} frames, ${r.width}x${r.height}, ${r.fps} fps) with ${r.model} on ${r.autoencoder} in ${s.total.toFixed(1)}s ` +
        `(text ${s.text.toFixed(1)}s${mode === 'i2v' ? `, image ${(s.image + s.condition).toFixed(1)}s` : ''}, denoise ${s.denoise.toFixed(1)}s, decode ${s.decode.toFixed(1)}s)\n`,
    );
  }
  return 0;
}
