/**
 * DC-AE-V training-step benchmark: the default model's architecture (assets/default-ae/config.json: chunk-causal,
 * chunk 8, 7 stages, widths [16, 32, 64, 64, 64, 64, 64], depth 1, latent 32, f32t4) at batch 1, 16 frames,
 * 128x128; ours (native backend) vs an equivalent PyTorch loop (bench/torch_train_ae.py) on the same weights and
 * data, 2 threads each.
 *
 *   npm run bench:train-ae [-- --json] [-- --steps 8] [-- --warmup 2] [-- --torch-conv chunks,batched] [-- --threads 2]
 *                          [-- --profile]
 *
 * One training step, both sides: z = encode(x) -> y = decode(z) -> loss = l1(y, x) + 0.2 ssimLoss(y, x) ->
 * backward -> clip the global gradient norm to 1.0 -> AdamW (lr 1e-4, betas (0.9, 0.999), eps 1e-8, weight decay
 * 0.01) -> zero the gradients. Whole-clip (no feature cache): each chunk of every chunk-causal conv sees the previous
 * chunk's last frame on the left and zeros on the right.
 *
 * Same weights: initForTraining (src/train/init.ts: LeCun-scale conv init, residual branches at zero) with a fixed seed,
 * written as safetensors and loaded strict by torch. Same data: the first 16 frames of
 * ../shared/data/clips128/01.mp4 (decoded with the system ffmpeg), else a deterministic synthetic clip, passed to
 * torch as raw float32.
 *
 * Two PyTorch variants, same math: 'chunks' convolves chunk by chunk as bench/torch_dcaev.py does (each chunk
 * concatenated with its context frames), 'batched' stacks the chunks (with their context frames) on the batch axis
 * and runs one conv. PyTorch 1.13 sends a batch-1 conv3d with N*C*T*H <= 20480 to its im2col `slow_conv3d` instead
 * of oneDNN, which every 32-channel 64x64 and 64-channel 32x32 chunk conv of this model hits; the batched variant
 * reaches oneDNN. The headline ratio is against the faster variant.
 *
 * Each torch variant runs as a worker process driven step by step over stdin, so ours and torch take turns step by
 * step (each side's step is timed inside its own process) and see the same machine load. All sides start from the
 * same state and run the same sequence of steps, so their losses are compared at every step (the first step checks
 * forward parity, later steps also the gradients, clipping and AdamW).
 *
 * FLOPs: the model's convolutions as executed in one step (forward, backward-data, backward-weights calls of the
 * dense convs, 2·Cin·Cout·kt·kh·kw per output position each; counted by wrapping the backend during a warmup step),
 * about 3x the forward convs (the first conv has no backward-data). % of peak against the measured FMA ceiling on
 * 2 threads (as bench:kernels).
 *
 * Load: on a 2-core machine shared with other work, 2-thread OpenMP code whose threads spin at barriers while the
 * sibling thread is descheduled slows down by an order of magnitude (both sides; measured 1.0 s -> 12 s per step at
 * load 4-6). OMP_WAIT_POLICY=passive (inherited by the torch workers) avoids that; the policy in effect is reported.
 *
 * --profile: instead of the comparison, per-primitive times of ours over the timed steps and the torch profiler's
 * table of the same loop (the last --torch-conv variant).
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor } from '../src/tensor/tensor.js';
import * as ops from '../src/tensor/ops.js';
import { l1Loss } from '../src/tensor/nn_ops.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { getNativeAddon, setBackend, backendByName, withBackend } from '../src/backend/index.js';
import type { Backend } from '../src/backend/backend.js';
import { AdamW, clipGradNorm } from '../src/train/optim.js';
import { initForTraining } from '../src/train/init.js';
import { ssimLoss } from '../src/train/losses.js';
import { readAllFrames } from '../src/io/video.js';
import { createModel, type DCAEV } from '../src/models/dcaev/autoencoder.js';
import { profiledBackend, tally, type ProfRow, median, cliArgs } from './profile.js';
import { findTorch, TorchWorker } from './torch.js';

const SEED = 20261127;
const LR = 1e-4;
const SSIM_WEIGHT = 0.2;
const here = dirname(fileURLToPath(import.meta.url));
const root = [resolve(here, '..'), resolve(here, '..', '..')].find((p) => existsSync(join(p, 'package.json')))!;
const { flag, opt } = cliArgs('usage: npm run bench:train-ae [-- --json] [-- --steps 8] [-- --warmup 2] [-- --threads 2] [-- --torch-conv chunks,batched] [-- --profile]');
const asJson = flag('--json');
/** threads of each side (the setting is 2; --threads 1 is less sensitive to other load on a 2-core machine) */
const THREADS = Math.max(1, Math.floor(Number(opt('--threads', '2'))));

function log(msg: string): void {
  if (!asJson) process.stderr.write(msg + '\n');
}

const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);

// ---- data ---------------------------------------------------------------------------------------------------------

/** Smooth moving pattern in [-0.9, 0.9], (1, 3, T, H, W): the fallback when the shared clip is unavailable. */
function syntheticClip(T: number, H: number, W: number): Tensor {
  const d = new Float32Array(3 * T * H * W);
  let i = 0;
  for (let c = 0; c < 3; c++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) {
          const a = Math.sin(2 * Math.PI * (1.5 * (h / H) + 0.5 * (w / W)) + 0.15 * t + 2.1 * c);
          const b = Math.cos(2 * Math.PI * (1.0 * (w / W) - 0.25 * (h / H)) - 0.07 * t + 0.7 * c);
          d[i++] = 0.9 * a * b;
        }
  return new Tensor(d, [1, 3, T, H, W]);
}

async function loadClip(T: number, size: number): Promise<{ x: Tensor; source: string }> {
  const shared = process.env.DCVG_SHARED ? resolve(process.env.DCVG_SHARED) : resolve(root, '..', 'shared');
  const path = join(shared, 'data', 'clips128', '01.mp4');
  if (existsSync(path)) {
    try {
      const x = await readAllFrames(path, { maxFrames: T, resize: { width: size, height: size } });
      if (x.shape[2] === T) return { x, source: `${path} (first ${T} frames, ${size}x${size})` };
      log(`${path} has only ${x.shape[2]} frames; using a synthetic clip`);
    } catch (e) {
      log(`could not read ${path} (${(e as Error).message.split('\n')[0]}); using a synthetic clip`);
    }
  } else log(`${path} not found; using a synthetic clip`);
  return { x: syntheticClip(T, size, size), source: `synthetic (${T} frames, ${size}x${size})` };
}

// ---- our training step --------------------------------------------------------------------------------------------

interface StepResult {
  ms: number;
  /** CPU time of the whole process (all threads, user + system) during the step */
  cpu_ms: number;
  loss: number;
  l1: number;
  ssim_loss: number;
  grad_norm: number;
}

class OurTrainer {
  readonly params: Tensor[];
  readonly opt: AdamW;
  constructor(
    readonly model: DCAEV,
    readonly x: Tensor,
  ) {
    this.params = model.parameters();
    this.opt = new AdamW(this.params, { lr: LR });
  }

  step(): StepResult {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const y = this.model.decodeRaw(this.model.encodeRaw(this.x));
    const l1 = l1Loss(y, this.x);
    const ss = ssimLoss(y, this.x);
    const loss = ops.add(l1, ops.mul(ss, SSIM_WEIGHT));
    loss.backward();
    const norm = clipGradNorm(this.params, 1.0);
    this.opt.step();
    this.opt.zeroGrad();
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { ms, cpu_ms: (c.user + c.system) / 1000, loss: loss.item(), l1: l1.item(), ssim_loss: ss.item(), grad_norm: norm };
  }
}

/** FLOPs of the dense convs one step executes (forward, backward-data, backward-weights), by conv direction. */
function countConvFlops(tr: OurTrainer, native: Backend): { step: StepResult; fwd: number; bwdData: number; bwdWeights: number } {
  const c = { fwd: 0, bwdData: 0, bwdWeights: 0 };
  const counting = profiledBackend(native, (name, a) => {
    const p = a[0] as { wShape: number[]; yShape: number[]; groups: number };
    if (!name.startsWith('conv3d') || p.groups !== 1) return; // the SSIM blurs are depthwise
    const f = 2 * p.yShape.reduce((x, y) => x * y, 1) * p.wShape.slice(1).reduce((x, y) => x * y, 1);
    if (name === 'conv3dForward') c.fwd += f;
    else if (name === 'conv3dBackwardData') c.bwdData += f;
    else if (name === 'conv3dBackwardWeights') c.bwdWeights += f;
  });
  const step = withBackend(counting, () => tr.step());
  return { step, ...c };
}

// ---- profile --------------------------------------------------------------------------------------------------------

const prof = new Map<string, ProfRow>();
function record(k: string, a: unknown[], ms: number): void {
  let key = k;
  let flops = 0;
  if (k.startsWith('conv3d')) {
    const p = a[0] as { xShape: number[]; wShape: number[]; yShape: number[]; groups: number };
    const [, ci, t, h, w] = p.xShape;
    const dir = k === 'conv3dForward' ? 'fwd' : k === 'conv3dBackwardData' ? 'bwd-data' : 'bwd-weights';
    key = p.groups === 1 ? `conv3d ${dir} ${ci}->${p.wShape[0]} ${t}x${h}x${w}` : `depthwise conv3d ${dir} (SSIM blur)`;
    flops = 2 * p.yShape.reduce((x, y) => x * y, 1) * p.wShape.slice(1).reduce((x, y) => x * y, 1);
  } else if (k === 'binary' || k === 'unary' || k === 'reduce') key = `${k}:${String(a[0])}`;
  tally(prof, key, ms, flops);
}

// ---- main -----------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const steps = Math.max(1, Number(opt('--steps', '8')));
  const warmup = Math.max(1, Number(opt('--warmup', '2')));
  const frames = Number(opt('--frames', '16'));
  const size = Number(opt('--size', '128'));
  const checkSteps = 3;
  const torchVariants = opt('--torch-conv', 'chunks,batched').split(',').filter(Boolean);
  for (const v of torchVariants) if (v !== 'chunks' && v !== 'batched') throw new Error(`--torch-conv: unknown variant ${v} (chunks, batched)`);
  const cfgPath = resolve(opt('--config', join(root, 'assets', 'default-ae', 'config.json')));
  const addon = getNativeAddon();
  if (!addon) throw new Error('native addon not built: run "npm run build:native" first');
  const native = backendByName('native');
  setBackend('native');
  addon.setNumThreads(THREADS);

  if (!process.env.OMP_WAIT_POLICY && loadavg()[0]! > cpus().length - THREADS + 0.5)
    log(
      `note: load average ${loadavg()[0]!.toFixed(2)} on ${cpus().length} cores; OpenMP threads that spin at barriers while a sibling is ` +
        `descheduled can make both sides many times slower (measured 10x here): consider OMP_WAIT_POLICY=passive (both sides inherit it)`,
    );
  const model = createModel(cfgPath);
  initForTraining(model, SEED);
  const { x, source } = await loadClip(frames, size);
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-train-ae-'));
  const load0 = loadavg();
  try {
    saveSafetensors(join(dir, 'weights.safetensors'), model.stateDict());
    writeFileSync(join(dir, 'clip.f32'), x.readSync());
    const { python, version, why } = findTorch({ numpy: true });
    if (!python) log(`PyTorch side skipped: ${why}`);
    const torchArgv = (mode: string) => [
      join(root, 'bench', 'torch_train_ae.py'),
      mode,
      '--config',
      cfgPath,
      '--weights',
      join(dir, 'weights.safetensors'),
      '--data',
      join(dir, 'clip.f32'),
      '--shape',
      x.shape.join(','),
      '--threads',
      String(THREADS),
      '--lr',
      String(LR),
    ];
    const tr = new OurTrainer(model, x);
    log(
      `DC-AE-V training step: ${model.config.name}, ${(model.parameterCount() / 1e6).toFixed(3)} M params, input ${JSON.stringify(x.shape)} from ${source}; ` +
        `warmup ${warmup}, ${steps} timed steps, ${THREADS} threads; load avg ${load0.map((v) => v.toFixed(2)).join(' ')}`,
    );

    if (flag('--profile')) {
      for (let i = 0; i < warmup; i++) tr.step();
      const pb = profiledBackend(native, record);
      const ms: number[] = [];
      withBackend(pb, () => {
        for (let i = 0; i < steps; i++) ms.push(tr.step().ms);
      });
      const total = ms.reduce((s, v) => s + v, 0);
      const inProf = [...prof.values()].reduce((s, p) => s + p.ms, 0);
      let out = `\nprofile of ours: ${steps} steps, ${(total / steps).toFixed(0)} ms per step (profiled), ${(inProf / steps).toFixed(0)} ms per step inside backend calls\n\n`;
      out += `| op | ms per step | % of step | calls per step | GFLOP/s |\n|---|---:|---:|---:|---:|\n`;
      for (const [op, e] of [...prof.entries()].sort((a, b) => b[1].ms - a[1].ms))
        if (e.ms >= total * 0.003)
          out += `| ${op} | ${(e.ms / steps).toFixed(1)} | ${((100 * e.ms) / total).toFixed(1)} | ${e.calls / steps} | ${e.flops ? (e.flops / (e.ms * 1e6)).toFixed(1) : '-'} |\n`;
      if (python && torchVariants.length) {
        const r = spawnSync(python, [...torchArgv('train'), '--warmup', String(warmup), '--steps', String(steps), '--profile', '--conv-impl', torchVariants[torchVariants.length - 1]!], {
          encoding: 'utf8',
          maxBuffer: 64 << 20,
          env: { ...process.env, OMP_NUM_THREADS: String(THREADS) },
        });
        if (r.status !== 0) throw new Error(`torch profile run failed: ${r.stderr}`);
        const head = /^profile of torch.*$/m.exec(r.stderr)?.[0] ?? '';
        out += `\n${head}\n\n| torch op [input shapes] | self ms per step | % of step | calls per step |\n|---|---:|---:|---:|\n`;
        out += r.stderr.replace(/^profile of torch.*$/m, '').trim() + '\n';
      }
      process.stdout.write(out);
      return;
    }

    const variants = python ? torchVariants : [];
    const workers = variants.map((v) => new TorchWorker(python!, [...torchArgv('serve'), '--conv-impl', v], THREADS));
    const infos: Record<string, unknown>[] = [];
    for (const w of workers) infos.push(await w.next());
    const ours: StepResult[] = [];
    const theirs: StepResult[][] = variants.map(() => []);
    let flops = { fwd: 0, bwdData: 0, bwdWeights: 0 };
    try {
      for (let i = 0; i < warmup + steps; i++) {
        // rotate which side goes first, so no side always runs right after the same other one
        const sides = [-1, ...variants.map((_, k) => k)];
        const r = i % sides.length;
        for (const side of [...sides.slice(r), ...sides.slice(0, r)]) {
          if (side >= 0) theirs[side]!.push((await workers[side]!.request('step')) as unknown as StepResult);
          else if (i === 0) {
            const c = countConvFlops(tr, native);
            flops = { fwd: c.fwd, bwdData: c.bwdData, bwdWeights: c.bwdWeights };
            ours.push(c.step);
          } else ours.push(tr.step());
        }
        const o = ours[i]!;
        log(
          `step ${String(i + 1).padStart(2)}${i < warmup ? ' (warmup)' : '         '}  ours ${o.ms.toFixed(0).padStart(6)} ms (cpu ${o.cpu_ms.toFixed(0)}) loss ${o.loss.toFixed(7)}` +
            variants.map((v, k) => `  torch/${v} ${theirs[k]![i]!.ms.toFixed(0).padStart(6)} ms (cpu ${theirs[k]![i]!.cpu_ms.toFixed(0)}) loss ${theirs[k]![i]!.loss.toFixed(7)} (rel diff ${relDiff(o.loss, theirs[k]![i]!.loss).toExponential(1)})`).join(''),
        );
      }
    } finally {
      for (const w of workers) w.close('quit');
    }
    const load1 = loadavg();

    const stepFlops = flops.fwd + flops.bwdData + flops.bwdWeights;
    // the ceiling is a maximum: take the best of three probes (other load only ever lowers a probe)
    const peakAvx2 = Math.max(...[0, 1, 2].map(() => addon.peakGflops(THREADS, 0.3)));
    const peak512 = Math.max(...[0, 1, 2].map(() => addon.peakGflopsAvx512(THREADS, 0.3)));
    const peak = Number.isFinite(peak512) ? Math.max(peak512, peakAvx2) : peakAvx2;
    const side = (rs: StepResult[]) => {
      const timed = rs.slice(warmup).map((r) => r.ms);
      const cpu = rs.slice(warmup).map((r) => r.cpu_ms);
      const ms = median(timed);
      const gflops = stepFlops / (ms * 1e6);
      return {
        median_ms: +ms.toFixed(1),
        min_ms: +Math.min(...timed).toFixed(1),
        median_cpu_ms: +median(cpu).toFixed(1),
        step_ms: timed.map((v) => +v.toFixed(1)),
        step_cpu_ms: cpu.map((v) => +v.toFixed(1)),
        gflops: +gflops.toFixed(1),
        pct_peak: +((100 * gflops) / peak).toFixed(1),
      };
    };
    const oursSide = side(ours);
    const torchSides = variants.map((v, k) => {
      const rs = theirs[k]!;
      const s0 = side(rs);
      return {
        conv_impl: v,
        ...s0,
        ratio: +(oursSide.median_ms / s0.median_ms).toFixed(3),
        ratio_fastest_step: +(oursSide.min_ms / s0.min_ms).toFixed(3),
        ratio_cpu: +(oursSide.median_cpu_ms / s0.median_cpu_ms).toFixed(3),
        parity: {
          first_step_loss_rel_diff: relDiff(ours[0]!.loss, rs[0]!.loss),
          first_steps_max_loss_rel_diff: Math.max(...ours.slice(0, checkSteps).map((o, i) => relDiff(o.loss, rs[i]!.loss))),
          all_steps_max_loss_rel_diff: Math.max(...ours.map((o, i) => relDiff(o.loss, rs[i]!.loss))),
          first_step_grad_norm_rel_diff: relDiff(ours[0]!.grad_norm, rs[0]!.grad_norm),
        },
        losses: rs.map((r) => r.loss),
        grad_norms: rs.map((r) => r.grad_norm),
      };
    });
    const best = torchSides.length ? torchSides.reduce((a, b) => (b.median_ms < a.median_ms ? b : a)) : null;
    const parityOk = torchSides.length ? torchSides.every((t) => t.parity.first_step_loss_rel_diff < 1e-4 && t.parity.first_steps_max_loss_rel_diff < 1e-3) : null;
    const result = {
      machine: {
        cpu: cpus()[0]?.model ?? 'unknown',
        cores: cpus().length,
        mem_gib: Math.round(totalmem() / 2 ** 30),
        threads: THREADS,
        omp_wait_policy: process.env.OMP_WAIT_POLICY ?? null,
        node: process.version,
        torch: python ? version : null,
        load_avg_start: load0.map((v) => +v.toFixed(2)),
        load_avg_end: load1.map((v) => +v.toFixed(2)),
      },
      config: { path: cfgPath, name: model.config.name, params: model.parameterCount(), input: [...x.shape], data: source, seed: SEED },
      loop: {
        loss: `l1(y, x) + ${SSIM_WEIGHT} * ssimLoss(y, x)`,
        clip_grad_norm: 1.0,
        adamw: { lr: LR, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 },
        warmup,
        steps,
        torch_ssim_impl: infos[0]?.ssim_impl ?? null,
      },
      ours: { ...oursSide, losses: ours.map((r) => r.loss), grad_norms: ours.map((r) => r.grad_norm) },
      torch: torchSides,
      /** ours / the faster torch variant (median step times) */
      ratio: best ? best.ratio : null,
      ratio_vs: best ? best.conv_impl : null,
      conv_gflop_per_step: { forward: +(flops.fwd / 1e9).toFixed(3), backward_data: +(flops.bwdData / 1e9).toFixed(3), backward_weights: +(flops.bwdWeights / 1e9).toFixed(3), total: +(stepFlops / 1e9).toFixed(3) },
      peak_gflops: +peak.toFixed(1),
      criteria: { ratio_ok: best ? best.ratio <= 1.0 : null, parity_ok: parityOk },
      torch_skipped: python ? null : why,
    };
    if (asJson) {
      process.stdout.write(JSON.stringify(result, null, 1) + '\n');
      return;
    }
    const desc: Record<string, string> = {
      chunks: 'torch, per-chunk convs (as bench/torch_dcaev.py)',
      batched: 'torch, chunks stacked on the batch axis',
    };
    let md = `\n| side | median ms per step | fastest step ms | median CPU ms per step | GFLOP/s (convs) | % of peak | ratio ours/this (median / fastest / CPU) |\n|---|---:|---:|---:|---:|---:|---:|\n`;
    md += `| ours | ${oursSide.median_ms} | ${oursSide.min_ms} | ${oursSide.median_cpu_ms} | ${oursSide.gflops} | ${oursSide.pct_peak} | |\n`;
    for (const t of torchSides)
      md += `| ${desc[t.conv_impl] ?? t.conv_impl} | ${t.median_ms} | ${t.min_ms} | ${t.median_cpu_ms} | ${t.gflops} | ${t.pct_peak} | ${t.ratio} / ${t.ratio_fastest_step} / ${t.ratio_cpu} |\n`;
    md += best
      ? `\nratio ours/torch (fastest torch variant, ${best.conv_impl}): ${best.ratio} (<= 1.0: ${best.ratio <= 1.0 ? 'PASS' : 'FAIL'})\n`
      : `\nPyTorch side skipped: ${why}\n`;
    md += `timed steps ours [${oursSide.step_ms.join(', ')}] ms` + torchSides.map((t) => `; torch/${t.conv_impl} [${t.step_ms.join(', ')}] ms`).join('') + '\n';
    md += `conv GFLOP per step: ${result.conv_gflop_per_step.total} (forward ${result.conv_gflop_per_step.forward}, backward-data ${result.conv_gflop_per_step.backward_data}, backward-weights ${result.conv_gflop_per_step.backward_weights}); peak ${result.peak_gflops} GFLOP/s (measured FMA ceiling now, ${THREADS} threads)\n`;
    for (const t of torchSides)
      md += `parity vs torch/${t.conv_impl}: first-step loss rel diff ${t.parity.first_step_loss_rel_diff.toExponential(2)}, max over the first ${checkSteps} steps ${t.parity.first_steps_max_loss_rel_diff.toExponential(
        2,
      )}, over all ${ours.length} steps ${t.parity.all_steps_max_loss_rel_diff.toExponential(2)}; first-step grad norm rel diff ${t.parity.first_step_grad_norm_rel_diff.toExponential(2)}\n`;
    if (parityOk !== null) md += `parity ${parityOk ? 'OK' : 'MISMATCH'}\n`;
    md += `\nmodel ${result.config.name} (${cfgPath}), ${(result.config.params / 1e6).toFixed(3)} M params, input [${x.shape.join(', ')}] from ${source}; loss ${result.loop.loss}; clip 1.0; AdamW lr ${LR}; torch SSIM blur: ${String(
      result.loop.torch_ssim_impl ?? '-',
    )}\n`;
    md += `${result.machine.cpu} (${result.machine.cores} cores), node ${result.machine.node}, torch ${result.machine.torch ?? '-'}, ${THREADS} threads each, OMP_WAIT_POLICY ${result.machine.omp_wait_policy ?? 'unset'}, steps interleaved; load avg ${result.machine.load_avg_start.join(' ')} -> ${result.machine.load_avg_end.join(' ')}\n`;
    process.stdout.write(md);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench:train-ae failed: ${(e as Error).stack ?? (e as Error).message}\n`);
  process.exit(1);
});
