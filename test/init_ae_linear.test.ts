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
  const x = a.readSync();
  const y = b.readSync();
  let d = 0;
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    d = Math.max(d, Math.abs(x[i]! - y[i]!));
    m = Math.max(m, Math.abs(y[i]!));
  }
  return d / m;
}

/**
 * Reduction lengths of the layers under `prefix` whose arithmetic reaches the output, read off the weights: for each
 * conv, the most nonzero weights feeding one output channel (zero weights add exact zeros; this initialisation uses
 * only centre taps), and for each RMSNorm its channel count (its sum of squares). A residual branch whose closing
 * RMSNorm has zero scale and bias contributes an exact 0 (x + 0 == x) and is left out. Each length also counts 5
 * more roundings: the bias, a parameter-free shortcut's average of at most 4 values, and the add.
 */
function reductionLengths(m: ReturnType<typeof createModel>, prefix: string): number[] {
  const params = new Map(m.namedParams().map(([k, p]) => [k, p.value]));
  const isZero = (k: string) => params.get(k)?.readSync().every((v) => v === 0) ?? false;
  const out: number[] = [];
  for (const [k, w] of params) {
    if (!k.startsWith(prefix) || !k.endsWith('.weight')) continue;
    const branch = /^(.*\.main)\.conv[12]\./.exec(k)?.[1];
    if (branch && isZero(`${branch}.conv2.norm.weight`) && isZero(`${branch}.conv2.norm.bias`)) continue;
    if (w.shape.length === 5) {
      const d = w.readSync();
      const row = d.length / w.shape[0]!;
      let most = 0;
      for (let o = 0; o < w.shape[0]!; o++) {
        let nz = 0;
        for (let i = o * row; i < (o + 1) * row; i++) if (d[i] !== 0) nz++;
        most = Math.max(most, nz);
      }
      out.push(most + 5);
    } else if (w.shape.length === 1 && /norm|project_out\.op_list\.0\./.test(k)) {
      out.push(w.shape[0]! + 5);
    }
  }
  return out;
}

/**
 * How far one float32 evaluation of a chain of layers with these reduction lengths may land from the exact result,
 * relative to the output's scale. A dot product of n terms rounded at each step errs by at most about
 * lambda * sqrt(n) * u times the size of its terms (u = 2^-24, the unit roundoff of float32), with probability at
 * least 1 - 2n exp(-lambda^2 / 2) (Higham & Mary, "A new approach to probabilistic rounding error analysis", 2019);
 * lambda = 8 keeps that failure chance under 1e-3 across all of a clip's ~3e6 outputs x ~10 layers x n <= 200 terms.
 * The rounding order (AVX-512 or AVX2 GEMM blocking, thread count, oneDNN version) moves where inside this bound a
 * machine lands, not the bound. Errors of successive layers add (rather than multiply) because each layer here is a
 * least-squares fit or PCA projection that carries its input's relative error through at about the same size.
 */
function oneEvaluationError(lengths: number[]): number {
  const u = 2 ** -24;
  const lambda = 8;
  return lengths.reduce((s, n) => s + lambda * Math.sqrt(n) * u, 0);
}

const mix = (a: Tensor, b: Tensor, w: number) => {
  const bd = b.readSync();
  return tensor(Float32Array.from(a.readSync(), (v, i) => w * v + (1 - w) * bd[i]!), a.shape);
};

test('init_ae_linear.py: loads into our model, affine encoder and decoder, beats bicubic on the clip it was fitted to; rescale_decoder.py keeps the function', { skip }, async (t) => {
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
    // E(0.3 x + 0.7 x2) against 0.3 E(x) + 0.7 E(x2): the rounding of three encoder evaluations weighted 1, 0.3 and
    // 0.7 (two evaluations' worth) and of the two mixes
    const encTol = 2 * oneEvaluationError(reductionLengths(m, 'encoder.')) + 2 * 2 ** -24;
    const de = maxRelDiff(m.encodeRaw(mix(x, x2, 0.3)), mix(z1, z2, 0.3));
    assert.ok(de < encTol, `encoder is affine: rel diff ${de} (bound ${encTol})`);
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
    // the same encoder weights give the same z2; the two decoders compute one function in different float steps, so
    // they differ by at most the rounding of one evaluation of each (the rescaled one's lengths: its taps are the
    // original's, plus the centre diagonal the rescaling adds)
    const decTol = oneEvaluationError(reductionLengths(m, 'decoder.')) + oneEvaluationError(reductionLengths(m2, 'decoder.'));
    const dr = maxRelDiff(m2.decodeRaw(m2.encodeRaw(x2)), m.decodeRaw(z2));
    assert.ok(dr < decTol, `rescaled decoder reconstructs the same: rel diff ${dr} (bound ${decTol})`);
    t.diagnostic(`encoder affine rel diff ${de.toExponential(2)} (bound ${encTol.toExponential(2)}), rescaled decoder ${dr.toExponential(2)} (bound ${decTol.toExponential(2)})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
