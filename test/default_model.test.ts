/**
 * The default model shipped in assets/default-ae: it loads strictly, fits the package budget, reconstructs a
 * held-out shared clip better than the equal-budget bicubic baseline, and is what the CLI uses when --model /
 * --weights are omitted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultModelPaths, loadDefaultModel } from '../src/models/dcaev/default_model.js';
import { compressionFactors, chunkFrames } from '../src/models/dcaev/config.js';
import { decodeVideo, encodeVideo } from '../src/models/dcaev/autoencoder.js';
import { readAllFrames } from '../src/io/video.js';
import { tensorToUint8Frames, videoMetrics } from '../src/metrics/metrics.js';
import { equalBudgetBaseline, latentBudget } from '../src/metrics/baseline.js';
import { heldOutIndices, listMedia } from '../src/train/data.js';
import { main } from '../src/cli/main.js';
import { sharedDir } from './helpers.js';

const clips = join(sharedDir, 'data', 'clips128');
const noClips = existsSync(clips) ? false : `shared clips missing: ${clips} (clone the shared folder beside the repository to run this test)`;

test('default model: present, <= 25 MB, loads strictly as chunk-causal f32t4c32', () => {
  const p = defaultModelPaths();
  assert.ok(statSync(p.weights).size <= 25 * 1024 * 1024, `${p.weights} is ${statSync(p.weights).size} bytes`);
  const m = loadDefaultModel();
  assert.deepEqual(compressionFactors(m.config), { spatial: 32, temporal: 4 });
  assert.equal(m.config.latentChannels, 32);
  assert.equal(chunkFrames(m.config), 8);
});

test('default model beats the equal-budget bicubic baseline on a held-out shared clip', { skip: noClips }, async () => {
  const { videos } = listMedia(clips);
  const held = heldOutIndices(videos.length, 3).map((i) => videos[i]!);
  const name = held[0]!;
  const x = await readAllFrames(join(clips, name), { maxFrames: 64 });
  const m = loadDefaultModel();
  const e = encodeVideo(m, x);
  const y = decodeVideo(m, e.latent, { numFrames: e.numFrames });
  const ours = videoMetrics(x, y);
  const [, , T, H, W] = x.shape as number[];
  const budget = latentBudget(T!, H!, W!, 32, 4, 32, 8);
  assert.equal(budget, e.latent.size);
  const base = equalBudgetBaseline(tensorToUint8Frames(x)[0]!, H!, W!, budget, { temporalFactors: [1, 2, 4, 8, 16] });
  assert.ok(
    ours.psnr.mean > base.best.psnr + 0.5,
    `${name}: default model ${ours.psnr.mean.toFixed(2)} dB vs bicubic baseline ${base.best.psnr.toFixed(2)} dB (tf ${base.best.tf}, ${base.best.h}x${base.best.w})`,
  );
  assert.ok(ours.ssim.mean > base.best.ssim, `SSIM ${ours.ssim.mean} vs ${base.best.ssim}`);
});

test('dcvg reconstruct without --model/--weights uses the default model', { skip: noClips }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-default-'));
  const outs: string[] = [];
  try {
    const code = await main(['reconstruct', join(clips, '01.mp4'), '-o', join(dir, 'out.mp4'), '--frames', '16', '--json']);
    assert.equal(code, 0);
    assert.ok(existsSync(join(dir, 'out.mp4')));
    void outs;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
