/**
 * umT5 encoder configurations, in the official Wan vocabulary (`wan/modules/t5.py`: `T5Encoder(vocab, dim, dim_attn,
 * dim_ffn, num_heads, num_layers, num_buckets, shared_pos)` and `umt5_xxl`'s `vocab_size` / `encoder_layers`), plus
 * the HuggingFace T5Config vocabulary (`config.json` of a transformers `UMT5EncoderModel` / diffusers `text_encoder/`
 * folder: d_model, d_kv, d_ff, num_heads, num_layers, relative_attention_num_buckets, ...).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { MAX_ELEMENTS, fmtBytes } from '../../tensor/alloc.js';
import { ValueError, showValue } from '../../errors.js';

export interface Umt5Config {
  name: string;
  /** token embedding rows */
  vocab: number;
  /** model width (the output width: 4096 for umT5-XXL) */
  dim: number;
  /** width of q, k, v (num_heads * head_dim); equals dim in umT5-XXL */
  dim_attn: number;
  /** hidden width of the gated FFN */
  dim_ffn: number;
  num_heads: number;
  num_layers: number;
  /** relative position buckets (bidirectional: half for each direction) */
  num_buckets: number;
  /** distances >= max_dist share the last bucket of their direction */
  max_dist: number;
  /** one position-bias table for all layers (T5 / mT5) instead of one per layer (umT5) */
  shared_pos: boolean;
  /** T5 RMS norm epsilon */
  eps: number;
}

/**
 * Bounds checked before a model is built (a small config file could otherwise ask for petabytes). Generous: far above
 * umT5-XXL (in the comments).
 */
export const UMT5_LIMITS = {
  /** XXL: 256,384 */
  vocab: 4_000_000,
  /** XXL: 4096 */
  dim: 65536,
  dim_attn: 65536,
  /** XXL: 10240 */
  dim_ffn: 262144,
  /** XXL: 64 */
  num_heads: 1024,
  /** XXL: 24 */
  num_layers: 1000,
  /** XXL: 32 */
  num_buckets: 4096,
  /** XXL: 128 */
  max_dist: 1 << 20,
  /** parameters in all; XXL: 5.68e9 */
  params: 1e11,
};

const show = showValue;

function posInt(v: unknown, what: string, where: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max)
    throw new ValueError(`${where}: ${what} must be an integer in [1, ${max}], got ${show(v)}`);
  return v;
}

/** Checks types, bounds, the invariants the forward pass relies on and the parameter count; returns the config. */
export function validateUmt5Config(c: Umt5Config, source?: string): Umt5Config {
  if (typeof c !== 'object' || c === null) throw new ValueError(`umT5 config must be an object, got ${show(c)}`);
  if (typeof c.name !== 'string') throw new ValueError(`umT5 config: name must be a string, got ${show(c.name)}`);
  const w = source ? `umT5 config ${source}` : `umT5 config "${c.name}"`;
  for (const k of ['vocab', 'dim', 'dim_attn', 'dim_ffn', 'num_heads', 'num_layers', 'num_buckets', 'max_dist'] as const) posInt(c[k], k, w, UMT5_LIMITS[k]);
  if (c.dim_attn % c.num_heads !== 0) throw new ValueError(`${w}: dim_attn ${c.dim_attn} is not divisible by num_heads ${c.num_heads}`);
  // bidirectional buckets: half per direction, of which half exact; below 4 there is no logarithmic range at all
  if (c.num_buckets < 4) throw new ValueError(`${w}: num_buckets must be at least 4 (bidirectional buckets, half exact), got ${c.num_buckets}`);
  if (c.max_dist <= Math.floor(c.num_buckets / 4))
    throw new ValueError(`${w}: max_dist ${c.max_dist} must exceed the exact range ${Math.floor(c.num_buckets / 4)} (num_buckets / 4)`);
  if (typeof c.shared_pos !== 'boolean') throw new ValueError(`${w}: shared_pos must be true or false, got ${show(c.shared_pos)}`);
  if (typeof c.eps !== 'number' || !(c.eps > 0) || !(c.eps <= 1)) throw new ValueError(`${w}: eps must be a number in (0, 1], got ${show(c.eps)}`);
  umt5ParameterCount(c, w);
  return c;
}

/** The parameter count from the config alone (nothing built); throws when a tensor or the total is too large. */
export function umt5ParameterCount(c: Umt5Config, where = `umT5 config "${c.name}"`): number {
  const tensor = (n: number, what: string) => {
    if (n > MAX_ELEMENTS)
      throw new ValueError(`${where}: ${what} would have ${n.toLocaleString('en-US')} weights (${fmtBytes(2 * n)} as bf16), more than one tensor can hold (${MAX_ELEMENTS.toLocaleString('en-US')})`);
    return n;
  };
  const { dim, dim_attn: da, dim_ffn: df } = c;
  const pos = c.num_buckets * c.num_heads;
  const block = 2 * dim + 4 * tensor(dim * da, 'an attention projection') + 2 * tensor(dim * df, 'an FFN input projection') + df * dim + (c.shared_pos ? 0 : pos);
  const total = tensor(c.vocab * dim, 'the token embedding') + c.num_layers * block + dim + (c.shared_pos ? pos : 0);
  if (total > UMT5_LIMITS.params)
    throw new ValueError(`${where}: ${total.toLocaleString('en-US')} parameters is beyond the limit of ${UMT5_LIMITS.params.toLocaleString('en-US')} (umT5-XXL has 5.68e9)`);
  return total;
}

// ---------------------------------------------------------------------------------------------------------------
// presets: the reference's constructors (wan/modules/t5.py defines umt5_xxl only)

const PRESETS: Record<string, () => Umt5Config> = {
  'umt5-xxl': () =>
    validateUmt5Config({
      name: 'umt5-xxl',
      vocab: 256384,
      dim: 4096,
      dim_attn: 4096,
      dim_ffn: 10240,
      num_heads: 64,
      num_layers: 24,
      num_buckets: 32,
      max_dist: 128,
      shared_pos: false,
      eps: 1e-6,
    }),
};

export const UMT5_PRESET_NAMES = Object.keys(PRESETS);

/** `umt5-xxl`, `umt5_xxl`, `google/umt5-xxl` (case-insensitive) all name the one preset. */
function normalizePresetName(name: string): string {
  return name
    .trim()
    .replace(/^google\//i, '')
    .replace(/_/g, '-')
    .toLowerCase();
}

export function isUmt5PresetName(name: string): boolean {
  return UMT5_PRESET_NAMES.includes(normalizePresetName(name));
}

export function umt5Preset(name: string): Umt5Config {
  const n = normalizePresetName(name);
  if (!UMT5_PRESET_NAMES.includes(n)) throw new ValueError(`unknown umT5 preset "${name}" (known: ${UMT5_PRESET_NAMES.join(', ')})`);
  return PRESETS[n]!();
}

// ---------------------------------------------------------------------------------------------------------------
// parsing

/** Wan's vocabulary (umt5.json's `config`, T5Encoder / umt5_xxl arguments). */
function fromWanJson(o: Record<string, unknown>, name: string, source?: string): Umt5Config {
  const where = source ? `umT5 config ${source}` : `umT5 config "${name}"`;
  const vocab = o.vocab ?? o.vocab_size;
  const layers = o.num_layers ?? o.encoder_layers;
  const missing = [
    ['vocab (or vocab_size)', vocab],
    ['dim', o.dim],
    ['dim_ffn', o.dim_ffn],
    ['num_heads', o.num_heads],
    ['num_layers (or encoder_layers)', layers],
    ['num_buckets', o.num_buckets],
  ]
    .filter(([, v]) => v === undefined)
    .map(([k]) => k);
  if (missing.length) throw new ValueError(`${where}: missing ${missing.join(', ')}`);
  if (o.bidirectional !== undefined && o.bidirectional !== true)
    throw new ValueError(`${where}: the encoder's position buckets are bidirectional; bidirectional ${show(o.bidirectional)} is not supported`);
  return validateUmt5Config(
    {
      name,
      vocab: vocab as number,
      dim: o.dim as number,
      dim_attn: (o.dim_attn ?? o.dim) as number,
      dim_ffn: o.dim_ffn as number,
      num_heads: o.num_heads as number,
      num_layers: layers as number,
      num_buckets: o.num_buckets as number,
      max_dist: (o.max_dist ?? 128) as number,
      // T5Encoder's own default is True, but umt5_xxl (the only umT5 constructor) passes False: umT5 has one table per layer
      shared_pos: (o.shared_pos ?? false) as boolean,
      eps: (o.eps ?? 1e-6) as number,
    },
    source,
  );
}

/**
 * HuggingFace T5Config (`model_type` umt5, t5 or mt5). umT5 has a position-bias table in every layer; T5 / mT5 only in
 * the first, shared by all (Wan's shared_pos). Only the gated tanh-GELU FFN (`gated-gelu`, T5 v1.1 / mT5 / umT5).
 */
function fromHfJson(o: Record<string, unknown>, name: string, source?: string): Umt5Config {
  const where = source ? `umT5 config ${source}` : `umT5 config "${name}"`;
  const mt = o.model_type ?? 'umt5';
  if (mt !== 'umt5' && mt !== 't5' && mt !== 'mt5') throw new ValueError(`${where}: model_type ${show(mt)} is not a T5 encoder (umt5, t5 or mt5)`);
  const ff = o.feed_forward_proj ?? 'gated-gelu';
  if (ff !== 'gated-gelu') throw new ValueError(`${where}: feed_forward_proj ${show(ff)} is not supported (umT5 uses "gated-gelu": tanh-GELU gate)`);
  const act = o.dense_act_fn;
  if (act !== undefined && act !== 'gelu_new' && act !== 'gelu_pytorch_tanh')
    throw new ValueError(`${where}: dense_act_fn ${show(act)} is not supported (umT5 uses the tanh GELU, "gelu_new")`);
  const heads = posInt(o.num_heads, 'num_heads', where, UMT5_LIMITS.num_heads);
  const dkv = posInt(o.d_kv, 'd_kv', where, UMT5_LIMITS.dim_attn);
  return validateUmt5Config(
    {
      name,
      vocab: o.vocab_size as number,
      dim: o.d_model as number,
      dim_attn: heads * dkv,
      dim_ffn: o.d_ff as number,
      num_heads: heads,
      num_layers: o.num_layers as number,
      num_buckets: (o.relative_attention_num_buckets ?? 32) as number,
      max_dist: (o.relative_attention_max_distance ?? 128) as number,
      shared_pos: mt !== 'umt5',
      eps: (o.layer_norm_epsilon ?? 1e-6) as number,
    },
    source,
  );
}

/** A config from JSON: `{"config": {...}}` (umt5.json entries) or a bare object, in Wan's or HuggingFace's vocabulary. */
export function parseUmt5Config(json: unknown, name?: string, source?: string): Umt5Config {
  const at = source ? `umT5 config ${source}` : 'umT5 config';
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ValueError(`${at} must be a JSON object (vocab, dim, num_heads, ... or HuggingFace's d_model, d_kv, ...), got ${show(json)}`);
  let o = json as Record<string, unknown>;
  if (o.config !== undefined) {
    if (typeof o.config !== 'object' || o.config === null || Array.isArray(o.config)) throw new ValueError(`${at}: "config" must be an object, got ${show(o.config)}`);
    o = o.config as Record<string, unknown>;
  }
  const nm = name ?? (typeof o.name === 'string' ? o.name : typeof o._name_or_path === 'string' && o._name_or_path ? o._name_or_path : 'custom');
  if (o.d_model !== undefined) return fromHfJson(o, nm, source);
  return fromWanJson(o, nm, source);
}

const CONFIG_MAX_BYTES = 16 * 1024 * 1024;

export function readUmt5ConfigJson(path: string): unknown {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ValueError(`umT5 config ${path} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof ValueError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new ValueError(code === 'ENOENT' ? `umT5 config file not found: ${path}` : `cannot read umT5 config ${path}: ${(e as Error).message}`);
  }
  if (size > CONFIG_MAX_BYTES) throw new ValueError(`umT5 config ${path} is ${size} bytes, too large for a config file (at most ${CONFIG_MAX_BYTES})`);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ValueError(`umT5 config ${path}: not valid JSON (${(e as Error).message})`);
  }
}

/**
 * A preset name (`umt5-xxl`), a JSON file (`cfg.json`, `file.json#entry` for one entry of umt5.json, or a
 * transformers `config.json`), or a parsed object / Umt5Config.
 */
export function resolveUmt5Config(spec: string | object): Umt5Config {
  if (typeof spec !== 'string') return parseUmt5Config(spec);
  if (isUmt5PresetName(spec)) return umt5Preset(spec);
  const hash = spec.lastIndexOf('#');
  const path = hash > 0 ? spec.slice(0, hash) : spec;
  const entry = hash > 0 ? spec.slice(hash + 1) : null;
  if (!/[\\/#]/.test(spec) && !/\.json$/i.test(spec) && !existsSync(path)) return umt5Preset(spec); // "unknown preset", listing them
  const json = readUmt5ConfigJson(path);
  if (entry !== null) {
    if (typeof json !== 'object' || json === null || Array.isArray(json) || !Object.hasOwn(json, entry))
      throw new ValueError(`umT5 config ${path}: no entry "${entry}" (has: ${typeof json === 'object' && json !== null ? Object.keys(json).join(', ') || 'nothing' : show(json)})`);
    return parseUmt5Config((json as Record<string, unknown>)[entry], entry, spec);
  }
  const entries = typeof json === 'object' && json !== null && !Array.isArray(json) ? Object.entries(json) : [];
  if (entries.length > 0 && entries.every(([, v]) => typeof v === 'object' && v !== null && 'config' in v))
    throw new ValueError(`umT5 config ${path} holds several configs: pick one with ${path}#<entry> (entries: ${entries.map(([k]) => k).join(', ')})`);
  return parseUmt5Config(json, undefined, path);
}

/** The config in Wan's constructor vocabulary (umt5.json style). */
export function umt5ConfigToJson(c: Umt5Config): Record<string, unknown> {
  const { name: _n, ...rest } = c;
  return { ...rest, bidirectional: true };
}

/** The config in HuggingFace's T5Config vocabulary (a transformers / diffusers `config.json`). */
export function umt5ConfigToHf(c: Umt5Config): Record<string, unknown> {
  return {
    architectures: ['UMT5EncoderModel'],
    model_type: c.shared_pos ? 't5' : 'umt5',
    vocab_size: c.vocab,
    d_model: c.dim,
    d_kv: c.dim_attn / c.num_heads,
    d_ff: c.dim_ffn,
    num_heads: c.num_heads,
    num_layers: c.num_layers,
    relative_attention_num_buckets: c.num_buckets,
    relative_attention_max_distance: c.max_dist,
    layer_norm_epsilon: c.eps,
    feed_forward_proj: 'gated-gelu',
    dense_act_fn: 'gelu_new',
    is_gated_act: true,
  };
}
