/**
 * Peak memory of the full umT5-XXL encoding a prompt (goal: under 14 GB on a 24 GB machine). There are no real
 * weights here, so a random bf16 checkpoint of the official shapes (242 tensors, 5.68 B parameters, 11.4 GB; the
 * reference's init scales, uniform with the same variance) is streamed to a safetensors file in the official key names,
 * then a fresh process loads it with loadUmt5 (bf16 kept) and encodes one prompt of --tokens tokens (the last one eos),
 * reporting its peak RSS (VmHWM from /proc/self/status), the RSS after loading, and the load and encode times. The file
 * is deleted afterwards (also on failure).
 *
 *   node dist/bench/umt5_xxl_rss.js [--dir DIR] [--tokens 100] [--prompts 1] [--threads 2] [--keep]
 *
 * --dir: where to write the 11.4 GB file (default: the OS temp folder); --prompts 2 encodes a prompt and a negative
 * prompt together (one pass over the weights); --keep leaves the file (and prints its path) for reruns with --weights.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getNativeAddon, setBackend } from '../src/backend/index.js';
import { Rng } from '../src/tensor/random.js';
import { intTensor } from '../src/tensor/tensor.js';
import { Umt5Model, loadUmt5, umt5Preset } from '../src/models/umt5/index.js';
import { cliArgs } from './profile.js';

const USAGE = 'usage: node dist/bench/umt5_xxl_rss.js [--dir DIR] [--weights FILE] [--tokens 100] [--prompts 1] [--threads 2] [--keep]';
const { flag, opt } = cliArgs(USAGE);
const GiB = 1024 ** 3;

function status(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const m = /^(VmHWM|VmRSS):\s+(\d+) kB/.exec(line);
    if (m) out[m[1]!] = Number(m[2]) * 1024;
  }
  return out;
}

/** The reference's init_weights standard deviation of each official key (norm weights are ones). */
function stdOf(key: string, c: ReturnType<typeof umt5Preset>): number {
  if (/(^|\.)norm[12]?\.weight$/.test(key)) return 0;
  if (key === 'token_embedding.weight') return 1;
  if (key.endsWith('pos_embedding.embedding.weight')) return (2 * c.num_buckets * c.num_heads) ** -0.5;
  if (key.endsWith('ffn.fc2.weight')) return c.dim_ffn ** -0.5;
  if (key.endsWith('attn.q.weight')) return (c.dim * c.dim_attn) ** -0.5;
  if (key.endsWith('attn.o.weight')) return (c.num_heads * c.dim_attn) ** -0.5;
  return c.dim ** -0.5;
}

/**
 * Streams the checkpoint: the header, then each tensor in 16 MiB chunks of bf16 values. One 4 Mi-value block of
 * unit-variance uniform noise is made once; each chunk takes it at a rotating offset, scaled to the tensor's std and
 * rounded to bf16 (memory stays at a few chunks; values are finite and of the right scale).
 */
function writeCheckpoint(path: string): number {
  const c = umt5Preset('umt5-xxl');
  const m = new Umt5Model(c);
  const params = m.namedParams().map(([k, p]) => ({ k, shape: [...p.shape], n: p.size }));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', note: 'random umT5-XXL for bench/umt5_xxl_rss.ts' } };
  let off = 0;
  for (const p of params) {
    header[p.k] = { dtype: 'BF16', shape: p.shape, data_offsets: [off, off + 2 * p.n] };
    off += 2 * p.n;
  }
  let h = Buffer.from(JSON.stringify(header), 'utf8');
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const BLOCK = 1 << 22;
  const rng = new Rng(20191);
  const noise = new Float32Array(BLOCK + (1 << 23));
  for (let i = 0; i < noise.length; i++) noise[i] = (rng.uniform() * 2 - 1) * Math.sqrt(3);
  const CHUNK = 1 << 23; // values per write (16 MiB)
  const f32 = new Float32Array(CHUNK);
  const u32 = new Uint32Array(f32.buffer);
  const out = new Uint16Array(CHUNK);
  const fd = openSync(path, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    writeSync(fd, len);
    writeSync(fd, h);
    let rot = 0;
    for (const p of params) {
      const s = stdOf(p.k, c);
      for (let done = 0; done < p.n; done += CHUNK) {
        const n = Math.min(CHUNK, p.n - done);
        const o = (rot = (rot + 7919) % BLOCK);
        for (let i = 0; i < n; i++) f32[i] = s === 0 ? 1 : noise[o + i]! * s;
        // round to nearest even (finite values only)
        for (let i = 0; i < n; i++) {
          const b = u32[i]!;
          out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
        }
        writeSync(fd, out.subarray(0, n));
      }
    }
  } finally {
    closeSync(fd);
  }
  return params.reduce((a, p) => a + p.n, 0);
}

function child(path: string): void {
  const threads = Number(opt('--threads', '2'));
  const addon = getNativeAddon();
  if (addon) {
    setBackend('native');
    addon.setNumThreads(threads);
  }
  const tokens = Number(opt('--tokens', '100'));
  const prompts = Number(opt('--prompts', '1'));
  const start = status();
  const t0 = performance.now();
  const enc = loadUmt5(path, { config: 'umt5-xxl' });
  const t1 = performance.now();
  const afterLoad = status();
  const rng = new Rng(7);
  const L = tokens;
  const ids = new Int32Array(prompts * L);
  const mask = new Int32Array(prompts * L);
  for (let b = 0; b < prompts; b++) {
    const n = b === 0 ? L : Math.max(1, Math.floor(L / 2)); // a second prompt shorter, padded
    for (let i = 0; i < n; i++) ids[b * L + i] = i === n - 1 ? 1 : 2 + Math.floor(rng.uniform() * 256000);
    mask.fill(1, b * L, b * L + n);
  }
  const t2 = performance.now();
  const ctx = enc.encode(intTensor(ids, [prompts, L]), intTensor(mask, [prompts, L]));
  let norm = 0;
  for (const v of ctx[0]!.readSync()) norm += v * v;
  const t3 = performance.now();
  const end = status();
  const bf16 = enc.model.namedParams().every(([, p]) => p.value.dtype === 'bf16');
  process.stdout.write(
    JSON.stringify({
      rssStart: start.VmRSS,
      rssAfterLoad: afterLoad.VmRSS,
      peakAfterLoad: afterLoad.VmHWM,
      peak: end.VmHWM,
      loadSeconds: (t1 - t0) / 1000,
      encodeSeconds: (t3 - t2) / 1000,
      shapes: ctx.map((t) => [...t.shape]),
      allBf16: bf16,
      finite: Number.isFinite(norm),
      threads,
      backend: addon ? 'native' : 'reference',
    }) + '\n',
  );
}

function main(): void {
  const childPath = opt('--child', '');
  if (childPath) return child(childPath);
  const given = opt('--weights', '');
  const dir = given ? null : mkdtempSync(join(opt('--dir', tmpdir()), 'dcvg-umt5-xxl-'));
  const path = given || join(dir!, 'umt5-xxl-random-bf16.safetensors');
  try {
    if (!given) {
      const t0 = performance.now();
      const n = writeCheckpoint(path);
      console.log(`wrote ${path}: ${n.toLocaleString('en-US')} bf16 parameters, ${(statSync(path).size / GiB).toFixed(2)} GiB in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    } else if (!existsSync(given)) throw new Error(`--weights ${given} not found`);
    const argv = [fileURLToPath(import.meta.url), '--child', path, '--tokens', opt('--tokens', '100'), '--prompts', opt('--prompts', '1'), '--threads', opt('--threads', '2')];
    const r = spawnSync(process.execPath, argv, { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (r.status !== 0) throw new Error(`child failed (${r.signal ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').slice(-5).join(' | ')}`);
    const m = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number | boolean | number[][]>;
    const g = (k: string) => ((m[k] as number) / GiB).toFixed(3);
    console.log(
      `umT5-XXL (bf16 kept: ${m.allBf16}, ${m.backend} backend, ${m.threads} threads): load ${(m.loadSeconds as number).toFixed(1)} s, ` +
        `encode ${JSON.stringify(m.shapes)} ${(m.encodeSeconds as number).toFixed(1)} s (finite: ${m.finite}); RSS at start ${g('rssStart')} GiB, ` +
        `after load ${g('rssAfterLoad')} GiB, peak ${g('peak')} GiB (${((m.peak as number) / 1e9).toFixed(2)} GB; goal < 14 GB)`,
    );
    console.log(JSON.stringify(m));
  } finally {
    if (dir && !flag('--keep')) rmSync(dir, { recursive: true, force: true });
    else if (dir) console.log(`kept ${path}`);
  }
}

main();
