/**
 * The native backend agrees with the reference backend on randomized shapes: odd sizes, non-contiguous views,
 * broadcasting, groups, asymmetric padding, long attention. Forward within 2e-5 and gradients within 1e-4 (relative
 * to the largest reference magnitude).
 */
import { describe, it } from 'node:test';
import { getNativeBackend, referenceBackend, withBackend } from '../src/backend/index.js';
import type { Backend } from '../src/backend/backend.js';
import * as T from '../src/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { Rng } from '../src/tensor/random.js';
import { relErr, testBackends } from './helpers.js';

type Fn = (xs: Tensor[]) => Tensor;

function run(b: Backend, shapes: number[][], f: Fn, seed: number): { out: Float32Array; grads: Float32Array[] } {
  return withBackend(b, () => {
    const rng = new Rng(seed);
    const xs = shapes.map((s) => T.parameter(T.randn(s, rng)));
    const out = f(xs);
    const R = T.randn(out.shape, rng);
    T.sum(T.mul(out, R)).backward();
    return { out: out.readSync(), grads: xs.map((x) => x.grad!.readSync()) };
  });
}

function compare(name: string, shapes: number[][], f: Fn, seed: number): void {
  const nat = getNativeBackend()!;
  const a = run(referenceBackend, shapes, f, seed);
  const b = run(nat, shapes, f, seed);
  const e = relErr(b.out, a.out);
  if (!(e <= 2e-5)) throw new Error(`${name}: forward differs by ${e.toExponential(3)}`);
  a.grads.forEach((g, i) => {
    const eg = relErr(b.grads[i]!, g);
    if (!(eg <= 1e-4)) throw new Error(`${name}: gradient of input ${i} differs by ${eg.toExponential(3)}`);
  });
}

const rnd = new Rng(2024);
const ri = (lo: number, hi: number) => lo + rnd.int(hi - lo + 1);

function convCases(): [string, number[][], Fn][] {
  const out: [string, number[][], Fn][] = [];
  for (let i = 0; i < 8; i++) {
    const groups = [1, 1, 2, 3][ri(0, 3)]!;
    const cin = groups * ri(1, 4);
    const cout = groups * ri(1, 4);
    const kt = ri(1, 3), kh = ri(1, 3), kw = ri(1, 3);
    const pad = [ri(0, 2), ri(0, 1), ri(0, 1), ri(0, 2), ri(0, 1), ri(0, 1)];
    const stride: [number, number, number] = [ri(1, 2), ri(1, 2), ri(1, 2)];
    const x = [ri(1, 2), cin, ri(kt, 6), ri(kh + 1, 9), ri(kw + 1, 9)];
    const bias = ri(0, 1) === 1;
    const shapes = bias ? [x, [cout, cin / groups, kt, kh, kw], [cout]] : [x, [cout, cin / groups, kt, kh, kw]];
    out.push([
      `conv3d #${i} x=[${x}] k=[${kt},${kh},${kw}] g=${groups} s=[${stride}] p=[${pad}]`,
      shapes,
      ([a, w, b]) => T.conv3d(a!, w!, b ?? null, { stride, padding: pad, groups }),
    ]);
  }
  return out;
}

const CASES: [string, number[][], Fn][] = [
  ...convCases(),
  // native/src/blas_conv.cc: oneDNN's backward data runs its gemm-based kernel on the plain layout for C < 4, the direct
  // kernel on channel-blocked copies from C = 4; both sides of the switch, causally padded as the Wan VAE pads
  ...[3, 4, 8, 12].map((c): [string, number[][], Fn] => [
    `conv3d backward data C=${c} (plain / blocked path switch)`,
    [[1, c, 5, 9, 9], [6, c, 3, 3, 3], [6]],
    ([a, w, b]) => T.conv3d(a!, w!, b!, { padding: [2, 0, 1, 1, 1, 1] }),
  ]),
  ['matmul odd sizes', [[3, 17, 13], [13, 19]], ([a, b]) => T.matmul(a!, b!)],
  ['matmul broadcast + transposed views', [[2, 1, 9, 7], [4, 11, 9]], ([a, b]) => T.matmul(T.transpose(a!, -1, -2), T.transpose(b!, -1, -2))],
  ['linear non-contiguous input', [[5, 3, 8], [6, 8], [6]], ([x, w, b]) => T.linear(T.permute(x!, [1, 0, 2]), w!, b!)],
  ['binary broadcast on permuted views', [[4, 5, 6], [6, 1, 4]], ([a, b]) => T.mul(T.sub(a!, T.permute(b!, [2, 1, 0])), T.add(a!, 2))],
  ['max/min/div/pow', [[7, 3], [3]], ([a, b]) => T.add(T.div(T.maximum(a!, b!), T.add(T.square(b!), 1)), T.pow(T.add(T.square(a!), 1), 0.7))],
  ['unary ops', [[33, 5]], ([x]) => T.stack([T.exp(T.mul(x!, 0.3)), T.tanh(x!), T.sigmoid(x!), T.silu(x!), T.gelu(x!, 'tanh'), T.gelu(x!, 'none'), T.relu(x!), T.abs(x!), T.sin(x!), T.cos(x!), T.rsqrt(T.add(T.square(x!), 1)), T.log(T.add(T.square(x!), 1))], 0)],
  ['reductions over axes', [[3, 4, 5, 6]], ([x]) => T.add(T.sum(x!, [1, 3], true), T.amax(x!, [0, 2], true))],
  ['softmax on a non-last axis', [[3, 37, 5]], ([x]) => T.softmax(x!, 1)],
  ['log-softmax long rows', [[4, 1000]], ([x]) => T.logSoftmax(x!)],
  ['layer norm', [[6, 7, 33], [33], [33]], ([x, w, b]) => T.layerNorm(x!, w!, b!, 1e-6)],
  ['rms norm last', [[5, 65], [65]], ([x, w]) => T.rmsNorm(x!, w!, 1e-6)],
  ['rms norm 3d', [[2, 7, 3, 5, 6], [7], [7]], ([x, w, b]) => T.rmsNorm3d(x!, w!, b!, 1e-5)],
  ['attention odd lengths', [[3, 7, 16], [3, 513, 16], [3, 513, 12]], ([q, k, v]) => T.attention(q!, k!, v!)],
  ['attention long', [[1, 2, 700, 32], [1, 2, 700, 32], [1, 2, 700, 32]], ([q, k, v]) => T.attention(q!, k!, v!)],
  ['attention single query', [[2, 1, 8], [2, 5, 8], [2, 5, 8]], ([q, k, v]) => T.attention(q!, k!, v!, 0.3)],
  ['pad + cat + slice', [[2, 3, 5], [2, 4, 5]], ([a, b]) => T.slice(T.pad(T.cat([a!, b!], 1), [2, 1, 1, 0]), 2, 1, 8, 2)],
  ['pixel shuffle/unshuffle', [[1, 3, 4, 6, 8]], ([x]) => T.pixelShuffle3d(T.mul(T.pixelUnshuffle3d(x!, 2, 2), 1.5), 2, 1)],
  ['pool + upsample + repeatInterleave', [[1, 3, 3, 6, 5]], ([x]) => T.repeatInterleave(T.upsampleNearest3d(T.avgPool3d(x!, [1, 2, 2]), [2, 2, 1]), 2, 1)],
  ['losses', [[4, 9], [4, 9]], ([a, b]) => T.stack([T.mseLoss(a!, b!), T.l1Loss(a!, b!)])],
];

const nativeSkip = testBackends()[1]!.skip;

describe('native vs reference on randomized shapes', { skip: nativeSkip }, () => {
  CASES.forEach(([name, shapes, f], i) => it(name, () => compare(name, shapes, f, 500 + i)));

  it('AdamW steps agree', () => {
    const res = [referenceBackend, getNativeBackend()!].map((b) =>
      withBackend(b, () => {
        const rng = new Rng(3);
        const p = T.parameter(T.randn([37, 5], rng));
        const opt = new T.AdamW([p], { lr: 0.01, weightDecay: 0.05 });
        for (let s = 0; s < 5; s++) {
          p.grad = T.randn([37, 5], rng);
          opt.step();
        }
        return p.readSync();
      }),
    );
    const e = relErr(res[1]!, res[0]!);
    if (!(e <= 1e-6)) throw new Error(`AdamW differs by ${e}`);
  });
});
