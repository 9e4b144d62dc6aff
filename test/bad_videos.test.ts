/**
 * The video reader / probe on bad inputs: every one ends in a VideoError that names the file, quickly, never a hang,
 * a raw Node error or an endless stream of empty reads.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from '../src/io/files.js';
import { openVideoReader, probeVideo, readFrameBytes } from '../src/io/video.js';
import { VideoError } from '../src/errors.js';
import { RAW_ERROR_RE } from './fuzz/harness.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dcvg-bad-videos-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function ffmpeg(...args: string[]): void {
  const r = spawnSync('ffmpeg', ['-v', 'error', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  assert.equal(r.status, 0, r.stderr?.toString());
}

/** A PNG with the given IHDR size (and a token IDAT): enough for the reader's header check. */
function pngWithSize(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.alloc(0)), chunk('IEND', Buffer.alloc(0))]);
}

/** Probes then reads `p` to the end, within `ms`; returns the error (or null on success). */
async function readAll(p: string, ms = 15_000): Promise<Error | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`hang: ${p} still reading after ${ms} ms`)), ms)));
  const work = (async () => {
    await probeVideo(p);
    await readFrameBytes(p, { onWarning: () => {} });
  })();
  try {
    await Promise.race([work, timeout]);
    return null;
  } catch (e) {
    if ((e as Error).message.startsWith('hang:')) throw e;
    return e as Error;
  } finally {
    clearTimeout(timer);
  }
}

async function assertVideoError(p: string, pattern: RegExp, named = p): Promise<void> {
  const e = await readAll(p);
  assert.ok(e, `${p}: expected an error, got success`);
  assert.ok(e instanceof VideoError, `expected VideoError, got ${e.constructor.name}: ${e.message}`);
  assert.ok(e.message.includes(named), `message does not name ${named}: ${e.message}`);
  assert.doesNotMatch(e.message, RAW_ERROR_RE);
  assert.match(e.message, pattern);
}

describe('video reader: bad inputs give a VideoError naming the file', () => {
  it('a FIFO is refused at once (ffprobe would block forever on it)', async () => {
    const p = join(dir, 'pipe.mp4');
    assert.equal(spawnSync('mkfifo', [p]).status, 0);
    await assertVideoError(p, /named pipe \(FIFO\)/);
  });

  it('a character device is refused (it would be read without end)', async () => {
    await assertVideoError('/dev/zero', /character device/);
  });

  it('a symlink loop says so in words, not ELOOP', async () => {
    const p = join(dir, 'loop.mp4');
    symlinkSync('loop.mp4', p);
    await assertVideoError(p, /symbolic links/);
  });

  it('a PNG sequence declaring 0x0 frames fails instead of returning empty frames forever', async () => {
    const d = join(dir, 'zero-png');
    mkdirSync(d);
    writeFileSync(join(d, '0001.png'), pngWithSize(0, 0));
    writeFileSync(join(d, '0002.png'), pngWithSize(0, 0));
    await assertVideoError(d, /invalid size 0x0/, join(d, '0001.png'));
  });

  it('a PNG sequence declaring 100000x100000 frames is refused before buffering', async () => {
    const d = join(dir, 'huge-png');
    mkdirSync(d);
    writeFileSync(join(d, '0001.png'), pngWithSize(100000, 100000));
    const r = openVideoReader(d);
    await assert.rejects(r, (e: Error) => e instanceof VideoError && e.message.includes(d) && /too large/.test(e.message));
  });

  it('an existing file whose name contains %d is read as that file, not as an image pattern', async () => {
    const src = join(dir, 'src.mp4');
    ffmpeg('-f', 'lavfi', '-i', 'testsrc2=s=32x32:r=10:d=0.3', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-preset', 'ultrafast', '-y', src);
    const p = join(dir, '100%done.mp4');
    copyFileSync(src, p);
    const info = await probeVideo(p);
    assert.equal(info.width, 32);
    const r = await readFrameBytes(p);
    assert.equal(r.frames, 3);
  });

  it('0-byte, random, truncated, audio-only inputs; 1-frame and odd-size videos read', async () => {
    const empty = join(dir, 'empty file.mp4');
    writeFileSync(empty, '');
    await assertVideoError(empty, /cannot read/);
    const junk = join(dir, 'junk.mp4');
    writeFileSync(junk, Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) & 0xff)));
    await assertVideoError(junk, /cannot read/);
    const audio = join(dir, 'tone.m4a');
    ffmpeg('-f', 'lavfi', '-i', 'sine=d=0.2', '-c:a', 'aac', '-y', audio);
    await assertVideoError(audio, /no video stream/);
    const one = join(dir, 'one.mp4');
    ffmpeg('-f', 'lavfi', '-i', 'testsrc2=s=32x32:r=10', '-frames:v', '1', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-y', one);
    assert.equal((await readFrameBytes(one)).frames, 1);
    const odd = join(dir, 'odd 33x17.mkv');
    ffmpeg('-f', 'lavfi', '-i', 'testsrc2=s=64x64:r=10:d=0.2', '-vf', 'scale=33:17', '-pix_fmt', 'yuv444p', '-c:v', 'libx264', '-preset', 'ultrafast', '-y', odd);
    const r = await readFrameBytes(odd);
    assert.deepEqual([r.frames, r.width, r.height], [2, 33, 17]);
  });
});
