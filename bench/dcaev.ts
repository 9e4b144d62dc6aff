/**
 * DC-AE-V benchmark: streaming encode + decode of a 128x128 video of 80 and 400 frames with a reduced-width model in
 * the released topology, ours (native backend, 2 threads) vs a PyTorch module of the same architecture written from
 * the spec (bench/torch_dcaev.py) loading the same safetensors weights.
 *
 *   npm run bench:dcaev [-- --json] [-- --reps 3] [-- --frames 80,400] [-- --size 128] [-- --profile]
 *
 * Every run is a fresh child process (so its peak RSS, VmHWM / ru_maxrss, is that run's own), ours and torch
 * alternating rep by rep; medians are reported. Streaming on both sides means: the input video is generated chunk by
 * chunk (40 frames; never the whole clip in memory), each chunk goes through the encoder with the per-layer feature
 * cache, the latents (small) are kept, then decoded 10 latent frames at a time with a fresh cache, and each decoded
 * chunk is checksummed and dropped. Only the model calls are timed (input generation and checksums are not).
 *
 * The first rep of each length also dumps both sides' latents and checks them against each other (relative error:
 * max |ours - torch| / max |torch|, must be < 1e-4), and compares the decoded-frame checksums.
 *
 * Peak RSS is reported twice: the whole process (model load included; the issue's criterion) and the "stream peak"
 * (VmHWM reset through /proc/self/clear_refs after loading), which isolates the streaming's own working set.
 *
 * PyTorch is Debian's python3-torch via /usr/bin/python3 (override with DCVG_TORCH_PYTHON); without it only our side
 * is reported.
 *
 * Other modes:
 *   --profile [--frames 80]   one instrumented run of ours (time per backend primitive, conv3d split by shape) and
 *                             the torch autograd-profiler table of the same run on the torch side
 *   --setup DIR               only write DIR/config.json and DIR/weights.safetensors (to run the children by hand:
 *                             node dist/bench/dcaev.js --child --dir DIR --frames 80;
 *                             /usr/bin/python3 bench/torch_dcaev.py run --config DIR/config.json --weights ...)
 *   child diagnostics: --gc-each-conv (with node --expose-gc)
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor } from '../src/tensor/tensor.js';
import * as ops from '../src/tensor/ops.js';
import { Rng } from '../src/tensor/random.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { getNativeAddon, setBackend, backendByName } from '../src/backend/index.js';
import type { Backend } from '../src/backend/backend.js';
import { profiledBackend, tally, type ProfRow, median, cliArgs } from './profile.js';
import { findTorch, procStatusMb, readF32, relErr, resetPeakRss } from './torch.js';
import { configFromReference, type ReferenceConfigJson } from '../src/models/dcaev/config.js';
import { DCAEV, StreamingDecoder, StreamingEncoder, geometry, loadWeights } from '../src/models/dcaev/autoencoder.js';

const THREADS = 2;
const SEED = 1234;
const here = dirname(fileURLToPath(import.meta.url));
const root = [resolve(here, '..'), resolve(here, '..', '..')].find((p) => {
  try {
    readFileSync(join(p, 'package.json'));
    return true;
  } catch {
    return false;
  }
})!;
const { flag, opt } = cliArgs('usage: npm run bench:dcaev [-- --json] [-- --reps N] [-- --frames 80,400] [-- --size 128] [-- --profile]');

// ---- the reduced config ----------------------------------------------------------------------------------------

/**
 * The released f32t4 topology (7 stages; spatial x2 down blocks in stages 1-4, the temporal x4 block ending stage 5,
 * the latent-rate stage 6; chunk-causal with 40-frame chunks = 10 latent frames; all kernels 3x3x3), with widths
 * and depths reduced from [128,256,512,512,1024,1024,1024] / [0,5,10,4,4,4,4] and 32 latent channels (f32t4c32).
 */
export const WIDTHS = [32, 64, 128, 128, 256, 256, 256];
export const DEPTHS = [0, 1, 2, 1, 1, 1, 1];
export const LATENT = 32;
const L = 40;
const LZ = 10;

export function benchConfig(): ReferenceConfigJson {
  const n = WIDTHS.length;
  const blocks = WIDTHS.map((_, i) => `ChunkCausalResBlock3d@3@3@${i === n - 1 ? LZ : L}`);
  return {
    latent_channels: LATENT,
    in_channels: 3,
    encoder: {
      width_list: WIDTHS,
      depth_list: DEPTHS,
      block_type: blocks,
      downsample_block_type: WIDTHS.slice(0, -1).map((_, i) => (i === n - 2 ? `ChunkCausalConvPixelUnshuffle@1@4@3@3@${L}` : `ChunkCausalConvPixelUnshuffle@2@1@3@3@${L}`)),
      project_in_block_type: `ChunkCausalConvPixelUnshuffle@2@1@3@3@${L}`,
      project_out_block_type: `ChunkCausalConvLayer3d@3@3@${LZ}`,
    },
    decoder: {
      width_list: WIDTHS,
      depth_list: DEPTHS,
      block_type: blocks,
      upsample_block_type: WIDTHS.slice(0, -1).map((_, i) => (i === n - 2 ? `ChunkCausalConvPixelShuffle@1@4@3@3@${LZ}` : `ChunkCausalConvPixelShuffle@2@1@3@3@${L}`)),
      project_in_block_type: `ChunkCausalConvLayer3d@3@3@${LZ}`,
      project_out_block_type: `ChunkCausalConvPixelShuffle@2@1@3@3@${L}`,
    },
  };
}

/**
 * Deterministic weights at a realistic scale: conv weights N(0, 1/fan_in) (fan_in = Cin*kt*kh*kw), conv biases
 * N(0, 0.02^2), RMSNorm weights 1 and biases 0. Drawn in state-dict order from one seeded generator.
 */
function randomWeights(model: DCAEV, seed: number): Map<string, Tensor> {
  const rng = new Rng(seed);
  const out = new Map<string, Tensor>();
  for (const [key, p] of model.namedParams()) {
    const d = new Float32Array(p.size);
    const isNorm = /\.norm\.|project_out\.op_list\.0\./.test(key);
    if (isNorm) {
      if (key.endsWith('.weight')) d.fill(1);
    } else if (p.shape.length === 5) {
      const fanIn = p.shape[1]! * p.shape[2]! * p.shape[3]! * p.shape[4]!;
      const std = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < d.length; i++) d[i] = std * rng.normal();
    } else {
      for (let i = 0; i < d.length; i++) d[i] = 0.02 * rng.normal();
    }
    out.set(key, new Tensor(d, p.shape));
  }
  return out;
}

/**
 * Frames t0..t0+n-1 of a smooth moving pattern in [-0.9, 0.9] as (1, C, n, H, W), computed in float64 and stored as
 * float32; the same formula as make_frames in bench/torch_dcaev.py.
 */
function makeFrames(t0: number, n: number, C: number, H: number, W: number): Tensor {
  const d = new Float32Array(C * n * H * W);
  let i = 0;
  for (let c = 0; c < C; c++)
    for (let k = 0; k < n; k++) {
      const t = t0 + k;
      for (let h = 0; h < H; h++) {
        const hh = h / H;
        for (let w = 0; w < W; w++) {
          const ww = w / W;
          const a = Math.sin(2 * Math.PI * (1.5 * hh + 0.5 * ww) + 0.15 * t + 2.1 * c);
          const b = Math.cos(2 * Math.PI * (1.0 * ww - 0.25 * hh) - 0.07 * t + 0.7 * c);
          d[i++] = 0.9 * a * b;
        }
      }
    }
  return new Tensor(d, [1, C, n, H, W]);
}

function checksum(t: Tensor): [number, number] {
  const d = t.readSync();
  let s = 0;
  let a = 0;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    s += v;
    a += Math.abs(v);
  }
  return [s, a];
}




// ---- profiling (--profile): time per backend primitive, conv3d split by shape ------------------------------------

const prof = new Map<string, ProfRow>();

/** Times one kernel call: conv3d keyed by shape, elementwise and reductions by op. */
function record(k: string, a: unknown[], ms: number): void {
  let key = k;
  let flops = 0;
  if (k === 'conv3dForward') {
    const p = a[0] as { xShape: number[]; wShape: number[]; yShape: number[] };
    const [, ci, , h, w] = p.xShape;
    const [co] = p.wShape;
    key = `conv3d ${ci}->${co} @${h}x${w}`;
    flops = 2 * p.yShape.reduce((x, y) => x * y, 1) * p.wShape.slice(1).reduce((x, y) => x * y, 1);
  } else if (k === 'binary' || k === 'unary' || k === 'reduce') key = `${k}:${String(a[0])}`;
  tally(prof, key, ms, flops);
}

// ---- one run of our side (child process) --------------------------------------------------------------------------

interface RunResult {
  side: 'ours' | 'torch';
  frames: number;
  encode_ms: number;
  decode_ms: number;
  /** whole-process peak (VmHWM / ru_maxrss), model load included */
  peak_rss_mb: number;
  /** peak after the model was loaded (VmHWM reset through /proc/self/clear_refs); null where not permitted */
  stream_peak_rss_mb: number | null;
  rss_after_load_mb?: number;
  latent_shape: number[];
  latent_sum: number;
  latent_abs: number;
  frames_out: number;
  out_sum: number;
  out_abs: number;
  rss_trace_mb?: number[];
  /** per-chunk model time (encode chunks, then decode chunks) */
  chunk_ms?: number[];
  profile?: { op: string; ms: number; calls: number; gflops: number }[];
}

function childOurs(): void {
  const addon = getNativeAddon();
  if (!addon) throw new Error('native addon not built: run "npm run build:native" first');
  const profile = flag('--profile');
  const native = backendByName('native');
  let b = profile ? profiledBackend(native, record) : native;
  // --gc-each-conv (diagnostic, needs node --expose-gc): a full GC before every conv shows how much of the peak RSS is
  // dead tensors waiting for the collector rather than live activations
  const gc = (globalThis as { gc?: () => void }).gc;
  if (flag('--gc-each-conv') && gc) {
    const inner = b;
    b = { ...inner, conv3dForward: (...a: Parameters<Backend['conv3dForward']>) => (gc(), inner.conv3dForward(...a)) };
  }
  // the measured runs use the native backend as is; the wrappers above exist only in diagnostic / profile runs
  if (b === native) setBackend('native');
  else setBackend(b);
  addon.setNumThreads(THREADS);
  if (addon.getNumThreads() !== THREADS) throw new Error(`native backend runs ${addon.getNumThreads()} threads, wanted ${THREADS}`);
  const dir = opt('--dir', '');
  const frames = Number(opt('--frames', '80'));
  const size = Number(opt('--size', '128'));
  const dump = opt('--dump-latents', '');
  const model = new DCAEV(configFromReference(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), 'bench'));
  loadWeights(model, join(dir, 'weights.safetensors'));
  const g = geometry(model);
  const C = model.config.inChannels;
  const rssLoaded = procStatusMb('VmHWM');
  const resetOk = resetPeakRss(); // from here on VmHWM is the streaming's own peak
  const trace: number[] = [];
  // streaming encode: input generated chunk by chunk
  const enc = new StreamingEncoder(model);
  const lat: Tensor[] = [];
  let encMs = 0;
  const chunkMs: number[] = [];
  for (let t0 = 0; t0 < frames; t0 += g.chunk!) {
    const x = makeFrames(t0, g.chunk!, C, size, size);
    const s = performance.now();
    const z = enc.push(x);
    chunkMs.push(performance.now() - s);
    encMs += chunkMs[chunkMs.length - 1]!;
    if (z) lat.push(z);
    trace.push(procStatusMb('VmRSS'));
  }
  const tail = enc.finish();
  if (tail) lat.push(tail);
  const zAll = ops.contiguous(lat.length === 1 ? lat[0]! : ops.cat(lat, 2));
  lat.length = 0;
  if (dump) writeFileSync(dump, zAll.readSync());
  // streaming decode: frames checksummed and dropped
  const dec = new StreamingDecoder(model, frames);
  const lz = dec.latentChunk;
  let decMs = 0;
  let oSum = 0;
  let oAbs = 0;
  let framesOut = 0;
  const consume = (y: Tensor | null) => {
    if (!y) return;
    const [s, a] = checksum(y);
    oSum += s;
    oAbs += a;
    framesOut += y.shape[2]!;
  };
  for (let i = 0; i < zAll.shape[2]!; i += lz) {
    const zi = ops.slice(zAll, 2, i, i + lz);
    const s = performance.now();
    const y = dec.push(zi);
    chunkMs.push(performance.now() - s);
    decMs += chunkMs[chunkMs.length - 1]!;
    consume(y);
    trace.push(procStatusMb('VmRSS'));
  }
  const s = performance.now();
  const y = dec.finish();
  decMs += performance.now() - s;
  consume(y);
  const [zs, za] = checksum(zAll);
  const res: RunResult = {
    side: 'ours',
    frames,
    encode_ms: encMs,
    decode_ms: decMs,
    peak_rss_mb: Math.max(rssLoaded, procStatusMb('VmHWM')),
    stream_peak_rss_mb: resetOk ? procStatusMb('VmHWM') : null,
    rss_after_load_mb: rssLoaded,
    latent_shape: [...zAll.shape],
    latent_sum: zs,
    latent_abs: za,
    frames_out: framesOut,
    out_sum: oSum,
    out_abs: oAbs,
    rss_trace_mb: trace.map((v) => Math.round(v)),
    chunk_ms: chunkMs.map((v) => Math.round(v)),
  };
  if (profile)
    res.profile = [...prof.entries()]
      .map(([op, e]) => ({ op, ms: +e.ms.toFixed(1), calls: e.calls, gflops: e.flops ? +(e.flops / (e.ms * 1e6)).toFixed(1) : 0 }))
      .sort((a, b) => b.ms - a.ms);
  process.stdout.write(JSON.stringify(res) + '\n');
}

// ---- parent -------------------------------------------------------------------------------------------------------

function log(msg: string): void {
  if (!flag('--json')) process.stderr.write(msg + '\n');
}



function runChild(cmd: string, argv: string[]): RunResult {
  const r = spawnSync(cmd, argv, {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, OMP_NUM_THREADS: String(THREADS) },
  });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status ?? r.signal}):\n${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as RunResult;
}



const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);

interface Side {
  encode_ms: number;
  decode_ms: number;
  /** frames / median(encode + decode) */
  fps: number;
  /** fastest rep (least disturbed by other load on the machine) */
  best_total_ms: number;
  /**
   * sum over chunk positions of the median (over reps) of that chunk's time: robust to bursts of other load that hit
   * different chunks in different reps
   */
  chunk_median_total_ms: number;
  /** median per-chunk time over the chunks after the first of each direction (warm caches, cache-fed left context) */
  steady_chunk_ms: { encode: number; decode: number };
  peak_rss_mb: number;
  stream_peak_rss_mb: number | null;
}

interface Row {
  frames: number;
  ours: Side;
  torch: Side | null;
  /** median(ours total) / median(torch total) */
  ratio: number | null;
  /** best(ours total) / best(torch total) */
  ratio_best: number | null;
  /** chunk_median_total(ours) / chunk_median_total(torch) */
  ratio_chunk_median: number | null;
}

function summarize(rs: RunResult[]): Side {
  const enc = median(rs.map((r) => r.encode_ms));
  const dec = median(rs.map((r) => r.decode_ms));
  const tot = median(rs.map((r) => r.encode_ms + r.decode_ms));
  const nEnc = rs[0]!.frames / L;
  const steady = (pick: (c: number[]) => number[]) => {
    const xs = rs.flatMap((r) => pick(r.chunk_ms ?? []));
    return xs.length ? Math.round(median(xs)) : NaN;
  };
  const sp = rs.map((r) => r.stream_peak_rss_mb).filter((v): v is number => typeof v === 'number');
  return {
    encode_ms: Math.round(enc),
    decode_ms: Math.round(dec),
    fps: +((rs[0]!.frames * 1000) / tot).toFixed(2),
    best_total_ms: Math.round(Math.min(...rs.map((r) => r.encode_ms + r.decode_ms))),
    chunk_median_total_ms: Math.round(
      (rs[0]!.chunk_ms ?? []).reduce((acc, _, i) => acc + median(rs.map((r) => r.chunk_ms?.[i] ?? NaN)), 0),
    ),
    steady_chunk_ms: { encode: steady((c) => c.slice(1, nEnc)), decode: steady((c) => c.slice(nEnc + 1)) },
    peak_rss_mb: Math.round(median(rs.map((r) => r.peak_rss_mb))),
    stream_peak_rss_mb: sp.length ? Math.round(median(sp)) : null,
  };
}

async function parent(): Promise<void> {
  const asJson = flag('--json');
  const reps = Math.max(1, Number(opt('--reps', '3')));
  const framesList = opt('--frames', '80,400').split(',').map(Number);
  const size = Number(opt('--size', '128'));
  for (const T of framesList) if (!(T > 0 && T % L === 0)) throw new Error(`--frames: ${T} is not a positive multiple of the chunk (${L})`);
  if (size % 32) throw new Error(`--size must be a multiple of 32, got ${size}`);
  if (!getNativeAddon()) throw new Error('native addon not built: run "npm run build:native" first');
  const self = fileURLToPath(import.meta.url);
  const torchPy = join(root, 'bench', 'torch_dcaev.py');

  // config + weights in a temp dir
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-dcaev-'));
  const cfgJson = benchConfig();
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfgJson, null, 1));
  const model = new DCAEV(configFromReference(cfgJson, 'bench'));
  const weights = randomWeights(model, SEED);
  saveSafetensors(join(dir, 'weights.safetensors'), weights);
  const nParams = model.parameterCount();
  const nEnc = model.encoder.parameterCount();
  weights.clear();
  const { python, version, why } = findTorch({ numpy: true });
  if (!python) log(`PyTorch side skipped: ${why}`);
  const load0 = loadavg();
  log(
    `DC-AE-V bench: widths [${WIDTHS}] depths [${DEPTHS}] c${LATENT}, chunk ${L} frames -> ${LZ} latents, ${size}x${size}, frames ${framesList.join(
      '/',
    )}, ${reps} reps, ${THREADS} threads; load avg ${load0.map((v) => v.toFixed(2)).join(' ')}`,
  );

  const ourArgs = (T: number, dump?: string) => [self, '--child', '--dir', dir, '--frames', String(T), '--size', String(size), ...(dump ? ['--dump-latents', dump] : [])];
  const torchArgs = (T: number, dump?: string) => [
    torchPy,
    'run',
    '--config',
    join(dir, 'config.json'),
    '--weights',
    join(dir, 'weights.safetensors'),
    '--frames',
    String(T),
    '--height',
    String(size),
    '--width',
    String(size),
    '--threads',
    String(THREADS),
    ...(dump ? ['--dump-latents', dump] : []),
  ];

  const results = new Map<number, { ours: RunResult[]; torch: RunResult[] }>();
  const checks: { frames: number; latent_rel_err: number; out_sum_rel: number; out_abs_rel: number; ok: boolean }[] = [];
  for (const T of framesList) results.set(T, { ours: [], torch: [] });
  try {
    for (let rep = 0; rep < reps; rep++) {
      for (const T of framesList) {
        const dumpO = rep === 0 ? join(dir, `lat_ours_${T}.f32`) : undefined;
        const dumpT = rep === 0 ? join(dir, `lat_torch_${T}.f32`) : undefined;
        const order: ('ours' | 'torch')[] = rep % 2 === 0 ? ['ours', 'torch'] : ['torch', 'ours'];
        for (const side of order) {
          if (side === 'torch' && !python) continue;
          const r = side === 'ours' ? runChild(process.execPath, ourArgs(T, dumpO)) : runChild(python!, torchArgs(T, dumpT));
          results.get(T)![side].push(r);
          log(
            `rep ${rep + 1}/${reps} T=${String(T).padStart(3)} ${side.padEnd(5)} encode ${r.encode_ms.toFixed(0).padStart(6)} ms  decode ${r.decode_ms
              .toFixed(0)
              .padStart(6)} ms  ${((T * 1000) / (r.encode_ms + r.decode_ms)).toFixed(2).padStart(6)} frames/s  peak RSS ${r.peak_rss_mb.toFixed(0)} MB`,
          );
        }
        if (rep === 0 && python) {
          const o = results.get(T)!.ours[0]!;
          const t = results.get(T)!.torch[0]!;
          const e = relErr(readF32(dumpO!), readF32(dumpT!));
          const c = {
            frames: T,
            latent_rel_err: e,
            out_sum_rel: relDiff(o.out_sum, t.out_sum),
            out_abs_rel: relDiff(o.out_abs, t.out_abs),
            ok: e < 1e-4 && relDiff(o.out_abs, t.out_abs) < 1e-4 && o.frames_out === t.frames_out,
          };
          checks.push(c);
          log(
            `  check T=${T}: latents rel err ${e.toExponential(2)}, decoded |sum| rel diff ${c.out_abs_rel.toExponential(2)} (sum ${c.out_sum_rel.toExponential(
              2,
            )}), frames ${o.frames_out}/${t.frames_out} -> ${c.ok ? 'OK' : 'MISMATCH'}`,
          );
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const load1 = loadavg();

  const rows: Row[] = framesList.map((T) => {
    const r = results.get(T)!;
    const ours = summarize(r.ours);
    const torch = r.torch.length ? summarize(r.torch) : null;
    const ratio = torch ? +(median(r.ours.map((x) => x.encode_ms + x.decode_ms)) / median(r.torch.map((x) => x.encode_ms + x.decode_ms))).toFixed(3) : null;
    const ratioBest = torch ? +(ours.best_total_ms / torch.best_total_ms).toFixed(3) : null;
    const ratioCm = torch ? +(ours.chunk_median_total_ms / torch.chunk_median_total_ms).toFixed(3) : null;
    return { frames: T, ours, torch, ratio, ratio_best: ratioBest, ratio_chunk_median: ratioCm };
  });
  const tMin = Math.min(...framesList);
  const tMax = Math.max(...framesList);
  const growth = (side: 'ours' | 'torch') => {
    const a = rows.find((r) => r.frames === tMin)![side];
    const b = rows.find((r) => r.frames === tMax)![side];
    return a && b ? +(b.peak_rss_mb / a.peak_rss_mb).toFixed(3) : null;
  };
  const rssGrowth = { ours: growth('ours'), torch: growth('torch') };
  const streamGrowth = (side: 'ours' | 'torch') => {
    const a = rows.find((r) => r.frames === tMin)![side]?.stream_peak_rss_mb;
    const b = rows.find((r) => r.frames === tMax)![side]?.stream_peak_rss_mb;
    return a && b ? +(b / a).toFixed(3) : null;
  };
  const streamRssGrowth = { ours: streamGrowth('ours'), torch: streamGrowth('torch') };
  const maxRatio = rows.every((r) => r.ratio !== null) ? Math.max(...rows.map((r) => r.ratio!)) : null;
  const criteria = {
    rss_growth_ok: rssGrowth.ours !== null && rssGrowth.ours <= 1.2,
    time_ratio_ok: maxRatio === null ? null : maxRatio <= 1.0,
    parity_ok: python ? checks.every((c) => c.ok) : null,
  };
  const traces = Object.fromEntries(framesList.map((T) => [T, results.get(T)!.ours[0]!.rss_trace_mb]));
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    mem_gib: Math.round(totalmem() / 2 ** 30),
    threads: THREADS,
    node: process.version,
    torch: python ? version : null,
    load_avg_start: load0.map((v) => +v.toFixed(2)),
    load_avg_end: load1.map((v) => +v.toFixed(2)),
  };
  const config = {
    topology: 'f32t4 released (7 stages, chunk-causal, chunk 40 frames = 10 latents)',
    width_list: WIDTHS,
    depth_list: DEPTHS,
    latent_channels: LATENT,
    params: { encoder: nEnc, decoder: nParams - nEnc, total: nParams },
    input: [1, 3, 'T', size, size],
    weights: `seed ${SEED}: conv weights N(0, 1/fan_in), conv biases N(0, 0.02^2), RMSNorm weight 1 bias 0`,
    reference_json: cfgJson,
  };
  if (asJson) {
    process.stdout.write(JSON.stringify({ machine, config, reps, rows, rss_growth: rssGrowth, stream_rss_growth: streamRssGrowth, checks, criteria, rss_trace_ours_mb: traces }, null, 1) + '\n');
    return;
  }
  const f = (v: number | undefined | null) => (v === undefined || v === null || Number.isNaN(v) ? '-' : String(v));
  let md = `\n| frames | ours enc ms | ours dec ms | ours frames/s | torch enc ms | torch dec ms | torch frames/s | time ratio ours/torch | ours peak RSS MB | torch peak RSS MB |\n`;
  md += `|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n`;
  for (const r of rows)
    md += `| ${r.frames} | ${r.ours.encode_ms} | ${r.ours.decode_ms} | ${r.ours.fps} | ${f(r.torch?.encode_ms)} | ${f(r.torch?.decode_ms)} | ${f(r.torch?.fps)} | ${f(
      r.ratio,
    )} | ${r.ours.peak_rss_mb} | ${f(r.torch?.peak_rss_mb)} |\n`;
  md += `\ndetail (medians unless noted; "steady chunk" = median per-chunk time after the first chunk of each direction; "chunk-median ratio" = ratio of the sums over chunk positions of the per-position median over reps, robust to load bursts; "stream peak" = peak RSS after the model was loaded):\n\n`;
  md += `| frames | ours steady enc/dec chunk ms | torch steady enc/dec chunk ms | best-rep ratio | chunk-median ratio | ours stream peak MB | torch stream peak MB |\n|---:|---:|---:|---:|---:|---:|---:|\n`;
  for (const r of rows)
    md += `| ${r.frames} | ${f(r.ours.steady_chunk_ms.encode)} / ${f(r.ours.steady_chunk_ms.decode)} | ${
      r.torch ? `${f(r.torch.steady_chunk_ms.encode)} / ${f(r.torch.steady_chunk_ms.decode)}` : '-'
    } | ${f(r.ratio_best)} | ${f(r.ratio_chunk_median)} | ${f(r.ours.stream_peak_rss_mb)} | ${f(r.torch?.stream_peak_rss_mb)} |\n`;
  md += `\npeak RSS(${tMax}) / RSS(${tMin}): ours ${f(rssGrowth.ours)}, torch ${f(rssGrowth.torch)} (stream peak: ours ${f(streamRssGrowth.ours)}, torch ${f(streamRssGrowth.torch)})\n`;
  if (!python) md += `\nPyTorch side skipped: ${why}\n`;
  for (const c of checks)
    md += `parity T=${c.frames}: latents rel err ${c.latent_rel_err.toExponential(2)}, decoded sum|x| rel diff ${c.out_abs_rel.toExponential(2)} -> ${c.ok ? 'OK' : 'MISMATCH'}\n`;
  md += `\ncriteria: RSS growth <= 1.2: ${criteria.rss_growth_ok ? 'PASS' : 'FAIL'}; time ratio <= 1.0: ${
    criteria.time_ratio_ok === null ? 'n/a' : criteria.time_ratio_ok ? 'PASS' : 'FAIL'
  }\n`;
  md += `\nconfig: widths [${WIDTHS.join(', ')}], depths [${DEPTHS.join(', ')}], latent c${LATENT}, f32t4 chunk-causal (chunk ${L} frames -> ${LZ} latents), `;
  md += `${(nParams / 1e6).toFixed(2)} M params (enc ${(nEnc / 1e6).toFixed(2)} M, dec ${((nParams - nEnc) / 1e6).toFixed(2)} M), input (1,3,T,${size},${size}), ${config.weights}\n`;
  md += `medians of ${reps} reps, each run a fresh process, ours/torch alternating; ${THREADS} threads each; ${machine.cpu} (${machine.cores} cores); node ${machine.node}, torch ${machine.torch ?? 'absent'}; load avg ${machine.load_avg_start.join(' ')} -> ${machine.load_avg_end.join(' ')}\n`;
  md += `\nreference config JSON:\n\n\`\`\`json\n${JSON.stringify(cfgJson)}\n\`\`\`\n`;
  process.stdout.write(md);
}

// ---- profile mode (parent side): one instrumented run of ours ---------------------------------------------------------

function profileMain(): void {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-dcaev-'));
  try {
    setupMain(dir, true);
    const T = opt('--frames', '80').split(',')[0]!;
    const size = opt('--size', '128');
    const r = runChild(process.execPath, [fileURLToPath(import.meta.url), '--child', '--profile', '--dir', dir, '--frames', T, '--size', size]);
    const total = r.encode_ms + r.decode_ms;
    const inProf = r.profile!.reduce((s, p) => s + p.ms, 0);
    const { python } = findTorch({ numpy: true });
    let torchTable = '';
    if (python) {
      const t = spawnSync(
        python,
        [join(root, 'bench', 'torch_dcaev.py'), 'run', '--config', join(dir, 'config.json'), '--weights', join(dir, 'weights.safetensors'), '--frames', T, '--height', size, '--width', size, '--threads', String(THREADS), '--profile'],
        { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(THREADS) } },
      );
      torchTable = t.stderr;
    }
    if (flag('--json')) {
      process.stdout.write(JSON.stringify({ ours: r, torch_profile: torchTable }, null, 1) + '\n');
      return;
    }
    process.stdout.write(`\nprofile of ours, T=${T}: encode ${r.encode_ms.toFixed(0)} ms + decode ${r.decode_ms.toFixed(0)} ms; ${inProf.toFixed(0)} ms inside backend calls\n\n`);
    process.stdout.write(`| op | ms | % of total | calls | GFLOP/s |\n|---|---:|---:|---:|---:|\n`);
    for (const p of r.profile!) if (p.ms >= total * 0.002) process.stdout.write(`| ${p.op} | ${p.ms} | ${((100 * p.ms) / total).toFixed(1)} | ${p.calls} | ${p.gflops || '-'} |\n`);
    if (torchTable) process.stdout.write(`\n| torch op [input shapes] | self ms | % of total | calls |\n|---|---:|---:|---:|\n${torchTable.replace(/^profile of torch.*$/m, '').trim()}\n\n${/^profile of torch.*$/m.exec(torchTable)?.[0] ?? ''}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** --setup DIR: only writes config.json and weights.safetensors into DIR (for running the children by hand). */
function setupMain(dir: string, quiet = false): void {
  const cfgJson = benchConfig();
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfgJson, null, 1));
  saveSafetensors(join(dir, 'weights.safetensors'), randomWeights(new DCAEV(configFromReference(cfgJson, 'bench')), SEED));
  if (!quiet) process.stdout.write(`wrote ${dir}/config.json and ${dir}/weights.safetensors\n`);
}

const main = flag('--child')
  ? async () => childOurs()
  : flag('--setup')
    ? async () => setupMain(opt('--setup', '.'))
    : flag('--profile')
      ? async () => profileMain()
      : parent;
main().catch((e) => {
  process.stderr.write(`bench:dcaev failed: ${(e as Error).stack ?? (e as Error).message}\n`);
  process.exit(1);
});
