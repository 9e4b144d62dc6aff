/**
 * Configuration of the CLIP model image-to-video uses (`XLMRobertaCLIP` of Wan-Video/Wan2.1 `wan/modules/clip.py`,
 * the module `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` loads into), in that constructor's vocabulary
 * (`vision_dim`, `vision_layers`, `text_dim`, ...). Only the visual tower is ever built or run; the text tower's fields
 * are kept so the whole checkpoint's key layout (784 keys for the released model) can be named and checked without
 * reading the text tower's weights.
 *
 * Only Wan's form of the visual tower is supported: pool 'token' (cls embedding + head matrix), pre-norm (so the
 * patch conv has no bias), no post-norm inside blocks, exact GELU. Other values are refused with the field named.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { MAX_ELEMENTS, fmtBytes } from '../../tensor/alloc.js';
import { ValueError, showValue } from '../../errors.js';

export interface ClipConfig {
  name: string;
  /** joint embedding width (the visual head's output; released 1024) */
  embed_dim: number;
  /** the square input the visual tower takes (released 224) */
  image_size: number;
  /** released 14 */
  patch_size: number;
  /** visual width (released 1280) */
  vision_dim: number;
  /** MLP hidden = vision_dim * vision_mlp_ratio (released 4) */
  vision_mlp_ratio: number;
  /** released 16 */
  vision_heads: number;
  /** released 32; image-to-video uses the tokens after the first vision_layers - 1 */
  vision_layers: number;
  /** LayerNorm eps of every visual norm (released 1e-5) */
  norm_eps: number;
  // the text tower (XLM-RoBERTa-large + head): only its key names and shapes are used
  vocab_size: number;
  max_text_len: number;
  type_size: number;
  pad_id: number;
  text_dim: number;
  text_heads: number;
  text_layers: number;
  /** preprocessing: (x - mean) / std per RGB channel after mapping [-1, 1] to [0, 1] */
  mean: [number, number, number];
  std: [number, number, number];
}

/** open_clip's (OpenAI CLIP's) normalisation, which Wan's CLIPModel uses for this checkpoint. */
export const CLIP_MEAN: readonly [number, number, number] = Object.freeze([0.48145466, 0.4578275, 0.40821073]) as readonly [number, number, number];
export const CLIP_STD: readonly [number, number, number] = Object.freeze([0.26862954, 0.26130258, 0.27577711]) as readonly [number, number, number];

/** Bounds checked before anything is built: far above the released model (in the comments), small enough that a config file cannot ask for terabytes. */
export const CLIP_LIMITS = {
  /** released 224 */
  image_size: 4096,
  /** released 14 */
  patch_size: 1024,
  /** released 1280 / 1024 */
  dim: 16384,
  /** released 4 */
  mlp_ratio: 64,
  /** released 32 / 24 */
  layers: 256,
  /** released 250002 */
  vocab_size: 10_000_000,
  /** released 514 */
  max_text_len: 1_000_000,
  /** parameters of the whole model (1e10, 40 GB as float32); released 1,193,014,785 */
  params: 1e10,
};

export const CLIP_PRESET = 'open-clip-xlm-roberta-large-vit-huge-14';
export const CLIP_PRESET_NAMES = [CLIP_PRESET, 'clip-vit-h-14'];

/** `clip_xlm_roberta_vit_h_14()`: the released checkpoint's model. */
export function clipVitH14Config(): ClipConfig {
  return validateClipConfig({
    name: CLIP_PRESET,
    embed_dim: 1024,
    image_size: 224,
    patch_size: 14,
    vision_dim: 1280,
    vision_mlp_ratio: 4,
    vision_heads: 16,
    vision_layers: 32,
    norm_eps: 1e-5,
    vocab_size: 250002,
    max_text_len: 514,
    type_size: 1,
    pad_id: 1,
    text_dim: 1024,
    text_heads: 16,
    text_layers: 24,
    mean: [...CLIP_MEAN] as [number, number, number],
    std: [...CLIP_STD] as [number, number, number],
  });
}

export function isClipPresetName(s: string): boolean {
  const n = s
    .trim()
    .toLowerCase()
    .replace(/\.pth$/, '')
    .replace(/^models_clip_/, '')
    .replace(/_/g, '-');
  return CLIP_PRESET_NAMES.includes(n);
}

const show = showValue;

function int(v: unknown, what: string, where: string, max: number, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ValueError(`${where}: ${what} must be an integer in [${min}, ${max}], got ${show(v)}`);
  return v;
}

/** Tokens the visual tower runs on: the cls token plus (image_size / patch_size)^2 patches. */
export function clipTokens(c: Pick<ClipConfig, 'image_size' | 'patch_size'>): number {
  return 1 + (c.image_size / c.patch_size) ** 2;
}

export interface ClipParameterCounts {
  /** every `visual.*` parameter */
  visual: number;
  /** what the image-to-video features read: all but the last block, post_norm and head */
  features: number;
  /** `textual.*` */
  textual: number;
  /** log_scale */
  other: number;
  total: number;
}

/** Parameter counts from the config alone; refuses a tensor larger than one typed array or a total above the limit. */
export function clipParameterCounts(c: ClipConfig, where = `CLIP config "${c.name}"`): ClipParameterCounts {
  const t = (n: number, what: string) => {
    if (n > MAX_ELEMENTS) throw new ValueError(`${where}: ${what} would have ${n.toLocaleString('en-US')} weights (${fmtBytes(4 * n)}), more than one tensor can hold`);
    return n;
  };
  const D = c.vision_dim;
  const H = D * c.vision_mlp_ratio;
  const block = 2 * D + t(3 * D * D, 'to_qkv') + 3 * D + D * D + D + 2 * D + t(H * D, 'mlp.0') + H + H * D + D;
  const stem = D + t(clipTokens(c) * D, 'pos_embedding') + t(D * 3 * c.patch_size * c.patch_size, 'patch_embedding') + 2 * D;
  const tail = 2 * D + t(D * c.embed_dim, 'head');
  const visual = stem + c.vision_layers * block + tail;
  const features = stem + (c.vision_layers - 1) * block;
  const T = c.text_dim;
  const mid = Math.floor((T + c.embed_dim) / 2);
  const tblock = 4 * (T * T + T) + 2 * T + t(4 * T * T, 'ffn.0') + 4 * T + 4 * T * T + T + 2 * T;
  const textual = t(c.vocab_size * T, 'token_embedding') + c.type_size * T + t(c.max_text_len * T, 'pos_embedding') + c.text_layers * tblock + 2 * T + T * mid + mid * c.embed_dim;
  const total = visual + textual + 1;
  if (total > CLIP_LIMITS.params)
    throw new ValueError(`${where}: ${total.toLocaleString('en-US')} parameters is beyond the limit of ${CLIP_LIMITS.params.toLocaleString('en-US')} (the released model has 1,193,014,785)`);
  return { visual, features, textual, other: 1, total };
}

/** Checks types, bounds and the structural rules the reference relies on; returns the config. */
export function validateClipConfig(c: ClipConfig, source?: string): ClipConfig {
  if (typeof c !== 'object' || c === null) throw new ValueError(`CLIP config must be an object, got ${show(c)}`);
  if (typeof c.name !== 'string') throw new ValueError(`CLIP config: name must be a string, got ${show(c.name)}`);
  const w = source ? `CLIP config ${source}` : `CLIP config "${c.name}"`;
  const L = CLIP_LIMITS;
  int(c.image_size, 'image_size', w, L.image_size);
  int(c.patch_size, 'patch_size', w, L.patch_size);
  if (c.image_size % c.patch_size)
    throw new ValueError(`${w}: image_size ${c.image_size} is not a multiple of patch_size ${c.patch_size} (the patch grid would drop pixels; the released model has 224 and 14)`);
  for (const k of ['vision_dim', 'embed_dim', 'text_dim'] as const) int(c[k], k, w, L.dim);
  int(c.vision_mlp_ratio, 'vision_mlp_ratio', w, L.mlp_ratio);
  int(c.vision_heads, 'vision_heads', w, c.vision_dim);
  int(c.text_heads, 'text_heads', w, c.text_dim);
  if (c.vision_dim % c.vision_heads) throw new ValueError(`${w}: vision_dim ${c.vision_dim} is not a multiple of vision_heads ${c.vision_heads}`);
  if (c.text_dim % c.text_heads) throw new ValueError(`${w}: text_dim ${c.text_dim} is not a multiple of text_heads ${c.text_heads}`);
  int(c.vision_layers, 'vision_layers', w, L.layers);
  int(c.text_layers, 'text_layers', w, L.layers, 0);
  int(c.vocab_size, 'vocab_size', w, L.vocab_size);
  int(c.max_text_len, 'max_text_len', w, L.max_text_len);
  int(c.type_size, 'type_size', w, 1024);
  int(c.pad_id, 'pad_id', w, c.vocab_size - 1, 0);
  if (typeof c.norm_eps !== 'number' || !(c.norm_eps > 0) || !(c.norm_eps < 1)) throw new ValueError(`${w}: norm_eps must be a number in (0, 1), got ${show(c.norm_eps)}`);
  for (const k of ['mean', 'std'] as const) {
    const v = c[k];
    if (!Array.isArray(v) || v.length !== 3 || v.some((x) => typeof x !== 'number' || !Number.isFinite(x) || (k === 'std' && !(x > 0))))
      throw new ValueError(`${w}: ${k} must be 3 finite numbers (one per RGB channel${k === 'std' ? ', positive' : ''}), got ${show(v)}`);
  }
  clipParameterCounts(c, w);
  return c;
}

/** Fields of XLMRobertaCLIP whose non-default values give a model we do not build. */
const FIXED: [string, unknown, string][] = [
  ['vision_pool', 'token', 'the cls token and a head matrix'],
  ['vision_pre_norm', true, 'a pre-norm LayerNorm and a patch conv without bias'],
  ['vision_post_norm', false, 'pre-LN blocks'],
  ['activation', 'gelu', 'exact (erf) GELU'],
];

/**
 * A config from JSON: a bare object in XLMRobertaCLIP's vocabulary, `{"config": {...}, "mean": [...], "std": [...]}`
 * (a clip.json entry), or the whole official_state_dict_shapes.json (its `config`). Omitted fields take
 * `clip_xlm_roberta_vit_h_14`'s values (the released model).
 */
export function parseClipConfig(json: unknown, name?: string, source?: string): ClipConfig {
  const at = source ? `CLIP config ${source}` : 'CLIP config';
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ValueError(`${at} must be a JSON object (vision_dim, vision_layers, ...), got ${show(json)}`);
  const hf = fromTransformers(json as Record<string, unknown>, at);
  if (hf) return parseClipConfig(hf, name ?? hf.name as string, source);
  const outer = json as Record<string, unknown>;
  let o = outer;
  if (outer.config !== undefined) {
    if (typeof outer.config !== 'object' || outer.config === null || Array.isArray(outer.config)) throw new ValueError(`${at}: "config" must be an object, got ${show(outer.config)}`);
    o = outer.config as Record<string, unknown>;
  }
  for (const [k, want, what] of FIXED)
    if (o[k] !== undefined && o[k] !== want) throw new ValueError(`${at}: ${k} ${show(o[k])} is not supported (Wan's CLIP has ${show(want)}: ${what})`);
  const d = clipVitH14Config();
  const pick = <K extends keyof ClipConfig>(k: K): ClipConfig[K] => (o[k] ?? outer[k] ?? d[k]) as ClipConfig[K];
  const c: ClipConfig = {
    name: name ?? (typeof o.name === 'string' ? o.name : 'custom'),
    embed_dim: pick('embed_dim'),
    image_size: pick('image_size'),
    patch_size: pick('patch_size'),
    vision_dim: pick('vision_dim'),
    vision_mlp_ratio: pick('vision_mlp_ratio'),
    vision_heads: pick('vision_heads'),
    vision_layers: pick('vision_layers'),
    norm_eps: pick('norm_eps'),
    vocab_size: pick('vocab_size'),
    max_text_len: pick('max_text_len'),
    type_size: pick('type_size'),
    pad_id: pick('pad_id'),
    text_dim: pick('text_dim'),
    text_heads: pick('text_heads'),
    text_layers: pick('text_layers'),
    mean: pick('mean'),
    std: pick('std'),
  };
  return validateClipConfig(c, source);
}

/**
 * transformers' `CLIPVisionConfig` (a diffusers `image_encoder/config.json`: hidden_size, num_hidden_layers, ...; or a
 * `CLIPConfig` with it under vision_config) in XLMRobertaCLIP's vocabulary; null for other JSON. The text fields keep
 * the released model's values (transformers' vision checkpoints have no text tower).
 */
function fromTransformers(o: Record<string, unknown>, at: string): Record<string, unknown> | null {
  const v = (typeof o.vision_config === 'object' && o.vision_config !== null ? o.vision_config : o) as Record<string, unknown>;
  if (v.hidden_size === undefined || v.num_hidden_layers === undefined) return null;
  if (v.hidden_act !== undefined && v.hidden_act !== 'gelu')
    throw new ValueError(`${at}: hidden_act ${show(v.hidden_act)} is not supported (Wan's CLIP has "gelu", exact erf)`);
  if (v.num_channels !== undefined && v.num_channels !== 3) throw new ValueError(`${at}: num_channels ${show(v.num_channels)} is not supported (RGB: 3)`);
  const dim = v.hidden_size;
  const inter = v.intermediate_size ?? (typeof dim === 'number' ? 4 * dim : undefined);
  const ratio = typeof dim === 'number' && typeof inter === 'number' && dim > 0 ? inter / dim : NaN;
  if (!Number.isInteger(ratio)) throw new ValueError(`${at}: intermediate_size ${show(inter)} is not a whole multiple of hidden_size ${show(dim)}`);
  return {
    name: typeof o._name_or_path === 'string' && o._name_or_path ? o._name_or_path : 'clip-vision',
    embed_dim: v.projection_dim ?? o.projection_dim ?? 1024,
    image_size: v.image_size ?? 224,
    patch_size: v.patch_size ?? 14,
    vision_dim: dim,
    vision_mlp_ratio: ratio,
    vision_heads: v.num_attention_heads ?? 16,
    vision_layers: v.num_hidden_layers,
    norm_eps: v.layer_norm_eps ?? 1e-5,
  };
}

const CONFIG_MAX_BYTES = 16 * 1024 * 1024;

function readConfigJson(path: string): unknown {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ValueError(`CLIP config ${path} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof ValueError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new ValueError(code === 'ENOENT' ? `CLIP config file not found: ${path}` : `cannot read CLIP config ${path}: ${(e as Error).message}`);
  }
  if (size > CONFIG_MAX_BYTES) throw new ValueError(`CLIP config ${path} is ${size} bytes, too large for a config file (at most ${CONFIG_MAX_BYTES})`);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ValueError(`CLIP config ${path}: not valid JSON (${(e as Error).message})`);
  }
}

/**
 * A preset name (`open-clip-xlm-roberta-large-vit-huge-14`, `clip-vit-h-14`), a JSON file (`clip.json#clip_tiny`
 * picks one entry of a multi-config file), or an already parsed object.
 */
export function resolveClipConfig(spec: string | object): ClipConfig {
  if (typeof spec !== 'string') return parseClipConfig(spec);
  if (isClipPresetName(spec)) return clipVitH14Config();
  const hash = spec.lastIndexOf('#');
  const path = hash > 0 ? spec.slice(0, hash) : spec;
  const entry = hash > 0 ? spec.slice(hash + 1) : null;
  const looksLikePath = /[\\/#]/.test(spec) || /\.json$/i.test(spec) || spec.startsWith('.');
  if (!looksLikePath && !existsSync(path)) throw new ValueError(`unknown CLIP model "${spec}" (known: ${CLIP_PRESET_NAMES.join(', ')}, or a config .json)`);
  const json = readConfigJson(path);
  if (entry !== null) {
    if (typeof json !== 'object' || json === null || Array.isArray(json) || !Object.hasOwn(json, entry))
      throw new ValueError(`CLIP config ${path}: no entry "${entry}" (has: ${typeof json === 'object' && json !== null ? Object.keys(json).join(', ') || 'nothing' : show(json)})`);
    return parseClipConfig((json as Record<string, unknown>)[entry], entry, spec);
  }
  const entries = typeof json === 'object' && json !== null && !Array.isArray(json) ? Object.entries(json) : [];
  if (entries.length > 0 && entries.every(([, v]) => typeof v === 'object' && v !== null && 'config' in v))
    throw new ValueError(`CLIP config ${path} holds several configs: pick one with ${path}#<entry> (entries: ${entries.map(([k]) => k).join(', ')})`);
  return parseClipConfig(json, undefined, path);
}

/** The config in XLMRobertaCLIP's vocabulary plus mean / std (for writing beside weights). */
export function clipConfigToJson(c: ClipConfig): Record<string, unknown> {
  const { name: _n, mean, std, ...rest } = c;
  return { ...rest, mean: [...mean], std: [...std] };
}
