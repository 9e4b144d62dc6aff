/**
 * The umT5 text encoder (#19 item 2): the tiny fixture reproduced (hidden_states at every position with the mask, and
 * context0 / context1 from the real tokens alone), the bucket table, the official 242 keys and shapes of umT5-XXL built
 * shape-only, the HuggingFace key map both ways, every checkpoint form (official / HF safetensors, a torch .pth zip, a
 * diffusers text_encoder/ folder with sharded safetensors, a pipeline folder), bf16 weights kept bf16, padding never
 * computed, and the prompt-embedding cache (miss, hit, corrupt entry).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { StateDictError, ValueError } from '../src/errors.js';
import { type Tensor, intTensor, noGrad, tensor } from '../src/tensor/tensor.js';
import type { PromptTokenizer, TokenizedText } from '../src/pipelines/components.js';
import {
  F32_MIN,
  PromptEmbeddingCache,
  Umt5Encoder,
  Umt5Model,
  detectUmt5KeyFormat,
  encodePromptsCached,
  hfKeyToUmt5,
  hfStateDictToUmt5,
  inferUmt5Config,
  loadUmt5,
  loadUmt5Weights,
  parseUmt5Config,
  promptCacheKey,
  resolveUmt5Config,
  umt5BucketsByOffset,
  umt5ConfigToHf,
  umt5KeyToHf,
  umt5ParameterCount,
  umt5Preset,
  umt5RandomState,
  umt5RelativeBucket,
  umt5StateDict,
  umt5StateDictToHf,
} from '../src/models/umt5/index.js';
import { fixturePath, relErr, skipUnlessFixture } from './helpers.js';
import { Pickler, writeCheckpoint } from './torch_zip.js';

const skip = skipUnlessFixture('umt5/umt5.json');
const F = (n: string) => fixturePath(`umt5/${n}`);
const CFG = () => `${F('umt5.json')}#umt5_tiny`;
const WEIGHTS = () => F('umt5_tiny.weights.safetensors');
const io = () => SafetensorsFile.open(F('umt5_tiny.io.safetensors'));

/**
 * The fixtures README's tolerance: fp32 within 1e-4 relative (max |ours - ref| / max |ref|). Our float32 arithmetic
 * differs from torch's only in summation order: each output element passes 3 blocks of GEMMs with reductions of at most
 * max(dim_ffn, L) = 160 terms, whose reordering moves a sum by at most ~160 * 2^-24 ~ 1e-5 of its absolute terms in the
 * worst case (typically sqrt(160) * 2^-24 ~ 1e-6); RMS norms rescale by O(1). 1e-4 leaves a safe margin while any
 * semantic slip (a missing scale, a wrong bucket, the mask) moves outputs by O(1).
 */
const FIXTURE_TOL = 1e-4;
/**
 * Real-tokens-only vs our own full-length forward on the real rows: the masked keys' weights are exactly 0
 * (exp(F32_MIN - max) underflows), so only the GEMMs' blocking over a different row / key count can differ: a
 * reordering of the same non-zero float32 terms, bounded as above by (reduction length) * 2^-24 ~ 1e-5 relative.
 */
const SAME_MATH_TOL = 1e-5;

function rel(a: Tensor, b: Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape]);
  return relErr(a.readSync(), b.readSync());
}
function sameBits(a: Tensor, b: Tensor): boolean {
  const x = a.readSync();
  const y = b.readSync();
  return x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
}
const rows = (t: Tensor, b: number, n: number) => t.slice(0, b, b + 1).squeeze(0).slice(0, 0, n).contiguous();

let tinyEnc: Umt5Encoder | null = null;
const tiny = () => (tinyEnc ??= loadUmt5(WEIGHTS(), { config: CFG() }));

describe('umT5 position buckets', () => {
  it('equal the fixture table for every offset -159..159 (float32 log as the reference)', { skip }, () => {
    const ref = io().tensor('rel_buckets_by_offset').readSync();
    const mine = umt5BucketsByOffset(160, 32, 128);
    assert.equal(mine.length, ref.length);
    for (let i = 0; i < ref.length; i++) assert.equal(mine[i], ref[i], `offset ${i - 159}`);
  });

  it('follow the bucket rule: exact below 8, logarithmic to 15, keys after the query in the upper half', () => {
    assert.equal(umt5RelativeBucket(0, 32, 128), 0);
    assert.equal(umt5RelativeBucket(-7, 32, 128), 7);
    assert.equal(umt5RelativeBucket(7, 32, 128), 23);
    // the exact powers where float32 truncation could fall either way: r = 16, 32, 64 give 8 + 2, 8 + 4, 8 + 6
    assert.equal(umt5RelativeBucket(-16, 32, 128), 10);
    assert.equal(umt5RelativeBucket(-32, 32, 128), 12);
    assert.equal(umt5RelativeBucket(-64, 32, 128), 14);
    assert.equal(umt5RelativeBucket(-15, 32, 128), 9);
    assert.equal(umt5RelativeBucket(1000, 32, 128), 31);
    assert.equal(umt5RelativeBucket(-1000, 32, 128), 15);
  });
});

describe('umT5 tiny fixture', { skip }, () => {
  it('the full-length forward with the mask reproduces hidden_states at every position (padding included)', () => {
    const f = io();
    const h = noGrad(() => tiny().model.forward(f.tensor('ids'), f.tensor('mask')));
    const e = rel(h, f.tensor('hidden_states'));
    assert.ok(e <= FIXTURE_TOL, `hidden_states: ${e}`);
  });

  it('encode() runs only the real tokens and reproduces context0 / context1', () => {
    const f = io();
    const ctx = tiny().encode(f.tensor('ids'), f.tensor('mask'));
    assert.equal(ctx.length, 2);
    assert.deepEqual([...ctx[0]!.shape], [150, 32]);
    assert.deepEqual([...ctx[1]!.shape], [23, 32]);
    for (const [i, c] of ctx.entries()) {
      const e = rel(c, f.tensor(`context${i}`));
      assert.ok(e <= FIXTURE_TOL, `context${i}: ${e}`);
    }
    // and equals our own full-length forward on the real rows (the masked keys get exactly zero weight)
    const h = noGrad(() => tiny().model.forward(f.tensor('ids'), f.tensor('mask')));
    for (const [i, c] of ctx.entries()) {
      const e = rel(c, rows(h, i, c.shape[0]!));
      assert.ok(e <= SAME_MATH_TOL, `context${i} vs full forward: ${e}`);
    }
  });

  it('padding is never computed: other pad ids give the same bits, another padded length the same values', () => {
    const f = io();
    const ids = f.tensor('ids').readSync();
    const mask = f.tensor('mask');
    const base = tiny().encode(f.tensor('ids'), mask);
    const other = Int32Array.from(ids, (v, i) => (mask.readSync()[i] ? v : 7 + (i % 200)));
    const got = tiny().encode(intTensor(other, [2, 160]), mask);
    for (let i = 0; i < 2; i++) assert.ok(sameBits(got[i]!, base[i]!), `row ${i}`);
    // row 1 alone, padded to 40 instead of 160: only its 23 real tokens run, now not packed with row 0's 150 (GEMMs
    // over 23 instead of 173 rows may block differently: the SAME_MATH bound)
    const short = Int32Array.from({ length: 40 }, (_, j) => (j < 23 ? ids[160 + j]! : 0));
    const m40 = tensor(Float32Array.from({ length: 40 }, (_, j) => (j < 23 ? 1 : 0)), [1, 40]);
    const alone = tiny().encode(intTensor(short, [1, 40]), m40)[0]!;
    assert.ok(rel(alone, base[1]!) <= SAME_MATH_TOL);
    // packing sequences into one row equals running each alone through forward() (no mask, no padding)
    const seqs = [Int32Array.from(ids.subarray(0, 150)), Int32Array.from(ids.subarray(160, 183)), Int32Array.from([9, 1])];
    const packed = noGrad(() => tiny().model.forwardSequences(seqs));
    seqs.forEach((q, i) => {
      const one = noGrad(() => tiny().model.forward(intTensor(q, [1, q.length]))).squeeze(0);
      assert.ok(rel(packed[i]!, one) <= SAME_MATH_TOL, `sequence ${i}`);
    });
  });

  it('the mask matters in the full forward: masked keys get F32_MIN instead of their position bias', () => {
    const f = io();
    const h0 = noGrad(() => tiny().model.forward(f.tensor('ids'), null));
    const h1 = noGrad(() => tiny().model.forward(f.tensor('ids'), f.tensor('mask')));
    // without the mask row 1's 23 real tokens attend to 137 pad keys too: a different result
    assert.ok(rel(rows(h0, 1, 23), rows(h1, 1, 23)) > 1e-2);
    const b = tiny().model.blocks[0]!.pos_embedding!.bias(4, Float32Array.from([1, 1, 0, 1]), 1).readSync();
    for (let q = 0; q < 4; q++) assert.equal(b[q * 4 + 2], F32_MIN);
    assert.notEqual(b[3], F32_MIN);
  });

  it('refuses bad masks and ids with one clear message', () => {
    const ids = intTensor([5, 6, 1, 0], [1, 4]);
    assert.throws(() => tiny().encode(ids, tensor([1, 0, 1, 0], [1, 4])), (e: unknown) => e instanceof ValueError && /real token at position 2 after padding/.test(e.message));
    assert.throws(() => tiny().encode(ids, tensor([0, 0, 0, 0], [1, 4])), (e: unknown) => e instanceof ValueError && /no real token/.test(e.message));
    assert.throws(() => tiny().encode(ids, tensor([1, 0.5, 0, 0], [1, 4])), ValueError);
    assert.throws(() => tiny().encode(intTensor([5, 300, 1, 0], [1, 4]), tensor([1, 1, 1, 0], [1, 4])), (e: unknown) => e instanceof ValueError && /ids\[0, 1\] is 300/.test(e.message));
  });

  it('the config read from umt5.json equals the one inferred from the weights, with the fixture parameter count', () => {
    const j = JSON.parse(readFileSync(F('umt5.json'), 'utf8')).umt5_tiny;
    const c = resolveUmt5Config(CFG());
    const f = SafetensorsFile.open(WEIGHTS());
    const inf = inferUmt5Config(f.keys(), (k) => f.info(k).shape);
    f.close();
    assert.deepEqual({ ...inf, name: c.name }, c);
    assert.equal(umt5ParameterCount(c), j.num_params);
    assert.equal(tiny().dim, 32);
  });
});

describe('umT5 keys', () => {
  const shapesSkip = skipUnlessFixture('umt5/official_state_dict_shapes.json');
  it('umT5-XXL built shape-only has exactly the official 242 keys and shapes, and its parameter counts', { skip: shapesSkip }, () => {
    const ref = JSON.parse(readFileSync(F('official_state_dict_shapes.json'), 'utf8'));
    const m = new Umt5Model(umt5Preset('umt5-xxl'));
    const mine = new Map(m.namedParams().map(([k, p]) => [k, [...p.shape]]));
    assert.equal(mine.size, ref.num_keys);
    assert.deepEqual([...mine.keys()].sort(), Object.keys(ref.shapes).sort());
    for (const [k, s] of Object.entries(ref.shapes)) assert.deepEqual(mine.get(k), s, k);
    assert.equal(umt5ParameterCount(m.config), ref.num_params);
    assert.equal(m.token_embedding.weight.size, ref.token_embedding_params);
    assert.ok(m.namedParams().every(([, p]) => !p.loaded), 'nothing allocated');
    // the preset is the reference's constructor config
    for (const [k, v] of Object.entries(ref.config)) assert.equal((m.config as unknown as Record<string, unknown>)[k], v, k);
  });

  it('map to the HuggingFace UMT5EncoderModel names and back, for every key', () => {
    const m = new Umt5Model(umt5Preset('umt5-xxl'));
    const keys = m.namedParams().map(([k]) => k);
    const hf = keys.map((k) => umt5KeyToHf(k));
    assert.equal(new Set(hf).size, 242);
    for (const [i, k] of keys.entries()) assert.equal(hfKeyToUmt5(hf[i]!), k);
    assert.ok(hf.includes('shared.weight'));
    assert.ok(hf.includes('encoder.final_layer_norm.weight'));
    for (const s of ['layer.0.SelfAttention.q.weight', 'layer.0.SelfAttention.o.weight', 'layer.0.SelfAttention.relative_attention_bias.weight', 'layer.0.layer_norm.weight', 'layer.1.DenseReluDense.wi_0.weight', 'layer.1.DenseReluDense.wi_1.weight', 'layer.1.DenseReluDense.wo.weight', 'layer.1.layer_norm.weight'])
      assert.ok(hf.includes(`encoder.block.23.${s}`), s);
    assert.equal(umt5KeyToHf('blocks.4.ffn.gate.0.weight'), 'encoder.block.4.layer.1.DenseReluDense.wi_0.weight');
    assert.equal(umt5KeyToHf('blocks.4.ffn.fc1.weight'), 'encoder.block.4.layer.1.DenseReluDense.wi_1.weight');
    assert.equal(hfKeyToUmt5('encoder.embed_tokens.weight'), 'token_embedding.weight');
    assert.equal(detectUmt5KeyFormat(keys), 'official');
    assert.equal(detectUmt5KeyFormat(hf), 'hf');
    assert.throws(() => detectUmt5KeyFormat([...keys, 'shared.weight']), /mixes/);
    assert.throws(() => umt5KeyToHf('blocks.0.attn.bias'), /not a known official umT5/);
    assert.throws(() => hfKeyToUmt5('encoder.block.0.layer.2.x'), /not a known HuggingFace/);
    // shared_pos (T5 / mT5): the one table is block 0's relative_attention_bias
    const sp = new Umt5Model({ ...umt5Preset('umt5-xxl'), shared_pos: true, num_layers: 2 });
    const spk = sp.namedParams().map(([k]) => k);
    assert.ok(spk.includes('pos_embedding.embedding.weight'));
    const sd = new Map(spk.map((k) => [k, k]));
    const back = hfStateDictToUmt5(umt5StateDictToHf(sd, true), true);
    assert.deepEqual([...back.keys()], spk);
    assert.ok([...umt5StateDictToHf(sd, true).keys()].includes('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'));
  });
});

/** A torch.save zip of a state dict, each tensor in its own storage, as BFloat16Storage for bf16 tensors. */
function writePth(dir: string, name: string, sd: Map<string, Tensor>): string {
  const p = new Pickler().proto().emptyDict().mark();
  const storages: Record<string, Uint8Array> = {};
  let i = 0;
  for (const [k, t] of sd) {
    const strides = t.shape.map((_, a) => t.shape.slice(a + 1).reduce((x, y) => x * y, 1));
    const bf = t.dtype === 'bf16';
    p.str(k).tensor(bf ? 'BFloat16Storage' : 'FloatStorage', String(i), t.size, 0, [...t.shape], strides);
    const raw = bf ? (t.readStoredSync() as Uint16Array) : Float32Array.from(t.readSync());
    storages[String(i++)] = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  }
  return writeCheckpoint(dir, name, p.setitems().stop().bytes(), storages);
}

describe('umT5 checkpoints', { skip }, () => {
  it('official and HF safetensors, a bf16 .pth, a text_encoder/ folder (sharded) and a pipeline folder all load to the same model', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-umt5-'));
    try {
      const f = io();
      const ids = f.tensor('ids');
      const mask = f.tensor('mask');
      const ref = tiny().encode(ids, mask);
      const sd = umt5StateDict(tiny().model);
      // HF names, with the tied embed_tokens copy too (not read: shared.weight is used)
      const hfSd = umt5StateDict(tiny().model, 'hf');
      hfSd.set('encoder.embed_tokens.weight', hfSd.get('shared.weight')!);
      const hfPath = join(dir, 'hf.safetensors');
      saveSafetensors(hfPath, hfSd);
      const e1 = loadUmt5(hfPath);
      assert.deepEqual({ ...e1.config, name: 'x' }, { ...tiny().config, name: 'x' });
      e1.encode(ids, mask).forEach((c, i) => assert.ok(sameBits(c, ref[i]!), `hf ${i}`));
      // identical bytes under another name give the same fingerprint; other weights another
      assert.notEqual(e1.fingerprint, tiny().fingerprint);
      const copy = join(dir, 'copy.safetensors');
      writeFileSync(copy, readFileSync(WEIGHTS()));
      assert.equal(loadUmt5(copy, { config: CFG() }).fingerprint, tiny().fingerprint);
      // a diffusers text_encoder/ folder: config.json in HF vocabulary + sharded safetensors with an index
      const te = join(dir, 'pipe', 'text_encoder');
      mkdirSync(te, { recursive: true });
      writeFileSync(join(te, 'config.json'), JSON.stringify(umt5ConfigToHf(tiny().config)));
      const keys = [...hfSd.keys()].filter((k) => k !== 'encoder.embed_tokens.weight');
      const half = Math.ceil(keys.length / 2);
      const shards = [keys.slice(0, half), keys.slice(half)];
      const weightMap: Record<string, string> = {};
      shards.forEach((ks, s) => {
        const name = `model-0000${s + 1}-of-00002.safetensors`;
        saveSafetensors(join(te, name), new Map(ks.map((k) => [k, hfSd.get(k)!])));
        for (const k of ks) weightMap[k] = name;
      });
      writeFileSync(join(te, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
      const e2 = loadUmt5(te);
      e2.encode(ids, mask).forEach((c, i) => assert.ok(sameBits(c, ref[i]!), `folder ${i}`));
      writeFileSync(join(dir, 'pipe', 'model_index.json'), JSON.stringify({ _class_name: 'WanPipeline', text_encoder: ['transformers', 'UMT5EncoderModel'] }));
      const e3 = loadUmt5(join(dir, 'pipe'));
      assert.equal(e3.fingerprint, e2.fingerprint);
      e3.encode(ids, mask).forEach((c, i) => assert.ok(sameBits(c, ref[i]!), `pipeline ${i}`));
      // Wan's .pth (torch zip), bf16 as the released file: weights stay bf16 (the embedding too), no config needed
      const bf = new Map([...sd].map(([k, t]) => [k, t.to('bf16')]));
      const pth = writePth(dir, 'models_t5_umt5-xxl-enc-bf16.pth', bf);
      const e4 = loadUmt5(pth);
      for (const [k, p] of e4.model.namedParams()) assert.equal(p.value.dtype, 'bf16', k);
      // the Wan release folder: the .pth found beside the DiT's own config.json and weights
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ dim: 1536, num_heads: 12 }));
      writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors'), 'not read');
      assert.equal(loadUmt5(dir).fingerprint, e4.fingerprint);
      // against the float32 model on the same bf16-rounded weights: identical maths on identical values, so only GEMM
      // blocking differs (the bf16 weight is widened per block of rows): the SAME_MATH bound
      const e5 = new Umt5Model(tiny().config);
      e5.loadStateDict(new Map([...bf].map(([k, t]) => [k, t.to('f32')])));
      const r5 = noGrad(() => e5.forward(ids, mask));
      e4.encode(ids, mask).forEach((c, i) => assert.ok(rel(c, rows(r5, i, c.shape[0]!)) <= SAME_MATH_TOL, `bf16 ${i}`));
      // the widening scratch (each bf16 weight widened whole into a reused float32 buffer) against widening block by
      // block inside each linear: the same values, only the GEMM blocking differs
      const viaScratch = e4.encode(ids, mask);
      e4.model.widenScratch = null;
      e4.encode(ids, mask).forEach((c, i) => assert.ok(rel(c, viaScratch[i]!) <= SAME_MATH_TOL, `scratch ${i}`));
      for (const [k, p] of e4.model.namedParams()) assert.equal(p.value.dtype, 'bf16', k);
      e4.dispose();
      assert.ok(e4.model.namedParams().every(([, p]) => !p.loaded));
      assert.throws(() => e4.encode(ids, mask), /has no value yet/);
      // and the bf16 rounding of the weights stays near the fixture: each weight moves by at most 2^-9 relative (round
      // to nearest, 8 significant bits), so each linear's output by about 2^-9 of its scale, compounding over the ~6
      // linears and 3 attention softmaxes of 3 blocks to a few percent at most; 0.05 still fails any semantic error (O(1))
      viaScratch.forEach((c, i) => assert.ok(rel(c, f.tensor(`context${i}`)) < 0.05, `bf16 vs fixture ${i}`));
      // strict: a missing key is named with the file, before anything is loaded
      const short = new Map(sd);
      short.delete('blocks.2.ffn.fc2.weight');
      const bad = join(dir, 'short.safetensors');
      saveSafetensors(bad, short);
      const m = new Umt5Model(tiny().config);
      assert.throws(() => loadUmt5Weights(m, bad), (e: unknown) => e instanceof StateDictError && /short\.safetensors.*missing: blocks\.2\.ffn\.fc2\.weight/.test(e.message));
      assert.ok(m.namedParams().every(([, p]) => !p.loaded));
      assert.throws(() => loadUmt5(WEIGHTS(), { config: 'umt5-xxl' }), StateDictError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('umt5RandomState writes loadable checkpoints (official / HF names, f32 / bf16), deterministic per seed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-umt5-'));
    try {
      const c = resolveUmt5Config(CFG());
      const a = umt5RandomState(c, 3, { dtype: 'bf16', format: 'hf' });
      const b = umt5RandomState(c, 3, { dtype: 'bf16', format: 'hf' });
      for (const [k, t] of a) assert.ok(sameBits(t, b.get(k)!), k);
      assert.ok(!sameBits(umt5RandomState(c, 4).get('token_embedding.weight')!, umt5RandomState(c, 3).get('token_embedding.weight')!));
      const p = join(dir, 'r.safetensors');
      saveSafetensors(p, a);
      assert.equal(SafetensorsFile.open(p).info('shared.weight').dtype, 'BF16');
      const e = loadUmt5(p);
      assert.equal(e.model.token_embedding.weight.value.dtype, 'bf16');
      const [ctx] = e.encode(intTensor([5, 9, 1], [1, 3]), tensor([1, 1, 1], [1, 3]));
      assert.deepEqual([...ctx!.shape], [3, 32]);
      assert.ok(ctx!.readSync().every(Number.isFinite));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('umT5 configs', () => {
  it('read Wan and HuggingFace vocabularies and refuse what the encoder is not', () => {
    const xxl = umt5Preset('google/umt5-xxl');
    assert.deepEqual(resolveUmt5Config('umt5_xxl'), xxl);
    const hf = parseUmt5Config(umt5ConfigToHf(xxl), 'umt5-xxl');
    assert.deepEqual(hf, xxl);
    const wan = parseUmt5Config({ vocab_size: 256384, dim: 4096, dim_attn: 4096, dim_ffn: 10240, num_heads: 64, encoder_layers: 24, decoder_layers: 24, num_buckets: 32, shared_pos: false, dropout: 0.1 }, 'umt5-xxl');
    assert.deepEqual(wan, xxl);
    const t5 = parseUmt5Config({ ...umt5ConfigToHf(xxl), model_type: 't5' });
    assert.equal(t5.shared_pos, true);
    assert.throws(() => parseUmt5Config({ ...umt5ConfigToHf(xxl), feed_forward_proj: 'relu' }), /gated-gelu/);
    assert.throws(() => parseUmt5Config({ vocab: 10, dim: 8, dim_ffn: 8, num_heads: 3, num_layers: 1, num_buckets: 32 }), /dim_attn 8 is not divisible by num_heads 3/);
    assert.throws(() => parseUmt5Config({ vocab: 10, dim: 8, dim_ffn: 8, num_heads: 2, num_layers: 1, num_buckets: 32, bidirectional: false }), /bidirectional/);
    assert.throws(() => parseUmt5Config({ vocab: 10, dim: 8, num_heads: 2, num_layers: 1 }), /missing dim_ffn, num_buckets/);
    assert.throws(() => resolveUmt5Config('umt5-small'), /unknown umT5 preset/);
    assert.throws(() => parseUmt5Config({ vocab: 1e9, dim: 4096, dim_ffn: 8, num_heads: 2, num_layers: 1, num_buckets: 32 }), ValueError);
  });
});

/** A stand-in tokenizer (the real one is src/text): ids from code points, eos 1, pad 0. */
function fakeTokenizer(fingerprint = 'tok-v1'): PromptTokenizer {
  return {
    fingerprint,
    padId: 0,
    eosId: 1,
    vocabSize: 300,
    tokenize(text: string, textLen: number): TokenizedText {
      const pieces = [...text];
      const ids = [...pieces.map((c) => 2 + (c.codePointAt(0)! % 298)), 1];
      const real = [...ids.slice(0, Math.min(ids.length, textLen) - 1), 1];
      const inputIds = [...real, ...new Array(textLen - real.length).fill(0)];
      return { cleaned: text, pieces, ids, inputIds, attentionMask: inputIds.map((_, i) => (i < real.length ? 1 : 0)) };
    },
  };
}

describe('prompt-embedding cache', { skip }, () => {
  it('misses then hits (without loading the encoder), keys on every part, and rewrites a corrupt entry with a warning', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-umt5-cache-'));
    try {
      const warnings: string[] = [];
      const cache = new PromptEmbeddingCache(join(dir, 'cache'), (m) => warnings.push(m));
      const tok = fakeTokenizer();
      let loads = 0;
      const lazy = { fingerprint: tiny().fingerprint, dim: 32, load: () => (loads++, tiny()) };
      const texts = ['a red fox', 'a much longer prompt about the sea at night'];
      const first = encodePromptsCached(tok, lazy, texts, 24, cache);
      assert.equal(loads, 1);
      assert.deepEqual(cache.stats, { hits: 0, misses: 2, corrupt: 0 });
      assert.deepEqual(first.map((t) => [...t.shape]), [[10, 32], [24, 32]]);
      // what encode gives directly
      const direct = tiny().encode(intTensor(tok.tokenize(texts[0]!, 24).inputIds, [1, 24]), intTensor(tok.tokenize(texts[0]!, 24).attentionMask, [1, 24]));
      assert.ok(rel(first[0]!, direct[0]!) <= SAME_MATH_TOL, 'alone vs packed with the second prompt');
      const second = encodePromptsCached(tok, lazy, texts, 24, cache);
      assert.equal(loads, 1, 'a fully cached call never loads the encoder');
      assert.deepEqual(cache.stats, { hits: 2, misses: 2, corrupt: 0 });
      second.forEach((t, i) => assert.ok(sameBits(t, first[i]!)));
      // every part of the key matters
      const k = { tokenizer: 'tok-v1', weights: lazy.fingerprint, textLen: 24, text: texts[0]! };
      const k0 = promptCacheKey(k);
      for (const alt of [{ ...k, tokenizer: 'tok-v2' }, { ...k, weights: 'w2' }, { ...k, textLen: 25 }, { ...k, text: 'a red fox ' }]) assert.notEqual(promptCacheKey(alt), k0);
      assert.notEqual(promptCacheKey({ ...k, tokenizer: 'ab', weights: 'c' }), promptCacheKey({ ...k, tokenizer: 'a', weights: 'bc' }));
      // corrupt entries: garbage bytes, then a valid file of the wrong shape; each is warned about, recomputed, rewritten
      const p = cache.pathOf(k0);
      writeFileSync(p, 'not a safetensors file');
      const third = encodePromptsCached(tok, lazy, [texts[0]!], 24, cache);
      assert.equal(loads, 2);
      assert.ok(rel(third[0]!, first[0]!) <= SAME_MATH_TOL, "recomputed alone");
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /corrupt entry .*it will be rewritten/);
      assert.equal(cache.get(k0, { length: 10, dim: 32 }) !== null, true, 'rewritten');
      saveSafetensors(p, { context: tensor(new Float32Array(9 * 32), [9, 32]) }, { metadata: { key: k0 } });
      encodePromptsCached(tok, lazy, [texts[0]!], 24, cache);
      assert.equal(warnings.length, 2);
      assert.match(warnings[1]!, /shape \[9, 32\], expected \[10, 32\]/);
      assert.deepEqual([...SafetensorsFile.open(p).tensor('context').shape], [10, 32]);
      // no temporary files left behind
      assert.deepEqual(readdirSync(join(dir, 'cache')).filter((n) => !n.endsWith('.safetensors')), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
