/**
 * Peak memory of the Wan VAE's spatial tiling (the table in docs/wan-vae.md, "Spatial tiling"):
 *
 *   npm run bench:wan-vae-tiling -- [--dim 96] [--size 256x256] [--frames 9] [--tile 128] [--overlap 0.25]
 *       [--threads 2] [--json]
 *
 * The official topology at base width --dim (96: the released config) with wanVaeRandomInit weights (no checkpoint
 * needed), native backend. For encodeMoments (a random clip of --frames frames in [-1, 1]) and decodeRaw (random
 * N(0, 1) latents for the same clip: 1 + (frames - 1) / 4 of them), three ways, each in a fresh child process:
 * untiled (a stream given the whole clip in one push: what encodeMoments / decodeRaw run), tiled whole clip (tile by
 * tile, `{ tile }`), and a tiled stream pushed piece by piece (encode: frame 0, then groups of 4; decode: one latent
 * at a time). Each child builds the model and the input, resets its peak RSS to the current RSS (/proc/self/clear_refs;
 * where that is refused the peak after loading is the base instead, which can only understate the growth), runs the
 * call once and reports the growth of VmHWM over that base, the stream's carried state (`cacheBytes`, largest seen)
 * and the 'auto' estimate for the frame and for one tile (S^2 x ((frames per step + 2) x
 * wanVaePeakBytesPerPixelFrame + wanVaeCacheBytesPerPixel), without WAN_VAE_FIXED_OVERHEAD_BYTES).
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { getNativeAddon, setBackend } from '../src/backend/index.js';
import * as ops from '../src/tensor/ops.js';
import { rand, randn } from '../src/tensor/random.js';
import { type Tensor, noGrad } from '../src/tensor/tensor.js';
import {
  WanVAE,
  parseWanVaeConfig,
  wan21VaeConfig,
  wanVaeCacheBytesPerPixel,
  wanVaeConfigToJson,
  wanVaePeakBytesPerPixelFrame,
  wanVaeRandomInit,
} from '../src/models/wan_vae/index.js';
import { cliArgs } from './profile.js';
import { procStatusMb, resetPeakRss } from './torch.js';

const USAGE = `usage: npm run bench:wan-vae-tiling -- [--dim 96] [--size 256x256] [--frames 9] [--tile 128] [--overlap 0.25]
       [--threads 2] [--json]`;
const { flag, opt } = cliArgs(USAGE);
const SEED = 1818;
const CALLS = ['decodeRaw', 'encodeMoments'] as const;
const MODES = ['untiled', 'tiled', 'tiled-stream'] as const;
type Call = (typeof CALLS)[number];
type Mode = (typeof MODES)[number];

interface Args {
  dim: number;
  height: number;
  width: number;
  frames: number;
  tile: number;
  overlap: number;
  threads: number;
}

function args(): Args {
  const [height, width] = opt('--size', '256x256').split('x').map(Number) as [number, number];
  const a: Args = {
    dim: Number(opt('--dim', '96')),
    height,
    width,
    frames: Number(opt('--frames', '9')),
    tile: Number(opt('--tile', '128')),
    overlap: Number(opt('--overlap', '0.25')),
    threads: Number(opt('--threads', '2')),
  };
  const bad = (why: string) => {
    process.stderr.write(`bench:wan-vae-tiling: ${why}\n${USAGE}\n`);
    process.exit(2);
  };
  for (const k of ['dim', 'height', 'width', 'frames', 'tile', 'threads'] as const) if (!Number.isInteger(a[k]) || a[k] < 1) bad(`${k} must be a positive integer, got ${a[k]}`);
  if ((a.frames - 1) % 4 !== 0) bad(`--frames ${a.frames} is not 1 + 4k`);
  if (a.height % 8 || a.width % 8) bad(`--size ${a.height}x${a.width} is not a multiple of 8`);
  return a;
}

// ---- one case, in a child ----------------------------------------------------------------------------------------

function child(a: Args, call: Call, mode: Mode): void {
  const addon = getNativeAddon();
  if (!addon) throw new Error('native addon not built: run "npm run build:native" first');
  setBackend('native');
  addon.setNumThreads(a.threads);
  const model = new WanVAE(parseWanVaeConfig({ ...wanVaeConfigToJson(wan21VaeConfig()), dim: a.dim }, `wan2.1-vae-dim${a.dim}`));
  wanVaeRandomInit(model, SEED);
  const lat = 1 + (a.frames - 1) / 4;
  const input: Tensor =
    call === 'encodeMoments' ? rand([1, 3, a.frames, a.height, a.width], SEED + 1, -1, 1) : randn([1, model.zDim, lat, a.height / 8, a.width / 8], SEED + 2);
  const reset = resetPeakRss();
  const base = reset ? procStatusMb('VmRSS') : procStatusMb('VmHWM');
  const tiling = mode === 'untiled' ? {} : { tile: a.tile, overlap: a.overlap };
  let cacheBytes = 0;
  const t0 = performance.now();
  noGrad(() => {
    if (mode === 'tiled') {
      if (call === 'encodeMoments') model.encodeMoments(input, tiling);
      else model.decodeRaw(input, tiling);
      return;
    }
    // untiled: the whole clip in one push (what encodeMoments / decodeRaw do); tiled-stream: piece by piece
    const T = input.shape[2]!;
    const cuts = mode === 'untiled' ? [0, T] : call === 'encodeMoments' ? [0, ...Array.from({ length: (T - 1) / 4 + 1 }, (_, i) => 1 + 4 * i)] : Array.from({ length: T + 1 }, (_, i) => i);
    const s = call === 'encodeMoments' ? model.encodeStream(tiling) : model.decodeStream(tiling);
    const outs: Tensor[] = [];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const y = s.push(ops.contiguous(ops.slice(input, 2, cuts[i]!, cuts[i + 1]!)));
      if (y) outs.push(y);
      cacheBytes = Math.max(cacheBytes, s.cacheBytes);
    }
    s.finish();
  });
  const ms = performance.now() - t0;
  const side = call === 'encodeMoments' ? 'encode' : 'decode';
  const perPixel = (4 + 2) * wanVaePeakBytesPerPixelFrame(model.config, side) + wanVaeCacheBytesPerPixel(model.config, side);
  process.stdout.write(
    JSON.stringify({
      call,
      mode,
      peak_growth_mb: procStatusMb('VmHWM') - base,
      base: reset ? 'rss after reset' : 'peak after loading (clear_refs refused)',
      cache_mb: cacheBytes / 1e6,
      estimate_untiled_mb: (a.height * a.width * perPixel) / 1e6,
      estimate_tile_mb: (a.tile * a.tile * perPixel) / 1e6,
      ms,
    }) + '\n',
  );
}

// ---- the parent --------------------------------------------------------------------------------------------------

function main(): void {
  const a = args();
  const me = fileURLToPath(import.meta.url);
  const call = opt('--child', '');
  if (call) return child(a, call as Call, opt('--mode', '') as Mode);
  const common = ['--dim', String(a.dim), '--size', `${a.height}x${a.width}`, '--frames', String(a.frames), '--tile', String(a.tile), '--overlap', String(a.overlap), '--threads', String(a.threads)];
  const before = loadavg().map((v) => v.toFixed(2));
  const rows: Record<string, unknown>[] = [];
  for (const c of CALLS)
    for (const m of MODES) {
      const r = spawnSync(process.execPath, [me, '--child', c, '--mode', m, ...common], { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, OMP_NUM_THREADS: String(a.threads) } });
      if (r.status !== 0) {
        process.stderr.write(`bench:wan-vae-tiling: ${c} ${m} failed (${r.signal ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}\n`);
        process.exit(1);
      }
      rows.push(JSON.parse(r.stdout.trim().split('\n').pop()!));
      if (!flag('--json')) process.stderr.write(`  ${c} ${m}: done\n`);
    }
  const after = loadavg().map((v) => v.toFixed(2));
  const info = { command: `npm run bench:wan-vae-tiling -- ${process.argv.slice(2).join(' ')}`.trim(), ...a, cpu: cpus()[0]?.model, cores: cpus().length, load_before: before, load_after: after, rows };
  if (flag('--json')) {
    process.stdout.write(JSON.stringify(info, null, 2) + '\n');
    return;
  }
  const get = (c: Call, m: Mode) => rows.find((r) => r.call === c && r.mode === m)!;
  const mb = (v: unknown) => Math.round(v as number).toLocaleString('en-US');
  const lat = 1 + (a.frames - 1) / 4;
  console.log(`Wan VAE tiling memory: dim ${a.dim}, ${a.frames} frames / ${lat} latents of ${a.height} x ${a.width}, tile ${a.tile}, overlap ${a.overlap}`);
  console.log(`(${info.cpu}, ${info.cores} cores, ${a.threads} threads; load average ${before.join(' ')} before, ${after.join(' ')} after; peak growth = VmHWM over the loaded model and input)`);
  console.log(`| call | untiled | tile ${a.tile}, whole clip | tile ${a.tile}, stream | estimate (untiled / tile ${a.tile}) | carried state (untiled / tile ${a.tile} stream) |`);
  console.log('|---|---|---|---|---|---|');
  for (const c of CALLS) {
    const u = get(c, 'untiled');
    const t = get(c, 'tiled');
    const s = get(c, 'tiled-stream');
    console.log(
      `| ${c} | ${mb(u.peak_growth_mb)} MB | ${mb(t.peak_growth_mb)} MB | ${mb(s.peak_growth_mb)} MB | ${mb(u.estimate_untiled_mb)} / ${mb(u.estimate_tile_mb)} MB | ${mb(u.cache_mb)} / ${mb(s.cache_mb)} MB |`,
    );
  }
  console.log(`times (s): ${rows.map((r) => `${r.call} ${r.mode} ${((r.ms as number) / 1000).toFixed(0)}`).join(', ')}`);
}

main();
