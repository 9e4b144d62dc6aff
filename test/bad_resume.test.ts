/**
 * train-ae against bad input and interruptions: a damaged checkpoint is refused (a TrainingError naming the file and
 * the field) before anything in the run folder changes; stale temporaries of a killed run are swept at the start of a
 * run; a new run that fails before its first checkpoint leaves nothing; SIGTERM / SIGINT stop the CLI cleanly; the
 * temporal study and eval-ae check their inputs before writing anything.
 */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tempOwnerPid } from '../src/io/files.js';
import { loadSafetensors, saveSafetensors } from '../src/io/safetensors.js';
import { writeVideo } from '../src/io/video.js';
import { configToReference, topologyConfig } from '../src/models/dcaev/config.js';
import { Tensor } from '../src/tensor/tensor.js';
import { TRAIN_DEFAULTS, readCheckpointMeta, readLog, trainAE, type TrainAEOptions } from '../src/train/ae_trainer.js';
import { TrainingError } from '../src/errors.js';
import { main } from '../src/cli/main.js';
import { repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

/** f4t4 chunk-causal, chunk 4 (as test/train_ae.test.ts): one step in about a second. */
const tinyConfig = () => topologyConfig({ name: 'tiny', widths: [4, 8, 8, 8], depths: [0, 1, 1, 1], latentChannels: 4, chunk: 4 });

function clipBytes(frames: number, size: number, phase: number): Uint8Array {
  const out = new Uint8Array(frames * size * size * 3);
  for (let i = 0; i < out.length; i++) out[i] = 128 + 100 * Math.sin(i / 37 + phase);
  return out;
}

let root = '';
let data = '';
let cfgPath = '';
/** A run stopped after step 1 of 2 (checkpoint at step 1), its log holding a line of a lost step 2 as after a kill. */
let base = '';

function tinyOptions(out: string, over: Partial<TrainAEOptions> = {}): TrainAEOptions {
  return { ...TRAIN_DEFAULTS, model: tinyConfig(), data, out, steps: 2, frames: 8, crop: 16, holdout: 0, ckptEvery: 100, evalEvery: 100, warmup: 1, lr: 3e-3, ...over };
}

const resume = (out: string, steps?: number) => trainAE({ out, resume: true, ...(steps ? { steps } : {}) } as TrainAEOptions & { resume: boolean });

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'dcvg-bad-resume-'));
  data = join(root, 'data');
  mkdirSync(data);
  for (let i = 0; i < 2; i++) await writeVideo(join(data, `c${i}.y4m`), clipBytes(8, 16, i), { width: 16, height: 16, fps: 10 });
  cfgPath = join(root, 'tiny.json');
  writeFileSync(cfgPath, JSON.stringify(configToReference(tinyConfig())));
  base = join(root, 'base');
  let steps = 0;
  const r = await trainAE(tinyOptions(base), { onStep: () => steps++, shouldStop: () => steps > 0 });
  assert.equal(r.steps, 1);
  assert.equal(readCheckpointMeta(base).step, 1);
  const lost = { ...readLog(join(base, 'train.jsonl')).steps[0]!, step: 2 };
  writeFileSync(join(base, 'train.jsonl'), JSON.stringify(lost) + '\n', { flag: 'a' });
});

after(() => rmSync(root, { recursive: true, force: true }));

/** Every file under `dir` (relative path -> bytes). */
function snapshot(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p, `${rel}${n}/`);
      else out.set(`${rel}${n}`, readFileSync(p));
    }
  };
  walk(dir, '');
  return out;
}

function assertUnchanged(dir: string, before: Map<string, Buffer>): void {
  const now = snapshot(dir);
  assert.deepEqual([...now.keys()], [...before.keys()], `files of ${dir}`);
  for (const [k, b] of before) assert.ok(now.get(k)!.equals(b), `${k} changed`);
}

let caseNo = 0;
/** A copy of the base run with its checkpoint rewritten: metadata edited (a string is written raw), tensors edited. */
function damagedCopy(editMeta: ((m: Record<string, unknown>) => unknown) | null, editTensors?: (t: Map<string, Tensor>) => void): string {
  const dir = join(root, `case${++caseNo}`);
  cpSync(base, dir, { recursive: true });
  const path = join(dir, 'checkpoint.safetensors');
  const { tensors, metadata } = loadSafetensors(path);
  const m = JSON.parse(metadata.dcvg_train!) as Record<string, unknown>;
  const edited = editMeta ? editMeta(m) : m;
  editTensors?.(tensors);
  saveSafetensors(path, tensors, { metadata: { dcvg_train: typeof edited === 'string' ? edited : JSON.stringify(edited) } });
  return dir;
}

/** Resume must fail with a TrainingError matching `re` and naming the checkpoint, leaving the folder byte-identical. */
async function refused(dir: string, re: RegExp): Promise<void> {
  const before = snapshot(dir);
  await assert.rejects(resume(dir), (e: Error) => {
    assert.ok(e instanceof TrainingError, `${e.name}: ${e.message}`);
    assert.match(e.message, re);
    assert.ok(e.message.includes(join(dir, 'checkpoint.safetensors')), `names the checkpoint: ${e.message}`);
    return true;
  });
  assertUnchanged(dir, before);
}

const withoutKey = (m: Record<string, unknown>, k: string) => {
  const c = { ...m };
  delete c[k];
  return c;
};

test('resume: a non-integer step ("x") is refused, the log is kept (it was truncated to 0 lines, exit 0)', async () => {
  const dir = damagedCopy((m) => ({ ...m, step: 'x' }));
  await refused(dir, /field "step" must be an integer in \[0, 2\].*got "x"/);
  // the command line: exit 1, one line naming the field, nothing changed
  const before = snapshot(dir);
  const errs: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
  let code: number;
  try {
    code = await main(['train-ae', '--out', dir, '--resume']);
  } finally {
    process.stderr.write = orig;
  }
  assert.equal(code, 1);
  assert.match(errs.join(''), /dcvg train-ae: .*checkpoint\.safetensors: checkpoint metadata field "step"/);
  assertUnchanged(dir, before);
});

test('resume: a checkpoint whose embedded config has depth 10^7 is refused by the config bounds (it aborted)', async () => {
  const dir = damagedCopy((m) => {
    const c = structuredClone(m.config) as { encoder: { depth_list: number[] } };
    c.encoder.depth_list[2] = 1e7;
    return { ...m, config: c };
  });
  await refused(dir, /field "config" is not a valid model config .*encoder\.depth_list\[2\] must be an integer in \[0, 256\], got 10000000/);
});

test('resume: a negative or too large step is refused (step -5 trained 115 steps and erased the log)', async () => {
  await refused(damagedCopy((m) => ({ ...m, step: -5 })), /field "step" must be an integer in \[0, 2\].*got -5/);
  await refused(damagedCopy((m) => ({ ...m, step: 7 })), /field "step" .*got 7/);
  await refused(damagedCopy((m) => ({ ...m, step: 1.5 })), /field "step"/);
});

test('resume: missing options, dataRng or config, and unparseable metadata are TrainingErrors, not TypeErrors', async () => {
  await refused(damagedCopy((m) => withoutKey(m, 'options')), /field "options" must be an object, got nothing/);
  await refused(damagedCopy((m) => withoutKey(m, 'dataRng')), /field "dataRng" must be an array of 5 numbers/);
  await refused(damagedCopy((m) => withoutKey(m, 'config')), /field "config"/);
  await refused(damagedCopy(() => '{"format": "dcvg-train-ae-1", "step": 1,'), /dcvg_train metadata is not valid JSON/);
  await refused(damagedCopy(() => '[1, 2]'), /dcvg_train metadata must be a JSON object/);
});

test('resume: every option and field is typed and in range', async () => {
  const opt = (k: string, v: unknown) => (m: Record<string, unknown>) => ({ ...m, options: { ...(m.options as object), [k]: v } });
  await refused(damagedCopy(opt('lr', 'fast')), /field "options\.lr" must be a finite number > 0, got "fast"/);
  await refused(damagedCopy(opt('batch', 0)), /field "options\.batch" must be a positive integer/);
  await refused(damagedCopy(opt('emaDecay', 1)), /field "options\.emaDecay" must be in \[0, 1\)/);
  await refused(damagedCopy(opt('steps', null)), /field "options\.steps"/);
  await refused(damagedCopy(opt('trainOnly', '(')), /field "options\.trainOnly" is not a regular expression/);
  await refused(damagedCopy(opt('data', 7)), /field "options\.data" must be a non-empty string/);
  await refused(damagedCopy(opt('loss', 'huber')), /field "options\.loss" must be l1 or mse/);
  // typed but not fitting the model: 6-frame windows for a model of 4-frame chunks
  await refused(damagedCopy(opt('frames', 6)), /options do not fit its model: --frames 6 must be a whole number of 4-frame chunks/);
  await refused(damagedCopy((m) => ({ ...m, dataRng: [1, 2, 3] })), /field "dataRng" must be an array of 5 numbers/);
  await refused(damagedCopy((m) => ({ ...m, dataRng: [1, 2, 3, -4, null] })), /field "dataRng" must be four integers/);
  await refused(damagedCopy((m) => ({ ...m, dataRng: [0, 0, 0, 0, null] })), /field "dataRng" is all zero/);
  await refused(damagedCopy((m) => ({ ...m, trainClips: [1, 2] })), /field "trainClips" must be an array of file names/);
  await refused(damagedCopy((m) => ({ ...m, heldOutClips: 'c1.y4m' })), /field "heldOutClips"/);
  await refused(damagedCopy((m) => ({ ...m, adamSteps: -1 })), /field "adamSteps" must be an integer >= 0/);
  await refused(damagedCopy((m) => ({ ...m, config: { ...(m.config as object), latent_channels: 0 } })), /field "config" is not a valid model config/);
  await refused(damagedCopy((m) => ({ ...m, format: 'dcvg-train-ae-9' })), /unsupported checkpoint format "dcvg-train-ae-9"/);
  await refused(damagedCopy((m) => ({ ...m, heldOutClips: ['c1.y4m'] })), /held-out clips .* differ from the run's/);
});

test("resume: tensors are checked against the model and optimiser state before the folder changes", async () => {
  const some = (t: Map<string, Tensor>, prefix: string) => [...t.keys()].find((k) => k.startsWith(prefix) && t.get(k)!.size > 1)!;
  await refused(
    damagedCopy(null, (t) => {
      const k = some(t, 'adam_v.');
      t.set(k, new Tensor(new Float32Array(t.get(k)!.size), [t.get(k)!.size]));
    }),
    /tensor adam_v\.\S+ has shape \[\d+\], the model's is \[/,
  );
  await refused(
    damagedCopy(null, (t) => void t.delete(some(t, 'ema.'))),
    /checkpoint lacks tensor ema\./,
  );
});

test('resume: a checkpoint path that is a folder is refused (was EISDIR)', async () => {
  const dir = join(root, 'eisdir');
  cpSync(base, dir, { recursive: true });
  rmSync(join(dir, 'checkpoint.safetensors'));
  mkdirSync(join(dir, 'checkpoint.safetensors'));
  await refused(dir, /checkpoint\.safetensors is not a file/);
});

test('resume: a log line that is not a record (a number, null) does not break readLog', () => {
  const p = join(root, 'odd.jsonl');
  writeFileSync(p, '5\nnull\n"x"\n{"step":1,"loss":1,"ssim":0,"lr":1,"gradNorm":1,"ms":1}\n{"step":"y"}\n');
  const { steps, lines } = readLog(p);
  assert.deepEqual(
    steps.map((s) => s.step),
    [1],
  );
  assert.equal(lines.length, 1);
});

test('new run: bad data, options or --init: refused before the run folder is created', async () => {
  const out = join(root, 'new', 'deeper', 'run');
  await assert.rejects(trainAE(tinyOptions(out, { data: join(root, 'no-such-data') })), /training data: .*no-such-data is not a folder/);
  await assert.rejects(trainAE(tinyOptions(out, { minLrRatio: 2 })), /--min-lr-ratio must be in \[0, 1\], got 2/);
  await assert.rejects(trainAE(tinyOptions(out, { weightDecay: -1 })), /--weight-decay must be a finite number >= 0, got -1/);
  await assert.rejects(trainAE(tinyOptions(out, { evalFrames: -3 })), /--eval-frames must be an integer >= 0/);
  await assert.rejects(trainAE(tinyOptions(out, { init: join(root, 'missing.safetensors') })), /weights file not found/);
  await assert.rejects(trainAE(tinyOptions(out, { crop: 64 })), /smaller than the 64x64 crop/);
  assert.ok(!existsSync(join(root, 'new')), 'nothing created');
  // the command line too
  const errs: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
  try {
    assert.equal(await main(['train-ae', '--model', cfgPath, '--data', join(root, 'no-such-data'), '--out', out]), 1);
    assert.equal(await main(['train-ae', '--model', cfgPath, '--data', data, '--out', out, '--log-every', '0']), 1);
  } finally {
    process.stderr.write = orig;
  }
  assert.match(errs.join(''), /is not a folder[^]*--log-every must be a positive integer/);
  assert.ok(!existsSync(join(root, 'new')), 'nothing created by the CLI');
});

test("new run: --out that is a file, the data folder, or a folder with a run's files is refused, untouched", async () => {
  const file = join(root, 'a-file');
  writeFileSync(file, 'mine');
  await assert.rejects(trainAE(tinyOptions(file)), /--out .*a-file is a file/);
  assert.equal(readFileSync(file, 'utf8'), 'mine');
  const mine = join(root, 'mine');
  mkdirSync(mine);
  writeFileSync(join(mine, 'config.json'), '{"my": "own"}');
  await assert.rejects(trainAE(tinyOptions(mine)), /already holds config\.json \(but no checkpoint to resume\)/);
  assert.equal(readFileSync(join(mine, 'config.json'), 'utf8'), '{"my": "own"}');
  assert.deepEqual(readdirSync(mine), ['config.json']);
  const before = snapshot(data);
  await assert.rejects(trainAE(tinyOptions(data)), /is the --data folder/);
  assertUnchanged(data, before);
});

test('new run: a failure after the folder was created (before the first checkpoint) leaves nothing', async () => {
  const boom = { onStep: () => { throw new Error('boom'); } };
  // the folders this run created (two levels) are removed
  const out = join(root, 'fail', 'run');
  await assert.rejects(trainAE(tinyOptions(out), boom), /boom/);
  assert.ok(!existsSync(join(root, 'fail')), 'created folders removed');
  // a folder that existed before stays, empty again
  const pre = join(root, 'pre-existing');
  mkdirSync(pre);
  await assert.rejects(trainAE(tinyOptions(pre), boom), /boom/);
  assert.deepEqual(readdirSync(pre), []);
  // stopped before the first step: nothing written either
  const r = await trainAE(tinyOptions(join(root, 'stopped')), { shouldStop: () => true });
  assert.deepEqual([r.steps, r.stoppedEarly], [0, true]);
  assert.ok(!existsSync(join(root, 'stopped')));
});

/** A pid that is certainly not running: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  assert.ok(r.pid && r.status === 0);
  return r.pid;
}

test('resume sweeps stale temporaries of a killed run (dead pid) and keeps live ones', async () => {
  // in the base folder itself: this process already wrote there, so only an explicit sweep at the start of the run
  // (not the first-write sweep of tempPathFor) can remove the stale one
  const stale = join(base, `.model.safetensors.dcvg-tmp-${deadPid()}-0badc0de`);
  const live = join(base, `.checkpoint.safetensors.dcvg-tmp-${process.pid}-0a11ce00`);
  writeFileSync(stale, 'partial');
  writeFileSync(live, 'being written');
  const r = await resume(base);
  assert.equal(r.steps, 2);
  assert.ok(!existsSync(stale), 'stale temporary swept');
  assert.ok(existsSync(live), 'live temporary kept');
  rmSync(live);
  // the lost step-2 line was dropped and step 2 trained again: one line per step
  assert.deepEqual(
    readLog(join(base, 'train.jsonl')).steps.map((s) => s.step),
    [1, 2],
  );
});

// ---------------------------------------------------------------------------------------------------------------
// signals (the CLI as a child process)

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Starts train-ae, waits for its first step line, then sends the signals (`gapMs` apart); resolves when it exits. */
function trainAndSignal(out: string, signals: NodeJS.Signals[], gapMs: number, extra: string[] = []): Promise<Ended> {
  const args = [bin, 'train-ae', '--model', cfgPath, '--data', data, '--out', out, '--steps', '40', '--frames', '8', '--crop', '16', '--holdout', '0', '--warmup', '1', '--log-every', '1', ...extra];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
  let stderr = '';
  let sent = false;
  child.stdout.resume();
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
    if (!sent && /step 1\/40/.test(stderr)) {
      sent = true;
      signals.forEach((s, i) => setTimeout(() => child.kill(s), i * gapMs));
    }
  });
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
}

function assertNoTemps(dir: string): void {
  if (!existsSync(dir)) return;
  const ours = readdirSync(dir).filter((n) => tempOwnerPid(n) !== null);
  assert.deepEqual(ours, [], `temporaries left in ${dir}`);
}

/** A run folder after a stop: a valid checkpoint whose log has exactly one line per step up to it. */
function assertConsistentRun(dir: string): number {
  const meta = readCheckpointMeta(dir);
  assert.ok(meta.step >= 1);
  const ck = loadSafetensors(join(dir, 'checkpoint.safetensors'));
  assert.ok(ck.tensors.size > 0);
  const steps = readLog(join(dir, 'train.jsonl')).steps.map((s) => s.step);
  assert.deepEqual(steps.slice(0, meta.step), Array.from({ length: meta.step }, (_, i) => i + 1));
  return meta.step;
}

test('CLI: SIGTERM stops after the step with a checkpoint (exit 143); --resume then continues', async () => {
  const out = join(root, 'sigterm');
  const r = await trainAndSignal(out, ['SIGTERM'], 0, ['--ckpt-every', '100']);
  assert.equal(r.code, 143, r.stderr);
  assert.match(r.stderr, /SIGTERM: stopping after this step/);
  assert.match(r.stderr, /stopped after step \d+; continue with --resume/);
  assertNoTemps(out);
  const step = assertConsistentRun(out);
  // stopped promptly: after the step in progress, not the whole run
  assert.ok(step < 40, `stopped at ${step}`);
  assert.equal(readLog(join(out, 'train.jsonl')).steps.length, step, 'no log line past the checkpoint');
  const again = spawnSync(process.execPath, [bin, 'train-ae', '--out', out, '--resume', '--steps', String(step + 1), '--json'], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  assert.equal(again.status, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).steps, step + 1);
  assert.equal(readCheckpointMeta(out).step, step + 1);
  assertNoTemps(out);
});

test('CLI: a second signal quits at once: no checkpoint of the step, no temporaries; a new run without a checkpoint leaves nothing', async () => {
  // Deterministic: the child is frozen (SIGSTOP) while both signals arrive, so its next JS turn sees both (two equal
  // signals would merge while pending, hence SIGINT then SIGTERM).
  const out = join(root, 'sig2');
  const r = await trainAndSignal(out, ['SIGSTOP', 'SIGINT', 'SIGTERM', 'SIGCONT'], 20, ['--ckpt-every', '100']);
  // 128 + the number of whichever signal was handled second (their order on SIGCONT is the kernel's)
  assert.ok(r.code === 130 || r.code === 143, `exit ${r.code} ${r.signal}: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /stopped after step/);
  assert.ok(!existsSync(out), 'a new run quit before its first checkpoint leaves no folder');
  // with a checkpoint every step, quitting at once keeps the last one valid, with a consistent log, and it resumes
  const out2 = join(root, 'sig2b');
  const r2 = await trainAndSignal(out2, ['SIGSTOP', 'SIGINT', 'SIGTERM', 'SIGCONT'], 20, ['--ckpt-every', '1']);
  assert.ok(r2.code === 130 || r2.code === 143, `exit ${r2.code} ${r2.signal}: ${r2.stderr}`);
  assertNoTemps(out2);
  const step = assertConsistentRun(out2);
  const again = spawnSync(process.execPath, [bin, 'train-ae', '--out', out2, '--resume', '--steps', String(step + 1)], { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  assert.equal(readCheckpointMeta(out2).step, step + 1);
  assertNoTemps(out2);
});

test('CLI: SIGINT twice (as from a terminal): exit 130, a valid checkpoint or nothing, no temporaries', async () => {
  // Timing decides whether the second Ctrl-C lands before the graceful stop is done; both outcomes must be clean.
  const out = join(root, 'sigint2');
  const r = await trainAndSignal(out, ['SIGINT', 'SIGINT'], 100, ['--ckpt-every', '100', '--batch', '4']);
  assert.ok(r.code === 130 || r.signal === 'SIGINT', `exit ${r.code} ${r.signal}: ${r.stderr}`);
  assertNoTemps(out);
  if (existsSync(out)) {
    const step = assertConsistentRun(out);
    const again = spawnSync(process.execPath, [bin, 'train-ae', '--out', out, '--resume', '--steps', String(step + 1)], { encoding: 'utf8' });
    assert.equal(again.status, 0, again.stderr);
  } else assert.doesNotMatch(r.stderr, /stopped after step/);
});

// ---------------------------------------------------------------------------------------------------------------
// dcvg study temporal and dcvg eval-ae

/** Runs the CLI in this process; returns the exit code and what it wrote to stderr. */
async function cli(...args: string[]): Promise<{ code: number; stderr: string }> {
  const errs: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
  try {
    return { code: await main(args), stderr: errs.join('') };
  } finally {
    process.stderr.write = orig;
  }
}

test('study temporal: bad data or options, or evaluation without held-out clips: refused before --out is created', async () => {
  const { runTemporalStudy } = await import('../src/train/study.js');
  const out = join(root, 'study-out');
  const tiny = { widths: [4, 8, 8, 8], depths: [0, 1, 1, 1], latentChannels: 4, chunk: 4, frames: 8, crop: 16 };
  await assert.rejects(runTemporalStudy({ ...tiny, data: join(root, 'no-such-data'), out }), /training data: .*is not a folder/);
  // two videos, no --holdout: nothing to evaluate on (was a TypeError after training all three designs)
  await assert.rejects(runTemporalStudy({ ...tiny, data, out, steps: 1 }), /evaluation needs held-out clips/);
  await assert.rejects(runTemporalStudy({ ...tiny, data, out, holdout: 2 }), /leaves none of 2 videos/);
  await assert.rejects(runTemporalStudy({ ...tiny, data, out, evalFrames: -1, holdout: 1 }), /--eval-frames must be an integer >= 0/);
  await assert.rejects(runTemporalStudy({ ...tiny, data, out, steps: 0, holdout: 1 }), /--steps must be a positive integer/);
  // evaluation of designs never trained: an error, and the folder this call created is removed again
  await assert.rejects(runTemporalStudy({ ...tiny, data, out, holdout: 1, train: false }), /unfinished designs/);
  assert.ok(!existsSync(out), 'nothing created');
  const r = await cli('study', 'temporal', '--data', data, '--out', out, '--holdout', '1', '--log-every', '0');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--log-every must be a positive integer/);
  assert.ok(!existsSync(out));
});

test('eval-ae: bad --frames, --holdout, --baseline-tf and data folder are refused before the model runs', async () => {
  for (const [args, re] of [
    [['--frames', '0'], /--frames must be a positive integer/],
    [['--holdout=-1'], /--holdout must be an integer >= 0/],
    [['--baseline-tf', '1,0'], /--baseline-tf must be a positive integer/],
    [['--baseline-tf', '1,,4'], /--baseline-tf must be an integer, got ""/],
  ] as const) {
    const r = await cli('eval-ae', '--data', data, '--model', cfgPath, '--split', 'all', ...args);
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, re);
    assert.doesNotMatch(r.stderr, /eval-ae: c0\.y4m/, 'refused before reconstructing');
  }
  const r = await cli('eval-ae', '--data', join(root, 'no-such-data'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no-such-data is not a folder/);
});
