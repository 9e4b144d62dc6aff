/**
 * Loading Wan's CLIP visual tower from the official checkpoint (`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`,
 * a torch.save zip) or safetensors in its keys, and the tensor-file runner behind `dcvg run clip`.
 *
 * Loading checks the whole file's key names and shapes against the XLMRobertaCLIP layout from the header / pickle
 * alone, then reads only the visual tensors the features use: the text tower (560 M parameters in the released
 * file), log_scale, and — unless all blocks are asked for — the last block, post_norm and head are never read into
 * memory. bf16 / f16 tensors stay in their dtype.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DTypeError, ShapeError, StateDictError, ValueError, fmtShape, type LoadReport } from '../../errors.js';
import { SafetensorsFile } from '../../io/safetensors.js';
import { inWeightsFile, openWeights } from '../../io/weights.js';
import { formatLoadReport, type TensorSource } from '../../nn/module.js';
import { dtypeBytes } from '../../tensor/dtype.js';
import { Rng } from '../../tensor/random.js';
import { type Tensor, empty, firstNonFinite, tensor } from '../../tensor/tensor.js';
import { copyInto } from '../../tensor/inplace.js';
import * as ops from '../../tensor/ops.js';
import { parseClipConfig, resolveClipConfig, type ClipConfig } from './config.js';
import { clipCheckpointKeyShapes, clipHfSources, clipKeysRead, detectClipKeyFormat, isClipHfIgnoredKey, type ClipHfSource, type ClipKeyFormat } from './keys.js';
import { ClipVisual, type ClipBlocksMode } from './model.js';
import { checkClipImage } from './preprocess.js';

/** The released checkpoint's file name, looked for first in a Wan model folder. */
export const CLIP_CHECKPOINT_NAME = 'models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth';

export interface ClipLoadOptions {
  /** 'penultimate' (default): what image-to-video uses; 'all': also the last block (featuresAllBlocks) */
  blocks?: ClipBlocksMode;
  /** 'keep' (default): bf16 / f16 weights stay so; 'f32': widened as read */
  dtype?: 'keep' | 'f32';
}

export interface ClipLoadResult {
  /** the file (and state dict) the weights came from */
  source: string;
  /** the checkpoint's key names: Wan's official ones, or transformers' CLIPVisionModel (diffusers `image_encoder/`) */
  format: ClipKeyFormat;
  /** keys whose data was read, in state-dict order */
  read: string[];
  /** keys of the file that were left unread (text tower, log_scale, unused visual keys) */
  skipped: string[];
  /** bytes of tensor data read (as stored: 2 per bf16 / f16 value) */
  bytesRead: number;
  /** dtype in memory (f32, bf16, f16) -> number of tensors read */
  dtypes: Record<string, number>;
}

function shapeEq(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * A transformers CLIPVisionModel state dict seen in the official names (q/k/v concatenated into to_qkv as they are
 * read, in their stored dtype); keys it cannot place keep their own names so the strict check reports them.
 */
function officialView(c: ClipConfig, raw: TensorSource): { src: TensorSource; format: ClipKeyFormat; ignored: string[] } {
  const keys = [...raw.keys()];
  const format = detectClipKeyFormat(keys);
  if (format === 'official') return { src: raw, format, ignored: [] };
  const layout = clipCheckpointKeyShapes(c);
  const have = new Set(keys);
  const placed = new Map<string, ClipHfSource>();
  const used = new Set<string>();
  for (const [k, s] of clipHfSources(c)) {
    const parts = s.kind === 'qkv' ? s.keys : [s.key];
    const present = parts.filter((p) => have.has(p));
    if (present.length === parts.length) {
      placed.set(k, s);
      for (const p of parts) used.add(p);
    } else if (present.length)
      throw new StateDictError(`${k} is stored as ${parts.join(' + ')} in transformers' names, but ${parts.filter((p) => !have.has(p)).join(', ')} is missing`, {
        missing: parts.filter((p) => !have.has(p)),
        unexpected: [],
        mismatched: [],
      });
  }
  const ignored = keys.filter((k) => !used.has(k) && isClipHfIgnoredKey(k));
  const unknown = keys.filter((k) => !used.has(k) && !isClipHfIgnoredKey(k));
  const shape = (k: string): readonly number[] => {
    const s = placed.get(k);
    if (!s) return raw.shape(k);
    const want = layout.get(k)!;
    if (s.kind === 'same') return raw.shape(s.key);
    if (s.kind === 'reshape') {
      const got = raw.shape(s.key);
      return shapeEq(got, want.slice(want.length - got.length)) && want.slice(0, want.length - got.length).every((d) => d === 1) ? want : got;
    }
    if (s.kind === 'transpose') return [...raw.shape(s.key)].reverse();
    const [q, kk, v] = s.keys.map((x) => raw.shape(x)) as [readonly number[], readonly number[], readonly number[]];
    return shapeEq(q, kk) && shapeEq(q, v) && q.length ? [3 * q[0]!, ...q.slice(1)] : q;
  };
  const get = (k: string): Tensor => {
    const s = placed.get(k);
    if (!s) return raw.get(k);
    if (s.kind === 'same') return raw.get(s.key);
    if (s.kind === 'reshape') return ops.reshape(raw.get(s.key), layout.get(k)!);
    if (s.kind === 'transpose') {
      // the head: never read by the features; widened to f32 if ever asked for
      const t = raw.get(s.key);
      return ops.contiguous(ops.transpose(t.dtype === 'f32' ? t : tensor(t.readSync(), t.shape), 0, 1));
    }
    const parts = s.keys.map((x) => raw.get(x));
    const dtype = parts.every((t) => t.dtype === parts[0]!.dtype) ? parts[0]!.dtype : 'f32';
    const n = parts[0]!.shape[0]!;
    const out = empty([3 * n, ...parts[0]!.shape.slice(1)], dtype);
    // values of the stored dtype written back to it: exact
    parts.forEach((t, i) => copyInto(ops.slice(out, 0, i * n, (i + 1) * n), t));
    return out;
  };
  return { src: { keys: () => [...placed.keys(), ...unknown], shape, get }, format, ignored };
}

/** A Wan model folder holds the CLIP checkpoint beside the DiT, T5 and VAE files: pick it by its released name. */
function resolveClipPath(path: string): string {
  if (existsSync(path) && statSync(path).isDirectory() && existsSync(join(path, CLIP_CHECKPOINT_NAME))) return join(path, CLIP_CHECKPOINT_NAME);
  return path;
}

/**
 * A stable identity of a weights file without reading it whole: sha256 of its size, first and last MiB (a torch zip
 * ends with its central directory, which holds every storage's CRC-32; a safetensors file starts with its header).
 */
export function clipWeightsFingerprint(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const h = createHash('sha256').update(`clip-visual:${size}:`);
    const n = Math.min(size, 1 << 20);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 0);
    h.update(buf);
    readSync(fd, buf, 0, n, size - n);
    h.update(buf);
    return h.digest('hex');
  } finally {
    closeSync(fd);
  }
}

/**
 * Attaches the visual weights the mode needs to `model`. Every key of the file must belong to the XLMRobertaCLIP
 * layout with its shape (checked before any data is read); the keys read must all be there.
 */
export function loadClipVisualWeights(model: ClipVisual, path: string, opts: ClipLoadOptions = {}): ClipLoadResult {
  const blocks = opts.blocks ?? 'penultimate';
  if (blocks !== 'penultimate' && blocks !== 'all') throw new ValueError(`CLIP: blocks must be 'penultimate' or 'all', got ${JSON.stringify(blocks)}`);
  const w = openWeights(resolveClipPath(path), { dtype: opts.dtype ?? 'keep', component: 'image_encoder' });
  try {
    const layout = clipCheckpointKeyShapes(model.config);
    const want = clipKeysRead(model.config, blocks);
    const view = officialView(model.config, w.tensors);
    const src = view.src;
    const have = [...src.keys()];
    const haveSet = new Set(have);
    const report: LoadReport = { missing: [], unexpected: [], mismatched: [] };
    for (const k of have) {
      const s = layout.get(k);
      if (!s) {
        report.unexpected.push(k);
        continue;
      }
      const got = src.shape(k);
      if (got.length !== s.length || got.some((d, i) => d !== s[i])) report.mismatched.push({ key: k, expected: [...s], got: [...got] });
    }
    for (const k of want) if (!haveSet.has(k)) report.missing.push(k);
    if (report.missing.length + report.unexpected.length + report.mismatched.length)
      throw new StateDictError(
        `not a checkpoint of CLIP "${model.config.name}" (${view.format === 'official' ? 'XLMRobertaCLIP keys' : "transformers' CLIPVisionModel keys, shown in the official names"}): ${formatLoadReport(report)}`,
        report,
      );
    // Read every tensor before assigning any, so a bad tensor late in the file leaves the model as it was.
    const staged: [string, Tensor][] = [];
    let bytesRead = 0;
    const dtypes: Record<string, number> = {};
    for (const k of want) {
      const t = src.get(k);
      if (t.dtype === 'i32') throw new DTypeError(`${w.source}: "${k}" holds integers; CLIP weights are floating point`);
      bytesRead += t.size * dtypeBytes(t.dtype);
      const d = t.dtype;
      dtypes[d] = (dtypes[d] ?? 0) + 1;
      staged.push([k, t]);
    }
    for (const [k, t] of staged) model.getParam(k).set(t, k);
    const wantSet = new Set(want);
    model.fingerprint = `${clipWeightsFingerprint(w.file)}:${blocks}`;
    return { source: w.source, format: view.format, read: want, skipped: [...have.filter((k) => !wantSet.has(k)), ...view.ignored], bytesRead, dtypes };
  } catch (e) {
    throw inWeightsFile(e, w.source);
  } finally {
    w.close();
  }
}

/** The transformers config.json of a diffusers `image_encoder/` folder (or of a pipeline folder's), if there is one. */
function folderConfig(path: string): ClipConfig | null {
  if (!existsSync(path) || !statSync(path).isDirectory()) return null;
  for (const p of [join(path, 'config.json'), join(path, 'image_encoder', 'config.json')])
    if (existsSync(p) && (existsSync(join(path, 'model_index.json')) || p === join(path, 'config.json'))) {
      let json: unknown;
      try {
        json = JSON.parse(readFileSync(p, 'utf8'));
      } catch (e) {
        throw new ValueError(`CLIP config ${p}: not valid JSON (${(e as Error).message})`);
      }
      return parseClipConfig(json, undefined, p);
    }
  return null;
}

/**
 * The image encoder of image-to-video from Wan's CLIP checkpoint (`.pth`, `.safetensors`, or a Wan model folder
 * holding `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`), or from transformers' CLIPVisionModel weights
 * (a diffusers `image_encoder/` folder, or a pipeline folder holding one; its config.json is the config). `config`
 * defaults to that config.json, else the released ViT-H/14.
 */
export function loadClipVisual(path: string, opts: ClipLoadOptions & { config?: string | object } = {}): ClipVisual {
  const m = new ClipVisual(opts.config !== undefined ? resolveClipConfig(opts.config) : (folderConfig(path) ?? resolveClipConfig('open-clip-xlm-roberta-large-vit-huge-14')));
  loadClipVisualWeights(m, path, opts);
  return m;
}

/**
 * Random weights in the whole checkpoint layout (log_scale, visual, textual; the visual keys only with `textual: false`), for tests
 * and benchmarks: matrices N(0, 1 / fan_in), LayerNorm weights 1 + N(0, 0.1^2), biases N(0, 0.02^2), cls / pos
 * embeddings and head N(0, 1 / dim) (the reference's initial gain), log_scale log(1 / 0.07).
 */
export function clipRandomState(config: ClipConfig, seed: number, opts: { textual?: boolean } = {}): Map<string, Tensor> {
  const rng = new Rng(seed);
  const out = new Map<string, Tensor>();
  for (const [k, shape] of clipCheckpointKeyShapes(config)) {
    if (opts.textual === false && !k.startsWith('visual.')) continue;
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    if (k === 'log_scale') d[0] = Math.log(1 / 0.07);
    else if (/(^|\.)(cls_embedding|pos_embedding|head)$/.test(k)) {
      const std = 1 / Math.sqrt(config.vision_dim);
      for (let i = 0; i < n; i++) d[i] = std * rng.normal();
    } else if (shape.length > 1) {
      const std = Math.sqrt(shape[0]! / n);
      for (let i = 0; i < n; i++) d[i] = std * rng.normal();
    } else if (/norm\d?\.weight$/.test(k)) for (let i = 0; i < n; i++) d[i] = 1 + 0.1 * rng.normal();
    else for (let i = 0; i < n; i++) d[i] = 0.02 * rng.normal();
    out.set(k, tensor(d, shape));
  }
  return out;
}

/** What `dcvg run clip` reads from an inputs file. */
export interface ClipInputs {
  /** `image0`, `image1`, ... (3, H, W) in [-1, 1], in order */
  images: Tensor[];
  /** `pixel_values` (B, 3, S, S), when present and no images are given */
  pixelValues: Tensor | null;
}

/** `image0..N` and / or `pixel_values` of an inputs file, checked (shapes, finite values) before any weights are read. */
export function readClipInputs(path: string, config: ClipConfig): ClipInputs {
  const f = SafetensorsFile.open(path);
  try {
    const keys = f.keys();
    const idx = keys
      .map((k) => /^image(\d+)$/.exec(k))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    idx.forEach((v, i) => {
      if (v !== i) throw new ShapeError(`${path}: images must be named image0, image1, ... without gaps; image${i} is missing (has: ${idx.map((j) => `image${j}`).join(', ')})`);
    });
    const images = idx.map((i) => {
      const x = f.tensor(`image${i}`);
      checkClipImage(x, `${path}: image${i}`);
      return x;
    });
    let pixelValues: Tensor | null = null;
    // given images, pixel_values are ours to compute: a file's own (e.g. the fixture's) is not read
    if (!images.length && f.has('pixel_values')) {
      const x = f.tensor('pixel_values');
      const S = config.image_size;
      if (x.ndim !== 4 || x.shape[1] !== 3 || x.shape[2] !== S || x.shape[3] !== S || x.shape[0]! < 1)
        throw new ShapeError(`${path}: pixel_values must be (B, 3, ${S}, ${S}) for CLIP "${config.name}" (image_size ${S}), got ${fmtShape(x.shape)}`);
      const i0 = firstNonFinite(x.readSync());
      if (i0 >= 0) throw new ValueError(`${path}: pixel_values ${fmtShape(x.shape)} holds a non-finite value (element ${i0})`);
      pixelValues = x;
    }
    if (!images.length && !pixelValues)
      throw new ShapeError(`${path}: no "pixel_values" (B, 3, ${config.image_size}, ${config.image_size}) and no images "image0", "image1", ... (3, H, W) (has: ${keys.join(', ') || 'nothing'})`);
    return { images, pixelValues };
  } finally {
    f.close();
  }
}

/**
 * `dcvg run clip`: with images, `pixel_values` (our preprocessing of them) and `features` of those; otherwise
 * `features` of the file's `pixel_values`. With blocks 'all' also `features_all_blocks`. Inputs are read and checked
 * before the weights are opened.
 */
export function runClip(cfg: string | object, weightsPath: string, inputsPath: string, opts: { blocks?: ClipBlocksMode } = {}): Map<string, Tensor> {
  const config = resolveClipConfig(cfg);
  const inputs = readClipInputs(inputsPath, config);
  const model = new ClipVisual(config);
  const pv = inputs.images.length ? model.preprocess(inputs.images) : inputs.pixelValues!;
  loadClipVisualWeights(model, weightsPath, { blocks: opts.blocks });
  const out = new Map<string, Tensor>();
  if (inputs.images.length) out.set('pixel_values', pv);
  const features = model.features(pv);
  out.set('features', features);
  if (opts.blocks === 'all') out.set('features_all_blocks', model.lastBlock(features));
  return out;
}
