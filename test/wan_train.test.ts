/**
 * Wan end to end: `dcvg run wan` reproduces the fixture outputs from files; a tiny T2V DiT overfits one latent clip
 * with the flow-matching objective and AdamW; UniPC + CFG sampling from the API.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../src/index.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { WanModel, parseWanConfig, generateLatents } from '../src/models/wan/index.js';
import { flowMatchInputs, flowMatchLoss, trainingGrid } from '../src/diffusion/flow_matching.js';
import { Rng } from '../src/tensor/random.js';
import { assertClose, fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

describe('dcvg run wan', { skip: skipUnlessFixture('wan/wan_fixtures.json') }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-wan-'));
  for (const name of ['wan_t2v_base_tiny', 'wan_t2v_dc_tiny', 'wan_i2v_dc_tiny']) {
    it(`${name}: out matches the reference`, () => {
      const o = join(dir, `${name}.safetensors`);
      const r = spawnSync(
        process.execPath,
        [bin, 'run', 'wan', '--config', `${fixturePath('wan/wan_fixtures.json')}#${name}`, '--weights', fixturePath(`wan/${name}.weights.safetensors`), '--inputs', fixturePath(`wan/${name}.io.safetensors`), '-o', o],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      assertClose(SafetensorsFile.open(o).tensor('out'), SafetensorsFile.open(fixturePath(`wan/${name}.io.safetensors`)).tensor('out'), 1e-4, name);
    });
  }
});

describe('training and sampling a tiny T2V DiT', () => {
  const cfg = parseWanConfig({ model_type: 't2v', patch_size: [1, 1, 1], text_len: 8, in_dim: 8, dim: 32, ffn_dim: 64, freq_dim: 32, text_dim: 16, out_dim: 8, num_heads: 2, num_layers: 2 });
  const build = () => {
    const m = new WanModel(cfg);
    m.initRandom(3, 0.05);
    for (const [k, p] of m.namedParams()) if (/norm.*weight$/.test(k)) p.set(T.ones(p.shape));
    return m;
  };

  it('overfits one latent clip: the flow-matching loss falls by more than 10x with AdamW', () => {
    const m = build();
    const rng = new Rng(1);
    const x0 = T.randn([1, 8, 2, 4, 4], rng);
    const ctx = [T.randn([5, 16], rng)];
    const noise = T.randn([1, 8, 2, 4, 4], rng);
    const grid = trainingGrid(5);
    const inp = flowMatchInputs(x0, noise, [600], grid);
    const opt = new T.AdamW(m.parameters(), { lr: 3e-3, weightDecay: 0 });
    const losses: number[] = [];
    for (let s = 0; s < 150; s++) {
      const pred = m.forward(inp.noisy, inp.t, ctx);
      const loss = flowMatchLoss(pred, inp.target, inp.weights);
      losses.push(loss.item());
      opt.zeroGrad();
      loss.backward();
      T.clipGradNorm(m.parameters(), 1.0);
      opt.step();
    }
    const first = losses[0]!;
    const last = Math.min(...losses.slice(-10));
    assert.ok(Number.isFinite(last) && last < first / 10, `loss ${first.toFixed(4)} -> ${last.toFixed(4)}`);
  });

  it('samples with UniPC + CFG: deterministic per seed, finite, right shape, guidance matters', () => {
    const m = build();
    const ctx = [T.randn([5, 16], 7)];
    const nul = [T.zeros([8, 16])];
    const run = (g: number, seed: number) => generateLatents(m, { shape: [1, 8, 2, 4, 4], context: ctx, nullContext: nul, guidance: g, steps: 6, shift: 5, seed });
    const a = run(5, 42);
    const b = run(5, 42);
    assert.deepEqual(a.shape, [1, 8, 2, 4, 4]);
    assert.deepEqual(a.toArray(), b.toArray());
    assert.ok(a.toArray().every(Number.isFinite));
    assert.notDeepEqual(run(1, 42).toArray(), a.toArray());
    assert.notDeepEqual(run(5, 43).toArray(), a.toArray());
  });

  it('CFG as one forward of the doubled batch gives what two forwards give (t2v and i2v, two samples)', () => {
    const m = build();
    const ctx = [T.randn([5, 16], 7), T.randn([8, 16], 8)];
    const nul = [T.zeros([8, 16]), T.zeros([3, 16])];
    const run = (cfgBatch: boolean | 'auto') => generateLatents(m, { shape: [2, 8, 2, 4, 4], context: ctx, nullContext: nul, guidance: 5, steps: 4, shift: 5, seed: 3, cfgBatch });
    const two = run(false);
    const one = run(true);
    // The rows of a doubled batch meet the same arithmetic, but a GEMM may block (and so sum) a taller matrix in
    // another order (oneDNN's AVX2 path does): each forward's outputs may then differ by the dot-product rounding
    // bound, gamma_K = K eps / (1 - K eps) relative for the longest reduction K, and CFG's v_u + w (v_c - v_u) scales a
    // difference by up to 1 + 2w per step. The bound over the steps, relative to the result's magnitude:
    const within = (a: T.Tensor, b: T.Tensor, steps: number, w: number, K: number, what: string) => {
      const eps = 2 ** -24;
      const gamma = (K * eps) / (1 - K * eps);
      const x = a.toArray();
      const y = b.toArray();
      const scale = Math.max(...x.map(Math.abs));
      const diff = Math.max(...x.map((v, i) => Math.abs(v - y[i]!)));
      const tol = steps * (1 + 2 * w) * gamma * scale;
      assert.ok(diff <= tol, `${what}: max difference ${diff} over the bound ${tol}`);
    };
    within(one, two, 4, 5, 64, 't2v');
    assert.deepEqual(run('auto').toArray(), one.toArray(), "'auto' batches this small a problem");
    const i2v = parseWanConfig({ model_type: 'i2v', patch_size: [1, 1, 1], text_len: 8, in_dim: 12, dim: 32, ffn_dim: 64, freq_dim: 32, text_dim: 16, out_dim: 8, num_heads: 2, num_layers: 1 });
    const mi = new WanModel(i2v);
    mi.initRandom(5, 0.1);
    const cond = { y: T.randn([2, 4, 2, 4, 4], 9), clipFea: T.randn([2, 3, 1280], 10) };
    const ri = (cfgBatch: boolean) => generateLatents(mi, { shape: [2, 8, 2, 4, 4], context: ctx, nullContext: nul, guidance: 4, steps: 3, shift: 3, seed: 1, cond, cfgBatch });
    within(ri(true), ri(false), 3, 4, 1280, 'i2v'); // the image embedding's first linear reduces over image_dim 1280
  });
});
