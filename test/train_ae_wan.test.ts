/**
 * `dcvg train-ae` on the Wan-2.1 VAE topology (src/train/ae_models.ts): the autograd gradient of the training loss
 * (reconstruction + KL on a sampled latent) against central finite differences, per parameter group, on a tiny config;
 * the loss falls; --resume is bit-exact; the run's files load with the existing loaders; and the two shapes-world
 * presets (wan-vae-shapes, dcaev-shapes-f32c32) build and encode / decode 16-frame 128x128 clips to the right latent
 * shapes. Tiny models on tiny clips (y4m: lossless) except the preset test, which runs each preset once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { framesToTensor, writeVideo } from '../src/io/video.js';
import { loadSafetensors } from '../src/io/safetensors.js';
import { parseWanVaeConfig, resolveWanVaeConfig, wanVaeParameterCounts, type WanVaeConfig } from '../src/models/wan_vae/config.js';
import { embeddedWanVaeConfig, wanVaeRandomInit } from '../src/models/wan_vae/index.js';
import { presetConfig } from '../src/models/dcaev/config.js';
import { DCAEV } from '../src/models/dcaev/model.js';
import { WanVAE } from '../src/models/wan_vae/model.js';
import { Conv3d } from '../src/nn/conv.js';
import { asAutoencoder, loadAutoencoder } from '../src/pipelines/autoencoder.js';
import { renderShapes, randomShapesVideo } from '../src/metrics/shapes_world.js';
import { Rng, randn } from '../src/tensor/random.js';
import * as ops from '../src/tensor/ops.js';
import { mseLoss } from '../src/tensor/nn_ops.js';
import { noGrad, type Tensor } from '../src/tensor/tensor.js';
import { readLog, trainAE, TRAIN_DEFAULTS, type TrainAEOptions } from '../src/train/ae_trainer.js';
import { resolveAEConfig, trainableAE } from '../src/train/ae_models.js';
import { initForTraining } from '../src/train/init.js';
import { main } from '../src/cli/main.js';
import { killAndResumeAE } from './helpers.js';

/**
 * The released topology (4 stages: spatial x8, temporal x4) at width 8, 4 latent channels, one block per stage. (Width 4
 * would leave 2-channel RMS norms in the decoder, F.normalize of 2-vectors: too close to its singularity at 0 for
 * finite differences.)
 */
const tinyWan = (): WanVaeConfig =>
  parseWanVaeConfig({ dim: 8, z_dim: 4, dim_mult: [1, 1, 1, 1], num_res_blocks: 1, attn_scales: [], temperal_downsample: [false, true, true] }, 'tiny-wan');

/** A coloured square moving right over a gradient, H x W x 3 uint8 frames. */
function movingSquare(frames: number, size: number, phase: number): Uint8Array {
  const out = new Uint8Array(frames * size * size * 3);
  for (let t = 0; t < frames; t++)
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const o = ((t * size + y) * size + x) * 3;
        const inside = Math.abs(x - ((t + phase) % size)) < 3 && Math.abs(y - size / 2) < 3;
        out[o] = inside ? 230 : 20 + 6 * x;
        out[o + 1] = inside ? 40 + 20 * phase : 20 + 6 * y;
        out[o + 2] = inside ? 60 : 80;
      }
  return out;
}

async function withData(n: number, body: (data: string, out: string) => Promise<void>): Promise<void> {
  const data = mkdtempSync(join(tmpdir(), 'dcvg-wan-train-data-'));
  const out = mkdtempSync(join(tmpdir(), 'dcvg-wan-train-out-'));
  try {
    for (let i = 0; i < n; i++) await writeVideo(join(data, `c${i}.y4m`), movingSquare(16, 16, i * 3), { width: 16, height: 16, fps: 8 });
    await body(data, out);
  } finally {
    rmSync(data, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  }
}

function tinyOptions(data: string, out: string, over: Partial<TrainAEOptions> = {}): TrainAEOptions {
  return {
    ...TRAIN_DEFAULTS,
    model: { family: 'wan-vae', config: tinyWan() },
    data,
    out,
    steps: 10,
    batch: 2,
    frames: 5,
    crop: 16,
    holdout: 1,
    ckptEvery: 4,
    evalEvery: 5,
    warmup: 2,
    lr: 3e-3,
    klWeight: 1e-2,
    ...over,
  };
}

test('Wan VAE training loss: autograd gradient = central finite differences, per parameter group (tiny config)', () => {
  const cfg = resolveAEConfig({ family: 'wan-vae', config: tinyWan() });
  const net = trainableAE(cfg);
  const model = net.module as WanVAE;
  // order-one activations everywhere (every residual branch live), so every layer's gradient is exercised
  wanVaeRandomInit(model, 3);
  model.setTrainable(true);
  const x = randn([1, 3, 5, 16, 16], 11, 0.5);
  const klWeight = 0.1; // large, so the KL term's share of the gradient is checked too
  // the same sampling noise in every evaluation: a fresh Rng with one seed
  const loss = () => {
    const { z, kl } = net.encodeTrain(x, klWeight, new Rng(5));
    return ops.add(mseLoss(net.decodeTrain(z), x), ops.mul(kl!, klWeight));
  };
  const L = loss();
  L.backward();
  const named = new Map(model.namedParams());
  const groups = [
    'encoder.conv1.weight',
    'encoder.downsamples.0.residual.2.weight',
    'encoder.downsamples.0.residual.0.gamma',
    'encoder.downsamples.1.resample.1.weight', // downsample2d (zero pad right / bottom, stride 2)
    'encoder.downsamples.3.resample.1.weight', // downsample3d: its spatial conv
    'encoder.downsamples.3.time_conv.weight', // and its strided temporal conv
    'encoder.middle.1.to_qkv.weight', // attention
    'conv1.weight', // mu and log_var
    'conv2.weight',
    'decoder.upsamples.2.time_conv.weight', // upsample3d: frame 0 passed, later frames doubled
    'decoder.upsamples.8.resample.1.weight', // upsample2d
    'decoder.head.2.bias',
  ];
  const rng = new Rng(21);
  const h = 1e-2;
  for (const key of groups) {
    const p = named.get(key);
    assert.ok(p, `no parameter ${key} (has ${[...named.keys()].slice(0, 8).join(', ')}, ...)`);
    const g = p.value.grad;
    assert.ok(g, `${key}: no gradient`);
    const v0 = p.value.readSync().slice();
    const gd = g.readSync();
    // one random unit direction within this tensor
    const d = randn(p.shape, rng).readSync();
    const norm = Math.sqrt(d.reduce((s, u) => s + u * u, 0));
    let an = 0;
    for (let i = 0; i < d.length; i++) an += gd[i]! * (d[i]! /= norm);
    const at = (s: number) => {
      p.value.write(v0.map((v, i) => v + s * h * d[i]!));
      return noGrad(() => loss().item());
    };
    const fd = (at(1) - at(-1)) / (2 * h);
    p.value.write(v0);
    // float32: the loss (~0.5, a mean over 3840 values) carries ~1e-7 absolute rounding, /h -> ~1e-5 in fd; the
    // truncation error is O(h^2) of the curvature (measured: h = 1e-2 and 1e-3 agree to 0.3%); 2e-2 relative (against
    // max(|an|, 1e-3), so 2e-5 absolute at the least) is above both
    const err = Math.abs(fd - an) / Math.max(Math.abs(an), Math.abs(fd), 1e-3);
    assert.ok(err < 2e-2, `${key}: directional derivative ${an} vs finite difference ${fd} (rel err ${err.toExponential(2)})`);
    assert.ok(Math.abs(an) > 1e-4, `${key}: a vanishing gradient (${an}) checks nothing`);
  }
});

test('Wan VAE train-ae: the loss falls, KL is logged, the run loads with the existing loaders', async () => {
  await withData(3, async (data, out) => {
    const r = await trainAE(tinyOptions(data, join(out, 'a'), { steps: 16, holdout: 1, evalEvery: 16, ckptEvery: 16, lr: 5e-3, warmup: 1 }));
    assert.equal(r.steps, 16);
    const { steps, evals } = readLog(join(out, 'a', 'train.jsonl'));
    assert.equal(steps.length, 16);
    assert.ok(steps.every((s) => typeof s.kl === 'number' && Number.isFinite(s.kl) && s.kl >= 0), 'a KL value on every step');
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(steps.slice(0, 3).map((s) => s.loss));
    const last = mean(steps.slice(-3).map((s) => s.loss));
    assert.ok(last < 0.8 * first, `loss should fall: first 3 steps ${first}, last 3 ${last}`);
    assert.equal(evals.length, 1);
    assert.ok(Number.isFinite(evals[0]!.eval.psnr));
    // config.json is a Wan VAE config; model.safetensors carries it; the three ways to load agree
    const cfgPath = join(out, 'a', 'config.json');
    const saved = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    assert.equal(saved.family, 'wan-vae');
    assert.deepEqual(resolveWanVaeConfig(cfgPath).dim_mult, [1, 1, 1, 1]);
    assert.ok(embeddedWanVaeConfig(join(out, 'a', 'model.safetensors')));
    const aes = [
      loadAutoencoder({ model: cfgPath, weights: join(out, 'a', 'model.safetensors') }, 'test'),
      loadAutoencoder({ weights: join(out, 'a', 'model.safetensors') }, 'test'),
      loadAutoencoder({ model: join(out, 'a') }, 'test'),
    ];
    const clip = framesToTensor(movingSquare(16, 16, 1), 16, 16);
    const lat = aes.map((ae) => {
      assert.equal(ae.family, 'wan-vae');
      return noGrad(() => ae.encodeClip(clip, { padFrames: true }).latent);
    });
    assert.deepEqual(lat[0]!.shape, [1, 4, 5, 2, 2]); // 16 frames padded to 17 = 1 + 4*4 -> 5 latent frames
    for (const l of lat.slice(1)) assert.deepEqual([...l.readSync()], [...lat[0]!.readSync()]);
    // the weights are the EMA shadows, under the model's own (reference) keys
    const w = loadSafetensors(join(out, 'a', 'model.safetensors'));
    assert.ok(w.tensors.has('encoder.conv1.weight') && w.tensors.has('decoder.head.2.weight'));
    assert.equal(w.metadata.format, 'dcvg-wan-vae-weights');
  });
});

test('Wan VAE train-ae: resume is bit-exact (data order, sampling noise, EMA, AdamW moments)', async () => {
  await withData(3, async (data, out) => {
    const over = { stillProb: 0.3 };
    await killAndResumeAE(out, (dir) => tinyOptions(data, dir, over), (s) => [s.loss, s.kl], 6);
  });
});

test('Wan VAE train-ae refuses windows that are not 1 + 4k and a KL weight on DC-AE-V', async () => {
  await withData(2, async (data, out) => {
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'f'), { frames: 8 })), /--frames 8 must be 1 \+ 4k for the Wan VAE/);
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'k'), { model: 'dcaev-shapes-f32c32', frames: 16, crop: 32, klWeight: 1e-6 })), /--kl-weight/);
    await assert.rejects(trainAE(tinyOptions(data, join(out, 'n'), { klWeight: -1 })), /--kl-weight/);
    // the CLI: the flags parse, the same refusals exit 1 and write nothing
    for (const extra of [['--frames', '8'], ['--kl-weight', 'x']]) {
      assert.equal(await main(['train-ae', '--model', 'wan-vae:wan-vae-shapes', '--data', data, '--out', join(out, 'cli'), ...extra]), 1);
      assert.equal(existsSync(join(out, 'cli', 'checkpoint.safetensors')), false);
    }
  });
  // the --model vocabulary: prefix, preset name, code object
  assert.equal(resolveAEConfig('wan-vae:wan-vae-shapes').family, 'wan-vae');
  assert.equal(resolveAEConfig('wan-vae-shapes').family, 'wan-vae');
  assert.equal(resolveAEConfig('dcaev-shapes-f32c32').family, 'dc-ae-v');
});

test('presets wan-vae-shapes (f8t4c16) and dcaev-shapes-f32c32 encode / decode 16x128x128 shapes clips to the right latent shapes', () => {
  const v = randomShapesVideo(new Rng(4), { trainOnly: true });
  const clip = framesToTensor(renderShapes(v), 128, 128); // (1, 3, 16, 128, 128)
  const wcfg = resolveWanVaeConfig('wan-vae-shapes');
  const wan = new WanVAE(wcfg);
  initForTraining(wan, 0, { residual: 'default' });
  assert.equal(wan.parameterCount(), wanVaeParameterCounts(wcfg).total);
  const dc = new DCAEV(presetConfig('dcaev-shapes-f32c32'));
  initForTraining(dc, 0, { residual: 'default' });
  const cases: [ReturnType<typeof asAutoencoder>, Tensor, number[]][] = [
    // causal: 13 = 1 + 4*3 frames -> 4 latent frames; the whole 16 padded to 17 -> 5
    [asAutoencoder(wan), ops.contiguous(ops.slice(clip, 2, 0, 13)), [1, 16, 4, 16, 16]],
    [asAutoencoder(wan), clip, [1, 16, 5, 16, 16]],
    // two 8-frame chunks -> 4 latent frames of 4x4
    [asAutoencoder(dc), clip, [1, 32, 4, 4, 4]],
  ];
  noGrad(() => {
    for (const [ae, x, shape] of cases) {
      const e = ae.encodeClip(x, { padFrames: true });
      assert.deepEqual(e.latent.shape, shape, `${ae.name}: latent of ${x.shape.join('x')}`);
      const y = ae.decodeClip(e.latent, { numFrames: e.numFrames });
      assert.deepEqual(y.shape, x.shape, `${ae.name}: decoded shape`);
      assert.ok(y.readSync().every(Number.isFinite), `${ae.name}: finite output`);
    }
  });
});

test('shortcut init: the untrained Wan VAE sees where the object is (attention blocks start as their shortcut)', () => {
  // one frame of a shapes video and the same frame with the object 16 px to the right (the background is flat, so a
  // roll moves only the object); the latent must change by a good part of its own size
  const v = { ...randomShapesVideo(new Rng(4), { trainOnly: true }), start: [40, 40] as [number, number] };
  const frame = renderShapes(v, 1);
  const moved = renderShapes({ ...v, start: [56, 40] }, 1);
  const wan = new WanVAE(resolveWanVaeConfig('wan-vae-shapes'));
  initForTraining(wan, 0);
  const named = new Map(wan.namedParams());
  for (const k of ['encoder.middle.1.proj.weight', 'encoder.middle.1.proj.bias', 'decoder.middle.1.proj.weight', 'decoder.middle.1.proj.bias'])
    assert.ok(named.get(k)!.value.readSync().every((x) => x === 0), `${k} starts at zero`);
  const r = noGrad(() => {
    const a = wan.encodeMu(framesToTensor(frame, 128, 128)).readSync();
    const b = wan.encodeMu(framesToTensor(moved, 128, 128)).readSync();
    let d = 0;
    let n = 0;
    for (let i = 0; i < a.length; i++) {
      d += (a[i]! - b[i]!) ** 2;
      n += a[i]! ** 2;
    }
    return Math.sqrt(d / n);
  });
  // measured: 0.156 here (0.16-0.49 over three videos); with a random attention projection 0.008 (0.008-0.055): the
  // object's place nearly invisible to the untrained model
  assert.ok(r > 0.1, `relative latent change ${r}`);
});

test('shortcut init: the Wan VAE time_convs start as frame selection (down) and repetition (up)', () => {
  const wan = new WanVAE(resolveWanVaeConfig('wan-vae-shapes'));
  initForTraining(wan, 0);
  const convs = wan.namedModules().filter((e): e is [string, Conv3d] => e[0].endsWith('time_conv') && e[1] instanceof Conv3d);
  const down = convs.filter(([k]) => k.startsWith('encoder.'));
  const up = convs.filter(([k]) => k.startsWith('decoder.'));
  assert.ok(down.length >= 1 && up.length >= 1, `time_convs found: ${convs.map(([k]) => k).join(', ')}`);
  const rng = new Rng(5);
  const frameOf = (t: Tensor, c0: number, c: number, f: number): Float32Array => ops.contiguous(ops.slice(ops.slice(t, 1, c0, c0 + c), 2, f, f + 1)).readSync();
  for (const [k, m] of down) {
    const c = m.weight.value.shape[1]!;
    // a 'valid' stride-2 conv over frames 0..4: windows (0,1,2) and (2,3,4); the middle taps are frames 1 and 3
    const y = randn([1, c, 5, 3, 3], rng);
    const z = noGrad(() => m.forward(y, null));
    assert.deepEqual(z.shape, [1, c, 2, 3, 3], `${k}: output shape`);
    assert.deepEqual(frameOf(z, 0, c, 0), frameOf(y, 0, c, 1), `${k}: output frame 0 is input frame 1`);
    assert.deepEqual(frameOf(z, 0, c, 1), frameOf(y, 0, c, 3), `${k}: output frame 1 is input frame 3`);
  }
  for (const [k, m] of up) {
    const c = m.weight.value.shape[1]!;
    // causal: output frame t from input frames t-2..t; both channel halves (the two frames it becomes) are frame t
    const x = randn([1, c, 3, 3, 3], rng);
    const z = noGrad(() => m.forward(x, null));
    assert.deepEqual(z.shape, [1, 2 * c, 3, 3, 3], `${k}: output shape`);
    for (let t = 0; t < 3; t++)
      for (const half of [0, 1]) assert.deepEqual(frameOf(z, half * c, c, t), frameOf(x, 0, c, t), `${k}: half ${half} of frame ${t} repeats input frame ${t}`);
  }
  // the plain init leaves them random
  const plain = new WanVAE(resolveWanVaeConfig('wan-vae-shapes'));
  initForTraining(plain, 0, { residual: 'default' });
  const w = new Map(plain.namedParams()).get(`${down[0]![0]}.weight`)!.value.readSync();
  assert.ok(w.filter((v) => v !== 0 && v !== 1).length > w.length / 2, 'default init: time_conv random');
});

test('init scale: LeCun (default) keeps the untrained Wan VAE latent near the input scale; PyTorch default shrinks it', () => {
  const models = { lecun: new WanVAE(resolveWanVaeConfig('wan-vae-shapes')), torch: new WanVAE(resolveWanVaeConfig('wan-vae-shapes')) };
  initForTraining(models.lecun, 0); // the default scale
  initForTraining(models.torch, 0, { scale: 'torch' });
  // the same draws, sqrt(3) apart: bounds sqrt(3 / fan_in) and 1 / sqrt(fan_in)
  const key = 'encoder.conv1.weight';
  const wl = new Map(models.lecun.namedParams()).get(key)!.value;
  const wt = new Map(models.torch.namedParams()).get(key)!.value.readSync();
  const fanIn = wl.size / wl.shape[0]!;
  const l = wl.readSync();
  let maxAbs = 0;
  for (let i = 0; i < l.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(l[i]!));
    // each side rounded to float32 once: relative error at most 2^-24 each, plus the product's
    assert.ok(Math.abs(l[i]! - Math.sqrt(3) * wt[i]!) <= 4 * 2 ** -24 * Math.abs(l[i]!) + 1e-30, `${key}[${i}]: ${l[i]} against sqrt(3) * ${wt[i]}`);
  }
  assert.ok(maxAbs <= Math.sqrt(3 / fanIn) && maxAbs > 0.9 * Math.sqrt(3 / fanIn), `${key}: max |w| ${maxAbs} against the bound ${Math.sqrt(3 / fanIn)}`);
  // the untrained shortcut model: a chain of plain convs from pixels to latent
  const x = randn([1, 3, 1, 64, 64], new Rng(1), 0.5);
  const rms = (t: Tensor): number => Math.sqrt(t.readSync().reduce((s, v) => s + v * v, 0) / t.size);
  const ratio = (m: WanVAE): number => noGrad(() => rms(m.encodeMu(x)) / rms(x));
  const [rl, rt] = [ratio(models.lecun), ratio(models.torch)];
  // measured 0.58 against 0.19 (the latent a fifth of the input: on the shapes world that start plateaus, see init.ts)
  assert.ok(rl > 0.4 && rt < 0.3 && rl > 2 * rt, `latent / input rms: lecun ${rl}, torch ${rt}`);
});
