/**
 * A run's log, train.jsonl: one JSON object per line, each with an integer `step` (step records, and evaluation
 * records that hold an `eval` object). Appended after each step; on --resume the lines after the checkpoint's step
 * are dropped (they belong to the lost part of the killed run). Curves are drawn from it (loss.png, eval.png).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { writeFileAtomic } from '../io/files.js';
import { writeLinePlotPng } from '../metrics/plot.js';

export const LOG = 'train.jsonl';

export function appendLine(path: string, rec: object): void {
  writeFileSync(path, JSON.stringify(rec) + '\n', { flag: 'a' });
}

/** The records of a log: step records, evaluation records (those with an `eval` field), and their lines as written. */
export function readLogRecords<S extends { step: number }, E extends { step: number; eval: unknown }>(path: string): { steps: S[]; evals: E[]; lines: string[] } {
  const steps: S[] = [];
  const evals: E[] = [];
  const lines: string[] = [];
  if (!existsSync(path)) return { steps, evals, lines };
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let r: unknown;
    try {
      r = JSON.parse(line);
    } catch {
      continue; // a line cut short by a kill
    }
    // only records of ours (an object with a step number): anything else is not a line a trainer wrote
    if (typeof r !== 'object' || r === null || !Number.isSafeInteger((r as { step?: unknown }).step)) continue;
    lines.push(line);
    if ('eval' in r) evals.push(r as E);
    else steps.push(r as S);
  }
  return { steps, evals, lines };
}

/** Keeps exactly the lines up to `step` (a resumed run continues the log from its checkpoint), or starts it empty. */
export function resetLog(path: string, step: number | null): void {
  if (step === null) {
    writeFileAtomic(path, '');
    return;
  }
  const { lines } = readLogRecords(path);
  const kept = lines.filter((l) => (JSON.parse(l) as { step: number }).step <= step);
  writeFileAtomic(path, kept.length ? kept.join('\n') + '\n' : '');
}

/** A smoothed, bucketed series for plots: mean of each run of `k` points. */
export function bucketMeans(v: readonly number[], maxPoints = 400): { values: number[]; k: number } {
  const k = Math.max(1, Math.ceil(v.length / maxPoints));
  const out: number[] = [];
  for (let i = 0; i < v.length; i += k) {
    const s = v.slice(i, i + k);
    out.push(s.reduce((a, b) => a + b, 0) / s.length);
  }
  return { values: out, k };
}

/** loss.png: the named series of the step records (bucketed means), against the step. */
export function writeLossPlot(path: string, steps: readonly { step: number }[], series: { name: string; value: (r: any) => number | undefined }[]): void {
  if (!steps.length) return;
  const s = series.map((x) => ({ name: x.name, b: bucketMeans(steps.map((r) => x.value(r) ?? NaN)) }));
  const k = s[0]!.b.k;
  writeLinePlotPng(path, {
    title: `training loss (mean of ${k} steps per point, from step ${steps[0]!.step})`,
    xLabel: 'step',
    yLabel: 'loss',
    xScale: k,
    series: s.map((x) => ({ name: x.name, values: x.b.values })),
  });
}
