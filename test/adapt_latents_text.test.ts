/**
 * `dcvg latents --text-encoder --tokenizer`: the caption embeddings come from the real tokenizer (the fixture's
 * spiece.model) and umT5 (a random tiny bf16 model whose vocabulary covers that tokenizer), and equal what the
 * library gives for the same caption: the real rows, then zeros up to --text-len.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { loadUmt5, resolveUmt5Config, umt5ConfigToJson, umt5RandomState } from '../src/models/umt5/index.js';
import { loadTokenizer } from '../src/text/index.js';
import { intTensor, noGrad } from '../src/tensor/tensor.js';
import { fixturePath, repoRoot, sharedDir, skipUnlessFixture } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'dcvg-latents-text-'));
after(() => rmSync(root, { recursive: true, force: true }));

const need = [
  'tokenizer/spiece.model',
  'umt5/umt5.json',
  'dc-ae-v/chunk_causal_small.json',
  'dc-ae-v/chunk_causal_small.weights.safetensors',
  'wan_vae/wan_vae.json',
  'wan_vae/wan_vae_tiny.weights.safetensors',
];

describe('dcvg latents with umT5 and its tokenizer', () => {
  it('stores each caption as the encoder gives it, zero-padded to --text-len', { skip: need.map((p) => skipUnlessFixture(p)).find((s) => s) }, async () => {
    const F = (p: string) => fixturePath(p);
    // the tiny fixture config with a vocabulary that covers the fixture tokenizer's 800 pieces
    const base = umt5ConfigToJson(resolveUmt5Config(`${F('umt5/umt5.json')}#umt5_tiny`));
    const cfg = resolveUmt5Config({ ...base, vocab: 800, vocab_size: 800 });
    const enc = join(root, 't5.safetensors');
    saveSafetensors(enc, umt5RandomState(cfg, 7, { dtype: 'bf16' }));
    const out = join(root, 'lat');
    const textLen = 16;
    const r = spawnSync(
      process.execPath,
      [
        join(repoRoot, 'dist', 'src', 'cli', 'main.js'),
        'latents', '--videos', join(sharedDir, 'data', 'clips128'), '--out', out, '--size', '64x64', '--latent-frames', '2',
        '--count', '2', '--per-shard', '2', '--text-len', String(textLen),
        '--dc-ae', `${F('dc-ae-v/chunk_causal_small.json')}:${F('dc-ae-v/chunk_causal_small.weights.safetensors')}`,
        '--wan-vae', `${F('wan_vae/wan_vae.json')}#wan_vae_tiny:${F('wan_vae/wan_vae_tiny.weights.safetensors')}`,
        '--text-encoder', enc, '--tokenizer', F('tokenizer/spiece.model'), '--json',
      ],
      { encoding: 'utf8', env: { ...process.env, DCVG_NO_PROGRESS: '1' } },
    );
    assert.equal(r.status, 0, r.stderr);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { samples?: { caption: string }[]; clips?: { caption: string }[] };
    const captions = JSON.stringify(manifest).match(/"caption":\s*"((?:[^"\\]|\\.)*)"/g)!.map((m) => JSON.parse(m.slice(m.indexOf(':') + 1)) as string);
    assert.equal(captions.length, 2);
    const shard = SafetensorsFile.open(join(out, 'shard-00000.safetensors'));
    const ctx = shard.tensor('context').readSync();
    const [, L, dim] = shard.info('context').shape as [number, number, number];
    assert.equal(L, textLen);
    const tok = await loadTokenizer(F('tokenizer/spiece.model'));
    const model = loadUmt5(enc);
    for (let b = 0; b < 2; b++) {
      const t = tok.tokenize(captions[b]!, textLen);
      const n = t.attentionMask.reduce((a, v) => a + v, 0);
      const want = noGrad(() => model.encode(intTensor(Int32Array.from(t.inputIds), [1, textLen]), intTensor(Int32Array.from(t.attentionMask), [1, textLen]))[0]!).readSync();
      assert.equal(want.length, n * dim);
      const got = ctx.subarray(b * L * dim, (b + 1) * L * dim);
      // the same encoder on the same ids: the same arithmetic, bit for bit
      assert.deepEqual(got.subarray(0, n * dim), want, `caption ${b}: real rows`);
      assert.ok(got.subarray(n * dim).every((v) => v === 0), `caption ${b}: rows past its ${n} tokens are zero`);
      assert.ok(want.some((v) => v !== 0));
    }
    shard.close?.();
  });
});
