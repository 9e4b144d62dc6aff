/**
 * dcvg encode / decode / reconstruct / compare-ae with the Wan-2.1 VAE (the tiny fixture weights): the CLI gives the
 * API's numbers and the fixture's, writes the files it should, and refuses bad frame counts, mismatched latent files
 * and wrong weights in one line without leaving output behind.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../src/index.js';
import { SafetensorsFile, saveSafetensors } from '../src/io/safetensors.js';
import { createWanVae, wanVaeStateDict } from '../src/models/wan_vae/run.js';
import { assertClose, fixturePath, repoRoot, sharedDir, skipUnlessFixture } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, DCVG_NO_PROGRESS: '1' } });
const F = (n: string) => fixturePath(`wan_vae/${n}`);
const skip = skipUnlessFixture('wan_vae/wan_vae_tiny.weights.safetensors');
const tiny = () => ['--model', `${F('wan_vae.json')}#wan_vae_tiny`, '--weights', F('wan_vae_tiny.weights.safetensors')];
const clip = join(sharedDir, 'data', 'clips128', '03.mp4');
const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;
const skipVideo = skip || (!existsSync(clip) && `clip missing: ${clip}`) || (!hasFfmpeg && 'ffmpeg not installed');
/** 5 frames of 64x64 from the shared clip: small and fast (one latent of frame 0 plus one of 4 frames). */
const small = ['--resize', '64x64', '--frames', '5'];

/** A command that must fail: exit 1, one line on stderr matching `msg`, and none of `outputs` left behind. */
function fails(args: string[], msg: RegExp, outputs: string[]): void {
  const r = dcvg(...args);
  assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
  assert.match(r.stderr, msg);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  for (const o of outputs) assert.equal(existsSync(o), false, `${o} left behind`);
}

describe('dcvg with the Wan-2.1 VAE (tiny fixture weights)', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dcvg-wan-'));

  it('encode -> decode of the fixture input reproduces the reference latent and reconstruction, and equals the API', () => {
    const lat = join(dir, 'fx.lat.safetensors');
    const e = dcvg('encode', F('wan_vae_tiny.io.safetensors'), '-o', lat, ...tiny(), '--json');
    assert.equal(e.status, 0, e.stderr);
    assert.deepEqual(JSON.parse(e.stdout).latent_shape, [1, 16, 3, 6, 5]);
    const io = SafetensorsFile.open(F('wan_vae_tiny.io.safetensors'));
    const got = SafetensorsFile.open(lat);
    // the fixture's tolerance (issue #18: every tensor within 1e-4 of the reference, relative to its largest value)
    assertClose(got.tensor('latent'), io.tensor('latent'), 1e-4, 'latent vs fixture');
    assert.equal(got.metadata.family, 'wan-vae');
    assert.equal(got.metadata.model, 'wan_vae_tiny');
    assert.equal(got.metadata.num_frames, '9');
    const rec = join(dir, 'fx.rec.safetensors');
    const d = dcvg('decode', lat, '-o', rec, ...tiny());
    assert.equal(d.status, 0, d.stderr);
    const y = SafetensorsFile.open(rec).tensor('reconstruction');
    assertClose(y, io.tensor('reconstruction'), 1e-4, 'reconstruction vs fixture');
    // The CLI runs the API's own code (encode: one push of the whole clip; decode: one push of all latents), so the
    // only difference allowed is none beyond float32 rounding of identical operations: 1e-6 relative.
    const vae = createWanVae(`${F('wan_vae.json')}#wan_vae_tiny`, F('wan_vae_tiny.weights.safetensors'));
    const x = io.tensor('input');
    const z = vae.encode(x);
    assertClose(got.tensor('latent'), z, 1e-6, 'CLI latent vs API encode');
    assertClose(y, vae.decode(z), 1e-6, 'CLI reconstruction vs API decode');
  });

  it('a diffusers vae/ folder as --model (its own weights, diffusers names) gives the fixture latent', () => {
    const fx = JSON.parse(readFileSync(F('wan_vae.json'), 'utf8')) as { wan_vae_tiny: { config: Record<string, unknown>; mean: number[]; std: number[] } };
    const c = fx.wan_vae_tiny.config;
    const folder = join(dir, 'pipe', 'vae');
    mkdirSync(folder, { recursive: true });
    const diffusersConfig = {
      _class_name: 'AutoencoderKLWan',
      base_dim: c.dim,
      z_dim: c.z_dim,
      dim_mult: c.dim_mult,
      num_res_blocks: c.num_res_blocks,
      attn_scales: c.attn_scales,
      temperal_downsample: c.temperal_downsample,
      dropout: c.dropout,
      latents_mean: fx.wan_vae_tiny.mean,
      latents_std: fx.wan_vae_tiny.std,
    };
    writeFileSync(join(folder, 'config.json'), JSON.stringify(diffusersConfig));
    const vae = createWanVae(`${F('wan_vae.json')}#wan_vae_tiny`, F('wan_vae_tiny.weights.safetensors'));
    saveSafetensors(join(folder, 'diffusion_pytorch_model.safetensors'), wanVaeStateDict(vae, 'diffusers'));
    const lat = join(dir, 'folder.lat.safetensors');
    const e = dcvg('encode', F('wan_vae_tiny.io.safetensors'), '-o', lat, '--model', folder);
    assert.equal(e.status, 0, e.stderr);
    assertClose(SafetensorsFile.open(lat).tensor('latent'), SafetensorsFile.open(F('wan_vae_tiny.io.safetensors')).tensor('latent'), 1e-4, 'latent via folder');
    // the pipeline folder above it works too, and info describes it
    const i = dcvg('info', '--model', join(dir, 'pipe'), '--json');
    assert.equal(i.status, 0, i.stderr);
    assert.equal(JSON.parse(i.stdout).family, 'wan-vae');
  });

  it('a video: encode 5 frames of 64x64, decode to PNGs; reconstruct writes the video and the metrics', { skip: skipVideo }, () => {
    const lat = join(dir, 'v.lat.safetensors');
    const e = dcvg('encode', clip, '-o', lat, ...tiny(), ...small, '--json');
    assert.equal(e.status, 0, e.stderr);
    assert.deepEqual(JSON.parse(e.stdout).latent_shape, [1, 16, 2, 8, 8]);
    const pngs = join(dir, 'frames') + '/';
    const d = dcvg('decode', lat, '-o', pngs, ...tiny());
    assert.equal(d.status, 0, d.stderr);
    assert.equal(readdirSync(pngs).filter((f) => f.endsWith('.png')).length, 5);

    const out = join(dir, 'rec.mp4');
    const m = join(dir, 'm.json');
    const r = dcvg('reconstruct', clip, '-o', out, ...tiny(), ...small, '--metrics', m, '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(j.family, 'wan-vae');
    assert.equal(j.frames, 5);
    assert.deepEqual(j.latent_shape, [1, 16, 2, 8, 8]);
    assert.equal(j.latent_values_per_frame, (16 * 2 * 8 * 8) / 5);
    assert.ok((j.peak_rss_mb as number) > 0);
    assert.ok(existsSync(out));
    const mj = JSON.parse(readFileSync(m, 'utf8')) as { per_frame: { psnr: number[] } };
    assert.equal(mj.per_frame.psnr.length, 5);

    // --pad-frames: 7 frames are encoded as 9 (the last repeated) and cropped back to 7
    const r7 = dcvg('reconstruct', clip, '-o', join(dir, 'rec7.y4m'), ...tiny(), '--resize', '64x64', '--frames', '7', '--pad-frames', '--json');
    assert.equal(r7.status, 0, r7.stderr);
    const j7 = JSON.parse(r7.stdout) as Record<string, unknown>;
    assert.equal(j7.frames, 7);
    assert.deepEqual(j7.latent_shape, [1, 16, 3, 8, 8]);
  });

  it('bad frame count, mismatched latent file, wrong weights: one line, exit 1, no output', () => {
    // a 6-frame tensor (not 1 + 4k)
    const x6 = join(dir, 'x6.safetensors');
    saveSafetensors(x6, { input: T.zeros([1, 3, 6, 16, 16]) });
    const o1 = join(dir, 'bad1.safetensors');
    fails(['encode', x6, '-o', o1, ...tiny()], /1 \+ 4k frames.*got 6: crop to 5 or pad to 9.*--pad-frames/, [o1]);
    // the same tensor with --pad-frames is fine, and decodes back to 6 frames
    const ok = join(dir, 'pad6.safetensors');
    assert.equal(dcvg('encode', x6, '-o', ok, ...tiny(), '--pad-frames').status, 0);
    const ok2 = join(dir, 'pad6.rec.safetensors');
    assert.equal(dcvg('decode', ok, '-o', ok2, ...tiny()).status, 0);
    assert.deepEqual(SafetensorsFile.open(ok2).tensor('reconstruction').shape, [1, 3, 6, 16, 16]);

    // a Wan latent file decoded with a DC-AE-V model, and a DC-AE-V latent file decoded with the Wan VAE
    const x = join(dir, 'x5.safetensors');
    saveSafetensors(x, { input: T.zeros([1, 3, 5, 32, 32]) });
    const wanLat = join(dir, 'wan.lat.safetensors');
    assert.equal(dcvg('encode', x, '-o', wanLat, ...tiny()).status, 0);
    const dcae = ['--model', fixturePath('dc-ae-v/chunk_causal_small.json'), '--weights', fixturePath('dc-ae-v/chunk_causal_small.weights.safetensors')];
    const o2 = join(dir, 'bad2.safetensors');
    fails(['decode', wanLat, '-o', o2, ...dcae], /holds latents of wan_vae_tiny \(wan-vae\).*cannot be decoded with .*\(dc-ae-v\)/, [o2]);
    if (existsSync(dcae[1]!)) {
      const dcLat = join(dir, 'dc.lat.safetensors');
      assert.equal(dcvg('encode', x, '-o', dcLat, ...dcae).status, 0);
      const o3 = join(dir, 'bad3.safetensors');
      fails(['decode', dcLat, '-o', o3, ...tiny()], /holds latents of .*\(dc-ae-v\).*cannot be decoded with wan_vae_tiny \(wan-vae\)/, [o3]);
    }
    // a Wan latent file whose recorded architecture differs from the model's (dim 16 recorded, the tiny model has 8)
    const f = SafetensorsFile.open(wanLat);
    const cfg = JSON.parse(f.metadata.config!) as Record<string, unknown>;
    assert.equal(cfg.dim, 8);
    const other = join(dir, 'other.lat.safetensors');
    saveSafetensors(other, { latent: f.tensor('latent') }, { metadata: { ...f.metadata, model: 'other', config: JSON.stringify({ ...cfg, dim: 16 }) } });
    const o4 = join(dir, 'bad4.safetensors');
    fails(['decode', other, '-o', o4, ...tiny()], /holds latents of other \(wan-vae\), whose architecture differs from wan_vae_tiny's/, [o4]);

    // DC-AE-V weights for the Wan VAE
    const o5 = join(dir, 'bad5.safetensors');
    fails(['encode', x, '-o', o5, '--model', `${F('wan_vae.json')}#wan_vae_tiny`, '--weights', fixturePath('dc-ae-v/chunk_causal_small.weights.safetensors')], /does not match the model/, [o5]);
    // the Wan VAE without weights
    fails(['encode', x, '-o', o5, '--model', 'wan2.1-vae'], /needs --weights/, [o5]);
    assert.ok(!readdirSync(dir).some((f) => /\.tmp-|dcvg-tmp-|\.partial-/.test(f)), 'temporary files left behind');
  });

  it('reconstruct with a bad frame count writes nothing', { skip: skipVideo }, () => {
    const out = join(dir, 'bad6.mp4');
    fails(['reconstruct', clip, '-o', out, ...tiny(), '--resize', '64x64', '--frames', '6'], /1 \+ 4k frames.*got 6/, [out]);
  });

  it('eval-ae: the Wan VAE on the held-out clips, 6 frames padded to 9 (the padded latent is the budget)', { skip: skipVideo }, () => {
    const clips = join(sharedDir, 'data', 'clips128');
    const r = dcvg('eval-ae', '--data', clips, ...tiny(), '--frames', '6', '--baseline-tf', '1,2', '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { modelName: string; family: string; frames: number; clips: { frames: number; budget: number; model: { psnr: number } }[] };
    assert.equal(j.modelName, 'wan_vae_tiny');
    assert.equal(j.family, 'wan-vae');
    assert.ok(j.clips.length > 0);
    for (const c of j.clips) {
      assert.equal(c.frames, 6, 'scored on the 6 original frames (the padding cropped back)');
      // 6 frames -> 1 + 4k = 9 encoded -> 3 latents of 16 channels at 128/8 x 128/8
      assert.equal(c.budget, 16 * 3 * 16 * 16);
      assert.ok(Number.isFinite(c.model.psnr));
    }
    assert.equal(j.frames, 6 * j.clips.length);
  });

  it('compare-ae: the default DC-AE-V and the tiny Wan VAE on the same frames, text and JSON', { skip: skipVideo }, () => {
    const cmp = ['compare-ae', clip, ...small, '--compare-model', `${F('wan_vae.json')}#wan_vae_tiny`, '--compare-weights', F('wan_vae_tiny.weights.safetensors')];
    const r = dcvg(...cmp, '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { frames: number; rows: { family: string; frames: number; psnr: number; ssim: number; latent_shape: number[]; latent_values_per_frame: number; frames_per_second: number; peak_rss_mb: number }[] };
    assert.equal(j.frames, 5);
    assert.deepEqual(j.rows.map((x) => x.family), ['dc-ae-v', 'wan-vae']);
    for (const row of j.rows) {
      assert.equal(row.frames, 5);
      assert.ok(Number.isFinite(row.psnr) && row.ssim <= 1 && row.frames_per_second > 0 && row.peak_rss_mb > 0, JSON.stringify(row));
      const values = row.latent_shape.reduce((a, b) => a * b, 1);
      assert.ok(Math.abs(row.latent_values_per_frame - values / 5) < 0.01, JSON.stringify(row));
    }
    const t = dcvg(...cmp);
    assert.equal(t.status, 0, t.stderr);
    const rows = t.stdout.split('\n').filter((l) => /^\| (?!model|---)/.test(l));
    assert.equal(rows.length, 2, t.stdout);
    assert.match(rows[1]!, /wan_vae_tiny \| wan-vae/);
  });
});
