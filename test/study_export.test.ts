/**
 * `dcvg study export` (src/study/export.ts): the adapted model of a study folder as a generate-ready model folder with
 * its model card, and `dcvg generate` on it (with --model, and as the default model). Fast: the study folder is
 * written here with the smoke scale's models at random weights, in the files the adapt stage leaves (a real smoke
 * study is exported in test/study_adapt.test.ts, which runs one anyway); the real umT5, tokenizer, DiT and DC-AE-V
 * code run in generate.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { saveSafetensors } from '../src/io/safetensors.js';
import { readFrameBytes } from '../src/io/video.js';
import { cmdGenerate } from '../src/cli/generate_cmds.js';
import { cmdStudyExport } from '../src/cli/study_export_cmds.js';
import { createModel } from '../src/models/dcaev/autoencoder.js';
import { configToReference, topologyConfig } from '../src/models/dcaev/config.js';
import { parseWanConfig, wanConfigToJson } from '../src/models/wan/config.js';
import { WanModel } from '../src/models/wan/model.js';
import { resolveUmt5Config, umt5ConfigToJson, umt5RandomState } from '../src/models/umt5/index.js';
import { GENERATE_DEFAULTS_FILE, resolveModelFolder } from '../src/pipelines/model_folder.js';
import { SMOKE_CONFIG, type StudyConfig } from '../src/study/config.js';
import { SHIPPED_MODEL_MAX_BYTES, exportAdaptedModel, safetensorsParams } from '../src/study/export.js';
import { shapesCaption } from '../src/metrics/shapes_world.js';
import { writeCaptionTokenizer } from '../src/study/world.js';
import { randomInit } from './generate_models.js';

const root = mkdtempSync(join(tmpdir(), 'dcvg-study-export-'));
after(() => rmSync(root, { recursive: true, force: true }));
const noFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 ? false : 'ffmpeg not installed';
const PROMPT = 'a small red circle moving left on a black background';

const writeJson = (p: string, v: unknown) => {
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, JSON.stringify(v));
};
const rec = (step: number, train: number, held: number) => ({ step, train: { accuracy: train, allCorrect: 0, clips: 2 }, heldOut: { accuracy: held, allCorrect: 0, clips: 2 } });

/**
 * A study folder whose stages up to adapt are complete, as stageText / stageAutoencoders / stageAdapt leave it
 * (src/cli/study_adapt.ts), with the smoke scale's models at random weights; scores made up (70 / 55 adapted, 80 / 60 base).
 */
function fakeStudy(dir: string): StudyConfig {
  const c = SMOKE_CONFIG;
  writeJson(join(dir, 'study.json'), { format: 'dcvg-study-adapt-1', config: c });
  // text: the caption tokenizer and the frozen random umT5
  const captions = [PROMPT, shapesCaption({ size: 'large', color: 'blue', shape: 'square', direction: 'up', background: 'gray' })];
  const vocab = writeCaptionTokenizer(join(dir, 'text', 'tokenizer'), captions);
  const ucfg = resolveUmt5Config({ name: 'study-umt5', vocab, ...c.text.umt5, shared_pos: false, eps: 1e-6 });
  writeJson(join(dir, 'text', 'umt5.json'), umt5ConfigToJson(ucfg));
  saveSafetensors(join(dir, 'text', 'umt5.safetensors'), umt5RandomState(ucfg, 0));
  writeJson(join(dir, 'text', 'done.json'), { stage: 'text', vocab });
  // DC-AE-V with a "measured" scaling factor
  const t = (c.autoencoders.dc.model as { dcaev_topology: { widths: number[]; depths: number[]; latentChannels: number; chunk: number } }).dcaev_topology;
  const aeCfg = { ...topologyConfig({ name: 'study-dc', ...t, mode: 'chunk_causal' }), scalingFactor: 1.5 };
  writeJson(join(dir, 'autoencoders', 'dc.scaled.json'), configToReference(aeCfg));
  const ae = createModel(aeCfg);
  randomInit(ae, 4);
  mkdirSync(join(dir, 'autoencoders', 'dc'), { recursive: true });
  saveSafetensors(join(dir, 'autoencoders', 'dc', 'model.safetensors'), ae.stateDict());
  writeJson(join(dir, 'autoencoders', 'done.json'), { stage: 'autoencoders', models: { dc: { family: 'dc-ae-v', scalingFactor: 1.5 } } });
  // the adapted DiT: phase 3 merged at adapt.lora.steps, and the folder the stage assembles from it
  const d = c.dit;
  const dcfg = parseWanConfig({ model_type: 't2v', patch_size: [1, 1, 1], text_len: c.text.textLen, in_dim: 32, out_dim: 32, dim: d.dim, ffn_dim: d.ffn_dim, freq_dim: d.freq_dim, text_dim: c.text.umt5.dim, num_heads: d.num_heads, num_layers: d.num_layers, eps: 1e-6 }, 'study-dc');
  const dit = new WanModel(dcfg);
  randomInit(dit, 5);
  const merged = join(dir, 'adapt', 'lora-merged', `step-${c.adapt.lora.steps}.safetensors`);
  mkdirSync(join(merged, '..'), { recursive: true });
  saveSafetensors(merged, dit.stateDict());
  const m = join(dir, 'adapt', 'model');
  mkdirSync(join(m, 'google', 'umt5-xxl'), { recursive: true });
  writeJson(join(m, 'config.json'), { _class_name: 'WanModel', ...wanConfigToJson(dcfg) });
  copyFileSync(merged, join(m, 'diffusion_pytorch_model.safetensors'));
  copyFileSync(join(dir, 'text', 'umt5.safetensors'), join(m, 'models_t5_umt5-xxl-enc-bf16.safetensors'));
  copyFileSync(join(dir, 'text', 'umt5.json'), join(m, 'models_t5_umt5-xxl-enc-bf16.json'));
  copyFileSync(join(dir, 'text', 'tokenizer', 'tokenizer.json'), join(m, 'google', 'umt5-xxl', 'tokenizer.json'));
  copyFileSync(join(dir, 'autoencoders', 'dc', 'model.safetensors'), join(m, 'dc-ae-v-study.safetensors'));
  copyFileSync(join(dir, 'autoencoders', 'dc.scaled.json'), join(m, 'dc-ae-v-study.json'));
  writeJson(join(dir, 'adapt', 'done.json'), { stage: 'adapt', tune: rec(c.adapt.tune.steps, 65, 50), lora: rec(c.adapt.lora.steps, 70, 55) });
  writeJson(join(dir, 'base', 'done.json'), { stage: 'base', score: rec(c.base.steps, 80, 60) });
  writeFileSync(join(dir, 'commands.jsonl'), JSON.stringify({ stage: 'adapt', argv: ['adapt', 'merge', join(dir, 'adapt', 'lora'), '-o', merged] }) + '\n');
  return c;
}

async function generate(args: string[], defaultModel?: string): Promise<Record<string, unknown>> {
  let stdout = '';
  const code = await cmdGenerate([...args, '--no-cache', '--json'], (s) => void (stdout += s), undefined, defaultModel ? { defaultModel } : {});
  assert.equal(code, 0);
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe('dcvg study export', () => {
  const study = join(root, 'study');
  const c = fakeStudy(study);
  const model = join(root, 'shapes-t2v');

  it('writes a generate-ready folder: the adapted DiT, DC-AE-V, umT5, tokenizer, defaults, config and model card', async () => {
    let stdout = '';
    assert.equal(await cmdStudyExport(['--out', study, '--to', model, '--json'], (s) => void (stdout += s)), 0);
    const r = JSON.parse(stdout) as { bytes: number; params: { dit: number; autoencoder: number; textEncoder: number; total: number }; files: { name: string; bytes: number }[] };
    const f = resolveModelFolder(model);
    assert.equal(f.layout, 'wan');
    assert.equal(f.vae.family, 'dc-ae-v');
    assert.equal(f.vae.parsed.scalingFactor, 1.5);
    // the DiT is the merged phase-3 file, byte for byte; the autoencoder and text files the study's
    assert.ok(readFileSync(f.dit.path).equals(readFileSync(join(study, 'adapt', 'lora-merged', `step-${c.adapt.lora.steps}.safetensors`))));
    assert.ok(readFileSync(f.vae.path).equals(readFileSync(join(study, 'autoencoders', 'dc', 'model.safetensors'))));
    assert.ok(readFileSync(f.textEncoder.path).equals(readFileSync(join(study, 'text', 'umt5.safetensors'))));
    assert.deepEqual(f.generateDefaults, { width: 128, height: 128, frames: 16, fps: 8, steps: c.eval.steps, guidance: c.eval.guidance, shift: c.eval.shift, sampler: c.eval.sampler });
    assert.deepEqual(JSON.parse(readFileSync(join(model, 'study-config.json'), 'utf8')), c);
    // parameters counted from the headers: the models' own counts
    const count = (m: { shapes(): Map<string, number[]> }) => [...m.shapes().values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
    assert.equal(r.params.dit, count(new WanModel(f.dit.parsed)));
    assert.equal(r.params.autoencoder, count(createModel(f.vae.parsed)));
    assert.equal(r.params.total, r.params.dit + r.params.autoencoder + r.params.textEncoder);
    assert.equal(r.params.textEncoder, safetensorsParams(join(study, 'text', 'umt5.safetensors')));
    // bytes: the files listed (all but the README) and their sum
    const listed = r.files.map((x) => x.name).sort();
    assert.deepEqual(listed, ['config.json', 'dc-ae-v-study.json', 'dc-ae-v-study.safetensors', GENERATE_DEFAULTS_FILE, 'diffusion_pytorch_model.safetensors', join('google', 'umt5-xxl', 'tokenizer.json'), 'models_t5_umt5-xxl-enc-bf16.json', 'models_t5_umt5-xxl-enc-bf16.safetensors', 'study-config.json'].sort());
    assert.equal(r.bytes, r.files.reduce((a, x) => a + statSync(join(model, x.name)).size, 0));
    assert.ok(r.bytes < SHIPPED_MODEL_MAX_BYTES);
    // the model card: what, where from, commands, parameters and sizes, the adapted and base scores
    const card = readFileSync(join(model, 'README.md'), 'utf8');
    assert.match(card, /\| this model \(adapted: phase 3 LoRA, merged\) \| 2 \| 70\.0% \(2 clips\) \| 55\.0% \(2 clips\) \|/);
    assert.match(card, /\| base DiT \(Wan-VAE latents\) \| 4 \| 80\.0% \(2 clips\) \| 60\.0% \(2 clips\) \|/);
    assert.ok(card.includes(`study folder: \`${study}\``));
    assert.ok(card.includes('dcvg study adapt --out STUDY --scale smoke --config study-config.json'));
    assert.ok(card.includes(`dcvg adapt merge ${join(study, 'adapt', 'lora')}`));
    assert.ok(card.includes(`| total (without this README) | ${r.bytes.toLocaleString('en-US')} `));
    assert.ok(card.includes('scaling factor 1.5'));
    assert.match(card, /training >= 90%: not met; held-out >= 75%: not met; within 2 points of the base on training combinations \(-10.0\): not met/);
    // nothing left beside it
    assert.deepEqual(readdirSync(root).sort(), ['shapes-t2v', 'study']);
  });

  it('dcvg generate --model FOLDER: 128x128, 16 frames at 8 fps by default, the same video for the same seed', { skip: noFfmpeg }, async () => {
    const a = join(root, 'a.mp4');
    const j = await generate([PROMPT, '--model', model, '-o', a, '--seed', '7']);
    assert.deepEqual([j.width, j.height, j.frames, j.fps, j.steps], [128, 128, 16, 8, c.eval.steps]);
    const va = await readFrameBytes(a);
    assert.deepEqual([va.width, va.height, va.frames], [128, 128, 16]);
    const b = join(root, 'b.mp4');
    await generate([PROMPT, '--model', model, '-o', b, '--seed', '7']);
    assert.ok(Buffer.from((await readFrameBytes(b)).data).equals(Buffer.from(va.data)), 'same seed, same video');
    const d = join(root, 'd.mp4');
    await generate([PROMPT, '--model', model, '-o', d, '--seed', '8']);
    assert.ok(!Buffer.from((await readFrameBytes(d)).data).equals(Buffer.from(va.data)), 'another seed, another video');
    // options still override the folder's defaults
    const e = join(root, 'e.y4m');
    const je = await generate([PROMPT, '--model', model, '-o', e, '--seed', '7', '--size', '64x32', '--frames', '8', '--steps', '1']);
    assert.deepEqual([je.width, je.height, je.frames, je.steps], [64, 32, 8, 1]);
    // without --model, an exported folder in the default's place is used the same way
    const f = join(root, 'f.mp4');
    const jf = await generate([PROMPT, '-o', f, '--seed', '7'], model);
    assert.equal(jf.model_folder, model);
    assert.ok(Buffer.from((await readFrameBytes(f)).data).equals(Buffer.from(va.data)), 'the default model gives the same video as --model');
    for (const p of [a, b, d, e, f]) rmSync(p);
  });

  it('refuses an incomplete adapt stage, an existing folder without --force, a folder over the limit; writes nothing', async () => {
    const before = readdirSync(root).sort();
    const cmd = (args: string[]) => cmdStudyExport(args, () => {});
    // the adapt stage not complete (no done.json), and a folder that is no study
    const partial = join(root, 'partial');
    cpSync(study, partial, { recursive: true });
    rmSync(join(partial, 'adapt', 'done.json'));
    await assert.rejects(cmd(['--out', partial, '--to', join(root, 'x')]), /the adapt stage of .*partial is not complete \(no adapt\/done.json\); finish it first: dcvg study adapt --out .*partial --resume/);
    await assert.rejects(cmd(['--out', join(root, 'nothing'), '--to', join(root, 'x')]), /is not a study folder \(no study.json\)/);
    // the folder's DiT not the final merged one (e.g. an adapt stage re-run half way)
    writeJson(join(partial, 'adapt', 'done.json'), JSON.parse(readFileSync(join(study, 'adapt', 'done.json'), 'utf8')));
    writeFileSync(join(partial, 'adapt', 'lora-merged', `step-${c.adapt.lora.steps}.safetensors`), 'changed');
    await assert.rejects(cmd(['--out', partial, '--to', join(root, 'x')]), /diffusion_pytorch_model.safetensors is not the final merged LoRA DiT/);
    rmSync(partial, { recursive: true });
    // the target exists: refused without --force; --force replaces an earlier export only
    await assert.rejects(cmd(['--out', study, '--to', model]), /shapes-t2v exists; pass --force to replace it/);
    const other = join(root, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'keep.txt'), 'mine');
    await assert.rejects(cmd(['--out', study, '--to', other, '--force']), /is not a model folder written by dcvg study export .*not replacing it/);
    assert.equal(readFileSync(join(other, 'keep.txt'), 'utf8'), 'mine');
    // a user's model folder with its own dcvg_generate.json (no export marker) is not replaced either
    writeFileSync(join(other, 'dcvg_generate.json'), JSON.stringify({ width: 64 }));
    await assert.rejects(cmd(['--out', study, '--to', other, '--force']), /is not a model folder written by dcvg study export .*not replacing it/);
    assert.equal(readFileSync(join(other, 'keep.txt'), 'utf8'), 'mine');
    rmSync(other, { recursive: true });
    writeFileSync(join(model, 'README.md'), 'old card');
    assert.equal(await cmd(['--out', study, '--to', model, '--force']), 0);
    assert.match(readFileSync(join(model, 'README.md'), 'utf8'), /^# shapes-t2v/);
    // over the size limit (the library's limit lowered below this folder's size): nothing written, no temporary left
    assert.throws(() => exportAdaptedModel({ study, to: join(root, 'big'), maxBytes: 100_000 }), /the model folder would be \d+ bytes \([\d.]+ MB\), over the limit of 100000 bytes/);
    assert.throws(() => exportAdaptedModel({ study, to: model, force: true, maxBytes: 100_000 }), /over the limit/);
    assert.ok(resolveModelFolder(model), 'the earlier export is kept');
    assert.deepEqual(readdirSync(root).sort(), before);
    // the usage
    await assert.rejects(cmd(['--out', study]), /needs --to/);
    await assert.rejects(cmd(['--to', model]), /needs --out/);
    let help = '';
    await cmdStudyExport(['--help'], (s) => void (help += s));
    assert.match(help, /^dcvg study export --out DIR --to FOLDER/);
  });

  it("a folder's dcvg_generate.json is checked key by key", () => {
    const bad = join(root, 'bad-defaults');
    cpSync(model, bad, { recursive: true });
    const cases: [unknown, RegExp][] = [
      [{ frames: 16.5 }, /dcvg_generate.json: "frames" must be a positive integer, got 16.5/],
      [{ guidance: -1 }, /"guidance" must be a positive number, got -1/],
      [{ sampler: 'ddim' }, /"sampler" must be "unipc" or "euler", got "ddim"/],
      [{ size: '128x128' }, /unknown key "size" \(known: width, height, frames, steps, fps, guidance, shift, sampler\)/],
      [[16], /must hold a JSON object/],
    ];
    for (const [j, re] of cases) {
      writeFileSync(join(bad, GENERATE_DEFAULTS_FILE), JSON.stringify(j));
      assert.throws(() => resolveModelFolder(bad), re, JSON.stringify(j));
    }
    writeFileSync(join(bad, GENERATE_DEFAULTS_FILE), JSON.stringify({ _comment: 'ignored', fps: 12.5 }));
    assert.deepEqual(resolveModelFolder(bad).generateDefaults, { fps: 12.5 });
    rmSync(bad, { recursive: true });
  });
});
