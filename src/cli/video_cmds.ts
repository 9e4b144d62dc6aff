/**
 * Video paths of the autoencoder commands: encode a video file, decode latents into a video, and `dcvg reconstruct`
 * (encode + decode + score, streaming: one chunk of frames in memory at a time).
 */
import { existsSync } from 'node:fs';
import { assertOutputsSafe, writeFileAtomic } from '../io/files.js';
import { openVideoReader, openVideoWriter, probeVideo } from '../io/video.js';
import { saveSafetensors } from '../io/safetensors.js';
import { writeLinePlotPng } from '../metrics/plot.js';
import type { AutoencoderOptions, VideoAutoencoder } from '../pipelines/autoencoder.js';
import { ValueError, fmtShape } from '../errors.js';
import * as ops from '../tensor/ops.js';
import { Tensor } from '../tensor/tensor.js';
import { reconstructVideo } from '../pipelines/reconstruct.js';
import { Progress } from './progress.js';
import type { EncodeSummary } from './ae_cmds.js';
import { READ_OPTIONS, checkFrameSize, checkLatentFinite, loadAutoencoder, modelInputs, parse, readOptionsFrom, videoOptions, type Out } from './common.js';

/** Encodes a video file chunk by chunk into a latent file. */
export async function encodeVideoFile(m: VideoAutoencoder, input: string, v: Record<string, unknown>): Promise<EncodeSummary> {
  const opts = videoOptions(v as { tile?: string; overlap?: string; whole?: boolean; pad?: boolean; 'pad-frames'?: boolean });
  const ropts = readOptionsFrom(v);
  const reader = await openVideoReader(input, ropts);
  try {
    const H = reader.height;
    const W = reader.width;
    checkFrameSize(W, H, `${input} (${W}x${H})`, m.readFrames ?? reader.info.frames);
    const total = reader.info.framesExact ? Math.min(reader.info.frames - (ropts.start ?? 0), ropts.maxFrames ?? Infinity) : 0;
    // a frame count the model refuses fails before any work, when the container knows it
    if (total > 0) m.encodedFrames(total, opts);
    const prog = new Progress('encode', total || 0);
    const t0 = performance.now();
    const parts: Tensor[] = [];
    let frames = 0;
    const enc = m.encodeStream(opts);
    for (;;) {
      const x = await reader.readTensor(m.readFrames ?? Number.MAX_SAFE_INTEGER);
      if (!x) break;
      if (!frames) m.checkPixels(x, opts);
      frames += x.shape[2]!;
      const z = enc.push(x);
      if (z) parts.push(z);
      prog.update(frames);
    }
    if (!frames) throw new ValueError(`${input}: no frames to encode`);
    const tail = enc.finish();
    if (tail) parts.push(tail);
    prog.done();
    const latent = parts.length === 1 ? parts[0]! : ops.cat(parts, 2);
    checkLatentFinite(latent);
    const secs = (performance.now() - t0) / 1000;
    saveSafetensors(
      String(v.output),
      { latent },
      {
        metadata: {
          ...m.latentMetadata(),
          num_frames: String(frames),
          height: String(H),
          width: String(W),
          fps: String(reader.fps || ''),
          source: input,
        },
      },
    );
    return {
      input,
      output: String(v.output),
      model: m.name,
      input_shape: [1, 3, frames, H, W],
      latent_shape: [...latent.shape],
      num_frames: frames,
      seconds: +secs.toFixed(3),
      frames_per_second: +(frames / secs).toFixed(2),
    };
  } finally {
    await reader.close();
  }
}

/**
 * Decodes latents chunk by chunk straight into a video file (never the whole reconstruction in memory). Returns
 * the output shape.
 */
export async function decodeToVideoFile(
  m: VideoAutoencoder,
  z: Tensor,
  output: string,
  fps: number,
  opts: AutoencoderOptions & { numFrames?: number; height?: number; width?: number },
): Promise<number[]> {
  const H = opts.height ?? z.shape[3]! * m.spatial;
  const W = opts.width ?? z.shape[4]! * m.spatial;
  const writer = await openVideoWriter(output, { width: W, height: H, fps, oddSize: 'pad' });
  let frames = 0;
  try {
    const prog = new Progress('decode', opts.numFrames ?? z.shape[2]! * m.temporal);
    const emit = async (y: Tensor | null) => {
      if (!y) return;
      frames += y.shape[2]!;
      await writer.write(y);
      prog.update(frames);
    };
    const dec = m.decodeStream({ numFrames: opts.numFrames ?? null, height: opts.height, width: opts.width }, opts);
    // latents per push: the encoder's chunk in latents (DC-AE-V), or all at once for models that read whole clips
    const lc = m.readFrames !== null ? Math.max(1, m.readFrames / m.temporal) : z.shape[2]!;
    for (let i = 0; i < z.shape[2]!; i += lc) await emit(dec.push(ops.slice(z, 2, i, Math.min(z.shape[2]!, i + lc))));
    await emit(dec.finish());
    prog.done();
    await writer.close();
  } catch (e) {
    await writer.abort();
    throw e;
  }
  return [z.shape[0]!, 3, frames, H, W];
}

export async function cmdReconstruct(args: string[], out: Out): Promise<number> {
  const { values: v, positionals } = parse(
    args,
    {
      model: { type: 'string' },
      weights: { type: 'string' },
      output: { type: 'string', short: 'o' },
      metrics: { type: 'string' },
      plot: { type: 'string' },
      json: { type: 'boolean' },
      tile: { type: 'string' },
      overlap: { type: 'string' },
      pad: { type: 'boolean' },
      'pad-frames': { type: 'boolean' },
      crf: { type: 'string' },
      ...READ_OPTIONS,
    },
    'reconstruct',
  );
  const input = positionals[0];
  if (!input || positionals.length > 1) throw new ValueError('reconstruct needs exactly one input video');
  if (!v.output) throw new ValueError('reconstruct needs -o <output video>');
  if (!existsSync(input)) throw new ValueError(`input not found: ${input}`);
  assertOutputsSafe({ '-o': v.output, '--metrics': v.metrics, '--plot': v.plot }, modelInputs(v, input), { directoryOk: ['-o'] });
  const vopts = videoOptions(v);
  const ropts = readOptionsFrom(v);
  // memory: the process's resident set before the model is loaded, and its high-water mark at the end (getrusage)
  const rssBefore = process.memoryUsage().rss;
  const m = loadAutoencoder(v, 'reconstruct');
  if (m.readFrames === null) throw new ValueError(`reconstruct streams chunk by chunk; model ${m.name} has no temporal chunks`);
  const info = await probeVideo(input);
  checkFrameSize(ropts.resize?.width ?? info.width, ropts.resize?.height ?? info.height, `${input}`, m.readFrames);
  if (info.framesExact) {
    const total = Math.max(0, Math.min(info.frames - (ropts.start ?? 0), ropts.maxFrames ?? Infinity));
    if (total > 0) m.encodedFrames(total, vopts); // a frame count the model refuses fails before any work
  }
  const crf = v.crf !== undefined ? Number(v.crf) : undefined;
  let prog: Progress | null = null;
  const rr = await reconstructVideo(m, input, v.output, {
    read: ropts,
    padSpatial: vopts.padSpatial,
    padFrames: vopts.padFrames,
    tile: vopts.tile,
    overlap: vopts.overlap,
    ...(crf !== undefined ? { crf } : {}),
    onStart: (s) => (prog = new Progress('reconstruct', s.expectedFrames)),
    onProgress: (n) => prog?.update(n),
  });
  (prog as Progress | null)?.done();
  const { frames, height: H, width: W, fps } = rr;
  const secs = rr.seconds;
  const r = rr.metrics;
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const result = {
    input,
    output: v.output,
    model: m.name,
    family: m.family,
    frames,
    height: H,
    width: W,
    fps,
    chunk_frames: rr.chunkFrames,
    latent_shape: rr.latentShape,
    latent_values_per_frame: +(rr.latentValues / frames).toFixed(2),
    compression: +((3 * frames * H * W) / rr.latentValues).toFixed(2),
    seconds: +secs.toFixed(2),
    frames_per_second: +(frames / secs).toFixed(2),
    peak_rss_mb: +(peakRss / 2 ** 20).toFixed(1),
    peak_rss_over_start_mb: +((peakRss - rssBefore) / 2 ** 20).toFixed(1),
    psnr: r.psnr.mean,
    ssim: r.ssim.mean,
    temporal_error: r.temporal.mean,
    infinite_psnr_frames: r.psnr.infiniteFrames,
    per_frame: { psnr: r.psnr.perFrame, ssim: r.ssim.perFrame, temporal_error: r.temporal.perPair },
    protocol:
      'uint8 RGB per frame, mean over frames; PSNR 10 log10(255^2/MSE) excluding identical frames; SSIM 11x11 Gaussian (sigma 1.5), data range 255, torchmetrics >= 1.4.2 borders; temporal error = mean |(r_t - r_t-1) - (o_t - o_t-1)| in uint8 levels',
  };
  if (v.metrics) writeFileAtomic(v.metrics, JSON.stringify(result, null, 1) + '\n');
  if (v.plot) {
    const markers = m.chunkBoundaries(frames);
    writeLinePlotPng(v.plot, {
      title: `${input.replace(/^.*\//, '')}: per-frame PSNR (${m.name}), chunk boundaries dashed`,
      xLabel: 'frame',
      yLabel: 'PSNR (dB)',
      series: [{ name: 'PSNR', values: r.psnr.perFrame }],
      verticalMarkers: markers,
    });
  }
  if (v.json) {
    const { per_frame: _p, ...brief } = result;
    void _p;
    out(JSON.stringify(brief, null, 1) + '\n');
  } else
    out(
      `reconstructed ${input} (${frames} frames, ${W}x${H}) -> ${v.output} with ${m.name} in ${result.seconds}s (${result.frames_per_second} frames/s)\n` +
        `PSNR ${r.psnr.mean.toFixed(3)} dB  SSIM ${r.ssim.mean.toFixed(4)}  temporal error ${r.temporal.mean.toFixed(3)}\n` +
        `latent ${fmtShape(rr.latentShape)} (${result.latent_values_per_frame} values per frame, ${result.compression}x)  peak RSS ${result.peak_rss_mb} MB (${result.peak_rss_over_start_mb} MB over the start)` +
        (v.metrics ? `\nmetrics: ${v.metrics}` : '') +
        (v.plot ? `\nplot: ${v.plot}` : '') +
        '\n',
    );
  return 0;
}


