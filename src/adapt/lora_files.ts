/**
 * LoRA adapters of a Wan / DC-VideoGen DiT on disk, in the layouts the ecosystem uses (spec §5.9), read and written.
 *
 * An adapter is a set of layers keyed by the layer's original-Wan path (`blocks.3.self_attn.q`, `time_embedding.0`),
 * each with A [r, in] (or [r, in, 1, 1, 1] for a 1x1x1 conv), B [out, r] and alpha (scale alpha / r; null when the
 * file gives none, which every loader reads as alpha = r, scale 1: ComfyUI `comfy/lora.py` uses 1.0 without an
 * `.alpha` key, diffusers/peft default `lora_alpha` to r).
 *
 * Layouts (all keys for layer `blocks.{i}.self_attn.q`):
 * - 'comfy' (written by default; ComfyUI and diffusers' `_convert_non_diffusers_wan_lora_to_diffusers` both load it):
 *   `diffusion_model.blocks.{i}.self_attn.q.lora_A.weight` [r, in], `...lora_B.weight` [out, r],
 *   `diffusion_model.blocks.{i}.self_attn.q.alpha` (a scalar). Also read with `lora_down` / `lora_up`.
 * - 'diffusers' (native diffusers / peft on WanTransformer3DModel): `transformer.blocks.{i}.attn1.to_q.lora_A.weight`,
 *   `...lora_B.weight` (§3.5 renames); no alpha key: alpha goes in the header metadata `lora_adapter_metadata`
 *   (a peft LoraConfig as JSON: r, lora_alpha, alpha_pattern) as recent diffusers writes and reads it.
 * - 'kohya' (musubi-tuner / kohya): `lora_unet_blocks_{i}_self_attn_q.lora_down.weight` [r, in], `.lora_up.weight`
 *   [out, r], `.alpha`.
 * - 'peft' (peft's on-disk adapter_model.safetensors): `base_model.model.blocks.{i}.self_attn.q.lora_A.weight`; alpha in
 *   the metadata as for 'diffusers' (and read from an `adapter_config.json` beside the file). Reading also takes a peft
 *   *model* state dict as the reference trains it: `<module>.lora_A.default.weight`, `<module>.base_layer.weight`.
 * - 'dcvg' (src/nn/lora.ts in memory, our training checkpoints): `<module>.lora_A.weight`; alpha in metadata.
 * Keys of a peft / dcvg state dict that are not LoRA keys are the base model's weights (returned as `base`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { openWeights } from '../io/weights.js';
import { saveSafetensors, type WritableTensor } from '../io/safetensors.js';
import { diffusersKeyToWan, wanKeyToDiffusers } from '../models/wan/keys.js';
import type { Module } from '../nn/module.js';
import { loraLayers } from '../nn/lora.js';
import { Tensor, scalar } from '../tensor/tensor.js';

export type LoraLayout = 'comfy' | 'diffusers' | 'kohya' | 'peft' | 'dcvg';
export const LORA_LAYOUTS: readonly LoraLayout[] = ['comfy', 'diffusers', 'kohya', 'peft', 'dcvg'];

export interface LoraEntry {
  A: Tensor;
  B: Tensor;
  /** null: the file gives no alpha (read as alpha = rank, scale 1) */
  alpha: number | null;
  /** the file's key of A (for error messages) */
  keyA?: string;
}

export interface LoraSet {
  layout: LoraLayout;
  /** by original-Wan layer path */
  layers: Map<string, LoraEntry>;
  /** non-LoRA keys of a peft / dcvg state dict (base weights, `.base_layer` infix dropped), in original-Wan names */
  base: Map<string, Tensor>;
}

export function loraRank(e: LoraEntry): number {
  return e.A.shape[0]!;
}

/** alpha / r, with a missing alpha read as r. */
export function loraScale(e: LoraEntry): number {
  return (e.alpha ?? loraRank(e)) / loraRank(e);
}

/** Every Wan layer a LoRA can target (original names, without `blocks.N.`), for decoding kohya's underscored names. */
const BLOCK_LAYERS = ['self_attn.q', 'self_attn.k', 'self_attn.v', 'self_attn.o', 'cross_attn.q', 'cross_attn.k', 'cross_attn.v', 'cross_attn.o', 'cross_attn.k_img', 'cross_attn.v_img', 'ffn.0', 'ffn.2'];
const TOP_LAYERS = ['patch_embedding', 'time_embedding.0', 'time_embedding.2', 'time_projection.1', 'text_embedding.0', 'text_embedding.2', 'img_emb.proj.1', 'img_emb.proj.3', 'head.head'];

function underscored(path: string): string {
  return path.replace(/\./g, '_');
}

/** underscored name (Wan or diffusers naming) -> original-Wan path */
const KOHYA_TOP = new Map<string, string>();
const KOHYA_BLOCK = new Map<string, string>();
for (const p of TOP_LAYERS) {
  KOHYA_TOP.set(underscored(p), p);
  KOHYA_TOP.set(underscored(wanToDiffusersPath(p)), p);
}
for (const p of BLOCK_LAYERS) {
  KOHYA_BLOCK.set(underscored(p), p);
  KOHYA_BLOCK.set(underscored(wanToDiffusersPath(`blocks.0.${p}`).slice('blocks.0.'.length)), p);
}

/** A layer path in diffusers names (through the parameter key `<path>.weight`). */
export function wanToDiffusersPath(path: string): string {
  const k = wanKeyToDiffusers(`${path}.weight`);
  if (k === null) throw new ValueError(`"${path}" has no diffusers name`);
  return k.slice(0, -'.weight'.length);
}

function diffusersToWanPath(path: string): string {
  return diffusersKeyToWan(`${path}.weight`).slice(0, -'.weight'.length);
}

function kohyaToWanPath(name: string, key: string): string {
  const m = /^blocks_(\d+)_(.+)$/.exec(name);
  const p = m ? KOHYA_BLOCK.get(m[2]!) : KOHYA_TOP.get(name);
  if (p === undefined) throw new ValueError(`LoRA key "${key}": "${name}" is not a Wan layer (kohya names such as lora_unet_blocks_0_self_attn_q)`);
  return m ? `blocks.${m[1]}.${p}` : p;
}

/** Which layout a set of keys uses (from prefixes and suffixes only). Throws when it is none or a mix. */
export function detectLoraLayout(keys: Iterable<string>): LoraLayout {
  const seen = new Set<LoraLayout>();
  let any = false;
  for (const k of keys) {
    any = true;
    if (k.startsWith('lora_unet_')) seen.add('kohya');
    else if (k.startsWith('diffusion_model.')) seen.add('comfy');
    else if (k.startsWith('transformer.')) seen.add('diffusers');
    else if (k.startsWith('base_model.model.') || /\.lora_[AB]\.default\.weight$|\.base_layer\.(weight|bias)$/.test(k)) seen.add('peft');
    else if (/\.lora_[AB]\.weight$/.test(k)) seen.add('dcvg');
  }
  // a peft model state dict may hold plain base keys beside its adapter keys; dcvg base keys carry no marker at all
  if (seen.size === 1) return [...seen][0]!;
  if (!any) throw new ValueError('LoRA file holds no tensors');
  if (seen.size === 0) throw new ValueError('no LoRA keys found (expected lora_A/lora_B or lora_down/lora_up keys in one of the layouts: comfy, diffusers, kohya, peft)');
  if (seen.size === 2 && seen.has('peft') && seen.has('dcvg')) return 'peft';
  throw new ValueError(`LoRA keys mix layouts (${[...seen].join(', ')}); one file must use one layout`);
}

type Part = 'A' | 'B' | 'alpha' | 'base';

/** Splits a key into (layer path as written, part, param) for a layout; null for a non-LoRA key. */
function splitKey(key: string, layout: LoraLayout): { path: string; part: Part; baseKey?: string } | null {
  let k = key;
  const prefix = { comfy: 'diffusion_model.', diffusers: 'transformer.', kohya: 'lora_unet_', peft: 'base_model.model.', dcvg: '' }[layout];
  if (prefix && k.startsWith(prefix)) k = k.slice(prefix.length);
  else if (prefix && layout !== 'peft') throw new ValueError(`LoRA key "${key}" lacks the "${prefix}" prefix of the ${layout} layout`);
  let m = /^(.+)\.(lora_A|lora_down)(?:\.default)?\.weight$/.exec(k);
  if (m) return { path: m[1]!, part: 'A' };
  m = /^(.+)\.(lora_B|lora_up)(?:\.default)?\.weight$/.exec(k);
  if (m) return { path: m[1]!, part: 'B' };
  m = /^(.+)\.alpha$/.exec(k);
  if (m) return { path: m[1]!, part: 'alpha' };
  m = /^(.+)\.base_layer\.(weight|bias)$/.exec(k);
  if (m) return { path: m[1]!, part: 'base', baseKey: `${m[1]}.${m[2]}` };
  if (layout === 'peft' || layout === 'dcvg') return { path: k, part: 'base', baseKey: k };
  throw new ValueError(`LoRA key "${key}" is neither lora_A/lora_down, lora_B/lora_up nor alpha`);
}

function isDiffusersPath(p: string): boolean {
  return /^(condition_embedder|proj_out)\b|^blocks\.\d+\.(attn[12]|ffn\.net)\./.test(p);
}

function toWanPath(path: string, layout: LoraLayout, key: string): string {
  if (layout === 'kohya') return kohyaToWanPath(path, key);
  if (layout === 'diffusers' || isDiffusersPath(path)) {
    try {
      return diffusersToWanPath(path);
    } catch {
      throw new ValueError(`LoRA key "${key}": "${path}" is not a diffusers Wan layer`);
    }
  }
  return path;
}

/** alpha values from header metadata: ours (`lora_alpha`, `lora_alphas`), or a peft LoraConfig (`lora_adapter_metadata`). */
function metadataAlpha(meta: Record<string, string>, extraConfig: Record<string, unknown> | null): { global: number | null; pattern: Record<string, number> } {
  let global: number | null = null;
  let pattern: Record<string, number> = {};
  const fromConfig = (c: Record<string, unknown>) => {
    if (typeof c.lora_alpha === 'number') global = c.lora_alpha;
    if (c.alpha_pattern && typeof c.alpha_pattern === 'object') pattern = { ...pattern, ...(c.alpha_pattern as Record<string, number>) };
  };
  if (extraConfig) fromConfig(extraConfig);
  if (meta.lora_adapter_metadata) {
    try {
      const c = JSON.parse(meta.lora_adapter_metadata) as Record<string, unknown>;
      // diffusers may nest it under the component ("transformer")
      fromConfig((c.transformer as Record<string, unknown> | undefined) ?? c);
    } catch {
      throw new ValueError(`LoRA metadata "lora_adapter_metadata" is not valid JSON`);
    }
  }
  if (meta.lora_alpha !== undefined) {
    const a = Number(meta.lora_alpha);
    if (!Number.isFinite(a)) throw new ValueError(`LoRA metadata "lora_alpha" = "${meta.lora_alpha}" is not a number`);
    global = a;
  }
  if (meta.lora_alphas) {
    let o: unknown;
    try {
      o = JSON.parse(meta.lora_alphas);
    } catch {
      throw new ValueError(`LoRA metadata "lora_alphas" is not valid JSON`);
    }
    if (typeof o !== 'object' || o === null || Object.values(o).some((v) => typeof v !== 'number' || !Number.isFinite(v)))
      throw new ValueError(`LoRA metadata "lora_alphas" must map layer paths to finite numbers`);
    pattern = { ...pattern, ...(o as Record<string, number>) };
  }
  return { global, pattern };
}

/**
 * Parses LoRA tensors (any layout, auto-detected unless given) into layers keyed by original-Wan paths. Every layer
 * needs both A and B; the pair's ranks must agree; an `.alpha` must be a finite scalar.
 */
export function parseLora(
  keys: Iterable<string>,
  get: (k: string) => Tensor,
  opts: { layout?: LoraLayout; metadata?: Record<string, string>; peftConfig?: Record<string, unknown> | null } = {},
): LoraSet {
  const all = [...keys];
  const layout = opts.layout ?? detectLoraLayout(all);
  const parts = new Map<string, { A?: [string, Tensor]; B?: [string, Tensor]; alpha?: number }>();
  const base = new Map<string, Tensor>();
  const stripPrefix = all.length > 0 && all.every((k) => k.startsWith('0.'));
  for (const key0 of all) {
    const key = stripPrefix ? key0.slice(2) : key0;
    const s = splitKey(key, layout);
    if (!s) continue;
    if (s.part === 'base') {
      const p = s.baseKey!;
      base.set(p.startsWith('base_model.model.') ? p.slice('base_model.model.'.length) : p, get(key0));
      continue;
    }
    const path = toWanPath(s.path, layout, key0);
    const e = parts.get(path) ?? {};
    if (s.part === 'alpha') {
      const t = get(key0);
      if (t.size !== 1) throw new ShapeError(`LoRA key "${key0}": alpha must be a scalar, got ${fmtShape(t.shape)}`);
      const a = t.item();
      if (!Number.isFinite(a)) throw new ValueError(`LoRA key "${key0}": alpha ${a} is not finite`);
      e.alpha = a;
    } else {
      if (e[s.part]) throw new ValueError(`LoRA keys "${e[s.part]![0]}" and "${key0}" both give lora_${s.part} of ${path}`);
      e[s.part] = [key0, get(key0)];
    }
    parts.set(path, e);
  }
  const meta = metadataAlpha(opts.metadata ?? {}, opts.peftConfig ?? null);
  const layers = new Map<string, LoraEntry>();
  for (const [path, e] of parts) {
    if (!e.A || !e.B) throw new ValueError(`LoRA layer ${path}: ${e.A ? 'lora_B' : 'lora_A'} is missing (have ${e.A?.[0] ?? e.B?.[0] ?? 'only an alpha'})`);
    const [kA, A] = e.A;
    const [kB, B] = e.B;
    if (A.ndim < 2 || B.ndim < 2) throw new ShapeError(`LoRA layer ${path}: lora_A ${fmtShape(A.shape)} and lora_B ${fmtShape(B.shape)} must be matrices`);
    if (A.shape[0] !== B.shape[1]) throw new ShapeError(`LoRA layer ${path}: lora_A "${kA}" ${fmtShape(A.shape)} has rank ${A.shape[0]} but lora_B "${kB}" ${fmtShape(B.shape)} has rank ${B.shape[1]}`);
    const pat = meta.pattern[path] ?? meta.pattern[wanToDiffusersPathSafe(path)];
    layers.set(path, { A, B, alpha: e.alpha ?? pat ?? meta.global, keyA: kA });
  }
  if (!layers.size && !base.size) throw new ValueError('no LoRA layers found');
  return { layout, layers, base };
}

function wanToDiffusersPathSafe(p: string): string {
  try {
    return wanToDiffusersPath(p);
  } catch {
    return p;
  }
}

/** Reads an adapter file (safetensors, .pt, or a folder with adapter_model.safetensors) in any layout. */
export function readLoraFile(path: string, opts: { layout?: LoraLayout } = {}): LoraSet {
  const file = existsSync(join(path, 'adapter_model.safetensors')) ? join(path, 'adapter_model.safetensors') : path;
  const w = openWeights(file);
  try {
    const cfgPath = join(dirname(w.file), 'adapter_config.json');
    const peftConfig = existsSync(cfgPath) ? (JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>) : null;
    return parseLora(w.tensors.keys(), (k) => w.tensors.get(k), { layout: opts.layout, metadata: w.metadata, peftConfig });
  } catch (e) {
    if (e instanceof Error && !e.message.includes(w.source)) e.message = `${w.source}: ${e.message}`;
    throw e;
  } finally {
    w.close();
  }
}

/** The key of a layer's part in a layout. */
function keyFor(layout: LoraLayout, path: string, part: 'A' | 'B' | 'alpha'): string {
  switch (layout) {
    case 'comfy':
      return `diffusion_model.${path}.${part === 'alpha' ? 'alpha' : `lora_${part}.weight`}`;
    case 'diffusers':
      return `transformer.${wanToDiffusersPath(path)}.lora_${part}.weight`;
    case 'kohya':
      return `lora_unet_${underscored(path)}.${part === 'alpha' ? 'alpha' : part === 'A' ? 'lora_down.weight' : 'lora_up.weight'}`;
    case 'peft':
      return `base_model.model.${path}.lora_${part}.weight`;
    case 'dcvg':
      return `${path}.lora_${part}.weight`;
  }
}

/**
 * The tensors and metadata of an adapter in a layout. comfy and kohya carry each layer's alpha as a scalar key
 * (f32; a missing alpha is written as the rank, the same scale); diffusers, peft and dcvg carry it in the header
 * metadata (`lora_alpha` when every layer has the same, plus `lora_alphas` by layer, and peft's LoraConfig JSON).
 */
export function loraToLayout(layers: ReadonlyMap<string, LoraEntry>, layout: LoraLayout): { tensors: Map<string, WritableTensor>; metadata: Record<string, string> } {
  const tensors = new Map<string, WritableTensor>();
  const alphas: Record<string, number> = {};
  const ranks = new Set<number>();
  for (const [path, e] of layers) {
    const alpha = e.alpha ?? loraRank(e);
    alphas[path] = alpha;
    ranks.add(loraRank(e));
    tensors.set(keyFor(layout, path, 'A'), e.A);
    tensors.set(keyFor(layout, path, 'B'), e.B);
    if (layout === 'comfy' || layout === 'kohya') tensors.set(keyFor(layout, path, 'alpha'), scalar(alpha));
  }
  const vals = [...new Set(Object.values(alphas))];
  const metadata: Record<string, string> = { format: 'dcvg-lora', lora_layout: layout };
  if (layout !== 'comfy' && layout !== 'kohya') {
    if (vals.length === 1) metadata.lora_alpha = String(vals[0]);
    else metadata.lora_alphas = JSON.stringify(alphas);
    if (layout === 'diffusers' || layout === 'peft') {
      const name = (p: string) => (layout === 'diffusers' ? wanToDiffusersPath(p) : p);
      const cfg: Record<string, unknown> = {
        r: ranks.size === 1 ? [...ranks][0] : Math.max(...ranks),
        lora_alpha: vals.length === 1 ? vals[0] : alphas[[...layers.keys()][0]!],
        target_modules: [...layers.keys()].map(name),
        lora_dropout: 0,
        bias: 'none',
      };
      if (vals.length > 1) cfg.alpha_pattern = Object.fromEntries(Object.entries(alphas).map(([p, a]) => [name(p), a]));
      if (ranks.size > 1) cfg.rank_pattern = Object.fromEntries([...layers].map(([p, e]) => [name(p), loraRank(e)]));
      metadata.lora_adapter_metadata = JSON.stringify(cfg);
    }
  }
  return { tensors, metadata };
}

/** Writes an adapter atomically (safetensors; f32 alpha scalars; A and B in their dtype). */
export function writeLoraFile(path: string, layers: ReadonlyMap<string, LoraEntry>, layout: LoraLayout = 'comfy', extraMetadata: Record<string, string> = {}): void {
  if (!layers.size) throw new ValueError(`nothing to write to ${path}: the adapter has no layers`);
  const { tensors, metadata } = loraToLayout(layers, layout);
  saveSafetensors(path, tensors, { metadata: { ...metadata, ...extraMetadata } });
}

/** The adapters of a model wrapped by applyLora (src/nn/lora.ts), by layer path. */
export function loraEntriesOfModel(model: Module): Map<string, LoraEntry> {
  const out = new Map<string, LoraEntry>();
  for (const [path, l] of loraLayers(model)) {
    const A = l.lora_A.weight.value;
    const B = l.lora_B.weight.value;
    out.set(path, { A: A.ndim === 2 ? A : A.reshape([A.shape[0]!, A.shape[1]!]), B: B.ndim === 2 ? B : B.reshape([B.shape[0]!, B.shape[1]!]), alpha: l.alpha });
  }
  return out;
}

/**
 * Checks that every adapter layer fits a DiT whose weights have the given shapes (`<path>.weight`): the layer exists,
 * is a Linear [out, in] or a 1x1x1 conv [out, in, 1, 1, 1], A is [r, in] and B is [out, r] (trailing 1s allowed).
 * Throws naming the layer and the shapes, e.g. "blocks.3.self_attn.q: lora_A is [8, 64] but the layer takes 96 inputs".
 */
export function checkLoraFits(layers: ReadonlyMap<string, LoraEntry>, weightShape: (key: string) => readonly number[] | null): void {
  const problems: string[] = [];
  for (const [path, e] of layers) {
    const w = weightShape(`${path}.weight`);
    const where = e.keyA ? ` (key ${e.keyA})` : '';
    if (!w) {
      problems.push(`${path}: no such layer in the DiT${where}`);
      continue;
    }
    const isMat = w.length === 2 || (w.length === 5 && w[2] === 1 && w[3] === 1 && w[4] === 1);
    if (!isMat) {
      problems.push(`${path}: the layer's weight is ${fmtShape(w)}; a LoRA needs a Linear or a 1x1x1 conv`);
      continue;
    }
    const [out, inp] = [w[0]!, w[1]!];
    const trailingOnes = (t: Tensor) => t.shape.slice(2).every((d) => d === 1);
    if (!trailingOnes(e.A) || e.A.shape[1] !== inp) problems.push(`${path}: lora_A is ${fmtShape(e.A.shape)} but the layer takes ${inp} inputs`);
    else if (!trailingOnes(e.B) || e.B.shape[0] !== out) problems.push(`${path}: lora_B is ${fmtShape(e.B.shape)} but the layer has ${out} outputs`);
  }
  if (problems.length) throw new ShapeError(`LoRA does not fit the DiT: ${problems.slice(0, 8).join('; ')}${problems.length > 8 ? `; and ${problems.length - 8} more` : ''}`);
}
