/**
 * Key names of the Wan-2.1 VAE: the original `WanVAE_` state dict (Wan2.1_VAE.pth) and diffusers'
 * `AutoencoderKLWan`, with a map in both directions built from the config's layer plan (so it covers every config
 * diffusers can express, not only the released one). Only names change; tensors and shapes are the same.
 *
 * diffusers' naming, by part:
 * - `encoder.conv1` -> `encoder.conv_in`, `decoder.conv1` -> `decoder.conv_in`; `conv1` -> `quant_conv`,
 *   `conv2` -> `post_quant_conv`; `*.head.0.gamma` -> `*.norm_out.gamma`, `*.head.2` -> `*.conv_out`;
 * - `*.middle.0` / `.2` -> `*.mid_block.resnets.0` / `.1`, `*.middle.1` -> `*.mid_block.attentions.0`;
 * - `encoder.downsamples.N` -> `encoder.down_blocks.N` (same flat index);
 * - `decoder.upsamples.N` -> `decoder.up_blocks.S.resnets.R` for the R-th residual block of stage S, and
 *   `decoder.up_blocks.S.upsamplers.0` for the stage's resample;
 * - inside residual blocks `residual.0.gamma` -> `norm1.gamma`, `residual.2` -> `conv1`, `residual.3.gamma` ->
 *   `norm2.gamma`, `residual.6` -> `conv2`, `shortcut` -> `conv_shortcut`; attention and resample layers keep their
 *   names (`norm.gamma`, `to_qkv`, `proj`, `resample.1`, `time_conv`).
 * diffusers' decoder has no attention blocks in its up blocks: a config with attention there has no diffusers form.
 */
import { ValueError } from '../../errors.js';
import { type WanVaeConfig, decoderPlan, encoderPlan } from './config.js';
import { WanVAE } from './model.js';

export type WanVaeKeyFormat = 'original' | 'diffusers';

const RES_RENAME: [string, string][] = [
  ['residual.0.gamma', 'norm1.gamma'],
  ['residual.2.weight', 'conv1.weight'],
  ['residual.2.bias', 'conv1.bias'],
  ['residual.3.gamma', 'norm2.gamma'],
  ['residual.6.weight', 'conv2.weight'],
  ['residual.6.bias', 'conv2.bias'],
  ['shortcut.weight', 'conv_shortcut.weight'],
  ['shortcut.bias', 'conv_shortcut.bias'],
];

function renameRes(rest: string): string {
  const hit = RES_RENAME.find(([a]) => a === rest);
  if (!hit) throw new ValueError(`Wan VAE keys: unexpected residual-block parameter "${rest}"`);
  return hit[1];
}

/** The diffusers name of one original key, for a model of config `c` (plans are passed in to build them once). */
function toDiffusersKey(k: string, enc: ReturnType<typeof encoderPlan>, dec: ReturnType<typeof decoderPlan>): string {
  const simple: Record<string, string> = {
    'conv1.weight': 'quant_conv.weight',
    'conv1.bias': 'quant_conv.bias',
    'conv2.weight': 'post_quant_conv.weight',
    'conv2.bias': 'post_quant_conv.bias',
  };
  if (simple[k]) return simple[k];
  const m = /^(encoder|decoder)\.(.+)$/.exec(k);
  if (!m) throw new ValueError(`Wan VAE keys: no diffusers name for "${k}"`);
  const [, part, rest] = m as unknown as [string, string, string];
  let r: RegExpExecArray | null;
  if ((r = /^conv1\.(weight|bias)$/.exec(rest))) return `${part}.conv_in.${r[1]}`;
  if (rest === 'head.0.gamma') return `${part}.norm_out.gamma`;
  if ((r = /^head\.2\.(weight|bias)$/.exec(rest))) return `${part}.conv_out.${r[1]}`;
  if ((r = /^middle\.([012])\.(.+)$/.exec(rest))) {
    const i = Number(r[1]);
    if (i === 1) return `${part}.mid_block.attentions.0.${r[2]}`;
    return `${part}.mid_block.resnets.${i === 0 ? 0 : 1}.${renameRes(r[2]!)}`;
  }
  if (part === 'encoder' && (r = /^downsamples\.(\d+)\.(.+)$/.exec(rest))) {
    const e = enc[Number(r[1])];
    if (!e) throw new ValueError(`Wan VAE keys: "${k}" is beyond the encoder's ${enc.length} blocks`);
    return `encoder.down_blocks.${r[1]}.${e.block.kind === 'res' ? renameRes(r[2]!) : r[2]}`;
  }
  if (part === 'decoder' && (r = /^upsamples\.(\d+)\.(.+)$/.exec(rest))) {
    const e = dec[Number(r[1])];
    if (!e) throw new ValueError(`Wan VAE keys: "${k}" is beyond the decoder's ${dec.length} blocks`);
    if (e.block.kind === 'res') return `decoder.up_blocks.${e.stage}.resnets.${e.resIndex}.${renameRes(r[2]!)}`;
    if (e.block.kind === 'resample') return `decoder.up_blocks.${e.stage}.upsamplers.0.${r[2]}`;
    throw new ValueError(`Wan VAE keys: "${k}" is an attention block in a decoder up block, which diffusers' AutoencoderKLWan does not have`);
  }
  throw new ValueError(`Wan VAE keys: no diffusers name for "${k}"`);
}

export interface WanVaeKeyMap {
  /** original key -> diffusers key, in the original state-dict order */
  toDiffusers: Map<string, string>;
  /** diffusers key -> original key */
  toOriginal: Map<string, string>;
}

/** Both directions of the key map for every parameter of a model of this config (shape-only; nothing allocated). */
export function wanVaeKeyMap(c: WanVaeConfig | WanVAE): WanVaeKeyMap {
  const model = c instanceof WanVAE ? c : new WanVAE(c);
  const enc = encoderPlan(model.config);
  const dec = decoderPlan(model.config);
  const toDiffusers = new Map<string, string>();
  const toOriginal = new Map<string, string>();
  for (const [k] of model.namedParams()) {
    const d = toDiffusersKey(k, enc, dec);
    if (toOriginal.has(d)) throw new ValueError(`Wan VAE keys: "${k}" and "${toOriginal.get(d)}" would both be "${d}"`);
    toDiffusers.set(k, d);
    toOriginal.set(d, k);
  }
  return { toDiffusers, toOriginal };
}

/** 'diffusers' when the keys use diffusers' names (conv_in, down_blocks, quant_conv, ...), else 'original'. */
export function detectWanVaeKeyFormat(keys: Iterable<string>): WanVaeKeyFormat {
  for (const k of keys) if (/(^|\.)(quant_conv|post_quant_conv|conv_in|conv_out|down_blocks|up_blocks|mid_block)\./.test(k)) return 'diffusers';
  return 'original';
}
