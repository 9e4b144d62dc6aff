/**
 * Wan's CLIP image encoder (src/models/clip) against the fixture of the official wan/modules/clip.py
 * (../shared/fixtures/clip): the preprocessing of both images, the penultimate block's tokens and all blocks' tokens on
 * both backends; the official 784-key layout and parameter counts; the text tower (and the unused visual keys) never
 * read: checkpoints whose unread tensors are NaN or fail their zip CRC still load and give the fixture's features;
 * bf16 weights kept as bf16; bad images, pixel values, checkpoints and configs refused with clear errors.
 *
 * Tolerance (the fixture README's): 1e-4 relative to the largest reference value. It is far above float32
 * rounding here: the longest reduction is the patch conv's 3 * 14 * 14 = 588 products, whose worst-case relative
 * error is 588 * 2^-24 = 3.5e-5 of the sum of |terms| (typical sqrt(588) * 2^-24 = 1.4e-6), and the blocks add
 * reductions of 32 and 128 terms; torch's own float32 bicubic differs from the exact resize by 1.9e-6 of max|value|
 * on these images (ours, accumulated in float64, by 1.2e-7). Measured: 2e-6 at most, on either backend.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withBackend } from '../src/backend/index.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { loadTorchStateDict } from '../src/io/torch_checkpoint.js';
import {
  ClipVisual,
  clipCheckpointKeyShapes,
  clipKeysRead,
  clipParameterCounts,
  clipRandomState,
  clipVitH14Config,
  loadClipVisual,
  loadClipVisualWeights,
  parseClipConfig,
  resolveClipConfig,
} from '../src/models/clip/index.js';
import { StateDictError, ShapeError, ValueError, FormatError } from '../src/errors.js';
import { type Tensor, intTensor, tensor } from '../src/tensor/tensor.js';
import { contiguous, reshape, slice, transpose } from '../src/tensor/ops.js';
import { assertClose, fixturePath, relErr, requireBackend, skipUnlessFixture, testBackends } from './helpers.js';
import { Pickler, writeCheckpoint } from './torch_zip.js';

const F = (n: string) => fixturePath(`clip/${n}`);
const skip = skipUnlessFixture('clip/clip_tiny.weights.safetensors');
const CFG = () => `${F('clip.json')}#clip_tiny`;
const TOL = 1e-4;

function io(): SafetensorsFile {
  return SafetensorsFile.open(F('clip_tiny.io.safetensors'));
}

function fixtureWeights(): Map<string, Tensor> {
  const f = SafetensorsFile.open(F('clip_tiny.weights.safetensors'));
  try {
    return new Map(f.keys().map((k) => [k, f.tensor(k)]));
  } finally {
    f.close();
  }
}

function nanLike(t: Tensor): Tensor {
  return tensor(new Float32Array(t.size).fill(NaN), t.shape);
}

/** A flat torch.save state dict written from scratch; storages of keys matching `corrupt` get bytes that fail the zip CRC. */
function writePth(dir: string, name: string, sd: Map<string, Tensor>, corrupt: (k: string) => boolean = () => false): string {
  const p = new Pickler().proto().emptyDict().mark();
  const storages: Record<string, Uint8Array> = {};
  let i = 0;
  for (const [k, t] of sd) {
    const strides = t.shape.map((_, a) => t.shape.slice(a + 1).reduce((x, y) => x * y, 1));
    p.str(k).tensor('FloatStorage', String(i), t.size, 0, [...t.shape], strides);
    storages[String(i++)] = new Uint8Array(Float32Array.from(t.readSync()).buffer);
  }
  const path = writeCheckpoint(dir, name, p.setitems().stop().bytes(), storages);
  if ([...sd.keys()].some(corrupt)) {
    // flip one byte inside each corrupt storage's data (the zip stores entries uncompressed, in order): CRC mismatch
    const buf = readFileSync(path);
    let j = 0;
    for (const [k, t] of sd) {
      const entry = `archive/data/${j++}`;
      if (!corrupt(k) || t.size === 0) continue;
      const at = buf.indexOf(Buffer.from(entry)) + entry.length; // local header name, then the data
      buf[at] = buf[at]! ^ 0xff;
    }
    writeFileSync(path, buf);
  }
  return path;
}


describe('CLIP config and key layout', () => {
  it('the preset builds exactly the 784 official keys (names, shapes, order) and the official parameter counts', { skip: skipUnlessFixture('clip/official_state_dict_shapes.json') }, () => {
    const off = JSON.parse(readFileSync(F('official_state_dict_shapes.json'), 'utf8')) as {
      config: Record<string, unknown>;
      shapes: Record<string, number[]>;
      num_keys: number;
      num_params: number;
      visual_params: number;
      textual_params: number;
      keys_unused_by_i2v_features: string[];
      params_unused_by_i2v_features: number;
    };
    const c = clipVitH14Config();
    // the json's own config parses to the preset
    const parsed = parseClipConfig(off, 'official');
    for (const k of Object.keys(c) as (keyof typeof c)[]) if (k !== 'name') assert.deepEqual(parsed[k], c[k], k);
    const ours = clipCheckpointKeyShapes(c);
    assert.equal(ours.size, off.num_keys);
    assert.deepEqual([...ours.keys()], Object.keys(off.shapes));
    for (const [k, s] of Object.entries(off.shapes)) assert.deepEqual(ours.get(k), s, k);
    // shape-only construction: exactly the visual keys, nothing allocated
    const m = new ClipVisual(c);
    assert.deepEqual([...m.shapes().keys()], Object.keys(off.shapes).filter((k) => k.startsWith('visual.')));
    assert.equal(m.namedParams().filter(([, p]) => p.loaded).length, 0);
    const n = clipParameterCounts(c);
    assert.equal(n.total, off.num_params);
    assert.equal(n.visual, off.visual_params);
    assert.equal(n.textual, off.textual_params);
    assert.equal(m.parameterCount(), off.visual_params);
    assert.equal(n.visual - n.features, off.params_unused_by_i2v_features);
    const read = new Set(clipKeysRead(c));
    assert.deepEqual(
      [...m.shapes().keys()].filter((k) => !read.has(k)).sort(),
      [...off.keys_unused_by_i2v_features].sort(),
    );
    // 'all' reads the last block too, never post_norm or head
    const all = clipKeysRead(c, 'all');
    assert.equal(all.length, read.size + 12);
    assert.ok(!all.some((k) => k === 'visual.head' || k.startsWith('visual.post_norm')));
  });

  it('the tiny fixture checkpoint has exactly the layout of its config', { skip }, () => {
    const c = resolveClipConfig(CFG());
    const f = SafetensorsFile.open(F('clip_tiny.weights.safetensors'));
    try {
      const want = clipCheckpointKeyShapes(c);
      assert.deepEqual(new Set(f.keys()), new Set(want.keys()));
      for (const k of f.keys()) assert.deepEqual(f.info(k).shape, want.get(k), k);
    } finally {
      f.close();
    }
    const fx = JSON.parse(readFileSync(F('clip.json'), 'utf8')).clip_tiny;
    assert.equal(clipParameterCounts(c).total, fx.num_params);
    assert.equal(clipParameterCounts(c).visual, fx.visual_params);
    assert.deepEqual(c.mean, fx.mean);
    assert.deepEqual(c.std, fx.std);
  });

  it('refuses configs it does not build, naming the field', () => {
    assert.throws(() => parseClipConfig({ vision_pool: 'attn_pool' }), /vision_pool "attn_pool" is not supported/);
    assert.throws(() => parseClipConfig({ activation: 'quick_gelu' }), /activation "quick_gelu" is not supported/);
    assert.throws(() => parseClipConfig({ vision_post_norm: true }), /vision_post_norm true is not supported/);
    assert.throws(() => parseClipConfig({ image_size: 225 }), /image_size 225 is not a multiple of patch_size 14/);
    assert.throws(() => parseClipConfig({ vision_dim: 100, vision_heads: 16 }), /vision_dim 100 is not a multiple of vision_heads 16/);
    assert.throws(() => parseClipConfig({ std: [1, 0, 1] }), /std must be 3 finite numbers/);
    assert.throws(() => parseClipConfig({ vision_layers: 1e9 }), ValueError);
    assert.throws(() => resolveClipConfig('vit-g'), /unknown CLIP model "vit-g"/);
    assert.throws(() => resolveClipConfig(`${F('clip.json')}#nope`), /no entry "nope"/);
  });
});

describe('CLIP against the fixture (official wan/modules/clip.py)', { skip }, () => {
  it('preprocessing (torch bicubic to 56x56, x*0.5+0.5, CLIP mean / std) of image0 (3,72,40) and image1 (3,30,50)', () => {
    const f = io();
    const m = new ClipVisual(resolveClipConfig(CFG()));
    const pv = m.preprocess([f.tensor('image0'), f.tensor('image1')]);
    assertClose(pv, f.tensor('pixel_values'), TOL, 'pixel_values');
    // each image on its own gives its rows of the batch
    assertClose(m.preprocess([f.tensor('image1')]), slice(f.tensor('pixel_values'), 0, 1, 2), TOL, 'image1 alone');
  });

  for (const be of testBackends()) {
    it(`features (penultimate block) and features_all_blocks on the ${be.name} backend`, { skip: be.skip }, () => {
      withBackend(requireBackend(be.backend), () => {
        const f = io();
        const m = loadClipVisual(F('clip_tiny.weights.safetensors'), { config: CFG(), blocks: 'all' });
        const pv = f.tensor('pixel_values');
        const y = m.features(pv);
        assert.deepEqual(y.shape, [2, 17, 32]);
        assertClose(y, f.tensor('features'), TOL, 'features');
        assertClose(m.featuresAllBlocks(pv), f.tensor('features_all_blocks'), TOL, 'features_all_blocks');
        assertClose(m.lastBlock(y), f.tensor('features_all_blocks'), TOL, 'lastBlock(features)');
        // images -> features in one call
        assertClose(m.encodeImages([f.tensor('image0'), f.tensor('image1')]), f.tensor('features'), TOL, 'encodeImages');
        // a batch of one gives the same rows (the GEMMs may block a different row count differently: same bound)
        const one = m.features(slice(pv, 0, 1, 2));
        assert.ok(relErr(one.readSync(), y.readSync().subarray(17 * 32)) <= TOL);
      });
    });
  }
});

describe('CLIP loading reads only what the features use', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-clip-'));
  const c = () => resolveClipConfig(CFG());
  const unused = (k: string) => !clipKeysRead(c()).includes(k);

  it('a safetensors file whose unread tensors are all NaN loads and gives the fixture features; all-blocks then refuses it', () => {
    const sd = fixtureWeights();
    const bad = new Map([...sd].map(([k, t]) => [k, unused(k) ? nanLike(t) : t]));
    const p = join(dir, 'nan_unused.safetensors');
    saveSafetensors(p, bad);
    const m = new ClipVisual(c());
    const r = loadClipVisualWeights(m, p);
    assert.deepEqual(r.read, clipKeysRead(c()));
    assert.equal(r.bytesRead, r.read.reduce((s, k) => s + 4 * sd.get(k)!.size, 0));
    assert.ok(r.skipped.includes('log_scale') && r.skipped.includes('visual.head') && r.skipped.some((k) => k.startsWith('textual.')));
    assert.equal(r.read.length + r.skipped.length, sd.size);
    assertClose(m.features(io().tensor('pixel_values')), io().tensor('features'), TOL, 'features');
    // the unread parameters stay unallocated
    for (const [k, prm] of m.namedParams('')) assert.equal(prm.loaded, !unused(k), k);
    assert.throws(() => m.featuresAllBlocks(io().tensor('pixel_values')), /last block \(visual\.transformer\.2\) was not loaded/);
    // reading the last block (all-blocks mode) does read those NaNs, and says so
    assert.throws(() => loadClipVisualWeights(new ClipVisual(c()), p, { blocks: 'all' }), /visual\.transformer\.2\.[a-z0-9_.]+" has NaN/);
  });

  it('a torch.save .pth whose text-tower storages fail their CRC loads (they are never read); reading all of it fails', () => {
    const sd = fixtureWeights();
    const textual = (k: string) => k.startsWith('textual.') || k === 'log_scale';
    const p = writePth(dir, 'models_clip_tiny.pth', sd, textual);
    assert.throws(() => loadTorchStateDict(p), (e: unknown) => e instanceof FormatError && /CRC mismatch/.test(e.message));
    const m = new ClipVisual(c());
    const r = loadClipVisualWeights(m, p, { blocks: 'all' });
    assert.equal(r.read.length, clipKeysRead(c(), 'all').length);
    assertClose(m.features(io().tensor('pixel_values')), io().tensor('features'), TOL, 'features from .pth');
    assertClose(m.featuresAllBlocks(io().tensor('pixel_values')), io().tensor('features_all_blocks'), TOL, 'all blocks from .pth');
    // a Wan model folder: the checkpoint is found by its released name among the other weights files
    const wan = join(dir, 'Wan2.1-I2V');
    mkdirSync(wan);
    writePth(wan, 'models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth', sd, textual);
    saveSafetensors(join(wan, 'Wan2.1_VAE.safetensors'), { x: tensor([1], [1]) });
    assertClose(loadClipVisual(wan, { config: CFG() }).features(io().tensor('pixel_values')), io().tensor('features'), TOL, 'features from a Wan folder');
  });

  it('a visual-only safetensors file (no text tower) loads', () => {
    const sd = fixtureWeights();
    const p = join(dir, 'visual_only.safetensors');
    saveSafetensors(p, new Map([...sd].filter(([k]) => k.startsWith('visual.'))));
    const m = loadClipVisual(p, { config: CFG() });
    assertClose(m.features(io().tensor('pixel_values')), io().tensor('features'), TOL, 'features');
  });

  it('bf16 / f16 weights stay so in memory and give the features of the same weights widened to f32', () => {
    const p = join(dir, 'bf16.safetensors');
    saveSafetensors(p, fixtureWeights(), { dtype: 'BF16' });
    const kept = loadClipVisual(p, { config: CFG() });
    const wide = loadClipVisual(p, { config: CFG(), dtype: 'f32' });
    assert.equal(kept.getParam('visual.transformer.0.attn.to_qkv.weight').value.dtype, 'bf16');
    assert.equal(kept.getParam('visual.patch_embedding.weight').value.dtype, 'bf16');
    assert.equal(wide.getParam('visual.transformer.0.attn.to_qkv.weight').value.dtype, 'f32');
    const pv = io().tensor('pixel_values');
    // same values, only the storage differs: the kernels widen bf16 exactly, so only the order of float32 rounding
    // may differ (the GEMM blocking of widened row blocks): within the header's bound
    assertClose(kept.features(pv), wide.features(pv), TOL, 'bf16 kept vs widened');
    // and the bf16 rounding of the weights (2^-9 relative each) moves the features by well under 5%
    assertClose(kept.features(pv), io().tensor('features'), 5e-2, 'bf16 vs fp32 fixture');
    assert.notEqual(kept.fingerprint, loadClipVisual(F('clip_tiny.weights.safetensors'), { config: CFG() }).fingerprint);
    // f16 likewise
    const p16 = join(dir, 'f16.safetensors');
    saveSafetensors(p16, fixtureWeights(), { dtype: 'F16' });
    const h = loadClipVisual(p16, { config: CFG() });
    assert.equal(h.getParam('visual.transformer.1.mlp.2.weight').value.dtype, 'f16');
    assertClose(h.features(pv), loadClipVisual(p16, { config: CFG(), dtype: 'f32' }).features(pv), TOL, 'f16 kept vs widened');
  });

  it('refuses checkpoints that do not match: a missing visual key, a foreign key, a wrong shape (named with the file)', () => {
    const sd = fixtureWeights();
    const miss = join(dir, 'missing.safetensors');
    saveSafetensors(miss, new Map([...sd].filter(([k]) => k !== 'visual.transformer.1.mlp.0.bias')));
    assert.throws(
      () => loadClipVisual(miss, { config: CFG() }),
      (e: unknown) => e instanceof StateDictError && e.message.includes(miss) && /1 missing: visual\.transformer\.1\.mlp\.0\.bias/.test(e.message),
    );
    const extra = join(dir, 'extra.safetensors');
    saveSafetensors(extra, new Map([...sd, ['visual.transformer.7.norm1.weight', tensor([1, 2], [2])]]));
    assert.throws(() => loadClipVisual(extra, { config: CFG() }), /1 unexpected: visual\.transformer\.7\.norm1\.weight/);
    const shape = join(dir, 'shape.safetensors');
    saveSafetensors(shape, new Map([...sd, ['textual.norm.weight', tensor([1, 2], [2])]]));
    assert.throws(() => loadClipVisual(shape, { config: CFG() }), /textual\.norm\.weight \(model \[32\], checkpoint \[2\]\)/);
    // the released layout against the tiny weights: every shape named, nothing read
    assert.throws(() => loadClipVisual(F('clip_tiny.weights.safetensors')), StateDictError);
  });

  it("transformers' CLIPVisionModel names (a diffusers image_encoder/ folder, bf16) give the fixture features", () => {
    // the fixture's weights renamed by hand to transformers' layout: to_qkv split into q/k/v rows, embeddings un-batched
    const sd = fixtureWeights();
    const cf = c();
    const hf = new Map<string, Tensor>();
    const v = 'vision_model.';
    hf.set(`${v}embeddings.class_embedding`, reshape(sd.get('visual.cls_embedding')!, [cf.vision_dim]));
    hf.set(`${v}embeddings.position_embedding.weight`, reshape(sd.get('visual.pos_embedding')!, [17, cf.vision_dim]));
    hf.set(`${v}embeddings.patch_embedding.weight`, sd.get('visual.patch_embedding.weight')!);
    hf.set(`${v}embeddings.position_ids`, intTensor(Array.from({ length: 17 }, (_, i) => i), [1, 17]));
    for (const p of ['weight', 'bias']) {
      hf.set(`${v}pre_layrnorm.${p}`, sd.get(`visual.pre_norm.${p}`)!);
      for (let i = 0; i < cf.vision_layers; i++) {
        const o = `visual.transformer.${i}.`;
        const h = `${v}encoder.layers.${i}.`;
        const qkv = sd.get(`${o}attn.to_qkv.${p}`)!;
        ['q', 'k', 'v'].forEach((n, j) => hf.set(`${h}self_attn.${n}_proj.${p}`, contiguous(slice(qkv, 0, j * 32, (j + 1) * 32))));
        hf.set(`${h}self_attn.out_proj.${p}`, sd.get(`${o}attn.proj.${p}`)!);
        hf.set(`${h}layer_norm1.${p}`, sd.get(`${o}norm1.${p}`)!);
        hf.set(`${h}layer_norm2.${p}`, sd.get(`${o}norm2.${p}`)!);
        hf.set(`${h}mlp.fc1.${p}`, sd.get(`${o}mlp.0.${p}`)!);
        hf.set(`${h}mlp.fc2.${p}`, sd.get(`${o}mlp.2.${p}`)!);
      }
      hf.set(`${v}post_layernorm.${p}`, sd.get(`visual.post_norm.${p}`)!);
    }
    hf.set('visual_projection.weight', contiguous(transpose(sd.get('visual.head')!, 0, 1)));
    const pipe = join(dir, 'pipe');
    mkdirSync(join(pipe, 'image_encoder'), { recursive: true });
    writeFileSync(join(pipe, 'model_index.json'), JSON.stringify({ _class_name: 'WanImageToVideoPipeline', image_encoder: ['transformers', 'CLIPVisionModel'] }));
    writeFileSync(
      join(pipe, 'image_encoder', 'config.json'),
      JSON.stringify({ architectures: ['CLIPVisionModelWithProjection'], model_type: 'clip_vision_model', hidden_act: 'gelu', hidden_size: 32, image_size: 56, intermediate_size: 128, layer_norm_eps: 1e-5, num_attention_heads: 4, num_channels: 3, num_hidden_layers: 3, patch_size: 14, projection_dim: 16 }),
    );
    saveSafetensors(join(pipe, 'image_encoder', 'model.safetensors'), hf);
    const pv = io().tensor('pixel_values');
    for (const p of [pipe, join(pipe, 'image_encoder')]) {
      const m = new ClipVisual(c());
      const r = loadClipVisualWeights(m, p, { blocks: 'all' });
      assert.equal(r.format, 'transformers');
      assert.ok(r.skipped.includes('vision_model.embeddings.position_ids') && r.skipped.includes('visual.head'));
      assertClose(m.features(pv), io().tensor('features'), TOL, `features (${p})`);
      assertClose(m.featuresAllBlocks(pv), io().tensor('features_all_blocks'), TOL, `all blocks (${p})`);
      // the folder's config.json is the config
      assertClose(loadClipVisual(p).features(pv), io().tensor('features'), TOL, `config from ${p}`);
    }
    // bf16: q/k/v fused in bf16 (exactly the bf16 rows), the same features as the official names in bf16
    const b16 = join(dir, 'hf_bf16.safetensors');
    saveSafetensors(b16, hf, { dtype: 'BF16' });
    const ob16 = join(dir, 'official_bf16.safetensors');
    saveSafetensors(ob16, sd, { dtype: 'BF16' });
    const a = loadClipVisual(b16, { config: CFG() });
    const b = loadClipVisual(ob16, { config: CFG() });
    assert.equal(a.getParam('visual.transformer.1.attn.to_qkv.weight').value.dtype, 'bf16');
    for (const k of ['visual.transformer.1.attn.to_qkv.weight', 'visual.transformer.0.attn.to_qkv.bias', 'visual.cls_embedding'])
      assert.deepEqual(a.getParam(k).value.readSync(), b.getParam(k).value.readSync(), k);
    // a missing q/k/v part is named in transformers' names
    saveSafetensors(join(dir, 'hf_missing.safetensors'), new Map([...hf].filter(([k]) => k !== `${v}encoder.layers.1.self_attn.k_proj.weight`)));
    assert.throws(() => loadClipVisual(join(dir, 'hf_missing.safetensors'), { config: CFG() }), /layers\.1\.self_attn\.k_proj\.weight is missing/);
    assert.throws(() => parseClipConfig({ hidden_size: 32, num_hidden_layers: 2, hidden_act: 'quick_gelu' }), /hidden_act "quick_gelu" is not supported/);
  });

  it('random weights in the whole layout load and run', () => {
    const sd = clipRandomState(c(), 7);
    assert.deepEqual([...sd.keys()], [...clipCheckpointKeyShapes(c()).keys()]);
    const p = join(dir, 'random.safetensors');
    saveSafetensors(p, sd);
    const y = loadClipVisual(p, { config: CFG() }).features(io().tensor('pixel_values'));
    assert.deepEqual(y.shape, [2, 17, 32]);
    assert.ok(y.readSync().every(Number.isFinite));
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('CLIP refuses bad images and pixel values', { skip }, () => {
  const m = () => loadClipVisual(F('clip_tiny.weights.safetensors'), { config: CFG() });
  it('preprocess: wrong rank, channels, empty, non-finite, no images', () => {
    const x = m();
    assert.throws(() => x.preprocess([tensor(new Float32Array(3 * 8), [3, 8])]), (e: unknown) => e instanceof ShapeError && /must be \(3, H, W\).*got \[3, 8\]/.test(e.message));
    assert.throws(() => x.preprocess([tensor(new Float32Array(64), [4, 4, 4])]), /must be \(3, H, W\).*got \[4, 4, 4\]/);
    assert.throws(() => x.preprocess([tensor(new Float32Array(3 * 16), [1, 3, 4, 4])]), /must be \(3, H, W\)/);
    assert.throws(() => x.preprocess([tensor(new Float32Array(0), [3, 0, 4])]), /empty/);
    const nan = new Float32Array(3 * 16);
    nan[5] = NaN;
    assert.throws(() => x.preprocess([tensor(new Float32Array(48), [3, 4, 4]), tensor(nan, [3, 4, 4])]), /image 1: the image holds a non-finite value \(NaN at element 5\)/);
    assert.throws(() => x.preprocess([]), /no images given/);
  });
  it('features: pixel_values not (B, 3, S, S); no weights', () => {
    const x = m();
    assert.throws(() => x.features(tensor(new Float32Array(3 * 56 * 57), [1, 3, 56, 57])), /pixel_values must be \(B, 3, 56, 56\).*got \[1, 3, 56, 57\]/);
    assert.throws(() => x.features(tensor(new Float32Array(3 * 56 * 56), [3, 56, 56])), /pixel_values must be \(B, 3, 56, 56\)/);
    assert.throws(() => new ClipVisual(resolveClipConfig(CFG())).features(io().tensor('pixel_values')), /no weights loaded/);
  });
});
