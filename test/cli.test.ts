/** The dcvg command line, end to end (spawned like a user would). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

describe('dcvg info', () => {
  it('prints the f32t4c32 preset parameter count and all keys/shapes as JSON, without allocating weights', () => {
    const r = dcvg('info', '--model', 'dc-ae-v-f32t4c32-1.0', '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { num_params: number; num_tensors: number; keys: Record<string, number[]>; scaling_factor: number };
    assert.equal(j.num_params, 2_138_635_436);
    assert.equal(j.num_tensors, 340);
    assert.equal(Object.keys(j.keys).length, 340);
    assert.deepEqual(j.keys['decoder.stages.5.op_list.0.main.conv.conv.weight'], [4096, 1024, 3, 3, 3]);
    assert.equal(j.scaling_factor, 0.7241);
  });
  it('human output names the model and counts', () => {
    const r = dcvg('info', '--model', 'dc-ae-v-f64t4c128-1.0');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /f64t4c128 \(compression 384x\)/);
    assert.match(r.stdout, /2,717,281,804/);
  });
  it('an unknown model is one clear line on stderr and a non-zero exit', () => {
    const r = dcvg('info', '--model', 'dc-ae-v-f16t4c4-1.0');
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^dcvg info: unknown DC-AE-V preset "dc-ae-v-f16t4c4-1.0" \(known: .*\)\n$/);
  });
  it('unknown commands exit 2', () => {
    assert.equal(dcvg('frobnicate').status, 2);
  });
  const skip = skipUnlessFixture('dc-ae-v/chunk_causal_small.bf16.pt');
  it('checks a torch checkpoint against a config: match, and mismatch with exit code 3', { skip }, () => {
    const cfg = fixturePath('dc-ae-v/chunk_causal_small.json');
    const ok = dcvg('info', '--model', cfg, '--weights', fixturePath('dc-ae-v/chunk_causal_small.bf16.pt'), '--json');
    assert.equal(ok.status, 0, ok.stderr);
    const j = JSON.parse(ok.stdout) as { num_params: number; checkpoint: { matches: boolean; source: string; dtypes: Record<string, number> } };
    assert.equal(j.num_params, 959232);
    assert.equal(j.checkpoint.matches, true);
    assert.equal(j.checkpoint.source, 'ema_model_state_dict[0.9999]');
    assert.deepEqual(j.checkpoint.dtypes, { bfloat16: 90 });
    const bad = dcvg('info', '--model', 'dc-ae-v-f32t4c32-1.0', '--weights', fixturePath('dc-ae-v/chunk_causal_small.weights.safetensors'));
    assert.equal(bad.status, 3);
    assert.match(bad.stdout, /shape mismatch encoder\.project_in\.conv\.conv\.bias: model \[64\], checkpoint \[4\]/);
  });
});
