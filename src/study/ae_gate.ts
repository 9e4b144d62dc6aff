/**
 * The autoencoder gate of the adapt study: does a trained autoencoder keep what the semantic score reads?
 *
 * Whole-frame PSNR / SSIM cannot tell: the shapes world's object covers 3.5-10% of a frame, so an autoencoder that
 * reconstructs the background alone scores ~20 dB and SSIM ~0.9 (the study's first real run, docs/studies/adapt.md).
 * The gate reconstructs clips and reads each reconstruction with the shapes scorer (../shared/docs/shapes-world.md)
 * against the clip's own attributes, and measures PSNR over the object's pixels (where the original differs from its
 * background colour by more than the scorer's mask threshold) besides the whole frame. A DiT trained on the latents
 * of an autoencoder that fails here cannot score: the study stops before its latents stage.
 */
import { join } from 'node:path';
import { readAllFrames } from '../io/video.js';
import { tensorToUint8Frames } from '../metrics/metrics.js';
import { SHAPES_ATTRIBUTES, SHAPES_BACKGROUNDS, SHAPES_MASK_THRESHOLD, backgroundDistance } from '../metrics/shapes_world.js';
import type { VideoAutoencoder } from '../pipelines/autoencoder.js';
import { reconstructClipWith } from '../train/ae_trainer.js';
import { ValueError } from '../errors.js';
import { scoreClip, type RenderedVideo } from './world.js';

/** A pixel is the object's when a channel differs from the background colour by more than this (the scorer's rule). */
export const OBJECT_THRESHOLD = SHAPES_MASK_THRESHOLD;

export interface GateClip {
  file: string;
  caption: string;
  /** mean attribute accuracy of the reconstruction's reading, 0-100 */
  accuracy: number;
  /** the attributes read wrong */
  wrong: string[];
  /** PSNR (dB, 8-bit peak) over the object's pixel values, and over every pixel value */
  objectPsnr: number;
  psnr: number;
  /**
   * Stray pixels summed over frames: pixels of the reconstruction the scorer's mask takes (off the background colour
   * by more than the threshold) that lie more than STRAY_MARGIN px outside the original object's box. The scorer
   * reads size and shape off the mask's bounding box, so one stray pixel can turn both wrong. `cornerStrays`: those
   * within CORNER px of a frame corner (where zero padding meets a dark background); `cornerDeviation`: the largest
   * deviation from the background colour there, in 8-bit levels, over all frames.
   */
  strays: number;
  cornerStrays: number;
  cornerDeviation: number;
}

/** Pixels this far outside the original object's box are strays (beyond any blur of its edge). */
export const STRAY_MARGIN = 6;
/** A stray within this many pixels of two frame borders is a corner stray. */
export const CORNER = 4;

/**
 * Stray pixels of one reconstructed frame (see GateClip): the original frame gives the object's box, the
 * reconstruction the mask; `size` is the frame's side (square frames).
 */
export function strayPixels(orig: Uint8Array, rec: Uint8Array, bg: readonly number[], size: number): { strays: number; cornerStrays: number; cornerDeviation: number } {
  if (orig.length !== rec.length || orig.length !== size * size * 3) throw new ValueError(`strayPixels: frames of ${orig.length} and ${rec.length} bytes are not ${size}x${size} RGB`);
  const dev = (f: Uint8Array, i: number) => backgroundDistance(f, 3 * i, bg);
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < size * size; i++) {
    if (dev(orig, i) <= OBJECT_THRESHOLD) continue;
    const x = i % size;
    const y = (i - x) / size;
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  let strays = 0;
  let cornerStrays = 0;
  let cornerDeviation = 0;
  const edge = (v: number) => v < CORNER || v >= size - CORNER;
  for (let i = 0; i < size * size; i++) {
    const x = i % size;
    const y = (i - x) / size;
    const corner = edge(x) && edge(y);
    const d = dev(rec, i);
    if (corner) cornerDeviation = Math.max(cornerDeviation, d);
    if (d <= OBJECT_THRESHOLD || (x >= x0 - STRAY_MARGIN && x <= x1 + STRAY_MARGIN && y >= y0 - STRAY_MARGIN && y <= y1 + STRAY_MARGIN)) continue;
    strays++;
    if (corner) cornerStrays++;
  }
  return { strays, cornerStrays, cornerDeviation };
}

export interface GateResult {
  clips: GateClip[];
  /** mean attribute accuracy over the clips, 0-100 */
  accuracy: number;
  /** share of clips with every attribute right, 0-100 */
  allCorrect: number;
  /** PSNR over the object pixel values of all clips pooled, and over every pixel value */
  objectPsnr: number;
  psnr: number;
  /** stray pixels over all clips (GateClip), those at the corners, and the largest corner deviation */
  strays: number;
  cornerStrays: number;
  cornerDeviation: number;
}

const psnrOf = (se: number, n: number) => (n === 0 ? NaN : se === 0 ? Infinity : 10 * Math.log10((255 * 255 * n) / se));

/**
 * Per-frame byte comparison of an original (its background colour `bg`) and its reconstruction: squared errors over
 * the object's values and over all values, and the counts.
 */
export function objectErrors(orig: Uint8Array, rec: Uint8Array, bg: readonly number[]): { objSe: number; objN: number; se: number; n: number } {
  if (orig.length !== rec.length || orig.length % 3 !== 0) throw new ValueError(`objectErrors: frames of ${orig.length} and ${rec.length} bytes differ (or are not RGB)`);
  let objSe = 0;
  let objN = 0;
  let se = 0;
  for (let i = 0; i < orig.length; i += 3) {
    const obj = backgroundDistance(orig, i, bg) > OBJECT_THRESHOLD;
    for (let c = 0; c < 3; c++) {
      const d = (orig[i + c]! - rec[i + c]!) ** 2;
      se += d;
      if (obj) {
        objSe += d;
        objN++;
      }
    }
  }
  return { objSe, objN, se, n: orig.length };
}

/**
 * Reconstructs each video (all its frames, the Wan VAE padding to 1 + 4k and cropping back: train-ae's
 * reconstructClipWith) and scores it (world.ts scoreClip). Calls
 * `onClip` after each one.
 */
export async function gateAutoencoder(ae: VideoAutoencoder, dir: string, videos: readonly RenderedVideo[], onClip?: (done: number, total: number) => void): Promise<GateResult> {
  if (!videos.length) throw new ValueError('autoencoder gate: no videos to reconstruct');
  const clips: GateClip[] = [];
  let objSe = 0;
  let objN = 0;
  let se = 0;
  let n = 0;
  for (const v of videos) {
    const x = await readAllFrames(join(dir, v.file));
    const { y } = reconstructClipWith(ae, x);
    const orig = tensorToUint8Frames(x)[0]!;
    const rec = tensorToUint8Frames(y)[0]!;
    if (orig.length !== rec.length) throw new ValueError(`autoencoder gate: ${v.file} came back with ${rec.length} frames for ${orig.length}`);
    const bg = SHAPES_BACKGROUNDS[v.attrs.background];
    let cSe = 0;
    let cObjSe = 0;
    let cObjN = 0;
    let cN = 0;
    const st = { strays: 0, cornerStrays: 0, cornerDeviation: 0 };
    for (let t = 0; t < orig.length; t++) {
      const e = objectErrors(orig[t]!, rec[t]!, bg);
      cSe += e.se;
      cObjSe += e.objSe;
      cObjN += e.objN;
      cN += e.n;
      const p = strayPixels(orig[t]!, rec[t]!, bg, x.shape[4]!);
      st.strays += p.strays;
      st.cornerStrays += p.cornerStrays;
      st.cornerDeviation = Math.max(st.cornerDeviation, p.cornerDeviation);
    }
    const { accuracy, reading } = scoreClip(rec, v.attrs);
    const wrong = SHAPES_ATTRIBUTES.filter((k) => reading[k] !== v.attrs[k]);
    clips.push({ file: v.file, caption: v.caption, accuracy: 100 * accuracy, wrong, objectPsnr: psnrOf(cObjSe, cObjN), psnr: psnrOf(cSe, cN), ...st });
    objSe += cObjSe;
    objN += cObjN;
    se += cSe;
    n += cN;
    onClip?.(clips.length, videos.length);
  }
  const sum = (f: (c: GateClip) => number) => clips.reduce((a, c) => a + f(c), 0);
  const mean = (f: (c: GateClip) => number) => sum(f) / clips.length;
  return {
    clips,
    accuracy: mean((c) => c.accuracy),
    allCorrect: mean((c) => (c.wrong.length ? 0 : 100)),
    objectPsnr: psnrOf(objSe, objN),
    psnr: psnrOf(se, n),
    strays: sum((c) => c.strays),
    cornerStrays: sum((c) => c.cornerStrays),
    cornerDeviation: Math.max(...clips.map((c) => c.cornerDeviation)),
  };
}
