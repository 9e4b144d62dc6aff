/**
 * `dcvg study adapt` at the smoke scale: the whole graph end to end (every stage's outputs, the report, model folders
 * that `dcvg generate` reads), resume after interruptions mid-stage giving the same files as an uninterrupted run, and
 * clear errors for bad configs and folders.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, describe, it } from 'node:test';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { readFrameBytes } from '../src/io/video.js';
import { resolveModelFolder } from '../src/pipelines/model_folder.js';
import { SMOKE_CONFIG, resolveStudyConfig } from '../src/study/config.js';
import { captionTokenizer } from '../src/study/world.js';
import { loadTokenizerSync, toTokenizerJson } from '../src/text/index.js';
import { repoRoot } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'dcvg-study-adapt-'));
after(() => rmSync(root, { recursive: true, force: true }));
const main = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const env = { ...process.env, DCVG_NO_PROGRESS: '1', OMP_WAIT_POLICY: 'passive' };

/** Runs the study; with `stopOn`, sends SIGTERM once when stderr first matches it. */
function study(args: string[], stopOn?: RegExp): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [main, 'study', 'adapt', ...args], { env });
    let stdout = '';
    let stderr = '';
    let sent = false;
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => {
      stderr += d;
      if (stopOn && !sent && stopOn.test(stderr)) {
        sent = true;
        p.kill('SIGTERM');
      }
    });
    p.on('close', (code) => res({ code, stdout, stderr }));
  });
}

/** Files whose content depends on time (per-step milliseconds, latency, the log of commands): not compared. */
const TIMED = /(^|\/)(train\.jsonl|loss\.png|eval\.png|commands\.jsonl|latency\.json)$|^report\//;

function hashes(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else {
        const rel = relative(dir, p);
        if (!TIMED.test(rel)) out.set(rel, createHash('sha256').update(readFileSync(p)).digest('hex'));
      }
    }
  };
  walk(dir);
  return out;
}

const LATE = ['base', 'adapt', 'arms', 'report'];

describe('dcvg study adapt (smoke scale)', () => {
  const A = join(root, 'study');
  const ref = join(root, 'study-uninterrupted');
  // two base segments, so the interruption lands inside a segmented trainer
  const cfgFile = join(root, 'config.json');
  writeFileSync(cfgFile, JSON.stringify({ base: { steps: 6, evalEvery: 3 }, adapt: { lora: { steps: 4, evalEvery: 4 } } }));

  it('runs the whole graph: every stage complete, the report and its images, model folders generate reads', async () => {
    const r = await study(['--scale', 'smoke', '--config', cfgFile, '--out', A, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { stages: { stage: string; status: string }[] };
    assert.deepEqual(summary.stages.map((s) => s.stage), ['data', 'autoencoders', 'text', 'latents', 'base', 'adapt', 'arms', 'report']);
    for (const s of ['data', 'autoencoders', 'text', 'latents', 'base', 'adapt', 'arms']) assert.ok(existsSync(join(A, s, 'done.json')), `${s}/done.json`);
    for (const f of [
      'data/train/train_000000.mkv', 'data/train/train_000000.txt', 'data/train/manifest.json', 'data/held-out/manifest.json', 'data/prompts.json',
      'autoencoders/base/model.safetensors', 'autoencoders/dc/model.safetensors', 'autoencoders/base.scaled.json', 'autoencoders/dc.scaled.json',
      'autoencoders/base.gate.json', 'autoencoders/dc.gate.json',
      'text/tokenizer/tokenizer.json', 'text/umt5.safetensors', 'latents/base/manifest.json', 'latents/adapt/manifest.json',
      'base/run/model.safetensors', 'base/evals/scores.jsonl', 'adapt/align/patch_embedding.safetensors', 'adapt/assembled.safetensors',
      'adapt/tune/model.safetensors', 'adapt/lora/model.safetensors', 'adapt/tune-evals/scores.jsonl', 'adapt/lora-evals/scores.jsonl',
      'arms/no-align/lora-evals/scores.jsonl', 'arms/full-ft/evals/scores.jsonl', 'arms/scratch/evals/scores.jsonl', 'arms/latency.json',
    ])
      assert.ok(existsSync(join(A, f)), f);
    // the base DiT was evaluated after each segment; phase 2 also before its first step
    const steps = (p: string) => readFileSync(join(A, p), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
    assert.deepEqual(steps('base/evals/scores.jsonl'), [3, 6]);
    // each autoencoder was gated on the config's held-out clip (the smoke models pass a 0% minimum)
    for (const k of ['base', 'dc']) {
      const g = JSON.parse(readFileSync(join(A, `autoencoders/${k}.gate.json`), 'utf8')) as { clips: { file: string }[]; minAccuracy: number; passed: boolean; accuracy: number };
      assert.deepEqual(g.clips.map((c) => c.file), ['held-out_000000.mkv']);
      assert.equal(g.passed, true);
      assert.ok(g.accuracy >= 0 && g.accuracy <= 100);
    }
    assert.deepEqual(steps('adapt/tune-evals/scores.jsonl'), [0, SMOKE_CONFIG.adapt.tune.steps]);
    assert.deepEqual(steps('adapt/lora-evals/scores.jsonl'), [4]);
    const score = JSON.parse(readFileSync(join(A, 'base/evals/scores.jsonl'), 'utf8').split('\n')[0]!) as { train: { accuracy: number; clips: number }; heldOut: { clips: number } };
    assert.equal(score.train.clips, SMOKE_CONFIG.eval.trainPrompts * SMOKE_CONFIG.eval.seeds);
    assert.equal(score.heldOut.clips, SMOKE_CONFIG.eval.heldOutPrompts * SMOKE_CONFIG.eval.seeds);
    assert.ok(score.train.accuracy >= 0 && score.train.accuracy <= 100);
    // latent folders: the base DiT's holds the base latents (16 channels, f8), the adapt one both
    const lat = JSON.parse(readFileSync(join(A, 'latents/adapt/manifest.json'), 'utf8')) as { clips: unknown[]; shards: string[] };
    assert.equal(lat.clips.length, SMOKE_CONFIG.data.train);
    // the base autoencoder is the Wan-VAE topology trained by train-ae --model wan-vae:..., encoded as the Wan VAE
    const cmds = readFileSync(join(A, 'commands.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { argv: string[] }).argv);
    const trainAeArgv = cmds.filter((a) => a[0] === 'train-ae');
    const trainAe = trainAeArgv.map((a) => a[a.indexOf('--model') + 1]!);
    const flag = (a: string[], k: string) => (a.includes(k) ? a[a.indexOf(k) + 1]! : null);
    // the base autoencoder's pretraining run (single frames, batch 2), then its main run started from its weights
    assert.equal(trainAeArgv.length, 4);
    assert.deepEqual([flag(trainAeArgv[0]!, '--out'), flag(trainAeArgv[0]!, '--frames'), flag(trainAeArgv[0]!, '--batch'), flag(trainAeArgv[0]!, '--steps')], [join(A, 'autoencoders', 'base-pretrain'), '1', '2', '1']);
    assert.deepEqual([flag(trainAeArgv[1]!, '--out'), flag(trainAeArgv[1]!, '--init'), flag(trainAeArgv[1]!, '--frames')], [join(A, 'autoencoders', 'base'), join(A, 'autoencoders', 'base-pretrain', 'model.safetensors'), '13']);
    // the DC autoencoder's pretraining run: 4-frame windows of its 4-frame-chunk twin (pretrain.chunk), then its main
    // run (the 16-frame-chunk model) from those weights
    assert.deepEqual([flag(trainAeArgv[2]!, '--out'), flag(trainAeArgv[2]!, '--frames'), flag(trainAeArgv[2]!, '--init')], [join(A, 'autoencoders', 'dc-pretrain'), '4', null]);
    assert.deepEqual([flag(trainAeArgv[3]!, '--out'), flag(trainAeArgv[3]!, '--init'), flag(trainAeArgv[3]!, '--frames')], [join(A, 'autoencoders', 'dc'), join(A, 'autoencoders', 'dc-pretrain', 'model.safetensors'), '16']);
    const chunks = (f: string) => [...readFileSync(f, 'utf8').matchAll(/ChunkCausal\w+((?:@\d+)+)"/g)].map((m) => Number(m[1]!.split('@').at(-1)));
    assert.deepEqual([...new Set(chunks(trainAe[2]!))].sort((p, q) => p - q), [1, 4], 'the pretraining twin: chunk 4 (1 at the latent rate)');
    assert.deepEqual([...new Set(chunks(trainAe[3]!))].sort((p, q) => p - q), [4, 16], 'the main model: chunk 16 (4 at the latent rate)');
    assert.match(trainAe[0]!, /^wan-vae:.*base\.model\.json$/);
    assert.equal(trainAe[1], trainAe[0]);
    assert.ok(!trainAe[3]!.startsWith('wan-vae:'));
    assert.ok(cmds.some((a) => a[0] === 'latents' && a.includes('--wan-vae') && a.includes('--dc-ae')));
    // its normalisation: per-channel mean / std of mu measured on the training clips, the same in latents and generation
    const aes = (JSON.parse(readFileSync(join(A, 'autoencoders/done.json'), 'utf8')) as { models: Record<string, { family: string; latentsMean?: number[]; latentsStd?: number[] }> }).models;
    assert.equal(aes.base!.family, 'wan-vae');
    assert.equal(aes.dc!.family, 'dc-ae-v');
    const scaled = JSON.parse(readFileSync(join(A, 'autoencoders/base.scaled.json'), 'utf8')) as { latents_mean: number[]; latents_std: number[] };
    assert.deepEqual([scaled.latents_mean, scaled.latents_std], [aes.base!.latentsMean, aes.base!.latentsStd]);
    assert.ok(scaled.latents_std.some((s) => Math.abs(s - 1) > 1e-3), 'measured, not the preset 0 / 1');
    // measured on these clips' frames (all 6 of them): the normalised latents have per-channel mean 0 and std 1 up to
    // the constants' rounding to 6 digits (~1e-6 relative) and float32 sums; 1e-3 leaves room for both (f32 storage)
    const parts = lat.shards.map((f) => {
      const shard = SafetensorsFile.open(join(A, 'latents/adapt', f));
      const w = shard.tensor('wan_latents', { dtype: 'f32' });
      // encoded with the measured normalisation (the settings dcvg latents records)
      const settings = JSON.parse(shard.metadata.settings!) as { wan_vae: { config: string } };
      const cfg = JSON.parse(settings.wan_vae.config) as { latents_mean: number[]; latents_std: number[] };
      assert.deepEqual([cfg.latents_mean, cfg.latents_std], [scaled.latents_mean, scaled.latents_std]);
      shard.close();
      return w;
    });
    const [, C, T, H, W] = parts[0]!.shape as [number, number, number, number, number];
    const n = parts.reduce((a, w) => a + w.shape[0]!, 0);
    assert.deepEqual([n, C, T, H, W], [SMOKE_CONFIG.data.train, 16, SMOKE_CONFIG.latents.latentFrames, 16, 16]);
    const z = Float32Array.from(parts.flatMap((w) => [...w.readSync()]));
    const per = T * H * W;
    for (let c = 0; c < C; c++) {
      let s1 = 0;
      let s2 = 0;
      for (let i = 0; i < n; i++)
        for (let j = 0; j < per; j++) {
          const q = z[(i * C + c) * per + j]!;
          s1 += q;
          s2 += q * q;
        }
      const m = s1 / (n * per);
      assert.ok(Math.abs(m) < 1e-3 && Math.abs(Math.sqrt(s2 / (n * per) - m * m) - 1) < 1e-3, `channel ${c}: mean ${m}, second moment ${s2 / (n * per)}`);
    }
    // the model folders are what dcvg generate reads: base (patch 1x2x2 on the Wan VAE), adapted (1x1x1 on DC-AE-V)
    const b = resolveModelFolder(join(A, 'base', 'model'));
    const d = resolveModelFolder(join(A, 'adapt', 'model'));
    assert.deepEqual(b.dit.parsed.patch_size, [1, 2, 2]);
    assert.equal(b.vae.family, 'wan-vae');
    assert.deepEqual(b.vae.family === 'wan-vae' && [b.vae.parsed.latents_mean, b.vae.parsed.latents_std], [scaled.latents_mean, scaled.latents_std]);
    assert.deepEqual(d.dit.parsed.patch_size, [1, 1, 1]);
    assert.equal(d.vae.family, 'dc-ae-v');
    assert.equal(d.dit.parsed.in_dim, 32);
    // the data folder is the one dcvg data shapes makes with the recorded arguments (the held-out split: one video)
    const held = cmds.find((a) => a[0] === 'data' && a.includes('held-out'))!;
    const mine = join(root, 'held-out-by-hand');
    const made = spawnSync(process.execPath, [main, ...held.map((a) => (a === join(A, 'data', 'held-out') ? mine : a))], { env, encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    // (the same manifest and captions; the same decoded frames: the .mkv container carries a random segment id)
    const ours = join(A, 'data', 'held-out');
    const files = (d: string) => new Map([...hashes(d)].filter(([k]) => !k.endsWith('.mkv')));
    assert.deepEqual(files(mine), files(ours));
    assert.deepEqual(readdirSync(mine).sort(), readdirSync(ours).sort());
    for (const f of readdirSync(ours).filter((x) => x.endsWith('.mkv'))) assert.deepEqual((await readFrameBytes(join(mine, f))).data, (await readFrameBytes(join(ours, f))).data, f);
    const report = readFileSync(join(A, 'report', 'adapt.md'), 'utf8');
    for (const h of ['### Scores', 'Claim (c)', 'Claim (d)', 'Contact sheets', '### Commands', 'dcvg data shapes --out "$OUT/data/train"', 'dcvg train-ae --model "wan-vae:$OUT/autoencoders/base.model.json"', 'dcvg adapt lora', '(a) without alignment', '(b) full fine-tuning'])
      assert.ok(report.includes(h), `report has "${h}"`);
    for (const png of ['score-train.png', 'score-held-out.png', 'sheet-base.png', 'sheet-adapted.png'])
      assert.deepEqual([...readFileSync(join(A, 'report', png)).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], png);
    // a second run skips every complete stage
    const again = await study(['--out', A, '--resume', '--stages', 'data,base', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual((JSON.parse(again.stdout) as { stages: { status: string }[] }).stages.map((s) => s.status), ['skipped (complete)', 'skipped (complete)']);
  });

  it('dcvg study export ships the adapted model: the final merged DiT, its scores in the card, generate reads it', async () => {
    assert.ok(existsSync(join(A, 'adapt', 'done.json')), 'needs the first test');
    const to = join(root, 'exported');
    const r = spawnSync(process.execPath, [main, 'study', 'export', '--out', A, '--to', to, '--json'], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { scores: { adapted: unknown; base: unknown } };
    const done = (s: string) => JSON.parse(readFileSync(join(A, s, 'done.json'), 'utf8')) as { lora: unknown; score: unknown };
    assert.deepEqual([j.scores.adapted, j.scores.base], [done('adapt').lora, done('base').score]);
    const f = resolveModelFolder(to);
    assert.ok(readFileSync(f.dit.path).equals(readFileSync(join(A, 'adapt', 'lora-merged', 'step-4.safetensors'))), 'the DiT is phase 3 merged at its last step');
    assert.ok(readFileSync(f.vae.config!).equals(readFileSync(join(A, 'autoencoders', 'dc.scaled.json'))), 'DC-AE-V with its measured scaling factor');
    const out = join(root, 'exported.y4m');
    const g = spawnSync(process.execPath, [main, 'generate', 'a small red circle moving left on a black background', '--model', to, '-o', out, '--steps', '1', '--no-cache'], { env, encoding: 'utf8' });
    assert.equal(g.status, 0, g.stderr);
    const v = await readFrameBytes(out);
    assert.deepEqual([v.width, v.height, v.frames], [128, 128, 16]);
    rmSync(to, { recursive: true });
    rmSync(out);
  });

  it('resumes after interruptions mid-stage with the same outputs as an uninterrupted run', async (t) => {
    assert.ok(existsSync(join(A, 'report')), 'needs the first test');
    // the same path for both runs (files record their inputs' paths): keep the finished study aside, restart the late
    // stages in its place from the same early stages
    cpSync(A, ref, { recursive: true });
    for (const s of LATE) rmSync(join(A, s), { recursive: true, force: true });
    // 1. SIGTERM inside the base DiT's second segment (train-dit stops after its step, with a checkpoint)
    // (where the stop lands depends on when the signal arrives: after the step running then, or between evaluation clips)
    const stoppedIn = () => LATE.find((st) => !existsSync(join(A, st, st === 'report' ? 'adapt.md' : 'done.json')));
    let r = await study(['--out', A, '--resume', '--log-every', '1'], /train-dit: resuming at step 3[\s\S]*step 4\/6/);
    assert.equal(r.code, 143, r.stderr);
    assert.ok(existsSync(join(A, 'base', 'run', 'checkpoint.safetensors')));
    // what a copy of the folder must carry to continue elsewhere: the unfinished run's checkpoint only (not the
    // finished autoencoder runs')
    const carry = spawnSync(process.execPath, [main, 'study', 'adapt', '--out', A, '--checkpoints-to-carry'], { env, encoding: 'utf8' });
    assert.equal(carry.status, 0, carry.stderr);
    // (unless the signal landed after the run's last step: then it is finished too)
    const unfinished = !existsSync(join(A, 'base', 'run', 'finished.json'));
    assert.deepEqual(carry.stdout.split('\n').filter(Boolean), unfinished ? [join(A, 'base', 'run', 'checkpoint.safetensors')] : []);
    t.diagnostic(`first stop in stage ${stoppedIn()}`);
    assert.notEqual(stoppedIn(), undefined);
    // 2. SIGTERM inside phase 3 (adapt lora)
    r = await study(['--out', A, '--resume', '--log-every', '1'], /adapt lora: new run[\s\S]*step 1\//);
    assert.equal(r.code, 143, r.stderr);
    t.diagnostic(`second stop in stage ${stoppedIn()}`);
    assert.notEqual(stoppedIn(), undefined);
    // 3. to the end
    r = await study(['--out', A, '--resume']);
    assert.equal(r.code, 0, r.stderr);
    const want = hashes(ref);
    const got = hashes(A);
    assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), 'the same files');
    const differ = [...want].filter(([k, h]) => got.get(k) !== h).map(([k]) => k);
    assert.deepEqual(differ, [], 'the same contents');
    renameSync(ref, `${ref}-done`);
  });

  it('continues on another machine from the files a repository keeps: videos and latents remade, finished runs kept by their weights', async () => {
    const done = `${ref}-done`;
    assert.ok(existsSync(done), 'needs the resume test');
    // what a clone of a repository holding the study folder has (docs/studies/adapt.md "Across machines"): no rendered
    // videos, no latents, no checkpoints of finished runs; here the autoencoders stage and everything after it unfinished
    const cmds = () => readFileSync(join(A, 'commands.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { stage: string; argv: string[] }));
    const before = cmds().length;
    for (const s of [...LATE, 'latents']) rmSync(join(A, s), { recursive: true, force: true });
    rmSync(join(A, 'autoencoders', 'done.json'));
    for (const d of ['train', 'held-out']) rmSync(join(A, 'data', d), { recursive: true });
    const aeRuns = readdirSync(join(A, 'autoencoders')).filter((n) => existsSync(join(A, 'autoencoders', n, 'checkpoint.safetensors')));
    assert.ok(aeRuns.length >= 2, `autoencoder runs: ${aeRuns.join(', ')}`);
    for (const n of aeRuns) rmSync(join(A, 'autoencoders', n, 'checkpoint.safetensors'));
    let r = await study(['--out', A, '--resume']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\[data\] complete, but its videos are missing here/);
    const added = cmds().slice(before);
    assert.deepEqual(added.filter((c) => c.argv[0] === 'data' || c.argv[0] === 'train-ae'), [], 'nothing re-recorded, no autoencoder trained again');
    assert.ok(added.some((c) => c.argv[0] === 'latents'), 'the latents stage ran');
    const noCkpt = (m: Map<string, string>) => new Map([...m].filter(([k]) => !/^autoencoders\/[^/]+\/checkpoint\.safetensors$/.test(k)));
    const want = noCkpt(hashes(done));
    // the same files, the same contents (videos: the same frames; Matroska files carry a random segment id)
    const same = async () => {
      const got = hashes(A);
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), 'the same files');
      assert.deepEqual([...want].filter(([k, h]) => got.get(k) !== h && !k.endsWith('.mkv')).map(([k]) => k), [], 'the same contents');
      for (const k of [...want.keys()].filter((x) => x.endsWith('.mkv'))) assert.deepEqual((await readFrameBytes(join(A, k))).data, (await readFrameBytes(join(done, k))).data, k);
    };
    await same();
    // the arms stage again, without videos and latents: both remade before it runs, not recorded
    for (const s of ['arms', 'report']) rmSync(join(A, s), { recursive: true });
    for (const d of ['train', 'held-out']) rmSync(join(A, 'data', d), { recursive: true });
    for (const d of ['adapt', 'base']) rmSync(join(A, 'latents', d), { recursive: true });
    const before2 = cmds().length;
    r = await study(['--out', A, '--resume']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\[latents\] complete, but the latents are missing here/);
    assert.deepEqual(cmds().slice(before2).filter((c) => c.argv[0] === 'data' || c.argv[0] === 'latents'), []);
    await same();
    // a finished run's weights without its checkpoint, below the steps asked for: refused, naming the folder (on a
    // copy: the later tests use this folder as it is)
    const C = join(root, 'study-copy');
    cpSync(A, C, { recursive: true });
    rmSync(join(C, 'autoencoders', 'done.json'));
    const steps = (JSON.parse(readFileSync(join(C, 'study.json'), 'utf8')) as { config: { autoencoders: { base: { steps: number } } } }).config.autoencoders.base.steps;
    const more = join(root, 'more.json');
    writeFileSync(more, JSON.stringify({ autoencoders: { base: { steps: steps + 1 } } }));
    r = await study(['--out', C, '--resume', '--config', more, '--stages', 'autoencoders']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /autoencoders\/base has weights at step \d+ of \d+ but no checkpoint\.safetensors/);
    rmSync(C, { recursive: true });
  });

  it('refuses bad configs and folders with one clear line, writing nothing', async () => {
    const bad = (override: unknown) => {
      const f = join(root, `bad-${Math.random().toString(36).slice(2)}.json`);
      writeFileSync(f, JSON.stringify(override));
      const out = join(root, `out-${Math.random().toString(36).slice(2)}`);
      const r = spawnSync(process.execPath, [main, 'study', 'adapt', '--scale', 'smoke', '--config', f, '--out', out], { env, encoding: 'utf8' });
      assert.equal(r.status, 1);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.ok(!existsSync(out), 'no output folder');
      return r.stderr;
    };
    assert.match(bad({ base: { stepz: 3 } }), /unknown key "base\.stepz"/);
    assert.match(bad({ base: { steps: -1 } }), /"base\.steps" must be a positive number, got -1/);
    assert.match(bad({ eval: { seeds: 1.5 } }), /"eval\.seeds" must be an integer/);
    assert.match(bad({ eval: { sampler: 'ddim' } }), /"eval\.sampler" must be "unipc" or "euler"/);
    assert.match(bad({ arms: { noAlign: 'yes' } }), /"arms\.noAlign" must be true or false/);
    assert.match(bad([1, 2]), /must hold a JSON object/);
    // the base autoencoder is the Wan-VAE topology, the other DC-AE-V
    assert.match(bad({ autoencoders: { base: { model: 'dcaev-shapes-f32c32' } } }), /"autoencoders\.base\.model" "dcaev-shapes-f32c32" is a dc-ae-v; the base autoencoder is in the Wan-VAE topology/);
    assert.match(bad({ autoencoders: { dc: { model: 'wan-vae:wan-vae-shapes' } } }), /"autoencoders\.dc\.model" "wan-vae:wan-vae-shapes" is a wan-vae; the DC autoencoder is a DC-AE-V/);
    assert.match(bad({ autoencoders: { base: { model: 'wan-vae:nope.json' } } }), /"autoencoders\.base\.model" "wan-vae:nope\.json" is no train-ae --model spec/);
    // the DC latent grid must be the base's halved on each spatial axis: a depth-0 stage after the first makes f16
    assert.match(
      bad({ autoencoders: { dc: { model: { dcaev_topology: { widths: [4, 4, 8, 8, 8, 8, 16], depths: [0, 0, 1, 1, 1, 1, 1], latentChannels: 32, chunk: 16 } } } } }),
      /the DC autoencoder compresses f16t4 and the base f8t4; the study needs the DC one to compress 4x more on each spatial axis at the same temporal factor \(f32t4/,
    );
    assert.match(bad({ aeGate: { minAccuracy: 101 } }), /"aeGate\.minAccuracy" must be a percentage in \[0, 100\]/);
    assert.match(bad({ aeGate: { clips: 99 } }), /"aeGate\.clips" \(99\) is more than the held-out videos rendered/);
    const flag = spawnSync(process.execPath, [main, 'study', 'adapt', '--bogus'], { env, encoding: 'utf8' });
    assert.match(flag.stderr, /^dcvg study: Unknown option '--bogus'.* \(see dcvg study adapt --help\)\n$/);
    const stage = spawnSync(process.execPath, [main, 'study', 'adapt', '--out', join(root, 'never'), '--stages', 'data,lunch'], { env, encoding: 'utf8' });
    assert.match(stage.stderr, /--stages: unknown stage "lunch"/);
    assert.ok(!existsSync(join(root, 'never')));
    // the API says the same
    assert.throws(() => resolveStudyConfig('huge'), /unknown --scale "huge"/);
    // a pretraining chunk is a DC-AE-V topology's, a multiple of its temporal factor, with whole chunks per window
    assert.throws(() => resolveStudyConfig('smoke', { autoencoders: { base: { pretrain: { chunk: 4 } } } }), /"autoencoders\.base\.pretrain\.chunk" 4 needs a \{"dcaev_topology": \.\.\.\} model/);
    assert.throws(() => resolveStudyConfig('smoke', { autoencoders: { dc: { pretrain: { chunk: 6 } } } }), /"autoencoders\.dc\.pretrain\.chunk" 6 must be a multiple of the temporal factor 4, and "pretrain\.frames" \(4\) a whole number/);
    assert.throws(() => resolveStudyConfig('smoke', { autoencoders: { dc: { pretrain: { chunk: 8 } } } }), /"pretrain\.frames" \(4\) a whole number of such chunks/);
    assert.throws(() => resolveStudyConfig('smoke', { autoencoders: { dc: { pretrain: { chunk: -4 } } } }), /"autoencoders\.dc\.pretrain\.chunk" must be a number >= 0, got -4/);
    assert.equal(resolveStudyConfig('smoke', { autoencoders: { dc: { pretrain: { chunk: 0, frames: 16 } } } }).autoencoders.dc.pretrain.chunk, 0);
    // a study folder keeps its config: another one is refused, naming the first key that differs
    const r = spawnSync(process.execPath, [main, 'study', 'adapt', '--scale', 'real', '--out', A, '--stages', 'data'], { env, encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /holds a study with another config \("scale": "smoke" there, "real" given\)/);
    // a finished autoencoders stage keeps its budgets (later stages were built on its models)
    const raise = join(root, 'raise.json');
    writeFileSync(raise, JSON.stringify({ autoencoders: { dc: { steps: 50 } } }));
    const r1 = spawnSync(process.execPath, [main, 'study', 'adapt', '--resume', '--config', raise, '--out', A, '--stages', 'data'], { env, encoding: 'utf8' });
    assert.equal(r1.status, 1);
    assert.match(r1.stderr, /"autoencoders\.dc\.steps": the autoencoders stage is complete/);
    const r0 = spawnSync(process.execPath, [main, 'study', 'adapt', '--resume', '--scale', 'real', '--out', A], { env, encoding: 'utf8' });
    assert.match(r0.stderr, /--resume continues with the config the study was started with; leave out --scale/);
    const r2 = spawnSync(process.execPath, [main, 'study', 'adapt', '--resume', '--out', join(root, 'nothing')], { env, encoding: 'utf8' });
    assert.match(r2.stderr, /nothing to resume in .*nothing \(no study\.json\)/);
  });

  it('stops before the latents when an autoencoder fails its gate, saying why', async () => {
    // the smoke models reconstruct nothing a scorer can read: a 100% minimum fails the base autoencoder
    const out = join(root, 'gated');
    const f = join(root, 'gate-config.json');
    writeFileSync(f, JSON.stringify({ aeGate: { minAccuracy: 100 } }));
    const r = await study(['--scale', 'smoke', '--config', f, '--out', out, '--stages', 'data,autoencoders']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the base autoencoder fails its gate: its reconstructions of 1 held-out videos read [\d.]+% attribute accuracy .*below the 100% required \("aeGate\.minAccuracy"\); per clip: .*base\.gate\.json\. A DiT cannot learn what its latents lose: train it longer \(dcvg study adapt --out .* --resume --config FILE, FILE \{"autoencoders": \{"base": \{"steps": N\}\}\} with N above its 2\), or with another recipe/);
    const g = JSON.parse(readFileSync(join(out, 'autoencoders', 'base.gate.json'), 'utf8')) as { passed: boolean };
    assert.equal(g.passed, false);
    assert.ok(!existsSync(join(out, 'autoencoders', 'done.json')), 'the stage is not complete');
    assert.ok(!existsSync(join(out, 'autoencoders', 'dc')), 'the DC autoencoder never started');

    // --resume --config may raise the failed autoencoder's step budget: its run continues from its checkpoint
    const more = join(root, 'more-steps.json');
    writeFileSync(more, JSON.stringify({ autoencoders: { base: { steps: 3 } } }));
    const r2 = await study(['--resume', '--config', more, '--out', out, '--stages', 'data,autoencoders']);
    assert.equal(r2.code, 1, 'the smoke model still fails a 100% gate');
    assert.match(r2.stderr, /the base autoencoder fails its gate/);
    const logged = readFileSync(join(out, 'autoencoders', 'base', 'train.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step?: number }).step ?? 0);
    assert.equal(Math.max(...logged), 3, 'the base run continued to step 3');
    const last = (readFileSync(join(out, 'commands.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { argv: string[] }).argv)).at(-1)!;
    const at = (k: string) => last[last.indexOf(k) + 1];
    assert.deepEqual([last[0], at('--out'), at('--steps'), last.includes('--resume')], ['train-ae', join(out, 'autoencoders', 'base'), '3', true]);
    const saved = JSON.parse(readFileSync(join(out, 'study.json'), 'utf8')) as { config: { autoencoders: { base: { steps: number } } }; changes: { key: string; from: number; to: number }[] };
    assert.equal(saved.config.autoencoders.base.steps, 3);
    assert.deepEqual(saved.changes.map(({ key, from, to }) => ({ key, from, to })), [{ key: 'autoencoders.base.steps', from: 2, to: 3 }]);
    // a run finished at a lower budget and resumed past it is unfinished: its checkpoint is carried (the run of
    // session 34 kept the finished.json of its first budget while it trained on); finished at its step, it is not
    const carry = () => spawnSync(process.execPath, [main, 'study', 'adapt', '--out', out, '--checkpoints-to-carry'], { env, encoding: 'utf8' }).stdout;
    const baseCkpt = join(out, 'autoencoders', 'base', 'checkpoint.safetensors');
    const fin = join(out, 'autoencoders', 'base', 'finished.json');
    assert.deepEqual(JSON.parse(readFileSync(fin, 'utf8')), { steps: 3 });
    assert.ok(!carry().includes(baseCkpt));
    writeFileSync(fin, JSON.stringify({ steps: 2 }));
    assert.ok(carry().includes(baseCkpt), 'finished at step 2, its checkpoint at 3');
    writeFileSync(fin, JSON.stringify({ steps: 3 }));
    // nothing else may change, nor a budget go down or stay
    const refused = async (o: unknown, re: RegExp) => {
      writeFileSync(more, JSON.stringify(o));
      const r = await study(['--resume', '--config', more, '--out', out, '--stages', 'data']);
      assert.equal(r.code, 1, JSON.stringify(o));
      assert.match(r.stderr, re);
    };
    await refused({ aeGate: { minAccuracy: 0 } }, /"aeGate\.minAccuracy" cannot change in a started study \(only an autoencoder's steps \(lower only above the step its run has reached\) and the rest of its recipe \(model, pretrain\.\*, lr, warmup, seed, batch, crop, extra\.\*: before its runs start\), while the autoencoders stage is not complete, and dit\.\*, base\.\*/);
    await refused({ eval: { seeds: 3 } }, /"eval\.seeds" cannot change in a started study/);
    await refused({ base: { lr: -1 } }, /"base\.lr" must be a positive number, got -1/);
    await refused({ autoencoders: { base: { steps: 3 } } }, /"autoencoders\.base\.steps" must be a positive integer other than its current 3, got 3/);
    await refused({ autoencoders: { base: { steps: 2 } } }, /"autoencoders\.base\.steps": the base autoencoder's run has reached step 3 \(.*autoencoders\/base\), at or past the 2 asked for/);
    await refused({ autoencoders: { base: { holdout: 1 } } }, /"autoencoders\.base\.holdout" cannot change/);
    // a recipe may change only before any of its runs started: the base's has, the DC's has not
    await refused({ autoencoders: { base: { model: 'wan-vae:wan-vae-shapes' } } }, /"autoencoders\.base\.model": the base autoencoder's training has started with its recipe \(.*autoencoders\/base.*\); another model needs those folders gone/);
    await refused({ autoencoders: { base: { lr: 1 } } }, /"autoencoders\.base\.lr": the base autoencoder's training has started with its recipe .*; another lr needs those folders gone/);
    await refused({ autoencoders: { base: { pretrain: { steps: 0 } } } }, /"autoencoders\.base\.pretrain\.steps": the base autoencoder's training has started with its recipe .*; another pretrain\.steps needs/);
    await refused({ autoencoders: { dc: { lr: -1 } } }, /"autoencoders\.dc\.lr" must be a positive number, got -1/);
    await refused({ autoencoders: { dc: { model: 'wan-vae:wan-vae-shapes' } } }, /"autoencoders\.dc\.model" "wan-vae:wan-vae-shapes" is a wan-vae; the DC autoencoder is a DC-AE-V/);
    assert.equal((JSON.parse(readFileSync(join(out, 'study.json'), 'utf8')) as { changes: unknown[] }).changes.length, 1, 'refusals change nothing');
    // a lower budget for a run below it: the base's (at step 3) after a raise to 6, and the DC's (never started)
    for (const [o, key, from, to] of [
      [{ autoencoders: { base: { steps: 6 } } }, 'autoencoders.base.steps', 3, 6],
      [{ autoencoders: { base: { steps: 4 } } }, 'autoencoders.base.steps', 6, 4],
      [{ autoencoders: { dc: { steps: 1 } } }, 'autoencoders.dc.steps', 2, 1],
    ] as const) {
      writeFileSync(more, JSON.stringify(o));
      const r = await study(['--resume', '--config', more, '--out', out, '--stages', 'data']);
      assert.equal(r.code, 0, r.stderr);
      const c = JSON.parse(readFileSync(join(out, 'study.json'), 'utf8')) as { changes: { key: string; from: unknown; to: unknown }[] };
      assert.deepEqual(c.changes.map((x) => [x.key, x.from, x.to]).at(-1), [key, from, to]);
    }
    // the raised budget made the base run unfinished: its checkpoint is carried again
    assert.ok(!existsSync(fin) && carry().includes(baseCkpt));
    const narrow = { dcaev_topology: { widths: [4, 4, 4, 8, 8, 8, 8], depths: [0, 1, 1, 1, 1, 1, 1], latentChannels: 32, chunk: 16 } };
    // pretrain.frames and pretrain.batch restate their values: not recorded as changes
    writeFileSync(more, JSON.stringify({ autoencoders: { dc: { model: narrow, lr: 1e-3, pretrain: { steps: 2, crop: 64, frames: 4, batch: 2 }, extra: { 'fg-weight': '5' } } } }));
    const r3 = await study(['--resume', '--config', more, '--out', out, '--stages', 'data']);
    assert.equal(r3.code, 0, r3.stderr);
    const after = JSON.parse(readFileSync(join(out, 'study.json'), 'utf8')) as { config: { autoencoders: { dc: { model: unknown; lr: number; pretrain: { steps: number; crop: number }; extra: Record<string, string> } } }; changes: { key: string; to: unknown }[] };
    const dcAfter = after.config.autoencoders.dc;
    assert.deepEqual([dcAfter.model, dcAfter.lr, dcAfter.pretrain.steps, dcAfter.pretrain.crop, dcAfter.extra['fg-weight']], [narrow, 1e-3, 2, 64, '5']);
    assert.deepEqual(after.changes.map(({ key, to }) => ({ key, to })).slice(-5), [
      { key: 'autoencoders.dc.model', to: narrow },
      { key: 'autoencoders.dc.lr', to: 1e-3 },
      { key: 'autoencoders.dc.pretrain.steps', to: 2 },
      { key: 'autoencoders.dc.pretrain.crop', to: 64 },
      { key: 'autoencoders.dc.extra.fg-weight', to: '5' },
    ]);
    // a depth-0 stage after the first makes an f16 DC-AE-V, refused at any time
    await refused({ autoencoders: { dc: { model: { dcaev_topology: { ...narrow.dcaev_topology, depths: [0, 0, 1, 1, 1, 1, 1] } } } } }, /the DC autoencoder compresses f16t4 and the base f8t4/);
    // a topology without its sizes is named, not an internal error
    await refused({ autoencoders: { dc: { model: { dcaev_topology: { widths: [4, 4] } } } } }, /"autoencoders\.dc\.model" .* is no train-ae --model spec \("dcaev_topology" needs "widths" \(positive integers\), "depths"/);
    // the base DiT's recipe and the evaluations' sampling may change before the base stage starts
    writeFileSync(more, JSON.stringify({ base: { lr: 0.002, batch: 3 }, eval: { steps: 3 }, adapt: { lora: { rank: 4 } } }));
    const r4 = await study(['--resume', '--config', more, '--out', out, '--stages', 'data']);
    assert.equal(r4.code, 0, r4.stderr);
    const late = JSON.parse(readFileSync(join(out, 'study.json'), 'utf8')) as { config: { base: { lr: number; batch: number }; eval: { steps: number }; adapt: { lora: { rank: number } } }; changes: { key: string; from: unknown; to: unknown }[] };
    assert.deepEqual([late.config.base.lr, late.config.base.batch, late.config.eval.steps, late.config.adapt.lora.rank], [0.002, 3, 3, 4]);
    assert.deepEqual(late.changes.slice(-4).map(({ key, from, to }) => [key, from, to]), [['base.lr', 1e-3, 0.002], ['base.batch', 2, 3], ['eval.steps', 2, 3], ['adapt.lora.rank', 2, 4]]);
    mkdirSync(join(out, 'base'));
    await refused({ base: { lr: 0.003 } }, /"base\.lr": the base stage has started \(.*base\)/);
  });

  it('builds a tokenizer from the captions that src/text reads, one piece per caption word', () => {
    const caps = ['a small red circle moving left on a black background', 'a large blue square moving up on a gray background'];
    const file = join(root, 'tokenizer.json');
    writeFileSync(file, JSON.stringify(toTokenizerJson(captionTokenizer(caps))));
    const tok = loadTokenizerSync(file);
    const r = tok.tokenize(caps[0]!, 16);
    assert.deepEqual(r.pieces, caps[0]!.split(' ').map((w) => `\u2581${w}`));
    assert.equal(r.ids.at(-1), 1, 'eos last');
    assert.equal(r.inputIds.length, 16);
    // an unseen word over seen characters falls back to them (not one <unk> for the word); unseen characters are <unk>
    const u = tok.tokenize('a purple circle', 16);
    assert.ok(u.pieces.length > 3 && !u.ids.slice(0, -1).includes(2), JSON.stringify(u.pieces));
    assert.ok(tok.tokenize('a zebra', 16).ids.includes(2));
  });
});
