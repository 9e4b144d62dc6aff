/**
 * What the commands share: argument parsing, the model and streaming options, the video reading options, and the
 * checks on tensors before anything is written.
 */
import { parseArgs } from 'node:util';
import { totalmem } from 'node:os';
import type { ReadOptions } from '../io/video.js';
import { createModel, type DCAEV, type VideoOptions } from '../models/dcaev/autoencoder.js';
import { loadDefaultModel, embeddedConfig } from '../models/dcaev/default_model.js';
import { ValueError, fmtShape } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { findNonFinite } from '../tensor/inplace.js';
import type { AutoencoderOptions } from '../pipelines/autoencoder.js';
export { loadAutoencoder } from '../pipelines/autoencoder.js';

export type Out = (s: string) => void;

export const MODEL_OPTIONS = {
  model: { type: 'string' },
  weights: { type: 'string' },
  json: { type: 'boolean' },
  tile: { type: 'string' },
  overlap: { type: 'string' },
  stream: { type: 'boolean' },
  whole: { type: 'boolean' },
  pad: { type: 'boolean' },
  'pad-frames': { type: 'boolean' },
  output: { type: 'string', short: 'o' },
} as const;

/** Commands with a help text of their own (`dcvg <cmd> --help`); the others are described by `dcvg --help`. */
const OWN_HELP = new Set(['train-ae', 'train-dit', 'eval-ae', 'study', 'study adapt', 'compare-ae', 'generate', 'latents', 'adapt align', 'adapt assemble', 'adapt tune', 'adapt lora', 'adapt merge']);

/** parseArgs (strict) with its error turned into one ValueError line pointing at the help that describes `cmd`. */
export function parse<O extends Record<string, { type: 'string' | 'boolean'; short?: string }>>(
  args: string[],
  options: O,
  cmd: string,
  allowPositionals = true,
): ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: boolean; strict: true }>> {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (e) {
    const help = OWN_HELP.has(cmd) ? `dcvg ${cmd} --help` : 'dcvg --help';
    throw new ValueError(`${(e as Error).message.replace(/^.*?: /, '')} (see ${help})`);
  }
}

/** `parse` for commands that read their options as a plain record. */
export function parseValues(args: string[], options: Record<string, { type: 'string' | 'boolean' }>, cmd: string, allowPositionals = true): Record<string, string | boolean | undefined> {
  return parse(args, options, cmd, allowPositionals).values as Record<string, string | boolean | undefined>;
}

/**
 * The model of a command: --model and --weights; with neither, the default model shipped in the package; with only
 * --weights, the config embedded in a `dcvg train-ae` weights file. `--model default` names the default model too.
 */
export function loadModelFromArgs(v: { model?: string; weights?: string }, cmd: string): DCAEV {
  if ((!v.model && !v.weights) || (v.model === 'default' && !v.weights)) return loadDefaultModel();
  if (!v.model) {
    const cfg = embeddedConfig(v.weights!);
    if (!cfg) throw new ValueError(`${cmd} needs --model <preset | config.json> for ${v.weights} (it carries no config of its own)`);
    return createModel(cfg, v.weights);
  }
  if (!v.weights) throw new ValueError(`${cmd} needs --weights <file.safetensors | checkpoint.pt> for --model ${v.model} (omit both to use the default model)`);
  return createModel(v.model, v.weights);
}

export function videoOptions(v: { tile?: string; overlap?: string; whole?: boolean; pad?: boolean; 'pad-frames'?: boolean }): VideoOptions & AutoencoderOptions {
  const o: VideoOptions & AutoencoderOptions = { mode: v.whole ? 'whole' : 'stream', padSpatial: !!v.pad, padFrames: !!v['pad-frames'] };
  if (v.tile !== undefined) {
    if (v.tile === 'auto') o.tile = 'auto';
    else {
      const n = Number(v.tile);
      if (!Number.isInteger(n) || n <= 0) throw new ValueError(`--tile must be a positive integer or "auto", got "${v.tile}"`);
      o.tile = n;
    }
  }
  if (v.overlap !== undefined) {
    const x = Number(v.overlap);
    if (!(x >= 0 && x < 1)) throw new ValueError(`--overlap must be in [0, 1), got "${v.overlap}"`);
    o.overlap = x;
  }
  return o;
}

/** The files a model-using command reads, for assertOutputsSafe: the input, --weights and a --model config file. */
export function modelInputs(v: { model?: string; weights?: string }, input: string): Record<string, string | undefined> {
  return { input, '--weights': v.weights, '--model': v.model };
}

/** Throws a ValueError naming the first non-finite element. */
export function checkFinite(t: Tensor, what: string): void {
  const bad = findNonFinite(t);
  if (bad) throw new ValueError(`${what} contains ${bad.value} at flat index ${bad.index} (shape ${fmtShape(t.shape)})`);
}

/** Non-finite latents from finite pixels mean the weights are broken; say so instead of writing NaNs. */
export function checkLatentFinite(z: Tensor): void {
  const bad = findNonFinite(z);
  if (bad)
    throw new ValueError(`the encoder produced ${bad.value} at flat index ${bad.index} of the latent ${fmtShape(z.shape)} from finite input; the model weights are likely corrupt (nothing written)`);
}

/** Options of the commands that read a video (see readOptionsFrom). */
export const READ_OPTIONS = {
  resize: { type: 'string' },
  crop: { type: 'string' },
  start: { type: 'string' },
  frames: { type: 'string' },
  fps: { type: 'string' },
} as const;


/** Reading options shared by the commands that take a video: --resize WxH, --crop cover|stretch, --start, --frames, --fps. */
export function readOptionsFrom(v: Record<string, unknown>): ReadOptions {
  const o: ReadOptions = {};
  const int = (name: string) => {
    const s = v[name];
    if (s === undefined) return undefined;
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) throw new ValueError(`--${name} must be a non-negative integer, got "${String(s)}"`);
    return n;
  };
  if (v.resize !== undefined) {
    const m = /^(\d+)x(\d+)$/.exec(String(v.resize));
    if (!m) throw new ValueError(`--resize must be WIDTHxHEIGHT (e.g. 256x256), got "${String(v.resize)}"`);
    const crop = (v.crop as string | undefined) ?? 'cover';
    if (crop !== 'cover' && crop !== 'stretch') throw new ValueError(`--crop must be cover or stretch, got "${crop}"`);
    o.resize = { width: Number(m[1]), height: Number(m[2]), mode: crop };
    if (!(o.resize.width > 0 && o.resize.height > 0)) throw new ValueError(`--resize needs a positive width and height, got "${String(v.resize)}"`);
    checkFrameSize(o.resize.width, o.resize.height, `--resize ${String(v.resize)}`);
  }
  o.start = int('start');
  o.maxFrames = int('frames');
  if (v.fps !== undefined) {
    const f = Number(v.fps);
    if (!(f > 0)) throw new ValueError(`--fps must be a positive number, got "${String(v.fps)}"`);
    o.fps = f;
  }
  return o;
}

/**
 * Refuses frame sizes that cannot work, before any frame is read: ffmpeg's own limit on the pixel count of a frame
 * ((w + 128)(h + 128) < 2^31 / 8, av_image_check_size), and, given the frames held at once, float32 frames that
 * would not fit in this machine's memory.
 */
export function checkFrameSize(width: number, height: number, what: string, framesAtOnce = 0): void {
  if ((width + 128) * (height + 128) >= 2 ** 31 / 8)
    throw new ValueError(`${what}: ${width}x${height} frames are larger than ffmpeg can process (about 16384x16384 at most)`);
  const bytes = framesAtOnce * 3 * width * height * 4;
  if (bytes > totalmem())
    throw new ValueError(
      `${what}: ${framesAtOnce} frames of ${width}x${height} take ${(bytes / 2 ** 30).toFixed(1)} GiB as float32, more than this machine's ` +
        `${(totalmem() / 2 ** 30).toFixed(1)} GiB of memory; choose a smaller --resize`,
    );
}
