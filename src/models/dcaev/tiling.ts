/**
 * Spatial tiling for the DC-AE-V encoder and decoder (spec §2.5, [HEAD] `spatial_tiled_encode` / `tiled_decode`).
 *
 * Model-independent: the caller passes the per-tile function (typically the temporally tiled encoder or decoder),
 * and this module cuts the frame into overlapping square tiles, blends neighbouring results with linear ramps and
 * stitches the top-left blocks.
 *
 * Reference semantics reproduced here, including the less obvious parts:
 * - stride = Python round((1 - overlap) * tile), i.e. round-half-to-even.
 * - Tiles start at 0, stride, 2*stride, ... < size (Python `range`), so the last tiles along an axis may be partial.
 * - Encode zero-pads a partial tile at its bottom/right up to a multiple of `factor`; decode never pads.
 * - The blend extent is clamped to min(size of the neighbour, size of this tile, blend) on that axis.
 * - The reference blends in place: tile (i, j) is first blended with tile (i-1, j) along H, then with tile (i, j-1)
 *   along W, and both neighbours are the *already blended* tiles (the Python code indexes `rows[i-1][j]` and
 *   `row[j-1]`, which the in-place `blend_*` calls have mutated). Raw neighbours would give different numbers at
 *   every corner where four tiles meet.
 * - Each tile keeps its top-left stride x stride block (partial tiles keep what they have); the stitched result is
 *   cropped to floor(H / factor) x floor(W / factor) for encode (the reference's `//`), h*factor x w*factor for decode.
 *
 * Memory: blending needs only the last `blend` rows of the tile above and the last `blend` columns of the tile to
 * the left, so after a tile is blended and its kept block written out, only those strips are retained. At any time
 * this holds one pixel tile (encode) or one decoded tile (decode), one row of bottom strips and one right strip,
 * besides the output itself.
 *
 * The tiled path is inference-only, as in the reference: tile functions run under noGrad and the result has no
 * autograd history.
 */
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import { pad, slice } from '../../tensor/ops.js';
import { Tensor, noGrad, tensor } from '../../tensor/tensor.js';
import { allocFloat32 } from '../../tensor/alloc.js';

export interface TiledEncodeOptions {
  /** Pixel tile size; a multiple of `factor`. */
  tile: number;
  /** Fraction of the tile shared with the next tile, in [0, 1). Default 0.25 (the reference default). */
  overlap?: number;
  /** Spatial compression factor of the model (32 or 64 for DC-AE-V). */
  factor: number;
}

export type TiledDecodeOptions = TiledEncodeOptions;

export interface ChooseTileOptions {
  height: number;
  width: number;
  /** Frames processed at once per tile (the temporal tile, e.g. 40 pixel frames). */
  frames: number;
  factor: number;
  /** Peak live activation bytes per pixel per frame of one tile's forward pass (see chooseTile). */
  peakBytesPerPixelFrame: number;
  budgetBytes: number;
  overlap?: number;
}

/** Derived tiling geometry, in pixels and latents. */
export interface TileGeometry {
  tile: number;
  overlap: number;
  factor: number;
  stride: number;
  latentTile: number;
  latentStride: number;
}

const DEFAULT_OVERLAP = 0.25;

/** Python 3 round(): halves go to the even neighbour, which differs from Math.round at x.5. */
function pyRound(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function fmtNum(v: number): string {
  return String(Number(v.toPrecision(6)));
}

function strideOf(tile: number, overlap: number): number {
  return pyRound((1 - overlap) * tile);
}

function strideOk(tile: number, overlap: number, factor: number): boolean {
  const s = strideOf(tile, overlap);
  return s >= factor && s % factor === 0;
}

/** Validates tiling options and derives stride and latent sizes; errors name the bad value and what would work. */
export function tileGeometry(where: string, opts: { tile: number; overlap?: number; factor: number }): TileGeometry {
  const { tile, factor } = opts;
  const overlap = opts.overlap ?? DEFAULT_OVERLAP;
  if (!Number.isInteger(factor) || factor < 1)
    throw new ValueError(`${where}: factor must be a positive integer (the spatial compression, e.g. 32 or 64), got ${factor}`);
  if (!Number.isInteger(tile) || tile < factor || tile % factor !== 0)
    throw new ValueError(
      `${where}: tile ${tile} is not a positive multiple of factor ${factor}; valid tiles are ${factor}, ${2 * factor}, ${3 * factor}, ...`,
    );
  if (typeof overlap !== 'number' || !Number.isFinite(overlap) || overlap < 0 || overlap >= 1)
    throw new ValueError(`${where}: overlap must be a number in [0, 1), got ${String(overlap)}`);
  const stride = strideOf(tile, overlap);
  if (!strideOk(tile, overlap, factor)) {
    // Strides k*factor for k = tile/factor .. 1 give overlaps 0, factor/tile, 2*factor/tile, ...
    const n = tile / factor;
    const overlaps: string[] = [];
    for (let k = n; k >= 1 && overlaps.length < 8; k--) overlaps.push(fmtNum(1 - (k * factor) / tile));
    if (n > 8) overlaps.push('...');
    const tiles: number[] = [];
    for (let k = 1; k <= Math.max(16, 4 * n) && tiles.length < 4; k++) if (strideOk(k * factor, overlap, factor)) tiles.push(k * factor);
    throw new ValueError(
      `${where}: tile ${tile} with overlap ${overlap} gives stride round((1 - ${overlap}) * ${tile}) = ${stride}, ` +
        `which is not a positive multiple of factor ${factor}; valid overlaps for tile ${tile}: ${overlaps.join(', ')}` +
        (tiles.length ? `; tiles that work with overlap ${overlap}: ${tiles.join(', ')}${tiles.length === 4 ? ', ...' : ''}` : ''),
    );
  }
  return { tile, overlap, factor, stride, latentTile: tile / factor, latentStride: stride / factor };
}

// ---------------------------------------------------------------------------------------------------------------
// blending on dense (outer, h, w) blocks, outer = N*C*T

interface Block {
  data: Float32Array;
  /** N, C, T of the tile's result */
  lead: [number, number, number];
  outer: number;
  h: number;
  w: number;
}

/** b's first e rows := ramp from a's last e rows (the reference blend across H), e = min(a.h, b.h, blend). */
function blendRows(a: Block, b: Block, blend: number): void {
  const e = Math.min(a.h, b.h, blend);
  const w = b.w;
  for (let o = 0; o < b.outer; o++) {
    const ao = o * a.h * w;
    const bo = o * b.h * w;
    for (let y = 0; y < e; y++) {
      const r = y / e;
      const ar = ao + (a.h - e + y) * w;
      const br = bo + y * w;
      for (let x = 0; x < w; x++) b.data[br + x] = a.data[ar + x]! * (1 - r) + b.data[br + x]! * r;
    }
  }
}

/** b's first e columns := ramp from a's last e columns (the reference blend across W), e = min(a.w, b.w, blend). */
function blendCols(a: Block, b: Block, blend: number): void {
  const e = Math.min(a.w, b.w, blend);
  if (e === 0) return;
  const rows = b.outer * b.h;
  for (let q = 0; q < rows; q++) {
    const ar = q * a.w + a.w - e;
    const br = q * b.w;
    for (let x = 0; x < e; x++) {
      const r = x / e;
      b.data[br + x] = a.data[ar + x]! * (1 - r) + b.data[br + x]! * r;
    }
  }
}

/** The last n rows of b (what the tile below will blend against). */
function lastRows(b: Block, n: number): Block {
  const k = Math.min(n, b.h);
  const data = new Float32Array(b.outer * k * b.w);
  for (let o = 0; o < b.outer; o++) {
    const src = (o * b.h + b.h - k) * b.w;
    data.set(b.data.subarray(src, src + k * b.w), o * k * b.w);
  }
  return { data, lead: b.lead, outer: b.outer, h: k, w: b.w };
}

/** The last n columns of b (what the tile to the right will blend against). */
function lastCols(b: Block, n: number): Block {
  const k = Math.min(n, b.w);
  const rows = b.outer * b.h;
  const data = new Float32Array(rows * k);
  for (let q = 0; q < rows; q++) {
    const src = q * b.w + b.w - k;
    data.set(b.data.subarray(src, src + k), q * k);
  }
  return { data, lead: b.lead, outer: b.outer, h: b.h, w: k };
}

/** Writes b's top-left keep x keep block at (r0, c0) of out (outer, H, W), clipped to out. */
function place(b: Block, out: Float32Array, H: number, W: number, r0: number, c0: number, keep: number): void {
  const nh = Math.min(keep, b.h, H - r0);
  const nw = Math.min(keep, b.w, W - c0);
  if (nh <= 0 || nw <= 0) return;
  for (let o = 0; o < b.outer; o++)
    for (let y = 0; y < nh; y++) {
      const src = (o * b.h + y) * b.w;
      out.set(b.data.subarray(src, src + nw), (o * H + r0 + y) * W + c0);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// the shared driver

interface Plan {
  where: string;
  /** start of each tile along H / W in input units */
  rowStarts: number[];
  colStarts: number[];
  /** the input tile (i, j) as passed to fn, and the spatial size fn must return for it */
  cut: (i: number, j: number) => { input: Tensor; outH: number; outW: number };
  fn: (t: Tensor) => Tensor;
  /** blend extent and kept block size, in output units */
  blend: number;
  keep: number;
  outH: number;
  outW: number;
}

function check5(x: unknown, where: string, what: string): [number, number, number, number, number] {
  if (!(x instanceof Tensor)) throw new ValueError(`${where}: ${what} must be a Tensor, got ${typeof x}`);
  if (x.ndim !== 5) throw new ShapeError(`${where}: ${what} must be 5-D (N, C, T, H, W), got ${fmtShape(x.shape)}`);
  return x.shape as unknown as [number, number, number, number, number];
}

function starts(n: number, step: number): number[] {
  const s: number[] = [];
  for (let i = 0; i < n; i += step) s.push(i);
  return s;
}

function runTiles(p: Plan): Tensor {
  // The result is assembled in a host buffer (the blends are host arithmetic on the tiles' copies) and wrapped as a
  // tensor at the end, without a copy.
  let out: Float32Array | null = null;
  let lead: [number, number, number] = [0, 0, 0];
  let above: Block[] | null = null;
  for (let ri = 0; ri < p.rowStarts.length; ri++) {
    const below: Block[] = [];
    let left: Block | null = null;
    for (let ci = 0; ci < p.colStarts.length; ci++) {
      const { input, outH, outW } = p.cut(p.rowStarts[ri]!, p.colStarts[ci]!);
      const y = noGrad(() => p.fn(input));
      const at = `tile (${ri}, ${ci}) at (${p.rowStarts[ri]}, ${p.colStarts[ci]}) with input ${fmtShape(input.shape)}`;
      const [n, c, t, h, w] = check5(y, p.where, `the result of ${at}`);
      if (h !== outH || w !== outW)
        throw new ShapeError(`${p.where}: ${at} returned ${fmtShape(y.shape)}, expected spatial size ${outH} x ${outW}`);
      if (out === null) {
        lead = [n, c, t];
        out = allocFloat32(n * c * t * p.outH * p.outW, [n, c, t, p.outH, p.outW], 'tiled result');
      } else if (n !== lead[0] || c !== lead[1] || t !== lead[2])
        throw new ShapeError(`${p.where}: ${at} returned ${fmtShape(y.shape)}, but the first tile gave N, C, T = ${lead.join(', ')}`);
      // A copy: the blends write into it, and fn may return a view of its input or of shared storage.
      const b: Block = { data: y.readSync(), lead, outer: n * c * t, h, w };
      if (above) blendRows(above[ci]!, b, p.blend);
      if (left) blendCols(left, b, p.blend);
      place(b, out, p.outH, p.outW, ri * p.keep, ci * p.keep, p.keep);
      if (ri + 1 < p.rowStarts.length) below.push(lastRows(b, p.blend));
      left = ci + 1 < p.colStarts.length ? lastCols(b, p.blend) : null;
    }
    above = below;
  }
  return tensor(out!, [lead[0], lead[1], lead[2], p.outH, p.outW]);
}

// ---------------------------------------------------------------------------------------------------------------
// public API

/**
 * Encodes x (N, C, T, H, W) tile by tile: pixel tiles of `tile` x `tile` every round((1-overlap)*tile) pixels,
 * partial edge tiles zero-padded at the bottom/right to a multiple of `factor`, results blended over
 * tile/factor - stride/factor latent rows/columns. Returns (N, C', T', floor(H/factor), floor(W/factor)).
 */
export function tiledEncode(encodeTile: (x: Tensor) => Tensor, x: Tensor, opts: TiledEncodeOptions): Tensor {
  const where = 'tiledEncode';
  const g = tileGeometry(where, opts);
  const [, , , H, W] = check5(x, where, 'input');
  const f = g.factor;
  if (H < f || W < f)
    throw new ShapeError(`${where}: input ${fmtShape(x.shape)} is smaller than one latent pixel (factor ${f}) in H or W`);
  return runTiles({
    where,
    rowStarts: starts(H, g.stride),
    colStarts: starts(W, g.stride),
    cut: (i, j) => {
      const h = Math.min(g.tile, H - i);
      const w = Math.min(g.tile, W - j);
      const ph = Math.ceil(h / f) * f - h;
      const pw = Math.ceil(w / f) * f - w;
      let t = slice(slice(x, 3, i, i + h), 4, j, j + w);
      if (ph || pw) t = pad(t, [0, pw, 0, ph]);
      return { input: t, outH: (h + ph) / f, outW: (w + pw) / f };
    },
    fn: encodeTile,
    blend: g.latentTile - g.latentStride,
    keep: g.latentStride,
    outH: Math.floor(H / f),
    outW: Math.floor(W / f),
  });
}

/**
 * Decodes z (N, C, T, h, w) tile by tile: latent tiles of tile/factor every stride/factor latents, results blended
 * over tile - stride pixel rows/columns (pixel units, as in the reference). Returns (N, C', T', h*factor, w*factor).
 */
export function tiledDecode(decodeTile: (z: Tensor) => Tensor, z: Tensor, opts: TiledDecodeOptions): Tensor {
  const where = 'tiledDecode';
  const g = tileGeometry(where, opts);
  const [, , , h, w] = check5(z, where, 'input');
  const f = g.factor;
  if (h < 1 || w < 1) throw new ShapeError(`${where}: input ${fmtShape(z.shape)} has an empty spatial axis`);
  return runTiles({
    where,
    rowStarts: starts(h, g.latentStride),
    colStarts: starts(w, g.latentStride),
    cut: (i, j) => {
      const th = Math.min(g.latentTile, h - i);
      const tw = Math.min(g.latentTile, w - j);
      return { input: slice(slice(z, 3, i, i + th), 4, j, j + tw), outH: th * f, outW: tw * f };
    },
    fn: decodeTile,
    blend: g.tile - g.stride,
    keep: g.stride,
    outH: h * f,
    outW: w * f,
  });
}

/**
 * The largest pixel tile (a multiple of `factor` whose stride under `overlap` is valid) whose estimated peak
 * activation memory fits `budgetBytes`; null when the whole frame fits untiled.
 *
 * Estimate: the forward pass over one tile of S x S pixels and `frames` frames holds at most
 * S * S * frames * peakBytesPerPixelFrame bytes of activations at its peak, i.e. activation memory scales linearly
 * with the spatial area processed at once. `peakBytesPerPixelFrame` is the model's largest live activation size
 * divided by (pixels per frame * frames), measured or derived from the widest stage; e.g. spec §2.2 puts the DC-AE-V
 * decoder's stage-1 peak at about 4.6 GB (bf16) for 40 frames at 704x1280, about 128 bytes per pixel-frame. Weights,
 * the stitched output and the blend strips are not included: subtract them from the budget. The estimate uses the
 * full S x S even where an edge tile is smaller, and the untiled case uses H and W rounded up to a multiple of
 * `factor` (the model needs that), so it errs on the safe side.
 *
 * Throws ValueError when not even the smallest valid tile fits.
 */
export function chooseTile(opts: ChooseTileOptions): number | null {
  const where = 'chooseTile';
  const { height, width, frames, factor, peakBytesPerPixelFrame: peak, budgetBytes: budget } = opts;
  const overlap = opts.overlap ?? DEFAULT_OVERLAP;
  for (const [name, v] of [
    ['height', height],
    ['width', width],
    ['frames', frames],
    ['factor', factor],
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw new ValueError(`${where}: ${name} must be a positive integer, got ${v}`);
  if (!(peak > 0) || !Number.isFinite(peak))
    throw new ValueError(`${where}: peakBytesPerPixelFrame must be a finite positive number, got ${peak}`);
  if (!(budget > 0)) throw new ValueError(`${where}: budgetBytes must be a positive number, got ${budget}`);
  if (typeof overlap !== 'number' || !Number.isFinite(overlap) || overlap < 0 || overlap >= 1)
    throw new ValueError(`${where}: overlap must be a number in [0, 1), got ${String(overlap)}`);
  const perPixel = frames * peak;
  const hp = Math.ceil(height / factor) * factor;
  const wp = Math.ceil(width / factor) * factor;
  if (hp * wp * perPixel <= budget) return null;
  // sqrt may round either way; the explicit check below decides.
  for (let k = Math.floor(Math.sqrt(budget / perPixel) / factor) + 1; k >= 1; k--) {
    const s = k * factor;
    if (s * s * perPixel <= budget && strideOk(s, overlap, factor)) return s;
  }
  let smallest = factor;
  for (let k = 1; k <= 4096 && !strideOk(k * factor, overlap, factor); k++) smallest = (k + 1) * factor;
  throw new ValueError(
    `${where}: budget ${budget} bytes is too small: the smallest tile valid with factor ${factor} and overlap ${overlap} ` +
      `is ${smallest}, which needs ${smallest} * ${smallest} * ${frames} frames * ${peak} bytes = ${smallest * smallest * perPixel} bytes`,
  );
}
