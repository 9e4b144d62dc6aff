/**
 * AE-Adapt-V for image-to-video (spec §3.3, §5): `dcvg latents --i2v` stores the first frame's condition channels
 * and CLIP features as I2V generation builds them (src/pipelines/i2v.ts), and phases 2 / 3 train an I2V DiT on them:
 * the phase's network gets exactly generation's inputs (compared bit for bit against the pipeline's own forward),
 * gradients reach exactly the trainable set, resume is exact, and the shift defaults to 5.
 *
 * Tiny random models (test/generate_models.ts): chunk-causal DC-AE-V (4 latent channels, temporal 4), an I2V DiT
 * (in 4 + 4 + 4), a deterministic fake image encoder; two short clips written with ffmpeg.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildAdaptLatents, conditionPlan, loadAdaptSet, type CaptionEmbedder } from '../src/adapt/latents.js';
import { buildAdaptDiT, LORA_DEFAULTS, TUNE_DEFAULTS, trainLora, trainTune, type LoraPhaseOptions } from '../src/adapt/phases.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { writeVideo } from '../src/io/video.js';
import { WanModel, loadWanWeights, wanConfigToJson } from '../src/models/wan/index.js';
import { DcaevAutoencoder } from '../src/pipelines/autoencoder.js';
import { latentGeometry, planGeneration } from '../src/pipelines/generation.js';
import { clipFeatures, i2vCondition, loadConditionImage } from '../src/pipelines/i2v.js';
import * as ops from '../src/tensor/ops.js';
import { Rng, randn } from '../src/tensor/random.js';
import { noGrad, tensor } from '../src/tensor/tensor.js';
import { checkPhase3Gradients, checkResume, sameBits } from './adapt_helpers.js';
import { FakeImageEncoder, TEXT_DIM, tinyDcaev, tinyDit } from './generate_models.js';

const root = mkdtempSync(join(tmpdir(), 'dcvg-adapt-i2v-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const tmp = (name: string) => join(root, `${name}-${n++}`);

const W = 16;
const H = 16;
const FRAMES = 8; // 2 latent frames of the tiny DC-AE-V (temporal 4, chunk 8)
const ae = new DcaevAutoencoder(tinyDcaev());
const enc = new FakeImageEncoder();
const captions: CaptionEmbedder = {
  describe: 'test contexts',
  dim: TEXT_DIM,
  embed: (caption) => randn([3, TEXT_DIM], new Rng(caption.length + 7)),
  nullEmbedding: () => randn([2, TEXT_DIM], new Rng(99)),
};

let videos = '';
let data = '';
let init = '';
before(async () => {
  videos = tmp('clips');
  mkdirSync(videos);
  // 24x16 clips (cropped to 16x16 by the cover resize), each of its own pattern
  for (let c = 0; c < 5; c++) {
    const d = new Float32Array(3 * FRAMES * H * 24);
    for (let i = 0; i < d.length; i++) d[i] = 0.8 * Math.sin(i * (0.05 + 0.03 * c) + c);
    await writeVideo(join(videos, `clip${c}.mp4`), tensor(d, [1, 3, FRAMES, H, 24]), { fps: 8 });
  }
  data = tmp('latents');
  await buildAdaptLatents({ videos, out: data, width: W, height: H, latentFrames: 2, dcae: ae, wanVae: null, text: captions, textLen: 6, perShard: 2, i2v: { imageEncoder: enc } });
  // an "assembled" I2V DiT with every weight random (head.head too, so gradients reach the whole model)
  const m = tinyDit('dc', 'i2v', 4, { textLen: 6 });
  init = tmp('dit') + '.safetensors';
  saveSafetensors(init, m.stateDict(), { metadata: { config: JSON.stringify({ name: 'tiny-dc-i2v', ...wanConfigToJson(m.config) }) } });
});

describe('adapt I2V: the data and the objective are what generation feeds the DiT', () => {
  it('img_feat and clip_feat equal i2vCondition / clipFeatures of the first frame under generation\'s own plan', async () => {
    const set = loadAdaptSet(data, { context: true, i2v: true });
    assert.equal(set.imgFeat!.length, 5);
    const cfg = tinyDit('dc', 'i2v', 4, { textLen: 6 }).config;
    // the plan dcvg generate makes for this DiT, autoencoder and size (not the latents builder's conditionPlan)
    const plan = planGeneration(cfg, latentGeometry(ae), { frames: FRAMES, width: W, height: H }, 'i2v');
    assert.deepEqual(conditionPlan(ae, FRAMES, 2, W, H).latentShape, plan.latentShape);
    for (const i of [0, 3]) {
      const img = await loadConditionImage(join(videos, `clip${i}.mp4`), W, H);
      sameBits(set.imgFeat![i]!, ops.contiguous(ops.squeeze(i2vCondition(ae, img.fitted, plan), 0)), `img_feat of clip ${i}`);
      sameBits(set.clipFeat![i]!, ops.contiguous(ops.squeeze(clipFeatures(enc, img.original, cfg.image_dim), 0)), `clip_feat of clip ${i}`);
    }
    // the two differ from clip to clip (the comparison can fail)
    assert.notDeepEqual(set.imgFeat![0]!.readSync(), set.imgFeat![3]!.readSync());
  });

  it('the phase network on sample i = the DiT forward with generation\'s y and clip_fea (bit for bit)', async () => {
    const built = buildAdaptDiT({ ...TUNE_DEFAULTS, data, out: '', init, model: null, holdout: 0 }, 'tune');
    const ref = new WanModel(tinyDit('dc', 'i2v', 4, { textLen: 6 }).config);
    loadWanWeights(ref, init);
    const plan = planGeneration(ref.config, latentGeometry(ae), { frames: FRAMES, width: W, height: H }, 'i2v');
    const set = loadAdaptSet(data, { context: true });
    const r = new Rng(5);
    const noisy = randn([1, ...set.dc[2]!.shape], r);
    const ctx = ops.unsqueeze(set.contexts![2]!, 0);
    const img = await loadConditionImage(join(videos, 'clip2.mp4'), W, H);
    const y = i2vCondition(ae, img.fitted, plan);
    const clipFea = clipFeatures(enc, img.original, ref.config.image_dim);
    const want = noGrad(() => ref.forward(noisy, [700], ctx, { y, clipFea }));
    const got = noGrad(() => built.predict([2], noisy, [700], ctx));
    sameBits(got, want, 'phase forward vs generation forward');
    // another sample's condition gives another output
    const other = noGrad(() => built.predict([1], noisy, [700], ctx)).readSync();
    assert.ok(other.some((v, i) => v !== want.readSync()[i]), 'the condition changes the output');
  });

  it('the training shift defaults to 5 for an I2V DiT (8 for T2V), --shift overrides it', () => {
    const loss = (shift: number | null) => {
      const { model } = buildAdaptDiT({ ...TUNE_DEFAULTS, data, out: '', init, model: null, holdout: 0, shift, textDrop: 0 }, 'tune');
      return noGrad(() => model.micro([0, 1, 2], new Rng(3)).loss.item());
    };
    const d = loss(null);
    assert.equal(d, loss(5));
    assert.notEqual(d, loss(8));
  });
});

describe('adapt I2V: each phase gives gradients exactly to its trainable set', () => {
  const base = () => ({ data, out: '', init, model: null, holdout: 0 });
  it('phase 2 (tune): patch_embedding, head.head, head.modulation; img_emb and the image cross-attention frozen', () => {
    const { model } = buildAdaptDiT({ ...TUNE_DEFAULTS, ...base() }, 'tune');
    model.micro([0, 1], new Rng(1)).loss.backward();
    const withGrad = model.module!.namedParams().filter(([, p]) => p.value.grad !== null).map(([k]) => k).sort();
    assert.deepEqual(withGrad, ['head.head.bias', 'head.head.weight', 'head.modulation', 'patch_embedding.bias', 'patch_embedding.weight']);
    for (const [k, p] of model.module!.namedParams()) if (p.value.grad) assert.ok(p.value.grad.readSync().some((v) => v !== 0), `${k} has a zero gradient`);
    // the I2V patch embedder takes the 12 channels [noisy 4, mask 4, condition 4]
    assert.deepEqual(model.trainable.find(([k]) => k === 'patch_embedding.weight')![1].shape, [16, 12, 1, 1, 1]);
  });

  it('phase 3 (lora): the adapters and the patch / head; img_emb, k_img / v_img, cross-attention frozen', () => {
    const { model } = buildAdaptDiT({ ...LORA_DEFAULTS, ...base(), rank: 2, alpha: 4 } as LoraPhaseOptions, 'lora');
    const params = checkPhase3Gradients(model);
    assert.ok(params.some(([k]) => k.startsWith('img_emb.')) && params.some(([k]) => k.includes('cross_attn.k_img')), 'the I2V parts exist (and are frozen)');
  });
});

describe('adapt I2V: refusals', () => {
  it('an I2V DiT on T2V latents, --i2v without an autoencoder: one line naming what is missing', async () => {
    const t2v = tmp('t2v-latents');
    mkdirSync(t2v);
    saveSafetensors(join(t2v, 'shard-0.safetensors'), { latents: randn([2, 4, 2, 2, 2], 1), context: randn([2, 6, TEXT_DIM], 2) });
    writeFileSync(join(t2v, 'manifest.json'), JSON.stringify({ format: 'dcvg-dit-latents-1', shards: ['shard-0.safetensors'] }));
    assert.throws(() => buildAdaptDiT({ ...TUNE_DEFAULTS, data: t2v, out: '', init, model: null, holdout: 0 }, 'tune'), /shard-0\.safetensors lacks tensor "img_feat" \(I2V data: dcvg latents --i2v --clip/);
    await assert.rejects(
      buildAdaptLatents({ videos, out: tmp('never'), width: W, height: H, latentFrames: 2, dcae: null, wanVae: ae, text: null, textLen: 6, perShard: 2, i2v: { imageEncoder: enc } }),
      /--i2v needs --dc-ae/,
    );
  });
});

describe('adapt I2V: resume is exact', () => {
  const common = () => ({ data, holdout: 1, evalEvery: 1, ckptEvery: 1, batch: 2, init });
  it('phase 2 (tune)', async () => checkResume(tmp, trainTune, { ...common(), textDrop: 0.5 }, ['model.safetensors']));
  it('phase 3 (lora, with warm-up and EMA)', async () => checkResume(tmp, trainLora, { ...common(), rank: 2, alpha: 4, warmup: 2, emaDecay: 0.9, textDrop: 0.5 }, ['model.safetensors']));
});
