/** Typed errors. Every message names the offending shapes, axes, keys or paths. */
export class DcvgError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Shapes that do not fit together (mismatch, broadcasting failure, wrong rank, zero-size where not allowed). */
export class ShapeError extends DcvgError {
  constructor(message: string) {
    super('ERR_DCVG_SHAPE', message);
  }
}

/** Data of the wrong element type (e.g. an Int32Array where float32 is needed, an unsupported file dtype). */
export class DTypeError extends DcvgError {
  constructor(message: string) {
    super('ERR_DCVG_DTYPE', message);
  }
}

/** An axis outside [-ndim, ndim). */
export class AxisError extends DcvgError {
  constructor(message: string) {
    super('ERR_DCVG_AXIS', message);
  }
}

/** Misuse of autograd (backward on a non-scalar without a gradient, on a tensor that needs no grad, ...). */
export class AutogradError extends DcvgError {
  constructor(message: string) {
    super('ERR_DCVG_AUTOGRAD', message);
  }
}

/** An argument outside its domain (non-finite number, negative size, unknown option). */
export class ValueError extends DcvgError {
  constructor(message: string) {
    super('ERR_DCVG_VALUE', message);
  }
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** A value for an error message: numbers as JS prints them (NaN, Infinity), anything else as short JSON. */
export function showValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
