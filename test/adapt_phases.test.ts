/**
 * AE-Adapt-V training phases (src/adapt): trainable sets, exact resume, gradient accumulation, the flow-matching
 * objective the phases run against the shared fixture (the CLI chain on tiny models: test/adapt_chain.test.ts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { trainAlign } from '../src/adapt/align.js';
import { buildAdaptDiT, flowMatchObjective, LORA_DEFAULTS, TUNE_DEFAULTS, trainLora, trainTune, type LoraPhaseOptions } from '../src/adapt/phases.js';
import { readPhaseLog } from '../src/adapt/trainer.js';
import { clipCaption, encoderEmbedder, readCaptionsTsv } from '../src/adapt/latents.js';
import { trainingGrid } from '../src/diffusion/flow_matching.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { WanModel, parseWanConfig, wanConfigToJson } from '../src/models/wan/index.js';
import { Rng, randn } from '../src/tensor/random.js';
import { Tensor, castTo, tensor } from '../src/tensor/tensor.js';
import { openWeights } from '../src/io/weights.js';
import { fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';
import { checkPhase3Gradients, checkResume, sameBits } from './adapt_helpers.js';

const root = mkdtempSync(join(tmpdir(), 'dcvg-adapt-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const tmp = (name: string) => join(root, `${name}-${n++}`);

const CFG = { model_type: 't2v', patch_size: [1, 1, 1], text_len: 8, in_dim: 4, dim: 32, ffn_dim: 48, freq_dim: 256, text_dim: 12, out_dim: 4, num_heads: 2, num_layers: 2 };

/** A latent folder of `count` samples: DC latents (4, 2, 2, 2), Wan latents (6, 2, 4, 4), contexts (6, 12), null (3, 12). */
function latentFolder(count = 5): string {
  const dir = tmp('lat');
  mkdirSync(dir);
  const r = new Rng(11);
  const shards: string[] = [];
  for (let s = 0; s * 3 < count; s++) {
    const k = Math.min(3, count - s * 3);
    const name = `shard-${s}.safetensors`;
    saveSafetensors(join(dir, name), { latents: randn([k, 4, 2, 2, 2], r), wan_latents: randn([k, 6, 2, 4, 4], r), context: randn([k, 6, 12], r) });
    shards.push(name);
  }
  saveSafetensors(join(dir, 'null.safetensors'), { null_context: randn([3, 12], r) });
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ format: 'dcvg-dit-latents-1', shards, null_context: 'null.safetensors' }));
  return dir;
}

/** A base DiT's patch embedder (teacher): 6 Wan channels -> 16, 1x2x2. */
function teacherFile(): string {
  const p = tmp('teacher') + '.safetensors';
  const r = new Rng(12);
  saveSafetensors(p, { 'patch_embedding.weight': randn([16, 6, 1, 2, 2], r), 'patch_embedding.bias': randn([16], r) });
  return p;
}

/** An "assembled" tiny DiT with every weight random (head.head too, so gradients reach the whole model). */
function assembledFile(): string {
  const p = tmp('dit') + '.safetensors';
  const cfg = parseWanConfig(CFG, 'tiny_dc4');
  const m = new WanModel(cfg);
  m.initRandom(4, 0.05);
  // initRandom zeroes 1-D tensors (biases, norm weights): give them values too, so every path carries gradient
  const sd = m.stateDict();
  const r = new Rng(6);
  for (const [k, t] of sd) if (t.ndim === 1) sd.set(k, tensor(randn(t.shape, r).readSync().map((v) => (k.includes('norm') ? 1 + 0.1 * v : 0.1 * v)), t.shape));
  saveSafetensors(p, sd, { metadata: { config: JSON.stringify({ name: cfg.name, ...wanConfigToJson(cfg) }) } });
  return p;
}

const data = latentFolder();
const teacher = teacherFile();
const dit = assembledFile();

describe('adapt: each phase gives gradients exactly to its trainable set', () => {
  const base = { data, out: '', init: dit, model: null, holdout: 0 };
  it('phase 2 (tune): patch_embedding, head.head, head.modulation and nothing else', () => {
    const { model } = buildAdaptDiT({ ...TUNE_DEFAULTS, ...base }, 'tune');
    model.micro([0, 1], new Rng(1)).loss.backward();
    const withGrad = model.module!.namedParams().filter(([, p]) => p.value.grad !== null).map(([k]) => k).sort();
    assert.deepEqual(withGrad, ['head.head.bias', 'head.head.weight', 'head.modulation', 'patch_embedding.bias', 'patch_embedding.weight']);
    for (const [k, p] of model.module!.namedParams()) if (p.value.grad) assert.ok(p.value.grad.readSync().some((v) => v !== 0), `${k} has a zero gradient`);
    assert.deepEqual(model.trainable.map(([k]) => k).sort(), withGrad);
  });

  it('phase 3 (lora): the adapters of self-attention, FFN and time MLPs, plus patch and head; frozen cross-attention, text embedding, norms, modulation', () => {
    const { model } = buildAdaptDiT({ ...LORA_DEFAULTS, ...base, rank: 2, alpha: 4 } as LoraPhaseOptions, 'lora');
    const params = checkPhase3Gradients(model);
    // the adapters' shapes: A (r, in), B (out, r)
    const shapes = new Map(params.map(([k, p]) => [k, p.shape]));
    assert.deepEqual(shapes.get('blocks.0.ffn.0.lora_A.weight'), [2, 32]);
    assert.deepEqual(shapes.get('blocks.0.ffn.0.lora_B.weight'), [48, 2]);
    assert.ok(!params.some(([k]) => /cross_attn.*lora|text_embedding.*lora|head\.head\.lora/.test(k)));
  });
});

describe('adapt: resume is exact in every phase', () => {
  const common = { data, holdout: 1, evalEvery: 1, ckptEvery: 1, batch: 2 };
  it('phase 1 (align)', async () => checkResume(tmp, trainAlign, { ...common, teacher }, ['patch_embedding.safetensors']));
  it('phase 2 (tune)', async () => checkResume(tmp, trainTune, { ...common, init: dit, textDrop: 0.5 }, ['model.safetensors']));
  it('phase 3 (lora, with warm-up and EMA)', async () => checkResume(tmp, trainLora, { ...common, init: dit, rank: 2, alpha: 4, warmup: 2, emaDecay: 0.9, textDrop: 0.5 }, ['model.safetensors']));
});

describe('adapt: gradient accumulation of N micro-batches equals one batch of N', () => {
  // Same samples and the same random draws (they go sample by sample), so the two runs differ only in the order of
  // float32 sums (the batch-of-2 mean vs two halves added, and the 1/2 scale is exact). Each gradient element sums
  // at most a few thousand float32 products here, so the relative difference is below ~1e3·2^-24 ≈ 6e-5 in the worst
  // case; 1e-4 holds on any summation order (AVX2 / AVX-512 kernels).
  const tol = 1e-4;
  for (const [name, train, extra] of [
    ['align', trainAlign, { teacher }],
    ['tune', trainTune, { init: dit, textDrop: 0.5 }],
    ['lora', trainLora, { init: dit, rank: 2, alpha: 4, warmup: 0 }],
  ] as const)
    it(`phase ${name}: loss and gradient norm of accum 2 x batch 1 = batch 2`, async () => {
      const a = tmp('batch');
      const b = tmp('accum');
      const o = { data, holdout: 0, steps: 2, ...extra } as Record<string, unknown>;
      await (train as (o: any) => Promise<unknown>)({ ...o, out: a, batch: 2, accum: 1 });
      await (train as (o: any) => Promise<unknown>)({ ...o, out: b, batch: 1, accum: 2 });
      const la = readPhaseLog(a).steps;
      const lb = readPhaseLog(b).steps;
      for (let i = 0; i < 2; i++) {
        for (const k of ['loss', 'gradNorm'] as const) {
          const x = la[i]![k] as number;
          const y = lb[i]![k] as number;
          assert.ok(Math.abs(x - y) <= tol * Math.abs(x), `step ${i + 1} ${k}: batch ${x} vs accum ${y}`);
        }
        if (name !== 'align') assert.deepEqual(la[i]!.t, lb[i]!.t, 'the same timesteps were drawn');
      }
      // and a different batch composition is not equal (the comparison can fail)
      const c = tmp('other');
      await (train as (o: any) => Promise<unknown>)({ ...o, out: c, batch: 1, accum: 1 });
      assert.notEqual(readPhaseLog(c).steps[0]!.loss, la[0]!.loss);
    });
});

describe('adapt: the phases objective is the reference flow matching (spec §5.5)', () => {
  const FM = 'sampler/flowmatch.safetensors';
  for (const [name, shift] of [
    ['fm_shift8', 8],
    ['fm_shift5', 5],
  ] as const)
    it(`${name}: loss of flowMatchObjective, network conditioned on the raw integer t`, { skip: skipUnlessFixture(FM) }, () => {
      const f = SafetensorsFile.open(fixturePath(FM));
      const R = (k: string) => f.float64(`${name}.${k}`);
      const T32 = (k: string) => {
        const v = R(k);
        return tensor(Float32Array.from(v.data), v.shape);
      };
      const t = Array.from(R('sample_t').data);
      let seen: number[] = [];
      let noisy: Tensor | null = null;
      const pred = T32('pred');
      const out = flowMatchObjective(
        (x, tt) => {
          seen = tt;
          noisy = x;
          return pred;
        },
        T32('x0'),
        tensor([0], [1, 1, 1]),
        T32('noise'),
        t,
        trainingGrid(shift),
      );
      assert.deepEqual(seen, t, 'the network sees the raw integer timesteps');
      assert.deepEqual(out.ids, Array.from(R('sample_ids').data));
      const ref = R('loss').data[0]!;
      // float32 arithmetic against the float32 reference: a mean of weighted squares, 1e-6 relative (fixtures README)
      assert.ok(Math.abs(out.loss.item() - ref) <= 1e-6 * Math.abs(ref), `loss ${out.loss.item()} vs ${ref}`);
      const n = R('noisy').data;
      const got = noisy!.readSync();
      let e = 0;
      let m = 0;
      for (let i = 0; i < n.length; i++) {
        e = Math.max(e, Math.abs(got[i]! - n[i]!));
        m = Math.max(m, Math.abs(n[i]!));
      }
      assert.ok(e <= 1e-6 * m, `noisy input ${e / m}`);
      f.close();
    });
});

// phases 1-3 end to end from the CLI (latents -> ... -> generate): test/adapt_chain.test.ts

describe('adapt: phase weights go to PyTorch and come back unchanged', () => {
  const torchSkip = (() => {
    const r = spawnSync(process.env.DCVG_TORCH_PYTHON ?? '/usr/bin/python3', ['-c', 'import torch, numpy'], { encoding: 'utf8' });
    return r.status === 0 ? false : 'torch not importable by /usr/bin/python3: the PyTorch round trip is not run';
  })();
  it('phase 2 model.safetensors -> torch state dict -> safetensors -> --init of phase 3', { skip: torchSkip }, async () => {
    const tune = tmp('tune-rt');
    await trainTune({ data, out: tune, init: dit, steps: 1, holdout: 0 });
    const back = tmp('from-torch') + '.safetensors';
    const py = `
import sys; sys.path.insert(0, ${JSON.stringify(join(repoRoot, 'bench'))})
import torch
from torch_common import load_safetensors, save_safetensors
sd = load_safetensors(sys.argv[1])
nul = sd.pop('null_embedding')
# what a torch trainer does with it: a module's state dict, a step of nothing, the state dict saved again
m = torch.nn.ParameterDict({k.replace('.', '__'): torch.nn.Parameter(v) for k, v in sd.items()})
out = {k.replace('__', '.'): p.detach() for k, p in m.items()}
out['null_embedding'] = nul
save_safetensors(sys.argv[2], out)
`;
    const r = spawnSync(process.env.DCVG_TORCH_PYTHON ?? '/usr/bin/python3', ['-c', py, join(tune, 'model.safetensors'), back], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const a = SafetensorsFile.open(join(tune, 'model.safetensors'));
    const b = SafetensorsFile.open(back);
    assert.deepEqual(b.keys().sort(), a.keys().sort());
    for (const k of a.keys()) assert.deepEqual(b.tensor(k).readSync(), a.tensor(k).readSync(), k);
    a.close();
    b.close();
    // the file torch wrote carries no config metadata: --model gives it
    const cfgPath = tmp('cfg') + '.json';
    writeFileSync(cfgPath, JSON.stringify({ name: 'tiny_dc4', ...CFG }));
    const lora = tmp('lora-rt');
    await trainLora({ data, out: lora, init: back, model: cfgPath, steps: 1, rank: 2, alpha: 4, holdout: 0 });
    assert.ok(existsSync(join(lora, 'model.safetensors')));
  });
});

describe('adapt: a phase goes to PyTorch (FSDP) and comes back unchanged (scripts/adapt_torch.py)', () => {
  const py = process.env.DCVG_TORCH_PYTHON ?? '/usr/bin/python3';
  const torchSkip = (() => {
    const r = spawnSync(py, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
    return r.status === 0 ? false : `torch not importable by ${py}: the PyTorch hand-over is not run`;
  })();
  const script = join(repoRoot, 'scripts', 'adapt_torch.py');
  const run = (...args: string[]) => {
    const r = spawnSync(py, [script, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0, `adapt_torch.py ${args.join(' ')}\n${r.stderr}`);
  };
  const tensors = (path: string) => {
    const w = openWeights(path);
    try {
      return new Map([...w.tensors.keys()].map((k) => [k, w.tensors.get(k)]));
    } finally {
      w.close();
    }
  };
  /** A bf16 copy of the assembled DiT (frozen weights stay bf16 through the phase; trained ones are widened to f32). */
  const bf16Init = () => {
    const p = tmp('dit-bf16') + '.safetensors';
    const f = SafetensorsFile.open(dit);
    saveSafetensors(p, new Map(f.keys().map((k) => [k, castTo(f.tensor(k), 'bf16')])), { metadata: f.metadata });
    f.close();
    return p;
  };

  for (const [phase, train, extra] of [
    ['tune', trainTune, {}],
    ['lora', trainLora, { rank: 2, alpha: 4, warmup: 2, emaDecay: 0.9 }],
  ] as const)
    it(`phase ${phase}: model.pt / optim.pt (AdamW state by name) / ema.pt through torch.load, load_state_dict, AdamW.load_state_dict, torch.save and back; --resume then equals the straight run`, { skip: torchSkip }, async () => {
      const init = bf16Init();
      const opts = { data, init, holdout: 1, evalEvery: 1, ckptEvery: 1, batch: 2, textDrop: 0.5, ...extra } as Record<string, unknown>;
      const a = tmp('straight');
      const b = tmp('handed-over');
      await (train as (o: any) => Promise<unknown>)({ ...opts, out: a, steps: 4 });
      await (train as (o: any) => Promise<unknown>)({ ...opts, out: b, steps: 2 });
      const ckBefore = tensors(join(b, 'checkpoint.safetensors'));
      const modelBefore = tensors(join(b, 'model.safetensors'));
      const pt = tmp('torch');
      run('to-torch', b, pt);
      // what torch wrote, read by our .pt loader: every tensor bit-identical, dtypes kept (frozen bf16, trained f32);
      // phase 3 under peft's names, its trained tensors the live weights (model.safetensors has their EMA values)
      const live = new Map([...ckBefore].filter(([k]) => k.startsWith('model.')).map(([k, v]) => [k.slice(6), v]));
      const fromPt = tensors(join(pt, 'model.pt'));
      const unpeft = (k: string) => k.replace('.base_layer.', '.').replace('.default.weight', '.weight');
      assert.deepEqual([...fromPt.keys()].map(unpeft).sort(), [...modelBefore.keys()].sort());
      if (phase === 'lora') assert.ok(fromPt.has('blocks.0.self_attn.q.base_layer.weight') && fromPt.has('blocks.0.self_attn.q.lora_A.default.weight'));
      for (const [k, t] of fromPt) sameBits(t, live.get(unpeft(k)) ?? modelBefore.get(unpeft(k))!, `model.pt ${k}`);
      assert.equal(fromPt.get('blocks.0.cross_attn.q.weight')!.dtype, 'bf16');
      // back: the checkpoint is bit-identical (trained weights, EMA, AdamW moments) and the run resumes exactly
      run('from-torch', pt, b);
      const ckAfter = tensors(join(b, 'checkpoint.safetensors'));
      assert.deepEqual([...ckAfter.keys()].sort(), [...ckBefore.keys()].sort());
      for (const [k, t] of ckBefore) sameBits(ckAfter.get(k)!, t, `checkpoint ${k}`);
      const modelAfter = tensors(join(b, 'model.safetensors'));
      assert.deepEqual([...modelAfter.keys()].sort(), [...modelBefore.keys()].sort());
      for (const [k, t] of modelBefore) sameBits(modelAfter.get(k)!, t, `model.safetensors ${k}`);
      await (train as (o: any) => Promise<unknown>)({ out: b, resume: true, steps: 4 });
      for (const f of ['checkpoint.safetensors', 'model.safetensors']) {
        const x = tensors(join(a, f));
        const y = tensors(join(b, f));
        assert.deepEqual([...y.keys()].sort(), [...x.keys()].sort());
        for (const [k, t] of x) sameBits(y.get(k)!, t, `${f} ${k} after resuming`);
      }
    });
});

describe('adapt latents: captions and the injected text encoder', () => {
  it('captions: .txt sidecar, then .json (extended_prompt > prompt > caption), then captions.tsv', () => {
    const dir = tmp('caps');
    mkdirSync(dir);
    writeFileSync(join(dir, 'a.txt'), ' a cat \n');
    writeFileSync(join(dir, 'b.json'), JSON.stringify({ prompt: 'short', extended_prompt: 'a long prompt' }));
    writeFileSync(join(dir, 'captions.tsv'), 'file\tcaption\nc.mp4\ta dog\n');
    const tsv = readCaptionsTsv(dir);
    assert.equal(clipCaption(dir, 'a.mp4', tsv), 'a cat');
    assert.equal(clipCaption(dir, 'b.mp4', tsv), 'a long prompt');
    assert.equal(clipCaption(dir, 'c.mp4', tsv), 'a dog');
    assert.equal(clipCaption(dir, 'd.mp4', tsv), '');
  });

  it('encoderEmbedder: tokenised ids and mask go to the encoder; the null embedding is the negative prompt', () => {
    const calls: { ids: number[]; mask: number[] }[] = [];
    const tok = {
      fingerprint: 'tok',
      padId: 0,
      eosId: 1,
      vocabSize: 100,
      tokenize: (text: string, L: number) => {
        const ids = [...text].map((c) => 2 + (c.charCodeAt(0) % 90)).slice(0, L - 1).concat(1);
        return { cleaned: text, pieces: [...text], ids, inputIds: ids.concat(new Array(L - ids.length).fill(0)), attentionMask: ids.map(() => 1).concat(new Array(L - ids.length).fill(0)) };
      },
    };
    const enc = {
      fingerprint: 'enc',
      dim: 3,
      encode: (ids: Tensor, mask: Tensor) => {
        calls.push({ ids: Array.from(ids.readSync()), mask: Array.from(mask.readSync()) });
        const n = Array.from(mask.readSync()).filter((v) => v === 1).length;
        return [tensor(new Float32Array(n * 3).fill(n), [n, 3])];
      },
    };
    const e = encoderEmbedder(tok, enc, 8, 'no');
    const c = e.embed('abc', 'x.mp4');
    assert.deepEqual(c.shape, [4, 3], 'three characters and eos');
    assert.deepEqual(calls[0]!.mask, [1, 1, 1, 1, 0, 0, 0, 0]);
    assert.equal(calls[0]!.ids.length, 8);
    assert.deepEqual(e.nullEmbedding()!.shape, [3, 3]);
    assert.equal(e.dim, 3);
  });
});
