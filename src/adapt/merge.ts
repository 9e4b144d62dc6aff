/**
 * Merging LoRA adapters into a Wan / DC-VideoGen DiT (spec §5.6) and writing the result as a plain DiT checkpoint.
 *
 * W <- W + s * (alpha / r) * B A, for every adapter layer, s the strength (1 for a phase-3 merge). The product and the
 * sum are computed in float32 (B A as one f32 matmul, then W widened exactly to f32 and added) and the result is
 * rounded once back to W's stored dtype: a bf16 base stays bf16 (one bf16 rounding of the f32 sum), an f32 base stays
 * f32. Weights without an adapter, and every weight when s = 0, are the base's tensors, written bit for bit.
 *
 * Inputs of a phase-3 merge (mergePhase3):
 * - a `dcvg adapt lora` run folder: its `model.safetensors` (every weight in Wan keys, EMA values where trained, the
 *   adapters `<layer>.lora_A.weight` / `.lora_B.weight`, `null_embedding`; metadata config, lora_rank, lora_alpha), or
 *   that file; a training checkpoint with `model.<key>` for every parameter and `ema.<key>` EMA shadows (the
 *   `dcvg train-dit` layout; one holding only the trained tensors is refused, naming what is missing);
 * - a plain state dict (safetensors or .pt) with the base weights and LoRA keys in src/nn/lora.ts's names
 *   (`<layer>.lora_A.weight`, `.lora_B.weight`) or peft's (`.base_layer.weight`, `.lora_A.default.weight`, the
 *   reference's `ema_model_state_dict`, optional `0.` prefix).
 * alpha: `--alpha`, else the metadata (`lora_alpha` / `lora_alphas` in the header, or `lora.alpha` / `options.loraAlpha`
 * in the training checkpoint's dcvg_train JSON); without any, merging is refused (phase 3 uses alpha 512 at r 256,
 * so guessing scale 1 would be wrong).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ShapeError, ValueError } from '../errors.js';
import { tempPathFor, writeFileAtomic } from '../io/files.js';
import { saveSafetensors, type WritableTensor } from '../io/safetensors.js';
import { openWeights } from '../io/weights.js';
import { parseWanConfig, wanConfigToJson, type WanConfig } from '../models/wan/config.js';
import { WAN_ONLY_KEYS, detectWanKeyFormat, diffusersKeyToWan, wanStateDictToDiffusers } from '../models/wan/keys.js';
import * as ops from '../tensor/ops.js';
import { Tensor, noGrad } from '../tensor/tensor.js';
import { checkLoraFits, loraRank, loraScale, parseLora, readLoraFile, writeLoraFile, type LoraEntry, type LoraLayout } from './lora_files.js';

/** W + s * scale * B A in f32, rounded once to W's dtype. */
export function mergedWeight(W: Tensor, e: LoraEntry, strength: number): Tensor {
  const r = loraRank(e);
  const out = W.shape[0]!;
  const inp = W.shape[1]!;
  return noGrad(() => {
    const A = ops.reshape(e.A.to('f32'), [r, inp]);
    const B = ops.reshape(e.B.to('f32'), [out, r]);
    const delta = ops.mul(ops.matmul(B, A), strength * loraScale(e));
    const sum = ops.reshape(ops.add(ops.reshape(W.to('f32'), [out, inp]), delta), [...W.shape]);
    return W.dtype === 'f32' ? sum : sum.to(W.dtype);
  });
}

/**
 * The base weights with every adapter merged (new tensors for merged layers, the base's own elsewhere). Checks that
 * every adapter fits before computing anything; strength 0 returns the base tensors untouched.
 */
export function mergeLoraWeights(base: ReadonlyMap<string, Tensor>, layers: ReadonlyMap<string, LoraEntry>, strength = 1): Map<string, Tensor> {
  if (!Number.isFinite(strength)) throw new ValueError(`LoRA strength must be a finite number, got ${strength}`);
  checkLoraFits(layers, (k) => base.get(k)?.shape ?? null);
  const out = new Map(base);
  if (strength === 0) return out;
  for (const [path, e] of layers) out.set(`${path}.weight`, mergedWeight(base.get(`${path}.weight`)!, e, strength));
  return out;
}

/** A weights file (or folder) as a map in original-Wan names (diffusers names converted, a `0.` prefix stripped). */
export function readDiTWeights(path: string): { weights: Map<string, Tensor>; metadata: Record<string, string>; source: string } {
  const w = openWeights(path);
  try {
    const keys = [...w.tensors.keys()];
    const prefixed = keys.length > 0 && keys.every((k) => k.startsWith('0.'));
    const strip = (k: string) => (prefixed ? k.slice(2) : k);
    const fmt = detectWanKeyFormat(keys.map(strip).filter((k) => !WAN_ONLY_KEYS.includes(k)));
    const weights = new Map<string, Tensor>();
    for (const k of keys) {
      const s = strip(k);
      weights.set(fmt === 'diffusers' && !WAN_ONLY_KEYS.includes(s) ? diffusersKeyToWan(s) : s, w.tensors.get(k));
    }
    return { weights, metadata: w.metadata, source: w.source };
  } finally {
    w.close();
  }
}

/** The Wan config of a weights file or run folder, from a config.json beside it or the header's `config` metadata. */
export function configOf(path: string, metadata: Record<string, string>): WanConfig | null {
  const dir = existsSync(path) && statSync(path).isDirectory() ? path : dirname(path);
  for (const c of [join(dir, 'config.json')]) {
    if (existsSync(c)) {
      try {
        return parseWanConfig(JSON.parse(readFileSync(c, 'utf8')), undefined, c);
      } catch {
        /* a config.json of another kind: fall through */
      }
    }
  }
  for (const m of [metadata.config, metadata.dcvg_train ? JSON.stringify((JSON.parse(metadata.dcvg_train) as { config?: unknown }).config ?? null) : undefined]) {
    if (!m || m === 'null') continue;
    try {
      return parseWanConfig(JSON.parse(m));
    } catch {
      /* not a Wan config */
    }
  }
  return null;
}


/** alpha from metadata of a training checkpoint / state dict, or null. */
function alphaFromMetadata(meta: Record<string, string>): number | null {
  if (meta.lora_alpha !== undefined && Number.isFinite(Number(meta.lora_alpha))) return Number(meta.lora_alpha);
  if (meta.dcvg_train) {
    try {
      const j = JSON.parse(meta.dcvg_train) as { lora?: { alpha?: unknown }; options?: Record<string, unknown> };
      const a = j.lora?.alpha ?? j.options?.loraAlpha ?? j.options?.lora_alpha;
      if (typeof a === 'number' && Number.isFinite(a)) return a;
    } catch {
      /* checked elsewhere */
    }
  }
  return null;
}

export interface Phase3Weights {
  source: string;
  config: WanConfig | null;
  /** base (non-LoRA) weights, EMA where there is one, original-Wan names (plus null_embedding when present) */
  base: Map<string, Tensor>;
  layers: Map<string, LoraEntry>;
}

/**
 * Reads a phase-3 result: a run folder, its checkpoint.safetensors / model.safetensors, or a plain state dict with
 * LoRA keys (see the file comment). EMA tensors (`ema.<key>`) take the place of the raw ones (`model.<key>`).
 */
export function readPhase3(path: string, opts: { alpha?: number } = {}): Phase3Weights {
  let file = path;
  if (existsSync(path) && statSync(path).isDirectory()) {
    // model.safetensors: every weight (EMA where trained) + adapters + lora_alpha metadata (`dcvg adapt lora`);
    // checkpoint.safetensors only when there is none (it may hold the trained tensors alone)
    const ck = join(path, 'checkpoint.safetensors');
    const ms = join(path, 'model.safetensors');
    file = existsSync(ms) ? ms : existsSync(ck) ? ck : path;
  }
  const w = openWeights(file);
  try {
    const keys = [...w.tensors.keys()];
    let view: [string, string][];
    if (keys.some((k) => k.startsWith('model.')) && keys.every((k) => /^(model|ema|adam_[mv])\./.test(k))) {
      // a training checkpoint: the EMA where kept, the raw parameter elsewhere; optimiser moments skipped
      const ema = new Set(keys.filter((k) => k.startsWith('ema.')).map((k) => k.slice(4)));
      view = keys.filter((k) => k.startsWith('model.')).map((k) => [k.slice(6), ema.has(k.slice(6)) ? `ema.${k.slice(6)}` : k]);
    } else view = keys.map((k) => [k, k]);
    const names = new Map(view);
    const set = parseLora(names.keys(), (k) => w.tensors.get(names.get(k)!), { metadata: w.metadata, layout: undefined });
    if (set.layout !== 'dcvg' && set.layout !== 'peft')
      throw new ValueError(`${w.source}: holds a LoRA adapter alone (${set.layout} layout), not a phase-3 model; use --base DIT --lora ADAPTER`);
    // base keys may be diffusers-named (peft on WanTransformer3DModel)
    let base = set.base;
    const baseKeys = [...base.keys()].filter((k) => !WAN_ONLY_KEYS.includes(k));
    if (baseKeys.length && detectWanKeyFormat(baseKeys) === 'diffusers') base = new Map([...base].map(([k, t]) => [WAN_ONLY_KEYS.includes(k) ? k : diffusersKeyToWan(k), t]));
    const noBase = [...set.layers.keys()].filter((p) => !base.has(`${p}.weight`));
    if (noBase.length && base.size < set.layers.size * 2)
      throw new ValueError(`${w.source}: holds the adapters but not the base weights (e.g. ${noBase[0]}.weight): a training checkpoint of the trained tensors alone; merge the run folder's model.safetensors, or use --base DIT --lora`);
    const alpha = opts.alpha ?? alphaFromMetadata(w.metadata);
    for (const [path2, e] of set.layers) {
      if (opts.alpha !== undefined) e.alpha = opts.alpha;
      else if (e.alpha === null) {
        if (alpha === null)
          throw new ValueError(`${w.source}: no LoRA alpha for ${path2} (no lora_alpha metadata); give it with --alpha (phase 3 uses 512 at rank 256)`);
        e.alpha = alpha;
      }
    }
    return { source: w.source, config: configOf(path, w.metadata), base, layers: set.layers };
  } finally {
    w.close();
  }
}

/** diffusers WanTransformer3DModel config.json of a Wan config. */
export function wanConfigToDiffusers(c: WanConfig): Record<string, unknown> {
  return {
    _class_name: 'WanTransformer3DModel',
    patch_size: [...c.patch_size],
    num_attention_heads: c.num_heads,
    attention_head_dim: c.dim / c.num_heads,
    in_channels: c.in_dim,
    out_channels: c.out_dim,
    text_dim: c.text_dim,
    freq_dim: c.freq_dim,
    ffn_dim: c.ffn_dim,
    num_layers: c.num_layers,
    cross_attn_norm: c.cross_attn_norm,
    qk_norm: c.qk_norm ? 'rms_norm_across_heads' : null,
    eps: c.eps,
    image_dim: c.model_type === 'i2v' ? c.image_dim : null,
    added_kv_proj_dim: c.model_type === 'i2v' ? c.dim : null,
    rope_max_seq_len: 1024,
  };
}

export type DiTFormat = 'wan' | 'diffusers';

/**
 * Writes DiT weights atomically, in original-Wan keys (format 'wan') or diffusers keys (null_embedding dropped).
 * `out` ending in .safetensors: one file (the config in its `config` metadata). Otherwise a folder, written under a
 * temporary name and renamed into place: 'wan' -> config.json + model.safetensors (what `dcvg run wan --weights
 * OUT --config OUT/config.json` and loadWanWeights read); 'diffusers' -> a `transformer/` component folder
 * (config.json in diffusers' vocabulary + diffusion_pytorch_model.safetensors).
 */
export function writeDiT(out: string, weights: ReadonlyMap<string, WritableTensor>, opts: { format?: DiTFormat; config?: WanConfig | null; metadata?: Record<string, string> } = {}): string[] {
  const format = opts.format ?? 'wan';
  const sd = format === 'diffusers' ? wanStateDictToDiffusers(weights) : new Map(weights);
  const meta: Record<string, string> = { format: 'dcvg-wan-weights', keys: format, ...(opts.metadata ?? {}) };
  if (opts.config) meta.config = JSON.stringify({ name: opts.config.name, ...wanConfigToJson(opts.config) });
  if (out.endsWith('.safetensors')) {
    saveSafetensors(out, sd, { metadata: meta });
    return [out];
  }
  if (existsSync(out)) throw new ValueError(`-o ${out} exists; choose a new folder (or a .safetensors file name)`);
  if (!opts.config) throw new ValueError(`writing a model folder needs the model's config (none found beside the input); write a .safetensors file instead`);
  const tmp = tempPathFor(out);
  mkdirSync(tmp, { recursive: true });
  try {
    const cfgJson = format === 'diffusers' ? wanConfigToDiffusers(opts.config) : { name: opts.config.name, ...wanConfigToJson(opts.config) };
    writeFileAtomic(join(tmp, 'config.json'), JSON.stringify(cfgJson, null, 2) + '\n');
    saveSafetensors(join(tmp, format === 'diffusers' ? 'diffusion_pytorch_model.safetensors' : 'model.safetensors'), sd, { metadata: meta });
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const f = format === 'diffusers' ? 'diffusion_pytorch_model.safetensors' : 'model.safetensors';
  return [join(out, 'config.json'), join(out, f)];
}

export interface MergeResult {
  outputs: string[];
  layers: number;
  source: string;
  dtypes: string[];
}

/** Phase-3 merge: EMA weights + (alpha/r) B A -> a plain DiT; optionally the adapters alone in the comfy layout. */
export function mergePhase3(input: string, out: string, opts: { format?: DiTFormat; saveLora?: string; loraLayout?: LoraLayout; alpha?: number; strength?: number } = {}): MergeResult {
  const p = readPhase3(input, { alpha: opts.alpha });
  if (!p.layers.size) throw new ValueError(`${p.source}: no LoRA layers to merge`);
  const merged = mergeLoraWeights(p.base, p.layers, opts.strength ?? 1);
  const outputs = writeDiT(out, merged, { format: opts.format, config: p.config, metadata: { merged_from: basename(input), lora_layers: String(p.layers.size) } });
  if (opts.saveLora) {
    writeLoraFile(opts.saveLora, p.layers, opts.loraLayout ?? 'comfy');
    outputs.push(opts.saveLora);
  }
  return { outputs, layers: p.layers.size, source: p.source, dtypes: [...new Set([...merged.values()].map((t) => t.dtype))] };
}

/** `--base DIT --lora ADAPTER [--strength s]`: an adapter in any layout merged onto a DiT. */
export function mergeAdapterIntoBase(basePath: string, loraPath: string, out: string, opts: { strength?: number; format?: DiTFormat; layout?: LoraLayout } = {}): MergeResult {
  const set = readLoraFile(loraPath, { layout: opts.layout });
  if (!set.layers.size) throw new ValueError(`${loraPath}: no LoRA layers`);
  const b = readDiTWeights(basePath);
  let merged: Map<string, Tensor>;
  try {
    merged = mergeLoraWeights(b.weights, set.layers, opts.strength ?? 1);
  } catch (e) {
    if (e instanceof ShapeError) throw new ShapeError(`${loraPath} onto ${b.source}: ${e.message}`);
    throw e;
  }
  const config = configOf(basePath, b.metadata);
  const outputs = writeDiT(out, merged, { format: opts.format, config, metadata: { merged_lora: basename(loraPath), strength: String(opts.strength ?? 1) } });
  return { outputs, layers: set.layers.size, source: b.source, dtypes: [...new Set([...merged.values()].map((t) => t.dtype))] };
}

