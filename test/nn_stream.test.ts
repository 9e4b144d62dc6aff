/**
 * The src/nn options the Wan VAE is built on: Conv3d's 'valid' temporal padding (any stride; streamed, the frames no
 * complete window has used are carried), 'causal' streams whose first piece is shorter than the kernel's context,
 * marks in a FeatureCache, Conv2d frame by frame on (N, C, T, H, W) with [top, bottom, left, right] padding, and
 * RMSNorm3d with the `gamma` (C, 1, 1, 1) layout and F.normalize's eps. Each against a direct sum in double.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as ops from '../src/tensor/ops.js';
import { type Tensor, tensor, zeros } from '../src/tensor/tensor.js';
import { randn, Rng } from '../src/tensor/random.js';
import { Conv2d, Conv3d, RMSNorm3d, type FeatureCache, cachedFrames, featureCacheBytes } from '../src/nn/index.js';

const u = 2 ** -24;
const gamma = (k: number) => (k * u) / (1 - k * u);

function within(a: Float32Array, ref: ArrayLike<number>, bound: ArrayLike<number>, what: string): void {
  assert.equal(a.length, ref.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i]! - ref[i]!) <= bound[i]!)) assert.fail(`${what}[${i}]: ${a[i]} vs ${ref[i]} (bound ${bound[i]})`);
}

/**
 * Direct 3-D convolution of x (1, Ci, T, H, W) in double with explicit zero padding [front, back, top, bottom, left,
 * right]: the value and the sum of |terms| (bias included) of every output.
 */
function directConv(x: Tensor, w: Tensor, b: Tensor | null, pad: number[], stride: number[]): { ref: Float64Array; mag: Float64Array; shape: number[] } {
  const [, Ci, T, H, W] = x.shape as number[] as [number, number, number, number, number];
  const [Co, , kt, kh, kw] = w.shape as number[] as [number, number, number, number, number];
  const [f, bk, t, bt, l, r] = pad as [number, number, number, number, number, number];
  const [st, sh, sw] = stride as [number, number, number];
  const To = Math.floor((T + f + bk - kt) / st) + 1;
  const Ho = Math.floor((H + t + bt - kh) / sh) + 1;
  const Wo = Math.floor((W + l + r - kw) / sw) + 1;
  const xs = x.readSync();
  const ws = w.readSync();
  const bs = b ? b.readSync() : null;
  const ref = new Float64Array(Co * To * Ho * Wo);
  const mag = new Float64Array(ref.length);
  let o = 0;
  for (let co = 0; co < Co; co++)
    for (let to = 0; to < To; to++)
      for (let ho = 0; ho < Ho; ho++)
        for (let wo = 0; wo < Wo; wo++, o++) {
          let s = bs ? bs[co]! : 0;
          let m = Math.abs(s);
          for (let ci = 0; ci < Ci; ci++)
            for (let a = 0; a < kt; a++)
              for (let c = 0; c < kh; c++)
                for (let d = 0; d < kw; d++) {
                  const ti = to * st + a - f;
                  const hi = ho * sh + c - t;
                  const wi = wo * sw + d - l;
                  if (ti < 0 || ti >= T || hi < 0 || hi >= H || wi < 0 || wi >= W) continue;
                  const v = xs[((ci * T + ti) * H + hi) * W + wi]! * ws[(((co * Ci + ci) * kt + a) * kh + c) * kw + d]!;
                  s += v;
                  m += Math.abs(v);
                }
          ref[o] = s;
          mag[o] = m;
        }
  return { ref, mag, shape: [1, Co, To, Ho, Wo] };
}

/** Pushes x in pieces of the given frame counts through layer(piece, cache); the outputs along time. */
function streamed(x: Tensor, pieces: number[], layer: (p: Tensor, c: FeatureCache) => Tensor, cache: FeatureCache = new Map()): Tensor[] {
  const outs: Tensor[] = [];
  let t = 0;
  for (const n of pieces) {
    outs.push(layer(ops.contiguous(ops.slice(x, 2, t, t + n)), cache));
    t += n;
  }
  assert.equal(t, x.shape[2], 'pieces cover the clip');
  return outs;
}

describe('nn layers for streaming video VAEs', () => {
  it("Conv3d 'valid': windows every stride frames of the whole sequence, streamed in pieces of any size", () => {
    const c = new Conv3d(3, 2, [3, 1, 1], { temporalPadding: 'valid', stride: [2, 1, 1] });
    c.resetParameters(new Rng(1));
    c.cacheKey = 'down.';
    const x = randn([1, 3, 9, 2, 3], 2);
    const whole = c.forward(x);
    const d = directConv(x, c.weight.value, c.bias!.value, [0, 0, 0, 0, 0, 0], [2, 1, 1]);
    assert.deepEqual([...whole.shape], d.shape); // windows (0,1,2), (2,3,4), (4,5,6), (6,7,8)
    // 3 taps x 3 channels and the bias: at most 10 rounded additions / products per output
    const bound = Array.from(d.mag, (m) => gamma(10) * m);
    within(whole.readSync(), d.ref, bound, 'valid conv');
    for (const pieces of [
      [1, 2, 2, 2, 2],
      [2, 1, 4, 2],
      [9],
      [1, 1, 1, 1, 1, 1, 1, 1, 1],
    ]) {
      const cache: FeatureCache = new Map();
      const outs = streamed(x, pieces, (p, k) => c.forward(p, k), cache);
      // the frames carried: from the next window's start on (1 or 2 frames here), never more than kt - 1 + stride - 1
      const carried = cachedFrames(cache, 'down.')!;
      assert.ok(carried.shape[2]! >= 1 && carried.shape[2]! <= 3, `carried ${carried.shape[2]}`);
      for (const o of outs) assert.deepEqual([...o.shape].filter((_, i) => i !== 2), [1, 2, 2, 3]);
      within(ops.cat(outs, 2).readSync(), d.ref, bound, `valid conv streamed in ${pieces}`);
    }
    // a piece completing no window gives no frames (the first frame alone: the window needs 3)
    assert.equal(c.forward(ops.contiguous(ops.slice(x, 2, 0, 1)), new Map()).shape[2], 0);
    // without a cache, a clip shorter than the kernel gives no frames either
    assert.equal(c.forward(ops.contiguous(ops.slice(x, 2, 0, 2))).shape[2], 0);
  });

  it("Conv3d 'causal': a first piece shorter than the context is cached as it is, and stands in for the last zero frames", () => {
    const c = new Conv3d(2, 3, 3, { temporalPadding: 'causal' });
    c.resetParameters(new Rng(3));
    c.cacheKey = 'c.';
    const x = randn([1, 2, 6, 4, 3], 4);
    const d = directConv(x, c.weight.value, c.bias!.value, [2, 0, 1, 1, 1, 1], [1, 1, 1]);
    // 2 x 27 products and the bias, grouped in any order: gamma(55) of the sum of |terms|
    const bound = Array.from(d.mag, (m) => gamma(55) * m);
    within(c.forward(x).readSync(), d.ref, bound, 'causal whole');
    for (const pieces of [
      [1, 1, 4],
      [1, 5],
      [2, 1, 3],
    ]) {
      const cache: FeatureCache = new Map();
      const outs = streamed(x, pieces, (p, k) => c.forward(p, k), cache);
      assert.equal(cachedFrames(cache, 'c.')!.shape[2], 2, 'the last kt - 1 frames');
      within(ops.cat(outs, 2).readSync(), d.ref, bound, `causal streamed in ${pieces}`);
    }
    const cache: FeatureCache = new Map();
    c.forward(ops.contiguous(ops.slice(x, 2, 0, 1)), cache);
    assert.equal(cachedFrames(cache, 'c.')!.shape[2], 1, 'one frame seen, one frame cached (not padded with zeros)');
    assert.equal(featureCacheBytes(cache), 4 * 2 * 1 * 4 * 3);
  });

  it('FeatureCache marks: counted as no bytes; a conv reading a mark names the shared key', () => {
    const cache: FeatureCache = new Map();
    cache.set('up.', 'started');
    cache.set('a.', zeros([1, 2, 2, 3, 3]));
    assert.equal(featureCacheBytes(cache), 4 * 36);
    const c = new Conv3d(2, 2, 3, { temporalPadding: 'causal' });
    c.cacheKey = 'up.';
    c.resetParameters(new Rng(5));
    assert.throws(() => c.forward(randn([1, 2, 1, 3, 3], 6), cache), /entry "up." holds "started", not frames \(two layers share this cacheKey\)/);
    assert.throws(() => new Conv3d(2, 2, 3, { temporalPadding: 'same' as never }), /'zero', 'causal', 'chunk-causal' or 'valid'/);
  });

  it('Conv2d on (N, C, T, H, W) is the 2-D conv of every frame; [top, bottom, left, right] padding with stride 2', () => {
    const c = new Conv2d(3, 2, 3, { stride: 2, padding: [0, 1, 0, 1] }); // torch: ZeroPad2d((0, 1, 0, 1)) then stride 2
    c.resetParameters(new Rng(7));
    assert.deepEqual(c.padding, [0, 1, 0, 1]);
    const x = randn([1, 3, 2, 6, 6], 8);
    const y = c.forward(x);
    const w5 = ops.unsqueeze(c.weight.value, 2);
    const d = directConv(x, w5, c.bias!.value, [0, 0, 0, 1, 0, 1], [1, 2, 2]);
    assert.deepEqual([...y.shape], d.shape);
    assert.deepEqual([...y.shape], [1, 2, 2, 3, 3]);
    // 3 x 9 products and the bias: gamma(28) of the sum of |terms|
    within(y.readSync(), d.ref, Array.from(d.mag, (m) => gamma(28) * m), 'Conv2d per frame');
    // one frame as (N, C, H, W) gives that frame
    const f1 = c.forward(ops.contiguous(ops.squeeze(ops.slice(x, 2, 1, 2), 2)));
    assert.deepEqual([...f1.shape], [1, 2, 3, 3]);
    const frame1 = (a: ArrayLike<number>) => [0, 1].flatMap((co) => Array.from({ length: 9 }, (_, i) => a[co * 18 + 9 + i]!));
    within(f1.readSync(), frame1(d.ref), frame1(d.mag).map((m) => gamma(28) * m), 'Conv2d one frame');
    // the 2-value form is symmetric
    assert.deepEqual(new Conv2d(3, 2, 3, { padding: [1, 2] }).padding, [1, 1, 2, 2]);
    assert.throws(() => new Conv2d(3, 2, 3, { padding: [1, 2, 3] as never }), /padding must be 2 or 4 non-negative integers/);
    assert.throws(() => c.forward(randn([3, 6, 6], 9)), /input must be \(N, 3, H, W\) or \(N, 3, T, H, W\)/);
  });

  it("RMSNorm3d with the Wan VAE's layout: key gamma (C, 1, 1, 1), no bias, F.normalize's eps on the norm", () => {
    const C = 6;
    const n = new RMSNorm3d(C, 1e-12, { bias: false, scaleKey: 'gamma', trailingAxes: 3, epsOn: 'norm' });
    assert.deepEqual([...n.shapes().entries()], [['gamma', [C, 1, 1, 1]]]);
    assert.deepEqual([...new RMSNorm3d(C, 1e-12, { bias: false, scaleKey: 'gamma', trailingAxes: 2 }).shapes().entries()], [['gamma', [C, 1, 1]]]);
    n.resetParameters();
    assert.deepEqual([...n.weight.value.readSync()], Array(C).fill(1));
    const g = randn([C, 1, 1, 1], 10);
    n.weight.set(g);
    // one position all zeros: F.normalize maps it to 0 (x / max(||x||, eps))
    const xs = randn([1, C, 2, 3, 2], 11).readSync().slice();
    for (let c = 0; c < C; c++) xs[c * 12 + 5] = 0;
    const x = tensor(xs, [1, C, 2, 3, 2]);
    const y = n.forward(x).readSync();
    const gs = g.readSync();
    const ref = new Float64Array(xs.length);
    for (let p = 0; p < 12; p++) {
      let ss = 0;
      for (let c = 0; c < C; c++) ss += xs[c * 12 + p]! ** 2;
      const scale = Math.sqrt(C) / Math.max(Math.sqrt(ss), 1e-12);
      for (let c = 0; c < C; c++) ref[c * 12 + p] = xs[c * 12 + p]! * scale * gs[c]!;
    }
    // sum of squares (6 terms), the mean and rsqrt, two products: gamma(C) + a few u of the result
    within(y, ref, Array.from(ref, (v) => (gamma(C) + 6 * u) * Math.abs(v)), 'RMSNorm3d norm eps');
    for (let c = 0; c < C; c++) assert.equal(y[c * 12 + 5], 0);
    // the default layout is unchanged: weight and bias of (C), eps in the mean
    assert.deepEqual([...new RMSNorm3d(C).shapes().entries()], [
      ['weight', [C]],
      ['bias', [C]],
    ]);
    assert.throws(() => new RMSNorm3d(C, 1e-5, { epsOn: 'sum' as never }), /epsOn must be 'mean' or 'norm'/);
    assert.throws(() => new RMSNorm3d(C, 1e-5, { trailingAxes: 4 }), /trailingAxes must be 0 to 3/);
  });
});
