/**
 * LoRA on Linear and 1x1x1 Conv3d: adapter output equals merged-weight output, zero B is exactly the base, gradients
 * reach only the adapters and unfrozen parameters, merge/unmerge round trip, and applyLora on a small Wan model keeps
 * every base key.
 *
 * Float bounds: u = 2^-24 (f32 unit roundoff). A length-K dot product accumulated in f32 (any blocking or FMA order)
 * is within gamma_K = K u / (1 - K u) of the exact value relative to the sum of |terms|, so each bound below is
 * (sum of the rounding steps' gamma) x (the elementwise sum of |terms|), computed in double from the actual operands.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as ops from '../src/tensor/ops.js';
import { Tensor, tensor } from '../src/tensor/tensor.js';
import { randn, Rng } from '../src/tensor/random.js';
import { Linear, Conv3d, LayerNorm, Container, Module, LoraLinear, LoraConv3d, applyLora, loraStateDict, loadLoraStateDict, mergeLora, unmergeLora, loraLayers } from '../src/nn/index.js';
import { WanModel, parseWanConfig } from '../src/models/wan/index.js';

const u = 2 ** -24;
const gamma = (k: number) => (k * u) / (1 - k * u);

function initLinear(l: Linear, seed: number): void {
  l.resetParameters(new Rng(seed));
}

/** Sets B to random values so the adapter is not a no-op. */
function randomB(l: LoraLinear | LoraConv3d, seed: number): void {
  l.lora_B.weight.set(randn([...l.lora_B.weight.shape], seed, 0.3));
}

/** |x| |W|^T + s |x| |A|^T |B|^T + |b| per output element, in double: the magnitude the roundings are relative to. */
function magnitude(x: Float32Array, rows: number, W: Float32Array, A: Float32Array, B: Float32Array, b: Float32Array | null, I: number, O: number, r: number, s: number): Float64Array {
  const out = new Float64Array(rows * O);
  for (let n = 0; n < rows; n++) {
    const ax = new Float64Array(r);
    for (let k = 0; k < r; k++) for (let i = 0; i < I; i++) ax[k]! += Math.abs(x[n * I + i]!) * Math.abs(A[k * I + i]!);
    for (let o = 0; o < O; o++) {
      let m = b ? Math.abs(b[o]!) : 0;
      for (let i = 0; i < I; i++) m += Math.abs(x[n * I + i]!) * Math.abs(W[o * I + i]!);
      for (let k = 0; k < r; k++) m += Math.abs(s) * ax[k]! * Math.abs(B[o * r + k]!);
      out[n * O + o] = m;
    }
  }
  return out;
}

function assertWithin(a: Float32Array, b: ArrayLike<number>, bound: ArrayLike<number>, what: string): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= bound[i]!)) assert.fail(`${what}: element ${i} differs by ${d} > bound ${bound[i]} (${a[i]} vs ${b[i]})`);
  }
}

function assertBitExact(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) assert.fail(`${what}: element ${i}: ${a[i]} !== ${b[i]}`);
}

describe('LoRA on Linear', () => {
  const I = 24;
  const O = 20;
  const r = 4;
  const alpha = 8;
  const x = randn([3, 5, I], 11);

  it('keys: the base weight stays at weight/bias, adapters at lora_A.weight / lora_B.weight with peft shapes', () => {
    const base = new Linear(I, O);
    initLinear(base, 1);
    const l = new LoraLinear(base, { rank: r, alpha });
    assert.deepEqual([...l.shapes()], [
      ['weight', [O, I]],
      ['bias', [O]],
      ['lora_A.weight', [r, I]],
      ['lora_B.weight', [O, r]],
    ]);
    assert.equal(l.scale, alpha / r);
    assert.equal(l.weight.value, base.weight.value, 'the base tensor is taken over, not copied');
  });

  it('a zero-initialised B leaves the output bit-exact', () => {
    const base = new Linear(I, O);
    initLinear(base, 2);
    const y0 = base.forward(x).readSync();
    const l = new LoraLinear(base, { rank: r, alpha, seed: 5 });
    assert.ok(l.lora_B.weight.value.readSync().every((v) => v === 0));
    assert.ok(l.lora_A.weight.value.readSync().some((v) => v !== 0));
    assertBitExact(l.forward(x).readSync(), y0, 'zero-B LoRA');
  });

  it('A is kaiming_uniform(a = sqrt(5)) as peft: inside +-1/sqrt(in), spread over it', () => {
    const l = new LoraLinear(new Linear(256, 64), { rank: 16 });
    const a = l.lora_A.weight.value.readSync();
    const bound = 1 / Math.sqrt(256);
    assert.ok(a.every((v) => Math.abs(v) <= bound));
    assert.ok(Math.max(...a.map(Math.abs)) > 0.95 * bound);
  });

  it('the output with the adapter equals the output with merged weights', () => {
    const base = new Linear(I, O);
    initLinear(base, 3);
    const yBase = base.forward(x).readSync();
    const l = new LoraLinear(base, { rank: r, alpha, seed: 6 });
    randomB(l, 7);
    const yA = l.forward(x).readSync();
    const W = l.weight.value.readSync();
    const A = l.lora_A.weight.value.readSync();
    const B = l.lora_B.weight.value.readSync();
    const b = l.bias!.value.readSync();
    l.merge();
    assert.ok(l.merged);
    const yM = l.forward(x).readSync();
    assert.ok(yA.some((v, i) => Math.abs(v - yBase[i]!) > 1e-3), 'the adapter changes the output');
    // Adapter path: x A^T (I terms), (.) B^T (r terms), times s, plus base (I terms + bias), one add. Merged path:
    // B A (r terms), times s, W + (.), then x W'^T (I terms) + bias. Summing the gammas of both paths bounds the gap.
    const m = magnitude(x.readSync(), 15, W, A, B, b, I, O, r, l.scale);
    const g = 2 * gamma(I + 1) + 2 * gamma(r) + 4 * u;
    assertWithin(yM, yA, Array.from(m, (v) => g * v * 1.01), 'merged vs adapter');
    let num = 0;
    let den = 0;
    for (let i = 0; i < yA.length; i++) {
      num += (yM[i]! - yA[i]!) ** 2;
      den += yA[i]! ** 2;
    }
    assert.ok(Math.sqrt(num / den) <= 1e-5, `relative difference ${Math.sqrt(num / den)}`);
  });

  it('merge then unmerge restores the weights (one rounding of W + d and of (W + d) - d)', () => {
    const base = new Linear(I, O);
    initLinear(base, 4);
    const l = new LoraLinear(base, { rank: r, alpha, seed: 8 });
    randomB(l, 9);
    const W0 = l.weight.value.readSync();
    const bias0 = l.bias!.value.readSync();
    l.merge();
    const Wm = l.weight.value.readSync();
    assert.ok(Wm.some((v, i) => v !== W0[i]), 'merge changed the weight');
    assert.throws(() => l.merge(), /already merged/);
    l.unmerge();
    assert.throws(() => l.unmerge(), /not merged/);
    const W1 = l.weight.value.readSync();
    // d = s BA is computed identically (same operands, negated scale is exact) both times, so
    // W1 = ((W + d)(1 + e1) - d)(1 + e2): |W1 - W| <= u (|W + d| + |W|) (1 + u) <= u (2|W| + |d|) (1 + u).
    const bound = Array.from(W0, (w, i) => u * (2 * Math.abs(w) + Math.abs(Wm[i]! - w) * 1.001) * 1.001);
    assertWithin(W1, W0, bound, 'unmerged weight');
    assertBitExact(l.bias!.value.readSync(), bias0, 'bias untouched');
    assert.equal(l.weight.value.requiresGrad, false, 'the merged base weight stays frozen');
  });

  it('rejects dropout other than 0, bad ranks, and alpha that is not finite', () => {
    const base = new Linear(8, 8);
    assert.throws(() => new LoraLinear(base, { rank: 2, dropout: 0.1 }), /dropout 0\.1 is not supported/);
    assert.throws(() => new LoraLinear(base, { rank: 0 }), /rank must be a positive integer/);
    assert.throws(() => new LoraLinear(base, { rank: 9 }), /exceeds/);
    assert.throws(() => new LoraLinear(base, { rank: 2, alpha: NaN }), /alpha/);
  });
});

describe('LoRA gradients', () => {
  /** Linear -> LayerNorm -> Linear in a keyed container. */
  class Net extends Module {
    readonly fc1: Linear;
    readonly norm: LayerNorm;
    readonly fc2: Linear;
    constructor() {
      super();
      this.fc1 = this.module('fc1', new Linear(12, 16));
      this.norm = this.module('norm', new LayerNorm(16));
      this.fc2 = this.module('fc2', new Linear(16, 6));
    }
    forward(x: Tensor): Tensor {
      return this.fc2.forward(this.norm.forward(this.fc1.forward(x)));
    }
  }

  it('reach only A, B and the unfrozen parameters; A gets a gradient once B is non-zero', () => {
    const net = new Net();
    net.fc1.resetParameters(new Rng(1));
    net.fc2.resetParameters(new Rng(2));
    net.norm.resetParameters();
    const wrapped = applyLora(net, /^fc\d$/, { rank: 3, alpha: 6, seed: 4 });
    assert.deepEqual(wrapped, ['fc1', 'fc2']);
    assert.ok(net.fc1 instanceof LoraLinear && net.fc2 instanceof LoraLinear, 'the parent fields point at the wrappers');
    assert.deepEqual(net.unfreeze(/^norm\./), ['norm.weight', 'norm.bias']);
    const trainable = net.namedTrainableParams().map(([k]) => k);
    assert.deepEqual(trainable, ['fc1.lora_A.weight', 'fc1.lora_B.weight', 'norm.weight', 'norm.bias', 'fc2.lora_A.weight', 'fc2.lora_B.weight']);
    randomB(net.fc1 as LoraLinear, 5);
    const x = randn([4, 12], 6);
    const loss = ops.sum(ops.square(net.forward(x)));
    loss.backward();
    for (const [k, p] of net.namedParams()) {
      const g = p.value.grad;
      if (trainable.includes(k)) {
        assert.ok(g, `${k} has a gradient`);
        // fc2's A has B = 0 downstream of it, so its gradient is exactly zero; every other trainable one is not.
        if (k === 'fc2.lora_A.weight') assert.ok(g.readSync().every((v) => v === 0), `${k} is zero while B is zero`);
        else assert.ok(g.readSync().some((v) => v !== 0), `${k} has a non-zero gradient`);
      } else {
        assert.equal(g, null, `${k} is frozen and gets no gradient`);
        assert.equal(p.value.requiresGrad, false, `${k} does not require grad`);
      }
    }
  });

  it('dL/dB = s g^T (x A^T) and dL/dA = s (g B)^T x, with g = dL/dy, against double precision', () => {
    const [N, I, O, R] = [5, 10, 7, 2];
    const base = new Linear(I, O);
    base.resetParameters(new Rng(3));
    const l = new LoraLinear(base, { rank: R, alpha: 3, seed: 7 });
    randomB(l, 8);
    const x = randn([N, I], 9);
    const t = randn([N, O], 10);
    const y = l.forward(x);
    ops.sum(ops.square(ops.sub(y, t))).backward();
    const gA = l.lora_A.weight.value.grad!.readSync();
    const gB = l.lora_B.weight.value.grad!.readSync();
    const [xs, ys, ts, A, B] = [x, y, t, l.lora_A.weight.value, l.lora_B.weight.value].map((v) => v.readSync()) as Float32Array[];
    const s = l.scale;
    const g = Float64Array.from(ys!, (v, i) => 2 * (v - ts![i]!));
    const h = new Float64Array(N * R);
    const hm = new Float64Array(N * R);
    for (let n = 0; n < N; n++)
      for (let k = 0; k < R; k++)
        for (let i = 0; i < I; i++) {
          h[n * R + k]! += xs![n * I + i]! * A![k * I + i]!;
          hm[n * R + k]! += Math.abs(xs![n * I + i]! * A![k * I + i]!);
        }
    const refB = new Float64Array(O * R);
    const magB = new Float64Array(O * R);
    for (let o = 0; o < O; o++)
      for (let k = 0; k < R; k++)
        for (let n = 0; n < N; n++) {
          refB[o * R + k]! += s * g[n * O + o]! * h[n * R + k]!;
          magB[o * R + k]! += Math.abs(s * g[n * O + o]!) * hm[n * R + k]!;
        }
    const refA = new Float64Array(R * I);
    const magA = new Float64Array(R * I);
    for (let k = 0; k < R; k++)
      for (let i = 0; i < I; i++)
        for (let n = 0; n < N; n++)
          for (let o = 0; o < O; o++) {
            refA[k * I + i]! += s * g[n * O + o]! * B![o * R + k]! * xs![n * I + i]!;
            magA[k * I + i]! += Math.abs(s * g[n * O + o]! * B![o * R + k]! * xs![n * I + i]!);
          }
    // The f32 autograd path: g = 2 (y - t) (two roundings), times s (one), an O-term GEMM (g B) or the I-term x A^T,
    // then the N-term GEMM into the gradient: at most gamma(N + I + O + 4) relative to the sum of |terms|.
    const gm = gamma(N + I + O + 4);
    assertWithin(gB, refB, Array.from(magB, (v) => gm * v * 1.01 + 1e-38), 'dL/dB');
    assertWithin(gA, refA, Array.from(magA, (v) => gm * v * 1.01 + 1e-38), 'dL/dA');
  });
});

describe('LoRA on a 1x1x1 Conv3d', () => {
  const Ci = 12;
  const Co = 10;
  const x = randn([1, Ci, 3, 4, 5], 21);
  const make = (seed: number) => {
    const c = new Conv3d(Ci, Co, 1, { temporalPadding: 'causal' });
    c.resetParameters(new Rng(seed));
    return c;
  };

  it('keys and shapes, zero B bit-exact, adapter equals merged, merge/unmerge restores', () => {
    const base = make(1);
    const y0 = base.forward(x).readSync();
    const l = new LoraConv3d(base, { rank: 3, alpha: 5, seed: 2 });
    assert.deepEqual([...l.shapes()], [
      ['weight', [Co, Ci, 1, 1, 1]],
      ['bias', [Co]],
      ['lora_A.weight', [3, Ci, 1, 1, 1]],
      ['lora_B.weight', [Co, 3, 1, 1, 1]],
    ]);
    assertBitExact(l.forward(x).readSync(), y0, 'zero-B conv LoRA');
    randomB(l, 3);
    const yA = l.forward(x).readSync();
    const W = l.weight.value.readSync();
    const A = l.lora_A.weight.value.readSync();
    const B = l.lora_B.weight.value.readSync();
    const b = l.bias!.value.readSync();
    l.merge();
    const yM = l.forward(x).readSync();
    // Per voxel a 1x1x1 conv is a linear over channels: the Linear bound applies with x laid out (voxels, Ci).
    const P = 3 * 4 * 5;
    const xs = x.readSync();
    const xt = new Float32Array(P * Ci);
    for (let c = 0; c < Ci; c++) for (let p = 0; p < P; p++) xt[p * Ci + c] = xs[c * P + p]!;
    const m = magnitude(xt, P, W, A, B, b, Ci, Co, 3, l.scale);
    const g = 2 * gamma(Ci + 1) + 2 * gamma(3) + 4 * u;
    const bound = new Float64Array(Co * P);
    for (let o = 0; o < Co; o++) for (let p = 0; p < P; p++) bound[o * P + p] = g * m[p * Co + o]! * 1.01;
    assertWithin(yM, yA, bound, 'merged conv vs adapter');
    const Wm = l.weight.value.readSync();
    l.unmerge();
    const W1 = l.weight.value.readSync();
    assertWithin(W1, W, Array.from(W, (w, i) => u * (2 * Math.abs(w) + Math.abs(Wm[i]! - w) * 1.001) * 1.001), 'unmerged conv weight');
  });

  it('refuses a conv that is not 1x1x1', () => {
    assert.throws(() => new LoraConv3d(new Conv3d(4, 4, 3), { rank: 2 }), /only 1x1x1 convs/);
    const holder = new Container();
    holder.add('c', new Conv3d(4, 4, [1, 3, 3]));
    assert.throws(() => applyLora(holder, /c/, { rank: 2 }), /"c" is a 1x3x3 conv/);
  });
});

describe('applyLora on a small Wan model', () => {
  const cfg = parseWanConfig({ model_type: 't2v', patch_size: [1, 2, 2], text_len: 6, in_dim: 4, dim: 32, ffn_dim: 48, freq_dim: 16, text_dim: 12, out_dim: 4, num_heads: 2, num_layers: 2 });
  const ATTN = /^blocks\.\d+\.(self_attn|cross_attn)\.(q|k|v|o)$/;
  const x = randn([1, 4, 2, 4, 4], 31);
  const ctx = [randn([5, 12], 32)];
  const t = [500];

  it('keeps every base key and shape, adds only lora_A/lora_B keys, zero B changes nothing, and the adapters are live', () => {
    const m = new WanModel(cfg);
    m.initRandom(1, 0.1);
    const before = m.shapes();
    const y0 = m.forward(x, t, ctx).readSync();
    const wrapped = applyLora(m, ATTN, { rank: 4, alpha: 4, seed: 3 });
    assert.equal(wrapped.length, 2 * 2 * 4);
    const after = m.shapes();
    for (const [k, s] of before) assert.deepEqual(after.get(k), s, `base key ${k}`);
    const added = [...after.keys()].filter((k) => !before.has(k));
    assert.deepEqual(added.sort(), wrapped.flatMap((p) => [`${p}.lora_A.weight`, `${p}.lora_B.weight`]).sort());
    assert.equal(m.get('blocks.1.cross_attn.v').constructor, LoraLinear);
    assert.equal(m.blocks[1]!.cross_attn.v, m.get('blocks.1.cross_attn.v'), 'the block uses the wrapper');
    assertBitExact(m.forward(x, t, ctx).readSync(), y0, 'Wan with zero-B adapters');
    // Trainable: the adapters only.
    assert.deepEqual(m.namedTrainableParams().map(([k]) => k).sort(), added.sort());
    // The adapter state round-trips, and non-zero adapters change the output (they are on the forward path).
    const sd = loraStateDict(m);
    assert.deepEqual([...sd.keys()].sort(), added.sort());
    const rng = new Rng(9);
    const fresh = new Map([...sd].map(([k, v]) => [k, randn([...v.shape], rng, 0.2)]));
    loadLoraStateDict(m, fresh);
    const y1 = m.forward(x, t, ctx).readSync();
    assert.ok(y1.some((v, i) => Math.abs(v - y0[i]!) > 1e-4), 'adapters change the output');
    // Merged: the same output within rounding, and base keys (now merged weights) are still the only non-LoRA keys.
    mergeLora(m);
    const y2 = m.forward(x, t, ctx).readSync();
    let num = 0;
    let den = 0;
    for (let i = 0; i < y1.length; i++) {
      num += (y2[i]! - y1[i]!) ** 2;
      den += y1[i]! ** 2;
    }
    // 2 blocks of attention with 32-wide contractions: each merge rounding is a few u relative; the model amplifies
    // it by its depth (a handful of layers), so 1e-5 relative is over 100 u of slack.
    assert.ok(Math.sqrt(num / den) <= 1e-5, `merged vs adapters: ${Math.sqrt(num / den)}`);
    unmergeLora(m);
    assert.equal(loraLayers(m).length, wrapped.length);
    assert.throws(() => applyLora(m, /^nothing$/, { rank: 2 }), /no Linear or Conv3d layer matches/);
    // Re-applying does not wrap the adapters or the wrappers again.
    assert.throws(() => applyLora(m, /lora_/, { rank: 1 }), /no Linear or Conv3d layer matches/);
    assert.throws(() => loadLoraStateDict(m, new Map([['x', tensor([1])]])), /does not match/);
  });
});
