/**
 * AE-Adapt-V phase 1 (src/adapt/align.ts): the alignment losses and their gradients against PyTorch (float64), the
 * student's initialisation, and what trains.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { alignmentLosses, initStudent, studentEmbed, teacherEmbed } from '../src/adapt/align.js';
import { Rng, randn } from '../src/tensor/random.js';
import { parameter } from '../src/tensor/tensor.js';
import { relErr, torchPython } from './helpers.js';

function torchSkip(): string | false {
  if (!existsSync(torchPython)) return `${torchPython} missing: the PyTorch comparison of the alignment loss is not run`;
  const r = spawnSync(torchPython, ['-c', 'import torch'], { encoding: 'utf8' });
  return r.status === 0 ? false : `torch not importable by ${torchPython}: the PyTorch comparison of the alignment loss is not run`;
}

const PY = `
import json, sys, torch
import torch.nn.functional as F
d = json.load(sys.stdin)
T = lambda k: torch.tensor(d[k]['data'], dtype=torch.float64).reshape(d[k]['shape'])
wan, tw, tb, dc = T('wan'), T('tw'), T('tb'), T('dc')
sw = T('sw').requires_grad_(True); sb = T('sb').requires_grad_(True)
te = F.conv3d(wan, tw, tb, stride=tuple(tw.shape[2:]))
se = F.conv3d(dc, sw, sb)
r = [te.shape[i] // se.shape[i] for i in (2, 3, 4)]
down = F.mse_loss(F.avg_pool3d(te, r), se)
avg = F.mse_loss(te.mean(dim=(3, 4)), se.mean(dim=(3, 4)))
up = F.mse_loss(te, F.interpolate(se, size=te.shape[2:], mode='nearest'))
gw, gb = torch.autograd.grad(down, [sw, sb])
print(json.dumps({'down': down.item(), 'avg': avg.item(), 'up': up.item(), 'gw': gw.flatten().tolist(), 'gb': gb.flatten().tolist()}))
`;

describe('adapt align: alignment loss', () => {
  it('downsample / avgpool / upsample losses and the student gradients match PyTorch (float64)', { skip: torchSkip() }, () => {
    const rng = new Rng(5);
    const [B, Cw, Cd, D, F, H, W] = [2, 4, 6, 8, 2, 8, 12];
    const wan = randn([B, Cw, F, H, W], rng);
    const tw = randn([D, Cw, 1, 2, 2], rng);
    const tb = randn([D], rng);
    const dc = randn([B, Cd, F, H / 4, W / 4], rng); // teacher grid (F, H/2, W/2) = 2x the student's
    const st = initStudent(D, Cd, rng);
    const sw = parameter(st.weight);
    const sb = parameter(st.bias);
    const l = alignmentLosses(teacherEmbed(wan, { weight: tw, bias: tb }), studentEmbed(dc, sw, sb));
    l.downsample.backward();
    const J = (t: { shape: readonly number[]; readSync(): Float32Array }) => ({ shape: t.shape, data: Array.from(t.readSync()) });
    const r = spawnSync(torchPython, ['-c', PY], { input: JSON.stringify({ wan: J(wan), tw: J(tw), tb: J(tb), dc: J(dc), sw: J(sw), sb: J(sb) }), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const ref = JSON.parse(r.stdout) as { down: number; avg: number; up: number; gw: number[]; gb: number[] };
    // float32 against float64: each value is a sum of <= C·4 = 16 products then a mean over <= 2·8·2·4·6 elements;
    // float32 rounding of such sums stays below (16 + log2(768))·2^-24 ≈ 1.6e-6 relative, so 2e-5 has a margin of 10
    const tol = 2e-5;
    for (const [k, ours, theirs] of [
      ['downsample', l.downsample.item(), ref.down],
      ['avgpool', l.avgpool.item(), ref.avg],
      ['upsample', l.upsample.item(), ref.up],
    ] as const)
      assert.ok(Math.abs(ours - theirs) <= tol * Math.abs(theirs), `${k}: ${ours} vs torch ${theirs}`);
    const eW = relErr(sw.grad!.readSync(), ref.gw);
    const eB = relErr(sb.grad!.readSync(), ref.gb);
    assert.ok(eW <= tol && eB <= tol, `grad weight ${eW}, bias ${eB}`);
    // the loss depends on the student only: the teacher's tensors get no gradient
    assert.equal(tw.grad, null);
    assert.equal(tb.grad, null);
  });

  it('losses vanish for a student equal to the teacher; grids that are not integer multiples are refused', () => {
    const rng = new Rng(2);
    const te = randn([1, 4, 2, 4, 4], rng);
    // a random student on the half-size grid: all losses > 0; the teacher as its own student (ratio 1): all zero
    const pooled = alignmentLosses(te, randn([1, 4, 2, 2, 2], rng));
    assert.ok(pooled.downsample.item() > 0 && pooled.upsample.item() > 0);
    const l = alignmentLosses(te, te);
    assert.equal(l.downsample.item(), 0);
    assert.equal(l.avgpool.item(), 0);
    assert.equal(l.upsample.item(), 0);
    assert.throws(() => alignmentLosses(te, randn([1, 4, 2, 3, 3], rng)), /integer multiples/);
  });
});

describe('adapt align: student initialisation', () => {
  it('xavier-uniform on [D, C] and bias uniform(±1/√C): bounds and variance', () => {
    const D = 256;
    const C = 32;
    const { weight, bias } = initStudent(D, C, new Rng(1));
    assert.deepEqual(weight.shape, [D, C, 1, 1, 1]);
    const bw = Math.sqrt(6 / (D + C));
    const w = weight.readSync();
    let ss = 0;
    for (const v of w) {
      assert.ok(Math.abs(v) <= bw);
      ss += v * v;
    }
    // variance of U(-b, b) is b²/3; with n = 8192 draws the sample variance's relative standard error is
    // sqrt(0.8/n) ≈ 1%, so 5% is a 5-sigma bound
    const varW = ss / w.length;
    assert.ok(Math.abs(varW / (bw * bw / 3) - 1) < 0.05, `weight variance ${varW} vs ${(bw * bw) / 3}`);
    const bb = 1 / Math.sqrt(C);
    for (const v of bias.readSync()) assert.ok(Math.abs(v) <= bb);
    assert.ok(Math.max(...bias.readSync().map(Math.abs)) > bb / 2, 'the bias uses its range');
  });
});
