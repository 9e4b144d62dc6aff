/** Shared by the test/adapt_*.test.ts files: a tiny DC DiT with phase-3 LoRA adapters, a bitwise compare, the resume check. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readPhaseLog, type PhaseModel } from '../src/adapt/trainer.js';
import type { Param } from '../src/nn/module.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { WanModel, parseWanConfig } from '../src/models/wan/index.js';
import { applyLora, loadLoraStateDict, loraStateDict } from '../src/nn/index.js';
import { Rng, randn } from '../src/tensor/random.js';
import type { Tensor } from '../src/tensor/tensor.js';

export const PHASE3_TARGETS = /^(blocks\.\d+\.(self_attn\.(q|k|v|o)|ffn\.(0|2))|time_embedding\.(0|2)|time_projection\.1)$/;

export function tinyDcConfig(modelType: 't2v' | 'i2v' = 't2v') {
  return parseWanConfig({ model_type: modelType, patch_size: [1, 1, 1], text_len: 6, in_dim: modelType === 'i2v' ? 68 : 32, dim: 32, ffn_dim: 48, freq_dim: 16, text_dim: 12, out_dim: 32, num_heads: 2, num_layers: 2, image_dim: 8 });
}

/** A tiny DC DiT with random weights and random phase-3 adapters (rank 4, alpha 8: scale 2 as the reference). */
export function tinyLoraModel(seed = 1): WanModel {
  const m = new WanModel(tinyDcConfig());
  m.initRandom(seed, 0.1);
  applyLora(m, PHASE3_TARGETS, { rank: 4, alpha: 8, seed: seed + 1 });
  const rng = new Rng(seed + 2);
  loadLoraStateDict(m, new Map([...loraStateDict(m)].map(([k, v]) => [k, randn([...v.shape], rng, 0.2)])));
  return m;
}

export function sameBits(a: Tensor, b: Tensor, what: string): void {
  assert.equal(a.dtype, b.dtype, `${what}: dtype`);
  assert.deepEqual([...a.shape], [...b.shape], `${what}: shape`);
  const x = a.readStoredSync();
  const y = b.readStoredSync();
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) assert.fail(`${what}: element ${i} differs (${x[i]} vs ${y[i]})`);
}


/** Two runs, one straight and one stopped half-way and resumed: checkpoints, outputs and logs must be identical. */
export async function checkResume(tmp: (name: string) => string, train: (o: any) => Promise<unknown>, opts: Record<string, unknown>, outputs: string[]) {
  const a = tmp('straight');
  const b = tmp('resumed');
  await train({ ...opts, out: a, steps: 4 });
  await train({ ...opts, out: b, steps: 2 });
  await train({ out: b, resume: true, steps: 4 });
  for (const f of ['checkpoint.safetensors', ...outputs]) {
    const x = SafetensorsFile.open(join(a, f));
    const y = SafetensorsFile.open(join(b, f));
    assert.deepEqual(x.keys().sort(), y.keys().sort(), f);
    for (const k of x.keys()) assert.deepEqual(x.tensor(k).readSync(), y.tensor(k).readSync(), `${f} ${k}`);
    x.close();
    y.close();
  }
  const strip = (d: string) => readPhaseLog(d).steps.map(({ ms: _ms, ...r }) => r);
  assert.deepEqual(strip(b), strip(a));
  assert.deepEqual(readPhaseLog(b).evals, readPhaseLog(a).evals);
  assert.equal(strip(a).length, 4);
}

/**
 * One phase-3 micro-batch backpropagated on a 2-block DiT: exactly the adapters of self-attention, FFN and the time
 * MLPs, the patch embedder and the head get gradients, each non-zero. Returns the model's named parameters.
 */
export function checkPhase3Gradients(model: PhaseModel): [string, Param][] {
  const params = model.module!.namedParams();
  // B starts at zero, so A gets no gradient on the first step: give B values first (as after some training)
  for (const [k, p] of params) if (k.endsWith('lora_B.weight')) p.value.write(randn(p.shape, new Rng(k.length)).readSync());
  model.micro([0, 1], new Rng(1)).loss.backward();
  const withGrad = params.filter(([, p]) => p.value.grad !== null).map(([k]) => k);
  const layers = ['time_embedding.0', 'time_embedding.2', 'time_projection.1', ...[0, 1].flatMap((b) => ['self_attn.q', 'self_attn.k', 'self_attn.v', 'self_attn.o', 'ffn.0', 'ffn.2'].map((l) => `blocks.${b}.${l}`))];
  const expected = [...layers.flatMap((l) => [`${l}.lora_A.weight`, `${l}.lora_B.weight`]), 'head.head.bias', 'head.head.weight', 'head.modulation', 'patch_embedding.bias', 'patch_embedding.weight'];
  assert.deepEqual(withGrad.sort(), expected.sort());
  for (const [k, p] of params) if (p.value.grad) assert.ok(p.value.grad.readSync().some((v) => v !== 0), `${k} has a zero gradient`);
  return params;
}
