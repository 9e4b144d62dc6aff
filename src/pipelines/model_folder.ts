/**
 * The model folder of `dcvg generate --model DIR`: which file is which component, in either released layout, checked
 * (presence, configs, and that the parts fit together) before any weight is read. docs/generate.md lists the files.
 *
 * diffusers layout (`model_index.json`):
 *   transformer/   config.json + diffusion_pytorch_model.safetensors (or its .index.json and shards)
 *   text_encoder/  config.json + model.safetensors (or sharded), HF UMT5EncoderModel keys
 *   tokenizer/     spiece.model and/or tokenizer.json
 *   vae/           config.json + weights: AutoencoderKLWan (the Wan VAE), or DC-AE-V (config in the reference's
 *                  vocabulary, or {"preset": "dc-ae-v-f32t4c32-1.0"})
 *   scheduler/     scheduler_config.json (optional: its flow_shift and solver become the defaults)
 *   image_encoder/ i2v only: the CLIP visual tower's weights (+ config.json)
 *
 * Wan layout (the official release folders, plus DC-VideoGen's files):
 *   config.json                                  the DiT config (Wan or diffusers vocabulary)
 *   diffusion_pytorch_model*.safetensors         the DiT (single, or index + shards); else the one other weights file
 *                                                (e.g. a DC-VideoGen .pt checkpoint)
 *   models_t5_umt5-xxl-enc-bf16.pth              umT5-XXL encoder
 *   google/umt5-xxl/                             tokenizer (spiece.model or tokenizer.json)
 *   Wan2.1_VAE.pth                               the Wan VAE (base Wan DiTs), or
 *   dc-ae-v-*.pt / .safetensors                  DC-AE-V (DC-VideoGen DiTs); preset from the name, or <stem>.json
 *   models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth   CLIP (i2v only)
 * Any weights file may have a `<stem>.json` config beside it (non-released sizes: tiny test models, custom VAEs).
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ValueError } from '../errors.js';
import { openWeights, weightsInFolder } from '../io/weights.js';
import type { SolverKind } from '../diffusion/unipc.js';
import { configFromFile, compressionFactors, isPresetName, presetConfig, type DCAEVConfig } from '../models/dcaev/config.js';
import { createModel } from '../models/dcaev/autoencoder.js';
import { parseWanConfig, type WanConfig } from '../models/wan/config.js';
import { WanModel } from '../models/wan/model.js';
import { loadWanWeights } from '../models/wan/run.js';
import { WAN_ONLY_KEYS, detectWanKeyFormat, diffusersKeyToWan } from '../models/wan/keys.js';
import { parseWanVaeConfig, wan21VaeConfig, wanVaeFactors, type WanVaeConfig } from '../models/wan_vae/config.js';
import { WanVAE } from '../models/wan_vae/model.js';
import { loadWanVaeWeights } from '../models/wan_vae/run.js';
import type { Tensor } from '../tensor/tensor.js';
import { DcaevAutoencoder, WanVaeAutoencoder } from './autoencoder.js';
import type { ImageEncoder, PromptTokenizer, TextEncoder } from './components.js';
import { weightsIdentity } from './embedding_cache.js';
import type { GenerationModels, LatentGeometry } from './generation.js';

export type FolderLayout = 'diffusers' | 'wan';

export interface FolderPart {
  /** the weights file, shard index or folder */
  path: string;
  /** a config file for the loader (absent: the loader's default, e.g. the released preset) */
  config?: string;
}

export interface ModelFolder {
  dir: string;
  layout: FolderLayout;
  mode: 't2v' | 'i2v';
  dit: FolderPart & { config: string; parsed: WanConfig };
  vae: FolderPart & ({ family: 'dc-ae-v'; parsed: DCAEVConfig } | { family: 'wan-vae'; parsed: WanVaeConfig });
  textEncoder: FolderPart & { dim?: number };
  tokenizer: FolderPart;
  imageEncoder?: FolderPart;
  /** defaults from scheduler/scheduler_config.json */
  scheduler?: { path: string; shift?: number; sampler?: SolverKind };
  /** defaults from dcvg_generate.json (GENERATE_DEFAULTS_FILE) */
  generateDefaults?: FolderGenerateDefaults;
}

/**
 * An optional file of either layout: the generation settings the folder's model was made and scored with (e.g. the
 * shapes-world model of `dcvg study export`: 128x128, 16 frames, 8 fps, the study's sampling); options override them.
 */
export const GENERATE_DEFAULTS_FILE = 'dcvg_generate.json';

export interface FolderGenerateDefaults {
  width?: number;
  height?: number;
  frames?: number;
  fps?: number;
  steps?: number;
  guidance?: number;
  shift?: number;
  sampler?: SolverKind;
}

const DEFAULT_KEYS = { width: 'int', height: 'int', frames: 'int', steps: 'int', fps: 'num', guidance: 'num', shift: 'num' } as const;

/** The folder's dcvg_generate.json, checked key by key (keys starting with "_" are comments). */
function generateDefaults(dir: string): FolderGenerateDefaults | undefined {
  const p = join(dir, GENERATE_DEFAULTS_FILE);
  if (!existsSync(p)) return undefined;
  const j = readJsonFile(p, 'generation defaults');
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(j)) {
    if (k.startsWith('_')) continue;
    if (k === 'sampler') {
      if (v !== 'unipc' && v !== 'euler') throw new ValueError(`${p}: "sampler" must be "unipc" or "euler", got ${JSON.stringify(v)}`);
    } else if (!(k in DEFAULT_KEYS)) throw new ValueError(`${p}: unknown key "${k}" (known: ${[...Object.keys(DEFAULT_KEYS), 'sampler'].join(', ')})`);
    else if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v) || (DEFAULT_KEYS[k as keyof typeof DEFAULT_KEYS] === 'int' && !Number.isInteger(v)))
      throw new ValueError(`${p}: "${k}" must be a positive ${DEFAULT_KEYS[k as keyof typeof DEFAULT_KEYS] === 'int' ? 'integer' : 'number'}, got ${JSON.stringify(v)}`);
    out[k] = v;
  }
  return out as FolderGenerateDefaults;
}

export const WAN_FILES = {
  t5: 'models_t5_umt5-xxl-enc-bf16.pth',
  tokenizer: join('google', 'umt5-xxl'),
  vae: 'Wan2.1_VAE.pth',
  clip: 'models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth',
  ditConfig: 'config.json',
} as const;

const WEIGHTS_RE = /\.(safetensors|pt|pth)$/i;
const SHARD_RE = /-\d+-of-\d+\.safetensors$/i;

function readJsonFile(path: string, what: string): Record<string, unknown> {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new ValueError(`${what}: ${path} is missing`);
  }
  if (!st.isFile()) throw new ValueError(`${what}: ${path} is not a file`);
  if (st.size > 16 * 1024 * 1024) throw new ValueError(`${what}: ${path} is ${st.size} bytes, too large for a JSON config`);
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ValueError(`${what}: ${path} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new ValueError(`${what}: ${path} must hold a JSON object`);
  return j as Record<string, unknown>;
}

/** `<stem>.json` beside a weights file, when present. */
function sideConfig(weights: string): string | undefined {
  const p = weights.replace(/(\.safetensors\.index\.json|\.safetensors|\.pth?|)$/i, '.json');
  return p !== weights && existsSync(p) ? p : undefined;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** A tokenizer file or folder: spiece.model, tokenizer.json, or a folder holding one. */
function checkTokenizer(p: string, what: string): FolderPart {
  if (isDir(p)) {
    if (!existsSync(join(p, 'spiece.model')) && !existsSync(join(p, 'tokenizer.json')))
      throw new ValueError(`${what}: ${p} holds neither spiece.model nor tokenizer.json`);
    return { path: p };
  }
  if (!existsSync(p)) throw new ValueError(`${what}: ${p} is missing (a folder with spiece.model or tokenizer.json)`);
  return { path: p };
}

/** The DC-AE-V config for a weights file: <stem>.json beside it, else the preset its name spells. */
function dcaevConfigFor(weights: string, config: string | undefined, what: string): DCAEVConfig {
  if (config) return dcaevConfigFile(config, what);
  const stem = basename(weights).replace(/\.(safetensors|pt|pth)$/i, '');
  if (isPresetName(stem)) return presetConfig(stem);
  throw new ValueError(
    `${what}: cannot tell the DC-AE-V configuration of ${weights}: its name is no released preset (e.g. dc-ae-v-f32t4c32-1.0-bf16.pt); put its config beside it as ${stem}.json`,
  );
}

/** A DC-AE-V config file: the reference vocabulary, or {"preset": NAME} / {"name": NAME} naming a released preset. */
function dcaevConfigFile(path: string, what: string): DCAEVConfig {
  const j = readJsonFile(path, what);
  const named = typeof j.preset === 'string' ? j.preset : typeof j.name === 'string' && !('encoder' in j) ? j.name : null;
  if (named !== null) {
    if (!isPresetName(named)) throw new ValueError(`${what}: ${path} names "${named}", which is no DC-AE-V preset`);
    return presetConfig(named);
  }
  return configFromFile(path);
}

function isWanVaeJson(j: Record<string, unknown>): boolean {
  return j._class_name === 'AutoencoderKLWan' || ('z_dim' in j && ('dim_mult' in j || 'base_dim' in j));
}

export function vaeGeometry(v: ModelFolder['vae']): LatentGeometry {
  if (v.family === 'wan-vae') {
    const f = wanVaeFactors(v.parsed);
    return { family: 'wan-vae', name: v.parsed.name, channels: v.parsed.z_dim, spatial: f.spatial, temporal: f.temporal, scale: 1 };
  }
  const f = compressionFactors(v.parsed);
  const sf = v.parsed.scalingFactor;
  return { family: 'dc-ae-v', name: v.parsed.name, channels: v.parsed.latentChannels, spatial: f.spatial, temporal: f.temporal, scale: typeof sf === 'number' && sf > 0 ? sf : 1 };
}

function schedulerDefaults(dir: string): ModelFolder['scheduler'] {
  const p = join(dir, 'scheduler_config.json');
  if (!existsSync(p)) return undefined;
  const j = readJsonFile(p, 'scheduler');
  const cls = j._class_name;
  const sampler: SolverKind | undefined = cls === 'UniPCMultistepScheduler' ? 'unipc' : cls === 'FlowMatchEulerDiscreteScheduler' ? 'euler' : undefined;
  const s = typeof j.flow_shift === 'number' ? j.flow_shift : typeof j.shift === 'number' ? j.shift : undefined;
  return { path: p, ...(s !== undefined && s > 0 ? { shift: s } : {}), ...(sampler ? { sampler } : {}) };
}

/** The DiT config, with the file named in its errors. */
function ditConfig(path: string, name: string): WanConfig {
  const j = readJsonFile(path, 'transformer config');
  return parseWanConfig(j, typeof j.name === 'string' ? j.name : name, path);
}

function resolveDiffusers(dir: string): ModelFolder {
  const index = readJsonFile(join(dir, 'model_index.json'), 'diffusers pipeline');
  const listed = Object.keys(index).filter((k) => !k.startsWith('_') && Array.isArray(index[k]) && (index[k] as unknown[])[0] !== null);
  const need = (name: string, what: string) => {
    const p = join(dir, name);
    if (!isDir(p)) throw new ValueError(`${dir}: the ${what} folder ${name}/ is missing${listed.includes(name) ? ' (model_index.json lists it)' : ''}`);
    return p;
  };
  const tdir = need('transformer', 'DiT (transformer)');
  const cfgPath = join(tdir, 'config.json');
  const parsed = ditConfig(cfgPath, basename(dir));
  const weightsOf = (p: string, what: string) => {
    try {
      return weightsInFolder(p);
    } catch (e) {
      throw new ValueError(`${what}: ${(e as Error).message}`);
    }
  };
  const dit = { path: weightsOf(tdir, 'transformer'), config: cfgPath, parsed };
  const mode = parsed.model_type;

  const edir = need('text_encoder', 'text encoder');
  const ecfg = join(edir, 'config.json');
  const ej = readJsonFile(ecfg, 'text_encoder');
  // the loader reads the folder's config.json itself
  const textEncoder = { path: edir, dim: typeof ej.d_model === 'number' ? ej.d_model : undefined };
  weightsOf(edir, 'text_encoder');

  const tokenizer = checkTokenizer(need('tokenizer', 'tokenizer'), 'tokenizer');

  const vdir = need('vae', 'autoencoder (vae)');
  const vcfg = join(vdir, 'config.json');
  const vj = readJsonFile(vcfg, 'vae');
  const vweights = weightsOf(vdir, 'vae');
  const vae: ModelFolder['vae'] = isWanVaeJson(vj)
    ? { family: 'wan-vae', path: vdir, config: vcfg, parsed: parseWanVaeConfig(vj, 'Wan2.1 VAE', vcfg) }
    : { family: 'dc-ae-v', path: vweights, config: vcfg, parsed: dcaevConfigFile(vcfg, 'vae') };

  let imageEncoder: FolderPart | undefined;
  if (mode === 'i2v') {
    const idir = need('image_encoder', 'image encoder (CLIP, needed by an i2v transformer)');
    weightsOf(idir, 'image_encoder');
    imageEncoder = { path: idir }; // the loader reads the folder's config.json (transformers' CLIPVisionConfig) itself
  }
  const scheduler = isDir(join(dir, 'scheduler')) ? schedulerDefaults(join(dir, 'scheduler')) : undefined;
  return { dir, layout: 'diffusers', mode, dit, vae, textEncoder, tokenizer, ...(imageEncoder ? { imageEncoder } : {}), ...(scheduler ? { scheduler } : {}) };
}

function resolveWan(dir: string): ModelFolder {
  const names = readdirSync(dir);
  const cfgPath = join(dir, WAN_FILES.ditConfig);
  if (!existsSync(cfgPath))
    throw new ValueError(`${dir}: neither model_index.json (diffusers layout) nor config.json (Wan layout: the DiT config) is there; see docs/generate.md for the files a model folder holds`);
  const parsed = ditConfig(cfgPath, basename(dir));
  const mode = parsed.model_type;
  const claimed = new Set<string>();
  const file = (name: string, what: string, optional = false): string | undefined => {
    // the released name, or the same stem as .safetensors
    const alt = name.replace(/\.pth?$/i, '.safetensors');
    for (const n of [name, alt])
      if (existsSync(join(dir, n))) {
        claimed.add(n);
        return join(dir, n);
      }
    if (optional) return undefined;
    throw new ValueError(`${dir}: ${what} ${name} is missing`);
  };
  const t5 = file(WAN_FILES.t5, 'the umT5 text encoder')!;
  const textEncoder = { path: t5, ...(sideConfig(t5) ? { config: sideConfig(t5) } : {}) };
  const tokenizer = checkTokenizer(join(dir, WAN_FILES.tokenizer), 'tokenizer');

  // the autoencoder: the Wan VAE and/or DC-AE-V files; the one whose latent channels the DiT predicts
  const wanVae = file(WAN_FILES.vae, 'the Wan VAE', true);
  const dcFiles = names.filter((n) => /^dc-ae-v.*\.(safetensors|pt|pth)$/i.test(n) && !SHARD_RE.test(n));
  dcFiles.forEach((n) => claimed.add(n));
  const candidates: ModelFolder['vae'][] = [];
  if (wanVae) {
    const c = sideConfig(wanVae);
    candidates.push({ family: 'wan-vae', path: wanVae, ...(c ? { config: c } : {}), parsed: c ? parseWanVaeConfig(readJsonFile(c, 'Wan VAE config'), 'Wan2.1 VAE', c) : wan21VaeConfig() });
  }
  for (const n of dcFiles) {
    const p = join(dir, n);
    const c = sideConfig(p);
    candidates.push({ family: 'dc-ae-v', path: p, ...(c ? { config: c } : {}), parsed: dcaevConfigFor(p, c, 'DC-AE-V') });
  }
  if (!candidates.length)
    throw new ValueError(`${dir}: no autoencoder: expected ${WAN_FILES.vae} (base Wan DiTs) or a DC-AE-V checkpoint dc-ae-v-*.pt / .safetensors (DC-VideoGen DiTs)`);
  const fits = candidates.filter((v) => vaeGeometry(v).channels === parsed.out_dim);
  if (fits.length !== 1)
    throw new ValueError(
      fits.length === 0
        ? `${dir}: the DiT (${cfgPath}) predicts ${parsed.out_dim} latent channels, but ${candidates.map((v) => `${basename(v.path)} has ${vaeGeometry(v).channels}`).join(' and ')}`
        : `${dir}: ${fits.map((v) => basename(v.path)).join(' and ')} both fit the DiT; keep one autoencoder in the folder`,
    );
  const vae = fits[0]!;

  let imageEncoder: FolderPart | undefined;
  if (mode === 'i2v') {
    const clip = file(WAN_FILES.clip, 'the CLIP image encoder (needed by an i2v DiT)')!;
    imageEncoder = { path: clip, ...(sideConfig(clip) ? { config: sideConfig(clip) } : {}) };
  } else file(WAN_FILES.clip, '', true);

  // the DiT weights: diffusion_pytorch_model (single or sharded), else the one weights file nobody else claimed
  let ditWeights: string | undefined;
  for (const n of ['diffusion_pytorch_model.safetensors.index.json', 'diffusion_pytorch_model.safetensors'])
    if (!ditWeights && names.includes(n)) ditWeights = join(dir, n);
  if (!ditWeights) {
    const rest = names.filter((n) => WEIGHTS_RE.test(n) && !SHARD_RE.test(n) && !claimed.has(n) && statSync(join(dir, n)).isFile());
    if (rest.length !== 1)
      throw new ValueError(
        rest.length === 0
          ? `${dir}: no DiT weights: expected diffusion_pytorch_model.safetensors (or its .index.json and shards) or one DiT checkpoint (.pt / .safetensors)`
          : `${dir}: cannot tell which file holds the DiT weights (${rest.join(', ')}); keep one, or name it diffusion_pytorch_model.safetensors`,
      );
    ditWeights = join(dir, rest[0]!);
  }
  return {
    dir,
    layout: 'wan',
    mode,
    dit: { path: ditWeights, config: cfgPath, parsed },
    vae,
    textEncoder,
    tokenizer,
    ...(imageEncoder ? { imageEncoder } : {}),
  };
}

/** Opens a weights file (headers, shard index, pickle; no tensor data) to refuse a broken one before any work. */
function weightKeys(path: string, what: string): Map<string, readonly number[]> {
  let w;
  try {
    w = openWeights(path);
  } catch (e) {
    throw new ValueError(`${what} ${path}: ${(e as Error).message}`);
  }
  try {
    return new Map([...w.tensors.keys()].map((k) => [k, w.tensors.shape(k)]));
  } finally {
    w.close();
  }
}

/** The DiT checkpoint's keys and shapes against the model its config builds (in Wan's or diffusers' names). */
function checkDitWeights(f: ModelFolder): void {
  const have = weightKeys(f.dit.path, 'DiT weights');
  const keys = [...have.keys()];
  const prefixed = keys.length > 0 && keys.every((k) => k.startsWith('0.'));
  const strip = (k: string) => (prefixed ? k.slice(2) : k);
  const diffusers = detectWanKeyFormat(keys.map(strip)) === 'diffusers';
  const got = new Map<string, readonly number[]>();
  for (const [k, sh] of have) {
    const s = strip(k);
    if (WAN_ONLY_KEYS.includes(s)) continue;
    let name = s;
    if (diffusers) {
      try {
        name = diffusersKeyToWan(s);
      } catch {
        /* reported as unexpected below */
      }
    }
    got.set(name, sh);
  }
  const want = new WanModel(f.dit.parsed).shapes();
  const missing = [...want.keys()].filter((k) => !got.has(k));
  const unexpected = [...got.keys()].filter((k) => !want.has(k));
  const mismatched = [...want].filter(([k, s]) => got.has(k) && (got.get(k)!.length !== s.length || got.get(k)!.some((d, i) => d !== s[i])));
  if (missing.length || unexpected.length || mismatched.length) {
    const parts = [
      missing.length ? `${missing.length} missing (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''})` : '',
      unexpected.length ? `${unexpected.length} unexpected (${unexpected.slice(0, 3).join(', ')}${unexpected.length > 3 ? ', ...' : ''})` : '',
      mismatched.length ? `${mismatched.length} of another shape (${mismatched.slice(0, 2).map(([k, s]) => `${k}: config [${s.join(', ')}], file [${got.get(k)!.join(', ')}]`).join('; ')})` : '',
    ].filter(Boolean);
    throw new ValueError(`DiT weights ${f.dit.path} do not match the DiT config ${f.dit.config}: ${parts.join(', ')} keys`);
  }
}

/**
 * Reads and checks a model folder (no tensor data is read): the layout, every component's file, the configs, that the
 * DiT and the autoencoder are a pair, and the DiT checkpoint's keys and shapes against its config (from the header).
 * Errors name the file and what was expected.
 */
export function resolveModelFolder(dir: string): ModelFolder {
  if (!existsSync(dir)) throw new ValueError(`model folder not found: ${dir}`);
  if (!isDir(dir)) throw new ValueError(`--model ${dir} is not a folder (a diffusers or Wan model folder; see docs/generate.md)`);
  const f = existsSync(join(dir, 'model_index.json')) ? resolveDiffusers(dir) : resolveWan(dir);
  const g = vaeGeometry(f.vae);
  if (f.dit.parsed.out_dim !== g.channels)
    throw new ValueError(`${f.dit.config}: the DiT predicts ${f.dit.parsed.out_dim} latent channels, but the autoencoder ${f.vae.config ?? f.vae.path} has ${g.channels}; they are not a pair`);
  if (f.textEncoder.dim !== undefined && f.textEncoder.dim !== f.dit.parsed.text_dim)
    throw new ValueError(`${join(f.textEncoder.path, 'config.json')}: the text encoder's width d_model ${f.textEncoder.dim} differs from the DiT's text_dim ${f.dit.parsed.text_dim} (${f.dit.config})`);
  checkDitWeights(f);
  weightKeys(f.vae.path, 'autoencoder weights');
  const d = generateDefaults(dir);
  return d ? { ...f, generateDefaults: d } : f;
}

/** The factories of the encoder implementations (src/text, src/models/umt5, src/models/clip). */
export interface EncoderLoaders {
  loadTokenizer(path: string): Promise<PromptTokenizer>;
  loadTextEncoder(path: string, opts?: { config?: string }): TextEncoder | Promise<TextEncoder>;
  loadImageEncoder(path: string, opts?: { config?: string }): ImageEncoder | Promise<ImageEncoder>;
}

/** The null embedding a [562] DiT checkpoint carries beside its weights (read from the header alone when absent). */
function readNullEmbedding(path: string): Tensor | null {
  const w = openWeights(path, { component: 'transformer' });
  try {
    for (const k of w.tensors.keys()) if (k === 'null_embedding' || k === '0.null_embedding') return w.tensors.get(k);
    return null;
  } finally {
    w.close();
  }
}

/** GenerationModels over a resolved folder: each component loaded when the pipeline asks for it. */
export function folderModels(f: ModelFolder, loaders: EncoderLoaders): GenerationModels {
  const cfgOpt = (p: FolderPart) => (p.config ? { config: p.config } : {});
  let nullEmb: Tensor | null | undefined;
  return {
    name: basename(f.dir),
    ditConfig: f.dit.parsed,
    aeGeometry: vaeGeometry(f.vae),
    textDim: f.textEncoder.dim,
    textEncoderId: weightsIdentity([f.textEncoder.path, ...(f.textEncoder.config ? [f.textEncoder.config] : [])]),
    tokenizer: () => loaders.loadTokenizer(f.tokenizer.path),
    textEncoder: () => loaders.loadTextEncoder(f.textEncoder.path, cfgOpt(f.textEncoder)),
    nullEmbedding: () => (nullEmb === undefined ? (nullEmb = readNullEmbedding(f.dit.path)) : nullEmb),
    dit: () => {
      const m = new WanModel(f.dit.parsed);
      loadWanWeights(m, f.dit.path);
      return m;
    },
    autoencoder: () => {
      if (f.vae.family === 'wan-vae') {
        const m = new WanVAE(f.vae.parsed);
        loadWanVaeWeights(m, f.vae.path);
        return new WanVaeAutoencoder(m);
      }
      return new DcaevAutoencoder(createModel(f.vae.parsed, f.vae.path));
    },
    ...(f.imageEncoder ? { imageEncoder: () => loaders.loadImageEncoder(f.imageEncoder!.path, cfgOpt(f.imageEncoder!)) } : {}),
  };
}
