/**
 * File safety shared by every writer:
 * - outputs never replace an input (`assertOutputsSafe`: real paths and inodes compared);
 * - outputs are written to a temporary of our own naming beside the target and renamed into place when complete
 *   (`tempPathFor`, `writeFileAtomic`);
 * - live temporaries are removed when the process exits or is stopped by SIGINT/SIGTERM (`trackTemp`), and stale
 *   ones (their process is gone, e.g. after kill -9) are swept the next time we write in that folder.
 */
import { closeSync, openSync, readSync, readdirSync, realpathSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, type Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import * as zlib from 'node:zlib';
import { ValueError } from '../errors.js';

// ---------------------------------------------------------------------------------------------------------------
// temporaries of our own naming

/**
 * Names of our temporaries. The current one, and the ones earlier versions wrote (swept too):
 *   .<name>.dcvg-tmp-<pid>-<hex>      (current; hidden, beside the target)
 *   <name>.tmp-<pid>-<millis>         (safetensors / atomic writes up to 0.1)
 *   .<name>.partial-<pid>-<hex>       (video outputs up to 0.1)
 */
const TEMP_PATTERNS = [/^\..+\.dcvg-tmp-(\d+)-[0-9a-f]+$/, /^.+\.tmp-(\d+)-\d+$/, /^\..+\.partial-(\d+)-[0-9a-f]+$/];

/** The pid that left a temporary of our naming, or null when the name is not one of ours. */
export function tempOwnerPid(name: string): number | null {
  for (const re of TEMP_PATTERNS) {
    const m = re.exec(name);
    if (m) return Number(m[1]);
  }
  return null;
}

function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sweptDirs = new Set<string>();

/**
 * Removes temporaries of our naming in `dir` whose process is gone (left by kill -9 or a power cut). Temporaries of
 * live processes (a concurrent run writing there) are left alone. Returns the names removed.
 */
export function sweepStaleTemps(dir: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const pid = tempOwnerPid(name);
    if (pid === null || processAlive(pid)) continue;
    try {
      rmSync(join(dir, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      /* not ours to remove after all (permissions); leave it */
    }
  }
  return removed;
}

/**
 * A fresh temporary path beside `target`, of our naming. The first call for a folder in this process also sweeps that
 * folder's stale temporaries.
 */
export function tempPathFor(target: string): string {
  const abs = resolve(target);
  const dir = dirname(abs);
  if (!sweptDirs.has(dir)) {
    sweptDirs.add(dir);
    sweepStaleTemps(dir);
  }
  return join(dir, `.${basename(abs)}.dcvg-tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

// ---------------------------------------------------------------------------------------------------------------
// cleanup at exit and on SIGINT / SIGTERM

/** Live temporaries (and what else must stop with them, e.g. an ffmpeg child) of this process. */
const liveTemps = new Map<string, (() => void) | null>();
let hooksInstalled = false;
const SIGNALS = { SIGINT: 2, SIGTERM: 15 } as const;

function cleanupLiveTemps(): void {
  for (const [p, stop] of liveTemps) {
    try {
      stop?.();
    } catch {
      /* already gone */
    }
    try {
      rmSync(p, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  liveTemps.clear();
}

function onSignal(sig: keyof typeof SIGNALS): void {
  // Another handler owns this signal (train-ae's graceful stop, or an application's own shutdown): it decides what
  // happens to work in progress, and 'exit' removes what is still live if it ends the process.
  if (process.listenerCount(sig) > 1) return;
  cleanupLiveTemps();
  // Otherwise behave as if we had no handler: die by the signal (exit status 128 + n for the shell).
  removeHooks();
  process.kill(process.pid, sig);
}

const signalHandlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupLiveTemps);
  for (const s of Object.keys(SIGNALS) as (keyof typeof SIGNALS)[]) process.on(s, signalHandlers[s]);
}

/** Handlers are held only while something is live, so an idle library leaves the process's signals alone. */
function removeHooks(): void {
  if (!hooksInstalled) return;
  hooksInstalled = false;
  process.removeListener('exit', cleanupLiveTemps);
  for (const s of Object.keys(SIGNALS) as (keyof typeof SIGNALS)[]) process.removeListener(s, signalHandlers[s]);
}

/**
 * Registers a temporary that lives across asynchronous steps: it is removed (and `stop` called first, e.g. to kill the
 * process writing it) if this process exits, or receives SIGINT/SIGTERM that nothing else handles, before
 * `untrackTemp`.
 */
export function trackTemp(path: string, stop: (() => void) | null = null): void {
  installHooks();
  liveTemps.set(path, stop);
}

export function untrackTemp(path: string): void {
  liveTemps.delete(path);
  if (liveTemps.size === 0) removeHooks();
}

// ---------------------------------------------------------------------------------------------------------------
// outputs never replace inputs

interface Identity {
  real: string;
  dev: number;
  ino: number;
}

/** printf-style frame patterns (`%05d`, `%d`) as used for PNG sequences, as a regex over file names. */
function patternRegex(name: string): RegExp | null {
  if (!/%0?\d*d/.test(name)) return null;
  const parts = name.split(/%0?\d*d/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('\\d+')}$`);
}

function identity(path: string): Identity | null {
  try {
    const st = statSync(path);
    return { real: realpathSync(path), dev: st.dev, ino: st.ino };
  } catch {
    return null;
  }
}

/**
 * Where an output will land, as a real path: the file itself if it exists, else its (real) folder plus its name.
 * Throws a ValueError when the folder does not exist or is not a folder.
 */
export function outputRealPath(path: string, flag = '-o'): string {
  const abs = resolve(path);
  const id = identity(abs);
  if (id) return id.real;
  const dir = dirname(abs);
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new ValueError(`cannot write ${flag} ${path}: directory ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new ValueError(`cannot write ${flag} ${path}: ${dir} is not a directory`);
  return join(realpathSync(dir), basename(abs));
}

/**
 * Refuses (ValueError) any output that is one of the inputs, by real path or by inode (another spelling, a symlink, a
 * hard link), and any two outputs that are the same file; also checks that each output's folder exists. Call it
 * before any work. `outputs` maps a flag name (`-o`, `--metrics`) to a path; undefined entries are skipped.
 */
export function assertOutputsSafe(
  outputs: Record<string, string | undefined>,
  inputs: Record<string, string | undefined>,
  opts: { directoryOk?: string[] } = {},
): void {
  // Inputs that do not exist as files (a preset name, a PNG pattern) are compared by where they would resolve.
  const ins: { flag: string; path: string; real: string | null; id: Identity | null }[] = [];
  for (const [flag, p] of Object.entries(inputs)) {
    if (p === undefined) continue;
    const id = identity(p);
    let real = id?.real ?? null;
    if (!real) {
      try {
        real = outputRealPath(p, flag);
      } catch {
        real = null;
      }
    }
    ins.push({ flag, path: p, real, id });
  }
  const seen: { flag: string; path: string; real: string }[] = [];
  for (const [flag, p] of Object.entries(outputs)) {
    if (p === undefined) continue;
    const real = outputRealPath(p, flag);
    const id = identity(p);
    if (id) {
      // Renaming over a directory fails late with a raw EISDIR, and over a device or FIFO (as root) would replace it.
      const st = statSync(p);
      if (st.isDirectory() && !opts.directoryOk?.includes(flag)) throw new ValueError(`${flag} ${p} is a directory; give the path of a file to write`);
      if (!st.isDirectory() && !st.isFile()) throw new ValueError(`${flag} ${p} is ${fileKind(st)}; give the path of a regular file to write`);
    }
    const pattern = patternRegex(basename(real));
    for (const i of ins) {
      const same =
        (i.real !== null && real === i.real) ||
        (id !== null && i.id !== null && id.dev === i.id.dev && id.ino === i.id.ino) ||
        (pattern !== null && i.real !== null && dirname(i.real) === dirname(real) && pattern.test(basename(i.real)));
      if (same) throw new ValueError(`${flag} ${p} would overwrite the ${i.flag} file ${i.path}; refusing to replace an input (choose another output path)`);
    }
    for (const s of seen) {
      if (s.real === real) throw new ValueError(`${flag} ${p} and ${s.flag} ${s.path} are the same file; give each output its own path`);
    }
    seen.push({ flag, path: p, real });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// atomic writes

const WRITE_ERRORS: Record<string, string> = {
  EISDIR: 'it is a directory',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
  ENOENT: 'its directory does not exist',
  ENOTDIR: 'a parent of it is not a directory',
};

/** A system error of a write, as one typed line naming the target (nothing of it was written). */
export function writeError(e: unknown, path: string): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (!code || !(e instanceof Error)) return e;
  const why = Object.hasOwn(WRITE_ERRORS, code) ? WRITE_ERRORS[code] : e.message;
  return new ValueError(`cannot write ${path}: ${why} (nothing written)`);
}

/** Writes data to `path` atomically: a temporary file beside it, renamed into place only once complete. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = tempPathFor(path);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* never created */
    }
    throw writeError(e, path);
  }
}

/** What a non-regular file is, in words. */
function fileKind(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * Opens an input file for reading. Only regular files (or links to them): a directory would fail later with a raw
 * EISDIR, and opening a FIFO blocks until something writes to it. Errors say what the path is instead.
 */
export function openRegularFile(path: string): number {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ValueError(`cannot open ${path}: no such file`);
    if (code === 'ELOOP') throw new ValueError(`cannot open ${path}: too many levels of symbolic links`);
    if (code === 'EACCES') throw new ValueError(`cannot open ${path}: permission denied`);
    throw new ValueError(`cannot open ${path}: ${(e as Error).message}`);
  }
  if (!st.isFile()) throw new ValueError(`cannot open ${path}: it is ${fileKind(st)}, not a file`);
  try {
    return openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ValueError(`cannot open ${path}: ${code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
  }
}

/** True when the file starts with a ZIP signature (torch.save checkpoints are zip archives). */
export function isZipFile(path: string): boolean {
  const head = Buffer.alloc(2);
  const fd = openRegularFile(path);
  try {
    readSync(fd, head, 0, 2, 0);
  } finally {
    closeSync(fd);
  }
  return head[0] === 0x50 && head[1] === 0x4b;
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (zlib's polynomial); native zlib.crc32 where this Node has it (>= 20.15). */
export function crc32(data: Uint8Array): number {
  if (typeof zlib.crc32 === 'function') return zlib.crc32(data) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
