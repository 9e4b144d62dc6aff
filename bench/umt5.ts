/**
 * umT5 encoder benchmark: ours (native backend) against the *official* `wan/modules/t5.py` `T5Encoder` of
 * Wan-Video/Wan2.1, run under Debian's PyTorch (/usr/bin/python3, or DCVG_TORCH_PYTHON) through bench/torch_umt5.py,
 * which imports the file from the user's checkout as it is (with a stub for its tokenizer import).
 *
 *   npm run bench:umt5 -- --official DIR     (or WAN_REPO=DIR; DIR is a checkout of github.com/Wan-Video/Wan2.1)
 *       [--layers 2] [--tokens 100] [--text-len 512] [--reps 3] [--threads 2] [--torch-dtype f32|bf16]
 *       [--ours-dtype bf16|f32] [--json]
 *
 * No official code is part of this repository; without a checkout the benchmark says what is missing and exits 2.
 *
 * Model: a --layers slice of umT5-XXL at full width (dim 4096, 64 heads, dim_ffn 10240, 32 buckets, one position
 * table per layer) with a 4,096-token vocabulary (the lookup of a few rows costs nothing; the full table would only
 * add 2 GB to write). Random weights in the reference's init scales, stored as bf16 in the official key names (as the
 * released checkpoint), loaded by both: ours keeps them bf16 (as it runs the real model), the official module gets
 * them widened to float32 (torch's fastest CPU path; `--torch-dtype bf16` runs it in bf16 as T5EncoderModel does on
 * GPU; `--ours-dtype f32` gives ours the same widened float32 weights, for a like-for-like kernel comparison). Each side runs in a fresh child process (alternating which goes first) that loads the weights and times --reps
 * forwards, reporting medians and its peak RSS (VmHWM / ru_maxrss).
 *
 * Two cases, one prompt of --tokens real tokens (the last one eos):
 * - `same length`: ids (1, tokens), no padding: both compute the same tokens;
 * - `as used`: the prompt padded to --text-len with the mask, as T5EncoderModel calls the official module (the whole
 *   padded length); ours (Umt5Encoder.encode) runs the real tokens only.
 * Accuracy: ours vs official on the real rows, max|ours - official| / max|official|. Ratio = ours / official.
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { Rng } from '../src/tensor/random.js';
import { intTensor, noGrad } from '../src/tensor/tensor.js';
import { loadUmt5, umt5ConfigToJson, umt5ParameterCount, umt5Preset, umt5RandomState, type Umt5Config } from '../src/models/umt5/index.js';
import { cliArgs, median, useNativeBackend } from './profile.js';
import { procStatusMb } from './torch.js';

const SEED = 1919;
const here = dirname(fileURLToPath(import.meta.url));
const root = [resolve(here, '..'), resolve(here, '..', '..')].find((p) => existsSync(join(p, 'package.json')))!;
const USAGE = `usage: npm run bench:umt5 -- --official DIR (or WAN_REPO=DIR) [--layers 2] [--tokens 100] [--text-len 512]
       [--reps 3] [--threads 2] [--torch-dtype f32|bf16] [--ours-dtype bf16|f32] [--json]`;
const { flag, opt } = cliArgs(USAGE);
const THREADS = Number(opt('--threads', '2'));

const vmHwmMb = (): number => procStatusMb('VmHWM');

const useNative = (): void => useNativeBackend(THREADS);

interface SideRun {
  forward_ms: number[];
  rss_after_load_mb: number;
  peak_rss_mb: number;
  [k: string]: unknown;
}

// ---- the child that runs ours ------------------------------------------------------------------------------------

function childOurs(): void {
  useNative();
  const enc = loadUmt5(opt('--weights', ''), { config: JSON.parse(readFileSync(opt('--config', ''), 'utf8')), fingerprint: 'bench' });
  const f = SafetensorsFile.open(opt('--inputs', ''));
  const ids = f.tensor('ids');
  const mask = f.tensor('mask');
  f.close();
  const reps = Number(opt('--reps', '3'));
  const out = opt('--out', '');
  const afterLoad = vmHwmMb();
  const times: number[] = [];
  noGrad(() => {
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      const [ctx] = enc.encode(ids, mask);
      times.push(performance.now() - t0);
      if (r === 0 && out) saveSafetensors(out, { context: ctx! });
    }
  });
  process.stdout.write(JSON.stringify({ forward_ms: times, rss_after_load_mb: afterLoad, peak_rss_mb: vmHwmMb(), threads: THREADS }) + '\n');
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

function relErrRows(ours: Float32Array, ref: Float32Array, n: number): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.abs(ours[i]! - ref[i]!);
    num = d > num || Number.isNaN(d) ? d : num;
    den = Math.max(den, Math.abs(ref[i]!));
  }
  return den ? num / den : num;
}

function officialDir(): string {
  const dir = opt('--official', '') || process.env.WAN_REPO || '';
  const file = dir ? join(dir, 'wan', 'modules', 't5.py') : '';
  if (!dir || !existsSync(file)) {
    process.stderr.write(
      (dir ? `bench:umt5: ${file} not found.\n` : 'bench:umt5: the official implementation is missing.\n') +
        'This benchmark compares against the official wan/modules/t5.py and ships no copy of it: pass --official DIR or set\n' +
        'WAN_REPO=DIR, where DIR is a checkout of https://github.com/Wan-Video/Wan2.1 (git clone --depth 1).\n' +
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
    process.stderr.write(`bench:umt5: PyTorch not found via ${python} (apt-get install python3-torch, or set DCVG_TORCH_PYTHON)\n`);
    process.exit(2);
  }
  return { python, version: r.stdout.trim() };
}

function intOpt(name: string, dflt: string): number {
  const v = Number(opt(name, dflt));
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`bench:umt5: ${name} must be a positive integer\n${USAGE}\n`);
    process.exit(2);
  }
  return v;
}

function main(): void {
  if (flag('--child-ours')) return childOurs();
  const official = officialDir();
  const torch = findTorch();
  useNative();
  const layers = intOpt('--layers', '2');
  const tokens = intOpt('--tokens', '100');
  const textLen = intOpt('--text-len', '512');
  const reps = intOpt('--reps', '3');
  const torchDtype = opt('--torch-dtype', 'f32');
  const oursDtype = opt('--ours-dtype', 'bf16');
  if (tokens > textLen) {
    process.stderr.write(`bench:umt5: --tokens ${tokens} exceeds --text-len ${textLen}\n`);
    process.exit(2);
  }
  const cfg: Umt5Config = { ...umt5Preset('umt5-xxl'), name: `umt5-xxl-${layers}layers`, num_layers: layers, vocab: 4096 };
  const log = (s: string) => {
    if (!flag('--json')) process.stdout.write(s + '\n');
  };
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-umt5-'));
  try {
    const weights = join(dir, 'w.safetensors');
    const state = umt5RandomState(cfg, SEED, { dtype: 'bf16' });
    saveSafetensors(weights, state);
    // ours may instead load the same values widened to float32
    const oursWeights = oursDtype === 'f32' ? join(dir, 'w32.safetensors') : weights;
    if (oursDtype === 'f32') saveSafetensors(oursWeights, state, { dtype: 'F32' });
    const cfgPath = join(dir, 'cfg.json');
    const { max_dist: _m, eps: _e, bidirectional: _b, ...ctor } = umt5ConfigToJson(cfg);
    writeFileSync(cfgPath, JSON.stringify(ctor));
    const ourCfg = join(dir, 'ours.json');
    writeFileSync(ourCfg, JSON.stringify(umt5ConfigToJson(cfg)));
    const rng = new Rng(SEED);
    const prompt = Array.from({ length: tokens }, (_, i) => (i === tokens - 1 ? 1 : 2 + Math.floor(rng.uniform() * (cfg.vocab - 2))));
    const cases = [
      { name: 'same length', L: tokens },
      { name: 'as used', L: textLen },
    ];
    log(
      `umT5 ${cfg.name}: ${(umt5ParameterCount(cfg) / 1e6).toFixed(0)} M parameters (bf16 on disk), prompt of ${tokens} tokens; ` +
        `ours ${oursDtype} weights, torch ${torch.version} (${torchDtype}), ${THREADS} threads, ${cpus()[0]?.model ?? '?'} x${cpus().length}, ` +
        `load ${loadavg()[0]!.toFixed(2)}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    );
    const rows: Record<string, unknown>[] = [];
    for (const [ci, c] of cases.entries()) {
      const ids = new Int32Array(c.L);
      const mask = new Int32Array(c.L);
      ids.set(prompt);
      mask.fill(1, 0, tokens);
      const inputs = join(dir, `io${ci}.safetensors`);
      saveSafetensors(inputs, { ids: intTensor(ids, [1, c.L]), mask: intTensor(mask, [1, c.L]) });
      const oursOut = join(dir, `ours${ci}.safetensors`);
      const offOut = join(dir, `off${ci}.safetensors`);
      const runOurs = () =>
        runChild(process.execPath, [fileURLToPath(import.meta.url), '--child-ours', '--config', ourCfg, '--weights', oursWeights, '--inputs', inputs, '--reps', String(reps), '--out', oursOut, '--threads', String(THREADS)]);
      const runOff = () =>
        runChild(torch.python, [join(root, 'bench', 'torch_umt5.py'), '--official', official, '--config', cfgPath, '--weights', weights, '--inputs', inputs, '--reps', String(reps), '--threads', String(THREADS), '--dtype', torchDtype, '--out', offOut]);
      let ours: SideRun | { error: string };
      let off: SideRun | { error: string };
      if (ci % 2 === 0) {
        ours = runOurs();
        off = runOff();
      } else {
        off = runOff();
        ours = runOurs();
      }
      const row: Record<string, unknown> = { case: c.name, tokens, length: c.L, ours, official: off };
      if (!('error' in ours) && !('error' in off)) {
        const a = median(ours.forward_ms);
        const b = median(off.forward_ms);
        const o = SafetensorsFile.open(oursOut).tensor('context').readSync();
        const r = SafetensorsFile.open(offOut).tensor('hidden_states').readSync();
        row.forward_ms = { ours: a, official: b, ratio: a / b };
        row.peak_rss_mb = { ours: ours.peak_rss_mb, official: off.peak_rss_mb };
        row.rel_err = relErrRows(o, r, tokens * cfg.dim);
        log(
          `${c.name.padEnd(12)} official L=${String(c.L).padStart(4)}, ours L=${tokens}: ours ${a.toFixed(0)} ms, official ${b.toFixed(0)} ms, ` +
            `ratio ${(a / b).toFixed(3)}; peak RSS ours ${ours.peak_rss_mb.toFixed(0)} MB, official ${off.peak_rss_mb.toFixed(0)} MB; ` +
            `rel err ${(row.rel_err as number).toExponential(2)}`,
        );
      } else log(`${c.name}: ${'error' in ours ? `ours failed: ${ours.error}` : ''} ${'error' in off ? `official failed: ${off.error}` : ''}`);
      rows.push(row);
    }
    if (flag('--json')) process.stdout.write(JSON.stringify({ config: cfg, torch: torch.version, threads: THREADS, rows }) + '\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
