/**
 * Smoke test of `npm run bench:generate` (bench/generate.ts) in its --tiny mode: the JSON it prints has the documented
 * shape, the token counts follow the latent rules of spec §4.6 (DC-AE-V f32t4c32 with patch 1 vs the Wan VAE f8t4c16
 * with patch 1x2x2) and the bounds are computed from them. Nothing here depends on how fast the machine is: times are
 * only checked to be positive and finite, and the speed-up to be the ratio of the two reported step times.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { getNativeAddon } from '../src/backend/index.js';
import { repoRoot } from './helpers.js';
import { ditConfig, fitTime, forwardFlops, geometries, pixelFrames } from '../bench/generate.js';

const script = join(repoRoot, 'dist', 'bench', 'generate.js');
const skip = getNativeAddon() ? false : process.env.CI ? false : 'native addon not built';

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const positive = (v: unknown, what: string) => assert.ok(typeof v === 'number' && Number.isFinite(v) && v > 0, `${what}: ${String(v)}`);

describe('bench:generate', () => {
  it('latent and token shapes follow spec §4.6 (480x832 and 720x1280, 81 requested frames)', () => {
    // spec §4.6: DC-AE-V 32x20x15x26 = 7,800 tokens vs Wan VAE 16x21x60x104 / (2x2) = 32,760 at 480x832; 32x20x22x40
    // (704x1280 output) = 17,600 vs 16x21x90x160 / (2x2) = 75,600 at 720x1280
    const a = geometries(81, 480, 832);
    assert.deepEqual(a.dc.latent, [32, 20, 15, 26]);
    assert.equal(a.dc.tokens, 20 * 15 * 26);
    assert.deepEqual([a.dc.frames, a.dc.height, a.dc.width], [80, 480, 832]);
    assert.deepEqual(a.base.latent, [16, 21, 60, 104]);
    assert.deepEqual(a.base.grid, [21, 30, 52]);
    assert.equal(a.base.tokens, 21 * 30 * 52);
    const b = geometries(81, 720, 1280);
    assert.deepEqual(b.dc.latent, [32, 20, 22, 40]);
    assert.deepEqual([b.dc.frames, b.dc.height, b.dc.width], [80, 704, 1280]);
    assert.deepEqual(b.base.latent, [16, 21, 90, 160]);
    assert.equal(b.base.tokens, 21 * 45 * 80);
  });

  it('the FLOP model: attention quadratic in tokens, linears linear, and the FLOP bound between the two bounds', () => {
    const c = ditConfig('base', 2, false);
    const f1 = forwardFlops(c, 1000);
    const f2 = forwardFlops(c, 2000);
    const N = (n: number) => forwardFlops(c, n);
    // second differences: the quadratic part is 2 layers x 4 N^2 D; exact in doubles for these integer sizes
    assert.equal(N(3000).attention - 2 * f2.attention + f1.attention, 2 * 4 * 1000 * 1000 * c.dim * 2);
    assert.equal(N(3000).linear - 2 * f2.linear + f1.linear, 0);
    const g = geometries(81, 480, 832);
    const bound = g.base.tokens / g.dc.tokens;
    const flopBound = forwardFlops(ditConfig('base', 1, false), g.base.tokens).total / forwardFlops(ditConfig('dc', 1, false), g.dc.tokens).total;
    assert.ok(flopBound > bound && flopBound < bound * bound, `FLOP bound ${flopBound} outside (${bound}, ${bound * bound})`);
  });

  it('the time fit of the decodes: a line through the points, through the origin with one point', () => {
    // points on T = 3 + 5 n: slope and intercept recovered (sums of small integers: exact up to rounding of the
    // means, so to 1e-12); one point (2, 10): through the origin, b = 5
    const f = fitTime([1, 2, 4].map((n) => ({ n, t: 3 + 5 * n })));
    assert.ok(Math.abs(f.b - 5) < 1e-12 && Math.abs(f.a - 3) < 1e-12 && f.maxRel < 1e-12, JSON.stringify(f));
    const g = fitTime([{ n: 2, t: 10 }]);
    assert.deepEqual([g.a, g.b, g.maxRel], [0, 5, 0]);
    // a point off the line shows as a residual
    assert.ok(fitTime([{ n: 1, t: 8 }, { n: 2, t: 13 }, { n: 3, t: 30 }]).maxRel > 0.1);
    // pixel frames of n latents: 4 per latent for DC-AE-V, 1 + 4 (n - 1) for the causal Wan VAE (21 latents -> 81)
    assert.deepEqual([pixelFrames('dc', 20), pixelFrames('base', 21), pixelFrames('base', 1)], [80, 81, 1]);
  });

  it('--decode-latents: decodes of the first n latents at the size itself, extrapolated in time', { skip }, () => {
    const r = run(['--tiny', '--json', '--no-dit', '--decode-latents', '1,2']);
    assert.equal(r.status, 0, r.stderr);
    const dec = (JSON.parse(r.stdout) as { rows: { decode: Record<string, { time_fit: { points: { latents: number; frames: number; push_ms: number[] }[]; latents: number; per_latent_ms: number; decode_cpu_ms: number } }> }[] }).rows[0]!.decode;
    for (const side of ['dc', 'base']) {
      const t = dec[side]!.time_fit;
      assert.deepEqual(t.points.map((p) => p.latents), [1, 2]);
      // 9 requested frames: DC-AE-V 2 latents (4 frames each), the Wan VAE 3 (1, then 4 frames each)
      assert.deepEqual(t.points.map((p) => p.frames), side === 'dc' ? [4, 8] : [1, 5]);
      assert.equal(t.latents, side === 'dc' ? 2 : 3);
      // timed calls: the Wan VAE one push per latent, then finish; DC-AE-V one push of the partial chunk (which it
      // only buffers), then finish (which decodes it)
      assert.equal(t.points[1]!.push_ms.length, side === 'dc' ? 2 : 3);
      positive(t.decode_cpu_ms, `${side} decode_cpu_ms`);
    }
  });

  it('--tiny --json: the JSON shape, the token counts and the bounds', { skip }, () => {
    const saved = join(mkdtempSync(join(tmpdir(), 'dcvg-bench-generate-')), 'out.json');
    const r = run(['--tiny', '--json', '--json-out', saved]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(readFileSync(saved, 'utf8')), JSON.parse(r.stdout));
    // --render reprints the tables of a saved result without running anything
    const md = run(['--render', saved]);
    assert.equal(md.status, 0, md.stderr);
    assert.match(md.stdout, /\| 64x64 \| DC-VideoGen \(8x64x64\) \| 32x2x2x2 \| 1x1x1 \| 8 \|/);
    rmSync(dirname(saved), { recursive: true, force: true });
    const out = JSON.parse(r.stdout) as {
      machine: Record<string, unknown>;
      config: Record<string, unknown>;
      rows: {
        size: string;
        bounds: Record<string, number>;
        dit: Record<string, Record<string, unknown>> & { speedup_step: number };
        decode: Record<string, Record<string, unknown>>;
        pipeline_estimate: unknown;
      }[];
    };
    assert.equal(typeof out.machine.cpu, 'string');
    for (const k of ['load_avg_start', 'load_avg_end']) assert.equal((out.machine[k] as number[]).length, 3, k);
    assert.equal(out.config.tiny, true);
    assert.equal(out.config.forwards_per_step, 2);
    assert.equal(out.rows.length, 1);
    const row = out.rows[0]!;
    assert.equal(row.size, '64x64');
    // 9 requested frames at 64x64: DC-AE-V takes 8 frames -> 2 latents of 2x2, one token each = 8; the Wan VAE takes
    // 9 frames -> 3 latents of 8x8, patch 2x2 -> 4x4 tokens each = 48
    assert.equal(row.bounds.tokens_dc, 8);
    assert.equal(row.bounds.tokens_base, 48);
    assert.equal(row.bounds.token_bound, 6);
    assert.equal(row.bounds.attention_bound, 36);
    assert.ok(row.bounds.flop_bound! > 1 && row.bounds.flop_bound! < 36, `flop bound ${row.bounds.flop_bound}`);
    for (const side of ['dc', 'base']) {
      const d = row.dit[side]!;
      assert.equal(d.tokens, side === 'dc' ? 8 : 48);
      assert.deepEqual(d.patch, side === 'dc' ? [1, 1, 1] : [1, 2, 2]);
      for (const k of ['forward_ms', 'forward_cpu_ms', 'step_ms', 'step_cfg_ms', 'peak_rss_mb', 'params', 'gflop_forward']) positive(d[k], `${side}.${k}`);
      assert.equal(d.step_cfg_computed, false);
      const dec = row.decode[side]!;
      assert.equal(dec.frames, side === 'dc' ? 8 : 9);
      assert.equal(dec.extrapolated, false);
      for (const k of ['decode_ms', 'decode_cpu_ms_measured', 'peak_rss_mb', 'params']) positive(dec[k], `decode ${side}.${k}`);
    }
    const dc = row.dit.dc!;
    const base = row.dit.base!;
    // the reported speed-up is the ratio of the reported (rounded) step times, to its 2 decimals
    assert.ok(Math.abs(row.dit.speedup_step - (base.step_cfg_ms as number) / (dc.step_cfg_ms as number)) <= 0.005 + 1e-9);
    assert.equal(row.pipeline_estimate, null); // no whole-pipeline extrapolation of the tiny model
  });

  it('--guidance 1 times one forward and reports a CFG step as two; markdown names the bounds', { skip }, () => {
    const r = run(['--tiny', '--guidance', '1', '--no-decode']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\| size \| side \| latent/);
    assert.match(r.stdout, /\(2 x forward\)/);
    assert.match(r.stdout, /\| 6x \|/); // the token bound of the tiny case
    assert.match(r.stdout, /load average/);
    const bad = run(['--tiny', '--sizes', '16x16']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /too small/);
  });
});
