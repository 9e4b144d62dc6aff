// A preload for measuring a trainer's CPU per step without touching it (docs/small-step-speed.md):
//   node --import ./scripts/step-cpu.mjs dist/src/cli/main.js train-dit ... --log-every 1
// At each record appended to a train.jsonl it takes process.cpuUsage() (user + system, all threads) and wall time
// since the previous record; at exit it prints both per step to stderr, and their medians over the steps after the
// first two (warm-up). With --log-every k a "step" is k steps.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const orig = fs.writeFileSync;
let last = process.cpuUsage();
let lastWall = performance.now();
const steps = [];
fs.writeFileSync = function (path, data, opts) {
  const r = orig.apply(this, arguments);
  if (typeof path === 'string' && path.endsWith('train.jsonl') && opts && opts.flag === 'a') {
    const c = process.cpuUsage();
    const w = performance.now();
    steps.push({ cpu: (c.user - last.user + c.system - last.system) / 1000, wall: w - lastWall });
    last = c;
    lastWall = w;
  }
  return r;
};
syncBuiltinESMExports(); // the trainers import writeFileSync by name

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1].toFixed(1) : 'n/a';
};
process.on('exit', () => {
  if (!steps.length) return;
  const after = steps.slice(2);
  process.stderr.write(
    `step-cpu: CPU ms per step ${steps.map((s) => s.cpu.toFixed(0)).join(' ')}\n` +
      `step-cpu: wall ms per step ${steps.map((s) => s.wall.toFixed(0)).join(' ')}\n` +
      `step-cpu: median after 2: CPU ${median(after.map((s) => s.cpu))} ms, wall ${median(after.map((s) => s.wall))} ms\n`,
  );
});
