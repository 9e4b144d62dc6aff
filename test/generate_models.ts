/**
 * Tiny random models for the generation tests: a chunk-causal DC-AE-V (spatial 4, temporal 4, chunk 8, 4 latent
 * channels), a Wan-2.1-style VAE (spatial 8, temporal 4, 4 latent channels), Wan DiTs for both (patch 1x1x1 on the
 * DC latents, 1x2x2 on the Wan latents, t2v and i2v), and small fakes of the tokenizer / text encoder / image encoder
 * interfaces (src/pipelines/components.ts) so the pipelines are tested without the real umT5 and CLIP.
 */
import { configFromReference } from '../src/models/dcaev/config.js';
import { DCAEV, createModel } from '../src/models/dcaev/autoencoder.js';
import { parseWanVaeConfig } from '../src/models/wan_vae/config.js';
import { WanVAE } from '../src/models/wan_vae/model.js';
import { parseWanConfig, type WanConfig } from '../src/models/wan/config.js';
import { WanModel } from '../src/models/wan/model.js';
import type { Module } from '../src/nn/module.js';
import { DcaevAutoencoder, WanVaeAutoencoder, type VideoAutoencoder } from '../src/pipelines/autoencoder.js';
import type { ImageEncoder, PromptTokenizer, TextEncoder, TokenizedText } from '../src/pipelines/components.js';
import { latentGeometry, type GenerationModels } from '../src/pipelines/generation.js';
import { Rng } from '../src/tensor/random.js';
import { tensor, type Tensor } from '../src/tensor/tensor.js';

const block = (k: string, L: number) => `ChunkCausal${k}@3@3@${L}`;
/** A tiny chunk-causal DC-AE-V in the reference vocabulary (what a vae/config.json or dc-ae-v.json holds). */
export const TINY_DCAEV_JSON = {
  latent_channels: 4,
  use_feature_cache: false,
  scaling_factor: 0.5,
  encoder: {
    project_in_block_type: 'ChunkCausalConvPixelUnshuffle@2@1@3@3@8',
    depth_list: [0, 1, 1],
    width_list: [4, 8, 16],
    block_type: [block('ResBlock3d', 8), block('ResBlock3d', 8), block('ResBlock3d', 2)],
    downsample_block_type: ['ChunkCausalConvPixelUnshuffle@2@1@3@3@8', 'ChunkCausalConvPixelUnshuffle@2@4@3@3@8'],
    project_out_block_type: block('ConvLayer3d', 2),
  },
  decoder: {
    depth_list: [0, 1, 1],
    width_list: [4, 8, 16],
    project_in_block_type: block('ConvLayer3d', 2),
    block_type: [block('ResBlock3d', 8), block('ResBlock3d', 8), block('ResBlock3d', 2)],
    upsample_block_type: ['ChunkCausalConvPixelShuffle@2@1@3@3@8', 'ChunkCausalConvPixelShuffle@2@4@3@3@2'],
    project_out_block_type: 'ChunkCausalConvPixelShuffle@2@1@3@3@8',
  },
};

/** A tiny Wan-2.1-style VAE config (reference vocabulary). */
export const TINY_WAN_VAE_JSON = {
  dim: 4,
  z_dim: 4,
  dim_mult: [1, 2, 2, 2],
  num_res_blocks: 1,
  attn_scales: [],
  temperal_downsample: [false, true, true],
  dropout: 0,
  latents_mean: [0.1, -0.2, 0.3, 0],
  latents_std: [1.5, 0.8, 1.2, 2],
};

/**
 * Random weights with activations of order one: matrices / kernels N(0, 1 / fan_in), norm scales 1, other vectors
 * N(0, 0.02), modulation tables N(0, 0.02) (Module.initRandom's N(0, 0.02) everywhere would shrink every signal towards the biases).
 */
export function randomInit(m: Module, seed: number): void {
  const rng = new Rng(seed);
  for (const [name, p] of m.namedParams()) {
    const d = new Float32Array(p.size);
    if (name.endsWith('.gamma') || (p.shape.length === 1 && name.endsWith('.weight'))) d.fill(1); // norm scales
    else if (p.shape.length > 1 && !/modulation|scale_shift_table/.test(name)) {
      const std = Math.sqrt(1 / (p.size / p.shape[0]!));
      for (let i = 0; i < d.length; i++) d[i] = std * rng.normal();
    } else for (let i = 0; i < d.length; i++) d[i] = 0.02 * rng.normal();
    p.set(tensor(d, p.shape));
  }
}

export function tinyDcaev(seed = 1): DCAEV {
  const m = createModel(configFromReference(TINY_DCAEV_JSON, 'tiny-dc-ae-v'));
  randomInit(m, seed);
  return m;
}

export function tinyWanVae(seed = 2): WanVAE {
  const m = new WanVAE(parseWanVaeConfig(TINY_WAN_VAE_JSON, 'tiny-wan-vae'));
  randomInit(m, seed);
  return m;
}

export const TEXT_DIM = 12;
export const IMAGE_DIM = 10;
export const TEXT_LEN = 16;

/** A tiny Wan DiT config (Wan vocabulary) for the DC latents (patch 1) or the Wan VAE latents (patch 1x2x2). */
export interface EncoderDims {
  textDim?: number;
  imageDim?: number;
  textLen?: number;
}

export function tinyDitJson(family: 'dc' | 'wan', mode: 't2v' | 'i2v', dims: EncoderDims = {}): Record<string, unknown> {
  const C = 4;
  return {
    model_type: mode,
    patch_size: family === 'dc' ? [1, 1, 1] : [1, 2, 2],
    text_len: dims.textLen ?? TEXT_LEN,
    in_dim: mode === 'i2v' ? 2 * C + 4 : C,
    dim: 16,
    ffn_dim: 24,
    freq_dim: 8,
    text_dim: dims.textDim ?? TEXT_DIM,
    out_dim: C,
    num_heads: 2,
    num_layers: 2,
    eps: 1e-6,
    image_dim: dims.imageDim ?? IMAGE_DIM,
  };
}

export function tinyDitConfig(family: 'dc' | 'wan', mode: 't2v' | 'i2v', dims: EncoderDims = {}): WanConfig {
  return parseWanConfig(tinyDitJson(family, mode, dims), `tiny-${family}-${mode}`);
}

export function tinyDit(family: 'dc' | 'wan', mode: 't2v' | 'i2v', seed = 3, dims: EncoderDims = {}): WanModel {
  const m = new WanModel(tinyDitConfig(family, mode, dims));
  randomInit(m, seed);
  return m;
}

// ---------------------------------------------------------------------------------------------------------------
// fakes of the encoder interfaces

/** Words hashed into a 64-entry vocabulary; eos 1, pad 0; truncation and mask as the contract says. */
export class FakeTokenizer implements PromptTokenizer {
  readonly fingerprint = 'fake-tokenizer-v1';
  readonly padId = 0;
  readonly eosId = 1;
  readonly vocabSize = 64;
  tokenize(text: string, textLen: number): TokenizedText {
    const cleaned = text.replace(/\s+/g, ' ').trim();
    const pieces = cleaned ? cleaned.split(' ') : [];
    const hash = (w: string) => [...w].reduce((h, c) => (h * 31 + c.codePointAt(0)!) % 62, 7) + 2;
    const ids = [...pieces.map(hash), this.eosId];
    const real = [...ids.slice(0, Math.min(ids.length, textLen) - 1), this.eosId];
    const inputIds = [...real, ...new Array<number>(textLen - real.length).fill(this.padId)];
    const attentionMask = inputIds.map((_, i) => (i < real.length ? 1 : 0));
    return { cleaned, pieces, ids, inputIds, attentionMask };
  }
}

/** An embedding table: each real token's row, plus its position / 10 in column 0 (so order matters). */
export class FakeTextEncoder implements TextEncoder {
  readonly fingerprint = 'fake-text-encoder-v1';
  readonly dim = TEXT_DIM;
  private readonly table: Float32Array;
  constructor() {
    const rng = new Rng(11);
    this.table = Float32Array.from({ length: 64 * TEXT_DIM }, () => rng.normal());
  }
  encode(ids: Tensor, mask: Tensor): Tensor[] {
    const [B, L] = ids.shape as [number, number];
    const iv = ids.readSync();
    const mv = mask.readSync();
    const out: Tensor[] = [];
    for (let b = 0; b < B; b++) {
      let n = 0;
      while (n < L && mv[b * L + n]! > 0) n++;
      const d = new Float32Array(n * TEXT_DIM);
      for (let i = 0; i < n; i++) {
        d.set(this.table.subarray(iv[b * L + i]! * TEXT_DIM, (iv[b * L + i]! + 1) * TEXT_DIM), i * TEXT_DIM);
        d[i * TEXT_DIM] += i / 10;
      }
      out.push(tensor(d, [n, TEXT_DIM]));
    }
    return out;
  }
}

/** 5 tokens of width IMAGE_DIM from the per-channel means and a 2x2 grid of the image. */
export class FakeImageEncoder implements ImageEncoder {
  readonly fingerprint = 'fake-image-encoder-v1';
  readonly dim = IMAGE_DIM;
  preprocess(images: readonly Tensor[]): Tensor {
    // (B, 3, 2, 2): the mean of each quadrant
    const out = new Float32Array(images.length * 12);
    images.forEach((im, b) => {
      const [, H, W] = im.shape as [number, number, number];
      const v = im.readSync();
      for (let c = 0; c < 3; c++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) out[b * 12 + c * 4 + (y < H / 2 ? 0 : 2) + (x < W / 2 ? 0 : 1)] += v[(c * H + y) * W + x]! / ((H * W) / 4);
    });
    return tensor(out, [images.length, 3, 2, 2]);
  }
  features(pixelValues: Tensor): Tensor {
    const B = pixelValues.shape[0]!;
    const v = pixelValues.readSync();
    const out = new Float32Array(B * 5 * IMAGE_DIM);
    for (let b = 0; b < B; b++)
      for (let t = 0; t < 5; t++) for (let j = 0; j < IMAGE_DIM; j++) out[(b * 5 + t) * IMAGE_DIM + j] = Math.sin(1 + t * 0.7 + j * 0.3) * v[b * 12 + ((t + j) % 12)]! + 0.1 * t;
    return tensor(out, [B, 5, IMAGE_DIM]);
  }
}

export interface LoadCounts {
  tokenizer: number;
  textEncoder: number;
  imageEncoder: number;
  dit: number;
  autoencoder: number;
  /** the order in which the loaders ran */
  order: string[];
}

/** GenerationModels over tiny random models and the fakes, counting loads. */
export function fakeModels(family: 'dc' | 'wan', mode: 't2v' | 'i2v', o: { ditSeed?: number; cacheId?: string | null } = {}): { models: GenerationModels; counts: LoadCounts; ae: VideoAutoencoder } {
  const counts: LoadCounts = { tokenizer: 0, textEncoder: 0, imageEncoder: 0, dit: 0, autoencoder: 0, order: [] };
  const ae: VideoAutoencoder = family === 'dc' ? new DcaevAutoencoder(tinyDcaev()) : new WanVaeAutoencoder(tinyWanVae());
  const note = (k: keyof Omit<LoadCounts, 'order'>) => {
    counts[k]++;
    counts.order.push(k);
  };
  const models: GenerationModels = {
    name: `tiny-${family}-${mode}`,
    ditConfig: tinyDitConfig(family, mode),
    aeGeometry: latentGeometry(ae),
    textDim: TEXT_DIM,
    textEncoderId: o.cacheId === null ? undefined : (o.cacheId ?? 'fake-text-encoder-v1'),
    tokenizer: () => (note('tokenizer'), new FakeTokenizer()),
    textEncoder: () => (note('textEncoder'), new FakeTextEncoder()),
    dit: () => (note('dit'), tinyDit(family, mode, o.ditSeed)),
    autoencoder: () => (note('autoencoder'), ae),
    ...(mode === 'i2v' ? { imageEncoder: () => (note('imageEncoder'), new FakeImageEncoder()) } : {}),
  };
  return { models, counts, ae };
}
