/** Spatial tiling (spec §2.5): equivalence on local ops, hand-computed blends, a NumPy port of the reference, errors. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/index.js';
import { chooseTile, tileGeometry, tiledDecode, tiledEncode } from '../src/models/dcaev/tiling.js';

function maxAbsDiff(a: T.Tensor, b: T.Tensor): number {
  assert.deepEqual(a.shape, b.shape, `shapes ${a.shape} vs ${b.shape}`);
  const x = a.readSync(),
    y = b.readSync();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

/** Rows of the (single) H x W plane of an N=C=T=1 tensor. */
function plane(t: T.Tensor): number[][] {
  const [, , , H, W] = t.shape as [number, number, number, number, number];
  const d = t.readSync();
  return Array.from({ length: H }, (_, y) => Array.from(d.subarray(y * W, (y + 1) * W)));
}

function throwsTyped(fn: () => unknown, type: new (...a: never[]) => Error, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof type, `expected ${type.name}, got ${e.constructor.name}: ${e.message}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

const pool = (f: number) => (t: T.Tensor) => T.avgPool3d(t, [1, f, f]);
const upsample = (f: number) => (t: T.Tensor) => T.upsampleNearest3d(t, [1, f, f]);

/** An encoder/decoder that ignores its input and returns the call count as a constant tile of the right size. */
function constantTiles(f: number, down: boolean): { fn: (t: T.Tensor) => T.Tensor; calls: number[][] } {
  const calls: number[][] = [];
  const fn = (t: T.Tensor) => {
    calls.push([...t.shape]);
    const [n, c, tt, h, w] = t.shape as [number, number, number, number, number];
    const s = down ? [n, c, tt, h / f, w / f] : [n, c, tt, h * f, w * f];
    return T.full(s, calls.length);
  };
  return { fn, calls };
}

describe('tiledEncode', () => {
  it('equals the untiled result for a block-local encoder (avg pool by factor 32 and 64)', () => {
    const x = T.randn([1, 3, 2, 224, 160], 1);
    const tiled = tiledEncode(pool(32), x, { tile: 128, factor: 32 });
    assert.deepEqual(tiled.shape, [1, 3, 2, 7, 5]);
    assert.ok(maxAbsDiff(tiled, pool(32)(x)) < 1e-6);

    const x64 = T.randn([1, 2, 1, 320, 448], 2);
    const t64 = tiledEncode(pool(64), x64, { tile: 256, overlap: 0.25, factor: 64 });
    assert.deepEqual(t64.shape, [1, 2, 1, 5, 7]);
    assert.ok(maxAbsDiff(t64, pool(64)(x64)) < 1e-6);
  });

  it('matches the untiled result away from seams when the encoder is not local (latent 3x3 blur)', () => {
    // avg pool then a zero-padded 3x3 box blur: tile edges see zeros where the full frame has neighbours.
    const k = T.full([1, 1, 1, 3, 3], 1 / 9);
    const enc = (t: T.Tensor) => T.conv3d(T.avgPool3d(t, [1, 32, 32]), k, null, { padding: [0, 0, 1, 1, 1, 1] });
    const x = T.randn([1, 1, 1, 512, 384], 3);
    // tile 256, overlap 0.5: stride 128 px, latent tile 8, latent stride 4, blend 4. In every kept 4x4 block only
    // row/column 3 gets weight from a neighbour's edge latent (ramp weight 1/4); everything else is interior.
    const tiled = tiledEncode(enc, x, { tile: 256, overlap: 0.5, factor: 32 });
    const full = enc(x);
    assert.deepEqual(tiled.shape, [1, 1, 1, 16, 12]);
    const a = plane(tiled),
      b = plane(full);
    let interior = 0,
      seam = 0;
    for (let r = 0; r < 16; r++)
      for (let c = 0; c < 12; c++) {
        const d = Math.abs(a[r]![c]! - b[r]![c]!);
        if (r % 4 !== 3 && c % 4 !== 3) interior = Math.max(interior, d);
        else seam = Math.max(seam, d);
      }
    assert.ok(interior < 1e-6, `interior differs by ${interior}`);
    assert.ok(seam > 1e-3, `seams should show the edge effect, max diff ${seam}`);
  });

  it('blends along H with the ramp b[y] = a[-e+y](1-y/e) + b[y](y/e), e clamped to the tile sizes (hand-computed)', () => {
    // factor 1, tile 4, overlap 0.5: stride 2, blend 2. H 6, W 2: tiles at rows 0, 2, 4 (heights 4, 4, 2) = 1, 2, 3.
    // tile 2 := [1, 1*.5 + 2*.5, 2, 2] = [1, 1.5, 2, 2]; tile 3 (e = min(4, 2, 2) = 2) := [2, 2*.5 + 3*.5].
    const { fn, calls } = constantTiles(1, true);
    const y = tiledEncode(fn, T.zeros([1, 1, 1, 6, 2]), { tile: 4, overlap: 0.5, factor: 1 });
    assert.deepEqual(calls, [
      [1, 1, 1, 4, 2],
      [1, 1, 1, 4, 2],
      [1, 1, 1, 2, 2],
    ]);
    assert.deepEqual(plane(y), [
      [1, 1],
      [1, 1],
      [1, 1],
      [1.5, 1.5],
      [2, 2],
      [2.5, 2.5],
    ]);
  });

  it('blends in the reference order, against already blended neighbours (hand-computed 2 x 2 tiles)', () => {
    // Tiles A(0,0)=1 4x4, B(0,2)=2 4x2, C(2,0)=3 2x4, D(2,2)=4 2x2; blend 2, keep 2.
    // B after left blend: columns [1, 1.5]. C after top blend: rows [1, 2].
    // D: top from blended B -> rows [1, 1.5], [2.5, 2.75]; then left from blended C -> [1, 1.25], [2, 2.375].
    // (Raw neighbours would give [1, 1.5], [2, 2.5] for D.)
    const { fn, calls } = constantTiles(1, true);
    const y = tiledEncode(fn, T.zeros([1, 1, 1, 4, 4]), { tile: 4, overlap: 0.5, factor: 1 });
    assert.equal(calls.length, 4);
    assert.deepEqual(plane(y), [
      [1, 1, 1, 1.5],
      [1, 1, 1, 1.5],
      [1, 1, 1, 1.25],
      [2, 2, 2, 2.375],
    ]);
  });

  it('matches a NumPy port of the reference (dc_ae_v.py spatial_tiled_encode) on a tile-dependent encoder', () => {
    // enc(t) = avgpool_2(t) + 0.01 * (row + 2 * col within the tile) + mean(t); x = sin(1.3h + 0.7w + 0.5c + 0.3t).
    const x = sinInput([1, 2, 1, 14, 10]);
    const y = tiledEncode((t) => positionalTile(T.avgPool3d(t, [1, 2, 2]), t), x, { tile: 8, overlap: 0.5, factor: 2 });
    assert.deepEqual(y.shape, [1, 2, 1, 7, 5]);
    assertNear(y, REF_ENC, 2e-5);
  });

  it('zero-pads partial edge tiles to a multiple of factor and crops to floor(H/f) x floor(W/f)', () => {
    const seen: { shape: number[]; sum: number }[] = [];
    const enc = (t: T.Tensor) => {
      seen.push({ shape: [...t.shape], sum: T.sum(t).item() });
      return pool(32)(t);
    };
    // tile 64, overlap 0.5: stride 32. Rows start 0, 32, 64, 96 (real heights 64, 64, 36, 4), columns 0, 32, 64
    // (real widths 64, 38, 6); padded to 64, 64, 64, 32 and 64, 64, 32.
    const y = tiledEncode(enc, T.ones([1, 2, 1, 100, 70]), { tile: 64, overlap: 0.5, factor: 32 });
    assert.deepEqual(y.shape, [1, 2, 1, 3, 2]);
    const hs = [64, 64, 64, 32],
      ws = [64, 64, 32];
    const realH = [64, 64, 36, 4],
      realW = [64, 38, 6];
    assert.equal(seen.length, 12);
    seen.forEach((s, k) => {
      const r = Math.floor(k / 3),
        c = k % 3;
      assert.deepEqual(s.shape, [1, 2, 1, hs[r], ws[c]], `tile ${k}`);
      assert.equal(s.sum, 2 * realH[r]! * realW[c]!, `tile ${k}: padding must be zeros`);
    });
    // Every kept latent lies inside the frame, so the result is all ones.
    assert.deepEqual(Array.from(y.readSync()), new Array(12).fill(1));
    const x = T.randn([1, 2, 1, 100, 70], 4);
    assert.ok(maxAbsDiff(tiledEncode(pool(32), x, { tile: 64, overlap: 0.5, factor: 32 }), pool(32)(x)) < 1e-6);
  });

  it('runs tiles without autograd and returns a result with no history', () => {
    const x = T.parameter(T.randn([1, 1, 1, 64, 64], 5));
    const enabled: boolean[] = [];
    const y = tiledEncode(
      (t) => {
        enabled.push(T.isGradEnabled());
        return pool(32)(t);
      },
      x,
      { tile: 32, overlap: 0, factor: 32 },
    );
    assert.deepEqual(enabled, [false, false, false, false]);
    assert.equal(y.requiresGrad, false);
  });
});

describe('tiledDecode', () => {
  it('equals the untiled result for a nearest-upsample decoder', () => {
    const z = T.randn([1, 2, 2, 7, 9], 6);
    const y = tiledDecode(upsample(4), z, { tile: 16, factor: 4 });
    assert.deepEqual(y.shape, [1, 2, 2, 28, 36]);
    assert.ok(maxAbsDiff(y, upsample(4)(z)) < 1e-6);

    const z32 = T.randn([1, 1, 1, 22, 40], 7);
    const y32 = tiledDecode(upsample(32), z32, { tile: 512, overlap: 0.25, factor: 32 });
    assert.deepEqual(y32.shape, [1, 1, 1, 704, 1280]);
    assert.ok(maxAbsDiff(y32, upsample(32)(z32)) < 1e-6);
  });

  it('handles latent sizes that are not multiples of the latent tile (shape h*f x w*f)', () => {
    const z = T.randn([1, 1, 1, 3, 5], 8);
    const y = tiledDecode(upsample(4), z, { tile: 8, overlap: 0.5, factor: 4 });
    assert.deepEqual(y.shape, [1, 1, 1, 12, 20]);
    assert.ok(maxAbsDiff(y, upsample(4)(z)) < 1e-6);
  });

  it('blends over tile - stride pixels (hand-computed)', () => {
    // factor 2, tile 4, overlap 0.5: stride 2 px, latent tile 2, latent stride 1, blend 2 px. z is 2 x 1 latents:
    // tile 1 = z[0:2] -> 4 x 2 px of 1, tile 2 = z[1:2] -> 2 x 2 px of 2; rows 2-3 := [1, 1*.5 + 2*.5].
    const { fn, calls } = constantTiles(2, false);
    const y = tiledDecode(fn, T.zeros([1, 1, 1, 2, 1]), { tile: 4, overlap: 0.5, factor: 2 });
    assert.deepEqual(calls, [
      [1, 1, 1, 2, 1],
      [1, 1, 1, 1, 1],
    ]);
    assert.deepEqual(plane(y), [
      [1, 1],
      [1, 1],
      [1, 1],
      [1.5, 1.5],
    ]);
  });

  it('matches a NumPy port of the reference (dc_ae_v.py tiled_decode) on a tile-dependent decoder', () => {
    const z = sinInput([1, 1, 1, 5, 4]);
    const y = tiledDecode((t) => positionalTile(T.upsampleNearest3d(t, [1, 2, 2]), t), z, { tile: 8, overlap: 0.5, factor: 2 });
    assert.deepEqual(y.shape, [1, 1, 1, 10, 8]);
    assertNear(y, REF_DEC, 2e-5);
  });
});

describe('chooseTile', () => {
  // 704 x 1280, 40 frames, 128 B per pixel-frame: the whole frame needs 704*1280*40*128 = 4,613,734,400 bytes;
  // a tile S costs S*S*5120 bytes (896: 4,110,417,920; 768: 3,019,898,880; 384: 754,974,720; 128: 83,886,080).
  const base = { height: 704, width: 1280, frames: 40, factor: 32, peakBytesPerPixelFrame: 128 };
  it('returns null when the whole frame fits', () => {
    assert.equal(chooseTile({ ...base, budgetBytes: 5e9 }), null);
    assert.equal(chooseTile({ ...base, budgetBytes: 4_613_734_400 }), null);
    // H, W are rounded up to the factor: 700 x 1270 costs the same as 704 x 1280.
    assert.equal(chooseTile({ ...base, height: 700, width: 1270, budgetBytes: 4_613_734_400 }), null);
  });
  it('returns smaller tiles as the budget shrinks, only tiles whose stride is valid', () => {
    // overlap 0.25 with factor 32 needs tiles that are multiples of 128 (stride 0.75 * S a multiple of 32).
    assert.equal(chooseTile({ ...base, budgetBytes: 4_613_734_399 }), 896);
    assert.equal(chooseTile({ ...base, budgetBytes: 4e9 }), 768);
    assert.equal(chooseTile({ ...base, budgetBytes: 1e9 }), 384);
    assert.equal(chooseTile({ ...base, budgetBytes: 1e8 }), 128);
    assert.equal(chooseTile({ ...base, budgetBytes: 5e7, overlap: 0 }), 96);
    assert.equal(chooseTile({ ...base, budgetBytes: 5e7, overlap: 0.5 }), 64);
    for (const s of [896, 768, 384, 128]) assert.doesNotThrow(() => tileGeometry('t', { tile: s, factor: 32 }));
  });
  it('raises when not even the smallest tile fits, and on bad options', () => {
    throwsTyped(() => chooseTile({ ...base, budgetBytes: 5e7 }), T.ValueError, /budget 50000000/, /smallest tile .* is 128/);
    throwsTyped(() => chooseTile({ ...base, frames: 0, budgetBytes: 1e9 }), T.ValueError, /frames must be a positive integer, got 0/);
    throwsTyped(() => chooseTile({ ...base, budgetBytes: -1 }), T.ValueError, /budgetBytes .* got -1/);
    throwsTyped(() => chooseTile({ ...base, budgetBytes: 1e9, overlap: 1 }), T.ValueError, /overlap .* \[0, 1\), got 1/);
  });
});

describe('tiling options and errors', () => {
  it('uses Python round (half to even) for the stride', () => {
    // (1 - 0.24609375) * 128 = 96.5 exactly: Python rounds to 96 (valid), Math.round would give 97.
    const g = tileGeometry('t', { tile: 128, overlap: 0.24609375, factor: 32 });
    assert.deepEqual([g.stride, g.latentTile, g.latentStride], [96, 4, 3]);
    assert.deepEqual(
      (({ stride, latentTile, latentStride }) => [stride, latentTile, latentStride])(tileGeometry('t', { tile: 512, factor: 32 })),
      [384, 16, 12],
    );
  });
  it('rejects bad tiles, overlaps, strides and ranks with typed errors naming the values', () => {
    const x = T.zeros([1, 1, 1, 64, 64]);
    throwsTyped(() => tiledEncode(pool(32), x, { tile: 100, factor: 32 }), T.ValueError, /tile 100 is not a positive multiple of factor 32/, /32, 64, 96/);
    throwsTyped(() => tiledEncode(pool(32), x, { tile: 128, overlap: 1, factor: 32 }), T.ValueError, /overlap must be a number in \[0, 1\), got 1/);
    throwsTyped(() => tiledDecode(upsample(32), x, { tile: 128, overlap: -0.1, factor: 32 }), T.ValueError, /got -0\.1/);
    throwsTyped(() => tiledEncode(pool(32), x, { tile: 128, overlap: NaN, factor: 32 }), T.ValueError, /got NaN/);
    throwsTyped(
      () => tiledEncode(pool(32), x, { tile: 96, factor: 32 }),
      T.ValueError,
      /stride round\(\(1 - 0\.25\) \* 96\) = 72/,
      /valid overlaps for tile 96: 0, 0\.333333, 0\.666667/,
      /tiles that work with overlap 0\.25: 128, 256, 384, 512/,
    );
    throwsTyped(() => tiledEncode(pool(32), x, { tile: 64, factor: 0 }), T.ValueError, /factor must be a positive integer .* got 0/);
    throwsTyped(() => tiledEncode(pool(32), T.zeros([1, 3, 64, 64]), { tile: 64, overlap: 0.5, factor: 32 }), T.ShapeError, /5-D .* \[1, 3, 64, 64\]/);
    throwsTyped(() => tiledDecode(upsample(32), T.zeros([3, 4, 4]), { tile: 64, overlap: 0.5, factor: 32 }), T.ShapeError, /5-D .* \[3, 4, 4\]/);
    throwsTyped(() => tiledEncode(pool(32), T.zeros([1, 1, 1, 16, 64]), { tile: 64, overlap: 0.5, factor: 32 }), T.ShapeError, /smaller than one latent pixel/);
  });
  it('rejects tile functions that return the wrong shape', () => {
    const x = T.zeros([1, 1, 1, 128, 128]);
    throwsTyped(() => tiledEncode(pool(16), x, { tile: 64, overlap: 0.5, factor: 32 }), T.ShapeError, /returned \[1, 1, 1, 4, 4\], expected spatial size 2 x 2/);
    let k = 0;
    const grow = (t: T.Tensor) => T.zeros([1, ++k, 1, t.shape[3]! / 32, t.shape[4]! / 32]);
    throwsTyped(() => tiledEncode(grow, x, { tile: 64, overlap: 0.5, factor: 32 }), T.ShapeError, /first tile gave N, C, T = 1, 1, 1/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// fixtures for the NumPy cross-check

/** sin(1.3h + 0.7w + 0.5c + 0.3t + 0.9n), float32. */
function sinInput(shape: [number, number, number, number, number]): T.Tensor {
  const [N, C, Tt, H, W] = shape;
  const d = new Float32Array(N * C * Tt * H * W);
  let i = 0;
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let t = 0; t < Tt; t++)
        for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) d[i++] = Math.sin(1.3 * h + 0.7 * w + 0.5 * c + 0.3 * t + 0.9 * n);
  return T.tensor(d, shape);
}

/** y + 0.01 * (row + 2 * col) + mean(input): depends on where a position sits in its tile, so tiles disagree. */
function positionalTile(y: T.Tensor, input: T.Tensor): T.Tensor {
  const [, , , H, W] = y.shape as [number, number, number, number, number];
  const ramp = new Float32Array(H * W);
  for (let r = 0; r < H; r++) for (let c = 0; c < W; c++) ramp[r * W + c] = 0.01 * (r + 2 * c);
  return T.add(T.add(y, T.tensor(ramp, [H, W])), T.mean(input).item());
}

function assertNear(t: T.Tensor, ref: readonly number[], tol: number): void {
  const d = t.readSync();
  assert.equal(d.length, ref.length);
  for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(d[i]! - ref[i]!) <= tol, `element ${i}: ${d[i]} vs reference ${ref[i]}`);
}

// Produced by a NumPy transcription of DC-Gen [HEAD] dc_ae_v.py (in-place blend_w / blend_h), rounded to 6 places:
// encode x [1, 2, 1, 14, 10], tile 8, overlap 0.5, factor 2; decode z [1, 1, 1, 5, 4], same options.
const REF_ENC = [
  0.611498, 0.507354, -0.43533, -0.632321, 0.267435, -0.338696, -0.704873, 0.119387, 0.785074, 0.21114, -0.059907, 0.746058, 0.350419,
  -0.563778, -0.464173, 0.44978, -0.491012, -0.562959, 0.355492, 0.745392, -0.664985, 0.215634, 0.808851, 0.135473, -0.7269, 0.768759,
  0.274641, -0.595776, -0.384016, 0.550988, -0.548647, -0.508183, 0.464579, 0.782125, -0.065097, 0.728175, 0.181145, -0.662897, -0.38347,
  0.579595, -0.619694, -0.515388, 0.464798, 0.713005, -0.15877, 0.304984, 0.747532, -0.01397, -0.68912, -0.142392, 0.105437, -0.683022,
  -0.283887, 0.642368, 0.563839, -0.439748, 0.543224, 0.694973, -0.230827, -0.737541, 0.727096, -0.094764, -0.679687, -0.043134, 0.750776,
  -0.702483, -0.202693, 0.722261, 0.564231, -0.396849,
];
const REF_DEC = [
  0.021591, 0.041591, 0.705809, 0.725809, 1.087041, 1.055146, 0.901011, 0.869116, 0.031591, 0.051591, 0.715809, 0.735809, 1.097041,
  1.065146, 0.911011, 0.879116, 1.005149, 1.025149, 0.990889, 1.010889, 0.548971, 0.517076, -0.19774, -0.229635, 1.015149, 1.035149,
  1.000889, 1.020889, 0.558971, 0.527076, -0.18774, -0.219635, 0.577093, 0.597093, -0.056154, -0.036154, -0.615211, -0.608185, -0.870227,
  -0.915096, 0.482373, 0.502373, -0.150874, -0.130874, -0.709931, -0.700106, -0.952863, -0.981959, -0.815615, -0.795615, -1.08154,
  -1.06154, -0.880116, -0.867493, -0.314991, -0.328315, -0.910335, -0.890335, -1.17626, -1.15626, -0.974836, -0.959414, -0.397627,
  -0.395178, -1.200743, -1.180743, -0.651165, -0.631165, 0.074253, 0.093808, 0.651369, 0.669145, -1.044018, -1.024018, -0.49444, -0.47444,
  0.230978, 0.316359, 0.94019, 1.024682,
];
