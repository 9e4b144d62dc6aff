/**
 * The default DC-AE-V shipped with the package (assets/default-ae): a small chunk-causal f32t4c32 model trained
 * here with `dcvg train-ae` on the shared clips (see README). Used by the CLI when --model / --weights are omitted.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { safetensorsMetadataOf } from '../../io/weights.js';
import { ValueError } from '../../errors.js';
import { createModel, type DCAEV } from './autoencoder.js';
import { configFromReference } from './config.js';

const here = dirname(fileURLToPath(import.meta.url));

/** assets/default-ae of this installation (from src/ or dist/src/), or null. */
export function defaultModelDir(): string | null {
  for (const up of [['..', '..', '..'], ['..', '..', '..', '..']]) {
    const d = resolve(here, ...up, 'assets', 'default-ae');
    if (existsSync(join(d, 'config.json'))) return d;
  }
  return null;
}

export function defaultModelPaths(): { config: string; weights: string } {
  const d = defaultModelDir();
  if (!d) throw new ValueError('the default model is not installed (assets/default-ae/config.json not found); pass --model and --weights');
  const weights = join(d, 'model.safetensors');
  if (!existsSync(weights)) throw new ValueError(`the default model's weights are missing (${weights}); pass --model and --weights`);
  return { config: join(d, 'config.json'), weights };
}

export function loadDefaultModel(): DCAEV {
  const p = defaultModelPaths();
  return createModel(p.config, p.weights);
}

/**
 * The model config stored in a weights file written by `dcvg train-ae` (metadata "config"), or null for other files.
 */
export function embeddedConfig(weights: string): ReturnType<typeof configFromReference> | null {
  const raw = safetensorsMetadataOf(weights)?.config;
  if (!raw) return null;
  try {
    const j = JSON.parse(raw) as { name?: string };
    return configFromReference(j, j.name ?? 'custom');
  } catch {
    return null;
  }
}
