/** Learning-rate schedule: linear warmup from 0, then cosine decay to `minRatio * lr` at `total` steps. */
import { ValueError } from '../errors.js';

export interface LrSchedule {
  lr: number;
  warmup: number;
  total: number;
  /** floor of the cosine as a fraction of lr (default 0.1) */
  minRatio?: number;
}

/** The learning rate for update number `step` (1-based: the first optimizer step is step 1). */
export function lrAt(step: number, s: LrSchedule): number {
  if (!(s.lr >= 0) || !(s.total >= 1) || !(s.warmup >= 0)) throw new ValueError(`bad lr schedule ${JSON.stringify(s)}`);
  const minRatio = s.minRatio ?? 0.1;
  if (s.warmup > 0 && step <= s.warmup) return (s.lr * step) / s.warmup;
  const span = Math.max(1, s.total - s.warmup);
  const p = Math.min(1, Math.max(0, (step - s.warmup) / span));
  return s.lr * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * p)));
}
