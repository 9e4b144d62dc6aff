/**
 * A model's weights (safetensors, sharded safetensors with an index, torch.save, or a model folder holding one of
 * them) opened as a lazy TensorSource for Module.loadStateDict. Models never pick file formats; this module does:
 * - keys and shapes come from the safetensors header or the torch pickle alone, so loadStateDict reports missing,
 *   unexpected and mismatched keys before a single tensor byte is read (a bad file fails fast and small);
 * - every tensor read is checked for NaN and Inf (one pass over data already in memory), so corrupt weights fail here
 *   with the file and tensor named instead of turning every latent into NaN later.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import type { TensorSource } from '../nn/module.js';
import { FormatError, ShapeError, StateDictError, ValueError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { findNonFinite } from '../tensor/inplace.js';
import { isZipFile } from './files.js';
import { SafetensorsFile } from './safetensors.js';
import { openTorchStateDict } from './torch_checkpoint.js';

/** Throws a ValueError naming the file, the tensor and the first non-finite element; returns `t` otherwise. */
export function assertFiniteWeights(t: Tensor, path: string, key: string): Tensor {
  const bad = findNonFinite(t);
  if (!bad) return t;
  const i = bad.index;
  const at: number[] = [];
  let r = i;
  for (let a = t.shape.length - 1; a >= 0; a--) {
    at.unshift(r % t.shape[a]!);
    r = Math.floor(r / t.shape[a]!);
  }
  throw new ValueError(
    `${path}: weight "${key}" has ${bad.value} at index [${at.join(', ')}] (element ${i} of ${t.size}); the weights file is corrupt or was saved from a diverged run`,
  );
}

/** `raw` seen under other names: `names` maps each name the model asks for to the key stored in `raw`. */
export function renamedSource(raw: TensorSource, names: ReadonlyMap<string, string>): TensorSource {
  return { keys: () => names.keys(), shape: (k) => raw.shape(names.get(k)!), get: (k) => raw.get(names.get(k)!) };
}

/** A key/shape mismatch report that names the weights file (loadStateDict does not know it). */
export function inWeightsFile(e: unknown, source: string): unknown {
  return e instanceof StateDictError ? new StateDictError(`${source}: ${e.message}`, e.report) : e;
}

export interface WeightsFile {
  /** the path (or the shard index / file a folder resolved to), plus which state dict of a torch checkpoint was used */
  source: string;
  /** how the weights are stored */
  format: 'safetensors' | 'sharded-safetensors' | 'torch';
  /** the file (or shard index) the weights come from */
  file: string;
  /** torch checkpoints: which state dict was used (e.g. ema_model_state_dict[0.9999]); else the file */
  stateDict: string;
  /** safetensors header metadata (a sharded index's "metadata"); empty for torch checkpoints */
  metadata: Record<string, string>;
  tensors: TensorSource;
  /** the stored dtype of a tensor (safetensors names: F32, BF16, ...; torch: float32, bfloat16, ...), read from headers */
  dtype(key: string): string;
  close(): void;
}

export interface OpenWeightsOptions {
  /** a component of a diffusers pipeline folder (model_index.json): 'transformer', 'vae', 'text_encoder', ... */
  component?: string;
  /** torch checkpoints: the EMA weights (default) or the raw model's */
  prefer?: 'ema' | 'model';
  /** refuse NaN / Inf as tensors are read (default true; `dcvg convert` copies files as they are) */
  checkFinite?: boolean;
  /**
   * 'keep' (default): tensors keep their checkpoint dtype in memory (BF16 / F16 / I32 stay bf16 / f16 / i32, so a
   * bf16 model takes its file size, not twice it); 'f32': every tensor is widened to float32 as it is read.
   */
  dtype?: 'keep' | 'f32';
}

/** The weights file names a model folder may hold, in the order they are looked for (diffusers, Wan, transformers, ours). */
const FOLDER_WEIGHTS = ['diffusion_pytorch_model', 'model'];

/**
 * Opens a model's weights lazily; the caller must close() it. `path` may be:
 * - a `.safetensors` file, or a torch.save `.pt` / `.pth` checkpoint (zip + pickle);
 * - a sharded safetensors index (`*.safetensors.index.json`: {"weight_map": {key: shard file}}), shards beside it;
 * - a model folder: a diffusers model folder or the official Wan layout (`diffusion_pytorch_model.safetensors`, or its
 *   index and shards), a transformers-style folder (`model.safetensors[.index.json]`), a `dcvg train-ae` run folder
 *   (`model.safetensors`), or a folder with exactly one weights file; a diffusers pipeline folder (`model_index.json`)
 *   with `component` naming the sub-folder.
 * Keys and shapes come from headers (or the pickle) only, so a mismatch is reported before any tensor data is read.
 */
export function openWeights(path: string, opts: OpenWeightsOptions = {}): WeightsFile {
  if (!existsSync(path)) throw new ValueError(`weights file not found: ${path}`);
  const resolved = statSync(path).isDirectory() ? weightsInFolder(path, opts.component) : path;
  const check = opts.checkFinite ?? true;
  const finite = (t: Tensor, k: string) => (check ? assertFiniteWeights(t, resolved, k) : t);
  const dtype = opts.dtype ?? 'keep';
  if (resolved.endsWith('.index.json')) return openShardedSafetensors(resolved, finite, dtype);
  if (isZipFile(resolved)) {
    const sd = openTorchStateDict(resolved, { prefer: opts.prefer, dtype });
    return {
      source: `${resolved} (${sd.source})`,
      format: 'torch',
      file: resolved,
      stateDict: sd.source,
      metadata: {},
      tensors: { keys: () => sd.keys(), shape: (k) => sd.shape(k), get: (k) => finite(sd.get(k), k) },
      dtype: (k) => sd.dtype(k),
      close: () => sd.close(),
    };
  }
  const f = SafetensorsFile.open(resolved);
  return {
    source: resolved,
    format: 'safetensors',
    file: resolved,
    stateDict: resolved,
    metadata: f.metadata,
    tensors: { keys: () => f.keys(), shape: (k) => f.info(k).shape, get: (k) => finite(f.tensor(k, { dtype }), k) },
    dtype: (k) => f.info(k).dtype,
    close: () => f.close(),
  };
}

/**
 * The metadata of a .safetensors weights file, or of the weights file a folder holds (a `dcvg train-ae` run folder, a
 * model folder); null for anything else (a missing path, other formats, an unreadable header).
 */
export function safetensorsMetadataOf(path: string): Record<string, string> | null {
  if (!existsSync(path)) return null;
  if (statSync(path).isDirectory()) {
    try {
      path = weightsInFolder(path);
    } catch {
      return null;
    }
  }
  if (!path.endsWith('.safetensors')) return null;
  try {
    const f = SafetensorsFile.open(path);
    try {
      return { ...f.metadata };
    } finally {
      f.close();
    }
  } catch {
    return null;
  }
}

/** The weights file (or shard index) a model folder holds. */
export function weightsInFolder(dir: string, component?: string): string {
  if (existsSync(join(dir, 'model_index.json'))) {
    // A diffusers pipeline: one folder per component.
    const comps = readdirSync(dir).filter((d) => statSync(join(dir, d)).isDirectory() && existsSync(join(dir, d, 'config.json')));
    if (!component) throw new ValueError(`${dir} is a diffusers pipeline folder; name the component to load (one of: ${comps.join(', ') || 'none found'})`);
    if (!comps.includes(component)) throw new ValueError(`${dir} has no component "${component}" (has: ${comps.join(', ') || 'none'})`);
    return weightsInFolder(join(dir, component));
  }
  if (component !== undefined && existsSync(join(dir, component)) && statSync(join(dir, component)).isDirectory()) return weightsInFolder(join(dir, component));
  for (const base of FOLDER_WEIGHTS) {
    for (const name of [`${base}.safetensors.index.json`, `${base}.safetensors`]) if (existsSync(join(dir, name))) return join(dir, name);
  }
  const names = readdirSync(dir);
  const indexes = names.filter((n) => n.endsWith('.safetensors.index.json'));
  const singles = names.filter((n) => /\.(safetensors|pt|pth)$/.test(n) && !/-\d+-of-\d+\.safetensors$/.test(n));
  if (indexes.length === 1) return join(dir, indexes[0]!);
  if (indexes.length === 0 && singles.length === 1) return join(dir, singles[0]!);
  const found = [...indexes, ...singles];
  throw new ValueError(
    found.length
      ? `${dir} holds several weights files (${found.join(', ')}); pass the one to load`
      : `${dir} holds no weights file (.safetensors, .safetensors.index.json, .pt or .pth)`,
  );
}

/**
 * Sharded safetensors as written by diffusers / transformers: an index {"metadata": {...}, "weight_map": {key: file}}
 * with the shards beside it. Every shard's header is read and checked against the map (a key in the wrong shard, in
 * two shards, or missing from the map is refused) before any data.
 */
function openShardedSafetensors(indexPath: string, finite: (t: Tensor, k: string) => Tensor, dtype: 'keep' | 'f32'): WeightsFile {
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new FormatError(`${indexPath}: not a valid shard index (${(e as Error).message})`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new FormatError(`${indexPath}: a shard index needs a "weight_map" object {tensor name: shard file}`);
  const meta = (index as { metadata?: unknown }).metadata;
  const metadata: Record<string, string> =
    typeof meta === 'object' && meta !== null && !Array.isArray(meta) ? Object.fromEntries(Object.entries(meta).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])) : {};
  const dir = dirname(indexPath);
  const shardOf = new Map<string, string>();
  for (const [k, v] of Object.entries(map as Record<string, unknown>)) {
    // Shards live beside the index: a name that climbs out of the folder is not one.
    if (typeof v !== 'string' || v === '' || isAbsolute(v) || v.split(/[\\/]/).includes('..'))
      throw new FormatError(`${indexPath}: weight_map["${k}"] must name a shard file beside the index, got ${JSON.stringify(v)}`);
    shardOf.set(k, v);
  }
  if (shardOf.size === 0) throw new FormatError(`${indexPath}: weight_map is empty`);
  const files = new Map<string, SafetensorsFile>();
  const closeAll = () => {
    for (const f of files.values()) f.close();
  };
  try {
    for (const shard of new Set(shardOf.values())) {
      const p = join(dir, shard);
      if (!existsSync(p)) throw new FormatError(`${indexPath}: shard ${shard} is missing (expected ${p})`);
      files.set(shard, SafetensorsFile.open(p));
    }
    const seen = new Map<string, string>();
    for (const [shard, f] of files) {
      for (const k of f.keys()) {
        const other = seen.get(k);
        if (other !== undefined) throw new FormatError(`${indexPath}: tensor "${k}" is stored in two shards (${other} and ${shard})`);
        seen.set(k, shard);
        const want = shardOf.get(k);
        if (want === undefined) throw new FormatError(`${indexPath}: shard ${shard} holds "${k}", which the weight_map does not list`);
        if (want !== shard) throw new FormatError(`${indexPath}: weight_map puts "${k}" in ${want}, but it is in ${shard}`);
      }
    }
    for (const [k, shard] of shardOf) if (!seen.has(k)) throw new FormatError(`${indexPath}: weight_map lists "${k}" in ${shard}, which does not hold it`);
  } catch (e) {
    closeAll();
    throw e;
  }
  const file = (k: string) => {
    const shard = shardOf.get(k);
    if (shard === undefined) throw new ShapeError(`${indexPath}: no tensor named "${k}"`);
    return files.get(shard)!;
  };
  return {
    source: indexPath,
    format: 'sharded-safetensors',
    file: indexPath,
    stateDict: indexPath,
    metadata,
    tensors: { keys: () => shardOf.keys(), shape: (k) => file(k).info(k).shape, get: (k) => finite(file(k).tensor(k, { dtype }), k) },
    dtype: (k) => file(k).info(k).dtype,
    close: closeAll,
  };
}
