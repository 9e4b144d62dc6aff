/**
 * Storage is owned by the backend (issue #17): a tensor's storage is an opaque handle, and no code outside src/tensor
 * and src/backend reaches a tensor's host array except through the explicit host-transfer calls.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { withBackend } from '../src/backend/index.js';
import { Storage, Tensor, fromHostArray, intTensor, tensor } from '../src/tensor/tensor.js';
import { testBackends } from './helpers.js';
import { addInto, copyInto, findNonFinite } from '../src/tensor/inplace.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Every value reachable from `s` through own and prototype properties (getters called), one level deep. */
function reachable(s: object): unknown[] {
  const out: unknown[] = [];
  for (const k of Reflect.ownKeys(s)) out.push((s as Record<PropertyKey, unknown>)[k]);
  for (let p = Object.getPrototypeOf(s); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Reflect.ownKeys(p)) {
      const d = Object.getOwnPropertyDescriptor(p, k)!;
      if (d.get) out.push(d.get.call(s));
    }
  }
  return out;
}

/** `marker` is the element at flat index `at`: a number that must not show up when the storage is printed. */
function assertOpaque(t: Tensor, at: number, marker: number): void {
  const s = t.storage;
  assert.ok(s instanceof Storage);
  assert.equal((s as unknown as Record<number, unknown>)[0], undefined, 'storage[0] must be undefined');
  assert.equal((s as unknown as Record<number, unknown>)[t.size - 1], undefined);
  assert.equal(ArrayBuffer.isView(s), false, 'storage must not be an ArrayBuffer view');
  assert.equal(s instanceof ArrayBuffer, false);
  assert.throws(() => new Float32Array(s as unknown as ArrayBuffer).length && assert.fail(), undefined);
  assert.deepEqual(Object.keys(s).sort(), ['dtype', 'length']);
  for (const v of reachable(s)) {
    assert.ok(!ArrayBuffer.isView(v) && !(v instanceof ArrayBuffer) && !(v instanceof SharedArrayBuffer), `a property of the storage leaks ${inspect(v)}`);
  }
  assert.equal([...Object.values(s)].some((v) => typeof v === 'object' && v !== null), false);
  const shown = `${inspect(s, { showHidden: true, depth: 5 })} ${JSON.stringify(s)} ${String(s)}`;
  assert.ok(!shown.includes(String(marker)), `printing the storage shows its elements: ${shown}`);
  assert.ok(Object.isFrozen(s), 'the handle is frozen: nothing can be attached to it');
  // The host transfers still work.
  assert.equal(t.readSync()[at], marker);
}

describe('opaque storage', () => {
  for (const { name, backend, skip } of testBackends()) {
    it(`a tensor's storage cannot be indexed or enumerated (${name} backend)`, { skip }, () => {
      withBackend(backend!, () => {
        const marker = 12345.5;
        assertOpaque(tensor([1, marker, 3, 4], [2, 2]), 1, marker);
        assertOpaque(tensor([1, marker, 3, 4], [2, 2]).transpose(0, 1).contiguous(), 2, marker);
        assertOpaque(intTensor(Int32Array.of(7, 4242, 9)), 1, 4242);
        // bf16 0x4640 = 12288 and f16 0x7000 = 8192, exact in their dtypes
        assertOpaque(fromHostArray(Uint16Array.of(0x3f80, 0x4640), [2], 'bf16'), 1, 12288);
        assertOpaque(fromHostArray(Uint16Array.of(0x3c00, 0x7000), [2], 'f16'), 1, 8192);
      });
    });
  }

  it('in-place backend ops: addInto / copyInto write through views, findNonFinite scans where the data lies', () => {
    const y = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    addInto(y.slice(1, 0, 1), tensor([10, 20], [2, 1]));
    assert.deepEqual(y.toArray(), [11, 2, 3, 24, 5, 6]);
    assert.throws(() => addInto(tensor([1]).expand(3), tensor([1, 1, 1])), /broadcast view/);
    copyInto(y.slice(1, 1, 3), tensor([7, 8, 9, 10], [2, 2]));
    assert.deepEqual(y.toArray(), [11, 7, 8, 24, 9, 10]);
    assert.equal(findNonFinite(y), null);
    assert.deepEqual(findNonFinite(tensor([0, 1, -Infinity, NaN])), { index: 2, value: -Infinity });
    assert.deepEqual(findNonFinite(tensor([0, 1, 2, NaN]).to('bf16'))?.index, 3);
    assert.deepEqual(findNonFinite(tensor([0, Infinity]).to('f16')), { index: 1, value: Infinity });
    assert.deepEqual(findNonFinite(tensor([70000, 1]).to('f16')), { index: 0, value: Infinity }); // overflows f16
  });

  it('a Storage refuses a host array of the wrong kind, and a non-f32 tensor cannot require grad', () => {
    assert.throws(() => new Storage(new Float32Array(2), 'bf16'), /bf16 storage cannot hold a Float32Array/);
    assert.throws(() => new Storage(new Uint16Array(2), 'f32'), /f32 storage cannot hold a Uint16Array/);
    const w = fromHostArray(new Uint16Array(4), [2, 2], 'bf16');
    assert.throws(() => w.requiresGrad_(), /bf16 tensor cannot require grad/);
    assert.throws(() => new Tensor(new Uint16Array(2) as unknown as Float32Array, [2]), /Storage, Float32Array or Int32Array/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// the static scan

/** Folders whose code may touch host arrays: the tensor layer and the backends. */
const ALLOWED = ['src/tensor/', 'src/backend/'];

/**
 * Host-array access the contract forbids outside ALLOWED: a tensor's `.storage`, `.data()`, `toFloat32Array()`, and
 * the internal accessors (storage.ts and the INTERNAL section of tensor.ts).
 */
const FORBIDDEN: [RegExp, string][] = [
  [/\.storage\b/, '.storage'],
  [/\.data\(\s*\)/, '.data()'],
  [/\btoFloat32Array\s*\(/, 'toFloat32Array()'],
  [/\b(storageArray|storageF32|f32Of|denseF32|denseStored)\b/, 'an internal storage accessor'],
  [/['"][^'"]*\/storage\.js['"]/, 'an import of tensor/storage.js'],
];

/**
 * Blanks out comments and the text of string literals (their words may name the calls), keeping line numbers and
 * import specifiers. The ${...} parts of template literals stay: they are code.
 */
function stripNonCode(src: string): string {
  let out = '';
  let i = 0;
  // Stack of open contexts: 'code' inside ${...} of a template (with its brace depth), 'tpl' inside template text.
  const stack: { kind: 'code' | 'tpl'; depth: number }[] = [{ kind: 'code', depth: 0 }];
  const blank = (t: string) => t.replace(/[^\n]/g, ' ');
  while (i < src.length) {
    const top = stack[stack.length - 1]!;
    const c = src[i]!;
    const n = src[i + 1];
    if (top.kind === 'tpl') {
      if (c === '\\') {
        out += '  ';
        i += 2;
      } else if (c === '`') {
        out += c;
        stack.pop();
        i++;
      } else if (c === '$' && n === '{') {
        out += '${';
        stack.push({ kind: 'code', depth: 0 });
        i += 2;
      } else {
        out += c === '\n' ? c : ' ';
        i++;
      }
      continue;
    }
    if (c === '/' && n === '/') {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (c === '/' && n === '*') {
      const end = src.indexOf('*/', i + 2);
      const stop = end < 0 ? src.length : end + 2;
      out += blank(src.slice(i, stop));
      i = stop;
    } else if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < src.length && src[j] !== c && src[j] !== '\n') j += src[j] === '\\' ? 2 : 1;
      const lit = src.slice(i, j + 1);
      // keep import specifiers (the storage.js import rule needs them)
      out += /\.js$/.test(lit.slice(1, -1)) ? lit : c + ' '.repeat(Math.max(0, lit.length - 2)) + c;
      i = j + 1;
    } else if (c === '`') {
      out += c;
      stack.push({ kind: 'tpl', depth: 0 });
      i++;
    } else {
      if (c === '{') top.depth++;
      else if (c === '}') {
        if (top.depth === 0 && stack.length > 1) stack.pop();
        else top.depth--;
      }
      out += c;
      i++;
    }
  }
  return out;
}

/** Violations in one file's text: "file:line: what". */
export function scanSource(file: string, text: string): string[] {
  const found: string[] = [];
  const lines = stripNonCode(text).split('\n');
  lines.forEach((line, k) => {
    for (const [re, what] of FORBIDDEN) if (re.test(line)) found.push(`${file}:${k + 1}: uses ${what}: ${line.trim()}`);
  });
  return found;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('static scan: no host-array access outside src/tensor and src/backend', () => {
  it('flags each forbidden use in a synthetic bad snippet, and passes clean code', () => {
    const bad = [
      'const a = t.storage;',
      'const b = x.data();',
      'const c = y.toFloat32Array();',
      "import { storageArray } from '../tensor/storage.js';",
      'const d = f32Of(t);',
      'const e = denseF32(t);',
    ].join('\n');
    const v = scanSource('bad.ts', bad);
    assert.equal(v.length, 7, v.join('\n')); // line 4 breaks two rules (the accessor and the storage.js import)
    // inside a template literal's code part the uses are still found
    assert.equal(scanSource('tpl.ts', 'const m = `it is ${t.storage.length} and ${`${x.data()}`}`;').length, 2);
    for (let line = 1; line <= 6; line++) assert.ok(v.some((s) => s.startsWith(`bad.ts:${line}:`)), `line ${line} not flagged`);
    const good = [
      '// t.storage and t.data() in a comment are fine',
      "const msg = 'torch.storage.UntypedStorage';",
      '/* x.toFloat32Array() */ const r = t.readSync();',
      'const m = `${a} isn\'t "t.storage" ${f(`x.data()`)}`;',
      'const s = await t.read(); t.readInto(buf); t.write(vals); t.item(); t.toArray();',
      'const meta = { data: 1 }; const q = rec.data;',
    ].join('\n');
    assert.deepEqual(scanSource('good.ts', good), []);
  });

  it('src/ outside src/tensor and src/backend uses only the host-transfer calls', () => {
    const files = tsFiles(join(root, 'src'));
    assert.ok(files.length > 20, `found only ${files.length} source files under ${root}/src`);
    const violations: string[] = [];
    for (const f of files) {
      const rel = relative(root, f).split('\\').join('/');
      if (ALLOWED.some((a) => rel.startsWith(a))) continue;
      violations.push(...scanSource(rel, readFileSync(f, 'utf8')));
    }
    assert.deepEqual(violations, [], `host-array access outside src/tensor and src/backend:\n${violations.join('\n')}`);
  });

  it('the package index exports no internal accessor', async () => {
    const api = (await import('../src/index.js')) as Record<string, unknown>;
    for (const k of ['storageArray', 'storageF32', 'f32Of', 'denseF32', 'denseStored']) assert.equal(api[k], undefined, `index exports ${k}`);
  });
});
