/**
 * `dcvg generate` without --model (issue #21 item 5): the folder shipped in assets/shapes-t2v is used, with the
 * shapes world's geometry as defaults; when it is missing, one clear line and nothing written. The resolution is tested
 * on a tiny random folder (test/generate_folders.ts) handed to cmdGenerate in place of assets/shapes-t2v.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFrameBytes } from '../src/io/video.js';
import { DEFAULT_T2V_GEOMETRY, cmdGenerate, defaultT2vModelDir } from '../src/cli/generate_cmds.js';
import type { EncoderLoaders } from '../src/pipelines/model_folder.js';
import { FakeImageEncoder, FakeTextEncoder, FakeTokenizer } from './generate_models.js';
import { writeModelFolder } from './generate_folders.js';
import { repoRoot } from './helpers.js';

const fakeLoaders: EncoderLoaders = {
  loadTokenizer: async () => new FakeTokenizer(),
  loadTextEncoder: () => new FakeTextEncoder(),
  loadImageEncoder: () => new FakeImageEncoder(),
};

async function generate(args: string[], defaultModel: string): Promise<{ code: number; stdout: string }> {
  let stdout = '';
  const code = await cmdGenerate(args, (s) => void (stdout += s), fakeLoaders, { defaultModel });
  return { code, stdout };
}

const prompt = 'a small red circle moving left on a black background';
const noFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 ? false : 'ffmpeg not installed';

describe('dcvg generate without --model', { skip: noFfmpeg }, () => {
  const root = mkdtempSync(join(tmpdir(), 'dcvg-gen-default-'));
  const tiny = join(root, 'tiny-dc');
  mkdirSync(tiny);
  writeModelFolder(tiny, { layout: 'diffusers', family: 'dc', mode: 't2v' });

  it('the default folder is assets/shapes-t2v of this checkout', () => {
    assert.equal(defaultT2vModelDir(), join(repoRoot, 'assets', 'shapes-t2v'));
  });

  it('uses the default folder, with the world geometry (128x128, 16 frames, 8 fps) unless given', async () => {
    const out = join(root, 'default.y4m');
    const r = await generate([prompt, '-o', out, '--steps', '1', '--seed', '3', '--no-cache', '--json'], tiny);
    assert.equal(r.code, 0);
    const j = JSON.parse(r.stdout) as { model_folder: string; width: number; height: number; frames: number; fps: number };
    assert.equal(j.model_folder, tiny);
    assert.deepEqual([j.width, j.height, j.frames, j.fps], [DEFAULT_T2V_GEOMETRY.width, DEFAULT_T2V_GEOMETRY.height, DEFAULT_T2V_GEOMETRY.frames, DEFAULT_T2V_GEOMETRY.fps]);
    const v = await readFrameBytes(out);
    assert.deepEqual([v.width, v.height, v.frames], [128, 128, 16]);
    // the same run through --model gives the same video (only the folder's resolution differs)
    const out2 = join(root, 'explicit.y4m');
    const r2 = await generate([prompt, '--model', tiny, '-o', out2, '--size', '128x128', '--frames', '16', '--fps', '8', '--steps', '1', '--seed', '3', '--no-cache', '--json'], join(root, 'unused'));
    assert.equal(r2.code, 0);
    assert.ok(Buffer.from((await readFrameBytes(out2)).data).equals(Buffer.from(v.data)));
  });

  it('options still override the default geometry', async () => {
    const out = join(root, 'small.y4m');
    const r = await generate([prompt, '-o', out, '--size', '24x16', '--frames', '8', '--steps', '1', '--no-cache', '--json'], tiny);
    assert.equal(r.code, 0);
    const v = await readFrameBytes(out);
    assert.deepEqual([v.width, v.height, v.frames], [24, 16, 8]);
  });

  it('a missing default folder: one clear error, nothing written', async () => {
    const out = join(root, 'none.mp4');
    const missing = join(root, 'no-such-model');
    await assert.rejects(generate([prompt, '-o', out, '--steps', '1'], missing), (e: Error) => {
      assert.equal(e.message, `no default model in ${missing}; pass --model DIR (generate needs --model until a model is installed at ${missing})`);
      return true;
    });
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(root).filter((n) => n.startsWith('.')), []);
  });

  it('the dcvg binary names assets/shapes-t2v when it is missing', { skip: existsSync(defaultT2vModelDir()) ? 'assets/shapes-t2v is installed' : false }, () => {
    const out = join(root, 'cli.mp4');
    const r = spawnSync(process.execPath, [join(repoRoot, 'dist', 'src', 'cli', 'main.js'), 'generate', prompt, '-o', out], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `dcvg generate: no default model in assets/shapes-t2v; pass --model DIR (generate needs --model until a model is installed at ${defaultT2vModelDir()})\n`);
    assert.equal(existsSync(out), false);
  });
});
