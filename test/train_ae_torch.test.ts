/**
 * scripts/train_ae_torch.py, the PyTorch twin of `dcvg train-ae` for GPUs: its frames pack keeps the pixels our
 * reader decodes, its weights load into our DCAEV through the embedded config, its held-out PSNR equals ours for the
 * same weights and clip, and growing a model by identity-initialised residual blocks (--depths) leaves the output
 * unchanged. Needs /usr/bin/python3 with torch and the shared clips; skipped otherwise (CI installs no torch).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createModel } from '../src/models/dcaev/autoencoder.js';
import { defaultModelPaths, embeddedConfig, loadDefaultModel } from '../src/models/dcaev/default_model.js';
import { evaluateClips } from '../src/train/ae_trainer.js';
import { loadClipSet } from '../src/train/data.js';
import { repoRoot, sharedDir, skipUnlessClipsAndTorch, torchPython } from './helpers.js';

const PY = torchPython;
const clips = join(sharedDir, 'data', 'clips128');
const skip = skipUnlessClipsAndTorch('the PyTorch twin trainer');

const script = join(repoRoot, 'scripts', 'train_ae_torch.py');

function py(args: string[]): string {
  const r = spawnSync(PY, [script, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2', OMP_WAIT_POLICY: 'passive' } });
  assert.equal(r.status, 0, `train_ae_torch.py ${args[0]} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function evals(log: string, tag: string): number[] {
  return readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { tag: string; eval_psnr?: number })
    .filter((r) => r.tag === tag && r.eval_psnr !== undefined)
    .map((r) => r.eval_psnr!);
}

test('train_ae_torch.py: pack, train on CPU, weights and held-out PSNR agree with ours, growth keeps the output', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-torch-twin-'));
  try {
    // two clips: 02.mp4 (160 frames) to train on, 06.mp4 (80 frames, the held-out one with --holdout 1)
    const data = join(dir, 'data');
    mkdirSync(data);
    for (const n of ['02.mp4', '06.mp4']) symlinkSync(join(clips, n), join(data, n));
    const pack = join(dir, 'pack');
    py(['pack', '--data', data, '--out', pack, '--holdout', '1']);
    const index = JSON.parse(readFileSync(join(pack, 'index.json'), 'utf8')) as { held_out: string[] };
    const set = await loadClipSet(data, { holdout: 1 });
    assert.deepEqual(index.held_out, set.heldOut.map((c) => c.name), 'same held-out split as src/train/data.ts');

    const out = join(dir, 'out');
    const log = join(dir, 'log.jsonl');
    const common = ['train', '--frames', pack, '--config', defaultModelPaths().config, '--init', defaultModelPaths().weights,
      '--out', out, '--log', log, '--device', 'cpu', '--batch', '1', '--crop', '64', '--eval-every', '1000'];
    py([...common, '--seconds', '2', '--lr', '1e-4', '--warmup', '2', '--tag', 't']);
    const weights = join(out, 't.safetensors');
    const cfg = embeddedConfig(weights);
    assert.ok(cfg, 'the twin writes the config into the weights');
    const trained = createModel(cfg, weights);
    const ours = evaluateClips(trained, set.heldOut).psnr;
    const theirs = evals(log, 't').at(-1)!;
    assert.ok(Math.abs(ours - theirs) < 0.01, `held-out PSNR: ours ${ours} vs twin ${theirs}`);
    // the update changed the weights (a twin that wrote its input back would pass the comparison above)
    const before = evaluateClips(loadDefaultModel(), set.heldOut).psnr;
    assert.notEqual(ours, before);

    // --depths: two more residual blocks at the three lowest-resolution stages, identity at start: with lr 0 the
    // grown model reconstructs exactly as the default model does
    py([...common, '--seconds', '0.5', '--lr', '0', '--depths', '0,1,1,1,1,2,2', '--tag', 'g']);
    const grown = join(out, 'g.safetensors');
    const gcfg = embeddedConfig(grown)!;
    assert.deepEqual(gcfg.encoder.depthList, [0, 1, 1, 1, 1, 2, 2]);
    const g = evaluateClips(createModel(gcfg, grown), set.heldOut).psnr;
    assert.ok(Math.abs(g - before) < 1e-3, `grown model ${g} vs default ${before}`);
    assert.ok(Math.abs(evals(log, 'g').at(-1)! - before) < 0.01);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
