/**
 * Tokenizer load and encode speed at umT5's size: a synthetic SentencePiece unigram model of 256,000 pieces (+ the 384
 * `<extra_id_N>` added tokens of tokenizer.json: 256,384 ids, as google/umt5-xxl), written as both `spiece.model` and
 * `tokenizer.json`, then loaded and used by our tokenizer (src/text).
 *
 *   npm run bench:tokenizer [-- --pieces 256000] [-- --extra 384] [-- --loads 5] [-- --encodes 200] [-- --out DIR]
 *                           [-- --keep] [-- --json]
 *
 * The model: the fixture's 800-piece model (`../shared/fixtures/tokenizer/spiece.model`: pad, eos, unk, the 256 byte
 * pieces, its nmt_nfkc charsmap, trainer and normaliser settings, kept byte for byte), filled up to `--pieces` with
 * synthetic NORMAL pieces: every fragment (2..12 characters, with and without the leading `▁`) of the words of the
 * fixture's texts and of the prompts below, then random strings over Latin, Cyrillic, Greek, CJK, Hangul, Arabic and
 * Devanagari letters (1..16 code points, 0.2% of them 17..32, as long pieces exist in real vocabularies; the encoder's
 * work per position grows with the longest piece), each with a `▁` in front with probability 0.4. Scores fall with
 * the piece's rank (log-probability-like, -2 to about -16). The pieces are not the real umT5 vocabulary (the real one
 * cannot be shipped or fetched here); what the timings depend on, the number of pieces, their lengths and the charsmap,
 * is at umT5's scale.
 *
 * Load: a fresh `loadTokenizerSync(file)` (read, parse, build the piece map and the fingerprint), `--loads` times per
 * form; the first load and the median of the rest. Encode: `tokenize(prompt, 512)` (cleaning, normalisation,
 * Viterbi, ids, mask) of each prompt, `--encodes` times after one warm-up; the median per call. Wall and CPU time
 * (process.cpuUsage, user + system) both, and the load average, since the machine may be shared.
 *
 * With `--hf`: ours against `@huggingface/tokenizers` (0.2.0, pure JS) on the same tokenizer.json, both given the text
 * after our cleaning (the library has none): the fixture model's tokenizer.json (800 pieces, as transformers converts
 * it: no byte fallback) on the texts of cases.json, and with `--pieces N` also the synthetic N-piece one on the prompts
 * below. Load (ours: `loadTokenizerSync`; the library: read + JSON.parse + `new Tokenizer`) and encode (ours:
 * `encodeCleaned` + eos, the library: `encode`) medians, and how many texts get the same ids. `--scan` adds a count,
 * over every code point, of the characters the charsmap maps otherwise than `String.prototype.normalize('NFKC')` and
 * than the library's normaliser (a few CPU-seconds).
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';
import { cleanPrompt, loadTokenizerSync, parseSentencePieceModel, toTokenizerJson, PieceType, type Piece } from '../src/text/index.js';
import { Charsmap, normalize } from '../src/text/normalizer.js';
import { cliArgs, median } from './profile.js';
import { procStatusMb } from './torch.js';

const USAGE = `usage: npm run bench:tokenizer -- [--pieces 256000] [--extra 384] [--loads 5] [--encodes 200] [--out DIR] [--keep] [--json]
       npm run bench:tokenizer -- --hf [--pieces N] [--loads 5] [--encodes 200] [--scan] [--json]`;

/** Prompts of the kinds Wan is given: its example prompts' style in English, Chinese, and a mixed one. */
export const PROMPTS: Record<string, string> = {
  'english, 90 words':
    'A stylish woman walks down a Tokyo street filled with warm glowing neon and animated city signage. She wears a black leather jacket, a long red dress, and black boots, and carries a black purse. She wears sunglasses and red lipstick. She walks confidently and casually. The street is damp and reflective, creating a mirror effect of the colorful lights. Many pedestrians walk about. The camera follows her at eye level, slowly tracking backwards, cinematic lighting, shallow depth of field, 4k, highly detailed.',
  'english, 12 words': 'a white cockatoo close to the camera, turning its head, sunlit garden',
  'chinese, 60 characters': '一只白色的凤头鹦鹉靠近镜头，慢慢转动它的头，背景是阳光明媚的花园，画面清晰，电影感光线，浅景深，细节丰富，色彩自然，镜头缓慢推进。',
  'negative prompt (Wan default, mixed)':
    '色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走',
};

/** xorshift32 in [0, 1) */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

const SCRIPTS: [number, number, number][] = [
  // [first code point, count, weight]
  [0x61, 26, 40], // Latin lower
  [0xe0, 31, 4], // Latin-1 letters
  [0x430, 32, 12], // Cyrillic
  [0x3b1, 25, 4], // Greek
  [0x4e00, 3000, 20], // common CJK
  [0xac00, 2000, 8], // Hangul syllables
  [0x627, 26, 6], // Arabic
  [0x915, 37, 6], // Devanagari
];

/**
 * `count` pieces after the `base` ones: word fragments of `texts`, then random strings; scores falling with rank.
 * Deterministic for a seed.
 */
export function syntheticPieces(base: readonly Piece[], count: number, texts: string[], seed = 19): Piece[] {
  const have = new Set(base.map((p) => p.piece));
  const out: string[] = [];
  const add = (s: string) => {
    if (out.length < count && s.length > 0 && !have.has(s)) {
      have.add(s);
      out.push(s);
    }
  };
  for (const t of texts)
    for (const w of t.normalize('NFKC').split(/[\s,.，。!?;:()"']+/u)) {
      const cp = [...w];
      for (let a = 0; a < cp.length; a++)
        for (let b = a + 1; b <= Math.min(cp.length, a + 12); b++) {
          const frag = cp.slice(a, b).join('');
          if (a === 0) add('\u2581' + frag);
          add(frag);
        }
    }
  const r = rng(seed);
  const totalW = SCRIPTS.reduce((a, s) => a + s[2], 0);
  while (out.length < count) {
    let u = r() * totalW;
    let sc = SCRIPTS[0]!;
    for (const s of SCRIPTS) if ((u -= s[2]) < 0) {
      sc = s;
      break;
    }
    const len = r() < 0.002 ? 17 + Math.floor(r() * 16) : 1 + Math.floor(-Math.log(1 - r()) * 3.5) % 16;
    let s = r() < 0.4 ? '\u2581' : '';
    for (let i = 0; i < len; i++) s += String.fromCodePoint(sc[0] + Math.floor(r() * sc[1]));
    add(s);
  }
  // scores: rank k -> -2 - 1.1 ln(1 + k / 50), the fragments of real text first (the most frequent), float32
  return out.map((piece, k) => ({ piece, score: Math.fround(-2 - 1.1 * Math.log(1 + k / 50)), type: PieceType.NORMAL }));
}

// ---- spiece.model writer (protobuf ModelProto: pieces = 1, trainer_spec = 2, normalizer_spec = 3) ----------------------

function varint(v: number, out: number[]): void {
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function pieceMessage(p: Piece): Uint8Array {
  // SentencePiece { piece = 1 (bytes), score = 2 (float32), type = 3 (varint) }, wrapped as ModelProto field 1
  const text = new TextEncoder().encode(p.piece);
  const score = new Uint8Array(4);
  new DataView(score.buffer).setFloat32(0, p.score, true);
  const body: number[] = [0x0a];
  varint(text.length, body);
  body.push(...text, 0x15, ...score, 0x18);
  varint(p.type, body);
  const msg: number[] = [0x0a];
  varint(body.length, msg);
  msg.push(...body);
  return Uint8Array.from(msg);
}

/** The raw bytes (tag included) of the top-level fields other than the pieces (trainer_spec, normalizer_spec, ...). */
function nonPieceFields(buf: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let pos = 0;
  const rd = () => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = buf[pos++]!;
      v += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) return v;
    }
  };
  while (pos < buf.length) {
    const start = pos;
    const tag = rd();
    const wire = tag % 8;
    if (wire === 2) {
      const n = rd(); // (not `pos += rd()`: that would add to pos as it was before the length was read)
      pos += n;
    } else if (wire === 0) rd();
    else if (wire === 5) pos += 4;
    else if (wire === 1) pos += 8;
    else throw new Error(`unexpected wire type ${wire} at byte ${start}`);
    if (Math.floor(tag / 8) !== 1) parts.push(buf.subarray(start, pos));
  }
  return parts;
}

/** A spiece.model holding `pieces` and the other fields of `template` (a SentencePiece model file) unchanged. */
export function writeSpieceModel(pieces: readonly Piece[], template: Uint8Array): Uint8Array {
  const parts = [...pieces.map(pieceMessage), ...nonPieceFields(template)];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Writes `dir/spiece.model` and `dir/tokenizer.json` of a synthetic model with `pieces` pieces and `extra` added ids. */
export function writeSyntheticTokenizer(fixtureModel: string, dir: string, pieces: number, extra: number, texts: string[]): { spiece: string; json: string } {
  const template = new Uint8Array(readFileSync(fixtureModel));
  const base = parseSentencePieceModel(template, fixtureModel);
  const all = [...base.pieces, ...syntheticPieces(base.pieces, pieces - base.pieces.length, texts)];
  const spiece = join(dir, 'spiece.model');
  writeFileSync(spiece, writeSpieceModel(all, template));
  const j = toTokenizerJson({ ...base, pieces: all }, { byteFallback: base.byteFallback }) as { added_tokens: object[] };
  for (let i = 0; i < extra; i++)
    j.added_tokens.push({ id: all.length + i, content: `<extra_id_${extra - 1 - i}>`, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json = join(dir, 'tokenizer.json');
  writeFileSync(json, JSON.stringify(j));
  return { spiece, json };
}

const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

function timeIt<T>(fn: () => T): { value: T; ms: number; cpu_ms: number } {
  const c = process.cpuUsage();
  const t = performance.now();
  const value = fn();
  return { value, ms: performance.now() - t, cpu_ms: cpuMs(process.cpuUsage(c)) };
}

/** Ours against @huggingface/tokenizers on one tokenizer.json: load and encode medians, texts with the same ids. */
function compareOnFile(file: string, texts: string[], loads: number, encodes: number): Record<string, unknown> {
  const loadLib = () => new Tokenizer(JSON.parse(readFileSync(file, 'utf8')) as object, {});
  const oursLoads = Array.from({ length: loads }, () => timeIt(() => loadTokenizerSync(file)));
  const libLoads = Array.from({ length: loads }, () => timeIt(loadLib));
  const ours = oursLoads[0]!.value;
  const lib = libLoads[0]!.value;
  const oursEncode = (t: string) => [...ours.encodeCleaned(t).map((k) => k.id), ours.eosId];
  const libEncode = (t: string) => lib.encode(t).ids;
  const sameIds = texts.filter((t) => JSON.stringify(oursEncode(t)) === JSON.stringify(libEncode(t))).length;
  const pass = (enc: (t: string) => number[]) => () => {
    for (const t of texts) enc(t);
  };
  const med = (rs: { ms: number; cpu_ms: number }[]) => ({ ms: +median(rs.map((r) => r.ms)).toFixed(3), cpu_ms: +median(rs.map((r) => r.cpu_ms)).toFixed(3) });
  // interleaved passes (ours, library, ours, ...), after one warm-up each, so that a load change hits both alike
  const o: { ms: number; cpu_ms: number }[] = [];
  const l: { ms: number; cpu_ms: number }[] = [];
  timeIt(pass(oursEncode));
  timeIt(pass(libEncode));
  for (let i = 0; i < encodes; i++) {
    o.push(timeIt(pass(oursEncode)));
    l.push(timeIt(pass(libEncode)));
  }
  const tokens = texts.reduce((a, t) => a + oursEncode(t).length, 0);
  return {
    file_mb: +(statSync(file).size / 2 ** 20).toFixed(2),
    texts: texts.length,
    tokens,
    same_ids: sameIds,
    load_ms: { ours: med(oursLoads.slice(1).length ? oursLoads.slice(1) : oursLoads), library: med(libLoads.slice(1).length ? libLoads.slice(1) : libLoads) },
    encode_all_texts_ms: { ours: med(o), library: med(l) },
    library_over_ours: +(median(l.map((r) => r.ms)) / median(o.map((r) => r.ms))).toFixed(2),
  };
}

/** Code points (surrogates aside) the charsmap maps otherwise than NFKC and than the library's normaliser. */
function scanNormalisers(file: string): Record<string, unknown> {
  const j = JSON.parse(readFileSync(file, 'utf8')) as { normalizer: { normalizers: { type: string; precompiled_charsmap?: string }[] } };
  const blob = Buffer.from(j.normalizer.normalizers.find((n) => n.type === 'Precompiled')!.precompiled_charsmap!, 'base64');
  const spec = { charsmap: new Charsmap(new Uint8Array(blob), file), addDummyPrefix: false, removeExtraWhitespaces: false, escapeWhitespaces: false, userDefined: [] };
  const lib = new Tokenizer(j, {});
  const enc = new TextEncoder();
  let nfkc = 0;
  let library = 0;
  const bmp: string[] = [];
  const planes = new Map<number, number>();
  for (let cp = 0; cp < 0x110000; cp++) {
    if (cp >= 0xd800 && cp < 0xe000) continue;
    const ch = String.fromCodePoint(cp);
    const m = normalize(spec, enc.encode(ch));
    if (m !== ch.normalize('NFKC')) nfkc++;
    if (m !== lib.normalizer!.normalize(ch)) {
      library++;
      if (cp < 0x10000) bmp.push(`U+${cp.toString(16).toUpperCase().padStart(4, '0')}`);
      planes.set(cp >> 16, (planes.get(cp >> 16) ?? 0) + 1);
    }
  }
  return { code_points: 0x110000 - 0x800, charsmap_vs_nfkc: nfkc, charsmap_vs_library: library, library_bmp: bmp, library_by_plane: Object.fromEntries(planes) };
}

async function compareLibrary(flag: (n: string) => boolean, opt: (n: string, d: string) => string, fixture: string): Promise<void> {
  const loads = Number(opt('--loads', '5'));
  const encodes = Number(opt('--encodes', '200'));
  const load0 = loadavg();
  const cases = JSON.parse(readFileSync(join(fixture, 'cases.json'), 'utf8')) as { cases: { text: string }[]; ftfy_dependent: { text: string }[] };
  const texts = [...cases.cases, ...cases.ftfy_dependent].map((c) => cleanPrompt(c.text));
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-tokenizer-hf-'));
  try {
    const spm = join(fixture, 'spiece.model');
    const small = join(dir, 'tokenizer.json');
    writeFileSync(small, JSON.stringify(toTokenizerJson(parseSentencePieceModel(new Uint8Array(readFileSync(spm)), spm))));
    const runs: Record<string, unknown> = { 'fixture model (800 pieces), cases.json texts': compareOnFile(small, texts, loads, encodes) };
    if (process.argv.includes('--pieces')) {
      const n = Number(opt('--pieces', '256000'));
      const big = join(dir, 'big');
      mkdirSync(big);
      const files = writeSyntheticTokenizer(spm, big, n, 0, [...texts, ...Object.values(PROMPTS)]);
      // as transformers converts it: no byte fallback (the library has none either)
      const j = JSON.parse(readFileSync(files.json, 'utf8')) as { model: { byte_fallback: boolean } };
      j.model.byte_fallback = false;
      writeFileSync(files.json, JSON.stringify(j));
      runs[`synthetic model (${n} pieces), the ${Object.keys(PROMPTS).length} prompts`] = compareOnFile(files.json, Object.values(PROMPTS).map((p) => cleanPrompt(p)), loads, encodes);
    }
    const result = {
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, load_avg_start: load0.map((v) => +v.toFixed(2)), load_avg_end: loadavg().map((v) => +v.toFixed(2)) },
      command: `npm run bench:tokenizer -- ${process.argv.slice(2).join(' ')}`.trim(),
      runs,
      ...(flag('--scan') ? { normalisers: scanNormalisers(small) } : {}),
    };
    if (flag('--json')) {
      process.stdout.write(JSON.stringify(result, null, 1) + '\n');
      return;
    }
    let md = `\n| tokenizer.json, texts | texts (tokens) | same ids | load, median (CPU): ours / library | encode all texts, median of ${encodes} (CPU): ours / library | library / ours |\n|---|---:|---:|---:|---:|---:|\n`;
    for (const [name, r] of Object.entries(runs) as [string, any][])
      md += `| ${name}, ${r.file_mb} MB | ${r.texts} (${r.tokens}) | ${r.same_ids} | ${r.load_ms.ours.ms} (${r.load_ms.ours.cpu_ms}) / ${r.load_ms.library.ms} (${r.load_ms.library.cpu_ms}) ms | ${r.encode_all_texts_ms.ours.ms} (${r.encode_all_texts_ms.ours.cpu_ms}) / ${r.encode_all_texts_ms.library.ms} (${r.encode_all_texts_ms.library.cpu_ms}) ms | ${r.library_over_ours} |\n`;
    if (result.normalisers) {
      const n = result.normalisers as any;
      md += `\nof ${n.code_points} code points, the charsmap maps ${n.charsmap_vs_nfkc} otherwise than NFKC and ${n.charsmap_vs_library} otherwise than the library's normaliser (by plane ${JSON.stringify(n.library_by_plane)}; BMP: ${n.library_bmp.join(' ')})\n`;
    }
    md += `machine: ${result.machine.cpu} (${result.machine.cores} cores), node ${result.machine.node}; load average ${result.machine.load_avg_start.join(' ')} at start, ${result.machine.load_avg_end.join(' ')} at end\ncommand: \`${result.command}\`\n`;
    process.stdout.write(md);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { flag, opt } = cliArgs(USAGE);
  const nPieces = Number(opt('--pieces', '256000'));
  const extra = Number(opt('--extra', '384'));
  const loads = Number(opt('--loads', '5'));
  const encodes = Number(opt('--encodes', '200'));
  const shared = process.env.DCVG_SHARED ? resolve(process.env.DCVG_SHARED) : resolve(fileURLToPath(import.meta.url), '..', '..', '..', '..', 'shared');
  const fixture = join(shared, 'fixtures', 'tokenizer');
  if (!existsSync(join(fixture, 'spiece.model'))) {
    process.stderr.write(`bench:tokenizer: needs ${join(fixture, 'spiece.model')} (the shared folder beside the repository, or DCVG_SHARED)\n`);
    process.exit(2);
  }
  if (flag('--hf')) return compareLibrary(flag, opt, fixture);
  const cases = JSON.parse(readFileSync(join(fixture, 'cases.json'), 'utf8')) as { cases: { text: string }[] };
  const outOpt = opt('--out', '');
  const dir = outOpt ? (mkdirSync(outOpt, { recursive: true }), outOpt) : mkdtempSync(join(tmpdir(), 'dcvg-bench-tokenizer-'));
  const load0 = loadavg();
  const gen = timeIt(() => writeSyntheticTokenizer(join(fixture, 'spiece.model'), dir, nPieces, extra, [...cases.cases.map((c) => c.text), ...Object.values(PROMPTS)]));
  const files = gen.value;
  const forms: Record<string, unknown>[] = [];
  for (const [form, file] of [
    ['spiece.model', files.spiece],
    ['tokenizer.json', files.json],
  ] as const) {
    const rssBefore = procStatusMb('VmRSS');
    const ls = Array.from({ length: loads }, () => timeIt(() => loadTokenizerSync(file)));
    const tok = ls[ls.length - 1]!.value;
    const rest = ls.slice(1);
    const enc: Record<string, unknown> = {};
    for (const [name, p] of Object.entries(PROMPTS)) {
      const first = timeIt(() => tok.tokenize(p, 512));
      const rs = Array.from({ length: encodes }, () => timeIt(() => tok.tokenize(p, 512)));
      const n = first.value.ids.length - 1;
      enc[name] = { ids: first.value.ids, tokens: n, first_ms: +first.ms.toFixed(3), median_ms: +median(rs.map((r) => r.ms)).toFixed(3), median_cpu_ms: +median(rs.map((r) => r.cpu_ms)).toFixed(3), us_per_token: +((1000 * median(rs.map((r) => r.ms))) / n).toFixed(2) };
    }
    forms.push({
      form,
      file_mb: +(statSync(file).size / 2 ** 20).toFixed(1),
      vocab_size: tok.vocabSize,
      first_load_ms: +ls[0]!.ms.toFixed(0),
      first_load_cpu_ms: +ls[0]!.cpu_ms.toFixed(0),
      load_ms: rest.length ? +median(rest.map((r) => r.ms)).toFixed(0) : null,
      load_cpu_ms: rest.length ? +median(rest.map((r) => r.cpu_ms)).toFixed(0) : null,
      rss_growth_mb: +(procStatusMb('VmRSS') - rssBefore).toFixed(0),
      fingerprint: tok.fingerprint,
      encode: enc,
    });
  }
  const same = forms[0]!.fingerprint === forms[1]!.fingerprint;
  // the two forms of one model must give every prompt the same ids (the ids themselves are then left out of the JSON)
  const encOf = (f: Record<string, unknown>) => f.encode as Record<string, { ids?: number[] }>;
  const sameIds = Object.keys(PROMPTS).every((k) => JSON.stringify(encOf(forms[0]!)[k]!.ids) === JSON.stringify(encOf(forms[1]!)[k]!.ids));
  for (const f of forms) for (const e of Object.values(encOf(f))) delete e.ids;
  const result = {
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, load_avg_start: load0.map((v) => +v.toFixed(2)), load_avg_end: loadavg().map((v) => +v.toFixed(2)) },
    config: { pieces: nPieces, extra, loads, encodes, generate_ms: +gen.ms.toFixed(0), same_fingerprint: same, same_ids: sameIds, command: `npm run bench:tokenizer -- ${process.argv.slice(2).join(' ')}`.trim() },
    forms,
  };
  if (!flag('--keep') && !outOpt) rmSync(dir, { recursive: true, force: true });
  if (flag('--json')) {
    process.stdout.write(JSON.stringify(result, null, 1) + '\n');
    return;
  }
  let md = `\n| form | file | ids | first load (CPU) | load, median of ${loads - 1} (CPU) | RSS growth |\n|---|---:|---:|---:|---:|---:|\n`;
  for (const f of forms) md += `| ${f.form} | ${f.file_mb} MB | ${(f.vocab_size as number).toLocaleString('en-US')} | ${f.first_load_ms} ms (${f.first_load_cpu_ms} ms) | ${f.load_ms ?? '-'} ms (${f.load_cpu_ms ?? '-'} ms) | ${f.rss_growth_mb} MB |\n`;
  md += `\n| prompt | tokens | ${forms.map((f) => `${f.form}: first / median (CPU) per call`).join(' | ')} |\n|---|---:|${forms.map(() => '---:').join('|')}|\n`;
  for (const name of Object.keys(PROMPTS)) {
    const e = forms.map((f) => (f.encode as Record<string, Record<string, number>>)[name]!);
    md += `| ${name} | ${e[0]!.tokens} | ${e.map((x) => `${x.first_ms} / ${x.median_ms} ms (${x.median_cpu_ms} ms)`).join(' | ')} |\n`;
  }
  md += `\nsame ids from both forms for every prompt: ${sameIds}; same fingerprint: ${same} (tokenizer.json has the ${extra} added ids too); synthetic model written in ${result.config.generate_ms} ms\n`;
  md += `machine: ${result.machine.cpu} (${result.machine.cores} cores), node ${result.machine.node}; load average ${result.machine.load_avg_start.join(' ')} at start, ${result.machine.load_avg_end.join(' ')} at end\n`;
  md += `command: \`${result.config.command}\`\n`;
  process.stdout.write(md);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  main().catch((e) => {
    process.stderr.write(`bench:tokenizer failed: ${(e as Error).stack ?? (e as Error).message}\n`);
    process.exit(1);
  });
