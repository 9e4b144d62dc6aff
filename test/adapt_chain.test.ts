/**
 * AE-Adapt-V end to end from the CLI (the dcvg binary, child processes) on tiny models, T2V and I2V:
 * dcvg latents (both autoencoders; I2V: the condition latents and CLIP features) -> adapt align -> adapt assemble ->
 * adapt tune -> adapt lora (+ resume) -> adapt merge -> the merged DiT in a Wan-layout model folder -> dcvg generate
 * writes a video.
 *
 * Models: the fixtures' tiny DC-AE-V (chunk_causal_small: 8 latent channels, spatial 32, temporal 4), tiny Wan VAE
 * (16 channels, spatial 8) and tiny base T2V DiT (patch 1x2x2, text_dim 24); for I2V a random tiny base I2V DiT of
 * the same sizes (in_dim 16 + 4 + 16 = 36, image_dim 32) and a random tiny CLIP; for generation a random tiny umT5 of
 * width 24 and the fixture spiece.model. Skips, naming what is missing, without ../shared.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readPhaseLog } from '../src/adapt/trainer.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { readFrameBytes, writeVideo } from '../src/io/video.js';
import { clipRandomState, resolveClipConfig } from '../src/models/clip/index.js';
import { resolveUmt5Config, umt5RandomState } from '../src/models/umt5/index.js';
import { WanModel, parseWanConfig, wanConfigToJson } from '../src/models/wan/index.js';
import { loadTokenizer } from '../src/text/index.js';
import { Rng, randn } from '../src/tensor/random.js';
import { tensor } from '../src/tensor/tensor.js';
import { fixturePath, repoRoot, sharedDir, skipUnlessFixture } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'dcvg-adapt-chain-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const tmp = (name: string) => join(root, `${name}-${n++}`);
const F = (p: string) => fixturePath(p);

const CLIPS = join(sharedDir, 'data', 'clips128');
const cliSkip =
  skipUnlessFixture('wan_vae/wan_vae_tiny.weights.safetensors') ||
  skipUnlessFixture('dc-ae-v/chunk_causal_small.weights.safetensors') ||
  skipUnlessFixture('wan/wan_t2v_base_tiny.weights.safetensors') ||
  skipUnlessFixture('tokenizer/spiece.model') ||
  (existsSync(CLIPS) ? false : `clips missing: ${CLIPS}`);

const env = { ...process.env, DCVG_NO_PROGRESS: '1' };
function dcvg(...args: string[]): string {
  const r = spawnSync(process.execPath, [join(repoRoot, 'dist', 'src', 'cli', 'main.js'), ...args], { encoding: 'utf8', env });
  assert.equal(r.status, 0, `dcvg ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const DC_AE = () => `${F('dc-ae-v/chunk_causal_small.json')}:${F('dc-ae-v/chunk_causal_small.weights.safetensors')}`;
const WAN_VAE = () => `${F('wan_vae/wan_vae.json')}#wan_vae_tiny:${F('wan_vae/wan_vae_tiny.weights.safetensors')}`;
const baseConfig = () => (JSON.parse(readFileSync(F('wan/wan_fixtures.json'), 'utf8')) as Record<string, { config: Record<string, unknown> }>).wan_t2v_base_tiny!.config;

/** A tiny CLIP (Wan's open-CLIP layout) and its config, as the Wan model folder holds it. */
const CLIP_JSON = { embed_dim: 8, image_size: 28, patch_size: 14, vision_dim: 32, vision_mlp_ratio: 2, vision_heads: 2, vision_layers: 2, vocab_size: 10, max_text_len: 4, text_dim: 8, text_heads: 2, text_layers: 1 };
const CLIP_NAME = 'models_clip_open-clip-xlm-roberta-large-vit-huge-14';

/** Precomputed caption embeddings (width 24, the tiny base DiT's text_dim) for the first three clips. */
function embeddings(): string {
  const emb = tmp('emb');
  mkdirSync(emb);
  const r = new Rng(3);
  for (const c of ['01', '02', '03']) saveSafetensors(join(emb, `${c}.safetensors`), { context: randn([4, 24], r) });
  saveSafetensors(join(emb, 'null.safetensors'), { context: randn([2, 24], r) });
  return emb;
}

/**
 * A Wan-layout model folder around the merged DiT in `dir` (config.json + model.safetensors written by adapt merge):
 * the fixture DC-AE-V, a random umT5 of the DiT's text width with the fixture tokenizer, and for I2V the CLIP files.
 */
async function completeModelFolder(dir: string, clip: { weights: string; config: string } | null): Promise<void> {
  copyFileSync(F('dc-ae-v/chunk_causal_small.json'), join(dir, 'dc-ae-v-small.json'));
  copyFileSync(F('dc-ae-v/chunk_causal_small.weights.safetensors'), join(dir, 'dc-ae-v-small.safetensors'));
  const tok = await loadTokenizer(F('tokenizer/spiece.model'));
  const u = { vocab: tok.vocabSize, dim: 24, dim_attn: 24, dim_ffn: 32, num_heads: 2, num_layers: 1, num_buckets: 8, shared_pos: false, max_dist: 16, eps: 1e-6 };
  writeFileSync(join(dir, 'models_t5_umt5-xxl-enc-bf16.json'), JSON.stringify(u));
  saveSafetensors(join(dir, 'models_t5_umt5-xxl-enc-bf16.safetensors'), umt5RandomState(resolveUmt5Config(u), 1, { dtype: 'bf16' }));
  mkdirSync(join(dir, 'google', 'umt5-xxl'), { recursive: true });
  copyFileSync(F('tokenizer/spiece.model'), join(dir, 'google', 'umt5-xxl', 'spiece.model'));
  if (clip) {
    copyFileSync(clip.weights, join(dir, `${CLIP_NAME}.safetensors`));
    copyFileSync(clip.config, join(dir, `${CLIP_NAME}.json`));
  }
}

/** The chain after phase 1 (assemble -> tune -> lora (+ resume) -> merge -> model folder -> generate). */
async function assembleToVideo(o: { base: string; baseConfig: string; align: string; lat: string; inDim: number; i2v: { image: string; clip: { weights: string; config: string } } | null }) {
  const assembled = tmp('assembled') + '.safetensors';
  const text = dcvg('adapt', 'assemble', '--base', o.base, '--config', o.baseConfig, '--patch', o.align, '-o', assembled, '--in-dim', String(o.inDim), '--out-dim', '8', '--json');
  assert.equal((JSON.parse(text) as { config?: { in_dim?: number } }).config?.in_dim ?? o.inDim, o.inDim);
  const a = SafetensorsFile.open(assembled);
  const cfg = JSON.parse(a.metadata.config!) as { model_type: string; in_dim: number; out_dim: number; patch_size: number[] };
  assert.deepEqual([cfg.model_type, cfg.in_dim, cfg.out_dim, cfg.patch_size], [o.i2v ? 'i2v' : 't2v', o.inDim, 8, [1, 1, 1]]);
  assert.ok(a.tensor('head.head.weight').readSync().every((v) => v === 0), 'head.head starts at zero');
  assert.equal(a.has('img_emb.proj.1.weight'), !!o.i2v);
  a.close();

  const tune = tmp('tune');
  dcvg('adapt', 'tune', '--init', assembled, '--data', o.lat, '--out', tune, '--steps', '2', '--holdout', '1');
  const lora = tmp('lora');
  dcvg('adapt', 'lora', '--init', join(tune, 'model.safetensors'), '--data', o.lat, '--out', lora, '--steps', '1', '--rank', '4', '--alpha', '8', '--holdout', '1', '--accum', '2');
  dcvg('adapt', 'lora', '--out', lora, '--resume', '--steps', '2');
  assert.equal(readPhaseLog(lora).steps.length, 2);
  const ck = JSON.parse(SafetensorsFile.open(join(lora, 'checkpoint.safetensors')).metadata.dcvg_train!) as { options: { shift: number | null } };
  assert.equal(ck.options.shift, null, 'the shift default (8 T2V, 5 I2V) is taken from the DiT');

  // merge into a Wan-layout folder (config.json + model.safetensors), then the other components beside it
  const model = tmp('model');
  const adapter = tmp('adapter') + '.safetensors';
  dcvg('adapt', 'merge', lora, '-o', model, '--save-lora', adapter);
  const merged = SafetensorsFile.open(join(model, 'model.safetensors'));
  assert.ok(!merged.keys().some((k) => k.includes('lora_')), 'adapters folded in');
  assert.ok(merged.has('blocks.1.self_attn.q.weight') && merged.has('null_embedding'));
  merged.close();
  const ad = SafetensorsFile.open(adapter);
  assert.ok(ad.has('diffusion_model.blocks.0.self_attn.q.lora_A.weight'));
  ad.close();
  await completeModelFolder(model, o.i2v?.clip ?? null);

  const video = tmp('video') + '.y4m';
  const gen = ['generate', 'A red circle, moving left.', '--model', model, '-o', video, '--size', '64x64', '--frames', '8', '--steps', '2', '--seed', '1', '--no-cache', '--json'];
  if (o.i2v) gen.push('--image', o.i2v.image);
  const g = JSON.parse(dcvg(...gen)) as { mode: string; frames: number; width: number; height: number };
  assert.deepEqual([g.mode, g.frames, g.width, g.height], [o.i2v ? 'i2v' : 't2v', 8, 64, 64]);
  const frames = await readFrameBytes(video);
  assert.equal(frames.frames, 8);
}

describe('adapt: phases 1-3 end to end from the CLI on tiny models', () => {
  it('T2V: dcvg latents (both AEs, resumable) -> adapt align -> assemble -> adapt tune -> adapt lora (+ resume) -> merge -> dcvg generate', { skip: cliSkip }, async () => {
    // text: precomputed embeddings per clip (the umT5 path is the same code with a text encoder injected)
    const emb = embeddings();
    const lat = tmp('latents');
    const latentsArgs = ['latents', '--videos', CLIPS, '--out', lat, '--size', '64x64', '--latent-frames', '2', '--count', '3', '--per-shard', '2', '--text-len', '16',
      '--dc-ae', DC_AE(), '--wan-vae', WAN_VAE(), '--embeddings', emb, '--json'];
    const first = JSON.parse(dcvg(...latentsArgs)) as { samples: number; shards: number; reused: number };
    assert.deepEqual([first.samples, first.shards, first.reused], [3, 2, 0]);
    const again = JSON.parse(dcvg(...latentsArgs)) as { samples: number; reused: number };
    assert.deepEqual([again.samples, again.reused], [3, 2], 'a second run keeps the finished shards');
    const s0 = SafetensorsFile.open(join(lat, 'shard-00000.safetensors'));
    // DC-AE-V on 8 frames and the Wan VAE on 5: both 2 latent frames
    assert.deepEqual(s0.info('latents').shape, [2, 8, 2, 2, 2]);
    assert.deepEqual(s0.info('wan_latents').shape, [2, 16, 2, 8, 8]);
    assert.deepEqual(s0.info('context').shape, [2, 16, 24]);
    assert.ok(!s0.has('img_feat') && !s0.has('clip_feat'), 'no I2V parts without --i2v');
    s0.close();
    const manifest = JSON.parse(readFileSync(join(lat, 'manifest.json'), 'utf8')) as { clips: { caption: string }[] };
    assert.ok(manifest.clips[0]!.caption.length > 0, 'captions from captions.tsv');

    // phase 1 against the tiny base DiT's patch embedder (16 channels, 1x2x2)
    const align = tmp('align');
    dcvg('adapt', 'align', '--teacher', F('wan/wan_t2v_base_tiny.weights.safetensors'), '--data', lat, '--out', align, '--steps', '3', '--batch', '2', '--holdout', '1', '--eval-every', '3');
    const pe = SafetensorsFile.open(join(align, 'patch_embedding.safetensors'));
    assert.deepEqual(pe.info('patch_embedding.weight').shape, [64, 8, 1, 1, 1]);
    pe.close();
    const log = readPhaseLog(align);
    assert.ok(log.steps.every((s) => typeof s.loss_avgpool === 'number' && typeof s.loss_upsample === 'number'));
    assert.equal(log.evals.length, 1);

    const baseCfg = tmp('base-config') + '.json';
    writeFileSync(baseCfg, JSON.stringify({ name: 'wan_t2v_base_tiny', ...baseConfig() }));
    await assembleToVideo({ base: F('wan/wan_t2v_base_tiny.weights.safetensors'), baseConfig: baseCfg, align, lat, inDim: 8, i2v: null });
  });

  it('I2V: dcvg latents --i2v (condition latents, CLIP features) -> align (36 -> 20 channels) -> assemble -> tune -> lora -> merge -> dcvg generate --image', { skip: cliSkip }, async () => {
    // a random tiny base I2V DiT of the fixture base's sizes: in 16 + 4 + 16, CLIP width 32
    const cfgJson = { name: 'wan_i2v_base_tiny', ...baseConfig(), model_type: 'i2v', in_dim: 36, image_dim: 32 };
    const base = new WanModel(parseWanConfig(cfgJson, 'wan_i2v_base_tiny'));
    base.initRandom(5, 0.05);
    const basePath = tmp('base-i2v') + '.safetensors';
    saveSafetensors(basePath, base.stateDict(), { metadata: { config: JSON.stringify({ name: cfgJson.name, ...wanConfigToJson(base.config) }) } });
    const baseCfg = tmp('base-config') + '.json';
    writeFileSync(baseCfg, JSON.stringify(cfgJson));
    const clipWeights = tmp('clip') + '.safetensors';
    const clipConfig = clipWeights.replace(/\.safetensors$/, '.json');
    saveSafetensors(clipWeights, clipRandomState(resolveClipConfig(CLIP_JSON), 2));
    writeFileSync(clipConfig, JSON.stringify(CLIP_JSON));

    const lat = tmp('latents-i2v');
    const r = JSON.parse(
      // two clips in two shards (the slowest step: each clip is read three times and encoded twice per autoencoder)
      dcvg('latents', '--videos', CLIPS, '--out', lat, '--size', '64x64', '--latent-frames', '2', '--count', '2', '--per-shard', '1', '--text-len', '16',
        '--dc-ae', DC_AE(), '--wan-vae', WAN_VAE(), '--embeddings', embeddings(), '--i2v', '--clip', clipWeights, '--json'),
    ) as { samples: number };
    assert.equal(r.samples, 2);
    const s0 = SafetensorsFile.open(join(lat, 'shard-00000.safetensors'));
    // mask (4) + DC-AE-V condition latent (8) on the DC grid; mask + Wan condition latent (16) on the Wan grid;
    // CLIP: 1 + (28 / 14)^2 = 5 tokens of width 32
    assert.deepEqual(s0.info('img_feat').shape, [1, 12, 2, 2, 2]);
    assert.deepEqual(s0.info('wan_img_feat').shape, [1, 20, 2, 8, 8]);
    assert.deepEqual(s0.info('clip_feat').shape, [1, 5, 32]);
    // the mask: latent frame 0 ones, frame 1 zeros, in both
    const y = s0.tensor('img_feat').readSync();
    const per = 2 * 2 * 2;
    for (let c = 0; c < 4; c++) for (let i = 0; i < per; i++) assert.equal(y[c * per + i], i < 4 ? 1 : 0, `img_feat mask channel ${c} element ${i}`);
    s0.close();

    const align = tmp('align-i2v');
    dcvg('adapt', 'align', '--teacher', basePath, '--data', lat, '--out', align, '--steps', '2', '--batch', '2', '--holdout', '1');
    const pe = SafetensorsFile.open(join(align, 'patch_embedding.safetensors'));
    assert.deepEqual(pe.info('patch_embedding.weight').shape, [64, 20, 1, 1, 1], 'the student sees [latent 8, mask 4, condition 8]');
    pe.close();

    const H = 30;
    const W = 44;
    await writeVideo(join(root, 'first%d.png'), tensor(new Float32Array(3 * H * W).map((_, i) => Math.cos(i * 0.11)), [1, 3, 1, H, W]), { fps: 1 });
    await assembleToVideo({ base: basePath, baseConfig: baseCfg, align, lat, inDim: 20, i2v: { image: join(root, 'first0.png'), clip: { weights: clipWeights, config: clipConfig } } });
  });
});
