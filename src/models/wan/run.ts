/**
 * Loading Wan weights from any of the released layouts, and a tensor-file runner for `dcvg run wan`.
 */
import { SafetensorsFile } from '../../io/safetensors.js';
import { inWeightsFile, openWeights } from '../../io/weights.js';
import type { LoadReport, TensorSource } from '../../nn/module.js';
import { ShapeError } from '../../tensor/errors.js';
import { Tensor, noGrad } from '../../tensor/tensor.js';
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
    src: { keys: () => names.keys(), shape: (k) => raw.shape(names.get(k)!), get: (k) => raw.get(names.get(k)!) },
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

/** Reads x, t, context0..context{B-1} and, for i2v, y and clip_fea from a safetensors file. */
export function readWanInputs(path: string, config: WanConfig): WanInputs {
  const f = SafetensorsFile.open(path);
  try {
    const need = (k: string) => {
      if (!f.has(k)) throw new ShapeError(`${path}: no tensor "${k}" (has: ${f.keys().join(', ') || 'nothing'})`);
      return f.tensor(k);
    };
    const x = need('x');
    const t = need('t');
    const B = x.shape[0] ?? 0;
    const context: Tensor[] = [];
    for (let i = 0; f.has(`context${i}`); i++) context.push(f.tensor(`context${i}`));
    if (context.length === 0 && f.has('context')) {
      const c = f.tensor('context');
      if (c.ndim === 3) for (let i = 0; i < c.shape[0]!; i++) context.push(c.slice(0, i, i + 1).squeeze(0).contiguous());
      else context.push(c);
    }
    if (context.length !== B)
      throw new ShapeError(`${path}: x has batch ${B} but ${context.length} text contexts (context0..context${B - 1}) were found`);
    const i2v = config.model_type === 'i2v';
    return { x, t, context, y: i2v || f.has('y') ? need('y') : null, clipFea: i2v ? need('clip_fea') : null };
  } finally {
    f.close();
  }
}

/** One forward pass from files: config (preset / JSON path / object), weights, inputs -> the velocity tensor. */
export function runWan(cfgJson: string | object, weightsPath: string, inputsPath: string): Tensor {
  const model = createWanModel(cfgJson, weightsPath);
  const inp = readWanInputs(inputsPath, model.config);
  return noGrad(() => model.forward(inp.x, inp.t, inp.context, { y: inp.y, clipFea: inp.clipFea }));
}
