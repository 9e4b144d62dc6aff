/**
 * Peak memory of a bf16 model: a stack of bf16 linears totalling >= 1 B parameters is written as one safetensors file
 * (in os.tmpdir(), deleted afterwards), then a fresh process loads it with openWeights (dtype kept) and runs a forward
 * pass of a small batch. Reports the file size and the child's peak RSS (VmHWM from /proc/self/status).
 *
 *   node dist/bench/bf16_rss.js [--layers 64] [--dim 4096] [--batch 4] [--compare-f32]
 *
 * --compare-f32 also runs the child loading the same file widened to float32 (dtype 'f32'), for contrast (needs about
 * twice the file size in memory).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { saveSafetensors } from '../src/io/safetensors.js';
import { openWeights } from '../src/io/weights.js';
import { Tensor, fromHostArray, noGrad, tensor } from '../src/tensor/tensor.js';
import { linear } from '../src/tensor/ops.js';

function status(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const m = /^(VmHWM|VmRSS):\s+(\d+) kB/.exec(line);
    if (m) out[m[1]!] = Number(m[2]) * 1024;
  }
  return out;
}

const GiB = 1024 ** 3;
const fmt = (b: number) => `${(b / GiB).toFixed(3)} GiB`;

/** One layer's bf16 weights: N(0, 1/dim)-ish values from a cheap generator, as bf16 bit patterns. */
function layerBits(dim: number, seed: number): Uint16Array {
  const n = dim * dim;
  const f = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  const scale = Math.sqrt(3 / dim); // uniform(-a, a) with variance 1/dim keeps activations bounded through the stack
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    f[i] = ((s >>> 0) / 2 ** 32 * 2 - 1) * scale;
  }
  return tensor(f, [n]).to('bf16').readStoredSync() as Uint16Array;
}

function child(path: string, batch: number, dtype: 'keep' | 'f32'): void {
  const before = status();
  const t0 = performance.now();
  const w = openWeights(path, { dtype, checkFinite: true });
  const layers: Tensor[] = [];
  const keys = [...w.tensors.keys()].sort();
  for (const k of keys) layers.push(w.tensors.get(k));
  w.close();
  const afterLoad = status();
  const t1 = performance.now();
  const dim = layers[0]!.shape[1]!;
  let x = tensor(Float32Array.from({ length: batch * dim }, (_, i) => Math.sin(i)), [batch, dim]);
  noGrad(() => {
    for (const l of layers) x = linear(x, l);
  });
  const y = x.readSync();
  const t2 = performance.now();
  const after = status();
  let norm = 0;
  for (const v of y) norm += v * v;
  process.stdout.write(
    JSON.stringify({
      dtype: layers[0]!.dtype,
      params: layers.reduce((a, l) => a + l.size, 0),
      rssStart: before.VmRSS,
      rssAfterLoad: afterLoad.VmRSS,
      peak: after.VmHWM,
      loadSeconds: (t1 - t0) / 1000,
      forwardSeconds: (t2 - t1) / 1000,
      outNorm: Math.sqrt(norm),
    }) + '\n',
  );
}

function main(): void {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      dtype: { type: 'string', default: 'keep' },
      layers: { type: 'string', default: '64' },
      dim: { type: 'string', default: '4096' },
      batch: { type: 'string', default: '4' },
      'compare-f32': { type: 'boolean', default: false },
    },
  });
  const batch = Number(values.batch);
  if (values.child) return child(values.child, batch, values.dtype === 'f32' ? 'f32' : 'keep');
  const L = Number(values.layers);
  const dim = Number(values.dim);
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-bf16-rss-'));
  const path = join(dir, 'stack.safetensors');
  try {
    // One layer's data, shared by views: the writer holds one layer at a time, whatever the stack's size.
    const bits = layerBits(dim, 1);
    const tensors = new Map<string, Tensor>();
    const base = fromHostArray(bits, [dim, dim], 'bf16');
    for (let i = 0; i < L; i++) tensors.set(`layers.${String(i).padStart(3, '0')}.weight`, base.reshape(dim, dim));
    saveSafetensors(path, tensors);
    const size = statSync(path).size;
    const params = L * dim * dim;
    console.log(`file: ${L} bf16 linears ${dim}x${dim} = ${(params / 1e9).toFixed(3)} B parameters, ${fmt(size)} on disk`);
    const act = batch * dim * 4;
    for (const dtype of values['compare-f32'] ? ['keep', 'f32'] : ['keep']) {
      const script = fileURLToPath(import.meta.url);
      const r = spawnSync(process.execPath, [script, '--child', path, '--batch', String(batch), '--dtype', dtype], { encoding: 'utf8', maxBuffer: 1 << 20 });
      if (r.status !== 0) throw new Error(`child (${dtype}) failed: ${r.stderr}`);
      const m = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number | string>;
      const peak = m.peak as number;
      console.log(
        `${m.dtype} in memory: load ${(m.loadSeconds as number).toFixed(1)} s, forward (batch ${batch}) ${(m.forwardSeconds as number).toFixed(1)} s; ` +
          `RSS at start ${fmt(m.rssStart as number)}, after load ${fmt(m.rssAfterLoad as number)}, peak ${fmt(peak)} = ` +
          `${(peak / size).toFixed(3)} x file size (peak - file - start RSS = ${((peak - size - (m.rssStart as number)) / 2 ** 20).toFixed(0)} MiB; ` +
          `activations ${(act / 2 ** 20).toFixed(2)} MiB per layer output, widening block 4 MiB)`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
