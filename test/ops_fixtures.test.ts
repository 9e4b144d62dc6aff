/**
 * Every case of ../shared/fixtures/ops (PyTorch 1.13 outputs) reproduced on both backends: forward outputs within
 * 1e-4 relative, gradients of sum(out * grad_out) within 1e-3.
 */
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { withBackend } from '../src/backend/index.js';
import * as T from '../src/index.js';
import { Tensor } from '../src/tensor/tensor.js';
import { assertClose, fixturePath, requireBackend, skipUnlessFixture, testBackends } from './helpers.js';

type Params = Record<string, unknown>;
type Case = { inputs?: string[]; params: Params; out_shape?: number[] };

const FWD_TOL = 1e-4;
const GRAD_TOL = 1e-3;

/** How each fixture case maps onto our ops. */
const RUNNERS: Record<string, (inp: Record<string, Tensor>, p: Params, f: SafetensorsFile, name: string) => Tensor> = {
  conv3d: (i, p) =>
    T.conv3d(i.x!, i.w!, i.b ?? null, {
      stride: p.stride as [number, number, number] | undefined,
      padding: p.padding as number[] | undefined,
      groups: p.groups as number | undefined,
    }),
  linear: (i) => T.linear(i.x!, i.w!, i.b),
  matmul_batched: (i) => T.matmul(i.a!, i.b!),
  softmax: (i, p) => T.softmax(i.x!, p.dim as number),
  layer_norm_affine: (i, p) => T.layerNorm(i.x!, i.w!, i.b!, p.eps as number),
  layer_norm_plain: (i, p) => T.layerNorm(i.x!, null, null, p.eps as number),
  rms_norm_last: (i, p) => T.rmsNorm(i.x!, i.w!, p.eps as number),
  rms_norm_3d_channels: (i, p) => T.rmsNorm3d(i.x!, i.w!, i.b!, p.eps as number),
  silu: (i) => T.silu(i.input!),
  gelu_tanh: (i) => T.gelu(i.input!, 'tanh'),
  gelu_exact: (i) => T.gelu(i.input!, 'none'),
  attention: (i) => T.attention(i.q!, i.k!, i.v!),
  attention_long: (i) => T.attention(i.q!, i.k!, i.v!),
  pixel_shuffle_3d_s2_t2: (i, p) => T.pixelShuffle3d(i.x!, p.spatial_factor as number, p.temporal_factor as number),
  pixel_unshuffle_3d_s2_t2: (i, p) => T.pixelUnshuffle3d(i.x!, p.spatial_factor as number, p.temporal_factor as number),
  avg_pool3d_122: (i, p) => T.avgPool3d(i.x!, p.kernel as [number, number, number]),
  interpolate_nearest_x2: (i, p) => T.upsampleNearest3d(i.x!, p.scale_factor as [number, number, number]),
  mse_loss: (i) => T.mseLoss(i.a!, i.b!),
  l1_loss: (i) => T.l1Loss(i.a!, i.b!),
  rope_pairs: (i, p, f) => T.ropePairs(i.x!, f.tensor(p.angles_key as string)),
};

function runnerFor(name: string) {
  return RUNNERS[name] ?? (name.startsWith('conv3d_') ? RUNNERS.conv3d : undefined);
}

const skip = skipUnlessFixture('ops/ops.json');

describe('ops fixtures (PyTorch reference)', { skip }, () => {
  if (skip) return;
  const cases = JSON.parse(readFileSync(fixturePath('ops/ops.json'), 'utf8')) as Record<string, Case>;
  const file = SafetensorsFile.open(fixturePath('ops/ops.safetensors'));

  it('every fixture case has a runner', () => {
    const missing = Object.keys(cases).filter((n) => n !== 'adamw' && !runnerFor(n));
    if (missing.length) throw new Error(`no runner for fixture cases: ${missing.join(', ')}`);
  });

  for (const be of testBackends()) {
    describe(`backend ${be.name}`, { skip: be.skip }, () => {
      for (const [name, c] of Object.entries(cases)) {
        if (name === 'adamw') continue;
        it(name, () => {
          withBackend(requireBackend(be.backend), () => {
            const inputs: Record<string, Tensor> = {};
            for (const a of c.inputs ?? []) inputs[a] = T.parameter(file.tensor(`${name}.in.${a}`));
            const out = runnerFor(name)!(inputs, c.params, file, name);
            assertClose(out, file.tensor(`${name}.out`), FWD_TOL, `${name} forward`);
            out.backward(file.tensor(`${name}.grad_out`));
            for (const a of c.inputs ?? []) {
              const key = `${name}.grad.${a}`;
              if (!file.has(key)) continue;
              const g = inputs[a]!.grad;
              if (!g) throw new Error(`${name}: no gradient reached input ${a}`);
              assertClose(g, file.tensor(key), GRAD_TOL, `${name} grad.${a}`);
            }
          });
        });
      }

      it('adamw (3 steps, torch semantics)', () => {
        withBackend(requireBackend(be.backend), () => {
          const p = c_adamw(cases);
          const param = T.parameter(file.tensor('adamw.param0'));
          const opt = new T.AdamW([param], {
            lr: p.lr,
            betas: p.betas,
            eps: p.eps,
            weightDecay: p.weight_decay,
          });
          for (let s = 0; s < p.steps; s++) {
            param.grad = file.tensor(`adamw.grad${s}`);
            opt.step();
            assertClose(param, file.tensor(`adamw.param${s + 1}`), FWD_TOL, `adamw step ${s + 1}`);
          }
        });
      });
    });
  }
});

function c_adamw(cases: Record<string, Case>) {
  const p = cases.adamw!.params as { lr: number; betas: [number, number]; eps: number; weight_decay: number; steps: number };
  return p;
}
