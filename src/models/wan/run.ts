/**
 * Loading Wan weights from any of the released layouts, and a tensor-file runner for `dcvg run wan`.
 */
import { SafetensorsFile } from '../../io/safetensors.js';
import { inWeightsFile, openWeights, renamedSource } from '../../io/weights.js';
import type { LoadReport, TensorSource } from '../../nn/module.js';
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import { Tensor, firstNonFinite, noGrad } from '../../tensor/tensor.js';
import { resolveWanConfig, type WanConfig } from './config.js';
import { WAN_ONLY_KEYS, detectWanKeyFormat, diffusersKeyToWan, type WanKeyFormat } from './keys.js';
import { WanModel } from './model.js';

export interface WanLoadResult {
  source: string;
  format: WanKeyFormat;
  report: LoadReport;
  /** [562] checkpoints carry the CFG null text embedding (512, 4096) next to the weights */
  nullEmbedding: Tensor | null;
}

/**
 * A source renamed to Wan's keys: diffusers names converted, the [562] training prefix `0.` stripped (when every
 * key has it), Wan-only buffers (null_embedding) set aside.
 */
function wanView(raw: TensorSource): { src: TensorSource; format: WanKeyFormat; extra: Map<string, string> } {
  const keys = [...raw.keys()];
  const prefixed = keys.length > 0 && keys.every((k) => k.startsWith('0.'));
  const strip = (k: string) => (prefixed ? k.slice(2) : k);
  const format = detectWanKeyFormat(keys.map(strip));
  const names = new Map<string, string>();
  const extra = new Map<string, string>();
  for (const k of keys) {
    const s = strip(k);
    if (WAN_ONLY_KEYS.includes(s)) {
      extra.set(s, k);
      continue;
    }
    names.set(format === 'diffusers' ? diffusersKeyToWan(s) : s, k);
  }
  return {
    src: renamedSource(raw, names),
    format,
    extra,
  };
}

/**
 * Loads weights into a WanModel (strict key and shape check, made from the file's header or pickle before any tensor
 * data is read; NaN or Inf weights are refused). Accepts .safetensors (F32/BF16/F16) and torch checkpoints (EMA entry
 * first, then model_state_dict, or a flat merged-LoRA dict), in original Wan or diffusers names.
 */
export function loadWanWeights(model: WanModel, path: string): WanLoadResult {
  const w = openWeights(path);
  try {
    const v = wanView(w.tensors);
    const ne = v.extra.get('null_embedding');
    const report = model.loadStateDict(v.src);
    return { source: w.source, format: v.format, report, nullEmbedding: ne ? w.tensors.get(ne) : null };
  } catch (e) {
    throw inWeightsFile(e, w.source);
  } finally {
    w.close();
  }
}

/** A model from a preset name, config file or config object, with weights when a path is given. */
export function createWanModel(cfg: string | object, weights?: string): WanModel {
  const m = new WanModel(resolveWanConfig(cfg));
  if (weights) loadWanWeights(m, weights);
  return m;
}

export interface WanInputs {
  x: Tensor;
  t: Tensor;
  context: Tensor[];
  y: Tensor | null;
  clipFea: Tensor | null;
}

/** Reads x, t, context0..context{B-1} and, for i2v, y and clip_fea from a safetensors file, checked (checkWanInputs). */
export function readWanInputs(path: string, config: WanConfig): WanInputs {
  const f = SafetensorsFile.open(path);
  let inp: WanInputs;
  try {
    const need = (k: string) => {
      if (!f.has(k)) throw new ShapeError(`${path}: no tensor "${k}" (has: ${f.keys().join(', ') || 'nothing'})`);
      return f.tensor(k);
    };
    const x = need('x');
    if (x.ndim !== 5) throw new ShapeError(`${path}: x must be (B, C, F, H, W), got ${fmtShape(x.shape)}`);
    const t = need('t');
    const B = x.shape[0]!;
    const context: Tensor[] = [];
    for (let i = 0; f.has(`context${i}`); i++) context.push(f.tensor(`context${i}`));
    if (context.length === 0 && f.has('context')) {
      const c = f.tensor('context');
      if (c.ndim === 3) for (let i = 0; i < c.shape[0]!; i++) context.push(c.slice(0, i, i + 1).squeeze(0).contiguous());
      else context.push(c);
    }
    if (B >= 1 && context.length !== B)
      throw new ShapeError(`${path}: x has batch ${B} but ${context.length} text contexts (context0..context${B - 1}) were found`);
    const i2v = config.model_type === 'i2v';
    inp = { x, t, context, y: i2v || f.has('y') ? need('y') : null, clipFea: i2v ? need('clip_fea') : null };
  } finally {
    f.close();
  }
  checkWanInputs(inp, config, path);
  return inp;
}

/** The first non-finite value of a tensor, as "index value", or null. */
function nonFiniteElement(t: Tensor): string | null {
  const d = t.readSync();
  const i = firstNonFinite(d);
  return i < 0 ? null : `element ${i} is ${d[i]}`;
}

/**
 * Checks inputs against the model before any work, naming the file and the tensor: a batch of at least one, ranks,
 * one timestep and one text context per sample, text widths and lengths, and finite values everywhere (a NaN would
 * otherwise run the whole model and write a file of NaNs).
 */
export function checkWanInputs(inp: WanInputs, c: WanConfig, path: string): void {
  const { x, t, context } = inp;
  if (x.ndim !== 5) throw new ShapeError(`${path}: x must be (B, C, F, H, W), got ${fmtShape(x.shape)}`);
  const B = x.shape[0]!;
  if (B < 1) throw new ShapeError(`${path}: x ${fmtShape(x.shape)} has batch 0: nothing to run`);
  if (x.shape.some((d) => d < 1)) throw new ShapeError(`${path}: x ${fmtShape(x.shape)} is empty`);
  if (t.ndim !== 1 || t.shape[0] !== B) throw new ShapeError(`${path}: t must have shape [${B}] (one timestep per sample of x), got ${fmtShape(t.shape)}`);
  if (context.length !== B) throw new ShapeError(`${path}: x has batch ${B} but ${context.length} text contexts were found`);
  context.forEach((u, i) => {
    if (u.ndim !== 2 || u.shape[1] !== c.text_dim || u.shape[0]! < 1 || u.shape[0]! > c.text_len)
      throw new ShapeError(`${path}: context${i} must be (L, ${c.text_dim}) text embeddings with 1 <= L <= ${c.text_len}, got ${fmtShape(u.shape)}`);
  });
  const named: [string, Tensor | null][] = [['x', x], ['t', t], ...context.map((u, i): [string, Tensor] => [`context${i}`, u]), ['y', inp.y], ['clip_fea', inp.clipFea]];
  for (const [k, v] of named) {
    if (!v) continue;
    const bad = nonFiniteElement(v);
    if (bad) throw new ValueError(`${path}: ${k} ${fmtShape(v.shape)} holds a non-finite value (${bad})`);
  }
}

/** One forward pass from files: config (preset / JSON path / object), weights, inputs -> the velocity tensor. */
export function runWan(cfgJson: string | object, weightsPath: string, inputsPath: string): Tensor {
  // Inputs are read and checked before the (possibly large) weights are loaded: a bad input fails at once.
  const config = resolveWanConfig(cfgJson);
  const inp = readWanInputs(inputsPath, config);
  const model = createWanModel(config, weightsPath);
  return noGrad(() => model.forward(inp.x, inp.t, inp.context, { y: inp.y, clipFea: inp.clipFea }));
}
