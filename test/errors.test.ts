/** Bad input raises typed errors that name the shapes, and never crashes the process (both backends). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../src/index.js';
import { getNativeAddon } from '../src/backend/index.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { FormatError } from '../src/errors.js';

function throwsTyped(fn: () => unknown, type: new (...a: never[]) => Error, pattern: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof type, `expected ${type.name}, got ${e.constructor.name}: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

describe('typed errors', () => {
  it('shape mismatch in broadcasting names both shapes', () => {
    throwsTyped(() => T.add(T.zeros([2, 3]), T.zeros([4])), T.ShapeError, /\[2, 3\].*\[4\]/);
  });
  it('matmul inner size mismatch', () => {
    throwsTyped(() => T.matmul(T.zeros([2, 3]), T.zeros([4, 5])), T.ShapeError, /\[2, 3\] @ \[4, 5\]/);
  });
  it('conv3d channel mismatch and empty output', () => {
    throwsTyped(() => T.conv3d(T.zeros([1, 4, 3, 3, 3]), T.zeros([2, 3, 3, 3, 3])), T.ShapeError, /\[1, 4, 3, 3, 3\].*\[2, 3, 3, 3, 3\]/);
    throwsTyped(() => T.conv3d(T.zeros([1, 3, 1, 3, 3]), T.zeros([2, 3, 3, 3, 3])), T.ShapeError, /empty output/);
    throwsTyped(() => T.conv3d(T.zeros([1, 3, 3, 3]), T.zeros([2, 3, 3, 3, 3])), T.ShapeError, /5-D/);
  });
  it('wrong dtype', () => {
    throwsTyped(() => T.tensor(new Int32Array(4) as unknown as Float32Array), T.DTypeError, /Int32Array/);
    throwsTyped(() => new T.Tensor(new Float64Array(4) as unknown as Float32Array, [4]), T.DTypeError, /Float64Array/);
  });
  it('out-of-range axis', () => {
    throwsTyped(() => T.sum(T.zeros([2, 3]), 2), T.AxisError, /axis 2.*\[2, 3\]/);
    throwsTyped(() => T.softmax(T.zeros([2, 3]), -3), T.AxisError, /axis -3/);
    throwsTyped(() => T.permute(T.zeros([2, 3]), [0, 0]), T.AxisError, /repeated/);
  });
  it('zero-size tensors: valid ops work, meaningless ones raise', () => {
    assert.equal(T.sum(T.zeros([0, 3])).item(), 0);
    assert.deepEqual(T.add(T.zeros([0, 3]), T.zeros([3])).shape, [0, 3]);
    throwsTyped(() => T.amax(T.zeros([2, 0]), 1), T.ShapeError, /\[2, 0\]/);
    throwsTyped(() => T.softmax(T.zeros([2, 0])), T.ShapeError, /\[2, 0\]/);
    throwsTyped(() => T.mean(T.zeros([0])), T.ShapeError, /\[0\]/);
  });
  it('reshape to a wrong size', () => {
    throwsTyped(() => T.zeros([2, 3]).reshape(4, 2), T.ShapeError, /\[2, 3\].*\[4, 2\]/);
  });
  it('data that does not fill the shape', () => {
    throwsTyped(() => T.tensor([1, 2, 3], [2, 2]), T.ShapeError, /\[2, 2\]/);
  });
});

describe('native addon validates arguments before touching memory', { skip: getNativeAddon() ? false : 'native addon not built' }, () => {
  const a = getNativeAddon()!;
  const f = (n: number) => new Float32Array(n);
  it('rejects short arrays, wrong types and bad shapes with exceptions', () => {
    const bad: [string, () => unknown][] = [
      ['gemm short C', () => a.gemm(false, false, 1, 4, 4, 4, 1, f(16), 0, f(16), 0, 0, f(15), 0)],
      ['gemm batch overflow', () => a.gemm(false, false, 3, 2, 2, 2, 1, f(4), 4, f(12), 4, 0, f(12), 4)],
      ['conv short x', () => a.conv3dForward([1, 2, 3, 3, 3], [2, 2, 3, 3, 3], [1, 2, 3, 3, 3], [1, 1, 1], [1, 1, 1, 1, 1, 1], 1, f(10), f(108), null, f(54))],
      ['conv inconsistent y', () => a.conv3dForward([1, 2, 3, 3, 3], [2, 2, 3, 3, 3], [1, 2, 9, 3, 3], [1, 1, 1], [1, 1, 1, 1, 1, 1], 1, f(54), f(108), null, f(162))],
      ['binary stride out of bounds', () => a.binary('add', f(4), 0, [1], f(4), 2, [1], [4], f(4))],
      ['scatter into an overlapping view', () => a.stridedScatter(f(4), [2, 2], f(4), 0, [1, 1])],
      ['scatter out of bounds', () => a.stridedScatter(f(4), [2, 2], f(4), 1, [2, 1])],
      ['strided copy out of bounds', () => a.stridedCopy(f(6), 0, [4, 1], [2, 3], f(6))],
      ['unknown op', () => a.unary('nope', f(2), f(2))],
      ['wrong element type', () => a.unary('exp', new Float64Array(2) as unknown as Float32Array, f(2))],
      ['short out', () => a.unary('exp', f(4), f(3))],
      ['softmax size', () => a.softmax(f(6), 2, 4, false, f(8))],
      ['norm stats too short', () => a.norm('rms', f(12), 2, 3, 2, null, null, 1e-5, f(12), null, f(3))],
      ['attention short k', () => a.attention(f(16), f(8), f(16), 1, 4, 4, 4, 4, 0.5, f(16), f(4))],
      ['adamw mismatched', () => a.adamw(f(4), f(3), f(4), f(4), 0.1, 0.9, 0.99, 1e-8, 0, 1)],
      ['missing arguments', () => (a.fill as unknown as () => void)()],
      ['negative size', () => a.reduce('sum', f(4), -1, 2, 2, f(4))],
    ];
    for (const [name, fn] of bad) {
      assert.throws(
        fn,
        (e: Error & { code?: string }) => (e instanceof TypeError || e instanceof RangeError) && e.code === 'ERR_DCVG_NATIVE_ARG' && e.message.length > 10,
        name,
      );
    }
  });
});

describe('safetensors files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-st-'));
  it('round-trips F32, BF16, F16 and F64 with metadata', () => {
    const p = join(dir, 'a.safetensors');
    const x = T.tensor([1, -2.5, 3.25, 0.1], [2, 2]);
    saveSafetensors(p, { x, d: { shape: [2], data: Float64Array.of(0.1, 1 / 3) } }, { metadata: { fps: '16' } });
    const f = SafetensorsFile.open(p);
    assert.deepEqual(f.tensor('x').toArray(), x.toArray());
    assert.deepEqual([...f.float64('d').data], [0.1, 1 / 3]);
    assert.equal(f.metadata.fps, '16');
    f.close();
    for (const dtype of ['BF16', 'F16'] as const) {
      const q = join(dir, `${dtype}.safetensors`);
      saveSafetensors(q, { x }, { dtype });
      const g = SafetensorsFile.open(q);
      assert.equal(g.info('x').dtype, dtype);
      const back = g.tensor('x').toArray();
      back.forEach((v, i) => assert.ok(Math.abs(v - x.toArray()[i]!) <= Math.abs(x.toArray()[i]!) * 4e-3 + 1e-7, `${dtype} ${v}`));
      g.close();
    }
  });
  it('rejects truncated, corrupt and inconsistent files with FormatError', () => {
    const p = join(dir, 'b.safetensors');
    saveSafetensors(p, { x: T.ones([4, 4]) });
    const bytes = readFileSync(p);
    const cut = join(dir, 'cut.safetensors');
    writeFileSync(cut, bytes.subarray(0, bytes.length - 5));
    throwsTyped(() => SafetensorsFile.open(cut), FormatError, /truncated/);
    const junk = join(dir, 'junk.safetensors');
    writeFileSync(junk, Buffer.from('not a safetensors file at all'));
    throwsTyped(() => SafetensorsFile.open(junk), FormatError, /header/);
    const lie = join(dir, 'lie.safetensors');
    const hdr = Buffer.from(JSON.stringify({ x: { dtype: 'F32', shape: [5, 5], data_offsets: [0, 64] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hdr.length));
    writeFileSync(lie, Buffer.concat([len, hdr, Buffer.alloc(64)]));
    throwsTyped(() => SafetensorsFile.open(lie), FormatError, /needs 100 bytes/);
    throwsTyped(() => SafetensorsFile.open(join(dir, 'missing.safetensors')), FormatError, /cannot open/);
  });
  it('unknown keys are named in the error', () => {
    const p = join(dir, 'c.safetensors');
    saveSafetensors(p, { alpha: T.ones([1]) });
    const f = SafetensorsFile.open(p);
    throwsTyped(() => f.tensor('beta'), T.ShapeError, /"beta".*alpha/);
    f.close();
  });
  it('a failed write leaves no file behind', () => {
    const p = join(dir, 'nodir', 'x.safetensors');
    assert.throws(() => saveSafetensors(p, { x: T.ones([1]) }));
    assert.equal(existsSync(p), false);
  });
});
