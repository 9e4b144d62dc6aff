/**
 * Transparent huge pages for large new tensors (src/tensor/alloc.ts adviseLarge, native adviseHugePages): which
 * buffers are offered, the native entry point's argument checks, and the DCVG_HUGE_PAGES=0 switch.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getNativeAddon } from '../src/backend/index.js';
import { LARGE_ALLOC_ELEMENTS, getLargeAllocAdviser, setLargeAllocAdviser } from '../src/tensor/alloc.js';
import { empty, zeros } from '../src/tensor/tensor.js';
import { randn } from '../src/tensor/random.js';
import { repoRoot } from './helpers.js';

const addon = getNativeAddon();
const noAddon = addon ? false : 'native addon not built';
const thpSysfs = '/sys/kernel/mm/transparent_hugepage/enabled';

describe('large allocations are offered to the adviser', () => {
  it('zeros, empty and randn offer buffers of at least LARGE_ALLOC_ELEMENTS, and only those', () => {
    const seen: number[] = [];
    const saved = getLargeAllocAdviser();
    setLargeAllocAdviser((a) => seen.push(a.length));
    try {
      zeros([LARGE_ALLOC_ELEMENTS]);
      empty([2, LARGE_ALLOC_ELEMENTS]);
      randn([LARGE_ALLOC_ELEMENTS + 3], 1);
      zeros([LARGE_ALLOC_ELEMENTS - 1]);
      empty([LARGE_ALLOC_ELEMENTS - 1]);
      empty([1000]);
    } finally {
      setLargeAllocAdviser(saved);
    }
    assert.deepEqual(seen, [LARGE_ALLOC_ELEMENTS, 2 * LARGE_ALLOC_ELEMENTS, LARGE_ALLOC_ELEMENTS + 3]);
  });

  it('the native addon installs its adviser when it loads', { skip: noAddon }, () => {
    assert.equal(typeof getLargeAllocAdviser(), 'function');
  });

  it('DCVG_HUGE_PAGES=0 leaves no adviser installed', { skip: noAddon }, () => {
    const script = `
      const b = await import(${JSON.stringify(join(repoRoot, 'dist', 'src', 'backend', 'index.js'))});
      const a = await import(${JSON.stringify(join(repoRoot, 'dist', 'src', 'tensor', 'alloc.js'))});
      if (!b.getNativeAddon()) throw new Error('addon did not load');
      console.log(a.getLargeAllocAdviser() === null ? 'none' : 'installed');`;
    for (const [v, want] of [['0', 'none'], ['1', 'installed']] as const) {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { ...process.env, DCVG_HUGE_PAGES: v },
      });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), want, `DCVG_HUGE_PAGES=${v}`);
    }
  });
});

describe('native adviseHugePages', { skip: noAddon }, () => {
  const advise = (x: unknown) => (addon!.adviseHugePages as (x: unknown) => boolean)(x);

  it('checks its argument before touching memory', () => {
    for (const bad of [undefined, null, 3, 'x', new Uint8Array(16), new Float64Array(4), [1, 2]]) {
      assert.throws(() => advise(bad), TypeError, `argument ${String(bad)}`);
    }
  });

  it('takes the advice for a buffer holding an aligned 2 MiB page, where the kernel has THP; a small one is a no-op', () => {
    assert.equal(advise(new Float32Array(16)), false);
    // madvise(MADV_HUGEPAGE) succeeds exactly when the kernel is built with THP, which is when this sysfs file exists
    // (whatever mode it is in); a 16 MiB buffer always holds at least one aligned 2 MiB page.
    const r = advise(new Float32Array(4 << 20));
    if (existsSync(thpSysfs)) assert.equal(r, true, `THP present (${readFileSync(thpSysfs, 'utf8').trim()})`);
    else assert.equal(typeof r, 'boolean');
  });

  it('leaves the contents alone', () => {
    const x = new Float32Array(4 << 20).map((_, i) => i % 977);
    const copy = x.slice();
    advise(x);
    assert.deepEqual(x, copy);
  });
});
