/**
 * Where `reconstruct`'s time goes (issue #17 item 6): the model's encode + decode alone versus the whole pipeline
 * (read -> encode/decode -> quantise -> PSNR/SSIM -> write), on the same input, in one process.
 *
 *   node dist/bench/reconstruct.js <video> [--width W --height H] [--frames N] [--runs model,before,after,sequential]
 *
 * Runs, in the order given (repeat names to repeat them), on the same input and in one process:
 *   model      the model alone: the same reader and chunks, encode + decode timed (push/finish calls only)
 *   before     reconstruct as at a50d0c8 (bench/reconstruct_before.ts: TS metrics, one chunk at a time)
 *   after      reconstructVideo now (native metrics on a libuv thread, scoring and writing beside the model)
 *   sequential reconstructVideo now with { sequential: true }
 *   stages     quantiser, TS and native metrics and the mp4 writer, each timed alone on the model's output
 * and prints JSON with wall seconds and this process's CPU seconds (all threads; ffmpeg not included) of each.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openVideoReader, openVideoWriter, framesToTensor, tensorToFrames } from '../src/io/video.js';
import { MetricsAccumulator } from '../src/metrics/metrics.js';
import { nativeMetricsAvailable } from '../src/metrics/native_metrics.js';
import { createModel, geometry, resolveTiling, StreamingDecoder, StreamingEncoder } from '../src/models/dcaev/autoencoder.js';
import { reconstructVideo } from '../src/pipelines/reconstruct.js';
import { reconstructVideo as reconstructVideoBefore } from './reconstruct_before.js';
import { noGrad, type Tensor } from '../src/tensor/tensor.js';

const argv = process.argv.slice(2);
const flag = (k: string): string | undefined => {
  const i = argv.indexOf(k);
  return i >= 0 ? argv[i + 1] : undefined;
};
const input = argv[0];
if (!input) throw new Error('usage: reconstruct.js <video> [--width W --height H] [--frames N] [--out out.mp4] [--sequential]');
const width = flag('--width') ? Number(flag('--width')) : undefined;
const height = flag('--height') ? Number(flag('--height')) : undefined;
const maxFrames = flag('--frames') ? Number(flag('--frames')) : undefined;
const runs = (flag('--runs') ?? 'model,before,after').split(',');
const read = { ...(width && height ? { resize: { width, height } } : {}), ...(maxFrames ? { maxFrames } : {}) };
const root = resolve(new URL('../..', import.meta.url).pathname);
const m = createModel(join(root, 'assets/default-ae/config.json'), join(root, 'assets/default-ae/model.safetensors'));
const g = geometry(m);
const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-rec-'));
const result: Record<string, unknown> = { input, read, nativeMetrics: nativeMetricsAvailable(), runs: [] };

const timedRun = async (name: string, f: () => Promise<Record<string, unknown> | void>) => {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const extra = (await f()) ?? {};
  const c = process.cpuUsage(c0);
  const r = { name, wall: +((performance.now() - t0) / 1000).toFixed(2), cpu: +((c.user + c.system) / 1e6).toFixed(2), ...extra };
  (result.runs as unknown[]).push(r);
  console.error(JSON.stringify(r));
};

async function modelOnly(keep: boolean): Promise<{ modelSeconds: number; outs: Tensor[]; H: number; W: number; frames: number }> {
  const reader = await openVideoReader(input!, read);
  const H = reader.height;
  const W = reader.width;
  const tile = resolveTiling(m, H, W, { padSpatial: true });
  const enc = new StreamingEncoder(m, { padSpatial: true, tile });
  const dec = new StreamingDecoder(m, null, [H, W], tile);
  let modelMs = 0;
  let frames = 0;
  const outs: Tensor[] = [];
  const timed = (f: () => Tensor | null, decoded = false) => {
    const t0 = performance.now();
    const r = noGrad(f);
    modelMs += performance.now() - t0;
    if (r && decoded && keep) outs.push(r);
    return r;
  };
  for (;;) {
    const raw = await reader.readFrames(g.chunk!);
    if (!raw) break;
    frames += raw.length / (H * W * 3);
    const z = timed(() => enc.push(framesToTensor(raw, H, W)));
    if (z) timed(() => dec.push(z), true);
  }
  await reader.close();
  const tail = timed(() => enc.finish());
  if (tail) timed(() => dec.push(tail), true);
  timed(() => dec.finish(), true);
  return { modelSeconds: +(modelMs / 1000).toFixed(2), outs, H, W, frames };
}

try {
  for (const run of runs) {
    if (run === 'model') await timedRun('model', async () => {
      const r = await modelOnly(false);
      result.size = `${r.W}x${r.H}`;
      result.frames = r.frames;
      return { modelSeconds: r.modelSeconds };
    });
    else if (run === 'before') await timedRun('before', async () => {
      const r = await reconstructVideoBefore(m, input, join(dir, 'before.mp4'), { read, padSpatial: true });
      return { psnr: r.metrics.psnr.mean, ssim: r.metrics.ssim.mean };
    });
    else if (run === 'after' || run === 'sequential') await timedRun(run, async () => {
      const r = await reconstructVideo(m, input, join(dir, `${run}.mp4`), { read, padSpatial: true, sequential: run === 'sequential' });
      return { psnr: r.metrics.psnr.mean, ssim: r.metrics.ssim.mean };
    });
    else if (run === 'stages') {
      const { outs, H, W, frames } = await modelOnly(true);
      const rec: Uint8Array[] = [];
      await timedRun('quantise', async () => void outs.forEach((y) => rec.push(tensorToFrames(y))));
      const r2 = await openVideoReader(input, read);
      const orig = (await r2.readFrames(frames))!;
      await r2.close();
      const fb = H * W * 3;
      for (const [name, o] of [['metrics-ts', { native: false }], ['metrics-native-1t', { threads: 1 }], ['metrics-native', {}]] as const) {
        if (name !== 'metrics-ts' && !nativeMetricsAvailable()) continue;
        await timedRun(name, async () => {
          const acc = new MetricsAccumulator({ height: H, width: W, ...o });
          let at = 0;
          for (const c of rec) {
            const n = Math.min(c.length / fb, frames - at);
            acc.addFrames(orig.subarray(at * fb, (at + n) * fb), c.subarray(0, n * fb));
            at += n;
          }
        });
      }
      await timedRun('write-mp4', async () => {
        const w = await openVideoWriter(join(dir, 'w.mp4'), { width: W, height: H, fps: 16, oddSize: 'pad' });
        for (const c of rec) await w.write(c);
        await w.close();
      });
    } else throw new Error(`unknown run ${run}`);
  }
  console.log(JSON.stringify(result, null, 1));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
