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
 * sequences exact; y4m with the default yuv444p16 exact (checked for all 2^24 RGB colours); y4m yuv444p (8-bit) max 2,
 * mean ~0.4 on noise; mp4 x264 CRF 18 4:2:0 mean ~1.5 on a real clip (lossy).
 *
 * Binaries: $DCVG_FFMPEG / $DCVG_FFPROBE, else `ffmpeg` / `ffprobe` on PATH.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync, type Stats } from 'node:fs';
import { access, mkdir, open, readFile, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { ShapeError, ValueError, VideoError, fmtShape } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import { tempPathFor, trackTemp, untrackTemp } from './files.js';

/** Part of this module's API (the package exports it as video.VideoError); defined with the other errors. */
export { VideoError };

const ffmpegBin = (): string => process.env.DCVG_FFMPEG || 'ffmpeg';
const ffprobeBin = (): string => process.env.DCVG_FFPROBE || 'ffprobe';

/**
 * RGB -> YUV when writing, and YUV -> RGB when reading with chroma: 'accurate'. Reading defaults to swscale's fast
 * path (chroma samples repeated, not interpolated): it is what PyAV/torchvision pipelines get, and it is about 2x
 * faster at 720p; 'accurate' lowers the mp4 round-trip error (01.mp4, CRF 18: mean 1.90 -> 1.54 levels).
 */
const SWS_FLAGS = 'bicubic+accurate_rnd+full_chroma_int';

/** Frame rate given to image sequences, which carry none (ffmpeg's own default for image2). */
export const DEFAULT_SEQUENCE_FPS = 25;

// ------------------------------------------------------------------------------------------------------------------
// stderr handling

/** Keeps the tail of a process's stderr (ffmpeg can print one line per broken packet for a whole file). */
class StderrTail {
  private text = '';
  push(chunk: Buffer | string): void {
    this.text += chunk.toString();
    if (this.text.length > 256 * 1024) this.text = this.text.slice(-128 * 1024);
  }
  get raw(): string {
    return this.text;
  }
}

/**
 * The lines of ffmpeg's stderr worth showing: progress/statistics lines dropped, the per-run context addresses
 * (`[h264 @ 0x55d...]`) removed so messages are stable, duplicates collapsed to their last occurrence.
 */
export function meaningfulLines(stderr: string, max = 4): string[] {
  const lines = stderr
    .split(/\r?\n|\r/)
    .map((l) => l.replace(/ @ 0x[0-9a-f]+\]/gi, ']').trim())
    .filter((l) => l && !/^(frame=|size=|video:|Press \[q\]|Last message repeated|\[.*\] Last message repeated)/.test(l));
  const seen = new Set<string>();
  const out: string[] = [];
  for (let i = lines.length - 1; i >= 0 && out.length < max; i--) {
    const l = lines[i]!;
    if (seen.has(l)) continue;
    seen.add(l);
    out.unshift(l);
  }
  return out;
}

function ffmpegText(stderr: string, max = 4): string {
  return meaningfulLines(stderr, max).join(' | ');
}

/**
 * Whether a child process (and its pipes) keeps Node's event loop alive. Held only while a read, write or close is in
 * flight: a reader or writer abandoned without close() must not keep the process from exiting (the exit hook then
 * removes temporary outputs), yet a pending await must not let the loop drain before ffmpeg answers.
 */
function holdLoop(proc: ChildProcess | null, hold: boolean): void {
  if (!proc) return;
  for (const s of [proc.stdin, proc.stdout, proc.stderr]) {
    // A destroyed socket has no handle: net.Socket.ref() would then queue a 'connect' listener on every call.
    if (!s || s.destroyed) continue;
    const sock = s as unknown as { ref?: () => void; unref?: () => void } | null;
    if (hold) sock?.ref?.();
    else sock?.unref?.();
  }
  if (hold) proc.ref();
  else proc.unref();
}

/** A file system error in words (Node's own text starts with the raw code and repeats the path). */
function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ELOOP':
      return 'too many levels of symbolic links (a symlink loop?)';
    case 'ENOTDIR':
      return 'a parent of the path is not a directory';
    case 'EISDIR':
      return 'is a directory, not a file';
    case 'ENAMETOOLONG':
      return 'file name too long';
    default:
      return code ? `${code}` : String((e as Error)?.message ?? e);
  }
}

/** Why a path that exists cannot be read as a video: only regular files and directories can. */
function kindOf(st: Stats): string | null {
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return null;
}

/** Frames larger than this (about 16k x 16k RGB) are refused: a corrupt header, not a video we can buffer. */
const MAX_FRAME_BYTES = 2 ** 30;

function spawnError(bin: string, err: NodeJS.ErrnoException): VideoError {
  if (err.code === 'ENOENT')
    return new VideoError(`${bin} not found on PATH (install ffmpeg, e.g. apt-get install ffmpeg, or set DCVG_FFMPEG / DCVG_FFPROBE)`);
  return new VideoError(`could not start ${bin}: ${err.message}`);
}

/** Runs a command to completion, collecting stdout and stderr. */
function run(bin: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err = new StderrTail();
    proc.stdout.on('data', (b: Buffer) => out.push(b));
    proc.stderr.on('data', (b: Buffer) => err.push(b));
    proc.on('error', (e) => reject(spawnError(bin, e)));
    proc.on('close', (code) => resolvePromise({ code, stdout: Buffer.concat(out).toString(), stderr: err.raw }));
  });
}

// ------------------------------------------------------------------------------------------------------------------
// sources: video files and PNG sequences

type Source =
  | { kind: 'file'; path: string }
  /** A directory of PNGs, natural order (frame2 before frame10). */
  | { kind: 'pngdir'; path: string; files: string[] }
  /** A printf pattern (frames/%05d.png): first index as ffmpeg picks it (the first of 0..4 that exists), then up to the first gap. */
  | { kind: 'pattern'; path: string; start: number; count: number; first: string };

const PATTERN_RE = /%(0\d+)?d/;

function hasPattern(p: string): boolean {
  return PATTERN_RE.test(basename(p));
}

function formatPattern(pattern: string, i: number): string {
  return pattern.replace(/%(0(\d+))?d|%%/g, (m, _z, width: string | undefined) => {
    if (m === '%%') return '%';
    return width ? String(i).padStart(Number(width), '0') : String(i);
  });
}

const naturalCollator = new Intl.Collator('en', { numeric: true, sensitivity: 'variant' });
function naturalCompare(a: string, b: string): number {
  return naturalCollator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}

async function resolveSource(path: string): Promise<Source> {
  if (typeof path !== 'string' || !path) throw new VideoError(`a video path must be a non-empty string, got ${JSON.stringify(path)}`);
  const abs = resolve(path);
  // A file whose name happens to contain %d is that file, not an image pattern.
  if (hasPattern(abs) && !(await stat(abs).then((st) => st.isFile(), () => false))) {
    const dir = dirname(abs);
    let names: Set<string>;
    try {
      names = new Set(await readdir(dir));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new VideoError(`no file matches image pattern ${path} (directory ${dir} does not exist)`);
      throw new VideoError(`cannot list the directory of image pattern ${path}: ${fsReason(e)}`);
    }
    const pat = basename(abs);
    let start = -1;
    for (let i = 0; i < 5; i++) {
      if (names.has(formatPattern(pat, i))) {
        start = i;
        break;
      }
    }
    if (start < 0) throw new VideoError(`no file matches image pattern ${path} (looked for indices 0 to 4, as ffmpeg does)`);
    let count = 0;
    while (names.has(formatPattern(pat, start + count))) count++;
    return { kind: 'pattern', path: abs, start, count, first: join(dir, formatPattern(pat, start)) };
  }
  let st;
  try {
    st = await stat(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new VideoError(`no such file or directory: ${path}`);
    throw new VideoError(`cannot access ${path}: ${fsReason(e)}`);
  }
  const odd = kindOf(st);
  // ffprobe would block forever on a pipe nobody writes to, and read a device without end.
  if (odd) throw new VideoError(`cannot read ${path}: it is ${odd}, not a video file or a folder of PNGs`);
  if (st.isDirectory()) {
    let names: string[];
    try {
      names = await readdir(abs);
    } catch (e) {
      throw new VideoError(`cannot list directory ${path}: ${fsReason(e)}`);
    }
    const files = names.filter((f) => /\.png$/i.test(f) && !f.startsWith('.')).sort(naturalCompare);
    if (!files.length) throw new VideoError(`directory ${path} holds no PNG files (a directory is read as a PNG sequence)`);
    return { kind: 'pngdir', path: abs, files: files.map((f) => join(abs, f)) };
  }
  return { kind: 'file', path: abs };
}

/** Width and height from a PNG's IHDR chunk (bytes 16..23), without decoding it. */
async function pngSize(file: string): Promise<{ width: number; height: number }> {
  const fh = await open(file, 'r').catch((e: Error) => {
    throw new VideoError(`cannot open PNG ${file}: ${fsReason(e)}`);
  });
  try {
    const b = Buffer.alloc(24);
    const { bytesRead } = await fh.read(b, 0, 24, 0);
    const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
    if (bytesRead < 24 || sig.some((v, i) => b[i] !== v) || b.toString('latin1', 12, 16) !== 'IHDR')
      throw new VideoError(`not a PNG file: ${file}`);
    const width = b.readUInt32BE(16);
    const height = b.readUInt32BE(20);
    // The PNG spec allows 1 .. 2^31-1; 0 would make every frame zero bytes long (an endless stream of empty reads).
    if (!(width >= 1 && height >= 1 && width < 2 ** 31 && height < 2 ** 31)) throw new VideoError(`PNG ${file} declares an invalid size ${width}x${height}`);
    return { width, height };
  } finally {
    await fh.close();
  }
}

// ------------------------------------------------------------------------------------------------------------------
// probe

export interface VideoInfo {
  /** Absolute path (or pattern) as given to ffmpeg. */
  path: string;
  /** Displayed size: width and height are swapped for streams rotated by +-90 degrees (ffmpeg rotates on decode). */
  width: number;
  height: number;
  /** Frame count: exact when `framesExact`, else duration x fps rounded (0 when neither is known). */
  frames: number;
  framesExact: boolean;
  /** Average frame rate (0 when unknown). Image sequences: DEFAULT_SEQUENCE_FPS. */
  fps: number;
  /** Codec name as ffprobe spells it ('h264', 'vp9', 'gif', 'png', ...). */
  codec: string;
  /** Seconds (NaN when unknown). */
  durationSec: number;
  /** Container as ffprobe names it ('mov,mp4,m4a,3gp,3g2,mj2', 'matroska,webm', ...), or 'png-sequence'. */
  container: string;
  pixFmt: string | null;
  /** Display rotation in degrees from the stream's display matrix (0 when none). */
  rotation: number;
}

export interface ProbeOptions {
  /**
   * Count packets when the container does not store a frame count (webm, some avi/mpeg): exact, reads the whole
   * file but decodes nothing (about a second per GB).
   */
  countFrames?: boolean;
}

function parseRate(r: unknown): number {
  if (typeof r !== 'string') return NaN;
  const [n, d] = r.split('/').map(Number);
  if (d === undefined) return Number.isFinite(n) ? n! : NaN;
  return n! > 0 && d > 0 ? n! / d : NaN;
}

interface FfprobeStream {
  codec_name?: string;
  codec_type?: string;
  width?: number;
  height?: number;
  pix_fmt?: string;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  nb_frames?: string;
  nb_read_packets?: string;
  duration?: string;
  disposition?: { attached_pic?: number };
  tags?: Record<string, string>;
  side_data_list?: { rotation?: number }[];
}

async function probeSequence(src: Extract<Source, { kind: 'pngdir' | 'pattern' }>): Promise<VideoInfo> {
  const first = src.kind === 'pngdir' ? src.files[0]! : src.first;
  const frames = src.kind === 'pngdir' ? src.files.length : src.count;
  const { width, height } = await pngSize(first);
  return {
    path: src.path,
    width,
    height,
    frames,
    framesExact: true,
    fps: DEFAULT_SEQUENCE_FPS,
    codec: 'png',
    durationSec: frames / DEFAULT_SEQUENCE_FPS,
    container: 'png-sequence',
    pixFmt: null,
    rotation: 0,
  };
}

async function probeSource(src: Source, opts: ProbeOptions = {}): Promise<VideoInfo> {
  if (src.kind !== 'file') return probeSequence(src);
  const args = ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', '-select_streams', 'v'];
  if (opts.countFrames) args.push('-count_packets');
  args.push(src.path);
  const r = await run(ffprobeBin(), args);
  if (r.code !== 0) {
    // ffprobe prefixes its messages with the path, which our message already names.
    const text = ffmpegText(r.stderr.split(`${src.path}: `).join(''));
    throw new VideoError(`cannot read ${src.path}`, text || `ffprobe exited with code ${r.code}`);
  }
  let json: { streams?: FfprobeStream[]; format?: { format_name?: string; duration?: string } };
  try {
    json = JSON.parse(r.stdout);
  } catch {
    throw new VideoError(`ffprobe gave unparseable output for ${src.path}`, ffmpegText(r.stderr));
  }
  const streams = json.streams ?? [];
  // Cover art in audio files is a one-frame "video" stream; it is not a video.
  const s = streams.find((v) => v.codec_type === 'video' && !v.disposition?.attached_pic);
  const container = json.format?.format_name ?? 'unknown';
  if (!s) {
    const why = streams.length ? 'only an attached picture (cover art)' : 'no video stream';
    throw new VideoError(`${src.path} has ${why} (container: ${container})`);
  }
  if (!(s.width! > 0 && s.height! > 0)) throw new VideoError(`${src.path}: video stream has no size`, ffmpegText(r.stderr));
  const sideRot = s.side_data_list?.find((d) => typeof d.rotation === 'number')?.rotation;
  const rotation = Number(sideRot ?? s.tags?.rotate ?? 0) || 0;
  const swap = Math.abs(Math.round(rotation / 90)) % 2 === 1;
  let fps = parseRate(s.avg_frame_rate);
  if (!Number.isFinite(fps)) fps = parseRate(s.r_frame_rate);
  if (!Number.isFinite(fps)) fps = 0;
  let durationSec = Number(s.duration ?? json.format?.duration);
  if (!Number.isFinite(durationSec)) durationSec = NaN;
  let frames = Number(s.nb_frames);
  let framesExact = Number.isInteger(frames) && frames > 0;
  if (!framesExact && opts.countFrames) {
    frames = Number(s.nb_read_packets);
    framesExact = Number.isInteger(frames) && frames >= 0;
  }
  if (!framesExact) frames = fps > 0 && Number.isFinite(durationSec) ? Math.round(durationSec * fps) : 0;
  return {
    path: src.path,
    width: swap ? s.height! : s.width!,
    height: swap ? s.width! : s.height!,
    frames,
    framesExact,
    fps,
    codec: s.codec_name ?? 'unknown',
    durationSec,
    container,
    pixFmt: s.pix_fmt ?? null,
    rotation,
  };
}

/**
 * Size, frame count, rate, codec and duration of a video file, a directory of PNGs or a printf pattern
 * (frames/%05d.png). A missing path or an unreadable/corrupt file raises VideoError (with ffprobe's own message).
 */
export async function probeVideo(path: string, opts: ProbeOptions = {}): Promise<VideoInfo> {
  return probeSource(await resolveSource(path), opts);
}

// ------------------------------------------------------------------------------------------------------------------
// uint8 frames <-> tensors

/** 0..255 -> [-1, 1], exactly as (v / 127.5 - 1) in float32. */
const U8_TO_UNIT = (() => {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = v / 127.5 - 1;
  return t;
})();

/**
 * n frames of HxWx3 uint8 (frame-major, interleaved RGB) -> Tensor (1, 3, n, H, W) in [-1, 1]; n is inferred from
 * the length.
 */
export function framesToTensor(frames: Uint8Array, height: number, width: number): Tensor {
  if (!(frames instanceof Uint8Array)) throw new ValueError(`framesToTensor: frames must be a Uint8Array, got ${(frames as object)?.constructor?.name}`);
  checkDims(width, height, 'framesToTensor');
  const hw = height * width;
  if (frames.length % (hw * 3) !== 0)
    throw new ShapeError(`framesToTensor: ${frames.length} bytes is not a whole number of ${height}x${width}x3 frames`);
  const n = frames.length / (hw * 3);
  const out = new Float32Array(frames.length);
  const plane = n * hw;
  for (let t = 0; t < n; t++) {
    const src = t * hw * 3;
    const r = t * hw;
    const g = plane + r;
    const b = 2 * plane + r;
    for (let p = 0, s = src; p < hw; p++, s += 3) {
      out[r + p] = U8_TO_UNIT[frames[s]!]!;
      out[g + p] = U8_TO_UNIT[frames[s + 1]!]!;
      out[b + p] = U8_TO_UNIT[frames[s + 2]!]!;
    }
  }
  return new Tensor(out, [1, 3, n, height, width]);
}

/** Geometry of a video tensor: (1, 3, T, H, W) or (3, T, H, W). */
function videoTensorDims(t: Tensor, what: string): { frames: number; height: number; width: number } {
  const s = t.shape;
  const ok = (s.length === 5 && s[0] === 1 && s[1] === 3) || (s.length === 4 && s[0] === 3);
  if (!ok) throw new ShapeError(`${what}: expected a video tensor of shape (1, 3, T, H, W) or (3, T, H, W), got ${fmtShape(s)}`);
  const o = s.length - 3;
  return { frames: s[o]!, height: s[o + 1]!, width: s[o + 2]! };
}

/**
 * Tensor (1, 3, T, H, W) or (3, T, H, W) in [-1, 1] -> T frames of HxWx3 uint8: clamp to [-1, 1], then
 * round((x + 1) * 127.5). NaN raises ValueError (a NaN frame is a bug upstream, not a colour).
 */
export function tensorToFrames(t: Tensor): Uint8Array {
  const { frames: n, height, width } = videoTensorDims(t, 'tensorToFrames');
  const x = t.data();
  const hw = height * width;
  const plane = n * hw;
  const out = new Uint8Array(x.length);
  for (let f = 0; f < n; f++) {
    const r = f * hw;
    const dst = f * hw * 3;
    for (let c = 0; c < 3; c++) {
      const base = c * plane + r;
      for (let p = 0; p < hw; p++) {
        let v = x[base + p]!;
        if (!(v >= -1)) {
          if (Number.isNaN(v)) throw new ValueError(`tensorToFrames: NaN at frame ${f}, channel ${c}, pixel (${Math.floor(p / width)}, ${p % width})`);
          v = -1;
        } else if (v > 1) v = 1;
        out[dst + p * 3 + c] = Math.round((v + 1) * 127.5);
      }
    }
  }
  return out;
}

function checkDims(width: number, height: number, what: string): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0)
    throw new ValueError(`${what}: width and height must be positive integers, got ${width}x${height}`);
}

// ------------------------------------------------------------------------------------------------------------------
// reader

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

// ------------------------------------------------------------------------------------------------------------------
// writer

export type VideoFormat = 'mp4' | 'gif' | 'y4m' | 'png';

export interface WriteOptions {
  width: number;
  height: number;
  fps: number;
  /** Default: from the extension (.mp4, .gif, .y4m); 'png' for a directory (existing, or a path ending in '/') or a %d pattern. */
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

const FORMAT_BY_EXT: Record<string, VideoFormat> = { '.mp4': 'mp4', '.gif': 'gif', '.y4m': 'y4m' };
const PIXFMTS: Record<VideoFormat, string[]> = {
  mp4: ['yuv420p', 'yuv444p'],
  y4m: ['yuv444p16', 'yuv444p12', 'yuv444p', 'yuv420p'],
  gif: [],
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
      `cannot infer the video format of ${given}: extension '${ext}' is not one of .mp4, .gif, .y4m ` +
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
 * .y4m (yuv444p16 by default: lossless w.r.t. 8-bit RGB), PNG sequence (a directory — new, empty, or a path ending in
 * '/' — or a pattern like out/%05d.png; lossless RGB).
 */
export async function openVideoWriter(path: string, opts: WriteOptions): Promise<VideoWriter> {
  if (!opts || typeof opts !== 'object') throw new ValueError('openVideoWriter: options { width, height, fps } are required');
  checkDims(opts.width, opts.height, 'openVideoWriter');
  if (!(Number.isFinite(opts.fps) && opts.fps > 0)) throw new ValueError(`openVideoWriter: fps must be a positive number, got ${opts.fps}`);
  const abs = resolve(path);
  const format = opts.format ?? inferFormat(abs, path);
  if (!(format in PIXFMTS)) throw new ValueError(`openVideoWriter: unknown format '${format}' (mp4, gif, y4m, png)`);
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
