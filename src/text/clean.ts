/**
 * Wan's 'whitespace' prompt cleaning (`wan/modules/tokenizers.py`, `clean='whitespace'`):
 *
 *     text = ftfy.fix_text(text)                       # ftfy 6.3.1 defaults
 *     text = html.unescape(html.unescape(text)).strip()
 *     text = regex.sub(r'\s+', ' ', text).strip()
 *
 * `htmlUnescape` is Python's `html.unescape` (HTML5 rules: named references with and without ';', the longest legacy
 * name as a prefix such as `&pound10`, numeric references with the standard's remapping and invalid code points).
 * `ftfyFixText` is the subset of ftfy 6.3.1's `fix_text` that prompts need; docs/tokenizer.md lists exactly which
 * fixes are implemented and which are not (the multi-codepage mojibake heuristics are not).
 */
import { HTML5_ENTITIES, INVALID_CHARREFS, INVALID_CODEPOINTS } from './html_entities.js';

const ENTITIES: ReadonlyMap<string, string> = new Map(Object.entries(HTML5_ENTITIES));

/** Python's `html._charref`: `&` then a numeric reference or up to 32 name characters, with an optional ';'. */
const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function replaceCharref(_m: string, s: string): string {
  if (s[0] === '#') {
    const hex = s[1] === 'x' || s[1] === 'X';
    const digits = s.slice(hex ? 2 : 1).replace(/;$/, '');
    // Python's int() has no limit; anything past 0x10FFFF is U+FFFD, so a long digit string needs no exact value
    const num = digits.replace(/^0+/, '').length > 8 ? Infinity : parseInt(digits, hex ? 16 : 10);
    const remapped = INVALID_CHARREFS.get(num);
    if (remapped !== undefined) return remapped;
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\uFFFD';
    if (INVALID_CODEPOINTS.has(num)) return '';
    return String.fromCodePoint(num);
  }
  const whole = ENTITIES.get(s);
  if (whole !== undefined) return whole;
  // the longest prefix (at least 2 code points) that is a name: the legacy names without ';' (`&pound10` -> £10)
  const cps = [...s];
  for (let x = cps.length - 1; x > 1; x--) {
    const v = ENTITIES.get(cps.slice(0, x).join(''));
    if (v !== undefined) return v + cps.slice(x).join('');
  }
  return '&' + s;
}

/** Python's `html.unescape`. */
export function htmlUnescape(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(CHARREF_RE, replaceCharref);
}

// ---- ftfy 6.3.1 subset ------------------------------------------------------------------------------------------

/** windows-1252 bytes 0x80..0x9f; the five it leaves undefined map to the C1 control of the same value ("sloppy"). */
const CP1252_HIGH = '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';
const SLOPPY_1252_ENCODE: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>();
  for (let b = 0; b < 256; b++) m.set(b >= 0x80 && b < 0xa0 ? CP1252_HIGH[b - 0x80]! : String.fromCharCode(b), b);
  return m;
})();

/** ftfy's HTML_ENTITY_RE and its entity table: the ';'-terminated names, plus upper-cased lower-case names. */
const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;
let ftfyEntities: Map<string, string> | null = null;
function ftfyEntityTable(): Map<string, string> {
  if (ftfyEntities) return ftfyEntities;
  const m = new Map<string, string>();
  for (const [name, ch] of ENTITIES) {
    if (!name.endsWith(';')) continue;
    m.set('&' + name, ch);
    if (name === name.toLowerCase()) {
      const upper = '&' + name.toUpperCase();
      if (htmlUnescape(upper) === upper) m.set(upper, ch.toUpperCase());
    }
  }
  return (ftfyEntities = m);
}

/** ftfy.fixes.unescape_html: only complete `&name;` / `&#n;` references; numeric ones via html.unescape. */
function ftfyUnescapeHtml(text: string): string {
  const table = ftfyEntityTable();
  return text.replace(FTFY_ENTITY_RE, (m) => {
    const v = table.get(m);
    if (v !== undefined) return v;
    if (m.startsWith('&#')) {
      const u = htmlUnescape(m);
      return u.includes(';') ? m : u;
    }
    return m;
  });
}

/**
 * A lead byte of a multi-byte UTF-8 sequence read as latin-1 / windows-1252 (Â..ô), followed by a continuation byte so
 * read (0x80..0xbf: the windows-1252 / C1 characters or U+00A0..U+00BF). Its presence is this subset's stand-in for
 * ftfy's `is_bad` badness heuristic.
 */
const MOJIBAKE_RE = new RegExp(`[\\u00c2-\\u00f4][${CP1252_HIGH}\\u0080-\\u00bf]`, 'u');

/** Encode as latin-1 (`sloppy` false) or sloppy windows-1252; null if a character has no byte there. */
function encodeSingleByte(text: string, sloppy: boolean): Uint8Array | null {
  const out = new Uint8Array(text.length);
  let i = 0;
  for (const ch of text) {
    const b = sloppy ? SLOPPY_1252_ENCODE.get(ch) : ch.charCodeAt(0) < 256 ? ch.charCodeAt(0) : undefined;
    if (b === undefined) return null;
    out[i++] = b;
  }
  return out.subarray(0, i);
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * ftfy's fix_encoding, the one case prompts meet: text that was UTF-8, decoded as latin-1 / windows-1252 ("cafÃ©").
 * If the text shows a mojibake pair and its latin-1 bytes, or else its (sloppy) windows-1252 bytes, are valid UTF-8,
 * the text is re-decoded from them; repeated while that changes it (double mojibake).
 * C1 controls left over are read as windows-1252 (ftfy's fix_c1_controls).
 */
function fixEncoding(text: string): string {
  for (let guard = 0; guard < 8; guard++) {
    if (!MOJIBAKE_RE.test(text)) break;
    // ftfy tries its single-byte encodings in order, latin-1 first, and keeps the first whose bytes are UTF-8
    let fixed: string | null = null;
    for (const sloppy of [false, true]) {
      const bytes = encodeSingleByte(text, sloppy);
      if (!bytes) continue;
      try {
        fixed = STRICT_UTF8.decode(bytes);
        break;
      } catch {
        /* not UTF-8 this way */
      }
    }
    if (fixed === null || fixed === text) break;
    text = fixed;
  }
  return text;
}

function fixC1Controls(text: string): string {
  return text.replace(/[\u0080-\u009f]/g, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80]!);
}

/** ftfy's LIGATURES: Latin ligatures spelled out (not the typographic ones of other scripts). */
const LIGATURES: ReadonlyMap<string, string> = new Map([
  ['\u0132', 'IJ'], ['\u0133', 'ij'], ['\u0149', '\u02bcn'], ['\u01c4', 'D\u017d'], ['\u01c5', 'D\u017e'], ['\u01c6', 'd\u017e'],
  ['\u01c7', 'LJ'], ['\u01c8', 'Lj'], ['\u01c9', 'lj'], ['\u01ca', 'NJ'], ['\u01cb', 'Nj'], ['\u01cc', 'nj'], ['\u01f1', 'DZ'],
  ['\u01f2', 'Dz'], ['\u01f3', 'dz'], ['\ufb00', 'ff'], ['\ufb01', 'fi'], ['\ufb02', 'fl'], ['\ufb03', 'ffi'], ['\ufb04', 'ffl'],
  ['\ufb05', '\u017ft'], ['\ufb06', 'st'],
]);
const LIGATURE_RE = new RegExp(`[${[...LIGATURES.keys()].join('')}]`, 'g');

/** ftfy's fix_character_width: U+3000 -> space; U+FF01..U+FFEF -> their NFKC form where it differs. */
function fixCharacterWidth(text: string): string {
  return text.replace(/[\u3000\uff01-\uffef]/g, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
}

/** ftfy's uncurl_quotes: U+2018..U+201B and U+02BC -> ', U+201C..U+201F -> ". */
function uncurlQuotes(text: string): string {
  return text.replace(/[\u02bc\u2018-\u201b]/g, "'").replace(/[\u201c-\u201f]/g, '"');
}

/** ftfy's fix_line_breaks: CRLF, CR, U+2028, U+2029, U+0085 -> LF. */
function fixLineBreaks(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(/[\r\u2028\u2029\u0085]/g, '\n');
}

/** ftfy's fix_surrogates: a JS string holds pairs as one character already; lone surrogates become U+FFFD. */
function fixSurrogates(text: string): string {
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\uFFFD');
}

/** ftfy's remove_terminal_escapes (ANSI CSI sequences) and remove_control_chars. */
function removeTerminalEscapes(text: string): string {
  return text.replace(/\x1b\[((?:\d|;)*)([a-zA-Z])/g, '');
}
function removeControlChars(text: string): string {
  return text.replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, '');
}

/** One line of ftfy's fix_and_explain: the fixes in ftfy's order, repeated until nothing changes. */
function fixSegment(text: string, unescapeHtml: boolean): string {
  for (let guard = 0; guard < 16; guard++) {
    const orig = text;
    if (unescapeHtml) text = ftfyUnescapeHtml(text);
    text = fixEncoding(text);
    text = fixC1Controls(text);
    text = text.replace(LIGATURE_RE, (c) => LIGATURES.get(c)!);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize('NFC');
    if (text === orig) return text;
  }
  return text;
}

/**
 * The implemented subset of `ftfy.fix_text` with its 6.3.1 defaults, line by line as ftfy goes (HTML is unescaped
 * only until a line holding '<' is met: ftfy's unescape_html="auto").
 */
export function ftfyFixText(text: string): string {
  let unescape = true;
  const out: string[] = [];
  let pos = 0;
  while (pos < text.length) {
    let brk = text.indexOf('\n', pos) + 1;
    if (brk === 0) brk = text.length;
    const seg = text.slice(pos, brk);
    if (unescape && seg.includes('<')) unescape = false;
    out.push(fixSegment(seg, unescape));
    pos = brk;
  }
  return out.join('');
}

/** Python's str.isspace() characters (what str.strip() removes). */
const PY_SPACE = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_STRIP_RE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');
/** Unicode White_Space (`\s` of the `regex` module): Python's set without the separators U+001C..U+001F. */
const WHITE_SPACE_RUN_RE = /[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/g;

export interface CleanOptions {
  /** run the ftfy subset first (default true, as Wan does); false gives the fixtures' `cleaned_without_ftfy` */
  ftfy?: boolean;
}

/** Wan's 'whitespace' cleaning of a prompt. */
export function cleanPrompt(text: string, opts: CleanOptions = {}): string {
  if (opts.ftfy !== false) text = ftfyFixText(text);
  text = htmlUnescape(htmlUnescape(text)).replace(PY_STRIP_RE, '');
  return text.replace(WHITE_SPACE_RUN_RE, ' ').replace(PY_STRIP_RE, '');
}
