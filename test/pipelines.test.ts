/**
 * The reconstruct pipeline as an API (issue #17 item 6): frames in any grouping -> the same frames out as the
 * whole-clip encode + decode, and metrics equal to scoring those frames directly.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { framesToTensor, tensorToFrames } from '../src/io/video.js';
import { psnrFrame, ssimFrame } from '../src/metrics/metrics.js';
import { randomShapesVideo, renderShapes } from '../src/metrics/shapes_world.js';
import { createModel, decodeVideo, encodeVideo } from '../src/models/dcaev/autoencoder.js';
import { reconstructFrames } from '../src/pipelines/reconstruct.js';
import { Rng } from '../src/tensor/random.js';
import { noGrad } from '../src/tensor/tensor.js';
import { fixturePath, skipUnlessFixture } from './helpers.js';

const AE = 'dc-ae-v/chunk_causal_small';

describe('reconstructFrames', { skip: skipUnlessFixture(`${AE}.json`) }, () => {
  it('streams uneven pushes to the whole-clip result, scored as the frames themselves', async () => {
    const m = createModel(fixturePath(`${AE}.json`), fixturePath(`${AE}.weights.safetensors`));
    // 20 frames of two shapes-world videos (not a whole number of chunks: the tail is padded and cropped back)
    const rng = new Rng(3);
    const a = renderShapes(randomShapesVideo(rng));
    const b = renderShapes(randomShapesVideo(rng));
    const N = 128 * 128 * 3;
    const clip = new Uint8Array(20 * N);
    clip.set(a.subarray(0, 12 * N));
    clip.set(b.subarray(0, 8 * N), 12 * N);
    const pushes = [5, 7, 1, 7];
    const source = {
      async *[Symbol.asyncIterator]() {
        let at = 0;
        for (const n of pushes) {
          yield clip.slice(at * N, (at + n) * N);
          at += n;
        }
      },
    };
    const out: Uint8Array[] = [];
    let progress = 0;
    const r = await reconstructFrames(m, source, { height: 128, width: 128 }, (f) => void out.push(f), { onProgress: (n) => (progress = n) });
    assert.equal(r.frames, 20);
    assert.equal(progress, 20);
    const got = new Uint8Array(out.reduce((s, f) => s + f.length, 0));
    out.reduce((o, f) => (got.set(f, o), o + f.length), 0);
    assert.equal(got.length, 20 * N, 'as many frames out as in');
    // the whole clip at once
    const x = framesToTensor(clip, 128, 128);
    const enc = noGrad(() => encodeVideo(m, x));
    const whole = tensorToFrames(noGrad(() => decodeVideo(m, enc.latent, { numFrames: enc.numFrames, height: 128, width: 128 })));
    let worst = 0;
    for (let i = 0; i < whole.length; i++) worst = Math.max(worst, Math.abs(whole[i]! - got[i]!));
    // float32 sums in another order can move a value across a rounding boundary: one level at most
    assert.ok(worst <= 1, `streamed frames differ from the whole-clip pass by ${worst} levels`);
    for (let t = 0; t < 20; t++) {
      const o = clip.subarray(t * N, (t + 1) * N);
      const rec = got.subarray(t * N, (t + 1) * N);
      assert.equal(r.metrics.psnr.perFrame[t], psnrFrame(o, rec), `psnr ${t}`);
      assert.equal(r.metrics.ssim.perFrame[t], ssimFrame(o, rec, 128, 128), `ssim ${t}`);
    }
  });

  it('refuses bytes that are not whole frames, and an empty source', async () => {
    const m = createModel(fixturePath(`${AE}.json`), fixturePath(`${AE}.weights.safetensors`));
    const one = (x: Uint8Array) => ({
      async *[Symbol.asyncIterator]() {
        if (x.length) yield x;
      },
    });
    await assert.rejects(reconstructFrames(m, one(new Uint8Array(100)), { height: 128, width: 128 }, () => {}), /100 bytes are not whole 128x128 RGB frames/);
    await assert.rejects(reconstructFrames(m, one(new Uint8Array(0)), { height: 128, width: 128 }, () => {}), /no frames to reconstruct/);
  });
});
