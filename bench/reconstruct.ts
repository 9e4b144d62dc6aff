/**
 * Where `reconstruct`'s time goes (issue #17 item 6): the model's encode + decode alone versus the whole pipeline
 * (read -> encode/decode -> quantise -> PSNR/SSIM -> write), on the same input, in one process.
 *
 *   node dist/bench/reconstruct.js <video> [--width W --height H] [--frames N] [--out out.mp4] [--sequential]
 *
 * Prints JSON: model seconds (sum of the encoder's and decoder's push/finish calls, measured with the same reader),
 * pipeline seconds (reconstructVideo end to end) and, separately timed on the reconstructed frames, the cost of the
 * quantiser, the TS and native metrics, and the writer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openVideoReader, openVideoWriter, framesToTensor, tensorToFrames } from '../src/io/video.js';
import { MetricsAccumulator } from '../src/metrics/metrics.js';
import { nativeMetricsAvailable } from '../src/metrics/native_metrics.js';
import { createModel, geometry, resolveTiling, StreamingDecoder, StreamingEncoder } from '../src/models/dcaev/autoencoder.js';
import { reconstructVideo } from '../src/pipelines/reconstruct.js';
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
const sequential = argv.includes('--sequential');
const only = flag('--only'); // 'model' | 'pipeline' | undefined (both)
const read = { ...(width && height ? { resize: { width, height } } : {}), ...(maxFrames ? { maxFrames } : {}) };
const root = resolve(new URL('../..', import.meta.url).pathname);
const m = createModel(join(root, 'assets/default-ae/config.json'), join(root, 'assets/default-ae/model.safetensors'));
const g = geometry(m);
const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-rec-'));
const out = flag('--out') ?? join(dir, 'out.mp4');
const result: Record<string, unknown> = { input, read, nativeMetrics: nativeMetricsAvailable(), sequential };

try {
  if (only !== 'pipeline') {
    // 1. the model alone: same reader, same chunks, no metrics / quantiser / writer
    const reader = await openVideoReader(input, read);
    const H = reader.height;
    const W = reader.width;
    const tile = resolveTiling(m, H, W, { padSpatial: true });
    const enc = new StreamingEncoder(m, { padSpatial: true, tile });
    const dec = new StreamingDecoder(m, null, [H, W], tile);
    let modelMs = 0;
    let frames = 0;
    const outs: Tensor[] = [];
    const timed = <T>(f: () => T): T => {
      const t0 = performance.now();
      const r = noGrad(f);
      modelMs += performance.now() - t0;
      return r;
    };
    for (;;) {
      const raw = await reader.readFrames(g.chunk!);
      if (!raw) break;
      frames += raw.length / (H * W * 3);
      const z = timed(() => enc.push(framesToTensor(raw, H, W)));
      if (z) {
        const y = timed(() => dec.push(z));
        if (y) outs.push(y);
      }
    }
    await reader.close();
    const tail = timed(() => enc.finish());
    if (tail) {
      const y = timed(() => dec.push(tail));
      if (y) outs.push(y);
    }
    const last = timed(() => dec.finish());
    if (last) outs.push(last);
    result.size = `${W}x${H}`;
    result.frames = frames;
    result.modelSeconds = +(modelMs / 1000).toFixed(2);

    // 2. the other stages alone, on the model's output
    let t0 = performance.now();
    const rec = outs.map((y) => tensorToFrames(y));
    result.quantiseSeconds = +((performance.now() - t0) / 1000).toFixed(2);
    const r2 = await openVideoReader(input, read);
    const orig = (await r2.readFrames(frames))!;
    await r2.close();
    const fb = H * W * 3;
    for (const nativeOn of [false, true]) {
      if (nativeOn && !nativeMetricsAvailable()) continue;
      const acc = new MetricsAccumulator({ height: H, width: W, native: nativeOn });
      t0 = performance.now();
      let at = 0;
      for (const c of rec) for (let o = 0; o < c.length && at < frames; o += fb, at++) acc.add(orig.subarray(at * fb, (at + 1) * fb), c.subarray(o, o + fb));
      result[nativeOn ? 'metricsNativeSeconds' : 'metricsTsSeconds'] = +((performance.now() - t0) / 1000).toFixed(2);
    }
    const w = await openVideoWriter(join(dir, 'w.mp4'), { width: W, height: H, fps: 16, oddSize: 'pad' });
    t0 = performance.now();
    for (const c of rec) await w.write(c);
    await w.close();
    result.writeSeconds = +((performance.now() - t0) / 1000).toFixed(2);
  }

  if (only !== 'model') {
    // 3. the whole pipeline
    const t0 = performance.now();
    const r = await reconstructVideo(m, input, out, { read, padSpatial: true, ...(sequential ? { sequential: true } : {}) });
    result.pipelineSeconds = +((performance.now() - t0) / 1000).toFixed(2);
    result.psnr = r.metrics.psnr.mean;
    result.ssim = r.metrics.ssim.mean;
  }
  console.log(JSON.stringify(result, null, 1));
} finally {
  if (!flag('--out')) rmSync(dir, { recursive: true, force: true });
}
