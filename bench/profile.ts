/** Per-primitive timing for the benchmarks' --profile: wraps a backend so every kernel call is timed. */
import type { Backend } from '../src/backend/backend.js';
import { getNativeAddon, setBackend } from '../src/backend/index.js';

export interface ProfRow {
  ms: number;
  calls: number;
  flops: number;
}

/** Adds one call to a profile table. */
export function tally(table: Map<string, ProfRow>, key: string, ms: number, flops: number): void {
  const e = table.get(key) ?? { ms: 0, calls: 0, flops: 0 };
  e.ms += ms;
  e.calls++;
  e.flops += flops;
  table.set(key, e);
}

/** A backend that runs `b` and reports each kernel call (name, arguments, milliseconds) to `onCall`. */
export function profiledBackend(b: Backend, onCall: (name: string, args: unknown[], ms: number) => void): Backend {
  const wrapped: Record<string, unknown> = {};
  for (const k of Object.keys(b) as (keyof Backend)[]) {
    const f = b[k] as unknown;
    if (typeof f !== 'function') {
      wrapped[k] = f;
      continue;
    }
    wrapped[k] = (...a: unknown[]) => {
      const t0 = performance.now();
      const r = (f as (...x: unknown[]) => unknown).apply(b, a);
      onCall(String(k), a, performance.now() - t0);
      return r;
    };
  }
  return wrapped as unknown as Backend;
}

// ---- glue shared by the benchmark scripts -----------------------------------------------------------------------

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** `--name` flags and `--name value` options of the command line; `--help` prints `usage` and exits. */
export function cliArgs(usage: string, argv: string[] = process.argv.slice(2)) {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage.trim() + '\n');
    process.exit(0);
  }
  return {
    args: argv,
    flag: (name: string) => argv.includes(name),
    opt: (name: string, dflt: string) => {
      const i = argv.indexOf(name);
      return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
    },
  };
}

/** Runs on the native backend (or a wrapper of it) with `threads` OpenMP threads; an error when the addon is not built. */
export function useNativeBackend(threads: number, b?: Backend): void {
  const addon = getNativeAddon();
  if (!addon) throw new Error('native addon not built: run "npm run build:native" first');
  setBackend(b ?? 'native');
  addon.setNumThreads(threads);
}
