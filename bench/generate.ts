/**
 * The DC-VideoGen speed-up, measured: the DC-VideoGen DiT (patch 1x1x1, 32 channels) on DC-AE-V f32t4c32 latents
 * against the base Wan-2.1 DiT (patch 1x2x2, 16 channels) on Wan-VAE f8t4c16 latents, for the same clip, on this
 * machine, with the same number of DiT blocks; plus the streaming decode of each VAE.
 *
 *   npm run bench:generate [-- --sizes 480x832,720x1280] [-- --layers 2] [-- --steps 1] [-- --guidance 5]
 *                          [-- --reps 1] [-- --frames 81] [-- --decode-latents 1,2] [-- --decode-size 64x64|same]
 *                          [-- --decode-from FILE] [-- --dit-from FILE] [-- --no-decode] [-- --no-dit]
 *                          [-- --timeout-s 0] [-- --threads 2] [-- --json] [-- --json-out FILE] [-- --tiny]
 *
 * DiT: a slice of `--layers` blocks of the 1.3B width (dim 1536, 12 heads, FFN 8960, umT5 context 512 x 4096), random
 * weights (variance 1/fan_in; norm weights 1; see randomInit), the same for both sides except the
 * patch embedding / head shapes the latent layouts require. For `--frames` requested frames (81) at H x W:
 *   - DC-VideoGen: DC-AE-V floors the frames to a multiple of 4 (80) and H, W to multiples of 32 (720 -> 704, spec
 *     §4.6), latent 32 x 20 x H/32 x W/32, patch 1: one token per latent pixel;
 *   - base Wan: 1 + 4k frames (81), latent 16 x 21 x H/8 x W/8, patch 1x2x2: 21 x H/16 x W/16 tokens.
 * One denoising step = UniPC (the pipeline's sampler) with classifier-free guidance: two forwards (cond, uncond; the
 * text context is padded to 512 rows either way, so both cost the same), then the CFG combination and the solver
 * update. `--guidance 1` times one forward per step instead. Each side runs in its own child process, so each peak RSS
 * (VmHWM: weights, inputs and the forwards' activations) is that side's own; `--reps` children per side, alternating
 * which side goes first, medians reported. Each forward's CPU time (user + system, all threads) is reported next to
 * its wall time: on a machine shared with other work it is far less disturbed, and the table gives the speed-up both
 * ways. A child that fails or runs past `--timeout-s` is reported in the table as not run here.
 *
 * Bounds: the token-count bound is tokens_base / tokens_dc (the speed-up if the cost were linear in tokens: linears,
 * norms, FFN); the attention-cost bound is its square (self-attention cost is quadratic in tokens). The FLOP model of
 * the measured slice (linears + self- and cross-attention, per forward) lies between the two: the speed-up an
 * implementation running every op at the same rate would reach.
 *
 * Decode: the random-weight DC-AE-V decoder of the official f32t4c32 topology (dc-ae-v-f32t4c32-1.0; only the
 * decoder's weights are allocated) and the Wan-2.1 VAE decoder of the official config (dim 96), streaming: DC-AE-V one
 * 10-latent chunk at a time with its feature cache, the Wan VAE one latent at a time with its causal cache. The full
 * decode of 81 frames at 480x832 takes hours on 2 cores, so by default (`--decode-latents 1,2`) each VAE decodes the
 * clip's first 1 and 2 latent frames at the benchmark size itself, and the clip's decode is extrapolated in time only:
 * T(n) = intercept + n x per-latent (fitTime; both decoders keep a constant-size cache, so each further latent costs
 * the same; the intercept counted once per DC-AE-V 10-latent chunk, once for the Wan VAE). Each child also reports the
 * time of each push(), so one Wan VAE run shows the per-latent cost directly. `--decode-from FILE` takes children's
 * JSON lines (`--child-decode --side S --size HxW --latents n`) from a file instead of running them (a long run done
 * piece by piece); a size measured for no latent count gets the other size's figures scaled by the pixel count,
 * labelled so. `--dit-from FILE` takes the DiT rows of a saved `--json-out` result, for the whole-pipeline estimate.
 * `--decode-size 64x64` is the old way: all the clip's frames at a small frame size, extrapolated by pixel count
 * (cheap, but the small size runs DC-AE-V's deep stages on 2x2 positions, which distorts the comparison);
 * `--decode-size same` decodes the whole clip at the benchmark sizes (hours).
 *
 * `--render FILE` prints the markdown of a saved `--json-out` result without running anything.
 *
 * `--tiny`: a 64-wide DiT and tiny VAEs at 64x64 / 9 frames, for the smoke test (seconds).
 */
import { spawnSync } from 'node:child_process';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor, noGrad } from '../src/tensor/tensor.js';
import * as ops from '../src/tensor/ops.js';
import { Rng } from '../src/tensor/random.js';
import type { Module } from '../src/nn/module.js';
import { WanModel, wanPreset, type WanConfig } from '../src/models/wan/index.js';
import { sample, flowSchedule } from '../src/diffusion/index.js';
import { DCAEV, presetConfig, topologyConfig, type DCAEVConfig } from '../src/models/dcaev/index.js';
import { WanVAE, wan21VaeConfig, parseWanVaeConfig, wanVaeConfigToJson, type WanVaeConfig } from '../src/models/wan_vae/index.js';
import { DcaevAutoencoder, WanVaeAutoencoder, type VideoAutoencoder } from '../src/pipelines/autoencoder.js';
import { cliArgs, median, useNativeBackend } from './profile.js';
import { procStatusMb } from './torch.js';

const USAGE = `usage: npm run bench:generate -- [--sizes 480x832,720x1280] [--layers 2] [--steps 1] [--guidance 5] [--reps 1]
       [--frames 81] [--decode-latents 1,2] [--decode-size 64x64|same] [--decode-from FILE] [--dit-from FILE]
       [--no-decode] [--no-dit] [--timeout-s 0] [--threads 2] [--json]
       [--json-out FILE] [--tiny]
       npm run bench:generate -- --render FILE   (the markdown of a saved --json-out result)`;
const { flag, opt } = cliArgs(USAGE);
const SEED = 1919;
const TINY = flag('--tiny');
const THREADS = Number(opt('--threads', '2'));
/** non-pad rows of the conditional / unconditional prompt embeddings (the rest of text_len rows are zeros) */
const COND_ROWS = TINY ? 6 : 120;
const UNCOND_ROWS = TINY ? 3 : 60;

type Side = 'dc' | 'base';

// ---- geometry ----------------------------------------------------------------------------------------------------

export interface SideGeometry {
  side: Side;
  /** pixel frames and size the latent decodes to */
  frames: number;
  height: number;
  width: number;
  /** (C, F, H, W) of the latent the DiT denoises */
  latent: [number, number, number, number];
  patch: [number, number, number];
  /** (F', H', W') token grid */
  grid: [number, number, number];
  tokens: number;
}

/**
 * Latent and token shapes of both pipelines for `frames` requested frames at H x W (spec §4.6): DC-AE-V f32t4c32
 * floors frames to a multiple of 4 and H, W to multiples of 32, patch 1; the Wan VAE takes 1 + 4k frames (floored)
 * and H, W multiples of 16 (floored), patch 1x2x2.
 */
export function geometries(frames: number, height: number, width: number): Record<Side, SideGeometry> {
  const dcF = Math.floor(frames / 4);
  const [dh, dw] = [Math.floor(height / 32), Math.floor(width / 32)];
  const bF = 1 + Math.floor((frames - 1) / 4);
  const [bh, bw] = [Math.floor(height / 16) * 2, Math.floor(width / 16) * 2];
  if (dcF < 1 || dh < 1 || dw < 1 || bh < 2 || bw < 2) throw new Error(`--frames ${frames} at ${height}x${width} is too small (need >= 4 frames and >= 32x32 pixels)`);
  return {
    dc: { side: 'dc', frames: 4 * dcF, height: 32 * dh, width: 32 * dw, latent: [32, dcF, dh, dw], patch: [1, 1, 1], grid: [dcF, dh, dw], tokens: dcF * dh * dw },
    base: {
      side: 'base',
      frames: 1 + 4 * (bF - 1),
      height: 8 * bh,
      width: 8 * bw,
      latent: [16, bF, bh, bw],
      patch: [1, 2, 2],
      grid: [bF, bh / 2, bw / 2],
      tokens: (bF * bh * bw) / 4,
    },
  };
}

/** The DiT slice of one side: the 1.3B width (or the tiny width) with `layers` blocks. */
export function ditConfig(side: Side, layers: number, tiny = TINY): WanConfig {
  const base = wanPreset(side === 'dc' ? 'DC-VideoGen-Wan2.1-T2V-1.3B' : 'Wan2.1-T2V-1.3B');
  const c: WanConfig = { ...base, name: `${base.name} (${layers}-block slice)`, num_layers: layers };
  if (tiny) Object.assign(c, { dim: 64, ffn_dim: 128, num_heads: 2, text_len: 16, text_dim: 32, freq_dim: 32, name: `tiny ${side}` });
  return c;
}

/**
 * Forward FLOPs (2 x multiply-adds) of a Wan DiT slice for N tokens: per block the self-attention projections (4 N D^2),
 * the cross-attention q / o on the tokens (2 N D^2) and k / v on the L text rows (2 L D^2), the FFN (2 N D F), the score
 * and value products (2 N^2 D) of self-attention and (2 N L D) of cross-attention; plus the text embedding and the
 * patch embedding / head. Norms, modulation, RoPE and softmax are left out (O(N D)).
 */
export function forwardFlops(c: WanConfig, N: number): { linear: number; attention: number; total: number } {
  const D = c.dim;
  const L = c.text_len;
  const patch = c.patch_size[0] * c.patch_size[1] * c.patch_size[2];
  const linear = c.num_layers * 2 * (6 * N * D * D + 2 * L * D * D + 2 * N * D * c.ffn_dim) + 2 * L * (c.text_dim * D + D * D) + 2 * N * D * patch * (c.in_dim + c.out_dim);
  const attention = c.num_layers * (4 * N * N * D + 4 * N * L * D);
  return { linear, attention, total: linear + attention };
}

// ---- random weights ------------------------------------------------------------------------------------------------

/**
 * Random weights for the parameters of `m` that `keep` selects (the rest stay shape-only and unallocated, e.g. the VAE
 * encoders): weights of rank > 1 with variance 1/fan_in, norm weights / gammas 1, other rank-1 parameters with standard
 * deviation 0.02. Values do not change the cost of any kernel here; they keep activations finite and of order one.
 */
function randomInit(m: Module, seed: number, prefix = '', keep: (key: string) => boolean = () => true): number {
  // xorshift32 uniforms with the same variance as N(0, std^2) (a normal draw per weight would take a minute in JS for
  // the 1.2 B decoder weights of DC-AE-V)
  let x = seed >>> 0 || 1;
  const u = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296 - 0.5;
  };
  let n = 0;
  for (const [key, p] of m.namedParams(prefix)) {
    if (!keep(key)) continue;
    const d = new Float32Array(p.size);
    if (p.shape.length > 1) {
      const a = 2 * Math.sqrt(3) / Math.sqrt(p.size / p.shape[0]!);
      for (let i = 0; i < d.length; i++) d[i] = a * u();
    } else if (/(norm[^.]*\.weight|gamma)$/.test(key)) d.fill(1);
    else for (let i = 0; i < d.length; i++) d[i] = 0.04 * Math.sqrt(3) * u();
    p.set(new Tensor(d, p.shape), key);
    n += p.size;
  }
  return n;
}

function randn(shape: number[], rng: Rng): Tensor {
  const d = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < d.length; i++) d[i] = rng.normal();
  return new Tensor(d, shape);
}

/** (1, L, textDim): `valid` rows of N(0, 1), the rest zeros (umT5 embeddings padded to text_len). */
function textContext(c: WanConfig, valid: number, rng: Rng): Tensor {
  const d = new Float32Array(c.text_len * c.text_dim);
  for (let i = 0; i < valid * c.text_dim; i++) d[i] = rng.normal();
  return new Tensor(d, [1, c.text_len, c.text_dim]);
}

const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

const useNative = (): void => useNativeBackend(THREADS);

// ---- children ------------------------------------------------------------------------------------------------------

interface DitRun {
  side: Side;
  tokens: number;
  params: number;
  forward_ms: number[];
  /** CPU time (user + system, all threads) of each forward: much less disturbed by other work than wall time */
  forward_cpu_ms: number[];
  /** per block, its wall / CPU time in each forward (blocks run one after the other; the rest of a forward is the
   * text / time / patch embeddings and the head) */
  block_ms: number[][];
  block_cpu_ms: number[][];
  step_ms: number[];
  rss_after_load_mb: number;
  peak_rss_mb: number;
  final_abs_mean: number;
}

/** One side's DiT: `--steps` UniPC steps with CFG, each forward and each step timed. Prints one JSON line. */
function childDit(): void {
  useNative();
  const side = opt('--side', 'dc') as Side;
  const [H, W] = opt('--size', '').split('x').map(Number) as [number, number];
  const g = geometries(Number(opt('--frames', '81')), H, W)[side];
  const cfg = ditConfig(side, Number(opt('--layers', '1')));
  const steps = Number(opt('--steps', '1'));
  const guidance = Number(opt('--guidance', '5'));
  const model = new WanModel(cfg);
  const params = randomInit(model, SEED + (side === 'dc' ? 1 : 2));
  const rng = new Rng(SEED + 3);
  const noise = randn([1, ...g.latent], rng);
  const cond = textContext(cfg, COND_ROWS, rng);
  const uncond = textContext(cfg, UNCOND_ROWS, rng);
  const afterLoad = procStatusMb('VmHWM');
  const forwardMs: number[] = [];
  const forwardCpuMs: number[] = [];
  const stepMs: number[] = [];
  // wall / CPU time of every block's forward, to show the cost per block is the same for each (linear in blocks)
  const blockMs: number[][] = model.blocks.map(() => []);
  const blockCpuMs: number[][] = model.blocks.map(() => []);
  for (const [i, blk] of model.blocks.entries()) {
    const fwd = blk.forward.bind(blk);
    blk.forward = (...a: Parameters<typeof fwd>) => {
      const [t, c] = [performance.now(), process.cpuUsage()];
      const y = fwd(...a);
      blockMs[i]!.push(performance.now() - t);
      blockCpuMs[i]!.push(cpuMs(process.cpuUsage(c)));
      return y;
    };
  }
  const timed = (ctx: Tensor) => (x: Tensor, t: number) => {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const v = noGrad(() => model.forward(x, [t], ctx));
    forwardMs.push(performance.now() - t0);
    forwardCpuMs.push(cpuMs(process.cpuUsage(c0)));
    return v;
  };
  let last = performance.now();
  const out = sample({
    model: timed(cond),
    noise,
    schedule: flowSchedule(steps, 5),
    solver: 'unipc',
    guidance: guidance === 1 ? undefined : { scale: guidance, uncond: timed(uncond) },
    onStep: () => {
      const now = performance.now();
      stepMs.push(now - last);
      last = now;
    },
  });
  const d = out.readSync();
  let a = 0;
  for (let i = 0; i < d.length; i++) a += Math.abs(d[i]!);
  const r: DitRun = { side, tokens: g.tokens, params, forward_ms: forwardMs, forward_cpu_ms: forwardCpuMs, block_ms: blockMs, block_cpu_ms: blockCpuMs, step_ms: stepMs, rss_after_load_mb: afterLoad, peak_rss_mb: procStatusMb('VmHWM'), final_abs_mean: a / d.length };
  process.stdout.write(JSON.stringify(r) + '\n');
}

/** The autoencoder of one side with random decoder weights (the official configs, or tiny ones with --tiny). */
function decoderModel(side: Side): { ae: VideoAutoencoder; params: number; config: string } {
  if (side === 'dc') {
    const cfg: DCAEVConfig = TINY
      ? topologyConfig({ name: 'tiny-f32t4c32', widths: [8, 8, 8, 8, 8, 8, 8], depths: [0, 1, 1, 1, 1, 1, 1], latentChannels: 32, chunk: 40, scalingFactor: null })
      : presetConfig('dc-ae-v-f32t4c32-1.0');
    const m = new DCAEV(cfg);
    const params = randomInit(m.decoder, SEED + 4, 'decoder');
    return { ae: new DcaevAutoencoder(m), params, config: cfg.name };
  }
  const cfg: WanVaeConfig = TINY ? parseWanVaeConfig({ ...wanVaeConfigToJson(wan21VaeConfig()), dim: 8 }, 'tiny-wan-vae') : wan21VaeConfig();
  const m = new WanVAE(cfg);
  // the decoder and the post-quant conv (conv2); the encoder and conv1 stay unallocated
  const params = randomInit(m, SEED + 5, '', (k) => k.startsWith('decoder.') || k.startsWith('conv2.'));
  return { ae: new WanVaeAutoencoder(m), params, config: cfg.name };
}

interface DecodeRun {
  side: Side;
  config: string;
  params: number;
  latent: number[];
  out_frames: number;
  height: number;
  width: number;
  decode_ms: number;
  decode_cpu_ms: number;
  /** latent frames decoded (`--latents`, default all of the clip's) */
  latents: number;
  /** set when the run was made at this narrower width and its times scaled to the row's width (peak RSS: as measured) */
  measured_width?: number;
  /** spatial tiling of the decode (`--tile N` pixels, `--overlap r`); null: untiled */
  tile: number | null;
  overlap: number | null;
  /** wall and CPU time of each push() (and the finish() last): the Wan VAE takes one latent per push */
  push_ms: number[];
  push_cpu_ms: number[];
  rss_after_load_mb: number;
  peak_rss_mb: number;
}

/** Pixel frames that `n` latent frames decode to: 4 per latent for DC-AE-V, 1 + 4 (n - 1) for the causal Wan VAE. */
export const pixelFrames = (side: Side, n: number): number => (side === 'dc' ? 4 * n : 1 + 4 * (n - 1));

/** One VAE's streaming decode of a random latent of the clip's shape at --size. Prints one JSON line. */
function childDecode(): void {
  useNative();
  const side = opt('--side', 'dc') as Side;
  const [H, W] = opt('--size', '').split('x').map(Number) as [number, number];
  const g = geometries(Number(opt('--frames', '81')), H, W)[side];
  const { ae, params, config } = decoderModel(side);
  // the DiT's latent is the VAE's: (C, F, H / spatial, W / spatial)
  // `--latents N`: only the clip's first N latent frames (a shorter clip at the same frame size)
  const F = Math.min(g.latent[1], Number(opt('--latents', String(g.latent[1]))));
  const z = ops.contiguous(ops.slice(randn([1, ...g.latent], new Rng(SEED + 6)), 2, 0, F));
  const afterLoad = procStatusMb('VmHWM');
  const piece = side === 'dc' ? 10 : 1;
  let frames = 0;
  const pushMs: number[] = [];
  const pushCpuMs: number[] = [];
  const timed = <T>(fn: () => T): T => {
    const [t, c] = [performance.now(), process.cpuUsage()];
    const y = fn();
    pushMs.push(performance.now() - t);
    pushCpuMs.push(cpuMs(process.cpuUsage(c)));
    return y;
  };
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  // `--tile N [--overlap r]`: spatial tiles of N output pixels (what a user on a small machine decodes 720p with)
  const tileArg = opt('--tile', '');
  const tile = tileArg === '' ? null : Number(tileArg);
  if (tile !== null && !(Number.isInteger(tile) && tile > 0)) usageError(`--tile: "${tileArg}" is not a positive whole number of pixels`);
  const overlap = tile === null ? null : Number(opt('--overlap', '0.25'));
  if (overlap !== null && !(overlap >= 0 && overlap < 1)) usageError('--overlap: must be in [0, 1)');
  const s = ae.decodeStream({ numFrames: F === g.latent[1] ? g.frames : pixelFrames(side, F) }, tile === null ? {} : { tile, overlap: overlap! });
  for (let f = 0; f < F; f += piece) {
    const y = timed(() => s.push(ops.contiguous(ops.slice(z, 2, f, Math.min(F, f + piece)))));
    if (y) frames += y.shape[2]!;
  }
  const tail = timed(() => s.finish());
  if (tail) frames += tail.shape[2]!;
  const ms = performance.now() - t0;
  const cpu = cpuMs(process.cpuUsage(c0));
  const r: DecodeRun = { side, config, params, latent: z.shape.slice(1), out_frames: frames, height: g.height, width: g.width, decode_ms: ms, decode_cpu_ms: cpu, latents: F, tile, overlap, push_ms: pushMs, push_cpu_ms: pushCpuMs, rss_after_load_mb: afterLoad, peak_rss_mb: procStatusMb('VmHWM') };
  process.stdout.write(JSON.stringify(r) + '\n');
}

// ---- parent --------------------------------------------------------------------------------------------------------

function runChild<T>(argv: string[], log: (s: string) => void, timeoutS: number): T | { error: string } {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...argv], {
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(timeoutS > 0 ? { timeout: timeoutS * 1000, killSignal: 'SIGKILL' as const } : {}),
  });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') {
    const e = { error: `not run to the end here: stopped at the --timeout-s limit of ${timeoutS} s` };
    log(`  ${e.error}`);
    return e;
  }
  if (r.status !== 0) {
    const why = r.signal ? `killed by ${r.signal}${r.signal === 'SIGKILL' ? ' (out of memory?)' : ''}` : `exit ${r.status}`;
    const e = { error: `${why}: ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}` };
    log(`  failed: ${e.error}`);
    return e;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

const isErr = (r: unknown): r is { error: string } => typeof r === 'object' && r !== null && 'error' in r;
const round = (v: number, d = 0) => +v.toFixed(d);

function parseSize(v: string, what: string): [number, number] {
  const m = /^(\d+)x(\d+)$/.exec(v.trim());
  if (!m) usageError(`${what}: "${v}" is not HxW`);
  return [Number(m![1]), Number(m![2])];
}

function posInt(name: string, dflt: string, min = 1): number {
  const v = Number(opt(name, dflt));
  if (!Number.isInteger(v) || v < min) usageError(`${name} must be an integer >= ${min}, got ${opt(name, dflt)}`);
  return v;
}

function usageError(msg: string): never {
  process.stderr.write(`bench:generate: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

interface DitSide {
  tokens: number;
  latent: number[];
  patch: number[];
  pixels: string;
  frames: number;
  params: number;
  forward_ms: number | null;
  forward_cpu_ms: number | null;
  /** one measured denoising step (null with --guidance 1) */
  step_ms: number | null;
  /** a step with CFG: the measured step, or 2 x forward (computed) with --guidance 1 */
  step_cfg_ms: number | null;
  step_cfg_computed: boolean;
  peak_rss_mb: number | null;
  rss_after_load_mb: number | null;
  gflop_forward: number;
  error?: string;
}

interface DecodeSide {
  config: string;
  params: number;
  measured_at: string;
  frames: number;
  decode_ms_measured: number;
  decode_cpu_ms_measured: number;
  decode_ms: number;
  extrapolated: boolean;
  peak_rss_mb: number;
  /** `--decode-latents`: the clip's decode extrapolated in time only from decodes of its first n latent frames */
  time_fit?: TimeFit;
}

/** Decodes of the first n latent frames at the clip's own frame size, and the line through them. */
export interface TimeFit {
  /** measured_width: the run was made at this narrower width, its times scaled to the row's (peak RSS as measured) */
  points: { latents: number; frames: number; ms: number; cpu_ms: number; peak_rss_mb: number; push_ms: number[]; push_cpu_ms: number[]; measured_width?: number }[];
  /** T(n) = intercept + per_latent * n (least squares; through 0 with one point), wall and CPU */
  per_latent_ms: number;
  intercept_ms: number;
  per_latent_cpu_ms: number;
  intercept_cpu_ms: number;
  /** largest |measured - fitted| / measured over the points (0 with two points: a line through two is exact) */
  max_rel_residual: number;
  /** the clip: its latent frames and the times `per chunk x intercept + latents x per_latent` */
  latents: number;
  chunks: number;
  decode_cpu_ms: number;
  /** measured at another size and scaled by the pixel count (only where this size was not measured) */
  scaled_from?: string;
}

/**
 * The line T(n) = a + b n through (n, T) points (least squares; with one point, through the origin: every
 * convolution's cost is proportional to the frames it makes) and the clip's time from it: DC-AE-V decodes each
 * 10-latent chunk on its own (the intercept once per chunk), the Wan VAE streams the clip once (the intercept once).
 */
export function fitTime(pts: { n: number; t: number }[]): { a: number; b: number; maxRel: number } {
  const ns = new Set(pts.map((p) => p.n));
  if (ns.size < 2) {
    const b = pts.reduce((x, p) => x + p.t, 0) / pts.reduce((x, p) => x + p.n, 0);
    return { a: 0, b, maxRel: 0 };
  }
  const m = pts.length;
  const mn = pts.reduce((x, p) => x + p.n, 0) / m;
  const mt = pts.reduce((x, p) => x + p.t, 0) / m;
  const b = pts.reduce((x, p) => x + (p.n - mn) * (p.t - mt), 0) / pts.reduce((x, p) => x + (p.n - mn) ** 2, 0);
  const a = mt - b * mn;
  return { a, b, maxRel: Math.max(...pts.map((p) => Math.abs(p.t - (a + b * p.n)) / p.t)) };
}

/** `--render FILE`: the markdown of a saved --json / --json-out result (estimates recomputed), without running anything. */
function render(path: string): void {
  const saved = JSON.parse(readFileSync(path, 'utf8')) as { machine: Record<string, unknown>; config: Record<string, unknown>; rows: Row[] };
  const ditFrom = saved.config.dit_from as string | null | undefined;
  const layers = ditFrom && existsSync(ditFrom) ? (JSON.parse(readFileSync(ditFrom, 'utf8')) as { config: { layers: number } }).config.layers : (saved.config.layers as number);
  if (!saved.config.tiny) for (const row of saved.rows) row.pipeline_estimate = pipelineEstimate(row, layers);
  process.stdout.write(markdown(saved.machine, saved.config, saved.rows));
}

async function parent(): Promise<void> {
  if (opt('--render', '')) return render(opt('--render', ''));
  const asJson = flag('--json');
  const log = (s: string) => process.stderr.write(s + '\n');
  const sizes = opt('--sizes', TINY ? '64x64' : '480x832,720x1280')
    .split(',')
    .map((s) => parseSize(s, '--sizes'));
  const frames = posInt('--frames', TINY ? '9' : '81', 5);
  const layers = posInt('--layers', '2');
  const steps = posInt('--steps', '1');
  const reps = posInt('--reps', '1');
  const guidance = Number(opt('--guidance', '5'));
  if (!Number.isFinite(guidance)) usageError(`--guidance must be a number`);
  const timeoutS = Number(opt('--timeout-s', '0'));
  if (!Number.isFinite(timeoutS) || timeoutS < 0) usageError(`--timeout-s must be a number of seconds >= 0 (0: no limit)`);
  for (const [H, W] of sizes)
    try {
      geometries(frames, H, W);
    } catch (e) {
      usageError((e as Error).message);
    }
  const decodeSizeOpt = opt('--decode-size', TINY ? 'same' : '64x64');
  const decodeSize = decodeSizeOpt === 'same' ? null : parseSize(decodeSizeOpt, '--decode-size');
  const fwdPerStep = guidance === 1 ? 1 : 2;
  useNative();
  const load0 = loadavg();
  const t00 = performance.now();
  const uptime0 = spawnSync('uptime', { encoding: 'utf8' }).stdout?.trim() ?? '';
  const cpu = cpus()[0]?.model ?? 'unknown';
  log(`bench:generate on ${cpu} (${cpus().length} cores), ${THREADS} threads; ${uptime0}`);

  const common = ['--frames', String(frames), '--threads', String(THREADS), ...(TINY ? ['--tiny'] : [])];
  const rows: Row[] = [];
  for (const [H, W] of sizes) {
    const geo = geometries(frames, H, W);
    const ditSides = {} as Record<Side, DitSide>;
    if (!flag('--no-dit')) {
      const runs: Record<Side, DitRun[]> = { dc: [], base: [] };
      const errors: Partial<Record<Side, string>> = {};
      for (let r = 0; r < reps; r++) {
        const order: Side[] = r % 2 === 0 ? ['dc', 'base'] : ['base', 'dc'];
        for (const side of order) {
          log(`${H}x${W} DiT ${side} (${geo[side].tokens} tokens, ${layers} block${layers > 1 ? 's' : ''}, ${steps} step${steps > 1 ? 's' : ''} x ${fwdPerStep} forwards), rep ${r + 1}/${reps} ...`);
          const res = runChild<DitRun>(['--child-dit', '--side', side, '--size', `${H}x${W}`, '--layers', String(layers), '--steps', String(steps), '--guidance', String(guidance), ...common], log, timeoutS);
          if (isErr(res)) errors[side] = res.error;
          else {
            runs[side].push(res);
            log(`  forwards ${res.forward_ms.map((v) => v.toFixed(0)).join(' / ')} ms (CPU ${res.forward_cpu_ms.map((v) => v.toFixed(0)).join(' / ')} ms), step ${res.step_ms.map((v) => v.toFixed(0)).join(' / ')} ms, peak RSS ${res.peak_rss_mb.toFixed(0)} MB`);
          }
        }
      }
      for (const side of ['dc', 'base'] as Side[]) {
        const g = geo[side];
        const rs = runs[side];
        const cfg = ditConfig(side, layers);
        ditSides[side] = {
          tokens: g.tokens,
          latent: g.latent,
          patch: g.patch,
          pixels: `${g.frames}x${g.height}x${g.width}`,
          frames: g.frames,
          params: new WanModel(cfg).parameterCount(),
          forward_ms: rs.length ? round(median(rs.flatMap((x) => x.forward_ms))) : null,
          forward_cpu_ms: rs.length ? round(median(rs.flatMap((x) => x.forward_cpu_ms))) : null,
          step_ms: rs.length && fwdPerStep === 2 ? round(median(rs.flatMap((x) => x.step_ms))) : null,
          step_cfg_ms: rs.length ? round(fwdPerStep === 2 ? median(rs.flatMap((x) => x.step_ms)) : 2 * median(rs.flatMap((x) => x.forward_ms))) : null,
          step_cfg_computed: fwdPerStep === 1,
          peak_rss_mb: rs.length ? round(median(rs.map((x) => x.peak_rss_mb))) : null,
          rss_after_load_mb: rs.length ? round(median(rs.map((x) => x.rss_after_load_mb))) : null,
          gflop_forward: round(forwardFlops(cfg, g.tokens).total / 1e9, 3),
          ...(errors[side] && !rs.length ? { error: errors[side] } : {}),
        };
      }
    }
    const tokenBound = geo.base.tokens / geo.dc.tokens;
    const fl = (s: Side) => forwardFlops(ditConfig(s, layers), geo[s].tokens).total;
    const dit = flag('--no-dit')
      ? null
      : {
          ...ditSides,
          speedup_step: ditSides.dc.step_cfg_ms && ditSides.base.step_cfg_ms ? round(ditSides.base.step_cfg_ms / ditSides.dc.step_cfg_ms, 2) : null,
          speedup_forward: ditSides.dc.forward_ms && ditSides.base.forward_ms ? round(ditSides.base.forward_ms / ditSides.dc.forward_ms, 2) : null,
          speedup_forward_cpu: ditSides.dc.forward_cpu_ms && ditSides.base.forward_cpu_ms ? round(ditSides.base.forward_cpu_ms / ditSides.dc.forward_cpu_ms, 2) : null,
        };
    rows.push({
      size: `${H}x${W}`,
      frames_requested: frames,
      bounds: {
        tokens_dc: geo.dc.tokens,
        tokens_base: geo.base.tokens,
        token_bound: round(tokenBound, 3),
        attention_bound: round(tokenBound * tokenBound, 2),
        flop_bound: round(fl('base') / fl('dc'), 2),
      },
      dit,
      decode: null,
      pipeline_estimate: null,
    });
  }

  // default: the true sizes, the first 1 and 2 latent frames, extrapolated in time (--decode-size X: the old way)
  const decodeLatents = opt('--decode-latents', TINY || opt('--decode-size', '') ? '' : '1,2')
    .split(',')
    .filter((v) => v)
    .map(Number);
  if (decodeLatents.some((n) => !Number.isInteger(n) || n < 1)) usageError(`--decode-latents must list positive integers, e.g. 1,2`);
  if (decodeLatents.length && !flag('--no-decode')) {
    // decode at each size itself, of the clip's first n latent frames, extrapolated in time only; children's JSON lines
    // from --decode-from FILE are used instead of running those children again (a long run done piece by piece)
    const saved: DecodeRun[] = opt('--decode-from', '')
      ? readFileSync(opt('--decode-from', ''), 'utf8')
          .split('\n')
          .filter((l) => l.trim().startsWith('{'))
          .map((l) => JSON.parse(l) as DecodeRun)
      : [];
    const fits = new Map<string, Record<Side, DecodeSide | { error: string }>>();
    for (const row of rows) {
      const [H, W] = row.size.split('x').map(Number) as [number, number];
      const geo = geometries(frames, H, W);
      const dec = {} as Record<Side, DecodeSide | { error: string }>;
      for (const side of ['dc', 'base'] as Side[]) {
        const g = geo[side];
        const runs: DecodeRun[] = [];
        let err: { error: string } | null = null;
        for (const n of decodeLatents) {
          const have = saved.find((r) => r.side === side && r.height === g.height && r.width === g.width && r.latents === n);
          if (have) {
            runs.push(have);
            continue;
          }
          // a saved run at the same height and a narrower width (a decode that did not fit in memory at the full
          // width, e.g. the Wan VAE at 720x1280 on 24 GB): its times scaled by the width ratio, labelled; the convs
          // cost per pixel; the one other term, the Wan VAE's middle attention over the H/8 x W/8 positions of each
          // latent frame (384 channels: ~0.3 TFLOP per latent at 720x1280, about 1% of the decode), grows with the
          // square of the width, so the scaled figure is low by about half of that
          const narrow = saved.find((r) => r.side === side && r.height === g.height && r.width < g.width && r.latents === n);
          if (narrow) {
            const k = g.width / narrow.width;
            runs.push({ ...narrow, width: g.width, decode_ms: narrow.decode_ms * k, decode_cpu_ms: narrow.decode_cpu_ms * k, push_ms: narrow.push_ms.map((v) => v * k), push_cpu_ms: narrow.push_cpu_ms.map((v) => v * k), measured_width: narrow.width });
            continue;
          }
          if (flag('--decode-saved-only')) continue;
          log(`decode ${side === 'dc' ? 'DC-AE-V' : 'Wan VAE'} at ${row.size}, first ${n} latent frame(s) ...`);
          const res = runChild<DecodeRun>(['--child-decode', '--side', side, '--size', row.size, '--latents', String(n), ...common], log, timeoutS);
          if (isErr(res)) err = res;
          else {
            runs.push(res);
            log(`  ${res.out_frames} frames in ${res.decode_ms.toFixed(0)} ms (CPU ${res.decode_cpu_ms.toFixed(0)} ms), peak RSS ${res.peak_rss_mb.toFixed(0)} MB`);
          }
        }
        if (!runs.length) {
          dec[side] = err ?? { error: 'not measured here' };
          continue;
        }
        const F = g.latent[1];
        const chunks = side === 'dc' ? Math.ceil(F / 10) : 1;
        // the Wan VAE decodes one latent per push: its first k pushes are the decode of k latents, so one run gives a
        // point per latent (the last with finish()); DC-AE-V decodes a partial chunk at once: one point per run
        const pts = (key: 'push_ms' | 'push_cpu_ms', total: 'decode_ms' | 'decode_cpu_ms') =>
          runs.flatMap((r) =>
            side === 'base' && r[key].length === r.latents + 1
              ? r[key].slice(0, r.latents).map((_, k) => ({ n: k + 1, t: r[key].slice(0, k + 1).reduce((a, v) => a + v, 0) + (k + 1 === r.latents ? r[key][r.latents]! : 0) }))
              : [{ n: r.latents, t: r[total] }],
          );
        const w = fitTime(pts('push_ms', 'decode_ms'));
        const c = fitTime(pts('push_cpu_ms', 'decode_cpu_ms'));
        const fit: TimeFit = {
          points: runs.map((r) => ({ latents: r.latents, frames: r.out_frames, ms: round(r.decode_ms), cpu_ms: round(r.decode_cpu_ms), peak_rss_mb: round(r.peak_rss_mb), push_ms: r.push_ms.map((v) => round(v)), push_cpu_ms: r.push_cpu_ms.map((v) => round(v)), ...(r.measured_width ? { measured_width: r.measured_width } : {}) })),
          per_latent_ms: round(w.b),
          intercept_ms: round(w.a),
          per_latent_cpu_ms: round(c.b),
          intercept_cpu_ms: round(c.a),
          max_rel_residual: round(Math.max(w.maxRel, c.maxRel), 3),
          latents: F,
          chunks,
          decode_cpu_ms: round(chunks * c.a + F * c.b),
        };
        const last = runs[runs.length - 1]!;
        dec[side] = {
          config: last.config,
          params: last.params,
          measured_at: `${runs.map((r) => r.latents).join(', ')} latent frame(s) (${runs.map((r) => r.out_frames).join(', ')} frames) x ${last.measured_width ? `${g.height}x${last.measured_width}, times x ${(g.width / last.measured_width).toFixed(2)} for the width ${g.width} (peak RSS at ${last.measured_width})` : `${g.height}x${g.width}`}${last.tile ? `, in spatial tiles of ${last.tile} px (overlap ${last.overlap})` : ''}`,
          frames: g.frames,
          decode_ms_measured: round(last.decode_ms),
          decode_cpu_ms_measured: round(last.decode_cpu_ms),
          decode_ms: round(chunks * w.a + F * w.b),
          extrapolated: true,
          peak_rss_mb: round(Math.max(...runs.map((r) => r.peak_rss_mb))),
          time_fit: fit,
        };
      }
      fits.set(row.size, dec);
      row.decode = dec;
    }
    // a size with no measurement of a side: the other size's fit scaled by the pixel count (labelled)
    for (const row of rows)
      for (const side of ['dc', 'base'] as Side[]) {
        const d = row.decode![side];
        if (!isErr(d)) continue;
        const [H, W] = row.size.split('x').map(Number) as [number, number];
        const g = geometries(frames, H, W)[side];
        const src = rows.find((r) => r.decode && !isErr(r.decode[side]) && !(r.decode[side] as DecodeSide).time_fit?.scaled_from);
        if (!src) continue;
        const from = src.decode![side] as DecodeSide;
        const [sh, sw] = src.size.split('x').map(Number) as [number, number];
        const gs = geometries(frames, sh, sw)[side];
        const k = (g.height * g.width) / (gs.height * gs.width);
        row.decode![side] = { ...from, frames: g.frames, decode_ms: round(from.decode_ms * k), time_fit: { ...(Object.fromEntries(Object.entries(from.time_fit!).map(([key, v]) => [key, /_ms$/.test(key) ? round((v as number) * k) : v])) as unknown as TimeFit), scaled_from: src.size } };
      }
  }
  // decode: once at --decode-size (extrapolated to each size), or at each size itself
  if (!flag('--no-decode') && !decodeLatents.length) {
    const measured = new Map<string, Record<Side, DecodeRun | { error: string }>>();
    const measure = (H: number, W: number) => {
      const key = `${H}x${W}`;
      if (!measured.has(key)) {
        const got = {} as Record<Side, DecodeRun | { error: string }>;
        for (const side of ['dc', 'base'] as Side[]) {
          log(`decode ${side === 'dc' ? 'DC-AE-V' : 'Wan VAE'} at ${key}, ${frames} frames requested ...`);
          const runs: DecodeRun[] = [];
          let err: { error: string } | null = null;
          for (let r = 0; r < reps; r++) {
            const res = runChild<DecodeRun>(['--child-decode', '--side', side, '--size', key, ...common], log, timeoutS);
            if (isErr(res)) err = res;
            else {
              runs.push(res);
              log(`  ${res.out_frames} frames of ${res.height}x${res.width} in ${res.decode_ms.toFixed(0)} ms (CPU ${res.decode_cpu_ms.toFixed(0)} ms), peak RSS ${res.peak_rss_mb.toFixed(0)} MB`);
            }
          }
          got[side] = runs.length ? { ...runs[0]!, decode_ms: median(runs.map((x) => x.decode_ms)), decode_cpu_ms: median(runs.map((x) => x.decode_cpu_ms)), peak_rss_mb: median(runs.map((x) => x.peak_rss_mb)) } : err!;
        }
        measured.set(key, got);
      }
      return measured.get(key)!;
    };
    for (const row of rows) {
      const [H, W] = row.size.split('x').map(Number) as [number, number];
      const m = decodeSize ? measure(decodeSize[0], decodeSize[1]) : measure(H, W);
      const geo = geometries(frames, H, W);
      const dec = {} as Record<Side, DecodeSide | { error: string }>;
      for (const side of ['dc', 'base'] as Side[]) {
        const r = m[side];
        if (isErr(r)) {
          dec[side] = r;
          continue;
        }
        const scale = (geo[side].height * geo[side].width) / (r.height * r.width);
        dec[side] = {
          config: r.config,
          params: r.params,
          measured_at: `${r.out_frames}x${r.height}x${r.width}`,
          frames: r.out_frames,
          decode_ms_measured: round(r.decode_ms),
          decode_cpu_ms_measured: round(r.decode_cpu_ms),
          decode_ms: round(r.decode_ms * scale),
          extrapolated: scale !== 1,
          peak_rss_mb: round(r.peak_rss_mb),
        };
      }
      row.decode = dec;
    }
  }
  // --dit-from FILE: the DiT rows of a saved --json-out result (the decode measured here, the DiT there)
  let estLayers = layers;
  let ditFromConfig: Record<string, unknown> = {};
  if (opt('--dit-from', '')) {
    const other = JSON.parse(readFileSync(opt('--dit-from', ''), 'utf8')) as { config: { layers: number; command: string }; rows: Row[] };
    estLayers = other.config.layers;
    ditFromConfig = Object.fromEntries(Object.entries(other.config).filter(([k]) => ['layers', 'steps', 'guidance', 'forwards_per_step', 'reps'].includes(k)));
    ditFromConfig.dit_command = other.config.command;
    for (const row of rows) row.dit = other.rows.find((r) => r.size === row.size)?.dit ?? null;
  }
  if (!TINY) for (const row of rows) row.pipeline_estimate = pipelineEstimate(row, estLayers);

  const load1 = loadavg();
  const machine = {
    cpu,
    cores: cpus().length,
    mem_gib: round(totalmem() / 2 ** 30, 1),
    free_gib_at_start: round(freemem() / 2 ** 30, 1),
    threads: THREADS,
    node: process.version,
    load_avg_start: load0.map((v) => round(v, 2)),
    load_avg_end: load1.map((v) => round(v, 2)),
    wall_s: round((performance.now() - t00) / 1000, 1),
  };
  const config = {
    tiny: TINY,
    layers,
    width: (({ dim, num_heads, ffn_dim, text_len, text_dim }) => ({ dim, num_heads, ffn_dim, text_len, text_dim }))(ditConfig('dc', layers)),
    steps,
    guidance,
    forwards_per_step: fwdPerStep,
    sampler: 'UniPC (flow shift 5)',
    reps,
    frames_requested: frames,
    decode_size: decodeLatents.length ? 'same' : decodeSize ? `${decodeSize[0]}x${decodeSize[1]}` : 'same',
    decode_latents: decodeLatents,
    dit_from: opt('--dit-from', '') || null,
    ...ditFromConfig,
    command: `npm run bench:generate -- ${process.argv.slice(2).join(' ')}`.trim(),
  };
  const json = JSON.stringify({ machine, config, rows }, null, 1) + '\n';
  const jsonOut = opt('--json-out', '');
  if (jsonOut) writeFileSync(jsonOut, json);
  if (asJson) {
    process.stdout.write(json);
    return;
  }
  process.stdout.write(markdown(machine, config, rows));
}

interface Row {
  size: string;
  frames_requested: number;
  bounds: { tokens_dc: number; tokens_base: number; token_bound: number; attention_bound: number; flop_bound: number };
  dit: (Record<Side, DitSide> & { speedup_step: number | null; speedup_forward: number | null; speedup_forward_cpu: number | null }) | null;
  decode: Record<Side, DecodeSide | { error: string }> | null;
  /** an extrapolation, not a measurement: see pipelineEstimate */
  pipeline_estimate: { steps: number; blocks: number; dc_min: number; base_min: number; speedup: number; speedup_cpu: number | null } | null;
}

/**
 * The whole T2V generation extrapolated from the measured slice: `steps` denoising steps with CFG of the full
 * `blocks`-block DiT (the measured step scaled by blocks / layers, which also scales the small patch-embedding, text-
 * embedding and head cost, a slight overestimate for both sides) plus the decode. An estimate, labelled as such.
 */
function pipelineEstimate(row: Row, layers: number, steps = 50, blocks = 30): Row['pipeline_estimate'] {
  const d = row.dit;
  const dec = row.decode;
  if (!d?.dc.step_cfg_ms || !d.base.step_cfg_ms || !dec || isErr(dec.dc) || isErr(dec.base)) return null;
  const min = (step: number, decode: number) => (steps * step * (blocks / layers) + decode) / 60000;
  const dcMin = min(d.dc.step_cfg_ms, dec.dc.decode_ms);
  const baseMin = min(d.base.step_cfg_ms, dec.base.decode_ms);
  // the same from CPU times: a CFG step = 2 forwards' CPU time, the decode's CPU time scaled as its wall time
  const cpu = (x: DitSide, y: DecodeSide) => (x.forward_cpu_ms ? min(2 * x.forward_cpu_ms, y.time_fit ? y.time_fit.decode_cpu_ms : (y.decode_cpu_ms_measured * y.decode_ms) / y.decode_ms_measured) : null);
  const [dcCpu, baseCpu] = [cpu(d.dc, dec.dc), cpu(d.base, dec.base)];
  return { steps, blocks, dc_min: round(dcMin, 1), base_min: round(baseMin, 1), speedup: round(baseMin / dcMin, 2), speedup_cpu: dcCpu && baseCpu ? round(baseCpu / dcCpu, 2) : null };
}

/** Each (row, side) decode of the rows that have decodes, with the VAE's name. */
function decodeCells(rows: Row[]) {
  return rows.flatMap((r) => {
    const d = r.decode;
    return d ? (['dc', 'base'] as Side[]).map((side) => ({ r, d, side, x: d[side], name: side === 'dc' ? 'DC-AE-V f32t4c32' : 'Wan-2.1 VAE f8t4c16' })) : [];
  });
}

function markdown(machine: Record<string, unknown>, config: Record<string, unknown>, rows: Row[]): string {
  const f = (v: number | null | undefined, unit = '') => (v === null || v === undefined ? '-' : `${v.toLocaleString('en-US')}${unit}`);
  const s = (ms: number | null | undefined) =>
    ms === null || ms === undefined
      ? '-'
      : Math.abs(ms) >= 2 * 3600e3
        ? `${(ms / 3600e3).toFixed(1)} h`
        : Math.abs(ms) >= 600e3
          ? `${(ms / 60e3).toFixed(1)} min`
          : Math.abs(ms) >= 10000
            ? `${(ms / 1000).toFixed(1)} s`
            : `${Math.round(ms)} ms`;
  const width = config.tiny ? 'the tiny (64-wide) DiT' : 'the 1.3B width';
  const timed = config.forwards_per_step === 2 ? 'each step timed with CFG (2 forwards)' : 'one forward timed per step; a step with CFG is 2 forwards (2 x forward, computed)';
  let md = `\nDC-VideoGen vs base Wan-2.1, ${config.layers}-block slice of ${width}; ${timed}\n\n`;
  md += `| size | side | latent (C x F x H x W) | patch | tokens | step with CFG | forward | forward CPU time | DiT peak RSS | speed-up (wall) | speed-up (CPU time) | token bound | FLOP bound | attention bound |\n`;
  md += `|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n`;
  for (const r of rows) {
    for (const side of ['dc', 'base'] as Side[]) {
      const d = r.dit?.[side];
      const g = geometries(r.frames_requested, ...(r.size.split('x').map(Number) as [number, number]))[side];
      const first = side === 'dc';
      md += `| ${first ? r.size : ''} | ${side === 'dc' ? `DC-VideoGen (${g.frames}x${g.height}x${g.width})` : `base Wan (${g.frames}x${g.height}x${g.width})`} | ${g.latent.join('x')} | ${g.patch.join('x')} | ${g.tokens.toLocaleString('en-US')} | ${d?.error ? `failed: ${d.error}` : `${s(d?.step_cfg_ms)}${d?.step_cfg_computed && d.step_cfg_ms ? ' (2 x forward)' : ''}`} | ${s(d?.forward_ms)} | ${s(d?.forward_cpu_ms)} | ${f(d?.peak_rss_mb, ' MB')} | ${first ? (r.dit?.speedup_step ? `**${r.dit.speedup_step}x**` : '-') : ''} | ${first ? (r.dit?.speedup_forward_cpu ? `**${r.dit.speedup_forward_cpu}x**` : '-') : ''} | ${first ? `${r.bounds.token_bound}x` : ''} | ${first ? `${r.bounds.flop_bound}x` : ''} | ${first ? `${r.bounds.attention_bound}x` : ''} |\n`;
    }
  }
  if (rows.some((r) => r.decode && (['dc', 'base'] as Side[]).some((k) => !isErr(r.decode![k]) && (r.decode![k] as DecodeSide).time_fit))) {
    md += `\nStreaming decode of the same clip at its own frame size, measured on its first n latent frames and extrapolated in time only (T(n) = intercept + n x per-latent; DC-AE-V: the intercept once per 10-latent chunk). Random weights: DC-AE-V f32t4c32 official topology, Wan-2.1 VAE official config (dim 96)\n\n`;
    md += `| size | VAE | decoder params | measured: latents (frames), wall (CPU) | per latent frame, wall (CPU) | intercept, wall (CPU) | clip decode, extrapolated in time: wall (CPU) | peak RSS, measured | speed-up (wall / CPU) |\n|---|---|---:|---|---:|---:|---:|---:|---:|\n`;
    for (const { r, d, side, x, name } of decodeCells(rows)) {
      {
        const both = !isErr(d.dc) && !isErr(d.base) && d.dc.time_fit && d.base.time_fit ? [d.dc, d.base] : null;
        const sp = both ? `${round(both[1]!.decode_ms / both[0]!.decode_ms, 2)}x / ${round(both[1]!.time_fit!.decode_cpu_ms / both[0]!.time_fit!.decode_cpu_ms, 2)}x` : '-';
        if (isErr(x) || !x.time_fit) {
          md += `| ${side === 'dc' ? r.size : ''} | ${name} | - | ${isErr(x) ? `not measured: ${x.error}` : '-'} | - | - | - | - | ${side === 'dc' ? sp : ''} |\n`;
          continue;
        }
        const t = x.time_fit;
        const W = Number(r.size.split('x')[1]);
        const narrow = t.points.find((p) => p.measured_width)?.measured_width;
        const pts = t.scaled_from
          ? `not measured here: ${t.scaled_from}'s, scaled by the pixel count`
          : (narrow ? `measured ${narrow} px wide, times x ${(W / narrow).toFixed(2)}: ` : '') + t.points.map((p) => `${p.latents} (${p.frames}): ${s(p.ms)} (${s(p.cpu_ms)})`).join('; ');
        md += `| ${side === 'dc' ? r.size : ''} | ${name} | ${(x.params / 1e6).toFixed(1)} M | ${pts} | ${s(t.per_latent_ms)} (${s(t.per_latent_cpu_ms)}) | ${s(t.intercept_ms)} (${s(t.intercept_cpu_ms)}) | ${t.latents} latents${t.chunks > 1 ? `, ${t.chunks} chunks` : ''}: ${s(x.decode_ms)} (${s(t.decode_cpu_ms)}) | ${t.scaled_from ? '-' : f(x.peak_rss_mb, ' MB') + (narrow ? ` (${narrow} px wide)` : '')} | ${side === 'dc' ? sp : ''} |\n`;
      }
    }
  } else if (rows.some((r) => r.decode)) {
    md += `\nStreaming decode of the same clip (random weights: DC-AE-V f32t4c32 official topology, Wan-2.1 VAE official config)\n\n`;
    md += `| size | VAE | decoder params | measured at (frames x H x W) | decode, measured (CPU time) | decode at the size | decode peak RSS (at the measured size) | speed-up |\n|---|---|---:|---|---:|---:|---:|---:|\n`;
    for (const { r, d, side, x, name } of decodeCells(rows)) {
      {
        const sp = !isErr(d.dc) && !isErr(d.base) ? `${round(d.base.decode_ms / d.dc.decode_ms, 2)}x` : '-';
        if (isErr(x)) md += `| ${side === 'dc' ? r.size : ''} | ${name} | - | - | failed: ${x.error} | - | - | ${side === 'dc' ? sp : ''} |\n`;
        else md += `| ${side === 'dc' ? r.size : ''} | ${name} | ${(x.params / 1e6).toFixed(1)} M | ${x.measured_at} | ${s(x.decode_ms_measured)} (${s(x.decode_cpu_ms_measured)}) | ${s(x.decode_ms)}${x.extrapolated ? ' (extrapolated)' : ''} | ${f(x.peak_rss_mb, ' MB')} | ${side === 'dc' ? sp : ''} |\n`;
      }
    }
  }
  if (rows.some((r) => r.pipeline_estimate)) {
    md += `\nEstimate, not a measurement: a whole generation (50 UniPC steps with CFG, all 30 blocks of the 1.3B, then the decode), scaled from the rows above\n\n`;
    md += `| size | DC-VideoGen (wall) | base Wan (wall) | speed-up (wall) | speed-up (CPU time) | paper (H100, whole pipeline) |\n|---|---:|---:|---:|---:|---:|\n`;
    const paper: Record<string, string> = { '480x832': '6.2x (0.24 vs 1.49 min)', '720x1280': '8.2x (0.70 vs 5.76 min)' };
    for (const r of rows) {
      const e = r.pipeline_estimate;
      if (e) md += `| ${r.size} | ${s(e.dc_min * 60000)} | ${s(e.base_min * 60000)} | ${e.speedup}x | ${e.speedup_cpu ?? '-'}x | ${paper[r.size] ?? '-'} |\n`;
    }
  }
  md += `\ncommand: \`${config.command}\`${config.dit_command ? `; DiT rows from \`${config.dit_command}\`` : ''}\n`;
  md += `machine: ${machine.cpu} (${machine.cores} cores, ${machine.mem_gib} GiB), ${machine.threads} threads per side, node ${machine.node}; load average ${(machine.load_avg_start as number[]).join(' ')} at start, ${(machine.load_avg_end as number[]).join(' ')} at end; wall ${machine.wall_s} s\n`;
  md += `medians of ${config.reps} run(s) per side (each a fresh child process), ${config.steps} UniPC step(s) per run, ${config.forwards_per_step} forward(s) per step; token bound = tokens_base / tokens_dc, attention bound = its square, FLOP bound = the FLOP model's ratio (linears + attention) for this slice\n`;
  return md;
}

// run only as a script (the smoke test imports geometries / forwardFlops)
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const main = flag('--child-dit') ? async () => childDit() : flag('--child-decode') ? async () => childDecode() : parent;
  main().catch((e) => {
    process.stderr.write(`bench:generate failed: ${(e as Error).stack ?? (e as Error).message}\n`);
    process.exit(1);
  });
}
