/** Atomic writes: ffmpeg encodes into a hidden temporary output, renamed into place by a clean close(). */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync, constants as fsConstants } from 'node:fs';
import { access, mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { ShapeError, ValueError, VideoError, fmtShape } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import { tempPathFor, trackTemp, untrackTemp } from '../files.js';
import { SWS_FLAGS, StderrTail, ffmpegBin, ffmpegText, holdLoop, spawnError } from './ffmpeg.js';
import { formatPattern, hasPattern } from './source.js';
import { checkDims, tensorToFrames, videoTensorDims } from './frames.js';

export type VideoFormat = 'mp4' | 'gif' | 'y4m' | 'mkv' | 'png';

export interface WriteOptions {
  width: number;
  height: number;
  fps: number;
  /** Default: from the extension (.mp4, .gif, .y4m, .mkv); 'png' for a directory (existing, or a path ending in '/') or a %d pattern. */
  format?: VideoFormat;
  /** mp4: x264 constant rate factor, 0 (lossless luma) .. 51; default 18. */
  crf?: number;
  /** mp4: x264 preset; default 'medium'. */
  preset?: string;
  /**
   * Pixel format. mp4: 'yuv420p' (default, plays everywhere) or 'yuv444p'. y4m: 'yuv444p16' (default: exact round
   * trip for all 8-bit RGB colours), 'yuv444p12', 'yuv444p10' (exact only with its full-range flag honoured, so not
   * offered), 'yuv444p' (8-bit: error up to 2 levels), 'yuv420p'.
   */
  pixFmt?: string;
  /**
   * 4:2:0 needs even width and height. 'error' (default): VideoError for odd sizes. 'pad': repeat the last column /
   * row to the next even size (the file is then one pixel wider / taller: `writer.outputWidth/outputHeight`).
   */
  oddSize?: 'error' | 'pad';
  /** PNG sequences: number of the first file (default 0). */
  startNumber?: number;
}

/** PNG outputs: the folder the files end up in, and (for patterns) the names they get there. */
type PngTarget = { dir: string; pattern: string | null; startNumber: number };

const FORMAT_BY_EXT: Record<string, VideoFormat> = { '.mp4': 'mp4', '.gif': 'gif', '.y4m': 'y4m', '.mkv': 'mkv' };
const PIXFMTS: Record<VideoFormat, string[]> = {
  mp4: ['yuv420p', 'yuv444p'],
  y4m: ['yuv444p16', 'yuv444p12', 'yuv444p', 'yuv420p'],
  gif: [],
  mkv: [],
  png: [],
};

function inferFormat(abs: string, given: string): VideoFormat {
  if (hasPattern(abs) || given.endsWith('/')) return 'png';
  try {
    if (statSync(abs).isDirectory()) return 'png';
  } catch {
    /* does not exist yet */
  }
  const ext = extname(abs).toLowerCase();
  const f = FORMAT_BY_EXT[ext];
  if (!f)
    throw new ValueError(
      `cannot infer the video format of ${given}: extension '${ext}' is not one of .mp4, .gif, .y4m, .mkv ` +
        '(PNG sequences: a directory ending in "/" or a pattern like frames/%05d.png), or pass format',
    );
  return f;
}

/**
 * Writes frames through ffmpeg into a hidden temporary output beside `path`, renamed into place by a successful
 * close(). Use `await write(...)` (it resolves once ffmpeg has taken the data, so buffers can be reused), then
 * `await close()`; `abort()` discards everything.
 */
export class VideoWriter {
  readonly path: string;
  readonly format: VideoFormat;
  readonly width: number;
  readonly height: number;
  readonly fps: number;
  /** Size stored in the file (differs from width/height only with oddSize: 'pad'). */
  readonly outputWidth: number;
  readonly outputHeight: number;
  framesWritten = 0;

  private readonly proc: ChildProcess;
  private readonly tempPath: string;
  /** For PNG patterns: the directory the files move into and their final names. */
  private readonly pngTarget: PngTarget | null;
  private readonly stderr = new StderrTail();
  private state: 'open' | 'closing' | 'closed' | 'aborted' | 'failed' = 'open';
  private failure: VideoError | null = null;
  private exitCode: number | null = null;
  private spawnErr: VideoError | null = null;
  private readonly exited: Promise<void>;
  private lock: Promise<unknown> = Promise.resolve();

  /** @internal use openVideoWriter */
  constructor(path: string, format: VideoFormat, opts: WriteOptions, tempPath: string, pngTarget: PngTarget | null, args: string[]) {
    this.path = path;
    this.format = format;
    this.width = opts.width;
    this.height = opts.height;
    this.fps = opts.fps;
    const pad = opts.oddSize === 'pad' && needsEven(format, opts);
    this.outputWidth = pad ? opts.width + (opts.width % 2) : opts.width;
    this.outputHeight = pad ? opts.height + (opts.height % 2) : opts.height;
    this.tempPath = tempPath;
    this.pngTarget = pngTarget;
    const fullArgs = [
      '-hide_banner', '-nostdin', '-v', 'error',
      '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${this.outputWidth}x${this.outputHeight}`, '-framerate', String(opts.fps), '-i', 'pipe:0',
      '-an', ...args,
    ];
    this.proc = spawn(ffmpegBin(), fullArgs, { stdio: ['pipe', 'ignore', 'pipe'] });
    const proc = this.proc;
    trackTemp(tempPath, () => void proc.kill('SIGKILL'));
    this.proc.stderr!.on('data', (b: Buffer) => this.stderr.push(b));
    this.proc.stdin!.on('error', () => {
      // EPIPE: ffmpeg exited; its exit status and stderr say why (reported by write/close).
    });
    holdLoop(this.proc, false);
    this.exited = new Promise<void>((done) => {
      this.proc.on('error', (e) => {
        this.spawnErr = spawnError(ffmpegBin(), e);
        done();
      });
      this.proc.on('close', (code) => {
        this.exitCode = code;
        done();
      });
    });
  }

  private ffmpegFailure(what: string): VideoError {
    if (this.spawnErr) return this.spawnErr;
    const msg = ffmpegText(this.stderr.raw);
    return new VideoError(`${what} ${this.path} (ffmpeg exit code ${this.exitCode})`, msg || undefined);
  }

  /** n frames of width x height x 3 uint8, or a Tensor (1, 3, n, H, W) / (3, n, H, W) in [-1, 1]. */
  write(frames: Uint8Array | Tensor): Promise<void> {
    const p = this.lock.then(() => this.held(() => this.writeLocked(frames)));
    this.lock = p.catch(() => {});
    return p;
  }

  private async writeLocked(frames: Uint8Array | Tensor): Promise<void> {
    if (this.state === 'failed' && this.failure) throw this.failure;
    if (this.state !== 'open') throw new VideoError(`writer for ${this.path} is ${this.state}`);
    let buf: Uint8Array;
    if (frames instanceof Tensor) {
      const d = videoTensorDims(frames, 'VideoWriter.write');
      if (d.height !== this.height || d.width !== this.width)
        throw new ShapeError(`VideoWriter.write: frames of ${d.height}x${d.width} do not match the writer's ${this.height}x${this.width} (tensor ${fmtShape(frames.shape)})`);
      buf = tensorToFrames(frames);
    } else if (frames instanceof Uint8Array) {
      buf = frames;
    } else {
      throw new ValueError(`VideoWriter.write: expected a Uint8Array or a Tensor, got ${(frames as object)?.constructor?.name ?? typeof frames}`);
    }
    const fb = this.width * this.height * 3;
    if (buf.length === 0) return;
    if (buf.length % fb !== 0)
      throw new ShapeError(`VideoWriter.write: ${buf.length} bytes is not a whole number of ${this.height}x${this.width}x3 frames (${fb} bytes each)`);
    const n = buf.length / fb;
    if (this.outputWidth !== this.width || this.outputHeight !== this.height) buf = padFrames(buf, n, this.width, this.height, this.outputWidth, this.outputHeight);
    // Resolving on the flush callback (not on 'drain') means ffmpeg has the bytes and the caller may reuse buf; if
    // ffmpeg has died the callback carries EPIPE.
    const err = await new Promise<Error | null | undefined>((done) => this.proc.stdin!.write(buf, done));
    if (err) {
      await this.exited;
      const f = this.ffmpegFailure('ffmpeg stopped while writing');
      await this.fail(f);
      throw f;
    }
    this.framesWritten += n;
  }

  private async held<T>(fn: () => Promise<T>): Promise<T> {
    holdLoop(this.proc, true);
    try {
      return await fn();
    } finally {
      if (this.state === 'open') holdLoop(this.proc, false);
    }
  }

  private async fail(f: VideoError): Promise<void> {
    this.failure = f;
    this.state = 'failed';
    await this.discard();
  }

  private async discard(): Promise<void> {
    if (this.exitCode === null && !this.spawnErr) this.proc.kill('SIGKILL');
    holdLoop(this.proc, true);
    await this.exited;
    await rm(this.tempPath, { recursive: true, force: true });
    untrackTemp(this.tempPath);
  }

  /** Finishes encoding and moves the output into place. On failure nothing is left at `path` (or in its folder). */
  close(): Promise<void> {
    const p = this.lock.then(() => this.held(() => this.closeLocked()));
    this.lock = p.catch(() => {});
    return p;
  }

  private async closeLocked(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'failed' && this.failure) throw this.failure;
    if (this.state !== 'open') throw new VideoError(`writer for ${this.path} is ${this.state}`);
    this.state = 'closing';
    if (this.framesWritten === 0) {
      const f = new VideoError(`no frames were written to ${this.path}; nothing saved`);
      await this.fail(f);
      throw f;
    }
    this.proc.stdin!.end();
    await this.exited;
    if (this.spawnErr || this.exitCode !== 0) {
      const f = this.ffmpegFailure('ffmpeg failed to write');
      await this.fail(f);
      throw f;
    }
    try {
      await this.moveIntoPlace();
    } catch (e) {
      const f = e instanceof VideoError ? e : new VideoError(`cannot move the finished output into place at ${this.path}: ${(e as Error).message}`);
      await this.fail(f);
      throw f;
    }
    untrackTemp(this.tempPath);
    this.state = 'closed';
  }

  private async moveIntoPlace(): Promise<void> {
    const t = this.pngTarget;
    if (!t) {
      await rename(this.tempPath, resolve(this.path));
      return;
    }
    const produced = (await readdir(this.tempPath)).filter((f) => f.endsWith('.png'));
    if (produced.length !== this.framesWritten)
      throw new VideoError(`ffmpeg wrote ${produced.length} PNGs for ${this.framesWritten} frames into ${this.path}`);
    if (t.pattern === null) {
      // Directory output: the whole folder appears at once. An existing empty directory is replaced.
      if (existsSync(t.dir)) await rmdir(t.dir);
      await rename(this.tempPath, t.dir);
      return;
    }
    // Pattern output into an existing folder: files are moved one by one (each rename is atomic).
    for (let i = 0; i < this.framesWritten; i++) {
      const name = formatPattern(t.pattern, t.startNumber + i);
      await rename(join(this.tempPath, name), join(t.dir, name));
    }
    await rm(this.tempPath, { recursive: true, force: true });
  }

  /** Stops ffmpeg and removes the temporary output. Idempotent; a no-op after a successful close. */
  async abort(): Promise<void> {
    await this.lock.catch(() => {});
    if (this.state === 'closed' || this.state === 'aborted') return;
    if (this.state !== 'failed') this.state = 'aborted';
    await this.discard();
  }
}

function needsEven(format: VideoFormat, opts: WriteOptions): boolean {
  const pf = opts.pixFmt ?? (format === 'mp4' ? 'yuv420p' : '');
  return pf === 'yuv420p';
}

/** Repeats the last column / row so 4:2:0 gets even sizes without inventing colours at the edge. */
function padFrames(buf: Uint8Array, n: number, w: number, h: number, ow: number, oh: number): Uint8Array {
  const out = new Uint8Array(n * ow * oh * 3);
  for (let f = 0; f < n; f++) {
    const src = f * w * h * 3;
    const dst = f * ow * oh * 3;
    for (let y = 0; y < oh; y++) {
      const sy = Math.min(y, h - 1);
      const srow = src + sy * w * 3;
      const drow = dst + y * ow * 3;
      out.set(buf.subarray(srow, srow + w * 3), drow);
      for (let x = w; x < ow; x++) out.copyWithin(drow + x * 3, drow + (w - 1) * 3, drow + w * 3);
    }
  }
  return out;
}

/**
 * Opens a writer. Formats: .mp4 (libx264, yuv420p, CRF 18, BT.709-tagged, faststart), .gif (per-frame palettes),
 * .y4m (yuv444p16 by default: lossless w.r.t. 8-bit RGB), .mkv (FFV1 on the RGB planes: lossless, compressed), PNG
 * sequence (a directory — new, empty, or a path ending in '/' — or a pattern like out/%05d.png; lossless RGB).
 */
export async function openVideoWriter(path: string, opts: WriteOptions): Promise<VideoWriter> {
  if (!opts || typeof opts !== 'object') throw new ValueError('openVideoWriter: options { width, height, fps } are required');
  checkDims(opts.width, opts.height, 'openVideoWriter');
  if (!(Number.isFinite(opts.fps) && opts.fps > 0)) throw new ValueError(`openVideoWriter: fps must be a positive number, got ${opts.fps}`);
  const abs = resolve(path);
  const format = opts.format ?? inferFormat(abs, path);
  if (!(format in PIXFMTS)) throw new ValueError(`openVideoWriter: unknown format '${format}' (mp4, gif, y4m, mkv, png)`);
  if (opts.pixFmt !== undefined && !PIXFMTS[format].includes(opts.pixFmt))
    throw new ValueError(`openVideoWriter: pixFmt '${opts.pixFmt}' is not available for ${format} (${PIXFMTS[format].join(', ') || 'none'})`);
  const crf = opts.crf ?? 18;
  if (!(Number.isFinite(crf) && crf >= 0 && crf <= 51)) throw new ValueError(`openVideoWriter: crf must be in [0, 51], got ${crf}`);
  const startNumber = opts.startNumber ?? 0;
  if (!Number.isInteger(startNumber) || startNumber < 0) throw new ValueError(`openVideoWriter: startNumber must be a non-negative integer, got ${startNumber}`);
  if (needsEven(format, opts) && (opts.width % 2 || opts.height % 2) && opts.oddSize !== 'pad')
    throw new VideoError(
      `${format} with ${opts.pixFmt ?? 'yuv420p'} needs even width and height, got ${opts.width}x${opts.height}: ` +
        `pass oddSize: 'pad' (stores ${opts.width + (opts.width % 2)}x${opts.height + (opts.height % 2)}, edge repeated), ` +
        "pixFmt: 'yuv444p', or write .y4m / PNG",
    );

  // Where the output lands, and the directory that must be writable for the temporary output beside it.
  const isPattern = format === 'png' && hasPattern(abs);
  const targetDir = format === 'png' && !isPattern ? abs : dirname(abs);
  // A pattern's temporary folder sits inside its target folder; everything else's beside the target.
  const parent = dirname(abs);
  await checkWritableDir(parent, path);
  if (format === 'png' && !isPattern && existsSync(targetDir)) {
    const st = statSync(targetDir);
    if (!st.isDirectory()) throw new VideoError(`cannot write a PNG sequence to ${path}: it exists and is not a directory`);
    if (readdirSync(targetDir).length) throw new VideoError(`cannot write a PNG sequence into ${path}: directory is not empty`);
  }
  const tempPath = tempPathFor(join(parent, isPattern ? 'frames' : basename(abs)));
  const args: string[] = [];
  let pngTarget: PngTarget | null = null;
  switch (format) {
    case 'mp4': {
      const pf = opts.pixFmt ?? 'yuv420p';
      // Tagged BT.709 (what players assume for untagged HD, and what the conversion uses) so colours match everywhere.
      args.push(
        '-vf', `scale=out_color_matrix=bt709:out_range=tv:flags=${SWS_FLAGS},format=${pf}`,
        '-c:v', 'libx264', '-preset', opts.preset ?? 'medium', '-crf', String(crf), '-pix_fmt', pf,
        '-colorspace', 'bt709', '-color_primaries', 'bt709', '-color_trc', 'bt709', '-color_range', 'tv',
        '-movflags', '+faststart', '-f', 'mp4', '-y', tempPath,
      );
      break;
    }
    case 'gif':
      // One palette per frame: streams (a global palette would make ffmpeg hold the whole clip) and suits changing scenes.
      args.push('-vf', 'split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1', '-loop', '0', '-f', 'gif', '-y', tempPath);
      break;
    case 'y4m': {
      const pf = opts.pixFmt ?? 'yuv444p16';
      // -strict -1: the y4m muxer calls >8-bit formats non-standard (they are common: C444p16 etc.).
      args.push('-vf', `scale=flags=${SWS_FLAGS},format=${pf}`, '-strict', '-1', '-f', 'yuv4mpegpipe', '-y', tempPath);
      break;
    }
    case 'mkv':
      // FFV1 codes the RGB planes themselves (no YUV matrix), so every 8-bit RGB frame reads back bit for bit.
      args.push('-c:v', 'ffv1', '-pix_fmt', 'bgr0', '-f', 'matroska', '-y', tempPath);
      break;
    case 'png': {
      const pattern = isPattern ? basename(abs) : '%05d.png';
      await mkdir(tempPath);
      pngTarget = { dir: targetDir, pattern: isPattern ? pattern : null, startNumber };
      args.push('-c:v', 'png', '-pix_fmt', 'rgb24', '-start_number', String(startNumber), '-f', 'image2', '-y', join(tempPath, pattern));
      break;
    }
  }
  return new VideoWriter(path, format, opts, tempPath, pngTarget, args);
}

async function checkWritableDir(dir: string, given: string): Promise<void> {
  let st;
  try {
    st = await stat(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new VideoError(`cannot write ${given}: directory ${dir} does not exist`);
    if (code === 'ENOTDIR') throw new VideoError(`cannot write ${given}: ${dir} is not a directory (a parent is a file)`);
    throw new VideoError(`cannot write ${given}: ${(e as Error).message}`);
  }
  if (!st.isDirectory()) throw new VideoError(`cannot write ${given}: ${dir} is not a directory`);
  try {
    await access(dir, fsConstants.W_OK);
  } catch {
    throw new VideoError(`cannot write ${given}: directory ${dir} is not writable`);
  }
}

/** Writes a whole clip (Tensor (1, 3, T, H, W) in [-1, 1], or uint8 frames with width/height in opts) in one call. */
export async function writeVideo(
  path: string,
  video: Tensor | Uint8Array,
  opts: Omit<WriteOptions, 'width' | 'height'> & { width?: number; height?: number },
): Promise<void> {
  let width = opts.width;
  let height = opts.height;
  if (video instanceof Tensor) {
    const d = videoTensorDims(video, 'writeVideo');
    width = d.width;
    height = d.height;
  }
  if (width === undefined || height === undefined) throw new ValueError('writeVideo: width and height are required for uint8 frames');
  const w = await openVideoWriter(path, { ...opts, width, height });
  try {
    await w.write(video);
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  }
}
