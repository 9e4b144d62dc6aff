/**
 * `dcvg run clip`: Wan's CLIP image encoder on tensors from a file (interop and parity checks with PyTorch): reads
 * `pixel_values` (B, 3, S, S) and / or images `image0..N` (3, H, W) in [-1, 1]; writes `features` (the penultimate
 * block's tokens, image-to-video's clip_fea), our own `pixel_values` when images were given, and with --all-blocks
 * `features_all_blocks`.
 */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { assertOutputsSafe } from '../io/files.js';
import { saveSafetensors } from '../io/safetensors.js';
import { isClipPresetName } from '../models/clip/config.js';
import { runClip } from '../models/clip/run.js';
import { ValueError, fmtShape } from '../errors.js';
import { parse, type Out } from './common.js';

export function cmdRunClip(rest: string[], out: Out): number {
  const options = {
    config: { type: 'string' },
    weights: { type: 'string' },
    inputs: { type: 'string' },
    output: { type: 'string', short: 'o' },
    'all-blocks': { type: 'boolean' },
    json: { type: 'boolean' },
  } as const;
  const v = parse(rest, options, 'run', false).values;
  for (const k of ['weights', 'inputs', 'output'] as const) if (!v[k]) throw new ValueError(`run clip needs --${k}`);
  for (const k of ['weights', 'inputs'] as const) if (!existsSync(v[k]!)) throw new ValueError(`--${k} file not found: ${v[k]}`);
  // --config defaults to the released ViT-H/14; `file.json#entry` names file.json
  const config = v.config ?? 'open-clip-xlm-roberta-large-vit-huge-14';
  const cfgPath = isClipPresetName(config) ? undefined : config.replace(/#[^/\\]*$/, '');
  if (extname(v.output!) !== '.safetensors') throw new ValueError(`run clip writes .safetensors, got -o ${v.output}`);
  assertOutputsSafe({ '-o': v.output }, { '--config': cfgPath, '--weights': v.weights, '--inputs': v.inputs });
  const t0 = performance.now();
  const y = runClip(config, v.weights!, v.inputs!, { blocks: v['all-blocks'] ? 'all' : 'penultimate' });
  const secs = (performance.now() - t0) / 1000;
  saveSafetensors(v.output!, y, { metadata: { model: 'clip', config, inputs: v.inputs! } });
  const shapes = Object.fromEntries([...y].map(([k, t]) => [k, [...t.shape]]));
  if (v.json) out(JSON.stringify({ output: v.output, tensors: shapes, seconds: +secs.toFixed(3) }) + '\n');
  else out(`ran clip ${config} on ${v.inputs} -> ${v.output} (${[...y].map(([k, t]) => `${k} ${fmtShape(t.shape)}`).join(', ')}) in ${secs.toFixed(2)}s\n`);
  return 0;
}
