/**
 * safetensors: read (F32/F16/BF16/F64, plus integer types as float) and write (F32/F16/BF16/F64), with strict
 * validation of the header so corrupt or truncated files fail with a clear error instead of garbage.
 * Reading is lazy: the header is parsed on open and each tensor is read from disk on request, so a 4 GB checkpoint
 * never has to sit in memory twice.
 */
import { closeSync, fstatSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DTypeError, FormatError, MemoryError, ShapeError, ValueError, fmtShape } from '../errors.js';
import { Tensor, fromHostArray, numelOf } from '../tensor/tensor.js';
import type { DType } from '../tensor/dtype.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../backend/convert.js';
import { openRegularFile, tempPathFor, writeError } from './files.js';

/** Runs `fn` (which allocates the data of one tensor); an allocation failure becomes a MemoryError naming it. */
export function allocating<T>(fn: () => T, what: () => string): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof RangeError) throw new MemoryError(`${what()}: cannot allocate memory for it (${e.message})`);
    throw e;
  }
}

/** "12.0 GiB" style sizes for messages. */
export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]} (${n} bytes)`;
}

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_SIZE: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** byte offsets relative to the start of the data section */
  begin: number;
  end: number;
}

/**
 * Largest header accepted, in bytes: the reference crate's limit (100 MB), so every file we write opens there too.
 * The writer refuses to exceed it.
 */
export const MAX_HEADER = 100_000_000;

// ---------------------------------------------------------------------------------------------------------------
// half-precision conversion

// The conversions live with the backend (src/backend/convert.ts); re-exported here for existing callers.
export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../backend/convert.js';

// ---------------------------------------------------------------------------------------------------------------
// reader

/** Own-property lookup: a name read from a file must never resolve to something inherited (`__proto__`, `toString`). */
function has<T extends object>(o: T, k: string): k is Extract<keyof T, string> {
  return Object.prototype.hasOwnProperty.call(o, k);
}

/**
 * The first key that occurs twice in one JSON object of `text` (already known to be valid JSON), as `"name"` or
 * `"outer" > "name"` for nested objects, or null. JSON.parse keeps the last value silently; two readers could then
 * disagree about which tensor a name means, so such a header is refused.
 */
export function firstDuplicateKey(text: string): string | null {
  // One frame per open object/array: the keys seen so far (objects only) and the key that led into it.
  const stack: { keys: Set<string> | null; via: string }[] = [];
  let expectKey = false;
  let lastKey = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top?.keys) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return [...stack.map((f) => f.via).filter(Boolean), JSON.stringify(key)].join(' > ');
        top.keys.add(key);
        lastKey = JSON.stringify(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push({ keys: new Set(), via: lastKey });
      expectKey = true;
      lastKey = '';
    } else if (c === 0x5b /* [ */) {
      stack.push({ keys: null, via: lastKey });
      lastKey = '';
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      lastKey = '';
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1]?.keys != null;
      lastKey = '';
    }
  }
  return null;
}

/** Validates each entry of the parsed header (dtype, shape, offsets, byte count) and the __metadata__ block. */
function parseHeader(path: string, header: Record<string, unknown>): { infos: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const infos = new Map<string, TensorInfo>();
  const meta: [string, string][] = [];
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FormatError(`${path}: __metadata__ must be an object of strings`);
      for (const [a, b] of Object.entries(v as Record<string, unknown>)) {
        if (typeof b !== 'string')
          throw new FormatError(`${path}: __metadata__ "${a}" is a ${b === null ? 'null' : Array.isArray(b) ? 'list' : typeof b}, but metadata values must be strings`);
        meta.push([a, b]);
      }
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new FormatError(`${path}: entry "${k}" is not an object`);
    const dtype = e.dtype;
    if (typeof dtype !== 'string' || !has(DTYPE_SIZE, dtype))
      throw new DTypeError(`${path}: tensor "${k}" has unsupported dtype ${JSON.stringify(e.dtype) ?? 'undefined'} (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`);
    const shape = e.shape;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0))
      throw new FormatError(`${path}: tensor "${k}" has an invalid shape ${JSON.stringify(shape)}`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || offs.some((o) => !Number.isSafeInteger(o) || o < 0) || offs[0] > offs[1])
      throw new FormatError(`${path}: tensor "${k}" has invalid data_offsets ${JSON.stringify(offs)}`);
    const [begin, end] = offs as [number, number];
    const need = numelOf(shape as number[]) * DTYPE_SIZE[dtype];
    if (end - begin !== need)
      throw new FormatError(`${path}: tensor "${k}" ${dtype}${fmtShape(shape as number[])} needs ${need} bytes but data_offsets span ${end - begin}`);
    infos.set(k, { dtype, shape: shape as number[], begin, end });
  }
  // fromEntries defines own properties, so a key named "__proto__" stays a key instead of replacing the prototype.
  return { infos, metadata: Object.fromEntries(meta) };
}

/**
 * The data section must be exactly the tensors laid end to end (the reference `safetensors` crate's rule): sorted by
 * offsets, the first begins at 0, each begins where the previous ends, and the last ends at the end of the file. So
 * overlapping tensors (two names, one set of bytes), gaps, and bytes after the last tensor are all refused.
 */
function checkLayout(path: string, infos: Map<string, TensorInfo>, dataLen: number): void {
  const sorted = [...infos].sort(([, a], [, b]) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev: string | null = null;
  for (const [k, i] of sorted) {
    if (i.begin !== at) {
      if (i.begin > dataLen)
        throw new FormatError(`${path}: tensor "${k}" starts at byte ${i.begin} of the data section, which has only ${dataLen} bytes (truncated file?)`);
      const where = prev === null ? 'the start of the data section (0)' : `the end of tensor "${prev}" (${at})`;
      throw new FormatError(
        `${path}: tensor "${k}" data_offsets [${i.begin}, ${i.end}] ${i.begin < at ? 'overlap' : 'leave a gap after'} ${where}; tensors must be stored back to back`,
      );
    }
    if (i.end > dataLen)
      throw new FormatError(`${path}: tensor "${k}" ends at byte ${i.end} of the data section, which has only ${dataLen} bytes (truncated file?)`);
    at = i.end;
    prev = k;
  }
  if (at !== dataLen)
    throw new FormatError(
      `${path}: ${dataLen - at} bytes after ${prev === null ? 'the header' : `the last tensor "${prev}"`} belong to no tensor (the data section has ${dataLen} bytes, tensors cover ${at})`,
    );
}

export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly infos: Map<string, TensorInfo>;
  private fd: number | null;
  private readonly dataStart: number;

  private constructor(path: string, fd: number, infos: Map<string, TensorInfo>, metadata: Record<string, string>, dataStart: number) {
    this.path = path;
    this.fd = fd;
    this.infos = infos;
    this.metadata = metadata;
    this.dataStart = dataStart;
  }

  /** Opens and validates the header. Throws FormatError naming the file and the problem. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openRegularFile(path);
    } catch (e) {
      throw new FormatError((e as Error).message);
    }
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new FormatError(`${path}: not a safetensors file (only ${size} bytes)`);
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const hlen = Number(lenBuf.readBigUInt64LE(0));
      if (hlen < 2 || hlen > MAX_HEADER || 8 + hlen > size)
        throw new FormatError(`${path}: invalid or truncated safetensors header (header length ${hlen}, file size ${size})`);
      const hbuf = Buffer.alloc(hlen);
      readSync(fd, hbuf, 0, hlen, 8);
      const text = hbuf.toString('utf8');
      let header: unknown;
      try {
        header = JSON.parse(text);
      } catch (e) {
        throw new FormatError(`${path}: safetensors header is not valid JSON (${(e as Error).message})`);
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header))
        throw new FormatError(`${path}: safetensors header must be a JSON object`);
      const dup = firstDuplicateKey(text);
      if (dup !== null) throw new FormatError(`${path}: safetensors header has the key ${dup} twice`);
      const dataStart = 8 + hlen;
      const { infos, metadata } = parseHeader(path, header as Record<string, unknown>);
      checkLayout(path, infos, size - dataStart);
      return new SafetensorsFile(path, fd, infos, metadata, dataStart);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  keys(): string[] {
    return [...this.infos.keys()];
  }

  has(name: string): boolean {
    return this.infos.has(name);
  }

  info(name: string): TensorInfo {
    const i = this.infos.get(name);
    if (!i) {
      const keys = this.keys();
      const some = keys.slice(0, 8).join(', ') + (keys.length > 8 ? `, ... (${keys.length} keys)` : '');
      throw new ShapeError(`${this.path}: no tensor named "${name}" (has: ${some || 'nothing'})`);
    }
    return i;
  }

  private readBytes(info: TensorInfo, into?: Uint8Array): Uint8Array {
    if (this.fd === null) throw new FormatError(`${this.path}: file is closed`);
    const n = info.end - info.begin;
    const buf = into ?? Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const r = readSync(this.fd, buf, got, Math.min(n - got, 1 << 30), this.dataStart + info.begin + got);
      if (r <= 0) throw new FormatError(`${this.path}: unexpected end of file`);
      got += r;
    }
    return buf;
  }

  /**
   * Reads a tensor. By default (dtype 'keep') F32, BF16, F16 and I32 keep their dtype in memory (f32, bf16, f16, i32
   * tensors; the bytes are read straight into the tensor's storage, no widening and no extra copy); F64 and the other
   * integer types are converted to float32. With dtype 'f32' every tensor is read as float32.
   */
  tensor(name: string, opts: { dtype?: 'keep' | 'f32' } = {}): Tensor {
    const info = this.info(name);
    const n = numelOf(info.shape);
    const keep = (opts.dtype ?? 'keep') === 'keep';
    const direct: DType | null =
      info.dtype === 'F32' ? 'f32' : !keep ? null : info.dtype === 'BF16' ? 'bf16' : info.dtype === 'F16' ? 'f16' : info.dtype === 'I32' ? 'i32' : null;
    if (direct) {
      const bytes = direct === 'bf16' || direct === 'f16' ? 2 : 4;
      const arr = allocating(
        () => {
          const a = direct === 'f32' ? new Float32Array(n) : direct === 'i32' ? new Int32Array(n) : new Uint16Array(n);
          if (n) this.readBytes(info, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
          return a;
        },
        () => this.describe(name, info, n * bytes),
      );
      return fromHostArray(arr, info.shape, direct);
    }
    const out = allocating(
      () => {
        const o = new Float32Array(n);
        if (n) decodeInto(this.readBytes(info), info.dtype, o);
        return o;
      },
      () => this.describe(name, info, n * 4),
    );
    return new Tensor(out, info.shape);
  }

  /** `file: tensor "k" F16[2, 3] (12 bytes as float32)` for messages. */
  private describe(name: string, info: TensorInfo, bytes: number): string {
    return `${this.path}: tensor "${name}" ${info.dtype}${fmtShape(info.shape)} (${fmtBytes(bytes)} when loaded)`;
  }

  /** Reads a tensor as float64 (exact for F64 data). */
  float64(name: string): { data: Float64Array; shape: number[] } {
    const info = this.info(name);
    const n = numelOf(info.shape);
    const out = allocating(() => this.readFloat64(info, n), () => this.describe(name, info, n * 8));
    return { data: out, shape: info.shape };
  }

  private readFloat64(info: TensorInfo, n: number): Float64Array {
    const out = new Float64Array(n);
    if (n) {
      const buf = this.readBytes(info);
      if (info.dtype === 'F64') {
        const al = new Uint8Array(n * 8);
        al.set(buf);
        out.set(new Float64Array(al.buffer));
      } else {
        const f = new Float32Array(n);
        decodeInto(buf, info.dtype, f);
        out.set(f);
      }
    }
    return out;
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}

function decodeInto(buf: Uint8Array, dtype: SafetensorsDType, out: Float32Array): void {
  const n = out.length;
  // Copy into an aligned buffer so typed views are legal regardless of the file offset.
  const al = new Uint8Array(buf.length);
  al.set(buf);
  switch (dtype) {
    case 'F32':
      out.set(new Float32Array(al.buffer, 0, n));
      return;
    case 'F64':
      out.set(new Float64Array(al.buffer, 0, n));
      return;
    case 'BF16':
      bf16ToF32(new Uint16Array(al.buffer, 0, n), out);
      return;
    case 'F16':
      f16ToF32(new Uint16Array(al.buffer, 0, n), out);
      return;
    case 'I64': {
      const v = new BigInt64Array(al.buffer, 0, n);
      for (let i = 0; i < n; i++) out[i] = Number(v[i]!);
      return;
    }
    case 'I32':
      out.set(new Int32Array(al.buffer, 0, n));
      return;
    case 'I16':
      out.set(new Int16Array(al.buffer, 0, n));
      return;
    case 'I8':
      out.set(new Int8Array(al.buffer, 0, n));
      return;
    case 'U8':
    case 'BOOL':
      out.set(al.subarray(0, n));
      return;
  }
}

/** Reads every tensor of a file as float32. */
export function loadSafetensors(path: string, opts: { dtype?: 'keep' | 'f32' } = {}): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const f = SafetensorsFile.open(path);
  try {
    const tensors = new Map<string, Tensor>();
    for (const k of f.keys()) tensors.set(k, f.tensor(k, opts));
    return { tensors, metadata: f.metadata };
  } finally {
    f.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// writer

/** A clear error naming the folder, instead of ENOENT from opening the temporary inside it. */
function assertFolderExists(path: string): void {
  const dir = dirname(resolve(path));
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new ValueError(`cannot write ${path}: folder ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new ValueError(`cannot write ${path}: ${dir} is not a folder`);
}

export type WritableTensor = Tensor | { shape: readonly number[]; data: Float64Array };

export interface WriteOptions {
  /** the file dtype of every tensor (default: each tensor's own dtype: f32 F32, bf16 BF16, f16 F16, i32 I32) */
  dtype?: 'F32' | 'F16' | 'BF16';
  metadata?: Record<string, string>;
}

/**
 * Writes tensors to `path` atomically: the bytes go to a temporary file next to it, which is renamed into place
 * only when complete, so a failure never leaves a partial output.
 */
export function saveSafetensors(path: string, tensors: Map<string, WritableTensor> | Record<string, WritableTensor>, opts: WriteOptions = {}): void {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const fileDType = (t: Tensor): 'F32' | 'F16' | 'BF16' | 'I32' =>
    opts.dtype ?? (t.dtype === 'bf16' ? 'BF16' : t.dtype === 'f16' ? 'F16' : t.dtype === 'i32' ? 'I32' : 'F32');
  // Null prototype: a tensor named "__proto__" must become a key of the header, not its prototype.
  const header = Object.create(null) as Record<string, unknown>;
  if (opts.metadata) {
    for (const [k, v] of Object.entries(opts.metadata))
      if (typeof v !== 'string') throw new ValueError(`saveSafetensors ${path}: metadata "${k}" must be a string, got ${typeof v}`);
    header.__metadata__ = opts.metadata;
  }
  let off = 0;
  const plan: { bytes: () => Uint8Array; size: number }[] = [];
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new ValueError(`saveSafetensors ${path}: "__metadata__" is reserved and cannot name a tensor`);
    if (t instanceof Tensor) {
      const n = t.size;
      const dtype = fileDType(t);
      const size = n * (dtype === 'F32' || dtype === 'I32' ? 4 : 2);
      header[name] = { dtype, shape: [...t.shape], data_offsets: [off, off + size] };
      const same = { F32: 'f32', BF16: 'bf16', F16: 'f16', I32: 'i32' }[dtype] === t.dtype;
      plan.push({
        size,
        bytes: () => {
          if (same) {
            // The stored dtype is the file's: its bytes as they are (bf16 / f16 bit patterns, never re-rounded).
            const d = t.readStoredSync();
            return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
          }
          const d = t.readSync();
          if (dtype === 'F32') return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
          const h = new Uint16Array(n);
          if (dtype === 'BF16') f32ToBf16(d, h);
          else f32ToF16(d, h);
          return new Uint8Array(h.buffer);
        },
      });
      off += size;
    } else {
      const n = numelOf(t.shape);
      if (t.data.length !== n) throw new ShapeError(`saveSafetensors: "${name}" has ${t.data.length} values for shape ${fmtShape(t.shape)}`);
      header[name] = { dtype: 'F64', shape: [...t.shape], data_offsets: [off, off + n * 8] };
      plan.push({ size: n * 8, bytes: () => new Uint8Array(t.data.buffer, t.data.byteOffset, n * 8) });
      off += n * 8;
    }
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8) json += ' ';
  // Checked before any file is created: a header our reader (and the reference crate) would refuse is not written.
  const hlen = Buffer.byteLength(json);
  if (hlen > MAX_HEADER)
    throw new ValueError(
      `saveSafetensors ${path}: the header (names, shapes and metadata of ${entries.length} tensors) would be ${hlen} bytes, over the ${MAX_HEADER}-byte limit of safetensors readers; use fewer tensors or shorter metadata`,
    );
  assertFolderExists(path);
  const hb = Buffer.from(json, 'utf8');
  const tmp = tempPathFor(path);
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw writeError(e, path);
  }
  try {
    const lb = Buffer.alloc(8);
    lb.writeBigUInt64LE(BigInt(hb.length));
    writeSync(fd, lb);
    writeSync(fd, hb);
    for (const p of plan) {
      const b = p.bytes();
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, Math.min(b.length - done, 1 << 30));
    }
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing to clean */
    }
    throw writeError(e, path);
  }
}
