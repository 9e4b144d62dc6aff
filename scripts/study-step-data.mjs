// Inputs for timing the study's DiT steps (docs/small-step-speed.md) without training autoencoders first: random
// latents in the study's shapes as train-dit latent folders, and the DiT configs src/study/adapt.ts builds.
//   npx tsc -p tsconfig.json && node scripts/study-step-data.mjs OUT
// writes OUT/lat-base (8 samples of 16x4x16x16: 256 tokens at patch 1x2x2), OUT/lat-adapt (8 x 32x4x4x4, 64 tokens at
// patch 1x1x1, plus wan_latents), OUT/base.json, OUT/dc.json (REAL_CONFIG's dit and text sizes) and OUT/dc.model.json
// (REAL_CONFIG's DC-AE-V as a train-ae --model file). Not for training anything: the values are noise.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(import.meta.url), '..', '..', 'dist', 'src');
const { saveSafetensors } = await import(join(root, 'io', 'safetensors.js'));
const { randn, Rng } = await import(join(root, 'tensor', 'random.js'));
const { parseWanConfig, wanConfigToJson } = await import(join(root, 'models', 'wan', 'config.js'));
const { REAL_CONFIG } = await import(join(root, 'study', 'config.js'));
const { aeModelArg } = await import(join(root, 'study', 'adapt.js'));

const out = process.argv[2];
if (!out) {
  console.error('usage: node scripts/study-step-data.mjs OUT');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const rng = new Rng(7);
const n = 8;
const c = REAL_CONFIG;
const L = c.text.textLen;
const textDim = c.text.umt5.dim;
const folder = (dir, tensors) => {
  mkdirSync(dir, { recursive: true });
  saveSafetensors(join(dir, 'shard-00000.safetensors'), tensors);
  saveSafetensors(join(dir, 'null_context.safetensors'), { null_context: randn([L, textDim], rng) });
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ format: 'dcvg-dit-latents-1', shards: ['shard-00000.safetensors'], null_context: 'null_context.safetensors' }));
};
const context = randn([n, L, textDim], rng);
folder(join(out, 'lat-base'), { latents: randn([n, 16, 4, 16, 16], rng), context });
folder(join(out, 'lat-adapt'), { latents: randn([n, 32, 4, 4, 4], rng), wan_latents: randn([n, 16, 4, 16, 16], rng), context });
const dit = (patch, channels, name) =>
  wanConfigToJson(
    parseWanConfig(
      { model_type: 't2v', patch_size: patch, text_len: L, in_dim: channels, out_dim: channels, ...c.dit, text_dim: textDim, eps: 1e-6 },
      name,
    ),
  );
writeFileSync(join(out, 'base.json'), JSON.stringify(dit([1, 2, 2], 16, 'study-base')));
writeFileSync(join(out, 'dc.json'), JSON.stringify(dit([1, 1, 1], 32, 'study-dc')));
console.log(aeModelArg(c.autoencoders.dc.model, out, 'dc'));
