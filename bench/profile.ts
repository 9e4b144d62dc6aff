/** Per-primitive timing for the benchmarks' --profile: wraps a backend so every kernel call is timed. */
import type { Backend } from '../src/backend/backend.js';

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
