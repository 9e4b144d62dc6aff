/**
 * scripts/init_ae_linear.py, the linear initialisation the default model was trained from: its weights load into our
 * DCAEV through the embedded config; the encoder it builds is exactly affine (centre-tap convs, identity residual
 * blocks, the averaging shortcuts) and the decoder affine up to the head's RMSNorm/SiLU pass-through; and, fitted on
 * two clips, it reconstructs one of them better than the equal-budget bicubic baseline at its temporal factor; and
 * scripts/rescale_decoder.py changes the decoder's weights but not what the model computes. Needs
 * /usr/bin/python3 with torch and the shared clips; skipped otherwise (CI installs no torch).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createModel } from '../src/models/dcaev/autoencoder.js';
import { defaultModelPaths, embeddedConfig } from '../src/models/dcaev/default_model.js';
import { readAllFrames } from '../src/io/video.js';
import { tensorToUint8Frames, videoMetrics } from '../src/metrics/metrics.js';
import { equalBudgetBaseline } from '../src/metrics/baseline.js';
import { tensor, type Tensor } from '../src/tensor/tensor.js';
import { repoRoot, sharedDir, skipUnlessClipsAndTorch, torchPython } from './helpers.js';

const PY = torchPython;
const clips = join(sharedDir, 'data', 'clips128');
const skip = skipUnlessClipsAndTorch('the linear initialisation script');

function py(script: string, args: string[]): string {
  const r = spawnSync(PY, [join(repoRoot, 'scripts', script), ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2', OMP_WAIT_POLICY: 'passive' } });
  assert.equal(r.status, 0, `${script} ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function maxRelDiff(a: Tensor, b: Tensor): number {
  const x = a.data();
  const y = b.data();
  let d = 0;
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    d = Math.max(d, Math.abs(x[i]! - y[i]!));
    m = Math.max(m, Math.abs(y[i]!));
  }
  return d / m;
}

const mix = (a: Tensor, b: Tensor, w: number) => tensor(Float32Array.from(a.data(), (v, i) => w * v + (1 - w) * b.data()[i]!), a.shape);

test('init_ae_linear.py: loads into our model, affine encoder and decoder, beats bicubic on the clip it was fitted to; rescale_decoder.py keeps the function', { skip, timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-linit-'));
  try {
    const data = join(dir, 'data');
    mkdirSync(data);
    for (const n of ['02.mp4', '06.mp4', '10.mp4']) symlinkSync(join(clips, n), join(data, n));
    const pack = join(dir, 'pack');
    py('train_ae_torch.py', ['pack', '--data', data, '--out', pack, '--holdout', '1']); // fits 02 and 10, holds out 06
    const out = join(dir, 'init.safetensors');
    const log = py('init_ae_linear.py', ['--frames', pack, '--config', defaultModelPaths().config, '--out', out, '--frames-per-clip', '64']);
    assert.match(log, /training clips, first 64 frames: PSNR/);
    const cfg = embeddedConfig(out);
    assert.ok(cfg, 'the config travels in the weights');
    const m = createModel(cfg, out);

    // two clips the fit saw (first 64 frames each)
    const x = await readAllFrames(join(clips, '02.mp4'), { maxFrames: 64 });
    const x2 = await readAllFrames(join(clips, '10.mp4'), { maxFrames: 64 });
    // affine: encoder exactly (float rounding only), decoder up to the head's pass-through
    const z1 = m.encodeRaw(x);
    const z2 = m.encodeRaw(x2);
    assert.ok(maxRelDiff(m.encodeRaw(mix(x, x2, 0.3)), mix(z1, z2, 0.3)) < 1e-4, 'encoder is affine');
    const d = maxRelDiff(m.decodeRaw(mix(z1, z2, 0.3)), mix(m.decodeRaw(z1), m.decodeRaw(z2), 0.3));
    // the head's RMSNorm sees the pixel channels v next to 20 constant channels of 5: its scale is off by about
    // sum(v^2) / (2 * 20 * 25), under 1% for pixels in [-1, 1]
    assert.ok(d < 1e-2, `decoder is affine up to the head's pass-through: rel diff ${d}`);
    assert.ok(d > 0, 'the head is not exactly linear (RMSNorm, SiLU): a zero difference means the test compares nothing');

    // fitted on these frames: above bicubic at the model's temporal factor
    const y = m.decodeRaw(z1);
    const ours = videoMetrics(x, y).psnr.mean;
    const [, , T, H, W] = x.shape as number[];
    const base = equalBudgetBaseline(tensorToUint8Frames(x)[0]!, H!, W!, z1.size, { temporalFactors: [4] });
    assert.ok(ours > base.best.psnr, `linear init ${ours.toFixed(2)} dB vs bicubic tf 4 ${base.best.psnr.toFixed(2)} dB on ${T} frames`);

    // rescale_decoder.py: other weights, the same function (our model, frames it did not measure the scales on)
    const resc = join(dir, 'rescaled.safetensors');
    assert.match(py('rescale_decoder.py', ['--frames', pack, '--weights', out, '--out', resc]), /largest change/);
    const m2 = createModel(embeddedConfig(resc)!, resc);
    const w1 = m.namedParams().find(([k]) => k === 'decoder.project_in.conv.weight')![1].value;
    const w2 = m2.namedParams().find(([k]) => k === 'decoder.project_in.conv.weight')![1].value;
    assert.ok(maxRelDiff(w2, w1) > 0.5, 'the decoder weights were rescaled');
    const dr = maxRelDiff(m2.decodeRaw(m2.encodeRaw(x2)), m.decodeRaw(z2));
    assert.ok(dr < 1e-5, `rescaled decoder reconstructs the same: rel diff ${dr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
