/**
 * DC-AE-V against the reference fixtures (../shared/fixtures/dc-ae-v), preset key/shape tables, and the chunk-causal
 * properties: streaming equals the whole-clip pass, and changing future frames never changes past latents.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../src/index.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { configFromReference, presetConfig, PRESET_NAMES } from '../src/models/dcaev/config.js';
import { DCAEV } from '../src/models/dcaev/model.js';
import {
  StreamingDecoder,
  StreamingEncoder,
  createModel,
  decodeVideo,
  encodeVideo,
  loadWeights,
  peakBytesPerPixelFrame,
  resolveTiling,
} from '../src/models/dcaev/autoencoder.js';
import { StateDictError } from '../src/errors.js';
import { assertClose, fixturePath, skipUnlessFixture } from './helpers.js';

const TOL = 1e-4;
const dir = 'dc-ae-v';
const skip = skipUnlessFixture(`${dir}/chunk_causal_small.json`);

function fixtureModel(name: string, weights = `${name}.weights.safetensors`): DCAEV {
  const cfg = configFromReference(JSON.parse(readFileSync(fixturePath(`${dir}/${name}.json`), 'utf8')), name);
  const m = new DCAEV(cfg);
  loadWeights(m, fixturePath(`${dir}/${weights}`));
  return m;
}

describe('DC-AE-V fixtures (reference dc_ae_v.py)', { skip }, () => {
  for (const name of ['chunk_causal_small', 'causal_small', 'non_causal_small']) {
    it(`${name}: parameter count, latent and reconstruction`, () => {
      const j = JSON.parse(readFileSync(fixturePath(`${dir}/${name}.json`), 'utf8')) as { num_params: number };
      const m = fixtureModel(name);
      assert.equal(m.parameterCount(), j.num_params);
      const io = SafetensorsFile.open(fixturePath(`${dir}/${name}.io.safetensors`));
      const z = T.noGrad(() => m.encodeRaw(io.tensor('input')));
      assertClose(z, io.tensor('latent'), TOL, `${name} latent`);
      const y = T.noGrad(() => m.decodeRaw(io.tensor('latent')));
      assertClose(y, io.tensor('reconstruction'), TOL, `${name} reconstruction`);
      io.close();
    });
  }

  it('chunk_causal_small long clip: whole-clip pass and streaming both equal the reference tiled pass', () => {
    const m = fixtureModel('chunk_causal_small');
    const io = SafetensorsFile.open(fixturePath(`${dir}/chunk_causal_small.io.safetensors`));
    const x = io.tensor('long_input');
    const zRef = io.tensor('long_latent');
    assertClose(T.noGrad(() => m.encodeRaw(x)), zRef, TOL, 'long latent (whole clip)');
    const enc = new StreamingEncoder(m);
    const parts = [enc.push(T.slice(x, 2, 0, 5)), enc.push(T.slice(x, 2, 5, 19)), enc.push(T.slice(x, 2, 19, 24)), enc.finish()].filter(
      (p): p is T.Tensor => p !== null,
    );
    assertClose(T.cat(parts, 2), zRef, TOL, 'long latent (streamed in pieces of 5, 14, 5 frames)');
    const yRef = io.tensor('long_reconstruction');
    assertClose(T.noGrad(() => m.decodeRaw(zRef)), yRef, TOL, 'long reconstruction (whole)');
    assertClose(decodeVideo(m, zRef), yRef, TOL, 'long reconstruction (streamed)');
    io.close();
  });

  it('bf16 checkpoints: torch .pt (EMA entry) and bf16 safetensors load and reproduce the bf16 outputs', () => {
    const io = SafetensorsFile.open(fixturePath(`${dir}/chunk_causal_small.bf16.io.safetensors`));
    for (const w of ['chunk_causal_small.bf16.pt', 'chunk_causal_small.weights.bf16.safetensors']) {
      const m = fixtureModel('chunk_causal_small', w);
      assertClose(T.noGrad(() => m.encodeRaw(io.tensor('input'))), io.tensor('latent'), TOL, `${w} latent`);
      assertClose(T.noGrad(() => m.decodeRaw(io.tensor('latent'))), io.tensor('reconstruction'), TOL, `${w} reconstruction`);
    }
    io.close();
  });

  it('the five presets build the official keys and shapes without allocating weights', () => {
    const official = JSON.parse(readFileSync(fixturePath(`${dir}/official_state_dict_shapes.json`), 'utf8')) as Record<
      string,
      { num_params_encoder: number; num_params_decoder: number; state_dict_shapes: Record<string, number[]> }
    >;
    const rss0 = process.memoryUsage().rss;
    for (const name of PRESET_NAMES) {
      const ref = official[name]!;
      const m = new DCAEV(presetConfig(name));
      const mine = m.shapes();
      assert.deepEqual([...mine.keys()].sort(), Object.keys(ref.state_dict_shapes).sort(), `${name} key set`);
      for (const [k, s] of mine) assert.deepEqual(s, ref.state_dict_shapes[k], `${name} ${k}`);
      assert.equal(m.encoder.parameterCount(), ref.num_params_encoder, `${name} encoder params`);
      assert.equal(m.decoder.parameterCount(), ref.num_params_decoder, `${name} decoder params`);
      assert.equal(m.convLayers('encoder').length, name.includes('f64') ? 78 : 69);
      assert.ok(m.namedParams().every(([, p]) => !p.loaded));
    }
    assert.equal(new DCAEV(presetConfig('dc-ae-v-f32t4c32-1.0')).parameterCount(), 2_138_635_436);
    assert.ok(process.memoryUsage().rss - rss0 < 200 * 2 ** 20, 'building presets allocated weights');
  });

  it('strict loading reports missing, unexpected and mismatched keys', () => {
    const m = new DCAEV(presetConfig('dc-ae-v-f32t4c32-1.0'));
    const small = SafetensorsFile.open(fixturePath(`${dir}/chunk_causal_small.weights.safetensors`));
    const sd = new Map(small.keys().map((k) => [k, small.tensor(k)]));
    small.close();
    assert.throws(
      () => m.loadStateDict(sd),
      (e: Error) => e instanceof StateDictError && /mismatched shapes: encoder\.project_in\.conv\.conv\.weight|missing/.test(e.message),
    );
    const f = fixtureModel('chunk_causal_small');
    const extra = new Map(sd);
    extra.set('encoder.bogus.weight', T.zeros([1]));
    extra.delete('decoder.project_out.op_list.0.weight');
    assert.throws(
      () => f.loadStateDict(extra),
      (e: Error) => e instanceof StateDictError && /1 missing: decoder\.project_out\.op_list\.0\.weight/.test(e.message) && /1 unexpected: encoder\.bogus\.weight/.test(e.message),
    );
  });

  it('corrupt and truncated checkpoints are rejected cleanly', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'dcvg-ckpt-'));
    const m = new DCAEV(configFromReference(JSON.parse(readFileSync(fixturePath(`${dir}/chunk_causal_small.json`), 'utf8'))));
    for (const src of ['chunk_causal_small.bf16.pt', 'chunk_causal_small.weights.safetensors']) {
      const bytes = readFileSync(fixturePath(`${dir}/${src}`));
      const cut = join(tmp, `cut-${src}`);
      writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
      assert.throws(() => loadWeights(m, cut), (e: Error) => e instanceof T.DcvgError, src);
    }
    const junk = join(tmp, 'junk.pt');
    writeFileSync(junk, Buffer.from('PK\u0003\u0004 this is not a zip'));
    assert.throws(() => loadWeights(m, junk), (e: Error) => e instanceof T.DcvgError);
    assert.throws(() => loadWeights(m, join(tmp, 'absent.safetensors')), /not found/);
  });
});

describe('DC-AE-V chunk-causal properties (random weights)', () => {
  // A tiny chunk-causal model in the released topology: chunk 8 frames (2 latents), 64x64 -> 2x2.
  const cfgJson = {
    latent_channels: 4,
    encoder: {
      width_list: [4, 8, 8, 8, 8, 8, 8],
      depth_list: [0, 1, 1, 1, 1, 1, 1],
      block_type: ['ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@2'],
      downsample_block_type: ['ChunkCausalConvPixelUnshuffle@2@1@3@3@8', 'ChunkCausalConvPixelUnshuffle@2@1@3@3@8', 'ChunkCausalConvPixelUnshuffle@2@1@3@3@8', 'ChunkCausalConvPixelUnshuffle@2@1@3@3@8', 'ChunkCausalConvPixelUnshuffle@2@1@3@3@8', 'ChunkCausalConvPixelUnshuffle@1@4@3@3@8'],
      project_in_block_type: 'ChunkCausalConvPixelUnshuffle@2@1@3@3@8',
      project_out_block_type: 'ChunkCausalConvLayer3d@3@3@2',
    },
    decoder: {
      width_list: [4, 8, 8, 8, 8, 8, 8],
      depth_list: [0, 1, 1, 1, 1, 1, 1],
      block_type: ['ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@8', 'ChunkCausalResBlock3d@3@3@2'],
      upsample_block_type: ['ChunkCausalConvPixelShuffle@2@1@3@3@8', 'ChunkCausalConvPixelShuffle@2@1@3@3@8', 'ChunkCausalConvPixelShuffle@2@1@3@3@8', 'ChunkCausalConvPixelShuffle@2@1@3@3@8', 'ChunkCausalConvPixelShuffle@2@1@3@3@8', 'ChunkCausalConvPixelShuffle@1@4@3@3@2'],
      project_in_block_type: 'ChunkCausalConvLayer3d@3@3@2',
      project_out_block_type: 'ChunkCausalConvPixelShuffle@2@1@3@3@8',
    },
  };
  const model = () => {
    const m = new DCAEV(configFromReference(cfgJson, 'tiny'));
    m.initRandom(11, 0.15);
    for (const [k, p] of m.namedParams()) if (/norm\.weight$|op_list\.0\.weight$/.test(k)) p.set(T.ones(p.shape));
    return m;
  };

  it('streaming encode/decode equals the whole-clip pass on random input', () => {
    const m = model();
    const x = T.rand([1, 3, 32, 32, 32], 5, -1, 1);
    const whole = T.noGrad(() => m.encodeRaw(x));
    const enc = new StreamingEncoder(m);
    const parts: T.Tensor[] = [];
    for (const [a, b] of [[0, 3], [3, 17], [17, 24], [24, 32]] as const) {
      const z = enc.push(T.slice(x, 2, a, b));
      if (z) parts.push(z);
    }
    assert.equal(enc.finish(), null);
    const streamed = T.cat(parts, 2);
    assert.deepEqual(streamed.shape, whole.shape);
    assertClose(streamed, whole, 1e-5, 'streamed latent');
    const yWhole = T.noGrad(() => m.decodeRaw(whole));
    const dec = new StreamingDecoder(m);
    const ys = [dec.push(T.slice(whole, 2, 0, 3)), dec.push(T.slice(whole, 2, 3, 8)), dec.finish()].filter((p): p is T.Tensor => p !== null);
    assertClose(T.cat(ys, 2), yWhole, 1e-5, 'streamed reconstruction');
  });

  it('the autograd path (cat of the left frame) and the inference path (in-place tap-0 correction) agree', () => {
    const m = model();
    const x = T.rand([1, 3, 24, 32, 32], 14, -1, 1);
    const fast = T.noGrad(() => m.encodeRaw(x));
    const xg = T.parameter(x);
    const slow = m.encodeRaw(xg);
    assert.ok(slow.requiresGrad);
    assertClose(slow.detach(), fast, 1e-5, 'encoder paths');
    T.sum(slow).backward();
    assert.ok(xg.grad && xg.grad.toArray().some((v) => v !== 0));
  });

  it('changing frames of chunk k never changes latents of earlier chunks; it does change its own chunk', () => {
    const m = model();
    const x = T.rand([1, 3, 24, 32, 32], 6, -1, 1);
    const z0 = T.noGrad(() => m.encodeRaw(x)).toArray();
    const x2 = x.clone();
    const d = x2.readSync();
    const perFrame = 32 * 32;
    for (let c = 0; c < 3; c++) for (let t = 16; t < 24; t++) for (let i = 0; i < perFrame; i++) d[(c * 24 + t) * perFrame + i] = -d[(c * 24 + t) * perFrame + i]!;
    x2.write(d);
    const z1 = T.noGrad(() => m.encodeRaw(x2)).toArray();
    const perLatent = 4 * 1 * 1; // C=4 at 1x1, latent index layout (c, t, h, w)
    for (let c = 0; c < 4; c++)
      for (let t = 0; t < 6; t++) {
        const i = c * 6 + t;
        if (t < 4) assert.equal(z1[i], z0[i], `latent frame ${t} (chunk ${t >> 1}) changed`);
      }
    assert.ok([4, 5].some((t) => [0, 1, 2, 3].some((c) => z1[c * 6 + t] !== z0[c * 6 + t])), 'chunk 2 latents did not change');
    // Within a chunk the model is bidirectional: the last frame of chunk 0 reaches latent frame 0.
    const x3 = x.clone();
    const d3 = x3.readSync();
    for (let i = 0; i < perFrame; i++) d3[7 * perFrame + i] = 0.9;
    x3.write(d3);
    const z3 = T.noGrad(() => m.encodeRaw(x3)).toArray();
    assert.ok([0, 1, 2, 3].some((c) => z3[c * 6] !== z0[c * 6]), 'latent 0 does not depend on frame 7');
    void perLatent;
  });

  it('any frame count: the tail is padded with the last frame and cropped after decoding', () => {
    const m = model();
    const x = T.rand([1, 3, 19, 32, 32], 7, -1, 1);
    const r = encodeVideo(m, x);
    assert.equal(r.numFrames, 19);
    assert.deepEqual(r.latent.shape, [1, 4, 6, 1, 1]);
    const last = T.slice(x, 2, 18, 19);
    const padded = T.cat([x, T.expand(last, [1, 3, 5, 32, 32])], 2);
    assertClose(r.latent, T.noGrad(() => m.encodeRaw(padded)), 1e-5, 'padded latent');
    const y = decodeVideo(m, r.latent, { numFrames: r.numFrames });
    assert.deepEqual(y.shape, [1, 3, 19, 32, 32]);
  });

  it('sizes not divisible by the spatial factor: clear error, or pad-and-crop when asked', () => {
    const m = model();
    const x = T.rand([1, 3, 8, 40, 36], 8, -1, 1);
    assert.throws(() => encodeVideo(m, x), (e: Error) => e instanceof T.ShapeError && /36x40 \(width x height\) is not a multiple of 32/.test(e.message));
    const r = encodeVideo(m, x, { padSpatial: true });
    assert.deepEqual(r.latent.shape, [1, 4, 2, 2, 2]);
    const y = decodeVideo(m, r.latent, { numFrames: r.numFrames, height: r.height, width: r.width });
    assert.deepEqual(y.shape, [1, 3, 8, 40, 36]);
  });

  it('configs with inconsistent chunk lengths are rejected (they would silently fall back to non-chunked convs)', () => {
    const bad = JSON.parse(JSON.stringify(cfgJson));
    bad.decoder.block_type = 'ChunkCausalResBlock3d@3@3@8';
    assert.throws(() => configFromReference(bad), (e: Error) => e instanceof T.ValueError && /decoder stage 6 blocks .* chunk must be 2.*got 8/.test(e.message));
  });

  it('spatial tiling: streamed chunk-by-chunk tiles equal the reference order (each tile over the whole clip)', () => {
    const m = model();
    const x = T.rand([1, 3, 16, 96, 128], 12, -1, 1);
    const streamed = encodeVideo(m, x, { tile: 64, overlap: 0.5 });
    const whole = encodeVideo(m, x, { tile: 64, overlap: 0.5, mode: 'whole' });
    assert.deepEqual(streamed.latent.shape, [1, 4, 4, 3, 4]);
    assertClose(streamed.latent, whole.latent, 1e-5, 'tiled latent');
    const untiled = encodeVideo(m, x);
    assert.ok(T.amax(T.abs(T.sub(untiled.latent, streamed.latent))).item() > 1e-4, 'tiling had no effect');
    const y1 = decodeVideo(m, streamed.latent, { tile: 64, overlap: 0.5 });
    const y2 = decodeVideo(m, streamed.latent, { tile: 64, overlap: 0.5, mode: 'whole' });
    assert.deepEqual(y1.shape, [1, 3, 16, 96, 128]);
    assertClose(y1, y2, 1e-5, 'tiled reconstruction');
  });

  it('automatic tile choice fits a memory budget', () => {
    const m = model();
    const x = T.rand([1, 3, 8, 128, 128], 13, -1, 1);
    const none = resolveTiling(m, 128, 128, { tile: 'auto', memoryBudgetBytes: 1e12 });
    assert.equal(none, null);
    const budget = 8 * 64 * 64 * peakBytesPerPixelFrame(m);
    const t = resolveTiling(m, 128, 128, { tile: 'auto', overlap: 0.5, memoryBudgetBytes: budget });
    assert.deepEqual(t, { size: 64, overlap: 0.5 });
    const r = encodeVideo(m, x, { tile: 'auto', overlap: 0.5, memoryBudgetBytes: budget });
    assertClose(r.latent, encodeVideo(m, x, { tile: 64, overlap: 0.5 }).latent, 0, 'auto tile = 64');
    assert.throws(() => encodeVideo(m, x, { tile: 'auto', memoryBudgetBytes: 1000 }), /too small/);
  });

  it('weights round-trip through safetensors and createModel', () => {
    const m = model();
    const tmp = mkdtempSync(join(tmpdir(), 'dcvg-w-'));
    const p = join(tmp, 'w.safetensors');
    saveSafetensors(p, m.stateDict());
    const cfgPath = join(tmp, 'cfg.json');
    writeFileSync(cfgPath, JSON.stringify(cfgJson));
    const m2 = createModel(cfgPath, p);
    const x = T.rand([1, 3, 8, 32, 32], 9, -1, 1);
    assert.deepEqual(T.noGrad(() => m2.encodeRaw(x)).toArray(), T.noGrad(() => m.encodeRaw(x)).toArray());
  });
});
