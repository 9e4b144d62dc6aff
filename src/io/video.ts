/**
 * Video read/write through the system ffmpeg / ffprobe (child processes, raw RGB24 over pipes).
 *
 * Reading streams: frames are pulled from ffmpeg's stdout on demand and the pipe is paused when the consumer falls
 * behind, so memory is bounded by the read-ahead plus the chunk asked for, never by the clip length.
 * Writing is atomic: ffmpeg writes a hidden temporary file (or folder) beside the target, which is renamed into place
 * only when ffmpeg has exited cleanly; on failure, abort() or process exit the temporary output is removed.
 *
 * Colour: untagged video is decoded as BT.601 (swscale's default, as PyAV/torchvision do), tagged video by its tags;
 * mp4 is written BT.709 and tagged so. Measured write -> read-back errors (0..255 units, test/video.test.ts): PNG
 * sequences exact; y4m with the default yuv444p16 exact (checked for all 2^24 RGB colours); mkv (FFV1 on the RGB
 * planes) exact (test/shapes_data.test.ts); y4m yuv444p (8-bit) max 2, mean ~0.4 on noise; mp4 x264 CRF 18 4:2:0 mean
 * ~1.5 on a real clip (lossy).
 *
 * Binaries: $DCVG_FFMPEG / $DCVG_FFPROBE, else `ffmpeg` / `ffprobe` on PATH.
 *
 * This module is the public face; the code lives in video/: ffmpeg.ts (processes, stderr digests), source.ts (files,
 * PNG folders, patterns), probe.ts, frames.ts (uint8 frames <-> tensors), reader.ts, writer.ts.
 */
export { VideoError } from '../errors.js';
export { meaningfulLines } from './video/ffmpeg.js';
export { DEFAULT_SEQUENCE_FPS, probeVideo, type ProbeOptions, type VideoInfo } from './video/probe.js';
export { framesToTensor, tensorToFrames } from './video/frames.js';
export { VideoReader, openVideoReader, readAllFrames, readFrameBytes, type ReadOptions, type ResizeOptions } from './video/reader.js';
export { VideoWriter, openVideoWriter, writeVideo, type VideoFormat, type WriteOptions } from './video/writer.js';
