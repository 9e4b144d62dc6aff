/**
 * The text-to-video and image-to-video pipelines (src/pipelines/t2v.ts, i2v.ts, generation.ts) on tiny random models
 * with fake tokenizer / text encoder / image encoder (test/generate_models.ts): both latent spaces (DC-AE-V with a
 * patch-1 DiT, the Wan VAE with a 1x2x2 DiT), determinism per seed, the i2v conditioning layout (spec §3.3), the
 * prompt-embedding cache, the order in which models load, and the errors (nothing written).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFrameBytes } from '../src/io/video.js';
import { ValueError } from '../src/errors.js';
import * as ops from '../src/tensor/ops.js';
import { randn, Rng } from '../src/tensor/random.js';
import { tensor, type Tensor } from '../src/tensor/tensor.js';
import { textToVideo } from '../src/pipelines/t2v.js';
import { i2vCondition, imageToVideo, type ConditionImage } from '../src/pipelines/i2v.js';
import { planGeneration, latentGeometry, type GenerationOptions } from '../src/pipelines/generation.js';
import { parseWanConfig, wanPreset } from '../src/models/wan/config.js';
import { presetConfig } from '../src/models/dcaev/config.js';
import { wan21VaeConfig } from '../src/models/wan_vae/config.js';
import { vaeGeometry } from '../src/pipelines/model_folder.js';
import { fakeModels, tinyDitJson, TEXT_DIM, TEXT_LEN } from './generate_models.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'dcvg-gen-'));

const SIZES = {
  // DC-AE-V tiny: spatial 4, temporal 4, chunk 8; DiT patch 1 -> sides multiples of 4
  dc: { width: 24, height: 16, frames: 16 },
  // Wan VAE tiny: spatial 8, temporal 4; DiT patch 1x2x2 -> sides multiples of 16, frames 1 + 4k
  wan: { width: 32, height: 16, frames: 9 },
} as const;

function opts(family: 'dc' | 'wan', over: Partial<GenerationOptions> = {}): GenerationOptions {
  return { prompt: 'a red circle moving left', negativePrompt: 'blurry', ...SIZES[family], steps: 3, guidance: 4, shift: 5, seed: 7, sampler: 'unipc', ...over };
}

async function frames(path: string): Promise<Uint8Array> {
  return (await readFrameBytes(path)).data;
}

/** A smooth random image (3, H, W) in [-1, 1]. */
function image(H: number, W: number, seed: number): Tensor {
  const r = new Rng(seed);
  const a = [r.normal(), r.normal(), r.normal()];
  const d = new Float32Array(3 * H * W);
  for (let c = 0; c < 3; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) d[(c * H + y) * W + x] = Math.tanh(a[c]! * Math.sin((x + 1) * (c + 1) * 0.3) + 0.5 * Math.cos(y * 0.4 + c));
  return tensor(d, [3, H, W]);
}

function condImage(family: 'dc' | 'wan', seed: number): ConditionImage {
  const { width, height } = SIZES[family];
  return { original: image(height + 6, width + 10, seed), fitted: image(height, width, seed) };
}

const leftovers = (dir: string) => readdirSync(dir);

for (const family of ['dc', 'wan'] as const) {
  const label = family === 'dc' ? 'DC-AE-V + patch-1 DiT' : 'Wan VAE + 1x2x2 DiT';
  describe(`text-to-video, ${label}`, () => {
    it('writes a video of the planned frames and size; the summary says what ran', async () => {
      const dir = tmp();
      try {
        const { models, counts } = fakeModels(family, 't2v');
        const out = join(dir, 'out.y4m');
        const steps: number[] = [];
        const r = await textToVideo(models, { ...opts(family), onStep: (s, n) => (assert.equal(n, 3), steps.push(s)) }, out);
        const f = await readFrameBytes(out);
        assert.equal(f.frames, SIZES[family].frames);
        assert.equal(f.width, SIZES[family].width);
        assert.equal(f.height, SIZES[family].height);
        assert.deepEqual(steps, [1, 2, 3]);
        assert.equal(r.frames, SIZES[family].frames);
        assert.deepEqual(r.latent_shape, family === 'dc' ? [1, 4, 4, 4, 6] : [1, 4, 3, 2, 4]);
        assert.equal(r.dit_tokens, family === 'dc' ? 4 * 4 * 6 : 3 * 1 * 2);
        assert.equal(r.prompts_encoded, 2); // prompt and negative prompt
        assert.equal(r.negative, 'prompt');
        // one load of each, the text encoder strictly before the DiT, the autoencoder only for the decode
        assert.deepEqual(counts.order, ['tokenizer', 'textEncoder', 'dit', 'autoencoder']);
        assert.deepEqual(leftovers(dir), ['out.y4m']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('is deterministic per seed: the same seed gives identical frames, another seed different ones', async () => {
      const dir = tmp();
      try {
        const run = async (seed: number, name: string) => {
          const { models } = fakeModels(family, 't2v');
          await textToVideo(models, opts(family, { seed }), join(dir, name));
          return frames(join(dir, name));
        };
        const a = await run(7, 'a.y4m');
        const b = await run(7, 'b.y4m');
        const c = await run(8, 'c.y4m');
        assert.ok(Buffer.from(a).equals(Buffer.from(b)), 'same seed, same frames');
        assert.ok(!Buffer.from(a).equals(Buffer.from(c)), 'another seed, other frames');
        // the prompt matters too (the text reaches the DiT through cross-attention)
        const { models } = fakeModels(family, 't2v');
        await textToVideo(models, opts(family, { prompt: 'a blue square moving up' }), join(dir, 'd.y4m'));
        assert.ok(!Buffer.from(a).equals(Buffer.from(await frames(join(dir, 'd.y4m')))), 'another prompt, other frames');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('Euler and UniPC both run (and differ); guidance 1 encodes no negative prompt', async () => {
      const dir = tmp();
      try {
        const { models } = fakeModels(family, 't2v');
        await textToVideo(models, opts(family), join(dir, 'u.y4m'));
        const r = await textToVideo(fakeModels(family, 't2v').models, opts(family, { sampler: 'euler' }), join(dir, 'e.y4m'));
        assert.equal(r.sampler, 'euler');
        assert.ok(!Buffer.from(await frames(join(dir, 'u.y4m'))).equals(Buffer.from(await frames(join(dir, 'e.y4m')))));
        const g1 = await textToVideo(fakeModels(family, 't2v').models, opts(family, { guidance: 1 }), join(dir, 'g.mp4'));
        assert.equal(g1.prompts_encoded, 1);
        assert.ok(existsSync(join(dir, 'g.mp4')));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe(`image-to-video, ${label}`, () => {
    it('writes the video; the conditioning image changes it; CLIP loads after the text encoder and before the DiT', async () => {
      const dir = tmp();
      try {
        const { models, counts } = fakeModels(family, 'i2v');
        const r = await imageToVideo(models, { ...opts(family), image: condImage(family, 1) }, join(dir, 'a.y4m'));
        assert.equal(r.mode, 'i2v');
        assert.equal((await readFrameBytes(join(dir, 'a.y4m'))).frames, SIZES[family].frames);
        assert.deepEqual(counts.order, ['tokenizer', 'textEncoder', 'autoencoder', 'imageEncoder', 'dit']);
        const again = fakeModels(family, 'i2v').models;
        await imageToVideo(again, { ...opts(family), image: condImage(family, 1) }, join(dir, 'b.y4m'));
        await imageToVideo(fakeModels(family, 'i2v').models, { ...opts(family), image: condImage(family, 2) }, join(dir, 'c.y4m'));
        const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => frames(join(dir, `${n}.y4m`))));
        assert.ok(Buffer.from(a!).equals(Buffer.from(b!)), 'same image and seed, same frames');
        assert.ok(!Buffer.from(a!).equals(Buffer.from(c!)), 'another image, other frames');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('conditioning (spec §3.3): t mask channels with latent frame 0 all ones, then the encoded conditioning clip x scale', () => {
      const { models, ae } = fakeModels(family, 'i2v');
      // more frames than one read of the autoencoder's stream (DC-AE-V: 8, Wan VAE: 16), so the clip is pushed in parts
      const size = { ...SIZES[family], frames: family === 'dc' ? 24 : 21 };
      const plan = planGeneration(models.ditConfig, latentGeometry(ae), size, 'i2v');
      const img = condImage(family, 3).fitted;
      const y = i2vCondition(ae, img, plan);
      const [, C, Fl, h, w] = plan.latentShape;
      assert.deepEqual(y.shape, [1, 4 + C, Fl, h, w]);
      const mask = ops.contiguous(ops.slice(y, 1, 0, 4)).readSync();
      for (let c = 0; c < 4; c++)
        for (let f = 0; f < Fl; f++)
          for (let i = 0; i < h * w; i++) assert.equal(mask[(c * Fl + f) * h * w + i], f === 0 ? 1 : 0, `mask[${c}, ${f}]`);
      // the reference construction, independently: DC-AE-V: the image in frames 0..3 then zeros; Wan: frame 0 then zeros
      const { frames: F, height: H, width: W } = size;
      assert.equal(plan.frames, F);
      const k = family === 'dc' ? 4 : 1;
      const clip = ops.cat([ops.expand(ops.reshape(img, [1, 3, 1, H, W]), [1, 3, k, H, W]), tensor(new Float32Array(3 * (F - k) * H * W), [1, 3, F - k, H, W])], 2);
      const ref = ops.mul(ae.encodeClip(ops.contiguous(clip)).latent, plan.latentScale).readSync();
      const got = ops.contiguous(ops.slice(y, 1, 4)).readSync();
      assert.equal(got.length, ref.length);
      // same convolutions on the same inputs, chunk by chunk vs whole clip: equal up to float32 summation order
      let maxErr = 0;
      let maxRef = 0;
      for (let i = 0; i < ref.length; i++) {
        maxErr = Math.max(maxErr, Math.abs(got[i]! - ref[i]!));
        maxRef = Math.max(maxRef, Math.abs(ref[i]!));
      }
      assert.ok(maxRef > 0.01, 'the condition latent is not trivially zero');
      assert.ok(maxErr <= 1e-4 * maxRef, `condition latent differs from the reference construction by ${maxErr} (max ${maxRef})`);
      if (family === 'dc') assert.equal(plan.latentScale, 0.5);
      else assert.equal(plan.latentScale, 1);
    });

    it('a t2v DiT refuses an image, an i2v DiT needs one', async () => {
      const dir = tmp();
      try {
        await assert.rejects(imageToVideo(fakeModels(family, 't2v').models, { ...opts(family), image: condImage(family, 1) }, join(dir, 'x.mp4')), /needs/);
        await assert.rejects(textToVideo(fakeModels(family, 'i2v').models, opts(family), join(dir, 'y.mp4')), /pass a conditioning image/);
        assert.deepEqual(leftovers(dir), []);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

describe('generation: cache, negative prompt, plan, errors', () => {
  it('the prompt-embedding cache: a second run never loads the text encoder and gives the same frames', async () => {
    const dir = tmp();
    try {
      const cacheDir = join(dir, 'cache');
      const a = fakeModels('dc', 't2v');
      const r1 = await textToVideo(a.models, { ...opts('dc'), cacheDir }, join(dir, 'a.y4m'));
      assert.equal(r1.prompts_encoded, 2);
      assert.equal(readdirSync(cacheDir).filter((n) => n.endsWith('.safetensors')).length, 2);
      const b = fakeModels('dc', 't2v');
      const r2 = await textToVideo(b.models, { ...opts('dc'), cacheDir }, join(dir, 'b.y4m'));
      assert.equal(b.counts.textEncoder, 0);
      assert.equal(r2.prompts_cached, 2);
      assert.ok(Buffer.from(await frames(join(dir, 'a.y4m'))).equals(Buffer.from(await frames(join(dir, 'b.y4m')))));
      // another encoder identity misses the cache
      const c = fakeModels('dc', 't2v', { cacheId: 'other-weights' });
      await textToVideo(c.models, { ...opts('dc'), cacheDir }, join(dir, 'c.y4m'));
      assert.equal(c.counts.textEncoder, 1);
      // a new prompt loads the encoder for that prompt only
      const d = fakeModels('dc', 't2v');
      const r4 = await textToVideo(d.models, { ...opts('dc'), prompt: 'something else', cacheDir }, join(dir, 'd.y4m'));
      assert.equal(r4.prompts_encoded, 1);
      assert.equal(r4.prompts_cached, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("without a negative prompt, the checkpoint's null embedding is the unconditional context", async () => {
    const dir = tmp();
    try {
      const { models } = fakeModels('dc', 't2v');
      models.nullEmbedding = () => randn([TEXT_LEN, TEXT_DIM], 5);
      const r = await textToVideo(models, { ...opts('dc'), negativePrompt: undefined }, join(dir, 'a.y4m'));
      assert.equal(r.negative, 'null-embedding');
      assert.equal(r.prompts_encoded, 1);
      const r2 = await textToVideo(fakeModels('dc', 't2v').models, { ...opts('dc'), negativePrompt: undefined }, join(dir, 'b.y4m'));
      assert.equal(r2.negative, 'prompt'); // no null embedding: the empty prompt
      assert.equal(r2.prompts_encoded, 2);
      assert.ok(!Buffer.from(await frames(join(dir, 'a.y4m'))).equals(Buffer.from(await frames(join(dir, 'b.y4m')))));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('frame counts follow each autoencoder: DC-AE-V multiples of 4 (81 -> 80), the Wan VAE 1 + 4k (80 -> 77)', () => {
    const dc = fakeModels('dc', 't2v');
    const p = planGeneration(dc.models.ditConfig, dc.models.aeGeometry, { frames: 81, width: 24, height: 16 }, 't2v');
    assert.equal(p.frames, 80);
    assert.equal(p.latentShape[2], 20);
    assert.match(p.notes[0]!, /81 frames requested.*80/);
    const wan = fakeModels('wan', 't2v');
    const q = planGeneration(wan.models.ditConfig, wan.models.aeGeometry, { frames: 80, width: 32, height: 16 }, 't2v');
    assert.equal(q.frames, 77);
    assert.equal(q.latentShape[2], 20);
    assert.equal(planGeneration(wan.models.ditConfig, wan.models.aeGeometry, { frames: 81, width: 32, height: 16 }, 't2v').notes.length, 0);
  });

  it('the released pairs give the latent shapes and DiT token counts of spec §4.6', () => {
    const dc = vaeGeometry({ family: 'dc-ae-v', path: '', parsed: presetConfig('dc-ae-v-f32t4c32-1.0') });
    const wan = vaeGeometry({ family: 'wan-vae', path: '', parsed: wan21VaeConfig() });
    assert.equal(dc.scale, 0.7241);
    const p1 = planGeneration(wanPreset('DC-VideoGen-Wan2.1-T2V-1.3B'), dc, { frames: 81, width: 832, height: 480 }, 't2v');
    assert.deepEqual([p1.frames, p1.latentShape, p1.tokens], [80, [1, 32, 20, 15, 26], 7800]);
    const p2 = planGeneration(wanPreset('Wan2.1-T2V-1.3B'), wan, { frames: 81, width: 832, height: 480 }, 't2v');
    assert.deepEqual([p2.frames, p2.latentShape, p2.tokens], [81, [1, 16, 21, 60, 104], 32760]);
    const p3 = planGeneration(wanPreset('Wan2.1-T2V-14B'), wan, { frames: 81, width: 1280, height: 720 }, 't2v');
    assert.equal(p3.tokens, 75600);
    const p4 = planGeneration(wanPreset('DC-VideoGen-Wan2.1-T2V-14B'), dc, { frames: 81, width: 1280, height: 704 }, 't2v');
    assert.equal(p4.tokens, 17600);
    // 720 is no multiple of 32: refused with the nearest sizes that are
    assert.throws(() => planGeneration(wanPreset('DC-VideoGen-Wan2.1-T2V-14B'), dc, { frames: 81, width: 1280, height: 720 }, 't2v'), /multiples of 32 .*e\.g\. 1280x7(04|36)/);
    // I2V: 68 = 32 noisy + 4 mask + 32 condition
    assert.equal(planGeneration(wanPreset('DC-VideoGen-Wan2.1-I2V-14B'), dc, { frames: 81, width: 832, height: 480 }, 'i2v').tokens, 7800);
    // and the base: 36 = 16 + 4 + 16
    assert.equal(planGeneration(wanPreset('Wan2.1-I2V-14B'), wan, { frames: 81, width: 832, height: 480 }, 'i2v').tokens, 32760);
    // the DC DiT on the Wan VAE is no pair
    assert.throws(() => planGeneration(wanPreset('DC-VideoGen-Wan2.1-T2V-1.3B'), wan, { frames: 81, width: 832, height: 480 }, 't2v'), /predicts 32 latent channels but .* has 16/);
  });

  it('bad requests fail before any model loads and write nothing', async () => {
    const dir = tmp();
    try {
      const cases: [string, Partial<GenerationOptions>, RegExp][] = [
        ['size', { width: 30 }, /size 30x16.*multiples of 4/],
        ['empty prompt', { prompt: '  ' }, /prompt is empty/],
        ['steps', { steps: 0 }, /steps must be an integer/],
        ['guidance', { guidance: Number.NaN }, /guidance must be/],
        ['seed', { seed: -1 }, /seed must be/],
        ['frames', { frames: 3 }, /at least 4/],
      ];
      for (const [what, over, re] of cases) {
        const { models, counts } = fakeModels('dc', 't2v');
        await assert.rejects(textToVideo(models, opts('dc', over), join(dir, 'out.mp4')), (e: Error) => e instanceof ValueError && re.test(e.message), what);
        assert.deepEqual(counts.order, [], `${what}: nothing loaded`);
      }
      const wan = fakeModels('wan', 't2v');
      await assert.rejects(textToVideo(wan.models, opts('wan', { width: 24 }), join(dir, 'out.mp4')), /multiples of 16 .*spatial factor 8 x the DiT's patch 2/);
      assert.deepEqual(leftovers(dir), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a DiT and an autoencoder that are not a pair are refused naming both', async () => {
    const { models } = fakeModels('dc', 't2v');
    models.ditConfig = parseWanConfig({ ...tinyDitJson('dc', 't2v'), in_dim: 8, out_dim: 8 }, 'eight');
    await assert.rejects(textToVideo(models, opts('dc'), join(tmpdir(), 'never.mp4')), /predicts 8 latent channels but autoencoder "tiny-dc-ae-v" has 4/);
    const i = fakeModels('dc', 'i2v');
    i.models.ditConfig = parseWanConfig({ ...tinyDitJson('dc', 'i2v'), in_dim: 9 }, 'nine');
    await assert.rejects(imageToVideo(i.models, { ...opts('dc'), image: condImage('dc', 1) }, join(tmpdir(), 'never.mp4')), /takes 9 input channels; image-to-video .* needs 12 \(4 noisy \+ 4 mask \+ 4 condition\)/);
    const t = fakeModels('dc', 't2v');
    t.models.textDim = 7;
    await assert.rejects(textToVideo(t.models, opts('dc'), join(tmpdir(), 'never.mp4')), /text encoder's output width is 7, but the DiT's text_dim is 12/);
  });

  it('a failure after the output was opened (a broken DiT) leaves nothing behind', async () => {
    const dir = tmp();
    try {
      const { models } = fakeModels('dc', 't2v');
      models.dit = () => {
        throw new ValueError('broken DiT for the test');
      };
      await assert.rejects(textToVideo(models, opts('dc'), join(dir, 'out.mp4')), /broken DiT/);
      assert.deepEqual(leftovers(dir), []);
      // an output folder that does not exist fails before anything loads
      const b = fakeModels('dc', 't2v');
      await assert.rejects(textToVideo(b.models, opts('dc'), join(dir, 'missing', 'out.mp4')));
      assert.deepEqual(b.counts.order, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
