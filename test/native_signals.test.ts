/**
 * Signals during oneDNN calls (native/src/blas_conv.cc, SignalBlock): a handled signal arriving while dnnl_sgemm or a
 * oneDNN convolution runs used to corrupt the heap or crash the process (node's SIGINT / SIGTERM handlers, which the
 * trainers install to stop after a step, and V8's SIGPROF under --cpu-prof). A child process runs oneDNN GEMMs and
 * convolutions while a worker thread sends it SIGUSR2 continuously; it must finish, every result equal to the first
 * of its kind, and its handler must have run (the signals were delivered, not lost). Not a timing test: the child
 * stops after a fixed number of calls.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { getNativeAddon } from '../src/backend/index.js';
import { repoRoot } from './helpers.js';

const addon = getNativeAddon();
const noAddon = addon ? false : process.env.CI ? false : 'native addon not built';

// The child: CommonJS through `node -e`, loading the addon through the backend (DCVG_NATIVE_ADDON is honoured).
const CHILD = `
const { Worker } = require('node:worker_threads');
let handled = 0;
process.on('SIGUSR2', () => { handled++; });
(async () => {
  const { getNativeAddon } = await import(${JSON.stringify(join(repoRoot, 'dist', 'src', 'backend', 'index.js'))});
  const a = getNativeAddon();
  a.setGemmPath('onednn');
  const w = new Worker("const { parentPort } = require('node:worker_threads'); let on = true; parentPort.on('message', () => { on = false; }); (function loop() { for (let i = 0; i < 200 && on; i++) process.kill(process.pid, 'SIGUSR2'); if (on) setImmediate(loop); })();", { eval: true });
  const M = 1024, N = 128, K = 128;
  const A = new Float32Array(M * K).map((_, i) => Math.sin(i)), B = new Float32Array(K * N).map((_, i) => Math.cos(i));
  const x = [1, 8, 5, 24, 24], wt = [8, 8, 3, 3, 3], y = [1, 8, 3, 22, 22];
  const X = new Float32Array(8 * 5 * 24 * 24).map((_, i) => Math.sin(0.1 * i)), W = new Float32Array(8 * 8 * 27).map((_, i) => Math.cos(0.3 * i));
  let refG = null, refC = null, bad = 0;
  for (let it = 0; it < 2000; it++) {
    const C = new Float32Array(M * N);
    a.gemm(false, true, 1, M, N, K, 1, A, 0, B, 0, 0, C, 0);
    const Y = new Float32Array(8 * 3 * 22 * 22);
    a.conv3dForward(x, wt, y, [1, 1, 1], [0, 0, 0, 0, 0, 0], 1, X, W, null, Y);
    if (refG === null) { refG = C; refC = Y; continue; }
    let same = true;
    for (let i = 0; i < C.length; i++) if (C[i] !== refG[i]) same = false;
    for (let i = 0; i < Y.length; i++) if (Y[i] !== refC[i]) same = false;
    if (!same) bad++;
    if (it % 25 === 0) await new Promise((r) => setImmediate(r)); // let the handler run
  }
  w.postMessage('stop');
  await w.terminate();
  await new Promise((r) => setImmediate(r));
  process.stdout.write(JSON.stringify({ bad, handled }));
})();
`;

describe('native: signals during oneDNN calls', { skip: noAddon }, () => {
  it('GEMMs and convolutions under a stream of handled signals finish with unchanged results', () => {
    const r = spawnSync(process.execPath, ['-e', CHILD], { encoding: 'utf8', env: { ...process.env, OMP_WAIT_POLICY: 'passive' } });
    assert.equal(r.signal, null, `the child died of ${r.signal}: ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { bad: number; handled: number };
    assert.equal(out.bad, 0, 'results changed under signals');
    assert.ok(out.handled > 0, 'no signal was handled (the test did not test anything)');
  });
});
