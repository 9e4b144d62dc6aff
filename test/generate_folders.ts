/**
 * Tiny random model folders for `dcvg generate`, in both released layouts:
 * - diffusers: model_index.json, transformer/ (diffusers keys, 2 shards + index, diffusers config), text_encoder/,
 *   tokenizer/, vae/ (DC-AE-V: reference-vocabulary config; Wan VAE: AutoencoderKLWan config, diffusers keys),
 *   scheduler/scheduler_config.json, image_encoder/ (i2v);
 * - Wan: config.json (Wan vocabulary), diffusion_pytorch_model.safetensors (Wan keys), models_t5_umt5-xxl-enc-bf16.pth
 *   (+ .json config), google/umt5-xxl/, Wan2.1_VAE.pth (as safetensors, + .json) or dc-ae-v-tiny.safetensors
 *   (+ .json), models_clip_open-clip-xlm-roberta-large-vit-huge-14.safetensors (i2v).
 * The encoders are either placeholders (for tests that pass fake loaders: the files only have to exist) or, given
 * `writeEncoders`, whatever the real encoder modules write.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { saveSafetensors } from '../src/io/safetensors.js';
import { wanConfigToJson } from '../src/models/wan/config.js';
import { wanKeyToDiffusers } from '../src/models/wan/keys.js';
import { wanVaeKeyMap } from '../src/models/wan_vae/keys.js';
import { tensor, type Tensor } from '../src/tensor/tensor.js';
import { TINY_DCAEV_JSON, TINY_WAN_VAE_JSON, TEXT_DIM, tinyDcaev, tinyDit, tinyDitConfig, tinyWanVae, type EncoderDims } from './generate_models.js';

export type Layout = 'diffusers' | 'wan';
export type Family = 'dc' | 'wan';

/** Writes the real encoders' files (tokenizer, umT5, CLIP) into a folder of the given layout; null: placeholders. */
export type EncoderWriter = (dir: string, layout: Layout, mode: 't2v' | 'i2v') => void;

function placeholderEncoders(dir: string, layout: Layout, mode: 't2v' | 'i2v'): void {
  const st = (p: string) => saveSafetensors(p, { placeholder: tensor([0], [1]) });
  if (layout === 'diffusers') {
    mkdirSync(join(dir, 'text_encoder'), { recursive: true });
    writeFileSync(join(dir, 'text_encoder', 'config.json'), JSON.stringify({ architectures: ['UMT5EncoderModel'], d_model: TEXT_DIM }));
    st(join(dir, 'text_encoder', 'model.safetensors'));
    mkdirSync(join(dir, 'tokenizer'), { recursive: true });
    writeFileSync(join(dir, 'tokenizer', 'tokenizer.json'), '{}');
    if (mode === 'i2v') {
      mkdirSync(join(dir, 'image_encoder'), { recursive: true });
      writeFileSync(join(dir, 'image_encoder', 'config.json'), '{}');
      st(join(dir, 'image_encoder', 'model.safetensors'));
    }
  } else {
    writeFileSync(join(dir, 'models_t5_umt5-xxl-enc-bf16.pth'), 'placeholder');
    mkdirSync(join(dir, 'google', 'umt5-xxl'), { recursive: true });
    writeFileSync(join(dir, 'google', 'umt5-xxl', 'tokenizer.json'), '{}');
    if (mode === 'i2v') writeFileSync(join(dir, 'models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth'), 'placeholder');
  }
}

/** The diffusers WanTransformer3DModel config of a tiny DiT. */
function diffusersDitConfig(family: Family, mode: 't2v' | 'i2v', dims: EncoderDims): Record<string, unknown> {
  const c = tinyDitConfig(family, mode, dims);
  return {
    _class_name: 'WanTransformer3DModel',
    patch_size: [...c.patch_size],
    num_attention_heads: c.num_heads,
    attention_head_dim: c.dim / c.num_heads,
    in_channels: c.in_dim,
    out_channels: c.out_dim,
    text_dim: c.text_dim,
    freq_dim: c.freq_dim,
    ffn_dim: c.ffn_dim,
    num_layers: c.num_layers,
    cross_attn_norm: true,
    qk_norm: 'rms_norm_across_heads',
    eps: c.eps,
    image_dim: mode === 'i2v' ? c.image_dim : null,
    added_kv_proj_dim: mode === 'i2v' ? c.dim : null,
    rope_max_seq_len: 1024,
  };
}

/** Two shards and their index, as diffusers writes large models. */
function saveSharded(dir: string, base: string, sd: Map<string, Tensor>): void {
  const keys = [...sd.keys()];
  const half = Math.ceil(keys.length / 2);
  const shards = [keys.slice(0, half), keys.slice(half)];
  const map: Record<string, string> = {};
  shards.forEach((ks, i) => {
    const name = `${base}-0000${i + 1}-of-00002.safetensors`;
    saveSafetensors(join(dir, name), new Map(ks.map((k) => [k, sd.get(k)!])));
    for (const k of ks) map[k] = name;
  });
  writeFileSync(join(dir, `${base}.safetensors.index.json`), JSON.stringify({ metadata: {}, weight_map: map }));
}

export interface FolderOptions {
  layout: Layout;
  family: Family;
  mode: 't2v' | 'i2v';
  writeEncoders?: EncoderWriter | null;
  /** the DiT's text / image widths (default: the fakes'); text_len only applies to the Wan layout (diffusers: 512) */
  dims?: EncoderDims;
  /** diffusers: scheduler_config.json contents (default UniPC with flow_shift 3) */
  scheduler?: Record<string, unknown> | null;
}

/** Builds a tiny random model folder in `dir` (which must exist). */
export function writeModelFolder(dir: string, o: FolderOptions): void {
  const dims = o.dims ?? {};
  const dit = tinyDit(o.family, o.mode, 3, o.layout === 'diffusers' ? { ...dims, textLen: 512 } : dims);
  const ditSd = dit.stateDict();
  if (o.layout === 'diffusers') {
    const index: Record<string, unknown> = {
      _class_name: o.mode === 'i2v' ? 'WanImageToVideoPipeline' : 'WanPipeline',
      transformer: ['diffusers', 'WanTransformer3DModel'],
      text_encoder: ['transformers', 'UMT5EncoderModel'],
      tokenizer: ['transformers', 'T5TokenizerFast'],
      vae: ['diffusers', o.family === 'wan' ? 'AutoencoderKLWan' : 'DCAEV'],
      scheduler: ['diffusers', 'UniPCMultistepScheduler'],
      ...(o.mode === 'i2v' ? { image_encoder: ['transformers', 'CLIPVisionModel'] } : {}),
    };
    writeFileSync(join(dir, 'model_index.json'), JSON.stringify(index));
    mkdirSync(join(dir, 'transformer'));
    writeFileSync(join(dir, 'transformer', 'config.json'), JSON.stringify(diffusersDitConfig(o.family, o.mode, dims)));
    saveSharded(join(dir, 'transformer'), 'diffusion_pytorch_model', new Map([...ditSd].map(([k, v]) => [wanKeyToDiffusers(k)!, v])));
    mkdirSync(join(dir, 'vae'));
    if (o.family === 'wan') {
      const vae = tinyWanVae();
      const { toDiffusers } = wanVaeKeyMap(vae);
      const j = TINY_WAN_VAE_JSON;
      writeFileSync(
        join(dir, 'vae', 'config.json'),
        JSON.stringify({ _class_name: 'AutoencoderKLWan', base_dim: j.dim, z_dim: j.z_dim, dim_mult: j.dim_mult, num_res_blocks: j.num_res_blocks, attn_scales: j.attn_scales, temperal_downsample: j.temperal_downsample, dropout: 0, latents_mean: j.latents_mean, latents_std: j.latents_std }),
      );
      saveSafetensors(join(dir, 'vae', 'diffusion_pytorch_model.safetensors'), new Map([...vae.stateDict()].map(([k, v]) => [toDiffusers.get(k)!, v])));
    } else {
      writeFileSync(join(dir, 'vae', 'config.json'), JSON.stringify(TINY_DCAEV_JSON));
      saveSafetensors(join(dir, 'vae', 'diffusion_pytorch_model.safetensors'), tinyDcaev().stateDict());
    }
    if (o.scheduler !== null) {
      mkdirSync(join(dir, 'scheduler'));
      writeFileSync(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(o.scheduler ?? { _class_name: 'UniPCMultistepScheduler', flow_shift: 3, solver_order: 2, prediction_type: 'flow_prediction' }));
    }
  } else {
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ _class_name: 'WanModel', ...wanConfigToJson(dit.config) }));
    saveSafetensors(join(dir, 'diffusion_pytorch_model.safetensors'), ditSd);
    if (o.family === 'wan') {
      writeFileSync(join(dir, 'Wan2.1_VAE.json'), JSON.stringify(TINY_WAN_VAE_JSON));
      saveSafetensors(join(dir, 'Wan2.1_VAE.safetensors'), tinyWanVae().stateDict());
    } else {
      writeFileSync(join(dir, 'dc-ae-v-tiny.json'), JSON.stringify(TINY_DCAEV_JSON));
      saveSafetensors(join(dir, 'dc-ae-v-tiny.safetensors'), tinyDcaev().stateDict());
    }
  }
  (o.writeEncoders ?? placeholderEncoders)(dir, o.layout, o.mode);
}
