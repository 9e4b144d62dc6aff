/**
 * Loading umT5 weights (Wan's `models_t5_umt5-xxl-enc-bf16.pth`, safetensors in official or HuggingFace names, a
 * transformers / diffusers `text_encoder/` folder with config.json and sharded safetensors), the `Umt5Encoder` the
 * pipelines drive (TextEncoder: real tokens only), random checkpoints for tests, and `dcvg run umt5`.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { SafetensorsFile } from '../../io/safetensors.js';
import { inWeightsFile, openWeights, renamedSource, weightsInFolder } from '../../io/weights.js';
import type { LoadReport, TensorSource } from '../../nn/module.js';
import type { TextEncoder } from '../../pipelines/components.js';
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import { Rng } from '../../tensor/random.js';
import { Tensor, intTensor, noGrad, tensor } from '../../tensor/tensor.js';
import * as ops from '../../tensor/ops.js';
import { parseUmt5Config, readUmt5ConfigJson, resolveUmt5Config, umt5ConfigToJson, validateUmt5Config, type Umt5Config } from './config.js';
import { HF_TIED_EMBEDDING, detectUmt5KeyFormat, hfKeyToUmt5, umt5KeyToHf, type Umt5KeyFormat } from './keys.js';
import { Umt5Model } from './model.js';

export interface Umt5LoadResult {
  source: string;
  format: Umt5KeyFormat;
  report: LoadReport;
}

/** A source seen in the official names (HuggingFace names renamed, the tied embedding copy never read). */
function officialView(raw: TensorSource, sharedPos: boolean): { src: TensorSource; format: Umt5KeyFormat } {
  const keys = [...raw.keys()];
  const format = detectUmt5KeyFormat(keys);
  if (format === 'official') return { src: raw, format };
  const has = new Set(keys);
  const names = new Map<string, string>();
  for (const k of keys) {
    if (k === HF_TIED_EMBEDDING && has.has('shared.weight')) continue;
    let n: string;
    try {
      n = hfKeyToUmt5(k, sharedPos);
    } catch {
      n = k; // unknown: left as it is, for the strict report
    }
    names.set(n, k);
  }
  return { src: renamedSource(raw, names), format };
}

/**
 * Loads weights strictly (every key, exact shapes, nothing else, checked from the header or pickle before any data is
 * read; NaN / Inf refused). BF16 / F16 weights stay in their dtype. Accepts .pth (torch zip), .safetensors, a sharded
 * index, or a model folder / diffusers pipeline folder (component `text_encoder`).
 */
export function loadUmt5Weights(model: Umt5Model, path: string): Umt5LoadResult {
  const w = openWeights(path, { component: 'text_encoder' });
  try {
    const v = officialView(w.tensors, model.config.shared_pos);
    const report = model.loadStateDict(v.src);
    return { source: w.source, format: v.format, report };
  } catch (e) {
    throw inWeightsFile(e, w.source);
  } finally {
    w.close();
  }
}

/** The state dict in the official or HuggingFace names (for saveSafetensors). */
export function umt5StateDict(model: Umt5Model, format: Umt5KeyFormat = 'official'): Map<string, Tensor> {
  const sd = model.stateDict();
  if (format === 'official') return sd;
  return new Map([...sd].map(([k, t]) => [umt5KeyToHf(k, model.config.shared_pos), t]));
}

/**
 * The config a checkpoint's shapes imply (nothing read but headers): vocab and dim from the token embedding, layers
 * from the block indices, dim_attn from q, dim_ffn from fc1, heads and buckets from a position table, shared_pos from
 * where that table is. eps and max_dist are not stored in weights: 1e-6 and 128 (umT5's).
 */
export function inferUmt5Config(keys: Iterable<string>, shape: (k: string) => readonly number[], name = 'inferred'): Umt5Config {
  const all = [...keys];
  const fmt = detectUmt5KeyFormat(all);
  const has = new Set(all);
  const sh = (k: string) => {
    if (!has.has(k)) throw new ValueError(`cannot infer the umT5 config: the checkpoint has no "${k}"`);
    return shape(k);
  };
  const hf = fmt === 'hf';
  let layers = 0;
  const re = hf ? /^encoder\.block\.(\d+)\./ : /^blocks\.(\d+)\./;
  for (const k of all) {
    const m = re.exec(k);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  if (layers === 0) throw new ValueError('cannot infer the umT5 config: the checkpoint has no blocks');
  const name0 = (k: string) => (hf ? umt5KeyToHf(k) : k);
  const emb = hf && !has.has('shared.weight') ? HF_TIED_EMBEDDING : name0('token_embedding.weight');
  const [vocab, dim] = sh(emb) as [number, number];
  let perLayer: boolean;
  let table: readonly number[];
  if (hf) {
    // T5 / mT5 keep the one shared table in block 0; umT5 has one in every block (one block: taken as umT5)
    perLayer = layers === 1 || has.has('encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight');
    table = sh('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight');
  } else {
    perLayer = has.has('blocks.0.pos_embedding.embedding.weight');
    table = sh(perLayer ? 'blocks.0.pos_embedding.embedding.weight' : 'pos_embedding.embedding.weight');
  }
  return validateUmt5Config({
    name,
    vocab: vocab!,
    dim: dim!,
    dim_attn: sh(name0('blocks.0.attn.q.weight'))[0]!,
    dim_ffn: sh(name0('blocks.0.ffn.fc1.weight'))[0]!,
    num_heads: table[1]!,
    num_layers: layers,
    num_buckets: table[0]!,
    max_dist: 128,
    shared_pos: !perLayer,
    eps: 1e-6,
  });
}

// ---------------------------------------------------------------------------------------------------------------
// fingerprint

const SAMPLE = 64 * 1024;
const SAMPLES = 64;

/**
 * A content fingerprint of a weights file without reading all of it (the XXL is 11.4 GB): sha256 over its size, its
 * first and last MiB (safetensors header / torch pickle and zip directory) and 64 evenly spaced 64 KiB samples. Equal
 * bytes give equal fingerprints wherever the file lies; any retrained or fine-tuned checkpoint changes the samples.
 */
function fileFingerprint(path: string, h: ReturnType<typeof createHash>): void {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    h.update(`size ${size}\n`);
    const buf = Buffer.alloc(1 << 20);
    const at = (pos: number, len: number) => {
      const n = readSync(fd, buf, 0, Math.min(len, buf.length), pos);
      h.update(buf.subarray(0, n));
    };
    at(0, 1 << 20);
    at(Math.max(0, size - (1 << 20)), 1 << 20);
    for (let i = 0; i < SAMPLES; i++) at(Math.floor((size * i) / SAMPLES), SAMPLE);
  } finally {
    closeSync(fd);
  }
}

/** The files a weights path resolves to (a sharded index: the index and every shard), in a stable order. */
function weightFiles(path: string): string[] {
  const file = statSync(path).isDirectory() ? weightsInFolder(path, 'text_encoder') : path;
  if (!file.endsWith('.index.json')) return [file];
  const map = (JSON.parse(readFileSync(file, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
  return [file, ...[...new Set(Object.values(map))].sort().map((s) => join(dirname(file), s))];
}

export function umt5WeightsFingerprint(path: string, config: Umt5Config): string {
  const h = createHash('sha256');
  h.update(`umt5 ${JSON.stringify(umt5ConfigToJson(config))}\n`);
  for (const f of weightFiles(path)) fileFingerprint(f, h);
  return h.digest('hex');
}

// ---------------------------------------------------------------------------------------------------------------
// the TextEncoder

/**
 * umT5 as the pipelines use it: encode(ids, mask) gives per prompt the (L_b, dim) hidden states of its real tokens.
 * Padding is never computed: each row runs on its first L_b tokens only. That equals the reference's full-length
 * forward on those positions, because the reference gives masked keys zero attention weight (their bias is the float32
 * minimum) and every other step is per token.
 */
export class Umt5Encoder implements TextEncoder {
  readonly dim: number;
  constructor(
    readonly model: Umt5Model,
    readonly fingerprint: string,
  ) {
    this.dim = model.config.dim;
  }

  get config(): Umt5Config {
    return this.model.config;
  }

  /** Drops the weights and scratch buffers (the pipelines free the encoder before the DiT runs); encode() then throws. */
  dispose(): void {
    for (const [, p] of this.model.namedParams()) p.clear();
    this.model.widenScratch?.clear();
  }

  /** Real lengths of each row of a mask (B, L): 1s first, then 0s; anything else is refused. */
  static realLengths(mask: Tensor, B: number, L: number): number[] {
    if (mask.ndim !== 2 || mask.shape[0] !== B || mask.shape[1] !== L) throw new ShapeError(`mask must be (${B}, ${L}) like ids, got ${fmtShape(mask.shape)}`);
    const m = mask.readSync();
    const out: number[] = [];
    for (let b = 0; b < B; b++) {
      let n = 0;
      while (n < L && m[b * L + n] === 1) n++;
      for (let i = n; i < L; i++) {
        const v = m[b * L + i]!;
        if (v !== 0)
          throw new ValueError(
            v === 1 ? `mask row ${b}: a real token at position ${i} after padding at ${n}; real tokens must come first` : `mask[${b}, ${i}] is ${v}; a mask holds 1 (real token) or 0 (padding)`,
          );
      }
      if (n === 0) throw new ValueError(`mask row ${b} has no real token (the tokenizer always gives at least the eos)`);
      out.push(n);
    }
    return out;
  }

  encode(ids: Tensor, mask: Tensor): Tensor[] {
    if (ids.ndim !== 2) throw new ShapeError(`ids must be (B, L) token ids, got ${fmtShape(ids.shape)}`);
    const [B, L] = ids.shape as [number, number];
    const lens = Umt5Encoder.realLengths(mask, B, L);
    const all = ids.readSync();
    const seqs = lens.map((n, b) => {
      const row = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = all[b * L + i]!;
        if (!Number.isInteger(v) || v < 0 || v >= this.model.config.vocab)
          throw new ValueError(`ids[${b}, ${i}] is ${v}, not a token id in [0, ${this.model.config.vocab})`);
        row[i] = v;
      }
      return row;
    });
    // all prompts in one pass over the weights, each attending only within itself
    return noGrad(() => this.model.forwardSequences(seqs));
  }
}

export interface LoadUmt5Options {
  /** a preset, a JSON path (`file.json#entry`), or an object; default: the folder's config.json, else inferred from the shapes */
  config?: string | object;
  /** the weights' identity in cache keys (default: umt5WeightsFingerprint, a sampled content hash) */
  fingerprint?: string;
}

/** The config.json of a transformers / diffusers text encoder folder (or pipeline folder's text_encoder/), if any. */
function folderConfig(path: string): string | null {
  if (!existsSync(path) || !statSync(path).isDirectory()) return null;
  for (const p of [join(path, 'text_encoder', 'config.json'), join(path, 'config.json')]) if (existsSync(p) && !existsSync(join(dirname(p), 'model_index.json'))) return p;
  return null;
}

/** The official Wan release folder (Wan2.1-T2V-14B/ ...) keeps the encoder as `models_t5_*.pth` beside the DiT. */
function wanLayoutFile(path: string): string | null {
  if (!statSync(path).isDirectory() || existsSync(join(path, 'model_index.json'))) return null;
  const t5 = readdirSync(path).filter((n) => /^models_t5_.*\.(pth|pt|safetensors)$/.test(n));
  if (t5.length > 1) throw new ValueError(`${path} holds several umT5 checkpoints (${t5.join(', ')}); pass the one to load`);
  return t5.length ? join(path, t5[0]!) : null;
}

/**
 * The umT5 encoder from Wan's .pth (or the Wan release folder holding it), a safetensors file (official or HuggingFace names) or a `text_encoder/` folder
 * (config.json in HuggingFace's vocabulary + sharded safetensors). BF16 weights stay BF16.
 */
export function loadUmt5(path0: string, opts: LoadUmt5Options = {}): Umt5Encoder {
  if (!existsSync(path0)) throw new ValueError(`umT5 weights not found: ${path0}`);
  const path = wanLayoutFile(path0) ?? path0;
  let config: Umt5Config;
  if (opts.config !== undefined) config = resolveUmt5Config(opts.config);
  else {
    const cj = folderConfig(path);
    if (cj) config = parseUmt5Config(readUmt5ConfigJson(cj), undefined, cj);
    else {
      const w = openWeights(path, { component: 'text_encoder' });
      try {
        config = inferUmt5Config(w.tensors.keys(), (k) => w.tensors.shape(k), 'umt5');
      } catch (e) {
        throw e instanceof ValueError ? new ValueError(`${w.source}: ${e.message}`) : e;
      } finally {
        w.close();
      }
    }
  }
  const model = new Umt5Model(config);
  loadUmt5Weights(model, path);
  return new Umt5Encoder(model, opts.fingerprint ?? umt5WeightsFingerprint(path, config));
}

// ---------------------------------------------------------------------------------------------------------------
// random checkpoints

/**
 * Random weights in the official keys, with the reference's init_weights scales (norms 1, token embedding N(0, 1),
 * gate / fc1 N(0, dim^-1/2), fc2 N(0, dim_ffn^-1/2), q N(0, (dim * dim_attn)^-1/2), k / v N(0, dim^-1/2),
 * o N(0, (heads * dim_attn)^-1/2), position tables N(0, (2 * buckets * heads)^-1/2)), deterministic per seed.
 * dtype 'bf16' rounds each tensor (as the released checkpoint is stored).
 */
export function umt5RandomState(cfg: Umt5Config | string | object, seed: number, opts: { dtype?: 'f32' | 'bf16'; format?: Umt5KeyFormat } = {}): Map<string, Tensor> {
  const c = typeof cfg === 'object' && 'vocab' in cfg && 'name' in cfg ? validateUmt5Config({ ...(cfg as Umt5Config) }) : resolveUmt5Config(cfg);
  const model = new Umt5Model(c);
  const rng = new Rng(seed);
  const std = (key: string): number => {
    if (/norm1?2?\.weight$/.test(key) && !key.includes('embedding')) return 0;
    if (key === 'token_embedding.weight') return 1;
    if (key.endsWith('pos_embedding.embedding.weight')) return (2 * c.num_buckets * c.num_heads) ** -0.5;
    if (key.endsWith('ffn.fc2.weight')) return c.dim_ffn ** -0.5;
    if (key.endsWith('attn.q.weight')) return (c.dim * c.dim_attn) ** -0.5;
    if (key.endsWith('attn.o.weight')) return (c.num_heads * c.dim_attn) ** -0.5;
    return c.dim ** -0.5; // k, v, gate.0, fc1
  };
  const out = new Map<string, Tensor>();
  for (const [k, p] of model.namedParams()) {
    const s = std(k);
    const d = new Float32Array(p.size);
    if (s === 0) d.fill(1);
    else for (let i = 0; i < d.length; i++) d[i] = s * rng.normal();
    let t = tensor(d, p.shape);
    if (opts.dtype === 'bf16') t = t.to('bf16');
    out.set(opts.format === 'hf' ? umt5KeyToHf(k, c.shared_pos) : k, t);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// dcvg run umt5

/** ids and mask (B, L) from a safetensors file (I64 / I32 / F32 integral values), checked. */
export function readUmt5Inputs(path: string, config: Umt5Config): { ids: Tensor; mask: Tensor } {
  const f = SafetensorsFile.open(path);
  try {
    const need = (k: string) => {
      if (!f.has(k)) throw new ShapeError(`${path}: no tensor "${k}" (has: ${f.keys().join(', ') || 'nothing'})`);
      return f.tensor(k);
    };
    const ids = need('ids');
    const mask = f.has('mask') ? f.tensor('mask') : null;
    if (ids.ndim !== 2 || ids.shape[0]! < 1 || ids.shape[1]! < 1) throw new ShapeError(`${path}: ids must be (B, L) token ids with B, L >= 1, got ${fmtShape(ids.shape)}`);
    const [B, L] = ids.shape as [number, number];
    const v = ids.readSync();
    for (let i = 0; i < v.length; i++)
      if (!Number.isInteger(v[i]!) || v[i]! < 0 || v[i]! >= config.vocab)
        throw new ValueError(`${path}: ids[${Math.floor(i / L)}, ${i % L}] is ${v[i]}, not a token id in [0, ${config.vocab})`);
    let m: Tensor;
    if (mask) {
      try {
        Umt5Encoder.realLengths(mask, B, L);
      } catch (e) {
        throw e instanceof ShapeError || e instanceof ValueError ? new (e.constructor as typeof ValueError)(`${path}: ${e.message}`) : e;
      }
      m = mask;
    } else m = tensor(new Float32Array(B * L).fill(1), [B, L]);
    return { ids: intTensor(Int32Array.from(v), [B, L]), mask: m };
  } finally {
    f.close();
  }
}

/**
 * `hidden_states` (B, L, dim) at every position (the reference's T5Encoder.forward(ids, mask)), and `context{b}`: its
 * first L_b rows, as the reference's T5EncoderModel returns them. Inputs are read and checked before the weights load.
 */
export function runUmt5(cfg: string | object, weightsPath: string, inputsPath: string): Map<string, Tensor> {
  const config = resolveUmt5Config(cfg);
  const { ids, mask } = readUmt5Inputs(inputsPath, config);
  const model = new Umt5Model(config);
  loadUmt5Weights(model, weightsPath);
  const [B, L] = ids.shape as [number, number];
  const lens = Umt5Encoder.realLengths(mask, B, L);
  const h = noGrad(() => model.forward(ids, mask));
  const out = new Map<string, Tensor>([['hidden_states', h]]);
  lens.forEach((n, b) => out.set(`context${b}`, ops.contiguous(ops.slice(ops.squeeze(ops.slice(h, 0, b, b + 1), 0), 0, 0, n))));
  return out;
}
