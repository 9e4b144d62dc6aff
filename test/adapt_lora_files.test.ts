/**
 * LoRA files (src/adapt/lora_files.ts): every layout writes the keys the ecosystem expects, reads back bit for bit
 * with the layout detected, alpha survives (a missing alpha is scale 1), and keys or shapes that do not fit the DiT
 * are refused naming the layer.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LORA_LAYOUTS, checkLoraFits, detectLoraLayout, loraEntriesOfModel, loraScale, loraToLayout, parseLora, readLoraFile, writeLoraFile, type LoraEntry } from '../src/adapt/lora_files.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { randn } from '../src/tensor/random.js';
import { sameBits, tinyLoraModel } from './adapt_helpers.js';
import { Tensor, scalar } from '../src/tensor/tensor.js';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'dcvg-lora-'));
}

describe('LoRA files in the ecosystem layouts', () => {
  const model = tinyLoraModel();
  const entries = loraEntriesOfModel(model);

  it('takes the adapters of an applyLora model with their alpha (phase-3 targets)', () => {
    assert.equal(entries.size, 2 * 6 + 3);
    const e = entries.get('blocks.1.self_attn.q')!;
    assert.deepEqual([...e.A.shape], [4, 32]);
    assert.deepEqual([...e.B.shape], [32, 4]);
    assert.equal(e.alpha, 8);
    assert.equal(loraScale(e), 2);
  });

  it('writes the keys each layout uses', () => {
    const keys = (l: (typeof LORA_LAYOUTS)[number]) => new Set(loraToLayout(entries, l).tensors.keys());
    const comfy = keys('comfy');
    for (const k of ['diffusion_model.blocks.0.self_attn.q.lora_A.weight', 'diffusion_model.blocks.0.self_attn.q.lora_B.weight', 'diffusion_model.blocks.0.self_attn.q.alpha', 'diffusion_model.time_projection.1.alpha', 'diffusion_model.blocks.1.ffn.2.lora_A.weight'])
      assert.ok(comfy.has(k), `comfy: ${k}`);
    assert.equal(comfy.size, entries.size * 3);
    const diff = keys('diffusers');
    for (const k of ['transformer.blocks.0.attn1.to_q.lora_A.weight', 'transformer.blocks.0.attn1.to_out.0.lora_B.weight', 'transformer.blocks.1.ffn.net.0.proj.lora_A.weight', 'transformer.condition_embedder.time_proj.lora_A.weight', 'transformer.condition_embedder.time_embedder.linear_2.lora_B.weight'])
      assert.ok(diff.has(k), `diffusers: ${k}`);
    assert.equal(diff.size, entries.size * 2);
    const kohya = keys('kohya');
    for (const k of ['lora_unet_blocks_0_self_attn_q.lora_down.weight', 'lora_unet_blocks_0_self_attn_q.lora_up.weight', 'lora_unet_blocks_0_self_attn_q.alpha', 'lora_unet_time_embedding_0.lora_down.weight'])
      assert.ok(kohya.has(k), `kohya: ${k}`);
    const peft = keys('peft');
    assert.ok(peft.has('base_model.model.blocks.0.ffn.0.lora_A.weight'));
    const meta = loraToLayout(entries, 'diffusers').metadata;
    const cfg = JSON.parse(meta.lora_adapter_metadata!) as { r: number; lora_alpha: number; target_modules: string[] };
    assert.equal(cfg.r, 4);
    assert.equal(cfg.lora_alpha, 8);
    assert.ok(cfg.target_modules.includes('blocks.0.attn1.to_q'));
  });

  for (const layout of LORA_LAYOUTS) {
    it(`round-trips through the ${layout} layout bit for bit, detected on reading`, () => {
      const dir = tmp();
      try {
        const p = join(dir, `a_${layout}.safetensors`);
        writeLoraFile(p, entries, layout);
        const back = readLoraFile(p);
        assert.equal(back.layout, layout);
        assert.deepEqual([...back.layers.keys()].sort(), [...entries.keys()].sort());
        for (const [k, e] of entries) {
          const b = back.layers.get(k)!;
          sameBits(b.A, e.A, `${layout} ${k} A`);
          sameBits(b.B, e.B, `${layout} ${k} B`);
          assert.equal(b.alpha, 8, `${layout} ${k} alpha`);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('reads a file PyTorch-side tools write: comfy with lora_down/lora_up, no alpha (scale 1)', () => {
    const A = randn([2, 32], 5);
    const B = randn([32, 2], 6);
    const set = parseLora(['diffusion_model.blocks.0.self_attn.k.lora_down.weight', 'diffusion_model.blocks.0.self_attn.k.lora_up.weight'], (k) => (k.includes('down') ? A : B));
    assert.equal(set.layout, 'comfy');
    const e = set.layers.get('blocks.0.self_attn.k')!;
    assert.equal(e.alpha, null);
    assert.equal(loraScale(e), 1);
  });

  it('reads kohya names written with diffusers module names, and alpha scalars', () => {
    const A = randn([2, 32], 5);
    const B = randn([32, 2], 6);
    const map = new Map<string, Tensor>([
      ['lora_unet_blocks_1_attn1_to_out_0.lora_down.weight', A],
      ['lora_unet_blocks_1_attn1_to_out_0.lora_up.weight', B],
      ['lora_unet_blocks_1_attn1_to_out_0.alpha', scalar(6)],
    ]);
    const set = parseLora(map.keys(), (k) => map.get(k)!);
    assert.equal(set.layout, 'kohya');
    assert.deepEqual([...set.layers.keys()], ['blocks.1.self_attn.o']);
    assert.equal(loraScale(set.layers.get('blocks.1.self_attn.o')!), 3);
  });

  it("reads a peft model state dict as the reference trains it (.base_layer, .lora_A.default) with base weights", () => {
    const W = randn([32, 32], 1);
    const map = new Map<string, Tensor>([
      ['blocks.0.self_attn.q.base_layer.weight', W],
      ['blocks.0.self_attn.q.base_layer.bias', randn([32], 2)],
      ['blocks.0.self_attn.q.lora_A.default.weight', randn([4, 32], 3)],
      ['blocks.0.self_attn.q.lora_B.default.weight', randn([32, 4], 4)],
      ['blocks.0.norm3.weight', randn([32], 5)],
    ]);
    const set = parseLora(map.keys(), (k) => map.get(k)!, { metadata: { lora_alpha: '512' } });
    assert.equal(set.layout, 'peft');
    assert.deepEqual([...set.base.keys()].sort(), ['blocks.0.norm3.weight', 'blocks.0.self_attn.q.bias', 'blocks.0.self_attn.q.weight']);
    assert.equal(set.base.get('blocks.0.self_attn.q.weight'), W);
    assert.equal(set.layers.get('blocks.0.self_attn.q')!.alpha, 512);
  });

  it('reads alpha from a peft adapter_config.json beside adapter_model.safetensors', () => {
    const dir = tmp();
    try {
      const { tensors } = loraToLayout(entries, 'peft');
      saveSafetensors(join(dir, 'adapter_model.safetensors'), tensors);
      writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ r: 4, lora_alpha: 12 }));
      const set = readLoraFile(dir);
      assert.equal(set.layout, 'peft');
      assert.equal(set.layers.get('blocks.0.self_attn.v')!.alpha, 12);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses keys and shapes that do not fit the DiT, naming the layer', () => {
    const shapes = model.shapes();
    const shapeOf = (k: string) => shapes.get(k) ?? null;
    checkLoraFits(entries, shapeOf); // fits
    const bad = (path: string, e: LoraEntry) => new Map([[path, e]]);
    assert.throws(() => checkLoraFits(bad('blocks.0.self_attn.q', { A: randn([8, 64], 1), B: randn([32, 8], 2), alpha: 8 }), shapeOf), /blocks\.0\.self_attn\.q: lora_A is \[8, 64\] but the layer takes 32 inputs/);
    assert.throws(() => checkLoraFits(bad('blocks.0.ffn.0', { A: randn([4, 32], 1), B: randn([32, 4], 2), alpha: 8 }), shapeOf), /blocks\.0\.ffn\.0: lora_B is \[32, 4\] but the layer has 48 outputs/);
    assert.throws(() => checkLoraFits(bad('blocks.7.self_attn.q', { A: randn([4, 32], 1), B: randn([32, 4], 2), alpha: 8, keyA: 'diffusion_model.blocks.7.self_attn.q.lora_A.weight' }), shapeOf), /blocks\.7\.self_attn\.q: no such layer in the DiT \(key diffusion_model\.blocks\.7\.self_attn\.q\.lora_A\.weight\)/);
    assert.throws(() => checkLoraFits(bad('blocks.0.norm3', { A: randn([4, 32], 1), B: randn([32, 4], 2), alpha: 8 }), shapeOf), /blocks\.0\.norm3: the layer's weight is \[32\]/);
  });

  it('refuses malformed adapters: a missing half, rank mismatch, non-scalar alpha, unknown kohya names, mixed layouts', () => {
    const A = randn([4, 32], 1);
    const B = randn([32, 4], 2);
    const get = (m: Map<string, Tensor>) => (k: string) => m.get(k)!;
    const one = new Map([['diffusion_model.blocks.0.self_attn.q.lora_A.weight', A]]);
    assert.throws(() => parseLora(one.keys(), get(one)), /LoRA layer blocks\.0\.self_attn\.q: lora_B is missing/);
    const rk = new Map([
      ['diffusion_model.blocks.0.self_attn.q.lora_A.weight', A],
      ['diffusion_model.blocks.0.self_attn.q.lora_B.weight', randn([32, 3], 3)],
    ]);
    assert.throws(() => parseLora(rk.keys(), get(rk)), /has rank 4 but lora_B .* has rank 3/);
    const al = new Map([...rk, ['diffusion_model.blocks.0.self_attn.q.lora_B.weight', B], ['diffusion_model.blocks.0.self_attn.q.alpha', randn([2], 4)]]);
    assert.throws(() => parseLora(al.keys(), get(al)), /alpha must be a scalar/);
    const ko = new Map([
      ['lora_unet_blocks_0_self_attn_x.lora_down.weight', A],
      ['lora_unet_blocks_0_self_attn_x.lora_up.weight', B],
    ]);
    assert.throws(() => parseLora(ko.keys(), get(ko)), /"blocks_0_self_attn_x" is not a Wan layer/);
    assert.throws(() => detectLoraLayout(['diffusion_model.a.lora_A.weight', 'lora_unet_a.lora_down.weight']), /mix layouts \(kohya, comfy\)|mix layouts \(comfy, kohya\)/);
    assert.throws(() => detectLoraLayout(['blocks.0.self_attn.q.weight']), /no LoRA keys found/);
    // adapter kinds we do not merge are named, not skipped
    const diff = new Map([...rk, ['diffusion_model.blocks.0.self_attn.q.lora_B.weight', B], ['diffusion_model.blocks.0.norm3.diff', randn([32], 5)]]);
    assert.throws(() => parseLora(diff.keys(), get(diff)), /LoRA key "diffusion_model\.blocks\.0\.norm3\.diff" is neither/);
  });

  it('writes alpha as an f32 scalar in comfy files (what ComfyUI reads with .item())', () => {
    const dir = tmp();
    try {
      const p = join(dir, 'c.safetensors');
      writeLoraFile(p, entries, 'comfy');
      const f = SafetensorsFile.open(p);
      try {
        const info = f.info('diffusion_model.blocks.0.self_attn.q.alpha');
        assert.equal(info.dtype, 'F32');
        assert.deepEqual([...info.shape], []);
        assert.equal(f.metadata.lora_layout, 'comfy');
      } finally {
        f.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
