/** Shared test helpers: locating ../shared fixtures, backends to run on, tolerance checks. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getNativeBackend, nativeUnavailableReason, referenceBackend } from '../src/backend/index.js';
import type { Backend } from '../src/backend/backend.js';
import { Tensor } from '../src/tensor/tensor.js';
import { loadSafetensors } from '../src/io/safetensors.js';
import type { StepRecord, TrainAEOptions } from '../src/train/ae_trainer.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Repository root (tests run from dist/test). */
export const repoRoot = existsSync(join(here, '..', 'package.json')) ? resolve(here, '..') : resolve(here, '..', '..');

/** ../shared next to the repository, or $DCVG_SHARED. */
export const sharedDir = process.env.DCVG_SHARED ? resolve(process.env.DCVG_SHARED) : resolve(repoRoot, '..', 'shared');

/** Path of a fixture file, or null (with the reason) when ../shared is absent. */
export function fixturePath(rel: string): string {
  return join(sharedDir, 'fixtures', rel);
}

/** A skip message when the fixture is missing, else false (use as the `skip` option of node:test). */
export function skipUnlessFixture(rel: string): string | false {
  const p = fixturePath(rel);
  return existsSync(p) ? false : `fixture missing: ${p} (clone the shared folder beside the repository to run this test)`;
}

/** The backends to test: reference always; native when built (in CI a missing addon is a failure, not a skip). */
export function testBackends(): { name: string; backend: Backend | null; skip: string | false }[] {
  const nat = getNativeBackend();
  const natSkip = nat ? false : process.env.CI ? false : `native addon not built: ${nativeUnavailableReason()}`;
  return [
    { name: 'reference', backend: referenceBackend, skip: false },
    { name: 'native', backend: nat, skip: natSkip },
  ];
}

export function requireBackend(b: Backend | null): Backend {
  if (!b) throw new Error(`native backend unavailable: ${nativeUnavailableReason()}`);
  return b;
}

/** max|a-b| / max|ref| (0 when both are all-zero). */
export function relErr(actual: Float32Array | Float64Array | number[], ref: Float32Array | Float64Array | number[]): number {
  if (actual.length !== ref.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs((actual[i] as number) - (ref[i] as number));
    if (Number.isNaN(d)) return Infinity;
    if (d > num) num = d;
    const r = Math.abs(ref[i] as number);
    if (r > den) den = r;
  }
  return den === 0 ? num : num / den;
}

export function assertClose(actual: Tensor, ref: Tensor, tol: number, what: string): void {
  if (actual.shape.length !== ref.shape.length || actual.shape.some((d, i) => d !== ref.shape[i]))
    throw new Error(`${what}: shape [${actual.shape.join(', ')}] != reference [${ref.shape.join(', ')}]`);
  const e = relErr(actual.readSync(), ref.readSync());
  if (!(e <= tol)) throw new Error(`${what}: relative error ${e.toExponential(3)} exceeds ${tol}`);
}

/** The Python that has torch for live comparisons ($DCVG_TORCH_PYTHON, default Debian's /usr/bin/python3). */
export const torchPython = process.env.DCVG_TORCH_PYTHON ?? '/usr/bin/python3';

/**
 * A skip message when the shared clips or torch are missing (naming what is not tested), else false.
 * `what` completes "... is not tested", e.g. 'the PyTorch twin trainer'.
 */
export function skipUnlessClipsAndTorch(what: string): string | false {
  const clips = join(sharedDir, 'data', 'clips128');
  if (!existsSync(clips)) return `shared clips missing: ${clips} (clone the shared folder beside the repository to run this test)`;
  if (!existsSync(torchPython)) return `${torchPython} missing: ${what} is not tested`;
  const r = spawnSync(torchPython, ['-c', 'import torch'], { encoding: 'utf8' });
  return r.status === 0 ? false : `torch not importable by ${torchPython}: ${what} is not tested`;
}

/** What killAndResume needs from a trainer. */
export interface KillAndResumeRun {
  /** Starts a fresh run in `out`; `onStep(step)` is called after each logged step (a throw from it kills the run). */
  start: (out: string, onStep?: (step: number) => void) => Promise<unknown>;
  /** Resumes the run in `out` from its last checkpoint. */
  resume: (out: string) => Promise<unknown>;
  /** The run's log: per step, the values that must match exactly (the step number first); per evaluation, likewise. */
  log: (out: string) => { steps: unknown[][]; evals: unknown[] };
  /** The step after which run b dies (a hard stop, no save: the steps since its last checkpoint are logged). */
  killAt: number;
}

/**
 * Resume is exact: run a straight; run b with the same options, killed after step `killAt` (its log then holds
 * `killAt` steps); resume b; then every logged value (compared with ===, step by step), every evaluation, and every
 * checkpoint tensor of b equal a's. Returns the two run folders, `root`/a and `root`/b, for further checks.
 */
export async function killAndResume(root: string, r: KillAndResumeRun): Promise<{ a: string; b: string }> {
  const a = join(root, 'a');
  const b = join(root, 'b');
  await r.start(a);
  await assert.rejects(
    r.start(b, (step) => {
      if (step === r.killAt) throw new Error('killed');
    }),
    /killed/,
  );
  assert.equal(r.log(b).steps.length, r.killAt, 'steps logged by the killed run');
  await r.resume(b);
  const la = r.log(a);
  const lb = r.log(b);
  assert.deepEqual(
    lb.steps.map((s) => s[0]),
    la.steps.map((s) => s[0]),
  );
  // === per value (a NaN in both fails), then deep equality of the rows (tells -0 from 0)
  for (let i = 0; i < la.steps.length; i++)
    for (let j = 1; j < la.steps[i]!.length; j++) assert.equal(lb.steps[i]![j], la.steps[i]![j], `log value ${j} at step ${la.steps[i]![0]}`);
  assert.deepEqual(lb.steps, la.steps);
  assert.deepEqual(lb.evals, la.evals);
  const ca = loadSafetensors(join(a, 'checkpoint.safetensors'));
  const cb = loadSafetensors(join(b, 'checkpoint.safetensors'));
  assert.deepEqual([...cb.tensors.keys()].sort(), [...ca.tensors.keys()].sort());
  for (const [k, t] of ca.tensors) assert.deepEqual([...cb.tensors.get(k)!.readSync()], [...t.readSync()], k);
  return { a, b };
}

/**
 * killAndResume for `trainAE` (DC-AE-V or Wan VAE): `options(dir)` are the run's options, `fields(record)` the logged
 * values compared after the step number; evaluations compare their PSNR.
 */
export async function killAndResumeAE(root: string, options: (out: string) => TrainAEOptions, fields: (s: StepRecord) => unknown[], killAt: number): Promise<{ a: string; b: string }> {
  const { readLog, trainAE } = await import('../src/train/ae_trainer.js');
  return killAndResume(root, {
    start: (dir, onStep) => trainAE(options(dir), { onStep: onStep && ((r) => onStep(r.step)) }),
    resume: (dir) => trainAE({ out: dir, resume: true } as TrainAEOptions & { resume: boolean }),
    log: (dir) => {
      const l = readLog(join(dir, 'train.jsonl'));
      return { steps: l.steps.map((s) => [s.step, ...fields(s)]), evals: l.evals.map((e) => e.eval.psnr) };
    },
    killAt,
  });
}
