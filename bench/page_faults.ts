/**
 * Page faults and CPU time of a streaming DC-AE-V encode + decode with transparent huge pages on and off: the
 * measurement behind docs/benchmarks.md "Huge pages" (src/tensor/alloc.ts adviseLarge, native/src/addon.cc
 * adviseHugePages; DCVG_HUGE_PAGES=0 turns the advice off).
 *
 *   npm run bench:page-faults [-- --reps 3] [-- --frames 80] [-- --size 128] [-- --dir DIR] [-- --json]
 *
 * The workload is bench:dcaev's (the same reduced f32t4c32 model, written by `node dist/bench/dcaev.js --setup DIR`
 * unless --dir names a folder that holds one): the video streamed through the encoder chunk by chunk, then the latents
 * decoded chunk by chunk, native backend, 2 threads. Every run is a fresh child process with DCVG_HUGE_PAGES=1 or =0,
 * the two alternating (on/off, then off/on, ...) so drift in the machine's load falls on both; medians over --reps.
 * Each child counts, for the encode and the decode apart, minor and major page faults (getrusage through
 * process.resourceUsage()), process CPU time (all threads) and wall time; input generation and model loading are
 * outside the counted spans. Fault counts do not depend on the load; CPU time depends on it a little (cache and memory
 * bandwidth shared with other work), wall time a lot: the report names the CPU, the load before and after, and the
 * kernel's THP mode. OMP_WAIT_POLICY defaults to passive here (set it to override), so idle OpenMP threads do not spin
 * into the CPU time.
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, tmpdir } from 'node:os';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Tensor } from '../src/tensor/tensor.js';
import { tensor } from '../src/tensor/tensor.js';
import * as ops from '../src/tensor/ops.js';
import { getLargeAllocAdviser } from '../src/tensor/alloc.js';
import { configFromReference } from '../src/models/dcaev/config.js';
import { DCAEV, StreamingDecoder, StreamingEncoder, geometry, loadWeights } from '../src/models/dcaev/autoencoder.js';
import { cliArgs, median, useNativeBackend } from './profile.js';

const THREADS = 2;
const here = dirname(fileURLToPath(import.meta.url));
const { flag, opt } = cliArgs('usage: npm run bench:page-faults [-- --reps N] [-- --frames 80] [-- --size 128] [-- --dir DIR] [-- --json]');

/** What one child measures over one span (the encode or the decode). */
interface Span {
  minorFaults: number;
  majorFaults: number;
  cpuMs: number;
  wallMs: number;
}

interface ChildResult {
  hugePages: boolean;
  encode: Span;
  decode: Span;
  maxRssMb: number;
}

/** Accumulates faults, CPU and wall time over the calls of `fn` it wraps. */
function spanMeter(): { span: Span; run: <T>(fn: () => T) => T } {
  const span: Span = { minorFaults: 0, majorFaults: 0, cpuMs: 0, wallMs: 0 };
  return {
    span,
    run: (fn) => {
      const r0 = process.resourceUsage();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const out = fn();
      span.wallMs += performance.now() - t0;
      const c = process.cpuUsage(c0);
      const r1 = process.resourceUsage();
      span.cpuMs += (c.user + c.system) / 1000;
      span.minorFaults += r1.minorPageFault - r0.minorPageFault;
      span.majorFaults += r1.majorPageFault - r0.majorPageFault;
      return out;
    },
  };
}

/** Chunk `t0` of a smooth moving pattern, (1, 3, n, size, size) in [-1, 1]. */
function inputChunk(t0: number, n: number, size: number): Tensor {
  const d = new Float32Array(3 * n * size * size);
  for (let i = 0; i < d.length; i++) d[i] = Math.sin(i * 0.001 + t0);
  return tensor(d, [1, 3, n, size, size]);
}

function child(): void {
  useNativeBackend(THREADS);
  const dir = opt('--dir', '');
  const frames = Number(opt('--frames', '80'));
  const size = Number(opt('--size', '128'));
  const model = new DCAEV(configFromReference(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), 'bench'));
  loadWeights(model, join(dir, 'weights.safetensors'));
  const chunk = geometry(model).chunk!;
  const enc = spanMeter();
  const streamEnc = enc.run(() => new StreamingEncoder(model));
  const lat: Tensor[] = [];
  for (let t0 = 0; t0 < frames; t0 += chunk) {
    const x = inputChunk(t0, Math.min(chunk, frames - t0), size);
    const z = enc.run(() => streamEnc.push(x));
    if (z) lat.push(z);
  }
  const tail = enc.run(() => streamEnc.finish());
  if (tail) lat.push(tail);
  const zAll = ops.contiguous(lat.length === 1 ? lat[0]! : ops.cat(lat, 2));
  lat.length = 0;
  const dec = spanMeter();
  const streamDec = dec.run(() => new StreamingDecoder(model, frames));
  let framesOut = 0;
  for (let i = 0; i < zAll.shape[2]!; i += streamDec.latentChunk) {
    const zi = ops.slice(zAll, 2, i, Math.min(i + streamDec.latentChunk, zAll.shape[2]!));
    framesOut += dec.run(() => streamDec.push(zi))?.shape[2] ?? 0;
  }
  framesOut += dec.run(() => streamDec.finish())?.shape[2] ?? 0;
  if (framesOut !== frames) throw new Error(`decoded ${framesOut} frames, expected ${frames}`);
  const res: ChildResult = { hugePages: getLargeAllocAdviser() !== null, encode: enc.span, decode: dec.span, maxRssMb: process.resourceUsage().maxRSS / 1024 };
  process.stdout.write(JSON.stringify(res) + '\n');
}

function runChild(dir: string, huge: boolean, frames: number, size: number): ChildResult {
  const argv = [join(here, 'page_faults.js'), '--child', '--dir', dir, '--frames', String(frames), '--size', String(size)];
  const env = { ...process.env, DCVG_HUGE_PAGES: huge ? '1' : '0', OMP_NUM_THREADS: String(THREADS), OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'passive' };
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`child (DCVG_HUGE_PAGES=${env.DCVG_HUGE_PAGES}) failed (${r.status ?? r.signal}):\n${r.stderr}`);
  const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
  // the switch must have done what it says, or the comparison compares nothing
  if (res.hugePages !== huge) throw new Error(`DCVG_HUGE_PAGES=${env.DCVG_HUGE_PAGES}: the child ran with huge-page advice ${res.hugePages ? 'on' : 'off'} (is the addon built with adviseHugePages?)`);
  return res;
}

const fmtLoad = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const thpMode = () => {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1] ?? 'unknown';
  } catch {
    return 'unknown (no /sys/kernel/mm/transparent_hugepage)';
  }
};

function parent(): void {
  const reps = Number(opt('--reps', '3'));
  const frames = Number(opt('--frames', '80'));
  const size = Number(opt('--size', '128'));
  const json = flag('--json');
  const log = (s: string) => !json && process.stderr.write(s + '\n');
  let dir = opt('--dir', '');
  const made = !dir;
  if (made) {
    dir = mkdtempSync(join(tmpdir(), 'dcvg-page-faults-'));
    const r = spawnSync(process.execPath, [join(here, 'dcaev.js'), '--setup', dir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`writing the bench:dcaev model failed:\n${r.stderr}`);
  } else if (!existsSync(join(dir, 'weights.safetensors'))) throw new Error(`--dir ${dir} holds no weights.safetensors (make one with node dist/bench/dcaev.js --setup ${dir})`);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const loadBefore = fmtLoad();
  log(`bench:page-faults: ${frames} frames of ${size}x${size}, ${reps} rep(s) per setting, ${cpu}, ${THREADS} threads, THP ${thpMode()}, load ${loadBefore}`);
  const runs: Record<'on' | 'off', ChildResult[]> = { on: [], off: [] };
  try {
    for (let i = 0; i < reps; i++)
      for (const huge of i % 2 ? [false, true] : [true, false]) {
        const r = runChild(dir, huge, frames, size);
        runs[huge ? 'on' : 'off'].push(r);
        log(`  rep ${i + 1} huge pages ${huge ? 'on ' : 'off'}: encode ${r.encode.minorFaults} minor faults, ${r.encode.cpuMs.toFixed(0)} ms CPU, ${r.encode.wallMs.toFixed(0)} ms wall; decode ${r.decode.minorFaults}, ${r.decode.cpuMs.toFixed(0)} ms CPU, ${r.decode.wallMs.toFixed(0)} ms wall`);
      }
  } finally {
    if (made) rmSync(dir, { recursive: true, force: true });
  }
  const med = (rs: ChildResult[], phase: 'encode' | 'decode', k: keyof Span) => median(rs.map((r) => r[phase][k]));
  const summary = Object.fromEntries(
    (['on', 'off'] as const).map((s) => [
      s,
      Object.fromEntries(
        (['encode', 'decode'] as const).map((p) => [p, { minorFaults: Math.round(med(runs[s], p, 'minorFaults')), majorFaults: Math.round(med(runs[s], p, 'majorFaults')), cpuMs: Math.round(med(runs[s], p, 'cpuMs')), wallMs: Math.round(med(runs[s], p, 'wallMs')) }]),
      ),
    ]),
  ) as Record<'on' | 'off', Record<'encode' | 'decode', Span>>;
  const loadAfter = fmtLoad();
  const out = { cpu, threads: THREADS, thp: thpMode(), ompWaitPolicy: process.env.OMP_WAIT_POLICY ?? 'passive', frames, size, reps, loadBefore, loadAfter, medians: summary, runs };
  if (json) {
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  const rows = [['', 'minor faults', 'CPU ms', 'wall ms']];
  for (const p of ['encode', 'decode'] as const)
    for (const s of ['on', 'off'] as const) {
      const m = summary[s][p];
      rows.push([`${p}, huge pages ${s}`, String(m.minorFaults), String(m.cpuMs), String(m.wallMs)]);
    }
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  process.stdout.write(`medians of ${reps} (load ${loadBefore} before, ${loadAfter} after; ${cpu}, ${THREADS} threads):\n`);
  for (const r of rows) process.stdout.write(r.map((x, c) => (c ? x.padStart(w[c]!) : x.padEnd(w[c]!))).join('  ') + '\n');
  for (const p of ['encode', 'decode'] as const)
    process.stdout.write(`${p}: on / off  minor faults ${(summary.on[p].minorFaults / summary.off[p].minorFaults).toFixed(3)}, CPU ${(summary.on[p].cpuMs / summary.off[p].cpuMs).toFixed(3)}\n`);
}

try {
  if (flag('--child')) child();
  else parent();
} catch (e) {
  process.stderr.write(`bench:page-faults failed: ${(e as Error).stack ?? (e as Error).message}\n`);
  process.exit(1);
}
