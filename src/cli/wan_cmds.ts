/** `dcvg run wan`: run the Wan DiT on tensors from a file (interop and parity checks with PyTorch). */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { assertOutputsSafe } from '../io/files.js';
import { saveSafetensors } from '../io/safetensors.js';
import { isWanPresetName } from '../models/wan/config.js';
import { runWan } from '../models/wan/run.js';
import { ValueError, fmtShape } from '../errors.js';
import { parse, type Out } from './common.js';

export function cmdRun(args: string[], out: Out): number {
  const [what, ...rest] = args;
  if (what !== 'wan') throw new ValueError(`run: unknown model family "${what ?? ''}" (available: wan)`);
  const options = {
    config: { type: 'string' },
    weights: { type: 'string' },
    inputs: { type: 'string' },
    output: { type: 'string', short: 'o' },
    json: { type: 'boolean' },
  } as const;
  const v = parse(rest, options, 'run', false).values;
  for (const k of ['config', 'weights', 'inputs', 'output'] as const) if (!v[k]) throw new ValueError(`run wan needs --${k}`);
  for (const k of ['weights', 'inputs'] as const) if (!existsSync(v[k]!)) throw new ValueError(`--${k} file not found: ${v[k]}`);
  // a preset name is no file; `file.json#entry` names file.json (resolveWanConfig reports a missing file or preset)
  const cfgPath = isWanPresetName(v.config!) ? undefined : v.config!.replace(/#[^/\\]*$/, '');
  if (extname(v.output!) !== '.safetensors') throw new ValueError(`run wan writes .safetensors, got -o ${v.output}`);
  assertOutputsSafe({ '-o': v.output }, { '--config': cfgPath, '--weights': v.weights, '--inputs': v.inputs });
  const t0 = performance.now();
  const y = runWan(v.config!, v.weights!, v.inputs!);
  const secs = (performance.now() - t0) / 1000;
  saveSafetensors(v.output!, { out: y }, { metadata: { model: 'wan', config: v.config!, inputs: v.inputs! } });
  if (v.json) out(JSON.stringify({ output: v.output, shape: y.shape, seconds: +secs.toFixed(3) }) + '\n');
  else out(`ran wan ${v.config} on ${v.inputs} -> ${v.output} out ${fmtShape(y.shape)} in ${secs.toFixed(2)}s\n`);
  return 0;
}
