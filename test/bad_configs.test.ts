/**
 * Bad configs and inputs fail fast with one typed line naming the file and the field (issue #16): absurd sizes are
 * refused from the config alone (nothing built), wrong types and shapes of JSON are named, a missing config file is
 * "not found", `run wan` checks its inputs and never overwrites one, and huge shapes at the API are ShapeErrors.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../src/index.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { DCAEV, resolveConfig } from '../src/models/dcaev/autoencoder.js';
import { DCAEV_LIMITS, PRESET_NAMES, configFromReference, parameterCounts, presetConfig, topologyConfig } from '../src/models/dcaev/config.js';
import { WAN_LIMITS, WAN_PRESET_NAMES, parseWanConfig, resolveWanConfig, wanParameterCount, wanPreset } from '../src/models/wan/config.js';
import { WanModel } from '../src/models/wan/model.js';
import { fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
const dir = mkdtempSync(join(tmpdir(), 'dcvg-badcfg-'));
const skipAe = skipUnlessFixture('dc-ae-v/chunk_causal_small.json');
const skipWan = skipUnlessFixture('wan/wan_fixtures.json');

/** A failed CLI run: exit 1, one line on stderr, no JavaScript error class, no stdout. */
function assertCleanFailure(r: ReturnType<typeof dcvg>, pattern: RegExp): void {
  assert.equal(r.status, 1, `status ${r.status}, signal ${r.signal}, stderr: ${r.stderr}`);
  assert.match(r.stderr, pattern);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /TypeError|RangeError|Cannot read properties|parameters NaN|Infinity parameters/);
}

function throwsValue(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof T.ValueError, `expected a ValueError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

const aeFixture = () => JSON.parse(readFileSync(fixturePath('dc-ae-v/chunk_causal_small.json'), 'utf8')).config_overrides;
const writeJson = (name: string, v: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, typeof v === 'string' ? v : JSON.stringify(v));
  return p;
};

describe('DC-AE-V configs: presets and fixtures still load, counts come from the shapes', () => {
  it('every preset: the arithmetic parameter count equals the built model', () => {
    for (const n of PRESET_NAMES) {
      const c = presetConfig(n);
      const m = new DCAEV(c);
      const p = parameterCounts(c);
      assert.equal(p.encoder, m.encoder.parameterCount(), n);
      assert.equal(p.decoder, m.decoder.parameterCount(), n);
      assert.equal(p.tensors, m.shapes().size, n);
    }
  });

  it('every fixture config and the shipped configs load, with matching counts', { skip: skipAe }, () => {
    const files = [
      ...['chunk_causal_small', 'causal_small', 'non_causal_small'].map((n) => fixturePath(`dc-ae-v/${n}.json`)),
      join(repoRoot, 'assets', 'default-ae', 'config.json'),
      join(repoRoot, 'docs', 'models', 'dcvg-ae-small-f32t4c32-v1.json'),
    ].filter(existsSync);
    assert.ok(files.length >= 3);
    for (const f of files) {
      const c = resolveConfig(f);
      const m = new DCAEV(c);
      assert.equal(parameterCounts(c).encoder + parameterCounts(c).decoder, m.parameterCount(), f);
    }
  });
});

describe('DC-AE-V configs: absurd sizes are refused before anything is built', { skip: skipAe }, () => {
  it('dcvg info with depth_list 10^6 fails at once, naming the file and the field', () => {
    const c = aeFixture();
    c.encoder.depth_list[1] = 1e6;
    const p = writeJson('deep.json', c);
    const r = dcvg('info', '--model', p);
    assertCleanFailure(r, /deep\.json: encoder\.depth_list\[1\] must be an integer in \[0, 256\], got 1000000/);
  });

  it('a total beyond the limit is refused with the count (each tensor alone would fit)', () => {
    const c = aeFixture();
    c.encoder.width_list = [8, 8192, 16, 32, 32, 32, 32];
    c.encoder.depth_list = [0, 256, 1, 1, 1, 1, 1];
    c.encoder.downsample_block_type[0] = 'ChunkCausalConvPixelUnshuffle@2@1@3@3@8';
    c.encoder.project_in_block_type = 'ChunkCausalConvPixelUnshuffle@2@1@3@3@8';
    throwsValue(() => configFromReference(c, 'huge', 'huge.json'), /huge\.json: [\d,]+ parameters \(.*\) is beyond the limit of 17,179,869,184/);
  });

  it('one tensor beyond what a typed array holds is refused, naming it', () => {
    const c = aeFixture();
    c.encoder.width_list = [8, 16384, 16384, 32, 32, 32, 32];
    throwsValue(() => configFromReference(c, 'wide'), /"wide": encoder stage 1 blocks would have 7,247,757,312 weights \(27\.0 GiB\), more than one tensor can hold/);
  });

  it('bounds apply to configs built in code too', () => {
    throwsValue(() => topologyConfig({ name: 't', widths: [8, 16], depths: [0, 1e7], latentChannels: 4 }), /depth_list\[1\] must be an integer in \[0, 256\]/);
    const ok = presetConfig(PRESET_NAMES[0]);
    throwsValue(() => resolveConfig({ ...ok, latentChannels: DCAEV_LIMITS.latentChannels + 1 }), /latent_channels must be an integer/);
  });
});

describe('DC-AE-V configs: every field is type-checked', { skip: skipAe }, () => {
  it('in_channels "abc" is refused (was: parameters NaN)', () => {
    const c = aeFixture();
    c.in_channels = 'abc';
    const r = dcvg('info', '--model', writeJson('inch.json', c));
    assertCleanFailure(r, /inch\.json: in_channels must be an integer in \[1, 64\], got "abc"/);
  });

  it('a kernel size of 1e310 (Infinity) is refused (was: accepted)', () => {
    const c = aeFixture();
    c.encoder.block_type[1] = `ChunkCausalResBlock3d@1${'0'.repeat(310)}@3@8`;
    throwsValue(() => configFromReference(c, 'k', 'k.json'), /k\.json: encoder\.block_type\[1\] "ChunkCausalResBlock3d@10+\.\.\.: spatial kernel size must be an integer in \[1, 15\], got Infinity/);
    const d = aeFixture();
    d.latent_channels = Infinity;
    throwsValue(() => configFromReference(d), /latent_channels must be an integer in \[1, 4096\], got Infinity/);
  });

  it('other fields: scaling_factor, widths, use_feature_cache, kernel parity, chunk', () => {
    const cases: [(c: Record<string, any>) => void, RegExp][] = [
      [(c) => (c.scaling_factor = 'x'), /scaling_factor must be a positive finite number, got "x"/],
      [(c) => (c.encoder.width_list[3] = 3.5), /encoder\.width_list\[3\] must be an integer in \[1, 16384\], got 3\.5/],
      [(c) => (c.decoder.width_list[3] = '32'), /decoder\.width_list\[3\] must be an integer in \[1, 16384\], got "32"/],
      [(c) => (c.use_feature_cache = 'no'), /use_feature_cache must be true or false/],
      [(c) => (c.encoder.block_type[2] = 'ChunkCausalResBlock3d@4@3@8'), /encoder\.block_type\[2\] .*kernel sizes must be odd/],
      [(c) => (c.encoder.block_type[2] = 'ChunkCausalResBlock3d@3@3@0'), /encoder\.block_type\[2\] .*chunk length must be an integer in \[1, 4096\], got 0/],
      [(c) => (c.encoder.downsample_block_type[0] = 'ChunkCausalConvPixelUnshuffle@99@1@3@3@8'), /downsample_block_type\[0\] .*spatial factor must be an integer in \[1, 16\], got 99/],
      [(c) => (c.decoder.project_in_block_type = 7), /decoder\.project_in_block_type must be a block type string/],
    ];
    for (const [mut, re] of cases) {
      const c = aeFixture();
      mut(c);
      throwsValue(() => configFromReference(c, 'cfg', 'cfg.json'), re);
    }
  });
});

describe('DC-AE-V configs: malformed JSON documents', { skip: skipAe }, () => {
  it('null, arrays, strings and numbers at top level', () => {
    for (const [name, text, shown] of [
      ['null.json', 'null', 'null'],
      ['arr.json', '[1, 2]', '\\[1,2\\]'],
      ['str.json', '"x"', '"x"'],
      ['num.json', '42', '42'],
    ] as const) {
      const r = dcvg('info', '--model', writeJson(name, text));
      assertCleanFailure(r, new RegExp(`${name.replace('.', '\\.')} must be a JSON object .*got ${shown}$`, 'm'));
    }
    throwsValue(() => configFromReference({ config_overrides: null }), /config_overrides must be an object, got null/);
  });

  it('missing fields, unknown block types, wrong list lengths', () => {
    const cases: [(c: Record<string, any>) => void, RegExp][] = [
      [(c) => delete c.latent_channels, /latent_channels must be an integer in \[1, 4096\], got nothing/],
      [(c) => delete c.decoder, /the "decoder" section is missing/],
      [(c) => (c.encoder = [1]), /encoder must be an object/],
      [(c) => delete c.encoder.width_list, /encoder\.width_list must be a list of integers, got nothing/],
      [(c) => delete c.encoder.project_out_block_type, /encoder\.project_out_block_type is missing/],
      [(c) => (c.encoder.block_type = 'FancyBlock3d@3@3'), /encoder\.block_type\[0\]: unknown DC-AE-V block type "FancyBlock3d@3@3"/],
      [(c) => (c.encoder.block_type[0] = 'ChunkCausalConvLayer3d@3@3@8'), /encoder\.block_type\[0\]: expected a ResBlock3d block/],
      [(c) => c.encoder.block_type.pop(), /encoder\.block_type has 6 entries, needs 7 \(one per stage\)/],
      [(c) => (c.decoder.upsample_block_type = c.decoder.upsample_block_type.slice(0, 2)), /decoder\.upsample_block_type has 2 entries, needs 6/],
      [(c) => c.decoder.depth_list.pop(), /decoder: width_list has 7 stages but depth_list 6/],
      [(c) => (c.encoder.depth_list = [0, 0, 0, 0, 0, 0, 0]), /encoder\.depth_list: every stage has depth 0/],
      [(c) => (c.encoder.width_list = new Array(17).fill(8)), /encoder\.width_list must have 1 to 16 entries/],
    ];
    for (const [mut, re] of cases) {
      const c = aeFixture();
      mut(c);
      throwsValue(() => configFromReference(c, 'cfg', 'cfg.json'), re);
    }
  });

  it('--model: a missing .json file is "not found", a preset-like name lists the presets, invalid JSON names the file', () => {
    const missing = join(dir, 'foo.json');
    let r = dcvg('info', '--model', missing);
    assertCleanFailure(r, /DC-AE-V config file not found: .*foo\.json/);
    assert.doesNotMatch(r.stderr, /preset/);
    r = dcvg('info', '--model', 'foo.json');
    assertCleanFailure(r, /config file not found: foo\.json/);
    r = dcvg('info', '--model', 'dc-ae-v-f32t4c33-1.0');
    assertCleanFailure(r, /unknown DC-AE-V preset "dc-ae-v-f32t4c33-1\.0" \(known: dc-ae-v-f32t4c32-1\.0/);
    r = dcvg('info', '--model', writeJson('broken.json', '{"latent_channels": 8,'));
    assertCleanFailure(r, /DC-AE-V config .*broken\.json: not valid JSON \(/);
    r = dcvg('info', '--model', dir);
    assertCleanFailure(r, /is not a file/);
  });
});

describe('Wan configs', { skip: skipWan }, () => {
  const tiny = () => JSON.parse(readFileSync(fixturePath('wan/wan_fixtures.json'), 'utf8')).wan_t2v_base_tiny.config;

  it('every preset and fixture config loads; the arithmetic count equals the built model', () => {
    const cfgs = [
      ...WAN_PRESET_NAMES.map(wanPreset),
      ...['wan_t2v_base_tiny', 'wan_t2v_dc_tiny', 'wan_i2v_dc_tiny'].map((e) => resolveWanConfig(`${fixturePath('wan/wan_fixtures.json')}#${e}`)),
    ];
    for (const c of cfgs) assert.equal(wanParameterCount(c), new WanModel(c).parameterCount(), c.name);
    assert.equal(resolveWanConfig('nvidia/Wan2.1-T2V-1.3B').name, 'Wan2.1-T2V-1.3B');
  });

  it('dcvg run wan with num_layers 1e7 fails at once, no output', () => {
    const p = writeJson('wan_deep.json', { ...tiny(), num_layers: 1e7 });
    const out = join(dir, 'wan_deep.out.safetensors');
    const r = dcvg('run', 'wan', '--config', p, '--weights', fixturePath('wan/wan_t2v_base_tiny.weights.safetensors'), '--inputs', fixturePath('wan/wan_t2v_base_tiny.io.safetensors'), '-o', out);
    assertCleanFailure(r, /Wan config .*wan_deep\.json: num_layers must be an integer in \[1, 1000\], got 10000000/);
    assert.ok(!existsSync(out));
  });

  it('types, bounds and totals of every field', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ eps: 'x' }, /eps must be a number in \(0, 1\], got "x"/],
      [{ eps: 0 }, /eps must be a number in \(0, 1\], got 0/],
      [{ qk_norm: 'yes' }, /qk_norm must be true or false, got "yes"/],
      [{ in_dim: 'a' }, /in_dim must be an integer in \[1, 4096\], got "a"/],
      [{ patch_size: [1, Infinity, 1] }, /patch_size\[1\] must be an integer in \[1, 64\], got Infinity/],
      [{ patch_size: [1, 2] }, /patch_size must be a list of 3 integers/],
      [{ model_type: 'v2v' }, /model_type must be "t2v" or "i2v", got "v2v"/],
      [{ freq_dim: 2.5 }, /freq_dim must be an integer/],
      [{ num_heads: 3 }, /dim 64 is not divisible by num_heads 3/],
      [{ dim: 65536, num_heads: 2, ffn_dim: 262144 }, /ffn weight would have 17,179,869,184 weights \(64\.0 GiB\), more than one tensor can hold/],
      [{ dim: 16384, num_heads: 16, ffn_dim: 65536, num_layers: 1000 }, /parameters \(.*\) is beyond the limit of 100,000,000,000/],
    ];
    for (const [o, re] of cases) throwsValue(() => parseWanConfig({ ...tiny(), ...o }, undefined, 'w.json'), re);
    assert.ok(WAN_LIMITS.num_layers >= 40 && WAN_LIMITS.params > 1.64e10);
  });

  it('malformed documents and files', () => {
    throwsValue(() => parseWanConfig(null), /Wan config must be a JSON object .*got null/);
    throwsValue(() => parseWanConfig([1]), /must be a JSON object .*got \[1\]/);
    throwsValue(() => parseWanConfig({ config: 'x' }), /"config" must be an object/);
    throwsValue(() => parseWanConfig({ dim: 64 }), /missing in_dim, ffn_dim, out_dim, num_heads, num_layers/);
    throwsValue(() => resolveWanConfig(join(dir, 'nope.json')), /Wan config file not found: .*nope\.json/);
    throwsValue(() => resolveWanConfig('Wan2.1-T2V-13B'), /unknown Wan preset "Wan2\.1-T2V-13B" \(known: Wan2\.1-T2V-1\.3B/);
    throwsValue(() => resolveWanConfig(writeJson('wan_bad.json', '{"dim": ')), /Wan config .*wan_bad\.json: not valid JSON/);
    throwsValue(() => resolveWanConfig(writeJson('wan_null.json', 'null')), /Wan config .*wan_null\.json must be a JSON object/);
    throwsValue(() => resolveWanConfig(`${fixturePath('wan/wan_fixtures.json')}#nope`), /no entry "nope" \(has: wan_t2v_base_tiny/);
    throwsValue(() => resolveWanConfig(fixturePath('wan/wan_fixtures.json')), /holds several configs: pick one with .*#<entry>/);
  });
});

describe('dcvg run wan: bad inputs fail before any work, and no output is written', { skip: skipWan }, () => {
  const cfg = `${fixturePath('wan/wan_fixtures.json')}#wan_t2v_base_tiny`;
  const weights = fixturePath('wan/wan_t2v_base_tiny.weights.safetensors');
  const run = (inputs: string, out: string) => dcvg('run', 'wan', '--config', cfg, '--weights', weights, '--inputs', inputs, '-o', out);
  const ctx = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`context${i}`, T.zeros([4, 24])]));
  const cases: [string, Record<string, T.Tensor>, RegExp][] = [
    ['batch0', { x: T.zeros([0, 16, 3, 8, 8]), t: T.zeros([0]) }, /batch0\.safetensors: x \[0, 16, 3, 8, 8\] has batch 0: nothing to run/],
    ['rank', { x: T.zeros([16, 3, 8, 8]), t: T.zeros([1]), ...ctx(1) }, /rank\.safetensors: x must be \(B, C, F, H, W\), got \[16, 3, 8, 8\]/],
    ['tlen', { x: T.zeros([1, 16, 3, 8, 8]), t: T.zeros([3]), ...ctx(1) }, /tlen\.safetensors: t must have shape \[1\] .*got \[3\]/],
    ['ctxcount', { x: T.zeros([2, 16, 3, 8, 8]), t: T.zeros([2]), ...ctx(1) }, /ctxcount\.safetensors: x has batch 2 but 1 text contexts/],
    ['ctxwidth', { x: T.zeros([1, 16, 3, 8, 8]), t: T.zeros([1]), context0: T.zeros([4, 7]) }, /ctxwidth\.safetensors: context0 must be \(L, 24\) text embeddings/],
    ['nan', { x: T.full([1, 16, 3, 8, 8], NaN), t: T.zeros([1]), ...ctx(1) }, /nan\.safetensors: x \[1, 16, 3, 8, 8\] holds a non-finite value \(element 0 is NaN\)/],
    ['ctxinf', { x: T.zeros([1, 16, 3, 8, 8]), t: T.zeros([1]), context0: T.full([4, 24], Infinity) }, /ctxinf\.safetensors: context0 \[4, 24\] holds a non-finite value/],
  ];
  for (const [name, tensors, re] of cases) {
    it(name, () => {
      const inputs = join(dir, `${name}.safetensors`);
      saveSafetensors(inputs, tensors);
      const out = join(dir, `${name}.out.safetensors`);
      assertCleanFailure(run(inputs, out), re);
      assert.ok(!existsSync(out), 'no output file');
    });
  }

  it('-o may not be one of the inputs; the input is left as it was', () => {
    const inputs = join(dir, 'own.safetensors');
    saveSafetensors(inputs, { x: T.zeros([1, 16, 3, 8, 8]), t: T.zeros([1]), ...ctx(1) });
    const before = readFileSync(inputs);
    assertCleanFailure(run(inputs, inputs), /-o .*own\.safetensors would overwrite the --inputs file/);
    assert.deepEqual(readFileSync(inputs), before);
    const wcopy = join(dir, 'weights_copy.safetensors');
    writeFileSync(wcopy, readFileSync(weights));
    assertCleanFailure(dcvg('run', 'wan', '--config', cfg, '--weights', wcopy, '--inputs', inputs, '-o', wcopy), /would overwrite the --weights file/);
  });
});

describe('huge shapes at the API are typed errors naming the shape and the bytes', () => {
  const shapeErr = (fn: () => unknown, re: RegExp) =>
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof T.ShapeError, `expected a ShapeError, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
      assert.match(e.message, re);
      return true;
    });
  it('zeros, ones, full, empty, randn, rand, arange', () => {
    shapeErr(() => T.zeros([2 ** 31, 2 ** 31]), /shape \[2147483648, 2147483648\]: .* float32 elements \(16\.0 EiB\) is more than one tensor can hold/);
    shapeErr(() => T.ones([2 ** 33]), /shape \[8589934592\]: 8,589,934,592 float32 elements \(32\.0 GiB\)/);
    shapeErr(() => T.full([2 ** 20, 2 ** 20, 8], 1), /shape \[1048576, 1048576, 8\]/);
    shapeErr(() => T.empty([2 ** 33]), /\(32\.0 GiB\)/);
    shapeErr(() => T.randn([2 ** 31, 2 ** 31], 1), /randn of shape \[2147483648, 2147483648\]/);
    shapeErr(() => T.rand([2 ** 33], 1), /rand of shape \[8589934592\]/);
    shapeErr(() => T.arange(2 ** 40), /arange of shape \[1099511627776\]: .*\(4\.0 TiB\)/);
  });
  it('ops that allocate outputs: expand+contiguous, matmul, pad, repeatInterleave, reshape', () => {
    shapeErr(() => T.expand(T.zeros([1, 1]), [2 ** 31, 2 ** 31]).contiguous(), /shape \[2147483648, 2147483648\]/);
    shapeErr(() => T.matmul(T.zeros([2 ** 16, 1]), T.zeros([1, 2 ** 17])), /shape \[65536, 131072\]: .*\(32\.0 GiB\)/);
    shapeErr(() => T.pad(T.zeros([2, 2]), [0, 2 ** 33]), /shape \[2, 8589934594\]/);
    shapeErr(() => T.repeatInterleave(T.zeros([2, 2]), 2 ** 32, 1), /shape \[2, 2, 4294967296\]|shape \[2, 8589934592\]/);
    shapeErr(() => T.reshape(T.zeros([4]), [2 ** 31, 2 ** 31]), /reshape: cannot reshape \[4\]/);
  });
});
