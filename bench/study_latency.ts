/**
 * What one generation costs at the shapes study's size (16 frames of 128x128, docs/studies/adapt.md): the decode of
 * DC-AE-V topologies against the study's base Wan VAE, and the sampling + decode of model folders.
 *
 *   node dist/bench/study_latency.js [--topologies JSON] [--folders DIR,DIR] [--reps 5] [--threads 1]
 *                                    [--steps 20] [--guidance 5] [--cfg-batch auto|on|off] [--json]
 *
 * - Decode: each `--topologies` entry ([widths, depths], 32 latent channels and 16-frame chunks, as the study's
 *   `dcaev_topology`) gets train-ae's init (the weights do not change the cost) and decodes one random latent of
 *   the clip at the topology's own factors (32 x 4 x 4 x 4 for f32t4; the depths decide the spatial factor: a
 *   depth-0 stage after the first does not down-sample); the base is `wan-vae:wan-vae-shapes` (16 x 4 x 16 x 16, which
 *   it decodes into 13 frames, 1 + 4k, as `dcvg generate` plans a 16-frame request for it). Each row names the video
 *   it decoded (`output`: frames x height x width). Default: the study's DC-AE-V
 *   of session 30 (f32), of sessions 31-32 (f16 by mistake) and from session 33 (f32; REAL_CONFIG's comment).
 * - `--folders`: model folders as `dcvg generate` reads them (e.g. the study's `base/evals/model`, `adapt/model`):
 *   sampling (UniPC, `--steps`, CFG `--guidance`, `--cfg-batch`) and decode of one caption, timed apart.
 *
 * Every figure is the median of `--reps` runs, wall and CPU (user + system of this process, all threads): on a machine
 * shared with other work the CPU time is the steadier one. The CPU model is printed with the results.
 */
import { cpus } from 'node:os';
import type { Module } from '../src/nn/module.js';
import { compressionFactors, DCAEV, topologyConfig } from '../src/models/dcaev/index.js';
import { WanVAE } from '../src/models/wan_vae/index.js';
import { DcaevAutoencoder, WanVaeAutoencoder, type VideoAutoencoder } from '../src/pipelines/autoencoder.js';
import { defaultEncoderLoaders } from '../src/pipelines/encoders.js';
import { decodeInto, denoise, encodePrompts, planGeneration } from '../src/pipelines/generation.js';
import { folderModels, resolveModelFolder } from '../src/pipelines/model_folder.js';
import { noGrad, Tensor } from '../src/tensor/tensor.js';
import { randn } from '../src/tensor/random.js';
import { resolveAEConfig } from '../src/train/ae_models.js';
import { initForTraining } from '../src/train/init.js';
import { cliArgs, median, useNativeBackend } from './profile.js';

const USAGE = `node dist/bench/study_latency.js [--topologies JSON] [--folders DIR,DIR] [--reps 5] [--threads 1] [--steps 20] [--guidance 5] [--cfg-batch auto|on|off] [--json]`;
const { opt, flag } = cliArgs(USAGE);
const DEFAULT_TOPOLOGIES = [
  [[16, 32, 64, 64, 64, 64, 128], [0, 1, 1, 1, 1, 1, 1]],
  [[8, 16, 32, 64, 64, 64, 128], [0, 0, 1, 1, 1, 1, 1]],
  [[8, 8, 16, 32, 64, 64, 128], [0, 1, 1, 1, 1, 1, 1]],
];
const topologies = JSON.parse(opt('--topologies', JSON.stringify(DEFAULT_TOPOLOGIES))) as [number[], number[]][];
const folders = opt('--folders', '').split(',').filter(Boolean);
const reps = Number(opt('--reps', '5'));
const threads = Number(opt('--threads', '1'));
const steps = Number(opt('--steps', '20'));
const guidance = Number(opt('--guidance', '5'));
const cfgMode = opt('--cfg-batch', 'auto');
if (!['auto', 'on', 'off'].includes(cfgMode)) throw new Error(`--cfg-batch: auto, on or off, got ${cfgMode}`);
const cfgBatch = cfgMode === 'auto' ? 'auto' : cfgMode === 'on';
useNativeBackend(threads);

interface Timed {
  wall_s: number;
  cpu_s: number;
}
async function timed(fn: () => unknown): Promise<Timed> {
  const c = process.cpuUsage();
  const t = performance.now();
  await fn();
  const u = process.cpuUsage(c);
  return { wall_s: (performance.now() - t) / 1000, cpu_s: (u.user + u.system) / 1e6 };
}
const med = (xs: Timed[]): Timed => ({ wall_s: +median(xs.map((x) => x.wall_s)).toFixed(4), cpu_s: +median(xs.map((x) => x.cpu_s)).toFixed(4) });
const params = (m: Module) => [...m.namedParams()].reduce((a, [, p]) => a + p.size, 0);
/** The decode's median time, and the video it makes (frames x height x width: 16 x 128 x 128 for the study). */
async function decodeCost(ae: VideoAutoencoder, z: Tensor): Promise<Timed & { output: string }> {
  const shape = noGrad(() => ae.decodeClip(z)).shape; // warm-up
  const runs: Timed[] = [];
  for (let i = 0; i < reps; i++) runs.push(await timed(() => noGrad(() => ae.decodeClip(z))));
  return { ...med(runs), output: shape.slice(2).join('x') };
}

const rows: Record<string, unknown>[] = [];
const base = new WanVAE(resolveAEConfig('wan-vae:wan-vae-shapes').config as ConstructorParameters<typeof WanVAE>[0]);
initForTraining(base, 0);
rows.push({ kind: 'decode', model: 'base wan-vae:wan-vae-shapes', decoder_params: params(base.decoder), ...(await decodeCost(new WanVaeAutoencoder(base), randn([1, 16, 4, 16, 16], 1))) });
for (const [widths, depths] of topologies) {
  const cfg = topologyConfig({ name: 'study-dc', widths, depths, latentChannels: 32, chunk: 16 });
  // the latent of a 16 x 128 x 128 clip at this topology's own factors (a depth-0 stage after the first does not
  // down-sample, so the depths decide the spatial factor)
  const f = compressionFactors(cfg);
  const m = new DCAEV(cfg);
  initForTraining(m, 0);
  const z = randn([1, 32, 16 / f.temporal, 128 / f.spatial, 128 / f.spatial], 1);
  rows.push({ kind: 'decode', model: `dc-ae-v f${f.spatial}t${f.temporal}c32 widths ${JSON.stringify(widths)} depths ${JSON.stringify(depths)}`, decoder_params: params(m.decoder), params: params(m), ...(await decodeCost(new DcaevAutoencoder(m), z)) });
}
for (const dir of folders) {
  const models = folderModels(resolveModelFolder(dir), defaultEncoderLoaders);
  const plan = planGeneration(models.ditConfig, models.aeGeometry, { frames: 16, width: 128, height: 128 }, 't2v');
  const enc = await encodePrompts(models, ['a small red circle moving left on a black background', ''], models.ditConfig.text_len, models.ditConfig.text_dim, null);
  const dit = await models.dit();
  const ae = await models.autoencoder();
  const d: Timed[] = [];
  const k: Timed[] = [];
  for (let i = 0; i <= reps; i++) {
    let z: Tensor | null = null;
    const s = await timed(() => (z = denoise(dit, plan, enc.embeddings[0]!, enc.embeddings[1]!, { steps, guidance, shift: 5, seed: i, sampler: 'unipc', cfgBatch })));
    const dec = await timed(() => decodeInto(ae, z!, plan, { write: async () => {} }));
    if (i === 0) continue; // warm-up
    d.push(s);
    k.push(dec);
  }
  rows.push({ kind: 'generate', model: dir, tokens: plan.tokens, steps, guidance, cfg_batch: cfgMode, denoise: med(d), decode: med(k) });
}
const cpu = cpus()[0]?.model ?? 'unknown CPU';
if (flag('--json')) process.stdout.write(JSON.stringify({ cpu, threads, reps, rows }) + '\n');
else {
  process.stdout.write(`${cpu}, ${threads} thread(s), median of ${reps}\n`);
  for (const r of rows) {
    if (r.kind === 'decode') process.stdout.write(`decode ${r.output}  ${String(r.model).padEnd(64)} wall ${(r as unknown as Timed).wall_s.toFixed(3)} s  cpu ${(r as unknown as Timed).cpu_s.toFixed(3)} s  (${r.decoder_params} decoder params)\n`);
    else {
      const g = r as { model: string; tokens: number; denoise: Timed; decode: Timed };
      process.stdout.write(`generate ${g.model} (${g.tokens} tokens): sampling wall ${g.denoise.wall_s.toFixed(3)} s cpu ${g.denoise.cpu_s.toFixed(3)} s; decode wall ${g.decode.wall_s.toFixed(3)} s cpu ${g.decode.cpu_s.toFixed(3)} s\n`);
    }
  }
}
