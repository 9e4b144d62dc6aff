/**
 * The layer library: Module paths (get / replace / errors), freezing by predicate, buffers in the state dict, the
 * layers against direct formulas, and init schemes against torch.nn.init's bounds and statistics.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as ops from '../src/tensor/ops.js';
import { Tensor, noGrad, tensor, zeros } from '../src/tensor/tensor.js';
import { randn, Rng } from '../src/tensor/random.js';
import { layerNorm } from '../src/tensor/nn_ops.js';
import {
  Module,
  Linear,
  Embedding,
  Conv3d,
  Conv2d,
  LayerNorm,
  RMSNorm,
  Mlp,
  MultiHeadAttention,
  Container,
  Sequential,
  kaimingUniform,
  kaimingUniformBound,
  xavierUniform,
  xavierUniformBound,
  xavierNormal,
  xavierNormalStd,
  normalInit,
  zerosInit,
  resetParameters,
  defaultBiasBound,
  type FeatureCache,
} from '../src/nn/index.js';
import { StateDictError, ValueError } from '../src/errors.js';
import { torchPython } from './helpers.js';

const u = 2 ** -24;
const gamma = (k: number) => (k * u) / (1 - k * u);

class WithBuffers extends Module {
  readonly fc: Linear;
  constructor() {
    super();
    this.fc = this.module('fc', new Linear(3, 2));
    this.buffer('running', [2], { init: tensor([1, 2]) });
    this.buffer('table', [4], { persistent: false, init: zeros([4]) });
  }
  get running(): Tensor {
    return this.ownBuffers.get('running')!.value;
  }
}

function tiny(): Container {
  const root = new Container();
  const blocks = root.add('blocks', new Container());
  for (let i = 0; i < 2; i++) blocks.append(new Mlp(4, 8, 4, ops.silu, { names: ['0', '2'] }));
  root.add('head', new Linear(4, 2, { bias: false }));
  resetParameters(root, 1);
  return root;
}

describe('Module paths', () => {
  it('get() by dotted path, childModules readable, getParam()', () => {
    const m = tiny();
    assert.equal(m.get(''), m);
    assert.ok(m.get('blocks.1.2') instanceof Linear);
    assert.deepEqual([...m.childModules.keys()], ['blocks', 'head']);
    assert.deepEqual(m.getParam('blocks.0.0.weight').shape, [8, 4]);
    assert.throws(() => m.get('blocks.7'), (e: unknown) => e instanceof ValueError && /blocks has no child "7" \(children: 0, 1\)/.test(e.message));
    assert.throws(() => m.get('head.x'), /head has no child "x" \(it has no children\)/);
    assert.throws(() => m.getParam('head.bias'), /no parameter "head.bias"/);
  });

  it('replace() swaps a submodule in place: keys keep their paths and the parent uses the new one', () => {
    const m = tiny();
    const blk = m.get('blocks.0') as Mlp;
    const x = randn([3, 4], 2);
    const before = blk.forward(x).readSync();
    const keys = [...m.shapes().keys()];
    const fresh = new Linear(8, 4);
    fresh.resetParameters(new Rng(99));
    const old = m.replace('blocks.0.2', fresh);
    assert.equal(old.constructor, Linear);
    assert.equal(blk.fc2, fresh, 'the field that held the old module now holds the new one');
    assert.equal(m.get('blocks.0.2'), fresh);
    assert.deepEqual([...m.shapes().keys()], keys, 'same keys in the same order');
    assert.ok(blk.forward(x).readSync().some((v, i) => v !== before[i]), 'forward runs the replacement');
    // Arrays holding the old module are updated too (Container.items).
    const blocks = m.get('blocks') as Container;
    const nb = new Mlp(4, 8, 4, ops.silu, { names: ['0', '2'] });
    m.replace('blocks.1', nb);
    assert.equal(blocks.items[1], nb);
    assert.throws(() => m.replace('blocks.5', nb), /replace: no submodule "blocks.5"/);
    assert.throws(() => m.replace('nope.x', nb), /replace: no submodule "nope.x": \(root\) has no child "nope"/);
    assert.throws(() => m.replace('', nb), /not the root/);
  });

  it('rejects duplicate and dotted member names', () => {
    const c = new Container();
    c.add('a', new Linear(1, 1));
    assert.throws(() => c.add('a', new Linear(1, 1)), /already registered/);
    assert.throws(() => c.add('a.b', new Linear(1, 1)), /contain no '\.'/);
  });
});

describe('freezing by predicate', () => {
  it('freeze/unfreeze by function or RegExp; parameters() and namedTrainableParams() follow; requiresGrad too', () => {
    const m = tiny();
    const all = m.namedParams().map(([k]) => k);
    assert.deepEqual(m.freeze((k) => k.startsWith('blocks.')), all.filter((k) => k.startsWith('blocks.')));
    assert.deepEqual(m.namedTrainableParams().map(([k]) => k), ['head.weight']);
    assert.equal(m.parameters().length, 1);
    assert.equal(m.getParam('blocks.0.0.weight').value.requiresGrad, false);
    assert.deepEqual(m.unfreeze(/\.bias$/), all.filter((k) => k.endsWith('.bias')));
    assert.deepEqual(
      m.namedTrainableParams().map(([k]) => k),
      all.filter((k) => k.endsWith('.bias') || k === 'head.weight'),
    );
    assert.equal(m.getParam('blocks.1.2.bias').value.requiresGrad, true);
    // Shape-based rules get the slot: freeze every matrix.
    m.unfreeze();
    m.freeze((_, p) => p.shape.length > 1);
    assert.ok(m.namedTrainableParams().every(([, t]) => t.ndim === 1));
    // Gradients reach exactly the trainable ones.
    const x = randn([2, 4], 5);
    let h = x;
    for (const b of (m.get('blocks') as Container<Mlp>).items) h = b.forward(h);
    ops.sum((m.get('head') as Linear).forward(h)).backward();
    for (const [k, p] of m.namedParams()) assert.equal(p.value.grad !== null, p.trainable, k);
    // A frozen slot stays frozen when a new value is loaded.
    m.getParam('head.weight').set(zeros([2, 4]));
    assert.equal(m.getParam('head.weight').value.requiresGrad, false);
  });
});

describe('buffers', () => {
  it('persistent buffers are in the state dict and load with it; non-persistent ones are not; no gradient', () => {
    const m = new WithBuffers();
    resetParameters(m, 3);
    assert.deepEqual([...m.stateDict().keys()], ['running', 'fc.weight', 'fc.bias']);
    assert.deepEqual(m.namedBuffers().map(([k, b]) => [k, b.persistent]), [
      ['running', true],
      ['table', false],
    ]);
    assert.deepEqual(m.namedParams().map(([k]) => k), ['fc.weight', 'fc.bias'], 'buffers are not parameters');
    const sd = new Map(m.stateDict());
    sd.set('running', tensor([7, 8]));
    const m2 = new WithBuffers();
    m2.loadStateDict(sd);
    assert.deepEqual([...m2.running.readSync()], [7, 8]);
    assert.equal(m2.running.requiresGrad, false);
    sd.delete('running');
    assert.throws(() => new WithBuffers().loadStateDict(sd), (e: unknown) => e instanceof StateDictError && /1 missing: running/.test(e.message));
    sd.set('running', tensor([7, 8]));
    sd.set('table', zeros([4]));
    assert.throws(() => new WithBuffers().loadStateDict(sd), /1 unexpected: table/);
  });
});

/** Max |a - b| / bound over elements must be <= 1. */
function within(a: Float32Array, ref: ArrayLike<number>, bound: ArrayLike<number>, what: string): void {
  for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i]! - ref[i]!) <= bound[i]!)) assert.fail(`${what}[${i}]: ${a[i]} vs ${ref[i]} (bound ${bound[i]})`);
}

describe('layers', () => {
  it('Linear with and without bias equals x W^T + b (derived bound)', () => {
    for (const bias of [true, false]) {
      const l = new Linear(6, 5, { bias });
      l.resetParameters(new Rng(1));
      assert.deepEqual([...l.shapes().keys()], bias ? ['weight', 'bias'] : ['weight']);
      const x = randn([4, 6], 2);
      const [xs, W] = [x.readSync(), l.weight.value.readSync()];
      const b = bias ? l.bias!.value.readSync() : null;
      const ref = new Float64Array(20);
      const mag = new Float64Array(20);
      for (let n = 0; n < 4; n++)
        for (let o = 0; o < 5; o++) {
          let s = b ? b[o]! : 0;
          let m = Math.abs(s);
          for (let i = 0; i < 6; i++) {
            s += xs[n * 6 + i]! * W[o * 6 + i]!;
            m += Math.abs(xs[n * 6 + i]! * W[o * 6 + i]!);
          }
          ref[n * 5 + o] = s;
          mag[n * 5 + o] = m;
        }
      within(l.forward(x).readSync(), ref, Array.from(mag, (m) => gamma(8) * m), `Linear bias=${bias}`);
    }
  });

  it('Embedding picks rows of its weight by id', () => {
    const e = new Embedding(5, 3);
    e.resetParameters(new Rng(4));
    const W = e.weight.value.readSync();
    const y = e.forward(tensor([4, 0, 4, 2], [2, 2])).readSync();
    assert.deepEqual([...y], [4, 0, 4, 2].flatMap((i) => [...W.subarray(i * 3, i * 3 + 3)]));
    assert.throws(() => e.forward(tensor([5])), /outside the vocabulary/);
  });

  it('LayerNorm (affine or not) and RMSNorm match their formulas', () => {
    const x = randn([3, 8], 6);
    const plain = new LayerNorm(8, 1e-5, { affine: false });
    assert.deepEqual([...plain.shapes().keys()], []);
    assert.deepEqual([...plain.forward(x).readSync()], [...layerNorm(x, null, null, 1e-5).readSync()]);
    const rms = new RMSNorm(8, 1e-6);
    rms.weight.set(randn([8], 7));
    const w = rms.weight.value.readSync();
    const xs = x.readSync();
    const ref = new Float64Array(24);
    for (let n = 0; n < 3; n++) {
      let ss = 0;
      for (let i = 0; i < 8; i++) ss += xs[n * 8 + i]! ** 2;
      const r = 1 / Math.sqrt(ss / 8 + 1e-6);
      for (let i = 0; i < 8; i++) ref[n * 8 + i] = xs[n * 8 + i]! * r * w[i]!;
    }
    // sum of squares (8 terms), rsqrt, two products: gamma(8) + a few u of the result.
    within(rms.forward(x).readSync(), ref, Array.from(ref, (v) => (gamma(8) + 6 * u) * Math.abs(v) + 1e-30), 'RMSNorm');
  });

  it('Conv3d causal streaming in pieces equals the whole clip; chunk-causal chunks are causal across chunks', () => {
    const c = new Conv3d(2, 3, 3, { temporalPadding: 'causal' });
    c.resetParameters(new Rng(8));
    c.cacheKey = 'c.';
    const x = randn([1, 2, 6, 4, 4], 9);
    const whole = c.forward(x).readSync();
    const cache: FeatureCache = new Map();
    const parts = [ops.slice(x, 2, 0, 2), ops.slice(x, 2, 2, 3), ops.slice(x, 2, 3, 6)].map((p) => c.forward(ops.contiguous(p), cache));
    const streamed = ops.cat(parts, 2).readSync();
    // The same terms per output (2 x 27 products and the bias); the GEMM may group them differently for another
    // frame count, so the bound is gamma(55) x sum |terms|, the sum computed as the conv of |x| with |W| plus |b|.
    const absConv = new Conv3d(2, 3, 3, { temporalPadding: 'causal' });
    absConv.weight.set(ops.abs(c.weight.value));
    absConv.bias!.set(ops.abs(c.bias!.value));
    const mag = absConv.forward(ops.abs(x)).readSync();
    within(streamed, whole, Array.from(mag, (m) => 2 * gamma(55) * m * 1.01), 'causal streaming');
    const fresh = c.forward(ops.contiguous(ops.slice(x, 2, 3, 6))).readSync();
    assert.ok(parts[2]!.readSync().some((v, i) => v !== fresh[i]), 'the cache carried context');
    const cc = new Conv3d(2, 3, 3, { temporalPadding: 'chunk-causal', chunk: 2 });
    cc.resetParameters(new Rng(10));
    // Inference (no grad): chunk by chunk, so earlier chunks' outputs cannot depend on later frames at all.
    const y = noGrad(() => cc.forward(x)).readSync();
    // Changing the last chunk's frames leaves the earlier chunks' outputs unchanged (causal across chunks)...
    const x2 = ops.cat([ops.slice(x, 2, 0, 4), randn([1, 2, 2, 4, 4], 11)], 2);
    const y2 = noGrad(() => cc.forward(x2)).readSync();
    for (let co = 0; co < 3; co++) {
      const a = y.subarray(co * 6 * 16, co * 6 * 16 + 4 * 16);
      const b = y2.subarray(co * 6 * 16, co * 6 * 16 + 4 * 16);
      assert.deepEqual([...a], [...b], 'earlier chunks do not see later ones');
    }
    // The training path (one conv over the clip minus the chunk-boundary terms) computes the same function: within
    // gamma(2 x 27 x 2 + 2) of the whole-clip |terms| (the conv of |x| with |W|, zero padded, plus |b|), twice.
    const yT = cc.forward(x).readSync();
    const absZero = new Conv3d(2, 3, 3);
    absZero.weight.set(ops.abs(cc.weight.value));
    absZero.bias!.set(ops.abs(cc.bias!.value));
    const magZ = absZero.forward(ops.abs(x)).readSync();
    within(yT, y, Array.from(magZ, (m) => 2 * gamma(110) * m * 1.01), 'chunk-causal training vs inference path');
    // ...and inside a chunk it is bidirectional: frame 2 (first of chunk 2) sees frame 3.
    const x3 = ops.cat([ops.slice(x, 2, 0, 3), randn([1, 2, 1, 4, 4], 12), ops.slice(x, 2, 4, 6)], 2);
    const y3 = cc.forward(x3).readSync();
    assert.ok(y3.subarray(2 * 16, 3 * 16).some((v, i) => v !== y[2 * 16 + i]));
    assert.throws(() => new Conv3d(2, 3, 3, { temporalPadding: 'chunk-causal' }), /needs a positive integer chunk/);
    assert.throws(() => new Conv3d(2, 3, 3, { temporalPadding: 'x' as never }), /temporalPadding must be/);
  });

  it('Conv2d equals the direct sum (3x3, same padding)', () => {
    const c = new Conv2d(2, 3, 3);
    c.resetParameters(new Rng(13));
    const x = randn([1, 2, 5, 4], 14);
    const [xs, W, b] = [x.readSync(), c.weight.value.readSync(), c.bias!.value.readSync()];
    const ref = new Float64Array(3 * 20);
    const mag = new Float64Array(3 * 20);
    for (let o = 0; o < 3; o++)
      for (let i = 0; i < 5; i++)
        for (let j = 0; j < 4; j++) {
          let s = b[o]!;
          let m = Math.abs(s);
          for (let ci = 0; ci < 2; ci++)
            for (let di = 0; di < 3; di++)
              for (let dj = 0; dj < 3; dj++) {
                const ii = i + di - 1;
                const jj = j + dj - 1;
                if (ii < 0 || ii >= 5 || jj < 0 || jj >= 4) continue;
                const t = xs[ci * 20 + ii * 4 + jj]! * W[((o * 2 + ci) * 3 + di) * 3 + dj]!;
                s += t;
                m += Math.abs(t);
              }
          ref[o * 20 + i * 4 + j] = s;
          mag[o * 20 + i * 4 + j] = m;
        }
    within(c.forward(x).readSync(), ref, Array.from(mag, (m) => gamma(20) * m), 'Conv2d');
  });

  it('MultiHeadAttention equals softmax(q k^T / sqrt(d)) v per head, in double', () => {
    const D = 8;
    const H = 2;
    const a = new MultiHeadAttention(D, H, { qkNormEps: null });
    resetParameters(a, 15);
    assert.deepEqual([...a.shapes().keys()], ['q.weight', 'q.bias', 'k.weight', 'k.bias', 'v.weight', 'v.bias', 'o.weight', 'o.bias']);
    const x = randn([1, 3, D], 16);
    const ctx = randn([1, 4, D], 17);
    const lin = (l: Linear, t: Tensor) => {
      const [W, b, xs] = [l.weight.value.readSync(), l.bias!.value.readSync(), t.readSync()];
      const L = t.shape[1]!;
      const out = new Float64Array(L * D);
      for (let n = 0; n < L; n++) for (let o = 0; o < D; o++) {
        let s = b[o]!;
        for (let i = 0; i < D; i++) s += xs[n * D + i]! * W[o * D + i]!;
        out[n * D + o] = s;
      }
      return out;
    };
    const q = lin(a.q, x);
    const k = lin(a.k, ctx);
    const v = lin(a.v, ctx);
    const d = D / H;
    const att = new Float64Array(3 * D);
    for (let h = 0; h < H; h++)
      for (let i = 0; i < 3; i++) {
        const sc = [0, 1, 2, 3].map((j) => {
          let s = 0;
          for (let e = 0; e < d; e++) s += q[i * D + h * d + e]! * k[j * D + h * d + e]!;
          return s / Math.sqrt(d);
        });
        const mx = Math.max(...sc);
        const w = sc.map((s) => Math.exp(s - mx));
        const z = w.reduce((p, c) => p + c, 0);
        for (let e = 0; e < d; e++) att[i * D + h * d + e] = w.reduce((p, c, j) => p + (c / z) * v[j * D + h * d + e]!, 0);
      }
    const [Wo, bo] = [a.o.weight.value.readSync(), a.o.bias!.value.readSync()];
    const ref = new Float64Array(3 * D);
    for (let n = 0; n < 3; n++) for (let o = 0; o < D; o++) {
      let s = bo[o]!;
      for (let i = 0; i < D; i++) s += att[n * D + i]! * Wo[o * D + i]!;
      ref[n * D + o] = s;
    }
    const y = a.forward(x, ctx).readSync();
    // Values are O(1) through three 8-term contractions, a softmax (exp: a few ulp) and a 4-term sum: the f32 result
    // is within ~100 u of the O(1) magnitudes; 1e-5 absolute is a 2^24 / 1e5 ~ 170 u allowance.
    within(y, ref, Array.from(ref, () => 1e-5), 'MultiHeadAttention');
  });

  it('Sequential runs its items in order and keys them 0, 1, ...', () => {
    const s = new Sequential(new Linear(3, 4), new LayerNorm(4), new Linear(4, 2));
    resetParameters(s, 18);
    assert.deepEqual([...s.childModules.keys()], ['0', '1', '2']);
    const x = randn([2, 3], 19);
    const manual = (s.at(2) as Linear).forward((s.at(1) as LayerNorm).forward((s.at(0) as Linear).forward(x)));
    assert.deepEqual([...s.forward(x).readSync()], [...manual.readSync()]);
    assert.throws(() => s.at(3), /out of range/);
  });
});

describe('init schemes', () => {
  const stats = (d: Float32Array) => {
    let s = 0;
    let ss = 0;
    let mx = 0;
    for (const v of d) {
      s += v;
      ss += v * v;
      mx = Math.max(mx, Math.abs(v));
    }
    const mean = s / d.length;
    return { mean, std: Math.sqrt(ss / d.length - mean * mean), maxAbs: mx };
  };

  it('PyTorch default for Linear/Conv: weight and bias uniform in +-1/sqrt(fan_in), deterministic from the seed', () => {
    const c = new Conv3d(16, 32, 3);
    c.resetParameters(new Rng(1));
    const fanIn = 16 * 27;
    assert.ok(Math.abs(kaimingUniformBound([32, 16, 3, 3, 3]) - 1 / Math.sqrt(fanIn)) < 1e-15);
    assert.equal(defaultBiasBound([32, 16, 3, 3, 3]), 1 / Math.sqrt(fanIn));
    const w = stats(c.weight.value.readSync());
    const n = 32 * fanIn;
    const b = 1 / Math.sqrt(fanIn);
    assert.ok(w.maxAbs <= b && w.maxAbs > b * (1 - 30 / n), `max |w| ${w.maxAbs} vs bound ${b}`);
    // uniform(-b, b): std b / sqrt(3); the sample std's relative spread is ~ sqrt(0.2 / n), allow 6 of it.
    assert.ok(Math.abs(w.std / (b / Math.sqrt(3)) - 1) < 6 * Math.sqrt(0.2 / n), `std ${w.std}`);
    assert.ok(c.bias!.value.readSync().every((v) => Math.abs(v) <= b));
    const c2 = new Conv3d(16, 32, 3);
    c2.resetParameters(new Rng(1));
    assert.deepEqual([...c2.weight.value.readSync()], [...c.weight.value.readSync()]);
  });

  it('xavier uniform / normal, normal(std), zeros: bounds and statistics', () => {
    const shape = [64, 128, 3];
    const n = 64 * 128 * 3;
    const xb = xavierUniformBound(shape);
    assert.ok(Math.abs(xb - Math.sqrt(6 / (128 * 3 + 64 * 3))) < 1e-15);
    const xu = stats(xavierUniform(shape, 2).readSync());
    assert.ok(xu.maxAbs <= xb && xu.maxAbs > xb * (1 - 30 / n));
    const xs = xavierNormalStd(shape, 2);
    assert.ok(Math.abs(xs - 2 * Math.sqrt(2 / (128 * 3 + 64 * 3))) < 1e-15);
    const xn = stats(xavierNormal(shape, 3, 2).readSync());
    // sample std of n normals: relative spread 1 / sqrt(2n); sample mean: std / sqrt(n). Six of each.
    assert.ok(Math.abs(xn.std / xs - 1) < 6 / Math.sqrt(2 * n), `xavier normal std ${xn.std} vs ${xs}`);
    assert.ok(Math.abs(xn.mean) < 6 * xs / Math.sqrt(n));
    const nn = stats(normalInit([n], 0.02, 4).readSync());
    assert.ok(Math.abs(nn.std / 0.02 - 1) < 6 / Math.sqrt(2 * n));
    assert.ok(zerosInit([3, 4]).readSync().every((v) => v === 0));
    assert.throws(() => xavierUniform([5], 1), /2 or more dimensions/);
    const k0 = stats(kaimingUniform([256, 64], 5, 0).readSync());
    assert.ok(k0.maxAbs <= Math.sqrt(2) * Math.sqrt(3 / 64));
  });

  const torchOk = existsSync(torchPython) && spawnSync(torchPython, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 }).status === 0;
  it('the bounds and standard deviations are torch.nn.init\'s (live torch)', { skip: torchOk ? false : `torch not importable by ${torchPython}` }, () => {
    // torch draws large tensors with each scheme; its empirical max |w| and std must sit at our formulas' values.
    const py = `
import json, math, torch
from torch import nn
torch.manual_seed(0)
out = {}
lin = nn.Linear(300, 200)
out['linear_w_max'] = lin.weight.abs().max().item(); out['linear_b_max'] = lin.bias.abs().max().item()
conv = nn.Conv3d(16, 64, 3)
out['conv_w_max'] = conv.weight.abs().max().item(); out['conv_w_std'] = conv.weight.std().item()
w = torch.empty(64, 128, 3); nn.init.xavier_uniform_(w); out['xu_max'] = w.abs().max().item()
w = torch.empty(256, 512, 3); nn.init.xavier_normal_(w, gain=2.0); out['xn_std'] = w.std().item()
w = torch.empty(16, 300); nn.init.kaiming_uniform_(w, a=math.sqrt(5)); out['lora_a_max'] = w.abs().max().item()
print(json.dumps(out))
`;
    const r = spawnSync(torchPython, ['-c', py], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const t = JSON.parse(r.stdout) as Record<string, number>;
    const near = (got: number, bound: number, n: number, what: string) =>
      assert.ok(got <= bound * (1 + 1e-6) && got > bound * (1 - 30 / n), `${what}: torch ${got} vs our bound ${bound}`);
    near(t.linear_w_max!, kaimingUniformBound([200, 300]), 60000, 'Linear weight');
    near(t.linear_b_max!, defaultBiasBound([200, 300]), 200, 'Linear bias');
    near(t.conv_w_max!, kaimingUniformBound([64, 16, 3, 3, 3]), 64 * 16 * 27, 'Conv3d weight');
    near(t.xu_max!, xavierUniformBound([64, 128, 3]), 64 * 128 * 3, 'xavier uniform');
    near(t.lora_a_max!, kaimingUniformBound([16, 300]), 4800, 'kaiming_uniform(a = sqrt(5))');
    const nConv = 64 * 16 * 27;
    assert.ok(Math.abs(t.conv_w_std! / (kaimingUniformBound([64, 16, 3, 3, 3]) / Math.sqrt(3)) - 1) < 6 * Math.sqrt(0.2 / nConv));
    const nXn = 256 * 512 * 3;
    assert.ok(Math.abs(t.xn_std! / xavierNormalStd([256, 512, 3], 2) - 1) < 6 / Math.sqrt(2 * nXn), `xavier normal std ${t.xn_std}`);
  });
});
