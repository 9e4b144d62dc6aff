/**
 * Dependency-free line plots as PNG (for per-frame metric curves): an RGB raster, a built-in 5x7 bitmap font, and a
 * minimal PNG encoder (one IDAT, zlib deflate, CRC-32 per chunk).
 */
import { crc32, writeFileAtomic } from '../io/files.js';
import * as zlib from 'node:zlib';
import { ValueError } from '../errors.js';

// ---------------------------------------------------------------------------------------------------------------
// PNG


function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  // The CRC covers the type and the data, not the length.
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** An 8-bit RGB, non-interlaced PNG of `rgb` (width·height·3 bytes, rows top to bottom). */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 || width > 0x7fffffff || height > 0x7fffffff) {
    throw new ValueError(`encodePng: invalid size ${width}x${height}`);
  }
  if (rgb.length !== width * height * 3) throw new ValueError(`encodePng: ${rgb.length} bytes for ${width}x${height}x3 = ${width * height * 3}`);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  ihdr[10] = 0; // compression: deflate
  ihdr[11] = 0; // filter method 0
  ihdr[12] = 0; // no interlace
  // Filter type "Up" per row: plots are mostly vertical runs of equal colour, which it turns into zeros.
  const stride = width * 3;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    const o = y * (stride + 1);
    const s = y * stride;
    if (y === 0) {
      raw[o] = 0;
      raw.set(rgb.subarray(s, s + stride), o + 1);
    } else {
      raw[o] = 2;
      for (let i = 0; i < stride; i++) raw[o + 1 + i] = (rgb[s + i]! - rgb[s - stride + i]!) & 0xff;
    }
  }
  const idat = zlib.deflateSync(raw, { level: 9 });
  return Buffer.concat([PNG_SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))]);
}

// ---------------------------------------------------------------------------------------------------------------
// Font: printable ASCII 32..126, 5 pixels wide, 9 rows per glyph (7 above the baseline, 2 for descenders); each row
// is one base-32 digit whose bit 4 is the leftmost pixel.

const FONT_W = 5;
const FONT_ROWS = 9;
const FONT =
  '000000000444440400aa0000000aavavaa004fke5u400op248j300cik8lid00440000000' +
  '24888420084222480004lel4000044v4400000000cc48000v0000000000cc0001248g000' +
  'ehjlphe004c4444e00eh1248v00v2421he0026aiv2200vgu11he0068guhhe00v12488800' +
  'ehhehhe00ehhf12c000cc0cc0000cc00cc48248g8420000v0v0000842124800eh1240400' +
  'eh1dlle00ehhvhhh00uhhuhhu00ehggghe00sihhhis00vgguggv00vgguggg00ehgnhhf00' +
  'hhhvhhh00e44444e0072222ic00hikokih00ggggggv00hrllhhh00hhpljhh00ehhhhhe00' +
  'uhhuggg00ehhhlid00uhhukih00fgge11u00v44444400hhhhhhe00hhhhha400hhhllla00' +
  'hha4ahh00hha444400v1248gv00e88888e000g8421000e22222e004ah000000000000v00' +
  '84200000000e1fhf00ggmphhu0000egghe0011djhhf0000ehvge00698s8880000fhhhf1e' +
  'ggmphhh0040c444e002062222icggikoki00c44444e0000qllhh0000mphhh0000ehhhe00' +
  '00uhhhugg00fhhhf1100mpggg0000ege1u0088s88960000hhhjd0000hhha40000hhlla00' +
  '00ha4ah0000hhhhf1e00v248v00244844200444444400844244800008l20000';

function glyphRow(ch: string, row: number): number {
  let code = ch.charCodeAt(0);
  if (code < 32 || code > 126) code = 63; // '?'
  return parseInt(FONT[(code - 32) * FONT_ROWS + row]!, 32);
}

// ---------------------------------------------------------------------------------------------------------------
// Raster

type Rgb = readonly [number, number, number];

class Canvas {
  readonly w: number;
  readonly h: number;
  readonly px: Uint8Array;
  constructor(w: number, h: number, bg: Rgb) {
    this.w = w;
    this.h = h;
    this.px = new Uint8Array(w * h * 3);
    for (let i = 0; i < w * h; i++) this.px.set(bg, i * 3);
  }

  set(x: number, y: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.w || y >= this.h) return;
    const o = (y * this.w + x) * 3;
    this.px[o] = c[0];
    this.px[o + 1] = c[1];
    this.px[o + 2] = c[2];
  }

  rect(x0: number, y0: number, w: number, h: number, c: Rgb): void {
    for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) this.set(x, y, c);
  }

  /** Bresenham with a square pen of `thick` pixels. */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, thick = 1): void {
    x0 = Math.round(x0);
    y0 = Math.round(y0);
    x1 = Math.round(x1);
    y1 = Math.round(y1);
    const dx = Math.abs(x1 - x0);
    const dy = -Math.abs(y1 - y0);
    const sx = x0 < x1 ? 1 : -1;
    const sy = y0 < y1 ? 1 : -1;
    let err = dx + dy;
    const lo = -Math.floor((thick - 1) / 2);
    const hi = lo + thick - 1;
    for (;;) {
      for (let oy = lo; oy <= hi; oy++) for (let ox = lo; ox <= hi; ox++) this.set(x0 + ox, y0 + oy, c);
      if (x0 === x1 && y0 === y1) break;
      const e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }

  /** Text with its top-left corner at (x, y); `vertical` runs bottom to top (rotated 90° anticlockwise). */
  text(s: string, x: number, y: number, c: Rgb, scale = 1, vertical = false): void {
    let pen = 0;
    for (const ch of s) {
      for (let row = 0; row < FONT_ROWS; row++) {
        const bits = glyphRow(ch, row);
        for (let col = 0; col < FONT_W; col++) {
          if (!((bits >> (FONT_W - 1 - col)) & 1)) continue;
          for (let a = 0; a < scale; a++) {
            for (let b = 0; b < scale; b++) {
              const u = (pen + col) * scale + a;
              const v = row * scale + b;
              if (vertical) this.set(x + v, y - u, c);
              else this.set(x + u, y + v, c);
            }
          }
        }
      }
      pen += FONT_W + 1;
    }
  }
}

function textWidth(s: string, scale: number): number {
  return s.length ? (s.length * (FONT_W + 1) - 1) * scale : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Plot

export interface PlotSeries {
  name: string;
  values: readonly number[];
}

export interface LinePlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Point i of every series is drawn at x = i (e.g. the frame index). Non-finite values break the line. */
  series: readonly PlotSeries[];
  /** x positions of dashed vertical lines, e.g. chunk boundaries every 40 frames. */
  verticalMarkers?: readonly number[];
  /** point i is labelled i * xScale on the x axis (e.g. loss averaged over 10 steps: xScale 10); default 1 */
  xScale?: number;
  width?: number;
  height?: number;
}

const PALETTE: readonly Rgb[] = [
  [31, 119, 180],
  [214, 39, 40],
  [44, 160, 44],
  [255, 127, 14],
  [148, 103, 189],
  [140, 86, 75],
  [227, 119, 194],
  [23, 190, 207],
];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [228, 228, 228];
const MARKER: Rgb = [120, 120, 120];

/** Ticks at 1, 2 or 5 × 10^k covering [lo, hi] with about `target` steps. */
export function niceTicks(lo: number, hi: number, target = 6, minStep = 0): { ticks: number[]; step: number } {
  if (!(hi > lo)) {
    const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const step = Math.max(minStep, (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag);
  // The axis is widened to whole steps so that both ends carry a tick.
  const k0 = Math.floor(lo / step + 1e-9);
  const k1 = Math.ceil(hi / step - 1e-9);
  const ticks: number[] = [];
  for (let k = k0; k <= k1; k++) ticks.push(k * step);
  return { ticks, step };
}

function fmtTick(v: number, step: number): string {
  const decimals = Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9)));
  const s = v.toFixed(decimals);
  return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s;
}

/** Renders the plot to an RGB raster (exposed for tests and callers that want other encodings). */
export function renderLinePlot(opts: LinePlotOptions): { width: number; height: number; rgb: Uint8Array } {
  const W = opts.width ?? 900;
  const H = opts.height ?? 500;
  if (!Number.isInteger(W) || !Number.isInteger(H) || W < 200 || H < 150) throw new ValueError(`writeLinePlotPng: size ${W}x${H} must be integers of at least 200x150`);
  if (!opts.series.length) throw new ValueError('writeLinePlotPng: no series');
  const cv = new Canvas(W, H, [255, 255, 255]);
  const s = W >= 700 && H >= 400 ? 2 : 1; // text scale
  const lineH = FONT_ROWS * s;

  // Data ranges; x spans the longest series.
  let n = 0;
  let lo = Infinity;
  let hi = -Infinity;
  for (const se of opts.series) {
    n = Math.max(n, se.values.length);
    for (const v of se.values) {
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo === Infinity) {
    lo = 0;
    hi = 1;
  }
  const pad = (hi - lo) * 0.05;
  const yt = niceTicks(lo - pad, hi + pad);
  const y0v = yt.ticks[0]!;
  const y1v = yt.ticks[yt.ticks.length - 1]!;
  // x keeps its exact extent (frame 0 .. n−1); ticks past the end are skipped when drawn. Points sit at whole
  // indices, so fractional ticks would only mislead.
  const xt = niceTicks(0, Math.max(n - 1, 1), Math.max(3, Math.floor(W / 120)), 1);
  const x0v = 0;
  const x1v = Math.max(n - 1, 1);

  // Layout: title on top, y label and tick labels on the left, x tick labels and x label below.
  const yLabels = yt.ticks.map((v) => fmtTick(v, yt.step));
  const maxYLabel = Math.max(...yLabels.map((l) => textWidth(l, 1 * s)));
  const left = 8 + lineH + 10 + maxYLabel + 8;
  const right = W - 20;
  const top = 12 + lineH + 14;
  const bottom = H - (8 + lineH + 10 + lineH + 10);
  const pw = right - left;
  const ph = bottom - top;
  const X = (v: number) => left + ((v - x0v) / (x1v - x0v)) * pw;
  const Y = (v: number) => bottom - ((v - y0v) / (y1v - y0v)) * ph;

  // Grid and ticks.
  for (const [i, v] of yt.ticks.entries()) {
    const y = Math.round(Y(v));
    if (y < top - 1 || y > bottom + 1) continue;
    cv.line(left, y, right, y, GRID);
    cv.line(left - 5, y, left, y, BLACK);
    const l = yLabels[i]!;
    cv.text(l, left - 8 - textWidth(l, s), y - Math.floor(lineH / 2), BLACK, s);
  }
  for (const v of xt.ticks) {
    const x = Math.round(X(v));
    if (x < left - 1 || x > right + 1) continue;
    cv.line(x, top, x, bottom, GRID);
    cv.line(x, bottom, x, bottom + 5, BLACK);
    const l = fmtTick(v * (opts.xScale ?? 1), xt.step * (opts.xScale ?? 1));
    cv.text(l, x - Math.floor(textWidth(l, s) / 2), bottom + 8, BLACK, s);
  }

  // Dashed markers: 6 pixels on, 4 off.
  for (const m of opts.verticalMarkers ?? []) {
    if (!Number.isFinite(m) || m < x0v || m > x1v) continue;
    const x = Math.round(X(m));
    for (let y = top; y <= bottom; y++) if ((y - top) % 10 < 6) cv.set(x, y, MARKER);
  }

  // Series; a non-finite value lifts the pen, an isolated finite point still shows as a dot.
  for (const [k, se] of opts.series.entries()) {
    const col = PALETTE[k % PALETTE.length]!;
    let prev: [number, number] | null = null;
    for (let i = 0; i < se.values.length; i++) {
      const v = se.values[i]!;
      if (!Number.isFinite(v)) {
        prev = null;
        continue;
      }
      const p: [number, number] = [X(i), Y(v)];
      if (prev) cv.line(prev[0], prev[1], p[0], p[1], col, 2);
      else cv.rect(Math.round(p[0]) - 1, Math.round(p[1]) - 1, 3, 3, col);
      prev = p;
    }
  }

  // Axes frame drawn last so lines do not cover it.
  cv.line(left, top, left, bottom, BLACK);
  cv.line(left, bottom, right, bottom, BLACK);
  cv.line(right, top, right, bottom, BLACK);
  cv.line(left, top, right, top, BLACK);

  // Title, axis labels.
  let ts = s + 1;
  while (ts > 1 && textWidth(opts.title, ts) > W - 8) ts--;
  cv.text(opts.title, Math.max(2, Math.floor((W - textWidth(opts.title, ts)) / 2)), 10, BLACK, ts);
  cv.text(opts.xLabel, left + Math.floor((pw - textWidth(opts.xLabel, s)) / 2), H - 8 - lineH, BLACK, s);
  cv.text(opts.yLabel, 8, top + Math.floor((ph + textWidth(opts.yLabel, s)) / 2), BLACK, s, true);

  // Legend box in the top-right corner of the plot area.
  const sw = 18 * s;
  const legW = Math.max(...opts.series.map((se) => textWidth(se.name, s))) + sw + 6 * s + 12;
  const rowH = lineH + 6;
  const legH = opts.series.length * rowH + 8;
  // Of the four corners, take the one that hides the fewest data points (top-right on ties).
  const corners: [number, number][] = [
    [right - legW - 8, top + 8],
    [left + 8, top + 8],
    [right - legW - 8, bottom - legH - 8],
    [left + 8, bottom - legH - 8],
  ];
  let best = 0;
  let bestHidden = Infinity;
  for (const [ci, [cx, cy]] of corners.entries()) {
    let hidden = 0;
    for (const se of opts.series) {
      for (let i = 0; i < se.values.length; i++) {
        const v = se.values[i]!;
        if (!Number.isFinite(v)) continue;
        const px = X(i);
        const py = Y(v);
        if (px >= cx - 2 && px <= cx + legW + 2 && py >= cy - 2 && py <= cy + legH + 2) hidden++;
      }
    }
    if (hidden < bestHidden) {
      bestHidden = hidden;
      best = ci;
    }
  }
  const [lx, ly] = corners[best]!;
  cv.rect(lx, ly, legW, legH, [255, 255, 255]);
  cv.line(lx, ly, lx + legW, ly, MARKER);
  cv.line(lx, ly + legH, lx + legW, ly + legH, MARKER);
  cv.line(lx, ly, lx, ly + legH, MARKER);
  cv.line(lx + legW, ly, lx + legW, ly + legH, MARKER);
  for (const [k, se] of opts.series.entries()) {
    const col = PALETTE[k % PALETTE.length]!;
    const ry = ly + 6 + k * rowH;
    cv.line(lx + 6, ry + Math.floor(lineH / 2), lx + 6 + sw, ry + Math.floor(lineH / 2), col, 3);
    cv.text(se.name, lx + 6 + sw + 6 * s, ry, BLACK, s);
  }
  return { width: W, height: H, rgb: cv.px };
}

/**
 * Writes a line plot as PNG atomically: the bytes go to a temporary file beside `path`, renamed into place only when
 * complete, so readers never see a partial image.
 */
export function writeLinePlotPng(path: string, opts: LinePlotOptions): void {
  const { width, height, rgb } = renderLinePlot(opts);
  writeFileAtomic(path, encodePng(width, height, rgb));
}

export { crc32 };
