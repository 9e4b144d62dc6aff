/** The equal-budget resampling baseline: torch-exact resizers, budget accounting, and behaviour on a real clip. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  areaResizeTime,
  bicubicResize,
  equalBudgetBaseline,
  fitSpatialSize,
  latentBudget,
  linearResizeTime,
  resampleThroughBottleneck,
} from '../src/metrics/baseline.js';
import { openVideoReader } from '../src/io/video.js';
import { relErr, sharedDir } from './helpers.js';

const PY = '/usr/bin/python3';
const torchSkip: string | false = (() => {
  if (!existsSync(PY)) return `${PY} missing: torch comparison skipped`;
  const r = spawnSync(PY, ['-c', 'import torch'], { encoding: 'utf8' });
  return r.status === 0 ? false : `torch not importable by ${PY}: torch comparison skipped`;
})();

/** Deterministic pseudo-random floats in [0, 255) (mulberry32). */
function randomValues(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 255;
  }
  return out;
}

/** A smooth moving RGB pattern plus a little noise, T frames of HxWx3 uint8. */
function syntheticClip(T: number, H: number, W: number, seed = 1): Uint8Array[] {
  const noise = randomValues(T * H * W * 3, seed);
  const frames: Uint8Array[] = [];
  for (let t = 0; t < T; t++) {
    const f = new Uint8Array(H * W * 3);
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < 3; c++) {
          const i = (y * W + x) * 3 + c;
          const v = 128 + 90 * Math.sin(0.35 * x + 0.2 * y * (c + 1) + 0.3 * t) + 0.1 * (noise[t * H * W * 3 + i]! - 127);
          f[i] = Math.max(0, Math.min(255, Math.round(v)));
        }
    frames.push(f);
  }
  return frames;
}

/** Runs a Python script with JSON on stdin and parses its JSON stdout. */
function python(script: string, input: unknown): any {
  const r = spawnSync(PY, ['-c', script], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const TORCH_RESIZE = `
import json, sys, torch
import torch.nn.functional as F
torch.set_num_threads(1)
cases = json.load(sys.stdin)
out = []
for c in cases:
    x = torch.tensor(c['x'], dtype=torch.float32)
    if c['kind'] == 'bicubic':
        x = x.reshape(1, c['C'], c['H'], c['W'])
        y = F.interpolate(x, size=(c['outH'], c['outW']), mode='bicubic', align_corners=False, antialias=c['aa'])
    else:
        x = x.reshape(c['T'], c['F']).t().unsqueeze(0)  # (1, F, T)
        if c['kind'] == 'linear':
            y = F.interpolate(x, size=c['outT'], mode='linear', align_corners=False)
        else:
            y = F.interpolate(x, size=c['outT'], mode='area')
        y = y[0].t()
    out.append(y.contiguous().reshape(-1).tolist())
print(json.dumps(out))
`;

test('bicubicResize / linearResizeTime / areaResizeTime match torch 1.13 F.interpolate', { skip: torchSkip }, () => {
  const cases: any[] = [];
  const bic: [number, number, number, number, number, boolean][] = [
    // C, H, W, outH, outW, antialias
    [3, 5, 7, 11, 13, false], // upsampling, non-integer ratios
    [3, 6, 6, 128, 128, false], // the baseline's way back up
    [1, 9, 4, 27, 16, false],
    [3, 20, 17, 7, 9, false], // plain (aliasing) downsampling also follows torch
    [3, 128, 96, 13, 9, true], // antialiased downsampling, large factors
    [3, 128, 128, 6, 6, true],
    [2, 23, 31, 10, 11, true], // non-integer factors
    [3, 12, 16, 30, 8, true], // antialias up in one axis, down in the other
    [1, 40, 40, 39, 1, true],
  ];
  bic.forEach(([C, H, W, outH, outW, aa], k) => cases.push({ kind: 'bicubic', C, H, W, outH, outW, aa, x: Array.from(randomValues(C * H * W, 10 + k)) }));
  const tim: ['linear' | 'area', number, number, number][] = [
    // kind, T, frameSize, outT
    ['linear', 10, 7, 40],
    ['linear', 40, 5, 10],
    ['linear', 5, 3, 3],
    ['linear', 1, 4, 6],
    ['linear', 20, 6, 160],
    ['area', 160, 4, 20],
    ['area', 10, 5, 3],
    ['area', 13, 2, 4],
    ['area', 7, 3, 7],
  ];
  tim.forEach(([kind, T, F, outT], k) => cases.push({ kind, T, F, outT, x: Array.from(randomValues(T * F, 100 + k)) }));
  const ref: number[][] = python(TORCH_RESIZE, cases);
  cases.forEach((c, k) => {
    const x = Float32Array.from(c.x);
    const got =
      c.kind === 'bicubic'
        ? bicubicResize(x, c.C, c.H, c.W, c.outH, c.outW, { antialias: c.aa })
        : c.kind === 'linear'
          ? linearResizeTime(x, c.T, c.F, c.outT)
          : areaResizeTime(x, c.T, c.F, c.outT);
    const label = JSON.stringify({ ...c, x: undefined });
    assert.equal(got.length, ref[k]!.length, `${label}: length`);
    const e = relErr(got, ref[k]!);
    assert.ok(e <= 1e-5, `${label}: relative error ${e.toExponential(3)} > 1e-5`);
  });
});

const TORCH_PIPELINE = `
import json, sys, math, torch
import torch.nn.functional as F
torch.set_num_threads(1)
c = json.load(sys.stdin)
T, H, W, h, w, tf = c['T'], c['H'], c['W'], c['h'], c['w'], c['tf']
x = torch.tensor(c['frames'], dtype=torch.float32).reshape(T, H, W, 3).permute(0, 3, 1, 2)  # (T, 3, H, W)
lo = F.interpolate(x, size=(h, w), mode='bicubic', align_corners=False, antialias=True)
Tt = math.ceil(T / tf)
s = lo.reshape(T, -1).t().unsqueeze(0)  # (1, 3hw, T)
s = F.interpolate(s, size=Tt, mode=c['down'])
s = F.interpolate(s, size=T, mode='linear', align_corners=False)
lo = s[0].t().reshape(T, 3, h, w)
y = F.interpolate(lo, size=(H, W), mode='bicubic', align_corners=False)
y = torch.floor(y.clamp(0, 255) + 0.5).to(torch.uint8).permute(0, 2, 3, 1).reshape(-1)
print(json.dumps(y.tolist()))
`;

test('the whole bottleneck (aa bicubic down, time down/up, bicubic up, uint8) matches torch', { skip: torchSkip }, () => {
  const T = 10;
  const H = 24;
  const W = 32;
  const frames = syntheticClip(T, H, W, 7);
  for (const [tf, h, w, down] of [[4, 5, 7, 'area'], [3, 9, 11, 'linear'], [1, 3, 4, 'area']] as const) {
    const ref: number[] = python(TORCH_PIPELINE, { T, H, W, h, w, tf, down, frames: frames.flatMap((f) => Array.from(f)) });
    const got = resampleThroughBottleneck(frames, H, W, tf, h, w, down);
    assert.equal(ref.length, T * H * W * 3);
    let off = 0;
    for (let t = 0; t < T; t++)
      for (let i = 0; i < H * W * 3; i++) {
        const d = Math.abs(got[t]![i]! - ref[t * H * W * 3 + i]!);
        assert.ok(d <= 1, `tf ${tf} ${h}x${w}: frame ${t} byte ${i} is ${got[t]![i]}, torch ${ref[t * H * W * 3 + i]}`);
        if (d) off++;
      }
    // float32 vs float64 accumulation may flip a rounding at an exact .5 boundary, nothing more
    assert.ok(off <= 3, `tf ${tf}: ${off} bytes differ by 1 from torch`);
  }
});

test('resizers are the identity when the size is unchanged', () => {
  const x = randomValues(3 * 9 * 13, 3);
  assert.deepEqual(bicubicResize(x, 3, 9, 13, 9, 13), x);
  assert.deepEqual(bicubicResize(x, 3, 9, 13, 9, 13, { antialias: true }), x);
  assert.deepEqual(bicubicResize(x, 1, 27, 13, 27, 13), x);
  assert.deepEqual(linearResizeTime(x, 9, 39, 9), x);
  assert.deepEqual(areaResizeTime(x, 13, 27, 13), x);
  // one axis unchanged: that axis is left alone (rows of a 1-row image stay rows)
  const row = randomValues(20, 4);
  const up = bicubicResize(row, 1, 1, 20, 1, 40);
  const down = bicubicResize(up, 1, 1, 40, 1, 20, { antialias: true });
  assert.equal(down.length, 20);
  // a full-size budget keeps everything: the reconstruction is exact
  const clip = syntheticClip(5, 12, 10, 2);
  const r = equalBudgetBaseline(clip, 12, 10, 3 * 5 * 12 * 10, { temporalFactors: [1] });
  assert.equal(r.best.h, 12);
  assert.equal(r.best.w, 10);
  assert.equal(r.best.psnr, Infinity);
  r.best.frames.forEach((f, t) => assert.deepEqual(f, clip[t]));
});

test('argument checks', () => {
  assert.throws(() => bicubicResize(new Float32Array(5), 1, 2, 3, 4, 4), /6/);
  assert.throws(() => bicubicResize(new Float32Array(6), 1, 2, 3, 0, 4), /outH/);
  assert.throws(() => linearResizeTime(new Float32Array(6), 4, 2, 3), /T·frameSize/);
  assert.throws(() => equalBudgetBaseline([], 4, 4, 100), /at least one frame/);
  assert.throws(() => equalBudgetBaseline([new Uint8Array(10)], 4, 4, 100), /48/);
  assert.throws(() => equalBudgetBaseline([new Uint8Array(48)], 4, 4, 2), /cannot keep/);
  assert.throws(() => latentBudget(160, 128, 128, 32, 4, 32, 42), /multiple/);
});

test('latentBudget counts padded latent frames and padded spatial tiles', () => {
  assert.equal(latentBudget(160, 128, 128, 32, 4, 32), 32 * 40 * 4 * 4);
  assert.equal(latentBudget(160, 128, 128, 32, 4, 32, 40), 20480);
  // chunk-causal presets pad to whole 40-frame chunks
  assert.equal(latentBudget(41, 128, 128, 32, 4, 32, 40), 32 * 20 * 16);
  assert.equal(latentBudget(41, 128, 128, 32, 4, 32), 32 * 11 * 16);
  // 100x130 pads to 128x160 at f32
  assert.equal(latentBudget(8, 100, 130, 32, 4, 32), 32 * 2 * 4 * 5);
});

test('every candidate respects the budget and is the largest aspect-preserving size that does', () => {
  const H = 30;
  const W = 50;
  const T = 9;
  const clip = syntheticClip(T, H, W, 5);
  for (const budget of [20000, 3000, 700, 100, 30]) {
    const r = equalBudgetBaseline(clip, H, W, budget, { ssim: false, temporalFactors: [1, 2, 4, 8, 16] });
    assert.ok(r.all.length >= 1);
    for (const c of r.all) {
      const Tt = Math.ceil(T / c.tf);
      assert.equal(c.keptFrames, Tt);
      assert.equal(c.values, 3 * Tt * c.h * c.w);
      assert.ok(c.values <= budget, `budget ${budget}, tf ${c.tf}: ${c.values} values`);
      assert.ok(c.h >= 1 && c.w >= 1 && c.h <= H && c.w <= W);
      assert.ok(Math.abs(c.w - (c.h * W) / H) <= 0.5 + 1e-9, `aspect of ${c.h}x${c.w} vs ${H}x${W}`);
      // one row more would not fit (or the full size is already kept)
      if (c.h < H) {
        const h2 = c.h + 1;
        const w2 = Math.max(1, Math.round((h2 * W) / H));
        assert.ok(3 * Tt * h2 * w2 > budget, `budget ${budget}, tf ${c.tf}: ${h2}x${w2} would also fit`);
      }
    }
    assert.equal(r.best.psnr, Math.max(...r.all.map((c) => c.psnr)));
    assert.equal(r.best.frames.length, T);
  }
  assert.deepEqual(fitSpatialSize(128, 128, 42), { h: 6, w: 6 });
  assert.deepEqual(fitSpatialSize(128, 128, 170), { h: 13, w: 13 });
  assert.deepEqual(fitSpatialSize(9, 16, 1e9), { h: 9, w: 16 });
  assert.equal(fitSpatialSize(9, 16, 0), null);
});

test('a constant video is reconstructed exactly at any budget', () => {
  const T = 11;
  const H = 20;
  const W = 28;
  const f = new Uint8Array(H * W * 3);
  for (let i = 0; i < H * W; i++) f.set([37, 200, 5], i * 3);
  const clip = Array.from({ length: T }, () => f.slice());
  for (const down of ['area', 'linear'] as const) {
    const r = equalBudgetBaseline(clip, H, W, 40, { temporalDown: down });
    assert.ok(r.all.length >= 2);
    for (const c of r.all) {
      assert.equal(c.psnr, Infinity, `tf ${c.tf}`);
      assert.ok(Math.abs(c.ssim - 1) < 1e-9, `tf ${c.tf}: ssim ${c.ssim}`);
    }
    r.best.frames.forEach((g) => assert.deepEqual(g, f));
  }
});

const CLIP = join(sharedDir, 'data', 'clips128', '01.mp4');

async function readFrames(path: string): Promise<{ frames: Uint8Array[]; height: number; width: number }> {
  const reader = await openVideoReader(path);
  const frames: Uint8Array[] = [];
  try {
    for (;;) {
      const c = await reader.readFrames(64);
      if (!c) break;
      for (let o = 0; o < c.length; o += reader.frameBytes) frames.push(c.slice(o, o + reader.frameBytes));
    }
  } finally {
    await reader.close();
  }
  return { frames, height: reader.height, width: reader.width };
}

test('on a real clip, PSNR falls as the budget shrinks', { skip: existsSync(CLIP) ? false : `clip missing: ${CLIP}` }, async () => {
  const { frames, height, width } = await readFrames(CLIP);
  assert.ok(frames.length >= 8);
  const latent = latentBudget(frames.length, height, width, 32, 4, 32, 40);
  let prev = Infinity;
  for (const div of [1 / 4, 1, 4, 16]) {
    const r = equalBudgetBaseline(frames, height, width, latent / div, { ssim: div === 1 });
    assert.ok(Number.isFinite(r.best.psnr) && r.best.psnr > 5 && r.best.psnr < 60, `psnr ${r.best.psnr}`);
    assert.ok(r.best.psnr < prev, `budget ${latent / div}: PSNR ${r.best.psnr.toFixed(2)} not below ${prev.toFixed(2)}`);
    if (div === 1) {
      assert.ok(r.best.ssim > 0 && r.best.ssim < 1, `ssim ${r.best.ssim}`);
      // torch (antialiased bicubic down, trilinear time, bicubic up) measured 19.6 / 21.3 / 22.2 / 20.7 dB on this clip
      if (frames.length === 160 && height === 128 && width === 128) {
        assert.deepEqual(r.all.map((c) => [c.tf, c.h, c.w]), [[1, 6, 6], [2, 9, 9], [4, 13, 13], [8, 18, 18]]);
        [19.6, 21.3, 22.2, 20.7].forEach((ref, k) => assert.ok(Math.abs(r.all[k]!.psnr - ref) < 0.1, `tf ${r.all[k]!.tf}: ${r.all[k]!.psnr} vs torch ${ref}`));
      }
    }
    prev = r.best.psnr;
  }
});
