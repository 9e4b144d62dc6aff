/**
 * Loading Wan VAE weights (Wan2.1_VAE.pth, safetensors in the original or diffusers names, through openWeights), and
 * the tensor-file runner behind `dcvg run wan-vae`.
 */
import { SafetensorsFile } from '../../io/safetensors.js';
import { inWeightsFile, openWeights, renamedSource, safetensorsMetadataOf } from '../../io/weights.js';
import type { LoadReport, TensorSource } from '../../nn/module.js';
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import { Tensor, firstNonFinite, noGrad } from '../../tensor/tensor.js';
import { parseWanVaeConfig, resolveWanVaeConfig, type WanVaeConfig } from './config.js';
import { detectWanVaeKeyFormat, wanVaeKeyMap, type WanVaeKeyFormat } from './keys.js';
import { WanVAE, type WanVaeStreamOptions } from './model.js';

export interface WanVaeLoadResult {
  source: string;
  format: WanVaeKeyFormat;
  report: LoadReport;
}

/** A source seen in the original names (diffusers names are renamed; unknown names stay, for the strict report). */
function originalView(model: WanVAE, raw: TensorSource): { src: TensorSource; format: WanVaeKeyFormat } {
  const keys = [...raw.keys()];
  const format = detectWanVaeKeyFormat(keys);
  if (format === 'original') return { src: raw, format };
  const map = wanVaeKeyMap(model).toOriginal;
  const names = new Map<string, string>();
  for (const k of keys) names.set(map.get(k) ?? k, k);
  return { src: renamedSource(raw, names), format };
}

/**
 * Loads weights strictly (every key, exact shapes, nothing else; checked from the header or pickle before any data
 * is read; NaN / Inf refused): .safetensors (F32 / BF16 / F16) or a torch checkpoint such as Wan2.1_VAE.pth, in the
 * original or diffusers names, or a diffusers model folder (`vae/`).
 */
export function loadWanVaeWeights(model: WanVAE, path: string): WanVaeLoadResult {
  const w = openWeights(path, { component: 'vae' });
  try {
    const v = originalView(model, w.tensors);
    const report = model.loadStateDict(v.src);
    return { source: w.source, format: v.format, report };
  } catch (e) {
    throw inWeightsFile(e, w.source);
  } finally {
    w.close();
  }
}

/** metadata "format" of the Wan VAE weights `dcvg train-ae` writes (model.safetensors, with metadata "config"). */
export const WAN_VAE_WEIGHTS_FORMAT = 'dcvg-wan-vae-weights';

/**
 * The config a Wan VAE weights file written by `dcvg train-ae` carries (or the model.safetensors of a run folder), or
 * null for any other file (the released .pth, diffusers files, DC-AE-V weights).
 */
export function embeddedWanVaeConfig(weights: string): WanVaeConfig | null {
  const meta = safetensorsMetadataOf(weights);
  if (meta?.format !== WAN_VAE_WEIGHTS_FORMAT || !meta.config) return null;
  try {
    const j = JSON.parse(meta.config) as Record<string, unknown>;
    const { family: _f, ...rest } = j;
    return parseWanVaeConfig(rest, typeof j.name === 'string' ? j.name : undefined, weights);
  } catch {
    return null;
  }
}

/** The state dict in the original or diffusers names (for saveSafetensors). */
export function wanVaeStateDict(model: WanVAE, format: WanVaeKeyFormat = 'original'): Map<string, Tensor> {
  const sd = model.stateDict();
  if (format === 'original') return sd;
  const map = wanVaeKeyMap(model).toDiffusers;
  return new Map([...sd].map(([k, t]) => [map.get(k)!, t]));
}

/** A model from a preset name, config file or object, with weights when a path is given. */
export function createWanVae(cfg: string | object, weights?: string): WanVAE {
  const m = new WanVAE(resolveWanVaeConfig(cfg));
  if (weights) loadWanVaeWeights(m, weights);
  return m;
}

/** `input`, `input2`, ... of an inputs file, in order (at least `input`). */
export function readWanVaeInputs(path: string, model: WanVAE): { name: string; suffix: string; x: Tensor }[] {
  const f = SafetensorsFile.open(path);
  try {
    if (!f.has('input')) throw new ShapeError(`${path}: no tensor "input" (has: ${f.keys().join(', ') || 'nothing'})`);
    const out: { name: string; suffix: string; x: Tensor }[] = [];
    for (let i = 1; ; i++) {
      const name = i === 1 ? 'input' : `input${i}`;
      if (!f.has(name)) break;
      const x = f.tensor(name);
      try {
        model.checkVideo(x, name);
        model.latentFrames(x.shape[2]!);
      } catch (e) {
        throw e instanceof ShapeError || e instanceof ValueError ? new (e.constructor as typeof ValueError)(`${path}: ${name}: ${e.message}`) : e;
      }
      const i0 = firstNonFinite(x.readSync());
      if (i0 >= 0) throw new ValueError(`${path}: ${name} ${fmtShape(x.shape)} holds a non-finite value (element ${i0})`);
      out.push({ name, suffix: i === 1 ? '' : String(i), x });
    }
    return out;
  } finally {
    f.close();
  }
}

/**
 * For each input clip (suffix '' for `input`, '2' for `input2`, ...): `moments`, `mu` (raw), `latent` (normalised),
 * `reconstruction_raw` (decode of the latent, unclamped) and `reconstruction` (clamped to [-1, 1]), as the fixture
 * names them. Inputs are read and checked before the weights are loaded.
 */
export function runWanVae(cfg: string | object | WanVaeConfig, weightsPath: string, inputsPath: string, opts: WanVaeStreamOptions = {}): Map<string, Tensor> {
  const model = new WanVAE(resolveWanVaeConfig(cfg));
  const inputs = readWanVaeInputs(inputsPath, model);
  loadWanVaeWeights(model, weightsPath);
  const out = new Map<string, Tensor>();
  noGrad(() => {
    for (const { suffix, x } of inputs) {
      const moments = model.encodeMoments(x, opts);
      const { mu } = model.splitMoments(moments);
      const latent = model.normalize(mu);
      const raw = model.decodeRaw(model.denormalize(latent));
      out.set(`moments${suffix}`, moments);
      out.set(`mu${suffix}`, mu);
      out.set(`latent${suffix}`, latent);
      out.set(`reconstruction_raw${suffix}`, raw);
      out.set(`reconstruction${suffix}`, model.clampPixels(raw));
    }
  });
  return out;
}
