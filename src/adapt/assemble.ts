/**
 * Assemble (spec §5.3): a DC-VideoGen DiT from a base Wan DiT and the phase-1 aligned patch embedder.
 *
 * The new model has patch 1x1x1, in_dim 32 (T2V) or 68 (I2V) and out_dim 32 (the DC-AE-V latent; both follow the
 * phase-1 embedder's shape unless given). It takes, exactly as stored (same tensors, same dtype):
 * - from the base: every key under `time_embedding.`, `time_projection.`, `text_embedding.`, `blocks.`,
 *   `head.modulation` (head.norm has no parameters), and for I2V `img_emb.`; plus `null_embedding` when present;
 * - from phase 1: `patch_embedding.weight` [D, Cin, 1, 1, 1] and `patch_embedding.bias` [D];
 * - `head.head.weight` [out_dim, D] and `head.head.bias` zeros (f32), so the model starts at v = 0.
 *
 * Phase-1 output format (what `dcvg adapt align` writes as `patch_embedding.safetensors` in its run folder, and what
 * this reads from that folder or file): the student embedder as `patch_embedding.weight` [D, C, 1, 1, 1] /
 * `patch_embedding.bias` [D] (also accepted: bare `weight` / `bias`, or the same
 * keys under a `0.` prefix, or a training checkpoint with `model.patch_embedding.*` / `ema.patch_embedding.*`, the EMA
 * taken when present). The weight may be [D, Cin] (a Linear) or [D, Cin, 1, 1, 1].
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { openWeights } from '../io/weights.js';
import type { WritableTensor } from '../io/safetensors.js';
import { validateWanConfig, type WanConfig } from '../models/wan/config.js';
import { WanModel } from '../models/wan/model.js';
import * as ops from '../tensor/ops.js';
import { Tensor, zeros } from '../tensor/tensor.js';
import { configOf, readDiTWeights, writeDiT, type DiTFormat } from './merge.js';

/** The base prefixes Assemble copies (a key equal to one, or under it). */
export const ASSEMBLE_BASE_PREFIXES = ['time_embedding', 'time_projection', 'text_embedding', 'blocks', 'head.modulation'] as const;

export interface AlignedPatch {
  weight: Tensor;
  bias: Tensor;
}

export interface AssembleOptions {
  /** default: the patch embedder's input channels (32 T2V, 68 I2V) */
  inDim?: number;
  /** default 32 */
  outDim?: number;
  /** name of the new config (default `<base>-dc`) */
  name?: string;
}

export interface Assembled {
  config: WanConfig;
  /** the new model's full state dict (plus null_embedding when the base had one) */
  weights: Map<string, Tensor>;
  /** the keys copied from the base */
  copied: string[];
}

function copiedFromBase(key: string, i2v: boolean): boolean {
  const pre = i2v ? [...ASSEMBLE_BASE_PREFIXES, 'img_emb'] : ASSEMBLE_BASE_PREFIXES;
  return pre.some((p) => key === p || key.startsWith(`${p}.`)) || key === 'null_embedding';
}

/** Reads the phase-1 embedder from a file (see the format above). */
export function readAlignedPatch(path: string): AlignedPatch {
  // a `dcvg adapt align` run folder holds it as patch_embedding.safetensors
  const inRun = join(path, 'patch_embedding.safetensors');
  const w = openWeights(existsSync(path) && statSync(path).isDirectory() && existsSync(inRun) ? inRun : path);
  try {
    const keys = new Set(w.tensors.keys());
    for (const pre of ['ema.patch_embedding.', 'patch_embedding.', '0.patch_embedding.', 'model.patch_embedding.', '']) {
      if (keys.has(`${pre}weight`) && keys.has(`${pre}bias`)) return { weight: w.tensors.get(`${pre}weight`), bias: w.tensors.get(`${pre}bias`) };
    }
    throw new ValueError(`${w.source}: no phase-1 patch embedder (expected patch_embedding.weight and patch_embedding.bias, or weight and bias; has ${[...keys].slice(0, 6).join(', ')})`);
  } finally {
    w.close();
  }
}

/** Builds the assembled state dict (and config) from a base model or its state dict and config. */
export function assembleDcDiT(base: WanModel | { config: WanConfig; weights: ReadonlyMap<string, Tensor> }, patch: AlignedPatch, opts: AssembleOptions = {}): Assembled {
  const bc = base instanceof WanModel ? base.config : base.config;
  const sd: ReadonlyMap<string, Tensor> = base instanceof WanModel ? base.stateDict() : base.weights;
  const D = bc.dim;
  const pw = patch.weight;
  const is5 = pw.ndim === 5 && pw.shape[2] === 1 && pw.shape[3] === 1 && pw.shape[4] === 1;
  if (!(pw.ndim === 2 || is5) || pw.shape[0] !== D)
    throw new ShapeError(`phase-1 patch embedder weight is ${fmtShape(pw.shape)}; expected [${D}, Cin, 1, 1, 1] (the base's width ${D}, kernel 1x1x1)`);
  if (patch.bias.ndim !== 1 || patch.bias.shape[0] !== D) throw new ShapeError(`phase-1 patch embedder bias is ${fmtShape(patch.bias.shape)}; expected [${D}]`);
  const inDim = opts.inDim ?? pw.shape[1]!;
  if (pw.shape[1] !== inDim) throw new ShapeError(`phase-1 patch embedder takes ${pw.shape[1]} channels but the assembled DiT has in_dim ${inDim}`);
  const i2v = bc.model_type === 'i2v';
  const expectIn = i2v ? 68 : 32;
  if (opts.inDim === undefined && inDim !== expectIn) {
    // DC-AE-V latents have 32 channels (I2V: 32 + 4 mask + 32 condition); other widths are allowed only when asked
    throw new ShapeError(`phase-1 patch embedder takes ${inDim} channels; a ${bc.model_type.toUpperCase()} DC-VideoGen DiT takes ${expectIn} (pass inDim to override)`);
  }
  const config = validateWanConfig({ ...bc, name: opts.name ?? `${bc.name}-dc`, patch_size: [1, 1, 1], in_dim: inDim, out_dim: opts.outDim ?? 32 });
  const weights = new Map<string, Tensor>();
  const copied: string[] = [];
  for (const [k, t] of sd) {
    if (!copiedFromBase(k, i2v)) continue;
    weights.set(k, t);
    copied.push(k);
  }
  weights.set('patch_embedding.weight', is5 ? pw : ops.reshape(pw, [D, inDim, 1, 1, 1]));
  weights.set('patch_embedding.bias', patch.bias);
  weights.set('head.head.weight', zeros([config.out_dim, D]));
  weights.set('head.head.bias', zeros([config.out_dim]));
  // the result must be exactly a WanModel of the new config: every key, every shape (strict load)
  const check = new WanModel(config);
  const need = check.shapes();
  const missing = [...need.keys()].filter((k) => !weights.has(k));
  if (missing.length) throw new ValueError(`assemble: the base lacks ${missing.length} keys the DiT needs (${missing.slice(0, 5).join(', ')})`);
  for (const [k, want] of need) {
    const s = weights.get(k)!.shape;
    if (s.length !== want.length || s.some((d, i) => d !== want[i])) throw new ShapeError(`assemble: ${k} is ${fmtShape(s)} in the base but the DiT needs ${fmtShape(want)}`);
  }
  return { config, weights, copied };
}

/** `dcvg adapt assemble`: base DiT file/folder + phase-1 output -> the assembled DiT (file or folder, atomic). */
export function assembleFiles(basePath: string, patchPath: string, out: string, opts: AssembleOptions & { config?: WanConfig; format?: DiTFormat } = {}): { outputs: string[]; config: WanConfig; copied: number } {
  const b = readDiTWeights(basePath);
  const cfg = opts.config ?? configOf(basePath, b.metadata);
  if (!cfg) throw new ValueError(`${basePath}: no Wan config found (config.json beside it or config metadata); pass --config`);
  const a = assembleDcDiT({ config: cfg, weights: b.weights }, readAlignedPatch(patchPath), opts);
  const outputs = writeDiT(out, a.weights as Map<string, WritableTensor>, { format: opts.format, config: a.config, metadata: { assembled_from: basePath, patch_from: patchPath } });
  return { outputs, config: a.config, copied: a.copied.length };
}
