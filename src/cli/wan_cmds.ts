/**
 * `dcvg run wan` / `dcvg run wan-vae` / `dcvg run umt5`: run the Wan DiT, the Wan-2.1 VAE or the umT5 text encoder on
 * tensors from a file (interop and parity checks with PyTorch).
 */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { assertOutputsSafe } from '../io/files.js';
import { saveSafetensors } from '../io/safetensors.js';
import { isWanPresetName } from '../models/wan/config.js';
import { runWan } from '../models/wan/run.js';
import { isWanVaePresetName } from '../models/wan_vae/config.js';
import { runWanVae } from '../models/wan_vae/run.js';
import { isUmt5PresetName } from '../models/umt5/config.js';
import { runUmt5 } from '../models/umt5/run.js';
import { ValueError, fmtShape } from '../errors.js';
import { parse, type Out } from './common.js';
import { cmdRunClip } from './clip_cmds.js';

export function cmdRun(args: string[], out: Out): number {
  const [what, ...rest] = args;
  if (what === 'clip') return cmdRunClip(rest, out);
  if (what !== 'wan' && what !== 'wan-vae' && what !== 'umt5') throw new ValueError(`run: unknown model family "${what ?? ''}" (available: wan, wan-vae, umt5, clip)`);
  const options = {
    config: { type: 'string' },
    weights: { type: 'string' },
    inputs: { type: 'string' },
    output: { type: 'string', short: 'o' },
    json: { type: 'boolean' },
  } as const;
  const v = parse(rest, options, 'run', false).values;
  for (const k of ['config', 'weights', 'inputs', 'output'] as const) if (!v[k]) throw new ValueError(`run ${what} needs --${k}`);
  for (const k of ['weights', 'inputs'] as const) if (!existsSync(v[k]!)) throw new ValueError(`--${k} file not found: ${v[k]}`);
  // a preset name is no file; `file.json#entry` names file.json (resolveWanConfig reports a missing file or preset)
  const preset = what === 'wan' ? isWanPresetName(v.config!) : what === 'umt5' ? isUmt5PresetName(v.config!) : isWanVaePresetName(v.config!);
  const cfgPath = preset ? undefined : v.config!.replace(/#[^/\\]*$/, '');
  if (extname(v.output!) !== '.safetensors') throw new ValueError(`run ${what} writes .safetensors, got -o ${v.output}`);
  assertOutputsSafe({ '-o': v.output }, { '--config': cfgPath, '--weights': v.weights, '--inputs': v.inputs });
  if (what === 'wan-vae') return runVae(v as { config: string; weights: string; inputs: string; output: string; json?: boolean }, out);
  if (what === 'umt5') return runText(v as { config: string; weights: string; inputs: string; output: string; json?: boolean }, out);
  const t0 = performance.now();
  const y = runWan(v.config!, v.weights!, v.inputs!);
  const secs = (performance.now() - t0) / 1000;
  saveSafetensors(v.output!, { out: y }, { metadata: { model: 'wan', config: v.config!, inputs: v.inputs! } });
  if (v.json) out(JSON.stringify({ output: v.output, shape: y.shape, seconds: +secs.toFixed(3) }) + '\n');
  else out(`ran wan ${v.config} on ${v.inputs} -> ${v.output} out ${fmtShape(y.shape)} in ${secs.toFixed(2)}s\n`);
  return 0;
}

/** `dcvg run wan-vae`: moments, mu, latent, reconstruction_raw and reconstruction for input (and input2, ...). */
function runVae(v: { config: string; weights: string; inputs: string; output: string; json?: boolean }, out: Out): number {
  const t0 = performance.now();
  const y = runWanVae(v.config, v.weights, v.inputs);
  const secs = (performance.now() - t0) / 1000;
  saveSafetensors(v.output, y, { metadata: { model: 'wan-vae', config: v.config, inputs: v.inputs } });
  const shapes = Object.fromEntries([...y].map(([k, t]) => [k, [...t.shape]]));
  if (v.json) out(JSON.stringify({ output: v.output, tensors: shapes, seconds: +secs.toFixed(3) }) + '\n');
  else out(`ran wan-vae ${v.config} on ${v.inputs} -> ${v.output} (${[...y].map(([k, t]) => `${k} ${fmtShape(t.shape)}`).join(', ')}) in ${secs.toFixed(2)}s\n`);
  return 0;
}

/** `dcvg run umt5`: hidden_states (B, L, dim) and context0..B-1 (each prompt's real-token rows) for ids and mask. */
function runText(v: { config: string; weights: string; inputs: string; output: string; json?: boolean }, out: Out): number {
  const t0 = performance.now();
  const y = runUmt5(v.config, v.weights, v.inputs);
  const secs = (performance.now() - t0) / 1000;
  saveSafetensors(v.output, y, { metadata: { model: 'umt5', config: v.config, inputs: v.inputs } });
  const shapes = Object.fromEntries([...y].map(([k, t]) => [k, [...t.shape]]));
  if (v.json) out(JSON.stringify({ output: v.output, tensors: shapes, seconds: +secs.toFixed(3) }) + '\n');
  else out(`ran umt5 ${v.config} on ${v.inputs} -> ${v.output} (${[...y].map(([k, t]) => `${k} ${fmtShape(t.shape)}`).join(', ')}) in ${secs.toFixed(2)}s\n`);
  return 0;
}
