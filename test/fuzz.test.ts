/**
 * Seeded fuzzing of every reader of user files: safetensors headers, weight loading, torch zips and pickles, model
 * configs, train-ae checkpoint metadata and video files (in process, in a child runner per area with a watchdog and an
 * address-space limit), plus a bounded number of CLI runs on the same kinds of inputs and on hostile paths.
 *
 * Each case must end in success or a typed error (DcvgError, one clear line; a CLI exit status 1-3 with one clear
 * stderr line), never a crash, hang or raw JavaScript error; leave its inputs byte-identical; and leave no output
 * and no temporary of ours behind when it fails.
 *
 * Replay: DCVG_FUZZ_CASE=torch:17 (comma-separated; cli:<name> for CLI cases), DCVG_FUZZ_SEED=<n> (default below),
 * DCVG_FUZZ_SCALE=<x> (more or fewer cases per area), DCVG_FUZZ_AREAS=torch,video.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AREAS, prepareCache } from './fuzz/cases.js';
import { runArea } from './fuzz/parent.js';
import { cliCases, runCliCase } from './fuzz/cli.js';
import { compareSnapshots, errorProblem, failureClass, snapshot } from './fuzz/harness.js';
import { writeFileSync } from 'node:fs';
import { ValueError } from '../src/errors.js';
import { caseRng } from './fuzz/rng.js';
import { knownFailure } from './fuzz/known.js';
import type { CaseResult } from './fuzz/runner.js';

export const DEFAULT_SEED = 16;
const SEED = Number(process.env.DCVG_FUZZ_SEED ?? DEFAULT_SEED);
const SCALE = Number(process.env.DCVG_FUZZ_SCALE ?? 1);
const ONLY = (process.env.DCVG_FUZZ_CASE ?? '').split(',').filter(Boolean);
const AREA_FILTER = (process.env.DCVG_FUZZ_AREAS ?? '').split(',').filter(Boolean);

/** Indices of an area to run: all (scaled), or the replayed ones. */
function indicesFor(area: string, count: number): number[] | null {
  if (ONLY.length) {
    const mine = ONLY.filter((c) => c.startsWith(`${area}:`)).map((c) => Number(c.slice(area.length + 1)));
    return mine.length ? mine : null;
  }
  if (AREA_FILTER.length && !AREA_FILTER.includes(area)) return null;
  return Array.from({ length: Math.max(1, Math.round(count * SCALE)) }, (_, i) => i);
}

/** One report line per failure class, with a reproducer for its first case. */
function report(fails: CaseResult[]): string[] {
  const byClass = new Map<string, CaseResult[]>();
  for (const f of fails) {
    const k = failureClass(f.problems.join('; '), f.error ? `${f.error.name}: ${f.error.message}` : '');
    byClass.set(k, [...(byClass.get(k) ?? []), f]);
  }
  return [...byClass].map(([k, cs]) => {
    const c = cs[0]!;
    return `${cs.length}x ${k}\n    e.g. DCVG_FUZZ_SEED=${SEED} DCVG_FUZZ_CASE=${c.area}:${c.index} (${c.label})${c.error ? `\n    ${c.error.name}: ${c.error.message.slice(0, 200)}` : ''}`;
  });
}

let cache = '';
let work = '';
before(() => {
  cache = mkdtempSync(join(tmpdir(), 'dcvg-fuzz-cache-'));
  work = mkdtempSync(join(tmpdir(), 'dcvg-fuzz-work-'));
});
after(() => {
  rmSync(cache, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

/** At most this many children at once (CI machines have 2 cores; each child is single-threaded). */
const PARALLEL = Math.max(1, Number(process.env.DCVG_FUZZ_JOBS ?? 2));
let running = 0;
const waiting: (() => void)[] = [];
async function pooled<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= PARALLEL) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** Started all at once (the pool bounds them), awaited test by test, so areas overlap. */
const started = new Map<string, Promise<CaseResult[]>>();
let prepared: Promise<void> | null = null;
async function startAll(): Promise<void> {
  prepared ??= prepareCache({ cache });
  await prepared;
  if (started.size) return;
  for (const area of AREAS) {
    const indices = indicesFor(area.name, area.count);
    if (indices) started.set(area.name, pooled(() => runArea({ area: area.name, timeoutSec: area.timeoutSec, seed: SEED, indices, cache, work })));
  }
  for (const c of cliCases(SEED)) {
    const id = `cli:${c.name}`;
    if ((ONLY.length && !ONLY.includes(id)) || (!ONLY.length && AREA_FILTER.length && !AREA_FILTER.includes('cli'))) continue;
    started.set(
      id,
      pooled(async () => {
        const dir = mkdtempSync(join(work, `cli-${c.name}-`));
        const t0 = performance.now();
        try {
          const r = await runCliCase(c, dir, { cache });
          const last = r.runs.map((x) => `exit ${x.status ?? x.signal}: ${x.stderr.trim().split('\n').slice(-1)[0]?.slice(0, 160) ?? ''}`).join(' / ');
          return [{ area: 'cli', index: -1, label: `${c.name}: ${r.label}`, outcome: r.problems.length ? 'fail' : 'ok', problems: r.problems, error: { name: 'cli', message: last }, ms: Math.round(performance.now() - t0) } as CaseResult];
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }),
    );
  }
}

describe('fuzz harness', () => {
  it('flags raw errors, changed inputs, leftovers and our temporaries (so the checks can fail)', () => {
    assert.match(errorProblem(new TypeError('x')) ?? '', /untyped TypeError/);
    assert.match(errorProblem(new ValueError('a\nb')) ?? '', /several lines/);
    assert.match(errorProblem(new ValueError("ENOENT: no such file or directory, open 'x'")) ?? '', /raw text/);
    assert.equal(errorProblem(new ValueError('config: width_list must be a list')), null);
    const d = mkdtempSync(join(tmpdir(), 'dcvg-fuzz-self-'));
    try {
      writeFileSync(join(d, 'in'), 'a');
      const before = snapshot(d);
      writeFileSync(join(d, 'in'), 'b');
      writeFileSync(join(d, 'out'), 'c');
      writeFileSync(join(d, `.out.dcvg-tmp-${process.pid}-00aa11bb`), '');
      const p = compareSnapshots(before, snapshot(d), { failed: true });
      assert.ok(p.some((x) => /input modified: in/.test(x)) && p.some((x) => /left behind after a failure: out/.test(x)) && p.some((x) => /temporary left/.test(x)), p.join('; '));
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('cases replay alone: the same (seed, area, index) gives the same input', () => {
    for (const area of AREAS.filter((a) => a.name !== 'trainmeta' && a.name !== 'video')) {
      const a = area.make(caseRng(SEED, area.name, 5), 5, { cache: '' });
      const b = area.make(caseRng(SEED, area.name, 5), 5, { cache: '' });
      assert.equal(a.label, b.label);
      assert.deepEqual(Object.keys(a.files), Object.keys(b.files));
      for (const k of Object.keys(a.files)) assert.deepEqual(a.files[k], b.files[k]);
    }
  });
});

describe(`fuzz (seed ${SEED}, scale ${SCALE})`, () => {
  before(startAll);
  for (const area of AREAS) {
    const indices = indicesFor(area.name, area.count);
    if (!indices) continue;
    it(`${area.name}: ${indices.length} cases end in success or a typed error, inputs intact, nothing left behind`, async (t) => {
      const results = await started.get(area.name)!;
      const fails = results.filter((r) => r.outcome === 'fail');
      const known = fails.filter((f) => knownFailure(f));
      const unknown = fails.filter((f) => !knownFailure(f));
      const counts = { ok: results.filter((r) => r.outcome === 'ok').length, typed: results.filter((r) => r.outcome === 'typed').length, fail: fails.length };
      t.diagnostic(`${area.name}: ${JSON.stringify(counts)}, ${Math.round(results.reduce((a, r) => a + r.ms, 0))} ms in cases`);
      for (const line of report(known)) t.diagnostic(`known (owned elsewhere, see test/fuzz/known.ts): ${line}`);
      assert.equal(results.length, indices.length, 'every case reported');
      if (unknown.length) assert.fail(`${unknown.length} failing cases:\n${report(unknown).join('\n')}`);
      if (known.length) t.todo(`${known.length} known failures in areas being fixed elsewhere`);
    });
  }
});

describe('fuzz: CLI on hostile inputs and hostile paths', () => {
  before(startAll);
  for (const c of cliCases(SEED)) {
    const id = `cli:${c.name}`;
    if ((ONLY.length && !ONLY.includes(id)) || (!ONLY.length && AREA_FILTER.length && !AREA_FILTER.includes('cli'))) continue;
    it(`${c.name}: exit 0-3 with one clear line, inputs intact, no partial output`, async (t) => {
      const [r] = await started.get(id)!;
      t.diagnostic(`${r!.label} -> ${r!.error?.message} (${r!.ms} ms)`);
      if (r!.outcome === 'fail') {
        const k = knownFailure(r!);
        const msg = `DCVG_FUZZ_SEED=${SEED} DCVG_FUZZ_CASE=${id} (${r!.label}): ${r!.problems.join('; ')}`;
        if (!k) assert.fail(msg);
        t.diagnostic(`known (${k.owner}): ${msg}`);
        t.todo('known failure owned elsewhere');
      }
    });
  }
});
