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
import { reconstructFrames, reconstructVideo } from '../src/pipelines/reconstruct.js';
import { openVideoWriter } from '../src/io/video.js';
import { MetricsAccumulator } from '../src/metrics/metrics.js';
import { geometry } from '../src/models/dcaev/autoencoder.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/** n frames of shapes-world video (128x128), several clips back to back. */
function shapesFrames(n: number, seed: number): Uint8Array {
  const N = 128 * 128 * 3;
  const rng = new Rng(seed);
  const out = new Uint8Array(n * N);
  for (let at = 0; at < n; ) {
    const v = renderShapes(randomShapesVideo(rng));
    const k = Math.min(n - at, v.length / N);
    out.set(v.subarray(0, k * N), at * N);
    at += k;
  }
  return out;
}

function pushSource(clip: Uint8Array, N: number, pushes: number[], onRead?: (frames: number) => void) {
  return {
    async *[Symbol.asyncIterator]() {
      let at = 0;
      for (const n of pushes) {
        if (at >= clip.length / N) return;
        const k = Math.min(n, clip.length / N - at);
        onRead?.(at + k);
        yield clip.slice(at * N, (at + k) * N);
        at += k;
      }
    },
  };
}

const ffmpegOk = spawnSync('ffmpeg', ['-version']).status === 0;

describe('reconstruct overlapped with the model', { skip: skipUnlessFixture(`${AE}.json`) }, () => {
  it('overlapped (any depth) and sequential runs give the same frames, in order, and the same metrics as the TS reference', async () => {
    const m = createModel(fixturePath(`${AE}.json`), fixturePath(`${AE}.weights.safetensors`));
    const N = 128 * 128 * 3;
    const clip = shapesFrames(27, 5);
    const pushes = [8, 3, 9, 8, 8];
    const runs: { frames: Uint8Array; metrics: unknown }[] = [];
    for (const o of [{ sequential: true }, { inFlight: 1 }, { inFlight: 2 }, { inFlight: 5 }]) {
      const parts: Uint8Array[] = [];
      // a sink that takes its time (resolves a few event-loop turns later), so chunks really are outstanding
      const sink = (f: Uint8Array) => new Promise<void>((res) => setTimeout(() => (parts.push(f.slice()), res()), 5));
      const r = await reconstructFrames(m, pushSource(clip, N, pushes), { height: 128, width: 128 }, sink, o);
      const got = new Uint8Array(parts.reduce((s, f) => s + f.length, 0));
      parts.reduce((at, f) => (got.set(f, at), at + f.length), 0);
      assert.equal(got.length, 27 * N);
      runs.push({ frames: got, metrics: r.metrics });
    }
    for (const r of runs.slice(1)) {
      assert.ok(Buffer.from(r.frames).equals(Buffer.from(runs[0]!.frames)), 'frames differ from the sequential run');
      assert.deepEqual(r.metrics, runs[0]!.metrics);
    }
    // and the metrics are what the TypeScript reference makes of those frames
    const ref = new MetricsAccumulator({ height: 128, width: 128, native: false });
    for (let t = 0; t < 27; t++) ref.add(clip.subarray(t * N, (t + 1) * N), runs[0]!.frames.subarray(t * N, (t + 1) * N));
    assert.deepEqual(runs[0]!.metrics, ref.result());
  });

  it('memory stays flat with the length: the reader runs at most inFlight + 2 chunks ahead of a slow sink', async () => {
    const m = createModel(fixturePath(`${AE}.json`), fixturePath(`${AE}.weights.safetensors`));
    const chunk = geometry(m).chunk!;
    const N = 128 * 128 * 3;
    for (const depth of [1, 3]) {
      const lags: number[] = [];
      for (const chunks of [4, 9]) {
        const clip = shapesFrames(chunks * chunk, depth + chunks);
        let read = 0;
        let sunk = 0;
        let maxLag = 0;
        // each sink call completes only after several event-loop turns: without the bound the model would run ahead
        const sink = (f: Uint8Array) =>
          new Promise<void>((res) =>
            setTimeout(() => {
              sunk += f.length / N;
              res();
            }, 20),
          );
        await reconstructFrames(m, pushSource(clip, N, Array(chunks).fill(chunk), (n) => {
          read = n;
          maxLag = Math.max(maxLag, read - sunk);
        }), { height: 128, width: 128 }, sink, { inFlight: depth });
        assert.equal(sunk, chunks * chunk);
        lags.push(maxLag);
      }
      // At a read, at most `depth` chunks are being scored / written, one is decoded but not yet handed over (the
      // decoder lags the encoder by up to a chunk) and one is being read: (depth + 2) chunks of frames in memory.
      for (const lag of lags) assert.ok(lag <= (depth + 2) * chunk, `depth ${depth}: reader ran ${lag} frames ahead of the sink`);
      assert.equal(lags[0], lags[1], `depth ${depth}: the lag must not grow with the length (${lags})`);
    }
  });

  it('reconstructVideo writes byte-identical files overlapped and sequential (y4m and mp4)', { skip: ffmpegOk ? false : 'ffmpeg not installed' }, async () => {
    const m = createModel(fixturePath(`${AE}.json`), fixturePath(`${AE}.weights.safetensors`));
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-pipe-'));
    try {
      const input = join(dir, 'in.y4m');
      const w = await openVideoWriter(input, { width: 128, height: 128, fps: 16 });
      await w.write(shapesFrames(21, 9));
      await w.close();
      for (const ext of ['y4m', 'mp4']) {
        const a = await reconstructVideo(m, input, join(dir, `seq.${ext}`), { sequential: true });
        const b = await reconstructVideo(m, input, join(dir, `ovl.${ext}`), {});
        assert.equal(a.frames, 21);
        assert.deepEqual(b.metrics, a.metrics);
        assert.ok(readFileSync(join(dir, `seq.${ext}`)).equals(readFileSync(join(dir, `ovl.${ext}`))), `${ext} files differ`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

