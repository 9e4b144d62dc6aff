/**
 * HuggingFace `tokenizer.json` with a Unigram model (what transformers writes for T5 / umT5 fast tokenizers), read
 * into the same TokenizerModel as spiece.model, and the converter the other way (a SentencePiece model to such a
 * tokenizer.json, as transformers' T5 converter lays it out; used by the tests and by `toTokenizerJson` users).
 *
 * Read: `model` (type Unigram, vocab [[piece, score], ...], unk_id, byte_fallback, default false), the `Precompiled`
 * charsmap of the normaliser (alone or in a Sequence with `Replace(" {2,}", " ")` / `Strip`), Metaspace's prefix
 * setting, and the special added tokens (`</s>`, `<pad>`), which are never matched inside text. Any other normaliser
 * or pre-tokeniser is refused rather than approximated.
 */
import { FormatError } from '../errors.js';
import { PieceType, type Piece, type TokenizerModel } from './model.js';

type Json = Record<string, unknown>;

function isObj(x: unknown): x is Json {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Parse a tokenizer.json text. `what` names the file in errors. */
export function parseTokenizerJson(text: string, what: string): TokenizerModel {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${what}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObj(j) || !isObj(j.model)) throw new FormatError(`${what}: not a HuggingFace tokenizer.json (no "model" object)`);
  const m = j.model;
  if (m.type !== 'Unigram') throw new FormatError(`${what}: model type ${JSON.stringify(m.type ?? null)} is not supported (umT5 uses "Unigram")`);
  if (!Array.isArray(m.vocab) || m.vocab.length === 0) throw new FormatError(`${what}: model.vocab is missing or empty`);
  const pieces: Piece[] = m.vocab.map((e: unknown, i: number) => {
    if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number') throw new FormatError(`${what}: model.vocab[${i}] is not [piece, score]`);
    return { piece: e[0], score: Math.fround(e[1]), type: PieceType.NORMAL };
  });
  const unkId = m.unk_id;
  if (typeof unkId !== 'number' || !Number.isInteger(unkId) || unkId < 0 || unkId >= pieces.length)
    throw new FormatError(`${what}: model.unk_id ${JSON.stringify(unkId ?? null)} is not an id of its ${pieces.length} pieces`);
  pieces[unkId]!.type = PieceType.UNKNOWN;
  const special = new Map<string, number>();
  if (Array.isArray(j.added_tokens)) {
    const added = [...j.added_tokens];
    for (const t of added) if (!isObj(t) || typeof t.content !== 'string' || typeof t.id !== 'number' || !Number.isInteger(t.id) || t.id < 0) throw new FormatError(`${what}: added_tokens has an entry without content and a valid id`);
    added.sort((a, b) => a.id - b.id);
    for (const t of added) {
      // special tokens past the model's vocabulary (umT5's 384 <extra_id_N>) extend it: ids the model never emits
      if (t.id >= pieces.length) {
        if (t.special !== true) throw new FormatError(`${what}: added token ${JSON.stringify(t.content)} (id ${t.id}) is not special; non-special added tokens are not supported`);
        if (t.id !== pieces.length) throw new FormatError(`${what}: added token ${JSON.stringify(t.content)} has id ${t.id}, leaving a gap after the ${pieces.length} ids before it`);
        pieces.push({ piece: t.content, score: 0, type: PieceType.CONTROL });
      }
      if (t.special === true && t.id !== unkId) {
        special.set(t.content, t.id);
        pieces[t.id]!.type = PieceType.CONTROL;
      }
    }
  }
  const idOf = (tok: string): number => {
    const s = special.get(tok);
    if (s !== undefined) return s;
    const k = pieces.findIndex((p) => p.piece === tok);
    if (k < 0) throw new FormatError(`${what}: no "${tok}" token`);
    return k;
  };
  // byte pieces (`<0xXX>`) stay ordinary vocabulary entries, as HuggingFace's Unigram holds them; with byte_fallback
  // the encoder finds them by name

  const norm = { charsmap: null as Uint8Array | null, collapse: false };
  const walkNormalizer = (n: unknown): void => {
    if (n === null || n === undefined) return;
    if (!isObj(n)) throw new FormatError(`${what}: normalizer is not an object`);
    if (n.type === 'Sequence') {
      if (!Array.isArray(n.normalizers)) throw new FormatError(`${what}: normalizer Sequence without normalizers`);
      for (const x of n.normalizers) walkNormalizer(x);
    } else if (n.type === 'Precompiled') {
      if (typeof n.precompiled_charsmap !== 'string') throw new FormatError(`${what}: Precompiled normalizer without precompiled_charsmap`);
      const b = Buffer.from(n.precompiled_charsmap, 'base64');
      norm.charsmap = b.length > 0 ? new Uint8Array(b) : null;
    } else if (n.type === 'Replace' && isObj(n.pattern) && n.pattern.Regex === ' {2,}' && n.content === ' ') {
      norm.collapse = true;
    } else if (n.type === 'Strip') {
      /* spaces at the ends are dropped by the whitespace handling anyway */
    } else throw new FormatError(`${what}: normalizer ${JSON.stringify(n.type)} is not supported (Precompiled, Replace(" {2,}", " "), Strip, Sequence are)`);
  };
  walkNormalizer(j.normalizer);

  let addDummyPrefix = true;
  const walkPre = (p: unknown): void => {
    if (p === null || p === undefined) return;
    if (!isObj(p)) throw new FormatError(`${what}: pre_tokenizer is not an object`);
    if (p.type === 'Sequence') {
      if (!Array.isArray(p.pretokenizers)) throw new FormatError(`${what}: pre_tokenizer Sequence without pretokenizers`);
      for (const x of p.pretokenizers) walkPre(x);
    } else if (p.type === 'Metaspace') {
      if (p.replacement !== undefined && p.replacement !== '\u2581') throw new FormatError(`${what}: Metaspace replacement ${JSON.stringify(p.replacement)} is not supported (only "\u2581")`);
      if (p.prepend_scheme === 'never' || p.add_prefix_space === false) addDummyPrefix = false;
      else if (p.prepend_scheme === 'first') addDummyPrefix = true;
    } else if (p.type === 'WhitespaceSplit') {
      /* whitespace splitting: equivalent for pieces that hold '▁' only in front */
    } else throw new FormatError(`${what}: pre_tokenizer ${JSON.stringify(p.type)} is not supported (Metaspace, WhitespaceSplit, Sequence are)`);
  };
  walkPre(j.pre_tokenizer);

  return {
    format: 'tokenizer.json',
    pieces,
    unkId,
    eosId: idOf('</s>'),
    padId: idOf('<pad>'),
    byteFallback: m.byte_fallback === true,
    charsmap: norm.charsmap,
    addDummyPrefix,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
  };
}

/**
 * A tokenizer.json for a SentencePiece unigram model, laid out as transformers' T5 converter writes it: every piece
 * with its score, `unk_id`, `byte_fallback` (false as transformers writes it for T5, unless asked), the charsmap in a
 * `Precompiled` normaliser followed by `Replace(" {2,}", " ")`, Metaspace with the dummy prefix, `$A </s>`.
 */
export function toTokenizerJson(model: TokenizerModel, opts: { byteFallback?: boolean } = {}): object {
  const special = model.pieces.flatMap((p, id) => (p.type === PieceType.CONTROL || p.type === PieceType.UNKNOWN ? [{ id, content: p.piece, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }] : []));
  const eos = model.pieces[model.eosId]!.piece;
  const normalizers: object[] = [];
  if (model.charsmap) normalizers.push({ type: 'Precompiled', precompiled_charsmap: Buffer.from(model.charsmap).toString('base64') });
  normalizers.push({ type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special,
    normalizer: { type: 'Sequence', normalizers },
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: model.addDummyPrefix ? 'always' : 'never', split: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: eos, type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: eos, type_id: 0 } }, { Sequence: { id: 'B', type_id: 0 } }, { SpecialToken: { id: eos, type_id: 0 } }],
      special_tokens: { [eos]: { id: eos, ids: [model.eosId], tokens: [eos] } },
    },
    decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: model.addDummyPrefix ? 'always' : 'never', split: true },
    model: { type: 'Unigram', unk_id: model.unkId, vocab: model.pieces.map((p) => [p.piece, p.score]), byte_fallback: opts.byteFallback ?? false },
  };
}
