/**
 * A progress bar on stderr for long work. It draws only on a terminal (so logs and pipes stay clean), at most ten
 * times a second, and only once the work has run for a second.
 */
export class Progress {
  private readonly t0 = performance.now();
  private last = 0;
  private drawn = false;
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = 'frames',
    stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = !!stream.isTTY && !process.env.DCVG_NO_PROGRESS;
    this.stream = stream;
  }

  private readonly stream: NodeJS.WriteStream;

  /** `extra` is shown after the rate (e.g. the current loss). */
  update(done: number, extra = ''): void {
    if (!this.tty) return;
    const now = performance.now();
    if (now - this.t0 < 1000 || (now - this.last < 100 && done < this.total)) return;
    this.last = now;
    const secs = (now - this.t0) / 1000;
    const rate = done / secs;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 0;
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, ' ');
    const eta = rate > 0 && this.total > done ? `ETA ${fmtSecs((this.total - done) / rate)}` : '';
    this.stream.write(`\r${this.label} [${bar}] ${done}/${this.total} ${this.unit}  ${rate.toFixed(rate < 10 ? 2 : 1)} ${this.unit}/s  ${extra ? extra + '  ' : ''}${eta}   `);
    this.drawn = true;
  }

  done(): void {
    if (this.drawn) this.stream.write('\n');
  }

  elapsed(): number {
    return (performance.now() - this.t0) / 1000;
  }
}

export function fmtSecs(s: number): string {
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${Math.round(s - m * 60)
    .toString()
    .padStart(2, '0')}s`;
}
