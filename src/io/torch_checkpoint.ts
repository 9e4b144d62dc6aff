/**
 * PyTorch checkpoints (`torch.save`, the zip format of torch >= 1.6) read without Python.
 *
 * Such a file is a ZIP archive whose entries sit under one folder `<archive>/`:
 *   data.pkl      the pickled object; each tensor in it is a call to torch._utils._rebuild_tensor_v2 on a
 *                 "persistent id" that names a storage
 *   data/<key>    the raw bytes of storage <key> (little-endian unless `byteorder` says otherwise)
 *   version, byteorder   (optional, small text files)
 *
 * Security: a pickle is a program for a stack machine that may import and call any Python callable, so loading an
 * untrusted .pt with torch.load is arbitrary code execution. This reader interprets only the opcodes state dicts
 * use, and GLOBAL resolves only against a fixed allow-list of inert stand-ins (tensor rebuild functions, storage
 * classes, dtypes, OrderedDict) whose "calls" are hand-written here. Nothing from the file is ever run; anything
 * outside the list is refused with the name of the global.
 *
 * Laziness: opening parses the zip directory and the pickle only. Tensors come out of the pickle as `TensorRef`s
 * (dtype, shape, stride, storage); storage bytes are read when a tensor is loaded, each storage once.
 */
import { closeSync, fstatSync, readSync } from 'node:fs';
import { crc32, openRegularFile } from './files.js';
import * as zlib from 'node:zlib';
import { DcvgError, FormatError } from '../errors.js';
import { Tensor, fromHostArray, numelOf } from '../tensor/tensor.js';
import { allocating, bf16ToF32, f16ToF32, fmtBytes } from './safetensors.js';

// ---------------------------------------------------------------------------------------------------------------
// limits: generous for real checkpoints, small enough that a hostile file fails fast instead of exhausting memory

/** data.pkl holds only structure (names, shapes); a real one is a few MB even for billions of parameters. */
const MAX_PICKLE_BYTES = 1 << 30;
/** Central directory size and entry count (a checkpoint has one entry per storage). */
const MAX_CENTRAL_DIR_BYTES = 256 * 1024 * 1024;
const MAX_ZIP_ENTRIES = 4_000_000;
/** Nesting of MARKs: a state dict needs fewer than 10 levels. */
const MAX_MARK_DEPTH = 1000;
/** GLOBAL operands are `module\nname\n`; real ones are short. */
const MAX_GLOBAL_LINE = 1024;
/** LONG4 integers: converting a huge one is quadratic, and no state dict needs more than 64-bit values. */
const MAX_LONG_BYTES = 64;
/** Tensor rank. */
const MAX_RANK = 64;
/** Deflate cannot expand more than ~1032:1, so a larger claimed size is a corrupt or hostile directory. */
const MAX_DEFLATE_RATIO = 1100;
/**
 * Strided views can claim more elements than their storage holds (stride 0, overlapping strides): a 538-byte file with
 * one stride-0 view of shape [2^28] would make us allocate 1 GiB. Real checkpoints store each tensor over a storage at
 * least as large (expand()ed buffers are a rare exception and small), so the elements that the tensors of one file may
 * claim beyond their own storages' sizes are capped in total at 2^24 (64 MiB as float32).
 */
const MAX_EXPANDED_ELEMENTS = 2 ** 24;
/**
 * Likewise many tensors may view one storage, each loaded as a copy of its own. A tied weight is read twice; more
 * than twice the elements of all storages the file's tensors use (plus the expansion allowance) is refused.
 */
const MAX_ALIAS_FACTOR = 2;

// ---------------------------------------------------------------------------------------------------------------
// ZIP (central directory, stored and deflated entries, ZIP64)

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;

interface ZipEntry {
  name: string;
  method: number;
  flags: number;
  crc: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}


function u64(dv: DataView, off: number, what: string): number {
  const v = dv.getBigUint64(off, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`${what} ${v} is out of range`);
  return Number(v);
}

/** Read-only view of a ZIP file: the directory is parsed on open, entries are read on demand. */
class ZipArchive {
  readonly path: string;
  readonly size: number;
  readonly entries = new Map<string, ZipEntry>();
  private fd: number | null;
  /** Entry data must lie before the central directory. */
  private dataLimit = 0;

  private constructor(path: string, fd: number, size: number) {
    this.path = path;
    this.fd = fd;
    this.size = size;
  }

  static open(path: string): ZipArchive {
    let fd: number;
    try {
      fd = openRegularFile(path);
    } catch (e) {
      throw new FormatError((e as Error).message);
    }
    try {
      const zip = new ZipArchive(path, fd, fstatSync(fd).size);
      zip.readDirectory();
      return zip;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  private fail(msg: string): FormatError {
    return new FormatError(`${this.path}: ${msg}`);
  }

  /** `len` bytes at `pos` into a fresh buffer (byteOffset 0, so typed-array views over it are aligned). */
  private readAt(pos: number, len: number): Uint8Array {
    if (this.fd === null) throw this.fail('checkpoint is closed');
    if (pos < 0 || len < 0 || pos + len > this.size)
      throw this.fail(`truncated file: needs bytes ${pos}..${pos + len} but the file has ${this.size}`);
    const out = new Uint8Array(len);
    let got = 0;
    while (got < len) {
      const r = readSync(this.fd, out, got, Math.min(len - got, 1 << 30), pos + got);
      if (r <= 0) throw this.fail(`unexpected end of file at byte ${pos + got}`);
      got += r;
    }
    return out;
  }

  private readDirectory(): void {
    // The end-of-central-directory record is the last 22 bytes plus an optional comment of up to 64 KiB.
    const tailLen = Math.min(this.size, 22 + 0xffff);
    const tailPos = this.size - tailLen;
    const tail = this.readAt(tailPos, tailLen);
    const tv = new DataView(tail.buffer);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === SIG_EOCD && i + 22 + tv.getUint16(i + 20, true) <= tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) {
      // torch.save before 1.6 (or with _use_new_zipfile_serialization=False) wrote a bare pickle stream.
      if (tail.length >= 2 && tailPos === 0 && tail[0] === 0x80 && tail[1]! <= 5)
        throw this.fail('legacy (pre-zip) torch.save format is not supported; re-save it with torch >= 1.6');
      throw this.fail('not a torch.save zip archive (no end-of-central-directory record: truncated or not a zip file)');
    }
    const eocdAbs = tailPos + eocd;
    if (tv.getUint16(eocd + 4, true) !== 0 || tv.getUint16(eocd + 6, true) !== 0) throw this.fail('multi-disk zip archives are not supported');
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOffset = tv.getUint32(eocd + 16, true);
    let cdLimit = eocdAbs;
    // ZIP64: a locator right before the EOCD points at a record with 64-bit counts and offsets.
    if (eocdAbs >= 20) {
      const loc = new DataView(this.readAt(eocdAbs - 20, 20).buffer);
      if (loc.getUint32(0, true) === SIG_ZIP64_LOCATOR) {
        const z64Pos = u64(loc, 8, `${this.path}: ZIP64 end-of-directory offset`);
        if (z64Pos + 56 > eocdAbs - 20) throw this.fail(`corrupt ZIP64 locator (record offset ${z64Pos})`);
        const z = new DataView(this.readAt(z64Pos, 56).buffer);
        if (z.getUint32(0, true) !== SIG_ZIP64_EOCD) throw this.fail(`corrupt zip: no ZIP64 end-of-directory record at byte ${z64Pos}`);
        count = u64(z, 32, `${this.path}: ZIP64 entry count`);
        cdSize = u64(z, 40, `${this.path}: ZIP64 central directory size`);
        cdOffset = u64(z, 48, `${this.path}: ZIP64 central directory offset`);
        cdLimit = z64Pos;
      }
    }
    if (cdOffset + cdSize > cdLimit)
      throw this.fail(`corrupt or truncated zip: central directory (${cdSize} bytes at ${cdOffset}) overruns the end records at ${cdLimit}`);
    if (cdSize > MAX_CENTRAL_DIR_BYTES || count > MAX_ZIP_ENTRIES || count * 46 > cdSize)
      throw this.fail(`corrupt zip: implausible central directory (${count} entries in ${cdSize} bytes)`);
    this.dataLimit = cdOffset;
    const cd = this.readAt(cdOffset, cdSize);
    const dv = new DataView(cd.buffer);
    let p = 0;
    for (let n = 0; n < count; n++) {
      if (p + 46 > cdSize || dv.getUint32(p, true) !== SIG_CENTRAL) throw this.fail(`corrupt zip: bad central directory entry #${n} at byte ${cdOffset + p}`);
      const flags = dv.getUint16(p + 8, true);
      const method = dv.getUint16(p + 10, true);
      const crc = dv.getUint32(p + 16, true);
      let compressedSize = dv.getUint32(p + 20, true);
      let size = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true);
      const extraLen = dv.getUint16(p + 30, true);
      const commentLen = dv.getUint16(p + 32, true);
      let localHeaderOffset = dv.getUint32(p + 42, true);
      const end = p + 46 + nameLen + extraLen + commentLen;
      if (end > cdSize) throw this.fail(`corrupt zip: central directory entry #${n} overruns the directory`);
      const name = Buffer.from(cd.buffer, p + 46, nameLen).toString(flags & 0x800 ? 'utf8' : 'latin1');
      // ZIP64 extra field (id 1): 64-bit values for exactly those fields saturated at 0xffffffff, in this order.
      for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen; ) {
        const id = dv.getUint16(e, true);
        const len = dv.getUint16(e + 2, true);
        if (e + 4 + len > p + 46 + nameLen + extraLen) throw this.fail(`corrupt zip: bad extra field in entry "${name}"`);
        if (id === 1) {
          let q = e + 4;
          const take = (what: string): number => {
            if (q + 8 > e + 4 + len) throw this.fail(`corrupt zip: short ZIP64 extra field in entry "${name}"`);
            const v = u64(dv, q, `${this.path}: ZIP64 ${what} of "${name}"`);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = take('size');
          if (compressedSize === 0xffffffff) compressedSize = take('compressed size');
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take('offset');
        }
        e += 4 + len;
      }
      // Two entries with one name would let different readers see different files; torch never writes that.
      if (this.entries.has(name)) throw this.fail(`corrupt zip: duplicate entry "${name}"`);
      this.entries.set(name, { name, method, flags, crc, compressedSize, size, localHeaderOffset });
      p = end;
    }
  }

  /** The entry's uncompressed bytes, CRC-checked, in a fresh buffer whose byteOffset is a multiple of 8. */
  read(entry: ZipEntry, maxBytes = Number.MAX_SAFE_INTEGER): Uint8Array {
    const what = `zip entry "${entry.name}"`;
    if (entry.flags & 1) throw this.fail(`${what} is encrypted`);
    if (entry.size > maxBytes) throw this.fail(`${what} is implausibly large (${entry.size} bytes)`);
    const lh = new DataView(this.readAt(entry.localHeaderOffset, 30).buffer);
    if (lh.getUint32(0, true) !== SIG_LOCAL) throw this.fail(`corrupt zip: no local header for ${what} at byte ${entry.localHeaderOffset}`);
    // The local header's name/extra lengths may differ from the central copy (torch pads the extra field to align data).
    const start = entry.localHeaderOffset + 30 + lh.getUint16(26, true) + lh.getUint16(28, true);
    if (start + entry.compressedSize > this.dataLimit)
      throw this.fail(`corrupt or truncated zip: ${what} (${entry.compressedSize} bytes at ${start}) overruns the central directory at ${this.dataLimit}`);
    let data: Uint8Array;
    if (entry.method === 0) {
      if (entry.compressedSize !== entry.size) throw this.fail(`corrupt zip: stored ${what} has sizes ${entry.compressedSize} != ${entry.size}`);
      data = this.readAt(start, entry.size);
    } else if (entry.method === 8) {
      if (entry.size > entry.compressedSize * MAX_DEFLATE_RATIO + 1024)
        throw this.fail(`corrupt zip: ${what} claims ${entry.size} bytes from ${entry.compressedSize} compressed`);
      const packed = this.readAt(start, entry.compressedSize);
      let out: Buffer;
      try {
        out = zlib.inflateRawSync(packed, { maxOutputLength: Math.max(1, entry.size) });
      } catch (e) {
        throw this.fail(`corrupt zip: cannot inflate ${what}: ${(e as Error).message}`);
      }
      if (out.length !== entry.size) throw this.fail(`corrupt zip: ${what} inflates to ${out.length} bytes, expected ${entry.size}`);
      data = out.byteOffset % 8 === 0 ? out : Uint8Array.from(out);
    } else {
      throw this.fail(`${what} uses unsupported compression method ${entry.method} (only stored and deflate)`);
    }
    const crc = crc32(data);
    if (crc !== entry.crc) throw this.fail(`corrupt file: CRC mismatch in ${what} (${crc.toString(16)} != ${entry.crc.toString(16)})`);
    return data;
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// pickle VM (a safe subset)

/** What the VM asks of its host for the opcodes that touch the outside world. Each may throw a FormatError. */
interface UnpickleHooks {
  findGlobal(module: string, name: string): unknown;
  reduce(callable: unknown, args: readonly unknown[]): unknown;
  build(obj: unknown, state: unknown): void;
  persistentLoad(pid: unknown): unknown;
}

/** Names of opcodes we do not implement, so the refusal says what the file wanted. */
const UNSUPPORTED_OPCODES: Record<number, string> = {
  0x49: 'INT', 0x4c: 'LONG', 0x53: 'STRING', 0x56: 'UNICODE', 0x46: 'FLOAT', 0x70: 'PUT', 0x67: 'GET', 0x69: 'INST',
  0x6f: 'OBJ', 0x50: 'PERSID', 0x64: 'DICT', 0x6c: 'LIST', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING', 0x81: 'NEWOBJ',
  0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

/** Tuples are frozen arrays: that is how APPEND tells them from lists, and how callers can too. */
function tuple(items: unknown[]): readonly unknown[] {
  return Object.freeze(items);
}

function isTuple(v: unknown): v is readonly unknown[] {
  return Array.isArray(v) && Object.isFrozen(v);
}

function le2c(bytes: Uint8Array): number | bigint {
  // Little-endian two's complement, as LONG1/LONG4 store it.
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  if (bytes.length && bytes[bytes.length - 1]! & 0x80) v -= 1n << BigInt(8 * bytes.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * Runs a pickle. Iterative (no JS recursion however deep the data), linear in the input, and every length is
 * checked against the bytes that remain before anything is allocated.
 */
function unpickle(data: Uint8Array, hooks: UnpickleHooks, what: string): unknown {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const end = data.length;
  let pos = 0;
  let opPos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (msg: string) => new FormatError(`${what} at byte ${opPos}: ${msg}`);
  const need = (n: number | bigint, for_: string): number => {
    if (n < 0 || n > end - pos) throw fail(`${for_} needs ${n} bytes but only ${end - pos} remain (truncated or corrupt pickle)`);
    return Number(n);
  };
  const text = (n: number): string => {
    const s = Buffer.from(data.buffer, data.byteOffset + pos, n).toString('utf8');
    pos += n;
    return s;
  };
  const bytes = (n: number): Uint8Array => {
    const b = data.slice(pos, pos + n);
    pos += n;
    return b;
  };
  // Arguments are evaluated before `stack` is read, which matters when they pop a MARK and so replace `stack`.
  const push = (v: unknown): void => {
    stack.push(v);
  };
  const pop = (): unknown => {
    if (!stack.length) throw fail('stack underflow (corrupt pickle)');
    return stack.pop();
  };
  const top = (): unknown => {
    if (!stack.length) throw fail('stack underflow (corrupt pickle)');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) throw fail('no MARK to pop to (corrupt pickle)');
    stack = prev;
    return items;
  };
  const line = (): string => {
    const limit = Math.min(end, pos + MAX_GLOBAL_LINE);
    let i = pos;
    while (i < limit && data[i] !== 0x0a) i++;
    if (i >= limit) throw fail('GLOBAL operand is not a short newline-terminated name');
    const s = Buffer.from(data.buffer, data.byteOffset + pos, i - pos).toString('utf8');
    pos = i + 1;
    return s;
  };
  const memoGet = (i: number): unknown => {
    if (!memo.has(i)) throw fail(`memo entry ${i} was never stored (corrupt pickle)`);
    return memo.get(i);
  };
  const setItems = (d: unknown, kv: unknown[]): void => {
    if (!(d instanceof Map)) throw fail(`SETITEM on a ${describe(d)}, expected a dict`);
    for (let i = 0; i + 1 < kv.length; i += 2) d.set(kv[i], kv[i + 1]);
  };
  const appendItems = (l: unknown, items: unknown[]): void => {
    if (!Array.isArray(l) || Object.isFrozen(l)) throw fail(`APPEND on a ${describe(l)}, expected a list`);
    for (const v of items) l.push(v);
  };
  // Host hooks throw messages without a position; add it so a refusal says where in data.pkl it happened.
  const host = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      if (e instanceof FormatError) throw new FormatError(`${what} at byte ${opPos}: ${e.message}`);
      throw e;
    }
  };

  for (;;) {
    if (pos >= end) throw new FormatError(`${what}: truncated pickle (ended at byte ${end} without STOP)`);
    opPos = pos;
    const op = data[pos++]!;
    switch (op) {
      case 0x80: {
        // PROTO
        need(1, 'PROTO');
        const v = data[pos++]!;
        if (v > 5) throw fail(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95: // FRAME: only a read-ahead hint for the framed protocol 4; the opcodes follow inline
        need(8, 'FRAME');
        pos += 8;
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || metastack.length) throw fail(`STOP with ${stack.length} values and ${metastack.length} open MARKs (corrupt pickle)`);
        return stack[0];
      case 0x28: // MARK
        if (metastack.length >= MAX_MARK_DEPTH) throw fail(`pickle nests deeper than ${MAX_MARK_DEPTH} levels`);
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        push(tuple([]));
        break;
      case 0x74: // TUPLE
        push(tuple(popMark()));
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const n = op - 0x84;
        if (stack.length < n) throw fail('stack underflow (corrupt pickle)');
        push(tuple(stack.splice(stack.length - n, n)));
        break;
      }
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4a: // BININT
        need(4, 'BININT');
        push(dv.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b: // BININT1
        need(1, 'BININT1');
        push(data[pos++]!);
        break;
      case 0x4d: // BININT2
        need(2, 'BININT2');
        push(dv.getUint16(pos, true));
        pos += 2;
        break;
      case 0x8a: {
        // LONG1
        need(1, 'LONG1');
        const n = need(data[pos++]!, 'LONG1');
        push(le2c(bytes(n)));
        break;
      }
      case 0x8b: {
        // LONG4
        need(4, 'LONG4');
        const n = dv.getInt32(pos, true);
        pos += 4;
        if (n > MAX_LONG_BYTES) throw fail(`LONG4 of ${n} bytes is too large`);
        push(le2c(bytes(need(n, 'LONG4'))));
        break;
      }
      case 0x47: // BINFLOAT (big-endian, unlike everything else)
        need(8, 'BINFLOAT');
        push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        need(4, 'BINUNICODE');
        pos += 4;
        push(text(need(dv.getUint32(pos - 4, true), 'BINUNICODE')));
        break;
      case 0x8c: // SHORT_BINUNICODE
        need(1, 'SHORT_BINUNICODE');
        push(text(need(data[pos++]!, 'SHORT_BINUNICODE')));
        break;
      case 0x8d: // BINUNICODE8
        need(8, 'BINUNICODE8');
        pos += 8;
        push(text(need(dv.getBigUint64(pos - 8, true), 'BINUNICODE8')));
        break;
      case 0x42: // BINBYTES
        need(4, 'BINBYTES');
        pos += 4;
        push(bytes(need(dv.getUint32(pos - 4, true), 'BINBYTES')));
        break;
      case 0x43: // SHORT_BINBYTES
        need(1, 'SHORT_BINBYTES');
        push(bytes(need(data[pos++]!, 'SHORT_BINBYTES')));
        break;
      case 0x8e: // BINBYTES8
        need(8, 'BINBYTES8');
        pos += 8;
        push(bytes(need(dv.getBigUint64(pos - 8, true), 'BINBYTES8')));
        break;
      case 0x71: // BINPUT
        need(1, 'BINPUT');
        memo.set(data[pos++]!, top());
        break;
      case 0x72: // LONG_BINPUT
        need(4, 'LONG_BINPUT');
        memo.set(dv.getUint32(pos, true), top());
        pos += 4;
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        need(1, 'BINGET');
        push(memoGet(data[pos++]!));
        break;
      case 0x6a: // LONG_BINGET
        need(4, 'LONG_BINGET');
        push(memoGet(dv.getUint32(pos, true)));
        pos += 4;
        break;
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark();
        if (kv.length % 2) throw fail(`SETITEMS with an odd number (${kv.length}) of keys and values`);
        setItems(top(), kv);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x63: {
        // GLOBAL
        const module = line();
        const name = line();
        push(host(() => hooks.findGlobal(module, name)));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail('STACK_GLOBAL needs two strings');
        push(host(() => hooks.findGlobal(module, name)));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        if (!isTuple(args)) throw fail(`REDUCE arguments must be a tuple, got a ${describe(args)}`);
        push(host(() => hooks.reduce(fn, args)));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        host(() => hooks.build(obj, state));
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        push(host(() => hooks.persistentLoad(pid)));
        break;
      }
      default: {
        const name = UNSUPPORTED_OPCODES[op];
        throw fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}${name ? ` (${name})` : ''}: only tensor state dicts are supported`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// torch objects

/** Element types a checkpoint storage can hold; all are converted to float32 on load. */
export type TorchDType = 'float64' | 'float32' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

const DTYPE_BYTES: Record<TorchDType, number> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

const STORAGE_CLASSES: Record<string, TorchDType> = {
  DoubleStorage: 'float64',
  FloatStorage: 'float32',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

/**
 * An allow-listed Python global as it appears in the unpickled tree: inert data naming what the file referred to.
 * `kind` says what it may be used for: called by REDUCE, named as a storage type in a persistent id, a dtype value,
 * or a tensor class marker for _rebuild_from_type_v2.
 */
export class PickleGlobal {
  constructor(
    readonly qualname: string,
    readonly kind: 'function' | 'storage' | 'dtype' | 'type',
    /** element type for 'storage' (uint8 for untyped storages) and 'dtype' */
    readonly dtype: TorchDType | null = null,
  ) {}

  toString(): string {
    return this.qualname;
  }
}

const ALLOWED_GLOBALS = new Map<string, PickleGlobal>();
for (const q of [
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor_v3',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch._tensor._rebuild_from_type_v2',
])
  ALLOWED_GLOBALS.set(q, new PickleGlobal(q, 'function'));
for (const [cls, dt] of Object.entries(STORAGE_CLASSES)) ALLOWED_GLOBALS.set(`torch.${cls}`, new PickleGlobal(`torch.${cls}`, 'storage', dt));
for (const q of ['torch.UntypedStorage', 'torch.storage.UntypedStorage']) ALLOWED_GLOBALS.set(q, new PickleGlobal(q, 'storage', 'uint8'));
for (const dt of Object.keys(DTYPE_BYTES) as TorchDType[]) ALLOWED_GLOBALS.set(`torch.${dt}`, new PickleGlobal(`torch.${dt}`, 'dtype', dt));
for (const q of ['torch.Tensor', 'torch.nn.parameter.Parameter']) ALLOWED_GLOBALS.set(q, new PickleGlobal(q, 'type'));

/** One storage of the archive as the pickle declares it. */
export interface StorageRef {
  readonly key: string;
  readonly dtype: TorchDType;
  /** elements of `dtype` */
  readonly numel: number;
  /** where it lived when saved ('cpu', 'cuda:0', ...); informational */
  readonly location: string;
}

/**
 * A tensor of the checkpoint, not yet read: a strided view (shape, stride, storageOffset, in elements) of a storage.
 * `load()` reads and converts it.
 */
export class TensorRef {
  /** set when the tensor was saved as an nn.Parameter */
  isParameter = false;

  constructor(
    private readonly owner: TorchCheckpoint,
    readonly storageRef: StorageRef,
    readonly storageOffset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
    readonly requiresGrad: boolean,
  ) {}

  get dtype(): TorchDType {
    return this.storageRef.dtype;
  }

  get numel(): number {
    return numelOf(this.shape);
  }

  /** Size of the tensor's elements in the file's dtype. */
  get nbytes(): number {
    return this.numel * DTYPE_BYTES[this.storageRef.dtype];
  }

  /** Reads the tensor as a dense float32 Tensor of its own (never aliasing another loaded tensor); `name` is for errors. */
  load(name?: string): Tensor {
    return this.owner.tensor(this, name);
  }
}

/** Short type name of an unpickled value, for error messages. */
function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v === undefined) return 'nothing';
  if (v instanceof Map) return 'dict';
  if (Array.isArray(v)) return Object.isFrozen(v) ? 'tuple' : 'list';
  if (v instanceof TensorRef) return 'tensor';
  if (v instanceof PickleGlobal) return v.qualname;
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'string') return 'str';
  if (typeof v === 'number' || typeof v === 'bigint') return 'number';
  if (typeof v === 'boolean') return 'bool';
  return typeof v;
}

function isSafeIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function intTuple(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || v.length > MAX_RANK || !v.every(isSafeIndex))
    throw new FormatError(`tensor ${what} must be a tuple of at most ${MAX_RANK} non-negative integers, got ${describe(v)}`);
  return [...(v as number[])];
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) return false;
    expect *= shape[i]!;
  }
  return true;
}

type Decoded = Float32Array | Uint16Array | Int32Array;

/** Copies a strided view of `src` into a dense row-major array of the same kind. */
function gather<A extends Decoded>(src: A, offset: number, shape: readonly number[], stride: readonly number[]): A {
  const n = numelOf(shape);
  const make = (k: number) => new (src.constructor as new (k: number) => A)(k);
  if (n === 0) return make(0);
  if (isContiguous(shape, stride)) return src.slice(offset, offset + n) as A;
  const nd = shape.length;
  const inner = shape[nd - 1]!;
  const innerStride = stride[nd - 1]!;
  const out = make(n);
  const idx = new Array<number>(nd).fill(0);
  let base = offset;
  let o = 0;
  for (;;) {
    for (let i = 0, p = base; i < inner; i++, p += innerStride) out[o++] = src[p]!;
    // Odometer over the outer dimensions.
    let d = nd - 2;
    for (; d >= 0; d--) {
      base += stride[d]!;
      if (++idx[d]! < shape[d]!) break;
      base -= stride[d]! * shape[d]!;
      idx[d] = 0;
    }
    if (d < 0) return out;
  }
}

/**
 * Raw storage bytes (aligned, owned) to float32; with `keep`, bfloat16 / float16 stay 16-bit patterns (Uint16Array)
 * and int32 stays Int32Array, all without a copy.
 */
function decodeStorage(raw: Uint8Array, dtype: TorchDType, numel: number, bigEndian: boolean, keep = false): Decoded {
  const size = DTYPE_BYTES[dtype];
  if (bigEndian && size > 1) {
    for (let i = 0; i < numel * size; i += size) raw.subarray(i, i + size).reverse();
  }
  const buf = raw.buffer;
  const at = raw.byteOffset;
  if (keep && (dtype === 'bfloat16' || dtype === 'float16')) return new Uint16Array(buf, at, numel);
  if (keep && dtype === 'int32') return new Int32Array(buf, at, numel);
  switch (dtype) {
    case 'float32':
      // The buffer is ours alone, so the float32 data needs no copy.
      return new Float32Array(buf, at, numel);
    case 'float64':
      return Float32Array.from(new Float64Array(buf, at, numel));
    case 'bfloat16': {
      const out = new Float32Array(numel);
      bf16ToF32(new Uint16Array(buf, at, numel), out);
      return out;
    }
    case 'float16': {
      const out = new Float32Array(numel);
      f16ToF32(new Uint16Array(buf, at, numel), out);
      return out;
    }
    case 'int64': {
      const v = new BigInt64Array(buf, at, numel);
      const out = new Float32Array(numel);
      for (let i = 0; i < numel; i++) out[i] = Number(v[i]!);
      return out;
    }
    case 'int32':
      return Float32Array.from(new Int32Array(buf, at, numel));
    case 'int16':
      return Float32Array.from(new Int16Array(buf, at, numel));
    case 'int8':
      return Float32Array.from(new Int8Array(buf, at, numel));
    case 'uint8':
    case 'bool':
      return Float32Array.from(raw.subarray(0, numel));
  }
}

/** A path of keys from the root, as a linked list: sharing the parent keeps a deep pickle linear, not quadratic. */
interface KeyPath {
  key: string;
  parent: KeyPath | null;
}

function keyPathName(p: KeyPath | null): string {
  const keys: string[] = [];
  for (; p; p = p.parent) keys.unshift(`"${p.key}"`);
  return keys.join(' > ');
}

/**
 * Every tensor reachable from the unpickled root, with the keys (or list indices) that lead to it. Iterative, and each
 * dict or list is walked once however often the pickle's memo shares it.
 */
function reachableTensors(root: unknown): { path: KeyPath | null; ref: TensorRef }[] {
  const out: { path: KeyPath | null; ref: TensorRef }[] = [];
  const seen = new Set<object>();
  const todo: { v: unknown; path: KeyPath | null }[] = [{ v: root, path: null }];
  while (todo.length) {
    const { v, path } = todo.pop()!;
    if (v instanceof TensorRef) {
      out.push({ path, ref: v });
      continue;
    }
    if (!(v instanceof Map) && !Array.isArray(v)) continue;
    if (seen.has(v)) continue;
    seen.add(v);
    const items: [unknown, unknown][] = v instanceof Map ? [...v] : v.map((x, i) => [i, x]);
    // Pushed in reverse so they are visited in file order (the first offender named is the first in the file).
    for (let i = items.length - 1; i >= 0; i--) todo.push({ v: items[i]![1], path: { key: String(items[i]![0]), parent: path } });
  }
  return out;
}

/**
 * Refuses a checkpoint whose tensors would materialise far more elements than its storages hold (see
 * MAX_EXPANDED_ELEMENTS and MAX_ALIAS_FACTOR), before any storage is read. Names the tensor where the limit is crossed.
 */
function checkMaterialisedSize(path: string, root: unknown): void {
  let expanded = 0;
  let stored = 0;
  let materialised = 0;
  const storages = new Set<StorageRef>();
  for (const { path: keys, ref } of reachableTensors(root)) {
    const what = () =>
      `tensor ${keyPathName(keys)} (${ref.dtype}[${ref.shape.join(', ')}] stride [${ref.stride.join(', ')}] over storage "${ref.storageRef.key}" of ${ref.storageRef.numel} elements)`;
    if (!storages.has(ref.storageRef)) {
      storages.add(ref.storageRef);
      stored += ref.storageRef.numel;
    }
    materialised += ref.numel;
    expanded += Math.max(0, ref.numel - ref.storageRef.numel);
    if (expanded > MAX_EXPANDED_ELEMENTS)
      throw new FormatError(
        `${path}: ${what()} claims ${ref.numel} elements, more than its storage holds; ` +
          `the file's views would expand beyond their storages by over ${MAX_EXPANDED_ELEMENTS} elements (corrupt or hostile checkpoint)`,
      );
    if (materialised > MAX_ALIAS_FACTOR * stored + MAX_EXPANDED_ELEMENTS)
      throw new FormatError(
        `${path}: ${what()} views a storage that other tensors already use: the file's tensors would load ` +
          `${materialised} elements from storages of ${stored} (corrupt or hostile checkpoint)`,
      );
  }
}

interface StorageSlot {
  ref: StorageRef;
  entry: ZipEntry;
  /** tensors over this storage not loaded yet: the decoded data is kept only while some remain */
  pending: Set<TensorRef>;
  decoded: Decoded | null;
}

/** Counters that show the laziness: what has been read from disk so far. */
export interface TorchCheckpointStats {
  storagesRead: number;
  bytesRead: number;
}

/** An open torch.save checkpoint. `root` is the unpickled object: dicts are Maps, tuples frozen arrays, tensors TensorRefs. */
export class TorchCheckpoint {
  readonly path: string;
  readonly root: unknown;
  /** the folder the archive's entries live in (the file stem for torch < 2, 'archive' after) */
  readonly archiveName: string;
  /** contents of `<archive>/version`, when present */
  readonly formatVersion: string | null;
  readonly bigEndian: boolean;
  readonly stats: TorchCheckpointStats = { storagesRead: 0, bytesRead: 0 };
  /**
   * true (default): bfloat16 / float16 / int32 tensors keep their dtype in memory (bf16, f16, i32 tensors: no
   * widening); false: every tensor is read as float32. Set before reading tensors.
   */
  keepDType = true;
  private readonly zip: ZipArchive;
  private readonly slots = new Map<string, StorageSlot>();
  /** untyped storages reinterpreted by _rebuild_tensor_v3, one StorageRef per (key, dtype) */
  private readonly typedViews = new Map<string, StorageRef>();
  private readonly slotOf = new Map<StorageRef, StorageSlot>();

  private constructor(path: string, zip: ZipArchive) {
    this.path = path;
    this.zip = zip;
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length !== 1)
      throw new FormatError(
        `${path}: not a torch.save checkpoint (${pkls.length ? 'several' : 'no'} <archive>/data.pkl entries; ${zip.entries.size} entries in the zip)`,
      );
    this.archiveName = pkls[0]!.slice(0, -'/data.pkl'.length);
    const prefix = `${this.archiveName}/`;
    if (zip.entries.has(`${prefix}constants.pkl`))
      throw new FormatError(`${path}: this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint`);
    const small = (name: string): string | null => {
      const e = zip.entries.get(prefix + name);
      return e ? Buffer.from(zip.read(e, 4096)).toString('utf8').trim() : null;
    };
    this.formatVersion = small('version');
    const order = small('byteorder');
    if (order !== null && order !== 'little' && order !== 'big') throw new FormatError(`${path}: unknown byteorder "${order}"`);
    this.bigEndian = order === 'big';
    const pkl = zip.read(zip.entries.get(pkls[0]!)!, MAX_PICKLE_BYTES);
    this.root = unpickle(pkl, this.hooks(prefix), `${path}: ${pkls[0]}`);
    checkMaterialisedSize(path, this.root);
  }

  /** Opens a checkpoint: parses the zip directory and data.pkl, reads no tensor data. Throws FormatError. */
  static open(path: string): TorchCheckpoint {
    const zip = ZipArchive.open(path);
    try {
      return new TorchCheckpoint(path, zip);
    } catch (e) {
      zip.close();
      if (e instanceof DcvgError) throw e;
      // Anything else (an allocation failure, an I/O error) still deserves the file's name and our error type.
      throw new FormatError(`${path}: cannot read checkpoint: ${(e as Error).message}`);
    }
  }

  private hooks(prefix: string): UnpickleHooks {
    return {
      findGlobal: (module, name) => {
        const g = ALLOWED_GLOBALS.get(`${module}.${name}`);
        if (!g) {
          // A torch storage or dtype outside the list is a tensor we cannot convert (complex, float8, ...), not an attack.
          if (module === 'torch' && /^\w+(Storage|\d+)$/.test(name))
            throw new FormatError(`refusing to load ${module}.${name}: unsupported tensor element type (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
          throw new FormatError(`refusing to load ${module}.${name}: only tensor state dicts are supported`);
        }
        return g;
      },
      reduce: (fn, args) => this.call(fn, args),
      build: (obj, state) => {
        // OrderedDict state is its __dict__ (the `_metadata` of module versions); tensor state is Python attributes.
        // Neither affects the weights, so both are dropped.
        if (obj instanceof Map || obj instanceof TensorRef) return;
        throw new FormatError(`cannot BUILD a ${describe(obj)} with ${describe(state)} state: only tensor state dicts are supported`);
      },
      persistentLoad: (pid) => this.storageFor(pid, prefix),
    };
  }

  /** persistent id ('storage', storage_type, key, location, numel) -> the storage, checked against the zip. */
  private storageFor(pid: unknown, prefix: string): StorageRef {
    if (!isTuple(pid) || pid.length !== 5 || pid[0] !== 'storage')
      throw new FormatError(`unsupported persistent id (a ${describe(pid)}); expected ('storage', type, key, location, numel)`);
    const [, type, key, location, numel] = pid;
    if (!(type instanceof PickleGlobal) || type.kind !== 'storage' || !type.dtype)
      throw new FormatError(`persistent id names ${describe(type)} where a storage class was expected`);
    if (typeof key !== 'string' || typeof location !== 'string' || !isSafeIndex(numel))
      throw new FormatError(`malformed storage persistent id (key ${describe(key)}, location ${describe(location)}, numel ${String(numel)})`);
    const known = this.slots.get(key);
    if (known) {
      if (known.ref.dtype !== type.dtype || known.ref.numel !== numel)
        throw new FormatError(`storage "${key}" is declared twice with different types (${known.ref.dtype}[${known.ref.numel}] and ${type.dtype}[${numel}])`);
      return known.ref;
    }
    const entry = this.zip.entries.get(`${prefix}data/${key}`);
    if (!entry) throw new FormatError(`storage "${key}" is missing from the archive (no entry ${prefix}data/${key})`);
    const nbytes = numel * DTYPE_BYTES[type.dtype];
    if (entry.size < nbytes)
      throw new FormatError(`storage "${key}" has ${entry.size} bytes but ${numel} ${type.dtype} elements need ${nbytes} (truncated or corrupt)`);
    const ref: StorageRef = Object.freeze({ key, dtype: type.dtype, numel, location });
    const slot: StorageSlot = { ref, entry, pending: new Set(), decoded: null };
    this.slots.set(key, slot);
    this.slotOf.set(ref, slot);
    return ref;
  }

  /** The "calls" REDUCE may make: each is a hand-written stand-in for an allow-listed function. */
  private call(fn: unknown, args: readonly unknown[]): unknown {
    if (!(fn instanceof PickleGlobal) || fn.kind !== 'function')
      throw new FormatError(`refusing to call ${describe(fn)}: only tensor state dicts are supported`);
    const want = (lo: number, hi: number) => {
      if (args.length < lo || args.length > hi) throw new FormatError(`${fn.qualname} called with ${args.length} arguments`);
    };
    switch (fn.qualname) {
      case 'collections.OrderedDict': {
        // OrderedDict() then SETITEMS, or OrderedDict([[k, v], ...]) from older picklers.
        want(0, 1);
        const d = new Map<unknown, unknown>();
        if (args.length) {
          const items = args[0];
          if (!Array.isArray(items)) throw new FormatError(`OrderedDict called with a ${describe(items)}`);
          for (const kv of items) {
            if (!Array.isArray(kv) || kv.length !== 2) throw new FormatError('OrderedDict item is not a key-value pair');
            d.set(kv[0], kv[1]);
          }
        }
        return d;
      }
      case 'torch._utils._rebuild_tensor':
        // (storage, storage_offset, size, stride)
        want(4, 4);
        return this.tensorRef(args[0], args[1], args[2], args[3], false, null);
      case 'torch._utils._rebuild_tensor_v2':
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        want(6, 7);
        return this.tensorRef(args[0], args[1], args[2], args[3], args[4], null);
      case 'torch._utils._rebuild_tensor_v3':
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata]): untyped storage
        want(7, 8);
        return this.tensorRef(args[0], args[1], args[2], args[3], args[4], args[6]);
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state': {
        // (data, requires_grad, backward_hooks[, state])
        want(3, 4);
        const t = args[0];
        if (!(t instanceof TensorRef)) throw new FormatError(`${fn.qualname} wraps a ${describe(t)}, expected a tensor`);
        t.isParameter = true;
        return t;
      }
      case 'torch._tensor._rebuild_from_type_v2': {
        // (func, new_type, args, state): how torch >= 2 pickles tensors that carry Python attributes.
        want(4, 4);
        const [inner, type, innerArgs] = args;
        if (!(type instanceof PickleGlobal) || type.kind !== 'type') throw new FormatError(`refusing to rebuild a tensor as ${describe(type)}`);
        if (!isTuple(innerArgs)) throw new FormatError(`${fn.qualname} arguments must be a tuple`);
        const t = this.call(inner, innerArgs);
        if (!(t instanceof TensorRef)) throw new FormatError(`${fn.qualname} did not produce a tensor`);
        return t;
      }
    }
    throw new FormatError(`refusing to call ${fn.qualname}: only tensor state dicts are supported`);
  }

  private tensorRef(storage: unknown, offset: unknown, size: unknown, stride: unknown, requiresGrad: unknown, dtype: unknown): TensorRef {
    let st = this.slotOf.has(storage as StorageRef) ? (storage as StorageRef) : null;
    if (!st) throw new FormatError(`tensor rebuilt from a ${describe(storage)}, expected a storage`);
    if (dtype !== null) {
      if (!(dtype instanceof PickleGlobal) || dtype.kind !== 'dtype' || !dtype.dtype) throw new FormatError(`tensor dtype is ${describe(dtype)}`);
      st = this.reinterpret(st, dtype.dtype);
    }
    if (!isSafeIndex(offset)) throw new FormatError(`tensor storage offset ${String(offset)} is not a non-negative integer`);
    const shape = intTuple(size, 'size');
    const strides = intTuple(stride, 'stride');
    if (strides.length !== shape.length) throw new FormatError(`tensor size [${shape}] and stride [${strides}] differ in rank`);
    const numel = numelOf(shape);
    if (!Number.isSafeInteger(numel)) throw new FormatError(`tensor size [${shape}] is too large`);
    if (numel > 0) {
      let last = offset;
      for (let i = 0; i < shape.length; i++) last += (shape[i]! - 1) * strides[i]!;
      if (!(last < st.numel))
        throw new FormatError(`tensor view (offset ${offset}, size [${shape}], stride [${strides}]) reaches element ${last} of storage "${st.key}", which has ${st.numel}`);
    }
    const ref = new TensorRef(this, st, offset, Object.freeze(shape), Object.freeze(strides), requiresGrad === true);
    this.slotOf.get(st)!.pending.add(ref);
    return ref;
  }

  /** _rebuild_tensor_v3 views an untyped (byte) storage as `dtype`. */
  private reinterpret(st: StorageRef, dtype: TorchDType): StorageRef {
    if (st.dtype === dtype) return st;
    if (st.dtype !== 'uint8') throw new FormatError(`storage "${st.key}" is ${st.dtype}, cannot view it as ${dtype}`);
    const id = `${st.key}\0${dtype}`;
    let view = this.typedViews.get(id);
    if (!view) {
      view = Object.freeze({ key: st.key, dtype, numel: Math.floor(st.numel / DTYPE_BYTES[dtype]), location: st.location });
      const base = this.slotOf.get(st)!;
      this.typedViews.set(id, view);
      this.slotOf.set(view, { ref: view, entry: base.entry, pending: new Set(), decoded: null });
    }
    return view;
  }

  /**
   * Reads a tensor as a dense float32 Tensor. Its storage is read from disk once: when other tensors share it the
   * decoded data is kept until the last of them is loaded; each tensor still gets memory of its own.
   */
  tensor(ref: TensorRef, name?: string): Tensor {
    const slot = this.slotOf.get(ref.storageRef);
    // StorageRefs are created per checkpoint, so this also rejects a TensorRef from another file.
    if (!slot) throw new FormatError(`${this.path}: tensor does not belong to this checkpoint`);
    return allocating(
      () => this.materialise(ref, slot),
      () =>
        `${this.path}: tensor ${name === undefined ? `over storage "${ref.storageRef.key}"` : `"${name}"`} ${ref.dtype}[${ref.shape.join(', ')}] ` +
        `(${fmtBytes(ref.numel * 4)} as float32, storage "${slot.ref.key}" ${fmtBytes(slot.entry.size)})`,
    );
  }

  private materialise(ref: TensorRef, slot: StorageSlot): Tensor {
    let decoded = slot.decoded;
    if (!decoded) {
      const raw = this.zip.read(slot.entry);
      this.stats.storagesRead++;
      this.stats.bytesRead += raw.length;
      decoded = decodeStorage(raw, slot.ref.dtype, slot.ref.numel, this.bigEndian, this.keepDType);
    }
    slot.pending.delete(ref);
    const last = slot.pending.size === 0;
    slot.decoded = last ? null : decoded;
    // The sole remaining user of a storage that it covers exactly can take the decoded buffer itself.
    const whole = ref.storageOffset === 0 && ref.numel === decoded.length && isContiguous(ref.shape, ref.stride);
    const data = last && whole ? decoded : gather(decoded, ref.storageOffset, ref.shape, ref.stride);
    const dt = slot.ref.dtype;
    const kind = data instanceof Float32Array ? 'f32' : data instanceof Int32Array ? 'i32' : dt === 'float16' ? 'f16' : 'bf16';
    return fromHostArray(data, ref.shape, kind);
  }

  /** Every storage the pickle declares (read or not). */
  storages(): StorageRef[] {
    return [...this.slots.values()].map((s) => s.ref);
  }

  close(): void {
    for (const s of this.slotOf.values()) s.decoded = null;
    this.zip.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// state dict selection (the DC-AE-V official checkpoint layout)

export interface StateDictSelection {
  /** which object was used, e.g. "ema_model_state_dict[0.9999]", "model_state_dict", "top-level" */
  source: string;
  tensors: Map<string, TensorRef>;
  /** primitive top-level entries (e.g. step) */
  extra: Record<string, unknown>;
  /** keys of the chosen state dict whose value is not a tensor (ignored) */
  skipped: string[];
  topLevelKeys: string[];
}

function isPrimitive(v: unknown): boolean {
  return v === null || ['number', 'bigint', 'string', 'boolean'].includes(typeof v);
}

/**
 * The official rule: `ema_model_state_dict` (keyed by EMA decay; its first value), else `model_state_dict`, else the
 * top-level dict itself when every value is a tensor. `prefer: 'model'` tries `model_state_dict` first.
 */
export function selectStateDict(root: unknown, opts: { prefer?: 'ema' | 'model' } = {}, path = 'checkpoint'): StateDictSelection {
  if (!(root instanceof Map)) throw new FormatError(`${path}: top-level object is a ${describe(root)}, expected a dict`);
  const topLevelKeys = [...root.keys()].map(String);
  const candidates = opts.prefer === 'model' ? ['model_state_dict', 'ema_model_state_dict'] : ['ema_model_state_dict', 'model_state_dict'];
  let chosen: { source: string; dict: Map<unknown, unknown> } | null = null;
  for (const name of candidates) {
    if (!root.has(name)) continue;
    const v = root.get(name);
    if (!(v instanceof Map)) throw new FormatError(`${path}: ${name} is a ${describe(v)}, expected a dict`);
    if (v.size === 0) continue;
    const [firstKey, firstVal] = v.entries().next().value as [unknown, unknown];
    if (name === 'ema_model_state_dict' && firstVal instanceof Map) chosen = { source: `${name}[${String(firstKey)}]`, dict: firstVal };
    else chosen = { source: name, dict: v };
    break;
  }
  const extra: Record<string, unknown> = {};
  if (!chosen) {
    if (root.size > 0 && [...root.values()].every((v) => v instanceof TensorRef)) chosen = { source: 'top-level', dict: root };
    else
      throw new FormatError(
        `${path}: no state dict found (expected ema_model_state_dict, model_state_dict or a flat dict of tensors); top-level keys: ${topLevelKeys.join(', ') || 'none'}`,
      );
  } else {
    for (const [k, v] of root) if (isPrimitive(v)) extra[String(k)] = v;
  }
  const tensors = new Map<string, TensorRef>();
  const skipped: string[] = [];
  for (const [k, v] of chosen.dict) {
    if (v instanceof TensorRef) tensors.set(String(k), v);
    else skipped.push(String(k));
  }
  return { source: chosen.source, tensors, extra, skipped, topLevelKeys };
}

export interface TorchReadOptions {
  /** which state dict (see selectStateDict) */
  prefer?: 'ema' | 'model';
  /** 'keep' (default): bfloat16 / float16 / int32 tensors stay bf16 / f16 / i32; 'f32': every tensor widened */
  dtype?: 'keep' | 'f32';
}

export interface TorchStateDict {
  stateDict: Map<string, Tensor>;
  source: string;
  extra: Record<string, unknown>;
  /** non-tensor entries of the chosen state dict (not loaded) */
  skipped: string[];
}

/** Loads the model weights of a torch.save checkpoint (see selectStateDict for which dict; dtypes per opts.dtype). */
export function loadTorchStateDict(path: string, opts: TorchReadOptions = {}): TorchStateDict {
  const ckpt = TorchCheckpoint.open(path);
  ckpt.keepDType = (opts.dtype ?? 'keep') === 'keep';
  try {
    const sel = selectStateDict(ckpt.root, opts, path);
    const stateDict = new Map<string, Tensor>();
    for (const [k, ref] of sel.tensors) stateDict.set(k, ckpt.tensor(ref, k));
    return { stateDict, source: sel.source, extra: sel.extra, skipped: sel.skipped };
  } finally {
    ckpt.close();
  }
}

/**
 * A state dict opened lazily: keys and shapes come from the pickle alone, and a tensor's storage is read only when
 * `get` asks for it, so a loader can compare keys and shapes with its model before reading any tensor data.
 */
export interface LazyTorchStateDict {
  path: string;
  source: string;
  extra: Record<string, unknown>;
  skipped: string[];
  keys(): string[];
  shape(key: string): readonly number[];
  /** the storage dtype of a tensor, without reading it */
  dtype(key: string): TorchDType;
  get(key: string): Tensor;
  close(): void;
}

export function openTorchStateDict(path: string, opts: TorchReadOptions = {}): LazyTorchStateDict {
  const ckpt = TorchCheckpoint.open(path);
  ckpt.keepDType = (opts.dtype ?? 'keep') === 'keep';
  try {
    const sel = selectStateDict(ckpt.root, opts, path);
    const ref = (k: string): TensorRef => {
      const r = sel.tensors.get(k);
      if (!r) throw new FormatError(`${path}: no tensor named "${k}" in ${sel.source}`);
      return r;
    };
    return {
      path,
      source: sel.source,
      extra: sel.extra,
      skipped: sel.skipped,
      keys: () => [...sel.tensors.keys()],
      shape: (k) => ref(k).shape,
      dtype: (k) => ref(k).storageRef.dtype,
      get: (k) => ckpt.tensor(ref(k), k),
      close: () => ckpt.close(),
    };
  } catch (e) {
    ckpt.close();
    throw e;
  }
}

export interface TorchTensorInfo {
  name: string;
  dtype: TorchDType;
  shape: number[];
  nbytes: number;
}

export interface TorchCheckpointInfo {
  path: string;
  source: string;
  tensors: TorchTensorInfo[];
  extra: Record<string, unknown>;
  skipped: string[];
  topLevelKeys: string[];
  formatVersion: string | null;
  /** distinct storages in the archive, and their total size in bytes */
  storageCount: number;
  storageBytes: number;
}

/** Names, dtypes and shapes of the state dict's tensors, without reading any tensor data. */
export function readTorchCheckpointInfo(path: string, opts: { prefer?: 'ema' | 'model' } = {}): TorchCheckpointInfo {
  const ckpt = TorchCheckpoint.open(path);
  try {
    const sel = selectStateDict(ckpt.root, opts, path);
    const storages = ckpt.storages();
    return {
      path,
      source: sel.source,
      tensors: [...sel.tensors].map(([name, r]) => ({ name, dtype: r.dtype, shape: [...r.shape], nbytes: r.nbytes })),
      extra: sel.extra,
      skipped: sel.skipped,
      topLevelKeys: sel.topLevelKeys,
      formatVersion: ckpt.formatVersion,
      storageCount: storages.length,
      storageBytes: storages.reduce((a, s) => a + s.numel * DTYPE_BYTES[s.dtype], 0),
    };
  } finally {
    ckpt.close();
  }
}
