/**
 * Bounded memory: an 8,000-token, 12-head, 128-dim attention (forward and backward) runs without materialising the
 * 8000 x 8000 x 12 score matrix (3 GB in float32). Measured in a fresh child process by its peak RSS (VmHWM).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot, testBackends } from './helpers.js';

const nativeSkip = testBackends()[1]!.skip;

describe('attention memory', { skip: nativeSkip }, () => {
  it('8000 tokens x 12 heads x 128: peak RSS stays far below the score-matrix size', () => {
    const script = `
      import * as T from ${JSON.stringify(join(repoRoot, 'dist', 'src', 'index.js'))};
      import { readFileSync } from 'node:fs';
      const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
      T.setBackend('native');
      const [q, k, v] = [1, 2, 3].map((s) => T.parameter(T.randn([1, 12, 8000, 128], s)));
      const before = hwm();
      const out = T.attention(q, k, v);
      out.backward(T.ones(out.shape));
      const after = hwm();
      process.stdout.write(JSON.stringify({ before, after, finite: Number.isFinite(q.grad.readSync()[0]) }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, DCVG_BACKEND: 'native' } });
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout) as { before: number; after: number; finite: boolean };
    assert.ok(m.finite);
    // inputs are 3 x 49 MB; out, grads and the gradient input add ~5 x 49 MB. The score matrix alone would be 3 GB.
    const grew = m.after - m.before;
    assert.ok(grew < 600, `peak RSS grew by ${grew.toFixed(0)} MB during attention (before ${m.before.toFixed(0)} MB)`);
  });
});
