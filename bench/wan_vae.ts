/**
 * Wan-2.1 VAE benchmark: ours (native backend) against the *official* `wan/modules/vae.py` of Wan-Video/Wan2.1, run
 * under Debian's PyTorch (/usr/bin/python3, or DCVG_TORCH_PYTHON) through bench/torch_wan_vae.py, which imports the
 * file from the user's checkout as it is (with a minimal `einops` stub when einops is not installed).
 *
 *   npm run bench:wan-vae -- --official DIR      (or WAN_REPO=DIR; DIR is a checkout of github.com/Wan-Video/Wan2.1)
 *       [--dim 32[,96]] [--frames 17,81] [--size 256x256[,480x832]] [--reps 3] [--threads 2] [--json]
 *
 * No official code is part of this repository; without a checkout the benchmark says what is missing and exits 2
 * (there is no spec-twin Wan VAE to fall back to).
 *
 * For every width in --dim: the official topology (z_dim 16, dim_mult [1, 2, 4, 4], 2 residual blocks, temporal
 * downsampling [false, true, true]) at that base width, with random weights written once by ours (safetensors in the
 * official key names: conv weights N(0, 1/fan_in), gammas 1, biases N(0, 0.02^2)) and loaded strictly by both. For
 * every size x frame count: one random clip in [-1, 1]; each side runs in a fresh child process (ours, then the
 * official, alternating which goes first from case to case) that loads the weights and times --reps rounds of a
 * streaming encode (1, 4, 4, ... frames with the feature cache; the normalised latent) followed by a streaming decode
 * (one latent at a time; unclamped), reporting medians, and its peak RSS (VmHWM / ru_maxrss: weights, input and
 * everything the passes allocated). Accuracy: both sides' latents and reconstructions compared, max|ours - official|
 * / max|official|. Ratios are ours / official (below 1: ours is faster or smaller).
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { rand } from '../src/tensor/random.js';
import { type Tensor, noGrad } from '../src/tensor/tensor.js';
import {
  WanVAE,
  loadWanVaeWeights,
  parseWanVaeConfig,
  wan21VaeConfig,
  wanVaeConfigToJson,
  wanVaeParameterCounts,
  wanVaeRandomInit,
  wanVaeStateDict,
  type WanVaeConfig,
} from '../src/models/wan_vae/index.js';
import { cliArgs, median, useNativeBackend } from './profile.js';
import { procStatusMb } from './torch.js';

const SEED = 1818;
const here = dirname(fileURLToPath(import.meta.url));
const root = [resolve(here, '..'), resolve(here, '..', '..')].find((p) => existsSync(join(p, 'package.json')))!;
const USAGE = `usage: npm run bench:wan-vae -- --official DIR (or WAN_REPO=DIR) [--dim 32[,96]] [--frames 17,81]
       [--size 256x256[,480x832]] [--reps 3] [--threads 2] [--json]`;
const { flag, opt } = cliArgs(USAGE);
const THREADS = Number(opt('--threads', '2'));

const vmHwmMb = (): number => procStatusMb('VmHWM');

const useNative = (): void => useNativeBackend(THREADS);

interface SideRun {
  encode_ms: number[];
  decode_ms: number[];
  rss_after_load_mb: number;
  peak_rss_mb: number;
  [k: string]: unknown;
}

// ---- the child that runs ours ------------------------------------------------------------------------------------

function childOurs(): void {
  useNative();
  const cfg = parseWanVaeConfig(JSON.parse(readFileSync(opt('--config', ''), 'utf8')), 'bench');
  const model = new WanVAE(cfg);
  loadWanVaeWeights(model, opt('--weights', ''));
  const f = SafetensorsFile.open(opt('--input', ''));
  const x = f.tensor('input');
  f.close();
  const reps = Number(opt('--reps', '3'));
  const out = opt('--out', '');
  const afterLoad = vmHwmMb();
  const enc: number[] = [];
  const dec: number[] = [];
  noGrad(() => {
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      const z = model.encode(x);
      const t1 = performance.now();
      const y = model.decodeRaw(model.denormalize(z));
      const t2 = performance.now();
      enc.push(t1 - t0);
      dec.push(t2 - t1);
      if (r === 0 && out) saveSafetensors(out, new Map<string, Tensor>([['latent', z], ['reconstruction_raw', y]]));
    }
  });
  process.stdout.write(JSON.stringify({ encode_ms: enc, decode_ms: dec, rss_after_load_mb: afterLoad, peak_rss_mb: vmHwmMb(), threads: THREADS }) + '\n');
}

// ---- the parent --------------------------------------------------------------------------------------------------

function runChild(cmd: string, argv: string[]): SideRun | { error: string } {
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
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as SideRun;
}

function relErr(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return NaN;
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    num = d > num || Number.isNaN(d) ? d : num;
    den = Math.max(den, Math.abs(b[i]!));
  }
  return den ? num / den : num;
}

function readOut(path: string, name: string): Float32Array {
  const f = SafetensorsFile.open(path);
  try {
    return f.tensor(name).readSync();
  } finally {
    f.close();
  }
}

function list(s: string, what: string, parse: (v: string) => number[]): number[][] {
  return s.split(',').map((v) => {
    const r = parse(v.trim());
    if (r.some((n) => !Number.isInteger(n) || n < 1)) {
      process.stderr.write(`bench:wan-vae: bad ${what} "${v}"\n${USAGE}\n`);
      process.exit(2);
    }
    return r;
  });
}

function officialDir(): string {
  const dir = opt('--official', '') || process.env.WAN_REPO || '';
  const file = dir ? join(dir, 'wan', 'modules', 'vae.py') : '';
  if (!dir || !existsSync(file)) {
    process.stderr.write(
      (dir ? `bench:wan-vae: ${file} not found.\n` : 'bench:wan-vae: the official implementation is missing.\n') +
        'This benchmark compares against the official wan/modules/vae.py and ships no copy of it: pass --official DIR or set\n' +
        'WAN_REPO=DIR, where DIR is a checkout of https://github.com/Wan-Video/Wan2.1 (git clone --depth 1). There is no\n' +
        'spec-twin Wan VAE to fall back to.\n' +
        USAGE +
        '\n',
    );
    process.exit(2);
  }
  return resolve(dir);
}

function findTorch(): { python: string; version: string } {
  const python = process.env.DCVG_TORCH_PYTHON ?? '/usr/bin/python3';
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(`bench:wan-vae: PyTorch not found via ${python} (apt-get install python3-torch, or set DCVG_TORCH_PYTHON)\n`);
    process.exit(2);
  }
  return { python, version: r.stdout.trim() };
}

interface Row {
  dim: number;
  params: number;
  frames: number;
  height: number;
  width: number;
  latent: number[];
  ours: SideRun | { error: string };
  official: SideRun | { error: string };
  encode_ms: { ours: number; official: number; ratio: number } | null;
  decode_ms: { ours: number; official: number; ratio: number } | null;
  peak_rss_mb: { ours: number; official: number; ratio: number } | null;
  rel_err: { latent: number; reconstruction_raw: number } | null;
}

function main(): void {
  if (flag('--child-ours')) return childOurs();
  const official = officialDir();
  const torch = findTorch();
  useNative();
  const dims = list(opt('--dim', '32'), '--dim', (v) => [Number(v)]).map((d) => d[0]!);
  const frames = list(opt('--frames', '17,81'), '--frames', (v) => [Number(v)]).map((d) => d[0]!);
  const sizes = list(opt('--size', '256x256'), '--size (HxW)', (v) => v.split('x').map(Number)) as [number, number][];
  for (const t of frames)
    if ((t - 1) % 4) {
      process.stderr.write(`bench:wan-vae: --frames ${t} is not 1 + 4k\n`);
      process.exit(2);
    }
  for (const [h, w] of sizes)
    if (h % 8 || w % 8) {
      process.stderr.write(`bench:wan-vae: --size ${h}x${w} is not a multiple of 8\n`);
      process.exit(2);
    }
  const reps = Number(opt('--reps', '3'));
  for (const [name, v] of [['--reps', reps], ['--threads', THREADS]] as const)
    if (!Number.isInteger(v) || v < 1) {
      process.stderr.write(`bench:wan-vae: ${name} must be a positive integer, got ${v}\n${USAGE}\n`);
      process.exit(2);
    }
  const asJson = flag('--json');
  const log = (s: string) => process.stderr.write(s + '\n');
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-wanvae-'));
  const load0 = loadavg();
  const rows: Row[] = [];
  const me = fileURLToPath(import.meta.url);
  const py = join(root, 'bench', 'torch_wan_vae.py');
  try {
    let k = 0;
    for (const dim of dims) {
      const cfg: WanVaeConfig = parseWanVaeConfig({ ...wanVaeConfigToJson(wan21VaeConfig()), dim }, `wan2.1-vae-dim${dim}`);
      const params = wanVaeParameterCounts(cfg).total;
      const model = new WanVAE(cfg);
      wanVaeRandomInit(model, SEED + dim);
      const wpath = join(dir, `w${dim}.safetensors`);
      saveSafetensors(wpath, wanVaeStateDict(model, 'original'));
      const cpath = join(dir, `c${dim}.json`);
      writeFileSync(cpath, JSON.stringify(wanVaeConfigToJson(cfg)));
      for (const [h, w] of sizes)
        for (const t of frames) {
          const xpath = join(dir, `x${t}_${h}x${w}.safetensors`);
          saveSafetensors(xpath, new Map([['input', rand([1, 3, t, h, w], SEED + t + h + w, -1, 1)]]));
          const outs = { ours: join(dir, 'ours.safetensors'), official: join(dir, 'official.safetensors') };
          const common = ['--config', cpath, '--weights', wpath, '--input', xpath, '--reps', String(reps), '--threads', String(THREADS)];
          const runOurs = () => runChild(process.execPath, [me, '--child-ours', ...common, '--out', outs.ours]);
          const runOfficial = () => runChild(torch.python, [py, '--official', official, ...common, '--out', outs.official]);
          log(`dim ${dim} (${params.toLocaleString('en-US')} parameters), ${t} frames of ${h}x${w}: running ...`);
          let ours: SideRun | { error: string };
          let off: SideRun | { error: string };
          if (k++ % 2 === 0) {
            ours = runOurs();
            off = runOfficial();
          } else {
            off = runOfficial();
            ours = runOurs();
          }
          const ok = !('error' in ours) && !('error' in off);
          const trio = (a: number, b: number) => ({ ours: Math.round(a), official: Math.round(b), ratio: +(a / b).toFixed(3) });
          const row: Row = {
            dim,
            params,
            frames: t,
            height: h,
            width: w,
            latent: [1, 16, 1 + (t - 1) / 4, h / 8, w / 8],
            ours,
            official: off,
            encode_ms: ok ? trio(median((ours as SideRun).encode_ms), median((off as SideRun).encode_ms)) : null,
            decode_ms: ok ? trio(median((ours as SideRun).decode_ms), median((off as SideRun).decode_ms)) : null,
            peak_rss_mb: ok ? trio((ours as SideRun).peak_rss_mb, (off as SideRun).peak_rss_mb) : null,
            rel_err: ok
              ? {
                  latent: relErr(readOut(outs.ours, 'latent'), readOut(outs.official, 'latent')),
                  reconstruction_raw: relErr(readOut(outs.ours, 'reconstruction_raw'), readOut(outs.official, 'reconstruction_raw')),
                }
              : null,
          };
          rows.push(row);
          if ('error' in ours) log(`  ours failed: ${ours.error}`);
          if ('error' in off) log(`  official failed: ${off.error}`);
          if (ok)
            log(
              `  encode ${row.encode_ms!.ours} vs ${row.encode_ms!.official} ms (x${row.encode_ms!.ratio}), decode ${row.decode_ms!.ours} vs ` +
                `${row.decode_ms!.official} ms (x${row.decode_ms!.ratio}), peak RSS ${row.peak_rss_mb!.ours} vs ${row.peak_rss_mb!.official} MB ` +
                `(x${row.peak_rss_mb!.ratio}); rel err latent ${row.rel_err!.latent.toExponential(1)}, reconstruction ${row.rel_err!.reconstruction_raw.toExponential(1)}`,
            );
        }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // peak RSS growth with length: the longest clip over the shortest, per side, width and size
  const growth: { dim: number; size: string; frames: string; ours: number; official: number }[] = [];
  if (frames.length > 1) {
    const lo = Math.min(...frames);
    const hi = Math.max(...frames);
    for (const dim of dims)
      for (const [h, w] of sizes) {
        const a = rows.find((r) => r.dim === dim && r.height === h && r.width === w && r.frames === lo);
        const b = rows.find((r) => r.dim === dim && r.height === h && r.width === w && r.frames === hi);
        if (a?.peak_rss_mb && b?.peak_rss_mb)
          growth.push({
            dim,
            size: `${h}x${w}`,
            frames: `${hi}/${lo}`,
            ours: +(b.peak_rss_mb.ours / a.peak_rss_mb.ours).toFixed(3),
            official: +(b.peak_rss_mb.official / a.peak_rss_mb.official).toFixed(3),
          });
      }
  }
  const env = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    mem_gb: +(totalmem() / 2 ** 30).toFixed(1),
    threads_each_side: THREADS,
    torch: torch.version,
    official: join(official, 'wan', 'modules', 'vae.py'),
    loadavg_before: load0.map((v) => +v.toFixed(2)),
    loadavg_after: loadavg().map((v) => +v.toFixed(2)),
    official_shims: (() => {
      const o = rows.map((r) => r.official).find((x) => !('error' in x)) as SideRun | undefined;
      return o ? [o.einops, o.sdpa].join('; ') : 'unknown';
    })(),
    reps,
    command: `npm run bench:wan-vae -- ${process.argv.slice(2).join(' ')}`,
  };
  if (rows.some((r) => !r.encode_ms)) process.exitCode = 1;
  if (asJson) {
    process.stdout.write(JSON.stringify({ env, rows, rss_growth: growth }, null, 1) + '\n');
    return;
  }
  const p = (s: string | number, n: number) => String(s).padStart(n);
  const lines = [
    `Wan-2.1 VAE: ours vs official wan/modules/vae.py  (${env.cpu}, ${env.cores} cores, ${THREADS} threads each side; torch ${env.torch};`,
    `medians of ${reps} reps; load average ${env.loadavg_before.join(' ')} before, ${env.loadavg_after.join(' ')} after)`,
    `official side: ${env.official} with ${env.official_shims}`,
    '',
    `${p('dim', 4)} ${p('frames', 6)} ${p('HxW', 9)} | ${p('encode ms ours / off', 22)} ${p('ratio', 6)} | ${p('decode ms ours / off', 22)} ${p('ratio', 6)} | ${p('peak RSS MB ours / off', 23)} ${p('ratio', 6)} | ${p('rel err z / x', 16)}`,
  ];
  for (const r of rows) {
    if (!r.encode_ms) {
      lines.push(`${p(r.dim, 4)} ${p(r.frames, 6)} ${p(`${r.height}x${r.width}`, 9)} | failed: ${'error' in r.ours ? 'ours: ' + r.ours.error : ''} ${'error' in r.official ? 'official: ' + r.official.error : ''}`);
      continue;
    }
    const e = r.encode_ms;
    const d = r.decode_ms!;
    const m = r.peak_rss_mb!;
    lines.push(
      `${p(r.dim, 4)} ${p(r.frames, 6)} ${p(`${r.height}x${r.width}`, 9)} | ${p(`${e.ours} / ${e.official}`, 22)} ${p(e.ratio.toFixed(2), 6)} | ` +
        `${p(`${d.ours} / ${d.official}`, 22)} ${p(d.ratio.toFixed(2), 6)} | ${p(`${m.ours} / ${m.official}`, 23)} ${p(m.ratio.toFixed(2), 6)} | ` +
        `${p(`${r.rel_err!.latent.toExponential(1)} / ${r.rel_err!.reconstruction_raw.toExponential(1)}`, 16)}`,
    );
  }
  for (const g of growth) lines.push(`peak RSS ${g.frames} frames (dim ${g.dim}, ${g.size}): ours x${g.ours}, official x${g.official}`);
  process.stdout.write(lines.join('\n') + '\n');
}

main();
