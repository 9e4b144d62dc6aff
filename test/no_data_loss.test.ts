/**
 * No output ever replaces an input; no partial file or temporary is left on error or signal; stale temporaries of a
 * killed run are swept (issue #16).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertOutputsSafe, sweepStaleTemps, tempOwnerPid, tempPathFor, trackTemp, untrackTemp, writeFileAtomic } from '../src/io/files.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import * as T from '../src/index.js';
import { ValueError } from '../src/errors.js';
import { fixturePath, repoRoot, sharedDir, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const env = { ...process.env, DCVG_NO_PROGRESS: '1' };
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env, timeout: 120_000 });
const clip = join(sharedDir, 'data', 'clips128', '05.mp4');
const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;
const skipVideo = skipUnlessFixture('dc-ae-v/chunk_causal_small.json') || (!existsSync(clip) && `clip missing: ${clip}`) || (!hasFfmpeg && 'ffmpeg not installed');
const model = () => ['--model', fixturePath('dc-ae-v/chunk_causal_small.json'), '--weights', fixturePath('dc-ae-v/chunk_causal_small.weights.safetensors')];

const hash = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
/** Files of a folder that are temporaries of our naming. */
const temps = (dir: string) => readdirSync(dir).filter((f) => tempOwnerPid(f) !== null);
/** The pid of a process that has exited (so nothing can be alive with it, barring reuse). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('assertOutputsSafe', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-safe-'));
  const input = join(dir, 'in.mp4');
  writeFileSync(input, 'video');
  mkdirSync(join(dir, 'v'));

  it('refuses the input itself, another spelling, a symlink and a hard link', () => {
    symlinkSync(input, join(dir, 'sym.mp4'));
    linkSync(input, join(dir, 'hard.mp4'));
    for (const out of [input, join(dir, 'v', '..', 'in.mp4'), join(dir, 'sym.mp4'), join(dir, 'hard.mp4')])
      assert.throws(() => assertOutputsSafe({ '-o': out }, { input }), (e: Error) => e instanceof ValueError && /would overwrite the input file/.test(e.message), out);
    // ... also when the input is the link and the output the original
    assert.throws(() => assertOutputsSafe({ '-o': input }, { input: join(dir, 'sym.mp4') }), ValueError);
    assertOutputsSafe({ '-o': join(dir, 'other.mp4') }, { input, '--weights': undefined, '--model': 'a-preset-name' });
  });

  it('refuses a PNG pattern output that would write over an input frame, and two outputs that are one file', () => {
    writeFileSync(join(dir, 'v', '00003.png'), 'png');
    assert.throws(() => assertOutputsSafe({ '-o': join(dir, 'v', '%05d.png') }, { input: join(dir, 'v', '00003.png') }), /would overwrite/);
    assert.throws(() => assertOutputsSafe({ '-o': join(dir, 'v', '%05d.png') }, { input: join(dir, 'v', '%05d.png') }), /would overwrite/);
    assert.throws(() => assertOutputsSafe({ '-o': join(dir, 'a.json'), '--metrics': join(dir, 'v', '..', 'a.json') }, { input }), /are the same file/);
  });

  it('names a missing output folder', () => {
    assert.throws(() => assertOutputsSafe({ '-o': join(dir, 'nope', 'x.safetensors') }, { input }), /directory .*nope does not exist/);
  });
});

describe('temporaries', () => {
  it('are swept when their process is gone, and kept while it lives', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-sweep-'));
    const dead = deadPid();
    const stale = [`.model.safetensors.dcvg-tmp-${dead}-0a1b2c3d`, `model.safetensors.tmp-${dead}-1712345678901`, `.r.mp4.partial-${dead}-deadbeef`];
    const live = `.model.safetensors.dcvg-tmp-${process.pid}-00000000`;
    for (const f of [...stale, live, 'keep.tmp-notours', 'model.safetensors']) writeFileSync(join(dir, f), 'x');
    mkdirSync(join(dir, `.frames.dcvg-tmp-${dead}-12345678`)); // a PNG sequence's temporary folder
    writeFileSync(join(dir, `.frames.dcvg-tmp-${dead}-12345678`, '00000.png'), 'x');
    assert.deepEqual(sweepStaleTemps(dir).sort(), [...stale, `.frames.dcvg-tmp-${dead}-12345678`].sort());
    assert.deepEqual(readdirSync(dir).sort(), [live, 'keep.tmp-notours', 'model.safetensors'].sort());
  });

  it('a write in a folder sweeps it first; atomic writers leave only the target', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-sweep-'));
    const stale = `.w.safetensors.dcvg-tmp-${deadPid()}-0a1b2c3d`;
    writeFileSync(join(dir, stale), 'partial bytes');
    saveSafetensors(join(dir, 'w.safetensors'), { a: T.ones([2]) });
    writeFileAtomic(join(dir, 'n.json'), '{}');
    assert.deepEqual(readdirSync(dir).sort(), ['n.json', 'w.safetensors']);
    assert.match(tempPathFor(join(dir, 'w.safetensors')), new RegExp(`/\\.w\\.safetensors\\.dcvg-tmp-${process.pid}-[0-9a-f]{8}$`));
  });
});

describe('signal handlers of the temporaries registry', () => {
  it('are held only while a temporary is live', () => {
    const before = process.listenerCount('SIGINT');
    const p = join(mkdtempSync(join(tmpdir(), 'dcvg-hooks-')), 'x');
    trackTemp(p);
    assert.equal(process.listenerCount('SIGINT'), before + 1);
    assert.equal(process.listenerCount('SIGTERM') > 0, true);
    untrackTemp(p);
    assert.equal(process.listenerCount('SIGINT'), before);
  });

  it("leave a signal that the application handles itself to the application (its work in progress is kept)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-hooks-'));
    const tmp = join(dir, '.out.dcvg-tmp-1-00000000');
    const files = join(repoRoot, 'dist', 'src', 'io', 'files.js');
    const script = `
      import { writeFileSync, existsSync } from 'node:fs';
      const { trackTemp } = await import(${JSON.stringify(files)});
      writeFileSync(${JSON.stringify(tmp)}, 'x');
      trackTemp(${JSON.stringify(tmp)});
      process.on('SIGTERM', () => { process.stdout.write(existsSync(${JSON.stringify(tmp)}) ? 'kept' : 'removed'); process.exit(0); });
      process.kill(process.pid, 'SIGTERM');
      setTimeout(() => {}, 5000);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.stdout, 'kept', r.stderr);
    assert.equal(r.status, 0);
    // ... and the process's exit removed it
    assert.equal(existsSync(tmp), false);
  });
});

describe('dcvg never replaces an input', { skip: skipVideo }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-inout-'));
  mkdirSync(join(dir, 'v'));
  const input = join(dir, 'v', 'in.mp4');
  copyFileSync(clip, input);

  const refuses = (args: string[], file: string) => {
    const before = hash(file);
    const r = dcvg(...args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /would overwrite the (input|--weights|--model) file/);
    assert.equal(hash(file), before, `${file} changed`);
    assert.deepEqual(temps(join(file, '..')), []);
  };

  it('reconstruct -o <input> (any spelling), --metrics/--plot <input>', () => {
    refuses(['reconstruct', input, '-o', input], input);
    refuses(['reconstruct', input, '-o', join(dir, 'v', '..', 'v', 'in.mp4')], input);
    refuses(['reconstruct', input, '-o', join(dir, 'r.mp4'), '--metrics', input], input);
    refuses(['reconstruct', input, '-o', join(dir, 'r.mp4'), '--plot', input, ...model()], input);
    refuses(['reconstruct', input, '-o', fixturePath('dc-ae-v/chunk_causal_small.weights.safetensors'), ...model()], fixturePath('dc-ae-v/chunk_causal_small.weights.safetensors'));
  });

  it('encode, decode and convert -o <input>', () => {
    const x = join(dir, 'x.safetensors');
    saveSafetensors(x, { input: T.zeros([1, 3, 4, 32, 32]) });
    refuses(['encode', x, '-o', x, ...model()], x);
    const z = join(dir, 'z.safetensors');
    assert.equal(dcvg('encode', x, '-o', z, ...model()).status, 0);
    refuses(['decode', z, '-o', z, ...model()], z);
    refuses(['decode', z, '-o', join(dir, '.', 'z.safetensors'), ...model()], z);
    const w = join(dir, 'w.safetensors');
    copyFileSync(fixturePath('dc-ae-v/chunk_causal_small.weights.safetensors'), w);
    refuses(['convert', w, '-o', w], w);
    refuses(['encode', x, '-o', w, '--model', fixturePath('dc-ae-v/chunk_causal_small.json'), '--weights', w], w);
  });

  it('an output in a missing folder is named, and nothing is written', () => {
    const r = dcvg('encode', input, '-o', join(dir, 'missing', 'z.safetensors'), ...model());
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cannot write -o .*missing\/z\.safetensors: directory .*missing does not exist/);
    assert.equal(existsSync(join(dir, 'missing')), false);
  });
});

describe('clear errors instead of raw ones, and nothing written', { skip: skipVideo }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-clear-'));
  const fails = (args: string[], re: RegExp) => {
    const r = dcvg(...args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /E[A-Z]+:|TypeError|RangeError|allocation failed|Cannot read/);
  };

  it('convert of a file with no tensors writes nothing', () => {
    const empty = join(dir, 'empty.safetensors');
    saveSafetensors(empty, {});
    fails(['convert', empty, '-o', join(dir, 'out.safetensors')], /holds no tensors; nothing to convert/);
    assert.equal(existsSync(join(dir, 'out.safetensors')), false);
  });

  it('--resize beyond what ffmpeg or memory can take is refused before reading', () => {
    fails(['reconstruct', clip, '-o', join(dir, 'r.mp4'), '--resize', '32768x32768', ...model()], /32768x32768 frames are larger than ffmpeg can process/);
    fails(['encode', clip, '-o', join(dir, 'z.safetensors'), '--resize', '0x64', ...model()], /--resize needs a positive width and height/);
  });

  it('a directory or a named pipe where a file belongs is named as such (a FIFO used to hang)', () => {
    const fifo = join(dir, 'w.fifo');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return;
    fails(['info', '--model', fixturePath('dc-ae-v/chunk_causal_small.json'), '--weights', fifo], /w\.fifo: it is a named pipe \(FIFO\), not a file/);
    fails(['convert', fifo, '-o', join(dir, 'c.safetensors')], /it is a named pipe/);
    // a folder is a model folder (weights sources): one without weights says so
    mkdirSync(join(dir, 'isdir.safetensors'));
    fails(['convert', join(dir, 'isdir.safetensors'), '-o', join(dir, 'c.safetensors')], /isdir\.safetensors holds no weights file/);
    // a latent file that is a directory
    fails(['decode', join(dir, 'isdir.safetensors'), '-o', join(dir, 'd.safetensors'), ...model()], /isdir\.safetensors: it is a directory, not a file/);
    fails(['convert', fixturePath('dc-ae-v/chunk_causal_small.weights.safetensors'), '-o', join(dir, 'isdir.safetensors')], /-o .*isdir\.safetensors is a directory/);
    const fifoOut = join(dir, 'p.safetensors');
    assert.equal(spawnSync('mkfifo', [fifoOut]).status, 0);
    fails(['convert', fixturePath('dc-ae-v/chunk_causal_small.weights.safetensors'), '-o', fifoOut], /-o .*p\.safetensors is a named pipe \(FIFO\)/);
    assert.deepEqual(readdirSync(dir).sort(), ['empty.safetensors', 'isdir.safetensors', 'p.safetensors', 'w.fifo']);
  });
});

/** Starts a dcvg command, sends `signal` once `ready()` holds, and returns how it ended. */
function signalDuring(args: string[], signal: NodeJS.Signals, ready: () => boolean): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; sentAt: number }> {
  return new Promise((done, fail) => {
    const p = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    let sentAt = -1;
    const t0 = Date.now();
    const poll = setInterval(() => {
      if (sentAt < 0 && ready()) {
        sentAt = Date.now() - t0;
        p.kill(signal);
      }
    }, 10);
    const guard = setTimeout(() => {
      p.kill('SIGKILL');
      fail(new Error(`${args[0]} did not end within 120 s of start`));
    }, 120_000);
    p.on('exit', (code, sig) => {
      clearInterval(poll);
      clearTimeout(guard);
      done({ code, signal: sig, stderr, sentAt });
    });
  });
}

describe('SIGINT / SIGTERM leave no partial file', { skip: skipVideo }, () => {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    it(`reconstruct, ${sig} while the output is being written`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dcvg-sig-'));
      const out = join(dir, 'r.mp4');
      const before = hash(clip);
      // Once ffmpeg has created the temporary output, the run is mid-write.
      const r = await signalDuring(['reconstruct', clip, '-o', out, '--metrics', join(dir, 'm.json'), '--resize', '256x256', ...model()], sig, () => temps(dir).length > 0);
      assert.ok(r.sentAt >= 0, `the run ended before its temporary output appeared: ${r.stderr}`);
      assert.equal(r.signal, sig, `killed by ${sig} (exit code ${r.code}, stderr ${r.stderr})`);
      assert.deepEqual(readdirSync(dir), [], 'nothing left: no output, no temporary, no metrics');
      assert.equal(hash(clip), before);
    });

    it(`encode, ${sig} while encoding`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dcvg-sig-'));
      const started = Date.now();
      // The latent file is written in one synchronous step at the end; a signal any time before it leaves nothing.
      // 512x512 keeps even a fast machine encoding for several seconds after the signal at 1.5 s.
      const r = await signalDuring(['encode', clip, '-o', join(dir, 'z.safetensors'), '--resize', '512x512', ...model()], sig, () => Date.now() - started > 1500);
      assert.ok(r.sentAt >= 0);
      assert.equal(r.signal, sig, `killed by ${sig} (exit code ${r.code}, stderr ${r.stderr})`);
      assert.deepEqual(readdirSync(dir), []);
    });
  }
});

describe('Tensor views stay inside their data', () => {
  it('refuses views past the end or before the start of the storage', () => {
    assert.throws(() => new T.Tensor(new Float32Array(4), [100], [1], 0), /reaches elements \[0, 99\] but the data has length 4/);
    assert.throws(() => new T.Tensor(new Float32Array(4), [2], [1], -1), /offset must be a non-negative integer/);
    assert.throws(() => new T.Tensor(new Float32Array(4), [2], [3], 1), /reaches elements \[1, 4\]/);
    assert.throws(() => new T.Tensor(new Float32Array(4), [2], [1.5], 0), /must be integers/);
    assert.throws(() => new T.Tensor(new Float32Array(4), [5]), /data has length 4/);
    assert.deepEqual(new T.Tensor(new Float32Array([1, 2, 3, 4]), [2, 2], [1, 2], 0).toArray(), [1, 3, 2, 4]);
    assert.deepEqual(new T.Tensor(new Float32Array([1, 2, 3, 4]), [3], [0], 3).toArray(), [4, 4, 4]);
    assert.deepEqual(new T.Tensor(new Float32Array(0), [0, 5]).toArray(), []);
  });
});
