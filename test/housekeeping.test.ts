/**
 * Housekeeping (issue #17 item 7): every command parses its flags through the one shared parser (src/cli/common.ts),
 * whose error points at a help text that describes the command. `dcvg <cmd> --help` exists only for train-ae,
 * eval-ae and study; the others are described by `dcvg --help`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './helpers.js';
import { ValueError } from '../src/errors.js';
import { tensorToFrames } from '../src/io/video.js';
import { tensorToUint8Frames } from '../src/metrics/metrics.js';
import { Tensor } from '../src/tensor/tensor.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

describe('an unknown flag names the help that describes the command', () => {
  for (const cmd of [['encode', 'x.safetensors'], ['decode', 'x.safetensors'], ['convert', 'x.pt'], ['reconstruct', 'x.mp4'], ['run', 'wan']]) {
    it(`dcvg ${cmd.join(' ')} --bogus points at dcvg --help`, () => {
      const r = dcvg(...cmd, '--bogus');
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`^dcvg ${cmd[0]}: Unknown option '--bogus'.* \\(see dcvg --help\\)\\n$`));
    });
  }
  for (const cmd of [['train-ae'], ['eval-ae'], ['study', 'temporal']]) {
    it(`dcvg ${cmd.join(' ')} --bogus points at its own help`, () => {
      const r = dcvg(...cmd, '--bogus');
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`^dcvg ${cmd[0]}: Unknown option '--bogus'.* \\(see dcvg ${cmd[0]} --help\\)\\n$`));
    });
  }
  it('dcvg train-ae --help prints its help (the help the parser points at exists)', () => {
    const r = dcvg('train-ae', '--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^dcvg train-ae /);
  });
});

describe('one [-1, 1] -> uint8 quantiser for video files and metrics', () => {
  // Every half-level boundary (k + 0.5 levels) and its float32 neighbours, beyond-range values and infinities.
  const vals: number[] = [-Infinity, -2, -1, 1, 2, Infinity, 0, -0];
  for (let k = 0; k < 255; k++) {
    const x = Math.fround((k + 0.5) / 127.5 - 1);
    vals.push(x, Math.fround(x + 2 ** -24), Math.fround(x - 2 ** -24));
  }
  const n = vals.length;
  const data = new Float32Array(3 * n);
  for (let i = 0; i < 3 * n; i++) data[i] = vals[(i * 7) % n]!;
  const t = new Tensor(data, [1, 3, 1, 1, n]);

  it('writes and scores the same bytes: clamp, then round((x + 1) * 127.5) with halves up', () => {
    const written = tensorToFrames(t);
    const scored = tensorToUint8Frames(t)[0]![0]!;
    assert.deepEqual(Array.from(scored), Array.from(written));
    for (let p = 0; p < n; p++)
      for (let c = 0; c < 3; c++) {
        const v = Math.min(1, Math.max(-1, data[c * n + p]!));
        assert.equal(written[p * 3 + c], Math.round((v + 1) * 127.5), `value ${data[c * n + p]}`);
      }
  });
  it('names the first NaN in the terms of each caller', () => {
    const d = new Float32Array(2 * 3 * 2 * 2 * 3);
    d[((1 * 3 + 2) * 2 + 1) * 6 + 4] = NaN; // clip 1, channel 2, frame 1, row 1, column 1
    const x = new Tensor(d, [2, 3, 2, 2, 3]);
    assert.throws(() => tensorToUint8Frames(x), (e: Error) => e instanceof ValueError && e.message === 'tensorToUint8Frames: NaN at [1, 2, 1, 1, 1] of [2, 3, 2, 2, 3]');
    const one = new Tensor(d.subarray(36), [1, 3, 2, 2, 3]);
    assert.throws(() => tensorToFrames(one), (e: Error) => e instanceof ValueError && e.message === 'tensorToFrames: NaN at frame 1, channel 2, pixel (1, 1)');
  });
});
