/**
 * SentencePiece unigram encoding (unigram_model.cc `EncodeOptimized` + the processor's unknown handling, sentencepiece
 * 0.1.x), on a normalised string:
 * - Viterbi over character positions: every piece (normal, user-defined) that starts at a position is a candidate
 *   edge with its score (user-defined: UTF-8 length * max(FLT_MIN, normal scores) - 0.1); when no piece covers exactly
 *   the one character there, an unknown edge over that character with score min(normal scores) - 10; a node keeps its
 *   best path score as a float32, a piece's candidate is summed and compared in double (as the reference's types make
 *   it), an unknown's in float32, and a later candidate replaces the best only when strictly better (the reference's
 *   order: start positions ascending, then lengths ascending). These roundings decide near-ties, so they are kept;
 * - consecutive unknown pieces merge into one span; with byte fallback a span becomes its UTF-8 bytes as `<0xXX>`
 *   pieces, without it one unk id.
 * Written by hand: no maintained JavaScript package implements these semantics exactly (docs/tokenizer.md).
 */
import { PieceType, type Piece } from './model.js';

const f32 = Math.fround;

export interface Token {
  piece: string;
  id: number;
}

export class UnigramEncoder {
  private readonly vocab = new Map<string, number>();
  private readonly byteIds: number[] = [];
  private readonly maxLen: number;
  private readonly unkScore: number;
  private readonly maxScore: number;

  constructor(
    private readonly pieces: readonly Piece[],
    private readonly unkId: number,
    private readonly byteFallback: boolean,
  ) {
    let minScore = Infinity;
    let maxScore = 1.1754943508222875e-38; // FLT_MIN, as the reference starts it (so max(normal) is at least that)
    let maxLen = 1;
    for (const [id, p] of pieces.entries()) {
      if (p.type === PieceType.NORMAL) {
        minScore = Math.min(minScore, p.score);
        maxScore = Math.max(maxScore, p.score);
      }
      if ((p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED) && p.piece.length > 0 && !this.vocab.has(p.piece)) {
        this.vocab.set(p.piece, id);
        if (p.piece.length > maxLen) maxLen = Math.max(maxLen, codePoints(p.piece)); // code points <= UTF-16 units
      }
    }
    if (!Number.isFinite(minScore)) minScore = 0;
    this.unkScore = f32(minScore - 10);
    this.maxScore = maxScore;
    this.maxLen = maxLen;
    const byName = new Map<string, number>();
    for (const [id, p] of pieces.entries()) {
      if (p.piece.length === 6 && p.piece.startsWith('<0x') && (p.type === PieceType.BYTE || /^<0x[0-9A-F]{2}>$/.test(p.piece)) && !byName.has(p.piece)) byName.set(p.piece, id);
    }
    for (let b = 0; b < 256; b++) this.byteIds.push(byName.get(byteName(b)) ?? unkId);
  }

  /** The pieces of a normalised string (no eos). */
  encode(normalized: string): Token[] {
    const chars = [...normalized];
    const n = chars.length;
    if (n === 0) return [];
    const score = new Float64Array(n + 1); // float32 values
    const from = new Int32Array(n + 1).fill(-1);
    const ids = new Int32Array(n + 1);
    const enc = new TextEncoder();
    for (let s = 0; s < n; s++) {
      if (s > 0 && from[s] === -1) continue; // unreachable (cannot happen: every char has an edge)
      const base = score[s]!;
      let singleFound = false;
      let key = '';
      for (let len = 1; len <= this.maxLen && s + len <= n; len++) {
        key += chars[s + len - 1]!;
        const id = this.vocab.get(key);
        if (id === undefined) continue;
        const p = this.pieces[id]!;
        // the reference's `score` is a double (its conditional mixes float with `... - 0.1`), so the candidate is
        // summed and compared in double against the float stored at the node, and stored rounded to float
        const sc = p.type === PieceType.USER_DEFINED ? f32(enc.encode(key).length * this.maxScore) - 0.1 : p.score;
        const cand = sc + base;
        const e = s + len;
        if (from[e] === -1 || cand > score[e]!) {
          score[e] = f32(cand);
          from[e] = s;
          ids[e] = id;
        }
        if (len === 1) singleFound = true;
      }
      if (!singleFound) {
        const cand = f32(this.unkScore + base); // float + float here
        const e = s + 1;
        if (from[e] === -1 || cand > score[e]!) {
          score[e] = cand;
          from[e] = s;
          ids[e] = this.unkId;
        }
      }
    }
    const path: Token[] = [];
    for (let e = n; e > 0; e = from[e]!) path.push({ piece: chars.slice(from[e]!, e).join(''), id: ids[e]! });
    path.reverse();
    // merge runs of unknowns, then byte fallback or one unk per run
    const out: Token[] = [];
    let prevUnk = false;
    for (const t of path) {
      const unk = t.id === this.unkId;
      if (unk && prevUnk) out[out.length - 1]!.piece += t.piece;
      else out.push({ ...t });
      prevUnk = unk;
    }
    if (!this.byteFallback) return out;
    const res: Token[] = [];
    for (const t of out) {
      if (t.id !== this.unkId) res.push(t);
      else for (const b of enc.encode(t.piece)) res.push({ piece: byteName(b), id: this.byteIds[b]! });
    }
    return res;
  }
}

function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) if ((s.charCodeAt(i) & 0xfc00) !== 0xdc00) n++;
  return n;
}

function byteName(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}
