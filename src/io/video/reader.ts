/** Streaming reads: ffmpeg decodes to raw RGB24 on a pipe, paused when the consumer falls behind. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ValueError, VideoError } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import { MAX_FRAME_BYTES, SWS_FLAGS, StderrTail, ffmpegBin, ffmpegText, fsReason, holdLoop, meaningfulLines, spawnError } from './ffmpeg.js';
import { type Source, resolveSource } from './source.js';
import { DEFAULT_SEQUENCE_FPS, probeSource, type VideoInfo } from './probe.js';
import { checkDims, framesToTensor } from './frames.js';

export interface ResizeOptions {
  width: number;
  height: number;
  /**
   * 'cover' (default): scale to cover width x height keeping the aspect ratio, then center-crop, with the geometry of
   * the reference evaluation's DMCrop (scaled size round(side * scale), crop offset floor((side - target) / 2)).
   * Resampling is ffmpeg's bicubic in RGB, so pixel values are close to, not identical with, PIL's.
   * 'stretch': scale to exactly width x height.
   */
  mode?: 'cover' | 'stretch';
}

export interface ReadOptions {
  resize?: ResizeOptions;
  /** Frames of the output sequence to skip (counted after `fps` resampling). Exact; decodes from the beginning. */
  start?: number;
  /** At most this many frames. */
  maxFrames?: number;
  /**
   * Video files: resample to this rate (ffmpeg's fps filter: frames are dropped or repeated). Image sequences have no
   * rate of their own: this only sets the rate reported (default DEFAULT_SEQUENCE_FPS), frames are not resampled.
   */
  fps?: number;
  /**
   * Decode errors in a damaged file (a truncated mp4 whose index is intact, broken packets): by default the frames
   * ffmpeg could decode are returned and the errors become warnings (`reader.warnings`, `onWarning`); with
   * strict: true the read that reaches the end throws VideoError instead.
   */
  strict?: boolean;
  /** Receives the decode-warning summary once at the end of the stream; default: process.emitWarning. */
  onWarning?: (message: string) => void;
  /** Bytes decoded ahead of the consumer before ffmpeg's output is paused (default max(4 MiB, 2 frames)). */
  readAheadBytes?: number;
  /**
   * YUV -> RGB: 'fast' (default; swscale's default path, as PyAV/torchvision decode) or 'accurate' (chroma
   * interpolated, accurate rounding; about 2x slower conversion, slightly closer to the original RGB).
   */
  chroma?: 'fast' | 'accurate';
}

function checkReadOptions(o: ReadOptions): void {
  const nonNegInt = (v: unknown, name: string) => {
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < 0)) throw new ValueError(`${name} must be a non-negative integer, got ${v}`);
  };
  nonNegInt(o.start, 'start');
  nonNegInt(o.maxFrames, 'maxFrames');
  if (o.fps !== undefined && !(Number.isFinite(o.fps) && o.fps > 0)) throw new ValueError(`fps must be a positive number, got ${o.fps}`);
  if (o.resize) {
    checkDims(o.resize.width, o.resize.height, 'resize');
    if (o.resize.mode !== undefined && o.resize.mode !== 'cover' && o.resize.mode !== 'stretch')
      throw new ValueError(`resize.mode must be 'cover' or 'stretch', got '${o.resize.mode}'`);
  }
  if (o.chroma !== undefined && o.chroma !== 'fast' && o.chroma !== 'accurate')
    throw new ValueError(`chroma must be 'fast' or 'accurate', got '${o.chroma}'`);
  if (o.readAheadBytes !== undefined && !(Number.isInteger(o.readAheadBytes) && o.readAheadBytes > 0))
    throw new ValueError(`readAheadBytes must be a positive integer, got ${o.readAheadBytes}`);
}

/**
 * A stream of RGB24 frames from ffmpeg. Read with `readFrames(n)` / `readTensor(n)`, or iterate (`for await` yields
 * one frame at a time; `chunks(n)` yields n-frame blocks). Call `close()` when stopping early; iterating to the end or
 * breaking out of a `for await` closes it.
 */
export class VideoReader implements AsyncIterable<Uint8Array> {
  /** What the source is (before resize / fps / start / maxFrames). */
  readonly info: VideoInfo;
  /** Output frame size. */
  readonly width: number;
  readonly height: number;
  readonly frameBytes: number;
  /** Frame rate of the output sequence. */
  readonly fps: number;
  /** Decode errors ffmpeg reported while still producing frames (set when the stream ends). */
  readonly warnings: string[] = [];
  /** Frames handed out so far. */
  framesRead = 0;

  private proc: ChildProcess | null = null;
  private readonly stderr = new StderrTail();
  private queue: Buffer[] = [];
  /** Index of the first unread chunk in queue (shift() on thousands of 64 KiB chunks per read is quadratic). */
  private qHead = 0;
  private headOffset = 0;
  private queued = 0;
  private paused = false;
  private finished = false;
  private exitCode: number | null = null;
  private exitSignal: string | null = null;
  private startError: VideoError | null = null;
  private feedError: VideoError | null = null;
  private killedByUs = false;
  private closed = false;
  private endReported = false;
  private wake: (() => void) | null = null;
  private pendingWant = 0;
  private readonly readAhead: number;
  private readonly opts: ReadOptions;
  private lock: Promise<unknown> = Promise.resolve();
  private exited: Promise<void>;

  /** @internal use openVideoReader */
  constructor(src: Source, info: VideoInfo, opts: ReadOptions) {
    this.info = info;
    this.opts = opts;
    this.width = opts.resize?.width ?? info.width;
    this.height = opts.resize?.height ?? info.height;
    this.frameBytes = this.width * this.height * 3;
    if (!(this.frameBytes > 0 && this.frameBytes <= MAX_FRAME_BYTES))
      throw new VideoError(`${info.path}: frames of ${this.width}x${this.height} are ${this.frameBytes > 0 ? 'too large to read' : 'empty'} (at most ${MAX_FRAME_BYTES} bytes of RGB per frame)`);
    this.fps = src.kind === 'file' ? (opts.fps ?? info.fps) : (opts.fps ?? DEFAULT_SEQUENCE_FPS);
    this.readAhead = opts.readAheadBytes ?? Math.max(4 << 20, 2 * this.frameBytes);
    const seqFrames = src.kind === 'pngdir' ? src.files.length : src.kind === 'pattern' ? src.count : Infinity;
    if (opts.maxFrames === 0 || (opts.start ?? 0) >= seqFrames) {
      this.finished = true;
      this.exitCode = 0;
      this.exited = Promise.resolve();
      return;
    }
    this.exited = this.start(src);
  }

  private start(src: Source): Promise<void> {
    const { opts } = this;
    const args = ['-hide_banner', '-nostdin', '-v', 'error'];
    const filters: string[] = [];
    let feedFiles: string[] | null = null;
    let maxFrames = opts.maxFrames;
    const rate = String(this.fps || DEFAULT_SEQUENCE_FPS);
    if (src.kind === 'file') {
      args.push('-i', src.path);
      if (opts.fps !== undefined) filters.push(`fps=${opts.fps}`);
      // trim counts frames entering it, so start is exact (by index) for any container, at the cost of decoding them.
      if (opts.start) filters.push(`trim=start_frame=${opts.start}`);
    } else if (src.kind === 'pngdir') {
      // Piped in our own (natural) order: no glob semantics, any file names, and skipping needs no decoding.
      const from = opts.start ?? 0;
      feedFiles = src.files.slice(from, maxFrames !== undefined ? from + maxFrames : undefined);
      maxFrames = undefined;
      args.push('-f', 'image2pipe', '-c:v', 'png', '-framerate', rate, '-i', 'pipe:0');
    } else {
      args.push('-f', 'image2', '-framerate', rate, '-start_number', String(src.start + (opts.start ?? 0)), '-i', src.path);
    }
    const r = opts.resize;
    const accurate = opts.chroma === 'accurate' ? `:flags=${SWS_FLAGS}` : '';
    if (r) {
      // Converted to RGB first so resampling happens in RGB, as in the reference's PIL pipeline.
      if (accurate) filters.push(`scale=iw:ih${accurate}`);
      filters.push('format=rgb24');
      if ((r.mode ?? 'cover') === 'cover')
        filters.push(`scale=${r.width}:${r.height}:force_original_aspect_ratio=increase:flags=bicubic`, 
          // Explicit floor: crop's default centring rounds (x = 99.5 -> 100); DMCrop floors (-> 99).
          `crop=${r.width}:${r.height}:floor((iw-ow)/2):floor((ih-oh)/2)`);
      else filters.push(`scale=${r.width}:${r.height}:flags=bicubic`);
    } else {
      // Pins the output size, so a stream that changes resolution midway cannot desynchronise frame boundaries.
      filters.push(`scale=${this.width}:${this.height}${accurate}`);
    }
    filters.push('format=rgb24');
    args.push('-map', '0:v:0', '-an', '-sn', '-dn', '-vf', filters.join(','));
    if (maxFrames !== undefined) args.push('-frames:v', String(maxFrames));
    args.push('-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');

    const proc = spawn(ffmpegBin(), args, { stdio: [feedFiles ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stdout!.on('data', (b: Buffer) => {
      this.queue.push(b);
      this.queued += b.length;
      if (this.queued >= Math.max(this.readAhead, this.pendingWant) && !this.paused) {
        this.paused = true;
        proc.stdout!.pause();
      }
      this.notify();
    });
    proc.stderr!.on('data', (b: Buffer) => this.stderr.push(b));
    if (feedFiles) this.feed(proc, feedFiles);
    holdLoop(proc, false);
    return new Promise<void>((done) => {
      proc.on('error', (e) => {
        this.startError = spawnError(ffmpegBin(), e);
        this.finished = true;
        this.notify();
        done();
      });
      proc.on('close', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        this.finished = true;
        this.notify();
        done();
      });
    });
  }

  private feed(proc: ChildProcess, files: string[]): void {
    const self = this;
    const stdin = proc.stdin!;
    // EPIPE when ffmpeg stops early (closed reader, decode error) is expected; the exit status reports real failures.
    stdin.on('error', () => {});
    const src = Readable.from(
      (async function* () {
        for (const f of files) {
          try {
            yield await readFile(f);
          } catch (e) {
            self.feedError = new VideoError(`cannot read ${f}: ${fsReason(e)}`);
            proc.kill('SIGKILL');
            return;
          }
        }
      })(),
      { objectMode: false },
    );
    src.pipe(stdin);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private resumeIfLow(): void {
    if (this.paused && !this.finished && this.queued < Math.max(this.readAhead, this.pendingWant)) {
      this.paused = false;
      this.proc?.stdout?.resume();
    }
  }

  /** Bytes decoded ahead of the consumer and held here (bounded by the read-ahead or the pending request). */
  get bufferedBytes(): number {
    return this.queued;
  }

  /** Up to n frames (fewer at the end) as HxWx3 uint8, or null when the stream is exhausted. */
  readFrames(n: number): Promise<Uint8Array | null> {
    if (!Number.isInteger(n) || n <= 0) return Promise.reject(new ValueError(`readFrames: n must be a positive integer, got ${n}`));
    // Serialised so concurrent callers get consecutive, non-interleaved chunks.
    const p = this.lock.then(async () => {
      holdLoop(this.proc, true);
      try {
        return await this.readLocked(n);
      } finally {
        holdLoop(this.proc, false);
      }
    });
    this.lock = p.catch(() => {});
    return p;
  }

  private async readLocked(n: number): Promise<Uint8Array | null> {
    if (this.closed) throw new VideoError(`reader for ${this.info.path} is closed`);
    const want = n * this.frameBytes;
    this.pendingWant = want;
    while (this.queued < want && !this.finished) {
      this.resumeIfLow();
      await new Promise<void>((r) => (this.wake = r));
    }
    this.pendingWant = 0;
    const take = Math.min(want, this.queued - (this.queued % this.frameBytes));
    if (take === 0) {
      this.endOfStream();
      return null;
    }
    const out = new Uint8Array(take);
    let filled = 0;
    while (filled < take) {
      const head = this.queue[this.qHead]!;
      const k = Math.min(head.length - this.headOffset, take - filled);
      out.set(head.subarray(this.headOffset, this.headOffset + k), filled);
      filled += k;
      this.headOffset += k;
      if (this.headOffset === head.length) {
        this.qHead++;
        this.headOffset = 0;
      }
    }
    this.queue = this.queue.slice(this.qHead);
    this.qHead = 0;
    this.queued -= take;
    this.framesRead += take / this.frameBytes;
    this.resumeIfLow();
    return out;
  }

  /** Called once no whole frame is left: decide between a clean end, warnings and an error. */
  private endOfStream(): void {
    if (this.startError) throw this.startError;
    if (this.feedError) throw this.feedError;
    const msg = ffmpegText(this.stderr.raw, 6);
    if (this.exitCode !== 0 && !this.killedByUs)
      throw new VideoError(`ffmpeg failed to decode ${this.info.path} after ${this.framesRead} frames (${this.exitSignal ? `killed by ${this.exitSignal}` : `exit code ${this.exitCode}`})`, msg || undefined);
    if (this.queued > 0 && !this.killedByUs)
      throw new VideoError(`ffmpeg output for ${this.info.path} ended mid-frame (${this.queued} stray bytes)`, msg || undefined);
    if (!msg || this.killedByUs) return;
    if (this.opts.strict) throw new VideoError(`decode errors in ${this.info.path} after ${this.framesRead} frames (strict)`, msg);
    if (this.endReported) return;
    this.endReported = true;
    this.warnings.push(...meaningfulLines(this.stderr.raw, 20));
    const text = `decode errors in ${this.info.path}; returned the ${this.framesRead} frames ffmpeg could decode: ${msg}`;
    if (this.opts.onWarning) this.opts.onWarning(text);
    else process.emitWarning(text, { code: 'DCVG_VIDEO_DECODE' });
  }

  /** Up to n frames as a Tensor (1, 3, n, H, W) in [-1, 1], or null at the end. */
  async readTensor(n: number): Promise<Tensor | null> {
    const f = await this.readFrames(n);
    return f ? framesToTensor(f, this.height, this.width) : null;
  }

  /** uint8 frames of this reader's size -> Tensor (1, 3, n, H, W). */
  toTensor(frames: Uint8Array): Tensor {
    return framesToTensor(frames, this.height, this.width);
  }

  /** Blocks of up to n frames; closes the reader when done or abandoned. */
  async *chunks(n: number): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        const c = await this.readFrames(n);
        if (!c) return;
        yield c;
      }
    } finally {
      await this.close();
    }
  }

  /** One frame at a time (views into larger blocks, so iteration costs one copy per block, not per frame). */
  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    const per = Math.max(1, Math.floor(this.readAhead / this.frameBytes));
    for await (const c of this.chunks(per)) {
      for (let o = 0; o < c.length; o += this.frameBytes) yield c.subarray(o, o + this.frameBytes);
    }
  }

  /** Stops ffmpeg (if still running) and releases buffers. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.finished && this.proc) {
      this.killedByUs = true;
      this.proc.kill('SIGKILL');
    }
    this.queue = [];
    this.qHead = 0;
    this.queued = 0;
    holdLoop(this.proc, true);
    await this.exited;
  }
}

/**
 * Opens a streaming reader on a video file (anything ffmpeg reads: mp4, webm, avi, mov, mpeg, ogv, gif, ...), a
 * directory of PNGs (natural order) or a printf pattern (frames/%05d.png).
 */
export async function openVideoReader(path: string, opts: ReadOptions = {}): Promise<VideoReader> {
  checkReadOptions(opts);
  const src = await resolveSource(path);
  const info = await probeSource(src);
  return new VideoReader(src, info, opts);
}

/**
 * The whole clip (after start / maxFrames / resize / fps) as uint8 frames (frame-major HxWx3 RGB) with its size.
 * `maxBytes` bounds the decoded bytes times `bytesFactor` (ValueError past it).
 */
export async function readFrameBytes(
  path: string,
  opts: ReadOptions & { maxBytes?: number; bytesFactor?: number; what?: string } = {},
): Promise<{ data: Uint8Array; frames: number; height: number; width: number }> {
  const maxBytes = opts.maxBytes ?? Infinity;
  const factor = opts.bytesFactor ?? 1;
  const reader = await openVideoReader(path, opts);
  try {
    const chunkFrames = Math.max(1, Math.floor((16 << 20) / reader.frameBytes));
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const c = await reader.readFrames(chunkFrames);
      if (!c) break;
      parts.push(c);
      total += c.length;
      if (total * factor > maxBytes)
        throw new ValueError(
          `${opts.what ?? 'readFrameBytes'}: ${path} needs more than ${maxBytes} bytes${factor !== 1 ? ' as a float tensor' : ''} at ${reader.width}x${reader.height}; ` +
            'pass maxFrames / resize, raise maxBytes, or stream with openVideoReader',
        );
    }
    const data = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      data.set(p, o);
      o += p.length;
    }
    return { data, frames: total / reader.frameBytes, height: reader.height, width: reader.width };
  } finally {
    await reader.close();
  }
}

/**
 * The whole clip (after start / maxFrames / resize / fps) as a Tensor (1, 3, T, H, W) in [-1, 1]. For short clips:
 * refuses (ValueError) when the float tensor would exceed `maxBytes` (default 2 GiB); stream with openVideoReader
 * otherwise.
 */
export async function readAllFrames(path: string, opts: ReadOptions & { maxBytes?: number } = {}): Promise<Tensor> {
  const r = await readFrameBytes(path, { ...opts, maxBytes: opts.maxBytes ?? 2 ** 31, bytesFactor: 4, what: 'readAllFrames' });
  return framesToTensor(r.data, r.height, r.width);
}
