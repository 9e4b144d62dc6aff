/**
 * Wan's CLIP preprocessing (`CLIPModel.visual` of wan/modules/clip.py): each image (3, H, W) in [-1, 1] is resized
 * straight to S x S (no crop, aspect not kept) with torch's plain bicubic (`F.interpolate(mode='bicubic',
 * align_corners=False)`: Keys cubic a = -0.75, source (i + 0.5) in/out - 0.5, taps clamped at the border, no
 * antialiasing even when shrinking, values not clamped), then mapped to [0, 1] by x * 0.5 + 0.5 and normalised per
 * channel, (x - mean) / std. The images are concatenated in list order into (B, 3, S, S).
 *
 * The resize is src/metrics/baseline.ts's torch-exact bicubicResize (float64 accumulation, so it agrees with torch's
 * float32 arithmetic to float32 rounding); the affine steps are done in float64 and rounded once.
 */
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import { bicubicResize } from '../../metrics/baseline.js';
import { type Tensor, firstNonFinite, tensor } from '../../tensor/tensor.js';
import type { ClipConfig } from './config.js';

/** The largest image side taken (the pixels of one 16384 x 16384 RGB image are 3 GiB as float32). */
export const CLIP_MAX_IMAGE_SIDE = 16384;

/** Checks one image (3, H, W) and returns its values; `what` names it in errors (e.g. "image1"). */
export function checkClipImage(img: Tensor, what: string): Float32Array {
  if (img.ndim !== 3 || img.shape[0] !== 3)
    throw new ShapeError(`${what}: a CLIP input image must be (3, H, W) (RGB planes in [-1, 1]), got ${fmtShape(img.shape)}`);
  const [, H, W] = img.shape as [number, number, number];
  if (H < 1 || W < 1) throw new ShapeError(`${what}: the image is empty (${fmtShape(img.shape)})`);
  if (H > CLIP_MAX_IMAGE_SIDE || W > CLIP_MAX_IMAGE_SIDE) throw new ShapeError(`${what}: ${H}x${W} is larger than the ${CLIP_MAX_IMAGE_SIDE}-pixel sides taken`);
  const v = img.readSync();
  const i = firstNonFinite(v);
  if (i >= 0) throw new ValueError(`${what}: the image holds a non-finite value (${v[i]} at element ${i})`);
  return v;
}

/** images (3, H, W) in [-1, 1] -> pixel_values (B, 3, S, S) with S = config.image_size. */
export function clipPreprocess(images: readonly Tensor[], config: Pick<ClipConfig, 'image_size' | 'mean' | 'std'>): Tensor {
  if (!Array.isArray(images) || images.length === 0) throw new ValueError('CLIP preprocess: no images given (expected one or more (3, H, W) tensors)');
  const S = config.image_size;
  const plane = S * S;
  const out = new Float32Array(images.length * 3 * plane);
  images.forEach((img, b) => {
    const [, H, W] = img.shape as [number, number, number];
    const v = checkClipImage(img, images.length > 1 ? `image ${b}` : 'image');
    const r = bicubicResize(v, 3, H, W, S, S);
    for (let c = 0; c < 3; c++) {
      const m = config.mean[c]!;
      const s = config.std[c]!;
      const o = (b * 3 + c) * plane;
      for (let i = 0; i < plane; i++) out[o + i] = (r[c * plane + i]! * 0.5 + 0.5 - m) / s;
    }
  });
  return tensor(out, [images.length, 3, S, S]);
}
