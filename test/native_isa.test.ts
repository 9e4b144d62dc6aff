/**
 * Choosing which native addon build runs (DCVG_NATIVE_ADDON) and reporting the instruction sets it uses: what
 * scripts/test-avx2.sh relies on to run the suite as an AVX2-only CPU would.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const defaultAddon = join(repoRoot, 'native', 'build', 'Release', 'dcvg_native.node');
const noAddon = existsSync(defaultAddon) ? false : process.env.CI ? false : 'native addon not built';

/** `dcvg env --json` with DCVG_NATIVE_ADDON (and any other variables) set. */
function env(addon: string | undefined, extra: Record<string, string> = {}) {
  const e: NodeJS.ProcessEnv = { ...process.env, ...extra };
  if (addon === undefined) delete e.DCVG_NATIVE_ADDON;
  else e.DCVG_NATIVE_ADDON = addon;
  return spawnSync(process.execPath, [bin, 'env', '--json'], { encoding: 'utf8', env: e, cwd: repoRoot });
}

describe('DCVG_NATIVE_ADDON', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-isa-'));
  const fake = join(dir, 'fake.node');
  writeFileSync(fake, 'not an ELF file');
  const cases: [string, string, RegExp][] = [
    ['a missing file', join(dir, 'missing.node'), /DCVG_NATIVE_ADDON=.*missing\.node: no such file/],
    ['a directory', dir, /DCVG_NATIVE_ADDON=.*: not a regular file/],
    ['a file that is not .node', join(repoRoot, 'package.json'), /DCVG_NATIVE_ADDON=.*package\.json: not a Node addon/],
    ['a .node file that does not load', fake, /DCVG_NATIVE_ADDON=.*fake\.node: cannot load: /],
  ];
  for (const [what, path, msg] of cases) {
    // Before, a bad path fell through to native/build and the run silently used the default build instead.
    it(`names ${what} in one line and exits 1 (never falls back to another build)`, { skip: noAddon }, () => {
      const r = env(path);
      assert.equal(r.status, 1, r.stdout);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, msg);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /TypeError|RangeError|at .*\.js:\d+/);
    });
  }

  it('a relative path is taken from the working directory and loads that build', { skip: noAddon }, () => {
    const r = env(join('native', 'build', 'Release', 'dcvg_native.node'));
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { backend: string; native: { available: boolean } };
    assert.equal(j.backend, 'native');
    assert.equal(j.native.available, true);
  });

  it('empty means unset (the default build)', { skip: noAddon }, () => {
    const r = env('');
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { native: { available: boolean } }).native.available, true);
  });

  it('cleans up', () => rmSync(dir, { recursive: true, force: true }));
});

describe('versions() reports the instruction sets in use', () => {
  it('our kernels, oneDNN and OpenBLAS each name theirs; ONEDNN_MAX_CPU_ISA caps oneDNN', { skip: noAddon }, () => {
    const r = env(undefined, { ONEDNN_MAX_CPU_ISA: 'AVX2', DNNL_MAX_CPU_ISA: 'AVX2' });
    assert.equal(r.status, 0, r.stderr);
    const n = (JSON.parse(r.stdout) as { native: Record<string, string> }).native;
    assert.match(n.simd, /^(avx512|avx2|avx|sse)$/);
    // Capped at AVX2, oneDNN runs AVX2 on any CPU that has it (and something narrower on one that does not).
    assert.match(n.dnnlIsa, /^(avx2|avx|sse41)$/);
    assert.ok(n.openblasCore.length > 0);
  });
});
