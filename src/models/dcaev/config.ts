/**
 * DC-AE-V configurations: the five released presets, and configs in the reference's own vocabulary
 * (width_list, depth_list, `ChunkCausalResBlock3d@3@3@40`-style block strings), as in the fixtures'
 * `config_overrides`.
 */
import { ValueError } from '../../tensor/errors.js';

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
// block strings

const BLOCK_RE = /^(ChunkCausal|Causal|)(ResBlock3d|ConvLayer3d|ConvPixelUnshuffle|ConvPixelShuffle)((?:@\d+)*)$/;

/** Parses e.g. `ChunkCausalResBlock3d@3@3@40` or `CausalConvPixelUnshuffle@2@1@3@3`. */
export function parseBlockType(s: string): { kind: string; spec: ConvSpec | ResampleSpec } {
  const m = BLOCK_RE.exec(s);
  if (!m) throw new ValueError(`unknown DC-AE-V block type "${s}"`);
  const mode: TemporalMode = m[1] === 'ChunkCausal' ? 'chunk_causal' : m[1] === 'Causal' ? 'causal' : 'non_causal';
  const kind = m[2]!;
  const nums = m[3]!.split('@').filter(Boolean).map(Number);
  const resample = kind === 'ConvPixelUnshuffle' || kind === 'ConvPixelShuffle';
  const want = (resample ? 4 : 2) + (mode === 'chunk_causal' ? 1 : 0);
  if (nums.length !== want)
    throw new ValueError(`block type "${s}" needs ${want} @-fields (${resample ? 'sf@tf@' : ''}ks@kt${mode === 'chunk_causal' ? '@chunk' : ''}), got ${nums.length}`);
  let i = 0;
  const sf = resample ? nums[i++]! : 1;
  const tf = resample ? nums[i++]! : 1;
  const ks = nums[i++]!;
  const kt = nums[i++]!;
  const chunk = mode === 'chunk_causal' ? nums[i++]! : null;
  for (const v of [sf, tf, ks, kt]) if (!(v >= 1)) throw new ValueError(`block type "${s}" has a zero field`);
  if (ks % 2 === 0 || kt % 2 === 0) throw new ValueError(`block type "${s}": kernel sizes must be odd`);
  if (chunk !== null && chunk < 1) throw new ValueError(`block type "${s}": chunk length must be >= 1`);
  const spec: ConvSpec = { mode, ks, kt, chunk };
  return { kind, spec: resample ? { ...spec, sf, tf } : spec };
}

export function formatBlockType(kind: string, spec: ConvSpec | ResampleSpec): string {
  const prefix = spec.mode === 'chunk_causal' ? 'ChunkCausal' : spec.mode === 'causal' ? 'Causal' : '';
  const r = 'sf' in spec ? `@${spec.sf}@${spec.tf}` : '';
  return `${prefix}${kind}${r}@${spec.ks}@${spec.kt}${spec.chunk !== null ? `@${spec.chunk}` : ''}`;
}

function expectKind(s: string, kinds: string[], where: string): ConvSpec | ResampleSpec {
  const { kind, spec } = parseBlockType(s);
  if (!kinds.includes(kind)) throw new ValueError(`${where}: expected a ${kinds.join(' or ')} block, got "${s}"`);
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

function perStage(v: string | string[] | undefined, n: number, where: string): string[] {
  if (v === undefined) throw new ValueError(`${where} is missing`);
  if (typeof v === 'string') return new Array<string>(n).fill(v);
  if (!Array.isArray(v) || v.length !== n) throw new ValueError(`${where} must be a string or a list of ${n} strings`);
  return v;
}

function intList(v: unknown, where: string): number[] {
  if (!Array.isArray(v) || v.some((x) => !Number.isInteger(x) || x < 0)) throw new ValueError(`${where} must be a list of non-negative integers`);
  return v as number[];
}

/** Builds a config from the reference vocabulary (accepts `{config_overrides: ...}` wrappers as in the fixtures). */
export function configFromReference(json: unknown, name = 'custom'): DCAEVConfig {
  let j = json as Record<string, unknown>;
  if (j && typeof j === 'object' && 'config_overrides' in j) j = j.config_overrides as Record<string, unknown>;
  if (!j || typeof j !== 'object') throw new ValueError('DC-AE-V config must be a JSON object');
  const r = j as unknown as ReferenceConfigJson;
  if (!Number.isInteger(r.latent_channels) || r.latent_channels < 1) throw new ValueError('config: latent_channels must be a positive integer');
  if (!r.encoder || !r.decoder) throw new ValueError('config: needs "encoder" and "decoder" sections');
  const ew = intList(r.encoder.width_list, 'encoder.width_list');
  const ed = intList(r.encoder.depth_list, 'encoder.depth_list');
  const dw = intList(r.decoder.width_list, 'decoder.width_list');
  const dd = intList(r.decoder.depth_list, 'decoder.depth_list');
  if (ew.length !== ed.length || dw.length !== dd.length) throw new ValueError('config: width_list and depth_list lengths differ');
  const n = ew.length;
  const m = dw.length;
  const cfg: DCAEVConfig = {
    name,
    inChannels: r.in_channels ?? 3,
    latentChannels: r.latent_channels,
    scalingFactor: r.scaling_factor ?? null,
    encoder: {
      widthList: ew,
      depthList: ed,
      blockType: perStage(r.encoder.block_type, n, 'encoder.block_type').map((s) => expectKind(s, ['ResBlock3d'], 'encoder.block_type')),
      downsampleBlockType: perStage(r.encoder.downsample_block_type, n - 1, 'encoder.downsample_block_type').map(
        (s) => expectKind(s, ['ConvPixelUnshuffle'], 'encoder.downsample_block_type') as ResampleSpec,
      ),
      projectIn: expectKind(r.encoder.project_in_block_type, ['ConvPixelUnshuffle'], 'encoder.project_in_block_type') as ResampleSpec,
      projectOut: expectKind(r.encoder.project_out_block_type, ['ConvLayer3d'], 'encoder.project_out_block_type'),
    },
    decoder: {
      widthList: dw,
      depthList: dd,
      blockType: perStage(r.decoder.block_type, m, 'decoder.block_type').map((s) => expectKind(s, ['ResBlock3d'], 'decoder.block_type')),
      upsampleBlockType: perStage(r.decoder.upsample_block_type, m - 1, 'decoder.upsample_block_type').map(
        (s) => expectKind(s, ['ConvPixelShuffle'], 'decoder.upsample_block_type') as ResampleSpec,
      ),
      projectIn: expectKind(r.decoder.project_in_block_type, ['ConvLayer3d'], 'decoder.project_in_block_type'),
      projectOut: expectKind(r.decoder.project_out_block_type, ['ConvPixelShuffle'], 'decoder.project_out_block_type') as ResampleSpec,
    },
  };
  validateConfig(cfg);
  return cfg;
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

function validateConfig(c: DCAEVConfig): void {
  const sec = (name: string, w: number[], d: number[]) => {
    if (!w.length) throw new ValueError(`config: ${name}.width_list is empty`);
    if (w.some((x) => x < 1)) throw new ValueError(`config: ${name}.width_list has a zero width`);
    firstActiveStage(d);
  };
  sec('encoder', c.encoder.widthList, c.encoder.depthList);
  sec('decoder', c.decoder.widthList, c.decoder.depthList);
  if (c.inChannels < 1) throw new ValueError('config: in_channels must be >= 1');
  checkChunks(c);
}

/**
 * Chunk-causal layers must agree on chunk boundaries: a layer running at 1/r of the frame rate needs chunk L/r.
 * A mismatch would not fail loudly at run time (the conv silently takes the reference's non-chunked fallback
 * whenever T is not a multiple of its chunk), so it is rejected here.
 */
function checkChunks(c: DCAEVConfig): void {
  const L = c.encoder.projectIn.mode === 'chunk_causal' ? c.encoder.projectIn.chunk! : null;
  if (L === null) return;
  const want = (spec: ConvSpec, rate: number, where: string) => {
    if (spec.mode !== 'chunk_causal') return;
    const expect = L / rate;
    if (spec.chunk !== expect)
      throw new ValueError(`config: ${where} runs at 1/${rate} of the frame rate, so its chunk must be ${expect} (chunk ${L} at project_in), got ${spec.chunk}`);
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
 * Spatial compression = 2^(stages - 1) (project_in and all but the last down-sampler halve H and W).
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

/** A released preset by name (also accepts the `-bf16` suffix and the [562] `dc-ae-v-1.0-f32t4c32` spelling). */
export function presetConfig(name: string): DCAEVConfig {
  let n = name.replace(/-bf16$/, '');
  const alt = /^dc-ae-v-1\.0-(f\d+t\d+c\d+)$/.exec(n);
  if (alt) n = `dc-ae-v-${alt[1]}-1.0`;
  const m = /^dc-ae-v-f(32|64)t4c(\d+)-1\.0$/.exec(n);
  if (!m || !(PRESET_NAMES as readonly string[]).includes(n))
    throw new ValueError(`unknown DC-AE-V preset "${name}" (known: ${PRESET_NAMES.join(', ')})`);
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
