/**
 * Flow-matching sampling and training objective against ../shared/fixtures/sampler (diffusers UniPC, the reference
 * flow-matching scheduler), plus independent checks: the exact solution of the fixture's linear ODE, hand-derived
 * numbers for the loss, and CFG on a toy model.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { Tensor, tensor } from '../src/tensor/tensor.js';
import { affine } from '../src/tensor/ops.js';
import {
  EulerSolver,
  UniPCSolver,
  cfgCombine,
  dropTextContext,
  flowMatchInputs,
  flowMatchLoss,
  flowSchedule,
  npLinspace,
  sample,
  sampleTrainingTimesteps,
  snapToGrid,
  torchLinspaceF32,
  trainingGrid,
  wanFlowSchedule,
  type FlowSchedule,
} from '../src/diffusion/index.js';
import { fixturePath, relErr, skipUnlessFixture } from './helpers.js';

const UNIPC = 'sampler/unipc.safetensors';
const FM = 'sampler/flowmatch.safetensors';
const CASES = [
  { name: 'unipc_n20_s5', steps: 20, shift: 5 },
  { name: 'unipc_n50_s5', steps: 50, shift: 5 },
  { name: 'unipc_n8_s3', steps: 8, shift: 3 },
];

/** The fixture's analytic model (unipc.json): v(x, σ) = 0.5x + sin(3σ) − 0.25xσ, σ = sigmas[i] of the step. */
function modelF64(x: Float64Array, sigma: number): Float64Array {
  const out = new Float64Array(x.length);
  const b = Math.sin(3 * sigma);
  for (let k = 0; k < x.length; k++) out[k] = 0.5 * x[k]! + b - 0.25 * x[k]! * sigma;
  return out;
}
const modelTensor = (x: Tensor, sigma: number): Tensor => affine(x, 0.5 - 0.25 * sigma, Math.sin(3 * sigma));

function runSolver(solver: UniPCSolver | EulerSolver, x0: Float64Array): Float64Array[] {
  const traj: Float64Array[] = [];
  let x = x0;
  while (!solver.done) {
    x = solver.step(modelF64(x, solver.sigma), x);
    traj.push(x);
  }
  return traj;
}

function flat(rows: Float64Array[] | Float32Array[]): Float64Array {
  const n = rows[0]!.length;
  const out = new Float64Array(rows.length * n);
  rows.forEach((r, i) => out.set(r, i * n));
  return out;
}

/**
 * Exact x(σ=0) of dx/dσ = a(σ)x + sin(3σ), a = 0.5 − 0.25σ, from x(σ₀) = x0: with A(σ) = 0.5σ − 0.125σ²,
 * x(0) = e^{−A(σ₀)}·x0 − ∫₀^{σ₀} e^{−A(s)} sin(3s) ds (composite Simpson, 20000 intervals: error ≪ 1e-12).
 */
function exactEndpoint(x0: Float64Array, sigma0: number): Float64Array {
  const A = (s: number) => 0.5 * s - 0.125 * s * s;
  const g = (s: number) => Math.exp(-A(s)) * Math.sin(3 * s);
  const M = 20000;
  const hq = sigma0 / M;
  let I = g(0) + g(sigma0);
  for (let j = 1; j < M; j++) I += (j % 2 ? 4 : 2) * g(j * hq);
  I *= hq / 3;
  return x0.map((v) => Math.exp(-A(sigma0)) * v - I);
}

describe('flow σ schedules', () => {
  it('reproduce the fixture grids exactly (timesteps and float32 σ bits)', { skip: skipUnlessFixture(UNIPC) }, () => {
    const f = SafetensorsFile.open(fixturePath(UNIPC));
    for (const c of CASES) {
      const s = flowSchedule(c.steps, c.shift);
      assert.deepEqual(Array.from(s.timesteps), Array.from(f.float64(`${c.name}.timesteps`).data), `${c.name} timesteps`);
      assert.deepEqual(Array.from(s.sigmas), Array.from(f.float64(`${c.name}.sigmas`).data), `${c.name} sigmas`);
    }
    f.close();
  });

  it('match the spec test vectors', () => {
    assert.deepEqual(
      Array.from(flowSchedule(20, 5).timesteps),
      [999, 989, 978, 965, 952, 937, 921, 902, 882, 859, 833, 803, 769, 729, 682, 625, 556, 470, 359, 211],
    );
    const s = flowSchedule(50, 5);
    const near = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-6, `${a} vs ${b}`);
    [0.999999, 0.995939, 0.991744, 0.987408].forEach((v, i) => near(s.sigmas[i]!, v));
    [0.244983, 0.175969, 0.096778].forEach((v, i) => near(s.sigmas[47 + i]!, v));
    assert.deepEqual(Array.from(s.timesteps.slice(0, 4)), [999, 995, 991, 987]);
    assert.deepEqual(Array.from(s.timesteps.slice(47)), [244, 175, 96]);
    assert.equal(s.sigmas[50], 0);
    // Wan's FlowUniPC grid: linspace(float32(0.999), 0, N+1)[:N], no σ₀ nudge.
    const w = wanFlowSchedule(50, 5);
    near(w.sigmas[0]!, 0.9998);
    near(w.sigmas[49]!, 0.092507);
    assert.equal(w.timesteps[0], 999);
    assert.equal(w.sigmas[50], 0);
  });

  it('npLinspace follows numpy (i·step + start, pinned end)', () => {
    const l = npLinspace(1, 1 / 1000, 21);
    assert.equal(l[0], 1);
    assert.equal(l[20], 0.001);
    assert.equal(l[7], 7 * ((0.001 - 1) / 20) + 1);
  });
});

describe('UniPC (bh2, order 2, predict-x0) vs diffusers', () => {
  it('float64 trajectories within 1e-6 relative, timesteps exact', { skip: skipUnlessFixture(UNIPC) }, (t) => {
    const f = SafetensorsFile.open(fixturePath(UNIPC));
    for (const c of CASES) {
      const x0 = f.float64(`${c.name}.x_init`).data;
      const ref = f.float64(`${c.name}.trajectory`).data;
      const sch = flowSchedule(c.steps, c.shift);
      const seen: number[] = [];
      const solver = new UniPCSolver(sch);
      let x = x0;
      const traj: Float64Array[] = [];
      while (!solver.done) {
        seen.push(solver.timestep);
        x = solver.step(modelF64(x, solver.sigma), x);
        traj.push(x);
      }
      assert.deepEqual(seen, Array.from(f.float64(`${c.name}.timesteps`).data));
      const eDouble = relErr(flat(traj), ref);
      const eEmul = relErr(flat(runSolver(new UniPCSolver(sch, { emulateFloat32Scalars: true }), x0)), ref);
      t.diagnostic(`${c.name}: double coefficients ${eDouble.toExponential(2)}, float32-emulated coefficients ${eEmul.toExponential(2)}`);
      assert.ok(eDouble <= 1e-6, `${c.name}: ${eDouble}`);
      assert.ok(eEmul <= 1e-7, `${c.name} emulated: ${eEmul}`);
    }
    f.close();
  });

  it('float32 Tensor path tracks the F64 trajectory', { skip: skipUnlessFixture(UNIPC) }, (t) => {
    const f = SafetensorsFile.open(fixturePath(UNIPC));
    for (const c of CASES) {
      const init = f.float64(`${c.name}.x_init`);
      const ref = f.float64(`${c.name}.trajectory`).data;
      const solver = new UniPCSolver(flowSchedule(c.steps, c.shift));
      let x = tensor(Float32Array.from(init.data), init.shape);
      const traj: Float32Array[] = [];
      while (!solver.done) {
        x = solver.step(modelTensor(x, solver.sigma), x);
        assert.deepEqual(x.shape, init.shape);
        traj.push(x.readSync());
      }
      const e = relErr(flat(traj), ref);
      t.diagnostic(`${c.name}: float32 Tensor path rel err ${e.toExponential(2)}`);
      assert.ok(e <= 1e-5, `${c.name}: ${e}`);
    }
    f.close();
  });

  it('final step returns the x0 estimate and the solver refuses extra steps', () => {
    const s = new UniPCSolver(flowSchedule(3, 3));
    let x = new Float64Array([0.3, -1.2]);
    for (let i = 0; i < 2; i++) x = s.step(modelF64(x, s.sigma), x);
    const sg = s.sigma;
    const v = modelF64(x, sg);
    // σ_N = 0: the last update is the x0 estimate m = x − σ·v of the uncorrected x (the corrector does not enter).
    const out = s.step(v, x);
    assert.deepEqual(Array.from(out), Array.from(x, (xv, k) => xv - sg * v[k]!));
    assert.equal(s.done, true);
    assert.throws(() => s.step(v, x), /steps have been taken/);
    assert.ok(out.every(Number.isFinite));
    s.reset();
    assert.equal(s.index, 0);
  });
});

describe('Euler on the flow grid', () => {
  it('follows x_{i+1} = x_i + (σ_{i+1} − σ_i)·v_i step by step', { skip: skipUnlessFixture(UNIPC) }, () => {
    const f = SafetensorsFile.open(fixturePath(UNIPC));
    const x0 = f.float64('unipc_n20_s5.x_init').data;
    const sig = f.float64('unipc_n20_s5.sigmas').data;
    f.close();
    const traj = runSolver(new EulerSolver(flowSchedule(20, 5)), x0);
    let prev = x0;
    for (let i = 0; i < 20; i++) {
      const dt = sig[i + 1]! - sig[i]!;
      const b = Math.sin(3 * sig[i]!);
      for (let k = 0; k < prev.length; k++) {
        const v = 0.5 * prev[k]! + b - 0.25 * prev[k]! * sig[i]!;
        assert.equal(traj[i]![k], prev[k]! + dt * v);
      }
      prev = traj[i]!;
    }
  });

  it('converges at first order to the exact ODE endpoint, where UniPC already is', (t) => {
    const x0 = new Float64Array([-2.31, -0.37, 1.0, 0.5, 2.2]);
    const errAt = (solver: 'euler' | 'unipc', n: number) => {
      const sch = flowSchedule(n, 5);
      const x = solver === 'euler' ? runSolver(new EulerSolver(sch), x0).at(-1)! : runSolver(new UniPCSolver(sch), x0).at(-1)!;
      return relErr(x, exactEndpoint(x0, sch.sigmas[0]!));
    };
    const e = [100, 200, 400, 800].map((n) => errAt('euler', n));
    const u = [20, 50, 200].map((n) => errAt('unipc', n));
    t.diagnostic(`euler N=100..800: ${e.map((v) => v.toExponential(2)).join(', ')}; unipc N=20,50,200: ${u.map((v) => v.toExponential(2)).join(', ')}`);
    for (let j = 1; j < e.length; j++) {
      const ratio = e[j - 1]! / e[j]!;
      assert.ok(ratio > 1.8 && ratio < 2.2, `Euler error ratio ${ratio} (expected ~2 for first order)`);
    }
    // UniPC: higher order (error falls by >16x from N=50 to N=200) and far below Euler at 4x the steps.
    assert.ok(u[1]! < u[0]! && u[1]! / u[2]! > 16, `UniPC errors ${u.join(', ')}`);
    assert.ok(u[2]! < e[3]! / 10, 'UniPC with 200 steps beats Euler with 800 by 10x');
  });
});

describe('sampling loop and classifier-free guidance', () => {
  it('cfgCombine is v_u + w(v_c − v_u)', () => {
    const vc = tensor([1, 2, 3]);
    const vu = tensor([0.5, 2, 5]);
    assert.deepEqual(cfgCombine(vc, vu, 5).toArray(), [0.5 + 5 * 0.5, 2, 5 + 5 * -2]);
    assert.deepEqual(Array.from(cfgCombine(new Float64Array([1, 2]), new Float64Array([3, 3]), 0)), [3, 3]);
  });

  it('guided sampling equals sampling the combined toy velocity', () => {
    // cond v = 0.5x + 1, uncond v = 0.5x − σ ⇒ v_u + w(v_c − v_u) = 0.5x − σ + w(1 + σ).
    const w = 3;
    const noise = new Float64Array([0.7, -1.1, 2.0]);
    const cond = (x: Float64Array) => x.map((v) => 0.5 * v + 1);
    const uncond = (x: Float64Array, _t: number, s: number) => x.map((v) => 0.5 * v - s);
    const combined = (x: Float64Array, _t: number, s: number) => x.map((v) => 0.5 * v - s + w * (1 + s));
    const calls: number[] = [];
    const guided = sample({
      model: cond,
      noise,
      steps: 12,
      shift: 5,
      guidance: { scale: w, uncond },
      onStep: ({ t }) => calls.push(t),
    });
    const direct = sample({ model: combined, noise, steps: 12, shift: 5 });
    assert.equal(calls.length, 12);
    assert.deepEqual(calls, Array.from(flowSchedule(12, 5).timesteps));
    assert.ok(relErr(guided, direct) < 1e-14, `${relErr(guided, direct)}`);
    // Scale 1 is plain conditional sampling and skips the unconditional pass.
    let uncondCalls = 0;
    const one = sample({ model: cond, x0: noise, steps: 12, shift: 5, guidance: { scale: 1, uncond: (x: Float64Array) => (uncondCalls++, x) } });
    assert.equal(uncondCalls, 0);
    assert.deepEqual(one, sample({ model: cond, noise, steps: 12, shift: 5 }));
  });

  it('sample() on Tensors equals driving the solver by hand; Euler selectable', () => {
    const noise = tensor([0.1, -0.4, 1.3, 0.9], [1, 4]);
    const sch: FlowSchedule = flowSchedule(10, 3);
    const out = sample({ model: (x, _t, s) => modelTensor(x, s), noise, schedule: sch });
    const solver = new UniPCSolver(sch);
    let x = noise;
    while (!solver.done) x = solver.step(modelTensor(x, solver.sigma), x);
    assert.deepEqual(out.toArray(), x.toArray());
    const eu = sample({ model: (x, _t, s) => modelTensor(x, s), noise, schedule: sch, solver: 'euler' });
    assert.deepEqual(eu.shape, [1, 4]);
    assert.notDeepEqual(eu.toArray(), out.toArray());
    assert.throws(() => sample({ model: (x: Tensor) => x, noise, steps: 5 }), /steps.*shift/);
  });
});

describe('flow-matching training objective (spec §5.5)', () => {
  for (const [name, shift] of [
    ['fm_shift8', 8],
    ['fm_shift5', 5],
  ] as const) {
    it(`${name}: grid, weights, snapping, noisy, target, loss`, { skip: skipUnlessFixture(FM) }, (t) => {
      const f = SafetensorsFile.open(fixturePath(FM));
      const R = (k: string) => f.float64(`${name}.${k}`);
      const grid = trainingGrid(shift, 50);
      assert.deepEqual(Array.from(grid.sigmas), Array.from(R('sigmas').data), 'sigmas bit-exact');
      assert.deepEqual(Array.from(grid.timesteps), Array.from(R('timesteps').data), 'timesteps bit-exact');
      const eW = relErr(grid.weights, R('weights').data);
      assert.ok(eW <= 1e-6, `weights ${eW}`);
      const sampleT = Array.from(R('sample_t').data);
      const ids = sampleT.map((tt) => snapToGrid(grid, tt));
      assert.deepEqual(ids, Array.from(R('sample_ids').data));
      const T32 = (k: string) => {
        const v = R(k);
        return tensor(Float32Array.from(v.data), v.shape);
      };
      const inp = flowMatchInputs(T32('x0'), T32('noise'), sampleT, grid);
      assert.deepEqual(inp.t, sampleT, 'conditioning uses the raw integer t');
      const eN = relErr(inp.noisy.readSync(), R('noisy').data);
      const eT = relErr(inp.target.readSync(), R('target').data);
      const loss = flowMatchLoss(T32('pred'), inp.target, inp.weights).item();
      const eL = Math.abs(loss - R('loss').data[0]!) / Math.abs(R('loss').data[0]!);
      t.diagnostic(`weights ${eW.toExponential(2)}, noisy ${eN.toExponential(2)}, target ${eT.toExponential(2)}, loss ${eL.toExponential(2)}`);
      assert.ok(eN <= 1e-6 && eT <= 1e-6 && eL <= 1e-6, `noisy ${eN} target ${eT} loss ${eL}`);
      f.close();
    });
  }

  it('grid properties: σ₀ = 1, weight 0 at τ = 1000, weights sum to N', () => {
    const g = trainingGrid(8);
    assert.equal(g.sigmas[0], 1);
    assert.equal(g.timesteps[0], 1000);
    assert.equal(g.weights[0], 0);
    assert.ok(Math.abs(g.weights.reduce((a, b) => a + b, 0) - 50) < 1e-4);
    assert.ok(Math.abs(g.timesteps[49]! - 140.35) < 0.01, `τ_49 = ${g.timesteps[49]}`);
    // torch's float32 linspace: vector lanes base + k·step, which the plain formula does not reproduce everywhere.
    assert.deepEqual(Array.from(torchLinspaceF32(1, 0, 3)), [1, 0.5, 0]);
  });

  it('hand-checked tiny case', () => {
    // N = 2, shift 3: linspace(1, 0, 3)[:2] = [1, 0.5] → σ = [1, 3·0.5/(1 + 2·0.5)] = [1, 0.75], τ = [1000, 750].
    // y = [exp(−2·0.5²), exp(−2·0.25²)] = [e^−0.5, e^−0.125]; y − min = [0, e^−0.125 − e^−0.5]; scaled to sum 2 → w = [0, 2].
    const g = trainingGrid(3, 2);
    assert.deepEqual(Array.from(g.sigmas), [1, 0.75]);
    assert.deepEqual(Array.from(g.timesteps), [1000, 750]);
    assert.deepEqual(Array.from(g.weights), [0, 2]);
    // t = 874: |1000−874| = 126 > |750−874| = 124 → k = 1; t = 876: 124 < 126 → k = 0.
    assert.equal(snapToGrid(g, 874), 1);
    assert.equal(snapToGrid(g, 876), 0);
    // Sample 0 (t=874, σ=0.75, w=2): x0 = [1, −1], ε = [3, 1]
    //   noisy = 0.25·x0 + 0.75·ε = [0.25 + 2.25, −0.25 + 0.75] = [2.5, 0.5]; target = ε − x0 = [2, 2].
    // Sample 1 (t=876, σ=1, w=0): x0 = [0, 0], ε = [1, 1] → noisy = [1, 1], target = [1, 1].
    // pred = [[1, 2], [7, −3]] → w·(pred − target)² = [2·1, 2·0, 0·36, 0·16] → loss = 2/4 = 0.5.
    // d loss / d pred = 2·w·(pred − target)/4 = [2·2·(−1)/4, 0, 0, 0] = [−1, 0, 0, 0].
    const x0 = tensor([1, -1, 0, 0], [2, 2]);
    const noise = tensor([3, 1, 1, 1], [2, 2]);
    const inp = flowMatchInputs(x0, noise, [874, 876], g);
    assert.deepEqual(inp.ids, [1, 0]);
    assert.deepEqual(inp.weights, [2, 0]);
    assert.deepEqual(inp.noisy.toArray(), [2.5, 0.5, 1, 1]);
    assert.deepEqual(inp.target.toArray(), [2, 2, 1, 1]);
    const pred = tensor([1, 2, 7, -3], [2, 2], true);
    const loss = flowMatchLoss(pred, inp.target, inp.weights);
    assert.equal(loss.item(), 0.5);
    loss.backward();
    assert.deepEqual(pred.grad!.toArray().map((g) => g + 0), [-1, 0, 0, 0]); // + 0 folds −0 (zero-weight rows)
  });

  it('timestep sampling is seeded and uniform on {0..999}', () => {
    const a = sampleTrainingTimesteps(2000, 7);
    assert.deepEqual(a, sampleTrainingTimesteps(2000, 7));
    assert.ok(a.every((v) => Number.isInteger(v) && v >= 0 && v < 1000));
    const m = a.reduce((s, v) => s + v, 0) / a.length;
    assert.ok(Math.abs(m - 499.5) < 25, `mean ${m}`);
  });

  it('text dropout replaces contexts with the null embedding at rate p, seeded', () => {
    const nul = tensor([0, 0, 0, 0], [2, 2]);
    const ctx = [tensor([1, 1, 1, 1], [2, 2]), tensor([2, 2, 2, 2, 2, 2], [3, 2])];
    assert.deepEqual(dropTextContext(ctx, nul, 0, 1).dropped, [false, false]);
    const all = dropTextContext(ctx, nul, 1, 1);
    assert.ok(all.contexts.every((c) => c === nul));
    const many = Array.from({ length: 4000 }, (_, i) => tensor([i], [1, 1]));
    const d = dropTextContext(many, tensor([-1], [1, 1]), 0.1, 42);
    const rate = d.dropped.filter(Boolean).length / many.length;
    assert.ok(Math.abs(rate - 0.1) < 0.02, `rate ${rate}`);
    assert.deepEqual(dropTextContext(many, tensor([-1], [1, 1]), 0.1, 42).dropped, d.dropped);
    // Batched [B, L, D] form with a [L, D] null context.
    const batch = tensor([1, 1, 2, 2, 3, 3], [3, 1, 2]);
    const b = dropTextContext(batch, tensor([9, 9], [1, 2]), 0.5, 3);
    const expect = b.dropped.flatMap((dr, i) => (dr ? [9, 9] : [i + 1, i + 1]));
    assert.deepEqual(b.contexts.toArray(), expect);
    assert.deepEqual(b.contexts.shape, [3, 1, 2]);
  });
});
