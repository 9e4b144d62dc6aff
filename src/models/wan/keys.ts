/**
 * Wan-2.1 state-dict key names: the original Wan / DC-Gen [562] names (what WanModel uses) and the diffusers
 * `WanTransformer3DModel` names (HF `transformer/` folders), both directions (diffusers' TRANSFORMER_KEYS_RENAME_DICT).
 *
 * Mapping is by whole dotted components, never substrings, so e.g. the block-level `modulation` and the head's
 * `head.modulation` cannot be confused, and the norm2 <-> norm3 swap needs no placeholder.
 */
import { ValueError } from '../../errors.js';

export type WanKeyFormat = 'wan' | 'diffusers';

/** [wan prefix, diffusers prefix] for top-level modules; the key's remaining components are kept as they are. */
const TOP: readonly (readonly [string, string])[] = [
  ['patch_embedding', 'patch_embedding'],
  ['time_embedding.0', 'condition_embedder.time_embedder.linear_1'],
  ['time_embedding.2', 'condition_embedder.time_embedder.linear_2'],
  ['time_projection.1', 'condition_embedder.time_proj'],
  ['text_embedding.0', 'condition_embedder.text_embedder.linear_1'],
  ['text_embedding.2', 'condition_embedder.text_embedder.linear_2'],
  ['img_emb.proj.0', 'condition_embedder.image_embedder.norm1'],
  ['img_emb.proj.1', 'condition_embedder.image_embedder.ff.net.0.proj'],
  ['img_emb.proj.3', 'condition_embedder.image_embedder.ff.net.2'],
  ['img_emb.proj.4', 'condition_embedder.image_embedder.norm2'],
  // FLF2V's learned image position embedding (not in the DC-VideoGen models; kept so such checkpoints convert)
  ['img_emb.emb_pos', 'condition_embedder.image_embedder.pos_embed'],
  ['head.head', 'proj_out'],
  ['head.modulation', 'scale_shift_table'],
];

/** The same inside `blocks.N.`. */
const BLOCK: readonly (readonly [string, string])[] = [
  ['modulation', 'scale_shift_table'],
  ['self_attn.q', 'attn1.to_q'],
  ['self_attn.k', 'attn1.to_k'],
  ['self_attn.v', 'attn1.to_v'],
  ['self_attn.o', 'attn1.to_out.0'],
  ['self_attn.norm_q', 'attn1.norm_q'],
  ['self_attn.norm_k', 'attn1.norm_k'],
  ['cross_attn.q', 'attn2.to_q'],
  ['cross_attn.k', 'attn2.to_k'],
  ['cross_attn.v', 'attn2.to_v'],
  ['cross_attn.o', 'attn2.to_out.0'],
  ['cross_attn.norm_q', 'attn2.norm_q'],
  ['cross_attn.norm_k', 'attn2.norm_k'],
  ['cross_attn.k_img', 'attn2.add_k_proj'],
  ['cross_attn.v_img', 'attn2.add_v_proj'],
  ['cross_attn.norm_k_img', 'attn2.norm_added_k'],
  // Wan calls the cross-attention norm `norm3` and the FFN norm `norm2`; diffusers numbers them in call order.
  ['norm3', 'norm2'],
  ['norm2', 'norm3'],
  ['norm1', 'norm1'],
  ['ffn.0', 'ffn.net.0.proj'],
  ['ffn.2', 'ffn.net.2'],
];

/** Keys of the original format that have no diffusers counterpart ([562] convert_checkpoint.py's CFG null text). */
export const WAN_ONLY_KEYS: readonly string[] = ['null_embedding'];

function mapByPrefix(key: string, table: readonly (readonly [string, string])[], from: 0 | 1): string | null {
  const to = from === 0 ? 1 : 0;
  for (const row of table) {
    const p = row[from];
    if (key === p) return row[to];
    if (key.startsWith(p + '.')) return row[to] + key.slice(p.length);
  }
  return null;
}

const BLOCK_RE = /^blocks\.(\d+)\.(.+)$/;

function convertKey(key: string, from: WanKeyFormat): string | null {
  const idx = from === 'wan' ? 0 : 1;
  const m = BLOCK_RE.exec(key);
  if (m) {
    const rest = mapByPrefix(m[2]!, BLOCK, idx);
    if (rest !== null) return `blocks.${m[1]}.${rest}`;
  } else {
    const r = mapByPrefix(key, TOP, idx);
    if (r !== null) return r;
  }
  if (from === 'wan' && WAN_ONLY_KEYS.includes(key)) return null;
  throw new ValueError(`"${key}" is not a known ${from === 'wan' ? 'original Wan' : 'diffusers Wan'} transformer key`);
}

/** The diffusers name of an original Wan key; null for keys diffusers has no place for (null_embedding). */
export function wanKeyToDiffusers(key: string): string | null {
  return convertKey(key, 'wan');
}

/** The original Wan name of a diffusers key. */
export function diffusersKeyToWan(key: string): string {
  return convertKey(key, 'diffusers')!;
}

/** Renames every key (values untouched, order kept); Wan-only keys are dropped. Unknown keys throw a ValueError. */
export function wanStateDictToDiffusers<T>(sd: ReadonlyMap<string, T>): Map<string, T> {
  const out = new Map<string, T>();
  for (const [k, v] of sd) {
    const n = wanKeyToDiffusers(k);
    if (n !== null) out.set(n, v);
  }
  return out;
}

export function diffusersStateDictToWan<T>(sd: ReadonlyMap<string, T>): Map<string, T> {
  const out = new Map<string, T>();
  for (const [k, v] of sd) out.set(diffusersKeyToWan(k), v);
  return out;
}

/**
 * Which naming a set of keys uses, decided by markers only one format has (`condition_embedder.`, `attn1.`,
 * `proj_out.` vs `time_embedding.`, `self_attn.`, `head.`). Throws when the keys are neither or mixed.
 */
export function detectWanKeyFormat(keys: Iterable<string>): WanKeyFormat {
  let wan = 0;
  let diff = 0;
  for (const k0 of keys) {
    const k = k0.startsWith('0.') ? k0.slice(2) : k0;
    if (/^(time_embedding|text_embedding|time_projection|head|img_emb)\.|^blocks\.\d+\.(self_attn|cross_attn|modulation|norm3|ffn\.\d)/.test(k)) wan++;
    else if (/^(condition_embedder|proj_out)\.|^scale_shift_table$|^blocks\.\d+\.(attn[12]|scale_shift_table|ffn\.net)/.test(k)) diff++;
  }
  if (wan && !diff) return 'wan';
  if (diff && !wan) return 'diffusers';
  throw new ValueError(
    wan && diff
      ? `state dict mixes original Wan keys (${wan}) and diffusers keys (${diff})`
      : 'state dict has no recognisable Wan transformer keys (neither original Wan nor diffusers names)',
  );
}
