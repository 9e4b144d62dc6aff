/**
 * AE-Adapt-V phase-3 (LoRA) training-step benchmark (issue #20 item 8): ours (native backend) vs a plain-PyTorch LoRA
 * step of the same model (bench/torch_adapt.py), same weights and inputs, float32, the same thread count.
 *
 *   npm run bench:adapt [-- --tokens 1000,2000,4000] [-- --reps 3] [-- --warmup 1] [-- --threads 2] [-- --layers 2]
 *                       [-- --dim 768] [-- --heads 12] [-- --rank 64] [-- --f64] [-- --json] [-- --profile]
 *
 * Model: a small Wan-topology DiT in DC-VideoGen's layout (patch 1x1x1, 32 latent channels): width 768, 12 heads of
 * 64, FFN 3072 (4x), 2 blocks, text 64 tokens x 768 (40 non-zero rows). Tokens = latent F x H x W: 10x10x10 = 1,000,
 * 10x10x20 = 2,000, 10x20x20 = 4,000; batch 1.
 *
 * Phase 3 as `dcvg adapt lora` sets it up (src/adapt/phases.ts setupTrainable): LoRA rank 64 with alpha 128 (the
 * phase's default ratio alpha = 2r) on blocks.N.self_attn.{q,k,v,o}, blocks.N.ffn.{0,2}, time_embedding.{0,2},
 * time_projection.1; patch_embedding, head.head and head.modulation trained fully; everything else frozen. B is drawn
 * N(0, 0.02^2) instead of zeros (a trained adapter's state; with B = 0 the first step gives A no gradient), A as the
 * phase draws it (kaiming-uniform).
 *
 * One step, both sides (as src/train/loop.ts runs the phase): flow-matching inputs at a fixed t = 737 (snapped to the
 * shift-8 grid; the network sees the raw t) with fixed noise -> forward -> weighted MSE -> backward -> clip the global
 * gradient norm to 0.1 -> AdamW (betas 0.9/0.999, eps 1e-8, wd 0) at the phase's warm-up lr (5e-5 * step / 1000) ->
 * zero the gradients -> EMA 0.9999 of the trainable tensors. Each token count starts both sides from the same state
 * (a fresh model and a fresh torch worker), so the losses are compared at every step: the first checks the forward,
 * the later ones the gradients, clipping, AdamW and the adapters' update. Steps alternate between the sides (the
 * order rotating), each timed inside its own process (wall and CPU time of the whole process); medians of the timed
 * steps after the warm-up.
 *
 * --f64: also runs the first step in float64 (bench/torch_adapt.py --double) at each token count and reports how far
 * each float32 side's first loss is from it.
 *
 * --profile: per-kernel-call times of our step (grouped as bench:wan groups them) at the largest --tokens value.
 */
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { execSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor } from '../src/tensor/tensor.js';
import { Rng } from '../src/tensor/random.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { backendByName, withBackend } from '../src/backend/index.js';
import { WanModel, parseWanConfig, wanConfigToJson, type WanConfig } from '../src/models/wan/index.js';
import { trainingGrid, snapToGrid, type TrainingGrid } from '../src/diffusion/flow_matching.js';
import { LORA_DEFAULTS, defaultShift, LORA_TARGETS_RE, PATCH_HEAD_RE, flowMatchObjective, setupTrainable } from '../src/adapt/phases.js';
import { loraLayers } from '../src/nn/lora.js';
import { AdamW, clipGradNorm } from '../src/train/optim.js';
import { Ema } from '../src/train/ema.js';
import { scheduledLr } from '../src/train/loop.js';
import { cliArgs, median, profiledBackend, tally, useNativeBackend, type ProfRow } from './profile.js';
import { findTorch, TorchWorker } from './torch.js';
import { randn, randomWeights, textContext } from './wan_inputs.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = [resolve(here, '..'), resolve(here, '..', '..')].find((p) => existsSync(join(p, 'package.json')))!;
const SEED = 20261206;
const T_STEP = 737;
const TEXT_VALID = 40;

/** The benchmark's DiT (Wan config JSON), width / heads / blocks adjustable. */
export function adaptBenchConfig(o: { dim?: number; heads?: number; layers?: number; textLen?: number; textDim?: number } = {}): WanConfig {
  const dim = o.dim ?? 768;
  return parseWanConfig(
    {
      model_type: 't2v',
      patch_size: [1, 1, 1],
      text_len: o.textLen ?? 64,
      in_dim: 32,
      dim,
      ffn_dim: 4 * dim,
      freq_dim: 256,
      text_dim: o.textDim ?? dim,
      out_dim: 32,
      num_heads: o.heads ?? 12,
      num_layers: o.layers ?? 2,
      eps: 1e-6,
    },
    'bench-adapt',
  );
}

/** Latent grid (F, H, W) of a token count: 10 frames, H x W = tokens / 10 as square as it gets. */
export function latentGrid(tokens: number): [number, number, number] {
  const F = 10;
  const hw = tokens / F;
  if (!Number.isInteger(hw)) throw new Error(`--tokens ${tokens}: not a multiple of ${F}`);
  let h = Math.floor(Math.sqrt(hw));
  while (hw % h) h--;
  return [F, h, hw / h];
}

export interface LoraStepOptions {
  rank: number;
  alpha: number;
  clip: number;
  /** EMA decay (0 = none) */
  ema: number;
  /** seeds the base weights, A's init and B's draw */
  seed: number;
}

export interface StepInputs {
  x0: Tensor;
  noise: Tensor;
  ctx: Tensor;
  t: number[];
}

export interface StepResult {
  ms: number;
  /** CPU time of the whole process (all threads, user + system) during the step */
  cpu_ms: number;
  loss: number;
  grad_norm: number;
}

/** Our phase-3 training step on a DiT set up as `dcvg adapt lora` sets it up. */
export class OurLoraStep {
  readonly model: WanModel;
  readonly trainable: [string, Tensor][];
  readonly targets: string[];
  readonly opt: AdamW;
  readonly ema: Ema | null;
  readonly grid: TrainingGrid = trainingGrid(LORA_DEFAULTS.shift ?? defaultShift({ model_type: 't2v' }));
  /** the last step's gradients before clipping (with keepGrads) */
  grads: Map<string, Float32Array> | null = null;

  constructor(
    cfg: WanConfig,
    readonly o: LoraStepOptions,
  ) {
    this.model = new WanModel(cfg);
    this.model.loadStateDict(randomWeights(this.model, o.seed));
    this.targets = setupTrainable(this.model, 'lora', { trainOnly: PATCH_HEAD_RE, loraTargets: LORA_TARGETS_RE, rank: o.rank, alpha: o.alpha, seed: o.seed });
    const rng = new Rng(o.seed + 1);
    for (const [, l] of loraLayers(this.model)) l.lora_B.weight.value.write(randn([...l.lora_B.weight.shape], rng, 0.02).readSync());
    this.trainable = this.model
      .namedParams()
      .filter(([, p]) => p.trainable)
      .map(([k, p]) => [k, p.value] as [string, Tensor]);
    this.opt = new AdamW([{ name: 'trainable', params: this.trainable, lr: LORA_DEFAULTS.lr, weightDecay: 0 }], { lr: LORA_DEFAULTS.lr, betas: [0.9, 0.999], weightDecay: 0 });
    this.ema = o.ema > 0 ? new Ema(this.trainable, o.ema) : null;
  }

  /** One training step at learning rate `lr` (loop.ts's order: backward, clip, AdamW, zero, EMA). */
  step(lr: number, inp: StepInputs, keepGrads = false): StepResult {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    this.opt.schedule(() => lr);
    const fwd = (noisy: Tensor, t: number[], ctx: Tensor) => this.model.forward(noisy, t, ctx);
    const { loss } = flowMatchObjective(fwd, inp.x0, inp.ctx, inp.noise, inp.t, this.grid);
    const lossV = loss.item();
    loss.backward();
    if (keepGrads) this.grads = new Map(this.trainable.map(([k, p]) => [k, p.grad!.readSync().slice()]));
    const params = this.trainable.map(([, p]) => p);
    const norm = this.o.clip > 0 ? clipGradNorm(params, this.o.clip) : clipGradNorm(params, Number.MAX_VALUE);
    this.opt.step();
    this.opt.zeroGrad();
    this.ema?.update();
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { ms, cpu_ms: (c.user + c.system) / 1000, loss: lossV, grad_norm: norm };
  }
}

/** Deterministic inputs for a latent grid: x0, noise ~ N(0, 1), the text context, t. */
export function stepInputs(cfg: WanConfig, grid: [number, number, number], seed: number): StepInputs {
  const rng = new Rng(seed + 2);
  const shape = [1, cfg.in_dim, ...grid];
  return { x0: randn(shape, rng), noise: randn(shape, rng), ctx: textContext(cfg.text_len, cfg.text_dim, TEXT_VALID, rng), t: [T_STEP] };
}

/**
 * Writes what the torch side loads into `dir`: config.json, weights.safetensors (base + adapters, Wan keys),
 * inputs.safetensors (x0, noise, context, t, sigma, weight), targets.json; returns the torch worker's argv.
 */
export function writeTorchSide(dir: string, ours: OurLoraStep, inp: StepInputs, threads: number): string[] {
  const cfg = ours.model.config;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(wanConfigToJson(cfg)));
  saveSafetensors(join(dir, 'weights.safetensors'), ours.model.stateDict());
  const ids = inp.t.map((t) => snapToGrid(ours.grid, t));
  const f32 = (v: number[]) => new Tensor(new Float32Array(v), [v.length]);
  saveSafetensors(join(dir, 'inputs.safetensors'), {
    x0: inp.x0,
    noise: inp.noise,
    context: inp.ctx,
    t: f32(inp.t),
    sigma: f32(ids.map((k) => ours.grid.sigmas[k]!)),
    weight: f32(ids.map((k) => ours.grid.weights[k]!)),
  });
  writeFileSync(join(dir, 'targets.json'), JSON.stringify(ours.targets));
  const o = ours.o;
  // the file names of the directory written above
  const f = (n: string) => join(dir, n);
  return [
    join(root, 'bench', 'torch_adapt.py'),
    'serve',
    ...['--config', f('config.json'), '--weights', f('weights.safetensors'), '--inputs', f('inputs.safetensors'), '--targets', f('targets.json')],
    ...['--rank', String(o.rank), '--alpha', String(o.alpha), '--threads', String(threads), '--clip', String(o.clip), '--ema', String(o.ema)],
  ];
}

/** The phase's learning rate at a step (linear warm-up over 1,000 steps to 5e-5, then constant). */
export function phaseLr(step: number): number {
  return scheduledLr(step, LORA_DEFAULTS.lr, { kind: 'constant', warmup: LORA_DEFAULTS.warmup, total: LORA_DEFAULTS.steps, minRatio: LORA_DEFAULTS.minLrRatio });
}

// ---- profile -------------------------------------------------------------------------------------------------------

function category(k: string): string {
  if (k === 'gemm') return 'linear / matmul (gemm)';
  if (k.startsWith('attention')) return k === 'attention' ? 'attention fwd' : 'attention bwd';
  if (k.startsWith('norm')) return k === 'norm' ? 'norms fwd' : 'norms bwd';
  if (['binary', 'unary', 'unaryBackward', 'affine', 'axpy', 'powScalar', 'fill'].includes(k)) return 'elementwise';
  if (k.startsWith('strided')) return 'copies (strided)';
  if (k === 'reduce' || k === 'sumSquares') return 'reductions';
  return k;
}

// ---- main ----------------------------------------------------------------------------------------------------------

const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);

async function main(): Promise<void> {
  const { flag, opt } = cliArgs(
    'usage: npm run bench:adapt [-- --tokens 1000,2000,4000] [-- --reps 3] [-- --warmup 1] [-- --threads 2] [-- --layers 2] [-- --dim 768] [-- --heads 12] [-- --rank 64] [-- --f64] [-- --json] [-- --profile]',
  );
  const asJson = flag('--json');
  const log = (m: string) => {
    if (!asJson) process.stderr.write(m + '\n');
  };
  const threads = Math.max(1, Math.floor(Number(opt('--threads', '2'))));
  const reps = Math.max(1, Number(opt('--reps', '3')));
  const warmup = Math.max(0, Number(opt('--warmup', '1')));
  const f64 = flag('--f64');
  const tokensList = opt('--tokens', '1000,2000,4000').split(',').map(Number);
  const cfg = adaptBenchConfig({ dim: Number(opt('--dim', '768')), heads: Number(opt('--heads', '12')), layers: Number(opt('--layers', '2')) });
  const rank = Number(opt('--rank', '64'));
  // the phase's default ratio alpha / r = 512 / 256
  const o: LoraStepOptions = { rank, alpha: (LORA_DEFAULTS.alpha / LORA_DEFAULTS.rank) * rank, clip: LORA_DEFAULTS.clip, ema: LORA_DEFAULTS.emaDecay, seed: SEED };
  useNativeBackend(threads);
  const uptime = () => execSync('uptime').toString().trim();
  const up0 = uptime();
  const load0 = loadavg();

  if (flag('--profile')) {
    const tokens = Math.max(...tokensList);
    const ours = new OurLoraStep(cfg, o);
    const inp = stepInputs(cfg, latentGrid(tokens), SEED);
    for (let i = 0; i < Math.max(1, warmup); i++) ours.step(phaseLr(i + 1), inp);
    const prof = new Map<string, ProfRow>();
    const gemms = new Map<string, ProfRow>();
    const pb = profiledBackend(backendByName('native'), (k, a, ms) => {
      let flops = 0;
      if (k === 'gemm') {
        const [tA, tB, batch, M, N, K] = a as [boolean, boolean, number, number, number, number];
        flops = 2 * batch * M * N * K;
        tally(gemms, `${tA ? 'T' : 'N'}${tB ? 'T' : 'N'} ${batch > 1 ? batch + 'x' : ''}${M}x${N}x${K}`, ms, flops);
      }
      tally(prof, category(k), ms, flops);
    });
    const ms: number[] = [];
    withBackend(pb, () => {
      for (let i = 0; i < reps; i++) ms.push(ours.step(phaseLr(warmup + i + 1), inp).ms);
    });
    const total = ms.reduce((s, v) => s + v, 0);
    const inside = [...prof.values()].reduce((s, e) => s + e.ms, 0);
    let out = `\nprofile of ours at ${tokens} tokens: ${reps} steps, ${(total / reps).toFixed(0)} ms per step (profiled), ${(inside / reps).toFixed(0)} inside kernels\n\n| op | ms per step | % | calls per step | GFLOP/s |\n|---|---:|---:|---:|---:|\n`;
    for (const [k, e] of [...prof.entries()].sort((a, b) => b[1].ms - a[1].ms))
      out += `| ${k} | ${(e.ms / reps).toFixed(1)} | ${((100 * e.ms) / total).toFixed(1)} | ${e.calls / reps} | ${e.flops ? (e.flops / (e.ms * 1e6)).toFixed(1) : '-'} |\n`;
    out += `| outside kernels (JS, allocation, GC) | ${((total - inside) / reps).toFixed(1)} | ${((100 * (total - inside)) / total).toFixed(1)} | | |\n`;
    out += `\n| gemm (trans, M x N x K) | ms per step | % | calls per step | GFLOP/s |\n|---|---:|---:|---:|---:|\n`;
    for (const [k, e] of [...gemms.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 16))
      out += `| ${k} | ${(e.ms / reps).toFixed(1)} | ${((100 * e.ms) / total).toFixed(1)} | ${e.calls / reps} | ${(e.flops / (e.ms * 1e6)).toFixed(1)} |\n`;
    process.stdout.write(out + `load: ${up0} -> ${uptime()}\n`);
    return;
  }

  const { python, version, why } = findTorch();
  if (!python) log(`PyTorch side skipped: ${why}`);
  const rows: Record<string, unknown>[] = [];
  let trainableCount = 0;
  let paramCount = 0;
  for (const tokens of tokensList) {
    const grid = latentGrid(tokens);
    const ours = new OurLoraStep(cfg, o);
    trainableCount = ours.trainable.reduce((s, [, t]) => s + t.size, 0);
    paramCount = ours.model.parameterCount();
    const inp = stepInputs(cfg, grid, SEED);
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-adapt-'));
    let f64Loss: number | null = null;
    const mine: StepResult[] = [];
    const theirs: StepResult[] = [];
    try {
      const argv = python ? writeTorchSide(dir, ours, inp, threads) : [];
      if (python && f64) {
        // the first step in float64 (the same state and inputs): which float32 side is closer to it
        const w = new TorchWorker(python, [...argv, '--double'], threads, (t) => log(`[torch f64] ${t}`));
        await w.next();
        f64Loss = ((await w.request(`step ${phaseLr(1)}`)) as unknown as StepResult).loss;
        w.close('quit');
        log(`${tokens} tokens: first-step loss in float64 (torch) ${f64Loss}`);
      }
      const worker = python ? new TorchWorker(python, argv, threads, (t) => log(`[torch] ${t}`)) : null;
      if (worker) await worker.next();
      try {
        for (let i = 0; i < warmup + reps; i++) {
          const lr = phaseLr(i + 1);
          const sides = i % 2 ? ['torch', 'ours'] : ['ours', 'torch'];
          for (const s of sides) {
            if (s === 'ours') mine.push(ours.step(lr, inp));
            else if (worker) theirs.push((await worker.request(`step ${lr}`)) as unknown as StepResult);
          }
          const a = mine[i]!;
          const b = theirs[i];
          log(
            `${tokens} tokens, step ${i + 1}${i < warmup ? ' (warm-up)' : ''}: ours ${a.ms.toFixed(0)} ms (cpu ${a.cpu_ms.toFixed(0)}) loss ${a.loss.toFixed(7)}` +
              (b ? `; torch ${b.ms.toFixed(0)} ms (cpu ${b.cpu_ms.toFixed(0)}) loss ${b.loss.toFixed(7)}, rel diff ${relDiff(a.loss, b.loss).toExponential(1)}` : ''),
          );
        }
      } finally {
        worker?.close('quit');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const med = (rs: StepResult[], k: 'ms' | 'cpu_ms') => median(rs.slice(warmup).map((r) => r[k]));
    const row: Record<string, unknown> = {
      tokens,
      latent: [cfg.in_dim, ...grid],
      ours_ms: +med(mine, 'ms').toFixed(1),
      ours_cpu_ms: +med(mine, 'cpu_ms').toFixed(1),
      ours_step_ms: mine.slice(warmup).map((r) => +r.ms.toFixed(1)),
    };
    if (theirs.length) {
      Object.assign(row, {
        torch_ms: +med(theirs, 'ms').toFixed(1),
        torch_cpu_ms: +med(theirs, 'cpu_ms').toFixed(1),
        torch_step_ms: theirs.slice(warmup).map((r) => +r.ms.toFixed(1)),
        ratio: +(med(mine, 'ms') / med(theirs, 'ms')).toFixed(3),
        ratio_cpu: +(med(mine, 'cpu_ms') / med(theirs, 'cpu_ms')).toFixed(3),
        first_loss_rel_diff: relDiff(mine[0]!.loss, theirs[0]!.loss),
        max_loss_rel_diff: Math.max(...mine.map((m, i) => relDiff(m.loss, theirs[i]!.loss))),
        first_grad_norm_rel_diff: relDiff(mine[0]!.grad_norm, theirs[0]!.grad_norm),
      });
    }
    if (f64Loss !== null) Object.assign(row, { f64_loss: f64Loss, ours_vs_f64: relDiff(mine[0]!.loss, f64Loss), torch_vs_f64: theirs.length ? relDiff(theirs[0]!.loss, f64Loss) : null });
    rows.push(row);
  }
  const up1 = uptime();
  const result = {
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, mem_gib: Math.round(totalmem() / 2 ** 30), threads, omp_wait_policy: process.env.OMP_WAIT_POLICY ?? null, node: process.version, torch: python ? version : null },
    load: { start: up0, end: up1, load_avg_start: load0.map((v) => +v.toFixed(2)) },
    model: { ...wanConfigToJson(cfg), params: paramCount, trainable: trainableCount },
    lora: { rank: o.rank, alpha: o.alpha, targets: LORA_TARGETS_RE, fully_trained: PATCH_HEAD_RE },
    loop: { clip: o.clip, ema: o.ema, adamw: { betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0 }, lr: `${LORA_DEFAULTS.lr} * step / ${LORA_DEFAULTS.warmup}`, t: T_STEP, warmup, reps },
    rows,
  };
  if (asJson) {
    process.stdout.write(JSON.stringify(result, null, 1) + '\n');
    return;
  }
  let md = `\n| tokens (latent C x F x H x W) | ours ms (median) | torch ms (median) | ratio ours/torch | ours CPU ms | torch CPU ms | CPU ratio | loss rel diff (first step / max) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n`;
  for (const r of rows) {
    const lat = (r.latent as number[]).join('x');
    const x = (k: string, d = 0) => (r[k] === undefined ? '-' : (r[k] as number).toFixed(d));
    const diffs = r.first_loss_rel_diff === undefined ? '-' : `${(r.first_loss_rel_diff as number).toExponential(1)} / ${(r.max_loss_rel_diff as number).toExponential(1)}`;
    md += `| ${(r.tokens as number).toLocaleString('en-US')} (${lat}) | ${x('ours_ms')} | ${x('torch_ms')} | ${x('ratio', 2)} | ${x('ours_cpu_ms')} | ${x('torch_cpu_ms')} | ${x('ratio_cpu', 2)} | ${diffs} |\n`;
  }
  for (const r of rows)
    if (r.f64_loss !== undefined)
      md += `\n${r.tokens} tokens, first-step loss against the same step in float64 (torch --double): ours ${(r.ours_vs_f64 as number).toExponential(1)}, torch ${r.torch_vs_f64 === null ? '-' : (r.torch_vs_f64 as number).toExponential(1)}`;
  md += `\nmodel: Wan-topology DiT, dim ${cfg.dim}, ${cfg.num_heads} heads x ${cfg.dim / cfg.num_heads}, FFN ${cfg.ffn_dim}, ${cfg.num_layers} blocks, patch 1x1x1, 32 channels, text ${cfg.text_len} x ${cfg.text_dim}; ${(paramCount / 1e6).toFixed(2)} M parameters, ${(trainableCount / 1e6).toFixed(2)} M trainable\n`;
  md += `LoRA r ${o.rank}, alpha ${o.alpha} on ${LORA_TARGETS_RE}; fully trained ${PATCH_HEAD_RE}; clip ${o.clip}, AdamW, EMA ${o.ema}; batch 1, t ${T_STEP}; ${warmup} warm-up + ${reps} timed steps per side, interleaved\n`;
  md += `${result.machine.cpu} (${result.machine.cores} cores), ${threads} threads each, OMP_WAIT_POLICY ${result.machine.omp_wait_policy ?? 'unset'}, node ${result.machine.node}, torch ${result.machine.torch ?? '-'}\n`;
  md += `load: start "${up0}"; end "${up1}"\n`;
  if (!python) md += `PyTorch side skipped: ${why}\n`;
  process.stdout.write(md);
}

// run only as a script (test/bench_adapt.test.ts imports the step)
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    process.stderr.write(`bench:adapt failed: ${(e as Error).stack ?? (e as Error).message}\n`);
    process.exit(1);
  });
}
