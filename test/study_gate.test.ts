/**
 * The adapt study's autoencoder gate (src/study/ae_gate.ts): it must pass a perfect reconstruction, fail one that
 * keeps the background and loses the object (what the study's first autoencoders did, at ~20 dB whole-frame PSNR),
 * and measure PSNR over the object's pixels.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cmdData } from '../src/cli/shapes_cmds.js';
import { SHAPES_BACKGROUNDS } from '../src/metrics/shapes_world.js';
import type { VideoAutoencoder } from '../src/pipelines/autoencoder.js';
import { CORNER, OBJECT_THRESHOLD, STRAY_MARGIN, gateAutoencoder, objectErrors, strayPixels } from '../src/study/ae_gate.js';
import { readShapesData } from '../src/study/world.js';
import { Tensor, type Tensor as T } from '../src/tensor/tensor.js';
import { cmdStudyGate } from '../src/cli/study_gate_cmds.js';
import { loadAutoencoder } from '../src/pipelines/autoencoder.js';
import { aeConfigJson, resolveAEConfig, trainableAE } from '../src/train/ae_models.js';
import { initForTraining } from '../src/train/init.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { TRAIN_DEFAULTS, trainAE, writeRawWeights } from '../src/train/ae_trainer.js';
import { WAN_VAE_WEIGHTS_FORMAT, wanVaeStateDict } from '../src/models/wan_vae/run.js';
import type { WanVAE } from '../src/models/wan_vae/model.js';

const tmp = mkdtempSync(join(tmpdir(), 'dcvg-gate-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A stand-in autoencoder whose "reconstruction" is f(input); only what the gate calls. */
function fakeAE(f: (x: T) => T): VideoAutoencoder {
  return {
    encodeClip: (x: T) => ({ latent: f(x), numFrames: x.shape[2]!, height: x.shape[3]!, width: x.shape[4]! }),
    decodeClip: (z: T) => z,
  } as unknown as VideoAutoencoder;
}

/** Every pixel set to the background colour (in [-1, 1]): an autoencoder that lost the object. */
function backgroundOnly(bg: readonly number[]) {
  return (x: T): T => {
    const [, C, Tn, H, W] = x.shape as number[];
    const d = new Float32Array(x.size);
    const plane = Tn! * H! * W!;
    for (let c = 0; c < C!; c++) d.fill(bg[c]! / 127.5 - 1, c * plane, (c + 1) * plane);
    return new Tensor(d, x.shape);
  };
}

describe('autoencoder gate', () => {
  it('objectErrors: object pixels are those off the background by more than the threshold', () => {
    const bg = [16, 16, 16];
    // pixel 0: background; pixel 1: exactly at the threshold (background); pixel 2: one above (object)
    const orig = new Uint8Array([16, 16, 16, 16 + OBJECT_THRESHOLD, 16, 16, 16, 16 + OBJECT_THRESHOLD + 1, 16]);
    const rec = new Uint8Array([18, 16, 16, 16, 16, 16, 16, 16, 16]);
    const e = objectErrors(orig, rec, bg);
    assert.equal(e.n, 9);
    assert.equal(e.objN, 3);
    assert.equal(e.objSe, (OBJECT_THRESHOLD + 1) ** 2);
    assert.equal(e.se, 4 + OBJECT_THRESHOLD ** 2 + (OBJECT_THRESHOLD + 1) ** 2);
    assert.throws(() => objectErrors(orig, rec.subarray(0, 6), bg), /differ/);
  });

  it('strayPixels: mask pixels beyond the object box and its margin, apart at the corners', () => {
    const S = 32;
    const bg = [16, 16, 16];
    const frame = () => {
      const f = new Uint8Array(S * S * 3);
      for (let i = 0; i < f.length; i += 3) f.set(bg, i);
      return f;
    };
    const put = (f: Uint8Array, x: number, y: number, v: number) => f.set([v, bg[1]!, bg[2]!], 3 * (y * S + x));
    const orig = frame();
    for (let y = 12; y < 20; y++) for (let x = 12; x < 20; x++) put(orig, x, y, 200); // the object: box x, y in [12, 19]
    const rec = orig.slice();
    assert.deepEqual(strayPixels(orig, rec, bg, S), { strays: 0, cornerStrays: 0, cornerDeviation: 0 });
    put(rec, 19 + STRAY_MARGIN, 15, 200); // at the margin: blur of the edge, not a stray
    put(rec, 15, 12 - STRAY_MARGIN - 1, 16 + OBJECT_THRESHOLD + 1); // one beyond it, off by one level more than the threshold
    put(rec, 2, 20, 16 + OBJECT_THRESHOLD); // far, but not in the mask
    put(rec, 0, 0, 16 + OBJECT_THRESHOLD + 5); // a corner
    put(rec, S - CORNER, S - CORNER, 16 + 70); // the last pixel of the bottom-right corner block...
    put(rec, S - CORNER - 1, S - 1, 16 + 80); // ...and one beside it: a stray, not at a corner
    assert.deepEqual(strayPixels(orig, rec, bg, S), { strays: 4, cornerStrays: 2, cornerDeviation: 70 });
    assert.throws(() => strayPixels(orig, rec, bg, S - 1), /not 31x31 RGB/);
  });

  it('passes a perfect reconstruction and fails a background-only one', async () => {
    const dir = join(tmp, 'held');
    assert.equal(await cmdData(['shapes', '--out', dir, '--count', '3', '--seed', '5', '--split', 'held-out'], () => {}), 0);
    const videos = readShapesData(dir);
    const perfect = await gateAutoencoder(fakeAE((x) => x), dir, videos);
    assert.equal(perfect.clips.length, 3);
    assert.equal(perfect.accuracy, 100);
    assert.equal(perfect.allCorrect, 100);
    assert.equal(perfect.objectPsnr, Infinity);
    assert.deepEqual([perfect.strays, perfect.cornerStrays, perfect.cornerDeviation], [0, 0, 0]);
    for (const c of perfect.clips) assert.deepEqual(c.wrong, []);

    // one background colour per call: the videos' own
    const lost = [];
    for (const v of videos) lost.push(await gateAutoencoder(fakeAE(backgroundOnly(SHAPES_BACKGROUNDS[v.attrs.background])), dir, [v]));
    for (const r of lost) {
      // only the background is read right: 1 of 5 attributes
      assert.equal(r.accuracy, 20);
      assert.deepEqual(r.clips[0]!.wrong, ['color', 'shape', 'size', 'direction']);
      // the object's pixels are far off, the whole frame much less so (the object is a few percent of it)
      assert.ok(r.objectPsnr < 15, `object PSNR ${r.objectPsnr}`);
      assert.ok(r.psnr > r.objectPsnr + 10, `whole-frame ${r.psnr} against object ${r.objectPsnr}`);
    }
    await assert.rejects(gateAutoencoder(fakeAE((x) => x), dir, []), /no videos/);
  });

  it('dcvg study gate: the gate of a weights file on a data folder, --min sets the exit code, --json; bad arguments refused', async () => {
    const dir = join(tmp, 'held');
    if (!readShapesData(dir).length) throw new Error('the data folder of the test before is missing');
    // a train-ae-style weights file (it carries its config): the study's Wan VAE, initialised, untrained
    const net = trainableAE(resolveAEConfig('wan-vae:wan-vae-shapes'));
    initForTraining(net.module, 3);
    const w = join(tmp, 'model.safetensors');
    saveSafetensors(w, wanVaeStateDict(net.module as WanVAE, 'original'), { metadata: { config: JSON.stringify(aeConfigJson(net.cfg)), format: WAN_VAE_WEIGHTS_FORMAT } });
    const want = await gateAutoencoder(loadAutoencoder({ weights: w }, 'test'), dir, readShapesData(dir).slice(0, 2));

    let text = '';
    assert.equal(await cmdStudyGate(['--weights', w, '--data', dir, '--clips', '2'], (s) => void (text += s)), 0);
    assert.equal(text.trim().split('\n').length, 3, text); // one line per clip and the summary
    assert.match(text, new RegExp(`2 reconstructions: ${want.accuracy.toFixed(1)}% attribute accuracy`));

    let json = '';
    // --min at the accuracy passes (>=); above it exits 1 and says so
    assert.equal(await cmdStudyGate(['--weights', w, '--data', dir, '--clips', '2', '--min', String(want.accuracy), '--json'], (s) => void (json += s)), 0);
    const r = JSON.parse(json) as typeof want & { passed: boolean; minAccuracy: number };
    assert.equal(r.passed, true);
    assert.equal(r.clips.length, 2);
    assert.equal(r.accuracy, want.accuracy);
    assert.deepEqual(r.clips.map((c) => c.wrong), want.clips.map((c) => c.wrong));
    if (want.accuracy < 100) {
      let low = '';
      assert.equal(await cmdStudyGate(['--weights', w, '--data', dir, '--clips', '2', '--min', String(Math.min(100, want.accuracy + 1))], (s) => void (low += s)), 1);
      assert.match(low, /below --min/);
    }
    // --clips beyond the folder: all of it
    let three = '';
    assert.equal(await cmdStudyGate(['--weights', w, '--data', dir, '--clips', '50', '--json'], (s) => void (three += s)), 0);
    assert.equal((JSON.parse(three) as typeof want).clips.length, 3);

    const none = () => {};
    await assert.rejects(cmdStudyGate(['--data', dir], none), /needs --weights/);
    await assert.rejects(cmdStudyGate(['--weights', w], none), /needs --data/);
    await assert.rejects(cmdStudyGate(['--weights', join(tmp, 'none.safetensors'), '--data', dir], none), /--weights .*none\.safetensors not found/);
    await assert.rejects(cmdStudyGate(['--weights', w, '--data', dir, '--clips', '0'], none), /--clips must be a positive integer/);
    await assert.rejects(cmdStudyGate(['--weights', w, '--data', dir, '--min', '101'], none), /--min must be a percentage/);
    await assert.rejects(cmdStudyGate(['--weights', w, '--data', tmp], none), /holds no/);
  });

  it("dcvg study gate on a train-ae checkpoint reads its trained weights, not the EMA's", async () => {
    const dir = join(tmp, 'held');
    const run = join(tmp, 'run');
    // two steps of the study's Wan VAE on the three videos: the EMA (decay 0.999) is still almost the initialisation
    await trainAE({ ...TRAIN_DEFAULTS, model: 'wan-vae:wan-vae-shapes', data: dir, out: run, steps: 2, batch: 1, frames: 1, crop: 64, holdout: 0, ckptEvery: 2, evalEvery: 2, lr: 1e-3, warmup: 0 });
    const raw = join(tmp, 'raw.safetensors');
    writeRawWeights(run, raw);
    const f = SafetensorsFile.open(raw);
    assert.equal(f.metadata.step, '2');
    f.close();
    const videos = readShapesData(dir).slice(0, 1);
    const want = await gateAutoencoder(loadAutoencoder({ weights: raw }, 'test'), dir, videos);
    const ema = await gateAutoencoder(loadAutoencoder({ weights: join(run, 'model.safetensors') }, 'test'), dir, videos);
    assert.notEqual(want.psnr, ema.psnr, 'the trained weights differ from the EMA');
    let json = '';
    assert.equal(await cmdStudyGate(['--weights', join(run, 'checkpoint.safetensors'), '--data', dir, '--clips', '1', '--json'], (s) => void (json += s)), 0);
    const r = JSON.parse(json) as typeof want;
    assert.equal(r.psnr, want.psnr);
    assert.equal(r.objectPsnr, want.objectPsnr);
    assert.equal(r.strays, want.strays);
  });
});
