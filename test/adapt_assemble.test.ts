/**
 * Assemble (spec §5.3, src/adapt/assemble.ts, `dcvg adapt assemble`): the new DiT copies exactly the listed base keys
 * (the same tensors, dtype kept), every other key is the aligned patch embedder or the zero head, and at step 0 the
 * model outputs v = 0 exactly (head.head is zero, so its output is 0 + 0 whatever its input).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ASSEMBLE_BASE_PREFIXES, assembleDcDiT, readAlignedPatch } from '../src/adapt/assemble.js';
import { adaptAssembleMain } from '../src/cli/adapt_merge_cmds.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { WanModel, loadWanWeights, parseWanConfig, resolveWanConfig, wanConfigToJson, type WanConfig } from '../src/models/wan/index.js';
import { randn } from '../src/tensor/random.js';
import { noGrad } from '../src/tensor/tensor.js';

function baseConfig(type: 't2v' | 'i2v'): WanConfig {
  return parseWanConfig({ name: `tiny-${type}`, model_type: type, patch_size: [1, 2, 2], text_len: 6, in_dim: type === 'i2v' ? 36 : 16, dim: 32, ffn_dim: 48, freq_dim: 16, text_dim: 12, out_dim: 16, num_heads: 2, num_layers: 2, image_dim: 8 });
}

function baseModel(type: 't2v' | 'i2v'): WanModel {
  const m = new WanModel(baseConfig(type));
  m.initRandom(7, 0.1);
  // non-zero biases and norms, so a copy from the wrong place would show
  m.loadStateDict(new Map([...m.stateDict()].map(([k, v]) => [k, v.ndim === 1 ? randn([...v.shape], k.length, 0.1) : v])));
  return m;
}

function patchFor(cin: number) {
  return { weight: randn([32, cin, 1, 1, 1], 11, 0.1), bias: randn([32], 12, 0.1) };
}

function run(m: WanModel, type: 't2v' | 'i2v'): Float32Array {
  const x = randn([1, 32, 2, 3, 3], 21);
  const opts = type === 'i2v' ? { y: randn([1, 36, 2, 3, 3], 22), clipFea: randn([1, 4, 8], 23) } : {};
  return noGrad(() => m.forward(x, [500], [randn([5, 12], 24)], opts)).readSync();
}

describe('assemble a DC-VideoGen DiT', () => {
  for (const type of ['t2v', 'i2v'] as const) {
    it(`${type}: copies exactly the listed keys; the rest is the aligned patch embedder or the zero head; v = 0 at step 0`, () => {
      const base = baseModel(type);
      const bsd = base.stateDict();
      const patch = patchFor(type === 'i2v' ? 68 : 32);
      const a = assembleDcDiT(base, patch);
      assert.deepEqual(a.config.patch_size, [1, 1, 1]);
      assert.equal(a.config.in_dim, type === 'i2v' ? 68 : 32);
      assert.equal(a.config.out_dim, 32);
      const prefixes = type === 'i2v' ? [...ASSEMBLE_BASE_PREFIXES, 'img_emb'] : [...ASSEMBLE_BASE_PREFIXES];
      const listed = [...bsd.keys()].filter((k) => prefixes.some((p) => k === p || k.startsWith(`${p}.`)));
      assert.deepEqual([...a.copied].sort(), listed.sort());
      if (type === 'i2v') assert.ok(a.copied.includes('img_emb.proj.1.weight'));
      assert.ok(a.copied.includes('head.modulation') && a.copied.includes('blocks.1.cross_attn.norm_q.weight') && a.copied.includes('time_projection.1.weight'));
      // the base keys not copied are exactly the old patch embedder and head
      assert.deepEqual([...bsd.keys()].filter((k) => !a.copied.includes(k)).sort(), ['head.head.bias', 'head.head.weight', 'patch_embedding.bias', 'patch_embedding.weight']);
      for (const k of a.copied) assert.equal(a.weights.get(k), bsd.get(k), `${k} is the base's tensor`);
      const fresh = [...a.weights.keys()].filter((k) => !a.copied.includes(k)).sort();
      assert.deepEqual(fresh, ['head.head.bias', 'head.head.weight', 'patch_embedding.bias', 'patch_embedding.weight']);
      assert.equal(a.weights.get('patch_embedding.weight'), patch.weight);
      assert.equal(a.weights.get('patch_embedding.bias'), patch.bias);
      assert.ok(a.weights.get('head.head.weight')!.readSync().every((v) => v === 0) && a.weights.get('head.head.bias')!.readSync().every((v) => v === 0));
      const m = new WanModel(a.config);
      m.loadStateDict(a.weights); // strict: every key and shape of the new model
      const y = run(m, type);
      assert.deepEqual([...y.slice(0, 4)], [0, 0, 0, 0]);
      assert.ok(y.every((v) => v === 0), 'v = 0 at step 0');
      // and the zero head is what makes it so: a non-zero head gives a non-zero output
      m.loadStateDict(new Map([...a.weights].map(([k, v]) => [k, k === 'head.head.bias' ? randn([32], 3) : v])));
      assert.ok(run(m, type).some((v) => v !== 0));
    });
  }

  it('keeps the base dtype (a bf16 base stays bf16) and refuses embedders of the wrong shape', () => {
    const base = baseModel('t2v');
    const bsd = new Map([...base.stateDict()].map(([k, v]) => [k, v.to('bf16')]));
    const a = assembleDcDiT({ config: base.config, weights: bsd }, patchFor(32));
    assert.equal(a.weights.get('blocks.0.self_attn.q.weight')!.dtype, 'bf16');
    assert.throws(() => assembleDcDiT(base, { weight: randn([16, 32, 1, 1, 1], 1), bias: randn([16], 2) }), /weight is \[16, 32, 1, 1, 1\]; expected \[32, Cin, 1, 1, 1\]/);
    assert.throws(() => assembleDcDiT(base, { weight: randn([32, 32, 1, 2, 2], 1), bias: randn([32], 2) }), /kernel 1x1x1/);
    assert.throws(() => assembleDcDiT(base, patchFor(16)), /takes 16 channels; a T2V DC-VideoGen DiT takes 32/);
    assert.equal(assembleDcDiT(base, patchFor(16), { inDim: 16 }).config.in_dim, 16);
    assert.throws(() => assembleDcDiT(base, { weight: randn([32, 32, 1, 1, 1], 1), bias: randn([31], 2) }), /bias is \[31\]; expected \[32\]/);
  });

  it('dcvg adapt assemble: base file + phase-1 output -> a folder loadWanWeights loads (Wan and diffusers keys)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-assemble-'));
    try {
      const base = baseModel('t2v');
      const bp = join(dir, 'base.safetensors');
      saveSafetensors(bp, base.stateDict(), { metadata: { config: JSON.stringify({ name: 'tiny-t2v', ...wanConfigToJson(base.config) }) } });
      const patch = patchFor(32);
      const pp = join(dir, 'phase1.safetensors');
      saveSafetensors(pp, { weight: patch.weight, bias: patch.bias });
      const pp2 = join(dir, 'phase1b.safetensors');
      saveSafetensors(pp2, { 'patch_embedding.weight': patch.weight, 'patch_embedding.bias': patch.bias });
      assert.deepEqual(readAlignedPatch(pp2).weight.readSync(), patch.weight.readSync());
      let text = '';
      const out = (s: string) => void (text += s);
      assert.equal(adaptAssembleMain(['--base', bp, '--patch', pp, '-o', join(dir, 'dc')], out), 0);
      assert.match(text, /assembled tiny-t2v-dc \(in 32, out 32, patch 1x1x1/);
      assert.deepEqual(readdirSync(join(dir, 'dc')).sort(), ['config.json', 'model.safetensors']);
      const cfg = resolveWanConfig(join(dir, 'dc', 'config.json'));
      const m = new WanModel(cfg);
      loadWanWeights(m, join(dir, 'dc'));
      assert.ok(run(m, 't2v').every((v) => v === 0));
      assert.equal(adaptAssembleMain(['--base', bp, '--patch', pp2, '-o', join(dir, 'dcd'), '--format', 'diffusers'], out), 0);
      const dcfg = JSON.parse(readFileSync(join(dir, 'dcd', 'config.json'), 'utf8')) as { in_channels: number; patch_size: number[] };
      assert.equal(dcfg.in_channels, 32);
      assert.deepEqual(dcfg.patch_size, [1, 1, 1]);
      assert.equal(loadWanWeights(new WanModel(cfg), join(dir, 'dcd')).format, 'diffusers');
      // bad input writes nothing
      // the base's own 1x2x2 embedder is no phase-1 output; a file without an embedder is named
      assert.throws(() => adaptAssembleMain(['--base', bp, '--patch', bp, '-o', join(dir, 'bad')], out), /weight is \[32, 16, 1, 2, 2\]; expected \[32, Cin, 1, 1, 1\]/);
      const junk = join(dir, 'junk.safetensors');
      saveSafetensors(junk, { foo: patch.bias });
      assert.throws(() => adaptAssembleMain(['--base', bp, '--patch', junk, '-o', join(dir, 'bad')], out), /junk\.safetensors: no phase-1 patch embedder/);
      assert.ok(!existsSync(join(dir, 'bad')));
      assert.throws(() => adaptAssembleMain(['--base', bp, '-o', join(dir, 'bad')], out), /needs --base DIT, --patch PHASE1_OUT and -o OUT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
