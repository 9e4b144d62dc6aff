/**
 * `dcvg run umt5` on the tiny fixture: hidden_states and context0..1 within the fixture tolerance, the same as the
 * API, JSON output; bad inputs (no ids, a mask with a token after padding, an id outside the vocabulary, the wrong
 * weights) fail in one line and write nothing.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { intTensor } from '../src/tensor/tensor.js';
import { runUmt5 } from '../src/models/umt5/index.js';
import { assertClose, fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, DCVG_NO_PROGRESS: '1' } });
const F = (n: string) => fixturePath(`umt5/${n}`);
const skip = skipUnlessFixture('umt5/umt5_tiny.io.safetensors');
const CFG = () => `${F('umt5.json')}#umt5_tiny`;

function fails(args: string[], msg: RegExp, outputs: string[]): void {
  const r = dcvg(...args);
  assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
  assert.match(r.stderr, msg);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  for (const o of outputs) assert.equal(existsSync(o), false, `${o} left behind`);
}

describe('dcvg run umt5 (tiny fixture)', { skip }, () => {
  it('writes hidden_states and context0..1 matching the fixture and the API', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-run-umt5-'));
    try {
      const out = join(dir, 'out.safetensors');
      const r = dcvg('run', 'umt5', '--config', CFG(), '--weights', F('umt5_tiny.weights.safetensors'), '--inputs', F('umt5_tiny.io.safetensors'), '-o', out, '--json');
      assert.equal(r.status, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.deepEqual(j.tensors, { hidden_states: [2, 160, 32], context0: [150, 32], context1: [23, 32] });
      const got = SafetensorsFile.open(out);
      const io = SafetensorsFile.open(F('umt5_tiny.io.safetensors'));
      // the fixtures README's tolerance (fp32 within 1e-4 relative; derived in test/umt5.test.ts)
      for (const k of ['hidden_states', 'context0', 'context1']) assertClose(got.tensor(k), io.tensor(k), 1e-4, k);
      assert.equal(got.metadata.model, 'umt5');
      // the CLI runs the API's own code on the same inputs: identical operations, so identical values (1e-6 allows
      // nothing but float32 rounding should the two processes pick different GEMM kernels)
      const api = runUmt5(CFG(), F('umt5_tiny.weights.safetensors'), F('umt5_tiny.io.safetensors'));
      for (const k of ['hidden_states', 'context0', 'context1']) assertClose(got.tensor(k), api.get(k)!, 1e-6, `${k} CLI vs API`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses bad inputs and wrong weights in one line, writing nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-run-umt5-'));
    try {
      const out = join(dir, 'out.safetensors');
      const base = ['run', 'umt5', '--config', CFG(), '--weights', F('umt5_tiny.weights.safetensors')];
      const noIds = join(dir, 'noids.safetensors');
      saveSafetensors(noIds, { mask: intTensor([1, 1], [1, 2]) });
      fails([...base, '--inputs', noIds, '-o', out], /no tensor "ids"/, [out]);
      const gap = join(dir, 'gap.safetensors');
      saveSafetensors(gap, { ids: intTensor([5, 6, 1, 0], [1, 4]), mask: intTensor([1, 0, 1, 0], [1, 4]) });
      fails([...base, '--inputs', gap, '-o', out], /gap\.safetensors: mask row 0: a real token at position 2 after padding/, [out]);
      const big = join(dir, 'big.safetensors');
      saveSafetensors(big, { ids: intTensor([5, 300, 1], [1, 3]), mask: intTensor([1, 1, 1], [1, 3]) });
      fails([...base, '--inputs', big, '-o', out], /ids\[0, 1\] is 300, not a token id in \[0, 300\)/, [out]);
      fails(['run', 'umt5', '--config', 'umt5-xxl', '--weights', F('umt5_tiny.weights.safetensors'), '--inputs', F('umt5_tiny.io.safetensors'), '-o', out], /state dict does not match/, [out]);
      fails([...base, '--inputs', F('umt5_tiny.io.safetensors'), '-o', join(dir, 'out.bin')], /writes \.safetensors/, [join(dir, 'out.bin')]);
      fails(['run', 'bert', '--config', 'x'], /available: wan, wan-vae, umt5/, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
