/**
 * bench/reconstruct.ts's "before": the reconstruct pipeline as it was at a50d0c8 (TS metrics on the main thread, each
 * chunk scored and written before the model starts the next), kept verbatim but for the imports and `native: false`,
 * so before and after can be timed in one process on one input. Not part of the library.
 *
 * Reconstruction as an API: frames in -> DC-AE-V encode + decode, chunk by chunk -> frames out, scored on the way
 * (PSNR / SSIM / temporal error on uint8 RGB, the reference protocol). Memory holds one chunk of frames, whatever
 * the clip's length. `reconstructFrames` works on any source and sink of uint8 frames; `reconstructVideo` on files.
 */
import { ValueError } from '../src/errors.js';
import { openVideoReader, openVideoWriter, framesToTensor, tensorToFrames, type ReadOptions } from '../src/io/video.js';
import { MetricsAccumulator, type MetricsResult } from '../src/metrics/metrics.js';
import { DCAEV, StreamingDecoder, StreamingEncoder, geometry, resolveTiling, type VideoOptions } from '../src/models/dcaev/autoencoder.js';
import * as ops from '../src/tensor/ops.js';
import { noGrad, type Tensor } from '../src/tensor/tensor.js';

export interface ReconstructOptions {
  /** replicate the bottom/right edge up to the spatial factor and crop it back (sizes not divisible by 32 / 64) */
  padSpatial?: boolean;
  tile?: VideoOptions['tile'];
  overlap?: number;
  /** called after each chunk with the frames read so far */
  onProgress?: (framesRead: number) => void;
}

export interface ReconstructResult {
  frames: number;
  height: number;
  width: number;
  /** frames per temporal chunk of the model */
  chunkFrames: number;
  seconds: number;
  metrics: MetricsResult;
}

/**
 * Reconstructs a stream of frames. `source` yields uint8 RGB frames (frame-major H x W x 3, any number of frames per
 * item); `sink` receives the reconstructed frames in order, as many as were read (the padded tail is cropped).
 */
export async function reconstructFrames(
  model: DCAEV,
  source: AsyncIterable<Uint8Array>,
  size: { height: number; width: number },
  sink: (frames: Uint8Array) => Promise<void> | void,
  opts: ReconstructOptions = {},
): Promise<ReconstructResult> {
  const g = geometry(model);
  if (g.chunk === null) throw new ValueError(`reconstruction streams chunk by chunk; model ${model.config.name} has no temporal chunks`);
  const { height: H, width: W } = size;
  const t0 = performance.now();
  const tile = resolveTiling(model, H, W, { tile: opts.tile, overlap: opts.overlap, padSpatial: opts.padSpatial });
  const enc = new StreamingEncoder(model, { padSpatial: opts.padSpatial, tile });
  const dec = new StreamingDecoder(model, null, opts.padSpatial ? [H, W] : null, tile);
  const acc = new MetricsAccumulator({ height: H, width: W, native: false });
  const frameBytes = H * W * 3;
  // Original frames waiting for their reconstruction (the decoder lags the reader by up to a chunk).
  let pending: Uint8Array[] = [];
  let frames = 0;
  const consume = async (y: Tensor | null) => {
    if (!y) return;
    const have = pending.reduce((s, f) => s + f.length / frameBytes, 0);
    const keep = Math.min(have, y.shape[2]!);
    if (keep <= 0) return;
    const rec = tensorToFrames(keep < y.shape[2]! ? ops.slice(y, 2, 0, keep) : y);
    const orig = concatBytes(pending);
    for (let t = 0; t < keep; t++) acc.add(orig.subarray(t * frameBytes, (t + 1) * frameBytes), rec.subarray(t * frameBytes, (t + 1) * frameBytes));
    pending = keep * frameBytes < orig.length ? [orig.slice(keep * frameBytes)] : [];
    await sink(rec);
  };
  for await (const raw of source) {
    if (raw.length % frameBytes) throw new ValueError(`reconstructFrames: ${raw.length} bytes are not whole ${W}x${H} RGB frames`);
    if (!raw.length) continue;
    frames += raw.length / frameBytes;
    pending.push(raw);
    const z = enc.push(framesToTensor(raw, H, W));
    if (z) await consume(noGrad(() => dec.push(z)));
    opts.onProgress?.(frames);
  }
  if (!frames) throw new ValueError('reconstructFrames: no frames to reconstruct');
  const tail = enc.finish();
  if (tail) await consume(noGrad(() => dec.push(tail)));
  await consume(noGrad(() => dec.finish()));
  return { frames, height: H, width: W, chunkFrames: g.chunk, seconds: (performance.now() - t0) / 1000, metrics: acc.result() };
}

/**
 * Reconstructs a video file into another (mp4 / gif / y4m / PNG sequence, written atomically: nothing is left at
 * `output` on failure). Frames stream a chunk at a time from reader to writer.
 */
export async function reconstructVideo(
  model: DCAEV,
  input: string,
  output: string,
  opts: ReconstructOptions & {
    read?: ReadOptions;
    crf?: number;
    /** once the input is open: its frame count where the container knows it (else 0), rate and output size */
    onStart?: (info: { expectedFrames: number; fps: number; width: number; height: number }) => void;
  } = {},
): Promise<ReconstructResult & { fps: number }> {
  const g = geometry(model);
  if (g.chunk === null) throw new ValueError(`reconstruction streams chunk by chunk; model ${model.config.name} has no temporal chunks`);
  const reader = await openVideoReader(input, opts.read ?? {});
  const info = reader.info; // probed when the reader opened
  const fps = reader.fps || info.fps || 16;
  const expectedFrames = info.framesExact ? Math.max(0, Math.min(info.frames - (opts.read?.start ?? 0), opts.read?.maxFrames ?? Infinity)) : 0;
  try {
    opts.onStart?.({ expectedFrames, fps, width: reader.width, height: reader.height });
    const writer = await openVideoWriter(output, { width: reader.width, height: reader.height, fps, oddSize: 'pad', ...(opts.crf !== undefined ? { crf: opts.crf } : {}) });
    try {
      const chunks = { [Symbol.asyncIterator]: async function* () {
        for (;;) {
          const raw = await reader.readFrames(g.chunk!);
          if (!raw) return;
          yield raw;
        }
      } };
      const r = await reconstructFrames(model, chunks, { height: reader.height, width: reader.width }, (f) => writer.write(f), opts);
      await writer.close();
      return { ...r, fps };
    } catch (e) {
      await writer.abort();
      throw e;
    }
  } finally {
    await reader.close();
  }
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
