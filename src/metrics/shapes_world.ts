/**
 * The shapes world (../shared/docs/shapes-world.md): a captioned synthetic video world whose meaning a program can
 * check. One object (colour, shape, size) moves in one direction on a plain background; `renderShapes` draws it with
 * the page's exact anti-aliasing (every pixel of the shared renders reproduced), `scoreShapes` reads the attributes
 * back from any video's pixels (the semantic score), and the held-out (colour, shape, direction) triples are never
 * to be trained on.
 */
import { ValueError } from '../errors.js';
import { Rng } from '../tensor/random.js';

export const SHAPES_COLORS = {
  red: [230, 50, 50],
  green: [50, 200, 70],
  blue: [60, 100, 240],
  yellow: [240, 220, 50],
  magenta: [220, 70, 220],
  cyan: [50, 210, 220],
  white: [245, 245, 245],
} as const;
export const SHAPES_SHAPES = ['square', 'circle', 'triangle'] as const;
export const SHAPES_SIZES = { small: 24, large: 40 } as const;
export const SHAPES_DIRECTIONS = { left: [-1, 0], right: [1, 0], up: [0, -1], down: [0, 1] } as const;
export const SHAPES_BACKGROUNDS = { black: [16, 16, 16], gray: [128, 128, 128] } as const;

export type ShapesColor = keyof typeof SHAPES_COLORS;
export type ShapesShape = (typeof SHAPES_SHAPES)[number];
export type ShapesSize = keyof typeof SHAPES_SIZES;
export type ShapesDirection = keyof typeof SHAPES_DIRECTIONS;
export type ShapesBackground = keyof typeof SHAPES_BACKGROUNDS;

const COLOR_NAMES = Object.keys(SHAPES_COLORS) as ShapesColor[];
const SIZE_NAMES = Object.keys(SHAPES_SIZES) as ShapesSize[];
const DIRECTION_NAMES = Object.keys(SHAPES_DIRECTIONS) as ShapesDirection[];
const BACKGROUND_NAMES = Object.keys(SHAPES_BACKGROUNDS) as ShapesBackground[];

/** The file naming a `dcvg data shapes` folder's split, seed and videos (written first with complete: false). */
export const SHAPES_MANIFEST = 'manifest.json';

/** The world's fixed geometry: 16 frames of 128x128, 4 px of motion per frame, 4 px of margin, 4x4 sub-samples. */
export const SHAPES_FRAMES = 16;
export const SHAPES_SIZE = 128;
const STEP = 4;
const MARGIN = 4;
const SUB = 4;

export interface ShapesVideo {
  color: ShapesColor;
  shape: ShapesShape;
  size: ShapesSize;
  direction: ShapesDirection;
  background: ShapesBackground;
  /** the object's centre at frame 0, in pixels (x to the right, y down) */
  start: [number, number];
}

export function shapesCaption(v: Omit<ShapesVideo, 'start'>): string {
  return `a ${v.size} ${v.color} ${v.shape} moving ${v.direction} on a ${v.background} background`;
}

/** Attribute indices in the page's order (colour, shape, size, direction, background). */
export function shapesIndices(v: Omit<ShapesVideo, 'start'>): { color: number; shape: number; size: number; direction: number; background: number } {
  return {
    color: COLOR_NAMES.indexOf(v.color),
    shape: SHAPES_SHAPES.indexOf(v.shape),
    size: SIZE_NAMES.indexOf(v.size),
    direction: DIRECTION_NAMES.indexOf(v.direction),
    background: BACKGROUND_NAMES.indexOf(v.background),
  };
}

/** The attributes of a video from their indices (as in the fixtures' shapes.json). */
export function shapesFromIndices(i: { color: number; shape: number; size: number; direction: number; background: number }): Omit<ShapesVideo, 'start'> {
  const pick = <T>(list: readonly T[], k: number, what: string): T => {
    if (!Number.isInteger(k) || k < 0 || k >= list.length) throw new ValueError(`shapes world: ${what} index must be an integer in [0, ${list.length - 1}], got ${k}`);
    return list[k]!;
  };
  return {
    color: pick(COLOR_NAMES, i.color, 'color'),
    shape: pick(SHAPES_SHAPES, i.shape, 'shape'),
    size: pick(SIZE_NAMES, i.size, 'size'),
    direction: pick(DIRECTION_NAMES, i.direction, 'direction'),
    background: pick(BACKGROUND_NAMES, i.background, 'background'),
  };
}

const CAPTION = new RegExp(
  `^a (${SIZE_NAMES.join('|')}) (${COLOR_NAMES.join('|')}) (${SHAPES_SHAPES.join('|')}) moving (${DIRECTION_NAMES.join('|')}) on a (${BACKGROUND_NAMES.join('|')}) background$`,
);

/** The attributes a caption of the world names (`shapesCaption` read backwards), or null for any other text. */
export function parseShapesCaption(text: string): Omit<ShapesVideo, 'start'> | null {
  const m = CAPTION.exec(text.trim());
  if (!m) return null;
  return { size: m[1] as ShapesSize, color: m[2] as ShapesColor, shape: m[3] as ShapesShape, direction: m[4] as ShapesDirection, background: m[5] as ShapesBackground };
}

/** Held out from all training: (color + 2 shape + 3 direction) mod 7 == 0. */
export function isHeldOut(v: Pick<ShapesVideo, 'color' | 'shape' | 'direction'>): boolean {
  const i = shapesIndices({ ...v, size: 'small', background: 'black' });
  return (i.color + 2 * i.shape + 3 * i.direction) % 7 === 0;
}

/** Per axis, the start centres that keep the whole object >= 4 px inside the frame in all 16 frames. */
export function startRange(size: ShapesSize, direction: ShapesDirection): { x: [number, number]; y: [number, number] } {
  const h = SHAPES_SIZES[size] / 2;
  const [dx, dy] = SHAPES_DIRECTIONS[direction];
  const travel = STEP * (SHAPES_FRAMES - 1);
  const axis = (d: number): [number, number] => {
    const lo = MARGIN + h;
    const hi = SHAPES_SIZE - MARGIN - h;
    return [d < 0 ? lo + travel : lo, d > 0 ? hi - travel : hi];
  };
  return { x: axis(dx), y: axis(dy) };
}

/** A random video of the world (uniform attributes, uniform start); `trainOnly` skips held-out triples. */
export function randomShapesVideo(rng: Rng, opts: { trainOnly?: boolean } = {}): ShapesVideo {
  for (;;) {
    const v = {
      color: COLOR_NAMES[Math.floor(rng.uniform() * COLOR_NAMES.length)]!,
      shape: SHAPES_SHAPES[Math.floor(rng.uniform() * SHAPES_SHAPES.length)]!,
      size: SIZE_NAMES[Math.floor(rng.uniform() * SIZE_NAMES.length)]!,
      direction: DIRECTION_NAMES[Math.floor(rng.uniform() * DIRECTION_NAMES.length)]!,
      background: BACKGROUND_NAMES[Math.floor(rng.uniform() * BACKGROUND_NAMES.length)]!,
    };
    if (opts.trainOnly && isHeldOut(v)) continue;
    const r = startRange(v.size, v.direction);
    const start: [number, number] = [r.x[0] + rng.uniform() * (r.x[1] - r.x[0]), r.y[0] + rng.uniform() * (r.y[1] - r.y[0])];
    return { ...v, start };
  }
}

/** Which (colour, shape, direction) triples a list of videos may hold: training ones, held-out ones, or both. */
export type ShapesSplit = 'train' | 'held-out' | 'all';

/**
 * `count` random videos of a split, drawn one after another from `rng` (so the first k of a longer list are the list
 * of k): held-out videos by drawing from the whole world and keeping only held-out triples.
 */
export function randomShapesVideos(rng: Rng, count: number, split: ShapesSplit): ShapesVideo[] {
  const out: ShapesVideo[] = [];
  while (out.length < count) {
    const v = randomShapesVideo(rng, { trainOnly: split === 'train' });
    if (split === 'held-out' && !isHeldOut(v)) continue;
    out.push(v);
  }
  return out;
}

function inside(shape: ShapesShape, x: number, y: number, cx: number, cy: number, h: number): boolean {
  if (shape === 'square') return Math.abs(x - cx) <= h && Math.abs(y - cy) <= h;
  if (shape === 'circle') return (x - cx) ** 2 + (y - cy) ** 2 <= h * h;
  const t = (y - (cy - h)) / (2 * h);
  return t >= 0 && t <= 1 && Math.abs(x - cx) <= h * t;
}

/** The video as uint8 RGB frames (frame-major, rows, columns, RGB: T x 128 x 128 x 3). */
export function renderShapes(v: ShapesVideo, frames = SHAPES_FRAMES): Uint8Array {
  if (!Number.isInteger(frames) || frames < 1) throw new ValueError(`renderShapes: frames must be a positive integer, got ${frames}`);
  const N = SHAPES_SIZE;
  const out = new Uint8Array(frames * N * N * 3);
  const bg = SHAPES_BACKGROUNDS[v.background];
  const fg = SHAPES_COLORS[v.color];
  const h = SHAPES_SIZES[v.size] / 2;
  const [dx, dy] = SHAPES_DIRECTIONS[v.direction];
  for (let f = 0; f < frames; f++) {
    const cx = v.start[0] + STEP * f * dx;
    const cy = v.start[1] + STEP * f * dy;
    // Only pixels within the object's box can be covered.
    const i0 = Math.max(0, Math.floor(cy - h) - 1);
    const i1 = Math.min(N - 1, Math.ceil(cy + h) + 1);
    const j0 = Math.max(0, Math.floor(cx - h) - 1);
    const j1 = Math.min(N - 1, Math.ceil(cx + h) + 1);
    const base = f * N * N * 3;
    for (let p = 0; p < N * N; p++) {
      out[base + 3 * p] = bg[0];
      out[base + 3 * p + 1] = bg[1];
      out[base + 3 * p + 2] = bg[2];
    }
    for (let i = i0; i <= i1; i++) {
      for (let j = j0; j <= j1; j++) {
        let hits = 0;
        for (let a = 0; a < SUB; a++) for (let b = 0; b < SUB; b++) if (inside(v.shape, j + (b + 0.5) / SUB, i + (a + 0.5) / SUB, cx, cy, h)) hits++;
        if (!hits) continue;
        const c = hits / (SUB * SUB);
        const o = base + (i * N + j) * 3;
        for (let ch = 0; ch < 3; ch++) out[o + ch] = Math.floor(bg[ch]! * (1 - c) + fg[ch]! * c + 0.5);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// the semantic scorer

export interface ShapesReading {
  background: ShapesBackground;
  /** null where the video has too few frames with an object (then only the background is scored) */
  color: ShapesColor | null;
  shape: ShapesShape | null;
  size: ShapesSize | null;
  /** null also when the object moves less than 15 px */
  direction: ShapesDirection | null;
  framesWithObject: number;
  /** per frame, the number of mask pixels (step 2, counted in every frame): their variance measures flicker */
  maskAreas: number[];
}

/** Median (the mean of the two middle values for an even count). */
function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function nearest<K extends string>(table: Record<K, readonly number[]>, rgb: readonly number[]): K {
  let best: K | null = null;
  let bd = Infinity;
  for (const k of Object.keys(table) as K[]) {
    const c = table[k];
    const d = (c[0]! - rgb[0]!) ** 2 + (c[1]! - rgb[1]!) ** 2 + (c[2]! - rgb[2]!) ** 2;
    if (d < bd) {
      bd = d;
      best = k;
    }
  }
  return best!;
}

/** The scorer's object mask: pixels off the background estimate by more than this (largest channel difference). */
export const SHAPES_MASK_THRESHOLD = 60;

/** The largest per-channel absolute difference of the RGB pixel at byte offset `o` of `px` from the colour `bg`. */
export function backgroundDistance(px: Uint8Array, o: number, bg: readonly number[]): number {
  return Math.max(Math.abs(px[o]! - bg[0]!), Math.abs(px[o + 1]! - bg[1]!), Math.abs(px[o + 2]! - bg[2]!));
}

/** Reads the attributes back from a video's pixels (T frames of 128x128 RGB uint8, frame-major HWC). */
export function scoreShapes(frames: Uint8Array, T: number): ShapesReading {
  const N = SHAPES_SIZE;
  if (!Number.isInteger(T) || T < 1 || frames.length !== T * N * N * 3)
    throw new ValueError(`scoreShapes: expected ${T} frames of ${N}x${N} RGB (${T * N * N * 3} bytes), got ${frames.length} bytes`);
  // 1. background: per-channel median of the four 8x8 corners over all frames
  const corner: number[][] = [[], [], []];
  for (let f = 0; f < T; f++)
    for (const [r0, c0] of [
      [0, 0],
      [0, N - 8],
      [N - 8, 0],
      [N - 8, N - 8],
    ])
      for (let i = r0!; i < r0! + 8; i++)
        for (let j = c0!; j < c0! + 8; j++) for (let ch = 0; ch < 3; ch++) corner[ch]!.push(frames[((f * N + i) * N + j) * 3 + ch]!);
  const bgEst = corner.map(median);
  const background = nearest(SHAPES_BACKGROUNDS, bgEst);
  // 2. object mask per frame
  const colors: number[][] = [];
  const fills: number[] = [];
  const sizes: number[] = [];
  const centroids: [number, number][] = [];
  const maskAreas: number[] = [];
  for (let f = 0; f < T; f++) {
    const diff = new Float64Array(N * N);
    let count = 0;
    let maxDiff = 0;
    let [x0, x1, y0, y1, sx, sy] = [N, -1, N, -1, 0, 0];
    for (let p = 0; p < N * N; p++) {
      const o = (f * N * N + p) * 3;
      const d = backgroundDistance(frames, o, bgEst);
      diff[p] = d;
      if (d > SHAPES_MASK_THRESHOLD) {
        const i = Math.floor(p / N);
        const j = p % N;
        count++;
        if (d > maxDiff) maxDiff = d;
        x0 = Math.min(x0, j);
        x1 = Math.max(x1, j);
        y0 = Math.min(y0, i);
        y1 = Math.max(y1, i);
        sx += j;
        sy += i;
      }
    }
    maskAreas.push(count);
    if (count < 30) continue;
    const strong: number[][] = [[], [], []];
    for (let p = 0; p < N * N; p++) {
      if (diff[p]! > 60 && diff[p]! >= 0.8 * maxDiff) for (let ch = 0; ch < 3; ch++) strong[ch]!.push(frames[(f * N * N + p) * 3 + ch]!);
    }
    if (strong[0]!.length >= 10) colors.push(strong.map(median));
    const w = x1 - x0 + 1;
    const hgt = y1 - y0 + 1;
    fills.push(count / (w * hgt));
    sizes.push((w + hgt) / 2);
    centroids.push([sx / count, sy / count]);
  }
  const framesWithObject = centroids.length;
  if (framesWithObject * 2 < T || !colors.length) return { background, color: null, shape: null, size: null, direction: null, framesWithObject, maskAreas };
  const rgb = [0, 1, 2].map((ch) => median(colors.map((c) => c[ch]!)));
  const fill = median(fills);
  const first = centroids[0]!;
  const last = centroids[centroids.length - 1]!;
  const [ddx, ddy] = [last[0] - first[0], last[1] - first[1]];
  let direction: ShapesDirection | null = null;
  if (Math.hypot(ddx, ddy) >= 15) direction = Math.abs(ddx) >= Math.abs(ddy) ? (ddx < 0 ? 'left' : 'right') : ddy < 0 ? 'up' : 'down';
  return {
    background,
    color: nearest(SHAPES_COLORS, rgb),
    shape: fill > 0.88 ? 'square' : fill > 0.66 ? 'circle' : 'triangle',
    size: median(sizes) < 32 ? 'small' : 'large',
    direction,
    framesWithObject,
    maskAreas,
  };
}

export const SHAPES_ATTRIBUTES = ['color', 'shape', 'size', 'direction', 'background'] as const;
export type ShapesAttribute = (typeof SHAPES_ATTRIBUTES)[number];

/** The share of the five attributes read right, and whether all are. */
export function shapesAccuracy(r: ShapesReading, truth: Omit<ShapesVideo, 'start'>): { accuracy: number; allCorrect: boolean } {
  const right = SHAPES_ATTRIBUTES.filter((k) => r[k] === truth[k]).length;
  return { accuracy: right / 5, allCorrect: right === 5 };
}

/** Population variance of a video's per-frame mask areas (pixels^2): 0 for the world's own renders. */
export function maskAreaVariance(r: ShapesReading): number {
  const a = r.maskAreas;
  if (!a.length) return 0;
  const mean = a.reduce((x, y) => x + y, 0) / a.length;
  return a.reduce((x, y) => x + (y - mean) ** 2, 0) / a.length;
}

/** The semantic score of a group of videos (all in percent, except the counts and the flicker measure). */
export interface ShapesGroupScore {
  videos: number;
  /** mean attribute accuracy, % (null for an empty group, as every other rate) */
  accuracy: number | null;
  /** share of videos with all five attributes right, % */
  all_correct: number | null;
  /** per attribute, the share of videos where it is read right, % */
  per_attribute: Record<ShapesAttribute, number | null>;
  /** mean over videos of the per-frame mask-area variance (pixels^2; flicker: 0 on the world's renders) */
  mask_area_variance: number | null;
  /** mean over videos and frames of the mask area (pixels), to put the variance in scale */
  mask_area_mean: number | null;
}

/** The semantic score of each group: training combinations, held-out ones (by the caption's triple), and all. */
export function shapesScoreSummary(items: readonly { truth: Omit<ShapesVideo, 'start'>; reading: ShapesReading }[]): Record<'train' | 'held_out' | 'all', ShapesGroupScore> {
  const group = (list: typeof items): ShapesGroupScore => {
    const n = list.length;
    const pct = (k: number) => (n ? (100 * k) / n : null);
    const mean = (f: (x: (typeof items)[number]) => number) => (n ? list.reduce((a, x) => a + f(x), 0) / n : null);
    const per = {} as Record<ShapesAttribute, number | null>;
    for (const k of SHAPES_ATTRIBUTES) per[k] = pct(list.filter((x) => x.reading[k] === x.truth[k]).length);
    const acc = mean((x) => shapesAccuracy(x.reading, x.truth).accuracy);
    return {
      videos: n,
      accuracy: acc === null ? null : 100 * acc,
      all_correct: pct(list.filter((x) => shapesAccuracy(x.reading, x.truth).allCorrect).length),
      per_attribute: per,
      mask_area_variance: mean((x) => maskAreaVariance(x.reading)),
      mask_area_mean: mean((x) => (x.reading.maskAreas.length ? x.reading.maskAreas.reduce((a, b) => a + b, 0) / x.reading.maskAreas.length : 0)),
    };
  };
  return { train: group(items.filter((x) => !isHeldOut(x.truth))), held_out: group(items.filter((x) => isHeldOut(x.truth))), all: group(items) };
}
