/**
 * `dcvg info --model <preset|config.json> [--weights file] [--json] [--keys]`: architecture summary, parameter counts,
 * keys and shapes (shape-only: presets are never allocated), and checkpoint inspection against the model.
 */
import { existsSync, statSync } from 'node:fs';
import { isWanVaeSpec, wanVaeFolderConfig } from '../pipelines/autoencoder.js';
import { openWeights, type WeightsFile } from '../io/weights.js';
import { DCAEV, geometry, resolveConfig } from '../models/dcaev/autoencoder.js';
import { configToReference } from '../models/dcaev/config.js';
import { ValueError } from '../errors.js';
import { resolveWanVaeConfig, wanVaeConfigToJson, wanVaeFactors } from '../models/wan_vae/config.js';
import { detectWanVaeKeyFormat, wanVaeKeyMap } from '../models/wan_vae/keys.js';
import { WanVAE } from '../models/wan_vae/model.js';

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
  if (isWanVaeSpec(modelSpec)) {
    // a diffusers folder is described by its config.json
    const folder = existsSync(modelSpec) && statSync(modelSpec).isDirectory() ? wanVaeFolderConfig(modelSpec) : null;
    return infoWanVae(folder ?? modelSpec, weights, json, args.includes('--keys'), out);
  }
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
    printKeysAndCheckpoint(out, shapes, args.includes('--keys'), ckpt);
  }
  return ckpt && !ckpt.matches ? 3 : 0;
}

function infoWanVae(spec: string, weights: string | undefined, json: boolean, allKeys: boolean, out: (s: string) => void): number {
  const cfg = resolveWanVaeConfig(spec);
  const m = new WanVAE(cfg); // shape only
  const shapes = m.shapes();
  const counts = m.parameterCounts();
  const f = wanVaeFactors(cfg);
  let ckpt: CheckpointSummary | null = null;
  if (weights) {
    // a diffusers checkpoint is compared in diffusers' names
    const w = openWeights(weights, { component: 'vae' });
    let diffusers: boolean;
    try {
      diffusers = detectWanVaeKeyFormat(w.tensors.keys()) === 'diffusers';
    } finally {
      w.close();
    }
    const map = diffusers ? wanVaeKeyMap(m).toDiffusers : null;
    ckpt = inspectCheckpoint(weights, map ? new Map([...shapes].map(([k, s]) => [map.get(k)!, s])) : shapes);
  }
  const result = {
    model: cfg.name,
    family: 'wan-vae',
    latent_channels: cfg.z_dim,
    spatial_compression: f.spatial,
    temporal_compression: f.temporal,
    frames: `1 + ${f.temporal}k`,
    compression_ratio: (3 * f.spatial * f.spatial * f.temporal) / cfg.z_dim,
    num_params: counts.total,
    num_params_encoder: counts.encoder,
    num_params_decoder: counts.decoder,
    num_params_conv1: counts.conv1,
    num_params_conv2: counts.conv2,
    num_tensors: shapes.size,
    config: wanVaeConfigToJson(cfg),
    keys: Object.fromEntries(shapes),
    ...(ckpt ? { checkpoint: ckpt } : {}),
  };
  if (json) out(JSON.stringify(result, null, 1) + '\n');
  else {
    const fmt = (n: number) => n.toLocaleString('en-US');
    out(`${cfg.name}: Wan-2.1 VAE, f${f.spatial}t${f.temporal}c${cfg.z_dim} (compression ${result.compression_ratio}x), clips of 1 + ${f.temporal}k frames\n`);
    out(`  parameters ${fmt(counts.total)} (encoder ${fmt(counts.encoder)}, decoder ${fmt(counts.decoder)}, conv1 ${fmt(counts.conv1)}, conv2 ${fmt(counts.conv2)}) in ${shapes.size} tensors\n`);
    printKeysAndCheckpoint(out, shapes, allKeys, ckpt);
  }
  return ckpt && !ckpt.matches ? 3 : 0;
}

/** The key listing (the first 6, or all with --keys) and, when a checkpoint was given, how it matches the model. */
function printKeysAndCheckpoint(out: (s: string) => void, shapes: ReadonlyMap<string, readonly number[]>, allKeys: boolean, ckpt: CheckpointSummary | null): void {
  const list = [...shapes.entries()];
  const show = allKeys ? list : list.slice(0, 6);
  for (const [k, s] of show) out(`  ${k} [${s.join(', ')}]\n`);
  if (show.length < list.length) out(`  ... ${list.length - show.length} more (--keys lists all, --json gives everything)\n`);
  if (!ckpt) return;
  out(`checkpoint ${ckpt.path}: ${ckpt.format}, ${ckpt.source}, ${ckpt.tensors} tensors (${Object.entries(ckpt.dtypes).map(([d, n]) => `${n} ${d}`).join(', ')})\n`);
  if (ckpt.matches) {
    out('  matches the model: every key and shape\n');
    return;
  }
  if (ckpt.missing.length) out(`  missing ${ckpt.missing.length}: ${ckpt.missing.slice(0, 5).join(', ')}${ckpt.missing.length > 5 ? ', ...' : ''}\n`);
  if (ckpt.unexpected.length) out(`  unexpected ${ckpt.unexpected.length}: ${ckpt.unexpected.slice(0, 5).join(', ')}${ckpt.unexpected.length > 5 ? ', ...' : ''}\n`);
  for (const mm of ckpt.mismatched.slice(0, 5)) out(`  shape mismatch ${mm.key}: model [${mm.model.join(', ')}], checkpoint [${mm.checkpoint.join(', ')}]\n`);
}
