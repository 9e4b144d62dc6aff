/**
 * Writers for synthetic torch.save checkpoints (a tiny zip writer and a pickle assembler), shared by the checkpoint
 * reader's tests, the bad-file tests and the fuzz suite. Written from scratch, so no test depends on the code under
 * test to make its inputs.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';

export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

export interface ZipFile {
  name: string;
  data: Uint8Array;
  /** this entry deflated (default: the writer's `deflate` option) */
  deflate?: boolean;
}

/** A zip's bytes and the offsets of its records, so structured mutations (the fuzz suite) can hit their fields. */
export interface ZipLayout {
  bytes: Buffer;
  /** start of each local header */
  locals: number[];
  /** start of each central directory record */
  centrals: number[];
  /** start of the end-of-central-directory record */
  eocd: number;
}

/** A minimal zip writer: stored (or deflated) entries, optionally with ZIP64 records as torch writes for big files. */
export function zipLayout(files: ZipFile[], opts: { deflate?: boolean; zip64?: boolean } = {}): ZipLayout {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  const locals: number[] = [];
  const centralRel: number[] = [];
  let off = 0;
  let cdLen = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const deflate = f.deflate ?? opts.deflate ?? false;
    const body = deflate ? deflateRawSync(f.data) : Buffer.from(f.data);
    const method = deflate ? 8 : 0;
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
    const extra = Buffer.alloc(opts.zip64 ? 28 : 0);
    if (opts.zip64) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(f.data.length), 4);
      extra.writeBigUInt64LE(BigInt(body.length), 12);
      extra.writeBigUInt64LE(BigInt(off), 20);
    }
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(45, 4);
    ch.writeUInt16LE(45, 6);
    ch.writeUInt16LE(0x800, 8);
    ch.writeUInt16LE(method, 10);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(opts.zip64 ? 0xffffffff : body.length, 20);
    ch.writeUInt32LE(opts.zip64 ? 0xffffffff : f.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt16LE(extra.length, 30);
    ch.writeUInt32LE(opts.zip64 ? 0xffffffff : off, 42);
    centralRel.push(cdLen);
    central.push(ch, name, extra);
    cdLen += 46 + name.length + extra.length;
    off += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(central);
  parts.push(cd);
  let eocdAt = off + cd.length;
  if (opts.zip64) {
    const z = Buffer.alloc(56);
    z.writeUInt32LE(0x06064b50, 0);
    z.writeBigUInt64LE(44n, 4);
    z.writeUInt16LE(45, 12);
    z.writeUInt16LE(45, 14);
    z.writeBigUInt64LE(BigInt(files.length), 24);
    z.writeBigUInt64LE(BigInt(files.length), 32);
    z.writeBigUInt64LE(BigInt(cd.length), 40);
    z.writeBigUInt64LE(BigInt(off), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(off + cd.length), 8);
    loc.writeUInt32LE(1, 16);
    parts.push(z, loc);
    eocdAt += 76;
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : files.length, 8);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : files.length, 10);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cd.length, 12);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : off, 16);
  parts.push(eocd);
  return { bytes: Buffer.concat(parts), locals, centrals: centralRel.map((r) => off + r), eocd: eocdAt };
}

export function makeZip(files: ZipFile[], opts: { deflate?: boolean; zip64?: boolean } = {}): Buffer {
  return zipLayout(files, opts).bytes;
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

/** Assembles protocol-2 pickles opcode by opcode, the way torch.save emits them. */
export class Pickler {
  private readonly out: number[] = [];
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
  tuple(): this {
    return this.raw(0x74);
  }
  emptyTuple(): this {
    return this.raw(0x29);
  }
  emptyDict(): this {
    return this.raw(0x7d);
  }
  setitem(): this {
    return this.raw(0x73);
  }
  setitems(): this {
    return this.raw(0x75);
  }
  reduce(): this {
    return this.raw(0x52);
  }
  stop(): this {
    return this.raw(0x2e);
  }
  bool(v: boolean): this {
    return this.raw(v ? 0x88 : 0x89);
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    this.raw(0x58, b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24);
    return this.raw(...b);
  }
  /** Any integer: BININT1 / BININT2 / BININT, else LONG1 (little-endian two's complement), as pickle writes them. */
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
  global(module: string, name: string): this {
    return this.raw(0x63, ...Buffer.from(`${module}\n${name}\n`, 'utf8'));
  }
  binput(i: number): this {
    return this.raw(0x71, i);
  }
  binget(i: number): this {
    return this.raw(0x68, i);
  }
  ints(v: (number | bigint)[]): this {
    this.mark();
    for (const x of v) this.int(x);
    return this.tuple();
  }
  /** torch._utils._rebuild_tensor_v2(('storage', torch.<cls>, key, 'cpu', numel), offset, size, stride, False, OrderedDict()) */
  tensor(cls: string, key: string, numel: number | bigint, offset: number | bigint, size: (number | bigint)[], stride: (number | bigint)[]): this {
    return this.tensorSpec({ cls, key, numel, offset, size, stride });
  }
  /** The same from a spec, whose `rebuild` may name another (hostile) rebuild function. */
  tensorSpec(t: TorchTensorSpec): this {
    this.global(t.rebuild?.[0] ?? 'torch._utils', t.rebuild?.[1] ?? '_rebuild_tensor_v2').mark();
    this.mark().str('storage').global('torch', t.cls).str(t.key).str('cpu').int(t.numel).tuple().raw(0x51);
    this.int(t.offset).ints(t.size).ints(t.stride).bool(false);
    this.global('collections', 'OrderedDict').emptyTuple().reduce();
    return this.tuple().reduce();
  }
  bytes(): Buffer {
    return Buffer.from(this.out);
  }
}

/** Writes `<dir>/<file>` as a torch.save archive: data.pkl, storages under data/, version (and byteorder). */
export function writeCheckpoint(
  dir: string,
  file: string,
  pkl: Uint8Array,
  storages: Record<string, Uint8Array>,
  opts: { deflate?: boolean; zip64?: boolean; byteorder?: string } = {},
): string {
  const files: ZipFile[] = [{ name: 'archive/data.pkl', data: pkl }];
  if (opts.byteorder) files.push({ name: 'archive/byteorder', data: Buffer.from(opts.byteorder) });
  for (const [k, v] of Object.entries(storages)) files.push({ name: `archive/data/${k}`, data: v });
  files.push({ name: 'archive/version', data: Buffer.from('3\n') });
  const p = join(dir, file);
  writeFileSync(p, makeZip(files, opts));
  return p;
}

