/** dcvg encode / decode / convert on the fixture tensors reproduce the reference outputs; bad input fails cleanly. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../src/index.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { assertClose, fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
const skip = skipUnlessFixture('dc-ae-v/chunk_causal_small.io.safetensors');
const F = (n: string) => fixturePath(`dc-ae-v/${n}`);

describe('dcvg encode/decode/convert on fixture tensors', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-cli-'));
  const io = () => SafetensorsFile.open(F('chunk_causal_small.io.safetensors'));

  for (const [name, weights] of [
    ['chunk_causal_small', 'chunk_causal_small.weights.safetensors'],
    ['causal_small', 'causal_small.weights.safetensors'],
    ['non_causal_small', 'non_causal_small.weights.safetensors'],
  ] as const) {
    it(`${name}: encode then decode reproduce the fixture latent and reconstruction`, () => {
      const lat = join(dir, `${name}.lat.safetensors`);
      const rec = join(dir, `${name}.rec.safetensors`);
      const e = dcvg('encode', F(`${name}.io.safetensors`), '-o', lat, '--model', F(`${name}.json`), '--weights', F(weights));
      assert.equal(e.status, 0, e.stderr);
      const ref = SafetensorsFile.open(F(`${name}.io.safetensors`));
      const got = SafetensorsFile.open(lat);
      assertClose(got.tensor('latent'), ref.tensor('latent'), 1e-4, `${name} latent`);
      assert.equal(got.metadata.num_frames, '16');
      assert.equal(got.metadata.model, name);
      const d = dcvg('decode', F(`${name}.io.safetensors`), '--latent-key', 'latent', '-o', rec, '--model', F(`${name}.json`), '--weights', F(weights));
      assert.equal(d.status, 0, d.stderr);
      assertClose(SafetensorsFile.open(rec).tensor('reconstruction'), ref.tensor('reconstruction'), 1e-4, `${name} reconstruction`);
    });
  }

  it('long clip (24 frames) via --input-key, bf16 .pt weights, round trip through the latent file', () => {
    const lat = join(dir, 'long.lat.safetensors');
    const e = dcvg('encode', F('chunk_causal_small.io.safetensors'), '--input-key', 'long_input', '-o', lat, '--model', F('chunk_causal_small.json'), '--weights', F('chunk_causal_small.weights.safetensors'), '--json');
    assert.equal(e.status, 0, e.stderr);
    assert.deepEqual(JSON.parse(e.stdout).latent_shape, [1, 8, 6, 2, 2]);
    const f = io();
    assertClose(SafetensorsFile.open(lat).tensor('latent'), f.tensor('long_latent'), 1e-4, 'long latent');
    const rec = join(dir, 'long.rec.safetensors');
    assert.equal(dcvg('decode', lat, '-o', rec, '--model', F('chunk_causal_small.json'), '--weights', F('chunk_causal_small.weights.safetensors')).status, 0);
    assertClose(SafetensorsFile.open(rec).tensor('reconstruction'), f.tensor('long_reconstruction'), 1e-4, 'long reconstruction');
  });

  it('convert: torch .pt -> safetensors holds the EMA state dict (bf16, exact)', () => {
    const out = join(dir, 'conv.safetensors');
    const r = dcvg('convert', F('chunk_causal_small.bf16.pt'), '-o', out, '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).source, 'ema_model_state_dict[0.9999]');
    const a = SafetensorsFile.open(out);
    const b = SafetensorsFile.open(F('chunk_causal_small.weights.bf16.safetensors'));
    assert.deepEqual(a.keys().sort(), b.keys().sort());
    for (const k of b.keys()) {
      assert.equal(a.info(k).dtype, 'BF16');
      assert.deepEqual(a.tensor(k).toArray(), b.tensor(k).toArray(), k);
    }
  });

  it('convert: safetensors -> F16 keeps an embedded model config (so --weights alone still works)', () => {
    const src = join(dir, 'with-config.safetensors');
    const w = T.tensor(Float32Array.from([1, 0.1, -2.5, 1e-3]), [2, 2]);
    saveSafetensors(src, new Map([['w', w]]), { metadata: { config: '{"name":"x"}', other: 'dropped' } });
    const out = join(dir, 'with-config.f16.safetensors');
    const r = dcvg('convert', src, '-o', out, '--dtype', 'f16');
    assert.equal(r.status, 0, r.stderr);
    const f = SafetensorsFile.open(out);
    assert.equal(f.metadata.config, '{"name":"x"}');
    assert.equal(f.metadata.other, undefined);
    assert.equal(f.info('w').dtype, 'F16');
    assert.deepEqual(f.tensor('w').toArray(), [1, 0.0999755859375, -2.5, 0.0010004043579101562]);
  });

  it('bad input: wrong key, wrong channel count, size not divisible, NaN — clear message, exit 1, no output', () => {
    const model = ['--model', F('chunk_causal_small.json'), '--weights', F('chunk_causal_small.weights.safetensors')];
    const cases: [string, T.Tensor | null, string[], RegExp][] = [
      ['wrong key', null, ['--input-key', 'nope'], /no tensor "nope" \(has: input, latent/],
      ['channels', T.zeros([1, 4, 8, 64, 64]), [], /must be \(B, 3, T, H, W\).*\[1, 4, 8, 64, 64\]/],
      ['size', T.zeros([1, 3, 8, 48, 64]), [], /64x48 \(width x height\) is not a multiple of 32.*--pad/],
      ['nan', T.full([1, 3, 8, 64, 64], NaN), [], /contains NaN at flat index 0/],
    ];
    for (const [name, t, extra, msg] of cases) {
      const inp = t ? join(dir, `bad-${name}.safetensors`) : F('chunk_causal_small.io.safetensors');
      if (t) saveSafetensors(inp, { input: t });
      const out = join(dir, `bad-${name}.out.safetensors`);
      const r = dcvg('encode', inp, '-o', out, ...model, ...extra);
      assert.equal(r.status, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, msg, name);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${name}: one line`);
      assert.equal(existsSync(out), false, `${name}: output left behind`);
    }
    const missing = dcvg('encode', join(dir, 'absent.safetensors'), '-o', join(dir, 'o.safetensors'), ...model);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /input not found/);
    assert.ok(!readdirSync(dir).some((f) => /\.tmp-|dcvg-tmp-|\.partial-/.test(f)), 'temporary files left behind');
  });
});
