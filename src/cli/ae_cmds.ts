/**
 * Autoencoder commands: `dcvg encode`, `dcvg decode`, `dcvg convert`. Tensor files are safetensors: an encode input
 * holds a raw NCTHW tensor in [-1, 1] (key `input` by default), an encode output holds `latent` plus metadata
 * (model, scaling factor, frame count before padding, frame size, fps), a decode output `reconstruction`.
 * Outputs are written to a temporary file and renamed into place, so a failure never leaves a partial file.
 */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { assertOutputsSafe } from '../io/files.js';
import { SafetensorsFile, saveSafetensors } from '../io/safetensors.js';
import { openWeights } from '../io/weights.js';
import { checkLatentProvenance, type AutoencoderOptions, type VideoAutoencoder } from '../pipelines/autoencoder.js';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import { MODEL_OPTIONS, READ_OPTIONS, checkFinite, checkLatentFinite, loadAutoencoder, modelInputs, parse, videoOptions, type Out } from './common.js';
import { Progress } from './progress.js';

function readTensorKey(path: string, key: string, what: string): { t: Tensor; meta: Record<string, string> } {
  const f = SafetensorsFile.open(path);
  try {
    if (!f.has(key)) throw new ShapeError(`${path}: no tensor "${key}" (has: ${f.keys().join(', ') || 'nothing'}); choose one with ${what}`);
    return { t: f.tensor(key), meta: f.metadata };
  } finally {
    f.close();
  }
}

export interface EncodeSummary {
  input: string;
  output: string;
  model: string;
  input_shape: number[];
  latent_shape: number[];
  num_frames: number;
  seconds: number;
  frames_per_second: number;
}

/** Encodes a tensor already in memory and writes the latent file. */
export function encodeTensorToFile(m: VideoAutoencoder, x: Tensor, output: string, opts: AutoencoderOptions, extraMeta: Record<string, string>, label: string): EncodeSummary & { latent: Tensor } {
  checkFinite(x, 'input tensor');
  m.checkPixels(x, opts);
  m.encodedFrames(x.shape[2]!, opts); // a frame count the model refuses fails before any work
  const prog = new Progress('encode', x.shape[2]!);
  const t0 = performance.now();
  const r = m.encodeClip(x, { ...opts, onProgress: (d) => prog.update(d) });
  prog.done();
  const secs = (performance.now() - t0) / 1000;
  checkLatentFinite(r.latent);
  saveSafetensors(output, { latent: r.latent }, {
    metadata: { ...m.latentMetadata(), num_frames: String(r.numFrames), height: String(r.height), width: String(r.width), ...extraMeta },
  });
  return {
    input: label,
    output,
    model: m.name,
    input_shape: [...x.shape],
    latent_shape: [...r.latent.shape],
    num_frames: r.numFrames,
    seconds: +secs.toFixed(3),
    frames_per_second: +(r.numFrames / secs).toFixed(2),
    latent: r.latent,
  };
}

export function cmdEncode(args: string[], out: Out, videoEncode?: (m: VideoAutoencoder, input: string, v: Record<string, unknown>) => Promise<EncodeSummary>): Promise<number> | number {
  const { values: v, positionals } = parse(args, { ...MODEL_OPTIONS, ...READ_OPTIONS, 'input-key': { type: 'string' } }, 'encode');
  const input = positionals[0];
  if (!input || positionals.length > 1) throw new ValueError('encode needs exactly one input (a video or a .safetensors tensor file)');
  if (!v.output) throw new ValueError('encode needs -o <latent.safetensors>');
  if (extname(v.output) !== '.safetensors') throw new ValueError(`encode writes a .safetensors latent file, got -o ${v.output}`);
  if (!existsSync(input)) throw new ValueError(`input not found: ${input}`);
  assertOutputsSafe({ '-o': v.output }, modelInputs(v, input));
  const opts = videoOptions(v);
  const m = loadAutoencoder(v, 'encode');
  const report = (s: EncodeSummary) => {
    if (v.json) out(JSON.stringify(s, null, 1) + '\n');
    else
      out(
        `encoded ${s.input} ${fmtShape(s.input_shape)} -> ${s.output} latent ${fmtShape(s.latent_shape)} with ${s.model} in ${s.seconds}s (${s.frames_per_second} frames/s)\n`,
      );
    return 0;
  };
  if (extname(input) === '.safetensors') {
    const key = v['input-key'] ?? 'input';
    const { t } = readTensorKey(input, key, '--input-key');
    if (t.ndim !== 5 || t.shape[1] !== m.inChannels)
      throw new ShapeError(`${input}: tensor "${key}" must be (B, ${m.inChannels}, T, H, W) in [-1, 1], got ${fmtShape(t.shape)}`);
    const { latent: _l, ...s } = encodeTensorToFile(m, t, v.output, opts, { source: input, source_key: key }, `${input}:${key}`);
    void _l;
    return report(s);
  }
  if (!videoEncode) throw new ValueError(`cannot read ${input}: video input needs the video module`);
  return videoEncode(m, input, v).then(report);
}

export interface DecodeSummary {
  input: string;
  output: string;
  model: string;
  latent_shape: number[];
  output_shape: number[];
  seconds: number;
  frames_per_second: number;
}

export type VideoDecodeFn = (
  m: VideoAutoencoder,
  z: Tensor,
  output: string,
  fps: number,
  opts: AutoencoderOptions & { numFrames?: number; height?: number; width?: number },
) => Promise<number[]>;

export function cmdDecode(args: string[], out: Out, videoDecode?: VideoDecodeFn): Promise<number> | number {
  const { values: v, positionals } = parse(args, { ...MODEL_OPTIONS, 'latent-key': { type: 'string' }, fps: { type: 'string' } }, 'decode');
  const input = positionals[0];
  if (!input || positionals.length > 1) throw new ValueError('decode needs exactly one input latent .safetensors file');
  if (!v.output) throw new ValueError('decode needs -o <video | reconstruction.safetensors>');
  if (!existsSync(input)) throw new ValueError(`input not found: ${input}`);
  // A video output may be a folder (a PNG sequence); a tensor output is a file.
  assertOutputsSafe({ '-o': v.output }, modelInputs(v, input), { directoryOk: extname(v.output) === '.safetensors' ? [] : ['-o'] });
  const m = loadAutoencoder(v, 'decode');
  const key = v['latent-key'] ?? 'latent';
  const { t: z, meta } = readTensorKey(input, key, '--latent-key');
  checkLatentProvenance(meta, m, input);
  if (z.ndim !== 5 || z.shape[1] !== m.latentChannels)
    throw new ShapeError(`${input}: tensor "${key}" must be latents (B, ${m.latentChannels}, t, h, w) for ${m.name}, got ${fmtShape(z.shape)}`);
  checkFinite(z, `latent "${key}"`);
  if (meta.latent_scaled === 'true') throw new ValueError(`${input}: the latent is marked as scaled; divide by scaling_factor first`);
  const num = (s: string | undefined) => (s !== undefined && s !== '' && Number.isFinite(Number(s)) ? Number(s) : undefined);
  const opts = { ...videoOptions(v), numFrames: num(meta.num_frames), height: num(meta.height), width: num(meta.width) };
  const t0 = performance.now();
  const output = v.output;
  const report = (shape: number[]) => {
    const secs = (performance.now() - t0) / 1000;
    const summary: DecodeSummary = {
      input,
      output,
      model: m.name,
      latent_shape: [...z.shape],
      output_shape: shape,
      seconds: +secs.toFixed(3),
      frames_per_second: +(shape[2]! / secs).toFixed(2),
    };
    if (v.json) out(JSON.stringify(summary, null, 1) + '\n');
    else out(`decoded ${input} ${fmtShape(z.shape)} -> ${output} ${fmtShape(shape)} with ${m.name} in ${summary.seconds}s\n`);
    return 0;
  };
  if (extname(output) === '.safetensors') {
    const prog = new Progress('decode', z.shape[2]! * m.temporal);
    const y = m.decodeClip(z, { numFrames: opts.numFrames, height: opts.height, width: opts.width }, { ...opts, onProgress: (d) => prog.update(d * m.temporal) });
    prog.done();
    saveSafetensors(output, { reconstruction: y }, { metadata: { ...m.latentMetadata(), source: input } });
    return report([...y.shape]);
  }
  if (!videoDecode) throw new ValueError(`cannot write ${output}: video output needs the video module`);
  if (z.shape[0] !== 1) throw new ShapeError(`video output takes one clip; latents ${fmtShape(z.shape)} hold ${z.shape[0]}`);
  const fps = num(v.fps) ?? num(meta.fps) ?? 16;
  return videoDecode(m, z, output, fps, opts).then(report);
}

export function cmdConvert(args: string[], out: Out): number {
  const { values: v, positionals } = parse(args, { output: { type: 'string', short: 'o' }, dtype: { type: 'string' }, prefer: { type: 'string' }, json: { type: 'boolean' } }, 'convert');
  const input = positionals[0];
  if (!input || positionals.length > 1) throw new ValueError('convert needs exactly one input checkpoint (.pt or .safetensors)');
  if (!v.output) throw new ValueError('convert needs -o <out.safetensors>');
  if (extname(v.output) !== '.safetensors') throw new ValueError(`convert writes .safetensors, got -o ${v.output}`);
  const dtype = (v.dtype ?? 'bf16').toLowerCase();
  const map: Record<string, 'BF16' | 'F32' | 'F16'> = { bf16: 'BF16', f32: 'F32', fp32: 'F32', f16: 'F16', fp16: 'F16' };
  const st = map[dtype];
  if (!st) throw new ValueError(`--dtype must be bf16, f16 or f32, got "${v.dtype}"`);
  if (!existsSync(input)) throw new ValueError(`input not found: ${input}`);
  assertOutputsSafe({ '-o': v.output }, { input });
  if (v.prefer !== undefined && v.prefer !== 'model' && v.prefer !== 'ema') throw new ValueError(`--prefer must be ema or model, got "${v.prefer}"`);
  const prefer = v.prefer === 'model' ? 'model' : 'ema';
  const t0 = performance.now();
  // Any weights source (a file, a shard index, a model folder), copied as it is: NaN and Inf are kept, not refused.
  const w = openWeights(input, { prefer, checkFinite: false });
  let tensors: Map<string, Tensor>;
  const source = w.stateDict;
  const keep: Record<string, string> = {};
  try {
    tensors = new Map([...w.tensors.keys()].map((k) => [k, w.tensors.get(k)]));
    // a model config embedded by dcvg train-ae travels with the weights (`--weights` alone keeps working)
    if (w.metadata.config !== undefined) keep.config = w.metadata.config;
  } finally {
    w.close();
  }
  if (tensors.size === 0) throw new ValueError(`${input} holds no tensors${source === input ? '' : ` (${source})`}; nothing to convert`);
  let count = 0;
  for (const t of tensors.values()) count += t.size;
  saveSafetensors(v.output, tensors, { dtype: st, metadata: { ...keep, source: `${input} (${source})`, converted_by: 'dcvg convert' } });
  const s = { input, output: v.output, source, tensors: tensors.size, parameters: count, dtype: st, seconds: +((performance.now() - t0) / 1000).toFixed(2) };
  if (v.json) out(JSON.stringify(s, null, 1) + '\n');
  else out(`converted ${input} (${source}) -> ${v.output}: ${s.tensors} tensors, ${count.toLocaleString('en-US')} parameters, ${st}\n`);
  return 0;
}
