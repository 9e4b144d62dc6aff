/**
 * The native backend: a thin wrapper over the dcvg_native N-API addon (native/). Every addon export takes the same
 * arguments as the Backend method of the same name, flattened: a StridedView becomes (data, offset, strides[]), a
 * Conv3dParams becomes (xShape[5], wShape[5], yShape[5], stride[3], padding[6], groups), and `null` stands for an
 * absent optional array. The addon validates every argument again before touching memory.
 */
import { referenceBackend } from './reference.js';
import { createRequire } from 'node:module';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend, BinaryOp, Conv3dParams, ReduceOp, StridedView, UnaryOp } from './backend.js';
import { ValueError } from '../errors.js';
import { setLargeAllocAdviser } from '../tensor/alloc.js';

/** Signatures of the addon's exports (see native/src/*.cc). */
export interface NativeAddon {
  fill(out: Float32Array, value: number): void;
  stridedCopy(src: Float32Array, offset: number, strides: number[], shape: number[], out: Float32Array): void;
  stridedAccumulate(src: Float32Array, shape: number[], dst: Float32Array, offset: number, strides: number[]): void;
  stridedScatter(src: Float32Array, shape: number[], dst: Float32Array, offset: number, strides: number[]): void;
  unary(op: string, x: Float32Array, out: Float32Array): void;
  unaryBackward(op: string, x: Float32Array, y: Float32Array, gy: Float32Array, gx: Float32Array): void;
  affine(x: Float32Array, a: number, b: number, out: Float32Array): void;
  powScalar(x: Float32Array, p: number, out: Float32Array): void;
  binary(
    op: string,
    a: Float32Array,
    aOffset: number,
    aStrides: number[],
    b: Float32Array,
    bOffset: number,
    bStrides: number[],
    shape: number[],
    out: Float32Array,
  ): void;
  axpy(acc: Float32Array, x: Float32Array, scale: number): void;
  reduce(op: string, x: Float32Array, outer: number, r: number, inner: number, out: Float32Array): void;
  gemm(
    transA: boolean,
    transB: boolean,
    batch: number,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: Float32Array,
    strideA: number,
    B: Float32Array,
    strideB: number,
    beta: number,
    C: Float32Array,
    strideC: number,
  ): void;
  conv3dForward(
    xShape: number[],
    wShape: number[],
    yShape: number[],
    stride: number[],
    padding: number[],
    groups: number,
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | null,
    y: Float32Array,
  ): void;
  conv3dBackwardData(
    xShape: number[],
    wShape: number[],
    yShape: number[],
    stride: number[],
    padding: number[],
    groups: number,
    gy: Float32Array,
    w: Float32Array,
    gx: Float32Array,
  ): void;
  conv3dBackwardWeights(
    xShape: number[],
    wShape: number[],
    yShape: number[],
    stride: number[],
    padding: number[],
    groups: number,
    x: Float32Array,
    gy: Float32Array,
    gw: Float32Array,
    gb: Float32Array | null,
  ): void;
  softmax(x: Float32Array, rows: number, cols: number, log: boolean, out: Float32Array): void;
  softmaxBackward(y: Float32Array, gy: Float32Array, rows: number, cols: number, log: boolean, gx: Float32Array): void;
  norm(
    kind: string,
    x: Float32Array,
    outer: number,
    c: number,
    inner: number,
    w: Float32Array | null,
    b: Float32Array | null,
    eps: number,
    y: Float32Array,
    mean: Float32Array | null,
    rstd: Float32Array,
  ): void;
  normBackward(
    kind: string,
    x: Float32Array,
    outer: number,
    c: number,
    inner: number,
    w: Float32Array | null,
    mean: Float32Array | null,
    rstd: Float32Array,
    gy: Float32Array,
    gx: Float32Array,
    gw: Float32Array | null,
    gb: Float32Array | null,
  ): void;
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    bh: number,
    lq: number,
    lk: number,
    d: number,
    dv: number,
    scale: number,
    out: Float32Array,
    lse: Float32Array,
  ): void;
  attentionBackward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    out: Float32Array,
    lse: Float32Array,
    gout: Float32Array,
    bh: number,
    lq: number,
    lk: number,
    d: number,
    dv: number,
    scale: number,
    gq: Float32Array,
    gk: Float32Array,
    gv: Float32Array,
  ): void;
  adamw(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    step: number,
  ): void;
  sumSquares(x: Float32Array): number;
  /** bf16 / f16 bit patterns -> float32 (native/src/convert.cc; absent from addons built before it). */
  widen?(kind: string, src: Uint16Array, out: Float32Array): void;
  /** float32 -> bf16, round to nearest even. */
  narrowBf16?(src: Float32Array, out: Uint16Array): void;
  /** bf16-weight linear for few rows (native/src/convert.cc). */
  /** madvise(MADV_HUGEPAGE) on a fresh buffer's aligned interior (absent in addons built before it) */
  adviseHugePages?(buf: Float32Array): boolean;
  linearBf16?(x: Float32Array, w: Uint16Array, rows: number, O: number, I: number, out: Float32Array, accumulate: boolean): void;
  /** Runs an AVX2 FMA loop on `threads` threads for about `seconds`; returns the achieved GFLOP/s. */
  peakGflops(threads: number, seconds: number): number;
  /** The same with AVX-512 FMAs (NaN where the CPU lacks AVX-512): the fp32 ceiling our AVX-512 kernels run against. */
  peakGflopsAvx512(threads: number, seconds: number): number;
  /**
   * Which library runs `gemm`: "onednn" (dnnl_sgemm), "openblas" (cblas_sgemm), or "auto", the addon's table by CPU
   * (native/src/blas_conv.cc, gemm_auto_path). Set from DCVG_GEMM when the addon loads. Absent in addons built before it.
   */
  setGemmPath?(path: 'onednn' | 'openblas' | 'auto'): void;
  /** Threads the addon's own kernels and oneDNN use (OpenMP). */
  setNumThreads(n: number): void;
  getNumThreads(): number;
  /**
   * Library versions and the instruction sets in use, e.g. { dnnl: "2.6.3", openblas: "OpenBLAS 0.3.21 ...",
   * simd: "avx512" (what our own kernels were compiled for), dnnlIsa: "avx512_core_bf16" (what oneDNN dispatches to
   * here), openblasCore: "Haswell", gemmPath: "onednn" (the library `gemm` runs on now), gemmAuto: "onednn" (the
   * one the CPU table picks here; gemmPath differs from it only under DCVG_GEMM) }.
   */
  versions(): {
    dnnl: string;
    openblas: string;
    simd: string;
    dnnlIsa: string;
    openblasCore: string;
    gemmPath?: string;
    gemmAuto?: string;
  };
}

const here = dirname(fileURLToPath(import.meta.url));

/** Where the built addon may live, nearest first (works from src/ via tsx and from dist/src/). */
function candidatePaths(): string[] {
  const roots = [resolve(here, '..', '..'), resolve(here, '..', '..', '..')];
  return roots.map((r) => join(r, 'native', 'build', 'Release', 'dcvg_native.node'));
}

/**
 * The addon DCVG_NATIVE_ADDON names (relative to the working directory), checked; null when the variable is unset.
 * Set, it is the only place looked at: a run that asked for one build (say the AVX2-only one scripts/test-avx2.sh
 * makes) must not quietly load another, so a path that is not a built addon is an error, not a fallback.
 */
function envAddonPath(): string | null {
  const raw = process.env.DCVG_NATIVE_ADDON;
  if (raw === undefined || raw === '') return null;
  const p = resolve(raw);
  const bad = (why: string) => new ValueError(`DCVG_NATIVE_ADDON=${raw}: ${why}`);
  let st;
  try {
    st = statSync(p);
  } catch {
    throw bad('no such file (build one with "npm run build:native"; DCVG_MARCH=<march> builds into native/build-<march>/)');
  }
  if (!st.isFile()) throw bad('not a regular file (expected the built dcvg_native.node)');
  if (!p.endsWith('.node')) throw bad('not a Node addon (expected a path ending in .node)');
  return p;
}

export const GEMM_PATHS = ['onednn', 'openblas', 'auto'] as const;

/**
 * Applies DCVG_GEMM (onednn | openblas | auto; unset or empty: auto) to a freshly loaded addon. Anything else is a
 * ValueError naming the variable, never a silent fallback to the table's choice.
 */
function applyGemmEnv(addon: NativeAddon): void {
  const raw = process.env.DCVG_GEMM;
  if (raw === undefined || raw === '') return;
  const v = raw.trim().toLowerCase();
  if (!(GEMM_PATHS as readonly string[]).includes(v)) {
    throw new ValueError(`DCVG_GEMM=${raw}: not a GEMM path (expected ${GEMM_PATHS.join(', ')})`);
  }
  if (typeof addon.setGemmPath !== 'function') {
    throw new ValueError(`DCVG_GEMM=${raw}: this native addon predates DCVG_GEMM; rebuild it with "npm run build:native"`);
  }
  addon.setGemmPath(v as (typeof GEMM_PATHS)[number]);
}

/**
 * Large new tensors get transparent huge pages (src/tensor/alloc.ts, adviseLarge): fewer page faults on first touch.
 * On by default; DCVG_HUGE_PAGES=0 turns it off.
 */
function installAdviser(mod: NativeAddon): void {
  if (typeof mod.adviseHugePages !== 'function' || process.env.DCVG_HUGE_PAGES === '0') return;
  const f = mod.adviseHugePages.bind(mod);
  setLargeAllocAdviser((a) => f(a));
}

let cached: NativeAddon | null | undefined;
let loadError = '';

/**
 * Loads the addon once; returns null (and remembers why) if it is not built or cannot load. Throws a ValueError
 * when DCVG_NATIVE_ADDON names an addon that is missing or does not load.
 */
export function loadNativeAddon(): NativeAddon | null {
  if (cached !== undefined) return cached;
  const require = createRequire(import.meta.url);
  const explicit = envAddonPath();
  if (explicit) {
    let mod: NativeAddon;
    try {
      mod = require(explicit) as NativeAddon;
    } catch (e) {
      throw new ValueError(`DCVG_NATIVE_ADDON=${process.env.DCVG_NATIVE_ADDON}: cannot load: ${(e as Error).message}`);
    }
    applyGemmEnv(mod);
    installAdviser(mod);
    cached = mod;
    return cached;
  }
  const tried: string[] = [];
  for (const p of candidatePaths()) {
    if (!existsSync(p)) {
      tried.push(`${p} (missing)`);
      continue;
    }
    let mod: NativeAddon;
    try {
      mod = require(p) as NativeAddon;
    } catch (e) {
      tried.push(`${p} (${(e as Error).message})`);
      continue;
    }
    applyGemmEnv(mod); // a bad DCVG_GEMM is an error, not a reason to try the next build
    installAdviser(mod);
    cached = mod;
    return cached;
  }
  loadError = `native addon not available; build it with "npm run build:native". Tried: ${tried.join('; ')}`;
  cached = null;
  return null;
}

export function nativeLoadError(): string {
  return loadError;
}

export function createNativeBackend(addon: NativeAddon): Backend {
  const a = addon;
  return {
    name: 'native',
    fill: (out, value) => a.fill(out, value),
    stridedCopy: (src: StridedView, shape, out) => a.stridedCopy(src.data, src.offset, [...src.strides], [...shape], out),
    stridedAccumulate: (src, shape, dst: StridedView) =>
      a.stridedAccumulate(src, [...shape], dst.data, dst.offset, [...dst.strides]),
    stridedScatter: (src, shape, dst: StridedView) => a.stridedScatter(src, [...shape], dst.data, dst.offset, [...dst.strides]),
    unary: (op: UnaryOp, x, out) => a.unary(op, x, out),
    unaryBackward: (op: UnaryOp, x, y, gy, gx) => a.unaryBackward(op, x, y, gy, gx),
    affine: (x, s, b, out) => a.affine(x, s, b, out),
    powScalar: (x, p, out) => a.powScalar(x, p, out),
    binary: (op: BinaryOp, x: StridedView, y: StridedView, shape, out) =>
      a.binary(op, x.data, x.offset, [...x.strides], y.data, y.offset, [...y.strides], [...shape], out),
    axpy: (acc, x, scale) => a.axpy(acc, x, scale),
    reduce: (op: ReduceOp, x, outer, r, inner, out) => a.reduce(op, x, outer, r, inner, out),
    gemm: (tA, tB, batch, M, N, K, alpha, A, sA, B, sB, beta, C, sC) =>
      a.gemm(tA, tB, batch, M, N, K, alpha, A, sA, B, sB, beta, C, sC),
    conv3dForward: (p: Conv3dParams, x, w, bias, y) =>
      a.conv3dForward([...p.xShape], [...p.wShape], [...p.yShape], [...p.stride], [...p.padding], p.groups, x, w, bias, y),
    conv3dBackwardData: (p, gy, w, gx) =>
      a.conv3dBackwardData([...p.xShape], [...p.wShape], [...p.yShape], [...p.stride], [...p.padding], p.groups, gy, w, gx),
    conv3dBackwardWeights: (p, x, gy, gw, gb) =>
      a.conv3dBackwardWeights(
        [...p.xShape],
        [...p.wShape],
        [...p.yShape],
        [...p.stride],
        [...p.padding],
        p.groups,
        x,
        gy,
        gw,
        gb,
      ),
    softmax: (x, rows, cols, log, out) => a.softmax(x, rows, cols, log, out),
    softmaxBackward: (y, gy, rows, cols, log, gx) => a.softmaxBackward(y, gy, rows, cols, log, gx),
    norm: (kind, x, outer, c, inner, w, b, eps, y, mean, rstd) => a.norm(kind, x, outer, c, inner, w, b, eps, y, mean, rstd),
    normBackward: (kind, x, outer, c, inner, w, mean, rstd, gy, gx, gw, gb) =>
      a.normBackward(kind, x, outer, c, inner, w, mean, rstd, gy, gx, gw, gb),
    attention: (q, k, v, bh, lq, lk, d, dv, scale, out, lse) => a.attention(q, k, v, bh, lq, lk, d, dv, scale, out, lse),
    attentionBackward: (q, k, v, out, lse, gout, bh, lq, lk, d, dv, scale, gq, gk, gv) =>
      a.attentionBackward(q, k, v, out, lse, gout, bh, lq, lk, d, dv, scale, gq, gk, gv),
    adamw: (p, g, m, v, lr, b1, b2, eps, wd, step) => a.adamw(p, g, m, v, lr, b1, b2, eps, wd, step),
    sumSquares: (x) => a.sumSquares(x),
    // Memory-bound and rare (once per optimizer step): the reference loop is as fast as a native call here.
    ema: (shadow, x, decay) => referenceBackend.ema(shadow, x, decay),
    // Memory-bound and once per sampler step: the reference loop (double accumulation) serves here too.
    lincomb: (coefs, xs, out) => referenceBackend.lincomb(coefs, xs, out),
    // An addon built before the conversion kernels existed falls back to the reference loops.
    widen: a.widen ? (kind, src, out) => a.widen!(kind, src, out) : referenceBackend.widen,
    narrowBf16: a.narrowBf16 ? (src, out) => a.narrowBf16!(src, out) : referenceBackend.narrowBf16,
    linearBf16: a.linearBf16 ? (x, w, rows, O, I, out, acc) => a.linearBf16!(x, w, rows, O, I, out, acc) : referenceBackend.linearBf16,
  };
}
