/**
 * `dcvg generate` as users run it (the dcvg binary, a child process) with the real tokenizer (src/text), umT5
 * (src/models/umt5) and CLIP (src/models/clip): tiny random models assembled into both folder layouts, the fixture
 * spiece.model copied in. Prompt -> video and prompt + image -> video, determinism per seed, the prompt cache (a second
 * run encodes nothing), and a bad image refused with nothing written.
 *
 * Skips, naming what is missing, when ../shared (the spiece.model fixture) is absent.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFrameBytes, writeVideo } from '../src/io/video.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { tensor } from '../src/tensor/tensor.js';
import { loadTokenizer } from '../src/text/index.js';
import { resolveUmt5Config, umt5ConfigToHf, umt5RandomState } from '../src/models/umt5/index.js';
import { clipRandomState, resolveClipConfig } from '../src/models/clip/index.js';
import { fixturePath, repoRoot } from './helpers.js';
import { writeModelFolder, type Family, type Layout } from './generate_folders.js';

const SPIECE = fixturePath('tokenizer/spiece.model');
const skip = existsSync(SPIECE) ? false : `fixture missing: ${SPIECE} (clone the shared folder beside the repository to run this test)`;

const TEXT_DIM = 16;
const VISION_DIM = 32;

/** Real tiny encoders in the files each layout expects. */
async function encoderWriter(): Promise<(dir: string, layout: Layout, mode: 't2v' | 'i2v') => void> {
  const tok = await loadTokenizer(SPIECE);
  const u = { vocab: tok.vocabSize, dim: TEXT_DIM, dim_attn: TEXT_DIM, dim_ffn: 32, num_heads: 2, num_layers: 2, num_buckets: 8, shared_pos: false, max_dist: 16, eps: 1e-6 };
  const uc = resolveUmt5Config(u);
  const c = { embed_dim: 8, image_size: 28, patch_size: 14, vision_dim: VISION_DIM, vision_mlp_ratio: 2, vision_heads: 2, vision_layers: 2, vocab_size: 10, max_text_len: 4, text_dim: 8, text_heads: 2, text_layers: 1 };
  const cc = resolveClipConfig(c);
  return (dir, layout, mode) => {
    if (layout === 'diffusers') {
      mkdirSync(join(dir, 'text_encoder'));
      writeFileSync(join(dir, 'text_encoder', 'config.json'), JSON.stringify(umt5ConfigToHf(uc)));
      saveSafetensors(join(dir, 'text_encoder', 'model.safetensors'), umt5RandomState(uc, 1, { format: 'hf' }));
      mkdirSync(join(dir, 'tokenizer'));
      copyFileSync(SPIECE, join(dir, 'tokenizer', 'spiece.model'));
      if (mode === 'i2v') {
        mkdirSync(join(dir, 'image_encoder'));
        writeFileSync(join(dir, 'image_encoder', 'config.json'), JSON.stringify(c));
        saveSafetensors(join(dir, 'image_encoder', 'model.safetensors'), clipRandomState(cc, 2, { textual: false }));
      }
    } else {
      writeFileSync(join(dir, 'models_t5_umt5-xxl-enc-bf16.json'), JSON.stringify(u));
      saveSafetensors(join(dir, 'models_t5_umt5-xxl-enc-bf16.safetensors'), umt5RandomState(uc, 1, { dtype: 'bf16' }));
      mkdirSync(join(dir, 'google', 'umt5-xxl'), { recursive: true });
      copyFileSync(SPIECE, join(dir, 'google', 'umt5-xxl', 'spiece.model'));
      if (mode === 'i2v') {
        writeFileSync(join(dir, 'models_clip_open-clip-xlm-roberta-large-vit-huge-14.json'), JSON.stringify(c));
        saveSafetensors(join(dir, 'models_clip_open-clip-xlm-roberta-large-vit-huge-14.safetensors'), clipRandomState(cc, 2));
      }
    }
  };
}

const cli = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
function dcvg(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, 'generate', ...args], { encoding: 'utf8', env: { ...process.env, DCVG_NO_PROGRESS: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const SIZE = { dc: ['--size', '24x16', '--frames', '8'], wan: ['--size', '32x16', '--frames', '5'] } as const;

describe('dcvg generate with the real tokenizer, umT5 and CLIP on tiny random folders', { skip }, () => {
  let root = '';
  let write: Awaited<ReturnType<typeof encoderWriter>>;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'dcvg-genreal-'));
    write = await encoderWriter();
  });
  after(() => rmSync(root, { recursive: true, force: true }));
  const folder = (layout: Layout, family: Family, mode: 't2v' | 'i2v') => {
    const dir = join(root, `${layout}-${family}-${mode}`);
    if (!existsSync(dir)) {
      mkdirSync(dir);
      writeModelFolder(dir, { layout, family, mode, dims: { textDim: TEXT_DIM, imageDim: VISION_DIM, textLen: 32 }, writeEncoders: write });
    }
    return dir;
  };

  for (const [layout, family] of [['diffusers', 'dc'], ['wan', 'wan']] as const)
    it(`${layout} layout (${family === 'dc' ? 'DC-AE-V' : 'Wan VAE'}): a prompt makes a video, the same seed the same one, cached prompts never read umT5`, () => {
      const dir = folder(layout, family, 't2v');
      const cache = join(root, `cache-${layout}`);
      const run = (name: string, seed: string) => dcvg('A red circle, moving left.', '--model', dir, '-o', join(root, name), ...SIZE[family], '--steps', '2', '--seed', seed, '--cache-dir', cache, '--json');
      const a = run(`t2v-${layout}-a.y4m`, '1');
      assert.equal(a.status, 0, a.stderr);
      const ja = JSON.parse(a.stdout) as { prompts_encoded: number; frames: number };
      assert.equal(ja.prompts_encoded, 2);
      // the umT5 weights turned to garbage of the same size and time: the cache still hits (its key is the files'
      // identity), and the runs below succeed only if umT5 is never read
      const t5 = layout === 'wan' ? join(dir, 'models_t5_umt5-xxl-enc-bf16.safetensors') : join(dir, 'text_encoder', 'model.safetensors');
      const st = statSync(t5);
      writeFileSync(t5, Buffer.alloc(st.size, 0x7b));
      utimesSync(t5, st.atime, st.mtime);
      const b = run(`t2v-${layout}-b.y4m`, '1');
      assert.equal(b.status, 0, b.stderr);
      assert.equal((JSON.parse(b.stdout) as { prompts_encoded: number }).prompts_encoded, 0);
      const c = run(`t2v-${layout}-c.y4m`, '2');
      assert.equal(c.status, 0, c.stderr);
      return Promise.all(['a', 'b', 'c'].map((n) => readFrameBytes(join(root, `t2v-${layout}-${n}.y4m`)))).then(([x, y, z]) => {
        assert.equal(x!.frames, ja.frames);
        assert.ok(Buffer.from(x!.data).equals(Buffer.from(y!.data)), 'same seed, same frames (cached embeddings equal fresh ones)');
        assert.ok(!Buffer.from(x!.data).equals(Buffer.from(z!.data)), 'another seed, other frames');
      });
    });

  for (const [layout, family] of [['wan', 'wan'], ['diffusers', 'dc']] as const)
    it(`${layout} layout (${family === 'dc' ? 'DC-AE-V' : 'Wan VAE'}): a prompt and an image make a video`, async () => {
      const dir = folder(layout, family, 'i2v');
      const H = 30;
      const W = 44;
      await writeVideo(join(root, 'first%d.png'), tensor(new Float32Array(3 * H * W).map((_, i) => Math.cos(i * 0.11)), [1, 3, 1, H, W]), { fps: 1 });
      const out = join(root, `i2v-${layout}.mp4`);
      const r = dcvg('The circle turns blue.', '--image', join(root, 'first0.png'), '--model', dir, '-o', out, ...SIZE[family], '--steps', '2', '--no-cache', '--json');
      assert.equal(r.status, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { mode: string }).mode, 'i2v');
      assert.equal((await readFrameBytes(out)).frames, family === 'dc' ? 8 : 5);
    });

  it('a bad image gets one line and nothing is written', () => {
    const dir = folder('wan', 'wan', 'i2v');
    writeFileSync(join(root, 'broken.png'), 'PNG? no');
    const before = readdirSync(root).sort();
    const r = dcvg('p', '--image', join(root, 'broken.png'), '--model', dir, '-o', join(root, 'never.mp4'), ...SIZE.wan, '--no-cache');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^dcvg generate: .*broken\.png/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.deepEqual(readdirSync(root).sort(), before);
  });
});
