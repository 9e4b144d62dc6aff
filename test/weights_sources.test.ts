/**
 * Weights sources (issue #17 item 5): sharded safetensors with an index, model folders (diffusers model and pipeline
 * folders, the official Wan layout, a train-ae run folder), all through one openWeights, with the index checked
 * against the shards before any data is read.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSafetensors, saveSafetensors } from '../src/io/safetensors.js';
import { openWeights, weightsInFolder } from '../src/io/weights.js';
import { DCAEV, createModel, resolveConfig } from '../src/models/dcaev/autoencoder.js';
import { wanStateDictToDiffusers } from '../src/models/wan/keys.js';
import { createWanModel, loadWanWeights } from '../src/models/wan/run.js';
import { FormatError, ValueError } from '../src/errors.js';
import { zeros, type Tensor } from '../src/tensor/tensor.js';
import { fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, DCVG_NO_PROGRESS: '1' } });
const AE = 'dc-ae-v/chunk_causal_small';
const WAN = 'wan/wan_t2v_dc_tiny';

/** Writes `sd` as `n` shards named like diffusers' (prefix-0000i-of-0000n.safetensors) plus the index; returns the index path. */
function writeSharded(dir: string, prefix: string, sd: Map<string, Tensor>, n: number, edit?: (map: Record<string, string>) => void): string {
  const keys = [...sd.keys()];
  const map: Record<string, string> = {};
  const per = Math.ceil(keys.length / n);
  for (let i = 0; i < n; i++) {
    const shard = `${prefix}-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
    const part = new Map(keys.slice(i * per, (i + 1) * per).map((k) => [k, sd.get(k)!]));
    saveSafetensors(join(dir, shard), part, { dtype: 'BF16' });
    for (const k of part.keys()) map[k] = shard;
  }
  edit?.(map);
  const index = join(dir, `${prefix}.safetensors.index.json`);
  writeFileSync(index, JSON.stringify({ metadata: { total_size: 0 }, weight_map: map }));
  return index;
}

const sameWeights = (a: Map<string, Tensor>, b: Map<string, Tensor>) => {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, t] of a) assert.deepEqual([...b.get(k)!.readSync()], [...t.readSync()], k);
};

describe('sharded safetensors and model folders', { skip: skipUnlessFixture(`${AE}.json`) || skipUnlessFixture('wan/wan_fixtures.json') }, () => {
  const root = mkdtempSync(join(tmpdir(), 'dcvg-shards-'));
  const aeRef = () => createModel(fixturePath(`${AE}.json`), fixturePath(`${AE}.weights.safetensors`));
  // BF16 shards: the reference loads the same weights rounded to BF16 (a single BF16 file).
  const aeBf16 = join(root, 'ae.bf16.safetensors');
  saveSafetensors(aeBf16, aeRef().stateDict(), { dtype: 'BF16' });

  it('a DC-AE-V loads from an index, and from the folder holding it, as from one file', () => {
    const dir = join(root, 'ae');
    mkdirSync(dir);
    const index = writeSharded(dir, 'model', aeRef().stateDict(), 3);
    const want = createModel(fixturePath(`${AE}.json`), aeBf16).stateDict();
    sameWeights(want, createModel(fixturePath(`${AE}.json`), index).stateDict());
    sameWeights(want, createModel(fixturePath(`${AE}.json`), dir).stateDict());
    const w = openWeights(dir);
    assert.equal(w.format, 'sharded-safetensors');
    assert.equal(w.file, index);
    assert.equal(w.dtype([...w.tensors.keys()][0]!), 'BF16');
    w.close();
  });

  it('Wan: a diffusers model folder (diffusers names, shards) and a diffusers pipeline folder', () => {
    const ref = createWanModel(`${fixturePath('wan/wan_fixtures.json')}#wan_t2v_dc_tiny`, fixturePath(`${WAN}.weights.safetensors`));
    const cfg = `${fixturePath('wan/wan_fixtures.json')}#wan_t2v_dc_tiny`;
    const single = join(root, 'wan.bf16.safetensors');
    saveSafetensors(single, ref.stateDict(), { dtype: 'BF16' });
    const want = createWanModel(cfg, single).stateDict();
    // the official Wan layout and diffusers' transformer folder both name it diffusion_pytorch_model
    const pipe = join(root, 'pipeline');
    const tr = join(pipe, 'transformer');
    mkdirSync(tr, { recursive: true });
    writeFileSync(join(pipe, 'model_index.json'), '{"_class_name": "WanPipeline"}');
    writeFileSync(join(tr, 'config.json'), '{}');
    writeSharded(tr, 'diffusion_pytorch_model', wanStateDictToDiffusers(ref.stateDict()), 2);
    const m = createWanModel(cfg);
    const r = loadWanWeights(m, tr);
    assert.equal(r.format, 'diffusers');
    sameWeights(want, m.stateDict());
    sameWeights(want, createWanModel(cfg, tr).stateDict());
    // a pipeline folder needs the component named; then it resolves into it
    assert.throws(() => createWanModel(cfg, pipe), (e: Error) => e instanceof ValueError && /diffusers pipeline folder; name the component to load \(one of: transformer\)/.test(e.message));
    assert.equal(weightsInFolder(pipe, 'transformer'), join(tr, 'diffusion_pytorch_model.safetensors.index.json'));
    const w = openWeights(pipe, { component: 'transformer' });
    assert.equal(w.format, 'sharded-safetensors');
    w.close();
  });

  it('dcvg info --weights and dcvg convert take an index or a folder', () => {
    const dir = join(root, 'ae');
    const info = dcvg('info', '--model', fixturePath(`${AE}.json`), '--weights', dir, '--json');
    assert.equal(info.status, 0, info.stderr);
    const ck = (JSON.parse(info.stdout) as { checkpoint: { format: string; matches: boolean; dtypes: Record<string, number> } }).checkpoint;
    assert.equal(ck.format, 'sharded-safetensors');
    assert.equal(ck.matches, true);
    assert.deepEqual(Object.keys(ck.dtypes), ['BF16']);
    const out = join(root, 'merged.safetensors');
    const c = dcvg('convert', join(dir, 'model.safetensors.index.json'), '-o', out, '--dtype', 'bf16');
    assert.equal(c.status, 0, c.stderr);
    sameWeights(loadSafetensors(aeBf16).tensors, loadSafetensors(out).tensors);
  });

  it('--weights <run folder> alone: the config embedded in the folder\'s model.safetensors', () => {
    const x = join(root, 'x.safetensors');
    saveSafetensors(x, { input: zeros([1, 3, 8, 32, 32]) });
    const r = dcvg('encode', x, '-o', join(root, 'z.safetensors'), '--weights', join(repoRoot, 'assets', 'default-ae'), '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.match(JSON.parse(r.stdout).model as string, /dcvg-ae-small/);
  });

  it('an index that does not match its shards is refused before any data is read', () => {
    const sd = aeRef().stateDict();
    const [k0, k1] = [...sd.keys()];
    const cases: [string, (m: Record<string, string>) => void, RegExp][] = [
      ['missing shard', (m) => (m[k0!] = 'nope-00001-of-00001.safetensors'), /shard nope-00001-of-00001\.safetensors is missing/],
      ['wrong shard', (m) => (m[k0!] = m[[...sd.keys()].at(-1)!]!), new RegExp(`weight_map puts "${k0!.replace(/\./g, '\\.')}" in .*, but it is in`)],
      ['unlisted', (m) => delete m[k1!], new RegExp(`holds "${k1!.replace(/\./g, '\\.')}", which the weight_map does not list`)],
      ['climbs out', (m) => (m[k0!] = '../evil.safetensors'), /must name a shard file beside the index/],
      ['absolute', (m) => (m[k0!] = '/etc/passwd'), /must name a shard file beside the index/],
    ];
    for (const [name, edit, re] of cases) {
      const dir = join(root, `bad-${name.replace(/ /g, '-')}`);
      mkdirSync(dir);
      const index = writeSharded(dir, 'model', sd, 2, edit);
      assert.throws(() => openWeights(index), (e: Error) => e instanceof FormatError && re.test(e.message), name);
    }
    // a key stored in two shards
    const dir = join(root, 'bad-twice');
    mkdirSync(dir);
    const index = writeSharded(dir, 'model', sd, 2);
    const first = loadSafetensors(join(dir, 'model-00001-of-00002.safetensors')).tensors;
    const second = loadSafetensors(join(dir, 'model-00002-of-00002.safetensors')).tensors;
    second.set(k0!, first.get(k0!)!);
    saveSafetensors(join(dir, 'model-00002-of-00002.safetensors'), second);
    assert.throws(() => openWeights(index), /tensor ".*" is stored in two shards/);
    // not JSON, no weight_map
    writeFileSync(join(dir, 'x.safetensors.index.json'), '{"weight_map": 3}');
    assert.throws(() => openWeights(join(dir, 'x.safetensors.index.json')), /needs a "weight_map" object/);
  });

  it('a folder with no weights, or several, says so', () => {
    const empty = join(root, 'empty');
    mkdirSync(empty);
    assert.throws(() => openWeights(empty), /holds no weights file/);
    const two = join(root, 'two');
    mkdirSync(two);
    saveSafetensors(join(two, 'a.safetensors'), { x: aeRef().stateDict().values().next().value! });
    saveSafetensors(join(two, 'b.safetensors'), { x: aeRef().stateDict().values().next().value! });
    assert.throws(() => openWeights(two), /holds several weights files \(a\.safetensors, b\.safetensors\); pass the one to load/);
    // a train-ae run folder: model.safetensors is the weights (checkpoint.safetensors beside it is not)
    const run = join(root, 'run');
    mkdirSync(run);
    saveSafetensors(join(run, 'model.safetensors'), aeRef().stateDict());
    saveSafetensors(join(run, 'checkpoint.safetensors'), { step: aeRef().stateDict().values().next().value! });
    assert.equal(weightsInFolder(run), join(run, 'model.safetensors'));
    const m = new DCAEV(resolveConfig(fixturePath(`${AE}.json`)));
    const w = openWeights(run);
    m.loadStateDict(w.tensors);
    w.close();
    sameWeights(aeRef().stateDict(), m.stateDict());
  });
});
