/**
 * Training losses for the autoencoder: a differentiable SSIM loss over video frames, a small per-frame PatchGAN
 * discriminator for an optional adversarial stage, and the hinge GAN losses. Everything is built from the autograd
 * ops, so gradients come for free on both backends.
 *
 * SSIM loss definition (bench/torch_train_ae.py `ssim_loss` is its PyTorch twin):
 *   x, y (B, C, T, H, W) in [-1, 1] -> a = (x + 1) / 2, b = (y + 1) / 2 in [0, 1];
 *   G = separable Gaussian window (windowSize taps, sigma; taps exp(-(k/sigma)^2 / 2) for k = -(n-1)/2 .. (n-1)/2,
 *       normalised to sum 1 in float64, then rounded to float32), applied per channel per frame as a depthwise conv3d
 *       with kernel (1, n, 1) then (1, 1, n), no padding ('valid': the map is (H-n+1) x (W-n+1));
 *   mu_x = G*a, mu_y = G*b, s_xx = G*(a a) - mu_x^2, s_yy = G*(b b) - mu_y^2, s_xy = G*(a b) - mu_x mu_y;
 *   ssim = ((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_xx + s_yy + C2)), C1 = 0.01^2, C2 = 0.03^2;
 *   loss = 1 - mean(ssim) over batch, channels, frames and the valid map.
 * With data range 1 this is the 'crop' SSIM of src/metrics (torchmetrics <= 1.4.1) on the same images, except that
 * the metric clamps the variances at 0 (only rounding can make them negative) and computes in float64.
 * The five blurs are five separate depthwise conv pairs: at (1, 3, 16, 128, 128) on 2 threads that measured 16 ms
 * forward / 25 ms forward+backward against 17 / 53 ms for one conv pair over the channel-stacked [a, b, aa, bb, ab]
 * (stacking makes the backward run through the target's blurs too, and each channel slice's backward materialises
 * a full-size gradient); separately, blurs of a target that needs no gradient are skipped by autograd.
 */
import { ShapeError, ValueError, fmtShape } from '../errors.js';
import * as ops from '../tensor/ops.js';
import { conv3d, l1Loss, mseLoss } from '../tensor/nn_ops.js';
import { Tensor } from '../tensor/tensor.js';
import { Module, type Param } from '../nn/module.js';

export interface SsimLossOptions {
  /** taps of the Gaussian window (default 11) */
  windowSize?: number;
  /** standard deviation of the Gaussian in pixels (default 1.5) */
  sigma?: number;
}

export const SSIM_LOSS_C1 = 0.01 ** 2;
export const SSIM_LOSS_C2 = 0.03 ** 2;

/** The normalised 1-D Gaussian window: float64 taps normalised to sum 1, then rounded to float32. */
export function gaussianWindow(windowSize = 11, sigma = 1.5): Float32Array {
  if (!Number.isInteger(windowSize) || windowSize < 1) throw new ValueError(`gaussianWindow: windowSize must be a positive integer, got ${windowSize}`);
  if (!(sigma > 0) || !Number.isFinite(sigma)) throw new ValueError(`gaussianWindow: sigma must be a finite positive number, got ${sigma}`);
  const g = new Float64Array(windowSize);
  const c = (windowSize - 1) / 2;
  let s = 0;
  for (let i = 0; i < windowSize; i++) {
    const k = (i - c) / sigma;
    g[i] = Math.exp(-(k * k) / 2);
    s += g[i]!;
  }
  const out = new Float32Array(windowSize);
  for (let i = 0; i < windowSize; i++) out[i] = g[i]! / s;
  return out;
}

/** Depthwise blur weights for `channels` channels, (channels, 1, 1, n, 1) and (channels, 1, 1, 1, n); cached. */
const kernelCache = new Map<string, [Tensor, Tensor]>();
function blurKernels(channels: number, n: number, sigma: number): [Tensor, Tensor] {
  const key = `${channels}:${n}:${sigma}`;
  let k = kernelCache.get(key);
  if (!k) {
    const g = gaussianWindow(n, sigma);
    const d = new Float32Array(channels * n);
    for (let c = 0; c < channels; c++) d.set(g, c * n);
    // Constants (no gradient), shared by every call with the same geometry.
    k = [new Tensor(d, [channels, 1, 1, n, 1]), new Tensor(d.slice(), [channels, 1, 1, 1, n])];
    if (kernelCache.size > 32) kernelCache.clear();
    kernelCache.set(key, k);
  }
  return k;
}

/** The SSIM map (B, C, T, H-n+1, W-n+1) of two videos in [-1, 1] (see the file comment for the definition). */
export function ssimMap(x: Tensor, y: Tensor, opts: SsimLossOptions = {}): Tensor {
  const n = opts.windowSize ?? 11;
  const sigma = opts.sigma ?? 1.5;
  if (!Number.isInteger(n) || n < 1) throw new ValueError(`ssimLoss: windowSize must be a positive integer, got ${n}`);
  if (!(sigma > 0) || !Number.isFinite(sigma)) throw new ValueError(`ssimLoss: sigma must be a finite positive number, got ${sigma}`);
  if (x.ndim !== 5 || y.ndim !== 5) throw new ShapeError(`ssimLoss: expects two (B, C, T, H, W) videos, got ${fmtShape(x.shape)} and ${fmtShape(y.shape)}`);
  if (x.shape.some((d, i) => d !== y.shape[i])) throw new ShapeError(`ssimLoss: shapes differ: ${fmtShape(x.shape)} vs ${fmtShape(y.shape)}`);
  const [B, C, T, H, W] = x.shape as [number, number, number, number, number];
  if (B * C * T === 0) throw new ShapeError(`ssimLoss: empty input ${fmtShape(x.shape)}`);
  if (H < n || W < n) throw new ShapeError(`ssimLoss: frames ${H}x${W} of ${fmtShape(x.shape)} are smaller than the ${n}x${n} window`);
  const a = ops.affine(x, 0.5, 0.5);
  const b = ops.affine(y, 0.5, 0.5);
  const [kh, kw] = blurKernels(C, n, sigma);
  const blur = (t: Tensor) => conv3d(conv3d(t, kh, null, { groups: C }), kw, null, { groups: C });
  const mx = blur(a);
  const my = blur(b);
  const sxxRaw = blur(ops.square(a));
  const syyRaw = blur(ops.square(b));
  const sxyRaw = blur(ops.mul(a, b));
  const mx2 = ops.square(mx);
  const my2 = ops.square(my);
  const mxy = ops.mul(mx, my);
  const sxx = ops.sub(sxxRaw, mx2);
  const syy = ops.sub(syyRaw, my2);
  const sxy = ops.sub(sxyRaw, mxy);
  const num = ops.mul(ops.affine(mxy, 2, SSIM_LOSS_C1), ops.affine(sxy, 2, SSIM_LOSS_C2));
  const den = ops.mul(ops.affine(ops.add(mx2, my2), 1, SSIM_LOSS_C1), ops.affine(ops.add(sxx, syy), 1, SSIM_LOSS_C2));
  return ops.div(num, den);
}

/** 1 - mean(SSIM map): a scalar, 0 for identical inputs. */
export function ssimLoss(x: Tensor, y: Tensor, opts: SsimLossOptions = {}): Tensor {
  return ops.affine(ops.mean(ssimMap(x, y, opts)), -1, 1);
}

// ---------------------------------------------------------------------------------------------------------------
// foreground weighting (train-ae --fg-weight)

/**
 * Per-value weights (B, C, T, H, W) for a reconstruction loss on videos that are mostly one flat colour (the shapes
 * world: one small object on a plain background). A sample's dominant colour is the per-channel median of its window;
 * a pixel's weight is 1 + `weight` * d / 2, where d in [0, 2] is the largest per-channel distance of the pixel from
 * that colour (values in [-1, 1]); all three channels of a pixel share it. The weights are scaled to mean 1 over the
 * batch, so the loss keeps its scale. `weight` 0 gives all ones. No gradient (a constant of the batch).
 *
 * Why (docs/studies/adapt.md "The autoencoders missed the object"): when the object is a few percent of the pixels,
 * an autoencoder first fits the background, and the object's share of an unweighted loss is then too small for it to
 * be learned in a training budget; the weight makes them count more (at 20, a 3% object carries about a third of the
 * loss). It did not by itself make the study's autoencoders learn the shapes world's objects (docs/studies/adapt.md).
 *
 * With `y` (the reconstruction, train-ae --fg-of both) d is the larger of the original's and the reconstruction's
 * distances from the original's dominant colour: values the reconstruction puts off the background where the original
 * has none (halos, stray pixels at the frame corners) weigh like the object. Still a constant of the batch: no
 * gradient flows through the weights.
 */
export function foregroundWeights(x: Tensor, weight: number, y?: Tensor): Tensor {
  if (!(weight >= 0) || !Number.isFinite(weight)) throw new ValueError(`foregroundWeights: weight must be finite and >= 0, got ${weight}`);
  if (x.ndim !== 5) throw new ShapeError(`foregroundWeights: expects a (B, C, T, H, W) video, got ${fmtShape(x.shape)}`);
  if (x.size === 0) throw new ShapeError(`foregroundWeights: empty video ${fmtShape(x.shape)}`);
  if (y && fmtShape(y.shape) !== fmtShape(x.shape)) throw new ShapeError(`foregroundWeights: the reconstruction ${fmtShape(y.shape)} and the video ${fmtShape(x.shape)} differ in shape`);
  const [B, C, T, H, W] = x.shape as [number, number, number, number, number];
  const plane = T * H * W;
  const xd = x.readSync();
  const yd = y ? y.readSync() : null;
  const out = new Float32Array(x.size);
  const med = new Float64Array(C);
  const hist = new Uint32Array(4096);
  const binSum = new Float64Array(4096);
  let sum = 0;
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      // the median through a histogram on a fine grid of [-1, 1]: the mean of the values in the median's bin (exact
      // for 8-bit video, whose 256 levels fall in distinct bins); values outside [-1, 1] count at the ends
      hist.fill(0);
      binSum.fill(0);
      const base = (b * C + c) * plane;
      for (let i = 0; i < plane; i++) {
        const v = xd[base + i]!;
        const k = Math.min(4095, Math.max(0, Math.round(((v + 1) / 2) * 4095)));
        hist[k]!++;
        binSum[k]! += v;
      }
      let k = 0;
      for (let acc = 0; k < 4095; k++) if ((acc += hist[k]!) * 2 >= plane) break;
      med[c] = binSum[k]! / hist[k]!;
    }
    for (let i = 0; i < plane; i++) {
      let d = 0;
      for (let c = 0; c < C; c++) d = Math.max(d, Math.abs(xd[(b * C + c) * plane + i]! - med[c]!));
      if (yd) for (let c = 0; c < C; c++) d = Math.max(d, Math.abs(yd[(b * C + c) * plane + i]! - med[c]!));
      const w = 1 + (weight * Math.min(d, 2)) / 2;
      for (let c = 0; c < C; c++) out[(b * C + c) * plane + i] = w;
      sum += w * C;
    }
  }
  const scale = out.length / sum;
  for (let i = 0; i < out.length; i++) out[i] = out[i]! * scale;
  return new Tensor(out, x.shape);
}

/**
 * train-ae's reconstruction term: L1 or MSE, weighted by foregroundWeights when fgWeight > 0 (the foreground of the
 * original, `fgOf` 'orig', or of the original and the reconstruction, 'both').
 */
export function reconstructionLoss(y: Tensor, x: Tensor, kind: 'l1' | 'mse', fgWeight: number, fgOf: 'orig' | 'both' = 'orig'): Tensor {
  if (fgWeight > 0) return weightedReconLoss(y, x, foregroundWeights(x, fgWeight, fgOf === 'both' ? y : undefined), kind);
  return kind === 'mse' ? mseLoss(y, x) : l1Loss(y, x);
}

/** mean(w * |y - x|) (l1) or mean(w * (y - x)^2) (mse): a reconstruction loss with per-value weights of mean 1. */
export function weightedReconLoss(y: Tensor, x: Tensor, w: Tensor, kind: 'l1' | 'mse'): Tensor {
  const e = ops.sub(y, x);
  return ops.mean(ops.mul(kind === 'mse' ? ops.square(e) : ops.abs(e), w));
}

// ---------------------------------------------------------------------------------------------------------------
// adversarial stage

class ModuleList extends Module {
  add<M extends Module>(name: string, m: M): M {
    return this.module(name, m);
  }
}

class Conv extends Module {
  readonly weight: Param;
  readonly bias: Param;
  constructor(cin: number, cout: number, kernel: readonly [number, number, number]) {
    super();
    this.weight = this.param('weight', [cout, cin, ...kernel]);
    this.bias = this.param('bias', [cout]);
  }
}

/** LeakyReLU as max(x, slope x) (0 < slope < 1), differentiable through `maximum`. */
export function leakyRelu(x: Tensor, slope = 0.2): Tensor {
  if (!(slope > 0 && slope < 1)) throw new ValueError(`leakyRelu: slope must be in (0, 1), got ${slope}`);
  return ops.maximum(x, ops.mul(x, slope));
}

export interface PatchDiscriminatorOptions {
  inChannels?: number;
  /** channels of the first conv; doubled by each further strided conv, capped at 8x */
  width?: number;
  /** strided (1,4,4)/(1,2,2) convs before the logits conv */
  layers?: number;
}

/**
 * Per-frame PatchGAN: `layers` convs of kernel (1,4,4), stride (1,2,2), padding (0,1,1) (frame-wise 2-D, halving H
 * and W), each followed by LeakyReLU 0.2, then a (1,3,3) conv with spatial padding 1 to a 1-channel logits map:
 * (B, C, T, H, W) -> (B, 1, T, H / 2^layers, W / 2^layers). No normalisation layers. Keys: `convs.<i>.weight`,
 * `convs.<i>.bias`, `out.weight`, `out.bias`. Built shape-only; call init(seed) or loadStateDict.
 */
export class PatchDiscriminator extends Module {
  readonly convs: Conv[] = [];
  readonly out: Conv;
  readonly inChannels: number;

  constructor(opts: PatchDiscriminatorOptions = {}) {
    super();
    const cin = opts.inChannels ?? 3;
    const width = opts.width ?? 32;
    const layers = opts.layers ?? 3;
    for (const [name, v] of [
      ['inChannels', cin],
      ['width', width],
      ['layers', layers],
    ] as const)
      if (!Number.isInteger(v) || v < 1) throw new ValueError(`PatchDiscriminator: ${name} must be a positive integer, got ${v}`);
    this.inChannels = cin;
    const list = this.module('convs', new ModuleList());
    let c = cin;
    for (let i = 0; i < layers; i++) {
      const co = width * Math.min(2 ** i, 8);
      const conv = new Conv(c, co, [1, 4, 4]);
      this.convs.push(list.add(String(i), conv));
      c = co;
    }
    this.out = this.module('out', new Conv(c, 1, [1, 3, 3]));
  }

  /** Weights N(0, 0.02^2), biases 0, deterministic from the seed. */
  init(seed: number): void {
    this.initRandom(seed, 0.02);
  }

  forward(x: Tensor): Tensor {
    if (x.ndim !== 5 || x.shape[1] !== this.inChannels)
      throw new ShapeError(`PatchDiscriminator expects (B, ${this.inChannels}, T, H, W), got ${fmtShape(x.shape)}`);
    let h = x;
    for (const c of this.convs) h = leakyRelu(conv3d(h, c.weight.value, c.bias.value, { stride: [1, 2, 2], padding: [0, 1, 1] }), 0.2);
    return conv3d(h, this.out.weight.value, this.out.bias.value, { padding: [0, 1, 1] });
  }
}

/** Hinge loss of the discriminator: mean(relu(1 - real)) + mean(relu(1 + fake)). */
export function hingeDLoss(realLogits: Tensor, fakeLogits: Tensor): Tensor {
  return ops.add(ops.mean(ops.relu(ops.affine(realLogits, -1, 1))), ops.mean(ops.relu(ops.affine(fakeLogits, 1, 1))));
}

/** Hinge loss of the generator: -mean(fake). */
export function hingeGLoss(fakeLogits: Tensor): Tensor {
  return ops.neg(ops.mean(fakeLogits));
}
