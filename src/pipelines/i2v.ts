/**
 * Image-to-video: text-to-video plus a conditioning image (spec §3.3).
 * - The image is resized to cover the target size and center-cropped (`loadConditionImage`), in [-1, 1].
 * - The conditioning clip has the generated frame count: DC-AE-V: the image in frames 0..t-1 (t = 4, one static
 *   chunk for the first latent frame), zeros after; Wan VAE: the image in frame 0, zeros after. It is encoded with the
 *   autoencoder and moved into the DiT's latent space (x scaling factor for DC-AE-V; the Wan VAE's latents are already
 *   normalised).
 * - The mask has t channels: latent frame 0 all ones, every other latent frame zeros (Wan builds it from a per-pixel-
 *   frame mask, its first frame repeated t times and folded into channels; DC from frames 0..t-1 = 1; both give this).
 * - y = concat[mask (t), condition latent (C)] on channels; the DiT sees [noisy (C), mask, condition] = 2C + t.
 * - The CLIP features of the original (uncropped) image are passed as clip_fea (both CFG passes).
 */
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import { readAllFrames } from '../io/video.js';
import * as ops from '../tensor/ops.js';
import { noGrad, ones, zeros, type Tensor } from '../tensor/tensor.js';
import { findNonFinite } from '../tensor/inplace.js';
import type { VideoAutoencoder } from './autoencoder.js';
import type { ImageEncoder } from './components.js';
import { runGeneration, type GenerationModels, type GenerationOptions, type GenerationPlan, type GenerationResult } from './generation.js';

export interface ConditionImage {
  /** the image as given, (3, H0, W0) in [-1, 1] (what CLIP sees, after its own preprocessing) */
  original: Tensor;
  /** resized to cover the target size and center-cropped, (3, H, W) in [-1, 1] (what the autoencoder encodes) */
  fitted: Tensor;
}

export interface ImageToVideoOptions extends GenerationOptions {
  image: ConditionImage;
}

/** Reads an image file (PNG, JPEG, anything ffmpeg reads; the first frame of a video) for `--image`. */
export async function loadConditionImage(path: string, width: number, height: number): Promise<ConditionImage> {
  const original = await readAllFrames(path, { maxFrames: 1, maxBytes: 2 ** 30 });
  const fitted = await readAllFrames(path, { maxFrames: 1, resize: { width, height, mode: 'cover' } });
  const one = (t: Tensor) => ops.contiguous(ops.squeeze(ops.squeeze(t, 2), 0));
  return { original: one(original), fitted: one(fitted) };
}

function checkImage(t: Tensor, what: string, size?: [number, number]): void {
  if (t.ndim !== 3 || t.shape[0] !== 3) throw new ShapeError(`${what} must be (3, H, W), got ${fmtShape(t.shape)}`);
  if (size && (t.shape[1] !== size[0] || t.shape[2] !== size[1]))
    throw new ShapeError(`${what} is ${t.shape[2]}x${t.shape[1]}, expected the generated size ${size[1]}x${size[0]}`);
  const bad = findNonFinite(t);
  if (bad) throw new ValueError(`${what} contains ${bad.value}`);
}

/** The conditioning channels y (1, t + C, F_lat, h, w) in the DiT's space (spec §3.3). */
export function i2vCondition(ae: VideoAutoencoder, fitted: Tensor, plan: GenerationPlan): Tensor {
  checkImage(fitted, 'the conditioning image', [plan.height, plan.width]);
  const [, C, Fl, h, w] = plan.latentShape;
  const t = ae.temporal;
  if (C !== ae.latentChannels) throw new ShapeError(`plan has ${C} latent channels, the autoencoder ${ae.latentChannels}`);
  const imageFrames = ae.family === 'dc-ae-v' ? t : 1;
  const H = plan.height;
  const W = plan.width;
  return noGrad(() => {
    const img = ops.reshape(fitted, [1, 3, 1, H, W]);
    const s = ae.encodeStream();
    const parts: Tensor[] = [];
    const step = ae.readFrames ?? plan.frames;
    for (let f0 = 0; f0 < plan.frames; f0 += step) {
      const n = Math.min(step, plan.frames - f0);
      const withImage = Math.max(0, Math.min(n, imageFrames - f0));
      const pieces: Tensor[] = [];
      if (withImage > 0) pieces.push(ops.expand(img, [1, 3, withImage, H, W]));
      if (n - withImage > 0) pieces.push(zeros([1, 3, n - withImage, H, W]));
      const z = s.push(ops.contiguous(pieces.length === 1 ? pieces[0]! : ops.cat(pieces, 2)));
      if (z) parts.push(z);
    }
    const tail = s.finish();
    if (tail) parts.push(tail);
    let lat = parts.length === 1 ? parts[0]! : ops.cat(parts, 2);
    if (lat.shape[2]! < Fl || lat.shape[3] !== h || lat.shape[4] !== w)
      throw new ShapeError(`the conditioning clip encoded to ${fmtShape(lat.shape)}, expected (1, ${C}, ${Fl}, ${h}, ${w})`);
    if (lat.shape[2]! > Fl) lat = ops.slice(lat, 2, 0, Fl);
    if (plan.latentScale !== 1) lat = ops.mul(lat, plan.latentScale);
    const bad = findNonFinite(lat);
    if (bad) throw new ValueError(`the autoencoder produced ${bad.value} encoding the conditioning image; its weights are likely corrupt`);
    const mask = Fl > 1 ? ops.cat([ones([1, t, 1, h, w]), zeros([1, t, Fl - 1, h, w])], 2) : ones([1, t, 1, h, w]);
    return ops.contiguous(ops.cat([mask, lat], 1));
  });
}

/** CLIP features (1, L_img, dim) of the original image. */
export function clipFeatures(enc: ImageEncoder, original: Tensor, imageDim: number): Tensor {
  checkImage(original, 'the conditioning image');
  if (enc.dim !== imageDim) throw new ValueError(`the image encoder's output width is ${enc.dim}, but the DiT's image_dim is ${imageDim}; they are not a pair`);
  const f = noGrad(() => enc.features(enc.preprocess([original])));
  if (f.ndim !== 3 || f.shape[0] !== 1 || f.shape[2] !== imageDim)
    throw new ShapeError(`the image encoder returned ${fmtShape(f.shape)}; expected (1, L_img, ${imageDim})`);
  const bad = findNonFinite(f);
  if (bad) throw new ValueError(`the image encoder produced ${bad.value}; its weights are likely corrupt`);
  return f;
}

/** Generates a video from a prompt and a conditioning image into `output`. */
export function imageToVideo(models: GenerationModels, o: ImageToVideoOptions, output: string): Promise<GenerationResult> {
  if (!models.imageEncoder) return Promise.reject(new ValueError('image-to-video needs an image encoder (CLIP); the model has none'));
  const loadImageEncoder = models.imageEncoder;
  return runGeneration(models, o, output, {
    async condition(plan, ae, stage) {
      stage('image');
      const t0 = performance.now();
      let enc: ImageEncoder | null = await loadImageEncoder();
      const clipFea = clipFeatures(enc, o.image.original, models.ditConfig.image_dim);
      enc = null; // CLIP is released before the DiT loads
      const imageSeconds = +((performance.now() - t0) / 1000).toFixed(3);
      stage('condition');
      const y = i2vCondition(ae, o.image.fitted, plan);
      return { y, clipFea, imageSeconds };
    },
  });
}
