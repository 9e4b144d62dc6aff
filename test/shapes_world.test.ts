/** The shapes world: the renderer reproduces the shared renders exactly, and the scorer reads every attribute back. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFrameBytes } from '../src/io/video.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import {
  isHeldOut,
  randomShapesVideo,
  renderShapes,
  scoreShapes,
  shapesAccuracy,
  shapesCaption,
  shapesFromIndices,
  startRange,
  SHAPES_COLORS,
  SHAPES_DIRECTIONS,
  SHAPES_SHAPES,
  type ShapesVideo,
} from '../src/metrics/shapes_world.js';
import { Rng } from '../src/tensor/random.js';
import { fixturePath, repoRoot, skipUnlessFixture } from './helpers.js';

interface FixtureVideo {
  name: string;
  caption: string;
  indices: { color: number; shape: number; size: number; direction: number; background: number };
  start: [number, number];
  held_out: boolean;
  score: { background: string; color: string; shape: string; size: string; direction: string; frames_with_object: number };
}

const skip = skipUnlessFixture('shapes/shapes.json');

describe('shapes world', { skip }, () => {
  const fx = () => JSON.parse(readFileSync(fixturePath('shapes/shapes.json'), 'utf8')) as { videos: FixtureVideo[]; held_out_patterns: string[] };

  it('renders every fixture video pixel for pixel, with its caption and held-out flag', () => {
    const f = SafetensorsFile.open(fixturePath('shapes/shapes.safetensors'));
    try {
      for (const v of fx().videos) {
        const spec: ShapesVideo = { ...shapesFromIndices(v.indices), start: v.start };
        assert.equal(shapesCaption(spec), v.caption, v.name);
        assert.equal(isHeldOut(spec), v.held_out, `${v.name} held out`);
        const want = f.tensor(v.name);
        assert.deepEqual(want.shape, [16, 128, 128, 3]);
        const got = renderShapes(spec);
        const ref = want.readSync();
        let diff = 0;
        for (let i = 0; i < got.length; i++) if (got[i] !== ref[i]) diff++;
        assert.equal(diff, 0, `${v.name}: ${diff} of ${got.length} bytes differ`);
      }
    } finally {
      f.close();
    }
  });

  it('the scorer reads the fixture videos as the reference scorer did', () => {
    const f = SafetensorsFile.open(fixturePath('shapes/shapes.safetensors'));
    try {
      for (const v of fx().videos) {
        const frames = Uint8Array.from(f.tensor(v.name).readSync());
        const r = scoreShapes(frames, 16);
        assert.deepEqual(
          { background: r.background, color: r.color, shape: r.shape, size: r.size, direction: r.direction, frames_with_object: r.framesWithObject },
          v.score,
          v.name,
        );
        assert.equal(shapesAccuracy(r, shapesFromIndices(v.indices)).allCorrect, true);
      }
    } finally {
      f.close();
    }
  });

  it('the 12 held-out triples are the fixture list', () => {
    const held: string[] = [];
    for (const color of Object.keys(SHAPES_COLORS) as (keyof typeof SHAPES_COLORS)[])
      for (const shape of SHAPES_SHAPES)
        for (const direction of Object.keys(SHAPES_DIRECTIONS) as (keyof typeof SHAPES_DIRECTIONS)[])
          if (isHeldOut({ color, shape, direction })) held.push(`a {size} ${color} ${shape} moving ${direction} on a {background} background`);
    assert.equal(held.length, 12);
    assert.deepEqual(held.sort(), [...fx().held_out_patterns].sort());
  });
});

describe('shapes world: random videos', () => {
  it('stay inside the frame, score 100% on their own renders, and skip held-out triples when asked', () => {
    const rng = new Rng(7);
    for (let n = 0; n < 24; n++) {
      const v = randomShapesVideo(rng, { trainOnly: true });
      assert.equal(isHeldOut(v), false);
      const r = startRange(v.size, v.direction);
      assert.ok(v.start[0] >= r.x[0] && v.start[0] <= r.x[1] && v.start[1] >= r.y[0] && v.start[1] <= r.y[1]);
      const s = scoreShapes(renderShapes(v), 16);
      assert.deepEqual(shapesAccuracy(s, v), { accuracy: 1, allCorrect: true }, `${shapesCaption(v)} read as ${JSON.stringify(s)}`);
    }
  });

  it('a video with no object scores only its background', () => {
    const blank = new Uint8Array(16 * 128 * 128 * 3).fill(128);
    const r = scoreShapes(blank, 16);
    assert.equal(r.background, 'gray');
    assert.equal(r.framesWithObject, 0);
    assert.deepEqual(shapesAccuracy(r, { color: 'red', shape: 'circle', size: 'small', direction: 'left', background: 'gray' }), { accuracy: 0.2, allCorrect: false });
  });
});

describe('dcvg shapes, and the shipped sample clip', { skip: spawnSync('ffmpeg', ['-version']).status === 0 ? false : 'ffmpeg not installed' }, () => {
  const bin = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  const dcvg = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

  it('render writes the video and captions; score reads each back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvg-shapes-'));
    const r = dcvg('shapes', 'render', '--output', join(dir, 'v.y4m'), '--seed', '5', '--held-out', 'only', '--captions', join(dir, 'c.json'), '--json');
    assert.equal(r.status, 0, r.stderr);
    const caption = (JSON.parse(readFileSync(join(dir, 'c.json'), 'utf8')) as { videos: { caption: string; held_out: boolean }[] }).videos[0]!;
    assert.equal(caption.held_out, true);
    const s = dcvg('shapes', 'score', join(dir, 'v.y4m'), '--caption', caption.caption, '--json');
    assert.equal(s.status, 0, s.stderr);
    assert.equal((JSON.parse(s.stdout) as { allCorrect: boolean }).allCorrect, true);
    const bad = dcvg('shapes', 'score', join(dir, 'v.y4m'), '--caption', 'a purple blob');
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--caption must read "a \{size\} \{color\}/);
  });

  it('assets/sample/shapes.mp4 holds the 8 captioned videos of its shapes.json, each read right', async () => {
    const meta = JSON.parse(readFileSync(join(repoRoot, 'assets', 'sample', 'shapes.json'), 'utf8')) as { videos: { caption: string; frames: [number, number] }[] };
    const clip = await readFrameBytes(join(repoRoot, 'assets', 'sample', 'shapes.mp4'));
    assert.equal(clip.frames, meta.videos.length * 16);
    const per = 128 * 128 * 3;
    for (const v of meta.videos) {
      const r = scoreShapes(clip.data.subarray(v.frames[0] * per, v.frames[1] * per), 16);
      const said = `a ${r.size} ${r.color} ${r.shape} moving ${r.direction} on a ${r.background} background`;
      assert.equal(said, v.caption);
    }
  });
});
