/**
 * DC-AE-V configurations: the five released presets, and configs in the reference's own vocabulary
 * (width_list, depth_list, `ChunkCausalResBlock3d@3@3@40`-style block strings), as in the fixtures'
 * `config_overrides`.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { MAX_ELEMENTS, fmtBytes } from '../../tensor/alloc.js';
import { ValueError, showValue } from '../../errors.js';

/** How a conv treats time: chunk-causal (the released design), causal (left padding only) or non-causal. */
export type TemporalMode = 'chunk_causal' | 'causal' | 'non_causal';

export interface ConvSpec {
  mode: TemporalMode;
  /** spatial kernel size (kh = kw) */
  ks: number;
  /** temporal kernel size */
  kt: number;
  /** chunk length in frames at this layer's rate (chunk-causal only) */
  chunk: number | null;
}

export interface ResampleSpec extends ConvSpec {
  /** spatial factor */
  sf: number;
  /** temporal factor */
  tf: number;
}

export interface EncoderConfig {
  widthList: number[];
  depthList: number[];
  blockType: ConvSpec[];
  downsampleBlockType: ResampleSpec[];
  projectIn: ResampleSpec;
  projectOut: ConvSpec;
}

export interface DecoderConfig {
  widthList: number[];
  depthList: number[];
  blockType: ConvSpec[];
  upsampleBlockType: ResampleSpec[];
  projectIn: ConvSpec;
  projectOut: ResampleSpec;
}

export interface DCAEVConfig {
  name: string;
  inChannels: number;
  latentChannels: number;
  /** latent * scalingFactor is what the DiT sees (no shift); null when unknown */
  scalingFactor: number | null;
  encoder: EncoderConfig;
  decoder: DecoderConfig;
}

// ---------------------------------------------------------------------------------------------------------------
// bounds

/**
 * Sane bounds for every config field, checked before anything is built (a config is a small file that could
 * otherwise ask for millions of modules or petabytes of weights). Each is generous, far above the released
 * presets (given in the comments), so any plausible research variant still loads.
 */
export const DCAEV_LIMITS = {
  /** stages per encoder / decoder; released: 7 (f32) and 8 (f64) */
  stages: 16,
  /** blocks per stage; released: at most 10 */
  depth: 256,
  /** channels per stage; released: at most 1024 */
  width: 16384,
  /** pixel channels; released: 3 (RGB) */
  inChannels: 64,
  /** latent channels; released: 32 to 256 */
  latentChannels: 4096,
  /** spatial and temporal kernel sizes; released: 3 */
  kernel: 15,
  /** spatial / temporal factor of one resampling layer; released: 2 and 4 */
  factor: 16,
  /** chunk length in frames (at a layer's own rate); released: 40 (10 at the latent rate) */
  chunk: 4096,
  /** parameters in all (2^34, 64 GiB as float32); released: 2.1e9 to 2.7e9 */
  params: 2 ** 34,
};

const show = showValue;

function intIn(v: unknown, lo: number, hi: number, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi)
    throw new ValueError(`${where} must be an integer in [${lo}, ${hi}], got ${show(v)}`);
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// block strings

const BLOCK_RE = /^(ChunkCausal|Causal|)(ResBlock3d|ConvLayer3d|ConvPixelUnshuffle|ConvPixelShuffle)((?:@\d+)*)$/;

/** Checks the numbers of a block spec against DCAEV_LIMITS (kernels odd: the convs pad symmetrically). */
function checkSpec(spec: ConvSpec | ResampleSpec, where: string): void {
  const L = DCAEV_LIMITS;
  if (!isObject(spec)) throw new ValueError(`${where} must be a block spec, got ${show(spec)}`);
  if ('sf' in spec) {
    intIn(spec.sf, 1, L.factor, `${where}: spatial factor`);
    intIn(spec.tf, 1, L.factor, `${where}: temporal factor`);
  }
  intIn(spec.ks, 1, L.kernel, `${where}: spatial kernel size`);
  intIn(spec.kt, 1, L.kernel, `${where}: temporal kernel size`);
  if (spec.ks % 2 === 0 || spec.kt % 2 === 0) throw new ValueError(`${where}: kernel sizes must be odd, got ks ${spec.ks}, kt ${spec.kt}`);
  if (spec.mode === 'chunk_causal') intIn(spec.chunk, 1, L.chunk, `${where}: chunk length`);
  else if (spec.chunk !== null) throw new ValueError(`${where}: only chunk-causal layers have a chunk length`);
}

/** Parses e.g. `ChunkCausalResBlock3d@3@3@40` or `CausalConvPixelUnshuffle@2@1@3@3`; `where` names the field. */
export function parseBlockType(s: unknown, where = 'block type'): { kind: string; spec: ConvSpec | ResampleSpec } {
  if (typeof s !== 'string') throw new ValueError(`${where} must be a block type string such as "ChunkCausalResBlock3d@3@3@40", got ${show(s)}`);
  const m = BLOCK_RE.exec(s);
  if (!m)
    throw new ValueError(`${where}: unknown DC-AE-V block type ${show(s)} (expected [ChunkCausal|Causal]ResBlock3d|ConvLayer3d|ConvPixelUnshuffle|ConvPixelShuffle followed by @-fields)`);
  const mode: TemporalMode = m[1] === 'ChunkCausal' ? 'chunk_causal' : m[1] === 'Causal' ? 'causal' : 'non_causal';
  const kind = m[2]!;
  const nums = m[3]!.split('@').filter(Boolean).map(Number);
  const resample = kind === 'ConvPixelUnshuffle' || kind === 'ConvPixelShuffle';
  const want = (resample ? 4 : 2) + (mode === 'chunk_causal' ? 1 : 0);
  if (nums.length !== want)
    throw new ValueError(`${where}: block type "${s}" needs ${want} @-fields (${resample ? 'sf@tf@' : ''}ks@kt${mode === 'chunk_causal' ? '@chunk' : ''}), got ${nums.length}`);
  let i = 0;
  const sf = resample ? nums[i++]! : 1;
  const tf = resample ? nums[i++]! : 1;
  const ks = nums[i++]!;
  const kt = nums[i++]!;
  const chunk = mode === 'chunk_causal' ? nums[i++]! : null;
  const spec: ConvSpec = { mode, ks, kt, chunk };
  const full = resample ? { ...spec, sf, tf } : spec;
  checkSpec(full, `${where} ${show(s)}`);
  return { kind, spec: full };
}

export function formatBlockType(kind: string, spec: ConvSpec | ResampleSpec): string {
  const prefix = spec.mode === 'chunk_causal' ? 'ChunkCausal' : spec.mode === 'causal' ? 'Causal' : '';
  const r = 'sf' in spec ? `@${spec.sf}@${spec.tf}` : '';
  return `${prefix}${kind}${r}@${spec.ks}@${spec.kt}${spec.chunk !== null ? `@${spec.chunk}` : ''}`;
}

function expectKind(s: unknown, kinds: string[], where: string): ConvSpec | ResampleSpec {
  const { kind, spec } = parseBlockType(s, where);
  if (!kinds.includes(kind)) throw new ValueError(`${where}: expected a ${kinds.join(' or ')} block, got ${show(s)}`);
  return spec;
}

// ---------------------------------------------------------------------------------------------------------------
// reference vocabulary

/** The reference's config keys (as in the fixtures' config_overrides). */
export interface ReferenceConfigJson {
  latent_channels: number;
  in_channels?: number;
  scaling_factor?: number;
  use_feature_cache?: boolean;
  encoder: {
    width_list: number[];
    depth_list: number[];
    block_type: string | string[];
    downsample_block_type: string | string[];
    project_in_block_type: string;
    project_out_block_type: string;
  };
  decoder: {
    width_list: number[];
    depth_list: number[];
    block_type: string | string[];
    upsample_block_type: string | string[];
    project_in_block_type: string;
    project_out_block_type: string;
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One string for every stage, or a list with exactly one string per stage. */
function perStage(v: unknown, n: number, where: string, per: string): unknown[] {
  if (v === undefined) throw new ValueError(`${where} is missing`);
  if (typeof v === 'string') return new Array<string>(n).fill(v);
  if (!Array.isArray(v)) throw new ValueError(`${where} must be a string or a list of ${n} strings, got ${show(v)}`);
  if (v.length !== n) throw new ValueError(`${where} has ${v.length} entries, needs ${n} (one per ${per})`);
  return v;
}

function intList(v: unknown, lo: number, hi: number, where: string): number[] {
  if (!Array.isArray(v)) throw new ValueError(`${where} must be a list of integers, got ${show(v)}`);
  if (v.length < 1 || v.length > DCAEV_LIMITS.stages) throw new ValueError(`${where} must have 1 to ${DCAEV_LIMITS.stages} entries (one per stage), got ${v.length}`);
  return v.map((x, i) => intIn(x, lo, hi, `${where}[${i}]`));
}

interface SectionJson {
  widths: number[];
  depths: number[];
  blocks: ConvSpec[];
  resample: ResampleSpec[];
  projectIn: ConvSpec | ResampleSpec;
  projectOut: ConvSpec | ResampleSpec;
}

/** encoder / decoder: lists checked for type, range and length, block strings parsed and checked. */
function readSection(v: unknown, part: 'encoder' | 'decoder', src: string): SectionJson {
  const at = `${src}: ${part}`;
  if (!isObject(v)) throw new ValueError(`${at} must be an object (width_list, depth_list, block types), got ${show(v)}`);
  const L = DCAEV_LIMITS;
  const widths = intList(v.width_list, 1, L.width, `${at}.width_list`);
  const depths = intList(v.depth_list, 0, L.depth, `${at}.depth_list`);
  if (widths.length !== depths.length)
    throw new ValueError(`${at}: width_list has ${widths.length} stages but depth_list ${depths.length}`);
  const n = widths.length;
  const rk = part === 'encoder' ? 'downsample_block_type' : 'upsample_block_type';
  const rkind = part === 'encoder' ? 'ConvPixelUnshuffle' : 'ConvPixelShuffle';
  const blocks = perStage(v.block_type, n, `${at}.block_type`, 'stage').map((s, i) => expectKind(s, ['ResBlock3d'], `${at}.block_type[${i}]`));
  const resample = perStage(v[rk], n - 1, `${at}.${rk}`, 'pair of consecutive stages').map((s, i) => expectKind(s, [rkind], `${at}.${rk}[${i}]`) as ResampleSpec);
  const inKind = part === 'encoder' ? 'ConvPixelUnshuffle' : 'ConvLayer3d';
  const outKind = part === 'encoder' ? 'ConvLayer3d' : 'ConvPixelShuffle';
  if (v.project_in_block_type === undefined) throw new ValueError(`${at}.project_in_block_type is missing`);
  if (v.project_out_block_type === undefined) throw new ValueError(`${at}.project_out_block_type is missing`);
  const projectIn = expectKind(v.project_in_block_type, [inKind], `${at}.project_in_block_type`);
  const projectOut = expectKind(v.project_out_block_type, [outKind], `${at}.project_out_block_type`);
  return { widths, depths, blocks, resample, projectIn, projectOut };
}

/**
 * Builds a config from the reference vocabulary (accepts `{config_overrides: ...}` wrappers as in the fixtures).
 * Every field is checked for type and range (DCAEV_LIMITS) and the parameter count is computed from the shapes
 * before anything is built; `source` (a file path, "checkpoint ...") names where the config came from in errors.
 */
export function configFromReference(json: unknown, name: unknown = 'custom', source?: string): DCAEVConfig {
  const nm = typeof name === 'string' && name ? name : 'custom';
  const src = `DC-AE-V config ${source ?? `"${nm}"`}`;
  let j = json;
  if (isObject(j) && 'config_overrides' in j) {
    j = j.config_overrides;
    if (!isObject(j)) throw new ValueError(`${src}: config_overrides must be an object, got ${show(j)}`);
  }
  if (!isObject(j)) throw new ValueError(`${src} must be a JSON object (latent_channels, encoder, decoder), got ${show(j)}`);
  const L = DCAEV_LIMITS;
  const latent = intIn(j.latent_channels, 1, L.latentChannels, `${src}: latent_channels`);
  const inCh = j.in_channels === undefined ? 3 : intIn(j.in_channels, 1, L.inChannels, `${src}: in_channels`);
  const sc = j.scaling_factor;
  if (sc !== undefined && sc !== null && (typeof sc !== 'number' || !Number.isFinite(sc) || sc <= 0))
    throw new ValueError(`${src}: scaling_factor must be a positive finite number, got ${show(sc)}`);
  if (j.use_feature_cache !== undefined && typeof j.use_feature_cache !== 'boolean')
    throw new ValueError(`${src}: use_feature_cache must be true or false, got ${show(j.use_feature_cache)}`);
  for (const part of ['encoder', 'decoder'] as const) if (j[part] === undefined) throw new ValueError(`${src}: the "${part}" section is missing`);
  const e = readSection(j.encoder, 'encoder', src);
  const d = readSection(j.decoder, 'decoder', src);
  const cfg: DCAEVConfig = {
    name: nm,
    inChannels: inCh,
    latentChannels: latent,
    scalingFactor: typeof sc === 'number' ? sc : null,
    encoder: {
      widthList: e.widths,
      depthList: e.depths,
      blockType: e.blocks,
      downsampleBlockType: e.resample,
      projectIn: e.projectIn as ResampleSpec,
      projectOut: e.projectOut,
    },
    decoder: {
      widthList: d.widths,
      depthList: d.depths,
      blockType: d.blocks,
      upsampleBlockType: d.resample,
      projectIn: d.projectIn,
      projectOut: d.projectOut as ResampleSpec,
    },
  };
  validateConfig(cfg, src);
  return cfg;
}

/**
 * A config from a file path: "not found" when it does not exist, the file and the parse error for invalid JSON,
 * then configFromReference (which names the file in every error).
 */
export function configFromFile(path: string): DCAEVConfig {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ValueError(`DC-AE-V config ${path} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof ValueError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new ValueError(code === 'ENOENT' ? `DC-AE-V config file not found: ${path}` : `cannot read DC-AE-V config ${path}: ${(e as Error).message}`);
  }
  // A config is a few KiB; refusing a huge file keeps a wrong --model (a video, a checkpoint) from being slurped.
  if (size > CONFIG_MAX_BYTES) throw new ValueError(`DC-AE-V config ${path} is ${size} bytes, too large for a config file (at most ${CONFIG_MAX_BYTES})`);
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ValueError(`DC-AE-V config ${path}: not valid JSON (${(e as Error).message})`);
  }
  const own = isObject(j) ? j.name : undefined;
  if (own !== undefined && typeof own !== 'string') throw new ValueError(`DC-AE-V config ${path}: name must be a string, got ${show(own)}`);
  return configFromReference(j, own ?? basename(path).replace(/\.json$/i, ''), path);
}

const CONFIG_MAX_BYTES = 16 * 1024 * 1024;

/** True when a --model value is meant as a file (a path separator or a .json ending) rather than a preset name. */
export function looksLikePath(spec: string): boolean {
  return /[\\/]/.test(spec) || /\.json$/i.test(spec) || spec.startsWith('.');
}

/**
 * A preset name or a config file. An existing file, or anything that looks like a path, is read as a file (a
 * missing one is "not found"); other names are presets, and an unknown one lists the presets.
 */
export function resolveConfigSpec(spec: string): DCAEVConfig {
  if (isPresetName(spec)) return presetConfig(spec);
  if (looksLikePath(spec) || existsSync(spec)) return configFromFile(spec);
  return presetConfig(spec); // throws the "unknown preset" error listing the known names
}

/** Back to the reference vocabulary (what configFromReference reads). */
export function configToReference(c: DCAEVConfig): ReferenceConfigJson {
  return {
    latent_channels: c.latentChannels,
    in_channels: c.inChannels,
    ...(c.scalingFactor !== null ? { scaling_factor: c.scalingFactor } : {}),
    encoder: {
      width_list: c.encoder.widthList,
      depth_list: c.encoder.depthList,
      block_type: c.encoder.blockType.map((s) => formatBlockType('ResBlock3d', s)),
      downsample_block_type: c.encoder.downsampleBlockType.map((s) => formatBlockType('ConvPixelUnshuffle', s)),
      project_in_block_type: formatBlockType('ConvPixelUnshuffle', c.encoder.projectIn),
      project_out_block_type: formatBlockType('ConvLayer3d', c.encoder.projectOut),
    },
    decoder: {
      width_list: c.decoder.widthList,
      depth_list: c.decoder.depthList,
      block_type: c.decoder.blockType.map((s) => formatBlockType('ResBlock3d', s)),
      upsample_block_type: c.decoder.upsampleBlockType.map((s) => formatBlockType('ConvPixelShuffle', s)),
      project_in_block_type: formatBlockType('ConvLayer3d', c.decoder.projectIn),
      project_out_block_type: formatBlockType('ConvPixelShuffle', c.decoder.projectOut),
    },
  };
}

/** The first stage with blocks: project_in feeds it, project_out reads from it. */
export function firstActiveStage(depths: readonly number[]): number {
  const i = depths.findIndex((d) => d > 0);
  if (i < 0) throw new ValueError('config: every stage has depth 0');
  return i;
}

/**
 * Checks a config (from JSON, a preset or code) against DCAEV_LIMITS and the model's structural rules, and its
 * parameter count (from the shapes, nothing allocated or built) against DCAEV_LIMITS.params. `src` names the
 * config in errors.
 */
export function validateConfig(c: DCAEVConfig, src = `DC-AE-V config "${c.name}"`): void {
  const L = DCAEV_LIMITS;
  if (!isObject(c) || !isObject(c.encoder) || !isObject(c.decoder)) throw new ValueError(`${src}: not a DC-AE-V config object`);
  intIn(c.inChannels, 1, L.inChannels, `${src}: in_channels`);
  intIn(c.latentChannels, 1, L.latentChannels, `${src}: latent_channels`);
  if (c.scalingFactor !== null && (typeof c.scalingFactor !== 'number' || !Number.isFinite(c.scalingFactor) || c.scalingFactor <= 0))
    throw new ValueError(`${src}: scaling_factor must be a positive finite number, got ${show(c.scalingFactor)}`);
  const sec = (part: 'encoder' | 'decoder', s: EncoderConfig | DecoderConfig, resample: ResampleSpec[], rk: string) => {
    const at = `${src}: ${part}`;
    const w = intList(s.widthList, 1, L.width, `${at}.width_list`);
    const d = intList(s.depthList, 0, L.depth, `${at}.depth_list`);
    if (w.length !== d.length) throw new ValueError(`${at}: width_list has ${w.length} stages but depth_list ${d.length}`);
    if (!d.some((x) => x > 0)) throw new ValueError(`${at}.depth_list: every stage has depth 0`);
    const lists: [string, unknown[], number][] = [
      ['block_type', s.blockType, w.length],
      [rk, resample, w.length - 1],
    ];
    for (const [k, v, n] of lists)
      if (!Array.isArray(v) || v.length !== n) throw new ValueError(`${at}.${k} must have ${n} entries, got ${Array.isArray(v) ? v.length : show(v)}`);
    s.blockType.forEach((b, i) => checkSpec(b, `${at}.block_type[${i}]`));
    resample.forEach((b, i) => checkSpec(b, `${at}.${rk}[${i}]`));
    checkSpec(s.projectIn, `${at}.project_in_block_type`);
    checkSpec(s.projectOut, `${at}.project_out_block_type`);
  };
  sec('encoder', c.encoder, c.encoder.downsampleBlockType, 'downsample_block_type');
  sec('decoder', c.decoder, c.decoder.upsampleBlockType, 'upsample_block_type');
  if (!('sf' in c.encoder.projectIn)) throw new ValueError(`${src}: encoder.project_in_block_type must be a ConvPixelUnshuffle block`);
  if (!('sf' in c.decoder.projectOut)) throw new ValueError(`${src}: decoder.project_out_block_type must be a ConvPixelShuffle block`);
  checkChunks(c, src);
  parameterCounts(c, src);
}

export interface ParameterCounts {
  encoder: number;
  decoder: number;
  /** number of parameter tensors */
  tensors: number;
}

/**
 * Parameter counts from the config alone (the model's shapes, module for module as model.ts builds them), with the
 * structural checks the modules would make (channel divisibility of the resampling layers and their shortcuts).
 * Throws a ValueError when one tensor would exceed what a typed array holds or the total exceeds DCAEV_LIMITS.params.
 */
export function parameterCounts(c: DCAEVConfig, src = `DC-AE-V config "${c.name}"`): ParameterCounts {
  const tensor = (n: number, where: string): number => {
    if (n > MAX_ELEMENTS)
      throw new ValueError(`${src}: ${where} would have ${n.toLocaleString('en-US')} weights (${fmtBytes(4 * n)}), more than one tensor can hold (${MAX_ELEMENTS.toLocaleString('en-US')})`);
    return n;
  };
  const conv = (cin: number, cout: number, s: ConvSpec, o: { bias: boolean; norm: boolean }, where: string) =>
    tensor(cout * cin * s.kt * s.ks * s.ks, where) + (o.bias ? tensor(cout, where) : 0) + (o.norm ? 2 * tensor(cout, where) : 0);
  const resBlock = (ch: number, s: ConvSpec, where: string) => conv(ch, ch, s, { bias: true, norm: false }, where) + conv(ch, ch, s, { bias: false, norm: true }, where);
  const down = (cin: number, cout: number, s: ResampleSpec, where: string) => {
    const f = s.sf * s.sf * s.tf;
    if (cout % f) throw new ValueError(`${src}: ${where}: ${cout} output channels are not divisible by sf*sf*tf = ${f}`);
    return conv(cin, cout / f, s, { bias: true, norm: false }, where);
  };
  const up = (cin: number, cout: number, s: ResampleSpec, where: string) => conv(cin, cout * s.sf * s.sf * s.tf, s, { bias: true, norm: false }, where);

  const e = c.encoder;
  const n = e.widthList.length;
  let enc = down(c.inChannels, e.widthList[firstActiveStage(e.depthList)]!, e.projectIn, 'encoder.project_in_block_type');
  for (let s = 0; s < n; s++) {
    const d = e.depthList[s]!;
    if (d === 0) continue;
    const w = e.widthList[s]!;
    enc += d * resBlock(w, e.blockType[s]!, `encoder stage ${s} blocks`);
    if (s < n - 1) {
      const spec = e.downsampleBlockType[s]!;
      const wo = e.widthList[s + 1]!;
      const where = `encoder.downsample_block_type[${s}]`;
      if ((w * spec.sf * spec.sf * spec.tf) % wo)
        throw new ValueError(`${src}: ${where}: the shortcut cannot average ${w * spec.sf * spec.sf * spec.tf} channels (width ${w} x ${spec.sf * spec.sf * spec.tf}) into width ${wo}`);
      enc += down(w, wo, spec, where);
    }
  }
  enc += conv(lastActive(e.widthList, e.depthList), c.latentChannels, e.projectOut, { bias: true, norm: false }, 'encoder.project_out_block_type');

  const dc = c.decoder;
  const m = dc.widthList.length;
  let dec = conv(c.latentChannels, lastActive(dc.widthList, dc.depthList), dc.projectIn, { bias: true, norm: false }, 'decoder.project_in_block_type');
  for (let s = m - 1; s >= 0; s--) {
    const d = dc.depthList[s]!;
    if (d === 0) continue;
    const w = dc.widthList[s]!;
    if (s < m - 1) {
      const spec = dc.upsampleBlockType[s]!;
      const wi = dc.widthList[s + 1]!;
      const where = `decoder.upsample_block_type[${s}]`;
      if ((w * spec.sf * spec.sf * spec.tf) % wi)
        throw new ValueError(`${src}: ${where}: the shortcut cannot repeat width ${wi} into ${w * spec.sf * spec.sf * spec.tf} channels (width ${w} x ${spec.sf * spec.sf * spec.tf})`);
      dec += up(wi, w, spec, where);
    }
    dec += d * resBlock(w, dc.blockType[s]!, `decoder stage ${s} blocks`);
  }
  const w0 = dc.widthList[firstActiveStage(dc.depthList)]!;
  dec += 2 * tensor(w0, 'decoder project_out norm') + up(w0, c.inChannels, dc.projectOut, 'decoder.project_out_block_type');
  const total = enc + dec;
  if (total > DCAEV_LIMITS.params)
    throw new ValueError(
      `${src}: ${total.toLocaleString('en-US')} parameters (${fmtBytes(4 * total)} as float32) is beyond the limit of ${DCAEV_LIMITS.params.toLocaleString('en-US')} (the released models have 2.1e9 to 2.7e9)`,
    );
  return { encoder: enc, decoder: dec, tensors: countTensors(c) };
}

/** The number of parameter tensors the model registers. */
function countTensors(c: DCAEVConfig): number {
  const e = c.encoder;
  const d = c.decoder;
  const convT = (bias: boolean, norm: boolean) => 1 + (bias ? 1 : 0) + (norm ? 2 : 0);
  const res = convT(true, false) + convT(false, true);
  let n = convT(true, false); // encoder project_in
  e.depthList.forEach((dep, s) => {
    if (dep) n += dep * res + (s < e.widthList.length - 1 ? convT(true, false) : 0);
  });
  n += convT(true, false) * 2; // encoder project_out, decoder project_in
  d.depthList.forEach((dep, s) => {
    if (dep) n += dep * res + (s < d.widthList.length - 1 ? convT(true, false) : 0);
  });
  return n + 2 + convT(true, false); // decoder head: norm weight + bias, conv
}

/** The width of the last stage with blocks (what the encoder emits and the decoder's project_in produces). */
function lastActive(widths: readonly number[], depths: readonly number[]): number {
  let w = widths[firstActiveStage(depths)]!;
  for (let s = 0; s < widths.length; s++) if (depths[s]! > 0) w = widths[s]!;
  return w;
}

/**
 * Chunk-causal layers must agree on chunk boundaries: a layer running at 1/r of the frame rate needs chunk L/r.
 * A mismatch would not fail loudly at run time (the conv silently takes the reference's non-chunked fallback
 * whenever T is not a multiple of its chunk), so it is rejected here.
 */
function checkChunks(c: DCAEVConfig, src: string): void {
  const L = c.encoder.projectIn.mode === 'chunk_causal' ? c.encoder.projectIn.chunk! : null;
  if (L === null) return;
  const want = (spec: ConvSpec, rate: number, where: string) => {
    if (spec.mode !== 'chunk_causal') return;
    const expect = L / rate;
    if (spec.chunk !== expect)
      throw new ValueError(`${src}: ${where} runs at 1/${rate} of the frame rate, so its chunk must be ${expect} (chunk ${L} at project_in), got ${spec.chunk}`);
  };
  let rate = c.encoder.projectIn.tf;
  const e = c.encoder;
  for (let s = 0; s < e.widthList.length; s++) {
    if (!e.depthList[s]) continue;
    want(e.blockType[s]!, rate, `encoder stage ${s} blocks`);
    if (s < e.widthList.length - 1) {
      want(e.downsampleBlockType[s]!, rate, `encoder stage ${s} downsample conv`);
      rate *= e.downsampleBlockType[s]!.tf;
    }
  }
  want(e.projectOut, rate, 'encoder project_out');
  const d = c.decoder;
  want(d.projectIn, rate, 'decoder project_in');
  for (let s = d.widthList.length - 1; s >= 0; s--) {
    if (!d.depthList[s]) continue;
    if (s < d.widthList.length - 1) {
      want(d.upsampleBlockType[s]!, rate, `decoder stage ${s} upsample conv`);
      rate /= d.upsampleBlockType[s]!.tf;
    }
    want(d.blockType[s]!, rate, `decoder stage ${s} blocks`);
  }
  want(d.projectOut, rate, 'decoder project_out');
}

/** Spatial and temporal compression factors implied by the encoder. */
export function compressionFactors(c: DCAEVConfig): { spatial: number; temporal: number } {
  let s = c.encoder.projectIn.sf;
  let t = c.encoder.projectIn.tf;
  const n = c.encoder.widthList.length;
  for (let i = 0; i < n - 1; i++) {
    if (c.encoder.depthList[i]! > 0) {
      s *= c.encoder.downsampleBlockType[i]!.sf;
      t *= c.encoder.downsampleBlockType[i]!.tf;
    }
  }
  return { spatial: s, temporal: t };
}

/** Chunk length in pixel frames (from the encoder's project_in), or null for non-chunked designs. */
export function chunkFrames(c: DCAEVConfig): number | null {
  return c.encoder.projectIn.chunk;
}

// ---------------------------------------------------------------------------------------------------------------
// presets

const SCALING: Record<string, number> = {
  'dc-ae-v-f32t4c32-1.0': 0.7241,
  'dc-ae-v-f32t4c64-1.0': 0.7614,
  'dc-ae-v-f32t4c128-1.0': 0.4457,
  'dc-ae-v-f32t4c256-1.0': 0.4752,
  // identical to c256's in the released docs; possibly a copy-paste there (spec §1.4)
  'dc-ae-v-f64t4c128-1.0': 0.4752,
};

export interface TopologyOptions {
  name: string;
  /** per-stage widths; stage 0 is usually depth 0 (project_in feeds the first stage with blocks) */
  widths: number[];
  depths: number[];
  latentChannels: number;
  /** temporal design of every conv (default chunk_causal) */
  mode?: TemporalMode;
  /** chunk length in pixel frames for chunk_causal (default 40, as released); must be divisible by 4 */
  chunk?: number;
  scalingFactor?: number | null;
}

/**
 * The released topology (spatial x2 stages, then a temporal x4 stage, then the latent-rate stage) for any widths,
 * depths, temporal design and chunk length: the presets, and the small models trained here (default model, study).
 * Spatial compression = 2^(stages - 1) when every stage after the first has depth > 0 (project_in and all but the last
 * down-sampler halve H and W); a stage of depth 0 has no down-sampler, so each one after the first halves the factor
 * (compressionFactors gives it).
 */
export function topologyConfig(o: TopologyOptions): DCAEVConfig {
  const mode = o.mode ?? 'chunk_causal';
  const L = o.chunk ?? 40;
  if (mode === 'chunk_causal' && (!Number.isInteger(L) || L < 4 || L % 4 !== 0))
    throw new ValueError(`config: chunk length must be a positive multiple of 4 (the temporal factor), got ${L}`);
  const n = o.widths.length;
  if (n < 2 || o.depths.length !== n) throw new ValueError(`config: need >= 2 stages and one depth per width (got ${n} widths, ${o.depths.length} depths)`);
  const Lz = L / 4;
  const conv = (chunk: number): ConvSpec => ({ mode, ks: 3, kt: 3, chunk: mode === 'chunk_causal' ? chunk : null });
  const rs = (sf: number, tf: number, chunk: number): ResampleSpec => ({ ...conv(chunk), sf, tf });
  const blocks = o.widths.map((_, i) => conv(i === n - 1 ? Lz : L));
  const down = o.widths.slice(0, -1).map((_, i) => (i === n - 2 ? rs(1, 4, L) : rs(2, 1, L)));
  const up = o.widths.slice(0, -1).map((_, i) => (i === n - 2 ? rs(1, 4, Lz) : rs(2, 1, L)));
  const cfg: DCAEVConfig = {
    name: o.name,
    inChannels: 3,
    latentChannels: o.latentChannels,
    scalingFactor: o.scalingFactor ?? null,
    encoder: { widthList: [...o.widths], depthList: [...o.depths], blockType: blocks, downsampleBlockType: down, projectIn: rs(2, 1, L), projectOut: conv(Lz) },
    decoder: { widthList: [...o.widths], depthList: [...o.depths], blockType: blocks, upsampleBlockType: up, projectIn: conv(Lz), projectOut: rs(2, 1, L) },
  };
  validateConfig(cfg);
  return cfg;
}

function releasedConfig(name: string, widths: number[], depths: number[], latent: number): DCAEVConfig {
  return topologyConfig({ name, widths, depths, latentChannels: latent, chunk: 40, scalingFactor: SCALING[name] ?? null });
}

const F32_W = [128, 256, 512, 512, 1024, 1024, 1024];
const F32_D = [0, 5, 10, 4, 4, 4, 4];
const F64_W = [128, 256, 512, 512, 1024, 1024, 1024, 1024];
const F64_D = [0, 5, 10, 4, 4, 4, 4, 4];

export const PRESET_NAMES = [
  'dc-ae-v-f32t4c32-1.0',
  'dc-ae-v-f32t4c64-1.0',
  'dc-ae-v-f32t4c128-1.0',
  'dc-ae-v-f32t4c256-1.0',
  'dc-ae-v-f64t4c128-1.0',
] as const;

/**
 * Small presets trained here (not released models). `dcaev-shapes-f32c32`: the small-scale study's DC-AE-V (issue #21,
 * the shapes world), f32t4c32 chunk-causal with 8-frame chunks (a 16-frame clip is two chunks -> 4 latent frames),
 * widths 8..64, one block per stage; sized for training steps of seconds on 2 CPU cores (docs/train-ae-shapes.md).
 */
const SMALL_PRESETS: Record<string, () => DCAEVConfig> = {
  'dcaev-shapes-f32c32': () =>
    topologyConfig({ name: 'dcaev-shapes-f32c32', widths: [8, 16, 32, 32, 32, 32, 64], depths: [0, 1, 1, 1, 1, 1, 1], latentChannels: 32, chunk: 8 }),
};

export const SMALL_PRESET_NAMES = Object.keys(SMALL_PRESETS);

/** A released preset by name (also accepts the `-bf16` suffix and the [562] `dc-ae-v-1.0-f32t4c32` spelling), or a small one. */
export function presetConfig(name: string): DCAEVConfig {
  const small = SMALL_PRESETS[name.trim().toLowerCase()];
  if (small) return small();
  let n = name.replace(/-bf16$/, '');
  const alt = /^dc-ae-v-1\.0-(f\d+t\d+c\d+)$/.exec(n);
  if (alt) n = `dc-ae-v-${alt[1]}-1.0`;
  const m = /^dc-ae-v-f(32|64)t4c(\d+)-1\.0$/.exec(n);
  if (!m || !(PRESET_NAMES as readonly string[]).includes(n))
    throw new ValueError(`unknown DC-AE-V preset "${name}" (known: ${[...PRESET_NAMES, ...SMALL_PRESET_NAMES].join(', ')})`);
  const c = Number(m[2]);
  return m[1] === '32' ? releasedConfig(n, F32_W, F32_D, c) : releasedConfig(n, F64_W, F64_D, c);
}

export function isPresetName(name: string): boolean {
  try {
    presetConfig(name);
    return true;
  } catch {
    return false;
  }
}
