/** Reconstruction metrics (PSNR, SSIM, temporal) against hand-computed values and torch; the PNG plot writer. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import * as T from '../src/index.js';
import {
  MetricsAccumulator,
  SsimComputer,
  gaussianTaps,
  mseFrame,
  psnrFrame,
  ssimFrame,
  temporalPairError,
  tensorToUint8Frames,
  videoMetrics,
} from '../src/metrics/metrics.js';
import { encodePng, renderLinePlot, writeLinePlotPng } from '../src/metrics/plot.js';
import { metricsAddon } from '../src/metrics/native_metrics.js';

function constFrame(h: number, w: number, v: number | [number, number, number]): Uint8Array {
  const f = new Uint8Array(h * w * 3);
  for (let i = 0; i < h * w; i++) for (let c = 0; c < 3; c++) f[i * 3 + c] = typeof v === 'number' ? v : v[c];
  return f;
}

/** Deterministic pseudo-random bytes (LCG), so torch sees exactly the same frames. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A textured original (gradients + noise) and a reconstruction that is the original plus bounded noise. */
function framePair(h: number, w: number, seed: number, noise: number): [Uint8Array, Uint8Array] {
  const rnd = lcg(seed);
  const o = new Uint8Array(h * w * 3);
  const r = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * w + x) * 3 + c;
        const base = 128 + 80 * Math.sin(x / (3 + c) + y / 5) + 40 * (rnd() - 0.5);
        o[i] = Math.max(0, Math.min(255, Math.round(base)));
        r[i] = Math.max(0, Math.min(255, Math.round(o[i]! + noise * (rnd() - 0.5))));
      }
    }
  }
  return [o, r];
}

/**
 * Direct (non-separable) SSIM: every 11x11 window summed explicitly with torch-style reflect indices. Shares no
 * code with the separable implementation, so agreement checks the filtering, the reflect rule and the crop.
 */
function bruteSsim(o: Uint8Array, r: Uint8Array, h: number, w: number, crop: boolean): number {
  const g = gaussianTaps(1.5);
  const R = 5;
  const refl = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  const c1 = (0.01 * 255) ** 2;
  const c2 = (0.03 * 255) ** 2;
  let total = 0;
  let count = 0;
  for (let c = 0; c < 3; c++) {
    for (let y = crop ? R : 0; y < (crop ? h - R : h); y++) {
      for (let x = crop ? R : 0; x < (crop ? w - R : w); x++) {
        let mx = 0, my = 0, mxx = 0, myy = 0, mxy = 0;
        for (let dy = -R; dy <= R; dy++) {
          for (let dx = -R; dx <= R; dx++) {
            const wt = g[dy + R]! * g[dx + R]!;
            const i = (refl(y + dy, h) * w + refl(x + dx, w)) * 3 + c;
            const a = o[i]!;
            const b = r[i]!;
            mx += wt * a;
            my += wt * b;
            mxx += wt * a * a;
            myy += wt * b * b;
            mxy += wt * a * b;
          }
        }
        const vx = Math.max(mxx - mx * mx, 0);
        const vy = Math.max(myy - my * my, 0);
        const cxy = mxy - mx * my;
        total += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
        count++;
      }
    }
  }
  return total / count;
}

describe('PSNR', () => {
  it('2x2 frame, one value off by 12: MSE = 144/12 = 12, PSNR = 10·log10(65025/12) = 37.33899 dB', () => {
    const o = constFrame(2, 2, 100);
    const r = o.slice();
    r[5] = 112;
    assert.equal(mseFrame(o, r), 12);
    // 65025 / 12 = 5418.75; ln(5.41875) / ln(10) = 1.689866 / 2.302585 = 0.733899, so 37.33899 dB.
    assert.ok(Math.abs(psnrFrame(o, r) - 37.33899) < 1e-5, String(psnrFrame(o, r)));
    assert.equal(psnrFrame(o, r), 10 * Math.log10(65025 / 12));
  });
  it('every value off by 255 gives 0 dB; identical frames give +Infinity', () => {
    assert.equal(psnrFrame(constFrame(3, 2, 0), constFrame(3, 2, 255)), 0);
    assert.equal(psnrFrame(constFrame(3, 2, 7), constFrame(3, 2, 7)), Infinity);
  });
  it('mean over frames leaves out infinite frames and counts them', () => {
    const acc = new MetricsAccumulator({ height: 2, width: 2, ssim: false });
    const o = constFrame(2, 2, 100);
    const r12 = o.slice();
    r12[5] = 112;
    const r1 = o.slice();
    r1[0] = 101; // MSE 1/12
    acc.add(o, r12);
    acc.add(o, o);
    acc.add(o, r1);
    const res = acc.result();
    assert.equal(res.frames, 3);
    assert.equal(res.psnr.infiniteFrames, 1);
    assert.equal(res.psnr.perFrame[1], Infinity);
    const expected = (10 * Math.log10(65025 / 12) + 10 * Math.log10(65025 * 12)) / 2;
    assert.ok(Math.abs(res.psnr.mean - expected) < 1e-12);
    assert.deepEqual(res.ssim.perFrame, []);
  });
  it('all frames identical: mean is +Infinity; no frames: NaN', () => {
    const acc = new MetricsAccumulator({ height: 2, width: 2, ssim: false });
    assert.ok(Number.isNaN(acc.result().psnr.mean));
    acc.add(constFrame(2, 2, 1), constFrame(2, 2, 1));
    assert.equal(acc.result().psnr.mean, Infinity);
    assert.equal(acc.result().psnr.infiniteFrames, 1);
  });
});

describe('SSIM', () => {
  it('identical frames give exactly 1 in both border modes', () => {
    const [o] = framePair(17, 19, 1, 0);
    assert.equal(ssimFrame(o, o, 17, 19), 1);
    assert.equal(ssimFrame(o, o, 17, 19, { border: 'crop' }), 1);
  });
  it('constant frames: only the luminance term is left, (2ab + C1)/(a² + b² + C1)', () => {
    // Variances and covariance are 0, so the contrast-structure term is C2/C2 = 1. C1 = (0.01·255)² = 6.5025.
    // a = 100, b = 110: (22000 + 6.5025)/(10000 + 12100 + 6.5025) = 22006.5025/22106.5025 = 1 − 100/22106.5025 = 0.99547644
    const v = ssimFrame(constFrame(12, 13, 100), constFrame(12, 13, 110), 12, 13);
    assert.ok(Math.abs(v - 22006.5025 / 22106.5025) < 1e-12, String(v));
    assert.ok(Math.abs(v - 0.99547644) < 1e-8);
    // Per channel, then averaged: channels (0 vs 255), (50 vs 50), (200 vs 100).
    const C1 = 6.5025;
    const lum = (a: number, b: number) => (2 * a * b + C1) / (a * a + b * b + C1);
    const v3 = ssimFrame(constFrame(11, 11, [0, 50, 200]), constFrame(11, 11, [255, 50, 100]), 11, 11, { border: 'crop' });
    assert.ok(Math.abs(v3 - (lum(0, 255) + 1 + lum(200, 100)) / 3) < 1e-12);
  });
  it('Gaussian taps are torchmetrics\' 11-tap σ = 1.5 window', () => {
    const g = gaussianTaps(1.5);
    assert.equal(g.length, 11);
    const raw = Array.from({ length: 11 }, (_, i) => Math.exp(-(((i - 5) / 1.5) ** 2) / 2));
    const s = raw.reduce((a, b) => a + b, 0);
    raw.forEach((v, i) => assert.ok(Math.abs(g[i]! - v / s) < 1e-15));
  });
  it('separable filtering equals a direct 11x11 window sum (reflect and crop, odd and small sizes)', () => {
    for (const [h, w, seed] of [[6, 7, 3], [16, 23, 4], [31, 12, 5]] as const) {
      const [o, r] = framePair(h, w, seed, 60);
      const a = ssimFrame(o, r, h, w);
      assert.ok(Math.abs(a - bruteSsim(o, r, h, w, false)) < 1e-12, `${h}x${w} reflect`);
      if (h > 10 && w > 10) assert.ok(Math.abs(ssimFrame(o, r, h, w, { border: 'crop' }) - bruteSsim(o, r, h, w, true)) < 1e-12, `${h}x${w} crop`);
    }
  });
  it('rejects frames too small for the window, and wrong buffer sizes', () => {
    assert.throws(() => new SsimComputer(5, 20), T.ShapeError);
    assert.throws(() => new SsimComputer(10, 20, { border: 'crop' }), T.ShapeError);
    assert.throws(() => ssimFrame(new Uint8Array(10), new Uint8Array(10), 6, 6), /6x6x3/);
  });

  const torchPy = '/usr/bin/python3';
  const hasTorch = spawnSync(torchPy, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  it('matches torch (torchmetrics\' _ssim_update re-typed with conv2d) and torch PSNR', { skip: hasTorch ? false : `${torchPy} with torch is not available` }, () => {
    // Written from torchmetrics' functional/image/ssim.py (_ssim_update) and utils.py (_gaussian): >= 1.4.2 averages
    // the whole map; <= 1.4.1 sliced [pad:-pad] first. Inputs go in as uint8 as in the reference trainer; clamp with
    // a float data_range promotes them to float32, which is the "f32" figure. "f64" repeats it in float64.
    const py = String.raw`
import json, sys
import numpy as np
import torch
import torch.nn.functional as F
path, n, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
raw = np.fromfile(path, dtype=np.uint8).reshape(2, n, h, w, 3)
orig = torch.from_numpy(raw[0]).permute(0, 3, 1, 2).contiguous()
recon = torch.from_numpy(raw[1]).permute(0, 3, 1, 2).contiguous()

def gaussian(ks, sigma, dtype):
    dist = torch.arange(start=(1 - ks) / 2, end=(1 + ks) / 2, step=1, dtype=dtype)
    gauss = torch.exp(-torch.pow(dist / sigma, 2) / 2)
    return (gauss / gauss.sum()).unsqueeze(dim=0)

def ssim(preds, target, crop, dtype):
    preds = torch.clamp(preds, min=0.0, max=255.0).to(dtype)
    target = torch.clamp(target, min=0.0, max=255.0).to(dtype)
    data_range = 255.0
    c1 = pow(0.01 * data_range, 2)
    c2 = pow(0.03 * data_range, 2)
    sigma = [1.5, 1.5]
    ks = [int(3.5 * s + 0.5) * 2 + 1 for s in sigma]
    pad_h = (ks[0] - 1) // 2
    pad_w = (ks[1] - 1) // 2
    channel = preds.size(1)
    preds = F.pad(preds, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    target = F.pad(target, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    kernel = torch.matmul(gaussian(ks[0], sigma[0], dtype).t(), gaussian(ks[1], sigma[1], dtype)).expand(channel, 1, ks[0], ks[1])
    input_list = torch.cat((preds, target, preds * preds, target * target, preds * target))
    outputs = F.conv2d(input_list, kernel, groups=channel)
    o = outputs.split(preds.shape[0])
    mu_pred_sq = o[0].pow(2)
    mu_target_sq = o[1].pow(2)
    mu_pred_target = o[0] * o[1]
    sigma_pred_sq = torch.clamp(o[2] - mu_pred_sq, min=0.0)
    sigma_target_sq = torch.clamp(o[3] - mu_target_sq, min=0.0)
    sigma_pred_target = o[4] - mu_pred_target
    upper = 2 * sigma_pred_target + c2
    lower = (sigma_pred_sq + sigma_target_sq) + c2
    full = ((2 * mu_pred_target + c1) * upper) / ((mu_pred_sq + mu_target_sq + c1) * lower)
    if crop:
        full = full[..., pad_h:-pad_h, pad_w:-pad_w]
    return full.reshape(full.shape[0], -1).mean(-1).tolist()

mse = (orig.double() - recon.double()).square().mean(dim=(1, 2, 3))
psnr = (10 * torch.log10(255.0 ** 2 / mse)).tolist()
print(json.dumps({
    "torch": torch.__version__,
    "psnr": psnr,
    "reflect_f64": ssim(orig, recon, False, torch.float64),
    "reflect_f32": ssim(orig, recon, False, torch.float32),
    "crop_f64": ssim(orig, recon, True, torch.float64),
    "crop_f32": ssim(orig, recon, True, torch.float32),
}))
`;
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-ssim-'));
    try {
      for (const [h, w, noise] of [[24, 31, 50], [13, 40, 200], [64, 48, 12]] as const) {
        const n = 3;
        const pairs = Array.from({ length: n }, (_, k) => framePair(h, w, 100 + k * 7 + h, noise));
        const buf = new Uint8Array(2 * n * h * w * 3);
        pairs.forEach(([o, r], k) => {
          buf.set(o, k * h * w * 3);
          buf.set(r, (n + k) * h * w * 3);
        });
        const file = join(dir, `frames-${h}x${w}.u8`);
        writeFileSync(file, buf);
        const res = spawnSync(torchPy, ['-c', py, file, String(n), String(h), String(w)], { encoding: 'utf8' });
        assert.equal(res.status, 0, res.stderr);
        const ref = JSON.parse(res.stdout) as Record<string, number[]>;
        const reflect = new SsimComputer(h, w);
        const crop = new SsimComputer(h, w, { border: 'crop' });
        pairs.forEach(([o, r], k) => {
          const a = reflect.compute(o, r);
          const b = crop.compute(o, r);
          const tag = `${h}x${w} frame ${k}`;
          assert.ok(Math.abs(a - ref.reflect_f64![k]!) < 1e-12, `${tag} reflect: ${a} vs torch f64 ${ref.reflect_f64![k]}`);
          assert.ok(Math.abs(a - ref.reflect_f32![k]!) < 2e-5, `${tag} reflect: ${a} vs torch f32 ${ref.reflect_f32![k]}`);
          assert.ok(Math.abs(b - ref.crop_f64![k]!) < 1e-12, `${tag} crop: ${b} vs torch f64 ${ref.crop_f64![k]}`);
          assert.ok(Math.abs(b - ref.crop_f32![k]!) < 2e-5, `${tag} crop: ${b} vs torch f32 ${ref.crop_f32![k]}`);
          assert.ok(Math.abs(psnrFrame(o, r) - ref.psnr![k]!) < 1e-10, `${tag} psnr`);
          // Border handling matters at these sizes, so the two conventions must really differ.
          assert.ok(Math.abs(a - b) > 1e-4, `${tag}: reflect and crop agree (${a}), test frames too uniform`);
        });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('temporal consistency', () => {
  it('hand case: orig 10→20, recon 12→25: |(25−12) − (20−10)| = 3', () => {
    assert.equal(temporalPairError(constFrame(2, 3, 10), constFrame(2, 3, 20), constFrame(2, 3, 12), constFrame(2, 3, 25)), 3);
  });
  it('a static error (constant colour shift) costs nothing; pairs never span clips', () => {
    const acc = new MetricsAccumulator({ height: 11, width: 11 });
    for (const v of [10, 40, 90]) acc.add(constFrame(11, 11, v), constFrame(11, 11, v + 5));
    acc.newClip();
    acc.add(constFrame(11, 11, 200), constFrame(11, 11, 100)); // would be |−100 − 105| = 205 if paired with the last
    acc.add(constFrame(11, 11, 200), constFrame(11, 11, 104));
    const res = acc.result();
    assert.deepEqual(res.temporal.perPair, [0, 0, 4]);
    assert.equal(res.temporal.mean, 4 / 3);
    assert.equal(res.frames, 5);
    assert.equal(res.ssim.perFrame.length, 5);
  });
  it('the accumulator copies frames, so callers may reuse one buffer', () => {
    const acc = new MetricsAccumulator({ height: 6, width: 6 });
    const o = constFrame(6, 6, 0);
    const r = constFrame(6, 6, 0);
    acc.add(o, r);
    o.fill(50);
    r.fill(60);
    acc.add(o, r);
    assert.deepEqual(acc.result().temporal.perPair, [10]);
  });
});

describe('tensor input', () => {
  it('NCTHW in [−1, 1] → uint8 frames: clamp, round((x + 1)·127.5), interleave RGB', () => {
    // [1, 3, 1, 1, 2]: pixel 0 = (−1, 0, 1), pixel 1 = (2, −3, 0.004)
    const x = T.tensor([-1, 2, 0, -3, 1, 0.004], [1, 3, 1, 1, 2]);
    const f = tensorToUint8Frames(x);
    assert.equal(f.length, 1);
    assert.equal(f[0]!.length, 1);
    // 0 → 127.5 → 128 (half up, like the reference's +0.5 then truncate); 0.004 → 128.01 → 128.
    assert.deepEqual(Array.from(f[0]![0]!), [0, 128, 255, 255, 0, 128]);
    assert.throws(() => tensorToUint8Frames(T.zeros([1, 4, 1, 2, 2])), T.ShapeError);
    assert.throws(() => tensorToUint8Frames(T.tensor([NaN, 0, 0], [1, 3, 1, 1, 1])), T.ValueError);
  });
  it('videoMetrics pools frames of all clips and keeps temporal pairs inside clips', () => {
    const N = 2, Tt = 3, H = 8, W = 9;
    const rnd = lcg(9);
    const a = new Float32Array(N * 3 * Tt * H * W).map(() => rnd() * 2 - 1);
    const b = a.map((v) => v + 0.05 * (rnd() - 0.5));
    const res = videoMetrics(T.tensor(a, [N, 3, Tt, H, W]), T.tensor(b, [N, 3, Tt, H, W]));
    assert.equal(res.frames, N * Tt);
    assert.equal(res.temporal.perPair.length, N * (Tt - 1));
    const fo = tensorToUint8Frames(T.tensor(a, [N, 3, Tt, H, W]));
    const fr = tensorToUint8Frames(T.tensor(b, [N, 3, Tt, H, W]));
    assert.equal(res.psnr.perFrame[Tt + 1], psnrFrame(fo[1]![1]!, fr[1]![1]!));
    assert.equal(res.ssim.perFrame[Tt + 1], ssimFrame(fo[1]![1]!, fr[1]![1]!, H, W));
    assert.equal(res.temporal.perPair[Tt - 1], temporalPairError(fo[1]![0]!, fo[1]![1]!, fr[1]![0]!, fr[1]![1]!));
    assert.throws(() => videoMetrics(T.zeros([1, 3, 2, 8, 8]), T.zeros([1, 3, 3, 8, 8])), T.ShapeError);
  });
});

// ------------------------------------------------------------------------------------------------------------
// PNG decoding, written independently of the encoder (own CRC table, all five filter types).

const crcTab = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const v of b) c = crcTab[(c ^ v) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function decodePng(png: Buffer): { width: number; height: number; rgb: Uint8Array; types: string[] } {
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let off = 8;
  const types: string[] = [];
  const idat: Buffer[] = [];
  let width = 0, height = 0;
  while (off < png.length) {
    const len = png.readUInt32BE(off);
    const type = png.toString('latin1', off + 4, off + 8);
    const data = png.subarray(off + 8, off + 8 + len);
    assert.equal(png.readUInt32BE(off + 8 + len), crc(png.subarray(off + 4, off + 8 + len)), `CRC of ${type}`);
    types.push(type);
    if (type === 'IHDR') {
      assert.equal(len, 13);
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.deepEqual([...data.subarray(8)], [8, 2, 0, 0, 0], 'bit depth 8, truecolour, deflate, filter 0, no interlace');
    } else if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  assert.equal(off, png.length);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 3;
  assert.equal(raw.length, (stride + 1) * height);
  const rgb = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const ft = raw[y * (stride + 1)]!;
    for (let i = 0; i < stride; i++) {
      const v = raw[y * (stride + 1) + 1 + i]!;
      const a = i >= 3 ? rgb[y * stride + i - 3]! : 0;
      const b = y > 0 ? rgb[(y - 1) * stride + i]! : 0;
      const c = i >= 3 && y > 0 ? rgb[(y - 1) * stride + i - 3]! : 0;
      const p = a + b - c;
      const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][ft];
      assert.ok(pred !== undefined, `filter type ${ft}`);
      rgb[y * stride + i] = (v + pred) & 0xff;
    }
  }
  return { width, height, rgb, types };
}

describe('PNG', () => {
  it('encodePng: signature, IHDR fields, CRCs, IDAT inflates to the right size and back to the pixels', () => {
    const w = 7, h = 5;
    const rnd = lcg(42);
    const rgb = new Uint8Array(w * h * 3).map(() => Math.floor(rnd() * 256));
    const png = encodePng(w, h, rgb);
    const d = decodePng(png);
    assert.deepEqual(d.types, ['IHDR', 'IDAT', 'IEND']);
    assert.equal(d.width, w);
    assert.equal(d.height, h);
    assert.deepEqual(d.rgb, rgb);
    assert.throws(() => encodePng(2, 2, new Uint8Array(11)), T.ValueError);
  });
  it('writeLinePlotPng writes a decodable image atomically (no temporary file left)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-plot-'));
    try {
      const path = join(dir, 'psnr.png');
      const values = Array.from({ length: 160 }, (_, i) => 30 + Math.sin(i / 9) - (i % 40) / 40);
      values[17] = Infinity;
      const opts = {
        title: 'PSNR per frame',
        xLabel: 'frame',
        yLabel: 'PSNR [dB]',
        series: [{ name: 'recon', values }, { name: 'baseline', values: values.map((v) => v - 1) }],
        verticalMarkers: [40, 80, 120],
        width: 640,
        height: 360,
      };
      writeLinePlotPng(path, opts);
      assert.deepEqual(readdirSync(dir), ['psnr.png']);
      const d = decodePng(readFileSync(path));
      assert.equal(d.width, 640);
      assert.equal(d.height, 360);
      assert.deepEqual(d.rgb, renderLinePlot(opts).rgb);
      // The first series colour (31, 119, 180) must appear: the line was drawn.
      let blue = 0;
      for (let i = 0; i < d.rgb.length; i += 3) if (d.rgb[i] === 31 && d.rgb[i + 1] === 119 && d.rgb[i + 2] === 180) blue++;
      assert.ok(blue > 200, `only ${blue} line pixels`);
      // Overwriting in place works and a failing write leaves nothing behind.
      writeLinePlotPng(path, { ...opts, title: 'again' });
      assert.throws(() => writeLinePlotPng(join(dir, 'missing', 'x.png'), opts));
      assert.deepEqual(readdirSync(dir), ['psnr.png']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- native kernels (native/src/metrics.cc) against the TypeScript reference ----------------------------------------

const addon = metricsAddon();
const noNative = addon ? false : 'the native addon has no metric kernels (npm run build:native)';
const C1 = (0.01 * 255) ** 2;
const C2 = (0.03 * 255) ** 2;

/** n textured frame pairs of one size, frame-major, and the pair before them. */
function block(h: number, w: number, n: number, seed: number): { o: Uint8Array; r: Uint8Array; po: Uint8Array; pr: Uint8Array } {
  const fb = h * w * 3;
  const o = new Uint8Array(n * fb);
  const r = new Uint8Array(n * fb);
  for (let t = 0; t < n; t++) {
    const [a, b] = framePair(h, w, seed + t, 30 + 10 * t);
    o.set(a, t * fb);
    r.set(b, t * fb);
  }
  const [po, pr] = framePair(h, w, seed + 100, 20);
  return { o, r, po, pr };
}

describe('native metric kernels', { skip: noNative }, () => {
  // The bound is exact equality, derived from the arithmetic: the kernels form every value in double with the same
  // operations in the same order as metrics.ts (taps and constants passed from JS, reductions serial in the same
  // order, no FMA contraction), and the PSNR / temporal sums are integers, exact in int64 and in double. Any
  // difference, in the last bit, is a bug (for instance a fused multiply-add), on AVX2 and AVX-512 alike.
  const sizes: [number, number][] = [[6, 7], [11, 13], [17, 23], [31, 45], [40, 33]];
  for (const border of ['reflect', 'crop'] as const) {
    it(`per-frame SSD, SSIM and temporal sums equal the reference bit for bit (${border}, odd and small sizes, 1 and 2 threads)`, () => {
      const taps = gaussianTaps(1.5);
      for (const [h, w] of sizes) {
        if (border === 'crop' && (h <= 10 || w <= 10)) continue;
        const n = 3;
        const fb = h * w * 3;
        const { o, r, po, pr } = block(h, w, n, h * 31 + w);
        const ssim = new SsimComputer(h, w, { border });
        for (const threads of [1, 2, 0]) {
          const out = addon!.metricsFrames(o, r, po, pr, n, h, w, taps, C1, C2, border === 'crop', true, threads);
          assert.equal(out.length, 3 * n);
          for (let t = 0; t < n; t++) {
            const of = o.subarray(t * fb, (t + 1) * fb);
            const rf = r.subarray(t * fb, (t + 1) * fb);
            const pof = t ? o.subarray((t - 1) * fb, t * fb) : po;
            const prf = t ? r.subarray((t - 1) * fb, t * fb) : pr;
            assert.equal(out[3 * t]! / fb, mseFrame(of, rf), `ssd ${h}x${w} frame ${t}`); // both divide the same integer sum by fb
            assert.ok(Object.is(out[3 * t + 1], ssim.compute(of, rf)), `ssim ${h}x${w} frame ${t}: ${out[3 * t + 1]} vs ${ssim.compute(of, rf)}`);
            assert.equal(out[3 * t + 2]! / fb, temporalPairError(pof, of, prf, rf), `temporal ${h}x${w} frame ${t}`);
          }
        }
        // without previous frames the first temporal sum is NaN; without SSIM every SSIM slot is
        const out = addon!.metricsFrames(o, r, null, null, n, h, w, taps, C1, C2, border === 'crop', false, 1);
        assert.ok(Number.isNaN(out[2]) && Number.isNaN(out[1]) && Number.isNaN(out[4]));
        assert.equal(out[5]! / fb, temporalPairError(o.subarray(0, fb), o.subarray(fb, 2 * fb), r.subarray(0, fb), r.subarray(fb, 2 * fb)));
      }
    });
  }

  it('constant and identical frames: SSD 0 (PSNR +Infinity), SSIM as the reference (exactly 1 when identical)', () => {
    const taps = gaussianTaps(1.5);
    for (const [a, b] of [[7, 7], [0, 255], [100, 103]] as const) {
      const o = constFrame(9, 14, a);
      const r = constFrame(9, 14, b);
      const out = addon!.metricsFrames(o, r, null, null, 1, 9, 14, taps, C1, C2, false, true, 1);
      assert.equal(out[0], (a - b) ** 2 * 9 * 14 * 3);
      assert.ok(Object.is(out[1], ssimFrame(o, r, 9, 14)));
      if (a === b) assert.equal(out[1], 1);
    }
    const acc = new MetricsAccumulator({ height: 9, width: 14 });
    assert.ok(acc.usesNative);
    acc.addFrames(constFrame(9, 14, 50), constFrame(9, 14, 50));
    assert.equal(acc.result().psnr.perFrame[0], Infinity);
    assert.equal(acc.result().psnr.infiniteFrames, 1);
  });

  it('the accumulator gives the same result() natively, asynchronously, in blocks, and with the TS reference', async () => {
    const h = 19, w = 27, fb = h * w * 3;
    const clips = [block(h, w, 5, 1), block(h, w, 4, 2)];
    const ref = new MetricsAccumulator({ height: h, width: w, native: false });
    assert.equal(ref.usesNative, false);
    for (const c of clips) {
      ref.newClip();
      for (let t = 0; t < c.o.length / fb; t++) ref.add(c.o.subarray(t * fb, (t + 1) * fb), c.r.subarray(t * fb, (t + 1) * fb));
    }
    const one = new MetricsAccumulator({ height: h, width: w });
    const blocks = new MetricsAccumulator({ height: h, width: w, threads: 2 });
    const asyncAcc = new MetricsAccumulator({ height: h, width: w, asyncThreads: 2 });
    const pending: Promise<void>[] = [];
    for (const c of clips) {
      one.newClip();
      blocks.newClip();
      asyncAcc.newClip();
      for (let t = 0; t < c.o.length / fb; t++) one.add(c.o.subarray(t * fb, (t + 1) * fb), c.r.subarray(t * fb, (t + 1) * fb));
      blocks.addFrames(c.o.subarray(0, 2 * fb), c.r.subarray(0, 2 * fb));
      blocks.addFrames(c.o.subarray(2 * fb), c.r.subarray(2 * fb));
      // the async form copies its input before returning: scribbling over the caller's buffers afterwards is harmless
      const o = c.o.slice(0, 3 * fb);
      const r = c.r.slice(0, 3 * fb);
      pending.push(asyncAcc.addFramesAsync(o, r));
      o.fill(0);
      r.fill(255);
      pending.push(asyncAcc.addFramesAsync(c.o.subarray(3 * fb), c.r.subarray(3 * fb)));
    }
    assert.throws(() => asyncAcc.result(), /still being scored/);
    await Promise.all(pending);
    await asyncAcc.settled();
    const want = ref.result();
    assert.equal(want.frames, 9);
    assert.equal(want.temporal.perPair.length, 7);
    assert.deepEqual(one.result(), want);
    assert.deepEqual(blocks.result(), want);
    assert.deepEqual(asyncAcc.result(), want);
  });

  it('rejects bad arguments before touching memory (sync and async alike)', async () => {
    const taps = gaussianTaps(1.5);
    const f = new Uint8Array(12 * 12 * 3);
    const g = new Uint8Array(12 * 12 * 3);
    type Args = Parameters<NonNullable<typeof addon>['metricsFrames']>;
    const good: Args = [f, g, null, null, 1, 12, 12, taps, C1, C2, false, true, 1];
    const bad: [number, unknown, RegExp][] = [
      [0, new Float32Array(432), /'orig' must be a Uint8Array/],
      [1, [1, 2, 3], /'recon' must be a Uint8Array/],
      [1, new Uint8Array(431), /'recon' has 431 bytes/],
      [0, new Uint8Array(433), /'orig' has 433 bytes/],
      [2, new Uint8Array(432), /both be Uint8Arrays or both null/],
      [4, 0, /'frames' must be >= 1/],
      [4, 2, /'orig' has 432 bytes, expected 2 frames/],
      [4, 1.5, /'frames' must be an integer/],
      [5, -1, /'height' must be >= 1/],
      [6, NaN, /'width' must be finite/],
      [5, 4, /'orig' has 432 bytes/],
      [7, new Float32Array(11), /'taps' must be a Float64Array/],
      [7, new Float64Array(10), /odd length/],
      [7, Float64Array.of(1, NaN, 1), /'taps' must be finite/],
      [8, '1', /'c1' must be a number/],
      [10, 1, /'crop' must be a boolean/],
      [12, 1000, /'threads' must be <= 256/],
      [12, -2, /'threads' must be >= 0/],
    ];
    for (const [i, v, re] of bad) {
      const a = [...good] as unknown[];
      a[i] = v;
      assert.throws(() => (addon!.metricsFrames as (...x: unknown[]) => unknown)(...a), re, `sync arg ${i}`);
      assert.throws(() => (addon!.metricsFramesAsync as (...x: unknown[]) => unknown)(...a), re, `async arg ${i}`);
    }
    assert.throws(() => (addon!.metricsFrames as (...x: unknown[]) => unknown)(f, g), /expected 13 arguments/);
    // frames too small for the window, in both border modes; mismatched previous frames
    const s = new Uint8Array(5 * 9 * 3);
    assert.throws(() => addon!.metricsFrames(s, s, null, null, 1, 5, 9, taps, C1, C2, false, true, 1), /too small for reflect padding/);
    const s2 = new Uint8Array(10 * 30 * 3);
    assert.throws(() => addon!.metricsFrames(s2, s2, null, null, 1, 10, 30, taps, C1, C2, true, true, 1), /no window inside/);
    assert.doesNotThrow(() => addon!.metricsFrames(s, s, null, null, 1, 5, 9, taps, C1, C2, false, false, 1)); // no SSIM: any size
    assert.throws(() => addon!.metricsFrames(f, g, new Uint8Array(5), new Uint8Array(5), 1, 12, 12, taps, C1, C2, false, true, 1), /previous frames have 5 and 5 bytes/);
    // the good call works, and resolves asynchronously to the same figures
    const sync = addon!.metricsFrames(...good);
    assert.deepEqual(await addon!.metricsFramesAsync(...good), sync);
    // the accumulator's block checks
    const acc = new MetricsAccumulator({ height: 12, width: 12 });
    assert.throws(() => acc.addFrames(f, new Uint8Array(10)), /original has 432 bytes, reconstruction 10/);
    await assert.rejects(acc.addFramesAsync(new Uint8Array(10), new Uint8Array(10)), /10 bytes are not whole 12x12x3 frames/);
    assert.throws(() => new MetricsAccumulator({ height: 12, width: 12, threads: -1 }), /threads must be an integer/);
  });
});
