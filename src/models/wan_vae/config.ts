/**
 * Wan-2.1 VAE configurations in the reference's constructor vocabulary (`WanVAE_(dim, z_dim, dim_mult, num_res_blocks,
 * attn_scales, temperal_downsample, dropout)` of `wan/modules/vae.py`), or diffusers' `AutoencoderKLWan` config.json
 * (`base_dim` for `dim`, plus `latents_mean` / `latents_std`). Every field is checked against WAN_VAE_LIMITS and the
 * structural rules the reference relies on, and the parameter count is computed from the layer plan (plan.ts) before
 * anything is built.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { MAX_ELEMENTS, fmtBytes } from '../../tensor/alloc.js';
import { ValueError, showValue } from '../../errors.js';

export interface WanVaeConfig {
  name: string;
  /** base width (released: 96) */
  dim: number;
  /** latent channels (released: 16) */
  z_dim: number;
  /** width multiplier per stage (released: [1, 2, 4, 4]) */
  dim_mult: number[];
  /** residual blocks per encoder stage; the decoder has one more (released: 2) */
  num_res_blocks: number;
  /** resolutions (1 = full, 1/2, ...) that get an attention block after each residual block (released: none) */
  attn_scales: number[];
  /** per encoder stage but the last, whether its downsample also halves time (released: [false, true, true]); the
   * decoder reads the list reversed, as the reference does */
  temperal_downsample: boolean[];
  /** training only; inference ignores it (released: 0) */
  dropout: number;
  /** per-channel latent normalisation: latent = (mu - mean) / std (z_dim values each) */
  latents_mean: number[];
  latents_std: number[];
}

/**
 * The official per-channel latent statistics of Wan-2.1 (spec §1.8, `WanVAE.__init__` of wan/modules/vae.py and
 * diffusers' `latents_mean` / `latents_std`), used as float32 as the reference does.
 */
export const WAN21_LATENTS_MEAN: readonly number[] = Object.freeze([
  -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
]);
export const WAN21_LATENTS_STD: readonly number[] = Object.freeze([
  2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916,
]);

/**
 * Bounds checked before a model is built: far above the released model (in the comments) so research variants load,
 * low enough that a small config file cannot ask for billions of modules or petabytes of weights.
 */
export const WAN_VAE_LIMITS = {
  /** released: 96 */
  dim: 16384,
  /** released: 16 */
  z_dim: 4096,
  /** each entry of dim_mult; released: 1 to 4 */
  mult: 256,
  /** entries of dim_mult: the reference decoder halves the input width of stages 1, 2 and 3 only, so a fifth stage
   * would not run there */
  stages: 4,
  /** released: 2 */
  num_res_blocks: 64,
  /** entries of attn_scales / temperal_downsample */
  list: 16,
  /** parameters in all (1e10, 40 GB as float32); released: 126,892,531 */
  params: 1e10,
};

const show = showValue;

export const WAN_VAE_PRESET_NAMES = ['wan2.1-vae', 'wan-vae-shapes'];

/** The released Wan2.1_VAE.pth: `_video_vae(z_dim=16)` as `WanVAE` builds it. */
export function wan21VaeConfig(): WanVaeConfig {
  return validateWanVaeConfig({
    name: 'wan2.1-vae',
    dim: 96,
    z_dim: 16,
    dim_mult: [1, 2, 4, 4],
    num_res_blocks: 2,
    attn_scales: [],
    temperal_downsample: [false, true, true],
    dropout: 0,
    latents_mean: [...WAN21_LATENTS_MEAN],
    latents_std: [...WAN21_LATENTS_STD],
  });
}

/**
 * The small-scale study's base autoencoder (issue #21, the shapes world): the released topology (4 stages, spatial
 * x8, temporal x4 at the 2nd and 3rd downsamples, 16 latent channels, causal: 1 + 4k frames -> 1 + k latents) at
 * width 8 with one residual block per encoder stage (two per decoder stage), no latent normalisation (mean 0, std 1:
 * a trained run measures its own). Sized for training steps of seconds on 2 CPU cores (docs/train-ae-shapes.md).
 */
export function wanVaeShapesConfig(): WanVaeConfig {
  return validateWanVaeConfig({
    name: 'wan-vae-shapes',
    dim: 8,
    z_dim: 16,
    dim_mult: [1, 2, 4, 4],
    num_res_blocks: 1,
    attn_scales: [],
    temperal_downsample: [false, true, true],
    dropout: 0,
    latents_mean: new Array<number>(16).fill(0),
    latents_std: new Array<number>(16).fill(1),
  });
}

function normalizeName(s: string): string {
  return s
    .trim()
    .toLowerCase()
    .replace(/^(wan-ai|wan-video)\//, '')
    .replace(/[_ ]/g, '-')
    .replace(/\.pth$/, '');
}

export function isWanVaePresetName(s: string): boolean {
  const n = normalizeName(s);
  return n === 'wan2.1-vae' || n === 'wan-2.1-vae' || n === 'wan21-vae' || n === 'wan-vae-shapes';
}

/** A preset by any accepted spelling (isWanVaePresetName). */
function wanVaePreset(s: string): WanVaeConfig {
  return normalizeName(s) === 'wan-vae-shapes' ? wanVaeShapesConfig() : wan21VaeConfig();
}

function posInt(v: unknown, what: string, where: string, max: number, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new ValueError(`${where}: ${what} must be an integer in [${min}, ${max}], got ${show(v)}`);
  return v;
}

function list(v: unknown, what: string, where: string): unknown[] {
  if (!Array.isArray(v)) throw new ValueError(`${where}: ${what} must be a list, got ${show(v)}`);
  if (v.length > WAN_VAE_LIMITS.list) throw new ValueError(`${where}: ${what} has ${v.length} entries, at most ${WAN_VAE_LIMITS.list}`);
  return v;
}

/** Encoder and decoder stage widths, as the reference computes them. */
export function stageDims(c: Pick<WanVaeConfig, 'dim' | 'dim_mult'>): { enc: number[]; dec: number[] } {
  return { enc: [1, ...c.dim_mult].map((u) => c.dim * u), dec: [c.dim_mult[c.dim_mult.length - 1]!, ...[...c.dim_mult].reverse()].map((u) => c.dim * u) };
}

/** The decoder's temporal flags: the encoder's list reversed, read at stages 0 .. len(dim_mult)-2 (as the reference). */
export function temperalUpsample(c: Pick<WanVaeConfig, 'temperal_downsample'>): boolean[] {
  return [...c.temperal_downsample].reverse();
}

/** Spatial and temporal compression of the encoder, and the decoder's temporal expansion. */
export function wanVaeFactors(c: WanVaeConfig): { spatial: number; temporal: number; decoderTemporal: number } {
  const n = c.dim_mult.length - 1;
  const up = temperalUpsample(c);
  let t = 1;
  let td = 1;
  for (let i = 0; i < n; i++) {
    if (c.temperal_downsample[i]) t *= 2;
    if (up[i]) td *= 2;
  }
  return { spatial: 2 ** n, temporal: t, decoderTemporal: td };
}

/** Checks types, bounds (WAN_VAE_LIMITS), the structural rules and the parameter count; returns the config. */
export function validateWanVaeConfig(c: WanVaeConfig, source?: string): WanVaeConfig {
  if (typeof c !== 'object' || c === null) throw new ValueError(`Wan VAE config must be an object, got ${show(c)}`);
  if (typeof c.name !== 'string') throw new ValueError(`Wan VAE config: name must be a string, got ${show(c.name)}`);
  const w = source ? `Wan VAE config ${source}` : `Wan VAE config "${c.name}"`;
  const L = WAN_VAE_LIMITS;
  posInt(c.dim, 'dim', w, L.dim);
  posInt(c.z_dim, 'z_dim', w, L.z_dim);
  posInt(c.num_res_blocks, 'num_res_blocks', w, L.num_res_blocks);
  const dm = list(c.dim_mult, 'dim_mult', w);
  if (dm.length < 1 || dm.length > L.stages)
    throw new ValueError(`${w}: dim_mult must have 1 to ${L.stages} entries (the reference decoder supports at most ${L.stages} stages), got ${dm.length}`);
  dm.forEach((u, i) => posInt(u, `dim_mult[${i}]`, w, L.mult));
  const td = list(c.temperal_downsample, 'temperal_downsample', w);
  td.forEach((b, i) => {
    if (typeof b !== 'boolean') throw new ValueError(`${w}: temperal_downsample[${i}] must be true or false, got ${show(b)}`);
  });
  if (td.length < dm.length - 1)
    throw new ValueError(`${w}: temperal_downsample needs one flag per downsample (${dm.length - 1} for ${dm.length} stages), got ${td.length}`);
  list(c.attn_scales, 'attn_scales', w).forEach((s, i) => {
    if (typeof s !== 'number' || !Number.isFinite(s) || !(s > 0)) throw new ValueError(`${w}: attn_scales[${i}] must be a positive number, got ${show(s)}`);
  });
  if (typeof c.dropout !== 'number' || !(c.dropout >= 0 && c.dropout < 1)) throw new ValueError(`${w}: dropout must be a number in [0, 1), got ${show(c.dropout)}`);
  for (const k of ['latents_mean', 'latents_std'] as const) {
    const v = c[k];
    if (!Array.isArray(v) || v.length !== c.z_dim || v.length > L.z_dim) throw new ValueError(`${w}: ${k} must list ${c.z_dim} numbers (one per latent channel), got ${show(v)}`);
    v.forEach((x, i) => {
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new ValueError(`${w}: ${k}[${i}] must be a finite number, got ${show(x)}`);
      if (k === 'latents_std' && !(x > 0)) throw new ValueError(`${w}: latents_std[${i}] must be positive, got ${show(x)}`);
    });
  }
  // The upsample convs halve the width: every stage but the last must end with an even width.
  const { dec } = stageDims(c);
  for (let i = 0; i < c.dim_mult.length - 1; i++)
    if (dec[i + 1]! % 2) throw new ValueError(`${w}: decoder stage ${i} ends with ${dec[i + 1]} channels, which its upsample cannot halve (dim * dim_mult must be even)`);
  wanVaeParameterCounts(c, w);
  return c;
}

// ---------------------------------------------------------------------------------------------------------------
// the layer plan, shared by the parameter count and the model

export type PlanBlock =
  | { kind: 'res'; cin: number; cout: number }
  | { kind: 'attn'; c: number }
  | { kind: 'resample'; c: number; mode: 'downsample2d' | 'downsample3d' | 'upsample2d' | 'upsample3d' };

/** One entry of encoder.downsamples / decoder.upsamples, with the stage it belongs to and its index there. */
export interface PlanEntry {
  block: PlanBlock;
  stage: number;
  /** index of a residual block within its stage (diffusers' resnets.N), -1 for others */
  resIndex: number;
}

/** The encoder's `downsamples` list, exactly as the reference constructor appends it. */
export function encoderPlan(c: WanVaeConfig): PlanEntry[] {
  const dims = stageDims(c).enc;
  const out: PlanEntry[] = [];
  let scale = 1.0;
  for (let i = 0; i < c.dim_mult.length; i++) {
    let cin = dims[i]!;
    const cout = dims[i + 1]!;
    for (let r = 0; r < c.num_res_blocks; r++) {
      out.push({ block: { kind: 'res', cin, cout }, stage: i, resIndex: r });
      if (c.attn_scales.includes(scale)) out.push({ block: { kind: 'attn', c: cout }, stage: i, resIndex: -1 });
      cin = cout;
    }
    if (i !== c.dim_mult.length - 1) {
      out.push({ block: { kind: 'resample', c: cout, mode: c.temperal_downsample[i] ? 'downsample3d' : 'downsample2d' }, stage: i, resIndex: -1 });
      scale /= 2;
    }
  }
  return out;
}

/** The decoder's `upsamples` list, exactly as the reference constructor appends it. */
export function decoderPlan(c: WanVaeConfig): PlanEntry[] {
  const dims = stageDims(c).dec;
  const up = temperalUpsample(c);
  const out: PlanEntry[] = [];
  let scale = 1.0 / 2 ** (c.dim_mult.length - 2);
  for (let i = 0; i < c.dim_mult.length; i++) {
    let cin = i >= 1 && i <= 3 ? Math.floor(dims[i]! / 2) : dims[i]!;
    const cout = dims[i + 1]!;
    for (let r = 0; r < c.num_res_blocks + 1; r++) {
      out.push({ block: { kind: 'res', cin, cout }, stage: i, resIndex: r });
      if (c.attn_scales.includes(scale)) out.push({ block: { kind: 'attn', c: cout }, stage: i, resIndex: -1 });
      cin = cout;
    }
    if (i !== c.dim_mult.length - 1) {
      out.push({ block: { kind: 'resample', c: cout, mode: up[i] ? 'upsample3d' : 'upsample2d' }, stage: i, resIndex: -1 });
      scale *= 2;
    }
  }
  return out;
}

export interface WanVaeParameterCounts {
  encoder: number;
  decoder: number;
  conv1: number;
  conv2: number;
  total: number;
}

/**
 * Parameter counts from the plan alone (the shapes model.ts registers; nothing built). Throws a ValueError when one
 * tensor would exceed what a typed array holds, or the total exceeds WAN_VAE_LIMITS.params.
 */
export function wanVaeParameterCounts(c: WanVaeConfig, where = `Wan VAE config "${c.name}"`): WanVaeParameterCounts {
  const tensor = (n: number, what: string) => {
    if (n > MAX_ELEMENTS)
      throw new ValueError(`${where}: ${what} would have ${n.toLocaleString('en-US')} weights (${fmtBytes(4 * n)}), more than one tensor can hold (${MAX_ELEMENTS.toLocaleString('en-US')})`);
    return n;
  };
  const conv = (cin: number, cout: number, k: number, what: string) => tensor(cout * cin * k, `${what} weight`) + cout;
  const res = (cin: number, cout: number) => cin + conv(cin, cout, 27, 'residual conv') + cout + conv(cout, cout, 27, 'residual conv') + (cin !== cout ? conv(cin, cout, 1, 'shortcut') : 0);
  const attn = (ch: number) => ch + conv(ch, 3 * ch, 1, 'to_qkv') + conv(ch, ch, 1, 'proj');
  const block = (b: PlanBlock): number => {
    if (b.kind === 'res') return res(b.cin, b.cout);
    if (b.kind === 'attn') return attn(b.c);
    switch (b.mode) {
      case 'downsample2d':
        return conv(b.c, b.c, 9, 'resample');
      case 'downsample3d':
        return conv(b.c, b.c, 9, 'resample') + conv(b.c, b.c, 3, 'time_conv');
      case 'upsample2d':
        return conv(b.c, b.c / 2, 9, 'resample');
      case 'upsample3d':
        return conv(b.c, b.c / 2, 9, 'resample') + conv(b.c, 2 * b.c, 3, 'time_conv');
    }
  };
  const { enc, dec } = stageDims(c);
  const eTop = enc[enc.length - 1]!;
  const dTop = dec[0]!;
  const dOut = dec[dec.length - 1]!;
  const z2 = 2 * c.z_dim;
  const middle = (ch: number) => 2 * res(ch, ch) + attn(ch);
  const encoder = conv(3, enc[0]!, 27, 'encoder.conv1') + encoderPlan(c).reduce((s, e) => s + block(e.block), 0) + middle(eTop) + eTop + conv(eTop, z2, 27, 'encoder head');
  const decoder = conv(c.z_dim, dTop, 27, 'decoder.conv1') + middle(dTop) + decoderPlan(c).reduce((s, e) => s + block(e.block), 0) + dOut + conv(dOut, 3, 27, 'decoder head');
  const conv1 = conv(z2, z2, 1, 'conv1');
  const conv2 = conv(c.z_dim, c.z_dim, 1, 'conv2');
  const total = encoder + decoder + conv1 + conv2;
  if (total > WAN_VAE_LIMITS.params)
    throw new ValueError(
      `${where}: ${total.toLocaleString('en-US')} parameters (${fmtBytes(4 * total)} as float32) is beyond the limit of ${WAN_VAE_LIMITS.params.toLocaleString('en-US')} (the released VAE has 126,892,531)`,
    );
  return { encoder, decoder, conv1, conv2, total };
}

// ---------------------------------------------------------------------------------------------------------------
// parsing

/**
 * A config from JSON: a bare object or `{"config": {...}}` (wan_vae.json entries, whose `mean` / `std` beside the
 * config are the normalisation), in the reference's vocabulary (dim, z_dim, ...) or diffusers' (base_dim, z_dim,
 * latents_mean, latents_std, ...). Omitted fields take the reference constructor's defaults as `_video_vae` sets
 * them for the released model; latents_mean / latents_std default to the official values when z_dim is 16 and to
 * no normalisation (0 / 1) otherwise.
 */
export function parseWanVaeConfig(json: unknown, name?: string, source?: string): WanVaeConfig {
  const at = source ? `Wan VAE config ${source}` : 'Wan VAE config';
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ValueError(`${at} must be a JSON object (dim, z_dim, dim_mult, ...), got ${show(json)}`);
  const outer = json as Record<string, unknown>;
  let o = outer;
  if (outer.config !== undefined) {
    if (typeof outer.config !== 'object' || outer.config === null || Array.isArray(outer.config)) throw new ValueError(`${at}: "config" must be an object, got ${show(outer.config)}`);
    o = outer.config as Record<string, unknown>;
  }
  const nm = name ?? (typeof o.name === 'string' ? o.name : typeof o._name_or_path === 'string' ? o._name_or_path : 'custom');
  const diffusers = o.base_dim !== undefined || o._class_name !== undefined;
  if (diffusers) {
    if (o._class_name !== undefined && o._class_name !== 'AutoencoderKLWan') throw new ValueError(`${at}: _class_name ${show(o._class_name)} is not AutoencoderKLWan`);
    if (o.is_residual === true) throw new ValueError(`${at}: is_residual true is the Wan-2.2 VAE, not supported (Wan-2.1 only)`);
    for (const k of ['in_channels', 'out_channels'] as const)
      if (o[k] !== undefined && o[k] !== 3) throw new ValueError(`${at}: ${k} ${show(o[k])} is not supported (the Wan-2.1 VAE has 3)`);
    if (o.patch_size !== undefined && o.patch_size !== null && o.patch_size !== 1) throw new ValueError(`${at}: patch_size ${show(o.patch_size)} is not supported (Wan-2.1 has none)`);
  }
  const z = o.z_dim ?? 16;
  const stat = (keys: string[], dflt: (z: number) => number[]): number[] => {
    for (const k of keys) {
      const v = o[k] ?? outer[k];
      if (v !== undefined && v !== null) return v as number[];
    }
    return dflt(typeof z === 'number' && Number.isInteger(z) && z > 0 && z <= WAN_VAE_LIMITS.z_dim ? z : 0);
  };
  const c: WanVaeConfig = {
    name: nm,
    dim: (diffusers ? (o.base_dim ?? 96) : o.dim) as number,
    z_dim: z as number,
    dim_mult: (o.dim_mult ?? [1, 2, 4, 4]) as number[],
    num_res_blocks: (o.num_res_blocks ?? 2) as number,
    attn_scales: (o.attn_scales ?? []) as number[],
    temperal_downsample: (o.temperal_downsample ?? [false, true, true]) as boolean[],
    dropout: (o.dropout ?? 0) as number,
    latents_mean: stat(['latents_mean', 'mean'], (n) => (n === 16 ? [...WAN21_LATENTS_MEAN] : new Array<number>(n).fill(0))),
    latents_std: stat(['latents_std', 'std'], (n) => (n === 16 ? [...WAN21_LATENTS_STD] : new Array<number>(n).fill(1))),
  };
  if (c.dim === undefined) throw new ValueError(`${at}: missing dim (the base width; the released VAE has 96)`);
  return validateWanVaeConfig(c, source);
}

const CONFIG_MAX_BYTES = 16 * 1024 * 1024;

function readConfigJson(path: string): unknown {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ValueError(`Wan VAE config ${path} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof ValueError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new ValueError(code === 'ENOENT' ? `Wan VAE config file not found: ${path}` : `cannot read Wan VAE config ${path}: ${(e as Error).message}`);
  }
  if (size > CONFIG_MAX_BYTES) throw new ValueError(`Wan VAE config ${path} is ${size} bytes, too large for a config file (at most ${CONFIG_MAX_BYTES})`);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ValueError(`Wan VAE config ${path}: not valid JSON (${(e as Error).message})`);
  }
}

/**
 * A preset name (`wan2.1-vae`), a JSON file (`cfg.json`, or `file.json#entry` to pick one entry of a multi-config
 * file such as wan_vae.json), or an already parsed object.
 */
export function resolveWanVaeConfig(spec: string | object): WanVaeConfig {
  if (typeof spec !== 'string') return parseWanVaeConfig(spec);
  if (isWanVaePresetName(spec)) return wanVaePreset(spec);
  const hash = spec.lastIndexOf('#');
  const path = hash > 0 ? spec.slice(0, hash) : spec;
  const entry = hash > 0 ? spec.slice(hash + 1) : null;
  const looksLikePath = /[\\/#]/.test(spec) || /\.json$/i.test(spec) || spec.startsWith('.');
  if (!looksLikePath && !existsSync(path)) throw new ValueError(`unknown Wan VAE model "${spec}" (known: ${WAN_VAE_PRESET_NAMES.join(', ')}, or a config .json)`);
  const json = readConfigJson(path);
  if (entry !== null) {
    if (typeof json !== 'object' || json === null || Array.isArray(json) || !Object.hasOwn(json, entry))
      throw new ValueError(`Wan VAE config ${path}: no entry "${entry}" (has: ${typeof json === 'object' && json !== null ? Object.keys(json).join(', ') || 'nothing' : show(json)})`);
    return parseWanVaeConfig((json as Record<string, unknown>)[entry], entry, spec);
  }
  const entries = typeof json === 'object' && json !== null && !Array.isArray(json) ? Object.entries(json) : [];
  if (entries.length > 0 && entries.every(([, v]) => typeof v === 'object' && v !== null && 'config' in v))
    throw new ValueError(`Wan VAE config ${path} holds several configs: pick one with ${path}#<entry> (entries: ${entries.map(([k]) => k).join(', ')})`);
  return parseWanVaeConfig(json, undefined, path);
}

/** Whether parsed JSON reads as a Wan VAE config (diffusers' class name, or z_dim with dim_mult / base_dim), bare or under "config". */
export function isWanVaeConfigJson(j: unknown): boolean {
  if (typeof j !== 'object' || j === null) return false;
  const o = j as Record<string, unknown>;
  const c = (typeof o.config === 'object' && o.config !== null ? o.config : o) as Record<string, unknown>;
  return c._class_name === 'AutoencoderKLWan' || ('z_dim' in c && ('dim_mult' in c || 'base_dim' in c));
}

/** The config in the reference's constructor vocabulary, plus the normalisation (for writing beside weights). */
export function wanVaeConfigToJson(c: WanVaeConfig): Record<string, unknown> {
  const { name: _n, ...rest } = c;
  return { ...rest, dim_mult: [...c.dim_mult], attn_scales: [...c.attn_scales], temperal_downsample: [...c.temperal_downsample] };
}
