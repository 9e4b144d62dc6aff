/** Parent side of the fuzz suite: runs the runner child per area with a watchdog, restarting it after a crash or hang. */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CaseResult } from './runner.js';

const RUNNER = join(dirname(fileURLToPath(import.meta.url)), 'runner.js');
const LINE_PREFIX = '@@dcvg-fuzz ';
/** Address space per runner: a hostile file that makes us allocate gigabytes fails here instead of swapping the box. */
export const VMEM_KB = 8 * 1024 * 1024;

export interface AreaRun {
  area: string;
  timeoutSec: number;
  seed: number;
  indices: number[];
  cache: string;
  work: string;
}

function runChild(a: AreaRun, from: number, to: number, onResult: (r: CaseResult) => void): Promise<{ last: number | null; lastLabel: string; why: string | null }> {
  return new Promise((done) => {
    const cmd = `ulimit -v ${VMEM_KB}; exec "$0" "$@"`;
    const proc = spawn('bash', ['-c', cmd, process.execPath, RUNNER, a.area, String(a.seed), String(from), String(to), a.cache, a.work], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OMP_NUM_THREADS: '1', NODE_NO_WARNINGS: '1' },
    });
    let last: number | null = null;
    let lastLabel = '';
    let finished = false;
    let buf = '';
    let err = '';
    let timer: NodeJS.Timeout | null = null;
    let hung = false;
    const arm = () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        hung = true;
        proc.kill('SIGKILL');
      }, a.timeoutSec * 1000);
    };
    arm();
    proc.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.startsWith(LINE_PREFIX)) continue;
        const m = JSON.parse(line.slice(LINE_PREFIX.length)) as { start?: number; label?: string; result?: CaseResult; done?: boolean };
        if (m.start !== undefined) {
          last = m.start;
          lastLabel = m.label ?? '';
          arm();
        } else if (m.result) {
          last = null;
          onResult(m.result);
          arm();
        } else if (m.done) finished = true;
      }
    });
    proc.stderr.on('data', (b: Buffer) => {
      err = (err + b.toString()).slice(-2000);
    });
    proc.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (finished && code === 0) return done({ last: null, lastLabel, why: null });
      const tail = err.trim().split('\n').slice(-3).join(' | ').slice(0, 300);
      const why = hung ? `hang (no answer in ${a.timeoutSec} s)` : signal ? `crash: killed by ${signal}` : `crash: exit code ${code}`;
      done({ last, lastLabel, why: `${why}${tail ? `: ${tail}` : ''}` });
    });
  });
}

/** Runs every index of one area; crashes and hangs become results of the case that was running. */
export async function runArea(a: AreaRun): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  const todo = [...a.indices].sort((x, y) => x - y);
  let pos = 0;
  while (pos < todo.length) {
    // Contiguous runs of indices go to one child; a lone replayed case gets its own.
    let end = pos + 1;
    while (end < todo.length && todo[end] === todo[end - 1]! + 1) end++;
    const from = todo[pos]!;
    const to = todo[end - 1]! + 1;
    const seen = new Set<number>();
    const r = await runChild(a, from, to, (res) => {
      results.push(res);
      seen.add(res.index);
    });
    if (r.why === null) {
      pos = end;
      continue;
    }
    const bad = r.last ?? from + seen.size;
    results.push({ area: a.area, index: bad, label: r.lastLabel, outcome: 'fail', problems: [r.why], ms: 0 });
    // Continue after the case that crashed or hung.
    pos = todo.indexOf(bad) + 1;
    if (pos === 0) pos = end;
  }
  return results;
}
