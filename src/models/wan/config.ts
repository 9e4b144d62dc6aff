/**
 * Wan-2.1 DiT configurations, in Wan's own vocabulary (`wan/modules/model.py` constructor arguments), plus the
 * diffusers `WanTransformer3DModel` config.json vocabulary as an alternative input.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { MAX_ELEMENTS, fmtBytes } from '../../tensor/alloc.js';
import { ValueError, showValue } from '../../errors.js';

export type WanModelType = 't2v' | 'i2v';

export interface WanConfig {
  name: string;
  model_type: WanModelType;
  /** [pt, ph, pw] */
  patch_size: [number, number, number];
  /** text tokens after zero padding (512 for umT5) */
  text_len: number;
  /** channels of the DiT input: latent, plus for i2v the conditioning channels `y` */
  in_dim: number;
  dim: number;
  ffn_dim: number;
  /** size of the sinusoidal timestep embedding */
  freq_dim: number;
  text_dim: number;
  out_dim: number;
  num_heads: number;
  num_layers: number;
  eps: number;
  /** RMSNorm on q/k over the full width (all released models) */
  qk_norm: boolean;
  /** affine LayerNorm (`norm3`) before cross-attention (all released models) */
  cross_attn_norm: boolean;
  /** CLIP feature width of the i2v image context */
  image_dim: number;
}

const DEFAULTS = {
  eps: 1e-6,
  qk_norm: true,
  cross_attn_norm: true,
  image_dim: 1280,
  freq_dim: 256,
  text_len: 512,
  text_dim: 4096,
  patch_size: [1, 2, 2] as [number, number, number],
};

/**
 * Sane bounds for every field, checked before a model is built (a small config file could otherwise ask for ten
 * million blocks or petabytes of weights). Generous: far above the released models (in the comments: Wan-2.1
 * 1.3B / 14B, T2V / I2V, and the DC-VideoGen variants), so research variants still load.
 */
export const WAN_LIMITS = {
  /** released: 30 (1.3B), 40 (14B) */
  num_layers: 1000,
  /** released: 1536, 5120 */
  dim: 65536,
  /** released: 8960, 13824 */
  ffn_dim: 262144,
  /** released: 12, 40 */
  num_heads: 1024,
  /** released: 16 to 68 */
  in_dim: 4096,
  /** released: 16, 32 */
  out_dim: 4096,
  /** released: 512 (umT5 tokens) */
  text_len: 65536,
  /** released: 4096 (umT5-XXL) */
  text_dim: 65536,
  /** released: 256 */
  freq_dim: 65536,
  /** released: 1280 (CLIP ViT-H) */
  image_dim: 65536,
  /** each of pt, ph, pw; released: 1 and 2 */
  patch: 64,
  /** parameters in all (1e11, 400 GB as float32); released: 1.4e9 to 1.64e10 */
  params: 1e11,
};

const show = showValue;

function posInt(v: unknown, what: string, where: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max)
    throw new ValueError(`${where}: ${what} must be an integer in [1, ${max}], got ${show(v)}`);
  return v;
}

/** Checks types, bounds (WAN_LIMITS), the invariants the forward pass relies on, and the parameter count; returns the config. */
export function validateWanConfig(c: WanConfig, source?: string): WanConfig {
  if (typeof c !== 'object' || c === null) throw new ValueError(`Wan config must be an object, got ${show(c)}`);
  if (typeof c.name !== 'string') throw new ValueError(`Wan config: name must be a string, got ${show(c.name)}`);
  const w = source ? `Wan config ${source}` : `Wan config "${c.name}"`;
  if (c.model_type !== 't2v' && c.model_type !== 'i2v') throw new ValueError(`${w}: model_type must be "t2v" or "i2v", got ${show(c.model_type)}`);
  if (!Array.isArray(c.patch_size) || c.patch_size.length !== 3)
    throw new ValueError(`${w}: patch_size must be [pt, ph, pw], got ${show(c.patch_size)}`);
  c.patch_size.forEach((p, i) => posInt(p, `patch_size[${i}]`, w, WAN_LIMITS.patch));
  for (const k of ['text_len', 'in_dim', 'dim', 'ffn_dim', 'freq_dim', 'text_dim', 'out_dim', 'num_heads', 'num_layers', 'image_dim'] as const)
    posInt(c[k], k, w, WAN_LIMITS[k]);
  if (c.dim % c.num_heads !== 0) throw new ValueError(`${w}: dim ${c.dim} is not divisible by num_heads ${c.num_heads}`);
  if ((c.dim / c.num_heads) % 2 !== 0) throw new ValueError(`${w}: head dim ${c.dim / c.num_heads} must be even (RoPE rotates pairs)`);
  if (c.freq_dim % 2 !== 0) throw new ValueError(`${w}: freq_dim ${c.freq_dim} must be even`);
  // eps is added to a variance: released 1e-6; anything non-positive, non-finite or above 1 is a mistake
  if (typeof c.eps !== 'number' || !(c.eps > 0) || !(c.eps <= 1)) throw new ValueError(`${w}: eps must be a number in (0, 1], got ${show(c.eps)}`);
  for (const k of ['qk_norm', 'cross_attn_norm'] as const)
    if (typeof c[k] !== 'boolean') throw new ValueError(`${w}: ${k} must be true or false, got ${show(c[k])}`);
  if (c.model_type === 'i2v' && c.in_dim <= c.out_dim)
    throw new ValueError(`${w}: an i2v model needs in_dim (${c.in_dim}) > out_dim (${c.out_dim}): the extra channels are the conditioning y`);
  wanParameterCount(c, w);
  return c;
}

/**
 * The model's parameter count from the config alone (shapes as model.ts registers them; nothing built or
 * allocated). Throws a ValueError when one tensor exceeds what a typed array holds or the total exceeds
 * WAN_LIMITS.params. Expects a config whose fields are already type-checked (validateWanConfig).
 */
export function wanParameterCount(c: WanConfig, where = `Wan config "${c.name}"`): number {
  const [pt, ph, pw] = c.patch_size;
  const { dim, ffn_dim: ffn, text_dim, freq_dim, image_dim: img, qk_norm: qk } = c;
  const tensor = (n: number, what: string) => {
    if (n > MAX_ELEMENTS)
      throw new ValueError(`${where}: ${what} would have ${n.toLocaleString('en-US')} weights (${fmtBytes(4 * n)}), more than one tensor can hold (${MAX_ELEMENTS.toLocaleString('en-US')})`);
    return n;
  };
  const linear = (cin: number, cout: number, what: string) => tensor(cin * cout, `${what} weight`) + cout;
  const attn = linear(dim, dim, 'attention q/k/v/o') * 4 + (qk ? 2 * dim : 0);
  const image = c.model_type === 'i2v';
  const block =
    6 * dim + // modulation
    attn + // self-attention
    (c.cross_attn_norm ? 2 * dim : 0) + // norm3
    attn + (image ? 2 * linear(dim, dim, 'k_img/v_img') + (qk ? dim : 0) : 0) + // cross-attention
    linear(dim, ffn, 'ffn') + linear(ffn, dim, 'ffn');
  const total =
    tensor(dim * c.in_dim * pt * ph * pw, 'patch_embedding weight') + dim +
    linear(text_dim, dim, 'text_embedding') + linear(dim, dim, 'text_embedding') +
    linear(freq_dim, dim, 'time_embedding') + linear(dim, dim, 'time_embedding') +
    linear(dim, 6 * dim, 'time_projection') +
    c.num_layers * block +
    2 * dim + linear(dim, c.out_dim * pt * ph * pw, 'head') +
    (image ? 2 * img + linear(img, img, 'img_emb') + linear(img, dim, 'img_emb') + 2 * dim : 0);
  if (total > WAN_LIMITS.params)
    throw new ValueError(
      `${where}: ${total.toLocaleString('en-US')} parameters (${fmtBytes(4 * total)} as float32) is beyond the limit of ${WAN_LIMITS.params.toLocaleString('en-US')} (the released models have 1.4e9 to 1.64e10)`,
    );
  return total;
}

// ---------------------------------------------------------------------------------------------------------------
// presets (spec §3.1)

type PresetOverrides = Partial<WanConfig> & Pick<WanConfig, 'model_type' | 'in_dim' | 'out_dim' | 'dim' | 'ffn_dim' | 'num_heads' | 'num_layers'>;

function preset(name: string, o: PresetOverrides): WanConfig {
  return validateWanConfig({
    name,
    patch_size: [...DEFAULTS.patch_size],
    text_len: DEFAULTS.text_len,
    freq_dim: DEFAULTS.freq_dim,
    text_dim: DEFAULTS.text_dim,
    eps: DEFAULTS.eps,
    qk_norm: DEFAULTS.qk_norm,
    cross_attn_norm: DEFAULTS.cross_attn_norm,
    image_dim: DEFAULTS.image_dim,
    ...o,
  });
}

const SMALL = { dim: 1536, ffn_dim: 8960, num_heads: 12, num_layers: 30 };
const LARGE = { dim: 5120, ffn_dim: 13824, num_heads: 40, num_layers: 40 };
const PATCH1: [number, number, number] = [1, 1, 1];

const PRESETS: Record<string, () => WanConfig> = {
  'Wan2.1-T2V-1.3B': () => preset('Wan2.1-T2V-1.3B', { model_type: 't2v', in_dim: 16, out_dim: 16, ...SMALL }),
  'Wan2.1-T2V-14B': () => preset('Wan2.1-T2V-14B', { model_type: 't2v', in_dim: 16, out_dim: 16, ...LARGE }),
  // 36 = noisy latent 16 + mask 4 + condition latent 16
  'Wan2.1-I2V-14B': () => preset('Wan2.1-I2V-14B', { model_type: 'i2v', in_dim: 36, out_dim: 16, ...LARGE }),
  'DC-VideoGen-Wan2.1-T2V-1.3B': () =>
    preset('DC-VideoGen-Wan2.1-T2V-1.3B', { model_type: 't2v', in_dim: 32, out_dim: 32, patch_size: [...PATCH1], ...SMALL }),
  'DC-VideoGen-Wan2.1-T2V-14B': () =>
    preset('DC-VideoGen-Wan2.1-T2V-14B', { model_type: 't2v', in_dim: 32, out_dim: 32, patch_size: [...PATCH1], ...LARGE }),
  // 68 = noisy latent 32 + mask 4 (DC-AE-V's temporal factor) + condition latent 32
  'DC-VideoGen-Wan2.1-I2V-14B': () =>
    preset('DC-VideoGen-Wan2.1-I2V-14B', { model_type: 'i2v', in_dim: 68, out_dim: 32, patch_size: [...PATCH1], ...LARGE }),
};

export const WAN_PRESET_NAMES = Object.keys(PRESETS);

/** A preset by name (case-insensitive; a leading `nvidia/` or `Wan-AI/` and a `-Diffusers` suffix are ignored). */
function normalizePresetName(name: string): string {
  return name
    .trim()
    .replace(/^(nvidia|wan-ai|dc-ai)\//i, '')
    .replace(/-diffusers$/i, '')
    .toLowerCase();
}

export function wanPreset(name: string): WanConfig {
  const n = normalizePresetName(name);
  const hit = WAN_PRESET_NAMES.find((k) => k.toLowerCase() === n);
  if (!hit) throw new ValueError(`unknown Wan preset "${name}" (known: ${WAN_PRESET_NAMES.join(', ')})`);
  return PRESETS[hit]!();
}

export function isWanPresetName(name: string): boolean {
  const n = normalizePresetName(name);
  return WAN_PRESET_NAMES.some((k) => k.toLowerCase() === n);
}

// ---------------------------------------------------------------------------------------------------------------
// parsing

function triple(v: unknown, where: string): [number, number, number] {
  if (!Array.isArray(v) || v.length !== 3) throw new ValueError(`${where}: patch_size must be a list of 3 integers, got ${show(v)}`);
  return [v[0], v[1], v[2]] as [number, number, number];
}

/** Wan's own vocabulary (as in wan_fixtures.json's `config`). */
function fromWanJson(o: Record<string, unknown>, name: string, source?: string): WanConfig {
  const where = source ? `Wan config ${source}` : `Wan config "${name}"`;
  const need = ['in_dim', 'dim', 'ffn_dim', 'out_dim', 'num_heads', 'num_layers'];
  const missing = need.filter((k) => o[k] === undefined);
  if (missing.length) throw new ValueError(`${where}: missing ${missing.join(', ')}`);
  const type = (o.model_type ?? 't2v') as WanModelType;
  if (o.window_size !== undefined) {
    const ws = o.window_size as unknown;
    if (!Array.isArray(ws) || ws[0] !== -1 || ws[1] !== -1)
      throw new ValueError(`${where}: only global attention (window_size [-1, -1]) is supported, got ${show(ws)}`);
  }
  return validateWanConfig(
    {
    name,
    model_type: type,
    patch_size: o.patch_size === undefined ? [...DEFAULTS.patch_size] : triple(o.patch_size, where),
    text_len: (o.text_len as number) ?? DEFAULTS.text_len,
    in_dim: o.in_dim as number,
    dim: o.dim as number,
    ffn_dim: o.ffn_dim as number,
    freq_dim: (o.freq_dim as number) ?? DEFAULTS.freq_dim,
    text_dim: (o.text_dim as number) ?? DEFAULTS.text_dim,
    out_dim: o.out_dim as number,
    num_heads: o.num_heads as number,
    num_layers: o.num_layers as number,
    eps: (o.eps as number) ?? DEFAULTS.eps,
    qk_norm: (o.qk_norm as boolean) ?? DEFAULTS.qk_norm,
    cross_attn_norm: (o.cross_attn_norm as boolean) ?? DEFAULTS.cross_attn_norm,
    image_dim: (o.image_dim as number) ?? DEFAULTS.image_dim,
    },
    source,
  );
}

/** diffusers `WanTransformer3DModel` config.json. */
function fromDiffusersJson(o: Record<string, unknown>, name: string, source?: string): WanConfig {
  const where = source ? `diffusers Wan config ${source}` : `diffusers Wan config "${name}"`;
  const heads = posInt(o.num_attention_heads, 'num_attention_heads', where, WAN_LIMITS.num_heads);
  const hd = posInt(o.attention_head_dim, 'attention_head_dim', where, WAN_LIMITS.dim);
  const qk = o.qk_norm ?? 'rms_norm_across_heads';
  if (qk !== null && qk !== 'rms_norm_across_heads')
    throw new ValueError(`${where}: qk_norm ${show(qk)} is not supported (Wan-2.1 uses rms_norm_across_heads)`);
  const imageDim = o.image_dim as number | null | undefined;
  const inDim = posInt(o.in_channels, 'in_channels', where, WAN_LIMITS.in_dim);
  return validateWanConfig(
    {
    name,
    model_type: imageDim ? 'i2v' : 't2v',
    patch_size: o.patch_size === undefined ? [...DEFAULTS.patch_size] : triple(o.patch_size, where),
    text_len: DEFAULTS.text_len,
    in_dim: inDim,
    dim: heads * hd,
    ffn_dim: posInt(o.ffn_dim, 'ffn_dim', where, WAN_LIMITS.ffn_dim),
    freq_dim: (o.freq_dim as number) ?? DEFAULTS.freq_dim,
    text_dim: (o.text_dim as number) ?? DEFAULTS.text_dim,
    out_dim: (o.out_channels as number) ?? inDim,
    num_heads: heads,
    num_layers: posInt(o.num_layers, 'num_layers', where, WAN_LIMITS.num_layers),
    eps: (o.eps as number) ?? DEFAULTS.eps,
    qk_norm: qk !== null,
    cross_attn_norm: (o.cross_attn_norm as boolean) ?? true,
    image_dim: imageDim ?? DEFAULTS.image_dim,
    },
    source,
  );
}

/**
 * A config from JSON: `{"config": {...}}` (wan_fixtures.json entries) or a bare object, in Wan's vocabulary
 * (in_dim, dim, num_heads, ...) or diffusers' (in_channels, num_attention_heads, attention_head_dim, ...).
 * `source` (a file path) names the config in errors.
 */
export function parseWanConfig(json: unknown, name?: string, source?: string): WanConfig {
  const at = source ? `Wan config ${source}` : 'Wan config';
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ValueError(`${at} must be a JSON object (in_dim, dim, num_heads, ... or the diffusers keys), got ${show(json)}`);
  let o = json as Record<string, unknown>;
  if (o.config !== undefined) {
    if (typeof o.config !== 'object' || o.config === null || Array.isArray(o.config)) throw new ValueError(`${at}: "config" must be an object, got ${show(o.config)}`);
    o = o.config as Record<string, unknown>;
  }
  const nm = name ?? (typeof o.name === 'string' ? o.name : typeof o._name_or_path === 'string' ? o._name_or_path : 'custom');
  if (o.num_attention_heads !== undefined || o.in_channels !== undefined) return fromDiffusersJson(o, nm, source);
  return fromWanJson(o, nm, source);
}

/** A config is a few KiB; a larger file is not one (a checkpoint or video passed by mistake). */
const CONFIG_MAX_BYTES = 16 * 1024 * 1024;

/** True when a --config value is meant as a file rather than a preset name. */
function looksLikePath(spec: string): boolean {
  return /[\\/#]/.test(spec) || /\.json$/i.test(spec) || spec.startsWith('.');
}

function readConfigJson(path: string): unknown {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ValueError(`Wan config ${path} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof ValueError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new ValueError(code === 'ENOENT' ? `Wan config file not found: ${path}` : `cannot read Wan config ${path}: ${(e as Error).message}`);
  }
  if (size > CONFIG_MAX_BYTES) throw new ValueError(`Wan config ${path} is ${size} bytes, too large for a config file (at most ${CONFIG_MAX_BYTES})`);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ValueError(`Wan config ${path}: not valid JSON (${(e as Error).message})`);
  }
}

/**
 * A preset name, a JSON file (`cfg.json`, or `file.json#entry` to pick one entry of a multi-config file such as
 * wan_fixtures.json), or an already parsed object / WanConfig. A name that is no preset and looks like no path
 * lists the presets; a path that does not exist is "not found".
 */
export function resolveWanConfig(spec: string | object): WanConfig {
  if (typeof spec !== 'string') return parseWanConfig(spec);
  if (isWanPresetName(spec)) return wanPreset(spec);
  const hash = spec.lastIndexOf('#');
  const path = hash > 0 ? spec.slice(0, hash) : spec;
  const entry = hash > 0 ? spec.slice(hash + 1) : null;
  if (!looksLikePath(spec) && !existsSync(path)) return wanPreset(spec); // throws "unknown Wan preset" listing them
  const json = readConfigJson(path);
  if (entry !== null) {
    if (typeof json !== 'object' || json === null || Array.isArray(json) || !Object.hasOwn(json, entry))
      throw new ValueError(`Wan config ${path}: no entry "${entry}" (has: ${typeof json === 'object' && json !== null ? Object.keys(json).join(', ') || 'nothing' : show(json)})`);
    return parseWanConfig((json as Record<string, unknown>)[entry], entry, spec);
  }
  const entries = typeof json === 'object' && json !== null && !Array.isArray(json) ? Object.entries(json) : [];
  if (entries.length > 0 && entries.every(([, v]) => typeof v === 'object' && v !== null && 'config' in v))
    throw new ValueError(`Wan config ${path} holds several configs: pick one with ${path}#<entry> (entries: ${entries.map(([k]) => k).join(', ')})`);
  return parseWanConfig(json, undefined, path);
}

/** Head dim split per RoPE axis, as Wan does: t gets d - 4(d//6), h and w get 2(d//6) each. */
export function wanRopeAxisDims(headDim: number): [number, number, number] {
  const s = 2 * Math.floor(headDim / 6);
  return [headDim - 2 * s, s, s];
}

/** The config in Wan's own constructor vocabulary (for writing next to converted weights). */
export function wanConfigToJson(c: WanConfig): Record<string, unknown> {
  const { name: _name, ...rest } = c;
  return { ...rest, patch_size: [...c.patch_size] };
}
