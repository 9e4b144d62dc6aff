/**
 * Dtypes (issue #17): bf16 / f16 weights stay in their dtype and are widened inside the kernels, int32 token ids, the
 * conversion kernels (native against reference), checkpoints keep their dtype through load and save.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../src/index.js';
import { withBackend, type Backend } from '../src/backend/index.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { openWeights } from '../src/io/weights.js';
import { loadTorchStateDict } from '../src/io/torch_checkpoint.js';
import { configFromReference } from '../src/models/dcaev/config.js';
import { DCAEV } from '../src/models/dcaev/model.js';
import { Tensor, fromHostArray, intTensor, tensor } from '../src/tensor/tensor.js';
import { WIDEN_BLOCK_BYTES, linear, matmul } from '../src/tensor/ops.js';
import { embedding } from '../src/tensor/nn_ops.js';
import { Rng } from '../src/tensor/random.js';
import { fixturePath, relErr, skipUnlessFixture, testBackends, torchPython } from './helpers.js';

/** Unit roundoff of float32. */
const U = 2 ** -24;

function randTensor(shape: number[], seed: number, scale = 1): Tensor {
  const r = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = scale * r.normal();
  return tensor(d, shape);
}

/**
 * Two float32 evaluations of the same dot products (length k) in different summation orders each lie within
 * gamma_k * sum|a_i b_i| of the exact value (gamma_k = k u / (1 - k u), Higham 3.1), so they differ by at most twice
 * that; `absdot` holds sum|a_i b_i| per output element.
 */
function assertWithinDotBound(got: Float32Array, want: Float32Array, absdot: Float32Array, k: number, what: string): void {
  const gamma = (k * U) / (1 - k * U);
  assert.equal(got.length, want.length);
  for (let i = 0; i < got.length; i++) {
    const bound = 2 * gamma * absdot[i]! + 2 * U * Math.abs(want[i]!);
    const d = Math.abs(got[i]! - want[i]!);
    if (!(d <= bound)) assert.fail(`${what}: element ${i}: ${got[i]} vs ${want[i]} (diff ${d}, bound ${bound})`);
  }
}

/** sum over k of |x[r,k]| |w[o,k]| for linear (x: rows x I, w: O x I). */
function absLinear(x: Tensor, w: Tensor): Float32Array {
  return linear(x.abs(), w.abs()).readSync();
}

for (const { name, backend, skip } of testBackends()) {
  describe(`dtypes on the ${name} backend`, { skip }, () => {
    const run = <R>(fn: () => R): R => withBackend(backend as Backend, fn);

    it('conversion kernels: exact widening of every bf16 / f16 pattern, round-to-nearest-even narrowing', () => {
      run(() => {
        const B = backend as Backend;
        const all = new Uint16Array(65536).map((_, i) => i);
        for (const kind of ['bf16', 'f16'] as const) {
          const got = new Float32Array(all.length);
          B.widen(kind, all, got);
          const want = new Float32Array(all.length);
          T.referenceBackend.widen(kind, all, want);
          for (let i = 0; i < all.length; i++) {
            // independent check: the value from the format's definition
            let v: number;
            if (kind === 'bf16') v = new Float32Array(new Uint32Array([i << 16]).buffer)[0]!;
            else {
              const e = (i >> 10) & 31;
              const m = i & 1023;
              v = (i & 0x8000 ? -1 : 1) * (e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15));
            }
            if (Number.isNaN(v)) assert.ok(Number.isNaN(got[i]!) && Number.isNaN(want[i]!), `${kind} ${i} NaN`);
            else if (!Object.is(got[i], v) || !Object.is(want[i], v)) assert.fail(`${kind} pattern ${i}: native ${got[i]}, reference ${want[i]}, exact ${v}`);
          }
        }
        // narrowing: ties go to even, NaN stays NaN, and native == reference on random bit patterns
        const x = Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8 + 2 ** -20), 3.4e38, NaN, -0, 1e-40);
        const h = new Uint16Array(x.length);
        B.narrowBf16(x, h);
        const back = new Float32Array(x.length);
        B.widen('bf16', h, back);
        assert.deepEqual([...back.slice(0, 3)], [1, 1 + 2 ** -6, -(1 + 2 ** -7)]);
        assert.equal(back[3], Infinity); // 3.4e38 rounds up past the largest bf16
        assert.ok(Number.isNaN(back[4]!));
        assert.ok(Object.is(back[5], -0));
        const rnd = new Uint32Array(100003);
        const r = new Rng(5);
        for (let i = 0; i < rnd.length; i++) rnd[i] = Math.floor(r.uniform() * 2 ** 32) >>> 0;
        const f = new Float32Array(rnd.buffer);
        const a = new Uint16Array(f.length);
        const b = new Uint16Array(f.length);
        B.narrowBf16(f, a);
        T.referenceBackend.narrowBf16(f, b);
        assert.deepEqual(a, b);
        // argument validation
        assert.throws(() => B.widen('bf16', new Uint16Array(3), new Float32Array(2)), RangeError);
        assert.throws(() => B.widen('bf16', new Float32Array(2) as unknown as Uint16Array, new Float32Array(2)), TypeError);
        assert.throws(() => B.widen('f8' as 'bf16', new Uint16Array(2), new Float32Array(2)), TypeError);
        assert.throws(() => B.narrowBf16(new Float32Array(2), new Uint16Array(1)), RangeError);
        assert.throws(() => B.narrowBf16(new Float32Array(2), new Int32Array(2) as unknown as Uint16Array), TypeError);
      });
    });

    it('linearBf16 (few rows on a bf16 weight, widened in registers) against the definition, and linear uses it', () => {
      run(() => {
        const B = backend as Backend;
        for (const [rows, O, I] of [[1, 7, 5], [3, 33, 37], [5, 9, 64], [10, 64, 100]] as const) {
          const wr = randTensor([O, I], 11 + I, 0.1).to('bf16');
          const wbits = new Uint16Array(O * I);
          B.narrowBf16(wr.to('f32').readSync(), wbits); // exact: the values are bf16 already
          const w64 = wr.to('f32').readSync();
          const x = randTensor([rows, I], 12 + I).readSync();
          const prior = randTensor([rows, O], 13 + I).readSync();
          for (const acc of [false, true]) {
            const out = prior.slice();
            B.linearBf16(x, wbits, rows, O, I, out, acc);
            // the definition in float64; each float32 evaluation of a length-I dot product lies within gamma_I
            // sum|x w| of the exact value, plus one rounding of the accumulation
            const want = new Float32Array(rows * O);
            const absdot = new Float32Array(rows * O);
            for (let r = 0; r < rows; r++)
              for (let o = 0; o < O; o++) {
                let t = 0;
                let a = 0;
                for (let i = 0; i < I; i++) {
                  t += x[r * I + i]! * w64[o * I + i]!;
                  a += Math.abs(x[r * I + i]! * w64[o * I + i]!);
                }
                want[r * O + o] = (acc ? prior[r * O + o]! : 0) + t;
                absdot[r * O + o] = a + (acc ? Math.abs(prior[r * O + o]!) : 0);
              }
            assertWithinDotBound(out, want, absdot, I + 1, `linearBf16 ${rows}x${O}x${I} accumulate=${acc}`);
          }
        }
        // a big weight and few rows: ops.linear takes this path, within the dot bound of the f32 linear
        const I = 256;
        const O = Math.floor(WIDEN_BLOCK_BYTES / 4 / I) + 5;
        const wh = randTensor([O, I], 21, 0.05).to('bf16');
        const x = randTensor([4, I], 22);
        const bias = randTensor([O], 23);
        const want = linear(x, wh.to('f32'), bias).readSync();
        assertWithinDotBound(linear(x, wh, bias).readSync(), want, absLinear(x, wh.to('f32')), I + 1, 'linear on a big bf16 weight, 4 rows');
        // argument validation before any memory is touched
        assert.throws(() => B.linearBf16(new Float32Array(5), new Uint16Array(6), 2, 2, 3, new Float32Array(4), false), RangeError);
        assert.throws(() => B.linearBf16(new Float32Array(6), new Uint16Array(5), 2, 2, 3, new Float32Array(4), false), RangeError);
        assert.throws(() => B.linearBf16(new Float32Array(6), new Uint16Array(6), 2, 2, 3, new Float32Array(3), false), RangeError);
        assert.throws(() => B.linearBf16(new Float32Array(6), new Float32Array(6) as unknown as Uint16Array, 2, 2, 3, new Float32Array(4), false), TypeError);
        assert.throws(() => B.linearBf16(new Float32Array(6), new Uint16Array(6), -1, 2, 3, new Float32Array(4), false), RangeError);
      });
    });

    for (const half of ['bf16', 'f16'] as const) {
      it(`${half} linear / matmul equal f32 ones on the ${half}-rounded weights, in blocks, with input gradients`, () => {
        run(() => {
          // O * I * 4 bytes > WIDEN_BLOCK_BYTES: the weight is widened in more than one block
          const I = 256;
          const O = Math.floor(WIDEN_BLOCK_BYTES / 4 / I) + 37;
          const w32 = randTensor([O, I], 1, 0.05);
          const wh = w32.to(half);
          assert.equal(wh.dtype, half);
          const wr = wh.to('f32'); // the rounded weights, exactly
          const bias = randTensor([O], 2).to(half);
          const x = randTensor([3, I], 3).requiresGrad_();
          const x2 = x.detach().clone().requiresGrad_();
          const y = linear(x, wh, bias);
          const yr = linear(x2, wr, bias.to('f32'));
          assert.equal(y.dtype, 'f32');
          assertWithinDotBound(y.readSync(), yr.readSync(), absLinear(x.detach(), wr), I, `${half} linear`);
          // small weights take the one-block path: the same GEMM on the same values
          const ws = wh.slice(0, 0, 5).contiguous();
          assert.equal(ws.dtype, half);
          assert.deepEqual(linear(x.detach(), ws).readSync(), linear(x.detach(), ws.to('f32')).readSync());
          // gradient w.r.t. the input (a LoRA on a frozen half-precision base): g @ W, summed over weight blocks
          const g = randTensor([3, O], 4);
          y.backward(g);
          yr.backward(g);
          const absg = matmul(g.abs(), wr.abs()).readSync();
          assertWithinDotBound(x.grad!.readSync(), x2.grad!.readSync(), absg, O, `${half} linear input gradient`);
          assert.equal(wh.grad, null);
          // matmul with a half-precision right operand (K rows widened a block at a time)
          const a = randTensor([2, 3, O], 6).requiresGrad_();
          const a2 = a.detach().clone().requiresGrad_();
          const m = matmul(a, wh);
          const mr = matmul(a2, wr);
          assertWithinDotBound(m.readSync(), mr.readSync(), matmul(a.detach().abs(), wr.abs()).readSync(), O, `${half} matmul`);
          const gm = randTensor([2, 3, I], 7);
          m.backward(gm);
          mr.backward(gm);
          assertWithinDotBound(a.grad!.readSync(), a2.grad!.readSync(), linear(gm.abs(), wr.abs()).readSync(), I, `${half} matmul input gradient`);
        });
      });
    }

    it('bf16 conv3d with a big weight (output channels in blocks) equals f32 conv3d on the rounded weight, with input and bias gradients', () => {
      run(() => {
        // 256 x 160 x 27 float32 = 4.4 MB > WIDEN_BLOCK_BYTES: more than one block of output channels
        const [O, C] = [256, 160];
        assert.ok(O * C * 27 * 4 > WIDEN_BLOCK_BYTES);
        const wh = randTensor([O, C, 3, 3, 3], 21, 0.03).to('bf16');
        const wr = wh.to('f32');
        const b = randTensor([O], 22).requiresGrad_();
        const b2 = b.detach().clone().requiresGrad_();
        const x = randTensor([1, C, 2, 3, 3], 23).requiresGrad_();
        const x2 = x.detach().clone().requiresGrad_();
        const opts = { padding: 1 };
        const y = T.conv3d(x, wh, b, opts);
        const yr = T.conv3d(x2, wr, b2, opts);
        const K = C * 27;
        assertWithinDotBound(y.readSync(), yr.readSync(), T.conv3d(x.detach().abs(), wr.abs(), b.detach().abs(), opts).readSync(), K, 'bf16 conv3d');
        const g = randTensor(y.shape as number[], 24);
        y.backward(g);
        yr.backward(g);
        // gx sums over the O output channels and the 27 taps
        const gxBound = new Float32Array(x.size);
        {
          // sum over o and taps of |g| |w| for each input element: the input gradient of sum(|g| * conv3d(x, |w|))
          const xa = x.detach().clone().requiresGrad_();
          T.conv3d(xa, wr.abs(), null, opts).backward(g.abs());
          gxBound.set(xa.grad!.readSync());
        }
        assertWithinDotBound(x.grad!.readSync(), x2.grad!.readSync(), gxBound, O * 27, 'bf16 conv3d input gradient');
        const gbd = b.grad!.readSync();
        const gbr = b2.grad!.readSync();
        // each is a sum of the same 18 values (N * To * Ho * Wo) in some order: within 2 gamma_18 sum|g| of each other
        assertWithinDotBound(gbd, gbr, T.sum(g.abs(), [0, 2, 3, 4]).readSync(), 18, 'bias gradient');
        assert.equal(wh.grad, null);
      });
    });

    it('ops without a half-precision kernel widen small inputs; i32 data is refused where it makes no sense', () => {
      run(() => {
        const w = tensor([0.5, -2, 3]).to('bf16');
        assert.deepEqual(T.add(w, 1).toArray(), [1.5, -1, 4]);
        assert.deepEqual(T.mul(tensor([1, 1, 1]), w).toArray(), [0.5, -2, 3]);
        const ids = intTensor(Int32Array.of(1, 2));
        assert.throws(() => linear(tensor([1, 2], [1, 2]), ids.reshape(1, 2)), T.DTypeError);
        assert.throws(() => T.parameter(w), /cannot be trainable/);
        assert.throws(() => embedding(tensor([1]).to('bf16'), randTensor([3, 2], 1)), /ids must be i32/);
      });
    });

    it('host transfers on bf16 / f16 / i32 tensors: readSync, readInto, item, toArray, write through views', () => {
      run(() => {
        for (const half of ['bf16', 'f16'] as const) {
          const t = T.zeros([2, 3], half);
          assert.equal(t.dtype, half);
          t.transpose(0, 1).write([1, 2, 3, 4, 5, 6]); // a strided view writes through to the shared storage
          assert.deepEqual([...t.readSync()], [1, 3, 5, 2, 4, 6]);
          assert.equal(t.slice(1, 2, 3).slice(0, 1, 2).item(), 6);
          t.write([0.1, 0, 0, 0, 0, 0]); // rounded to the dtype on the way in
          const r = new Float32Array(6);
          t.readInto(r);
          assert.equal(r[0], tensor([0.1]).to(half).readSync()[0]);
          assert.notEqual(r[0], Math.fround(0.1));
        }
        const ids = T.zeros([3], 'i32');
        ids.write([5, -7, 2 ** 31 - 1]);
        assert.deepEqual(ids.toArray(), [5, -7, 2 ** 31 - 1]);
        assert.throws(() => ids.write([0.5, 0, 0]), /needs integers/);
      });
    });

    it('bf16 / f16 embedding widens only the rows picked: equal to the f32 embedding of the rounded table', () => {
      run(() => {
        const wt = randTensor([50, 8], 9);
        const ids = intTensor(Int32Array.of(3, 49, 0, 3), [2, 2]);
        for (const half of ['bf16', 'f16'] as const) {
          const wh = wt.to(half);
          assert.deepEqual(embedding(ids, wh).readSync(), embedding(ids, wh.to('f32')).readSync());
        }
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// int32 embedding against torch

const EMB_PY = `
import json, sys, torch
import torch.nn.functional as F
d = json.load(sys.stdin)
w = torch.tensor(d['weight'], dtype=torch.float32).reshape(d['V'], d['D']).requires_grad_(True)
ids = torch.tensor(d['ids'], dtype=torch.int32).reshape(d['idShape'])
out = F.embedding(ids, w)
go = torch.tensor(d['grad_out'], dtype=torch.float32).reshape(out.shape)
(out * go).sum().backward()
json.dump({'out': out.detach().reshape(-1).tolist(), 'shape': list(out.shape), 'grad_weight': w.grad.reshape(-1).tolist()}, sys.stdout)
`;

function torchSkip(): string | false {
  if (!existsSync(torchPython)) return `${torchPython} missing: the torch embedding comparison is not tested`;
  const r = spawnSync(torchPython, ['-c', 'import torch'], { encoding: 'utf8' });
  return r.status === 0 ? false : `torch not importable by ${torchPython}`;
}

describe('int32 embedding against torch F.embedding (ops fixtures conventions)', { skip: torchSkip() }, () => {
  for (const { name, backend, skip } of testBackends()) {
    it(`forward and weight gradient of sum(out * grad_out) (${name})`, { skip }, () => {
      withBackend(backend as Backend, () => {
        const V = 37;
        const D = 12;
        const weight = randTensor([V, D], 11).requiresGrad_();
        const idv = Int32Array.from({ length: 2 * 5 }, (_, i) => (i * 17 + 3) % V);
        idv[7] = idv[2]!; // a repeated id: its gradient rows add up
        const ids = intTensor(idv, [2, 5]);
        assert.equal(ids.dtype, 'i32');
        const gradOut = randTensor([2, 5, D], 12);
        const out = embedding(ids, weight);
        T.sum(T.mul(out, gradOut)).backward();
        const r = spawnSync(torchPython, ['-c', EMB_PY], {
          input: JSON.stringify({ weight: weight.toArray(), V, D, ids: ids.toArray(), idShape: [2, 5], grad_out: gradOut.toArray() }),
          encoding: 'utf8',
          maxBuffer: 1 << 26,
        });
        assert.equal(r.status, 0, r.stderr);
        const ref = JSON.parse(r.stdout) as { out: number[]; shape: number[]; grad_weight: number[] };
        assert.deepEqual(out.shape, ref.shape);
        // ops fixture README: forward within 1e-4 relative (max-abs / max-abs), gradients within 1e-3
        assert.ok(relErr(out.readSync(), ref.out) <= 1e-4, 'forward');
        assert.ok(relErr(weight.grad!.readSync(), ref.grad_weight) <= 1e-3, 'weight gradient');
        // integral f32 ids are accepted and give the same rows
        assert.deepEqual(embedding(ids.to('f32'), weight.detach()).readSync(), out.readSync());
        assert.throws(() => embedding(intTensor(Int32Array.of(V)), weight), /outside the vocabulary/);
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// checkpoints keep their dtype

const DIR = 'dc-ae-v';
const BF16_WEIGHTS = `${DIR}/chunk_causal_small.weights.bf16.safetensors`;

describe('bf16 checkpoints stay bf16 in memory', { skip: skipUnlessFixture(BF16_WEIGHTS) }, () => {
  it('the DC-AE-V bf16 safetensors loads as bf16 and reproduces the bf16 io fixture', () => {
    const cfg = configFromReference(JSON.parse(readFileSync(fixturePath(`${DIR}/chunk_causal_small.json`), 'utf8')), 'chunk_causal_small');
    const m = new DCAEV(cfg);
    const w = openWeights(fixturePath(BF16_WEIGHTS));
    try {
      m.loadStateDict(w.tensors);
    } finally {
      w.close();
    }
    const params = m.namedParams();
    assert.ok(params.length > 10);
    for (const [k, p] of params) assert.equal(p.value.dtype, 'bf16', `${k} was widened`);
    assert.throws(() => m.parameters(), /only f32 parameters can be trained/);
    const io = SafetensorsFile.open(fixturePath(`${DIR}/chunk_causal_small.bf16.io.safetensors`));
    try {
      // The input requires grad: the encoder runs its autograd path, and the gradient w.r.t. the input flows through
      // the frozen bf16 weights. Fixture README tolerance for this model: fp32 within 1e-4 relative.
      const x = io.tensor('input').requiresGrad_();
      const z = m.encodeRaw(x);
      assert.ok(relErr(z.readSync(), io.tensor('latent').readSync()) <= 1e-4, 'latent');
      z.sum().backward();
      assert.ok(x.grad && x.grad.readSync().every(Number.isFinite));
      const zl = io.tensor('latent').requiresGrad_();
      const y = m.decodeRaw(zl);
      assert.ok(relErr(y.readSync(), io.tensor('reconstruction').readSync()) <= 1e-4, 'reconstruction');
    } finally {
      io.close();
    }
  });

  it('readers keep bf16 by default and widen on request; saving writes the stored dtype and round-trips exactly', () => {
    const f = SafetensorsFile.open(fixturePath(BF16_WEIGHTS));
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-dtypes-'));
    try {
      const k = f.keys()[0]!;
      assert.equal(f.info(k).dtype, 'BF16');
      const kept = f.tensor(k);
      const wide = f.tensor(k, { dtype: 'f32' });
      assert.equal(kept.dtype, 'bf16');
      assert.equal(wide.dtype, 'f32');
      assert.deepEqual(kept.readSync(), wide.readSync());
      const i32 = intTensor(Int32Array.of(-5, 0, 2 ** 31 - 1), [3]);
      const f16 = tensor([0.1, -2, 65504]).to('f16');
      const p = join(dir, 'kept.safetensors');
      saveSafetensors(p, { w: kept, ids: i32, h: f16, x: wide });
      const g = SafetensorsFile.open(p);
      try {
        assert.deepEqual([g.info('w').dtype, g.info('ids').dtype, g.info('h').dtype, g.info('x').dtype], ['BF16', 'I32', 'F16', 'F32']);
        for (const [name, t] of [['w', kept], ['ids', i32], ['h', f16], ['x', wide]] as const) {
          const back = g.tensor(name);
          assert.equal(back.dtype, t.dtype, name);
          assert.deepEqual(back.readStoredSync(), t.readStoredSync(), name);
        }
        assert.deepEqual(g.tensor('ids').toArray(), [-5, 0, 2 ** 31 - 1]);
      } finally {
        g.close();
      }
      // The file's bytes for the bf16 tensor are the source file's bytes (no re-rounding).
      const src = readFileSync(fixturePath(BF16_WEIGHTS));
      const dst = readFileSync(p);
      const info = f.info(k) as { begin: number; end: number };
      const hlen = (b: Buffer) => 8 + Number(b.readBigUInt64LE(0));
      const gi = SafetensorsFile.open(p);
      const wi = gi.info('w') as { begin: number; end: number };
      gi.close();
      assert.ok(src.subarray(hlen(src) + info.begin, hlen(src) + info.end).equals(dst.subarray(hlen(dst) + wi.begin, hlen(dst) + wi.end)));
      // Explicit file dtype still converts.
      saveSafetensors(p, { w: kept }, { dtype: 'F32' });
      const h = SafetensorsFile.open(p);
      assert.equal(h.info('w').dtype, 'F32');
      assert.deepEqual(h.tensor('w').readSync(), kept.readSync());
      h.close();
    } finally {
      f.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the torch zip reader keeps bf16 too (and widens with dtype f32)', { skip: skipUnlessFixture(`${DIR}/chunk_causal_small.bf16.pt`) }, () => {
    const pt = fixturePath(`${DIR}/chunk_causal_small.bf16.pt`);
    const kept = loadTorchStateDict(pt).stateDict;
    const wide = loadTorchStateDict(pt, { dtype: 'f32' }).stateDict;
    assert.ok(kept.size > 10);
    for (const [k, t] of kept) {
      assert.equal(t.dtype, 'bf16', k);
      assert.equal(wide.get(k)!.dtype, 'f32');
      assert.deepEqual(t.readSync(), wide.get(k)!.readSync(), k);
    }
    const wf = openWeights(pt);
    try {
      const k = [...wf.tensors.keys()][0]!;
      assert.equal(wf.tensors.get(k).dtype, 'bf16');
    } finally {
      wf.close();
    }
    void fromHostArray;
  });
});
