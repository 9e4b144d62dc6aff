/**
 * `dcvg tokenize`: what the text encoder receives for each prompt (cleaned text, pieces, ids, mask), from spiece.model,
 * tokenizer.json or a folder holding one.
 */
import { ValueError } from '../errors.js';
import { ftfyFixText } from '../text/clean.js';
import { loadTokenizer, Umt5Tokenizer } from '../text/index.js';
import { parse, type Out } from './common.js';

/** Wan's text length (`text_len` of its configs). */
export const DEFAULT_TEXT_LEN = 512;

export async function cmdTokenize(args: string[], out: Out): Promise<number> {
  const options = {
    tokenizer: { type: 'string' },
    'text-len': { type: 'string' },
    'no-byte-fallback': { type: 'boolean' },
    json: { type: 'boolean' },
  } as const;
  const { values: v, positionals: texts } = parse(args, options, 'tokenize');
  if (!v.tokenizer) throw new ValueError('tokenize needs --tokenizer <spiece.model | tokenizer.json | folder>');
  if (texts.length === 0) throw new ValueError('tokenize needs at least one TEXT (quote each prompt)');
  let textLen = DEFAULT_TEXT_LEN;
  if (v['text-len'] !== undefined) {
    textLen = Number(v['text-len']);
    if (!/^\d+$/.test(v['text-len']) || !Number.isSafeInteger(textLen) || textLen < 1) throw new ValueError(`--text-len must be a positive integer, got "${v['text-len']}"`);
  }
  const tok = await loadTokenizer(v.tokenizer, v['no-byte-fallback'] ? { byteFallback: false } : {});
  const noFallback = tok.byteFallback && v.json ? new Umt5Tokenizer({ ...tok.model, byteFallback: false }, tok.source) : null;
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  for (const [k, text] of texts.entries()) {
    const r = tok.tokenize(text, textLen);
    if (v.json) {
      // the keys of tokenizer/cases.json's cases; the optional ones where they differ, as there
      const o: Record<string, unknown> = {
        text,
        cleaned: r.cleaned,
        pieces: r.pieces,
        ids: r.ids,
        input_ids: r.inputIds,
        attention_mask: r.attentionMask,
        ftfy_changes_text: ftfyFixText(text) !== text,
      };
      if (noFallback) {
        const nb = noFallback.tokenize(text, textLen).inputIds;
        if (!same(nb, r.inputIds)) o.input_ids_without_byte_fallback = nb;
      }
      const raw = tok.tokenize(text, textLen, { ftfy: false });
      if (!same(raw.ids, r.ids)) {
        o.cleaned_without_ftfy = raw.cleaned;
        o.ids_without_ftfy = raw.ids;
      }
      out(JSON.stringify(o) + '\n');
      continue;
    }
    const real = r.attentionMask.reduce((a, b) => a + b, 0);
    const truncated = r.ids.length > textLen ? `, truncated from ${r.ids.length}` : '';
    out(`text ${k + 1}: ${JSON.stringify(text)}\n`);
    out(`  cleaned:   ${JSON.stringify(r.cleaned)}\n`);
    out(`  pieces:    ${r.pieces.length} ${JSON.stringify(r.pieces)}\n`);
    out(`  ids:       ${r.ids.length} ${JSON.stringify(r.ids)} (eos ${tok.eosId} last)\n`);
    const pad = textLen - real;
    const padText = pad > 0 ? ` + ${pad} x pad ${tok.padId}` : '';
    out(`  input_ids: ${JSON.stringify(r.inputIds.slice(0, real))}${padText} (length ${textLen}${truncated})\n`);
    out(`  mask:      ${real} x 1${pad > 0 ? ` + ${pad} x 0` : ''}\n`);
  }
  return 0;
}
