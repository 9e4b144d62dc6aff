/** Tensor semantics: views share storage, shape ops, broadcasting, autograd bookkeeping, RNG, optimizer helpers. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/index.js';
import { Rng } from '../src/tensor/random.js';

const arr = (t: T.Tensor) => t.toArray();

describe('views', () => {
  it('reshape, permute, slice and expand share storage', () => {
    const x = T.arange(24).reshape(2, 3, 4);
    const p = x.permute(2, 0, 1);
    const s = x.slice(2, 1, 4, 2);
    const e = T.tensor([1, 2, 3], [3, 1]).expand(3, 4);
    assert.equal(p.storage, x.storage);
    assert.equal(s.storage, x.storage);
    assert.deepEqual(s.shape, [2, 3, 2]);
    assert.deepEqual(arr(s).slice(0, 4), [1, 3, 5, 7]);
    assert.deepEqual(p.shape, [4, 2, 3]);
    assert.deepEqual(arr(p).slice(0, 6), [0, 4, 8, 12, 16, 20]);
    assert.deepEqual(e.strides, [1, 0]);
    assert.deepEqual(arr(e), [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
  });
  it('negative slice indices and steps follow Python', () => {
    const x = T.arange(10);
    assert.deepEqual(arr(x.slice(0, -3)), [7, 8, 9]);
    assert.deepEqual(arr(x.slice(0, 1, -1, 3)), [1, 4, 7]);
    assert.deepEqual(arr(x.slice(0, 20, 30)), []);
  });
  it('cat, split, stack, chunk', () => {
    const a = T.arange(6).reshape(2, 3);
    const b = T.arange(6, 10).reshape(2, 2);
    const c = T.cat([a, b], 1);
    assert.deepEqual(arr(c), [0, 1, 2, 6, 7, 3, 4, 5, 8, 9]);
    const [p, q] = T.split(c, [3, 2], 1);
    assert.deepEqual(arr(p!), arr(a));
    assert.deepEqual(arr(q!), arr(b));
    assert.deepEqual(T.stack([a, a], 1).shape, [2, 2, 3]);
    assert.deepEqual(T.chunk(T.arange(7), 3).map((t) => t.shape[0]), [3, 3, 1]);
  });
  it('repeatInterleave repeats consecutively', () => {
    assert.deepEqual(arr(T.repeatInterleave(T.tensor([1, 2, 3]), 2, 0)), [1, 1, 2, 2, 3, 3]);
  });
  it('pad is asymmetric per axis (torch order) and supports a fill value', () => {
    const x = T.ones([1, 2]);
    const y = T.pad(x, [1, 0, 0, 2], 5);
    assert.deepEqual(y.shape, [3, 3]);
    assert.deepEqual(arr(y), [5, 1, 1, 5, 5, 5, 5, 5, 5]);
  });
  it('pixel unshuffle follows the DC-AE-V channel order ((c*tf+dt)*sf+dh)*sf+dw', () => {
    const x = T.arange(2 * 4 * 4 * 4).reshape(1, 2, 4, 4, 4);
    const y = T.pixelUnshuffle3d(x, 2, 2);
    assert.deepEqual(y.shape, [1, 16, 2, 2, 2]);
    const xv = x.readSync();
    const yv = y.readSync();
    for (let c = 0; c < 2; c++)
      for (let dt = 0; dt < 2; dt++)
        for (let dh = 0; dh < 2; dh++)
          for (let dw = 0; dw < 2; dw++)
            for (let t = 0; t < 2; t++)
              for (let h = 0; h < 2; h++)
                for (let w = 0; w < 2; w++) {
                  const oc = ((c * 2 + dt) * 2 + dh) * 2 + dw;
                  const got = yv[((oc * 2 + t) * 2 + h) * 2 + w];
                  const want = xv[((c * 4 + t * 2 + dt) * 4 + h * 2 + dh) * 4 + w * 2 + dw];
                  assert.equal(got, want);
                }
    assert.deepEqual(arr(T.pixelShuffle3d(y, 2, 2)), arr(x));
  });
});

describe('autograd', () => {
  it('gradients accumulate across backward calls and through shared inputs', () => {
    const x = T.parameter(T.tensor([1, 2, 3]));
    T.sum(T.mul(x, x)).backward();
    assert.deepEqual(arr(x.grad!), [2, 4, 6]);
    T.sum(T.add(x, x)).backward();
    assert.deepEqual(arr(x.grad!), [4, 6, 8]);
  });
  it('noGrad and detach record no history', () => {
    const x = T.parameter(T.tensor([1, 2]));
    const y = T.noGrad(() => T.mul(x, 2));
    assert.equal(y.requiresGrad, false);
    assert.equal(T.mul(x.detach(), 2).requiresGrad, false);
    assert.equal(T.mul(x, 2).requiresGrad, true);
  });
  it('backward without a gradient needs a scalar', () => {
    const x = T.parameter(T.tensor([1, 2]));
    assert.throws(() => T.mul(x, 2).backward(), (e: Error) => e instanceof T.AutogradError && /\[2\]/.test(e.message));
  });
  it('expand + sum gradients reduce over broadcast axes', () => {
    const b = T.parameter(T.tensor([1, 2, 3], [3, 1]));
    T.sum(T.mul(T.expand(b, [3, 4]), T.ones([3, 4]))).backward();
    assert.deepEqual(arr(b.grad!), [4, 4, 4]);
  });
  it('deep chains do not overflow the stack', () => {
    let x = T.parameter(T.tensor([1]));
    const root = x;
    for (let i = 0; i < 20000; i++) x = T.add(x, 1);
    x.backward();
    assert.deepEqual(arr(root.grad!), [1]);
  });
});

describe('random', () => {
  it('is deterministic per seed and roughly standard normal', () => {
    const a = T.randn([10000], 42);
    const b = T.randn([10000], 42);
    assert.deepEqual(arr(a), arr(b));
    assert.notDeepEqual(arr(T.randn([10], 43)), arr(a).slice(0, 10));
    const m = T.mean(a).item();
    const v = T.mean(T.square(a)).item();
    assert.ok(Math.abs(m) < 0.05, `mean ${m}`);
    assert.ok(Math.abs(v - 1) < 0.05, `var ${v}`);
  });
  it('state round-trips', () => {
    const r = new Rng(7);
    r.normal();
    const s = r.state();
    const x = [r.normal(), r.uniform()];
    const r2 = new Rng(0);
    r2.setState(s);
    assert.deepEqual([r2.normal(), r2.uniform()], x);
  });
});

describe('optimizer helpers', () => {
  it('clipGradNorm scales to the max norm and returns the original norm', () => {
    const p = T.parameter(T.zeros([2]));
    const q = T.parameter(T.zeros([1]));
    p.grad = T.tensor([3, 0]);
    q.grad = T.tensor([4]);
    const n = T.clipGradNorm([p, q], 1);
    assert.ok(Math.abs(n - 5) < 1e-6);
    assert.ok(Math.abs(p.grad.toArray()[0]! - 0.6) < 1e-5);
    assert.ok(Math.abs(q.grad.toArray()[0]! - 0.8) < 1e-5);
  });
});
