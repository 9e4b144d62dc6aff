/**
 * The umT5 prompt tokenizer as Wan's text encoder calls it (`HuggingfaceTokenizer(seq_len=text_len,
 * clean='whitespace')`, add_special_tokens, return_mask): clean -> SentencePiece pieces -> ids + eos, truncated to
 * textLen - 1 pieces + eos, right-padded with the pad id, mask 1 on real tokens (eos included).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { FormatError, ValueError } from '../errors.js';
import type { PromptTokenizer, TokenizedText } from '../pipelines/components.js';
import { cleanPrompt, type CleanOptions } from './clean.js';
import { PieceType, parseSentencePieceModel, type TokenizerModel } from './model.js';
import { Charsmap, normalize, type NormalizerSpec } from './normalizer.js';
import { parseTokenizerJson } from './tokenizer_json.js';
import { UnigramEncoder, type Token } from './unigram.js';

/** Bumped whenever the cleaning or encoding changes what ids a text gets (it is part of every fingerprint). */
const ALGORITHM = 'dcvg-umt5-tokenizer/1';

export interface TokenizeOptions extends CleanOptions {}

export class Umt5Tokenizer implements PromptTokenizer {
  readonly fingerprint: string;
  readonly padId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly vocabSize: number;
  readonly byteFallback: boolean;
  private readonly spec: NormalizerSpec;
  private readonly encoder: UnigramEncoder;

  constructor(
    readonly model: TokenizerModel,
    /** where it came from (for messages) */
    readonly source: string,
  ) {
    this.padId = model.padId;
    this.eosId = model.eosId;
    this.unkId = model.unkId;
    this.vocabSize = model.pieces.length;
    this.byteFallback = model.byteFallback;
    const enc = new TextEncoder();
    this.spec = {
      charsmap: model.charsmap ? new Charsmap(model.charsmap, source) : null,
      addDummyPrefix: model.addDummyPrefix,
      removeExtraWhitespaces: model.removeExtraWhitespaces,
      escapeWhitespaces: model.escapeWhitespaces,
      userDefined: model.pieces
        .filter((p) => p.type === PieceType.USER_DEFINED && p.piece.length > 0)
        .map((p) => enc.encode(p.piece))
        .sort((a, b) => b.length - a.length),
    };
    this.encoder = new UnigramEncoder(model.pieces, model.unkId, model.byteFallback);
    this.fingerprint = modelFingerprint(model);
  }

  /** The SentencePiece pieces of an already cleaned text (no eos). */
  encodeCleaned(cleaned: string): Token[] {
    return this.encoder.encode(normalize(this.spec, new TextEncoder().encode(cleaned)));
  }

  tokenize(text: string, textLen: number, opts: TokenizeOptions = {}): TokenizedText {
    if (!Number.isInteger(textLen) || textLen < 1) throw new ValueError(`text length must be a positive integer, got ${textLen}`);
    const cleaned = cleanPrompt(text, opts);
    const toks = this.encodeCleaned(cleaned);
    const ids = [...toks.map((t) => t.id), this.eosId];
    const kept = toks.slice(0, textLen - 1).map((t) => t.id);
    const inputIds = [...kept, this.eosId];
    const attentionMask = inputIds.map(() => 1);
    while (inputIds.length < textLen) {
      inputIds.push(this.padId);
      attentionMask.push(0);
    }
    return { cleaned, pieces: toks.map((t) => t.piece), ids, inputIds, attentionMask };
  }
}

/**
 * sha256 of what decides the ids (pieces, scores, types, special ids, byte fallback, normaliser settings, charsmap)
 * and of the algorithm version: the same for a spiece.model and a tokenizer.json that tokenise alike, stable across
 * loads and machines.
 */
function modelFingerprint(m: TokenizerModel): string {
  const h = createHash('sha256');
  h.update(ALGORITHM + '\n');
  h.update(JSON.stringify([m.unkId, m.eosId, m.padId, m.byteFallback, m.addDummyPrefix, m.removeExtraWhitespaces, m.escapeWhitespaces]) + '\n');
  const scores = new Float32Array(m.pieces.length);
  const parts: string[] = [];
  for (const [i, p] of m.pieces.entries()) {
    // whether text can match the piece: spiece.model's byte pieces (type BYTE) never do, tokenizer.json's (ordinary
    // vocabulary there, as in HuggingFace's Unigram) do, so the literal text "<0x41>" gets other ids in the two forms
    // and their fingerprints must differ (a shared prompt-cache key would hand one form the other's embedding)
    const matchable = p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED;
    parts.push(p.piece, matchable ? String(p.type) : '0');
    scores[i] = p.score;
  }
  h.update(parts.join('\u0000'));
  h.update(new Uint8Array(scores.buffer));
  h.update(m.charsmap ?? new Uint8Array(0));
  return 'sha256:' + h.digest('hex');
}

/** The tokenizer files a folder may hold, in the order they are preferred. */
const FOLDER_FILES = ['spiece.model', 'tokenizer.json'];

function resolveTokenizerFile(path: string): string {
  if (!existsSync(path)) throw new ValueError(`tokenizer not found: ${path} (expected spiece.model, tokenizer.json, or a folder holding one)`);
  if (statSync(path).isDirectory()) {
    for (const f of FOLDER_FILES) if (existsSync(join(path, f))) return join(path, f);
    throw new ValueError(`tokenizer folder ${path} holds neither ${FOLDER_FILES.join(' nor ')}`);
  }
  return path;
}

export interface LoadTokenizerOptions {
  /**
   * override the file's byte fallback: false gives what a fast tokenizer converted by transformers from a byte-fallback
   * spiece.model produces (one unk per unknown span), true turns it on for a tokenizer.json that lacks it
   */
  byteFallback?: boolean;
}

/** Load a tokenizer from spiece.model, tokenizer.json, or a folder holding one (spiece.model preferred). */
export async function loadTokenizer(path: string, opts: LoadTokenizerOptions = {}): Promise<Umt5Tokenizer> {
  return loadTokenizerSync(path, opts);
}

export function loadTokenizerSync(path: string, opts: LoadTokenizerOptions = {}): Umt5Tokenizer {
  const file = resolveTokenizerFile(path);
  const buf = readFileSync(file);
  if (buf.length === 0) throw new FormatError(`${file}: empty file (expected a SentencePiece model or a tokenizer.json)`);
  // tokenizer.json is JSON (starts with '{' after optional whitespace); anything else is read as a SentencePiece model
  let i = 0;
  while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x0a || buf[i] === 0x0d || buf[i] === 0x09)) i++;
  const isJson = buf[i] === 0x7b || basename(file).endsWith('.json');
  const model = isJson ? parseTokenizerJson(buf.toString('utf8'), file) : parseSentencePieceModel(new Uint8Array(buf.buffer, buf.byteOffset, buf.length), file);
  if (opts.byteFallback !== undefined) model.byteFallback = opts.byteFallback;
  return new Umt5Tokenizer(model, file);
}
