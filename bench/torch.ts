/**
 * What the benchmark scripts share about PyTorch, the reference they race: finding it, talking to a long-lived torch
 * worker process (one JSON line per answer), and comparing the float32 dumps both sides write. Python's side of the
 * same helpers is bench/torch_common.py.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

/**
 * The Python with PyTorch (and numpy when `numpy`): Debian's python3-torch via /usr/bin/python3, or DCVG_TORCH_PYTHON.
 * `python` is null, and `why` says so, when it cannot import them.
 */
export function findTorch(opts: { numpy?: boolean } = {}): { python: string | null; version: string; why: string } {
  const python = process.env.DCVG_TORCH_PYTHON ?? '/usr/bin/python3';
  const mods = opts.numpy ? 'torch, numpy' : 'torch';
  const r = spawnSync(python, ['-c', `import ${mods}; print(torch.__version__)`], { encoding: 'utf8' });
  if (r.status !== 0) {
    const what = opts.numpy ? 'PyTorch (with numpy)' : 'PyTorch';
    return { python: null, version: '', why: `${what} not found via ${python} (apt-get install python3-torch)` };
  }
  return { python, version: r.stdout.trim(), why: '' };
}

/**
 * A torch process that answers each request line with one JSON line on stdout. Answers that arrive before anyone asks
 * (a worker's ready line) are kept; a worker that exits fails every pending and later request with the last lines of
 * its stderr. OMP_NUM_THREADS is set to `threads` (torch.set_num_threads is the script's business).
 */
export class TorchWorker {
  private proc: ChildProcessWithoutNullStreams;
  private waiting: { res: (line: string) => void; rej: (e: Error) => void }[] = [];
  private pending: string[] = [];
  private exited: Error | null = null;
  private stderr = '';

  constructor(python: string, argv: string[], threads: number, onStderr?: (text: string) => void) {
    this.proc = spawn(python, argv, { env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
    createInterface({ input: this.proc.stdout }).on('line', (l) => {
      const w = this.waiting.shift();
      if (w) w.res(l);
      else this.pending.push(l);
    });
    this.proc.on('exit', (code) => {
      this.exited = new Error(`torch worker exited (${code}): ${this.stderr.trim().split('\n').slice(-5).join('\n')}`);
      for (const w of this.waiting.splice(0)) w.rej(this.exited);
    });
    this.proc.stderr.on('data', (d) => {
      this.stderr = (this.stderr + String(d)).slice(-16384);
      onStderr?.(String(d).trim());
    });
  }

  /** The next answer line, parsed. */
  next(): Promise<Record<string, unknown>> {
    const line = this.pending.shift();
    const p =
      line !== undefined
        ? Promise.resolve(line)
        : this.exited
          ? Promise.reject(this.exited)
          : new Promise<string>((res, rej) => this.waiting.push({ res, rej }));
    return p.then((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Sends one request line and waits for its answer. */
  request(line: string): Promise<Record<string, unknown>> {
    const p = this.next();
    this.proc.stdin.write(line + '\n');
    return p;
  }

  /** Closes stdin, after a last line (e.g. "quit") when the script wants one. */
  close(lastLine?: string): void {
    this.proc.stdin.end(lastLine === undefined ? undefined : lastLine + '\n');
  }
}

/** A raw little-endian float32 file, as bench/torch_*.py and our side dump them. */
export function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** Writes a float32 array as a raw file (what readF32 and numpy.fromfile read). */
export function writeF32(path: string, a: Float32Array): void {
  writeFileSync(path, a);
}

/** max |a - ref| / max |ref| (Infinity for a length mismatch or a NaN; the absolute error when ref is all zeros). */
export function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (a.length !== ref.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(a[i]! - ref[i]!);
    if (Number.isNaN(d)) return Infinity;
    if (d > num) num = d;
    den = Math.max(den, Math.abs(ref[i]!));
  }
  return den === 0 ? num : num / den;
}

/** VmHWM (peak) or VmRSS (current) of this process in MB, from /proc/self/status; NaN where there is none. */
export function procStatusMb(field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Resets VmHWM to the current RSS (Linux >= 4.0, /proc/self/clear_refs "5"); false where not permitted. */
export function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}
