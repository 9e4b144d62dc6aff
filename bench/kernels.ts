/**
 * Kernel benchmark: ours (native backend through the Tensor API, autograd included) vs PyTorch on the same machine,
 * interleaved rep by rep in one run so both see the same machine state. Medians of >= 5 reps, 2 threads.
 *
 *   npm run bench:kernels [-- --json] [-- --reps 7]
 *
 * PyTorch is Debian's python3-torch via /usr/bin/python3 (override with DCVG_TORCH_PYTHON); when it is missing the
 * torch columns are empty and a message says why.
 */
import { cpus, totalmem } from 'node:os';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '../src/index.js';
import { getNativeAddon, setBackend } from '../src/backend/index.js';
import { cliArgs, median } from './profile.js';
import { findTorch, TorchWorker } from './torch.js';

const { args } = cliArgs('usage: npm run bench:kernels [-- --json] [-- --reps N]');
const asJson = args.includes('--json');
const repsArg = args.indexOf('--reps');
const REPS = Math.max(5, repsArg >= 0 ? Number(args[repsArg + 1]) : 7);
const THREADS = 2;
const here = dirname(fileURLToPath(import.meta.url));
const root = [resolve(here, '..'), resolve(here, '..', '..')].find((p) => {
  try {
    readFileSync(join(p, 'package.json'));
    return true;
  } catch {
    return false;
  }
})!;

function log(msg: string): void {
  if (!asJson) process.stderr.write(msg + '\n');
}


// ---- our cases ---------------------------------------------------------------------------------------------------
interface Case {
  name: string;
  torch: string;
  flops: number;
  setup: () => () => void;
}

function cases(): Case[] {
  const list: Case[] = [];
  for (const n of [1024, 2048]) {
    list.push({
      name: `sgemm ${n}`,
      torch: `sgemm:${n}`,
      flops: 2 * n ** 3,
      setup: () => {
        const a = T.randn([n, n], 1);
        const b = T.randn([n, n], 2);
        return () => void T.matmul(a, b);
      },
    });
  }
  for (const [c, t, h] of [
    [128, 8, 32],
    [256, 8, 16],
  ] as const) {
    const f = 2 * c * t * h * h * c * 27;
    list.push({
      name: `conv3d fwd C=${c} T=${t} ${h}x${h}`,
      torch: `conv3d_fwd:${c}:${t}:${h}`,
      flops: f,
      setup: () => {
        const x = T.randn([1, c, t, h, h], 3);
        const w = T.randn([c, c, 3, 3, 3], 4, 0.02);
        const b = T.zeros([c]);
        return () => void T.noGrad(() => T.conv3d(x, w, b, { padding: 1 }));
      },
    });
    list.push({
      name: `conv3d fwd+bwd C=${c} T=${t} ${h}x${h}`,
      torch: `conv3d_fwdbwd:${c}:${t}:${h}`,
      flops: 3 * f,
      setup: () => {
        const x = T.parameter(T.randn([1, c, t, h, h], 3));
        const w = T.parameter(T.randn([c, c, 3, 3, 3], 4, 0.02));
        const b = T.parameter(T.zeros([c]));
        const g = T.randn([1, c, t, h, h], 5);
        return () => {
          x.grad = w.grad = b.grad = null;
          T.conv3d(x, w, b, { padding: 1 }).backward(g);
        };
      },
    });
  }
  const [H, L, D] = [12, 4096, 128];
  const af = 4 * H * L * L * D;
  list.push({
    name: `attention fwd ${L}x${H}x${D}`,
    torch: `attn_fwd:${H}:${L}:${D}`,
    flops: af,
    setup: () => {
      const [q, k, v] = [6, 7, 8].map((s) => T.randn([1, H, L, D], s));
      return () => void T.noGrad(() => T.attention(q!, k!, v!));
    },
  });
  list.push({
    name: `attention fwd+bwd ${L}x${H}x${D}`,
    torch: `attn_fwdbwd:${H}:${L}:${D}`,
    // forward 4, backward 10 (dV, dP, dQ, dK and the recomputed scores) multiply-adds per (i, j, d): count 3.5x fwd
    flops: 3.5 * af,
    setup: () => {
      const [q, k, v] = [6, 7, 8].map((s) => T.parameter(T.randn([1, H, L, D], s)));
      const g = T.randn([1, H, L, D], 9);
      return () => {
        q!.grad = k!.grad = v!.grad = null;
        T.attention(q!, k!, v!).backward(g);
      };
    },
  });
  return list;
}

async function main(): Promise<void> {
  const addon = getNativeAddon();
  if (!addon) throw new Error('native addon not built: run "npm run build:native" first');
  setBackend('native');
  addon.setNumThreads(THREADS);
  // The fp32 FMA ceiling: AVX-512 where the CPU has it (our kernels and oneDNN use it), else AVX2.
  const peakAvx2 = median([0, 1, 2].map(() => addon.peakGflops(THREADS, 0.3)));
  const peak512 = median([0, 1, 2].map(() => addon.peakGflopsAvx512(THREADS, 0.3)));
  const peak = Number.isFinite(peak512) ? Math.max(peak512, peakAvx2) : peakAvx2;
  const { python, why } = findTorch();
  const torch = python
    ? new TorchWorker(python, [join(root, 'bench', 'torch_worker.py'), String(THREADS)], THREADS, (t) => log(`[torch] ${t}`))
    : null;
  const torchInfo = torch ? ((await torch.next()) as { torch: string; threads: number }) : null;
  if (!torch) log(`PyTorch side skipped: ${why}`);
  const cpu = cpus()[0]?.model ?? 'unknown';
  const machine = {
    cpu,
    cores: cpus().length,
    mem_gib: Math.round(totalmem() / 2 ** 30),
    threads: THREADS,
    node: process.version,
    torch: torchInfo?.torch ?? null,
    ...addon.versions(),
  };
  log(`peak FMA ceiling (${THREADS} threads): ${peak.toFixed(1)} GFLOP/s (AVX2 only: ${peakAvx2.toFixed(1)}); ${REPS} reps, interleaved`);
  const results: { name: string; ours_ms: number; torch_ms: number | null; ratio: number | null; gflops: number; pct_peak: number }[] = [];
  for (const c of cases()) {
    const fn = c.setup();
    fn(); // warm-up: allocations, primitive caches
    if (torch) await torch.request(c.torch);
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const t0 = performance.now();
      fn();
      ours.push(performance.now() - t0);
      if (torch) theirs.push((await torch.request(c.torch)).ms as number);
    }
    const om = median(ours);
    const tm = theirs.length ? median(theirs) : null;
    const gflops = c.flops / (om * 1e6);
    const row = {
      name: c.name,
      ours_ms: +om.toFixed(2),
      torch_ms: tm === null ? null : +tm.toFixed(2),
      ratio: tm === null ? null : +(om / tm).toFixed(3),
      gflops: +gflops.toFixed(1),
      pct_peak: +((100 * gflops) / peak).toFixed(1),
    };
    results.push(row);
    log(
      `${row.name.padEnd(34)} ours ${String(row.ours_ms).padStart(9)} ms  torch ${String(row.torch_ms ?? '-').padStart(9)} ms  ratio ${String(row.ratio ?? '-').padStart(6)}  ${row.gflops} GFLOP/s (${row.pct_peak}% of peak)`,
    );
  }
  torch?.close();
  if (asJson) process.stdout.write(JSON.stringify({ machine, peak_gflops: +peak.toFixed(1), peak_avx2_gflops: +peakAvx2.toFixed(1), reps: REPS, cases: results }, null, 1) + '\n');
  else {
    process.stdout.write(`\n| case | ours ms | torch ms | ratio | GFLOP/s | % peak |\n|---|---:|---:|---:|---:|---:|\n`);
    for (const r of results)
      process.stdout.write(`| ${r.name} | ${r.ours_ms} | ${r.torch_ms ?? '-'} | ${r.ratio ?? '-'} | ${r.gflops} | ${r.pct_peak} |\n`);
    process.stdout.write(
      `\npeak ${peak.toFixed(1)} GFLOP/s (measured FMA ceiling, ${THREADS} threads; AVX2-only ceiling ${peakAvx2.toFixed(1)}); ${cpu}; torch ${machine.torch ?? 'absent'}\n`,
    );
  }
}

main().catch((e) => {
  process.stderr.write(`bench:kernels failed: ${(e as Error).message}\n`);
  process.exit(1);
});
