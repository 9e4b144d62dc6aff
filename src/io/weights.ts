/**
 * A model's weights file (safetensors or torch.save) opened as a lazy TensorSource for Module.loadStateDict:
 * - keys and shapes come from the safetensors header or the torch pickle alone, so loadStateDict reports missing,
 *   unexpected and mismatched keys before a single tensor byte is read (a bad file fails fast and small);
 * - every tensor read is checked for NaN and Inf (one pass over data already in memory), so corrupt weights fail here
 *   with the file and tensor named instead of turning every latent into NaN later.
 */
import { existsSync } from 'node:fs';
import type { TensorSource } from '../nn/module.js';
import { StateDictError, ValueError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { isZipFile } from './files.js';
import { SafetensorsFile } from './safetensors.js';
import { openTorchStateDict } from './torch_checkpoint.js';

export interface WeightsFile {
  /** the path, plus which state dict of a torch checkpoint was used */
  source: string;
  tensors: TensorSource;
  close(): void;
}

/** Throws a ValueError naming the file, the tensor and the first non-finite element; returns `t` otherwise. */
export function assertFiniteWeights(t: Tensor, path: string, key: string): Tensor {
  const d = t.data();
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    // v - v is 0 for every finite v and NaN for NaN and +-Inf.
    if (v - v !== 0) {
      const at: number[] = [];
      let r = i;
      for (let a = t.shape.length - 1; a >= 0; a--) {
        at.unshift(r % t.shape[a]!);
        r = Math.floor(r / t.shape[a]!);
      }
      throw new ValueError(
        `${path}: weight "${key}" has ${v} at index [${at.join(', ')}] (element ${i} of ${d.length}); the weights file is corrupt or was saved from a diverged run`,
      );
    }
  }
  return t;
}

/** A key/shape mismatch report that names the weights file (loadStateDict does not know it). */
export function inWeightsFile(e: unknown, source: string): unknown {
  return e instanceof StateDictError ? new StateDictError(`${source}: ${e.message}`, e.report) : e;
}

/** Opens `path` (checked to exist) lazily; the caller must close() it. */
export function openWeights(path: string): WeightsFile {
  if (!existsSync(path)) throw new ValueError(`weights file not found: ${path}`);
  if (isZipFile(path)) {
    const sd = openTorchStateDict(path);
    return {
      source: `${path} (${sd.source})`,
      tensors: { keys: () => sd.keys(), shape: (k) => sd.shape(k), get: (k) => assertFiniteWeights(sd.get(k), path, k) },
      close: () => sd.close(),
    };
  }
  const f = SafetensorsFile.open(path);
  return {
    source: path,
    tensors: { keys: () => f.keys(), shape: (k) => f.info(k).shape, get: (k) => assertFiniteWeights(f.tensor(k), path, k) },
    close: () => f.close(),
  };
}
