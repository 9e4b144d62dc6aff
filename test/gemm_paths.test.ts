/**
 * The native backend's two GEMM paths (oneDNN's dnnl_sgemm and OpenBLAS's cblas_sgemm; native/src/blas_conv.cc):
 * each gives the same products within the rounding bound of fp32 arithmetic, the CPU table picks one, DCVG_GEMM
 * overrides it (and a bad value is a one-line error), and the linear / matmul / conv checks of the suite pass on both.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { getNativeAddon } from '../src/backend/index.js';
import { repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const addon = getNativeAddon();
const noAddon = addon ? false : process.env.CI ? false : 'native addon not built';
const PATHS = ['onednn', 'openblas'] as const;

/** Deterministic values in [-1, 1) (an LCG), so that a failure reproduces. */
function values(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

interface Case {
  name: string;
  tA: boolean;
  tB: boolean;
  batch: number;
  M: number;
  N: number;
  K: number;
  alpha: number;
  beta: number;
  sA?: number; // defaults: densely stacked batches
  sB?: number;
  nanC?: boolean; // C starts as NaN (beta 0 must overwrite it)
}

const CASES: Case[] = [
  ...[false, true].flatMap((tA) =>
    [false, true].map((tB) => ({ name: `op(A)=${tA ? 'T' : 'N'} op(B)=${tB ? 'T' : 'N'} odd sizes`, tA, tB, batch: 1, M: 37, N: 53, K: 29, alpha: 1, beta: 0 })),
  ),
  // oneDNN computes this one as C^T = B A^T (tB, M <= 128, N >= 2M, N*K >= 65536): a Linear on few tokens.
  { name: 'few rows x W^T (the swapped form)', tA: false, tB: true, batch: 1, M: 32, N: 1024, K: 96, alpha: 1, beta: 0 },
  { name: 'one row (a time embedding)', tA: false, tB: true, batch: 1, M: 1, N: 300, K: 257, alpha: 1, beta: 0 },
  { name: 'one column', tA: false, tB: false, batch: 1, M: 65, N: 1, K: 40, alpha: 1, beta: 0 },
  { name: 'large enough for both libraries to thread', tA: false, tB: true, batch: 1, M: 300, N: 257, K: 513, alpha: 1, beta: 0 },
  { name: 'dW = dY^T X (A transposed, long K)', tA: true, tB: false, batch: 1, M: 48, N: 40, K: 1500, alpha: 1, beta: 0 },
  { name: 'alpha and beta', tA: false, tB: false, batch: 1, M: 33, N: 70, K: 45, alpha: -1.5, beta: 0.5 },
  { name: 'beta 0 overwrites NaN', tA: true, tB: true, batch: 1, M: 20, N: 30, K: 25, alpha: 1, beta: 0, nanC: true },
  { name: 'batch of 8 (OpenMP over the batch on oneDNN)', tA: false, tB: true, batch: 8, M: 20, N: 24, K: 16, alpha: 1, beta: 0 },
  { name: 'batch of 5 with a broadcast A (stride 0)', tA: false, tB: false, batch: 5, M: 9, N: 130, K: 70, alpha: 1, beta: 1, sA: 0 },
  { name: 'empty inner dimension', tA: false, tB: false, batch: 2, M: 4, N: 5, K: 0, alpha: 1, beta: 0.25 },
];

/**
 * Runs one case on the current path and checks every element against a float64 product. The bound is the classic one
 * for a dot product of length K summed in fp32 in any order, FMA or not: |c^ - c| <= gamma_K * (|A||B|)_ij, with
 * gamma_n = n u / (1 - n u) and u = 2^-24; three more roundings (the alpha scale, the beta scale, the final add, in
 * whatever order a library does them) make it gamma_{K+3} * (|alpha| (|A||B|)_ij + |beta| |C0_ij|). It holds for every
 * blocking, thread split and vector width, so on AVX2 and AVX-512 alike; a wrong transpose, stride or beta breaks it
 * by orders of magnitude.
 */
function check(c: Case, seed: number): { worst: number } {
  const { tA, tB, batch, M, N, K, alpha, beta } = c;
  const sA = c.sA ?? M * K, sB = c.sB ?? K * N, sC = M * N;
  const A = values(Math.max(1, (batch - 1) * sA + M * K), seed);
  const B = values(Math.max(1, (batch - 1) * sB + K * N), seed + 1);
  const C0 = c.nanC ? new Float32Array(batch * sC).fill(NaN) : values(batch * sC, seed + 2);
  const C = Float32Array.from(C0);
  addon!.gemm(tA, tB, batch, M, N, K, alpha, A, sA, B, sB, beta, C, sC);
  const u = 2 ** -24, n = K + 3, gamma = (n * u) / (1 - n * u);
  let worst = 0; // largest error / bound seen
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let exact = 0, mag = 0;
        for (let k = 0; k < K; k++) {
          const a = A[b * sA + (tA ? k * M + i : i * K + k)]!;
          const bb = B[b * sB + (tB ? j * K + k : k * N + j)]!;
          exact += a * bb;
          mag += Math.abs(a * bb);
        }
        const c0 = beta === 0 ? 0 : C0[b * sC + i * N + j]!;
        const want = alpha * exact + beta * c0;
        const bound = gamma * (Math.abs(alpha) * mag + Math.abs(beta * c0)) + Number.MIN_VALUE;
        const got = C[b * sC + i * N + j]!;
        const err = Math.abs(got - want);
        if (!(err <= bound)) {
          assert.fail(`${c.name}: C[${b}][${i}][${j}] = ${got}, want ${want} (error ${err.toExponential(3)} > bound ${bound.toExponential(3)})`);
        }
        worst = Math.max(worst, err / bound);
      }
    }
  }
  return { worst };
}

describe('GEMM paths: each within the fp32 rounding bound', { skip: noAddon }, () => {
  for (const path of PATHS) {
    it(`${path}: every transpose, batch, stride, alpha/beta case`, () => {
      addon!.setGemmPath!(path);
      try {
        assert.equal(addon!.versions().gemmPath, path);
        CASES.forEach((c, i) => check(c, 100 + 7 * i));
      } finally {
        addon!.setGemmPath!('auto');
      }
    });
  }

  it('auto is the table entry for this CPU, and a name outside the three is a RangeError', () => {
    addon!.setGemmPath!('openblas');
    addon!.setGemmPath!('auto');
    const v = addon!.versions();
    assert.ok(v.gemmAuto === 'onednn' || v.gemmAuto === 'openblas', String(v.gemmAuto));
    assert.equal(v.gemmPath, v.gemmAuto);
    assert.throws(() => addon!.setGemmPath!('mkl' as 'auto'), (e: Error) => e instanceof RangeError && /setGemmPath: 'path' must be "onednn", "openblas" or "auto", got "mkl"/.test(e.message));
    assert.equal(addon!.versions().gemmPath, v.gemmAuto, 'a refused name changes nothing');
  });
});

/** Runs `args` with DCVG_GEMM set (undefined: unset), outside this test runner. */
function child(args: string[], gemm: string | undefined) {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // a nested `node --test` would otherwise report to this runner instead of printing
  if (gemm === undefined) delete env.DCVG_GEMM;
  else env.DCVG_GEMM = gemm;
  return spawnSync(process.execPath, args, { encoding: 'utf8', env, cwd: repoRoot });
}

describe('DCVG_GEMM', { skip: noAddon }, () => {
  const cases: [string | undefined, string | null][] = [
    ['onednn', 'onednn'],
    ['openblas', 'openblas'],
    ['OpenBLAS', 'openblas'],
    ['auto', null],
    ['', null],
    [undefined, null],
  ];
  for (const [value, want] of cases) {
    it(`${value === undefined ? 'unset' : JSON.stringify(value)} gives ${want ?? 'the CPU table\'s choice'} in dcvg env`, () => {
      const r = child([bin, 'env', '--json'], value);
      assert.equal(r.status, 0, r.stderr);
      const n = (JSON.parse(r.stdout) as { native: { gemmPath: string; gemmAuto: string } }).native;
      assert.equal(n.gemmPath, want ?? n.gemmAuto);
    });
  }

  // The CPU table, row by row: oneDNN's ISA capped at run time (the cap only lowers it, so on an older CPU a row reads
  // as the CPU's own). AVX without AVX2 is the one row that gets OpenBLAS (docs/gemm-paths.md).
  for (const cap of ['SSE41', 'AVX', 'AVX2', '']) {
    it(`the table's pick follows oneDNN's ISA${cap ? ` capped at ${cap}` : ''}`, () => {
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env.NODE_TEST_CONTEXT;
      delete env.DCVG_GEMM;
      delete env.ONEDNN_MAX_CPU_ISA;
      delete env.DNNL_MAX_CPU_ISA;
      if (cap) env.ONEDNN_MAX_CPU_ISA = env.DNNL_MAX_CPU_ISA = cap;
      const r = spawnSync(process.execPath, [bin, 'env', '--json'], { encoding: 'utf8', env, cwd: repoRoot });
      assert.equal(r.status, 0, r.stderr);
      const n = (JSON.parse(r.stdout) as { native: { dnnlIsa: string; gemmPath: string; gemmAuto: string } }).native;
      assert.equal(n.gemmAuto, n.dnnlIsa === 'avx' ? 'openblas' : 'onednn', `oneDNN ISA ${n.dnnlIsa}`);
      assert.equal(n.gemmPath, n.gemmAuto);
    });
  }

  for (const bad of ['mkl', 'onednn,openblas', '1']) {
    it(`${JSON.stringify(bad)} is refused in one line naming the variable, exit 1`, () => {
      const r = child([bin, 'env', '--json'], bad);
      assert.equal(r.status, 1, r.stdout);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, new RegExp(`DCVG_GEMM=${bad}: not a GEMM path \\(expected onednn, openblas, auto\\)`));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    });
  }

  // The suites that run linear, matmul and conv3d (forward and backward) against PyTorch's fixtures and the reference
  // backend, with their own tolerances, once per path.
  const suites = ['ops_fixtures.test.js', 'native_vs_reference.test.js'].map((f) => join(repoRoot, 'dist', 'test', f));
  for (const path of PATHS) {
    it(`ops fixtures and native-vs-reference pass with DCVG_GEMM=${path}`, { skip: suites.every(existsSync) ? false : 'suites not built' }, () => {
      const r = child(['--test', '--test-reporter=dot', ...suites], path);
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    });
  }
});
