/**
 * Merging LoRA adapters (src/adapt/merge.ts, `dcvg adapt merge`): the merged forward equals the adapter forward, the
 * merged weights are the same whichever key layout the adapter went through, strength 0 is the base bit for bit, bf16
 * bases stay bf16, phase-3 checkpoints (EMA) merge into a model loadWanWeights loads and runs, and misfits are
 * refused with nothing written.
 *
 * Float bound of the forward comparison: merging replaces W x + s (B (A x)) by (W + s B A) x. Each form is a few
 * f32 dot products of length <= 48 (the widest contraction, ffn_dim) per layer: relative error per layer <= ~2 gamma_48
 * ~ 6e-6 of the sum of |terms| in the worst case, ~1e-7 typically (random signs). Two blocks with ~8 such layers in
 * series give a worst-case growth well under 1e-5 relative on the output norm, which is what is asserted.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LORA_LAYOUTS, loraEntriesOfModel, readLoraFile, writeLoraFile } from '../src/adapt/lora_files.js';
import { mergeAdapterIntoBase, mergeLoraWeights, mergePhase3, mergedWeight, readDiTWeights, wanConfigToDiffusers } from '../src/adapt/merge.js';
import { adaptMergeMain } from '../src/cli/adapt_merge_cmds.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { WanModel, loadWanWeights, parseWanConfig, runWan, wanConfigToJson } from '../src/models/wan/index.js';
import { loraLayers, mergeLora } from '../src/nn/index.js';
import { randn } from '../src/tensor/random.js';
import { Tensor, noGrad } from '../src/tensor/tensor.js';
import { sameBits, tinyDcConfig, tinyLoraModel } from './adapt_helpers.js';
import { repoRoot, torchPython } from './helpers.js';

function torchSkip(): string | false {
  if (!existsSync(torchPython)) return `${torchPython} missing: the PyTorch merge of ComfyUI / kohya files is not tested`;
  const r = spawnSync(torchPython, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  return r.status === 0 ? false : `torch not importable by ${torchPython}: the PyTorch merge of ComfyUI / kohya files is not tested`;
}

/**
 * The merge as ComfyUI (comfy/lora.py) and kohya's tools apply a file, written independently in PyTorch: for each
 * layer, scale = alpha / lora_down.shape[0] (1.0 without an .alpha key), W + strength * scale * (up @ down).
 */
const TORCH_MERGE = `
import sys, re, torch
sys.path.insert(0, sys.argv[1] + '/bench')
from torch_common import load_safetensors, save_safetensors
base = load_safetensors(sys.argv[2]); lora = load_safetensors(sys.argv[3]); s = float(sys.argv[5])
out = dict(base)
for k in lora:
    m = re.match(r'^(?:diffusion_model\.)?(.+)\.(lora_A|lora_down)\.weight$', k)
    if not m: continue
    name, kind = m.group(1), m.group(2)
    up_k = k.replace('lora_A', 'lora_B') if kind == 'lora_A' else k.replace('lora_down', 'lora_up')
    down, up = lora[k], lora[up_k]
    a = lora.get(k[: -len('.' + kind + '.weight')] + '.alpha')
    scale = a.item() / down.shape[0] if a is not None else 1.0
    if name.startswith('lora_unet_'):
        target = [w for w in base if w.endswith('.weight') and w[:-7].replace('.', '_') == name[len('lora_unet_'):]]
        assert len(target) == 1, name
        wk = target[0]
    else:
        wk = name + '.weight'
    out[wk] = base[wk] + (up @ down) * (s * scale)
save_safetensors(sys.argv[4], out)
`;

const x = randn([1, 32, 2, 3, 3], 31);
const ctx = [randn([5, 12], 32)];
const t = [500];

/** The base (non-adapter) weights of a LoRA-wrapped model, by their Wan keys. */
function baseWeights(m: WanModel): Map<string, Tensor> {
  return new Map([...m.stateDict()].filter(([k]) => !/\.lora_[AB]\.weight$/.test(k)));
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

function withTmp(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-merge-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function forward(m: WanModel): Float32Array {
  return noGrad(() => m.forward(x, t, ctx)).readSync();
}

function modelFrom(weights: Map<string, Tensor>): WanModel {
  const m = new WanModel(tinyDcConfig());
  m.loadStateDict(weights);
  return m;
}

describe('merging LoRA adapters into a DiT', () => {
  const model = tinyLoraModel(3);
  const entries = loraEntriesOfModel(model);
  const base = baseWeights(model);
  const yLora = forward(model);
  const merged = mergeLoraWeights(base, entries, 1);

  it('the merged forward equals the LoRA forward (1e-5 relative)', () => {
    const yMerged = forward(modelFrom(merged));
    const r = relDiff(yMerged, yLora);
    assert.ok(r <= 1e-5, `merged vs adapters: ${r}`);
    // and the adapters matter: the base alone is far from it
    assert.ok(relDiff(forward(modelFrom(base)), yLora) > 1e-3, 'the adapters change the output');
  });

  it('the merged weights are exactly what src/nn/lora.ts merge() computes (W + (alpha/r) B A in f32)', () => {
    const m2 = tinyLoraModel(3);
    mergeLora(m2);
    for (const [p] of loraLayers(m2)) sameBits(merged.get(`${p}.weight`)!, m2.get(p).stateDict().get('weight')!, p);
    // unadapted weights are the base's own tensors
    assert.equal(merged.get('blocks.0.cross_attn.q.weight'), base.get('blocks.0.cross_attn.q.weight'));
  });

  it('W + s (alpha/r) B A for a strength s, against a double-precision computation', () => {
    const s = 0.37;
    const m = mergeLoraWeights(base, entries, s);
    const e = entries.get('blocks.1.ffn.0')!;
    const W = base.get('blocks.1.ffn.0.weight')!.readSync();
    const A = e.A.readSync();
    const B = e.B.readSync();
    const got = m.get('blocks.1.ffn.0.weight')!.readSync();
    const [out, inp, r] = [48, 32, 4];
    for (let i = 0; i < out; i++)
      for (let j = 0; j < inp; j++) {
        let d = 0;
        let mag = 0;
        for (let k = 0; k < r; k++) {
          d += B[i * r + k]! * A[k * inp + j]!;
          mag += Math.abs(B[i * r + k]! * A[k * inp + j]!);
        }
        const want = W[i * inp + j]! + s * 2 * d;
        // f32: the rank-4 product (gamma_4 of mag), the scaling and the sum (one rounding each)
        const bound = 2 ** -24 * (6 * s * 2 * mag + 2 * Math.abs(want)) + 1e-30;
        assert.ok(Math.abs(got[i * inp + j]! - want) <= bound, `[${i}, ${j}]: ${got[i * inp + j]} vs ${want}`);
      }
  });

  it('strength 0 leaves the base unchanged, bit for bit, through the files too', () => {
    const m0 = mergeLoraWeights(base, entries, 0);
    for (const [k, v] of base) assert.equal(m0.get(k), v, k);
    withTmp((dir) => {
      const bp = join(dir, 'base.safetensors');
      saveSafetensors(bp, base, { metadata: { config: JSON.stringify(wanConfigToJson(tinyDcConfig())) } });
      const lp = join(dir, 'l.safetensors');
      writeLoraFile(lp, entries, 'comfy');
      const op = join(dir, 'out.safetensors');
      mergeAdapterIntoBase(bp, lp, op, { strength: 0 });
      const back = readDiTWeights(op).weights;
      for (const [k, v] of base) sameBits(back.get(k)!, v, k);
    });
  });

  for (const layout of LORA_LAYOUTS) {
    it(`an adapter written in the ${layout} layout merges to the same weights, bit for bit`, () => {
      withTmp((dir) => {
        const bp = join(dir, 'base.safetensors');
        saveSafetensors(bp, base);
        const lp = join(dir, `l_${layout}.safetensors`);
        writeLoraFile(lp, entries, layout);
        const op = join(dir, 'out.safetensors');
        const r = mergeAdapterIntoBase(bp, lp, op);
        assert.equal(r.layers, entries.size);
        const back = readDiTWeights(op).weights;
        for (const [k, v] of merged) sameBits(back.get(k)!, v, `${layout} ${k}`);
      });
    });
  }

  it('matches an independent PyTorch merge of the comfy and kohya files (ComfyUI semantics), within f32 rounding', { skip: torchSkip() }, () => {
    withTmp((dir) => {
      const bp = join(dir, 'base.safetensors');
      saveSafetensors(bp, base);
      for (const layout of ['comfy', 'kohya'] as const) {
        const lp = join(dir, `l_${layout}.safetensors`);
        writeLoraFile(lp, entries, layout);
        const s = 0.8;
        const tp = join(dir, `torch_${layout}.safetensors`);
        const r = spawnSync(torchPython, ['-c', TORCH_MERGE, repoRoot, bp, lp, tp, String(s)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
        assert.equal(r.status, 0, r.stderr);
        const theirs = readDiTWeights(tp).weights;
        const ours = mergeLoraWeights(base, entries, s);
        for (const [k, v] of ours) {
          const a = v.readSync();
          const b = theirs.get(k)!.readSync();
          const p = k.slice(0, -'.weight'.length);
          const e = entries.get(p);
          // both sides: a rank-4 f32 product (any order: gamma_4 of the |terms|, bounded by 4 |B|max |A|max), one
          // scaling and one sum, each rounded once: |diff| <= 2 (gamma_4 s c 4 |B|max |A|max + 2 u |W + delta|)
          let bound = 0;
          if (e) {
            const mb = Math.max(...e.B.readSync().map(Math.abs));
            const ma = Math.max(...e.A.readSync().map(Math.abs));
            bound = 2 * ((4 * 2 ** -24) / (1 - 4 * 2 ** -24)) * s * 2 * 4 * mb * ma;
          }
          for (let i = 0; i < a.length; i++) {
            const tol = bound + 4 * 2 ** -24 * Math.abs(b[i]!);
            if (!(Math.abs(a[i]! - b[i]!) <= tol)) assert.fail(`${layout} ${k}[${i}]: ours ${a[i]} torch ${b[i]} (tolerance ${tol})`);
          }
        }
      }
    });
  });

  it('a bf16 base is merged in f32 and written back as bf16 (one rounding of the f32 sum)', () => {
    const W = base.get('blocks.0.self_attn.q.weight')!.to('bf16');
    const e = entries.get('blocks.0.self_attn.q')!;
    const m = mergedWeight(W, e, 1);
    assert.equal(m.dtype, 'bf16');
    sameBits(m, mergedWeight(W.to('f32'), e, 1).to('bf16'), 'bf16 merge');
  });

  it('refuses an adapter that does not fit, naming the layer, and writes nothing', () => {
    withTmp((dir) => {
      const bp = join(dir, 'base.safetensors');
      saveSafetensors(bp, base);
      const bad = new Map(entries);
      bad.set('blocks.1.self_attn.k', { A: randn([4, 64], 1), B: randn([32, 4], 2), alpha: 8 });
      const lp = join(dir, 'bad.safetensors');
      writeLoraFile(lp, bad, 'comfy');
      const op = join(dir, 'out.safetensors');
      assert.throws(() => mergeAdapterIntoBase(bp, lp, op), /blocks\.1\.self_attn\.k: lora_A is \[4, 64\] but the layer takes 32 inputs/);
      const extra = new Map(entries);
      extra.set('blocks.5.ffn.0', { A: randn([4, 32], 1), B: randn([48, 4], 2), alpha: 8 });
      writeLoraFile(lp, extra, 'kohya');
      assert.throws(() => mergeAdapterIntoBase(bp, lp, op), /blocks\.5\.ffn\.0: no such layer in the DiT \(key lora_unet_blocks_5_ffn_0\.lora_down\.weight\)/);
      assert.ok(!existsSync(op));
      assert.deepEqual(readdirSync(dir).sort(), ['bad.safetensors', 'base.safetensors']);
    });
  });
});

describe('phase-3 merge and export', () => {
  const model = tinyLoraModel(5);
  const entries = loraEntriesOfModel(model);
  const cfg = tinyDcConfig();
  const cfgJson = JSON.stringify({ name: cfg.name, ...wanConfigToJson(cfg) });

  it('merges a training checkpoint (model./ema. keys: the EMA taken) into a DiT loadWanWeights loads and runs, and saves the adapters', () => {
    withTmp((dir) => {
      const sd = model.stateDict();
      const tensors = new Map<string, Tensor>();
      for (const [k, v] of sd) tensors.set(`model.${k}`, v);
      // an EMA that differs from the raw weights for the trained parts (adapters, patch embedder, head)
      const emaOf = new Map<string, Tensor>();
      for (const [k, v] of sd) if (/lora_|^patch_embedding|^head\./.test(k)) emaOf.set(k, randn([...v.shape], k.length, 0.1));
      for (const [k, v] of emaOf) tensors.set(`ema.${k}`, v);
      saveSafetensors(join(dir, 'checkpoint.safetensors'), tensors, { metadata: { dcvg_train: JSON.stringify({ format: 'x', config: JSON.parse(cfgJson), lora: { rank: 4, alpha: 8 } }) } });
      const out = join(dir, 'merged');
      const lora = join(dir, 'adapter.safetensors');
      const r = mergePhase3(dir, out, { saveLora: lora });
      assert.equal(r.layers, entries.size);
      // the expected result: EMA weights, merged
      const emaBase = new Map([...sd].filter(([k]) => !/lora_/.test(k)).map(([k, v]) => [k, emaOf.get(k) ?? v]));
      const emaLayers = new Map([...entries].map(([p, e]) => [p, { ...e, A: emaOf.get(`${p}.lora_A.weight`)!, B: emaOf.get(`${p}.lora_B.weight`)! }]));
      const want = mergeLoraWeights(emaBase, emaLayers, 1);
      const m = new WanModel(parseWanConfig(JSON.parse(cfgJson)));
      const lr = loadWanWeights(m, out);
      assert.equal(lr.format, 'wan');
      for (const [k, v] of want) sameBits(m.stateDict().get(k)!, v, k);
      const y = forward(m);
      assert.ok(y.every(Number.isFinite) && y.some((v) => v !== 0), 'the merged model runs');
      const a = readLoraFile(lora);
      assert.equal(a.layout, 'comfy');
      for (const [p, e] of emaLayers) {
        sameBits(a.layers.get(p)!.A, e.A, p);
        assert.equal(a.layers.get(p)!.alpha, 8);
      }
    });
  });

  it('merges a plain state dict with LoRA keys + lora_alpha metadata, in diffusers keys as a transformer/ folder', () => {
    withTmp((dir) => {
      const p = join(dir, 'phase3.safetensors');
      saveSafetensors(p, model.stateDict(), { metadata: { config: cfgJson, lora_alpha: '8' } });
      const out = join(dir, 'transformer');
      mergePhase3(p, out, { format: 'diffusers' });
      assert.deepEqual(readdirSync(out).sort(), ['config.json', 'diffusion_pytorch_model.safetensors']);
      // diffusers' config has no text_len (its pipeline pads the prompt): everything else round-trips
      const dc = parseWanConfig(wanConfigToDiffusers(cfg));
      assert.deepEqual({ ...dc, name: '', text_len: 0, image_dim: 0 }, { ...cfg, name: '', text_len: 0, image_dim: 0 }); // (and a T2V model has no image_dim)
      const m = new WanModel(cfg);
      assert.equal(loadWanWeights(m, out).format, 'diffusers');
      const want = mergeLoraWeights(baseWeights(model), entries, 1);
      for (const [k, v] of want) sameBits(m.stateDict().get(k)!, v, k);
      // the exported model computes what the adapters did
      const y = forward(m);
      const r = relDiff(y, forward(model));
      assert.ok(r <= 1e-5, `diffusers-exported merged vs adapters: ${r}`);
    });
  });

  it('a dcvg adapt lora run folder: model.safetensors is merged (a checkpoint of the trained tensors alone is refused)', () => {
    withTmp((dir) => {
      const sd = model.stateDict();
      const nul = randn([6, 12], 77);
      // what `dcvg adapt lora` writes: model.safetensors (all weights, adapters, null_embedding, lora metadata),
      // config.json, and a checkpoint holding only the trained tensors
      saveSafetensors(join(dir, 'model.safetensors'), new Map([...sd, ['null_embedding', nul]]), { metadata: { config: cfgJson, lora_rank: '4', lora_alpha: '8' } });
      const trained = new Map([...sd].filter(([k]) => /lora_|^patch_embedding|^head\./.test(k)).map(([k, v]) => [`model.${k}`, v]));
      saveSafetensors(join(dir, 'checkpoint.safetensors'), trained, { metadata: { dcvg_train: JSON.stringify({ lora: { rank: 4, alpha: 8 } }) } });
      const out = join(dir, 'merged.safetensors');
      mergePhase3(dir, out);
      const m = new WanModel(cfg);
      const r = loadWanWeights(m, out);
      sameBits(r.nullEmbedding!, nul, 'null_embedding');
      const want = mergeLoraWeights(baseWeights(model), entries, 1);
      for (const [k, v] of want) sameBits(m.stateDict().get(k)!, v, k);
      assert.throws(() => mergePhase3(join(dir, 'checkpoint.safetensors'), join(dir, 'x.safetensors')), /holds the adapters but not the base weights .*model\.safetensors/);
      assert.ok(!existsSync(join(dir, 'x.safetensors')));
    });
  });

  it('the merged folder runs with dcvg run wan (runWan: config.json + weights folder + inputs file)', () => {
    withTmp((dir) => {
      const p = join(dir, 'phase3.safetensors');
      saveSafetensors(p, model.stateDict(), { metadata: { config: cfgJson, lora_alpha: '8' } });
      const out = join(dir, 'merged');
      mergePhase3(p, out);
      const inp = join(dir, 'inputs.safetensors');
      saveSafetensors(inp, { x, t: new Tensor(Float32Array.of(500), [1]), context0: ctx[0]! });
      const y = runWan(join(out, 'config.json'), out, inp).readSync();
      const r = relDiff(y, forward(model));
      assert.ok(r <= 1e-5, `dcvg run wan on the merged model vs the adapters: ${r}`);
    });
  });

  it('merges into a 1x1x1 conv weight [out, in, 1, 1, 1] (an adapter on the patch embedder)', () => {
    const W = randn([32, 32, 1, 1, 1], 41);
    const e = { A: randn([2, 32, 1, 1, 1], 42), B: randn([32, 2, 1, 1, 1], 43), alpha: 4 };
    const m = mergeLoraWeights(new Map([['patch_embedding.weight', W]]), new Map([['patch_embedding', e]]), 1).get('patch_embedding.weight')!;
    assert.deepEqual([...m.shape], [32, 32, 1, 1, 1]);
    const flat = mergedWeight(W.reshape([32, 32]), { ...e, A: e.A.reshape([2, 32]), B: e.B.reshape([32, 2]) }, 1);
    sameBits(m.reshape([32, 32]).contiguous(), flat, 'conv vs linear merge');
  });

  it("merges the reference's own checkpoint: torch .pt, ema_model_state_dict, `0.` prefix, peft .base_layer / .lora_A.default keys", { skip: torchSkip() }, () => {
    withTmp((dir) => {
      // PyTorch writes the checkpoint as [562] does, and its own merge W + (alpha/r) B A (convert_lora_into_base.py)
      const py = `
import sys, torch
sys.path.insert(0, sys.argv[1] + '/bench')
from torch_common import save_safetensors
g = torch.Generator().manual_seed(0)
r, alpha = 4, 8
sd, ema, want = {}, {}, {}
for name, (o, i) in {'blocks.0.self_attn.q': (32, 32), 'blocks.0.ffn.0': (48, 32), 'time_projection.1': (192, 32)}.items():
    W = torch.randn(o, i, generator=g); b = torch.randn(o, generator=g)
    A = torch.randn(r, i, generator=g); B = torch.randn(o, r, generator=g)
    for d, s in ((sd, 1.0), (ema, 0.5)):
        d['0.' + name + '.base_layer.weight'] = W; d['0.' + name + '.base_layer.bias'] = b
        d['0.' + name + '.lora_A.default.weight'] = A * s; d['0.' + name + '.lora_B.default.weight'] = B
    want[name + '.weight'] = W + (alpha / r) * (B @ (A * 0.5)); want[name + '.bias'] = b
    want['mag.' + name] = (alpha / r) * (B.abs() @ (A * 0.5).abs())
n = torch.randn(32, generator=g)
sd['0.blocks.0.norm3.weight'] = n; ema['0.blocks.0.norm3.weight'] = n; want['blocks.0.norm3.weight'] = n
torch.save({'ema_model_state_dict': {0.9999: ema}, 'model_state_dict': sd}, sys.argv[2])
save_safetensors(sys.argv[3], want)
`;
      const pt = join(dir, 'step_8000.pt');
      const wp = join(dir, 'want.safetensors');
      const r = spawnSync(torchPython, ['-c', py, repoRoot, pt, wp], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
      assert.equal(r.status, 0, r.stderr);
      const out = join(dir, 'merged.safetensors');
      const res = mergePhase3(pt, out, { alpha: 8 });
      assert.match(res.source, /ema_model_state_dict\[0\.9999\]/);
      assert.equal(res.layers, 3);
      const got = readDiTWeights(out).weights;
      const want = readDiTWeights(wp).weights;
      const wantKeys = [...want.keys()].filter((k) => !k.startsWith('mag.'));
      assert.deepEqual([...got.keys()].sort(), wantKeys.sort());
      const u = 2 ** -24;
      for (const k of wantKeys) {
        const a = got.get(k)!.readSync();
        const b = want.get(k)!.readSync();
        const mag = want.get(`mag.${k.replace(/\.weight$/, '')}`)?.readSync();
        // each side: the rank-4 f32 sum (gamma_4 of (alpha/r) sum|B_ik A_kj| = mag), the scaling and the addition
        // (one rounding each): |ours - torch| <= 2 (gamma_4 mag + 2 u |W + delta|)
        for (let i = 0; i < a.length; i++) {
          const tol = 2 * (((4 * u) / (1 - 4 * u)) * (mag ? mag[i]! : 0) + 2 * u * Math.abs(b[i]!));
          assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `${k}[${i}]: ${a[i]} vs ${b[i]} (tolerance ${tol})`);
        }
      }
    });
  });

  it('refuses to guess alpha when a phase-3 state dict does not give it', () => {
    withTmp((dir) => {
      const p = join(dir, 'phase3.safetensors');
      saveSafetensors(p, model.stateDict());
      assert.throws(() => mergePhase3(p, join(dir, 'o.safetensors')), /no LoRA alpha for .*--alpha/);
      // --alpha gives it
      mergePhase3(p, join(dir, 'o.safetensors'), { alpha: 8 });
      const back = readDiTWeights(join(dir, 'o.safetensors')).weights;
      sameBits(back.get('blocks.0.self_attn.q.weight')!, mergeLoraWeights(baseWeights(model), entries, 1).get('blocks.0.self_attn.q.weight')!, 'q');
    });
  });

  it('dcvg adapt merge: both forms from the command line', () => {
    withTmp((dir) => {
      const p = join(dir, 'phase3.safetensors');
      saveSafetensors(p, model.stateDict(), { metadata: { config: cfgJson, lora_alpha: '8' } });
      let text = '';
      const out = (s: string) => void (text += s);
      assert.equal(adaptMergeMain([p, '-o', join(dir, 'm.safetensors'), '--save-lora', join(dir, 'a.safetensors'), '--lora-layout', 'kohya'], out), 0);
      assert.match(text, /merged 15 LoRA layers/);
      assert.equal(readLoraFile(join(dir, 'a.safetensors')).layout, 'kohya');
      const base = join(dir, 'base.safetensors');
      saveSafetensors(base, baseWeights(model), { metadata: { config: cfgJson } });
      text = '';
      assert.equal(adaptMergeMain(['--base', base, '--lora', join(dir, 'a.safetensors'), '--strength', '1', '-o', join(dir, 'm2.safetensors'), '--json'], out), 0);
      const j = JSON.parse(text) as { layers: number };
      assert.equal(j.layers, 15);
      const m1 = readDiTWeights(join(dir, 'm.safetensors')).weights;
      const m2 = readDiTWeights(join(dir, 'm2.safetensors')).weights;
      for (const [k, v] of m1) sameBits(m2.get(k)!, v, k);
      assert.throws(() => adaptMergeMain(['--base', base, '-o', join(dir, 'x.safetensors')], out), /--base DIT and --lora ADAPTER go together/);
      assert.throws(() => adaptMergeMain([p, '-o', join(dir, 'x.safetensors'), '--strength', '2'], out), /--strength goes with --base/);
      assert.throws(() => adaptMergeMain(['--base', base, '--lora', join(dir, 'a.safetensors'), '-o', join(dir, 'x.safetensors'), '--format', 'onnx'], out), /--format must be wan or diffusers/);
    });
  });
});
