/**
 * Reconstruction as an API: frames in -> DC-AE-V encode + decode, chunk by chunk -> frames out, scored on the way
 * (PSNR / SSIM / temporal error on uint8 RGB, the reference protocol). Scoring (native kernels on a libuv thread) and
 * the hand-over to the sink / ffmpeg run while the model works on the next chunks; memory holds at most inFlight + 2
 * chunks of frames, whatever the clip's length. `reconstructFrames` works on any source and sink of uint8 frames;
 * `reconstructVideo` on files. docs/reconstruct-speed.md has the measurements.
 */
import { ValueError } from '../errors.js';
import { openVideoReader, openVideoWriter, framesToTensor, type ReadOptions } from '../io/video.js';
import { quantizeClip } from '../io/video/frames.js';
import { MetricsAccumulator, type MetricsResult } from '../metrics/metrics.js';
import type { DCAEV, VideoOptions } from '../models/dcaev/autoencoder.js';
import type { WanVAE } from '../models/wan_vae/model.js';
import { asAutoencoder, type VideoAutoencoder } from './autoencoder.js';

// the model-agnostic autoencoder interface travels with the pipelines ('dcvideogen/pipelines'), and so does generation
export * from './autoencoder.js';
export type * from './components.js';
export * from './generation.js';
export * from './t2v.js';
export * from './i2v.js';
export * from './model_folder.js';
export * from './encoders.js';
export { weightsIdentity } from './embedding_cache.js';
import * as ops from '../tensor/ops.js';
import { noGrad, type Tensor } from '../tensor/tensor.js';

export interface ReconstructOptions {
  /** replicate the bottom/right edge up to the spatial factor and crop it back (sizes not divisible by 32 / 64) */
  padSpatial?: boolean;
  /** Wan VAE: repeat the last frame up to 1 + 4k and crop back (otherwise other counts are refused at the end) */
  padFrames?: boolean;
  tile?: VideoOptions['tile'];
  overlap?: number;
  /** called after each chunk with the frames read so far */
  onProgress?: (framesRead: number) => void;
  /**
   * false (default): each chunk's scoring (native kernels on a libuv thread) and its hand-over to the sink run while
   * the model works on the next chunks, with at most `inFlight` chunks outstanding. true: each chunk is scored and
   * written before the model starts the next one. Both give the same frames, in the same order, and the same metrics.
   */
  sequential?: boolean;
  /** Chunks being scored / written at once beside the model (default 2): bounds the memory held, whatever the length. */
  inFlight?: number;
}

export interface ReconstructResult {
  frames: number;
  height: number;
  width: number;
  /** frames per read of the model's stream (DC-AE-V: its temporal chunk) */
  chunkFrames: number;
  /** shape of the whole latent (batch 1), and its number of values */
  latentShape: number[];
  latentValues: number;
  seconds: number;
  metrics: MetricsResult;
}

/**
 * Reconstructs a stream of frames. `source` yields uint8 RGB frames (frame-major H x W x 3, any number of frames per
 * item); `sink` receives the reconstructed frames in order, as many as were read (the padded tail is cropped).
 */
export async function reconstructFrames(
  model: DCAEV | WanVAE | VideoAutoencoder,
  source: AsyncIterable<Uint8Array>,
  size: { height: number; width: number },
  sink: (frames: Uint8Array) => Promise<void> | void,
  opts: ReconstructOptions = {},
): Promise<ReconstructResult> {
  const ae = asAutoencoder(model);
  if (ae.readFrames === null) throw new ValueError(`reconstruction streams chunk by chunk; model ${ae.name} has no temporal chunks`);
  const { height: H, width: W } = size;
  const t0 = performance.now();
  const aeOpts = { tile: opts.tile, overlap: opts.overlap, padSpatial: opts.padSpatial, padFrames: opts.padFrames };
  const enc = ae.encodeStream(aeOpts);
  const dec = ae.decodeStream(opts.padSpatial ? { height: H, width: W } : {}, aeOpts);
  let latentShape: number[] = [];
  let latentFrames = 0;
  const latents = (z: Tensor | null) => {
    if (z) {
      latentFrames += z.shape[2]!;
      latentShape = [z.shape[0]!, z.shape[1]!, latentFrames, z.shape[3]!, z.shape[4]!];
    }
    return z;
  };
  const acc = new MetricsAccumulator({ height: H, width: W });
  const frameBytes = H * W * 3;
  const depth = opts.inFlight ?? 2;
  if (!Number.isInteger(depth) || depth < 1 || depth > 64) throw new ValueError(`reconstructFrames: inFlight must be an integer in 1..64, got ${depth}`);
  // Original frames waiting for their reconstruction (the decoder lags the reader by up to a chunk).
  let pending: Uint8Array[] = [];
  let frames = 0;
  // One float32 buffer reused for every chunk's readback (reallocated only when the chunk length changes).
  let readBuf = new Float32Array(0);
  // Chunks being scored and written, oldest first; the sink sees chunks strictly in order.
  const outstanding: Promise<void>[] = [];
  let sinkChain: Promise<void> = Promise.resolve();
  let failed: { error: unknown } | null = null;
  const consume = async (y: Tensor | null) => {
    if (!y) return;
    if (failed) throw failed.error;
    const have = pending.reduce((s, f) => s + f.length / frameBytes, 0);
    const keep = Math.min(have, y.shape[2]!);
    if (keep <= 0) return;
    const yk = keep < y.shape[2]! ? ops.slice(y, 2, 0, keep) : y;
    if (readBuf.length !== yk.size) readBuf = new Float32Array(yk.size);
    const rec = quantizeClip(yk.readInto(readBuf), 0, keep, H, W, (f, c, r, x) => new ValueError(`reconstructFrames: the model produced NaN at frame ${f}, channel ${c}, pixel (${r}, ${x})`));
    const orig = concatBytes(pending);
    // addFramesAsync copies both blocks before it returns: `orig` can be sliced and dropped right away.
    const scored = acc.addFramesAsync(orig.subarray(0, keep * frameBytes), rec);
    pending = keep * frameBytes < orig.length ? [orig.slice(keep * frameBytes)] : [];
    const written = (sinkChain = sinkChain.then(() => sink(rec)));
    const task = Promise.all([scored, written]).then(() => {});
    if (opts.sequential) return task;
    task.catch((e) => (failed ??= { error: e }));
    outstanding.push(task);
    while (outstanding.length > depth) await outstanding.shift();
  };
  for await (const raw of source) {
    if (raw.length % frameBytes) throw new ValueError(`reconstructFrames: ${raw.length} bytes are not whole ${W}x${H} RGB frames`);
    if (!raw.length) continue;
    frames += raw.length / frameBytes;
    pending.push(raw);
    const z = latents(enc.push(framesToTensor(raw, H, W)));
    if (z) await consume(noGrad(() => dec.push(z)));
    opts.onProgress?.(frames);
  }
  if (!frames) throw new ValueError('reconstructFrames: no frames to reconstruct');
  const tail = latents(enc.finish());
  if (tail) await consume(noGrad(() => dec.push(tail)));
  await consume(noGrad(() => dec.finish()));
  while (outstanding.length) await outstanding.shift();
  await acc.settled();
  const latentValues = latentShape.reduce((a, b) => a * b, 1);
  return { frames, height: H, width: W, chunkFrames: ae.readFrames, latentShape, latentValues, seconds: (performance.now() - t0) / 1000, metrics: acc.result() };
}

/**
 * Reconstructs a video file into another (mp4 / gif / y4m / PNG sequence, written atomically: nothing is left at
 * `output` on failure). Frames stream a chunk at a time from reader to writer.
 */
export async function reconstructVideo(
  model: DCAEV | WanVAE | VideoAutoencoder,
  input: string,
  output: string,
  opts: ReconstructOptions & {
    read?: ReadOptions;
    crf?: number;
    /** once the input is open: its frame count where the container knows it (else 0), rate and output size */
    onStart?: (info: { expectedFrames: number; fps: number; width: number; height: number }) => void;
  } = {},
): Promise<ReconstructResult & { fps: number }> {
  const ae = asAutoencoder(model);
  if (ae.readFrames === null) throw new ValueError(`reconstruction streams chunk by chunk; model ${ae.name} has no temporal chunks`);
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
          const raw = await reader.readFrames(ae.readFrames!);
          if (!raw) return;
          yield raw;
        }
      } };
      const r = await reconstructFrames(ae, chunks, { height: reader.height, width: reader.width }, (f) => writer.write(f), opts);
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
