/** The ffmpeg / ffprobe processes: binaries, swscale flags, stderr digests, file system reasons, spawning. */
import { spawn, type ChildProcess } from 'node:child_process';
import { type Stats } from 'node:fs';
import { VideoError } from '../../errors.js';

export const ffmpegBin = (): string => process.env.DCVG_FFMPEG || 'ffmpeg';
export const ffprobeBin = (): string => process.env.DCVG_FFPROBE || 'ffprobe';

/**
 * RGB -> YUV when writing, and YUV -> RGB when reading with chroma: 'accurate'. Reading defaults to swscale's fast
 * path (chroma samples repeated, not interpolated): it is what PyAV/torchvision pipelines get, and it is about 2x
 * faster at 720p; 'accurate' lowers the mp4 round-trip error (01.mp4, CRF 18: mean 1.90 -> 1.54 levels).
 */
export const SWS_FLAGS = 'bicubic+accurate_rnd+full_chroma_int';

/** Keeps the tail of a process's stderr (ffmpeg can print one line per broken packet for a whole file). */
export class StderrTail {
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

export function ffmpegText(stderr: string, max = 4): string {
  return meaningfulLines(stderr, max).join(' | ');
}

/**
 * Whether a child process (and its pipes) keeps Node's event loop alive. Held only while a read, write or close is in
 * flight: a reader or writer abandoned without close() must not keep the process from exiting (the exit hook then
 * removes temporary outputs), yet a pending await must not let the loop drain before ffmpeg answers.
 */
export function holdLoop(proc: ChildProcess | null, hold: boolean): void {
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
export function fsReason(e: unknown): string {
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
export function kindOf(st: Stats): string | null {
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return null;
}

/** Frames larger than this (about 16k x 16k RGB) are refused: a corrupt header, not a video we can buffer. */
export const MAX_FRAME_BYTES = 2 ** 30;

export function spawnError(bin: string, err: NodeJS.ErrnoException): VideoError {
  if (err.code === 'ENOENT')
    return new VideoError(`${bin} not found on PATH (install ffmpeg, e.g. apt-get install ffmpeg, or set DCVG_FFMPEG / DCVG_FFPROBE)`);
  return new VideoError(`could not start ${bin}: ${err.message}`);
}

/** Runs a command to completion, collecting stdout and stderr. */
export function run(bin: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
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
