/**
 * Video I/O on real clips (../shared/data/clips128 and ../shared/data/hd) through the system ffmpeg.
 * Measured bounds asserted here (ffmpeg 5.1, Debian 12):
 *   PNG sequence: bit-exact.  y4m yuv444p16 (default): bit-exact (also for all 2^24 colours, checked when developing).
 *   y4m yuv444p (8-bit): mean ~0.3, max 2 levels.  mp4 x264 CRF 18 yuv420p: mean ~1.9/255 on 01.mp4 (bound 3/255).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot, sharedDir } from './helpers.js';
import { Tensor } from '../src/tensor/tensor.js';
import { ShapeError, ValueError, VideoError } from '../src/errors.js';
import { framesToTensor, openVideoReader, openVideoWriter, probeVideo, readAllFrames, tensorToFrames, writeVideo } from '../src/io/video.js';

const clipsDir = join(sharedDir, 'data', 'clips128');
const hdDir = join(sharedDir, 'data', 'hd');
const clip01 = join(clipsDir, '01.mp4');
const hdClip = join(hdDir, 'dog_1280x720_80f.mp4');

const ffmpegOk = spawnSync('ffmpeg', ['-version']).status === 0 && spawnSync('ffprobe', ['-version']).status === 0;
/** In CI a missing ffmpeg is a failure (it is installed there), elsewhere a skip. */
const noFfmpeg = ffmpegOk || process.env.CI ? false : 'ffmpeg/ffprobe not installed (apt-get install ffmpeg)';
const skipFor = (p: string): string | false =>
  noFfmpeg || (existsSync(p) ? false : `missing ${p} (clone the shared folder beside the repository to run this test)`);
const skipClips = skipFor(join(clipsDir, 'index.tsv'));
const skipHd = skipFor(hdClip);

const work = mkdtempSync(join(tmpdir(), 'dcvg-video-'));
after(() => rmSync(work, { recursive: true, force: true }));
let seq = 0;
const fresh = (name: string): string => {
  const d = join(work, `case${seq++}`);
  mkdirSync(d);
  return join(d, name);
};

function indexTsv(): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of readFileSync(join(clipsDir, 'index.tsv'), 'utf8').split('\n').slice(1)) {
    const [file, frames] = line.split('\t');
    if (file && frames) m.set(file, Number(frames));
  }
  return m;
}

async function rejectsVideo(p: Promise<unknown>, pattern: RegExp): Promise<VideoError> {
  let err: unknown;
  await assert.rejects(p, (e: Error) => {
    err = e;
    assert.ok(e instanceof VideoError, `expected VideoError, got ${e.constructor.name}: ${e.message}`);
    assert.equal((e as VideoError).code, 'ERR_DCVG_VIDEO');
    assert.match(e.message, pattern);
    return true;
  });
  return err as VideoError;
}

/** uint8 frames of the first n frames of a clip. */
async function readU8(path: string, opts: Parameters<typeof openVideoReader>[1] = {}): Promise<{ data: Uint8Array; width: number; height: number; n: number }> {
  const r = await openVideoReader(path, opts);
  const parts: Uint8Array[] = [];
  let c: Uint8Array | null;
  while ((c = await r.readFrames(64))) parts.push(c);
  await r.close();
  const data = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    data.set(p, o);
    o += p.length;
  }
  return { data, width: r.width, height: r.height, n: data.length / r.frameBytes };
}

function absDiff(a: Uint8Array, b: Uint8Array): { mean: number; max: number } {
  assert.equal(a.length, b.length, 'sizes differ');
  let s = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    s += d;
    if (d > m) m = d;
  }
  return { mean: s / a.length, max: m };
}

/** A moving colour pattern: n frames of w x h (no fixtures needed). */
function synthetic(n: number, w: number, h: number): Uint8Array {
  const f = new Uint8Array(n * w * h * 3);
  for (let t = 0; t < n; t++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const o = ((t * h + y) * w + x) * 3;
        f[o] = (x * 4 + t * 8) & 255;
        f[o + 1] = (y * 5) & 255;
        f[o + 2] = ((x + y) * 2 + 64) & 255;
      }
  return f;
}

let synthMp4: string | null = null;
/** A small mp4 written by our own writer, for tests that need any real video without ../shared. */
async function syntheticClip(): Promise<string> {
  if (!synthMp4) {
    const p = join(work, 'synthetic.mp4');
    await writeVideo(p, synthetic(20, 64, 48), { width: 64, height: 48, fps: 10 });
    synthMp4 = p;
  }
  return synthMp4;
}

/** Files left in the folder of an output (temporary outputs are hidden names there). */
const leftovers = (dir: string): string[] => readdirSync(dir);

describe('frames <-> tensor', () => {
  it('maps every uint8 value to [-1, 1] and back exactly, NCTHW layout', () => {
    const n = 2;
    const h = 4;
    const w = 32;
    const u8 = new Uint8Array(n * h * w * 3);
    for (let i = 0; i < u8.length; i++) u8[i] = (i * 7) % 256;
    const t = framesToTensor(u8, h, w);
    assert.deepEqual(t.shape, [1, 3, n, h, w]);
    const d = t.readSync();
    // pixel (frame 1, y 2, x 5), channel 2
    assert.equal(d[2 * n * h * w + 1 * h * w + 2 * w + 5], Math.fround(u8[((1 * h + 2) * w + 5) * 3 + 2]! / 127.5 - 1));
    assert.deepEqual(tensorToFrames(t), u8);
    const all = new Uint8Array(256 * 3).map((_, i) => Math.floor(i / 3));
    assert.deepEqual(tensorToFrames(framesToTensor(all, 16, 16)), all);
  });
  it('clamps, rounds half up, rejects NaN and bad shapes', () => {
    // (x + 1) * 127.5 = 127.5 for x = 0 (half: rounds up), 63.75 for -0.5, 191.25 for 0.5.
    const x = new Float32Array([-2, -1, 1, 2, 0, -0.5, 0.5]);
    const v = new Tensor(new Float32Array(3 * 7).fill(0).map((_, i) => x[i % 7]!), [3, 1, 1, 7]);
    const f = tensorToFrames(v);
    assert.deepEqual([...f.subarray(0, 21).filter((_, i) => i % 3 === 0)], [0, 0, 255, 255, 128, 64, 191]);
    const nan = new Tensor(new Float32Array(12).fill(Number.NaN), [1, 3, 1, 2, 2]);
    assert.throws(() => tensorToFrames(nan), ValueError);
    assert.throws(() => tensorToFrames(new Tensor(new Float32Array(8), [1, 2, 1, 2, 2])), ShapeError);
    assert.throws(() => framesToTensor(new Uint8Array(13), 2, 2), ShapeError);
  });
});

describe('probe', { skip: skipClips }, () => {
  it('01.mp4 is 128x128 with the frame count of index.tsv; every clip matches index.tsv', async () => {
    const idx = indexTsv();
    const info = await probeVideo(clip01);
    assert.equal(info.width, 128);
    assert.equal(info.height, 128);
    assert.equal(info.frames, idx.get('01.mp4'));
    assert.equal(info.framesExact, true);
    assert.equal(info.codec, 'h264');
    assert.ok(info.fps > 0 && info.durationSec > 0);
    for (const [file, frames] of idx) {
      const i = await probeVideo(join(clipsDir, file));
      assert.equal(i.frames, frames, file);
    }
  });
  it('decoded frame counts equal index.tsv for the short clips', async () => {
    const idx = indexTsv();
    for (const file of ['06.mp4', '10.mp4', '29.mp4']) {
      const r = await readU8(join(clipsDir, file));
      assert.equal(r.n, idx.get(file), file);
    }
  });
});

describe('streaming read', { skip: skipClips }, () => {
  it('160-frame clip in chunks of 40 gives 160 frames, identical to a one-shot read', async () => {
    const r = await openVideoReader(clip01);
    const sizes: number[] = [];
    const parts: Uint8Array[] = [];
    let c: Uint8Array | null;
    while ((c = await r.readFrames(40))) {
      sizes.push(c.length / r.frameBytes);
      parts.push(c);
    }
    assert.equal(await r.readFrames(40), null, 'stays at the end');
    await r.close();
    assert.deepEqual(sizes, [40, 40, 40, 40]);
    const oneShot = await openVideoReader(clip01);
    const all = (await oneShot.readFrames(1000))!;
    await oneShot.close();
    assert.equal(all.length, 160 * 128 * 128 * 3);
    assert.ok(Buffer.from(all).equals(Buffer.concat(parts)), 'chunked read differs from one-shot read');
    const t = await readAllFrames(clip01);
    assert.deepEqual(t.shape, [1, 3, 160, 128, 128]);
    assert.deepEqual(tensorToFrames(t), all);
  });
  it('start / maxFrames select exactly those frames; fps resamples; iteration yields single frames', async () => {
    const full = await readU8(clip01);
    const fb = 128 * 128 * 3;
    const part = await readU8(clip01, { start: 50, maxFrames: 30 });
    assert.equal(part.n, 30);
    assert.ok(Buffer.from(part.data).equals(Buffer.from(full.data.subarray(50 * fb, 80 * fb))));
    assert.equal((await readU8(clip01, { start: 150 })).n, 10);
    assert.equal((await readU8(clip01, { start: 500 })).n, 0);
    assert.equal((await readU8(clip01, { maxFrames: 0 })).n, 0);
    assert.equal((await readU8(clip01, { fps: 10 })).n, 80); // 01.mp4 is 20 fps
    let n = 0;
    for await (const f of await openVideoReader(clip01, { maxFrames: 25 })) {
      assert.equal(f.length, fb);
      n++;
    }
    assert.equal(n, 25);
    const tensors = await openVideoReader(clip01, { maxFrames: 10 });
    const t = await tensors.readTensor(8);
    assert.deepEqual(t!.shape, [1, 3, 8, 128, 128]);
    assert.deepEqual(tensorToFrames(t!), full.data.subarray(0, 8 * fb));
    await tensors.close();
  });
  it('pauses ffmpeg when the consumer is slow (bounded buffering) and close() stops it early', async () => {
    const r = await openVideoReader(clip01, { readAheadBytes: 128 * 128 * 3 });
    const first = await r.readFrames(1);
    assert.ok(first);
    await new Promise((res) => setTimeout(res, 300));
    // read-ahead (1 frame) + one pipe read (<= 64 KiB); the rest waits in ffmpeg, blocked on the full pipe.
    assert.ok(r.bufferedBytes <= 128 * 128 * 3 + 65536, `buffered ${r.bufferedBytes} bytes while idle`);
    const more = await r.readFrames(100);
    assert.equal(more!.length / r.frameBytes, 100);
    await r.close();
    await assert.rejects(r.readFrames(1), VideoError);
    // Breaking out of for-await closes the reader (ffmpeg killed, no hang).
    const r2 = await openVideoReader(clip01);
    for await (const f of r2) {
      void f;
      break;
    }
    await assert.rejects(r2.readFrames(1), /closed/);
  });
  it('reads other containers ffmpeg knows (webm, avi, mov, mpeg, ogv, gif)', async () => {
    const src = fresh('src.mp4');
    copyFileSync(clip01, src);
    const cases: [string, string[]][] = [
      ['webm', ['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8']],
      ['avi', ['-c:v', 'mpeg4']],
      ['mov', ['-c:v', 'libx264']],
      ['mpeg', ['-c:v', 'mpeg2video']],
      ['ogv', ['-c:v', 'libtheora']],
      ['gif', []],
    ];
    for (const [ext, codec] of cases) {
      const out = src.replace(/mp4$/, ext);
      const res = spawnSync('ffmpeg', ['-v', 'error', '-y', '-i', src, '-frames:v', '12', ...codec, out]);
      assert.equal(res.status, 0, `could not make the ${ext} sample: ${res.stderr}`);
      const info = await probeVideo(out, { countFrames: true });
      assert.equal(info.width, 128, ext);
      assert.equal(info.frames, 12, `${ext}: ${JSON.stringify(info)}`);
      const r = await readU8(out);
      assert.equal(r.n, 12, ext);
    }
  });
});

describe('rotation', { skip: skipClips }, () => {
  it('a stream with a 90-degree display matrix is reported and decoded upright (ffmpeg autorotates)', async () => {
    const flat = fresh('flat.mp4');
    const rot = fresh('rot.mp4');
    assert.equal(spawnSync('ffmpeg', ['-v', 'error', '-i', clip01, '-frames:v', '5', '-vf', 'crop=128:64:0:0', '-c:v', 'libx264', flat]).status, 0);
    assert.equal(spawnSync('ffmpeg', ['-v', 'error', '-i', flat, '-c', 'copy', '-metadata:s:v:0', 'rotate=90', rot]).status, 0);
    const info = await probeVideo(rot);
    assert.equal(Math.abs(info.rotation), 90);
    assert.deepEqual([info.width, info.height], [64, 128]);
    const r = await readU8(rot);
    assert.deepEqual([r.width, r.height, r.n], [64, 128, 5]);
    const ref = spawnSync('ffmpeg', ['-v', 'error', '-i', rot, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 24 }).stdout;
    assert.ok(Buffer.from(r.data).equals(ref), 'not the frames ffmpeg itself decodes upright');
  });
});

describe('write and read back', { skip: skipClips }, () => {
  const N = 24;
  const fb = 128 * 128 * 3;
  it('PNG sequence (directory, and %05d pattern) is bit-exact', async (t) => {
    const src = await readU8(clip01, { maxFrames: N });
    const dir = fresh('frames');
    const w = await openVideoWriter(dir + '/', { width: 128, height: 128, fps: 20 });
    assert.equal(w.format, 'png');
    await w.write(src.data.subarray(0, 10 * fb));
    await w.write(src.data.subarray(10 * fb));
    await w.close();
    assert.equal(readdirSync(dir).length, N);
    assert.deepEqual(readdirSync(join(dir, '..')), ['frames'], 'temporary folder left behind');
    const back = await readU8(dir);
    assert.equal(back.n, N);
    assert.ok(Buffer.from(back.data).equals(Buffer.from(src.data)), 'directory round trip not exact');
    const pat = fresh('%05d.png');
    await writeVideo(pat, framesToTensor(src.data, 128, 128), { fps: 20, startNumber: 1 });
    assert.ok(existsSync(join(pat, '..', '00001.png')) && existsSync(join(pat, '..', `000${N}.png`)));
    const back2 = await readU8(pat, { start: 4 });
    assert.equal(back2.n, N - 4);
    assert.ok(Buffer.from(back2.data).equals(Buffer.from(src.data.subarray(4 * fb))), 'pattern round trip not exact');
    t.diagnostic(`PNG round trip: exact over ${N} frames`);
  });
  it('mp4 (x264 CRF 18, yuv420p): same count and size, mean abs error < 3/255', async (t) => {
    const src = await readU8(clip01);
    const out = fresh('clip.mp4');
    const w = await openVideoWriter(out, { width: 128, height: 128, fps: 20 });
    for (let i = 0; i < 160; i += 40) await w.write(src.data.subarray(i * fb, (i + 40) * fb));
    assert.ok(!existsSync(out), 'target must not exist before close');
    await w.close();
    assert.deepEqual(leftovers(join(out, '..')), ['clip.mp4']);
    const info = await probeVideo(out);
    assert.equal(info.frames, 160);
    assert.equal(info.width, 128);
    const back = await readU8(out);
    assert.equal(back.n, 160);
    const e = absDiff(src.data, back.data);
    const acc = absDiff(src.data, (await readU8(out, { chroma: 'accurate' })).data);
    t.diagnostic(
      `mp4 CRF 18 round trip on 01.mp4: mean abs ${e.mean.toFixed(3)} (${(e.mean / 255).toExponential(2)} of range), max ${e.max}; ` +
        `read with chroma 'accurate': mean ${acc.mean.toFixed(3)}, max ${acc.max}`,
    );
    assert.ok(e.mean < 3, `mean abs error ${e.mean}`);
    assert.ok(acc.mean < e.mean, 'interpolated chroma should reconstruct better');
  });
  it('y4m: yuv444p16 (default) round trip is exact; 8-bit yuv444p within 2 levels', async (t) => {
    const src = await readU8(clip01, { maxFrames: N });
    const out = fresh('clip.y4m');
    await writeVideo(out, src.data, { width: 128, height: 128, fps: 20 });
    assert.match(readFileSync(out).subarray(0, 64).toString('latin1'), /^YUV4MPEG2 W128 H128 F20:1 .*C444p16/);
    const back = await readU8(out);
    assert.equal(back.n, N);
    const e16 = absDiff(src.data, back.data);
    assert.equal(e16.max, 0, 'yuv444p16 round trip not exact');
    // Random colours are the hard case for 8-bit YUV (saturated chroma).
    const noise = new Uint8Array(4 * fb);
    let s = 12345;
    for (let i = 0; i < noise.length; i++) noise[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
    const out8 = fresh('noise8.y4m');
    await writeVideo(out8, noise, { width: 128, height: 128, fps: 20, pixFmt: 'yuv444p' });
    const e8 = absDiff(noise, (await readU8(out8)).data);
    const out16 = fresh('noise16.y4m');
    await writeVideo(out16, noise, { width: 128, height: 128, fps: 20 });
    const n16 = absDiff(noise, (await readU8(out16)).data);
    t.diagnostic(`y4m yuv444p16: clip max ${e16.max}, noise max ${n16.max}; yuv444p (8-bit) on noise: mean ${e8.mean.toFixed(3)}, max ${e8.max}`);
    assert.equal(n16.max, 0);
    assert.ok(e8.max <= 2 && e8.mean < 0.5, `8-bit y4m error mean ${e8.mean} max ${e8.max}`);
  });
  it('gif: frame count and size survive; colours are palette-quantised', async (t) => {
    const src = await readU8(clip01, { maxFrames: N });
    const out = fresh('clip.gif');
    await writeVideo(out, src.data, { width: 128, height: 128, fps: 20 });
    const back = await readU8(out);
    assert.equal(back.n, N);
    assert.equal(back.width, 128);
    const e = absDiff(src.data, back.data);
    t.diagnostic(`gif round trip: mean abs ${e.mean.toFixed(2)}, max ${e.max}`);
    assert.ok(e.mean < 8, `gif mean abs error ${e.mean}`);
  });
  it('tensor input, odd sizes: error by default, pad on request, yuv444p and y4m take them as they are', async () => {
    const src = await readU8(clip01, { maxFrames: 4, resize: { width: 127, height: 129, mode: 'stretch' } });
    assert.equal(src.width, 127);
    const t = framesToTensor(src.data, 129, 127);
    const out = fresh('odd.mp4');
    await rejectsVideo(openVideoWriter(out, { width: 127, height: 129, fps: 8 }), /even width and height.*127x129.*oddSize/);
    assert.deepEqual(leftovers(join(out, '..')), []);
    const w = await openVideoWriter(out, { width: 127, height: 129, fps: 8, oddSize: 'pad' });
    assert.deepEqual([w.outputWidth, w.outputHeight], [128, 130]);
    await w.write(t);
    await w.close();
    const i = await probeVideo(out);
    assert.deepEqual([i.width, i.height, i.frames], [128, 130, 4]);
    const y = fresh('odd.y4m');
    await writeVideo(y, t, { fps: 8 });
    const back = await readU8(y);
    assert.deepEqual([back.width, back.height, back.n], [127, 129, 4]);
    assert.ok(Buffer.from(back.data).equals(Buffer.from(src.data)));
    const m444 = fresh('odd444.mp4');
    await writeVideo(m444, t, { fps: 8, pixFmt: 'yuv444p' });
    assert.deepEqual([(await probeVideo(m444)).width, (await probeVideo(m444)).height], [127, 129]);
    const w2 = await openVideoWriter(fresh('bad.mp4'), { width: 128, height: 128, fps: 8 });
    await assert.rejects(w2.write(t), ShapeError);
    await assert.rejects(w2.write(new Uint8Array(100)), ShapeError);
    await w2.abort();
  });
});

describe('resize', { skip: skipHd }, () => {
  it('cover + center crop of the 1280x720 clip to 256x256; stretch keeps the whole frame', async () => {
    const info = await probeVideo(hdClip);
    assert.deepEqual([info.width, info.height, info.frames], [1280, 720, 80]);
    const t = await readAllFrames(hdClip, { resize: { width: 256, height: 256, mode: 'cover' }, maxFrames: 8 });
    assert.deepEqual(t.shape, [1, 3, 8, 256, 256]);
    // DMCrop geometry: scaled to round(1280 * 256 / 720) = 455 x 256, crop offset floor((455 - 256) / 2) = 99.
    const ref = (vf: string) =>
      new Uint8Array(
        spawnSync('ffmpeg', ['-v', 'error', '-i', hdClip, '-frames:v', '8', '-vf', vf, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 1 << 28 }).stdout,
      );
    const got = tensorToFrames(t);
    assert.equal(absDiff(got, ref('format=rgb24,scale=455:256:flags=bicubic,crop=256:256:99:0')).max, 0, 'not the DMCrop geometry');
    // and that is the centre: closer to the centre square than to the left one.
    const centre = absDiff(got, ref('format=rgb24,crop=720:720,scale=256:256:flags=bicubic')).mean;
    const left = absDiff(got, ref('format=rgb24,crop=720:720:0:0,scale=256:256:flags=bicubic')).mean;
    assert.ok(centre < 6 && centre * 3 < left, `centre ${centre}, left ${left}`);
    const s = await openVideoReader(hdClip, { resize: { width: 320, height: 100, mode: 'stretch' }, maxFrames: 2 });
    const f = await s.readFrames(2);
    assert.equal(f!.length, 2 * 320 * 100 * 3);
    await s.close();
    const tall = await readU8(hdClip, { resize: { width: 90, height: 160 }, maxFrames: 1 });
    assert.deepEqual([tall.width, tall.height, tall.n], [90, 160, 1]);
  });
});

describe('synthetic round trips (no fixtures)', { skip: noFfmpeg }, () => {
  it('PNG and y4m are exact, mp4 and gif keep count and size', async (t) => {
    const src = synthetic(10, 64, 48);
    const fmt: [string, boolean][] = [['frames/', true], ['a.y4m', true], ['a.mp4', false], ['a.gif', false]];
    for (const [name, exact] of fmt) {
      const out = fresh(name);
      await writeVideo(out, src, { width: 64, height: 48, fps: 10 });
      const back = await readU8(out);
      assert.deepEqual([back.width, back.height, back.n], [64, 48, 10], name);
      const e = absDiff(src, back.data);
      if (exact) assert.equal(e.max, 0, `${name} not exact`);
      else assert.ok(e.mean < 6, `${name}: mean abs ${e.mean}`);
      t.diagnostic(`${name}: mean abs ${e.mean.toFixed(3)}, max ${e.max}`);
    }
  });
});

describe('errors', { skip: noFfmpeg }, () => {
  it('missing file names the path', async () => {
    const p = join(work, 'no-such-clip.mp4');
    await rejectsVideo(probeVideo(p), /no such file.*no-such-clip\.mp4/);
    await rejectsVideo(openVideoReader(p), /no such file.*no-such-clip\.mp4/);
    await rejectsVideo(readAllFrames(p), /no-such-clip\.mp4/);
    await rejectsVideo(probeVideo(join(work, 'nothing', '%05d.png')), /no file matches image pattern/);
  });
  it('a non-video file and an audio-only file carry ffmpeg/ffprobe text', async () => {
    const txt = fresh('notes.mp4');
    writeFileSync(txt, 'this is not a video\n'.repeat(100));
    const e = await rejectsVideo(probeVideo(txt), /cannot read .*notes\.mp4: .*Invalid data found when processing input/);
    assert.ok(e.ffmpegMessage);
    await rejectsVideo(openVideoReader(txt), /Invalid data/);
    const wav = fresh('tone.wav');
    assert.equal(spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=duration=0.2', wav]).status, 0);
    await rejectsVideo(probeVideo(wav), /no video stream/);
    const dir = fresh('empty-dir');
    mkdirSync(dir);
    await rejectsVideo(openVideoReader(dir), /holds no PNG files/);
  });
  it('truncated mp4: index at the end -> clear error; index at the start -> the decodable frames plus a warning (strict: error)', { skip: skipClips }, async (t) => {
    const whole = readFileSync(join(clipsDir, '02.mp4'));
    const cut = fresh('cut.mp4');
    writeFileSync(cut, whole.subarray(0, Math.floor(whole.length * 0.3)));
    await rejectsVideo(probeVideo(cut), /moov atom not found/);
    await rejectsVideo(readAllFrames(cut), /moov atom not found/);
    // Our writer puts the index first (+faststart): cutting such a file leaves a playable prefix.
    const src = await readU8(join(clipsDir, '02.mp4'));
    const fs = fresh('faststart.mp4');
    await writeVideo(fs, src.data, { width: 128, height: 128, fps: 20 });
    const bytes = readFileSync(fs);
    const cut2 = fresh('cut-faststart.mp4');
    writeFileSync(cut2, bytes.subarray(0, Math.floor(bytes.length * 0.3)));
    assert.equal((await probeVideo(cut2)).frames, 160, 'the index still claims every frame');
    const warnings: string[] = [];
    const r = await openVideoReader(cut2, { onWarning: (m) => warnings.push(m) });
    let n = 0;
    let c: Uint8Array | null;
    while ((c = await r.readFrames(40))) n += c.length / r.frameBytes;
    await r.close();
    t.diagnostic(`truncated (faststart) 02.mp4 at 30%: ${n} of 160 frames decoded; warning: ${warnings[0]?.slice(0, 160)}`);
    assert.ok(n > 0 && n < 160, `decoded ${n} frames`);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /decode errors in .*cut-faststart\.mp4; returned the \d+ frames/);
    assert.ok(r.warnings.length > 0);
    await rejectsVideo(readAllFrames(cut2, { strict: true }), /decode errors .*strict/);
  });
  it('unwritable outputs: VideoError before encoding, nothing left behind', async () => {
    const f = fresh('plain-file');
    writeFileSync(f, 'x');
    const opts = { width: 128, height: 128, fps: 20 };
    await rejectsVideo(openVideoWriter(join(f, 'out.mp4'), opts), /not a directory/);
    await rejectsVideo(openVideoWriter(join(work, 'missing-dir', 'out.mp4'), opts), /does not exist/);
    await assert.rejects(openVideoWriter(fresh('out.avi'), opts), (e: Error) => e instanceof ValueError && /cannot infer the video format/.test(e.message));
    const full = fresh('full');
    mkdirSync(full);
    writeFileSync(join(full, 'keep.txt'), 'x');
    await rejectsVideo(openVideoWriter(full, opts), /not empty/);
    if (process.getuid?.() !== 0) {
      const ro = fresh('ro');
      mkdirSync(ro);
      chmodSync(ro, 0o555);
      await rejectsVideo(openVideoWriter(join(ro, 'out.mp4'), opts), /not writable/);
      chmodSync(ro, 0o755);
    }
  });
  it('ffmpeg failures carry its own text and leave no file; abort() and empty writers leave nothing', async () => {
    const frames = synthetic(4, 128, 128);
    const out = fresh('bad-preset.mp4');
    const w = await openVideoWriter(out, { width: 128, height: 128, fps: 20, preset: 'no-such-preset' });
    const err = await rejectsVideo(
      (async () => {
        await w.write(frames);
        await w.close();
      })(),
      /ffmpeg .*bad-preset\.mp4.*(preset|Error)/,
    );
    assert.match(err.ffmpegMessage ?? '', /no-such-preset/);
    await w.abort();
    assert.deepEqual(leftovers(join(out, '..')), []);

    const out2 = fresh('aborted.mp4');
    const w2 = await openVideoWriter(out2, { width: 128, height: 128, fps: 20 });
    await w2.write(frames);
    // ffmpeg opens its output once the encoder has started, a moment after it has our bytes.
    for (let i = 0; i < 100 && !leftovers(join(out2, '..')).length; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(leftovers(join(out2, '..')).length, 1, 'temporary file while writing');
    assert.match(leftovers(join(out2, '..'))[0]!, /^\.aborted\.mp4\.dcvg-tmp-/);
    assert.ok(!existsSync(out2));
    await w2.abort();
    await w2.abort();
    assert.deepEqual(leftovers(join(out2, '..')), []);
    await rejectsVideo(w2.write(frames), /aborted/);

    const out3 = fresh('empty.gif');
    const w3 = await openVideoWriter(out3, { width: 128, height: 128, fps: 20 });
    await rejectsVideo(w3.close(), /no frames were written/);
    assert.deepEqual(leftovers(join(out3, '..')), []);

    const dir = fresh('pngs');
    const w4 = await openVideoWriter(dir, { width: 128, height: 128, fps: 20, format: 'png' });
    await w4.write(frames);
    await w4.abort();
    assert.deepEqual(leftovers(join(dir, '..')), []);

    // An existing output is replaced only by a complete new file.
    const keep = fresh('keep.mp4');
    copyFileSync(await syntheticClip(), keep);
    const before = statSync(keep).size;
    const w5 = await openVideoWriter(keep, { width: 128, height: 128, fps: 20 });
    await w5.write(frames);
    await w5.abort();
    assert.equal(statSync(keep).size, before);
  });
  it('a reader and a writer abandoned without close() do not keep the process alive, and leave no temporary file', async () => {
    const clip = await syntheticClip();
    const out = fresh('abandoned.mp4');
    const mod = pathToFileURL(join(repoRoot, 'dist', 'src', 'io', 'video.js')).href;
    const script = `
      import { openVideoWriter, openVideoReader } from ${JSON.stringify(mod)};
      const w = await openVideoWriter(${JSON.stringify(out)}, { width: 64, height: 64, fps: 10 });
      await w.write(new Uint8Array(64 * 64 * 3 * 5));
      const r = await openVideoReader(${JSON.stringify(clip)});
      await r.readFrames(2);
      console.log('left');`;
    const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 30000, encoding: 'utf8' });
    assert.equal(res.signal, null, 'the process hung');
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /left/);
    assert.deepEqual(leftovers(join(out, '..')), []);
  });
  it('a missing ffmpeg binary is reported as such', async () => {
    const clip = await syntheticClip();
    const saved = process.env.DCVG_FFPROBE;
    process.env.DCVG_FFPROBE = '/nonexistent/ffprobe';
    try {
      await rejectsVideo(probeVideo(clip), /not found on PATH/);
    } finally {
      if (saved === undefined) delete process.env.DCVG_FFPROBE;
      else process.env.DCVG_FFPROBE = saved;
    }
    const saved2 = process.env.DCVG_FFMPEG;
    process.env.DCVG_FFMPEG = '/nonexistent/ffmpeg';
    try {
      const out = fresh('x.mp4');
      const w = await openVideoWriter(out, { width: 16, height: 16, fps: 1 });
      await rejectsVideo(w.write(new Uint8Array(16 * 16 * 3)), /not found on PATH/);
      assert.deepEqual(leftovers(join(out, '..')), []);
      const r = await openVideoReader(clip);
      await rejectsVideo(r.readFrames(1), /not found on PATH/);
      await r.close();
    } finally {
      if (saved2 === undefined) delete process.env.DCVG_FFMPEG;
      else process.env.DCVG_FFMPEG = saved2;
    }
  });
  it('bad options are ValueErrors', async () => {
    const clip = await syntheticClip();
    await assert.rejects(openVideoReader(clip, { start: -1 }), ValueError);
    await assert.rejects(openVideoReader(clip, { resize: { width: 0, height: 10 } }), ValueError);
    await assert.rejects(openVideoReader(clip, { fps: 0 }), ValueError);
    await assert.rejects(openVideoReader(clip, { chroma: 'best' as 'fast' }), ValueError);
    await assert.rejects(openVideoWriter(fresh('a.mp4'), { width: 16, height: 16, fps: 0 }), ValueError);
    await assert.rejects(openVideoWriter(fresh('a.mp4'), { width: 16, height: 16, fps: 5, crf: 60 }), ValueError);
    await assert.rejects(openVideoWriter(fresh('a.y4m'), { width: 16, height: 16, fps: 5, pixFmt: 'rgb24' }), ValueError);
    const r = await openVideoReader(clip);
    await assert.rejects(r.readFrames(0), ValueError);
    await r.close();
  });
});

describe('read throughput', { skip: skipHd || skipClips }, () => {
  it('frames/s for a 128x128 clip and the 1280x720 clip (uint8 frames, and as tensors)', async (t) => {
    const measure = async (path: string, tensors: boolean) => {
      const t0 = performance.now();
      const r = await openVideoReader(path);
      let n = 0;
      let c: Uint8Array | null;
      while ((c = await r.readFrames(40))) {
        if (tensors) r.toTensor(c);
        n += c.length / r.frameBytes;
      }
      await r.close();
      return { n, fps: n / ((performance.now() - t0) / 1000) };
    };
    await measure(clip01, false); // warm the page cache and ffmpeg's shared libraries
    const a = await measure(clip01, false);
    const b = await measure(hdClip, false);
    const bt = await measure(hdClip, true);
    t.diagnostic(`read 128x128 (01.mp4, ${a.n} frames): ${a.fps.toFixed(0)} frames/s`);
    t.diagnostic(`read 1280x720 (${b.n} frames): ${b.fps.toFixed(1)} frames/s uint8, ${bt.fps.toFixed(1)} frames/s with tensor conversion`);
    assert.equal(a.n, 160);
    assert.equal(b.n, 80);
  });
});
