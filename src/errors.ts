/**
 * Every error class of the package, and the helpers that format values for their messages. A leaf module: it imports
 * nothing, so any module (tensor core, file readers, CLI) can throw these without pulling in the others.
 * Every message names the offending shapes, axes, keys, files or flags in the user's terms.
 */
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

/** A file that is not what it claims to be (corrupt or truncated safetensors / checkpoint, bad header, bad metadata). */
export class FormatError extends DcvgError {
  constructor(message: string) {
    super('ERR_DCVG_FORMAT', message);
  }
}

/**
 * A tensor too large to hold in memory (the allocation failed), named with its file, key, shape and size: thrown instead
 * of V8's bare RangeError so the user learns which file and tensor asked for it.
 */
export class MemoryError extends DcvgError {
  constructor(message: string) {
    super('ERR_DCVG_MEMORY', message);
  }
}

/** ffmpeg/ffprobe failures, unreadable or corrupt media, and misuse of readers/writers. */
export class VideoError extends DcvgError {
  /** The last meaningful lines ffmpeg/ffprobe wrote to stderr, when the error came from them. */
  readonly ffmpegMessage: string | undefined;
  constructor(message: string, ffmpegMessage?: string) {
    super('ERR_DCVG_VIDEO', ffmpegMessage ? `${message}: ${ffmpegMessage}` : message);
    this.ffmpegMessage = ffmpegMessage || undefined;
  }
}

/** What Module.loadStateDict found wrong (or would have loaded): keys missing, unexpected, or of another shape. */
export interface LoadReport {
  missing: string[];
  unexpected: string[];
  mismatched: { key: string; expected: number[]; got: number[] }[];
}

/** A state dict that does not match its model; `report` lists every key at fault. */
export class StateDictError extends DcvgError {
  readonly report: LoadReport;
  constructor(message: string, report: LoadReport) {
    super('ERR_DCVG_STATE_DICT', message);
    this.report = report;
  }
}

/**
 * A training run that cannot start or go on: an --out that already holds a run, a checkpoint to resume that is
 * missing, damaged or not of this run, training data that changed since, a loss that diverged.
 */
export class TrainingError extends DcvgError {
  constructor(message: string) {
    super('ERR_DCVG_TRAINING', message);
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
