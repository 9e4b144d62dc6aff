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
  it('decodes the base Wan VAE and each DC-AE-V topology given, reporting their decoders', () => {
    const topo: [number[], number[]] = [[4, 4, 8, 8, 8, 8, 8], [0, 0, 1, 1, 1, 1, 1]];
    const r = spawnSync(process.execPath, [script, '--topologies', JSON.stringify([topo]), '--reps', '1', '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { cpu: string; threads: number; rows: { kind: string; model: string; decoder_params: number; wall_s: number; cpu_s: number }[] };
    assert.ok(out.cpu.length > 0);
    assert.deepEqual(out.rows.map((x) => x.kind), ['decode', 'decode']);
    assert.match(out.rows[0]!.model, /^base wan-vae:wan-vae-shapes/);
    assert.equal(out.rows[1]!.model, `dc-ae-v widths ${JSON.stringify(topo[0])} depths ${JSON.stringify(topo[1])}`);
    const m = new DCAEV(topologyConfig({ name: 't', widths: topo[0], depths: topo[1], latentChannels: 32, chunk: 16 }));
    assert.equal(out.rows[1]!.decoder_params, [...m.decoder.namedParams()].reduce((a, [, p]) => a + p.size, 0));
    for (const x of out.rows) assert.ok(x.wall_s > 0 && x.cpu_s > 0 && Number.isFinite(x.wall_s), JSON.stringify(x));
  });
});
