/**
 * Child process of the fuzz suite: runs cases [from, to) of one area in process and prints one JSON line per case
 * (prefixed, so stray output from the code under test cannot be mistaken for a result). Crashes and hangs are seen
 * by the parent, which knows the last case started and restarts the runner after it.
 *
 *   node dist/test/fuzz/runner.js <area> <seed> <from> <to> <cache dir> <work dir>
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AREAS, type FuzzCase } from './cases.js';
import { caseRng } from './rng.js';
import { compareSnapshots, errorProblem, snapshot } from './harness.js';

export const LINE_PREFIX = '@@dcvg-fuzz ';

export interface CaseResult {
  area: string;
  index: number;
  label: string;
  outcome: 'ok' | 'typed' | 'fail';
  problems: string[];
  error?: { name: string; message: string };
  ms: number;
}

function emit(o: unknown): void {
  process.stdout.write(LINE_PREFIX + JSON.stringify(o) + '\n');
}

let pendingAsync: unknown[] = [];
process.on('unhandledRejection', (e) => pendingAsync.push(e));
process.on('uncaughtException', (e) => pendingAsync.push(e));

async function runOne(areaName: string, seed: number, index: number, cache: string, work: string): Promise<CaseResult> {
  const area = AREAS.find((a) => a.name === areaName)!;
  const rng = caseRng(seed, areaName, index);
  const c = area.make(rng, index, { cache }) as FuzzCase & { prepare?: () => Promise<void> };
  await c.prepare?.();
  const dir = mkdtempSync(join(work, `${areaName}-${index}-`));
  for (const [name, bytes] of Object.entries(c.files)) {
    if (name.endsWith('/')) mkdirSync(join(dir, name), { recursive: true });
    else {
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      writeFileSync(join(dir, name), bytes!);
    }
  }
  const before = snapshot(dir);
  emit({ start: index, label: c.label });
  pendingAsync = [];
  const t0 = performance.now();
  const problems: string[] = [];
  let outcome: CaseResult['outcome'] = 'ok';
  let error: CaseResult['error'];
  try {
    await c.exec(dir);
  } catch (e) {
    const err = e as Error;
    error = { name: err?.constructor?.name ?? typeof e, message: String(err?.message ?? e).slice(0, 400) };
    const p = errorProblem(e) ?? c.checkError?.(err, dir) ?? null;
    outcome = p ? 'fail' : 'typed';
    if (p) problems.push(p);
  }
  // Let stray async failures (a child process error nobody awaited) surface before judging the case.
  await new Promise((r) => setTimeout(r, 0));
  for (const e of pendingAsync) problems.push(`unhandled async ${(e as Error)?.constructor?.name}: ${String((e as Error)?.message ?? e).slice(0, 200)}`);
  const after = snapshot(dir);
  const mayChange = areaName === 'trainmeta' && outcome === 'ok' ? () => true : undefined;
  problems.push(...compareSnapshots(before, after, { failed: outcome !== 'ok', mayChange, mayAdd: mayChange }));
  if (problems.length) outcome = 'fail';
  rmSync(dir, { recursive: true, force: true });
  return { area: areaName, index, label: c.label, outcome, problems, error, ms: Math.round(performance.now() - t0) };
}

async function main(): Promise<void> {
  const [area, seedS, fromS, toS, cache, work] = process.argv.slice(2);
  const seed = Number(seedS);
  for (let i = Number(fromS); i < Number(toS); i++) emit({ result: await runOne(area!, seed, i, cache!, work!) });
  emit({ done: true });
}

main().catch((e) => {
  process.stderr.write(`fuzz runner failed outside a case: ${(e as Error)?.stack ?? e}\n`);
  process.exit(70);
});
