/**
 * One small interface over the video autoencoders the commands drive (DC-AE-V and the Wan-2.1 VAE), so `dcvg encode`,
 * `decode`, `reconstruct`, `eval-ae`, `compare-ae` and `reconstructFrames` never branch on the model kind.
 *
 * What differs between the two and lives behind the interface:
 * - geometry: spatial / temporal factors, latent channels;
 * - the frame-count rule. DC-AE-V: any count; the tail is padded by repeating the last frame up to a whole chunk and
 *   decoding crops back. Wan VAE: 1 + 4k frames; other counts are refused with the counts to crop or pad to, unless
 *   `padFrames` is set, which repeats the last frame up to the next 1 + 4k and crops back on decode (`--pad-frames`);
 * - streams: push any number of frames (latents), get what they completed; finish() flushes the tail;
 * - what a latent file records (`latentMetadata`) so a mismatched decode is refused (`checkLatentProvenance`).
 *
 * Latents are what each model hands to its DiT: DC-AE-V's unscaled latent, the Wan VAE's normalised latent
 * ((mu - mean) / std). Wan decode output is clamped to [-1, 1] (`WanVAE.decode`); DC-AE-V's is not (the reference).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import * as ops from '../tensor/ops.js';
import { noGrad, type Tensor } from '../tensor/tensor.js';
import {
  DCAEV,
  StreamingDecoder,
  StreamingEncoder,
  createModel,
  decodeVideo,
  encodeVideo,
  geometry,
  resolveTiling,
} from '../models/dcaev/autoencoder.js';
import { configToReference } from '../models/dcaev/config.js';
import { loadDefaultModel, embeddedConfig } from '../models/dcaev/default_model.js';
import { isWanVaeConfigJson, isWanVaePresetName, resolveWanVaeConfig, wanVaeConfigToJson } from '../models/wan_vae/config.js';
import { WanVAE } from '../models/wan_vae/model.js';
import { embeddedWanVaeConfig, loadWanVaeWeights } from '../models/wan_vae/run.js';

export type AutoencoderFamily = 'dc-ae-v' | 'wan-vae';

export interface AutoencoderOptions {
  /** replicate the bottom row / right column up to the spatial factor; decoding crops back (given the size) */
  padSpatial?: boolean;
  /** Wan VAE only: repeat the last frame up to the next 1 + 4k and crop back (DC-AE-V always pads to its chunk) */
  padFrames?: boolean;
  /** spatial tiling: a pixel tile size, 'auto' (from memoryBudgetBytes), or none */
  tile?: number | 'auto' | null;
  overlap?: number;
  memoryBudgetBytes?: number;
  /** DC-AE-V only: 'stream' (chunk by chunk, default) or 'whole' (one pass) for whole clips */
  mode?: 'stream' | 'whole';
}

export interface DecodeTarget {
  /** crop to this many frames (the encoder's frame count) */
  numFrames?: number | null;
  /** crop to this size (the encoder's frame size, for padSpatial encodes) */
  height?: number;
  width?: number;
}

/** Frames (or latents) in, what they completed out; finish() returns the tail (or null). */
export interface AutoencoderStream {
  push(x: Tensor): Tensor | null;
  finish(): Tensor | null;
}

export interface EncodedClip {
  latent: Tensor;
  /** frames before temporal padding */
  numFrames: number;
  height: number;
  width: number;
}

export interface VideoAutoencoder {
  readonly family: AutoencoderFamily;
  readonly name: string;
  readonly inChannels: number;
  readonly latentChannels: number;
  readonly spatial: number;
  readonly temporal: number;
  /** pixel frames a reader hands to the encode stream at once (DC-AE-V: its chunk; null: the whole clip at once) */
  readonly readFrames: number | null;
  /** the frame-count rule in words, for messages and `--help` */
  readonly frameRule: string;
  /** the model underneath (DCAEV or WanVAE) for code that needs it */
  readonly model: DCAEV | WanVAE;
  /** Frames the encoder runs for `t` input frames (after padding); throws a ValueError for a count it refuses. */
  encodedFrames(t: number, opts?: AutoencoderOptions): number;
  /** Latent frames for `t` input frames (same rule). */
  latentFrames(t: number, opts?: AutoencoderOptions): number;
  /** Frame indices where a new temporal chunk starts (for plots). */
  chunkBoundaries(frames: number): number[];
  /** Checks a pixel tensor (shape, frame size) before anything heavy runs; throws ShapeError. */
  checkPixels(x: Tensor, opts?: AutoencoderOptions): void;
  encodeStream(opts?: AutoencoderOptions): AutoencoderStream;
  decodeStream(target?: DecodeTarget, opts?: AutoencoderOptions): AutoencoderStream;
  encodeClip(x: Tensor, opts?: AutoencoderOptions & { onProgress?: (done: number, total: number) => void }): EncodedClip;
  decodeClip(z: Tensor, target?: DecodeTarget, opts?: AutoencoderOptions & { onProgress?: (done: number, total: number) => void }): Tensor;
  /** Metadata of a latent file this model writes: format, family, model, config, scaling. */
  latentMetadata(): Record<string, string>;
  parameterCount(): number;
}

const catTime = (parts: Tensor[]): Tensor | null => (parts.length === 0 ? null : parts.length === 1 ? parts[0]! : ops.cat(parts, 2));

/** Replicates the bottom row / right column of (N, C, T, H, W) up to multiples of f. */
function padSpatialTo(x: Tensor, f: number): Tensor {
  const [B, C, T, H, W] = x.shape as [number, number, number, number, number];
  let y = x;
  const H2 = Math.ceil(H / f) * f;
  const W2 = Math.ceil(W / f) * f;
  if (H2 !== H) y = ops.cat([y, ops.expand(ops.slice(y, 3, H - 1, H), [B, C, T, H2 - H, W])], 3);
  if (W2 !== W) y = ops.cat([y, ops.expand(ops.slice(y, 4, W - 1, W), [B, C, T, H2, W2 - W])], 4);
  return y;
}

/** Crops decoded pixels to a size and a total frame count, given the frames already emitted. */
class Cropper {
  framesOut = 0;
  constructor(private readonly t: DecodeTarget) {}
  crop(y: Tensor | null): Tensor | null {
    if (!y) return null;
    if (this.t.height !== undefined && this.t.width !== undefined && (y.shape[3]! !== this.t.height || y.shape[4]! !== this.t.width))
      y = ops.slice(ops.slice(y, 3, 0, this.t.height), 4, 0, this.t.width);
    if (this.t.numFrames !== undefined && this.t.numFrames !== null) {
      const keep = Math.max(0, Math.min(y.shape[2]!, this.t.numFrames - this.framesOut));
      if (keep === 0) return null;
      if (keep < y.shape[2]!) y = ops.slice(y, 2, 0, keep);
    }
    y = ops.contiguous(y);
    this.framesOut += y.shape[2]!;
    return y;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// DC-AE-V

/** DC-AE-V behind the interface: the existing StreamingEncoder / StreamingDecoder and encodeVideo / decodeVideo. */
export class DcaevAutoencoder implements VideoAutoencoder {
  readonly family = 'dc-ae-v' as const;
  readonly name: string;
  readonly inChannels: number;
  readonly latentChannels: number;
  readonly spatial: number;
  readonly temporal: number;
  readonly readFrames: number | null;
  readonly frameRule: string;

  constructor(readonly model: DCAEV) {
    const g = geometry(model);
    this.name = model.config.name;
    this.inChannels = model.config.inChannels;
    this.latentChannels = model.config.latentChannels;
    this.spatial = g.spatial;
    this.temporal = g.temporal;
    this.readFrames = g.chunk;
    this.frameRule =
      g.chunk !== null
        ? `any frame count (the tail is padded by repeating the last frame to a multiple of ${g.chunk} and cropped back)`
        : `any frame count (padded to a multiple of ${g.temporal} and cropped back)`;
  }

  encodedFrames(t: number): number {
    const mult = this.readFrames ?? this.temporal;
    return Math.ceil(t / mult) * mult;
  }

  latentFrames(t: number): number {
    return this.encodedFrames(t) / this.temporal;
  }

  chunkBoundaries(frames: number): number[] {
    const out: number[] = [];
    if (this.readFrames !== null) for (let b = this.readFrames; b < frames; b += this.readFrames) out.push(b);
    return out;
  }

  checkPixels(x: Tensor, opts: AutoencoderOptions = {}): void {
    if (x.ndim !== 5 || x.shape[1] !== this.inChannels)
      throw new ShapeError(`expected video of shape (B, ${this.inChannels}, T, H, W), got ${fmtShape(x.shape)}`);
    const [, , , H, W] = x.shape as number[];
    if (!opts.padSpatial && (H! % this.spatial || W! % this.spatial))
      throw new ShapeError(
        `frame size ${W}x${H} (width x height) is not a multiple of ${this.spatial}, the model's spatial factor; resize the video ` +
          `(dcvg --resize WxH), or pad and crop back (dcvg --pad; padSpatial: true in the API)`,
      );
  }

  encodeStream(opts: AutoencoderOptions = {}): AutoencoderStream {
    const m = this.model;
    if (this.readFrames === null) {
      // designs without chunks need the whole clip at once: collect, encode at finish
      const parts: Tensor[] = [];
      return {
        push: (x) => (parts.push(x), null),
        finish: () => {
          const x = catTime(parts);
          return x ? encodeVideo(m, x, opts).latent : null;
        },
      };
    }
    let enc: StreamingEncoder | null = null;
    return {
      push: (x) => {
        enc ??= new StreamingEncoder(m, { padSpatial: opts.padSpatial, tile: resolveTiling(m, x.shape[3]!, x.shape[4]!, opts) });
        return enc.push(x);
      },
      finish: () => enc?.finish() ?? null,
    };
  }

  decodeStream(target: DecodeTarget = {}, opts: AutoencoderOptions = {}): AutoencoderStream {
    const m = this.model;
    const size: [number, number] | null = target.height !== undefined && target.width !== undefined ? [target.height, target.width] : null;
    if (this.readFrames === null) {
      const parts: Tensor[] = [];
      return {
        push: (z) => (parts.push(z), null),
        finish: () => {
          const z = catTime(parts);
          return z ? decodeVideo(m, z, { ...opts, numFrames: target.numFrames ?? undefined, height: target.height, width: target.width }) : null;
        },
      };
    }
    let dec: StreamingDecoder | null = null;
    return {
      push: (z) => {
        dec ??= new StreamingDecoder(m, target.numFrames ?? null, size, resolveTiling(m, z.shape[3]! * this.spatial, z.shape[4]! * this.spatial, opts));
        return dec.push(z);
      },
      finish: () => dec?.finish() ?? null,
    };
  }

  encodeClip(x: Tensor, opts: AutoencoderOptions & { onProgress?: (done: number, total: number) => void } = {}): EncodedClip {
    return encodeVideo(this.model, x, opts);
  }

  decodeClip(z: Tensor, target: DecodeTarget = {}, opts: AutoencoderOptions & { onProgress?: (done: number, total: number) => void } = {}): Tensor {
    return decodeVideo(this.model, z, { ...opts, numFrames: target.numFrames ?? undefined, height: target.height, width: target.width });
  }

  latentMetadata(): Record<string, string> {
    const c = this.model.config;
    return {
      format: 'dcvideogen-latent',
      family: this.family,
      model: c.name,
      config: JSON.stringify(configToReference(c)),
      scaling_factor: String(c.scalingFactor ?? ''),
      latent_scaled: 'false',
    };
  }

  parameterCount(): number {
    return this.model.encoder.parameterCount() + this.model.decoder.parameterCount();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Wan-2.1 VAE

/** The Wan-2.1 VAE behind the interface: normalised latents in and out, 1 + 4k frames (or padFrames). */
export class WanVaeAutoencoder implements VideoAutoencoder {
  readonly family = 'wan-vae' as const;
  readonly name: string;
  readonly inChannels = 3;
  readonly latentChannels: number;
  readonly spatial: number;
  readonly temporal: number;
  /** one latent's worth of frames after frame 0 per read would be slow; 4 groups of 4 frames per read */
  readonly readFrames: number;
  readonly frameRule: string;

  constructor(readonly model: WanVAE) {
    this.name = model.config.name;
    this.latentChannels = model.zDim;
    this.spatial = model.factors.spatial;
    this.temporal = model.factors.temporal;
    this.readFrames = 4 * this.temporal;
    this.frameRule = `1 + ${this.temporal}k frames (1, ${1 + this.temporal}, ${1 + 2 * this.temporal}, ...); other counts are refused unless padded (repeating the last frame up to the next 1 + ${this.temporal}k, cropped back on decode)`;
  }

  encodedFrames(t: number, opts: AutoencoderOptions = {}): number {
    const f = this.temporal;
    if (opts.padFrames && Number.isInteger(t) && t >= 1) return 1 + f * Math.ceil((t - 1) / f);
    return 1 + f * (this.refuse(t) - 1);
  }

  latentFrames(t: number, opts: AutoencoderOptions = {}): number {
    return 1 + (this.encodedFrames(t, opts) - 1) / this.temporal;
  }

  /** model.latentFrames with the command-line remedies added to its message. */
  private refuse(t: number): number {
    try {
      return this.model.latentFrames(t);
    } catch (e) {
      if (e instanceof ValueError) throw new ValueError(`${e.message} (dcvg: --frames N crops, --pad-frames repeats the last frame and crops back)`);
      throw e;
    }
  }

  chunkBoundaries(frames: number): number[] {
    const out: number[] = [];
    for (let b = 1; b < frames; b += this.temporal) out.push(b);
    return out;
  }

  checkPixels(x: Tensor, opts: AutoencoderOptions = {}): void {
    if (x.ndim !== 5 || x.shape[1] !== 3) throw new ShapeError(`expected video of shape (B, 3, T, H, W), got ${fmtShape(x.shape)}`);
    const [, , , H, W] = x.shape as number[];
    if (!opts.padSpatial && (H! % this.spatial || W! % this.spatial))
      throw new ShapeError(
        `frame size ${W}x${H} (width x height) is not a multiple of ${this.spatial}, the model's spatial factor; resize the video ` +
          `(dcvg --resize WxH), or pad and crop back (dcvg --pad; padSpatial: true in the API)`,
      );
  }

  private streamOptions(opts: AutoencoderOptions) {
    return { tile: opts.tile, overlap: opts.overlap, memoryBudgetBytes: opts.memoryBudgetBytes };
  }

  encodeStream(opts: AutoencoderOptions = {}): AutoencoderStream {
    const m = this.model;
    const inner = m.encodeStream(this.streamOptions(opts));
    let last: Tensor | null = null;
    let frames = 0;
    const toLatent = (moments: Tensor | null) => (moments ? m.normalize(m.splitMoments(moments).mu) : null);
    return {
      push: (x) => {
        this.checkPixels(x, opts);
        const inp = opts.padSpatial ? padSpatialTo(x, this.spatial) : x;
        frames += inp.shape[2]!;
        last = ops.contiguous(ops.slice(inp, 2, inp.shape[2]! - 1, inp.shape[2]!));
        return noGrad(() => toLatent(inner.push(inp)));
      },
      finish: () => {
        let tail: Tensor | null = null;
        if (frames > 0 && opts.padFrames) {
          const missing = this.encodedFrames(frames, opts) - frames;
          if (missing > 0) {
            const [N, C, , H, W] = last!.shape as number[];
            tail = noGrad(() => toLatent(inner.push(ops.contiguous(ops.expand(last!, [N!, C!, missing, H!, W!])))));
          }
        }
        try {
          inner.finish();
        } catch (e) {
          if (frames > 0) this.refuse(frames); // the frame-count message, with the remedies
          throw e;
        }
        return tail;
      },
    };
  }

  decodeStream(target: DecodeTarget = {}, opts: AutoencoderOptions = {}): AutoencoderStream {
    const m = this.model;
    const inner = m.decodeStream(this.streamOptions(opts));
    const crop = new Cropper(target);
    return {
      push: (z) => {
        if (z.ndim !== 5 || z.shape[1] !== this.latentChannels)
          throw new ShapeError(`expected latents (B, ${this.latentChannels}, t, h, w), got ${fmtShape(z.shape)}`);
        return noGrad(() => crop.crop(m.clampPixels(inner.push(m.denormalize(z)))));
      },
      finish: () => {
        inner.finish();
        return null;
      },
    };
  }

  encodeClip(x: Tensor, opts: AutoencoderOptions & { onProgress?: (done: number, total: number) => void } = {}): EncodedClip {
    this.checkPixels(x, opts);
    const T = x.shape[2]!;
    this.encodedFrames(T, opts); // refuse a bad count before any work
    const s = this.encodeStream(opts);
    const parts: Tensor[] = [];
    const a = s.push(x);
    if (a) parts.push(a);
    const b = s.finish();
    if (b) parts.push(b);
    opts.onProgress?.(T, T);
    return { latent: catTime(parts)!, numFrames: T, height: x.shape[3]!, width: x.shape[4]! };
  }

  decodeClip(z: Tensor, target: DecodeTarget = {}, opts: AutoencoderOptions & { onProgress?: (done: number, total: number) => void } = {}): Tensor {
    const s = this.decodeStream(target, opts);
    const y = s.push(z);
    s.finish();
    opts.onProgress?.(z.shape[2]!, z.shape[2]!);
    if (!y) throw new ShapeError(`nothing decoded from latents ${fmtShape(z.shape)} (numFrames ${target.numFrames})`);
    return y;
  }

  latentMetadata(): Record<string, string> {
    return {
      format: 'dcvideogen-latent',
      family: this.family,
      model: this.name,
      config: JSON.stringify(wanVaeConfigToJson(this.model.config)),
      scaling_factor: '',
      latent_scaled: 'false',
      latent_normalization: '(mu - latents_mean) / latents_std',
    };
  }

  parameterCount(): number {
    return this.model.parameterCounts().total;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// construction

export function asAutoencoder(m: DCAEV | WanVAE | VideoAutoencoder): VideoAutoencoder {
  if (m instanceof DCAEV) return new DcaevAutoencoder(m);
  if (m instanceof WanVAE) return new WanVaeAutoencoder(m);
  return m;
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

const looksLikeWanConfig = isWanVaeConfigJson;

/** The config.json of a diffusers Wan VAE folder (a `vae/` folder or a pipeline folder holding one), or null. */
export function wanVaeFolderConfig(dir: string): string | null {
  for (const p of [join(dir, 'config.json'), join(dir, 'vae', 'config.json')]) if (existsSync(p) && looksLikeWanConfig(readJson(p))) return p;
  return null;
}

/**
 * Whether --model names a Wan VAE: the preset (`wan2.1-vae`), a config JSON in the reference or diffusers vocabulary
 * (`file.json#entry` picks an entry of a multi-config file), or a diffusers folder (`vae/` or a pipeline folder).
 */
export function isWanVaeSpec(spec: string): boolean {
  if (isWanVaePresetName(spec)) return true;
  const hash = spec.lastIndexOf('#');
  const path = hash > 0 ? spec.slice(0, hash) : spec;
  if (!existsSync(path)) return false;
  if (statSync(path).isDirectory()) return wanVaeFolderConfig(path) !== null;
  if (!/\.json$/i.test(path)) return false;
  let j = readJson(path) as Record<string, unknown> | null;
  if (hash > 0) j = (j?.[spec.slice(hash + 1)] ?? null) as Record<string, unknown> | null;
  return looksLikeWanConfig(j);
}

/**
 * The model of a command: --model and --weights; with neither, the default DC-AE-V shipped in the package; with only
 * --weights, the config embedded in a `dcvg train-ae` weights file (DC-AE-V or Wan VAE). A Wan VAE --model (preset, config JSON, diffusers
 * folder) needs --weights, except a folder, which is its own weights.
 */
export function loadAutoencoder(v: { model?: string; weights?: string }, cmd: string): VideoAutoencoder {
  if (v.model && isWanVaeSpec(v.model)) {
    let cfgSpec = v.model;
    let weights = v.weights;
    if (existsSync(v.model) && statSync(v.model).isDirectory()) {
      cfgSpec = wanVaeFolderConfig(v.model)!;
      weights ??= v.model;
    }
    if (!weights) throw new ValueError(`${cmd} needs --weights <Wan2.1_VAE.pth | .safetensors | diffusers vae/ folder> for --model ${v.model}`);
    const m = new WanVAE(resolveWanVaeConfig(cfgSpec));
    loadWanVaeWeights(m, weights);
    return new WanVaeAutoencoder(m);
  }
  if ((!v.model && !v.weights) || (v.model === 'default' && !v.weights)) return new DcaevAutoencoder(loadDefaultModel());
  const wanCfg = !v.model ? embeddedWanVaeConfig(v.weights!) : null;
  if (wanCfg) {
    // a Wan VAE written by `dcvg train-ae` (or its run folder) carries its config
    const m = new WanVAE(wanCfg);
    loadWanVaeWeights(m, v.weights!);
    return new WanVaeAutoencoder(m);
  }
  if (!v.model) {
    const cfg = embeddedConfig(v.weights!);
    if (!cfg) throw new ValueError(`${cmd} needs --model <preset | config.json> for ${v.weights} (it carries no config of its own)`);
    return new DcaevAutoencoder(createModel(cfg, v.weights));
  }
  if (!v.weights) throw new ValueError(`${cmd} needs --weights <file.safetensors | checkpoint.pt> for --model ${v.model} (omit both to use the default model)`);
  return new DcaevAutoencoder(createModel(v.model, v.weights));
}

/** The config of latent metadata as a canonical string without its name (names differ between spellings of one model). */
function canonicalConfig(s: string | undefined): string | null {
  if (!s) return null;
  try {
    const j = JSON.parse(s) as Record<string, unknown>;
    if (typeof j !== 'object' || j === null) return null;
    const { name: _n, ...rest } = j;
    void _n;
    const sortKeys = (x: unknown): unknown =>
      Array.isArray(x) ? x.map(sortKeys) : typeof x === 'object' && x !== null ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, sortKeys((x as Record<string, unknown>)[k])])) : x;
    return JSON.stringify(sortKeys(rest));
  } catch {
    return null;
  }
}

/**
 * Refuses to decode a latent file written by `dcvg encode` with another model: another family (DC-AE-V vs Wan VAE),
 * or the same family with another architecture. Files without dcvideogen metadata (raw tensors) are not checked.
 */
export function checkLatentProvenance(meta: Record<string, string>, ae: VideoAutoencoder, path: string): void {
  if (meta.format !== 'dcvideogen-latent') return;
  const family = (meta.family ?? 'dc-ae-v') as AutoencoderFamily;
  const made = `${meta.model ?? 'an unnamed model'} (${family})`;
  if (family !== ae.family) throw new ValueError(`${path} holds latents of ${made}; it cannot be decoded with ${ae.name} (${ae.family}): pass the --model / --weights that encoded it`);
  const a = canonicalConfig(meta.config);
  const b = canonicalConfig(ae.latentMetadata().config);
  if (a !== null && b !== null && a !== b)
    throw new ValueError(`${path} holds latents of ${made}, whose architecture differs from ${ae.name}'s; pass the --model / --weights that encoded it`);
}
