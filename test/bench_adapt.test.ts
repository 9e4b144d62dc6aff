/**
 * bench:adapt's two training steps compute the same thing: our phase-3 (LoRA) step (bench/adapt.ts OurLoraStep, the
 * model set up by src/adapt/phases.ts setupTrainable) against the plain-PyTorch LoRA step of bench/torch_adapt.py, on
 * a tiny Wan DiT with the same weights, noise and timestep: the loss, the gradients of every trainable tensor, the
 * parameters and EMA shadows after clipping + AdamW + EMA, and the next step's loss. Skips without PyTorch.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withBackend } from '../src/backend/index.js';
import { loadSafetensors } from '../src/io/safetensors.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { OurLoraStep, adaptBenchConfig, stepInputs, writeTorchSide, type LoraStepOptions, type StepResult } from '../bench/adapt.js';
import { findTorch, TorchWorker } from '../bench/torch.js';
import { relErr, testBackends } from './helpers.js';

const { python, why } = findTorch();
const torchSkip = python ? false : `${why}: skipping the bench:adapt parity test`;

// tiny: width 64, 4 heads of 16, FFN 256, 2 blocks, text 16 x 64; 4x4x4 = 64 tokens; rank 8, alpha 16
const cfg = adaptBenchConfig({ dim: 64, heads: 4, layers: 2, textLen: 16, textDim: 64 });
const GRID: [number, number, number] = [4, 4, 4];
const OPTS: LoraStepOptions = { rank: 8, alpha: 16, clip: 0.1, ema: 0.9999, seed: 7 };
/** a learning rate at which one AdamW step moves every parameter visibly (the phase's first steps use 5e-8) */
const LR = 1e-3;
const EPS = 1e-8; // AdamW eps, both sides
const U = 2 ** -24; // float32 unit roundoff
// Loss: float32 dot products of length <= 256 in a different summation order differ by ~sqrt(K)·u ≈ 1e-6 relative per
// op; ~10 ops in a chain through 2 blocks -> ~1e-5. Gradients run the chain twice plus the attention backward: 1e-4
// (of each tensor's largest gradient).
const TOL_LOSS = 2e-5;
const TOL_GRAD = 1e-4;

describe('bench:adapt: our LoRA step vs the plain-PyTorch step', { skip: torchSkip }, () => {
  let dir = '';
  const torch: { steps: StepResult[]; after1: Map<string, Tensor> } = { steps: [], after1: new Map() };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dcvg-bench-adapt-test-'));
    const ref = new OurLoraStep(cfg, OPTS);
    const argv = [...writeTorchSide(dir, ref, stepInputs(cfg, GRID, OPTS.seed), 1), '--keep-grads'];
    const w = new TorchWorker(python!, argv, 1);
    try {
      await w.next();
      torch.steps.push((await w.request(`step ${LR}`)) as unknown as StepResult);
      await w.request(`dump ${join(dir, 'after1.safetensors')}`);
      torch.steps.push((await w.request(`step ${LR}`)) as unknown as StepResult);
    } finally {
      w.close('quit');
    }
    torch.after1 = loadSafetensors(join(dir, 'after1.safetensors')).tensors;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const be of testBackends())
    it(`loss, gradients, AdamW + EMA update and the next loss agree (${be.name})`, { skip: be.skip }, () =>
      withBackend(be.backend!, () => {
        const ours = new OurLoraStep(cfg, OPTS);
        const inp = stepInputs(cfg, GRID, OPTS.seed);
        const p0 = new Map(ours.trainable.map(([k, p]) => [k, p.readSync().slice()]));
        const s1 = ours.step(LR, inp, true);
        const t1 = torch.steps[0]!;
        assert.ok(Math.abs(s1.loss - t1.loss) <= TOL_LOSS * Math.abs(t1.loss), `first loss ${s1.loss} vs torch ${t1.loss}`);
        assert.ok(Math.abs(s1.grad_norm - t1.grad_norm) <= TOL_GRAD * t1.grad_norm, `grad norm ${s1.grad_norm} vs torch ${t1.grad_norm}`);
        // clip coefficients (both sides: max_norm / (norm + 1e-6), the norm being > 0.1 here)
        const cO = OPTS.clip / (s1.grad_norm + 1e-6);
        const cT = OPTS.clip / (t1.grad_norm + 1e-6);
        assert.ok(cO < 1 && cT < 1, 'the gradients are clipped');
        const shadows = ours.ema!.shadows();
        assert.equal(torch.after1.size, 3 * ours.trainable.length, 'torch dumped param/ema/grad of every trainable tensor');
        for (const [k, p] of ours.trainable) {
          const gO = ours.grads!.get(k)!;
          const gT = torch.after1.get(`grad.${k}`)!.readSync();
          const e = relErr(gO, gT);
          assert.ok(e <= TOL_GRAD, `gradient of ${k}: rel err ${e.toExponential(2)} > ${TOL_GRAD}`);
          assert.ok(gT.some((v) => v !== 0), `torch gives ${k} a non-zero gradient (a test that can fail)`);
          // AdamW's first step moves p by lr·ĝ/(|ĝ| + eps) (m̂ = ĝ, √v̂ = |ĝ|; wd 0), ĝ the clipped gradient. With
          // δ = |ĝ_ours − ĝ_torch| (measured), the mean value theorem on f(g) = g/(|g| + eps), f' = eps/(|g| + eps)²,
          // bounds the parameter difference by lr·δ·eps/(max(|ĝ| − δ, 0) + eps)² (and by 2·lr), plus the roundings
          // of each side (moments, sqrt, bias corrections, + eps, division, scaling, p − update: ~10 float32
          // roundings, each <= u of |p| or of the update's size lr; 12 allowed). The EMA's first update
          // (d = min(0.9999, 1/10)) takes 0.9 of the new value.
          const pO = p.readSync();
          const pT = torch.after1.get(`param.${k}`)!.readSync();
          const sO = shadows.get(k)!.readSync();
          const sT = torch.after1.get(`ema.${k}`)!.readSync();
          const before0 = p0.get(k)!;
          let moved = 0;
          for (let i = 0; i < pO.length; i++) {
            const hO = gO[i]! * cO;
            const hT = gT[i]! * cT;
            const d = Math.abs(hO - hT);
            const dev = Math.min(2, (d * EPS) / (Math.max(Math.abs(hT) - d, 0) + EPS) ** 2);
            const tolP = LR * dev + 12 * U * (Math.abs(before0[i]!) + LR);
            assert.ok(Math.abs(pO[i]! - pT[i]!) <= tolP, `${k}[${i}] after the update: ${pO[i]} vs torch ${pT[i]} (bound ${tolP.toExponential(2)})`);
            assert.ok(Math.abs(sO[i]! - sT[i]!) <= 0.9 * tolP + 4 * U * Math.abs(sT[i]!), `EMA of ${k}[${i}]: ${sO[i]} vs torch ${sT[i]}`);
            moved = Math.max(moved, Math.abs(pO[i]! - before0[i]!));
          }
          assert.ok(moved > 0.5 * LR, `${k} moved by the update (max ${moved})`);
        }
        // the next step sees the updated weights on both sides
        const s2 = ours.step(LR, inp);
        const t2 = torch.steps[1]!;
        assert.ok(Math.abs(s2.loss - s1.loss) > 100 * TOL_LOSS * Math.abs(t1.loss), 'the update changes the loss');
        assert.ok(Math.abs(s2.loss - t2.loss) <= TOL_LOSS * Math.abs(t2.loss), `second loss ${s2.loss} vs torch ${t2.loss}`);
      }),
    );
});
