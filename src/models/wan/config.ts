/**
 * Wan-2.1 DiT configurations, in Wan's own vocabulary (`wan/modules/model.py` constructor arguments), plus the
 * diffusers `WanTransformer3DModel` config.json vocabulary as an alternative input.
 */
import { readFileSync } from 'node:fs';
import { ValueError } from '../../tensor/errors.js';

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

function posInt(v: unknown, what: string, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ValueError(`${where}: ${what} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/** Checks the invariants the forward pass relies on; returns the config. */
export function validateWanConfig(c: WanConfig): WanConfig {
  const w = `Wan config "${c.name}"`;
  if (c.model_type !== 't2v' && c.model_type !== 'i2v') throw new ValueError(`${w}: model_type must be "t2v" or "i2v", got ${JSON.stringify(c.model_type)}`);
  if (!Array.isArray(c.patch_size) || c.patch_size.length !== 3)
    throw new ValueError(`${w}: patch_size must be [pt, ph, pw], got ${JSON.stringify(c.patch_size)}`);
  c.patch_size.forEach((p, i) => posInt(p, `patch_size[${i}]`, w));
  for (const k of ['text_len', 'in_dim', 'dim', 'ffn_dim', 'freq_dim', 'text_dim', 'out_dim', 'num_heads', 'num_layers', 'image_dim'] as const)
    posInt(c[k], k, w);
  if (c.dim % c.num_heads !== 0) throw new ValueError(`${w}: dim ${c.dim} is not divisible by num_heads ${c.num_heads}`);
  if ((c.dim / c.num_heads) % 2 !== 0) throw new ValueError(`${w}: head dim ${c.dim / c.num_heads} must be even (RoPE rotates pairs)`);
  if (c.freq_dim % 2 !== 0) throw new ValueError(`${w}: freq_dim ${c.freq_dim} must be even`);
  if (!(c.eps > 0) || !Number.isFinite(c.eps)) throw new ValueError(`${w}: eps must be a positive number, got ${c.eps}`);
  if (c.model_type === 'i2v' && c.in_dim <= c.out_dim)
    throw new ValueError(`${w}: an i2v model needs in_dim (${c.in_dim}) > out_dim (${c.out_dim}): the extra channels are the conditioning y`);
  return c;
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
export function wanPreset(name: string): WanConfig {
  const n = name
    .trim()
    .replace(/^(nvidia|wan-ai|dc-ai)\//i, '')
    .replace(/-diffusers$/i, '')
    .toLowerCase();
  const hit = WAN_PRESET_NAMES.find((k) => k.toLowerCase() === n);
  if (!hit) throw new ValueError(`unknown Wan preset "${name}" (known: ${WAN_PRESET_NAMES.join(', ')})`);
  return PRESETS[hit]!();
}

export function isWanPresetName(name: string): boolean {
  const n = name.trim().toLowerCase();
  return WAN_PRESET_NAMES.some((k) => k.toLowerCase() === n);
}

// ---------------------------------------------------------------------------------------------------------------
// parsing

function triple(v: unknown, where: string): [number, number, number] {
  if (!Array.isArray(v) || v.length !== 3) throw new ValueError(`${where}: patch_size must be a list of 3 integers, got ${JSON.stringify(v)}`);
  return [v[0], v[1], v[2]] as [number, number, number];
}

/** Wan's own vocabulary (as in wan_fixtures.json's `config`). */
function fromWanJson(o: Record<string, unknown>, name: string): WanConfig {
  const where = `Wan config "${name}"`;
  const need = ['in_dim', 'dim', 'ffn_dim', 'out_dim', 'num_heads', 'num_layers'];
  const missing = need.filter((k) => o[k] === undefined);
  if (missing.length) throw new ValueError(`${where}: missing ${missing.join(', ')}`);
  const type = (o.model_type ?? 't2v') as WanModelType;
  if (o.window_size !== undefined) {
    const ws = o.window_size as unknown;
    if (!Array.isArray(ws) || ws[0] !== -1 || ws[1] !== -1)
      throw new ValueError(`${where}: only global attention (window_size [-1, -1]) is supported, got ${JSON.stringify(ws)}`);
  }
  return validateWanConfig({
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
  });
}

/** diffusers `WanTransformer3DModel` config.json. */
function fromDiffusersJson(o: Record<string, unknown>, name: string): WanConfig {
  const where = `diffusers Wan config "${name}"`;
  const heads = posInt(o.num_attention_heads, 'num_attention_heads', where);
  const hd = posInt(o.attention_head_dim, 'attention_head_dim', where);
  const qk = o.qk_norm ?? 'rms_norm_across_heads';
  if (qk !== null && qk !== 'rms_norm_across_heads')
    throw new ValueError(`${where}: qk_norm "${String(qk)}" is not supported (Wan-2.1 uses rms_norm_across_heads)`);
  const imageDim = o.image_dim as number | null | undefined;
  const inDim = posInt(o.in_channels, 'in_channels', where);
  return validateWanConfig({
    name,
    model_type: imageDim ? 'i2v' : 't2v',
    patch_size: o.patch_size === undefined ? [...DEFAULTS.patch_size] : triple(o.patch_size, where),
    text_len: DEFAULTS.text_len,
    in_dim: inDim,
    dim: heads * hd,
    ffn_dim: posInt(o.ffn_dim, 'ffn_dim', where),
    freq_dim: (o.freq_dim as number) ?? DEFAULTS.freq_dim,
    text_dim: (o.text_dim as number) ?? DEFAULTS.text_dim,
    out_dim: (o.out_channels as number) ?? inDim,
    num_heads: heads,
    num_layers: posInt(o.num_layers, 'num_layers', where),
    eps: (o.eps as number) ?? DEFAULTS.eps,
    qk_norm: qk !== null,
    cross_attn_norm: (o.cross_attn_norm as boolean) ?? true,
    image_dim: imageDim ?? DEFAULTS.image_dim,
  });
}

/**
 * A config from JSON: `{"config": {...}}` (wan_fixtures.json entries) or a bare object, in Wan's vocabulary
 * (in_dim, dim, num_heads, ...) or diffusers' (in_channels, num_attention_heads, attention_head_dim, ...).
 */
export function parseWanConfig(json: unknown, name?: string): WanConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ValueError(`Wan config must be a JSON object, got ${JSON.stringify(json)}`);
  let o = json as Record<string, unknown>;
  if (typeof o.config === 'object' && o.config !== null) o = o.config as Record<string, unknown>;
  const nm = name ?? (typeof o.name === 'string' ? o.name : typeof o._name_or_path === 'string' ? o._name_or_path : 'custom');
  if (o.num_attention_heads !== undefined || o.in_channels !== undefined) return fromDiffusersJson(o, nm);
  return fromWanJson(o, nm);
}

/**
 * A preset name, a JSON file (`cfg.json`, or `file.json#entry` to pick one entry of a multi-config file such as
 * wan_fixtures.json), or an already parsed object / WanConfig.
 */
export function resolveWanConfig(spec: string | object): WanConfig {
  if (typeof spec !== 'string') return parseWanConfig(spec);
  if (isWanPresetName(spec)) return wanPreset(spec);
  const hash = spec.lastIndexOf('#');
  const path = hash > 0 ? spec.slice(0, hash) : spec;
  const entry = hash > 0 ? spec.slice(hash + 1) : null;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ValueError(`"${spec}" is neither a Wan preset (${WAN_PRESET_NAMES.join(', ')}) nor a readable JSON file: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ValueError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (entry !== null) {
    const o = json as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || !(entry in o))
      throw new ValueError(`${path}: no entry "${entry}" (has: ${Object.keys(o ?? {}).join(', ')})`);
    return parseWanConfig(o[entry], entry);
  }
  return parseWanConfig(json);
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
