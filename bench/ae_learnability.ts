/**
 * Can an autoencoder learn the shapes world's objects? A short training run on single frames (or short windows) of
 * the first N clips of a folder, printing the PSNR over the object's pixels and over the whole frame on a fixed batch
 * of training frames every --every steps. The measurement behind docs/studies/adapt.md "The autoencoders missed the
 * object" (the 1 / 2 / 8 / 64-clip table):
 *
 *   npm run build && node dist/bench/ae_learnability.js --data DIR --clips 64 --steps 400
 *
 * Options: --model (train-ae spec, default wan-vae:wan-vae-shapes), --clips N (the first N videos of --data, sorted),
 * --frames F (1 = single frames; the Wan VAE takes 1 + 4k), --batch B, --crop C (training crops; the evaluation
 * batch is whole 128x128 frames), --steps, --lr, --loss l1|mse, --fg-weight W,
 * --residual-init shortcut|default, --init-scale lecun|torch (default lecun, src/train/init.ts), --every K, --seed. MSE, AdamW (no weight decay), gradient clip 1.0, 50 warm-up
 * steps then a constant rate; no KL (the latent is mu), no EMA. The object's pixels: the values whose pixel is off the
 * sample's median colour by more than the autoencoder gate's threshold (60 levels in a channel). At the end: the median
 * step time (README "Wan VAE training step" compares it with the official module's).
 *
 * --dump DIR (Wan VAE models only) also writes what bench/torch_ae_learnability.py needs to train the official
 * Wan-2.1 `WanVAE_` on exactly the same run: config.json (its constructor's arguments), init.safetensors (our
 * initialised weights under the official key names), batches.f32 (every step's training batch, NCTHW float32, in
 * step order), eval.f32 and eval_mask.u8 (the fixed evaluation batch and its object mask), run.json (the options) and,
 * at the end, ours.json (our per-step loss and the evaluations), so the two trainings can be compared step by step.
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadClipSet, sampleBatch } from '../src/train/data.js';
import { resolveAEConfig, trainableAE } from '../src/train/ae_models.js';
import { initForTraining } from '../src/train/init.js';
import { AdamW, clipGradNorm } from '../src/train/optim.js';
import { foregroundWeights, reconstructionLoss } from '../src/train/losses.js';
import { noGrad, type Tensor } from '../src/tensor/tensor.js';
import { OBJECT_THRESHOLD } from '../src/study/ae_gate.js';
import { Rng } from '../src/tensor/random.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { wanVaeStateDict } from '../src/models/wan_vae/run.js';
import { wanVaeConfigToJson } from '../src/models/wan_vae/config.js';
import type { WanVAE } from '../src/models/wan_vae/model.js';

const { values: a } = parseArgs({
  options: {
    data: { type: 'string' },
    model: { type: 'string', default: 'wan-vae:wan-vae-shapes' },
    clips: { type: 'string', default: '64' },
    frames: { type: 'string', default: '1' },
    crop: { type: 'string', default: '128' },
    batch: { type: 'string', default: '4' },
    steps: { type: 'string', default: '400' },
    lr: { type: 'string', default: '3e-4' },
    loss: { type: 'string', default: 'mse' },
    'fg-weight': { type: 'string', default: '0' },
    'residual-init': { type: 'string', default: 'shortcut' },
    'init-scale': { type: 'string', default: 'lecun' },
    every: { type: 'string', default: '100' },
    seed: { type: 'string', default: '0' },
    dump: { type: 'string' },
  },
});
if (!a.data) throw new Error('--data <folder of shapes videos> is required');
const [clips, frames, batch, steps, every, seed, crop] = [a.clips, a.frames, a.batch, a.steps, a.every, a.seed, a.crop].map(Number) as [number, number, number, number, number, number, number];
const lr = Number(a.lr);
const fg = Number(a['fg-weight']);
const kind = a.loss === 'l1' ? 'l1' : 'mse';

// the first N videos, through a folder of links (loadClipSet reads a whole folder)
const src = resolve(a.data);
const names = readdirSync(src).filter((n) => /\.(mkv|mp4|y4m|webm)$/.test(n)).sort().slice(0, clips);
const dir = mkdtempSync(join(tmpdir(), 'dcvg-learn-'));
for (const n of names) symlinkSync(join(src, n), join(dir, n));
const set = await loadClipSet(dir, { holdout: 0 });
rmSync(dir, { recursive: true, force: true });

const net = trainableAE(resolveAEConfig(a.model!));
if (a['init-scale'] !== 'lecun' && a['init-scale'] !== 'torch') throw new Error('--init-scale: lecun or torch');
initForTraining(net.module, seed, { residual: a['residual-init'] === 'default' ? 'default' : 'shortcut', scale: a['init-scale'] });
net.module.setTrainable(true);
const named = net.module.namedParams().map(([k, p]) => [k, p.value] as const);
const params = named.map(([, t]) => t);
const opt = new AdamW(named, { lr, weightDecay: 0 });
const rng = new Rng(seed + 1);
const evalBatch = sampleBatch(set.train, { batch: 8, frames, crop: 128, stillProb: 0, flip: false }, new Rng(99)).x;
// the object's values: those whose pixel is off the sample's median colour by more than the gate's threshold (60
// levels in a channel, src/study/ae_gate.ts), found through foregroundWeights: its weight 1 + W d / 2 is monotone in
// the distance d, so the weight at d = 60 / 127.5 is the cut
const W = 1e3;
const evalMask = foregroundWeights(evalBatch, W).readSync();
const bgWeight = evalMask.reduce((m, v) => Math.min(m, v), Infinity); // d = 0 (8-bit video: the median is exact)
const cut = bgWeight * (1 + (W * (OBJECT_THRESHOLD / 127.5)) / 2);

const dump = a.dump ? resolve(a.dump) : null;
let batchFd = -1;
if (dump) {
  if (net.family !== 'wan-vae' || net.cfg.family !== 'wan-vae') throw new Error('--dump: only Wan VAE models have an official PyTorch twin to train');
  mkdirSync(dump, { recursive: true });
  writeFileSync(join(dump, 'config.json'), JSON.stringify(wanVaeConfigToJson(net.cfg.config), null, 2) + '\n');
  saveSafetensors(join(dump, 'init.safetensors'), wanVaeStateDict(net.module as WanVAE, 'original'));
  writeFileSync(join(dump, 'eval.f32'), evalBatch.readSync());
  writeFileSync(join(dump, 'eval_mask.u8'), Uint8Array.from(evalMask, (v) => (v > cut ? 1 : 0)));
  writeFileSync(join(dump, 'run.json'), JSON.stringify({ steps, batch, frames, lr, loss: kind, fgWeight: fg, warmup: 50, clip: 1, evalShape: evalBatch.shape, batchShape: [batch, 3, frames, crop, crop], every }, null, 2) + '\n');
  batchFd = openSync(join(dump, 'batches.f32'), 'w');
}
const history: { step: number; loss?: number; eval?: string; ms?: number }[] = [];

const reconstruct = (x: Tensor) => net.decodeTrain(net.encodeTrain(x, 0, rng).z);
function evaluate(): string {
  const y = noGrad(() => reconstruct(evalBatch)).readSync();
  const x = evalBatch.readSync();
  let se = 0;
  let objSe = 0;
  let objN = 0;
  for (let i = 0; i < y.length; i++) {
    const e = (y[i]! - x[i]!) ** 2;
    se += e;
    if (evalMask[i]! > cut) {
      objSe += e;
      objN++;
    }
  }
  // values in [-1, 1]: peak-to-peak 2
  const psnr = (s: number, n: number) => (10 * Math.log10(4 / (s / n))).toFixed(2);
  return `object ${psnr(objSe, objN)} dB, whole frame ${psnr(se, y.length)} dB`;
}

console.log(`${a.model}, ${set.train.length} clips, frames ${frames}, batch ${batch}, crop ${crop}, ${kind}${fg > 0 ? ` fg-weight ${fg}` : ''}, lr ${lr}, init ${a['residual-init']}, ${a['init-scale']} scale; CPU: ${cpus()[0]?.model ?? '?'}`);
console.log(`step 0: ${evaluate()}`);
const t0 = performance.now();
for (let s = 1; s <= steps; s++) {
  opt.schedule((peak) => Math.min(1, s / 50) * peak);
  const { x } = sampleBatch(set.train, { batch, frames, crop, stillProb: 0, flip: true }, rng);
  const ts = performance.now();
  if (batchFd >= 0) {
    const v = x.readSync();
    writeSync(batchFd, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
  const y = reconstruct(x);
  const loss = reconstructionLoss(y, x, kind, fg);
  loss.backward();
  clipGradNorm(params, 1);
  opt.step();
  opt.zeroGrad();
  const rec: { step: number; loss?: number; eval?: string; ms?: number } = { step: s, loss: loss.item(), ms: performance.now() - ts };
  history.push(rec);
  if (s % every === 0 || s === steps) {
    rec.eval = evaluate();
    console.log(`step ${s}: loss ${rec.loss!.toFixed(4)}, ${rec.eval} (${((performance.now() - t0) / s).toFixed(0)} ms/step)`);
  }
}
const stepMs = history.map((h) => h.ms!).sort((p, q) => p - q);
console.log(`median step ${stepMs[stepMs.length >> 1]!.toFixed(0)} ms over ${stepMs.length} steps (the batch written to --dump inside the step, evaluations outside)`);
if (dump) {
  closeSync(batchFd);
  writeFileSync(join(dump, 'ours.json'), JSON.stringify(history) + '\n');
}
