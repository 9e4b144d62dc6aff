/**
 * The tokenizer model both file forms load into, and the reader of SentencePiece's `spiece.model` (a `ModelProto`
 * protobuf; sentencepiece_model.proto). Only the fields the encoder needs are kept; unknown fields are skipped as the
 * protobuf wire format allows, so models written by any SentencePiece version load.
 */
import { FormatError } from '../errors.js';

/** SentencePiece piece types (ModelProto.SentencePiece.Type). */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface Piece {
  piece: string;
  score: number;
  type: number;
}

/** Everything the encoder needs, from either file form. */
export interface TokenizerModel {
  /** 'spiece.model' or 'tokenizer.json' */
  format: 'spiece.model' | 'tokenizer.json';
  pieces: Piece[];
  unkId: number;
  eosId: number;
  padId: number;
  /** unknown spans become their UTF-8 byte pieces (`<0xXX>`) instead of one unk id */
  byteFallback: boolean;
  /** nmt_nfkc and friends: SentencePiece's precompiled charsmap (darts double-array + replacement strings); null = identity */
  charsmap: Uint8Array | null;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

// ---- protobuf wire format -----------------------------------------------------------------------------------------

class Reader {
  pos: number;
  constructor(readonly buf: Uint8Array, start: number, readonly end: number, readonly what: string) {
    this.pos = start;
  }
  fail(msg: string): never {
    throw new FormatError(`${this.what}: not a SentencePiece model, or a corrupt one (${msg} at byte ${this.pos})`);
  }
  /** A varint: `lo` is its low 32 bits exactly (int32 / enum / bool fields), `value` the whole as a double. */
  varint(): { lo: number; value: number } {
    let lo = 0;
    let value = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const b = this.buf[this.pos++]!;
      if (i < 5) lo = (lo | ((b & 0x7f) << (7 * i))) >>> 0;
      value += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) return { lo, value };
    }
    return this.fail('varint longer than 10 bytes');
  }
  /** The next field's number and wire type, or null at the end. */
  tag(): { field: number; wire: number } | null {
    if (this.pos >= this.end) return null;
    const t = this.varint().value;
    const field = Math.floor(t / 8);
    const wire = t % 8;
    if (field === 0) this.fail('field number 0');
    return { field, wire };
  }
  bytes(): { start: number; end: number } {
    const n = this.varint().value;
    if (this.pos + n > this.end) this.fail(`length ${n} past the end of the message`);
    const r = { start: this.pos, end: this.pos + n };
    this.pos += n;
    return r;
  }
  float(): number {
    if (this.pos + 4 > this.end) this.fail('truncated float');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) {
      if (this.pos + 8 > this.end) this.fail('truncated fixed64');
      this.pos += 8;
    } else if (wire === 2) this.bytes();
    else if (wire === 5) {
      if (this.pos + 4 > this.end) this.fail('truncated fixed32');
      this.pos += 4;
    } else this.fail(`unsupported wire type ${wire}`);
  }
  expect(wire: number, want: number, field: string): void {
    if (wire !== want) this.fail(`field ${field} has wire type ${wire}, expected ${want}`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parse a `spiece.model` (SentencePiece ModelProto). `what` names the file in errors. */
export function parseSentencePieceModel(buf: Uint8Array, what: string): TokenizerModel {
  const r = new Reader(buf, 0, buf.length, what);
  const pieces: Piece[] = [];
  const trainer = { modelType: 1, byteFallback: false, unkId: 0, eosId: 2, padId: -1, whitespaceSuffix: false };
  const norm = { name: '', charsmap: null as Uint8Array | null, addDummyPrefix: true, removeExtra: true, escape: true };
  let sawTrainer = false;
  let sawNormalizer = false;
  for (let t = r.tag(); t; t = r.tag()) {
    if (t.field === 1) {
      r.expect(t.wire, 2, 'pieces');
      const { start, end } = r.bytes();
      const p = new Reader(buf, start, end, what);
      const piece: Piece = { piece: '', score: 0, type: PieceType.NORMAL };
      for (let u = p.tag(); u; u = p.tag()) {
        if (u.field === 1) {
          p.expect(u.wire, 2, 'piece');
          const b = p.bytes();
          try {
            piece.piece = utf8.decode(buf.subarray(b.start, b.end));
          } catch {
            p.fail(`piece ${pieces.length} is not UTF-8`);
          }
        } else if (u.field === 2) {
          p.expect(u.wire, 5, 'score');
          piece.score = p.float();
        } else if (u.field === 3) {
          p.expect(u.wire, 0, 'type');
          piece.type = p.varint().lo | 0;
        } else p.skip(u.wire);
      }
      pieces.push(piece);
    } else if (t.field === 2) {
      r.expect(t.wire, 2, 'trainer_spec');
      sawTrainer = true;
      const { start, end } = r.bytes();
      const p = new Reader(buf, start, end, what);
      for (let u = p.tag(); u; u = p.tag()) {
        const int = () => (p.expect(u.wire, 0, String(u.field)), p.varint().lo | 0);
        if (u.field === 3) trainer.modelType = int();
        else if (u.field === 35) trainer.byteFallback = int() !== 0;
        else if (u.field === 24) trainer.whitespaceSuffix = int() !== 0;
        else if (u.field === 40) trainer.unkId = int();
        else if (u.field === 42) trainer.eosId = int();
        else if (u.field === 43) trainer.padId = int();
        else p.skip(u.wire);
      }
    } else if (t.field === 3) {
      r.expect(t.wire, 2, 'normalizer_spec');
      sawNormalizer = true;
      const { start, end } = r.bytes();
      const p = new Reader(buf, start, end, what);
      for (let u = p.tag(); u; u = p.tag()) {
        const bool = () => (p.expect(u.wire, 0, String(u.field)), p.varint().lo !== 0);
        if (u.field === 1) {
          p.expect(u.wire, 2, 'name');
          const b = p.bytes();
          norm.name = new TextDecoder().decode(buf.subarray(b.start, b.end));
        } else if (u.field === 2) {
          p.expect(u.wire, 2, 'precompiled_charsmap');
          const b = p.bytes();
          norm.charsmap = b.end > b.start ? buf.slice(b.start, b.end) : null;
        } else if (u.field === 3) norm.addDummyPrefix = bool();
        else if (u.field === 4) norm.removeExtra = bool();
        else if (u.field === 5) norm.escape = bool();
        else p.skip(u.wire);
      }
    } else r.skip(t.wire);
  }
  if (pieces.length === 0 || !sawTrainer || !sawNormalizer)
    throw new FormatError(`${what}: not a SentencePiece model (${pieces.length} pieces, trainer_spec ${sawTrainer ? 'present' : 'missing'}, normalizer_spec ${sawNormalizer ? 'present' : 'missing'})`);
  if (trainer.modelType !== 1)
    throw new FormatError(`${what}: SentencePiece model type ${({ 2: 'BPE', 3: 'WORD', 4: 'CHAR' } as Record<number, string>)[trainer.modelType] ?? trainer.modelType} is not supported (umT5 uses UNIGRAM)`);
  if (trainer.whitespaceSuffix) throw new FormatError(`${what}: treat_whitespace_as_suffix models are not supported`);
  if (!norm.charsmap && norm.name !== 'identity' && norm.name !== '')
    throw new FormatError(`${what}: normalizer "${norm.name}" has no precompiled charsmap (only precompiled or identity normalisation is supported)`);
  for (const [i, p] of pieces.entries()) if (p.type < 1 || p.type > 6) throw new FormatError(`${what}: piece ${i} (${JSON.stringify(p.piece)}) has unknown type ${p.type}`);
  const unkId = pieces.findIndex((p) => p.type === PieceType.UNKNOWN);
  if (unkId < 0) throw new FormatError(`${what}: no piece of type UNKNOWN`);
  const checkId = (id: number, name: string, piece: string): number => {
    if (id >= 0 && id < pieces.length) return id;
    const j = pieces.findIndex((p) => p.piece === piece);
    if (j < 0) throw new FormatError(`${what}: no ${name} piece (trainer ${name}_id ${id}, no "${piece}" piece either)`);
    return j;
  };
  return {
    format: 'spiece.model',
    pieces,
    unkId,
    eosId: checkId(trainer.eosId, 'eos', '</s>'),
    padId: checkId(trainer.padId, 'pad', '<pad>'),
    byteFallback: trainer.byteFallback,
    charsmap: norm.charsmap,
    addDummyPrefix: norm.addDummyPrefix,
    removeExtraWhitespaces: norm.removeExtra,
    escapeWhitespaces: norm.escape,
  };
}
