/**
 * Training losses (src/train/losses.ts): the SSIM loss against the uint8 SSIM metric, finite differences and the
 * PyTorch twin of bench/torch_train_ae.py; the hinge GAN losses on hand-computed values; the PatchGAN discriminator.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../src/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { Rng } from '../src/tensor/random.js';
import { withBackend } from '../src/backend/index.js';
import { ssimFrame } from '../src/metrics/metrics.js';
import { PatchDiscriminator, foregroundWeights, gaussianWindow, hingeDLoss, hingeGLoss, leakyRelu, ssimLoss, weightedReconLoss } from '../src/train/losses.js';
import { relErr, repoRoot, requireBackend, testBackends } from './helpers.js';

/** Smooth coloured pattern plus a little noise, (1, 3, T, H, W) in [-1, 1] (float64 math, float32 storage). */
function smoothVideo(T_: number, H: number, W: number, seed: number, noise = 0.05): Tensor {
  const rng = new Rng(seed);
  const ph = [rng.uniform() * 6, rng.uniform() * 6, rng.uniform() * 6];
  const d = new Float32Array(3 * T_ * H * W);
  let i = 0;
  for (let c = 0; c < 3; c++)
    for (let t = 0; t < T_; t++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) {
          const v = 0.7 * Math.sin(h / (2.5 + c) + 0.3 * t + ph[c]!) * Math.cos(w / (3.5 - 0.5 * c) - 0.2 * t + ph[(c + 1) % 3]!);
          d[i++] = Math.max(-1, Math.min(1, v + noise * (2 * rng.uniform() - 1)));
        }
  return new Tensor(d, [1, 3, T_, H, W]);
}

/** Quantises a [-1, 1] video to uint8 levels v and returns both the frames (HxWx3 RGB) and v / 127.5 - 1. */
function quantise(x: Tensor): { frames: Uint8Array[]; tensor: Tensor } {
  const [, C, T_, H, W] = x.shape as [number, number, number, number, number];
  const d = x.readSync();
  const frames = Array.from({ length: T_ }, () => new Uint8Array(H * W * 3));
  const out = new Float32Array(d.length);
  for (let c = 0; c < C; c++)
    for (let t = 0; t < T_; t++)
      for (let p = 0; p < H * W; p++) {
        const i = (c * T_ + t) * H * W + p;
        const v = Math.round((d[i]! + 1) * 127.5);
        frames[t]![p * 3 + c] = v;
        out[i] = v / 127.5 - 1;
      }
  return { frames, tensor: new Tensor(out, x.shape) };
}

const dot = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + v * b[i]!, 0);

const PY = process.env.DCVG_TORCH_PYTHON ?? '/usr/bin/python3';
const TWIN = join(repoRoot, 'bench', 'torch_train_ae.py');
const torchSkip = ((): string | false => {
  if (!existsSync(TWIN)) return `${TWIN} missing`;
  const r = spawnSync(PY, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  return r.status === 0 ? false : `PyTorch (with numpy) not available via ${PY}: skipping the torch comparison`;
})();

describe('gaussianWindow', () => {
  it('11 taps, sigma 1.5: symmetric, sums to 1, float64 taps rounded to float32', () => {
    const g = gaussianWindow(11, 1.5);
    assert.equal(g.length, 11);
    let s = 0;
    for (let k = 0; k < 11; k++) {
      assert.equal(g[k], g[10 - k]);
      s += g[k]!;
    }
    assert.ok(Math.abs(s - 1) < 1e-6, `sum ${s}`);
    const e = (k: number) => Math.exp(-((k / 1.5) ** 2) / 2);
    let z = 0;
    for (let k = -5; k <= 5; k++) z += e(k);
    assert.equal(g[5], Math.fround(1 / z));
    assert.equal(g[0], Math.fround(e(5) / z));
    assert.throws(() => gaussianWindow(0), /windowSize/);
    assert.throws(() => gaussianWindow(11, 0), /sigma/);
  });
});

for (const be of testBackends()) {
  describe(`ssimLoss (${be.name})`, { skip: be.skip }, () => {
    const run = <R>(fn: () => R) => withBackend(requireBackend(be.backend), fn);

    it('is 0 for identical inputs and positive otherwise', () =>
      run(() => {
        const x = smoothVideo(2, 24, 20, 1);
        const l0 = ssimLoss(x, x).item();
        assert.ok(Math.abs(l0) < 1e-6, `loss(x, x) = ${l0}`);
        const l1 = ssimLoss(x, smoothVideo(2, 24, 20, 2)).item();
        assert.ok(l1 > 0.05, `loss of different videos ${l1}`);
      }));

    it('equals 1 - the crop-border SSIM metric on uint8-quantised frames', () =>
      run(() => {
        // Same images: the metric sees uint8 levels v with data range 255; the loss sees v / 127.5 - 1, maps it to
        // v / 255 and uses data range 1, so the constants C1 = (0.01 L)^2, C2 = (0.03 L)^2 scale with the data and
        // SSIM is the same number. Remaining differences: the metric clamps variances at 0 and filters in float64,
        // the loss computes in float32 (E[a^2] - mu^2 cancels in float32), hence the tolerance.
        const H = 40,
          W = 36,
          Tn = 3;
        const a = quantise(smoothVideo(Tn, H, W, 3));
        const noisy = T.add(a.tensor, T.mul(T.sub(smoothVideo(Tn, H, W, 4, 0.3), smoothVideo(Tn, H, W, 4, 0)), 0.5));
        const b = quantise(T.clamp(noisy, -1, 1));
        let metric = 0;
        for (let t = 0; t < Tn; t++) metric += ssimFrame(a.frames[t]!, b.frames[t]!, H, W, { border: 'crop' });
        metric /= Tn;
        const loss = ssimLoss(b.tensor, a.tensor).item();
        assert.ok(metric > 0.2 && metric < 0.95, `test images should be neither identical nor unrelated (SSIM ${metric})`);
        assert.ok(Math.abs(1 - metric - loss) < 5e-6, `loss ${loss} vs 1 - metric ${1 - metric} (diff ${Math.abs(1 - metric - loss)})`);
        // the reflect-border metric is a different quantity; the comparison above is not vacuous
        let reflect = 0;
        for (let t = 0; t < Tn; t++) reflect += ssimFrame(a.frames[t]!, b.frames[t]!, H, W, { border: 'reflect' });
        assert.ok(Math.abs(1 - reflect / Tn - loss) > 1e-4, 'reflect-border SSIM unexpectedly equal');
      }));

    it('gradients match central finite differences (x and y, (1,3,2,16,16))', () =>
      run(() => {
        const rng = new Rng(7);
        const x = T.parameter(T.clamp(T.add(smoothVideo(2, 16, 16, 5), T.randn([1, 3, 2, 16, 16], rng, 0.1)), -1, 1));
        const y = T.parameter(smoothVideo(2, 16, 16, 6, 0.2));
        ssimLoss(x, y).backward();
        const eps = 1e-3;
        for (const [name, p] of [
          ['x', x],
          ['y', y],
        ] as const) {
          for (let k = 0; k < 3; k++) {
            const d = T.randn(p.shape, rng);
            const at = (s: number) =>
              T.noGrad(() => ssimLoss(p === x ? T.add(x.detach(), T.mul(d, s)) : x.detach(), p === y ? T.add(y.detach(), T.mul(d, s)) : y.detach()).item());
            const fd = (at(eps) - at(-eps)) / (2 * eps);
            const an = dot(p.grad!.readSync(), d.readSync());
            const err = Math.abs(fd - an) / Math.max(Math.abs(an), Math.abs(fd));
            assert.ok(Math.abs(an) > 1e-3, `${name}: directional derivative ${an} too small to test`);
            assert.ok(err < 5e-3, `${name} direction ${k}: analytic ${an} vs finite difference ${fd} (rel err ${err.toExponential(2)})`);
          }
        }
      }));

    it('rejects mismatched shapes and frames smaller than the window', () =>
      run(() => {
        const x = T.zeros([1, 3, 2, 16, 16]);
        assert.throws(() => ssimLoss(x, T.zeros([1, 3, 2, 16, 15])), (e: Error) => e instanceof T.ShapeError && /differ/.test(e.message));
        assert.throws(() => ssimLoss(T.zeros([1, 3, 2, 10, 16]), T.zeros([1, 3, 2, 10, 16])), (e: Error) => e instanceof T.ShapeError && /window/.test(e.message));
        assert.throws(() => ssimLoss(T.zeros([3, 16, 16]), T.zeros([3, 16, 16])), T.ShapeError);
        assert.throws(() => ssimLoss(x, x, { windowSize: 0 }), T.ValueError);
        // a smaller window fits smaller frames
        assert.ok(Math.abs(ssimLoss(T.zeros([1, 3, 1, 7, 7]), T.zeros([1, 3, 1, 7, 7]), { windowSize: 7 }).item()) < 1e-6);
      }));
  });
}

describe('ssimLoss vs the PyTorch twin (bench/torch_train_ae.py)', { skip: torchSkip }, () => {
  const shape = [2, 3, 3, 24, 20];
  const x = T.parameter(T.clamp(T.add(T.cat([smoothVideo(3, 24, 20, 11), smoothVideo(3, 24, 20, 12)], 0), T.randn(shape, 13, 0.05)), -1, 1));
  const y = T.parameter(T.cat([smoothVideo(3, 24, 20, 14, 0.2), smoothVideo(3, 24, 20, 15, 0.2)], 0));
  const loss = ssimLoss(x, y);
  loss.backward();
  const ours = loss.item();
  const gx = x.grad!.readSync();
  const gy = y.grad!.readSync();

  for (const [dtype, impl, tolLoss, tolGrad] of [
    ['float64', 'conv', 1e-6, 1e-4],
    ['float32', 'conv', 1e-6, 1e-4],
    ['float32', 'matmul', 1e-6, 1e-4],
  ] as const) {
    it(`value and gradients agree with torch (${dtype}, ${impl} blur)`, () => {
      const dir = mkdtempSync(join(tmpdir(), 'dcvg-ssim-'));
      try {
        writeFileSync(join(dir, 'x.f32'), x.readSync());
        writeFileSync(join(dir, 'y.f32'), y.readSync());
        const r = spawnSync(
          PY,
          [TWIN, 'ssim', '--shape', shape.join(','), '--x', join(dir, 'x.f32'), '--y', join(dir, 'y.f32'), '--grad-out', join(dir, 'g.f32'), '--dtype', dtype, '--ssim-impl', impl],
          { encoding: 'utf8' },
        );
        assert.equal(r.status, 0, r.stderr);
        const ref = JSON.parse(r.stdout.trim().split('\n').pop()!).loss as number;
        const b = readFileSync(join(dir, 'g.f32'));
        const g = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
        const n = gx.length;
        assert.ok(Math.abs(ours - ref) < tolLoss, `loss ${ours} vs torch ${ref}`);
        const ex = relErr(gx, g.subarray(0, n));
        const ey = relErr(gy, g.subarray(n));
        assert.ok(ex < tolGrad && ey < tolGrad, `gradient rel err x ${ex.toExponential(2)}, y ${ey.toExponential(2)}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('hinge losses', () => {
  it('match hand-computed values and gradients', () => {
    const real = T.parameter(T.tensor([2, 0.5, -1, 0], [1, 1, 1, 2, 2]));
    const fake = T.parameter(T.tensor([-2, 0, 0.5, -0.5], [1, 1, 1, 2, 2]));
    // relu(1 - real) = [0, 0.5, 2, 1] -> 0.875; relu(1 + fake) = [0, 1, 1.5, 0.5] -> 0.75
    const d = hingeDLoss(real, fake);
    assert.ok(Math.abs(d.item() - 1.625) < 1e-7, `D loss ${d.item()}`);
    d.backward();
    assert.deepEqual([...real.grad!.readSync()], [0, -0.25, -0.25, -0.25]);
    assert.deepEqual([...fake.grad!.readSync()], [0, 0.25, 0.25, 0.25]);
    fake.grad = null;
    const g = hingeGLoss(fake);
    assert.ok(Math.abs(g.item() - 0.5) < 1e-7, `G loss ${g.item()}`);
    g.backward();
    assert.deepEqual([...fake.grad!.readSync()], [-0.25, -0.25, -0.25, -0.25]);
  });

  it('leakyRelu is max(x, 0.2 x) with slope 0.2 below zero', () => {
    const x = T.parameter(T.tensor([-2, -0.5, 0.5, 3]));
    const y = leakyRelu(x, 0.2);
    assert.deepEqual([...y.readSync()].map((v) => +v.toFixed(6)), [-0.4, -0.1, 0.5, 3]);
    T.sum(y).backward();
    assert.deepEqual([...x.grad!.readSync()].map((v) => +v.toFixed(6)), [0.2, 0.2, 1, 1]);
  });
});

describe('PatchDiscriminator', () => {
  it('maps (B,3,T,H,W) to a per-frame logits map and passes gradients to every parameter', () => {
    const D = new PatchDiscriminator({ width: 8, layers: 3 });
    assert.deepEqual(
      [...D.shapes().entries()].map(([k, s]) => `${k}:${s.join('x')}`),
      ['convs.0.weight:8x3x1x4x4', 'convs.0.bias:8', 'convs.1.weight:16x8x1x4x4', 'convs.1.bias:16', 'convs.2.weight:32x16x1x4x4', 'convs.2.bias:32', 'out.weight:1x32x1x3x3', 'out.bias:1'],
    );
    D.init(3);
    const w0 = D.convs[0]!.weight.value.readSync();
    let ss = 0;
    for (const v of w0) ss += v * v;
    const std = Math.sqrt(ss / w0.length);
    assert.ok(std > 0.012 && std < 0.028, `init std ${std}`);
    assert.ok(D.out.bias.value.readSync().every((v) => v === 0));
    const x = T.parameter(smoothVideo(2, 32, 48, 9));
    const logits = D.forward(x);
    assert.deepEqual(logits.shape, [1, 1, 2, 4, 6]);
    hingeGLoss(logits).backward();
    for (const [k, p] of D.namedParams()) {
      const g = p.value.grad;
      assert.ok(g, `${k}: no gradient`);
      assert.ok(g.readSync().some((v) => v !== 0), `${k}: zero gradient`);
    }
    assert.ok(x.grad && x.grad.readSync().some((v) => v !== 0), 'no gradient reaches the input');
    // frames are independent: changing frame 1 leaves frame 0's logits alone
    const x2 = x.detach().clone();
    {
      const h = x2.readSync();
      h.fill(0.3, 32 * 48, 2 * 32 * 48); // channel 0, frame 1
      x2.write(h);
    }
    const l2 = T.noGrad(() => D.forward(x2));
    assert.deepEqual([...T.slice(l2, 2, 0, 1).contiguous().readSync()], [...T.slice(logits, 2, 0, 1).contiguous().readSync()]);
    assert.throws(() => D.forward(T.zeros([1, 4, 1, 32, 32])), T.ShapeError);
  });
});

describe('foreground weights (train-ae --fg-weight)', () => {
  /** (B=2, 3, T=2, 4, 4): sample 0 a gray background with one red pixel per frame, sample 1 a flat black clip */
  function scene(): Tensor {
    const [C, Tn, H, W] = [3, 2, 4, 4];
    const plane = Tn * H * W;
    const d = new Float32Array(2 * C * plane);
    const gray = 128 / 127.5 - 1;
    for (let c = 0; c < C; c++) d.fill(gray, c * plane, (c + 1) * plane);
    for (let t = 0; t < Tn; t++) {
      const i = t * H * W + 5 + t; // the object moves one pixel
      d[i] = 1; // red: R 255
      d[plane + i] = -1; // G 0
      d[2 * plane + i] = -1; // B 0
    }
    d.fill(16 / 127.5 - 1, C * plane); // sample 1: black (16) everywhere
    return new Tensor(d, [2, C, Tn, H, W]);
  }

  it('weighs a pixel by its distance from the sample median colour, shared by channels, mean 1', () => {
    const x = scene();
    const W = 20;
    const w = foregroundWeights(x, W).readSync();
    const xd = x.readSync();
    const plane = 2 * 16;
    // raw weights: background 1; the red pixel's largest channel distance from gray is |-1 - gray| (G and B at 0)
    const gray = 128 / 127.5 - 1;
    const dObj = Math.max(Math.abs(1 - gray), Math.abs(-1 - gray));
    const objRaw = 1 + (W * dObj) / 2;
    const rawMean = (2 * objRaw * 3 + (2 * 3 * plane - 2 * 3)) / (2 * 3 * plane);
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < plane; i++) {
        const obj = b === 0 && xd[i] === 1;
        const want = (obj ? objRaw : 1) / rawMean;
        for (let c = 0; c < 3; c++) assert.ok(Math.abs(w[(b * 3 + c) * plane + i]! - want) <= 4e-7 * want, `b${b} c${c} i${i}: ${w[(b * 3 + c) * plane + i]} vs ${want}`);
      }
    assert.ok(Math.abs(w.reduce((a, v) => a + v, 0) / w.length - 1) < 1e-6, 'mean 1');
    // weight 0: all ones; bad arguments refused
    assert.ok(foregroundWeights(x, 0).readSync().every((v) => v === 1));
    assert.throws(() => foregroundWeights(x, -1), /weight must be finite and >= 0/);
    assert.throws(() => foregroundWeights(T.zeros([3, 4, 4]), 1), /expects a \(B, C, T, H, W\) video/);
  });

  it("with the reconstruction (--fg-of both): a value off the background in either weighs like the object", () => {
    const x = scene();
    const W = 20;
    const plane = 2 * 16;
    const yd = new Float32Array(x.readSync());
    // the reconstruction of sample 1 (black everywhere) puts a white pixel at 3 (a stray) and keeps the rest
    for (let c = 0; c < 3; c++) yd[(3 + c) * plane + 3] = 1;
    const y = new Tensor(yd, x.shape);
    const raw = (v: Float32Array, b: number, i: number) => v[(b * 3) * plane + i]!;
    const w = foregroundWeights(x, W, y).readSync();
    const w0 = foregroundWeights(x, W).readSync();
    const black = 16 / 127.5 - 1;
    const strayRaw = 1 + (W * (1 - black)) / 2;
    // relative to a background pixel of the same call (the normalisation differs between the calls)
    assert.ok(Math.abs(raw(w, 1, 3) / raw(w, 1, 0) - strayRaw) <= 1e-5 * strayRaw, `stray ${raw(w, 1, 3) / raw(w, 1, 0)} vs ${strayRaw}`);
    assert.equal(raw(w0, 1, 3), raw(w0, 1, 0), 'without the reconstruction the stray is background');
    // where the reconstruction matches the original, the weights are the original's (up to the normalisation)
    const k = raw(w, 0, 0) / raw(w0, 0, 0);
    for (let i = 0; i < w.length; i++) if (i % plane !== 3 || Math.floor(i / plane) < 3) assert.ok(Math.abs(w[i]! - k * w0[i]!) <= 1e-6 * w[i]!, `value ${i}`);
    assert.throws(() => foregroundWeights(x, W, T.zeros([1, 3, 2, 4, 4])), /differ in shape/);
  });

  it('weightedReconLoss with unit weights is the plain loss; weights move it towards the weighted pixels', () => {
    const x = scene();
    const y = T.add(x, T.randn(x.shape, 3, 0.1));
    const ones = T.ones(x.shape);
    const mse = T.mean(T.square(T.sub(y, x))).item();
    const l1 = T.mean(T.abs(T.sub(y, x))).item();
    assert.ok(Math.abs(weightedReconLoss(y, x, ones, 'mse').item() - mse) <= 1e-6 * mse);
    assert.ok(Math.abs(weightedReconLoss(y, x, ones, 'l1').item() - l1) <= 1e-6 * l1);
    // a reconstruction that misses only the object: the weighted loss is many times the plain one
    const bgOnly = new Float32Array(x.readSync());
    const gray = 128 / 127.5 - 1;
    for (let i = 0; i < 3 * 32; i++) bgOnly[i] = gray;
    const miss = new Tensor(bgOnly, x.shape);
    const plain = weightedReconLoss(miss, x, ones, 'mse').item();
    const fg = weightedReconLoss(miss, x, foregroundWeights(x, 20), 'mse').item();
    assert.ok(fg > 5 * plain, `weighted ${fg} against plain ${plain}`);
  });
});
