/**
 * Wan-2.1 DiT against the reference fixtures (../shared/fixtures/wan, official wan/modules/model.py), gradients of
 * the DC-VideoGen layout, Wan <-> diffusers key names, preset parameter counts (shape-only) and input errors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withBackend } from '../src/backend/index.js';
import * as T from '../src/index.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { ShapeError, StateDictError, ValueError } from '../src/errors.js';
import { Tensor } from '../src/tensor/tensor.js';
import {
  WAN_PRESET_NAMES,
  WanModel,
  detectWanKeyFormat,
  diffusersKeyToWan,
  diffusersStateDictToWan,
  loadWanWeights,
  parseWanConfig,
  resolveWanConfig,
  wanRopeAxisDims,
  runWan,
  wanKeyToDiffusers,
  wanPreset,
  wanRopeTables,
  wanStateDictToDiffusers,
  type WanConfig,
} from '../src/models/wan/index.js';
import { assertClose, fixturePath, relErr, requireBackend, skipUnlessFixture, testBackends } from './helpers.js';

const FWD_TOL = 1e-4;
const GRAD_TOL = 1e-3;
const dir = 'wan';
const skip = skipUnlessFixture(`${dir}/wan_fixtures.json`);
const NAMES = ['wan_t2v_base_tiny', 'wan_t2v_dc_tiny', 'wan_i2v_dc_tiny'] as const;

function fixtureConfig(name: string): WanConfig {
  const all = JSON.parse(readFileSync(fixturePath(`${dir}/wan_fixtures.json`), 'utf8')) as Record<string, unknown>;
  return parseWanConfig(all[name], name);
}

function fixtureModel(name: string): WanModel {
  const m = new WanModel(fixtureConfig(name));
  loadWanWeights(m, fixturePath(`${dir}/${name}.weights.safetensors`));
  return m;
}

interface Io {
  x: Tensor;
  t: Tensor;
  context: Tensor[];
  y: Tensor | null;
  clip: Tensor | null;
  file: SafetensorsFile;
}

function fixtureIo(name: string): Io {
  const f = SafetensorsFile.open(fixturePath(`${dir}/${name}.io.safetensors`));
  const context = [];
  for (let i = 0; f.has(`context${i}`); i++) context.push(f.tensor(`context${i}`));
  return {
    x: f.tensor('x'),
    t: f.tensor('t'),
    context,
    y: f.has('y') ? f.tensor('y') : null,
    clip: f.has('clip_fea') ? f.tensor('clip_fea') : null,
    file: f,
  };
}

describe('Wan-2.1 DiT fixtures (official wan/modules/model.py)', { skip }, () => {
  for (const name of NAMES) {
    it(`${name}: model keys and shapes equal the fixture state dict`, () => {
      const m = new WanModel(fixtureConfig(name));
      const f = SafetensorsFile.open(fixturePath(`${dir}/${name}.weights.safetensors`));
      try {
        assert.deepEqual(
          [...m.shapes()].map(([k, s]) => `${k} ${s.join('x')}`),
          f.keys().map((k) => `${k} ${f.info(k).shape.join('x')}`),
        );
      } finally {
        f.close();
      }
    });
  }

  for (const be of testBackends()) {
    describe(`backend ${be.name}`, { skip: be.skip }, () => {
      for (const name of NAMES) {
        it(`${name}: forward matches the reference output`, (t) => {
          withBackend(requireBackend(be.backend), () => {
            const m = fixtureModel(name);
            const io = fixtureIo(name);
            const out = T.noGrad(() => m.forward(io.x, io.t, io.context, { y: io.y, clipFea: io.clip }));
            const ref = io.file.tensor('out');
            t.diagnostic(`max rel err ${relErr(out.readSync(), ref.readSync()).toExponential(2)}`);
            assertClose(out, ref, FWD_TOL, `${name} out`);
            io.file.close();
          });
        });
      }

      it('wan_t2v_dc_tiny: gradients of sum(out * grad_out) for every parameter and x', (t) => {
        withBackend(requireBackend(be.backend), () => {
          const m = fixtureModel('wan_t2v_dc_tiny');
          const io = fixtureIo('wan_t2v_dc_tiny');
          const x = T.parameter(io.x);
          const out = m.forward(x, io.t, io.context);
          assertClose(out, io.file.tensor('out'), FWD_TOL, 'out (with grad)');
          out.backward(io.file.tensor('grad_out'));
          let worst = 0;
          let worstKey = '';
          const check = (key: string, g: Tensor | null) => {
            assert.ok(g, `${key}: no gradient`);
            const ref = io.file.tensor(`grad.${key}`);
            const e = relErr(g.readSync(), ref.readSync());
            if (e > worst) [worst, worstKey] = [e, key];
            assertClose(g, ref, GRAD_TOL, `grad.${key}`);
          };
          const params = m.namedParams();
          for (const [k, p] of params) check(k, p.value.grad);
          check('x', x.grad);
          const gradKeys = io.file.keys().filter((k) => k.startsWith('grad.'));
          assert.equal(gradKeys.length, params.length + 1, 'fixture has a gradient for every parameter and x');
          t.diagnostic(`${gradKeys.length} gradients; max rel err ${worst.toExponential(2)} (${worstKey})`);
          io.file.close();
        });
      });
    });
  }

  it('wan_i2v_dc_tiny: every parameter, x, y and clip_fea receive gradients', () => {
    const m = fixtureModel('wan_i2v_dc_tiny');
    const io = fixtureIo('wan_i2v_dc_tiny');
    const x = T.parameter(io.x);
    const y = T.parameter(io.y!);
    const clip = T.parameter(io.clip!);
    const out = m.forward(x, io.t, io.context, { y, clipFea: clip });
    out.backward(io.file.tensor('out'));
    for (const [k, p] of m.namedParams()) assert.ok(p.value.grad && p.value.grad.readSync().some((v) => v !== 0), `${k} has no gradient`);
    for (const [k, v] of [
      ['x', x],
      ['y', y],
      ['clip_fea', clip],
    ] as const)
      assert.ok(v.grad && v.grad.readSync().some((g) => g !== 0), `${k} has no gradient`);
    io.file.close();
  });

  it('samples are independent: each sample alone gives its slice of the batched output', () => {
    const m = fixtureModel('wan_i2v_dc_tiny');
    const io = fixtureIo('wan_i2v_dc_tiny');
    const ref = io.file.tensor('out');
    for (let b = 0; b < 2; b++) {
      const one = (v: Tensor) => v.slice(0, b, b + 1);
      const out = T.noGrad(() => m.forward(one(io.x), one(io.t), [io.context[b]!], { y: one(io.y!), clipFea: one(io.clip!) }));
      assertClose(out, one(ref).contiguous(), FWD_TOL, `sample ${b}`);
    }
    io.file.close();
  });

  it('a prepared context (embedded text, cross-attention keys and values made once) gives the same output bit for bit', () => {
    for (const name of NAMES) {
      const m = fixtureModel(name);
      const io = fixtureIo(name);
      const cond = { y: io.y, clipFea: io.clip };
      T.noGrad(() => {
        const raw = m.forward(io.x, io.t, io.context, cond).readSync();
        const prepared = m.prepareContext(io.context, io.x.shape[0]!, cond);
        // twice with one prepared context: what a sampler does with it
        for (let i = 0; i < 2; i++) assert.deepEqual(m.forward(io.x, io.t, prepared, { y: io.y }).readSync(), raw, `${name} pass ${i}`);
        assertClose(m.forward(io.x, io.t, prepared, { y: io.y }), io.file.tensor('out'), FWD_TOL, `${name} out`);
      });
      io.file.close();
    }
  });

  it('runWan reads config, weights and inputs from files', () => {
    for (const name of NAMES) {
      const out = runWan(`${fixturePath(`${dir}/wan_fixtures.json`)}#${name}`, fixturePath(`${dir}/${name}.weights.safetensors`), fixturePath(`${dir}/${name}.io.safetensors`));
      const f = SafetensorsFile.open(fixturePath(`${dir}/${name}.io.safetensors`));
      assertClose(out, f.tensor('out'), FWD_TOL, `runWan ${name}`);
      f.close();
    }
  });
});

// -----------------------------------------------------------------------------------------------------------------

describe('Wan <-> diffusers key names', () => {
  const expected: [string, string][] = [
    ['patch_embedding.weight', 'patch_embedding.weight'],
    ['time_embedding.0.weight', 'condition_embedder.time_embedder.linear_1.weight'],
    ['time_embedding.2.bias', 'condition_embedder.time_embedder.linear_2.bias'],
    ['time_projection.1.weight', 'condition_embedder.time_proj.weight'],
    ['text_embedding.0.bias', 'condition_embedder.text_embedder.linear_1.bias'],
    ['text_embedding.2.weight', 'condition_embedder.text_embedder.linear_2.weight'],
    ['img_emb.proj.0.weight', 'condition_embedder.image_embedder.norm1.weight'],
    ['img_emb.proj.1.weight', 'condition_embedder.image_embedder.ff.net.0.proj.weight'],
    ['img_emb.proj.3.bias', 'condition_embedder.image_embedder.ff.net.2.bias'],
    ['img_emb.proj.4.bias', 'condition_embedder.image_embedder.norm2.bias'],
    ['blocks.7.modulation', 'blocks.7.scale_shift_table'],
    ['blocks.0.self_attn.q.weight', 'blocks.0.attn1.to_q.weight'],
    ['blocks.0.self_attn.k.bias', 'blocks.0.attn1.to_k.bias'],
    ['blocks.0.self_attn.v.weight', 'blocks.0.attn1.to_v.weight'],
    ['blocks.0.self_attn.o.weight', 'blocks.0.attn1.to_out.0.weight'],
    ['blocks.0.self_attn.norm_q.weight', 'blocks.0.attn1.norm_q.weight'],
    ['blocks.0.self_attn.norm_k.weight', 'blocks.0.attn1.norm_k.weight'],
    ['blocks.12.cross_attn.q.weight', 'blocks.12.attn2.to_q.weight'],
    ['blocks.12.cross_attn.o.bias', 'blocks.12.attn2.to_out.0.bias'],
    ['blocks.12.cross_attn.norm_k.weight', 'blocks.12.attn2.norm_k.weight'],
    ['blocks.12.cross_attn.k_img.weight', 'blocks.12.attn2.add_k_proj.weight'],
    ['blocks.12.cross_attn.v_img.bias', 'blocks.12.attn2.add_v_proj.bias'],
    ['blocks.12.cross_attn.norm_k_img.weight', 'blocks.12.attn2.norm_added_k.weight'],
    ['blocks.3.norm3.weight', 'blocks.3.norm2.weight'],
    ['blocks.3.norm3.bias', 'blocks.3.norm2.bias'],
    ['blocks.3.ffn.0.weight', 'blocks.3.ffn.net.0.proj.weight'],
    ['blocks.3.ffn.2.bias', 'blocks.3.ffn.net.2.bias'],
    ['head.head.weight', 'proj_out.weight'],
    ['head.head.bias', 'proj_out.bias'],
    ['head.modulation', 'scale_shift_table'],
  ];

  it('names follow the diffusers rename table in both directions', () => {
    for (const [w, d] of expected) {
      assert.equal(wanKeyToDiffusers(w), d, w);
      assert.equal(diffusersKeyToWan(d), w, d);
    }
    assert.equal(wanKeyToDiffusers('null_embedding'), null);
    assert.throws(() => wanKeyToDiffusers('blocks.0.mystery.weight'), ValueError);
    assert.throws(() => diffusersKeyToWan('transformer_blocks.0.attn1.to_q.weight'), ValueError);
  });

  it('Wan -> diffusers -> Wan is the identity on every preset key set and is one-to-one', () => {
    for (const p of WAN_PRESET_NAMES) {
      const keys = new Map([...new WanModel(wanPreset(p)).shapes()]);
      const diff = wanStateDictToDiffusers(keys);
      assert.equal(diff.size, keys.size, `${p}: distinct diffusers names`);
      assert.equal(detectWanKeyFormat(diff.keys()), 'diffusers');
      assert.equal(detectWanKeyFormat(keys.keys()), 'wan');
      assert.deepEqual([...diffusersStateDictToWan(diff)], [...keys], p);
    }
  });

  it('fixture weights: round trip is the identity, and a diffusers-named file loads to the same outputs', { skip }, () => {
    const tmp = mkdtempSync(join(tmpdir(), 'wan-keys-'));
    try {
      for (const name of NAMES) {
        const f = SafetensorsFile.open(fixturePath(`${dir}/${name}.weights.safetensors`));
        const sd = new Map(f.keys().map((k) => [k, f.tensor(k)] as const));
        f.close();
        const diff = wanStateDictToDiffusers(sd);
        assert.ok(![...diff.keys()].some((k) => /self_attn|cross_attn|modulation|norm3|head\.|ffn\.\d/.test(k)), `${name}: no Wan names left`);
        const back = diffusersStateDictToWan(diff);
        assert.deepEqual([...back.keys()], [...sd.keys()]);
        for (const [k, v] of back) assert.equal(v, sd.get(k), k);

        const p = join(tmp, `${name}.diffusers.safetensors`);
        saveSafetensors(p, diff);
        const m = new WanModel(fixtureConfig(name));
        assert.equal(loadWanWeights(m, p).format, 'diffusers');
        const io = fixtureIo(name);
        const out = T.noGrad(() => m.forward(io.x, io.t, io.context, { y: io.y, clipFea: io.clip }));
        assertClose(out, io.file.tensor('out'), FWD_TOL, `${name} via diffusers names`);
        io.file.close();
      }
      // [562] training layout: every key under `0.`, plus the CFG null embedding.
      const f = SafetensorsFile.open(fixturePath(`${dir}/wan_t2v_dc_tiny.weights.safetensors`));
      const sd = new Map<string, Tensor>(f.keys().map((k) => [`0.${k}`, f.tensor(k)] as const));
      f.close();
      sd.set('0.null_embedding', T.zeros([16, 24]));
      const p = join(tmp, 'prefixed.safetensors');
      saveSafetensors(p, sd);
      const r = loadWanWeights(new WanModel(fixtureConfig('wan_t2v_dc_tiny')), p);
      assert.deepEqual(r.nullEmbedding?.shape, [16, 24]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

// -----------------------------------------------------------------------------------------------------------------

describe('Wan configs and presets', () => {
  const counts: Record<string, number> = {
    'Wan2.1-T2V-1.3B': 1_418_996_800,
    'Wan2.1-T2V-14B': 14_288_491_584,
    'Wan2.1-I2V-14B': 16_394_878_784,
    'DC-VideoGen-Wan2.1-T2V-1.3B': 1_418_898_464,
    'DC-VideoGen-Wan2.1-T2V-14B': 14_288_163_872,
    'DC-VideoGen-Wan2.1-I2V-14B': 16_394_325_792,
  };

  it('preset parameter counts (spec §3.1), built shape-only', () => {
    assert.deepEqual(Object.keys(counts).sort(), [...WAN_PRESET_NAMES].sort());
    for (const [name, n] of Object.entries(counts)) {
      const m = new WanModel(wanPreset(name));
      assert.equal(m.parameterCount(), n, name);
      assert.ok(m.namedParams().every(([, p]) => !p.loaded), `${name}: nothing allocated`);
    }
    const i2v = new WanModel(wanPreset('DC-VideoGen-Wan2.1-I2V-14B')).shapes();
    assert.deepEqual(i2v.get('patch_embedding.weight'), [5120, 68, 1, 1, 1]);
    assert.deepEqual(i2v.get('head.head.weight'), [32, 5120]);
    assert.deepEqual(i2v.get('blocks.39.cross_attn.norm_k_img.weight'), [5120]);
    assert.deepEqual(new WanModel(wanPreset('Wan2.1-T2V-1.3B')).shapes().get('head.head.weight'), [64, 1536]);
  });

  it('parses {config: ...}, bare objects, diffusers config.json and presets alike', () => {
    const bare = { model_type: 't2v', patch_size: [1, 1, 1], text_len: 16, in_dim: 32, dim: 64, ffn_dim: 128, freq_dim: 256, text_dim: 24, out_dim: 32, num_heads: 2, num_layers: 2 };
    assert.deepEqual(parseWanConfig({ config: bare }, 'a'), parseWanConfig(bare, 'a'));
    const diffusers = {
      _class_name: 'WanTransformer3DModel',
      patch_size: [1, 1, 1],
      num_attention_heads: 40,
      attention_head_dim: 128,
      in_channels: 68,
      out_channels: 32,
      text_dim: 4096,
      freq_dim: 256,
      ffn_dim: 13824,
      num_layers: 40,
      cross_attn_norm: true,
      qk_norm: 'rms_norm_across_heads',
      eps: 1e-6,
      image_dim: 1280,
      added_kv_proj_dim: 5120,
      rope_max_seq_len: 1024,
    };
    const { name: _a, ...fromDiff } = parseWanConfig(diffusers);
    const { name: _b, ...preset } = wanPreset('dc-videogen-wan2.1-i2v-14b');
    assert.deepEqual(fromDiff, preset);
    assert.equal(resolveWanConfig('Wan2.1-T2V-14B').dim, 5120);
    assert.deepEqual(wanRopeAxisDims(128), [44, 42, 42]);
    assert.deepEqual(wanRopeAxisDims(32), [12, 10, 10]);
  });

  it('bad configs give ValueErrors', () => {
    assert.throws(() => wanPreset('Wan2.2-T2V-5B'), ValueError);
    assert.throws(() => parseWanConfig({ dim: 64 }), ValueError);
    const ok = { in_dim: 16, dim: 64, ffn_dim: 128, out_dim: 16, num_heads: 2, num_layers: 1 };
    assert.throws(() => parseWanConfig({ ...ok, num_heads: 3 }), ValueError);
    assert.throws(() => parseWanConfig({ ...ok, dim: 66, num_heads: 6 }), /even/);
    assert.throws(() => parseWanConfig({ ...ok, model_type: 'v2v' }), ValueError);
    assert.throws(() => parseWanConfig({ ...ok, model_type: 'i2v' }), /in_dim/);
    assert.throws(() => parseWanConfig({ ...ok, patch_size: [1, 2] }), ValueError);
    assert.throws(() => resolveWanConfig('/nonexistent/wan.json'), ValueError);
  });

  it('RoPE angles: frame, row and column parts of every token', () => {
    const d = 32;
    const { cos, sin } = wanRopeTables([2, 3, 4], d);
    assert.deepEqual(cos.shape, [24, 1, 16, 1]);
    // token (f=1, h=2, w=3) = index (1*3 + 2)*4 + 3 = 23; axis dims 12/10/10 -> 6/5/5 angles
    const n = 23;
    const want = [
      ...Array.from({ length: 6 }, (_, i) => 1 * Math.pow(10000, (-2 * i) / 12)),
      ...Array.from({ length: 5 }, (_, i) => 2 * Math.pow(10000, (-2 * i) / 10)),
      ...Array.from({ length: 5 }, (_, i) => 3 * Math.pow(10000, (-2 * i) / 10)),
    ];
    const c = cos.readSync();
    const s = sin.readSync();
    want.forEach((a, i) => {
      assert.ok(Math.abs(c[n * 16 + i]! - Math.cos(a)) < 1e-7);
      assert.ok(Math.abs(s[n * 16 + i]! - Math.sin(a)) < 1e-7);
    });
  });
});

// -----------------------------------------------------------------------------------------------------------------

describe('Wan input errors', () => {
  const tiny = (type: 't2v' | 'i2v', patch: [number, number, number] = [1, 2, 2]) => {
    const m = new WanModel(
      parseWanConfig({ model_type: type, patch_size: patch, text_len: 4, in_dim: type === 'i2v' ? 12 : 4, dim: 12, ffn_dim: 16, freq_dim: 8, text_dim: 6, out_dim: 4, num_heads: 1, num_layers: 1, image_dim: 8 }),
    );
    m.initRandom(1);
    return m;
  };
  const ctx = (L = 3) => [T.randn([L, 6], 2), T.randn([L, 6], 3)];
  const x = (c = 4, f = 2, h = 4, w = 4) => T.randn([2, c, f, h, w], 4);
  const t = () => T.tensor([500, 10]);

  it('a tiny random model runs (sanity for the checks below)', () => {
    assert.deepEqual(tiny('t2v').forward(x(), t(), ctx()).shape, [2, 4, 2, 4, 4]);
    assert.deepEqual(tiny('t2v').forward(x(), [1, 2], T.randn([2, 4, 6], 5)).shape, [2, 4, 2, 4, 4]);
    const y = T.randn([2, 8, 2, 4, 4], 6);
    assert.deepEqual(tiny('i2v').forward(x(), t(), ctx(), { y, clipFea: T.randn([2, 5, 8], 7) }).shape, [2, 4, 2, 4, 4]);
  });

  it('a prepared context is checked: its model, its batch, and clip_fea given once', () => {
    const m = tiny('t2v');
    const p = m.prepareContext(ctx(), 2);
    assert.throws(() => tiny('t2v').forward(x(), t(), p), (e: unknown) => e instanceof ValueError && /another model/.test(e.message));
    assert.throws(() => m.forward(T.randn([1, 4, 2, 4, 4], 4), [500], p), (e: unknown) => e instanceof ShapeError && /holds 2 samples, x has 1/.test(e.message));
    assert.throws(() => m.prepareContext(ctx(), 3), ShapeError);
    assert.throws(() => m.prepareContext(ctx(), 2, { clipFea: T.randn([2, 5, 8], 7) }), /t2v model .* takes no clip_fea/);
    const i = tiny('i2v');
    const y = T.randn([2, 8, 2, 4, 4], 6);
    const clipFea = T.randn([2, 5, 8], 7);
    assert.throws(() => i.prepareContext(ctx(), 2), /needs clip_fea/);
    const pi = i.prepareContext(ctx(), 2, { clipFea });
    assert.throws(() => i.forward(x(), t(), pi, { y, clipFea }), (e: unknown) => e instanceof ValueError && /give clip_fea to prepareContext/.test(e.message));
    assert.throws(() => i.forward(x(), t(), pi), /needs y/);
    assert.deepEqual(i.forward(x(), t(), pi, { y }).readSync(), i.forward(x(), t(), ctx(), { y, clipFea }).readSync());
  });

  it('wrong channel count, shapes and missing conditioning throw ShapeError', () => {
    const m = tiny('t2v');
    assert.throws(() => m.forward(x(5), t(), ctx()), (e: unknown) => e instanceof ShapeError && /in_dim 4/.test(e.message));
    assert.throws(() => m.forward(T.randn([2, 4, 4, 4], 1), t(), ctx()), ShapeError);
    assert.throws(() => m.forward(x(4, 2, 5, 4), t(), ctx()), /multiples of the patch/);
    assert.throws(() => m.forward(x(), t(), ctx(), { clipFea: T.randn([2, 5, 8], 7) }), ShapeError);
    const i = tiny('i2v');
    assert.throws(() => i.forward(x(), t(), ctx(), { clipFea: T.randn([2, 5, 8], 7) }), /needs y/);
    assert.throws(() => i.forward(x(), t(), ctx(), { y: T.randn([2, 8, 2, 4, 4], 6) }), /clip_fea/);
    assert.throws(() => i.forward(x(), t(), ctx(), { y: T.randn([2, 7, 2, 4, 4], 6), clipFea: T.randn([2, 5, 8], 7) }), /together 11/);
    assert.throws(() => i.forward(x(), t(), ctx(), { y: T.randn([2, 8, 2, 4, 2], 6), clipFea: T.randn([2, 5, 8], 7) }), ShapeError);
    assert.throws(() => i.forward(x(), t(), ctx(), { y: T.randn([2, 8, 2, 4, 4], 6), clipFea: T.randn([2, 5, 9], 7) }), ShapeError);
  });

  it('context longer than text_len, wrong width or count throws ShapeError', () => {
    const m = tiny('t2v');
    assert.throws(() => m.forward(x(), t(), ctx(5)), (e: unknown) => e instanceof ShapeError && /more than text_len 4/.test(e.message));
    assert.throws(() => m.forward(x(), t(), [T.randn([3, 7], 1), T.randn([3, 7], 1)]), ShapeError);
    assert.throws(() => m.forward(x(), t(), [T.randn([3, 6], 1)]), ShapeError);
    assert.throws(() => m.forward(x(), t(), T.randn([2, 5, 6], 1)), ShapeError);
  });

  it('t of the wrong shape or non-finite throws', () => {
    const m = tiny('t2v');
    assert.throws(() => m.forward(x(), T.tensor([500]), ctx()), ShapeError);
    assert.throws(() => m.forward(x(), T.tensor([500, 1, 2]), ctx()), ShapeError);
    assert.throws(() => m.forward(x(), T.tensor([500, 1], [2, 1]), ctx()), ShapeError);
    assert.throws(() => m.forward(x(), T.tensor([500, NaN]), ctx()), ValueError);
  });

  it('weights that do not fit the model throw StateDictError', { skip }, () => {
    const m = new WanModel(fixtureConfig('wan_t2v_base_tiny'));
    assert.throws(() => loadWanWeights(m, fixturePath(`${dir}/wan_t2v_dc_tiny.weights.safetensors`)), StateDictError);
    const i = new WanModel(fixtureConfig('wan_i2v_dc_tiny'));
    assert.throws(() => loadWanWeights(i, fixturePath(`${dir}/wan_t2v_dc_tiny.weights.safetensors`)), (e: unknown) => e instanceof StateDictError && /k_img/.test(e.message));
    assert.throws(() => loadWanWeights(m, '/nonexistent.safetensors'), ValueError);
  });
});
