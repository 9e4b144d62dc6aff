/**
 * GEMM path benchmark: the native addon's `gemm` on oneDNN (dnnl_sgemm) and on OpenBLAS (cblas_sgemm), on the shapes
 * the models run, interleaved rep by rep in one process (setGemmPath between calls) so both see the same machine
 * state. What the CPU table in native/src/blas_conv.cc (gemm_auto_path) is decided from; results in docs/gemm-paths.md.
 *
 *   node dist/bench/gemm_paths.js [--reps 7] [--threads 2] [--quick] [--settle-ms 150] [--json]
 *   ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell node dist/bench/gemm_paths.js   (AVX2 row)
 *   OPENBLAS_CORETYPE=SkylakeX node dist/bench/gemm_paths.js    (OpenBLAS's AVX-512 kernels, where it does not pick them)
 *
 * Each row is one gemm call as the model makes it (Linear forward x W^T, its two backward gemms, a batched matmul,
 * and DC-AE-V's 3x3x3 convolutions written as im2col GEMMs for comparison: the convolutions themselves always run on
 * oneDNN's convolution primitives). "+gelu" rows time the gemm followed by the addon's OpenMP GELU on its output:
 * OpenBLAS's pthread pool keeps spinning after a call and competes with the OpenMP threads of the next kernel, which a
 * gemm timed alone does not show. Times are medians over --reps reps (>= 5); each rep repeats the call enough times to
 * last >= 20 ms, and starts --settle-ms (150) after the other library's last call, once its idle threads have stopped
 * spinning. 2 threads unless --threads.
 */
import { execFileSync } from 'node:child_process';
import { getNativeAddon } from '../src/backend/index.js';
import { cliArgs, median } from './profile.js';

const { flag, opt } = cliArgs('usage: node dist/bench/gemm_paths.js [--reps N] [--threads 2] [--quick] [--settle-ms 150] [--json]');
const REPS = Math.max(5, Number(opt('--reps', '7')));
const QUICK = flag('--quick');
const asJson = flag('--json');
const THREADS = Math.max(1, Number(opt('--threads', '2')));

interface Shape {
  name: string;
  tA: boolean;
  tB: boolean;
  batch: number;
  M: number;
  N: number;
  K: number;
  gelu?: boolean;
}

// Linear(I -> O) on `rows` tokens: forward C = X W^T (rows x O x I, B transposed); backward dX = dY W (rows x I x O),
// dW = dY^T X (O x I x rows, A transposed). As src/tensor/ops.ts linear() calls the backend.
function linear(name: string, rows: number, I: number, O: number, withBackward: boolean): Shape[] {
  const s: Shape[] = [{ name: `${name} fwd`, tA: false, tB: true, batch: 1, M: rows, N: O, K: I }];
  if (withBackward) {
    s.push({ name: `${name} dX`, tA: false, tB: false, batch: 1, M: rows, N: I, K: O });
    s.push({ name: `${name} dW`, tA: true, tB: false, batch: 1, M: O, N: I, K: rows });
  }
  return s;
}

function shapes(): Shape[] {
  // Small DiT of bench/wan.ts (dim 512, ffn 2048, 1,280 tokens, 64 text tokens), trained: forward and backward.
  const small: Shape[] = [
    ...linear('dit512 qkvo 1280x512<-512', 1280, 512, 512, true),
    ...linear('dit512 ffn1 1280x2048<-512', 1280, 512, 2048, true),
    ...linear('dit512 ffn2 1280x512<-2048', 1280, 2048, 512, true),
    ...linear('dit512 text kv 64x512<-512', 64, 512, 512, false),
    { name: 'dit512 ffn1 fwd +gelu', tA: false, tB: true, batch: 1, M: 1280, N: 2048, K: 512, gelu: true },
  ];
  // Wan-2.1 1.3B (dim 1536, ffn 8960, text 4096) on a 1,024-token slice, inference.
  const wan: Shape[] = [
    ...linear('wan1.3B qkvo 1024x1536<-1536', 1024, 1536, 1536, false),
    ...linear('wan1.3B ffn1 1024x8960<-1536', 1024, 1536, 8960, false),
    ...linear('wan1.3B ffn2 1024x1536<-8960', 1024, 8960, 1536, false),
    ...linear('wan1.3B text in 512x1536<-4096', 512, 4096, 1536, false),
    ...linear('wan1.3B time 1x9216<-1536', 1, 1536, 9216, false),
    { name: 'wan1.3B ffn1 fwd +gelu', tA: false, tB: true, batch: 1, M: 1024, N: 8960, K: 1536, gelu: true },
  ];
  // DC-AE-V (default model widths) 3x3x3 convolutions as im2col GEMMs: W (O x C*27) @ cols (C*27 x T*H*W).
  const conv: Shape[] = [
    { name: 'dcaev conv 64->64 10x16x16 (im2col)', tA: false, tB: false, batch: 1, M: 64, N: 2560, K: 64 * 27 },
    { name: 'dcaev conv 128->128 10x8x8 (im2col)', tA: false, tB: false, batch: 1, M: 128, N: 640, K: 128 * 27 },
    { name: 'dcaev conv 16->16 40x64x64 (im2col)', tA: false, tB: false, batch: 1, M: 16, N: 163840, K: 16 * 27 },
  ];
  // A batched matmul (per-head products outside the fused attention kernel, e.g. a study's attention).
  const batched: Shape[] = [{ name: 'batched 12x(256x256<-128)', tA: false, tB: true, batch: 12, M: 256, N: 256, K: 128 }];
  return QUICK ? [small[0]!, small[9]!, wan[3]!, conv[0]!] : [...small, ...wan, ...conv, ...batched];
}

const addon = getNativeAddon();
if (!addon) {
  process.stderr.write('gemm_paths: the native addon is not built (npm run build:native)\n');
  process.exit(1);
}
if (typeof addon.setGemmPath !== 'function') {
  process.stderr.write('gemm_paths: this addon build has no setGemmPath; rebuild it (npm run build:native)\n');
  process.exit(1);
}
addon.setNumThreads(THREADS);

function cpuName(): string {
  try {
    const l = execFileSync('lscpu', { encoding: 'utf8' });
    return /Model name:\s*(.+)/.exec(l)?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown (no lscpu)';
  }
}

function rand(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

type Path = 'onednn' | 'openblas';
const PATHS: Path[] = ['onednn', 'openblas'];

interface Row {
  name: string;
  gflop: number;
  ms: Record<Path, number>;
  /** process CPU time (user + system) per call: robust to other work on a shared machine when --threads 1 */
  cpuMs: Record<Path, number>;
  gflops: Record<Path, number>;
  faster: Path;
  ratio: number; // openblas time / onednn time
  cpuRatio: number; // the same with CPU times
}

// After a switch, wait until the other library's threads have gone to sleep: OpenBLAS's pthread workers spin for
// 2^28 cycles (~65 ms at 4 GHz, its default THREAD_TIMEOUT) after a call, and a oneDNN gemm that runs meanwhile shares
// the cores with them (measured: 64x512<-512 went from 0.14 ms to 8 ms). Only the library under test may run hot.
const SETTLE_MS = Number(opt('--settle-ms', '150'));
const sleeper = new Int32Array(new SharedArrayBuffer(4));
function switchTo(p: Path): void {
  addon!.setGemmPath!(p);
  if (SETTLE_MS > 0) Atomics.wait(sleeper, 0, 0, SETTLE_MS);
}

const rows: Row[] = [];
const v0 = addon.versions();
for (const s of shapes()) {
  const A = rand(s.batch * s.M * s.K, 1), B = rand(s.batch * s.K * s.N, 2), C = new Float32Array(s.batch * s.M * s.N);
  const gy = new Float32Array(C.length);
  const call = () => {
    addon.gemm(s.tA, s.tB, s.batch, s.M, s.N, s.K, 1, A, s.M * s.K, B, s.K * s.N, 0, C, s.M * s.N);
    if (s.gelu) addon.unary('gelu_tanh', C, gy);
  };
  // Calls per rep: enough for >= 20 ms on the faster path, found on a warm-up.
  for (const p of PATHS) {
    addon.setGemmPath(p);
    call();
  }
  addon.setGemmPath('onednn');
  const t0 = performance.now();
  call();
  const one = Math.max(performance.now() - t0, 1e-3);
  const inner = Math.max(1, Math.min(2000, Math.ceil(20 / one)));
  const times: Record<Path, number[]> = { onednn: [], openblas: [] };
  const cpu: Record<Path, number[]> = { onednn: [], openblas: [] };
  for (let r = 0; r < REPS; r++) {
    // Alternate which path goes first, so neither always runs right after the other's pool went idle.
    for (const p of r % 2 ? [...PATHS].reverse() : PATHS) {
      switchTo(p);
      call();
      const c0 = process.cpuUsage();
      const t = performance.now();
      for (let i = 0; i < inner; i++) call();
      times[p].push((performance.now() - t) / inner);
      const c = process.cpuUsage(c0);
      cpu[p].push((c.user + c.system) / 1e3 / inner);
    }
  }
  const gflop = (2 * s.batch * s.M * s.N * s.K) / 1e9;
  const ms = { onednn: median(times.onednn), openblas: median(times.openblas) };
  const row: Row = {
    name: s.name,
    gflop,
    ms,
    cpuMs: { onednn: median(cpu.onednn), openblas: median(cpu.openblas) },
    gflops: { onednn: gflop / (ms.onednn / 1e3), openblas: gflop / (ms.openblas / 1e3) },
    faster: ms.openblas < ms.onednn ? 'openblas' : 'onednn',
    ratio: ms.openblas / ms.onednn,
    cpuRatio: median(cpu.openblas) / median(cpu.onednn),
  };
  rows.push(row);
  if (!asJson) process.stderr.write(`  ${s.name}: done\n`);
}
addon.setGemmPath('auto');
const v = addon.versions();
// Geometric mean of the time ratios: > 1 means OpenBLAS is slower overall.
const geo = Math.exp(rows.reduce((a, r) => a + Math.log(r.ratio), 0) / rows.length);
const geoCpu = Math.exp(rows.reduce((a, r) => a + Math.log(r.cpuRatio), 0) / rows.length);
const info = {
  cpu: cpuName(),
  threads: THREADS,
  reps: REPS,
  dnnl: v.dnnl,
  dnnlIsa: v.dnnlIsa,
  openblas: v.openblas,
  openblasCore: v.openblasCore,
  simd: v.simd,
  gemmAuto: v.gemmAuto ?? v0.gemmAuto,
  env: Object.fromEntries(
    ['ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA', 'OPENBLAS_CORETYPE'].filter((k) => process.env[k]).map((k) => [k, process.env[k]]),
  ),
};
if (asJson) {
  process.stdout.write(JSON.stringify({ ...info, rows, geomeanRatio: geo, geomeanCpuRatio: geoCpu }, null, 2) + '\n');
} else {
  const w = Math.max(...rows.map((r) => r.name.length));
  const out: string[] = [];
  out.push(`CPU: ${info.cpu}; ${THREADS} threads; medians of ${REPS} reps`);
  out.push(`oneDNN ${info.dnnl} (${info.dnnlIsa}); ${info.openblas.split(' ').slice(0, 2).join(' ')} (core ${info.openblasCore})` +
    (Object.keys(info.env).length ? `; env ${JSON.stringify(info.env)}` : ''));
  out.push(`${'shape (M x N <- K)'.padEnd(w)}  ${'GFLOP'.padStart(7)}  ${'oneDNN ms'.padStart(10)} ${'GF/s'.padStart(6)}  ${'OpenBLAS ms'.padStart(11)} ${'GF/s'.padStart(6)}  ${'OB/DNNL'.padStart(7)}  ${'CPU OB/DNNL'.padStart(11)}`);
  for (const r of rows) {
    out.push(
      `${r.name.padEnd(w)}  ${r.gflop.toFixed(3).padStart(7)}  ${r.ms.onednn.toFixed(3).padStart(10)} ${r.gflops.onednn.toFixed(0).padStart(6)}  ` +
        `${r.ms.openblas.toFixed(3).padStart(11)} ${r.gflops.openblas.toFixed(0).padStart(6)}  ${r.ratio.toFixed(2).padStart(7)}  ${r.cpuRatio.toFixed(2).padStart(11)}`,
    );
  }
  out.push(`geometric mean of OpenBLAS/oneDNN time: ${geo.toFixed(2)} wall, ${geoCpu.toFixed(2)} CPU (> 1: oneDNN faster); the CPU table picks ${info.gemmAuto} here`);
  process.stdout.write(out.join('\n') + '\n');
}
