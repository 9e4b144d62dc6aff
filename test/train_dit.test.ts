/**
 * `dcvg train-dit`: flow-matching training of a tiny Wan T2V DiT on DC-AE-V latents of a few shared clips (default
 * model in assets/default-ae, 8 frames, 64x64 centre crop -> latents (32, 2, 2, 2)) with random fixed text embeddings.
 * The loss falls, and a run stopped at step s and resumed ends bit-identical to an uninterrupted one.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { defaultModelDir, loadDefaultModel } from '../src/models/dcaev/default_model.js';
import { WanModel, parseWanConfig } from '../src/models/wan/index.js';
import { flowMatchInputs, flowMatchLoss, trainingGrid } from '../src/diffusion/flow_matching.js';
import { Rng, randn } from '../src/tensor/random.js';
import { noGrad, parameter, type Tensor } from '../src/tensor/tensor.js';
import { TrainingError } from '../src/errors.js';
import { AdamW } from '../src/train/optim.js';
import { runLoop, scheduledLr } from '../src/train/loop.js';
import * as ops from '../src/tensor/ops.js';
import { buildLatentFolder, loadLatentSet } from '../src/train/dit_data.js';
import { initFromScratch, readDiTLog, trainDiT } from '../src/train/dit_trainer.js';
import { sharedDir } from './helpers.js';

const clipsDir = join(sharedDir, 'data', 'clips128');
const CLIPS = ['01.mp4', '02.mp4', '03.mp4', '05.mp4'];
const missing = CLIPS.map((c) => join(clipsDir, c)).filter((p) => !existsSync(p));
const skip = missing.length
  ? `shared clips missing: ${missing.join(', ')} (clone the shared folder beside the repository to run this test)`
  : defaultModelDir() === null
    ? 'default DC-AE-V (assets/default-ae) missing'
    : false;

const TINY = { model_type: 't2v', patch_size: [1, 1, 1], text_len: 8, in_dim: 32, dim: 32, ffn_dim: 64, freq_dim: 32, text_dim: 16, out_dim: 32, num_heads: 2, num_layers: 2 };

/** All tensors of a safetensors file as raw float32 bit patterns, and its metadata. */
function bits(path: string): { tensors: Map<string, number[]>; meta: Record<string, string> } {
  const f = SafetensorsFile.open(path);
  try {
    const tensors = new Map<string, number[]>();
    for (const k of f.keys()) tensors.set(k, [...new Uint32Array(f.tensor(k).readSync().buffer)]);
    return { tensors, meta: { ...f.metadata } };
  } finally {
    f.close();
  }
}

/** Log lines without the wall-clock field. */
const logOf = (dir: string) =>
  readFileSync(join(dir, 'train.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const { ms: _ms, ...r } = JSON.parse(l) as Record<string, unknown>;
      return JSON.stringify(r);
    });

/** The CLI in this process, its progress lines on stderr silenced (stdout is the test runner's channel: left alone). */
async function cli(args: string[]): Promise<number> {
  const ewrite = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return await main(args);
  } finally {
    process.stderr.write = ewrite;
  }
}

describe('dcvg train-dit on DC-AE-V latents of shared clips', { skip }, () => {
  let dir = '';
  let data = '';
  let cfgPath = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dcvg-dit-'));
    const clips = join(dir, 'clips');
    mkdirSync(clips);
    for (const c of CLIPS) symlinkSync(join(clipsDir, c), join(clips, c));
    data = join(dir, 'latents');
    const r = await buildLatentFolder({ videos: clips, out: data, ae: loadDefaultModel(), frames: 8, crop: 64, textLen: 8, textDim: 16, seed: 5 });
    assert.equal(r.count, 4);
    assert.deepEqual(r.latentShape, [32, 2, 2, 2]);
    cfgPath = join(dir, 'tiny.json');
    writeFileSync(cfgPath, JSON.stringify(TINY));
  });
  after(() => dir && rmSync(dir, { recursive: true, force: true }));

  it('the latent folder reads back: 4 samples, unit RMS latents, zero null context', () => {
    const s = loadLatentSet(data);
    assert.equal(s.latents.length, 4);
    assert.deepEqual(s.contexts[0]!.shape, [8, 16]);
    // scaled by 1 / RMS of the set: the mean square over all values is 1 (to float32 rounding of ~1e3 terms)
    const ms = s.latents.reduce((a, t) => a + ops.square(t).readSync().reduce((x, y) => x + y, 0), 0) / s.latents.reduce((a, t) => a + t.size, 0);
    assert.ok(Math.abs(ms - 1) < 1e-4, `mean square ${ms}`);
    assert.ok(s.nullContext.readSync().every((v) => v === 0));
  });

  it('the loss falls: logged means of the first vs the last 10 steps, and a fixed evaluation before vs after', async () => {
    const out = join(dir, 'fall');
    const code = await cli(['train-dit', '--model', cfgPath, '--data', data, '--out', out, '--steps', '40', '--batch', '2', '--lr', '3e-3', '--clip', '1', '--ema', '0.9', '--ckpt-every', '20', '--seed', '1']);
    assert.equal(code, 0);
    for (const f of ['checkpoint.safetensors', 'model.safetensors', 'config.json', 'loss.png', 'train.jsonl']) assert.ok(existsSync(join(out, f)), f);
    const log = readDiTLog(out);
    assert.equal(log.length, 40);
    assert.ok(log.every((r) => Number.isFinite(r.loss) && r.t.length === 2));
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    const first = mean(log.slice(0, 10).map((r) => r.loss));
    const last = mean(log.slice(-10).map((r) => r.loss));
    assert.ok(last < 0.85 * first, `mean loss of steps 1-10 ${first.toFixed(4)}, of steps 31-40 ${last.toFixed(4)}`);

    // The same fixed draws (every sample at 8 timesteps spread over [0, 1000), fixed noise, no dropout) through the
    // initial model and the trained one (the checkpoint's live weights).
    const cfg = parseWanConfig(TINY);
    const init = new WanModel(cfg);
    initFromScratch(init, 1);
    const trained = new WanModel(cfg);
    initFromScratch(trained, 1);
    const ck = SafetensorsFile.open(join(out, 'checkpoint.safetensors'));
    try {
      for (const [k, p] of trained.namedParams()) p.value.write(ck.tensor(`model.${k}`).readSync());
    } finally {
      ck.close();
    }
    const set = loadLatentSet(data);
    const grid = trainingGrid(8);
    const evalLoss = (m: WanModel) =>
      noGrad(() => {
        const rng = new Rng(99);
        let sum = 0;
        for (let q = 0; q < 8; q++) {
          const x0 = ops.stack(set.latents, 0);
          const t = set.latents.map((_, i) => (q * 125 + i * 31) % 1000);
          const inp = flowMatchInputs(x0, randn(x0.shape, rng), t, grid);
          sum += flowMatchLoss(m.forward(inp.noisy, inp.t, ops.stack(set.contexts, 0) as Tensor), inp.target, inp.weights).item();
        }
        return sum / 8;
      });
    const before = evalLoss(init);
    const afterTraining = evalLoss(trained);
    assert.ok(afterTraining < 0.8 * before, `fixed evaluation loss ${before.toFixed(4)} -> ${afterTraining.toFixed(4)}`);
  });

  it('resume is exact: stopped at step 13 and resumed, the run ends bit-identical to an uninterrupted one', async () => {
    const common = ['--model', cfgPath, '--data', data, '--steps', '24', '--batch', '3', '--lr', '2e-3', '--warmup', '4', '--schedule', 'cosine', '--clip', '0.5', '--ema', '0.95', '--text-drop', '0.3', '--ckpt-every', '8', '--seed', '3'];
    const a = join(dir, 'a');
    assert.equal(await cli(['train-dit', ...common, '--out', a]), 0);

    // run b: the same options, stopped after step 13 the way Ctrl-C stops it (the stop request is polled after a
    // step: the step finishes and a checkpoint is written); a later line in the log, as a kill after the checkpoint
    // would leave, must be dropped on resume
    const b = join(dir, 'b');
    let steps = 0;
    const r = await trainDiT(
      { model: cfgPath, data, out: b, steps: 24, batch: 3, lr: 2e-3, warmup: 4, schedule: 'cosine', clip: 0.5, emaDecay: 0.95, textDrop: 0.3, ckptEvery: 8, seed: 3 },
      { onStep: () => void steps++, shouldStop: () => steps >= 13 },
    );
    assert.deepEqual([r.steps, r.stoppedEarly], [13, true]);
    assert.equal(JSON.parse(bits(join(b, 'checkpoint.safetensors')).meta.dcvg_train!).step, 13);
    appendFileSync(join(b, 'train.jsonl'), JSON.stringify({ step: 14, loss: 123, lr: 0, gradNorm: 0, ms: 0, t: [1], dropped: 0 }) + '\n');
    assert.equal(await cli(['train-dit', '--resume', '--out', b]), 0);

    const ca = bits(join(a, 'checkpoint.safetensors'));
    const cb = bits(join(b, 'checkpoint.safetensors'));
    assert.deepEqual(JSON.parse(cb.meta.dcvg_train!), JSON.parse(ca.meta.dcvg_train!));
    assert.deepEqual([...cb.tensors.keys()].sort(), [...ca.tensors.keys()].sort());
    for (const prefix of ['model.', 'ema.', 'adam_m.', 'adam_v.']) assert.ok([...ca.tensors.keys()].some((k) => k.startsWith(prefix)), prefix);
    for (const [k, t] of ca.tensors) assert.deepEqual(cb.tensors.get(k), t, k);
    const ma = bits(join(a, 'model.safetensors'));
    const mb = bits(join(b, 'model.safetensors'));
    for (const [k, t] of ma.tensors) assert.deepEqual(mb.tensors.get(k), t, k);
    assert.deepEqual(logOf(b), logOf(a));
    assert.equal(logOf(a).length, 24);
    // the text dropout did happen (p = 0.3 over 72 draws), so the null-embedding path was exercised
    assert.ok(readDiTLog(a).some((x) => x.dropped > 0));
  });

  it('clear errors before anything is written: a model that does not fit the latents, a missing folder', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ ...TINY, in_dim: 16, out_dim: 16 }));
    const out = join(dir, 'never');
    await assert.rejects(trainDiT({ model: bad, data, out, steps: 2 }), /in_dim 16 \/ out_dim 16 must equal the latents' 32 channels/);
    await assert.rejects(trainDiT({ model: cfgPath, data: join(dir, 'nope'), out, steps: 2 }), /train-dit data: .*nope is not a folder/);
    await assert.rejects(trainDiT({ model: cfgPath, data, out, steps: 2, textDrop: 2 }), /--text-drop must be in \[0, 1\], got 2/);
    await assert.rejects(trainDiT({ model: cfgPath, data, out, resume: true }), /no checkpoint to resume/);
    let err = '';
    const ewrite = process.stderr.write;
    process.stderr.write = ((s: string) => {
      err += s;
      return true;
    }) as typeof process.stderr.write;
    try {
      assert.equal(await main(['train-dit', '--model', cfgPath, '--data', data, '--out', out, '--bogus']), 1);
      assert.equal(await main(['train-dit', '--model', cfgPath, '--data', data, '--out', out, '--resume']), 1);
    } finally {
      process.stderr.write = ewrite;
    }
    assert.match(err, /^dcvg train-dit: Unknown option '--bogus'.* \(see dcvg train-dit --help\)\n/);
    assert.match(err, /only --steps may change \(got --model, --data\)/);
    assert.ok(!existsSync(out));
  });
});

describe('the generic loop pieces', () => {
  it('AdamW parameter groups: each group steps with its own lr and weight decay, as separate optimisers would', () => {
    const mk = () => [0, 1, 2].map((i) => parameter(randn([3, 2], 10 + i)));
    const grads = [0, 1, 2].map((i) => randn([3, 2], 20 + i));
    const a = mk();
    const b = mk();
    const grouped = new AdamW(
      [
        { params: [['w0', a[0]!], ['w1', a[1]!]], lr: 0.01, weightDecay: 0.1 },
        { params: [['w2', a[2]!]], lr: 0.003, weightDecay: 0 },
      ],
      { lr: 1 },
    );
    const one = new AdamW([['w0', b[0]!], ['w1', b[1]!]], { lr: 0.01, weightDecay: 0.1 });
    const two = new AdamW([['w2', b[2]!]], { lr: 0.003, weightDecay: 0 });
    for (let s = 1; s <= 3; s++) {
      // a schedule scales each group from its own peak
      grouped.schedule((peak) => scheduledLr(s, peak, { kind: 'cosine', warmup: 2, total: 3, minRatio: 0.1 }));
      one.lr = scheduledLr(s, 0.01, { kind: 'cosine', warmup: 2, total: 3, minRatio: 0.1 });
      two.lr = scheduledLr(s, 0.003, { kind: 'cosine', warmup: 2, total: 3, minRatio: 0.1 });
      [...a, ...b].forEach((p, i) => (p.grad = grads[i % 3]!));
      for (const o of [grouped, one, two]) o.step();
    }
    a.forEach((p, i) => assert.deepEqual([...p.readSync()], [...b[i]!.readSync()], `w${i}`));
    // the moments are keyed by name: loading them in another order restores the same state
    const m = grouped.moments();
    const other = new AdamW([{ params: [['w2', mk()[2]!]] }, { params: [['w1', mk()[1]!], ['w0', mk()[0]!]] }]);
    other.loadMoments(grouped.stepCount, (n, w) => m.get(n)![w]);
    for (const [n, s] of other.moments()) assert.deepEqual([...s.v.readSync()], [...m.get(n)!.v.readSync()], n);
    assert.throws(() => new AdamW([['x', a[0]!], ['x', a[1]!]]), /"x" appears twice/);
    assert.equal(scheduledLr(50, 0.5, { kind: 'constant', warmup: 10, total: 100, minRatio: 0.1 }), 0.5);
    assert.equal(scheduledLr(5, 0.5, { kind: 'constant', warmup: 10, total: 100, minRatio: 0.1 }), 0.25);
  });

  it('a NaN or Inf loss stops the run with a TrainingError naming the step, before any update', async () => {
    const p = parameter(randn([4], 1));
    const before = [...p.readSync()];
    const opt = new AdamW([['p', p]], { lr: 0.1 });
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-loop-'));
    let saved = 0;
    try {
      await assert.rejects(
        runLoop({
          task: {
            forward: (step) => ({ loss: step < 3 ? ops.mean(ops.square(p)) : ops.mul(ops.mean(p), Infinity) }),
            record: (base) => ({ ...base }),
          },
          startStep: 0,
          steps: 5,
          opt,
          lr: (_s, peak) => peak,
          clip: 1,
          ema: null,
          ckptEvery: 100,
          evalEvery: null,
          logPath: join(dir, 'train.jsonl'),
          save: () => void saved++,
          checkpointPath: join(dir, 'checkpoint.safetensors'),
        }),
        (e: unknown) => e instanceof TrainingError && /loss is (-)?Infinity at step 3; stopping \(last checkpoint: none\)/.test((e as Error).message),
      );
      assert.equal(opt.stepCount, 2); // steps 1 and 2 applied, step 3 refused before its update
      assert.notDeepEqual([...p.readSync()], before);
      assert.equal(readFileSync(join(dir, 'train.jsonl'), 'utf8').trim().split('\n').length, 2);
      assert.equal(saved, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
