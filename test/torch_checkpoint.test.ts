/**
 * torch.save checkpoints without Python: the DC-AE-V fixture matches its safetensors twin bit for bit, strided views
 * and every storage dtype decode correctly, and hostile or corrupt files fail with FormatError without running
 * anything. The synthetic checkpoints are written here with a tiny zip writer and pickle assembler.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { FormatError } from '../src/errors.js';
import { TensorRef, TorchCheckpoint, loadTorchStateDict, readTorchCheckpointInfo } from '../src/io/torch_checkpoint.js';
import { fixturePath, skipUnlessFixture } from './helpers.js';
import { Pickler, makeZip, writeCheckpoint } from './torch_zip.js';

const PT = 'dc-ae-v/chunk_causal_small.bf16.pt';
const ST = 'dc-ae-v/chunk_causal_small.weights.bf16.safetensors';

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Reverses each element's bytes (for the big-endian variant). */
function swapped(b: Uint8Array, size: number): Uint8Array {
  const out = Uint8Array.from(b);
  for (let i = 0; i < out.length; i += size) out.subarray(i, i + size).reverse();
  return out;
}

function throwsFormat(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${e.constructor.name}: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

/** Exact equality, bit for bit (so -0 and NaN payloads count too). */
function assertBitEqual(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} is ${a[i]}, expected ${b[i]}`);
}

/** Deterministic bytes (xorshift), so a failure reproduces. */
function pseudoRandom(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// the fixture

describe('torch checkpoint: DC-AE-V fixture', { skip: skipUnlessFixture(PT) || skipUnlessFixture(ST) }, () => {
  it('the EMA state dict equals the bf16 safetensors exactly, and step is 1000', () => {
    const { stateDict, source, extra, skipped } = loadTorchStateDict(fixturePath(PT));
    assert.equal(source, 'ema_model_state_dict[0.9999]');
    assert.equal(extra.step, 1000);
    assert.deepEqual(skipped, []);
    const st = SafetensorsFile.open(fixturePath(ST));
    try {
      assert.deepEqual([...stateDict.keys()].sort(), st.keys().sort());
      for (const k of st.keys()) {
        const want = st.tensor(k);
        const got = stateDict.get(k)!;
        assert.deepEqual([...got.shape], [...want.shape], `${k}: shape`);
        assertBitEqual(got.readSync(), want.readSync(), k);
      }
    } finally {
      st.close();
    }
  });

  it('prefer: model picks model_state_dict', () => {
    const { stateDict, source } = loadTorchStateDict(fixturePath(PT), { prefer: 'model' });
    assert.equal(source, 'model_state_dict');
    assert.equal(stateDict.size, 90);
  });

  it('info lists names, dtypes and shapes without reading tensor data', () => {
    const info = readTorchCheckpointInfo(fixturePath(PT));
    assert.equal(info.source, 'ema_model_state_dict[0.9999]');
    assert.deepEqual(info.extra, { step: 1000 });
    assert.deepEqual(info.topLevelKeys, ['ema_model_state_dict', 'model_state_dict', 'step']);
    const st = SafetensorsFile.open(fixturePath(ST));
    try {
      assert.deepEqual(info.tensors.map((t) => t.name).sort(), st.keys().sort());
      for (const t of info.tensors) {
        assert.equal(t.dtype, 'bfloat16', t.name);
        assert.deepEqual(t.shape, st.info(t.name).shape, t.name);
      }
    } finally {
      st.close();
    }
    const ck = TorchCheckpoint.open(fixturePath(PT));
    try {
      assert.equal(ck.stats.storagesRead, 0);
      const root = ck.root as Map<string, unknown>;
      const sd = (root.get('ema_model_state_dict') as Map<string, unknown>).get('0.9999') as Map<string, TensorRef>;
      assert.ok(sd.get('encoder.project_in.conv.conv.weight') instanceof TensorRef);
      // The official file stores one dict under both names: the same objects, not copies.
      assert.equal(root.get('model_state_dict'), sd);
      sd.get('encoder.project_in.conv.conv.weight')!.load();
      assert.equal(ck.stats.storagesRead, 1);
    } finally {
      ck.close();
    }
  });

  it('a truncated copy fails with FormatError', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-pt-'));
    try {
      const whole = readFileSync(fixturePath(PT));
      const cut = join(dir, 'half.pt');
      writeFileSync(cut, whole.subarray(0, whole.length >> 1));
      throwsFormat(() => loadTorchStateDict(cut), /half\.pt: .*(truncated|end-of-central-directory)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// synthetic checkpoints

describe('torch checkpoint: synthetic archives', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'dcvg-pt-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const f32 = Float32Array.from({ length: 24 }, (_, i) => i * 0.5 - 3);
  const storages: Record<string, Uint8Array> = {
    '0': bytesOf(f32),
    '1': bytesOf(Uint16Array.from([0x3c00, 0xc000, 0x3800, 0x7bff])), // f16: 1, -2, 0.5, 65504
    '2': bytesOf(Float64Array.from([Math.PI, -1e-3])),
    '3': bytesOf(BigInt64Array.from([-5n, 2n ** 40n])),
    '4': Uint8Array.from([1, 0, 1]),
    '5': bytesOf(Uint16Array.from([0x3fc0, 0xbe80])), // bf16: 1.5, -0.25
  };
  const elemSize: Record<string, number> = { '0': 4, '1': 2, '2': 8, '3': 8, '4': 1, '5': 2 };
  const expected: Record<string, { shape: number[]; data: number[] }> = {
    whole: { shape: [2, 3, 4], data: Array.from(f32) },
    // a transposed view of the second half: element [i][j] = storage[12 + i + 4j]
    transposed: { shape: [4, 3], data: [0, 1, 2, 3].flatMap((i) => [0, 1, 2].map((j) => f32[12 + i + 4 * j]!)) },
    column: { shape: [3], data: [f32[1]!, f32[9]!, f32[17]!] },
    half: { shape: [2, 2], data: [1, -2, 0.5, 65504] },
    double_scalar: { shape: [], data: [Math.fround(-1e-3)] },
    long: { shape: [2], data: [-5, 2 ** 40] },
    mask: { shape: [3], data: [1, 0, 1] },
    param: { shape: [2], data: [1.5, -0.25] },
    broadcast: { shape: [2, 3], data: [Math.fround(Math.PI), Math.fround(Math.PI), Math.fround(Math.PI), Math.fround(Math.PI), Math.fround(Math.PI), Math.fround(Math.PI)] },
  };

  /** {'model_state_dict': OrderedDict(...), 'step': 7, 'lr': 1e-4, 'name': 'run', 'opt': {}} */
  function statePickle(): Buffer {
    const p = new Pickler().proto().emptyDict().mark();
    p.str('model_state_dict').global('collections', 'OrderedDict').emptyTuple().reduce().mark();
    p.str('whole').tensor('FloatStorage', '0', 24, 0, [2, 3, 4], [12, 4, 1]);
    p.str('transposed').tensor('FloatStorage', '0', 24, 12, [4, 3], [1, 4]);
    p.str('column').tensor('FloatStorage', '0', 24, 1, [3], [8]);
    p.str('half').tensor('HalfStorage', '1', 4, 0, [2, 2], [2, 1]);
    p.str('double_scalar').tensor('DoubleStorage', '2', 2, 1, [], []);
    p.str('long').tensor('LongStorage', '3', 2, 0, [2], [1]);
    p.str('mask').tensor('BoolStorage', '4', 3, 0, [3], [1]);
    p.str('param').global('torch._utils', '_rebuild_parameter').mark();
    p.tensor('BFloat16Storage', '5', 2, 0, [2], [1]).bool(true).global('collections', 'OrderedDict').emptyTuple().reduce();
    p.tuple().reduce();
    p.str('broadcast').tensor('DoubleStorage', '2', 2, 0, [2, 3], [0, 0]);
    p.str('not_a_tensor').int(3);
    p.setitems();
    p.str('step').int(7).str('lr').float(1e-4).str('name').str('run').str('opt').emptyDict();
    return p.setitems().stop().bytes();
  }

  function checkExpected(sd: Map<string, { shape: readonly number[]; readSync(): Float32Array }>): void {
    assert.deepEqual([...sd.keys()], Object.keys(expected));
    for (const [k, want] of Object.entries(expected)) {
      const t = sd.get(k)!;
      assert.deepEqual([...t.shape], want.shape, `${k}: shape`);
      assertBitEqual(t.readSync(), Float32Array.from(want.data), k);
    }
  }

  for (const variant of [{}, { deflate: true }, { zip64: true }, { deflate: true, zip64: true }, { byteorder: 'little' }]) {
    it(`decodes views and dtypes (${JSON.stringify(variant)})`, () => {
      const p = writeCheckpoint(dir, 'synthetic.pt', statePickle(), storages, variant);
      const { stateDict, source, extra, skipped } = loadTorchStateDict(p);
      assert.equal(source, 'model_state_dict');
      assert.deepEqual(extra, { step: 7, lr: 1e-4, name: 'run' });
      assert.deepEqual(skipped, ['not_a_tensor']);
      checkExpected(stateDict);
    });
  }

  it('honours byteorder big', () => {
    const big = Object.fromEntries(Object.entries(storages).map(([k, v]) => [k, swapped(v, elemSize[k]!)]));
    const p = writeCheckpoint(dir, 'big.pt', statePickle(), big, { byteorder: 'big' });
    checkExpected(loadTorchStateDict(p).stateDict);
  });

  it('reads each storage once, and loaded tensors never alias each other', () => {
    const p = writeCheckpoint(dir, 'shared.pt', statePickle(), storages);
    const ck = TorchCheckpoint.open(p);
    try {
      const sd = (ck.root as Map<string, unknown>).get('model_state_dict') as Map<string, TensorRef>;
      assert.equal(ck.stats.storagesRead, 0);
      const whole = sd.get('whole')!.load();
      const transposed = sd.get('transposed')!.load();
      const column = sd.get('column')!.load();
      assert.equal(ck.stats.storagesRead, 1, 'three views of storage 0 read it once');
      whole.write(new Float32Array(whole.size).fill(42));
      assertBitEqual(transposed.readSync(), Float32Array.from(expected.transposed!.data), 'transposed after writing whole');
      assertBitEqual(column.readSync(), Float32Array.from(expected.column!.data), 'column after writing whole');
      const again = sd.get('whole')!.load();
      assertBitEqual(again.readSync(), f32, 'reloaded whole');
      assert.equal(sd.get('param')!.isParameter, true);
      assert.equal(sd.get('half')!.dtype, 'float16');
      assert.deepEqual(sd.get('transposed')!.stride, [1, 4]);
    } finally {
      ck.close();
    }
  });

  it('finds EMA weights keyed by a float decay, and flat dicts of tensors', () => {
    const ema = new Pickler().proto().emptyDict().mark().str('ema_model_state_dict').emptyDict();
    ema.float(0.999).emptyDict().str('w').tensor('FloatStorage', '0', 24, 0, [24], [1]).setitem().setitem();
    ema.str('model_state_dict').emptyDict().str('epoch').int(3).setitems().stop();
    const r = loadTorchStateDict(writeCheckpoint(dir, 'ema.pt', ema.bytes(), { '0': storages['0']! }));
    assert.equal(r.source, 'ema_model_state_dict[0.999]');
    assert.deepEqual(r.extra, { epoch: 3 });
    assertBitEqual(r.stateDict.get('w')!.readSync(), f32, 'w');
    const flat = new Pickler().proto().global('collections', 'OrderedDict').emptyTuple().reduce().mark();
    flat.str('a.weight').tensor('FloatStorage', '0', 24, 0, [6, 4], [4, 1]).str('a.bias').tensor('FloatStorage', '0', 24, 20, [4], [1]);
    const r2 = loadTorchStateDict(writeCheckpoint(dir, 'flat.pt', flat.setitems().stop().bytes(), { '0': storages['0']! }));
    assert.equal(r2.source, 'top-level');
    assert.deepEqual([...r2.stateDict.keys()], ['a.weight', 'a.bias']);
    assertBitEqual(r2.stateDict.get('a.bias')!.readSync(), f32.slice(20), 'a.bias');
    const none = new Pickler().proto().emptyDict().str('optimizer').emptyDict().setitem().stop();
    throwsFormat(() => loadTorchStateDict(writeCheckpoint(dir, 'none.pt', none.bytes(), {})), /no state dict found.*top-level keys: optimizer/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// hostile and corrupt input

describe('torch checkpoint: hostile and corrupt files', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'dcvg-pt-bad-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const f32 = bytesOf(Float32Array.from([1, 2, 3, 4]));
  const ok = (): Pickler => new Pickler().proto().emptyDict().str('w');

  it('refuses os.system (GLOBAL + REDUCE) by name, and runs nothing', () => {
    const marker = join(dir, 'pwned');
    const pkl = new Pickler().proto().global('os', 'system').str(`touch ${marker}`).raw(0x85).reduce().stop().bytes();
    const p = writeCheckpoint(dir, 'evil.pt', pkl, {});
    throwsFormat(() => loadTorchStateDict(p), /data\.pkl at byte 2: refusing to load os\.system: only tensor state dicts are supported/);
    throwsFormat(() => readTorchCheckpointInfo(p), /refusing to load os\.system/);
    assert.equal(existsSync(marker), false);
  });

  it('refuses STACK_GLOBAL builtins.eval and calls of non-callables', () => {
    const sg = new Pickler().proto().raw(0x8c, 8, ...Buffer.from('builtins')).raw(0x8c, 4, ...Buffer.from('eval')).raw(0x93);
    throwsFormat(() => TorchCheckpoint.open(writeCheckpoint(dir, 'eval.pt', sg.str('1').raw(0x85).reduce().stop().bytes(), {})), /refusing to load builtins\.eval/);
    const call = new Pickler().proto().global('torch', 'FloatStorage').emptyTuple().reduce().stop().bytes();
    throwsFormat(() => TorchCheckpoint.open(writeCheckpoint(dir, 'call.pt', call, {})), /refusing to call torch\.FloatStorage/);
  });

  it('refuses unknown opcodes with their byte value and offset', () => {
    const ff = new Pickler().proto().raw(0xff).stop().bytes();
    throwsFormat(() => TorchCheckpoint.open(writeCheckpoint(dir, 'ff.pt', ff, {})), /at byte 2: unsupported pickle opcode 0xff/);
    const int = new Pickler().proto().emptyDict().raw(0x49, ...Buffer.from('1\n')).stop().bytes();
    throwsFormat(() => TorchCheckpoint.open(writeCheckpoint(dir, 'int.pt', int, {})), /at byte 3: unsupported pickle opcode 0x49 \(INT\)/);
  });

  it('rejects random bytes, as a file and as data.pkl', () => {
    const junk = join(dir, 'junk.pt');
    writeFileSync(junk, pseudoRandom(5000, 1));
    throwsFormat(() => loadTorchStateDict(junk), /not a torch\.save zip archive/);
    for (let seed = 1; seed <= 200; seed++) {
      const p = writeCheckpoint(dir, 'junk-pkl.pt', pseudoRandom(64 + seed, seed), { '0': f32 });
      throwsFormat(() => loadTorchStateDict(p), /data\.pkl|top-level object|no state dict/);
    }
  });

  it('survives bit flips and truncation of a valid pickle (FormatError or success, nothing else)', () => {
    const good = ok().tensor('FloatStorage', '0', 4, 0, [2, 2], [2, 1]).setitem().stop().bytes();
    for (let cut = 0; cut < good.length; cut++) {
      const p = writeCheckpoint(dir, 'cut.pt', good.subarray(0, cut), { '0': f32 });
      throwsFormat(() => loadTorchStateDict(p), /data\.pkl/);
    }
    const noise = pseudoRandom(4000, 99);
    for (let trial = 0; trial < 500; trial++) {
      const bad = Buffer.from(good);
      bad[noise[trial * 2]! % bad.length] = noise[trial * 2 + 1]!;
      const p = writeCheckpoint(dir, 'flip.pt', bad, { '0': f32 });
      try {
        loadTorchStateDict(p);
      } catch (e) {
        assert.ok(e instanceof FormatError, `trial ${trial}: ${(e as Error).constructor.name}: ${(e as Error).message}`);
      }
    }
  });

  it('survives truncation and bit flips anywhere in the zip', () => {
    const pkl = ok().tensor('FloatStorage', '0', 4, 0, [2, 2], [2, 1]).setitem().stop().bytes();
    for (const opts of [{}, { deflate: true }, { zip64: true }]) {
      const good = readFileSync(writeCheckpoint(dir, 'zip.pt', pkl, { '0': f32 }, opts));
      const p = join(dir, 'zip-bad.pt');
      const check = (what: string) => {
        try {
          loadTorchStateDict(p);
        } catch (e) {
          assert.ok(e instanceof FormatError, `${what} ${JSON.stringify(opts)}: ${(e as Error).constructor.name}: ${(e as Error).message}`);
        }
      };
      for (let cut = 0; cut < good.length; cut++) {
        writeFileSync(p, good.subarray(0, cut));
        throwsFormat(() => loadTorchStateDict(p), /./);
      }
      const noise = pseudoRandom(2000, 7);
      for (let trial = 0; trial < 500; trial++) {
        const bad = Buffer.from(good);
        bad[(noise[trial * 4]! | (noise[trial * 4 + 1]! << 8)) % bad.length] ^= noise[trial * 4 + 2]! | 1;
        writeFileSync(p, bad);
        check(`flip ${trial}`);
      }
    }
  });

  it('names unsupported element types', () => {
    const pkl = ok().tensor('ComplexFloatStorage', '0', 2, 0, [2], [1]).setitem().stop().bytes();
    throwsFormat(() => loadTorchStateDict(writeCheckpoint(dir, 'complex.pt', pkl, { '0': f32 })), /torch\.ComplexFloatStorage: unsupported tensor element type/);
  });

  it('rejects a storage missing from the zip, or too short, or a view outside it', () => {
    const pkl = ok().tensor('FloatStorage', '7', 4, 0, [4], [1]).setitem().stop().bytes();
    throwsFormat(() => loadTorchStateDict(writeCheckpoint(dir, 'missing.pt', pkl, { '0': f32 })), /storage "7" is missing from the archive/);
    const big = ok().tensor('FloatStorage', '0', 8, 0, [8], [1]).setitem().stop().bytes();
    throwsFormat(() => loadTorchStateDict(writeCheckpoint(dir, 'short.pt', big, { '0': f32 })), /storage "0" has 16 bytes but 8 float32 elements need 32/);
    const oob = ok().tensor('FloatStorage', '0', 4, 1, [2, 2], [2, 1]).setitem().stop().bytes();
    throwsFormat(() => loadTorchStateDict(writeCheckpoint(dir, 'oob.pt', oob, { '0': f32 })), /reaches element 4 of storage "0", which has 4/);
  });

  it('rejects absurd lengths and nesting', () => {
    const long = new Pickler().proto().raw(0x58, 0xff, 0xff, 0xff, 0x7f, 0x41).stop().bytes();
    throwsFormat(() => TorchCheckpoint.open(writeCheckpoint(dir, 'long.pt', long, {})), /BINUNICODE needs 2147483647 bytes but only 2 remain/);
    const deep = new Pickler().proto();
    for (let i = 0; i < 100_000; i++) deep.mark();
    throwsFormat(() => TorchCheckpoint.open(writeCheckpoint(dir, 'deep.pt', deep.stop().bytes(), {})), /nests deeper than 1000 levels/);
    // A list nested 100k deep through the memo: built iteratively, so loading it cannot overflow the JS stack.
    const nest = new Pickler().proto().raw(0x5d).binput(0);
    for (let i = 0; i < 100_000; i++) nest.raw(0x30, 0x5d).binget(0).raw(0x61).binput(0);
    throwsFormat(() => loadTorchStateDict(writeCheckpoint(dir, 'nest.pt', nest.stop().bytes(), {})), /top-level object is a list/);
  });

  it('detects corrupt storage bytes by CRC when the tensor is read', () => {
    const pkl = ok().tensor('FloatStorage', '0', 4, 0, [4], [1]).setitem().stop().bytes();
    const p = writeCheckpoint(dir, 'crc.pt', pkl, { '0': f32 });
    const buf = readFileSync(p);
    const at = buf.indexOf(Buffer.from(f32));
    buf[at + 5]! ^= 0x40;
    writeFileSync(p, buf);
    const ck = TorchCheckpoint.open(p);
    try {
      const w = (ck.root as Map<string, TensorRef>).get('w')!;
      throwsFormat(() => w.load(), /CRC mismatch in zip entry "archive\/data\/0"/);
    } finally {
      ck.close();
    }
  });

  it('names legacy and TorchScript files and missing paths', () => {
    const legacy = join(dir, 'legacy.pt');
    writeFileSync(legacy, Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]));
    throwsFormat(() => loadTorchStateDict(legacy), /legacy \(pre-zip\) torch\.save format/);
    const ts = join(dir, 'script.pt');
    writeFileSync(ts, makeZip([
      { name: 'archive/data.pkl', data: new Pickler().proto().emptyDict().stop().bytes() },
      { name: 'archive/constants.pkl', data: new Pickler().proto().emptyTuple().stop().bytes() },
    ]));
    throwsFormat(() => loadTorchStateDict(ts), /TorchScript archive/);
    throwsFormat(() => loadTorchStateDict(join(dir, 'nope.pt')), /cannot open/);
  });
});
