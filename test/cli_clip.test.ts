/**
 * `dcvg run clip` with the tiny fixture weights: the fixture's pixel_values, features and features_all_blocks from
 * its images (within the fixture's 1e-4, see test/clip.test.ts for the derivation), features of given pixel_values,
 * equal to the API; bad inputs refused in one line with nothing written.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { loadClipVisual } from '../src/models/clip/index.js';
import { tensor } from '../src/tensor/tensor.js';
import { assertClose, fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, DCVG_NO_PROGRESS: '1' } });
const F = (n: string) => fixturePath(`clip/${n}`);
const skip = skipUnlessFixture('clip/clip_tiny.weights.safetensors');
const tiny = () => ['--config', `${F('clip.json')}#clip_tiny`, '--weights', F('clip_tiny.weights.safetensors')];

function fails(args: string[], msg: RegExp, outputs: string[]): void {
  const r = dcvg(...args);
  assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
  assert.match(r.stderr, msg);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  for (const o of outputs) assert.equal(existsSync(o), false, `${o} left behind`);
}

describe('dcvg run clip (tiny fixture weights)', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-clip-cli-'));

  it('images -> its own pixel_values, features and features_all_blocks equal to the fixture and to the API', () => {
    const out = join(dir, 'out.safetensors');
    const r = dcvg('run', 'clip', ...tiny(), '--inputs', F('clip_tiny.io.safetensors'), '-o', out, '--all-blocks', '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(j.tensors, { pixel_values: [2, 3, 56, 56], features: [2, 17, 32], features_all_blocks: [2, 17, 32] });
    const got = SafetensorsFile.open(out);
    const io = SafetensorsFile.open(F('clip_tiny.io.safetensors'));
    for (const k of ['pixel_values', 'features', 'features_all_blocks']) assertClose(got.tensor(k), io.tensor(k), 1e-4, k);
    assert.equal(got.metadata.model, 'clip');
    // the CLI runs the API's code on the same inputs: identical operations, so float32 rounding at most
    const m = loadClipVisual(F('clip_tiny.weights.safetensors'), { config: `${F('clip.json')}#clip_tiny` });
    const pv = m.preprocess([io.tensor('image0'), io.tensor('image1')]);
    assertClose(got.tensor('pixel_values'), pv, 1e-6, 'CLI vs API pixel_values');
    assertClose(got.tensor('features'), m.features(pv), 1e-6, 'CLI vs API features');
  });

  it('pixel_values alone -> features only', () => {
    const inp = join(dir, 'pv.safetensors');
    saveSafetensors(inp, { pixel_values: SafetensorsFile.open(F('clip_tiny.io.safetensors')).tensor('pixel_values') });
    const out = join(dir, 'pv_out.safetensors');
    const r = dcvg('run', 'clip', ...tiny(), '--inputs', inp, '-o', out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /features \[2, 17, 32\]/);
    const got = SafetensorsFile.open(out);
    assert.deepEqual(got.keys(), ['features']);
    assertClose(got.tensor('features'), SafetensorsFile.open(F('clip_tiny.io.safetensors')).tensor('features'), 1e-4, 'features');
  });

  it('refuses bad inputs, weights and outputs in one line and writes nothing', () => {
    const out = join(dir, 'bad.safetensors');
    const bad = (name: string, t: Record<string, ReturnType<typeof tensor>>) => {
      const p = join(dir, name);
      saveSafetensors(p, t);
      return p;
    };
    const img = (shape: number[]) => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
    fails(['run', 'clip', ...tiny(), '--inputs', bad('rank.safetensors', { image0: img([3, 8]) }), '-o', out], /image0: a CLIP input image must be \(3, H, W\).*got \[3, 8\]/, [out]);
    fails(['run', 'clip', ...tiny(), '--inputs', bad('chan.safetensors', { image0: img([1, 8, 8]) }), '-o', out], /must be \(3, H, W\).*got \[1, 8, 8\]/, [out]);
    fails(['run', 'clip', ...tiny(), '--inputs', bad('gap.safetensors', { image0: img([3, 8, 8]), image2: img([3, 8, 8]) }), '-o', out], /image1 is missing/, [out]);
    fails(['run', 'clip', ...tiny(), '--inputs', bad('pv.safetensors', { pixel_values: img([1, 3, 224, 224]) }), '-o', out], /pixel_values must be \(B, 3, 56, 56\).*got \[1, 3, 224, 224\]/, [out]);
    fails(['run', 'clip', ...tiny(), '--inputs', bad('none.safetensors', { x: img([3, 8, 8]) }), '-o', out], /no "pixel_values".*and no images "image0"/, [out]);
    fails(['run', 'clip', ...tiny(), '--inputs', F('clip_tiny.io.safetensors'), '-o', join(dir, 'x.npy')], /writes \.safetensors/, [join(dir, 'x.npy')]);
    // the released layout against the tiny weights
    fails(['run', 'clip', '--weights', F('clip_tiny.weights.safetensors'), '--inputs', F('clip_tiny.io.safetensors'), '-o', out], /not a checkpoint of CLIP "open-clip-xlm-roberta-large-vit-huge-14"/, [out]);
    fails(['run', 'clip', ...tiny(), '--inputs', join(dir, 'missing.safetensors'), '-o', out], /--inputs file not found/, [out]);
    fails(['run', 'clip', ...tiny(), '--inputs', F('clip_tiny.io.safetensors'), '-o', F('clip_tiny.io.safetensors')], /./, []);
    rmSync(dir, { recursive: true, force: true });
  });
});
