/**
 * The autoencoders `dcvg train-ae` trains, behind one small interface: DC-AE-V (the spec's model; deterministic) and
 * the Wan-2.1 VAE topology (variational: its encoder's conv1 gives mu and log_var).
 *
 * What differs and lives here:
 * - the --model vocabulary: DC-AE-V presets / config files / configs in code; Wan VAE as `wan-vae:<preset | config.json>`,
 *   a Wan VAE preset name (`wan-vae-shapes`, `wan2.1-vae`), a config file in the Wan vocabulary, or
 *   `{ family: 'wan-vae', config }` in code;
 * - the window rule: DC-AE-V whole chunks (or multiples of the temporal factor); Wan VAE 1 + 4k frames (causal: the
 *   first frame is encoded alone);
 * - the training forward: DC-AE-V encodeRaw -> decodeRaw; Wan VAE conv1(encoder(x)) -> (mu, log_var) -> z = mu +
 *   exp(log_var / 2) * eps (eps from the run's data Rng, so resume stays exact) -> decoder(conv2(z)), plus the KL term
 *   when its weight is positive (at weight 0 the latent is mu: a plain autoencoder);
 * - held-out reconstruction (inference: the Wan VAE decodes mu and clamps to [-1, 1], frame counts padded to 1 + 4k
 *   by repeating the last frame and cropped back);
 * - what config.json, the checkpoint and model.safetensors record: DC-AE-V's reference vocabulary (unchanged), the Wan
 *   VAE's reference vocabulary plus `"family": "wan-vae"` (loadable by `dcvg run wan-vae --config`, `--model
 *   run/config.json`, and the weights' embedded config).
 */
import { existsSync, readFileSync } from 'node:fs';
import { ValueError } from '../errors.js';
import { configFromReference, configToReference, compressionFactors, chunkFrames, type DCAEVConfig } from '../models/dcaev/config.js';
import { DCAEV, decodeVideo, encodeVideo, loadWeights, resolveConfig } from '../models/dcaev/autoencoder.js';
import { isWanVaeConfigJson, isWanVaePresetName, parseWanVaeConfig, resolveWanVaeConfig, wanVaeConfigToJson, type WanVaeConfig } from '../models/wan_vae/config.js';
import { WanVAE } from '../models/wan_vae/model.js';
import { WAN_VAE_WEIGHTS_FORMAT, loadWanVaeWeights } from '../models/wan_vae/run.js';
import type { Module } from '../nn/module.js';
import * as ops from '../tensor/ops.js';
import { randn, type Rng } from '../tensor/random.js';
import { Tensor, noGrad } from '../tensor/tensor.js';

/** A Wan VAE config given in code (the other forms of --model are strings or a DC-AE-V config). */
export interface WanVaeModelSpec {
  family: 'wan-vae';
  config: WanVaeConfig;
}

export type AEModelSpec = string | DCAEVConfig | WanVaeModelSpec;

/** A resolved model config of either family. */
export type AEConfig = { family: 'dc-ae-v'; config: DCAEVConfig } | { family: 'wan-vae'; config: WanVaeConfig };


const WAN_PREFIX = 'wan-vae:';

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

/** --model as a config of either family (see the file comment for the vocabulary). */
export function resolveAEConfig(spec: AEModelSpec): AEConfig {
  if (typeof spec === 'object' && spec !== null && (spec as WanVaeModelSpec).family === 'wan-vae') return { family: 'wan-vae', config: resolveWanVaeConfig((spec as WanVaeModelSpec).config) };
  if (typeof spec === 'string') {
    if (spec.startsWith(WAN_PREFIX)) return { family: 'wan-vae', config: resolveWanVaeConfig(spec.slice(WAN_PREFIX.length)) };
    if (isWanVaePresetName(spec)) return { family: 'wan-vae', config: resolveWanVaeConfig(spec) };
    if (/\.json$/i.test(spec) && existsSync(spec) && isWanVaeConfigJson(readJson(spec))) return { family: 'wan-vae', config: resolveWanVaeConfig(spec) };
  }
  return { family: 'dc-ae-v', config: resolveConfig(spec as string | DCAEVConfig) };
}

/** The config as config.json / the checkpoint / the weights' metadata record it (with its name). */
export function aeConfigJson(c: AEConfig): Record<string, unknown> & { name: string } {
  if (c.family === 'dc-ae-v') return { name: c.config.name, ...configToReference(c.config) };
  return { family: 'wan-vae', name: c.config.name, ...wanVaeConfigToJson(c.config) };
}

/** The inverse of aeConfigJson (checkpoint metadata); throws a ValueError for an invalid config. */
export function aeConfigFromJson(j: Record<string, unknown> & { name: string }): AEConfig {
  if (j.family === 'wan-vae') {
    const { family: _f, ...rest } = j;
    return { family: 'wan-vae', config: parseWanVaeConfig(rest, j.name) };
  }
  return { family: 'dc-ae-v', config: configFromReference(j, j.name) };
}

/** The model of a run, as the trainer drives it. */
export interface TrainableAE {
  readonly family: AEConfig['family'];
  readonly cfg: AEConfig;
  readonly module: Module;
  readonly spatial: number;
  readonly temporal: number;
  /** what the KL term needs: true for the Wan VAE (mu and log_var) */
  readonly variational: boolean;
  /** the window length when --frames is not given */
  defaultFrames(): number;
  /** why `frames` is no valid training window for this model, or null */
  framesProblem(frames: number): string | null;
  /** Latent (with autograd) and, when `klWeight` > 0, the KL term per pixel value; `rng` draws the sampling noise. */
  encodeTrain(x: Tensor, klWeight: number, rng: Rng): { z: Tensor; kl: Tensor | null };
  decodeTrain(z: Tensor): Tensor;
  /** Freezes the encoder side (the adversarial stage trains the decoder only). */
  freezeEncoder(): void;
  /** Inference reconstruction of a whole clip (any frame count, sizes multiples of the spatial factor or padded). */
  reconstruct(x: Tensor): { y: Tensor; latentSize: number };
  /** Loads weights for --init (the model's own checkpoint keys). */
  loadInit(path: string): void;
  /** metadata "format" of model.safetensors */
  readonly weightsFormat: string;
}

/** The trainer's view of a model: a new (shape-only) one for `cfg`, or `existing` (whose config `cfg` must be). */
export function trainableAE(cfg: AEConfig, existing?: DCAEV | WanVAE): TrainableAE {
  return cfg.family === 'dc-ae-v' ? dcaevTrainable(cfg.config, existing as DCAEV | undefined) : wanTrainable(cfg.config, existing as WanVAE | undefined);
}

function dcaevTrainable(config: DCAEVConfig, existing?: DCAEV): TrainableAE {
  const model = existing ?? new DCAEV(config);
  const { spatial, temporal } = compressionFactors(config);
  const L = chunkFrames(config);
  return {
    family: 'dc-ae-v',
    cfg: { family: 'dc-ae-v', config },
    module: model,
    spatial,
    temporal,
    variational: false,
    defaultFrames: () => (L ?? 8) * 2,
    framesProblem: (frames) => {
      if (L !== null && frames % L !== 0) return `--frames ${frames} must be a whole number of ${L}-frame chunks for this chunk-causal model`;
      if (frames % temporal !== 0) return `--frames ${frames} must be a multiple of the temporal factor ${temporal}`;
      return null;
    },
    encodeTrain: (x) => ({ z: model.encodeRaw(x), kl: null }),
    decodeTrain: (z) => model.decodeRaw(z),
    freezeEncoder: () => model.encoder.setTrainable(false),
    reconstruct: (x) => {
      const pad = x.shape[3]! % spatial !== 0 || x.shape[4]! % spatial !== 0;
      return noGrad(() => {
        const e = encodeVideo(model, x, { padSpatial: pad });
        return { y: decodeVideo(model, e.latent, { numFrames: e.numFrames, height: e.height, width: e.width }), latentSize: e.latent.size };
      });
    },
    loadInit: (path) => void loadWeights(model, path),
    weightsFormat: 'dcvg-dcaev-weights',
  };
}

/** Repeats the last frame of (N, C, T, H, W) up to `T2` frames. */
function padFramesTo(x: Tensor, T2: number): Tensor {
  const [N, C, T, H, W] = x.shape as [number, number, number, number, number];
  return T2 === T ? x : ops.cat([x, ops.expand(ops.slice(x, 2, T - 1, T), [N, C, T2 - T, H, W])], 2);
}

/** log_var is clamped to [-30, 20] before exp (as diffusers' DiagonalGaussianDistribution) so exp stays finite. */
const LOGVAR_MIN = -30;
const LOGVAR_MAX = 20;

function wanTrainable(config: WanVaeConfig, existing?: WanVAE): TrainableAE {
  const model = existing ?? new WanVAE(config);
  const { spatial, temporal } = model.factors;
  const z = config.z_dim;
  return {
    family: 'wan-vae',
    cfg: { family: 'wan-vae', config },
    module: model,
    spatial,
    temporal,
    variational: true,
    // 13 = 1 + 3*4: the longest causal window a 16-frame shapes clip holds
    defaultFrames: () => 1 + 3 * temporal,
    framesProblem: (frames) => ((frames - 1) % temporal !== 0 ? `--frames ${frames} must be 1 + ${temporal}k for the Wan VAE (causal: ${1 + temporal}, ${1 + 2 * temporal}, ${1 + 3 * temporal}, ...)` : null),
    encodeTrain: (x, klWeight, rng) => {
      const m = model.encodeChunk(x, null); // whole clip, causal from frame 0 (no cache: autograd through everything)
      const mu = ops.slice(m, 1, 0, z);
      if (!(klWeight > 0)) return { z: mu, kl: null };
      const logVar = ops.clamp(ops.slice(m, 1, z, 2 * z), LOGVAR_MIN, LOGVAR_MAX);
      const std = ops.exp(ops.mul(logVar, 0.5));
      const eps = randn(mu.shape, rng);
      const zs = ops.add(mu, ops.mul(std, eps));
      // KL(N(mu, var) || N(0, 1)) summed over latent values, divided by the pixel values (the reconstruction term is a
      // mean over pixel values): the per-sample sum of the reference's VAE losses, scaled like the L1 / MSE mean
      const klSum = ops.sum(ops.sub(ops.add(ops.square(mu), ops.exp(logVar)), ops.affine(logVar, 1, 1)));
      return { z: zs, kl: ops.mul(klSum, 0.5 / x.size) };
    },
    decodeTrain: (zz) => model.decodeChunk(zz, null),
    freezeEncoder: () => {
      model.encoder.setTrainable(false);
      model.conv1.setTrainable(false);
    },
    reconstruct: (x) => {
      const T = x.shape[2]!;
      const T2 = 1 + temporal * Math.ceil((T - 1) / temporal);
      const [H, W] = [x.shape[3]!, x.shape[4]!];
      if (H % spatial || W % spatial) throw new ValueError(`Wan VAE evaluation: frame size ${W}x${H} is not a multiple of ${spatial}`);
      return noGrad(() => {
        const mu = model.encodeMu(padFramesTo(x, T2));
        const y = model.clampPixels(model.decodeRaw(mu));
        return { y: T2 === T ? y : ops.contiguous(ops.slice(y, 2, 0, T)), latentSize: mu.size };
      });
    },
    loadInit: (path) => void loadWanVaeWeights(model, path),
    weightsFormat: WAN_VAE_WEIGHTS_FORMAT,
  };
}
