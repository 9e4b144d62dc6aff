/**
 * The interfaces the generation pipelines (`t2v.ts`, `i2v.ts`, `dcvg generate`) drive, so that a pipeline never
 * depends on how a tokenizer, text encoder or image encoder is implemented or stored:
 * - `PromptTokenizer`: the umT5 tokenisation path (cleaning, SentencePiece, eos, truncation, padding, mask);
 * - `TextEncoder`: umT5 (or any encoder in its place), ids + mask -> one (L_real, dim) context per prompt;
 * - `ImageEncoder`: the CLIP visual tower as image-to-video uses it, images in [-1, 1] -> (B, L_img, dim) tokens.
 * Implementations: `src/text` (tokenizer), `src/models/umt5`, `src/models/clip`.
 */
import type { Tensor } from '../tensor/tensor.js';

/** One tokenised text, as the model receives it. */
export interface TokenizedText {
  /** the cleaned text (after the 'whitespace' cleaning) */
  cleaned: string;
  /** the SentencePiece pieces of the cleaned text, untruncated, no eos */
  pieces: string[];
  /** ids of the pieces, untruncated, eos appended */
  ids: number[];
  /** length textLen: ids truncated to textLen - 1 plus eos, right-padded with the pad id */
  inputIds: number[];
  /** length textLen: 1 on real tokens (eos included), 0 on padding */
  attentionMask: number[];
}

export interface PromptTokenizer {
  /** a stable identity of the vocabulary/model file (used in cache keys), e.g. a sha256 of the file */
  readonly fingerprint: string;
  readonly padId: number;
  readonly eosId: number;
  readonly vocabSize: number;
  tokenize(text: string, textLen: number): TokenizedText;
}

export interface TextEncoder {
  /** a stable identity of the weights (used in cache keys) */
  readonly fingerprint: string;
  /** output width (4096 for umT5-XXL) */
  readonly dim: number;
  /**
   * ids (B, L) int32 and mask (B, L) (1 real, 0 pad; real tokens first) -> per prompt the (L_b, dim) float32
   * hidden states of its real tokens (L_b = mask row sum); padding positions are never computed.
   */
  encode(ids: Tensor, mask: Tensor): Tensor[];
}

export interface ImageEncoder {
  /** a stable identity of the weights */
  readonly fingerprint: string;
  /** output width (1280 for ViT-H/14) */
  readonly dim: number;
  /** images (3, H, W) in [-1, 1], any sizes -> pixel_values (B, 3, S, S), resized and normalised */
  preprocess(images: readonly Tensor[]): Tensor;
  /** pixel_values (B, 3, S, S) -> the penultimate block's tokens (B, 1 + (S/patch)^2, dim) */
  features(pixelValues: Tensor): Tensor;
}
