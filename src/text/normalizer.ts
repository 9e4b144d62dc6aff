/**
 * SentencePiece's normaliser (normalizer.cc of sentencepiece 0.1.x), on UTF-8 bytes as the original works:
 * - the precompiled charsmap is `uint32 trie_size (LE) | darts-clone double array (trie_size bytes) | replacement
 *   strings, each NUL-terminated`; at each position the longest key of the trie that prefixes the remaining bytes is
 *   replaced by its string, else one UTF-8 character is copied (a malformed byte becomes U+FFFD);
 * - user-defined pieces are matched first and copied unnormalised;
 * - leading whitespace is dropped, a space is put in front (dummy prefix), runs of spaces collapse to one, trailing
 *   spaces are dropped, and spaces become U+2581 '▁'.
 * HuggingFace's `Precompiled` normaliser reads the same charsmap but walks grapheme clusters; this follows
 * SentencePiece (the reference ids were made by sentencepiece), for both file forms.
 */
import { FormatError } from '../errors.js';

const SPACE = 0x20;
const SPACE_SYMBOL = new Uint8Array([0xe2, 0x96, 0x81]); // U+2581
const REPLACEMENT = new Uint8Array([0xef, 0xbf, 0xbd]); // U+FFFD

/** A darts-clone double array with its replacement strings. */
export class Charsmap {
  private readonly units: Uint32Array;
  private readonly strings: Uint8Array;

  constructor(blob: Uint8Array, what: string) {
    if (blob.length < 4) throw new FormatError(`${what}: precompiled charsmap of ${blob.length} bytes is too short`);
    const dv = new DataView(blob.buffer, blob.byteOffset, blob.length);
    const trieSize = dv.getUint32(0, true);
    if (trieSize % 4 !== 0 || trieSize === 0 || 4 + trieSize > blob.length)
      throw new FormatError(`${what}: precompiled charsmap trie size ${trieSize} does not fit its ${blob.length} bytes`);
    this.units = new Uint32Array(trieSize / 4);
    for (let i = 0; i < this.units.length; i++) this.units[i] = dv.getUint32(4 + 4 * i, true);
    this.strings = blob.subarray(4 + trieSize);
  }

  /** Longest match at `pos`: [matched length in bytes, replacement bytes], or null. */
  longestMatch(input: Uint8Array, pos: number): [number, Uint8Array] | null {
    const u = this.units;
    let node = 0;
    let unit = u[0]!;
    node ^= offsetOf(unit);
    let best = -1;
    let bestLen = 0;
    for (let i = pos; i < input.length; i++) {
      const c = input[i]!;
      node ^= c;
      if (node >= u.length) break;
      unit = u[node]!;
      if ((unit & 0x800000ff) >>> 0 !== c) break; // label mismatch
      node ^= offsetOf(unit);
      if (node >= u.length) break;
      if ((unit >>> 8) & 1) {
        best = u[node]! & 0x7fffffff; // the leaf's value
        bestLen = i + 1 - pos;
      }
    }
    if (best < 0) return null;
    if (best >= this.strings.length) throw new FormatError(`precompiled charsmap: replacement offset ${best} past its ${this.strings.length} bytes`);
    let end = best;
    while (end < this.strings.length && this.strings[end] !== 0) end++;
    return [bestLen, this.strings.subarray(best, end)];
  }
}

function offsetOf(unit: number): number {
  return (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
}

/** Length of the valid UTF-8 character at `pos`, or 0 when malformed (as sentencepiece's IsValidDecodeUTF8). */
function utf8CharLen(b: Uint8Array, pos: number): number {
  const c = b[pos]!;
  const cont = (k: number) => pos + k < b.length && (b[pos + k]! & 0xc0) === 0x80;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    const cp = ((c & 0x0f) << 12) | ((b[pos + 1]! & 0x3f) << 6) | (b[pos + 2]! & 0x3f);
    return cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const cp = ((c & 0x07) << 18) | ((b[pos + 1]! & 0x3f) << 12) | ((b[pos + 2]! & 0x3f) << 6) | (b[pos + 3]! & 0x3f);
    return cp < 0x10000 || cp > 0x10ffff ? 0 : 4;
  }
  return 0;
}

export interface NormalizerSpec {
  charsmap: Charsmap | null;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
  /** user-defined pieces as UTF-8, longest first (matched before the charsmap, copied as they are) */
  userDefined: Uint8Array[];
}

function startsWith(input: Uint8Array, pos: number, key: Uint8Array): boolean {
  if (pos + key.length > input.length) return false;
  for (let i = 0; i < key.length; i++) if (input[pos + i] !== key[i]) return false;
  return true;
}

/** One normalisation step at `pos`: [replacement bytes, bytes consumed]. */
function normalizePrefix(spec: NormalizerSpec, input: Uint8Array, pos: number): [Uint8Array, number] {
  for (const key of spec.userDefined) if (startsWith(input, pos, key)) return [key, key.length];
  const m = spec.charsmap?.longestMatch(input, pos);
  if (m) return [m[1], m[0]];
  const n = utf8CharLen(input, pos);
  return n === 0 ? [REPLACEMENT, 1] : [input.subarray(pos, pos + n), n];
}

/** Normalise UTF-8 `input` as SentencePiece does; returns the normalised text (with '▁' for spaces when escaping). */
export function normalize(spec: NormalizerSpec, input: Uint8Array): string {
  const out: number[] = [];
  let pos = 0;
  if (spec.removeExtraWhitespaces) {
    while (pos < input.length) {
      const [s, n] = normalizePrefix(spec, input, pos);
      if (!(s.length === 1 && s[0] === SPACE)) break;
      pos += n;
    }
  }
  if (pos >= input.length) return '';
  const space = spec.escapeWhitespaces ? SPACE_SYMBOL : new Uint8Array([SPACE]);
  if (spec.addDummyPrefix) out.push(...space);
  let prevSpace = spec.removeExtraWhitespaces;
  while (pos < input.length) {
    const [s, n] = normalizePrefix(spec, input, pos);
    let k = 0;
    if (prevSpace) while (k < s.length && s[k] === SPACE) k++;
    if (k < s.length) {
      for (let j = k; j < s.length; j++) {
        if (s[j] === SPACE && spec.escapeWhitespaces) out.push(...SPACE_SYMBOL);
        else out.push(s[j]!);
      }
      prevSpace = s[s.length - 1] === SPACE;
    }
    pos += n;
    if (!spec.removeExtraWhitespaces) prevSpace = false;
  }
  if (spec.removeExtraWhitespaces) {
    while (out.length >= space.length && space.every((b, i) => out[out.length - space.length + i] === b)) out.length -= space.length;
  }
  return new TextDecoder().decode(Uint8Array.from(out));
}
