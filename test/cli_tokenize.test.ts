/** `dcvg tokenize`, end to end (spawned like a user would), against ../shared/fixtures/tokenizer/cases.json. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSentencePieceModel, toTokenizerJson } from '../src/text/index.js';
import { fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

const skip = skipUnlessFixture('tokenizer/cases.json') || skipUnlessFixture('tokenizer/spiece.model');
const spm = fixturePath('tokenizer/spiece.model');
type Case = Record<string, unknown> & { name: string; text: string; input_ids: number[]; input_ids_without_byte_fallback?: number[] };
const load = () => JSON.parse(readFileSync(fixturePath('tokenizer/cases.json'), 'utf8')) as { text_len: number; cases: Case[]; ftfy_dependent: Case[] };

const tmp = mkdtempSync(join(tmpdir(), 'dcvg-cli-tok-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

describe('dcvg tokenize', { skip }, () => {
  it('--json prints, per text, exactly the fixture case (every key but its name)', () => {
    const c = load();
    const all = [...c.cases, ...c.ftfy_dependent];
    const r = dcvg('tokenize', '--tokenizer', spm, '--text-len', String(c.text_len), '--json', ...all.map((k) => k.text));
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, all.length);
    for (const [i, k] of all.entries()) {
      const { name, ...want } = k;
      assert.deepEqual(JSON.parse(lines[i]!), want, name);
    }
  });

  it('a tokenizer.json folder (no byte fallback) gives input_ids_without_byte_fallback', () => {
    const c = load();
    const model = parseSentencePieceModel(new Uint8Array(readFileSync(spm)), spm);
    writeFileSync(join(tmp, 'tokenizer.json'), JSON.stringify(toTokenizerJson(model)));
    const all = [...c.cases, ...c.ftfy_dependent];
    const r = dcvg('tokenize', '--tokenizer', tmp, '--text-len', String(c.text_len), '--json', ...all.map((k) => k.text));
    assert.equal(r.status, 0, r.stderr);
    const got = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { input_ids: number[]; input_ids_without_byte_fallback?: unknown });
    for (const [i, k] of all.entries()) {
      assert.deepEqual(got[i]!.input_ids, k.input_ids_without_byte_fallback ?? k.input_ids, k.name);
      assert.equal(got[i]!.input_ids_without_byte_fallback, undefined, 'no byte fallback to compare with');
    }
    // and --no-byte-fallback on spiece.model says the same
    const nb = dcvg('tokenize', '--tokenizer', spm, '--no-byte-fallback', '--text-len', String(c.text_len), '--json', ...all.map((k) => k.text));
    assert.equal(nb.status, 0, nb.stderr);
    assert.deepEqual(nb.stdout.trimEnd().split('\n').map((l) => JSON.parse(l).input_ids), got.map((g) => g.input_ids));
  });

  it('prints the cleaned text, pieces, ids and mask for people; default text length 512', () => {
    const c = load();
    const k = c.ftfy_dependent.find((x) => x.name === 'curly_quotes') ?? c.ftfy_dependent[0]!;
    const r = dcvg('tokenize', '--tokenizer', fixturePath('tokenizer'), k.text, 'second');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^text 1: /);
    assert.match(r.stdout, /\ntext 2: "second"\n/);
    assert.ok(r.stdout.includes(`  cleaned:   ${JSON.stringify(k.cleaned)}\n`), r.stdout);
    assert.ok(r.stdout.includes(`${JSON.stringify(k.pieces)}\n`), r.stdout);
    assert.ok(r.stdout.includes(`${JSON.stringify(k.ids)} (eos 1 last)\n`), r.stdout);
    const real = (k.ids as number[]).length;
    assert.ok(r.stdout.includes(`  input_ids: ${JSON.stringify(k.ids)} + ${512 - real} x pad 0 (length 512)\n`), r.stdout);
    assert.ok(r.stdout.includes(`  mask:      ${real} x 1 + ${512 - real} x 0\n`), r.stdout);
  });

  it('missing, corrupt and wrong arguments: one line, non-zero exit, nothing on stdout', () => {
    const corrupt = join(tmp, 'corrupt.model');
    writeFileSync(corrupt, readFileSync(spm).subarray(0, 1000));
    const cases: [string[], RegExp][] = [
      [['--tokenizer', join(tmp, 'missing.model'), 'x'], /^dcvg tokenize: tokenizer not found: .*missing\.model/],
      [['--tokenizer', corrupt, 'x'], /^dcvg tokenize: .*corrupt\.model: not a SentencePiece model, or a corrupt one/],
      [['x'], /^dcvg tokenize: tokenize needs --tokenizer/],
      [['--tokenizer', spm], /^dcvg tokenize: tokenize needs at least one TEXT/],
      [['--tokenizer', spm, '--text-len', '0', 'x'], /^dcvg tokenize: --text-len must be a positive integer, got "0"/],
      [['--tokenizer', spm, '--text-len', '1e3', 'x'], /--text-len must be a positive integer/],
      [['--tokenizer', spm, '--bogus', 'x'], /^dcvg tokenize: .*--bogus.*\(see dcvg --help\)/],
    ];
    for (const [args, re] of cases) {
      const r = dcvg('tokenize', ...args);
      assert.equal(r.status, 1, args.join(' '));
      assert.equal(r.stdout, '', args.join(' '));
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    }
  });

  it('is in dcvg --help', () => {
    const r = dcvg('--help');
    assert.match(r.stdout, /dcvg tokenize --tokenizer <spiece\.model\|tokenizer\.json\|folder> \[--text-len N\]/);
  });
});
