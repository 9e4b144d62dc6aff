/**
 * `dcvg generate` end to end on tiny random model folders in both layouts (test/generate_folders.ts): the folder
 * logic, the option handling, the output and the error cases. The encoders are the fakes of test/generate_models.ts,
 * passed to cmdGenerate as its loaders, so the DiT and autoencoder weights really come from the folders while the
 * tokenizer / umT5 / CLIP stand-ins need no other module.
 */
import { describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFrameBytes, writeVideo } from '../src/io/video.js';
import { cmdGenerate, defaultT2vModelDir } from '../src/cli/generate_cmds.js';
import { isHeldOut, parseShapesCaption, scoreShapes, shapesAccuracy } from '../src/metrics/shapes_world.js';
import type { EncoderLoaders } from '../src/pipelines/model_folder.js';
import { resolveModelFolder } from '../src/pipelines/model_folder.js';
import { tensor } from '../src/tensor/tensor.js';
import { FakeImageEncoder, FakeTextEncoder, FakeTokenizer, tinyDitJson } from './generate_models.js';
import { writeModelFolder, type Family, type Layout } from './generate_folders.js';

const fakeLoaders: EncoderLoaders = {
  loadTokenizer: async () => new FakeTokenizer(),
  loadTextEncoder: () => new FakeTextEncoder(),
  loadImageEncoder: () => new FakeImageEncoder(),
};

/** assets/shapes-t2v (issue #21's model, written by dcvg study export) is installed in this checkout. */
const shipped = existsSync(defaultT2vModelDir());
const escapeRe = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const SIZE = { dc: ['--size', '24x16', '--frames', '16'], wan: ['--size', '32x16', '--frames', '9'] } as const;

async function generate(args: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = '';
  const code = await cmdGenerate(args, (s) => void (stdout += s), fakeLoaders);
  return { code, stdout };
}

/** The tiny folder of a kind under root, built on first use (tests can run alone). */
function folder(root: string, o: { layout: Layout; family: Family; mode: 't2v' | 'i2v' }): string {
  const dir = join(root, `${o.layout}-${o.family}-${o.mode}`);
  if (!existsSync(dir)) {
    mkdirSync(dir);
    writeModelFolder(dir, o);
  }
  return dir;
}

async function png(root: string, W: number, H: number): Promise<string> {
  const d = new Float32Array(3 * H * W).map((_, i) => Math.sin(i * 0.37));
  await writeVideo(join(root, 'img%d.png'), tensor(d, [1, 3, 1, H, W]), { fps: 1 });
  return join(root, 'img0.png');
}

describe('dcvg generate on tiny random model folders', () => {
  const root = mkdtempSync(join(tmpdir(), 'dcvg-gencli-'));
  const common = ['--steps', '2', '--seed', '5', '--no-cache', '--json'];

  for (const layout of ['diffusers', 'wan'] as const)
    for (const family of ['dc', 'wan'] as const)
      it(`${layout} layout, ${family === 'dc' ? 'DC-AE-V + patch-1 DiT' : 'Wan VAE + 1x2x2 DiT'}: a prompt makes a video`, async () => {
        const dir = folder(root, { layout, family, mode: 't2v' });
        const f = resolveModelFolder(dir);
        assert.equal(f.layout, layout);
        assert.equal(f.vae.family, family === 'dc' ? 'dc-ae-v' : 'wan-vae');
        const out = join(root, `${layout}-${family}.y4m`);
        const r = await generate(['a red circle', '--model', dir, '-o', out, ...SIZE[family], ...common]);
        assert.equal(r.code, 0);
        const j = JSON.parse(r.stdout) as Record<string, unknown>;
        assert.equal(j.layout, layout);
        assert.equal(j.mode, 't2v');
        // the diffusers folders carry scheduler_config.json with flow_shift 3: the default shift comes from it
        assert.equal(j.shift, layout === 'diffusers' ? 3 : 5);
        const v = await readFrameBytes(out);
        assert.equal(v.frames, family === 'dc' ? 16 : 9);
        assert.equal(v.width, family === 'dc' ? 24 : 32);
      });

  for (const [layout, family] of [['diffusers', 'dc'], ['wan', 'wan'], ['wan', 'dc']] as const)
    it(`${layout} layout, ${family}: a prompt and an image make a video; the same seed the same one`, async () => {
      const dir = folder(root, { layout, family, mode: 'i2v' });
      const img = await png(root, 40, 30);
      const out = (n: string) => join(root, `i2v-${layout}-${family}-${n}.y4m`);
      const a = await generate(['a red circle', '--image', img, '--model', dir, '-o', out('a'), ...SIZE[family], ...common]);
      assert.equal(a.code, 0);
      assert.equal((JSON.parse(a.stdout) as { mode: string }).mode, 'i2v');
      await generate(['a red circle', '--image', img, '--model', dir, '-o', out('b'), ...SIZE[family], ...common]);
      const [x, y] = await Promise.all([readFrameBytes(out('a')), readFrameBytes(out('b'))]);
      assert.equal(x.frames, family === 'dc' ? 16 : 9);
      assert.ok(Buffer.from(x.data).equals(Buffer.from(y.data)));
    });

  it('a prompt file is read as the prompt; bad prompt files are refused', async () => {
    const dir = folder(root, { layout: 'wan', family: 'dc', mode: 't2v' });
    const pf = join(root, 'prompt.txt');
    writeFileSync(pf, '\uFEFFa red circle\n');
    const r = await generate(['--prompt-file', pf, '--model', dir, '-o', join(root, 'pf.y4m'), ...SIZE.dc, ...common]);
    assert.equal((JSON.parse(r.stdout) as { prompt: string }).prompt, 'a red circle');
    const bad: [string, string | Uint8Array, RegExp][] = [
      ['empty.txt', '  \n', /is empty/],
      ['binary.txt', new Uint8Array([0x61, 0, 0x62]), /not a text file/],
      ['latin1.txt', new Uint8Array([0x63, 0xe9, 0x20]), /not valid UTF-8/],
    ];
    for (const [name, data, re] of bad) {
      writeFileSync(join(root, name), data);
      await assert.rejects(generate(['--prompt-file', join(root, name), '--model', dir, '-o', join(root, 'never.mp4')]), re, name);
    }
    await assert.rejects(generate(['--prompt-file', join(root, 'nope.txt'), '--model', dir, '-o', join(root, 'never.mp4')]), /not found/);
    await assert.rejects(generate(['x', '--prompt-file', pf, '--model', dir, '-o', join(root, 'never.mp4')]), /not both/);
  });

  it('bad folders, sizes, images and options get one clear error and write nothing', async () => {
    writeFileSync(join(root, 'prompt.txt'), 'a prompt');
    const dc = folder(root, { layout: 'wan', family: 'dc', mode: 't2v' });
    const i2v = folder(root, { layout: 'diffusers', family: 'dc', mode: 'i2v' });
    const before = new Set(readdirSync(root));
    const out = join(root, 'never.mp4');
    const cases: [string[], RegExp][] = [
      [['p', '--model', join(root, 'nothing-here'), '-o', out], /model folder not found/],
      [['p', '--model', join(root, 'prompt.txt'), '-o', out], /is not a folder/],
      [['p', '--model', root, '-o', out], /neither model_index.json .* nor config.json/],
      [['p', '--model', dc, '-o', out, '--size', '30x16'], /size 30x16 .*multiples of 4/],
      [['p', '--model', dc, '-o', out, '--size', '30by16'], /--size must be WIDTHxHEIGHT/],
      [['p', '--model', dc, '-o', out, '--steps', 'many'], /--steps must be an integer/],
      [['p', '--model', dc, '-o', out, '--sampler', 'ddim'], /--sampler must be unipc or euler/],
      [['p', '--model', dc, '-o', out, '--image', join(root, 'prompt.txt')], /text-to-video model/],
      [['p', '--model', dc, '-o', out, '--image', join(root, 'nope.png')], /--image .* not found/],
      [['p', '--model', dc], /needs -o/],
      // without --model and no model installed: the missing folder named, and how to get one (the shipped model's case
      // is its own test below)
      ...(shipped ? [] : ([[['p', '-o', out], new RegExp(`no default model in assets/shapes-t2v; pass --model DIR \\(generate needs --model until a model is installed at ${escapeRe(defaultT2vModelDir())}\\)`)]] as [string[], RegExp][])),
      [['p', 'q', '--model', dc, '-o', out], /one prompt/],
      [['p', '--model', dc, '-o', join(root, 'no-such-dir', 'x.mp4')], /director/],
      [['p', '--model', dc, '-o', join(dc, 'config.json')], /overwrite|regular|directory/],
    ];
    for (const [args, re] of cases) await assert.rejects(generate(args), re, args.join(' '));
    // an image that is no image: refused when read, before any model loads
    writeFileSync(join(root, 'fake.png'), 'not a png');
    await assert.rejects(generate(['p', '--model', i2v, '-o', out, '--image', join(root, 'fake.png'), ...SIZE.dc]), /fake\.png/);
    assert.deepEqual(new Set(readdirSync(root)), new Set([...before, 'fake.png']));
  });

  it('missing or mismatched parts name the file and what was expected', async () => {
    const cases: [Layout, Family, 't2v' | 'i2v', (d: string) => void, RegExp][] = [
      ['diffusers', 'dc', 't2v', (d) => rmSync(join(d, 'text_encoder'), { recursive: true }), /text encoder folder text_encoder\/ is missing \(model_index.json lists it\)/],
      ['diffusers', 'dc', 't2v', (d) => unlinkSync(join(d, 'transformer', 'config.json')), /transformer config: .*transformer\/config.json is missing/],
      ['diffusers', 'dc', 't2v', (d) => unlinkSync(join(d, 'transformer', 'diffusion_pytorch_model-00002-of-00002.safetensors')), /shard .* is missing/],
      ['diffusers', 'dc', 'i2v', (d) => rmSync(join(d, 'image_encoder'), { recursive: true }), /image encoder \(CLIP, needed by an i2v transformer\) folder image_encoder\/ is missing/],
      ['diffusers', 'dc', 't2v', (d) => rmSync(join(d, 'tokenizer', 'tokenizer.json')), /holds neither spiece.model nor tokenizer.json/],
      ['diffusers', 'dc', 't2v', (d) => writeFileSync(join(d, 'vae', 'config.json'), JSON.stringify({ _class_name: 'AutoencoderKLWan', base_dim: 4, z_dim: 8, dim_mult: [1, 2, 2, 2], num_res_blocks: 1 })), /predicts 4 latent channels, but the autoencoder .*vae\/config.json has 8/],
      ['diffusers', 'dc', 't2v', (d) => writeFileSync(join(d, 'text_encoder', 'config.json'), JSON.stringify({ d_model: 4096 })), /d_model 4096 differs from the DiT's text_dim 12/],
      ['wan', 'wan', 't2v', (d) => unlinkSync(join(d, 'models_t5_umt5-xxl-enc-bf16.pth')), /the umT5 text encoder models_t5_umt5-xxl-enc-bf16.pth is missing/],
      ['wan', 'wan', 'i2v', (d) => unlinkSync(join(d, 'models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth')), /CLIP image encoder .* models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth is missing/],
      ['wan', 'wan', 't2v', (d) => (unlinkSync(join(d, 'Wan2.1_VAE.safetensors')), unlinkSync(join(d, 'Wan2.1_VAE.json'))), /no autoencoder: expected Wan2.1_VAE.pth .* or a DC-AE-V checkpoint/],
      ['wan', 'wan', 't2v', (d) => unlinkSync(join(d, 'diffusion_pytorch_model.safetensors')), /no DiT weights/],
      ['wan', 'wan', 't2v', (d) => (writeFileSync(join(d, 'a.pt'), 'x'), unlinkSync(join(d, 'diffusion_pytorch_model.safetensors')), writeFileSync(join(d, 'b.pt'), 'x')), /cannot tell which file holds the DiT weights \(a.pt, b.pt\)/],
      ['wan', 'dc', 't2v', (d) => unlinkSync(join(d, 'dc-ae-v-tiny.json')), /cannot tell the DC-AE-V configuration of .*dc-ae-v-tiny.safetensors.*dc-ae-v-tiny.json/],
      ['wan', 'dc', 't2v', (d) => writeFileSync(join(d, 'config.json'), '{"dim": '), /config.json is not valid JSON/],
      ['wan', 'dc', 't2v', (d) => writeFileSync(join(d, 'config.json'), JSON.stringify({ ...tinyDitJson('dc', 't2v'), num_layers: 3 })), /DiT weights .*diffusion_pytorch_model.safetensors do not match the DiT config .*config.json: \d+ missing \(blocks.2./],
      ['diffusers', 'wan', 't2v', (d) => writeFileSync(join(d, 'transformer', 'config.json'), JSON.stringify({ _class_name: 'WanTransformer3DModel', patch_size: [1, 2, 2], num_attention_heads: 2, attention_head_dim: 8, in_channels: 4, out_channels: 4, text_dim: 12, freq_dim: 8, ffn_dim: 32, num_layers: 2 })), /of another shape \(blocks.0.ffn.0.weight: config \[32, 16\], file \[24, 16\]/],
    ];
    let n = 0;
    for (const [layout, family, mode, breakIt, re] of cases) {
      const d = join(root, `broken-${n++}`);
      mkdirSync(d);
      writeModelFolder(d, { layout, family, mode });
      breakIt(d);
      await assert.rejects(generate(['p', '--model', d, '-o', join(root, 'never.mp4'), ...SIZE[family]]), re, `case ${n - 1}`);
    }
    // a DC DiT beside only the Wan VAE: the channels do not pair
    const d = join(root, 'mismatch');
    mkdirSync(d);
    writeModelFolder(d, { layout: 'wan', family: 'dc', mode: 't2v' });
    unlinkSync(join(d, 'dc-ae-v-tiny.safetensors'));
    unlinkSync(join(d, 'dc-ae-v-tiny.json'));
    writeFileSync(join(d, 'Wan2.1_VAE.json'), JSON.stringify({ dim: 4, z_dim: 8, dim_mult: [1, 2, 2, 2], num_res_blocks: 1 }));
    writeFileSync(join(d, 'Wan2.1_VAE.pth'), 'x');
    await assert.rejects(generate(['p', '--model', d, '-o', join(root, 'never.mp4')]), /predicts 4 latent channels, but Wan2.1_VAE.pth has 8/);
    assert.ok(!readdirSync(root).includes('never.mp4'));
  });

  it('without --json: one line naming the output, its frames and size, and the time of each stage', async () => {
    const dir = folder(root, { layout: 'wan', family: 'dc', mode: 't2v' });
    const out = join(root, 'human.gif');
    const r = await generate(['a red circle', '--model', dir, '-o', out, ...SIZE.dc, '--steps', '1', '--no-cache', '--guidance', '1']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^generated .*human\.gif \(16 frames, 24x16, 16 fps\) with wan-dc-t2v on dc-ae-v-tiny in [\d.]+s \(text [\d.]+s, denoise [\d.]+s, decode [\d.]+s\)\n$/);
    assert.equal((await readFrameBytes(out)).frames, 16);
  });

  it('--help prints the usage with the defaults', async () => {
    const r = await generate(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--steps N +denoising steps \(default 50\)/);
  });

  it('cleanup', () => rmSync(root, { recursive: true, force: true }));
});

/**
 * The shipped model (issue #21's Done: "dcvg generate with the default model writes a video whose score is checked on a
 * few prompts"): without --model, with the real encoders, its defaults (128x128, 16 frames, the study's sampling), two
 * training and two held-out captions at two seeds, read back by the shapes-world scorer. The bounds sit below the
 * issue's targets (90% / 75% over 4 seeds of the study's prompt set) for the sampling noise of 4 clips each, and far
 * above chance (a random reading of the 5 attributes scores about 35%).
 */
describe('dcvg generate with the shipped default model (assets/shapes-t2v)', () => {
  const skip = !shipped
    ? `assets/shapes-t2v is not installed (ship it with: dcvg study export --out STUDY --to assets/shapes-t2v; docs/studies/adapt.md)`
    : spawnSync('ffmpeg', ['-version']).status === 0
      ? false
      : 'ffmpeg not installed';
  it('writes 128x128 16-frame videos the shapes scorer reads as their captions', { skip }, async () => {
    const root = mkdtempSync(join(tmpdir(), 'dcvg-shipped-'));
    try {
      const prompts = [
        'a small red circle moving left on a black background',
        'a large blue square moving up on a gray background',
        'a large green square moving up on a gray background',
        'a small cyan circle moving left on a black background',
      ];
      const acc: Record<'train' | 'held-out', number[]> = { train: [], 'held-out': [] };
      for (const [i, prompt] of prompts.entries())
        for (const seed of [1, 2]) {
          const out = join(root, `${i}-${seed}.y4m`);
          let stdout = '';
          assert.equal(await cmdGenerate([prompt, '-o', out, '--seed', String(seed), '--no-cache', '--json'], (x) => void (stdout += x)), 0);
          assert.equal((JSON.parse(stdout) as { model_folder: string }).model_folder, defaultT2vModelDir());
          const v = await readFrameBytes(out);
          assert.deepEqual([v.width, v.height, v.frames], [128, 128, 16]);
          const truth = parseShapesCaption(prompt)!;
          acc[isHeldOut(truth) ? 'held-out' : 'train'].push(100 * shapesAccuracy(scoreShapes(v.data, v.frames), truth).accuracy);
        }
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      assert.deepEqual([acc.train.length, acc['held-out'].length], [4, 4]);
      const msg = `attribute accuracy per clip: train ${acc.train.join(', ')}; held-out ${acc['held-out'].join(', ')}`;
      assert.ok(mean(acc.train) >= 80, msg);
      assert.ok(mean(acc['held-out']) >= 60, msg);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
