/** What a video path names: a video file, a directory of PNGs (natural order) or a printf pattern (frames/%05d.png). */
import { open, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { VideoError } from '../../errors.js';
import { fsReason, kindOf } from './ffmpeg.js';

export type Source =
  | { kind: 'file'; path: string }
  /** A directory of PNGs, natural order (frame2 before frame10). */
  | { kind: 'pngdir'; path: string; files: string[] }
  /** A printf pattern (frames/%05d.png): first index as ffmpeg picks it (the first of 0..4 that exists), then up to the first gap. */
  | { kind: 'pattern'; path: string; start: number; count: number; first: string };

export const PATTERN_RE = /%(0\d+)?d/;

export function hasPattern(p: string): boolean {
  return PATTERN_RE.test(basename(p));
}

export function formatPattern(pattern: string, i: number): string {
  return pattern.replace(/%(0(\d+))?d|%%/g, (m, _z, width: string | undefined) => {
    if (m === '%%') return '%';
    return width ? String(i).padStart(Number(width), '0') : String(i);
  });
}

export const naturalCollator = new Intl.Collator('en', { numeric: true, sensitivity: 'variant' });
export function naturalCompare(a: string, b: string): number {
  return naturalCollator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}

export async function resolveSource(path: string): Promise<Source> {
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
export async function pngSize(file: string): Promise<{ width: number; height: number }> {
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
