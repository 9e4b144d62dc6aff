/**
 * Training checkpoints: one safetensors file holding every tensor a run needs to continue, keyed by name
 * (`model.<param>`, `ema.<param>`, `adam_m.<param>`, `adam_v.<param>`, and a task's own prefixes), and the run's state
 * as JSON in the `dcvg_train` metadata entry (format tag, step, options, RNG states, counters). Written atomically
 * (temporary file + rename, saveSafetensors), so a kill at any moment leaves the previous checkpoint or the new one.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, saveSafetensors, type WritableTensor } from '../io/safetensors.js';
import { TrainingError, showValue } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { AdamW } from './optim.js';
import type { Ema } from './ema.js';

export const CKPT = 'checkpoint.safetensors';

/** The tensors of a training state under their checkpoint names. */
export function stateTensors(parts: {
  params?: { prefix: string; named: Iterable<readonly [string, Tensor]> }[];
  ema?: { prefix: string; ema: Ema }[];
  adamw?: { m: string; v: string; opt: AdamW }[];
}): Map<string, WritableTensor> {
  const out = new Map<string, WritableTensor>();
  for (const { prefix, named } of parts.params ?? []) for (const [k, t] of named) out.set(`${prefix}${k}`, t);
  for (const { prefix, ema } of parts.ema ?? []) for (const [k, t] of ema.shadows()) out.set(`${prefix}${k}`, t);
  for (const { m, v, opt } of parts.adamw ?? [])
    for (const [k, s] of opt.moments()) {
      out.set(`${m}${k}`, s.m);
      out.set(`${v}${k}`, s.v);
    }
  return out;
}

export function writeCheckpoint(path: string, tensors: Map<string, WritableTensor>, meta: object): void {
  saveSafetensors(path, tensors, { metadata: { dcvg_train: JSON.stringify(meta) } });
}

/**
 * A checkpoint tensor after checking that it exists, is a float tensor and has the expected shape: a checkpoint of
 * another model is refused before anything changes.
 */
export function checkpointTensor(f: SafetensorsFile, key: string, shape: readonly number[], path: string): Tensor {
  if (!f.has(key)) throw new TrainingError(`${path}: checkpoint lacks tensor ${key} (not a checkpoint of this run's model?)`);
  const info = f.info(key);
  if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) throw new TrainingError(`${path}: tensor ${key} is ${info.dtype}, expected a float tensor`);
  if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i]))
    throw new TrainingError(`${path}: tensor ${key} has shape [${info.shape.join(', ')}], the model's is [${shape.join(', ')}]`);
  return f.tensor(key);
}

/**
 * Loads a training state saved by stateTensors: parameters, EMA shadows and AdamW moments by name, each checked
 * (present, float, shape) and read in full before anything is changed.
 */
export function loadState(
  f: SafetensorsFile,
  path: string,
  parts: {
    params?: { prefix: string; named: Iterable<readonly [string, Tensor]> }[];
    ema?: { prefix: string; ema: Ema; updates: number }[];
    adamw?: { m: string; v: string; opt: AdamW; step: number }[];
  },
): void {
  const writes: (() => void)[] = [];
  for (const { prefix, named } of parts.params ?? [])
    for (const [k, p] of named) {
      const t = checkpointTensor(f, `${prefix}${k}`, p.shape, path);
      writes.push(() => p.write(t.readSync()));
    }
  for (const { m, v, opt, step } of parts.adamw ?? []) {
    const got = new Map<string, Tensor>();
    for (const [k, s] of opt.moments()) {
      got.set(`m${k}`, checkpointTensor(f, `${m}${k}`, s.m.shape, path));
      got.set(`v${k}`, checkpointTensor(f, `${v}${k}`, s.v.shape, path));
    }
    writes.push(() => opt.loadMoments(step, (k, w) => got.get(`${w}${k}`)!));
  }
  for (const { prefix, ema, updates } of parts.ema ?? []) {
    const got = new Map<string, Tensor>();
    for (const [k, s] of ema.shadows()) got.set(k, checkpointTensor(f, `${prefix}${k}`, s.shape, path));
    writes.push(() => ema.load((k) => got.get(k)!, updates));
  }
  for (const w of writes) w();
}

/** A run's checkpoint metadata (parsed JSON of `dcvg_train`), checked to be an object of the given format. */
export function readCheckpointJson(runDir: string, format: string, command: string): { path: string; meta: Record<string, unknown> } {
  const path = join(runDir, CKPT);
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new TrainingError(`no checkpoint to resume in ${runDir} (expected ${CKPT})`);
  }
  if (!st.isFile()) throw new TrainingError(`${path} is not a file (a checkpoint is a .safetensors file written by dcvg ${command})`);
  const f = SafetensorsFile.open(path);
  let m: unknown;
  try {
    const raw = f.metadata.dcvg_train;
    if (!raw) throw new TrainingError(`${path} is not a dcvg ${command} checkpoint (no dcvg_train metadata)`);
    try {
      m = JSON.parse(raw);
    } catch (e) {
      throw new TrainingError(`${path}: dcvg_train metadata is not valid JSON (${(e as Error).message})`);
    }
  } finally {
    f.close();
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new TrainingError(`${path}: dcvg_train metadata must be a JSON object, got ${showValue(m)}`);
  const r = m as Record<string, unknown>;
  if (r.format !== format) throw new TrainingError(`${path}: unsupported checkpoint format ${showValue(r.format)} (expected ${format})`);
  return { path, meta: r };
}

/** An RNG state as saved (four 32-bit words, not all zero, then the spare normal or null): null when fine, else why not. */
export function rngStateProblem(v: unknown): string | null {
  const bad = `must be four integers in [0, 2^32) then a number or null, got ${showValue(v)}`;
  if (!Array.isArray(v) || v.length !== 5) return `must be an array of 5 numbers, got ${showValue(v)}`;
  const words = v.slice(0, 4);
  if (!words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)) return bad;
  if (words.every((w) => w === 0)) return 'is all zero (not a generator state)';
  if (v[4] !== null && !(typeof v[4] === 'number' && Number.isFinite(v[4]))) return bad;
  return null;
}
