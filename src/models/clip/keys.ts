/**
 * The key layout of Wan's CLIP checkpoint (`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`, the state dict
 * of `XLMRobertaCLIP`: 784 keys for the released model), in the reference's state-dict order:
 * - `log_scale` (a 0-d tensor);
 * - `visual.*`: cls_embedding, pos_embedding, head, patch_embedding.weight, pre_norm, transformer.N.{norm1, attn.to_qkv,
 *   attn.proj, norm2, mlp.0, mlp.2}, post_norm — exactly the keys ClipVisual registers;
 * - `textual.*` (XLM-RoBERTa-large with its head): token/type/pos embeddings, blocks.N.{attn.q/k/v/o, norm1, ffn.0,
 *   ffn.2, norm2}, norm, head.0 / head.2 (no bias). Only names and shapes: the text tower is never built or read.
 *
 * Which visual keys the features read: all but the last block, post_norm and head ('penultimate', what image-to-video
 * uses), or every block ('all').
 */
import { clipTokens, type ClipConfig } from './config.js';
import { ClipVisual, type ClipBlocksMode } from './model.js';

/** `visual.*` keys and shapes: those of a shape-only ClipVisual, in registration (= state-dict) order. */
export function clipVisualKeyShapes(c: ClipConfig): Map<string, number[]> {
  return new ClipVisual(c).shapes();
}

/** `textual.*` keys and shapes of XLMRobertaWithHead for the config, in state-dict order. */
export function clipTextualKeyShapes(c: ClipConfig): Map<string, number[]> {
  const T = c.text_dim;
  const mid = Math.floor((T + c.embed_dim) / 2);
  const m = new Map<string, number[]>();
  const p = 'textual.';
  m.set(`${p}token_embedding.weight`, [c.vocab_size, T]);
  m.set(`${p}type_embedding.weight`, [c.type_size, T]);
  m.set(`${p}pos_embedding.weight`, [c.max_text_len, T]);
  for (let i = 0; i < c.text_layers; i++) {
    const b = `${p}blocks.${i}.`;
    for (const n of ['q', 'k', 'v', 'o']) {
      m.set(`${b}attn.${n}.weight`, [T, T]);
      m.set(`${b}attn.${n}.bias`, [T]);
    }
    m.set(`${b}norm1.weight`, [T]);
    m.set(`${b}norm1.bias`, [T]);
    m.set(`${b}ffn.0.weight`, [4 * T, T]);
    m.set(`${b}ffn.0.bias`, [4 * T]);
    m.set(`${b}ffn.2.weight`, [T, 4 * T]);
    m.set(`${b}ffn.2.bias`, [T]);
    m.set(`${b}norm2.weight`, [T]);
    m.set(`${b}norm2.bias`, [T]);
  }
  m.set(`${p}norm.weight`, [T]);
  m.set(`${p}norm.bias`, [T]);
  m.set(`${p}head.0.weight`, [mid, T]);
  m.set(`${p}head.2.weight`, [c.embed_dim, mid]);
  return m;
}

/** Every key of the whole XLMRobertaCLIP state dict, in the reference's order (log_scale, visual, textual). */
export function clipCheckpointKeyShapes(c: ClipConfig): Map<string, number[]> {
  return new Map<string, number[]>([['log_scale', []], ...clipVisualKeyShapes(c), ...clipTextualKeyShapes(c)]);
}

/** The visual keys a model of this mode reads, in state-dict order. */
export function clipKeysRead(c: ClipConfig, blocks: ClipBlocksMode = 'penultimate'): string[] {
  const last = `visual.transformer.${c.vision_layers - 1}.`;
  return [...clipVisualKeyShapes(c).keys()].filter((k) => k !== 'visual.head' && !k.startsWith('visual.post_norm.') && (blocks === 'all' || !k.startsWith(last)));
}

/** The visual features' token count and width, for messages. */
export function clipFeatureShape(c: ClipConfig, batch: number): [number, number, number] {
  return [batch, clipTokens(c), c.vision_dim];
}

/**
 * HuggingFace transformers' `CLIPVisionModel` / `CLIPVisionModelWithProjection` names (a diffusers image-to-video
 * pipeline's `image_encoder/`), for the same tower: `vision_model.embeddings.{class_embedding, patch_embedding,
 * position_embedding}`, `vision_model.pre_layrnorm`, `vision_model.encoder.layers.N.{layer_norm1, self_attn.{q,k,v,
 * out}_proj, layer_norm2, mlp.fc1, mlp.fc2}`, `vision_model.post_layernorm`, `visual_projection` (no bias; the head
 * transposed). q/k/v are separate there: to_qkv is their concatenation along the output rows, in that order.
 * `hidden_states[-2]` of CLIPVisionModel is our `features` (the penultimate block's tokens).
 */
export type ClipKeyFormat = 'official' | 'transformers';

/** One official key's source in transformers' names: one tensor (reshaped or transposed), or q/k/v to concatenate. */
export type ClipHfSource =
  | { kind: 'same'; key: string }
  | { kind: 'reshape'; key: string }
  | { kind: 'transpose'; key: string }
  | { kind: 'qkv'; keys: [string, string, string] };

/** transformers keys that carry nothing for the visual tower (a position-id buffer, a whole CLIPModel's text side). */
export function isClipHfIgnoredKey(k: string): boolean {
  return k === 'vision_model.embeddings.position_ids' || k.startsWith('text_model.') || k === 'logit_scale' || k === 'text_projection.weight';
}

export function detectClipKeyFormat(keys: Iterable<string>): ClipKeyFormat {
  for (const k of keys) if (k.startsWith('vision_model.')) return 'transformers';
  return 'official';
}

/** Official visual key -> where transformers stores it, for every visual key of the config. */
export function clipHfSources(c: ClipConfig): Map<string, ClipHfSource> {
  const v = 'vision_model.';
  const m = new Map<string, ClipHfSource>();
  m.set('visual.cls_embedding', { kind: 'reshape', key: `${v}embeddings.class_embedding` });
  m.set('visual.pos_embedding', { kind: 'reshape', key: `${v}embeddings.position_embedding.weight` });
  m.set('visual.head', { kind: 'transpose', key: 'visual_projection.weight' });
  m.set('visual.patch_embedding.weight', { kind: 'same', key: `${v}embeddings.patch_embedding.weight` });
  for (const p of ['weight', 'bias']) {
    m.set(`visual.pre_norm.${p}`, { kind: 'same', key: `${v}pre_layrnorm.${p}` });
    for (let i = 0; i < c.vision_layers; i++) {
      const o = `visual.transformer.${i}.`;
      const h = `${v}encoder.layers.${i}.`;
      m.set(`${o}norm1.${p}`, { kind: 'same', key: `${h}layer_norm1.${p}` });
      m.set(`${o}attn.to_qkv.${p}`, { kind: 'qkv', keys: [`${h}self_attn.q_proj.${p}`, `${h}self_attn.k_proj.${p}`, `${h}self_attn.v_proj.${p}`] });
      m.set(`${o}attn.proj.${p}`, { kind: 'same', key: `${h}self_attn.out_proj.${p}` });
      m.set(`${o}norm2.${p}`, { kind: 'same', key: `${h}layer_norm2.${p}` });
      m.set(`${o}mlp.0.${p}`, { kind: 'same', key: `${h}mlp.fc1.${p}` });
      m.set(`${o}mlp.2.${p}`, { kind: 'same', key: `${h}mlp.fc2.${p}` });
    }
    m.set(`visual.post_norm.${p}`, { kind: 'same', key: `${v}post_layernorm.${p}` });
  }
  return m;
}
