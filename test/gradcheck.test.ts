/**
 * Finite-difference gradient checks on random shapes: for a random direction d, the central difference of
 * L(x) = sum(f(x) * R) along d must match <grad L, d>. Runs on the reference backend (the oracle) and on native.
 */
import { describe, it } from 'node:test';
import { withBackend } from '../src/backend/index.js';
import * as T from '../src/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { Rng } from '../src/tensor/random.js';
import { requireBackend, testBackends } from './helpers.js';

type Fn = (xs: Tensor[]) => Tensor;

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Checks every input's gradient along two random directions. */
function gradcheck(name: string, shapes: number[][], f: Fn, seed: number, eps = 1e-2, tol = 2e-2): void {
  const rng = new Rng(seed);
  const xs = shapes.map((s) => T.parameter(T.randn(s, rng)));
  const out = f(xs);
  const R = T.randn(out.shape, rng);
  T.sum(T.mul(out, R)).backward();
  const loss = (ys: Tensor[]) => T.noGrad(() => T.sum(T.mul(f(ys), R)).item());
  xs.forEach((x, i) => {
    const g = x.grad;
    if (!g) throw new Error(`${name}: no gradient for input ${i}`);
    for (let k = 0; k < 2; k++) {
      const d = T.randn(x.shape, rng);
      const plus = xs.map((y, j) => (j === i ? T.add(y.detach(), T.mul(d, eps)) : y.detach()));
      const minus = xs.map((y, j) => (j === i ? T.sub(y.detach(), T.mul(d, eps)) : y.detach()));
      const fd = (loss(plus) - loss(minus)) / (2 * eps);
      const an = dot(g.readSync(), d.readSync());
      const err = Math.abs(fd - an) / Math.max(1, Math.abs(an), Math.abs(fd));
      if (!(err <= tol)) throw new Error(`${name}: input ${i} directional derivative ${an} vs finite difference ${fd} (err ${err.toExponential(2)})`);
    }
  });
}

const CASES: [string, number[][], Fn][] = [
  ['conv3d asym pad stride groups', [[2, 4, 5, 6, 7], [6, 2, 3, 3, 2], [6]], ([x, w, b]) => T.conv3d(x!, w!, b!, { stride: [1, 2, 1], padding: [2, 0, 1, 1, 0, 1], groups: 2 })],
  ['conv3d depthwise', [[1, 3, 4, 5, 5], [3, 1, 3, 3, 3]], ([x, w]) => T.conv3d(x!, w!, null, { padding: 1, groups: 3 })],
  ['matmul broadcast batch', [[3, 1, 4, 5], [2, 5, 3]], ([a, b]) => T.matmul(a!, b!)],
  ['matmul transposed view', [[6, 4], [5, 6]], ([a, b]) => T.matmul(T.transpose(a!, 0, 1), T.transpose(b!, 0, 1))],
  ['linear', [[2, 3, 7], [5, 7], [5]], ([x, w, b]) => T.linear(x!, w!, b!)],
  ['softmax middle axis', [[3, 5, 4]], ([x]) => T.softmax(x!, 1)],
  ['log_softmax', [[4, 9]], ([x]) => T.logSoftmax(x!, -1)],
  ['layer norm', [[4, 3, 10], [10], [10]], ([x, w, b]) => T.layerNorm(x!, w!, b!, 1e-5)],
  ['rms norm 3d', [[2, 5, 2, 3, 3], [5], [5]], ([x, w, b]) => T.rmsNorm3d(x!, w!, b!, 1e-5)],
  ['attention d != dv', [[2, 7, 6], [2, 9, 6], [2, 9, 5]], ([q, k, v]) => T.attention(q!, k!, v!)],
  ['broadcast mul/div/add', [[3, 1, 4], [1, 5, 1]], ([a, b]) => T.div(T.mul(T.add(a!, b!), a!), T.add(T.square(b!), 1))],
  ['maximum/minimum', [[4, 6], [6]], ([a, b]) => T.add(T.maximum(a!, b!), T.minimum(a!, T.mul(b!, 0.5)))],
  ['unary chain', [[5, 6]], ([x]) => T.add(T.add(T.tanh(x!), T.sigmoid(x!)), T.add(T.gelu(x!, 'tanh'), T.mul(T.sin(x!), T.cos(x!))))],
  ['exp/log/sqrt', [[7]], ([x]) => T.sqrt(T.log(T.add(T.exp(x!), 1)))],
  ['sum/mean/max axes', [[3, 4, 5]], ([x]) => T.add(T.sum(x!, [0, 2], true), T.add(T.mean(x!, 1, true), T.amax(x!, [0, 2], true)))],
  ['pad/cat/slice', [[2, 3, 4], [2, 2, 4]], ([a, b]) => T.slice(T.pad(T.cat([a!, b!], 1), [1, 2, 0, 1]), 2, 1, 6, 2)],
  ['repeatInterleave/permute', [[2, 3, 4]], ([x]) => T.permute(T.repeatInterleave(x!, 3, 1), [2, 0, 1])],
  ['pixel shuffle round trip', [[1, 2, 4, 4, 6]], ([x]) => T.pixelShuffle3d(T.mul(T.pixelUnshuffle3d(x!, 2, 2), 3), 2, 2)],
  ['avg pool + upsample', [[1, 2, 2, 4, 5]], ([x]) => T.upsampleNearest3d(T.avgPool3d(x!, [1, 2, 2]), [2, 1, 2])],
  ['pow tensor', [[6], [6]], ([a, b]) => T.pow(T.add(T.square(a!), 0.5), T.mul(b!, 0.3))],
  ['chunk-causal conv3d', [[2, 3, 8, 5, 4], [4, 3, 3, 3, 3], [4]], ([x, w, b]) => T.chunkCausalConv3d(x!, w!, b!, 2, 1)],
];

/** The chunk-causal conv as the streaming path computes it: per chunk, the previous chunk's last frame (or zeros)
 * concatenated on the left, zero padding on the right. */
function chunkByChunk(x: Tensor, w: Tensor, b: Tensor, L: number, ps: number): Tensor {
  const n = x.shape[2]! / L;
  const outs: Tensor[] = [];
  for (let k = 0; k < n; k++) {
    const cur = T.slice(x, 2, k * L, (k + 1) * L);
    outs.push(
      k === 0
        ? T.conv3d(cur, w, b, { padding: [1, 1, ps, ps, ps, ps] })
        : T.conv3d(T.cat([T.slice(x, 2, k * L - 1, k * L), cur], 2), w, b, { padding: [0, 1, ps, ps, ps, ps] }),
    );
  }
  return T.cat(outs, 2);
}

function maxRel(a: Float32Array, b: Float32Array): number {
  let m = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return m / Math.max(1e-30, s);
}

for (const be of testBackends()) {
  describe(`chunk-causal conv as one conv = chunk by chunk (${be.name})`, { skip: be.skip }, () => {
    for (const [shape, L, ps] of [
      [[1, 4, 16, 6, 5], 8, 1],
      [[2, 3, 8, 4, 4], 2, 1],
      [[1, 2, 4, 3, 3], 4, 0],
    ] as [number[], number, number][]) {
      it(`x ${shape.join('x')}, chunk ${L}, spatial pad ${ps}`, () =>
        withBackend(requireBackend(be.backend), () => {
          const rng = new Rng(7);
          const ks = 2 * ps + 1;
          const mk = () => [T.parameter(T.randn(shape, rng)), T.parameter(T.randn([5, shape[1]!, 3, ks, ks], rng)), T.parameter(T.randn([5], rng))];
          const a = mk();
          const c = a.map((t) => T.parameter(t.detach().clone()));
          const ya = T.chunkCausalConv3d(a[0]!, a[1]!, a[2]!, L, ps);
          const yc = chunkByChunk(c[0]!, c[1]!, c[2]!, L, ps);
          const err = maxRel(ya.readSync(), yc.readSync());
          if (!(err < 1e-5)) throw new Error(`forward differs: ${err}`);
          const R = T.randn(ya.shape, rng);
          T.sum(T.mul(ya, R)).backward();
          T.sum(T.mul(yc, R)).backward();
          a.forEach((t, i) => {
            const e = maxRel(t.grad!.readSync(), c[i]!.grad!.readSync());
            if (!(e < 1e-5)) throw new Error(`gradient of input ${i} differs: ${e}`);
          });
        }));
    }
  });
}

for (const be of testBackends()) {
  describe(`finite-difference gradients (${be.name})`, { skip: be.skip }, () => {
    CASES.forEach(([name, shapes, f], i) => {
      it(name, () => withBackend(requireBackend(be.backend), () => gradcheck(name, shapes, f, 1000 + i)));
    });
  });
}
