/**
 * The Wan-2.1 VAE (#18): the tiny fixture reproduced (moments, mu, latent, reconstruction, both clips), the official
 * key set and parameter counts built shape-only, the diffusers key map both ways, checkpoints (safetensors in both
 * namings, a torch.save zip), streaming in pieces equal to the whole clip with bounded state, causality, bad frame
 * counts and configs rejected, and `dcvg run wan-vae` / `dcvg info --model wan2.1-vae`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { ShapeError, StateDictError, ValueError } from '../src/errors.js';
import * as ops from '../src/tensor/ops.js';
import { rand } from '../src/tensor/random.js';
import { type Tensor, noGrad, tensor } from '../src/tensor/tensor.js';
import {
  WAN21_LATENTS_MEAN,
  WAN21_LATENTS_STD,
  WAN_VAE_LIMITS,
  WanVAE,
  createWanVae,
  detectWanVaeKeyFormat,
  loadWanVaeWeights,
  parseWanVaeConfig,
  resolveWanVaeConfig,
  runWanVae,
  wan21VaeConfig,
  wanVaeKeyMap,
  wanVaeParameterCounts,
  wanVaeStateDict,
  type WanVaeConfig,
} from '../src/models/wan_vae/index.js';
import { fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';
import { Pickler, writeCheckpoint } from './torch_zip.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
const skip = skipUnlessFixture('wan_vae/wan_vae.json');
const F = (n: string) => fixturePath(`wan_vae/${n}`);
const CFG = () => `${F('wan_vae.json')}#wan_vae_tiny`;
const WEIGHTS = () => F('wan_vae_tiny.weights.safetensors');
const IO = () => F('wan_vae_tiny.io.safetensors');
const OUTPUTS = ['moments', 'mu', 'latent', 'reconstruction_raw', 'reconstruction'];

/** max|a - b| / max|b| (the fixtures README's measure). */
function rel(a: Tensor, b: Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape]);
  const x = a.readSync();
  const y = b.readSync();
  let num = 0;
  let den = 0;
  for (let i = 0; i < y.length; i++) {
    const d = Math.abs(x[i]! - y[i]!);
    if (!(d <= num)) num = Number.isNaN(d) ? Infinity : d;
    den = Math.max(den, Math.abs(y[i]!));
  }
  return den === 0 ? num : num / den;
}

function sameBits(a: Tensor, b: Tensor): boolean {
  const x = a.readSync();
  const y = b.readSync();
  return x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
}

/** The fixtures README's tolerance for every wan_vae output: fp32 within 1e-4 relative. */
const FIXTURE_TOL = 1e-4;
/**
 * Streamed vs whole clip: the same windows of the same frames meet the same weights, only the grouping of frames into
 * calls differs, which can change the order of a GEMM's partial sums. Each output sums K <= 27 * C_in products, so the
 * error stays a few float32 ulps of the largest partial sums (the reference's own chunkings differ by < 4e-6 absolute,
 * fixtures README); 1e-5 of the largest value leaves room for the decoder's ~30 layers without hiding a wrong frame,
 * which moves outputs by O(1).
 */
const STREAM_TOL = 1e-5;

let tinyModel: WanVAE | null = null;
const tiny = () => (tinyModel ??= createWanVae(CFG(), WEIGHTS()));

describe('Wan VAE: the tiny fixture', { skip }, () => {
  it('runWanVae reproduces moments, mu, latent, reconstruction_raw and reconstruction of both clips within 1e-4', () => {
    const out = runWanVae(CFG(), WEIGHTS(), IO());
    const f = SafetensorsFile.open(IO());
    try {
      for (const s of ['', '2'])
        for (const k of OUTPUTS) {
          const e = rel(out.get(k + s)!, f.tensor(k + s));
          assert.ok(e <= FIXTURE_TOL, `${k + s}: relative error ${e}`);
        }
      assert.equal(out.size, 10);
    } finally {
      f.close();
    }
  });

  it('the model API: encode = normalised mu, decode = clamped decodeRaw of the denormalised latent', () => {
    const m = tiny();
    const f = SafetensorsFile.open(IO());
    try {
      const x = f.tensor('input2');
      const latent = m.encode(x);
      assert.ok(rel(latent, f.tensor('latent2')) <= FIXTURE_TOL);
      const rec = m.decode(f.tensor('latent2'));
      assert.ok(rel(rec, f.tensor('reconstruction2')) <= FIXTURE_TOL);
      const r = rec.readSync();
      assert.ok(r.every((v) => v >= -1 && v <= 1));
    } finally {
      f.close();
    }
  });

  it('wan_vae.json: the model size and latent statistics are the official ones', () => {
    const j = JSON.parse(readFileSync(F('wan_vae.json'), 'utf8')).wan_vae_tiny;
    const c = resolveWanVaeConfig(CFG());
    assert.equal(wanVaeParameterCounts(c).total, j.num_params);
    assert.equal(new WanVAE(c).parameterCount(), j.num_params);
    // our constants (from the spec) are the file's float32 values
    assert.deepEqual(WAN21_LATENTS_MEAN.map(Math.fround), j.mean);
    assert.deepEqual(WAN21_LATENTS_STD.map(Math.fround), j.std);
    for (const k of ['input', 'input2']) {
      const m = new WanVAE(c);
      assert.equal(m.latentFrames(j.inputs[k].shape[2]), j.inputs[k].latent_shape[2]);
      assert.equal(m.outputFrames(j.inputs[k].latent_shape[2]), j.inputs[k].reconstruction_shape[2]);
    }
  });
});

describe('Wan VAE: official keys and parameter counts (shape only)', { skip: skipUnlessFixture('wan_vae/official_state_dict_shapes.json') }, () => {
  it('builds the 194 official keys with their shapes, in order, and 126,892,531 parameters', () => {
    const ref = JSON.parse(readFileSync(F('official_state_dict_shapes.json'), 'utf8'));
    const m = new WanVAE(wan21VaeConfig());
    const shapes = m.shapes();
    assert.deepEqual([...shapes.keys()], Object.keys(ref.shapes));
    for (const [k, s] of shapes) assert.deepEqual(s, ref.shapes[k], k);
    assert.equal(shapes.size, ref.num_keys);
    assert.equal(m.parameterCount(), ref.num_params);
    assert.equal(m.encoder.parameterCount(), ref.encoder_params);
    assert.equal(m.decoder.parameterCount(), ref.decoder_params);
    assert.equal(m.conv1.parameterCount(), ref.conv1_params);
    assert.equal(m.conv2.parameterCount(), ref.conv2_params);
    assert.deepEqual(m.parameterCounts(), {
      encoder: ref.encoder_params,
      decoder: ref.decoder_params,
      conv1: ref.conv1_params,
      conv2: ref.conv2_params,
      total: ref.num_params,
    });
    assert.ok(m.namedParams().every(([, p]) => !p.loaded), 'shape-only construction allocates nothing');
    assert.deepEqual(wan21VaeConfig(), { ...resolveWanVaeConfig('wan2.1-vae'), name: 'wan2.1-vae' });
    const { name: _n, latents_mean: _m, latents_std: _s, ...vocab } = wan21VaeConfig();
    assert.deepEqual(vocab, ref.config);
  });

  it('the plan-based count equals the built model for configs across the constructor vocabulary', () => {
    const cfgs: Partial<WanVaeConfig>[] = [
      { dim: 4, dim_mult: [1], temperal_downsample: [] },
      { dim: 6, dim_mult: [1, 3], temperal_downsample: [true], num_res_blocks: 1 },
      { dim: 4, dim_mult: [2, 2, 1], temperal_downsample: [true, false], attn_scales: [1, 0.5], z_dim: 3 },
      { dim: 4, dim_mult: [1, 2, 4, 4], temperal_downsample: [true, true, false, true], attn_scales: [0.25, 0.125], num_res_blocks: 3 },
    ];
    for (const o of cfgs) {
      const c = parseWanVaeConfig({ z_dim: 4, ...o });
      const m = new WanVAE(c);
      assert.equal(wanVaeParameterCounts(c).total, m.parameterCount(), JSON.stringify(o));
      assert.equal(wanVaeParameterCounts(c).encoder, m.encoder.parameterCount());
    }
  });

  it('dcvg info --model wan2.1-vae: shape-only keys and parameter counts', () => {
    const r = dcvg('info', '--model', 'wan2.1-vae', '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.num_params, 126_892_531);
    assert.equal(j.num_tensors, 194);
    assert.equal(j.spatial_compression, 8);
    assert.equal(j.temporal_compression, 4);
    assert.equal(j.latent_channels, 16);
    const t = dcvg('info', '--model', 'Wan2.1_VAE');
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /126,892,531/);
  });
});

describe('Wan VAE: diffusers keys and checkpoints', { skip }, () => {
  it('the key map is a bijection that round-trips, with diffusers AutoencoderKLWan names', () => {
    const { toDiffusers, toOriginal } = wanVaeKeyMap(wan21VaeConfig());
    assert.equal(toDiffusers.size, 194);
    assert.equal(toOriginal.size, 194);
    for (const [k, d] of toDiffusers) assert.equal(toOriginal.get(d), k);
    const known: [string, string][] = [
      ['encoder.conv1.weight', 'encoder.conv_in.weight'],
      ['encoder.downsamples.0.residual.0.gamma', 'encoder.down_blocks.0.norm1.gamma'],
      ['encoder.downsamples.3.shortcut.weight', 'encoder.down_blocks.3.conv_shortcut.weight'],
      ['encoder.downsamples.5.time_conv.weight', 'encoder.down_blocks.5.time_conv.weight'],
      ['encoder.downsamples.8.resample.1.bias', 'encoder.down_blocks.8.resample.1.bias'],
      ['encoder.middle.1.to_qkv.weight', 'encoder.mid_block.attentions.0.to_qkv.weight'],
      ['encoder.middle.2.residual.6.bias', 'encoder.mid_block.resnets.1.conv2.bias'],
      ['encoder.head.0.gamma', 'encoder.norm_out.gamma'],
      ['encoder.head.2.weight', 'encoder.conv_out.weight'],
      ['conv1.weight', 'quant_conv.weight'],
      ['conv2.bias', 'post_quant_conv.bias'],
      ['decoder.conv1.bias', 'decoder.conv_in.bias'],
      ['decoder.middle.0.residual.3.gamma', 'decoder.mid_block.resnets.0.norm2.gamma'],
      ['decoder.upsamples.2.residual.2.weight', 'decoder.up_blocks.0.resnets.2.conv1.weight'],
      ['decoder.upsamples.3.time_conv.weight', 'decoder.up_blocks.0.upsamplers.0.time_conv.weight'],
      ['decoder.upsamples.4.shortcut.weight', 'decoder.up_blocks.1.resnets.0.conv_shortcut.weight'],
      ['decoder.upsamples.11.resample.1.weight', 'decoder.up_blocks.2.upsamplers.0.resample.1.weight'],
      ['decoder.upsamples.14.residual.0.gamma', 'decoder.up_blocks.3.resnets.2.norm1.gamma'],
      ['decoder.head.2.bias', 'decoder.conv_out.bias'],
    ];
    for (const [k, d] of known) assert.equal(toDiffusers.get(k), d, k);
    assert.equal(detectWanVaeKeyFormat(toDiffusers.values()), 'diffusers');
    assert.equal(detectWanVaeKeyFormat(toDiffusers.keys()), 'original');
    // a decoder attention block has no diffusers name
    assert.throws(() => wanVaeKeyMap(parseWanVaeConfig({ dim: 4, z_dim: 4, dim_mult: [1, 2], temperal_downsample: [false], attn_scales: [1] })), /attention block in a decoder up block/);
  });

  it('safetensors in diffusers names and a torch.save state dict load to the same weights (strict)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-wanvae-'));
    try {
      const m = tiny();
      const diff = join(dir, 'diffusers.safetensors');
      saveSafetensors(diff, wanVaeStateDict(m, 'diffusers'));
      const m2 = new WanVAE(m.config);
      assert.equal(loadWanVaeWeights(m2, diff).format, 'diffusers');
      const back = wanVaeStateDict(m2, 'original');
      for (const [k, t] of m.stateDict()) assert.ok(sameBits(back.get(k)!, t), k);
      // dcvg info checks a diffusers checkpoint in diffusers' names
      const info = dcvg('info', '--model', CFG(), '--weights', diff, '--json');
      assert.equal(info.status, 0, info.stderr);
      assert.equal(JSON.parse(info.stdout).checkpoint.matches, true);
      // the released checkpoint is a flat torch.save state dict: write one from scratch
      const p = new Pickler().proto().emptyDict().mark();
      const storages: Record<string, Uint8Array> = {};
      let i = 0;
      for (const [k, t] of m.stateDict()) {
        const strides = t.shape.map((_, a) => t.shape.slice(a + 1).reduce((x, y) => x * y, 1));
        p.str(k).tensor('FloatStorage', String(i), t.size, 0, [...t.shape], strides);
        storages[String(i++)] = new Uint8Array(Float32Array.from(t.readSync()).buffer);
      }
      const pth = writeCheckpoint(dir, 'Wan2.1_VAE.pth', p.setitems().stop().bytes(), storages);
      const m3 = new WanVAE(m.config);
      assert.equal(loadWanVaeWeights(m3, pth).format, 'original');
      for (const [k, t] of m.stateDict()) assert.ok(sameBits(m3.stateDict().get(k)!, t), k);
      // BF16 safetensors load as float32 (each value the bf16 rounding: within 2^-8 relative)
      const b16 = join(dir, 'bf16.safetensors');
      saveSafetensors(b16, m.stateDict(), { dtype: 'BF16' });
      const m5 = new WanVAE(m.config);
      loadWanVaeWeights(m5, b16);
      for (const [k, t] of m.stateDict()) assert.ok(rel(m5.stateDict().get(k)!, t) <= 2 ** -8, k);
      // strict: one key short is refused before anything is loaded, naming the key and the file
      const short = new Map(m.stateDict());
      short.delete('decoder.head.2.bias');
      const bad = join(dir, 'short.safetensors');
      saveSafetensors(bad, short);
      const m4 = new WanVAE(m.config);
      assert.throws(() => loadWanVaeWeights(m4, bad), (e: unknown) => e instanceof StateDictError && /short\.safetensors.*missing: decoder\.head\.2\.bias/.test(e.message));
      assert.ok(m4.namedParams().every(([, q]) => !q.loaded));
      // the official-size model refuses the tiny weights (shapes), before reading data
      assert.throws(() => loadWanVaeWeights(new WanVAE(wan21VaeConfig()), WEIGHTS()), StateDictError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Wan VAE: streaming, causality and frame counts', { skip }, () => {
  const x13 = () => rand([1, 3, 13, 16, 24], 18, -1, 1);

  it('encoding pushed in pieces of any size equals the whole clip, and the carried state does not grow', () => {
    const m = tiny();
    const x = x13();
    const whole = m.encodeMoments(x, { chunk: 12 });
    for (const pieces of [
      [1, 4, 4, 4],
      [3, 6, 1, 3],
      [13],
      [2, 2, 2, 2, 2, 2, 1],
    ]) {
      const s = m.encodeStream();
      const outs: Tensor[] = [];
      const bytes: number[] = [];
      let t = 0;
      for (const n of pieces) {
        const y = s.push(ops.contiguous(ops.slice(x, 2, t, t + n)));
        if (y) outs.push(y);
        bytes.push(s.cacheBytes);
        t += n;
      }
      s.finish();
      const got = ops.cat(outs, 2);
      const e = rel(got, whole);
      assert.ok(e <= STREAM_TOL, `pieces ${pieces}: ${e}`);
      if (pieces[0] === 1) assert.equal(new Set(bytes.slice(1)).size, 1, `state after each group of 4 frames: ${bytes}`);
    }
  });

  it('one call on the whole clip without a cache is the same whole-sequence computation', () => {
    const m = tiny();
    const x = x13();
    const streamed = m.encodeMoments(x);
    const once = noGrad(() => m.encodeChunk(x, null));
    assert.ok(rel(once, streamed) <= STREAM_TOL);
    const z = ops.contiguous(ops.slice(streamed, 1, 0, 16));
    assert.ok(rel(noGrad(() => m.decodeChunk(z, null)), m.decodeRaw(z)) <= STREAM_TOL);
  });

  it('decoding pushed in pieces of any size (and any internal chunk) equals the whole clip', () => {
    const m = tiny();
    const z = rand([1, 16, 5, 3, 2], 5, -2, 2);
    const whole = m.decodeRaw(z, { chunk: 5 });
    assert.deepEqual([...whole.shape], [1, 3, 17, 24, 16]);
    for (const [pieces, chunk] of [
      [[1, 1, 1, 1, 1], 1],
      [[2, 3], 1],
      [[1, 4], 2],
      [[3, 2], 3],
    ] as [number[], number][]) {
      const s = m.decodeStream({ chunk });
      const outs: Tensor[] = [];
      const bytes: number[] = [];
      let t = 0;
      for (const n of pieces) {
        outs.push(s.push(ops.contiguous(ops.slice(z, 2, t, t + n))));
        bytes.push(s.cacheBytes);
        t += n;
      }
      s.finish();
      assert.deepEqual(outs.map((o) => o.shape[2]), pieces.map((n, i) => (i === 0 ? 1 + 4 * (n - 1) : 4 * n)));
      const e = rel(ops.cat(outs, 2), whole);
      assert.ok(e <= STREAM_TOL, `pieces ${pieces} chunk ${chunk}: ${e}`);
      // the carried state fills up over the first latents (a temporal upsample's conv sees its first frames) and is
      // then constant: two frames per causal conv, whatever the length
      if (chunk === 1 && pieces.length === 5) assert.equal(new Set(bytes.slice(2)).size, 1, `state per latent frame: ${bytes}`);
    }
  });

  it('causality: changing frame k never changes latents before its chunk; changing latent j never changes earlier frames', () => {
    const m = tiny();
    const x = x13();
    const base = m.encodeMoments(x);
    // frame 5 belongs to the chunk of frames 5..8 = latent frame 2
    const d = x.readSync();
    const [, , T, H, W] = x.shape as number[] as [number, number, number, number, number];
    for (let c = 0; c < 3; c++) for (let i = 0; i < H * W; i++) d[(c * T + 5) * H * W + i] = -d[(c * T + 5) * H * W + i]!;
    const moved = m.encodeMoments(tensor(d, x.shape));
    for (let j = 0; j < 4; j++) {
      const a = ops.slice(base, 2, j, j + 1);
      const b = ops.slice(moved, 2, j, j + 1);
      if (j < 2) assert.ok(sameBits(ops.contiguous(a), ops.contiguous(b)), `latent ${j} changed`);
      else assert.ok(!sameBits(ops.contiguous(a), ops.contiguous(b)), `latent ${j} did not change`);
    }
    const z = ops.contiguous(ops.slice(base, 1, 0, 16));
    const r0 = m.decodeRaw(z);
    const zd = z.readSync();
    const [, Cz, Tz, Hz, Wz] = z.shape as number[] as [number, number, number, number, number];
    for (let c = 0; c < Cz; c++) for (let i = 0; i < Hz * Wz; i++) zd[(c * Tz + 2) * Hz * Wz + i]! += 1;
    const r1 = m.decodeRaw(tensor(zd, z.shape));
    // latent 2 decodes to frames 5..8
    assert.ok(sameBits(ops.contiguous(ops.slice(r0, 2, 0, 5)), ops.contiguous(ops.slice(r1, 2, 0, 5))));
    assert.ok(!sameBits(ops.contiguous(ops.slice(r0, 2, 5, 9)), ops.contiguous(ops.slice(r1, 2, 5, 9))));
  });

  it('frame counts that are not 1 + 4k, bad sizes and bad pieces get clear errors', () => {
    const m = tiny();
    for (const t of [2, 4, 8, 12]) assert.throws(() => m.encodeMoments(rand([1, 3, t, 16, 16], 1)), (e: unknown) => e instanceof ValueError && /1 \+ 4k frames/.test(e.message) && /crop to \d+ or pad to \d+/.test(e.message));
    const s = m.encodeStream();
    noGrad(() => s.push(rand([1, 3, 6, 16, 16], 2)));
    assert.throws(() => s.finish(), /got 6: crop to 5 or pad to 9/);
    assert.throws(() => m.encodeStream().finish(), /no frames/);
    assert.throws(() => m.encodeMoments(rand([1, 3, 5, 12, 16], 1)), (e: unknown) => e instanceof ShapeError && /multiples of 8/.test(e.message));
    assert.throws(() => m.encodeMoments(rand([1, 4, 5, 16, 16], 1)), ShapeError);
    assert.throws(() => m.decodeRaw(rand([1, 15, 2, 2, 2], 1)), ShapeError);
    const d = m.decodeStream();
    d.push(rand([1, 16, 1, 2, 2], 1));
    assert.throws(() => d.push(rand([1, 16, 1, 3, 2], 1)), /does not match the earlier pieces/);
    assert.throws(() => m.encodeStream({ chunk: 6 }), /multiple of 4/);
  });
});

describe('Wan VAE: configs', () => {
  it('reads the reference and the diffusers vocabulary alike', () => {
    const ref = parseWanVaeConfig({ dim: 8, z_dim: 16, dim_mult: [1, 2, 4, 4], num_res_blocks: 2, attn_scales: [], temperal_downsample: [false, true, true], dropout: 0 });
    const diff = parseWanVaeConfig({ _class_name: 'AutoencoderKLWan', base_dim: 8, z_dim: 16, dim_mult: [1, 2, 4, 4], num_res_blocks: 2, attn_scales: [], temperal_downsample: [false, true, true], dropout: 0, latents_mean: [...WAN21_LATENTS_MEAN], latents_std: [...WAN21_LATENTS_STD] });
    assert.deepEqual({ ...diff, name: '' }, { ...ref, name: '' });
    assert.deepEqual(parseWanVaeConfig({ dim: 4, z_dim: 2, dim_mult: [1], temperal_downsample: [] }).latents_std, [1, 1]);
  });

  it('refuses bad configs with one clear line, before building anything', () => {
    const base = { dim: 8, z_dim: 4, dim_mult: [1, 2], temperal_downsample: [true] };
    const bad: [object, RegExp][] = [
      [{ ...base, dim: 0 }, /dim must be an integer/],
      [{ ...base, dim: 2.5 }, /dim must be an integer/],
      [{ ...base, dim_mult: [1, 2, 2, 2, 2] }, /1 to 4 entries/],
      [{ ...base, dim_mult: [] }, /1 to 4 entries/],
      [{ ...base, temperal_downsample: [] }, /one flag per downsample/],
      [{ ...base, temperal_downsample: ['yes'] }, /true or false/],
      [{ ...base, num_res_blocks: 1e6 }, /num_res_blocks/],
      [{ ...base, attn_scales: [-1] }, /attn_scales\[0\]/],
      [{ ...base, dropout: 1 }, /dropout/],
      [{ ...base, dim: 3, dim_mult: [1, 1] }, /cannot halve/],
      [{ ...base, latents_std: [1, 1, 0, 1] }, /latents_std\[2\] must be positive/],
      [{ ...base, latents_mean: [0] }, /latents_mean must list 4 numbers/],
      [{ ...base, dim: WAN_VAE_LIMITS.dim, dim_mult: [256, 256] }, /beyond the limit|more than one tensor/],
      [{ z_dim: 4 }, /missing dim/],
      [{ base_dim: 8, z_dim: 4, is_residual: true }, /Wan-2.2/],
    ];
    for (const [c, re] of bad) assert.throws(() => parseWanVaeConfig(c), (e: unknown) => e instanceof ValueError && re.test(e.message) && !e.message.includes('\n'), JSON.stringify(c));
    assert.throws(() => resolveWanVaeConfig('wan9-vae'), /unknown Wan VAE model/);
    assert.throws(() => resolveWanVaeConfig('/nonexistent/x.json'), /not found/);
  });
});

describe('dcvg run wan-vae', { skip }, () => {
  it('writes what the fixture holds, under the fixture names', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-wanvae-run-'));
    try {
      const out = join(dir, 'out.safetensors');
      const r = dcvg('run', 'wan-vae', '--config', CFG(), '--weights', WEIGHTS(), '--inputs', IO(), '-o', out, '--json');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).output, out);
      const got = SafetensorsFile.open(out);
      const ref = SafetensorsFile.open(IO());
      try {
        for (const s of ['', '2'])
          for (const k of OUTPUTS) {
            const e = rel(got.tensor(k + s), ref.tensor(k + s));
            assert.ok(e <= FIXTURE_TOL, `${k + s}: ${e}`);
          }
      } finally {
        got.close();
        ref.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a clip of 8 frames fails at once with one line and writes nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-wanvae-bad-'));
    try {
      const inputs = join(dir, 'in.safetensors');
      saveSafetensors(inputs, { input: rand([1, 3, 8, 16, 16], 3, -1, 1) });
      const out = join(dir, 'out.safetensors');
      const r = dcvg('run', 'wan-vae', '--config', CFG(), '--weights', WEIGHTS(), '--inputs', inputs, '-o', out);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /input: the Wan VAE encodes 1 \+ 4k frames .*got 8: crop to 5 or pad to 9/);
      assert.equal(r.stderr.trim().split('\n').length, 1);
      assert.ok(!existsSync(out));
      const r2 = dcvg('run', 'wan-vae', '--config', CFG(), '--weights', WEIGHTS(), '--inputs', IO(), '-o', WEIGHTS());
      assert.equal(r2.status, 1);
      assert.match(r2.stderr, /overwrite/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
