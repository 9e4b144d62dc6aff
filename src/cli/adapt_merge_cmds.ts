/**
 * `dcvg adapt assemble` and `dcvg adapt merge` (issue #20 items 3 and 6). The `dcvg adapt <sub>` dispatcher calls
 * adaptAssembleMain / adaptMergeMain with the arguments after the sub-command.
 */
import { existsSync } from 'node:fs';
import { assertOutputsSafe } from '../io/files.js';
import { resolveWanConfig } from '../models/wan/config.js';
import { ValueError } from '../errors.js';
import { assembleFiles } from '../adapt/assemble.js';
import { LORA_LAYOUTS, type LoraLayout } from '../adapt/lora_files.js';
import { mergeAdapterIntoBase, mergePhase3, type DiTFormat } from '../adapt/merge.js';
import { parse, type Out } from './common.js';

export const ADAPT_ASSEMBLE_HELP = `dcvg adapt assemble --base DIT --patch PHASE1_OUT -o OUT [--config C] [--in-dim N] [--out-dim N]
                     [--format wan|diffusers] [--json]
  A DC-VideoGen DiT (patch 1x1x1, in 32 / I2V 68, out 32) from a base Wan DiT (file or folder; its config from
  config.json beside it, the header's config metadata or --config) and the phase-1 patch embedder
  (patch_embedding.weight/bias). Copies time/text embeddings, blocks, head.modulation (and img_emb for I2V);
  head.head is zero. OUT: a .safetensors file, or a new folder (config.json + weights).
`;

export const ADAPT_MERGE_HELP = `dcvg adapt merge RUN_OR_CHECKPOINT -o OUT [--format wan|diffusers] [--save-lora FILE] [--lora-layout L]
                  [--alpha A] [--json]
dcvg adapt merge --base DIT --lora ADAPTER [--strength s] -o OUT [--format wan|diffusers] [--layout L] [--json]
  First form: a phase-3 run folder or checkpoint (EMA weights) with W <- W + (alpha/r) B A, written as a plain DiT
  in Wan keys (or diffusers keys; a folder OUT becomes a diffusers transformer/ component); --save-lora writes the
  adapters alone (layout comfy by default: diffusion_model.<layer>.lora_A/lora_B.weight + .alpha).
  Second form: an adapter in any layout (${LORA_LAYOUTS.join(', ')}; auto-detected) onto a DiT with strength s:
  W + s (alpha/r) B A. Merging is in float32; each weight is written back in the base's dtype (bf16 stays bf16).
`;

function outOf(out?: Out): Out {
  return out ?? ((s: string) => void process.stdout.write(s));
}

function formatOf(v: unknown): DiTFormat {
  const f = (v as string | undefined) ?? 'wan';
  if (f !== 'wan' && f !== 'diffusers') throw new ValueError(`--format must be wan or diffusers, got "${f}"`);
  return f;
}

function layoutOf(v: unknown, flag: string): LoraLayout | undefined {
  if (v === undefined) return undefined;
  if (!LORA_LAYOUTS.includes(v as LoraLayout)) throw new ValueError(`${flag} must be one of ${LORA_LAYOUTS.join(', ')}, got "${String(v)}"`);
  return v as LoraLayout;
}

function num(v: unknown, flag: string, int = false): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (int && (!Number.isInteger(n) || n < 1))) throw new ValueError(`${flag} must be ${int ? 'a positive integer' : 'a finite number'}, got "${String(v)}"`);
  return n;
}

export function adaptAssembleMain(argv: string[], out?: Out): number {
  const o = outOf(out);
  if (argv.includes('--help') || argv.includes('-h')) {
    o(ADAPT_ASSEMBLE_HELP);
    return 0;
  }
  const v = parse(argv, { base: { type: 'string' }, patch: { type: 'string' }, output: { type: 'string', short: 'o' }, config: { type: 'string' }, 'in-dim': { type: 'string' }, 'out-dim': { type: 'string' }, format: { type: 'string' }, json: { type: 'boolean' } }, 'adapt assemble', false).values;
  const output = v.output;
  if (!v.base || !v.patch || !output) throw new ValueError('adapt assemble needs --base DIT, --patch PHASE1_OUT and -o OUT');
  for (const k of ['base', 'patch'] as const) if (!existsSync(v[k] as string)) throw new ValueError(`--${k} not found: ${v[k]}`);
  assertOutputsSafe({ '-o': output }, { '--base': v.base as string, '--patch': v.patch as string });
  const r = assembleFiles(v.base as string, v.patch as string, output, {
    config: v.config ? resolveWanConfig(v.config as string) : undefined,
    inDim: num(v['in-dim'], '--in-dim', true),
    outDim: num(v['out-dim'], '--out-dim', true),
    format: formatOf(v.format),
  });
  if (v.json) o(JSON.stringify({ outputs: r.outputs, config: r.config, copied: r.copied }) + '\n');
  else o(`assembled ${r.config.name} (in ${r.config.in_dim}, out ${r.config.out_dim}, patch 1x1x1; ${r.copied} tensors from the base, head.head zero) -> ${r.outputs.join(', ')}\n`);
  return 0;
}

export function adaptMergeMain(argv: string[], out?: Out): number {
  const o = outOf(out);
  if (argv.includes('--help') || argv.includes('-h')) {
    o(ADAPT_MERGE_HELP);
    return 0;
  }
  const parsed = parse(
    argv,
    {
      base: { type: 'string' },
      lora: { type: 'string' },
      strength: { type: 'string' },
      output: { type: 'string', short: 'o' },
      format: { type: 'string' },
      'save-lora': { type: 'string' },
      'lora-layout': { type: 'string' },
      layout: { type: 'string' },
      alpha: { type: 'string' },
      json: { type: 'boolean' },
    },
    'adapt merge',
  );
  const v = parsed.values;
  const positionals = parsed.positionals;
  const output = v.output;
  if (!output) throw new ValueError('adapt merge needs -o OUT');
  const format = formatOf(v.format);
  let r;
  if (v.lora !== undefined || v.base !== undefined) {
    if (!v.lora || !v.base) throw new ValueError('adapt merge: --base DIT and --lora ADAPTER go together');
    if (positionals.length) throw new ValueError(`adapt merge: unexpected argument "${positionals[0]}" with --base/--lora`);
    for (const k of ['base', 'lora'] as const) if (!existsSync(v[k] as string)) throw new ValueError(`--${k} not found: ${v[k]}`);
    assertOutputsSafe({ '-o': output }, { '--base': v.base as string, '--lora': v.lora as string });
    r = mergeAdapterIntoBase(v.base as string, v.lora as string, output, { strength: num(v.strength, '--strength') ?? 1, format, layout: layoutOf(v.layout, '--layout') });
  } else {
    if (positionals.length !== 1) throw new ValueError('adapt merge needs one phase-3 run folder or checkpoint (or --base DIT --lora ADAPTER)');
    const input = positionals[0]!;
    if (!existsSync(input)) throw new ValueError(`not found: ${input}`);
    if (v.strength !== undefined) throw new ValueError('--strength goes with --base/--lora (a phase-3 merge uses the trained scale)');
    const outs: Record<string, string> = { '-o': output };
    if (v['save-lora']) outs['--save-lora'] = v['save-lora'] as string;
    assertOutputsSafe(outs, { input });
    r = mergePhase3(input, output, { format, saveLora: v['save-lora'] as string | undefined, loraLayout: layoutOf(v['lora-layout'], '--lora-layout'), alpha: num(v.alpha, '--alpha') });
  }
  if (v.json) o(JSON.stringify(r) + '\n');
  else o(`merged ${r.layers} LoRA layers into ${r.source} (weights written as ${r.dtypes.join('/')}) -> ${r.outputs.join(', ')}\n`);
  return 0;
}
