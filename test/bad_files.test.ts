/**
 * Bad weight files (issue #16): each file here is small and hand-built, and each must fail with a typed one-line error
 * naming the file and the tensor or key, without allocating what the file claims and without leaving output files.
 * - safetensors: the data section is the tensors back to back (the reference crate's rule), header keys are unique,
 *   dtypes are looked up as own properties, metadata values are strings; the writer refuses what the reader would;
 * - torch checkpoints: strided views may not expand (or alias) their storages without bound;
 * - allocation failures name the file and tensor;
 * - model loaders compare keys and shapes before reading tensor data, and refuse NaN / Inf weights.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_HEADER, SafetensorsFile, firstDuplicateKey, loadSafetensors, saveSafetensors } from '../src/io/safetensors.js';
import { DTypeError, FormatError, MemoryError, StateDictError, ValueError } from '../src/errors.js';
import { TorchCheckpoint, loadTorchStateDict } from '../src/io/torch_checkpoint.js';
import { createModel, loadWeights, resolveConfig } from '../src/models/dcaev/autoencoder.js';
import { DCAEV } from '../src/models/dcaev/model.js';
import { parseWanConfig } from '../src/models/wan/config.js';
import { WanModel } from '../src/models/wan/model.js';
import { createWanModel, loadWanWeights } from '../src/models/wan/run.js';
import { Tensor } from '../src/tensor/tensor.js';
import { fixturePath, skipUnlessFixture } from './helpers.js';
import { Pickler, crc32, writeCheckpoint } from './torch_zip.js';

/** Sets element i (flat, row-major) of t through the host-transfer calls. */
function setAt(t: Tensor, i: number, v: number): void {
  const d = t.readSync();
  d[i] = v;
  t.write(d);
}

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dcvg-badfiles-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A safetensors file from a raw header text and data bytes (padding the header to 8 like real writers). */
function rawSafetensors(name: string, header: string | object, data: Uint8Array | number = 0): string {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  while (text.length % 8) text += ' ';
  const hb = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, hb, typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data)]));
  return p;
}

const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);
const F32x2 = (begin: number) => ({ dtype: 'F32', shape: [2], data_offsets: [begin, begin + 8] });

/** assert.throws with the error class and a message pattern, showing the actual error when it differs. */
function throwsTyped(fn: () => unknown, cls: abstract new (...a: never[]) => Error, pattern: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e.constructor.name}: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------------------------

describe('safetensors: the data section is the tensors back to back', () => {
  it('accepts tensors listed in any order when their bytes are contiguous', () => {
    const p = rawSafetensors('order.safetensors', { b: F32x2(8), a: F32x2(0) }, Buffer.concat([f32(1, 2), f32(3, 4)]));
    const { tensors } = loadSafetensors(p);
    assert.deepEqual([...tensors.get('a')!.readSync()], [1, 2]);
    assert.deepEqual([...tensors.get('b')!.readSync()], [3, 4]);
  });

  it('refuses two tensors over the same bytes, naming the file and the tensor', () => {
    const p = rawSafetensors('overlap.safetensors', { a: F32x2(0), b: F32x2(0) }, 8);
    throwsTyped(() => SafetensorsFile.open(p), FormatError, /overlap\.safetensors: tensor "b" data_offsets \[0, 8\] overlap the end of tensor "a"/);
    const q = rawSafetensors('overlap2.safetensors', { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: F32x2(4) }, 16);
    throwsTyped(() => SafetensorsFile.open(q), FormatError, /tensor "b" data_offsets \[4, 12\] overlap/);
  });

  it('refuses a gap between tensors and a first tensor that does not start at 0', () => {
    const p = rawSafetensors('gap.safetensors', { a: F32x2(0), b: F32x2(12) }, 20);
    throwsTyped(() => SafetensorsFile.open(p), FormatError, /gap\.safetensors: tensor "b" data_offsets \[12, 20\] leave a gap after the end of tensor "a" \(8\)/);
    const q = rawSafetensors('late.safetensors', { a: F32x2(4) }, 12);
    throwsTyped(() => SafetensorsFile.open(q), FormatError, /tensor "a" .* leave a gap after the start of the data section/);
  });

  it('refuses reversed offsets and bytes after the last tensor', () => {
    const p = rawSafetensors('reversed.safetensors', { a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, 8);
    throwsTyped(() => SafetensorsFile.open(p), FormatError, /tensor "a" has invalid data_offsets \[8,0\]/);
    const q = rawSafetensors('trailing.safetensors', { a: F32x2(0) }, 12);
    throwsTyped(() => SafetensorsFile.open(q), FormatError, /trailing\.safetensors: 4 bytes after the last tensor "a" belong to no tensor/);
    const r = rawSafetensors('empty_trailing.safetensors', {}, 8);
    throwsTyped(() => SafetensorsFile.open(r), FormatError, /8 bytes after the header belong to no tensor/);
  });
});

describe('safetensors: header keys, dtypes and metadata', () => {
  it('refuses a key given twice (JSON.parse would keep the last silently), also when spelled with escapes', () => {
    const a = '"dtype":"F32","shape":[2],"data_offsets":[0,8]';
    const p = rawSafetensors('dup.safetensors', `{"w":{${a}},"w":{${a}}}`, 8);
    throwsTyped(() => SafetensorsFile.open(p), FormatError, /dup\.safetensors: safetensors header has the key "w" twice/);
    const q = rawSafetensors('dup_escaped.safetensors', `{"w":{${a}},"\\u0077":{${a}}}`, 8);
    throwsTyped(() => SafetensorsFile.open(q), FormatError, /the key "w" twice/);
    const r = rawSafetensors('dup_field.safetensors', `{"w":{"dtype":"F16","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8);
    throwsTyped(() => SafetensorsFile.open(r), FormatError, /the key "w" > "dtype" twice/);
  });

  it('the duplicate-key scanner ignores strings, arrays and separate objects', () => {
    assert.equal(firstDuplicateKey('{"a":"a","b":["a","a"],"c":{"a":1,"b":{"a":2}},"d":"\\"a\\""}'), null);
    assert.equal(firstDuplicateKey('{"a":[{"x":1},{"x":2}],"b":{"c":{"k":1,"k":2}}}'), '"b" > "c" > "k"');
  });

  for (const dtype of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    it(`refuses dtype "${dtype}" (inherited from Object.prototype) as an unsupported dtype`, () => {
      const p = rawSafetensors(`dtype_${dtype}.safetensors`, { w: { dtype, shape: [2], data_offsets: [0, 8] } }, 8);
      throwsTyped(() => SafetensorsFile.open(p), DTypeError, new RegExp(`tensor "w" has unsupported dtype "${dtype}"`));
    });
  }

  it('refuses __metadata__ values that are not strings', () => {
    for (const [name, v] of [['num', 1], ['obj', { a: 'b' }], ['null', null], ['list', ['x']]] as const) {
      const p = rawSafetensors(`meta_${name}.safetensors`, { __metadata__: { step: v } });
      throwsTyped(() => SafetensorsFile.open(p), FormatError, new RegExp(`meta_${name}\\.safetensors: __metadata__ "step" is a .*metadata values must be strings`));
    }
    const ok = rawSafetensors('meta_ok.safetensors', { __metadata__: { step: '1' } });
    const f = SafetensorsFile.open(ok);
    assert.equal(f.metadata.step, '1');
    f.close();
  });
});

describe('saveSafetensors refuses before creating anything', () => {
  it('a header larger than readers accept', () => {
    const out = join(dir, 'hugeheader');
    mkdirSync(out);
    const t = new Tensor(new Float32Array(2), [2]);
    throwsTyped(
      () => saveSafetensors(join(out, 'x.safetensors'), { t }, { metadata: { note: 'x'.repeat(MAX_HEADER) } }),
      ValueError,
      /x\.safetensors: the header .* would be \d+ bytes, over the 100000000-byte limit/,
    );
    assert.deepEqual(readdirSync(out), []);
  });

  it('a folder that does not exist, naming it', () => {
    const missing = join(dir, 'no', 'such');
    throwsTyped(() => saveSafetensors(join(missing, 'x.safetensors'), { t: new Tensor(new Float32Array(2), [2]) }), ValueError, /folder .*no[/\\]such does not exist/);
    assert.equal(existsSync(join(dir, 'no')), false);
  });

  it('a tensor may be named "__proto__" and round-trips', () => {
    const p = join(dir, 'proto.safetensors');
    saveSafetensors(p, new Map([['__proto__', new Tensor(new Float32Array([5, 6]), [2])]]));
    const f = SafetensorsFile.open(p);
    assert.deepEqual([...f.tensor('__proto__').readSync()], [5, 6]);
    f.close();
  });
});

// ---------------------------------------------------------------------------------------------------------------
// allocation failures

/** Sizes the engine refuses outright (so the tests below never touch real memory); else they are skipped. */
const HUGE = 2 ** 40;
const skipHuge = bufferConstants.MAX_LENGTH < HUGE ? false : `this Node allows ${bufferConstants.MAX_LENGTH}-byte buffers, so a ${HUGE}-byte tensor might really be allocated`;

/** Writes `size` bytes of sparse file (a hole) after `head`; false when the file system refuses. */
function sparseFile(p: string, parts: { at: number; bytes: Uint8Array }[], size: number): boolean {
  const fd = openSync(p, 'w');
  try {
    for (const { at, bytes } of parts) writeSync(fd, bytes, 0, bytes.length, at);
    writeSync(fd, Buffer.alloc(1), 0, 1, size - 1);
    return true;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

describe('allocation failures name the file and the tensor', () => {
  it('safetensors: a 1 TiB tensor (sparse file) is a MemoryError, not a RangeError', { skip: skipHuge }, (t) => {
    let text = JSON.stringify({ big: { dtype: 'U8', shape: [HUGE], data_offsets: [0, HUGE] } });
    while (text.length % 8) text += ' ';
    const head = Buffer.alloc(8 + text.length);
    head.writeBigUInt64LE(BigInt(text.length));
    head.write(text, 8);
    const p = join(dir, 'huge.safetensors');
    if (!sparseFile(p, [{ at: 0, bytes: head }], head.length + HUGE)) return t.skip('no sparse files here');
    const f = SafetensorsFile.open(p);
    try {
      throwsTyped(() => f.tensor('big'), MemoryError, /huge\.safetensors: tensor "big" U8\[1099511627776\] \(4\.0 TiB .* when loaded\): cannot allocate/);
      throwsTyped(() => f.float64('big'), MemoryError, /tensor "big"/);
    } finally {
      f.close();
      rmSync(p);
    }
  });

  it('torch: a 1 TiB storage (sparse ZIP64 archive) is a MemoryError naming the tensor', { skip: skipHuge }, (t) => {
    const p = join(dir, 'huge.pt');
    const pkl = new Pickler().proto().emptyDict().str('big').tensor('ByteStorage', '0', HUGE, 0, [HUGE], [1]).setitem().stop().bytes();
    if (!writeSparseZip64(p, pkl, HUGE)) return t.skip('no sparse files here');
    try {
      throwsTyped(() => loadTorchStateDict(p), MemoryError, /huge\.pt: tensor "big" uint8\[1099511627776\] .*storage "0"/);
    } finally {
      rmSync(p);
    }
  });
});

/** archive/data.pkl, then archive/data/0 of `size` bytes left as a hole, with the ZIP64 records such sizes need. */
function writeSparseZip64(p: string, pkl: Uint8Array, size: number): boolean {
  const parts: { at: number; bytes: Uint8Array }[] = [];
  const central: Buffer[] = [];
  let off = 0;
  for (const e of [{ name: 'archive/data.pkl', data: pkl as Uint8Array | null }, { name: 'archive/data/0', data: null }]) {
    const name = Buffer.from(e.name);
    const big = e.data === null;
    const n = big ? size : e.data!.length;
    const crc = big ? 0 : crc32(e.data!);
    const extra = Buffer.alloc(big ? 20 : 0);
    if (big) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(16, 2);
      extra.writeBigUInt64LE(BigInt(n), 4);
      extra.writeBigUInt64LE(BigInt(n), 12);
    }
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(45, 4);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(big ? 0xffffffff : n, 18);
    lh.writeUInt32LE(big ? 0xffffffff : n, 22);
    lh.writeUInt16LE(name.length, 26);
    lh.writeUInt16LE(extra.length, 28);
    parts.push({ at: off, bytes: Buffer.concat([lh, name, extra, big ? Buffer.alloc(0) : Buffer.from(e.data!)]) });
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(45, 4);
    ch.writeUInt16LE(45, 6);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(big ? 0xffffffff : n, 20);
    ch.writeUInt32LE(big ? 0xffffffff : n, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt16LE(extra.length, 30);
    ch.writeUInt32LE(off, 42);
    central.push(ch, name, extra);
    off += 30 + name.length + extra.length + n;
  }
  const cd = Buffer.concat(central);
  const z = Buffer.alloc(56);
  z.writeUInt32LE(0x06064b50, 0);
  z.writeBigUInt64LE(44n, 4);
  z.writeBigUInt64LE(2n, 24);
  z.writeBigUInt64LE(2n, 32);
  z.writeBigUInt64LE(BigInt(cd.length), 40);
  z.writeBigUInt64LE(BigInt(off), 48);
  const loc = Buffer.alloc(20);
  loc.writeUInt32LE(0x07064b50, 0);
  loc.writeBigUInt64LE(BigInt(off + cd.length), 8);
  loc.writeUInt32LE(1, 16);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(0xffff, 8);
  eocd.writeUInt16LE(0xffff, 10);
  eocd.writeUInt32LE(0xffffffff, 12);
  eocd.writeUInt32LE(0xffffffff, 16);
  const tail = Buffer.concat([cd, z, loc, eocd]);
  parts.push({ at: off, bytes: tail });
  return sparseFile(p, parts, off + tail.length);
}

// ---------------------------------------------------------------------------------------------------------------

describe('torch checkpoints: views may not expand their storages without bound', () => {
  const dict = () => new Pickler().proto().emptyDict();
  const one = f32(7);

  it('a 538-byte file with one stride-0 view of [2^28] is refused on open, naming file and tensor', () => {
    const pkl = dict().str('w').tensor('FloatStorage', '0', 1, 0, [2 ** 28], [0]).setitem().stop().bytes();
    const p = writeCheckpoint(dir, 'expand.pt', pkl, { '0': one });
    assert.ok(readFileSync(p).length < 1024);
    throwsTyped(() => TorchCheckpoint.open(p), FormatError, /expand\.pt: tensor "w" \(float32\[268435456\] stride \[0\] over storage "0" of 1 elements\) claims 268435456 elements/);
    throwsTyped(() => loadTorchStateDict(p), FormatError, /tensor "w"/);
  });

  it('counts the expansion of all tensors together, and still loads a small expanded view', () => {
    let pk = dict().raw(0x28);
    for (let i = 0; i < 20; i++) pk = pk.str(`t${i}`).tensor('FloatStorage', '0', 1, 0, [2 ** 20], [0]);
    const p = writeCheckpoint(dir, 'expand_many.pt', pk.setitems().stop().bytes(), { '0': one });
    throwsTyped(() => TorchCheckpoint.open(p), FormatError, /tensor "t16" .*beyond their storages by over 16777216 elements/);
    const small = dict().str('w').tensor('FloatStorage', '0', 1, 0, [2, 3], [0, 0]).setitem().stop().bytes();
    const { stateDict } = loadTorchStateDict(writeCheckpoint(dir, 'expand_small.pt', small, { '0': one }));
    assert.deepEqual([...stateDict.get('w')!.readSync()], [7, 7, 7, 7, 7, 7]);
  });

  it('refuses many tensors that all copy one storage (each would be loaded separately)', () => {
    const n = 2 ** 22;
    let pk = dict().raw(0x28);
    for (let i = 0; i < 8; i++) pk = pk.str(`copy${i}`).tensor('FloatStorage', '0', n, 0, [n], [1]);
    const p = writeCheckpoint(dir, 'alias.pt', pk.setitems().stop().bytes(), { '0': new Uint8Array(4 * n) }, { deflate: true });
    throwsTyped(() => TorchCheckpoint.open(p), FormatError, /alias\.pt: tensor "copy6" .*views a storage that other tensors already use/);
    // A tied weight (two names, one storage) is fine.
    const tied = dict().raw(0x28).str('a').tensor('FloatStorage', '0', n, 0, [n], [1]).str('b').tensor('FloatStorage', '0', n, 0, [n], [1]).setitems().stop().bytes();
    TorchCheckpoint.open(writeCheckpoint(dir, 'tied.pt', tied, { '0': new Uint8Array(4 * n) }, { deflate: true })).close();
  });
});

// ---------------------------------------------------------------------------------------------------------------
// model loaders

const tinyWanConfig = { model_type: 't2v', patch_size: [1, 2, 2], text_len: 4, in_dim: 4, dim: 12, ffn_dim: 16, freq_dim: 8, text_dim: 6, out_dim: 4, num_heads: 1, num_layers: 1 };
const tinyWan = () => new WanModel(parseWanConfig(tinyWanConfig));

/** A torch.save checkpoint of `tensors` (one float32 storage each); `corrupt` names keys whose storage bytes are flipped. */
function torchStateDict(name: string, tensors: Map<string, Tensor>, corrupt: string[] = []): string {
  let pk = new Pickler().proto().emptyDict().raw(0x28);
  const storages: Record<string, Uint8Array> = {};
  let i = 0;
  for (const [k, t] of tensors) {
    const stride = t.shape.map((_, a) => t.shape.slice(a + 1).reduce((x, y) => x * y, 1));
    pk = pk.str(k).tensor('FloatStorage', String(i), t.size, 0, [...t.shape], stride);
    const d = t.readSync();
    storages[String(i)] = Uint8Array.from(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    i++;
  }
  const p = writeCheckpoint(dir, name, pk.setitems().stop().bytes(), storages);
  if (corrupt.length) {
    // Flip one byte inside each named storage: its CRC no longer matches, so reading it would fail.
    const buf = readFileSync(p);
    let idx = 0;
    for (const [k] of tensors) {
      if (corrupt.includes(k)) {
        const at = buf.indexOf(Buffer.from(`archive/data/${idx}`)) + `archive/data/${idx}`.length;
        buf[at]! ^= 0xff;
      }
      idx++;
    }
    writeFileSync(p, buf);
  }
  return p;
}

describe('model loaders check keys and shapes before reading any tensor data', () => {
  it('DC-AE-V: an unknown key whose storage cannot be read is reported as a key mismatch, not a read error', () => {
    const p = torchStateDict('unknown_dcaev.pt', new Map([['encoder.bogus.weight', new Tensor(new Float32Array(64), [64])]]), ['encoder.bogus.weight']);
    // The storage really is unreadable.
    throwsTyped(() => loadTorchStateDict(p), FormatError, /CRC mismatch/);
    throwsTyped(() => createModel('dc-ae-v-f32t4c32-1.0', p), StateDictError, /unknown_dcaev\.pt \(top-level\): state dict does not match the model: \d+ missing: .*1 unexpected: encoder\.bogus\.weight/);
  });

  it('Wan: a mismatched shape is reported before any storage is read', () => {
    const sd = tinyWan().shapes();
    const tensors = new Map([...sd].map(([k, s]) => [k, new Tensor(new Float32Array(s.reduce((a, b) => a * b, 1)), s)] as [string, Tensor]));
    tensors.set('head.head.bias', new Tensor(new Float32Array(3), [3]));
    const p = torchStateDict('mismatch_wan.pt', tensors, [...sd.keys()]);
    throwsTyped(() => createWanModel(tinyWanConfig, p), StateDictError, /mismatch_wan\.pt \(top-level\): .*with mismatched shapes: head\.head\.bias \(model \[\d+\], checkpoint \[3\]\)/);
  });

  it('Wan: a valid torch checkpoint still loads (through the lazy path) with the same values', () => {
    const m = tinyWan();
    m.initRandom(3);
    const p = torchStateDict('ok_wan.pt', m.stateDict());
    const m2 = tinyWan();
    const r = loadWanWeights(m2, p);
    assert.equal(r.report.missing.length + r.report.unexpected.length, 0);
    for (const [k, t] of m.stateDict()) assert.deepEqual([...m2.stateDict().get(k)!.readSync()], [...t.readSync()], k);
  });
});

describe('NaN / Inf weights are refused, naming file, tensor and index', () => {
  it('Wan, safetensors and torch', () => {
    const m = tinyWan();
    m.initRandom(4);
    const sd = m.stateDict();
    const key = 'blocks.0.self_attn.q.weight';
    const bad = new Map([...sd].map(([k, t]) => [k, new Tensor(Float32Array.from(t.readSync()), t.shape)] as [string, Tensor]));
    setAt(bad.get(key)!, 13, Number.NaN);
    const st = join(dir, 'nan_wan.safetensors');
    saveSafetensors(st, bad);
    throwsTyped(() => loadWanWeights(tinyWan(), st), ValueError, /nan_wan\.safetensors: weight "blocks\.0\.self_attn\.q\.weight" has NaN at index \[1, 1\] \(element 13 of 144\)/);
    setAt(bad.get(key)!, 13, 0);
    setAt(bad.get('head.head.bias')!, 2, -Infinity);
    const pt = torchStateDict('inf_wan.pt', bad);
    throwsTyped(() => loadWanWeights(tinyWan(), pt), ValueError, /inf_wan\.pt: weight "head\.head\.bias" has -Infinity at index \[2\]/);
    // A loaded model that refuses new weights keeps its own: nothing before the bad tensor was replaced.
    const loaded = tinyWan();
    loaded.initRandom(9);
    const before = new Map([...loaded.stateDict()].map(([k, t]) => [k, [...t.readSync()]]));
    throwsTyped(() => loadWanWeights(loaded, pt), ValueError, /-Infinity/);
    for (const [k, t] of loaded.stateDict()) assert.deepEqual([...t.readSync()], before.get(k), `${k} was replaced by a refused file`);
  });

  const CFG = 'dc-ae-v/causal_small.json';
  it('DC-AE-V (createModel and loadWeights)', { skip: skipUnlessFixture(CFG) }, () => {
    const cfg = resolveConfig(fixturePath(CFG));
    const m = new DCAEV(cfg);
    m.initRandom(5);
    const sd = new Map([...m.stateDict()].map(([k, t]) => [k, new Tensor(Float32Array.from(t.readSync()), t.shape)] as [string, Tensor]));
    const [key, t] = [...sd].find(([, v]) => v.size > 10)!;
    setAt(t, 7, Infinity);
    const p = join(dir, 'inf_dcaev.safetensors');
    saveSafetensors(p, sd);
    const re = new RegExp(`inf_dcaev\\.safetensors: weight "${key.replace(/\./g, '\\.')}" has Infinity at index \\[.*\\] \\(element 7 of`);
    throwsTyped(() => createModel(cfg, p), ValueError, re);
    throwsTyped(() => loadWeights(new DCAEV(cfg), p), ValueError, re);
  });
});
