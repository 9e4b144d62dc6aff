#!/usr/bin/env node
// Builds a train-dit latent folder from a folder of clips with the default DC-AE-V (assets/default-ae) and random
// fixed text embeddings (a stand-in until a text encoder is wired in). Needs `npx tsc -p tsconfig.json` first.
//   node scripts/dit-latents.mjs --videos <dir> --out <dir> [--count N] [--frames 8] [--crop 64] [--text-len 8]
//                                [--text-dim 16] [--seed 0] [--model <config.json> --weights <file>]
import { parseArgs } from 'node:util';
const root = new URL('..', import.meta.url);
const { buildLatentFolder } = await import(new URL('dist/src/train/dit_data.js', root));
const { loadDefaultModel } = await import(new URL('dist/src/models/dcaev/default_model.js', root));
const { createModel } = await import(new URL('dist/src/models/dcaev/autoencoder.js', root));
const { values: v } = parseArgs({
  options: Object.fromEntries(['videos', 'out', 'count', 'frames', 'crop', 'text-len', 'text-dim', 'seed', 'model', 'weights'].map((k) => [k, { type: 'string' }])),
});
if (!v.videos || !v.out) {
  console.error('usage: node scripts/dit-latents.mjs --videos <dir> --out <dir> [--count N --frames F --crop S --text-len L --text-dim D --seed N]');
  process.exit(2);
}
const int = (k, d) => (v[k] === undefined ? d : Number.parseInt(v[k], 10));
const ae = v.model ? createModel(v.model, v.weights) : loadDefaultModel();
const r = await buildLatentFolder({
  videos: v.videos,
  out: v.out,
  ae,
  count: v.count ? int('count') : undefined,
  frames: int('frames', 8),
  crop: v.crop ? int('crop') : undefined,
  textLen: int('text-len', 8),
  textDim: int('text-dim', 16),
  seed: int('seed', 0),
  onClip: (n) => process.stderr.write(`encoded ${n}\n`),
});
console.log(`${r.count} samples, latents (${r.latentShape.join(', ')}), scale ${r.scale.toPrecision(5)} -> ${v.out}`);
