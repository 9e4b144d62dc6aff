/**
 * Backend selection. DCVG_BACKEND=native|reference picks one explicitly; unset means native when the addon is
 * built, otherwise the pure-TypeScript reference backend (with a one-time warning on stderr).
 */
import type { Backend } from './backend.js';
import { createNativeBackend, loadNativeAddon, nativeLoadError, type NativeAddon } from './native.js';
import { referenceBackend } from './reference.js';
import { ValueError } from '../errors.js';

export type { Backend, BinaryOp, UnaryOp, ReduceOp, StridedView, Conv3dParams } from './backend.js';
export { referenceBackend };

let nativeBackend: Backend | null | undefined;
let current: Backend | undefined;
let warned = false;

/** The native backend, or null if the addon is not available (see nativeUnavailableReason()). */
export function getNativeBackend(): Backend | null {
  if (nativeBackend === undefined) {
    const addon = loadNativeAddon();
    nativeBackend = addon ? createNativeBackend(addon) : null;
  }
  return nativeBackend;
}

export function getNativeAddon(): NativeAddon | null {
  return loadNativeAddon();
}

export function nativeUnavailableReason(): string {
  return nativeLoadError();
}

/** Looks a backend up by name; throws if it is unknown or (for native) not built. */
export function backendByName(name: string): Backend {
  if (name === 'reference') return referenceBackend;
  if (name === 'native') {
    const b = getNativeBackend();
    if (!b) throw new ValueError(`backend "native" requested but ${nativeUnavailableReason()}`);
    return b;
  }
  throw new ValueError(`unknown backend "${name}" (expected "native" or "reference")`);
}

/** The backend ops run on now. */
export function backend(): Backend {
  if (current) return current;
  const env = process.env.DCVG_BACKEND;
  if (env) {
    current = backendByName(env);
  } else {
    const n = getNativeBackend();
    if (n) current = n;
    else {
      if (!warned) {
        warned = true;
        process.stderr.write(`dcvideogen: using the slow reference backend: ${nativeUnavailableReason()}\n`);
      }
      current = referenceBackend;
    }
  }
  return current;
}

export function setBackend(b: Backend | 'native' | 'reference'): void {
  current = typeof b === 'string' ? backendByName(b) : b;
}

/** Runs fn with `b` as the current backend, restoring the previous one afterwards. */
export function withBackend<T>(b: Backend | 'native' | 'reference', fn: () => T): T {
  const prev = current;
  setBackend(b);
  try {
    return fn();
  } finally {
    current = prev;
  }
}
