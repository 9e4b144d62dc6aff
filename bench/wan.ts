/**
 * Wan-2.1 DiT benchmark: ours (native backend, 2 threads) vs a PyTorch module of the same architecture written from
 * the spec (bench/torch_wan.py, original Wan key names, loads the same safetensors strictly).
 *
 *   npm run bench:wan [-- --json] [-- --reps 7] [-- --steps 1] [-- --tokens 7800,17600] [-- --no-sampling]
 *                     [-- --no-train] [-- --profile]
 *
 * a) training step of a small DiT: forward + backward of loss = sum(out * g) w.r.t. every parameter, and forward
 *    only; the same random weights and inputs on both sides; ours in this process, torch in a persistent worker,
 *    interleaved rep by rep (ours, torch, ours, ...), medians. Before timing, ours is checked against torch: the
 *    output and every parameter gradient (relative error max|ours - torch| / max|torch| < 1e-4). The torch module
 *    itself is also checked against the official-Wan fixtures (../shared/fixtures/wan) when they are present.
 * b) sampling with a 2-layer, 1536-wide model (the 1.3B's block, DC-VideoGen patch 1x1x1, 32 channels) at 7,800
 *    tokens (32x20x15x26, 480x832) and 17,600 tokens (32x20x22x40, 704x1280): UniPC with classifier-free guidance
 *    (two forward passes per step), every run a fresh child process reporting its peak RSS (VmHWM / ru_maxrss);
 *    ours and torch alternate. Checked: the first velocity and the final latents of both sides against each other.
 *    Default: 1 UniPC step with CFG = 2 forwards per side and token count (one forward of this model is ~2.1 TFLOP at
 *    7,800 tokens and ~6.8 TFLOP at 17,600: 6-60 s per forward on 2 cores; the whole benchmark then takes ~4.5
 *    minutes on an idle 2-core Zen 5, most of it torch). `--steps 4` gives the 8-forward run (~4x the sampling
 *    time, ~15 minutes in all).
 *
 * PyTorch is Debian's python3-torch 1.13 via /usr/bin/python3 (override with DCVG_TORCH_PYTHON). It has no fused
 * attention; the torch module processes attention in blocks of 1024 queries (exact), since the unchunked score matrix
 * at 17,600 tokens would be 12 x 17600^2 floats = 14.9 GB (plus as much again for the softmax output).
 *
 * --profile: where the time goes, per op type. Ours: every native-backend call timed and grouped (linear = gemm,
 * attention, norms, softmax, elementwise, copies = strided gather/scatter behind permute/cat/slice/pad, reductions;
 * "outside kernels" = the rest: JS, allocation, GC); torch: the autograd-profiler self-time table. Runs the small
 * training step (5 reps) and one guided sampling step at the first --tokens value.
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor, noGrad } from '../src/tensor/tensor.js';
import { Rng } from '../src/tensor/random.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { backendByName, getNativeAddon, setBackend } from '../src/backend/index.js';
import type { Backend } from '../src/backend/backend.js';
import { profiledBackend, tally, type ProfRow, median, cliArgs, useNativeBackend } from './profile.js';
import { findTorch, procStatusMb, readF32, relErr, TorchWorker } from './torch.js';
import { randomWeights, randn, textContext } from './wan_inputs.js';
import { WanModel, parseWanConfig, loadWanWeights, type WanConfig } from '../src/models/wan/index.js';
import { sample, flowSchedule } from '../src/diffusion/index.js';

const THREADS = 2;
const SEED = 20240;
const ATTN_CHUNK = 1024;
const here = dirname(fileURLToPath(import.meta.url));
const root = [resolve(here, '..'), resolve(here, '..', '..')].find((p) => existsSync(join(p, 'package.json')))!;
const { flag, opt } = cliArgs('usage: npm run bench:wan [-- --json] [-- --no-sampling] [-- --steps N] [-- --profile]');
const asJson = flag('--json');
const log = (msg: string) => {
  if (!asJson || flag('--child-sample')) process.stderr.write(msg + '\n');
};

// ---- configs ---------------------------------------------------------------------------------------------------

/**
 * a) The small DiT: Wan's block at width 512 with head dim 128 (as in every released Wan), DC-VideoGen layout
 * (patch 1x1x1, 32 latent channels), 64 text tokens of width 512; latent 32x5x16x16 = 1,280 tokens.
 */
const SMALL = {
  model_type: 't2v',
  patch_size: [1, 1, 1],
  text_len: 64,
  in_dim: 32,
  dim: 512,
  ffn_dim: 2048,
  freq_dim: 256,
  text_dim: 512,
  out_dim: 32,
  num_heads: 4,
  num_layers: 4,
  eps: 1e-6,
};
const SMALL_LATENT = [1, 32, 5, 16, 16];
const SMALL_T = 500;
const SMALL_TEXT_TOKENS = 40;

/** b) Two blocks of the DC-VideoGen-Wan2.1-T2V-1.3B: width 1536, 12 heads, FFN 8960, umT5 context 512 x 4096. */
const BIG = {
  model_type: 't2v',
  patch_size: [1, 1, 1],
  text_len: 512,
  in_dim: 32,
  dim: 1536,
  ffn_dim: 8960,
  freq_dim: 256,
  text_dim: 4096,
  out_dim: 32,
  num_heads: 12,
  num_layers: 2,
  eps: 1e-6,
};
const LATENTS: Record<string, number[]> = {
  '7800': [1, 32, 20, 15, 26],
  '17600': [1, 32, 20, 22, 40],
};
/** non-pad tokens of the conditional / unconditional prompt embeddings (the rest of the 512 rows are zeros) */
const COND_TOKENS = 120;
const UNCOND_TOKENS = 60;

// ---- helpers ---------------------------------------------------------------------------------------------------






const useNative = (b?: Backend): void => useNativeBackend(THREADS, b);

function paramCount(cfg: WanConfig): number {
  return new WanModel(cfg).parameterCount();
}

// ---- profiling: time per native-backend call, grouped by op type ------------------------------------------------

const prof = new Map<string, ProfRow>();
const profGemm = new Map<string, ProfRow>();

function category(k: string): string {
  if (k === 'gemm') return 'linear / matmul (gemm)';
  if (k.startsWith('attention')) return k === 'attention' ? 'attention fwd (native kernel)' : 'attention bwd (native kernel)';
  if (k.startsWith('norm')) return k === 'norm' ? 'norms fwd (layer / rms)' : 'norms bwd';
  if (k.startsWith('softmax')) return 'softmax';
  if (['binary', 'unary', 'unaryBackward', 'affine', 'axpy', 'powScalar', 'fill'].includes(k)) return 'elementwise (binary / unary / affine / axpy / fill)';
  if (k.startsWith('strided')) return 'copies (strided gather / scatter: permute, cat, slice, pad)';
  if (k === 'reduce' || k === 'sumSquares') return 'reductions (sum / max)';
  return k;
}

/** Times one kernel call into the category table (and gemm shapes into their own table). */
function record(k: string, a: unknown[], ms: number): void {
  let flops = 0;
  if (k === 'gemm') {
    const [transA, transB, batch, M, N, K] = a as [boolean, boolean, number, number, number, number];
    flops = 2 * batch * M * N * K;
    tally(profGemm, `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} ${batch > 1 ? batch + 'x' : ''}${M}x${N}x${K}`, ms, flops);
  } else if (k === 'attention' || k === 'attentionBackward') {
    const n = a.slice(k === 'attention' ? 3 : 6) as number[];
    const [bh, lq, lk, d, dv] = n;
    flops = 2 * bh! * lq! * lk! * (d! + dv!) * (k === 'attention' ? 1 : 2.5);
  }
  tally(prof, category(k), ms, flops);
}

function profTable(totalMs: number): { op: string; ms: number; pct: number; calls: number; gflops: number | null }[] {
  const rows = [...prof.entries()].map(([op, e]) => ({
    op,
    ms: +e.ms.toFixed(1),
    pct: +((100 * e.ms) / totalMs).toFixed(1),
    calls: e.calls,
    gflops: e.flops ? +(e.flops / (e.ms * 1e6)).toFixed(1) : null,
  }));
  const inside = [...prof.values()].reduce((s, e) => s + e.ms, 0);
  rows.push({ op: 'outside kernels (JS, allocation, GC)', ms: +(totalMs - inside).toFixed(1), pct: +((100 * (totalMs - inside)) / totalMs).toFixed(1), calls: 0, gflops: null });
  return rows.sort((a, b) => b.ms - a.ms);
}

function gemmTable(totalMs: number, top = 12) {
  return [...profGemm.entries()]
    .map(([shape, e]) => ({ shape, ms: +e.ms.toFixed(1), pct: +((100 * e.ms) / totalMs).toFixed(1), calls: e.calls, gflops: +(e.flops / (e.ms * 1e6)).toFixed(1) }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, top);
}

// ---- torch worker (part a) ---------------------------------------------------------------------------------------

/** The torch side of part a: bench/torch_wan.py's worker on the small DiT's files in `dir`. */
function wanWorker(python: string, dir: string): TorchWorker {
  const argv = [join(root, 'bench', 'torch_wan.py'), 'worker', '--config', join(dir, 'small.json'), '--weights', join(dir, 'small.safetensors'), '--inputs', join(dir, 'small_io.safetensors'), '--threads', String(THREADS)];
  return new TorchWorker(python, argv, THREADS, (t) => log(`[torch] ${t}`));
}

// ---- part a: training step of the small DiT -----------------------------------------------------------------------

interface TrainResult {
  config: typeof SMALL & { latent: number[]; tokens: number; params: number; t: number; text_tokens: number };
  reps: number;
  fwd_bwd: { ours_ms: number; torch_ms: number | null; ratio: number | null; ours_best_ms: number; torch_best_ms: number | null };
  fwd: { ours_ms: number; torch_ms: number | null; ratio: number | null; ours_best_ms: number; torch_best_ms: number | null };
  parity: { out_rel_err: number; grad_max_rel_err: number; grad_worst_key: string; ok: boolean } | null;
  gflop_fwd: number;
}

function smallSetup(dir: string): { model: WanModel; x: Tensor; ctx: Tensor; g: Tensor } {
  const cfg = parseWanConfig(SMALL, 'bench-small');
  writeFileSync(join(dir, 'small.json'), JSON.stringify(SMALL));
  const model = new WanModel(cfg);
  const w = randomWeights(model, SEED);
  saveSafetensors(join(dir, 'small.safetensors'), w);
  model.loadStateDict(w);
  const rng = new Rng(SEED + 1);
  const x = randn(SMALL_LATENT, rng);
  const ctx = textContext(SMALL.text_len, SMALL.text_dim, SMALL_TEXT_TOKENS, rng);
  const g = randn(SMALL_LATENT, rng);
  saveSafetensors(join(dir, 'small_io.safetensors'), { x, t: new Tensor(new Float32Array([SMALL_T]), [1]), context: ctx, g });
  return { model, x, ctx, g };
}

/** Forward FLOPs (multiply-adds x 2) of the linear layers and attention for N tokens. */
function forwardFlops(c: { dim: number; ffn_dim: number; num_layers: number; text_len: number; text_dim: number; in_dim: number; out_dim: number }, N: number): number {
  const D = c.dim;
  const L = c.text_len;
  const perLayer = 2 * N * D * D * 4 + 2 * N * D * D * 2 + 2 * L * D * D * 2 + 2 * N * D * c.ffn_dim * 2 + 4 * N * N * D + 4 * N * L * D;
  return c.num_layers * perLayer + 2 * L * (c.text_dim * D + D * D) + 2 * N * D * (c.in_dim + c.out_dim);
}

async function partTrain(dir: string, python: string | null, reps: number): Promise<TrainResult> {
  const { model, x, ctx, g } = smallSetup(dir);
  const params = model.namedParams();
  const t = [SMALL_T];
  const fwd = () => noGrad(() => model.forward(x, t, ctx));
  const fwdbwd = () => {
    for (const [, p] of params) p.value.grad = null;
    const out = model.forward(x, t, ctx);
    out.backward(g);
    return out;
  };
  const tokens = SMALL_LATENT.slice(2).reduce((a, b) => a * b, 1);
  const torch = python ? wanWorker(python, dir) : null;
  let parity: TrainResult['parity'] = null;
  if (torch) {
    await torch.next(); // ready line
    const dump = join(dir, 'small_torch_dump.safetensors');
    await torch.request(`dump ${dump}`);
    const out = fwdbwd();
    const f = SafetensorsFile.open(dump);
    try {
      const outErr = relErr(out.readSync(), f.tensor('out').readSync());
      let worst = 0;
      let worstKey = '';
      for (const [k, p] of params) {
        const e = relErr(p.value.grad!.readSync(), f.tensor(`grad.${k}`).readSync());
        if (e > worst) [worst, worstKey] = [e, k];
      }
      parity = { out_rel_err: outErr, grad_max_rel_err: worst, grad_worst_key: worstKey, ok: outErr < 1e-4 && worst < 1e-4 };
    } finally {
      f.close();
    }
    log(
      `parity (small DiT, same weights and inputs): out rel err ${parity.out_rel_err.toExponential(2)}, worst gradient rel err ${parity.grad_max_rel_err.toExponential(2)} (${parity.grad_worst_key}) -> ${parity.ok ? 'OK' : 'MISMATCH'}`,
    );
  }
  const res: Record<'fwd' | 'fwdbwd', { ours: number[]; torch: number[] }> = { fwd: { ours: [], torch: [] }, fwdbwd: { ours: [], torch: [] } };
  for (const kind of ['fwdbwd', 'fwd'] as const) {
    const fn = kind === 'fwd' ? fwd : fwdbwd;
    fn(); // warm-up
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      fn();
      res[kind].ours.push(performance.now() - t0);
      if (torch) res[kind].torch.push((await torch.request(kind)).ms as number);
      log(
        `small DiT ${kind.padEnd(6)} rep ${r + 1}/${reps}: ours ${res[kind].ours[r]!.toFixed(0).padStart(6)} ms` +
          (torch ? `  torch ${res[kind].torch[r]!.toFixed(0).padStart(6)} ms` : ''),
      );
    }
  }
  torch?.close('quit');
  const summ = (k: 'fwd' | 'fwdbwd') => {
    const o = median(res[k].ours);
    const tm = res[k].torch.length ? median(res[k].torch) : null;
    return {
      ours_ms: +o.toFixed(1),
      torch_ms: tm === null ? null : +tm.toFixed(1),
      ratio: tm === null ? null : +(o / tm).toFixed(3),
      ours_best_ms: +Math.min(...res[k].ours).toFixed(1),
      torch_best_ms: tm === null ? null : +Math.min(...res[k].torch).toFixed(1),
    };
  };
  return {
    config: { ...SMALL, latent: SMALL_LATENT, tokens, params: model.parameterCount(), t: SMALL_T, text_tokens: SMALL_TEXT_TOKENS },
    reps,
    fwd_bwd: summ('fwdbwd'),
    fwd: summ('fwd'),
    parity,
    gflop_fwd: +(forwardFlops(SMALL, tokens) / 1e9).toFixed(2),
  };
}

// ---- part b: sampling (children) ------------------------------------------------------------------------------------

interface SampleRun {
  side: 'ours' | 'torch';
  tokens: number;
  forward_ms: number[];
  total_ms: number;
  peak_rss_mb: number;
  rss_after_load_mb: number;
  final_sum: number;
  final_abs: number;
  timesteps: number[];
  profile?: unknown;
  gemm?: unknown;
}

function bigSetup(dir: string, tokensList: string[]): void {
  const cfg = parseWanConfig(BIG, 'bench-big');
  writeFileSync(join(dir, 'big.json'), JSON.stringify(BIG));
  const model = new WanModel(cfg);
  const w = randomWeights(model, SEED + 10);
  saveSafetensors(join(dir, 'big.safetensors'), w);
  w.clear();
  const rng = new Rng(SEED + 11);
  const io: Record<string, Tensor> = {
    ctx_cond: textContext(BIG.text_len, BIG.text_dim, COND_TOKENS, rng),
    ctx_uncond: textContext(BIG.text_len, BIG.text_dim, UNCOND_TOKENS, rng),
  };
  for (const k of tokensList) io[`noise_${k}`] = randn(LATENTS[k]!, new Rng(SEED + 100 + Number(k)));
  saveSafetensors(join(dir, 'big_io.safetensors'), io);
}

/** Our side of one sampling run (child process): prints one JSON line. */
function childSample(): void {
  const profile = flag('--profile');
  useNative(profile ? profiledBackend(backendByName('native'), record) : undefined);
  const dir = opt('--dir', '');
  const key = opt('--noise', '');
  const steps = Number(opt('--steps', '1'));
  const shift = Number(opt('--shift', '5'));
  const guidance = Number(opt('--guidance', '5'));
  const dumpPrefix = opt('--dump-prefix', '');
  const model = new WanModel(parseWanConfig(JSON.parse(readFileSync(join(dir, 'big.json'), 'utf8')), 'bench-big'));
  loadWanWeights(model, join(dir, 'big.safetensors'));
  const f = SafetensorsFile.open(join(dir, 'big_io.safetensors'));
  const noise = f.tensor(key);
  const cond = f.tensor('ctx_cond');
  const uncond = f.tensor('ctx_uncond');
  f.close();
  const rssLoaded = procStatusMb('VmHWM');
  const forwardMs: number[] = [];
  const timed = (ctx: Tensor) => (x: Tensor, t: number, _sigma: number, step: number) => {
    const t0 = performance.now();
    const v = noGrad(() => model.forward(x, [t], ctx));
    forwardMs.push(performance.now() - t0);
    if (step === 0 && ctx === cond && dumpPrefix) writeFileSync(`${dumpPrefix}.v0.f32`, v.readSync());
    return v;
  };
  const schedule = flowSchedule(steps, shift);
  prof.clear();
  const t0 = performance.now();
  const out = sample({ model: timed(cond), noise, schedule, solver: 'unipc', guidance: guidance === 1 ? undefined : { scale: guidance, uncond: timed(uncond) } });
  const total = performance.now() - t0;
  if (dumpPrefix) writeFileSync(`${dumpPrefix}.final.f32`, out.readSync());
  const d = out.readSync();
  let s = 0;
  let a = 0;
  for (let i = 0; i < d.length; i++) {
    s += d[i]!;
    a += Math.abs(d[i]!);
  }
  const r: SampleRun = {
    side: 'ours',
    tokens: noise.shape.slice(2).reduce((x, y) => x * y, 1),
    forward_ms: forwardMs,
    total_ms: total,
    peak_rss_mb: procStatusMb('VmHWM'),
    rss_after_load_mb: rssLoaded,
    final_sum: s,
    final_abs: a,
    timesteps: [...schedule.timesteps],
    ...(profile ? { profile: profTable(total), gemm: gemmTable(total) } : {}),
  };
  process.stdout.write(JSON.stringify(r) + '\n');
}

function runChild(cmd: string, argv: string[]): SampleRun | { error: string } {
  const r = spawnSync(cmd, argv, {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, OMP_NUM_THREADS: String(THREADS) },
  });
  if (r.status !== 0) {
    const why = r.signal ? `killed by ${r.signal}${r.signal === 'SIGKILL' ? ' (out of memory?)' : ''}` : `exit ${r.status}`;
    return { error: `${why}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}` };
  }
  const line = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as SampleRun;
}

interface SampleRow {
  tokens: number;
  latent: number[];
  ours: SampleSide | null;
  torch: SampleSide | null;
  ours_error?: string;
  torch_error?: string;
  ratio_total: number | null;
  ratio_forward: number | null;
  check: { v0_rel_err: number; final_rel_err: number } | null;
  gflop_forward: number;
}

interface SampleSide {
  forwards: number;
  forward_ms_median: number;
  forward_ms_min: number;
  total_ms: number;
  peak_rss_mb: number;
  rss_after_load_mb: number;
  gflops: number;
  /** total - sum of the forwards: CFG combination, solver updates, timestep handling */
  outside_forwards_ms: number;
}

function side(r: SampleRun, flopsFwd: number): SampleSide {
  const m = median(r.forward_ms);
  return {
    forwards: r.forward_ms.length,
    forward_ms_median: Math.round(m),
    forward_ms_min: Math.round(Math.min(...r.forward_ms)),
    total_ms: Math.round(r.total_ms),
    peak_rss_mb: Math.round(r.peak_rss_mb),
    rss_after_load_mb: Math.round(r.rss_after_load_mb),
    gflops: +(flopsFwd / (m * 1e6)).toFixed(1),
    outside_forwards_ms: Math.round(r.total_ms - r.forward_ms.reduce((a, b) => a + b, 0)),
  };
}

function partSample(dir: string, python: string | null, tokensList: string[], steps: number, shift: number, guidance: number): SampleRow[] {
  const self = fileURLToPath(import.meta.url);
  const rows: SampleRow[] = [];
  tokensList.forEach((k, idx) => {
    const latent = LATENTS[k]!;
    const N = latent.slice(2).reduce((a, b) => a * b, 1);
    const flopsFwd = forwardFlops(BIG, N);
    const common = ['--steps', String(steps), '--shift', String(shift), '--guidance', String(guidance)];
    const order: ('ours' | 'torch')[] = idx % 2 === 0 ? ['ours', 'torch'] : ['torch', 'ours'];
    const got: Partial<Record<'ours' | 'torch', SampleRun | { error: string }>> = {};
    for (const s of order) {
      if (s === 'torch' && !python) continue;
      log(`sampling ${N} tokens (${latent.join('x')}): ${s} ...`);
      const prefix = join(dir, `${s}_${k}`);
      const r =
        s === 'ours'
          ? runChild(process.execPath, [self, '--child-sample', '--dir', dir, '--noise', `noise_${k}`, '--dump-prefix', prefix, ...common])
          : runChild(python!, [
              join(root, 'bench', 'torch_wan.py'),
              'sample',
              '--config',
              join(dir, 'big.json'),
              '--weights',
              join(dir, 'big.safetensors'),
              '--inputs',
              join(dir, 'big_io.safetensors'),
              '--noise',
              `noise_${k}`,
              '--threads',
              String(THREADS),
              '--attn-chunk',
              String(ATTN_CHUNK),
              '--dump-prefix',
              prefix,
              ...common,
            ]);
      got[s] = r;
      if ('error' in r) log(`  ${s} failed: ${r.error}`);
      else
        log(
          `  ${s}: ${r.forward_ms.length} forwards, per forward ${r.forward_ms.map((v) => v.toFixed(0)).join(' / ')} ms, total ${r.total_ms.toFixed(0)} ms, peak RSS ${r.peak_rss_mb.toFixed(0)} MB`,
        );
    }
    const ok = (r: SampleRun | { error: string } | undefined): r is SampleRun => !!r && !('error' in r);
    const o = ok(got.ours) ? side(got.ours, flopsFwd) : null;
    const t = ok(got.torch) ? side(got.torch, flopsFwd) : null;
    let check: SampleRow['check'] = null;
    if (o && t) {
      check = {
        v0_rel_err: relErr(readF32(join(dir, `ours_${k}.v0.f32`)), readF32(join(dir, `torch_${k}.v0.f32`))),
        final_rel_err: relErr(readF32(join(dir, `ours_${k}.final.f32`)), readF32(join(dir, `torch_${k}.final.f32`))),
      };
      log(`  check: first velocity rel err ${check.v0_rel_err.toExponential(2)}, final latents rel err ${check.final_rel_err.toExponential(2)}`);
    }
    for (const s of ['ours', 'torch']) rmSync(join(dir, `${s}_${k}.v0.f32`), { force: true }), rmSync(join(dir, `${s}_${k}.final.f32`), { force: true });
    rows.push({
      tokens: N,
      latent,
      ours: o,
      torch: t,
      ...(got.ours && 'error' in got.ours ? { ours_error: got.ours.error } : {}),
      ...(got.torch && 'error' in got.torch ? { torch_error: got.torch.error } : {}),
      ratio_total: o && t ? +(o.total_ms / t.total_ms).toFixed(3) : null,
      ratio_forward: o && t ? +(o.forward_ms_median / t.forward_ms_median).toFixed(3) : null,
      check,
      gflop_forward: +(flopsFwd / 1e9).toFixed(1),
    });
  });
  return rows;
}

// ---- profile mode --------------------------------------------------------------------------------------------------

async function profileMain(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-wan-'));
  const { python } = findTorch();
  const out: Record<string, unknown> = {};
  let md = '';
  const fmtProf = (rows: ReturnType<typeof profTable>) =>
    `| op type | ms | % | calls | GFLOP/s |\n|---|---:|---:|---:|---:|\n` + rows.map((r) => `| ${r.op} | ${r.ms} | ${r.pct} | ${r.calls || '-'} | ${r.gflops ?? '-'} |`).join('\n') + '\n';
  const fmtGemm = (rows: ReturnType<typeof gemmTable>) =>
    `| gemm (trans, [batch x] M x N x K) | ms | % | calls | GFLOP/s |\n|---|---:|---:|---:|---:|\n` + rows.map((r) => `| ${r.shape} | ${r.ms} | ${r.pct} | ${r.calls} | ${r.gflops} |`).join('\n') + '\n';
  const fmtTorch = (rows: { op: string; ms: number; calls: number }[], total: number) =>
    `| torch op | self ms | % | calls |\n|---|---:|---:|---:|\n` + rows.slice(0, 18).map((r) => `| ${r.op} | ${r.ms} | ${((100 * r.ms) / total).toFixed(1)} | ${r.calls} |`).join('\n') + '\n';
  try {
    if (!flag('--no-train')) {
      useNative(profiledBackend(backendByName('native'), record));
      const { model, x, ctx, g } = smallSetup(dir);
      const params = model.namedParams();
      const step = () => {
        for (const [, p] of params) p.value.grad = null;
        model.forward(x, [SMALL_T], ctx).backward(g);
      };
      step();
      prof.clear();
      profGemm.clear();
      const n = 5;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) step();
      const total = performance.now() - t0;
      out.train_ours = { total_ms: total, reps: n, table: profTable(total), gemm: gemmTable(total) };
      md += `\n### small DiT forward+backward, ${n} reps: ours ${total.toFixed(0)} ms (${(total / n).toFixed(0)} ms / step)\n\n${fmtProf(profTable(total))}\n${fmtGemm(gemmTable(total))}`;
      if (python) {
        const w = wanWorker(python, dir);
        await w.next();
        const r = (await w.request(`profile ${n}`)) as { total_ms: number; table: { op: string; ms: number; calls: number }[] };
        w.close('quit');
        out.train_torch = r;
        md += `\n### small DiT forward+backward, ${n} reps: torch ${r.total_ms.toFixed(0)} ms (${(r.total_ms / n).toFixed(0)} ms / step; profiler on)\n\n${fmtTorch(r.table, r.total_ms)}`;
      }
      setBackend('native');
    }
    if (!flag('--no-sampling')) {
      const k = opt('--tokens', '7800').split(',')[0]!;
      bigSetup(dir, [k]);
      const self = fileURLToPath(import.meta.url);
      const common = ['--steps', '1', '--guidance', '5', '--noise', `noise_${k}`];
      const o = runChild(process.execPath, [self, '--child-sample', '--profile', '--dir', dir, ...common]);
      out.sample_ours = o;
      if (!('error' in o)) md += `\n### sampling, ${k} tokens, 1 step with CFG (2 forwards): ours ${o.total_ms.toFixed(0)} ms\n\n${fmtProf(o.profile as ReturnType<typeof profTable>)}\n${fmtGemm(o.gemm as ReturnType<typeof gemmTable>)}`;
      else md += `\nours sampling profile failed: ${o.error}\n`;
      if (python) {
        const t = runChild(python, [
          join(root, 'bench', 'torch_wan.py'),
          'sample',
          '--config',
          join(dir, 'big.json'),
          '--weights',
          join(dir, 'big.safetensors'),
          '--inputs',
          join(dir, 'big_io.safetensors'),
          '--threads',
          String(THREADS),
          '--profile',
          ...common,
        ]);
        out.sample_torch = t;
        if (!('error' in t)) md += `\n### sampling, ${k} tokens, 1 step with CFG (2 forwards): torch ${t.total_ms.toFixed(0)} ms (profiler on)\n\n${fmtTorch(t.profile as { op: string; ms: number; calls: number }[], t.total_ms)}`;
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(asJson ? JSON.stringify(out, null, 1) + '\n' : md);
}

// ---- main ------------------------------------------------------------------------------------------------------------

function torchFixtureCheck(python: string): Record<string, number> | string {
  const fx = process.env.DCVG_SHARED ? join(process.env.DCVG_SHARED, 'fixtures', 'wan') : resolve(root, '..', 'shared', 'fixtures', 'wan');
  if (!existsSync(join(fx, 'wan_fixtures.json'))) return `fixtures not found at ${fx}`;
  const r = spawnSync(python, [join(root, 'bench', 'torch_wan.py'), 'fixture', '--dir', fx, '--threads', String(THREADS)], {
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: String(THREADS) },
  });
  try {
    return (JSON.parse(r.stdout.trim().split('\n').pop()!) as { rel_err: Record<string, number> }).rel_err;
  } catch {
    return `fixture check failed: ${r.stderr.trim().split('\n').pop()}`;
  }
}

async function parent(): Promise<void> {
  const reps = Math.max(5, Number(opt('--reps', '7')));
  const steps = Number(opt('--steps', '1'));
  const shift = Number(opt('--shift', '5'));
  const guidance = Number(opt('--guidance', '5'));
  const tokensList = opt('--tokens', '7800,17600').split(',');
  for (const k of tokensList) if (!LATENTS[k]) throw new Error(`--tokens: ${k} is not one of ${Object.keys(LATENTS).join(', ')}`);
  useNative();
  const { python, version, why } = findTorch();
  if (!python) log(`PyTorch side skipped: ${why}`);
  const uptime0 = spawnSync('uptime', { encoding: 'utf8' }).stdout.trim();
  const load0 = loadavg();
  log(`Wan DiT bench; ${uptime0}`);
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-wan-'));
  let fixture: Record<string, number> | string | null = null;
  let train: TrainResult | null = null;
  let sampling: SampleRow[] = [];
  const t00 = performance.now();
  try {
    if (python) {
      fixture = torchFixtureCheck(python);
      log(`torch module vs official-Wan fixtures: ${typeof fixture === 'string' ? fixture : JSON.stringify(fixture)}`);
    }
    if (!flag('--no-train')) train = await partTrain(dir, python, reps);
    if (!flag('--no-sampling')) {
      log(`writing the 2-layer 1536-wide model (${(paramCount(parseWanConfig(BIG, 'b')) / 1e6).toFixed(1)} M params) and inputs ...`);
      bigSetup(dir, tokensList);
      sampling = partSample(dir, python, tokensList, steps, shift, guidance);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const uptime1 = spawnSync('uptime', { encoding: 'utf8' }).stdout.trim();
  const load1 = loadavg();
  const addon = getNativeAddon()!;
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    mem_gib: Math.round(totalmem() / 2 ** 30),
    threads: THREADS,
    node: process.version,
    torch: python ? version : null,
    ...addon.versions(),
    uptime_start: uptime0,
    uptime_end: uptime1,
    load_avg_start: load0.map((v) => +v.toFixed(2)),
    load_avg_end: load1.map((v) => +v.toFixed(2)),
    wall_s: +((performance.now() - t00) / 1000).toFixed(1),
  };
  const sched = flowSchedule(steps, shift);
  const samplingConfig = {
    ...BIG,
    params: paramCount(parseWanConfig(BIG, 'b')),
    latents: Object.fromEntries(tokensList.map((k) => [k, LATENTS[k]])),
    text_tokens: { cond: COND_TOKENS, uncond: UNCOND_TOKENS },
    solver: 'UniPC bh2 order 2 (diffusers flow grid)',
    steps,
    shift,
    guidance,
    forwards_per_run: guidance === 1 ? steps : 2 * steps,
    timesteps: [...sched.timesteps],
    torch_attention: `matmul-softmax-matmul in blocks of ${ATTN_CHUNK} queries (exact)`,
  };
  const weights = `seed ${SEED}: linear weights N(0, 1/fan_in), biases N(0, 0.02^2), norm weights 1 + N(0, 0.1^2), modulation N(0, 1/D)`;
  if (asJson) {
    process.stdout.write(JSON.stringify({ machine, weights, fixture_check_torch_module: fixture, train, sampling_config: samplingConfig, sampling }, null, 1) + '\n');
    return;
  }
  const f = (v: number | null | undefined) => (v === null || v === undefined ? '-' : String(v));
  let md = '';
  if (train) {
    const c = train.config;
    md += `\n### a) small DiT, forward+backward (loss = sum(out * g), grads of all ${(c.params / 1e6).toFixed(2)} M params) and forward only\n\n`;
    md += `| pass | ours ms | torch ms | ratio ours/torch | ours best ms | torch best ms | ours GFLOP/s |\n|---|---:|---:|---:|---:|---:|---:|\n`;
    for (const [name, r, mult] of [
      ['forward+backward', train.fwd_bwd, 3],
      ['forward', train.fwd, 1],
    ] as const)
      md += `| ${name} | ${r.ours_ms} | ${f(r.torch_ms)} | ${f(r.ratio)} | ${r.ours_best_ms} | ${f(r.torch_best_ms)} | ${((mult * train.gflop_fwd * 1e3) / r.ours_ms).toFixed(1)} |\n`;
    md += `\nconfig: dim ${c.dim}, ${c.num_heads} heads (head dim ${c.dim / c.num_heads}), ffn ${c.ffn_dim}, ${c.num_layers} layers, text ${c.text_len} x ${c.text_dim} (${c.text_tokens} non-zero rows), patch [${c.patch_size.join(', ')}], ${c.in_dim} -> ${c.out_dim} channels, latent (${c.latent.join(', ')}) = ${c.tokens} tokens, t = ${c.t}; ${train.gflop_fwd} GFLOP per forward (linears + attention); medians of ${train.reps} interleaved reps\n`;
    if (train.parity)
      md += `parity: out rel err ${train.parity.out_rel_err.toExponential(2)}, worst parameter-gradient rel err ${train.parity.grad_max_rel_err.toExponential(2)} (${train.parity.grad_worst_key}) -> ${train.parity.ok ? 'OK (< 1e-4)' : 'MISMATCH'}\n`;
  }
  if (sampling.length) {
    md += `\n### b) sampling, 2-layer 1536-wide DiT, UniPC ${steps} steps x CFG ${guidance} = ${samplingConfig.forwards_per_run} forwards\n\n`;
    md += `| tokens | latent | ours ms / forward | torch ms / forward | ratio | ours total ms | torch total ms | ratio | ours peak RSS MB | torch peak RSS MB | ours GFLOP/s | torch GFLOP/s |\n`;
    md += `|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n`;
    for (const r of sampling)
      md += `| ${r.tokens} | ${r.latent.slice(1).join('x')} | ${f(r.ours?.forward_ms_median)} | ${f(r.torch?.forward_ms_median)} | ${f(r.ratio_forward)} | ${f(r.ours?.total_ms)} | ${f(
        r.torch?.total_ms,
      )} | ${f(r.ratio_total)} | ${f(r.ours?.peak_rss_mb)} | ${f(r.torch?.peak_rss_mb)} | ${f(r.ours?.gflops)} | ${f(r.torch?.gflops)} |\n`;
    md += `\n`;
    for (const r of sampling) {
      if (r.check) md += `check ${r.tokens} tokens: first velocity rel err ${r.check.v0_rel_err.toExponential(2)}, final latents rel err ${r.check.final_rel_err.toExponential(2)}\n`;
      if (r.ours_error) md += `ours at ${r.tokens} tokens failed: ${r.ours_error}\n`;
      if (r.torch_error) md += `torch at ${r.tokens} tokens failed: ${r.torch_error}\n`;
      if (r.ours && r.torch)
        md += `${r.tokens} tokens: RSS after loading ours ${r.ours.rss_after_load_mb} MB, torch ${r.torch.rss_after_load_mb} MB; time outside the forwards (CFG + UniPC) ours ${r.ours.outside_forwards_ms} ms, torch ${r.torch.outside_forwards_ms} ms; unchunked torch attention would hold ${((BIG.num_heads * r.tokens * r.tokens * 4) / 1e9).toFixed(1)} GB of scores (x2 with the softmax output)\n`;
    }
    md += `\nconfig: dim ${BIG.dim}, ${BIG.num_heads} heads, ffn ${BIG.ffn_dim}, ${BIG.num_layers} layers, text ${BIG.text_len} x ${BIG.text_dim} (cond ${COND_TOKENS} / uncond ${UNCOND_TOKENS} non-zero rows), patch [1, 1, 1], 32 -> 32 channels, ${(samplingConfig.params / 1e6).toFixed(1)} M params; `;
    md += `UniPC (bh2, order 2, flow shift ${shift}), timesteps [${samplingConfig.timesteps.join(', ')}], guidance ${guidance}; one run per side (fresh process each, ours/torch order alternating), "ms / forward" = median over the run's forwards; GFLOP/s from ${sampling.map((r) => `${r.gflop_forward} GFLOP (${r.tokens})`).join(', ')} per forward (linears + attention); torch attention: ${samplingConfig.torch_attention}\n`;
  }
  if (fixture) md += `\ntorch module vs official-Wan fixtures (rel err): ${typeof fixture === 'string' ? fixture : Object.entries(fixture).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}\n`;
  if (!python) md += `\nPyTorch side skipped: ${why}\n`;
  md += `weights: ${weights}\n`;
  md += `machine: ${machine.cpu} (${machine.cores} cores, ${machine.mem_gib} GiB), ${THREADS} threads each side; node ${machine.node}, torch ${machine.torch ?? 'absent'}; ${machine.openblas}; oneDNN ${machine.dnnl}\n`;
  md += `load: start "${uptime0}"; end "${uptime1}"; wall ${machine.wall_s} s\n`;
  process.stdout.write(md);
}

const main = flag('--child-sample') ? async () => childSample() : flag('--profile') ? profileMain : parent;
main().catch((e) => {
  process.stderr.write(`bench:wan failed: ${(e as Error).stack ?? (e as Error).message}\n`);
  process.exit(1);
});
