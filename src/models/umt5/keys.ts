/**
 * umT5 state-dict key names: the official Wan encoder checkpoint's (`models_t5_umt5-xxl-enc-bf16.pth`: what Umt5Model
 * uses) and HuggingFace transformers' `UMT5EncoderModel` (a diffusers `text_encoder/` folder), both directions.
 *
 * | official (Wan) | HuggingFace |
 * | --- | --- |
 * | `token_embedding.weight` | `shared.weight` (`encoder.embed_tokens.weight` is the same tied tensor) |
 * | `blocks.N.norm1.weight` | `encoder.block.N.layer.0.layer_norm.weight` |
 * | `blocks.N.attn.{q,k,v,o}.weight` | `encoder.block.N.layer.0.SelfAttention.{q,k,v,o}.weight` |
 * | `blocks.N.pos_embedding.embedding.weight` | `encoder.block.N.layer.0.SelfAttention.relative_attention_bias.weight` |
 * | `blocks.N.norm2.weight` | `encoder.block.N.layer.1.layer_norm.weight` |
 * | `blocks.N.ffn.gate.0.weight` | `encoder.block.N.layer.1.DenseReluDense.wi_0.weight` (the GELU-gated input) |
 * | `blocks.N.ffn.fc1.weight` | `encoder.block.N.layer.1.DenseReluDense.wi_1.weight` |
 * | `blocks.N.ffn.fc2.weight` | `encoder.block.N.layer.1.DenseReluDense.wo.weight` |
 * | `norm.weight` | `encoder.final_layer_norm.weight` |
 * | `pos_embedding.embedding.weight` (shared_pos: T5 / mT5) | `encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight` |
 */
import { ValueError } from '../../errors.js';

export type Umt5KeyFormat = 'official' | 'hf';

const BLOCK: readonly (readonly [string, string])[] = [
  ['norm1.weight', 'layer.0.layer_norm.weight'],
  ['attn.q.weight', 'layer.0.SelfAttention.q.weight'],
  ['attn.k.weight', 'layer.0.SelfAttention.k.weight'],
  ['attn.v.weight', 'layer.0.SelfAttention.v.weight'],
  ['attn.o.weight', 'layer.0.SelfAttention.o.weight'],
  ['pos_embedding.embedding.weight', 'layer.0.SelfAttention.relative_attention_bias.weight'],
  ['norm2.weight', 'layer.1.layer_norm.weight'],
  ['ffn.gate.0.weight', 'layer.1.DenseReluDense.wi_0.weight'],
  ['ffn.fc1.weight', 'layer.1.DenseReluDense.wi_1.weight'],
  ['ffn.fc2.weight', 'layer.1.DenseReluDense.wo.weight'],
];
const TOP: readonly (readonly [string, string])[] = [
  ['token_embedding.weight', 'shared.weight'],
  ['norm.weight', 'encoder.final_layer_norm.weight'],
];
const SHARED_POS: readonly [string, string] = ['pos_embedding.embedding.weight', 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'];

/** HuggingFace's tied copy of `shared.weight`: the same tensor, not loaded when `shared.weight` is present. */
export const HF_TIED_EMBEDDING = 'encoder.embed_tokens.weight';

const OFFICIAL_BLOCK = /^blocks\.(\d+)\.(.+)$/;
const HF_BLOCK = /^encoder\.block\.(\d+)\.(.+)$/;

/** The HuggingFace name of an official key. With shared_pos the top-level table is block 0's relative_attention_bias. */
export function umt5KeyToHf(key: string, sharedPos = false): string {
  if (sharedPos && key === SHARED_POS[0]) return SHARED_POS[1];
  for (const [a, b] of TOP) if (key === a) return b;
  const m = OFFICIAL_BLOCK.exec(key);
  if (m) for (const [a, b] of BLOCK) if (m[2] === a) return `encoder.block.${m[1]}.${b}`;
  throw new ValueError(`"${key}" is not a known official umT5 encoder key`);
}

/** The official name of a HuggingFace key (`encoder.embed_tokens.weight` -> `token_embedding.weight` too). */
export function hfKeyToUmt5(key: string, sharedPos = false): string {
  if (sharedPos && key === SHARED_POS[1]) return SHARED_POS[0];
  if (key === HF_TIED_EMBEDDING) return 'token_embedding.weight';
  for (const [a, b] of TOP) if (key === b) return a;
  const m = HF_BLOCK.exec(key);
  if (m) for (const [a, b] of BLOCK) if (m[2] === b) return `blocks.${m[1]}.${a}`;
  throw new ValueError(`"${key}" is not a known HuggingFace UMT5EncoderModel key`);
}

/** Renames every key (values untouched, order kept). */
export function umt5StateDictToHf<T>(sd: ReadonlyMap<string, T>, sharedPos = false): Map<string, T> {
  return new Map([...sd].map(([k, v]) => [umt5KeyToHf(k, sharedPos), v]));
}

/** Renames every key; the tied `encoder.embed_tokens.weight` is dropped when `shared.weight` is there. */
export function hfStateDictToUmt5<T>(sd: ReadonlyMap<string, T>, sharedPos = false): Map<string, T> {
  const out = new Map<string, T>();
  for (const [k, v] of sd) {
    if (k === HF_TIED_EMBEDDING && sd.has('shared.weight')) continue;
    out.set(hfKeyToUmt5(k, sharedPos), v);
  }
  return out;
}

/** Which naming a set of keys uses (`blocks.` / `token_embedding.` vs `encoder.` / `shared.`); throws when neither or mixed. */
export function detectUmt5KeyFormat(keys: Iterable<string>): Umt5KeyFormat {
  let off = 0;
  let hf = 0;
  for (const k of keys) {
    if (/^(blocks\.\d+\.|token_embedding\.|pos_embedding\.|norm\.weight$)/.test(k)) off++;
    else if (/^(encoder\.|shared\.weight$)/.test(k)) hf++;
  }
  if (off && !hf) return 'official';
  if (hf && !off) return 'hf';
  throw new ValueError(
    off && hf
      ? `state dict mixes official umT5 keys (${off}) and HuggingFace keys (${hf})`
      : 'state dict has no recognisable umT5 encoder keys (neither official `blocks.N.attn.q.weight` nor HuggingFace `encoder.block.N.layer.0.SelfAttention.q.weight`)',
  );
}
