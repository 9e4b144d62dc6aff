/**
 * Writers for the fuzz suite's valid seed files: safetensors (header + data, with the header given as raw JSON text so
 * mutations can produce duplicate keys or invalid JSON), torch.save zips and protocol-2 pickles. Written from scratch
 * here so the fuzzer does not depend on the code under test to make its inputs.
 */
import { deflateRawSync } from 'node:zlib';

// ---------------------------------------------------------------------------------------------------------------
// safetensors

export interface StEntry {
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** Header JSON (as an object, offsets filled in) and data section of a safetensors file with these tensors. */
export function safetensorsParts(tensors: Record<string, StEntry>, metadata?: Record<string, string>): { header: Record<string, unknown>; data: Uint8Array } {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let off = 0;
  for (const [k, t] of Object.entries(tensors)) {
    header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    chunks.push(t.data);
    off += t.data.length;
  }
  return { header, data: Buffer.concat(chunks) };
}

/** 8-byte little-endian header length, header text (padded with spaces to a multiple of 8), data. */
export function safetensorsBytes(headerText: string | Uint8Array, data: Uint8Array, lengthOverride?: bigint): Buffer {
  let h = typeof headerText === 'string' ? Buffer.from(headerText, 'utf8') : Buffer.from(headerText);
  const pad = (8 - (h.length % 8)) % 8;
  if (pad) h = Buffer.concat([h, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

export function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

// ---------------------------------------------------------------------------------------------------------------
// zip (stored or deflated entries)

export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

export interface ZipEntryIn {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
}

/** Byte offsets of interesting fields, so structured mutations can hit them. */
export interface ZipLayout {
  bytes: Buffer;
  /** start of each local header */
  locals: number[];
  /** start of each central directory record */
  centrals: number[];
  eocd: number;
}

export function makeZip(files: ZipEntryIn[]): ZipLayout {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  const locals: number[] = [];
  const centralRel: number[] = [];
  let off = 0;
  let cdLen = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const body = f.deflate ? deflateRawSync(f.data) : Buffer.from(f.data);
    const method = f.deflate ? 8 : 0;
    const crc = crc32(f.data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(0x800, 6);
    lh.writeUInt16LE(method, 8);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(body.length, 18);
    lh.writeUInt32LE(f.data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    locals.push(off);
    parts.push(lh, name, body);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(0x800, 8);
    ch.writeUInt16LE(method, 10);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(body.length, 20);
    ch.writeUInt32LE(f.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(off, 42);
    centralRel.push(cdLen);
    central.push(ch, name);
    cdLen += 46 + name.length;
    off += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(files.length, 8);
  eocd.writeUInt16LE(files.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(off, 16);
  const bytes = Buffer.concat([...parts, cd, eocd]);
  return { bytes, locals, centrals: centralRel.map((r) => off + r), eocd: off + cd.length };
}

// ---------------------------------------------------------------------------------------------------------------
// pickle (protocol 2, the opcodes torch.save emits)

export class Pickler {
  readonly out: number[] = [];
  raw(...bytes: number[]): this {
    for (const b of bytes) this.out.push(b & 0xff);
    return this;
  }
  proto(): this {
    return this.raw(0x80, 2);
  }
  mark(): this {
    return this.raw(0x28);
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    this.raw(0x58, b.length, b.length >> 8, b.length >> 16, b.length >>> 24);
    return this.raw(...b);
  }
  /** Any integer: BININT1 / BININT2 / BININT, else LONG1 (little-endian two's complement). */
  int(n: number | bigint): this {
    const v = BigInt(n);
    if (v >= 0n && v < 256n) return this.raw(0x4b, Number(v));
    if (v >= 0n && v < 65536n) return this.raw(0x4d, Number(v & 0xffn), Number(v >> 8n));
    if (v >= -(2n ** 31n) && v < 2n ** 31n) {
      const b = Buffer.alloc(4);
      b.writeInt32LE(Number(v));
      return this.raw(0x4a, ...b);
    }
    const bytes: number[] = [];
    let x = v;
    for (;;) {
      bytes.push(Number(x & 0xffn));
      x >>= 8n;
      const top = bytes[bytes.length - 1]!;
      if ((x === 0n && !(top & 0x80)) || (x === -1n && top & 0x80)) break;
    }
    return this.raw(0x8a, bytes.length, ...bytes);
  }
  float(x: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(x);
    return this.raw(0x47, ...b);
  }
  bool(v: boolean): this {
    return this.raw(v ? 0x88 : 0x89);
  }
  global(module: string, name: string): this {
    return this.raw(0x63, ...Buffer.from(`${module}\n${name}\n`, 'utf8'));
  }
  ints(v: (number | bigint)[]): this {
    this.mark();
    for (const x of v) this.int(x);
    return this.raw(0x74);
  }
  /** torch._utils._rebuild_tensor_v2(('storage', torch.<cls>, key, 'cpu', numel), offset, size, stride, False, OrderedDict()) */
  tensor(t: TorchTensorSpec): this {
    this.global(t.rebuild?.[0] ?? 'torch._utils', t.rebuild?.[1] ?? '_rebuild_tensor_v2').mark();
    this.mark().str('storage').global('torch', t.cls).str(t.key).str('cpu').int(t.numel).raw(0x74).raw(0x51);
    this.int(t.offset).ints(t.size).ints(t.stride).bool(false);
    this.global('collections', 'OrderedDict').raw(0x29).raw(0x52);
    return this.raw(0x74).raw(0x52);
  }
  bytes(): Buffer {
    return Buffer.from(this.out);
  }
}

export interface TorchTensorSpec {
  cls: string;
  key: string;
  numel: number | bigint;
  offset: number | bigint;
  size: (number | bigint)[];
  stride: (number | bigint)[];
  rebuild?: [string, string];
}

/** {'ema_model_state_dict': {0.9999: {name: tensor}}, 'step': n} or a flat {name: tensor} dict. */
export function statePickle(tensors: [string, TorchTensorSpec][], layout: 'ema' | 'flat' | 'model', step = 7): Buffer {
  const p = new Pickler().proto();
  const dict = () => {
    p.raw(0x7d).mark();
    for (const [name, t] of tensors) p.str(name).tensor(t);
    p.raw(0x75);
  };
  if (layout === 'flat') dict();
  else {
    p.raw(0x7d).mark();
    if (layout === 'ema') {
      p.str('ema_model_state_dict').raw(0x7d).float(0.9999);
      dict();
      p.raw(0x73);
    } else {
      p.str('model_state_dict');
      dict();
    }
    p.str('step').int(step).raw(0x75);
  }
  return p.raw(0x2e).bytes();
}

/** A torch.save archive: archive/data.pkl, archive/data/<key>, archive/version. */
export function torchZip(pkl: Uint8Array, storages: Record<string, Uint8Array>, deflate = false): ZipLayout {
  const files: ZipEntryIn[] = [{ name: 'archive/data.pkl', data: pkl, deflate }];
  for (const [k, v] of Object.entries(storages)) files.push({ name: `archive/data/${k}`, data: v, deflate });
  files.push({ name: 'archive/version', data: Buffer.from('3\n') });
  return makeZip(files);
}
