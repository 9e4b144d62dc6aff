/** dcvg with real video files: reconstruct end to end, encode/decode through video, and clean failures. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturePath, repoRoot, sharedDir, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, DCVG_NO_PROGRESS: '1' } });
const clip = join(sharedDir, 'data', 'clips128', '03.mp4');
const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;
const skip = skipUnlessFixture('dc-ae-v/chunk_causal_small.json') || (!existsSync(clip) && `clip missing: ${clip}`) || (!hasFfmpeg && 'ffmpeg not installed');
const model = () => ['--model', fixturePath('dc-ae-v/chunk_causal_small.json'), '--weights', fixturePath('dc-ae-v/chunk_causal_small.weights.safetensors')];

describe('dcvg on real clips (fixture model, random weights: plumbing, not quality)', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-vid-'));

  it('reconstruct writes the video, metrics JSON and PSNR plot', () => {
    const out = join(dir, 'rec.mp4');
    const r = dcvg('reconstruct', clip, '-o', out, ...model(), '--frames', '44', '--metrics', join(dir, 'm.json'), '--plot', join(dir, 'p.png'), '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'a successful run prints nothing on stderr (no warnings)');
    const brief = JSON.parse(r.stdout) as { frames: number; psnr: number; ssim: number };
    assert.equal(brief.frames, 44);
    const m = JSON.parse(readFileSync(join(dir, 'm.json'), 'utf8')) as { per_frame: { psnr: number[]; ssim: number[]; temporal_error: number[] }; psnr: number };
    assert.equal(m.per_frame.psnr.length, 44);
    assert.equal(m.per_frame.temporal_error.length, 43);
    assert.ok(Math.abs(m.per_frame.psnr.reduce((a, b) => a + b, 0) / 44 - m.psnr) < 1e-9);
    assert.ok(m.psnr > 0 && m.psnr < 60 && brief.ssim > -1 && brief.ssim <= 1);
    assert.deepEqual([...readFileSync(join(dir, 'p.png')).subarray(1, 4)].map((c) => String.fromCharCode(c)).join(''), 'PNG');
    const probe = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-show_entries', 'stream=nb_read_frames,width,height,pix_fmt,codec_name', '-of', 'json', out], { encoding: 'utf8' });
    const s = (JSON.parse(probe.stdout) as { streams: Record<string, unknown>[] }).streams[0]!;
    assert.deepEqual([s.codec_name, s.width, s.height, s.pix_fmt, s.nb_read_frames], ['h264', 128, 128, 'yuv420p', '44']);
  });

  it('encode a video then decode to PNGs: frame count and size survive, tail crop included', () => {
    const lat = join(dir, 'v.safetensors');
    const e = dcvg('encode', clip, '-o', lat, ...model(), '--frames', '21', '--json');
    assert.equal(e.status, 0, e.stderr);
    assert.deepEqual(JSON.parse(e.stdout).latent_shape, [1, 8, 6, 4, 4]);
    const pngs = join(dir, 'frames') + '/';
    const d = dcvg('decode', lat, '-o', pngs, ...model());
    assert.equal(d.status, 0, d.stderr);
    assert.equal(readdirSync(pngs).filter((f) => f.endsWith('.png')).length, 21);
  });

  it('bad input: missing file, truncated mp4, non-video, size not divisible — one clear line, no output', () => {
    const trunc = join(dir, 'trunc.mp4');
    const bytes = readFileSync(clip);
    writeFileSync(trunc, bytes.subarray(0, Math.floor(bytes.length * 0.1)));
    const text = join(dir, 'notes.mp4');
    copyFileSync(fixturePath('dc-ae-v/chunk_causal_small.json'), text);
    const cases: [string, string[], RegExp][] = [
      ['missing', [join(dir, 'absent.mp4')], /input not found/],
      ['truncated', [trunc], /trunc\.mp4/],
      ['not a video', [text], /notes\.mp4/],
      ['size', [clip, '--resize', '100x100'], /100x100 \(width x height\) is not a multiple of 32.*--pad/],
    ];
    for (const [name, args, msg] of cases) {
      const out = join(dir, `bad-${name.replace(/ /g, '_')}.mp4`);
      const r = dcvg('reconstruct', ...args, '-o', out, ...model());
      assert.notEqual(r.status, 0, `${name} succeeded`);
      assert.match(r.stderr, msg, name);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${name}: ${r.stderr}`);
      assert.equal(existsSync(out), false, `${name}: output left behind`);
    }
    assert.ok(!readdirSync(dir).some((f) => f.startsWith('.') || f.includes('.tmp')), `temporary files left: ${readdirSync(dir).join(', ')}`);
  });
});
