/**
 * Smoke test of bench/study_latency.ts (the decode and generation cost at the shapes study's size): the JSON rows
 * name each model with its decoder's parameter count, and the times are positive. Nothing depends on the machine's
 * speed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { getNativeAddon } from '../src/backend/index.js';
import { DCAEV, topologyConfig } from '../src/models/dcaev/index.js';
import { repoRoot } from './helpers.js';

const script = join(repoRoot, 'dist', 'bench', 'study_latency.js');
const skip = getNativeAddon() ? false : process.env.CI ? false : 'native addon not built';

describe('bench/study_latency', { skip }, () => {
  it('decodes the base Wan VAE and each DC-AE-V topology given at its own factors, naming them and the video made', () => {
    // f32 (a block in every stage after the first) and f16 (a depth-0 second stage has no down-sampler): both
    // decode the latent of the same 16 x 128 x 128 clip
    const topos: [number[], number[]][] = [
      [[4, 4, 8, 8, 8, 8, 8], [0, 1, 1, 1, 1, 1, 1]],
      [[4, 4, 8, 8, 8, 8, 8], [0, 0, 1, 1, 1, 1, 1]],
    ];
    const r = spawnSync(process.execPath, [script, '--topologies', JSON.stringify(topos), '--reps', '1', '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { cpu: string; threads: number; rows: { kind: string; model: string; output: string; decoder_params: number; wall_s: number; cpu_s: number }[] };
    assert.ok(out.cpu.length > 0);
    assert.deepEqual(out.rows.map((x) => x.kind), ['decode', 'decode', 'decode']);
    assert.match(out.rows[0]!.model, /^base wan-vae:wan-vae-shapes/);
    assert.deepEqual(
      out.rows.slice(1).map((x) => x.model),
      topos.map(([w, d], i) => `dc-ae-v f${i ? 16 : 32}t4c32 widths ${JSON.stringify(w)} depths ${JSON.stringify(d)}`),
    );
    // the Wan VAE makes 1 + 4k frames: 13 from the 4 latent frames of a 16-frame request (as generate plans it)
    assert.deepEqual(out.rows.map((x) => x.output), ['13x128x128', '16x128x128', '16x128x128']);
    topos.forEach(([widths, depths], i) => {
      const m = new DCAEV(topologyConfig({ name: 't', widths, depths, latentChannels: 32, chunk: 16 }));
      assert.equal(out.rows[i + 1]!.decoder_params, [...m.decoder.namedParams()].reduce((a, [, p]) => a + p.size, 0));
    });
    for (const x of out.rows) assert.ok(x.wall_s > 0 && x.cpu_s > 0 && Number.isFinite(x.wall_s), JSON.stringify(x));
  });
});
