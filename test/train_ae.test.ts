/**
 * The DC-AE-V trainer: loss falls on one clip, exact resume after a kill, EMA arithmetic, LR schedule, data
 * sampling, and the CLI's refusals. Tiny models on tiny synthetic clips (y4m: lossless), so this runs in seconds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, mkdirSync, existsSync, writeFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeVideo } from '../src/io/video.js';
import { loadSafetensors } from '../src/io/safetensors.js';
import { configToReference, topologyConfig } from '../src/models/dcaev/config.js';
import { createModel } from '../src/models/dcaev/autoencoder.js';
import { Rng } from '../src/tensor/random.js';
import { Tensor, parameter } from '../src/tensor/tensor.js';
import { Ema } from '../src/train/ema.js';
import { lrAt } from '../src/train/schedule.js';
import { heldOutIndices, loadClipSet, sampleBatch, useClipCache } from '../src/train/data.js';
import { readLog, trainAE, TRAIN_DEFAULTS, type TrainAEOptions } from '../src/train/ae_trainer.js';
import { main } from '../src/cli/main.js';
import { DCAEV } from '../src/models/dcaev/model.js';
import { initForTraining } from '../src/train/init.js';
import { killAndResumeAE } from './helpers.js';

/** f4t4 chunk-causal, chunk 4: 4 stages, widths 4..8. */
const tinyConfig = () => topologyConfig({ name: 'tiny', widths: [4, 8, 8, 8], depths: [0, 1, 1, 1], latentChannels: 4, chunk: 4 });

/** A smooth moving pattern, H x W x 3 uint8 frames. */
function movingClip(frames: number, H: number, W: number, phase: number): Uint8Array {
  const out = new Uint8Array(frames * H * W * 3);
  for (let t = 0; t < frames; t++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const o = ((t * H + y) * W + x) * 3;
        out[o] = 128 + 100 * Math.sin((x + t + phase) / 5);
        out[o + 1] = 128 + 100 * Math.cos((y - t + 2 * phase) / 6);
        out[o + 2] = 128 + 60 * Math.sin((x + y) / 7 + phase);
      }
  return out;
}

async function makeData(n: number, frames = 16, size = 16): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-train-data-'));
  for (let i = 0; i < n; i++) await writeVideo(join(dir, `c${i}.y4m`), movingClip(frames, size, size, i * 3), { width: size, height: size, fps: 10 });
  return dir;
}

/** Runs `body` with a synthetic data folder (makeData's arguments) and an empty output folder, both removed after. */
async function withDataAndOut(made: [number, number?, number?], prefix: string, body: (data: string, out: string) => Promise<void>): Promise<void> {
  const data = await makeData(...made);
  const out = mkdtempSync(join(tmpdir(), prefix));
  try {
    await body(data, out);
  } finally {
    rmSync(data, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  }
}

function tinyOptions(data: string, out: string, over: Partial<TrainAEOptions> = {}): TrainAEOptions {
  return { ...TRAIN_DEFAULTS, model: tinyConfig(), data, out, steps: 12, frames: 8, crop: 16, holdout: 1, ckptEvery: 4, evalEvery: 6, warmup: 2, lr: 3e-3, ...over };
}

test('lr schedule: linear warmup then cosine to the floor', () => {
  const s = { lr: 1, warmup: 10, total: 110, minRatio: 0.1 };
  assert.equal(lrAt(1, s), 0.1);
  assert.equal(lrAt(10, s), 1);
  assert.ok(Math.abs(lrAt(60, s) - 0.55) < 1e-12);
  assert.ok(Math.abs(lrAt(110, s) - 0.1) < 1e-12);
  assert.ok(lrAt(30, s) > lrAt(31, s));
});

test('EMA: shadow = d*shadow + (1-d)*param with the warmup-capped decay, swapped in and out exactly', () => {
  const p = parameter(new Tensor(new Float32Array([1, 2, 3]), [3]));
  const ema = new Ema([p], 0.9);
  const ref = [1, 2, 3];
  const rng = new Rng(5);
  for (let k = 0; k < 30; k++) {
    const d = Math.min(0.9, (1 + k) / (10 + k));
    assert.equal(ema.currentDecay(), d);
    const data = p.readSync();
    for (let i = 0; i < 3; i++) data[i] = rng.normal();
    p.write(data);
    ema.update();
    for (let i = 0; i < 3; i++) ref[i] = Math.fround(Math.fround(d * ref[i]!) + Math.fround((1 - d) * data[i]!));
  }
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(ema.shadow[0]![i]! - ref[i]!) < 1e-6, `ema[${i}] ${ema.shadow[0]![i]} vs ${ref[i]}`);
  const live = Float32Array.from(p.readSync());
  const seen = ema.withWeights(() => Float32Array.from(p.readSync()));
  assert.deepEqual([...seen], [...ema.shadow[0]!]);
  assert.deepEqual([...p.readSync()], [...live]);
  assert.throws(() => new Ema([p], 1), /decay/);
});

test('held-out split and sampling: deterministic, whole windows, crops inside the frame', async () => {
  assert.deepEqual(heldOutIndices(21, 3), [3, 10, 17]);
  assert.deepEqual(heldOutIndices(5, 0), []);
  assert.throws(() => heldOutIndices(3, 3), /none of 3/);
  const data = await makeData(3, 12, 24);
  try {
    const set = await loadClipSet(data, { holdout: 1 });
    assert.deepEqual(set.heldOut.map((c) => c.name), ['c1.y4m']);
    const o = { batch: 2, frames: 8, crop: 16, stillProb: 0.5 };
    const a = sampleBatch(set.train, o, new Rng(1));
    const b = sampleBatch(set.train, o, new Rng(1));
    assert.deepEqual(a.info, b.info);
    assert.deepEqual([...a.x.readSync()], [...b.x.readSync()]);
    assert.deepEqual(a.x.shape, [2, 3, 8, 16, 16]);
    for (const i of a.info) {
      assert.ok(i.y + 16 <= 24 && i.x + 16 <= 24);
      if (!i.still) assert.ok(i.start + 8 <= 12);
    }
    // a still sample repeats one frame
    const r = new Rng(2);
    for (let k = 0; k < 20; k++) {
      const s = sampleBatch(set.train, { ...o, batch: 1, stillProb: 1 }, r);
      const d = s.x.readSync();
      const plane = 16 * 16;
      for (let t = 1; t < 8; t++) assert.equal(d[t * plane + 37], d[37]);
    }
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});

test('clips load several at a time, in name order, the same bytes as one at a time; a bad file fails the load', async () => {
  const data = await makeData(7, 8, 16);
  try {
    const seq = await loadClipSet(data, { holdout: 2, concurrency: 1 });
    const seen: string[] = [];
    const par = await loadClipSet(data, { holdout: 2, concurrency: 4, onClip: (d, t, n) => seen.push(`${d}/${t} ${n}`) });
    assert.equal(seen.length, 7);
    assert.equal(seen[6]!.split(' ')[0], '7/7');
    for (const k of ['train', 'heldOut'] as const) {
      assert.deepEqual(par[k].map((c) => c.name), seq[k].map((c) => c.name), k);
      for (const [i, c] of par[k].entries()) assert.ok(Buffer.from(c.data).equals(Buffer.from(seq[k][i]!.data)), `${k} ${c.name}`);
    }
    assert.deepEqual(par.heldOut.map((c) => c.name), heldOutIndices(7, 2).map((i) => `c${i}.y4m`));
    writeFileSync(join(data, 'c3.y4m'), 'not a video');
    await assert.rejects(loadClipSet(data, { holdout: 0, concurrency: 4 }), /c3\.y4m/);
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});

test('clip cache (study adapt): a folder is decoded once while its files and the options stay the same', async () => {
  const data = await makeData(3, 8, 16);
  try {
    // off (the default): every load decodes anew
    const a = await loadClipSet(data, { holdout: 0 });
    assert.notEqual((await loadClipSet(data, { holdout: 0 })).train[0], a.train[0]);
    useClipCache(true);
    const b = await loadClipSet(data, { holdout: 1 });
    const c = await loadClipSet(data, { holdout: 1 });
    assert.deepEqual(c.train.map((x) => x.name), b.train.map((x) => x.name));
    assert.ok(c.train.every((x, i) => x === b.train[i]) && c.heldOut[0] === b.heldOut[0], 'the same clips, not decoded again');
    assert.notEqual(c.train, b.train, 'fresh arrays: a caller may reorder its own');
    // other options, or a changed file, decode anew
    const d = await loadClipSet(data, { holdout: 0 });
    assert.notEqual(d.train[0], b.train[0]);
    assert.equal(d.train.length, 3);
    utimesSync(join(data, 'c0.y4m'), new Date(), new Date(Date.now() + 5000));
    const e = await loadClipSet(data, { holdout: 0 });
    assert.notEqual(e.train[1], d.train[1], 'a touched file invalidates the entry');
    assert.ok(Buffer.from(e.train[1]!.data).equals(Buffer.from(d.train[1]!.data)));
    useClipCache(false);
    assert.notEqual((await loadClipSet(data, { holdout: 0 })).train[0], e.train[0]);
  } finally {
    useClipCache(false);
    rmSync(data, { recursive: true, force: true });
  }
});

test('colour augmentation: pixels are the drawn channel order and saturation of the source; off draws nothing', async () => {
  const data = await makeData(2, 12, 24);
  try {
    const set = await loadClipSet(data, { holdout: 0 });
    const o = { batch: 1, frames: 8, crop: 16, stillProb: 0 };
    // off (0 or absent): the same samples and the same RNG state afterwards as before the option existed
    const r0 = new Rng(9),
      r1 = new Rng(9);
    assert.deepEqual([...sampleBatch(set.train, { ...o, colorAug: 0 }, r0).x.readSync()], [...sampleBatch(set.train, o, r1).x.readSync()]);
    assert.equal(r0.uniform(), r1.uniform());
    const perms = new Set<string>();
    const r = new Rng(3);
    for (let k = 0; k < 40; k++) {
      const s = sampleBatch(set.train, { ...o, colorAug: 1 }, r);
      const i = s.info[0]!;
      assert.ok(i.color, 'colorAug 1 changes every sample');
      const { perm, sat } = i.color;
      assert.ok(sat >= 0.5 && sat <= 2, `saturation ${sat}`);
      assert.deepEqual([...perm].sort(), [0, 1, 2]);
      perms.add(perm.join(''));
      const clip = set.train.find((c) => c.name === i.clip)!;
      const d = s.x.readSync();
      const plane = 8 * 16 * 16;
      for (const [t, yy, xx] of [[0, 0, 0], [3, 5, 9], [7, 15, 15]] as const) {
        const sx = i.flip ? 15 - xx : xx;
        const src = (((i.start + t) * clip.height + i.y + yy) * clip.width + i.x + sx) * 3;
        const rgb = perm.map((c) => clip.data[src + c]!);
        const luma = 0.299 * rgb[0]! + 0.587 * rgb[1]! + 0.114 * rgb[2]!;
        for (let c = 0; c < 3; c++) {
          const want = Math.min(255, Math.max(0, luma + sat * (rgb[c]! - luma))) / 127.5 - 1;
          const got = d[c * plane + (t * 16 + yy) * 16 + xx]!;
          assert.ok(Math.abs(got - want) < 1e-6, `sample ${k} channel ${c} at ${t},${yy},${xx}: ${got} vs ${want}`);
        }
      }
    }
    assert.equal(perms.size, 6, `all six channel orders drawn in 40 samples (got ${[...perms].join(' ')})`);
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});

test('trainer smoke: the loss falls on one clip; EMA weights are what model.safetensors holds', async () => {
  await withDataAndOut([1, 8, 16], 'dcvg-train-run-', async (data, out) => {
    const r = await trainAE(tinyOptions(data, join(out, 'run'), { steps: 60, holdout: 0, lr: 1e-2, warmup: 5, ssimWeight: 0.2, ckptEvery: 60, evalEvery: 60 }));
    assert.equal(r.steps, 60);
    const { steps } = readLog(join(out, 'run', 'train.jsonl'));
    assert.equal(steps.length, 60);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    const first = mean(steps.slice(0, 5).map((s) => s.loss));
    const last = mean(steps.slice(-5).map((s) => s.loss));
    assert.ok(last < 0.6 * first, `loss did not fall enough: first ${first}, last ${last}`);
    for (const f of ['checkpoint.safetensors', 'model.safetensors', 'config.json', 'loss.png']) assert.ok(existsSync(join(out, 'run', f)), f);
    const ck = loadSafetensors(join(out, 'run', 'checkpoint.safetensors')).tensors;
    const w = loadSafetensors(join(out, 'run', 'model.safetensors')).tensors;
    for (const [k, t] of w) assert.deepEqual([...t.readSync()], [...ck.get(`ema.${k}`)!.readSync()], k);
    // the EMA differs from the live weights (it averages), and the exported weights load by the config
    const k0 = [...w.keys()][0]!;
    assert.notDeepEqual([...w.get(k0)!.readSync()], [...ck.get(`model.${k0}`)!.readSync()]);
    const m = createModel(join(out, 'run', 'config.json'), join(out, 'run', 'model.safetensors'));
    assert.equal(m.config.latentChannels, 4);
  });
});

test('--loss mse: the reconstruction term is the mean squared error (logged as mse), not L1', async () => {
  await withDataAndOut([1, 8, 16], 'dcvg-train-mse-', async (data, out) => {
    // one step from the same initialisation and batch: only the reconstruction term differs
    const o = { steps: 1, holdout: 0, ssimWeight: 0, ckptEvery: 1, evalEvery: 1 };
    await trainAE(tinyOptions(data, join(out, 'l1'), o));
    await trainAE(tinyOptions(data, join(out, 'mse'), { ...o, loss: 'mse' }));
    const a = readLog(join(out, 'l1', 'train.jsonl')).steps[0]!;
    const b = readLog(join(out, 'mse', 'train.jsonl')).steps[0]!;
    assert.equal(a.loss, a.l1);
    assert.equal(b.loss, b.mse);
    assert.equal(b.l1, undefined);
    // mean(e^2) >= mean(|e|)^2 (Jensen), and for |e| < 1 everywhere the two differ
    assert.ok(b.mse! >= a.l1! * a.l1! * (1 - 1e-6), `mse ${b.mse} vs l1^2 ${a.l1! * a.l1!}`);
    assert.ok(b.mse! < a.l1!, `mse ${b.mse} should be below l1 ${a.l1} for errors under 1`);
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'bad'), { ...o, loss: 'huber' as 'mse' })), /--loss must be l1 or mse/);
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'bad'), { ...o, initScale: 'xavier' as 'lecun' })), /--init-scale must be lecun or torch, got "xavier"/);
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'bad'), { ...o, residualInit: 'zero' as 'default' })), /--residual-init must be shortcut or default, got "zero"/);
    assert.ok(!existsSync(join(out, 'bad')), 'refused before the run folder is made');
  });
});

test('--fg-weight: the reconstruction term weighs pixels off the median colour more; kept on --resume', async () => {
  await withDataAndOut([1, 8, 16], 'dcvg-train-fg-', async (data, out) => {
    const o = { steps: 1, holdout: 0, ssimWeight: 0, ckptEvery: 1, evalEvery: 1, loss: 'mse' as const };
    await trainAE(tinyOptions(data, join(out, 'plain'), o));
    await trainAE(tinyOptions(data, join(out, 'fg'), { ...o, fgWeight: 20 }));
    const a = readLog(join(out, 'plain', 'train.jsonl')).steps[0]!;
    const b = readLog(join(out, 'fg', 'train.jsonl')).steps[0]!;
    // the same batch and initialisation: only the weights differ, so the term differs
    assert.ok(Number.isFinite(b.mse!) && b.mse! > 0);
    assert.notEqual(b.mse, a.mse);
    // --fg-weight 0 is the plain loss, bit for bit
    await trainAE(tinyOptions(data, join(out, 'zero'), { ...o, fgWeight: 0 }));
    assert.equal(readLog(join(out, 'zero', 'train.jsonl')).steps[0]!.mse, a.mse);
    // the option is the run's: a resume keeps it
    await trainAE({ out: join(out, 'fg'), resume: true, steps: 2 } as TrainAEOptions & { resume: boolean });
    const ck = JSON.parse(String(loadSafetensors(join(out, 'fg', 'checkpoint.safetensors')).metadata.dcvg_train)) as { step: number; options: { fgWeight?: number } };
    assert.equal(ck.step, 2);
    assert.equal(ck.options.fgWeight, 20);
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'bad'), { ...o, fgWeight: -1 })), /--fg-weight must be/);
    // --fg-of both: the reconstruction's foreground weighs too (the untrained reconstruction is off everywhere: the
    // term changes); kept on --resume; other values refused
    await trainAE(tinyOptions(data, join(out, 'both'), { ...o, fgWeight: 20, fgOf: 'both' }));
    assert.notEqual(readLog(join(out, 'both', 'train.jsonl')).steps[0]!.mse, b.mse);
    await trainAE(tinyOptions(data, join(out, 'orig'), { ...o, fgWeight: 20, fgOf: 'orig' }));
    assert.equal(readLog(join(out, 'orig', 'train.jsonl')).steps[0]!.mse, b.mse, '--fg-of orig is the default');
    await trainAE({ out: join(out, 'both'), resume: true, steps: 2 } as TrainAEOptions & { resume: boolean });
    const ck2 = JSON.parse(String(loadSafetensors(join(out, 'both', 'checkpoint.safetensors')).metadata.dcvg_train)) as { options: { fgOf?: string } };
    assert.equal(ck2.options.fgOf, 'both');
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'bad2'), { ...o, fgWeight: 20, fgOf: 'recon' as 'both' })), /--fg-of must be/);
  });
});

test('--train-only: only the matching parameters change; the rest keep their initial values bit for bit', async () => {
  await withDataAndOut([1, 8, 16], 'dcvg-train-only-', async (data, out) => {
    await trainAE(tinyOptions(data, join(out, 'r'), { steps: 3, holdout: 0, trainOnly: '^decoder\\.', ckptEvery: 3, evalEvery: 3 }));
    const fresh = new DCAEV(tinyConfig());
    initForTraining(fresh, TRAIN_DEFAULTS.seed);
    const ck = loadSafetensors(join(out, 'r', 'checkpoint.safetensors')).tensors;
    let enc = 0;
    let decChanged = 0;
    for (const [k, p] of fresh.namedParams()) {
      const now = [...ck.get(`model.${k}`)!.readSync()];
      if (k.startsWith('encoder.')) {
        enc++;
        assert.deepEqual(now, [...p.value.readSync()], `${k} is frozen`);
      } else {
        const cur = p.value.readSync();
        if (now.some((v, i) => v !== cur[i])) decChanged++;
      }
    }
    assert.ok(enc > 0 && decChanged > 0, `encoder tensors ${enc}, decoder tensors changed ${decChanged}`);
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'none'), { steps: 1, holdout: 0, trainOnly: 'no-such-parameter' })), /matches none/);
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'bad'), { steps: 1, holdout: 0, trainOnly: '(' })), /not a regular expression/);
  });
});

test('resume is exact: a run killed after a checkpoint and resumed ends bit-identical to an uninterrupted run', async () => {
  await withDataAndOut([3, 16, 16], 'dcvg-train-resume-', async (data, out) => {
    const over = { stillProb: 0.3, advStart: 7, advWeight: 0.1 }; // exercise the data RNG and the adversarial stage
    // run b dies at step 10 (after the step-8 checkpoint, with steps 9-10 already logged)
    const { a } = await killAndResumeAE(out, (dir) => tinyOptions(data, dir, over), (s) => [s.loss, s.disc], 10);
    assert.ok([...loadSafetensors(join(a, 'checkpoint.safetensors')).tensors.keys()].some((k) => k.startsWith('disc_adam_m.')));
    // a finished run refuses to resume without more steps; a fresh run refuses an occupied folder
    await assert.rejects(trainAE({ out: join(out, 'a'), resume: true } as TrainAEOptions & { resume: boolean }), /already finished/);
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'a'))), /already holds a training run/);
  });
});

test('train-ae CLI: clear errors for bad arguments, writes nothing', async () => {
  const out = mkdtempSync(join(tmpdir(), 'dcvg-train-cli-'));
  const data = join(out, 'data');
  mkdirSync(data);
  const cfgPath = join(out, 'tiny.json');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(cfgPath, JSON.stringify(configToReference(tinyConfig())));
  const errs: string[] = [];
  const origErr = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
  try {
    assert.equal(await main(['train-ae', '--data', data, '--out', join(out, 'r')]), 1);
    assert.equal(await main(['train-ae', '--model', cfgPath, '--data', data, '--out', join(out, 'r')]), 1);
    assert.equal(await main(['train-ae', '--model', cfgPath, '--data', data, '--out', join(out, 'r'), '--steps', 'abc']), 1);
    assert.equal(await main(['train-ae', '--out', join(out, 'r'), '--resume', '--lr', '1']), 1);
    assert.equal(await main(['train-ae', '--out', join(out, 'r'), '--resume']), 1);
  } finally {
    process.stderr.write = origErr;
  }
  const text = errs.join('');
  assert.match(text, /needs --model/);
  assert.match(text, /no video or image files/);
  assert.match(text, /--steps must be an integer/);
  assert.match(text, /only --steps may change/);
  assert.match(text, /no checkpoint to resume/);
  assert.ok(!existsSync(join(out, 'r', 'checkpoint.safetensors')));
  rmSync(out, { recursive: true, force: true });
  void readFileSync;
});

test('temporal study (tiny): three designs train with one recipe; streaming equals whole-clip for the causal designs', async () => {
  const { runTemporalStudy } = await import('../src/train/study.js');
  await withDataAndOut([3, 24, 16], 'dcvg-study-', async (data, out) => {
    const o = { data, out, steps: 3, widths: [4, 8, 8, 8], depths: [0, 1, 1, 1], latentChannels: 4, chunk: 4, frames: 8, crop: 16, holdout: 1, warmup: 1 };
    // train in two goes (as parallel processes would), then evaluate
    assert.equal(await runTemporalStudy({ ...o, designs: ['causal'], evaluate: false }), null);
    await assert.rejects(runTemporalStudy({ ...o, train: false }), /unfinished designs: chunk_causal, non_causal/);
    const r = (await runTemporalStudy(o))!;
    for (const d of ['chunk_causal', 'causal', 'non_causal']) {
      const m = r.designs[d]!;
      assert.equal(m.steps, 3);
      assert.equal(m.heldOut.whole.psnrCurve.length, 24);
      assert.ok(Number.isFinite(m.heldOut.stream.psnr) && Number.isFinite(m.trainClips!.whole.ssim));
      if (d !== 'non_causal') assert.ok(m.streamVsWholeMaxAbs < 1e-4, `${d}: stream vs whole ${m.streamVsWholeMaxAbs}`);
    }
    // the non-causal design sees different context streamed (independent windows) than whole-clip
    assert.notEqual(r.designs.non_causal!.heldOut.stream.psnr, r.designs.non_causal!.heldOut.whole.psnr);
    for (const f of ['report.md', 'study.json', 'psnr_stream.png', 'psnr_whole.png']) assert.ok(existsSync(join(out, f)), f);
    // different designs were really built: their configs differ in the temporal mode only
    const cfg = (d: string) => JSON.parse(readFileSync(join(out, d, 'config.json'), 'utf8'));
    assert.match(JSON.stringify(cfg('chunk_causal')), /ChunkCausalResBlock3d@3@3@4/);
    assert.match(JSON.stringify(cfg('causal')), /"CausalResBlock3d@3@3"/);
    assert.match(JSON.stringify(cfg('non_causal')), /"ResBlock3d@3@3"/);
  });
});
