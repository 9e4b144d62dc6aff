/**
 * CLIP image-encoder benchmark: our visual tower (native backend) against the *official* `wan/modules/clip.py` of
 * Wan-Video/Wan2.1 under Debian's PyTorch (/usr/bin/python3, or DCVG_TORCH_PYTHON) through bench/torch_clip.py, which
 * imports the file from the user's checkout as it is (with stand-ins for the imports the visual tower does not run,
 * and plain fp32 attention in place of flash attention).
 *
 *   npm run bench:clip -- --official DIR      (or WAN_REPO=DIR; DIR is a checkout of github.com/Wan-Video/Wan2.1)
 *       [--layers 4] [--batch 1] [--reps 3] [--threads 2] [--json]
 *
 * The ViT-H/14 width (224x224, patch 14, dim 1280, 16 heads, MLP x4) with --layers blocks (the features run all but
 * the last, as image-to-video does), random weights written once by ours (visual keys, f32) and loaded strictly by
 * both; one random pixel_values batch. Each side runs in a fresh child process (ours first, then the official) that
 * loads the weights and times --reps calls of the features, reporting the median, and its peak RSS. Accuracy: max|ours
 * - official| / max|official| of the features. Ratio = ours / official (below 1: ours is faster). Each side's process CPU
 * time per call is reported too (all threads, spin-waiting included): on a machine shared with other work it moves less
 * than wall time.
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { randn } from '../src/tensor/random.js';
import { clipConfigToJson, clipParameterCounts, clipRandomState, clipVitH14Config, loadClipVisual, parseClipConfig } from '../src/models/clip/index.js';
import { cliArgs, median, useNativeBackend } from './profile.js';
import { procStatusMb } from './torch.js';

const SEED = 1919;
const here = dirname(fileURLToPath(import.meta.url));
const root = [resolve(here, '..'), resolve(here, '..', '..')].find((p) => existsSync(join(p, 'package.json')))!;
const USAGE = 'usage: npm run bench:clip -- --official DIR (or WAN_REPO=DIR) [--layers 4] [--batch 1] [--reps 3] [--threads 2] [--json]';
const { flag, opt } = cliArgs(USAGE);
const THREADS = Number(opt('--threads', '2'));

const vmHwmMb = (): number => procStatusMb('VmHWM');

const useNative = (): void => useNativeBackend(THREADS);

interface SideRun {
  features_ms: number[];
  /** process CPU time (all threads, spin-waiting included) per rep */
  cpu_ms: number[];
  rss_after_load_mb: number;
  peak_rss_mb: number;
  [k: string]: unknown;
}

function childOurs(): void {
  useNative();
  const model = loadClipVisual(opt('--weights', ''), { config: JSON.parse(readFileSync(opt('--config', ''), 'utf8')) });
  const f = SafetensorsFile.open(opt('--input', ''));
  const x = f.tensor('pixel_values');
  f.close();
  const reps = Number(opt('--reps', '3'));
  const out = opt('--out', '');
  const afterLoad = vmHwmMb();
  const ms: number[] = [];
  const cpu: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const y = model.features(x);
    ms.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
    if (r === 0 && out) saveSafetensors(out, { features: y });
  }
  process.stdout.write(JSON.stringify({ features_ms: ms, cpu_ms: cpu, rss_after_load_mb: afterLoad, peak_rss_mb: vmHwmMb(), threads: THREADS }) + '\n');
}

function runChild(cmd: string, argv: string[]): SideRun | { error: string } {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: String(THREADS) } });
  if (r.status !== 0) {
    const why = r.signal ? `killed by ${r.signal}` : `exit ${r.status}`;
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

function readFeatures(path: string): Float32Array {
  const f = SafetensorsFile.open(path);
  try {
    return f.tensor('features').readSync();
  } finally {
    f.close();
  }
}

function main(): void {
  if (flag('--child-ours')) return childOurs();
  const dirArg = opt('--official', '') || process.env.WAN_REPO || '';
  if (!dirArg || !existsSync(join(dirArg, 'wan', 'modules', 'clip.py'))) {
    process.stderr.write(
      `bench:clip: ${dirArg ? `${join(dirArg, 'wan', 'modules', 'clip.py')} not found` : 'the official implementation is missing'}.\n` +
        'This benchmark compares against the official wan/modules/clip.py and ships no copy of it: pass --official DIR or set\n' +
        'WAN_REPO=DIR, where DIR is a checkout of https://github.com/Wan-Video/Wan2.1 (git clone --depth 1).\n' +
        USAGE +
        '\n',
    );
    process.exit(2);
  }
  const official = resolve(dirArg);
  const python = process.env.DCVG_TORCH_PYTHON ?? '/usr/bin/python3';
  const tv = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (tv.status !== 0) {
    process.stderr.write(`bench:clip: PyTorch not found via ${python} (apt-get install python3-torch, or set DCVG_TORCH_PYTHON)\n`);
    process.exit(2);
  }
  const layers = Number(opt('--layers', '4'));
  const batch = Number(opt('--batch', '1'));
  const reps = Number(opt('--reps', '3'));
  for (const [name, v] of [['--layers', layers], ['--batch', batch], ['--reps', reps], ['--threads', THREADS]] as const)
    if (!Number.isInteger(v) || v < (name === '--layers' ? 2 : 1)) {
      process.stderr.write(`bench:clip: ${name} must be a positive integer${name === '--layers' ? ' >= 2' : ''}, got ${v}\n${USAGE}\n`);
      process.exit(2);
    }
  useNative();
  const cfg = parseClipConfig({ ...clipConfigToJson(clipVitH14Config()), vision_layers: layers }, `vit-h-14-${layers}-layers`);
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-clip-'));
  const load0 = loadavg();
  let ours: SideRun | { error: string };
  let off: SideRun | { error: string };
  let err = NaN;
  try {
    const wpath = join(dir, 'w.safetensors');
    saveSafetensors(wpath, clipRandomState(cfg, SEED, { textual: false }));
    const cpath = join(dir, 'c.json');
    writeFileSync(cpath, JSON.stringify(clipConfigToJson(cfg)));
    const xpath = join(dir, 'x.safetensors');
    saveSafetensors(xpath, { pixel_values: randn([batch, 3, cfg.image_size, cfg.image_size], SEED + 1) });
    const outs = { ours: join(dir, 'ours.safetensors'), official: join(dir, 'official.safetensors') };
    const common = ['--config', cpath, '--weights', wpath, '--input', xpath, '--reps', String(reps), '--threads', String(THREADS)];
    process.stderr.write(`CLIP visual, ViT-H/14 width, ${layers} layers (${layers - 1} run), batch ${batch}: running ...\n`);
    ours = runChild(process.execPath, [fileURLToPath(import.meta.url), '--child-ours', ...common, '--out', outs.ours]);
    off = runChild(python, [join(root, 'bench', 'torch_clip.py'), '--official', official, ...common, '--out', outs.official]);
    if (!('error' in ours) && !('error' in off)) err = relErr(readFeatures(outs.ours), readFeatures(outs.official));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const ok = !('error' in ours) && !('error' in off);
  const o = ok ? median((ours as SideRun).features_ms) : NaN;
  const t = ok ? median((off as SideRun).features_ms) : NaN;
  const result = {
    env: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      mem_gb: +(totalmem() / 2 ** 30).toFixed(1),
      threads_each_side: THREADS,
      torch: tv.stdout.trim(),
      official: join(official, 'wan', 'modules', 'clip.py'),
      stubs: ok ? (off as SideRun).stubs : 'unknown',
      loadavg_before: load0.map((v) => +v.toFixed(2)),
      loadavg_after: loadavg().map((v) => +v.toFixed(2)),
      reps,
      command: `npm run bench:clip -- ${process.argv.slice(2).join(' ')}`,
    },
    config: { layers, blocks_run: layers - 1, batch, params: clipParameterCounts(cfg).visual, tokens: 1 + (cfg.image_size / cfg.patch_size) ** 2 },
    ours,
    official: off,
    features_ms: ok ? { ours: +o.toFixed(1), official: +t.toFixed(1), ratio: +(o / t).toFixed(3) } : null,
    cpu_ms: ok ? (() => {
      const a = median((ours as SideRun).cpu_ms);
      const b = median((off as SideRun).cpu_ms);
      return { ours: +a.toFixed(1), official: +b.toFixed(1), ratio: +(a / b).toFixed(3) };
    })() : null,
    peak_rss_mb: ok ? { ours: Math.round((ours as SideRun).peak_rss_mb), official: Math.round((off as SideRun).peak_rss_mb) } : null,
    rel_err: err,
  };
  if (!ok) process.exitCode = 1;
  if (flag('--json')) {
    process.stdout.write(JSON.stringify(result, null, 1) + '\n');
    return;
  }
  const e = result.env;
  const lines = [
    `CLIP visual tower: ours vs official wan/modules/clip.py  (${e.cpu}, ${e.cores} cores, ${THREADS} threads each side; torch ${e.torch};`,
    `medians of ${reps} reps; load average ${e.loadavg_before.join(' ')} before, ${e.loadavg_after.join(' ')} after)`,
    `official side: ${e.official} with ${e.stubs}`,
    `ViT-H/14 width at 224x224, ${layers} layers (${layers - 1} run for the features), batch ${batch}, ${result.config.params.toLocaleString('en-US')} visual parameters`,
  ];
  if (!ok) lines.push(`failed: ${'error' in ours ? `ours: ${ours.error} ` : ''}${'error' in off ? `official: ${off.error}` : ''}`);
  else
    lines.push(
      `features: ours ${result.features_ms!.ours} ms, official ${result.features_ms!.official} ms, ratio ${result.features_ms!.ratio.toFixed(2)}; ` +
        `CPU time ${result.cpu_ms!.ours} / ${result.cpu_ms!.official} ms (ratio ${result.cpu_ms!.ratio.toFixed(2)}); ` +
        `peak RSS ${result.peak_rss_mb!.ours} / ${result.peak_rss_mb!.official} MB; rel err ${err.toExponential(1)}`,
    );
  process.stdout.write(lines.join('\n') + '\n');
}

main();
