#!/usr/bin/env node
// Held-out PSNR (or SSIM) over training from one or more train-ae run folders (stages run one after another):
//   node scripts/plot-evals.mjs [--ssim] out.png runs/stage1 runs/stage2 ...
// Each run's evaluations are placed after the previous run's last step, one series per run.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeLinePlotPng } from '../dist/src/metrics/plot.js';

const args = process.argv.slice(2);
const metric = args[0] === '--ssim' ? (args.shift(), 'ssim') : 'psnr';
const [out, ...runs] = args;
if (!out || !runs.length) {
  console.error('usage: node scripts/plot-evals.mjs [--ssim] out.png run1 [run2 ...]');
  process.exit(1);
}
const BUCKET = 100;
const series = [];
let offset = 0;
const all = [];
for (const r of runs) {
  const lines = readFileSync(join(r, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const evals = lines.filter((l) => l.eval).map((l) => ({ step: offset + l.step, value: l.eval[metric] }));
  const last = Math.max(...lines.map((l) => l.step));
  all.push({ name: r.replace(/\/$/, '').split('/').pop(), evals });
  offset += last;
}
const n = Math.ceil(offset / BUCKET) + 1;
for (const { name, evals } of all) {
  const v = new Array(n).fill(NaN);
  // connect this run's evaluations with straight segments between evaluation steps
  for (let i = 0; i < evals.length; i++) {
    const a = evals[i];
    const b = evals[i + 1];
    const ia = Math.round(a.step / BUCKET);
    v[ia] = a.value;
    if (b) {
      const ib = Math.round(b.step / BUCKET);
      for (let k = ia + 1; k < ib; k++) v[k] = a.value + ((b.value - a.value) * (k - ia)) / (ib - ia);
    }
  }
  series.push({ name, values: v });
}
const label = metric === 'ssim' ? 'SSIM' : 'PSNR';
writeLinePlotPng(out, { title: `held-out ${label} (EMA weights, whole clips) during training`, xLabel: 'step', yLabel: metric === 'ssim' ? label : `${label} dB`, xScale: BUCKET, series });
console.log(`wrote ${out}`);
