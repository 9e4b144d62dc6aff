/**
 * `dcvg info --model <preset|config.json> [--weights file] [--json] [--keys]`: architecture summary, parameter counts,
 * keys and shapes (shape-only: presets are never allocated), and checkpoint inspection against the model.
 */
import { openWeights, type WeightsFile } from '../io/weights.js';
import { DCAEV, geometry, resolveConfig } from '../models/dcaev/autoencoder.js';
import { configToReference } from '../models/dcaev/config.js';
import { ValueError } from '../errors.js';

interface CheckpointSummary {
  path: string;
  format: WeightsFile['format'];
  source: string;
  tensors: number;
  dtypes: Record<string, number>;
  missing: string[];
  unexpected: string[];
  mismatched: { key: string; model: number[]; checkpoint: number[] }[];
  matches: boolean;
}

function inspectCheckpoint(path: string, shapes: Map<string, number[]>): CheckpointSummary {
  const w = openWeights(path);
  let entries: { name: string; dtype: string; shape: number[] }[];
  try {
    entries = [...w.tensors.keys()].map((k) => ({ name: k, dtype: w.dtype(k), shape: [...w.tensors.shape(k)] }));
  } finally {
    w.close();
  }
  const format = w.format;
  const source = w.stateDict;
  const dtypes: Record<string, number> = {};
  const have = new Map(entries.map((e) => [e.name, e.shape]));
  for (const e of entries) dtypes[e.dtype] = (dtypes[e.dtype] ?? 0) + 1;
  const missing = [...shapes.keys()].filter((k) => !have.has(k));
  const unexpected = [...have.keys()].filter((k) => !shapes.has(k));
  const mismatched = [...shapes.entries()]
    .filter(([k, s]) => have.has(k) && (have.get(k)!.length !== s.length || have.get(k)!.some((d, i) => d !== s[i])))
    .map(([k, s]) => ({ key: k, model: s, checkpoint: have.get(k)! }));
  return {
    path,
    format,
    source,
    tensors: entries.length,
    dtypes,
    missing,
    unexpected,
    mismatched,
    matches: !missing.length && !unexpected.length && !mismatched.length,
  };
}

export function cmdInfo(args: string[], out: (s: string) => void): number {
  const opt = (name: string) => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    if (v === undefined || v.startsWith('--')) throw new ValueError(`${name} needs a value`);
    return v;
  };
  const modelSpec = opt('--model');
  if (!modelSpec) throw new ValueError('info needs --model <preset name | config.json> (presets: dc-ae-v-f32t4c32-1.0, ...)');
  const weights = opt('--weights');
  const json = args.includes('--json');
  const cfg = resolveConfig(modelSpec);
  const m = new DCAEV(cfg); // shape only: no parameter is allocated
  const g = geometry(m);
  const shapes = m.shapes();
  const enc = m.encoder.parameterCount();
  const dec = m.decoder.parameterCount();
  const ckpt = weights ? inspectCheckpoint(weights, shapes) : null;
  const result = {
    model: cfg.name,
    latent_channels: cfg.latentChannels,
    spatial_compression: g.spatial,
    temporal_compression: g.temporal,
    chunk_frames: g.chunk,
    scaling_factor: cfg.scalingFactor,
    compression_ratio: (cfg.inChannels * g.spatial * g.spatial * g.temporal) / cfg.latentChannels,
    num_params: enc + dec,
    num_params_encoder: enc,
    num_params_decoder: dec,
    num_tensors: shapes.size,
    config: configToReference(cfg),
    keys: Object.fromEntries(shapes),
    ...(ckpt ? { checkpoint: ckpt } : {}),
  };
  if (json) {
    out(JSON.stringify(result, null, 1) + '\n');
  } else {
    const fmt = (n: number) => n.toLocaleString('en-US');
    out(`${cfg.name}: DC-AE-V, f${g.spatial}t${g.temporal}c${cfg.latentChannels} (compression ${result.compression_ratio}x)\n`);
    out(`  chunk ${g.chunk ?? 'none'} frames, scaling factor ${cfg.scalingFactor ?? 'unknown'}\n`);
    out(`  parameters ${fmt(enc + dec)} (encoder ${fmt(enc)}, decoder ${fmt(dec)}) in ${shapes.size} tensors\n`);
    const list = [...shapes.entries()];
    const show = args.includes('--keys') ? list : list.slice(0, 6);
    for (const [k, s] of show) out(`  ${k} [${s.join(', ')}]\n`);
    if (show.length < list.length) out(`  ... ${list.length - show.length} more (--keys lists all, --json gives everything)\n`);
    if (ckpt) {
      out(`checkpoint ${ckpt.path}: ${ckpt.format}, ${ckpt.source}, ${ckpt.tensors} tensors (${Object.entries(ckpt.dtypes).map(([d, n]) => `${n} ${d}`).join(', ')})\n`);
      if (ckpt.matches) out('  matches the model: every key and shape\n');
      else {
        if (ckpt.missing.length) out(`  missing ${ckpt.missing.length}: ${ckpt.missing.slice(0, 5).join(', ')}${ckpt.missing.length > 5 ? ', ...' : ''}\n`);
        if (ckpt.unexpected.length) out(`  unexpected ${ckpt.unexpected.length}: ${ckpt.unexpected.slice(0, 5).join(', ')}${ckpt.unexpected.length > 5 ? ', ...' : ''}\n`);
        for (const mm of ckpt.mismatched.slice(0, 5)) out(`  shape mismatch ${mm.key}: model [${mm.model.join(', ')}], checkpoint [${mm.checkpoint.join(', ')}]\n`);
      }
    }
  }
  return ckpt && !ckpt.matches ? 3 : 0;
}
