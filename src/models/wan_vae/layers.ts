/**
 * The Wan VAE's own layer wrappers, kept in this one file so they can be swapped for the shared layer library
 * (src/nn) later without touching the model: the causal 3-D conv with its per-stream feature cache, the per-frame
 * 2-D conv, and RMS_norm. Parameter names (`weight`, `bias`, `gamma`) and shapes are the reference's.
 */
import { ShapeError, fmtShape } from '../../errors.js';
import { Module, type Param } from '../../nn/module.js';
import * as ops from '../../tensor/ops.js';
import { conv3d, normOverAxis } from '../../tensor/nn_ops.js';
import type { Tensor } from '../../tensor/tensor.js';

/**
 * Per-stream state of every layer that carries something from one chunk to the next (keyed by the layer object):
 * a stream owns one, the modules stay stateless and can serve several streams at once.
 */
export class FeatureCache {
  private readonly m = new Map<object, unknown>();
  get<T>(layer: object): T | undefined {
    return this.m.get(layer) as T | undefined;
  }
  set(layer: object, v: unknown): void {
    this.m.set(layer, v);
  }
  clear(): void {
    this.m.clear();
  }
  /** Bytes held (float32), for memory reports. */
  bytes(): number {
    let n = 0;
    for (const v of this.m.values()) {
      const t = v as { size?: number; tail?: { size: number } | null };
      if (t && typeof t.size === 'number') n += 4 * t.size;
      else if (t && t.tail) n += 4 * t.tail.size;
    }
    return n;
  }
}

/** A Module whose children are added from outside (the reference's nn.Sequential / nn.ModuleList). */
export class Container extends Module {
  add<M extends Module>(name: string | number, m: M): M {
    return this.module(String(name), m);
  }
}

/**
 * The reference's CausalConv3d: kernel (kt, kh, kw), padding (pt, ph, pw) becomes 2*pt zero frames in front of the
 * clip and none behind, ph / pw on both sides of H / W. In a stream, the last 2*pt input frames of each chunk are kept
 * in the FeatureCache and stand in for the zero frames of the next chunk, so chunks of any size give the
 * whole-sequence result.
 */
export class CausalConv3d extends Module {
  readonly weight: Param;
  readonly bias: Param;
  readonly front: number;
  readonly ph: number;
  readonly pw: number;
  readonly stride: [number, number, number];

  constructor(cin: number, cout: number, kernel: [number, number, number], padding: [number, number, number] = [0, 0, 0], stride: [number, number, number] = [1, 1, 1]) {
    super();
    this.weight = this.param('weight', [cout, cin, ...kernel]);
    this.bias = this.param('bias', [cout]);
    this.front = 2 * padding[0];
    this.ph = padding[1];
    this.pw = padding[2];
    this.stride = stride;
  }

  forward(x: Tensor, cache: FeatureCache | null = null): Tensor {
    if (this.front === 0) return conv3d(x, this.weight.value, this.bias.value, { padding: [0, 0, this.ph, this.ph, this.pw, this.pw], stride: this.stride });
    const prev = cache?.get<Tensor>(this);
    const inp = prev ? ops.cat([prev, x], 2) : x;
    const zeros = this.front - (prev ? prev.shape[2]! : 0);
    const y = conv3d(inp, this.weight.value, this.bias.value, { padding: [zeros, 0, this.ph, this.ph, this.pw, this.pw], stride: this.stride });
    if (cache) {
      const T = inp.shape[2]!;
      cache.set(this, ops.clone(ops.slice(inp, 2, Math.max(0, T - this.front), T)));
    }
    return y;
  }
}

/**
 * nn.Conv2d applied to every frame of NCTHW (the reference folds time into the batch): a (1, kh, kw) conv3d on the
 * weight (cout, cin, kh, kw). `pads` = [top, bottom, left, right] zeros.
 */
export class FrameConv2d extends Module {
  readonly weight: Param;
  readonly bias: Param;
  constructor(
    cin: number,
    cout: number,
    readonly k: number,
    readonly stride = 1,
    readonly pads: [number, number, number, number] = [0, 0, 0, 0],
  ) {
    super();
    this.weight = this.param('weight', [cout, cin, k, k]);
    this.bias = this.param('bias', [cout]);
  }

  forward(x: Tensor): Tensor {
    const [o, i, kh, kw] = this.weight.shape as [number, number, number, number];
    const w = ops.reshape(this.weight.value, [o, i, 1, kh, kw]);
    const [t, b, l, r] = this.pads;
    return conv3d(x, w, this.bias.value, { padding: [0, 0, t, b, l, r], stride: [1, this.stride, this.stride] });
  }
}

/**
 * The reference's RMS_norm over channels (axis 1): F.normalize(x, dim=1) * sqrt(C) * gamma (+ bias when built with
 * one; the released VAE has none). gamma is (C, 1, 1, 1) (`images=False`) or (C, 1, 1) (`images=True`).
 * x / max(||x||, 1e-12) * sqrt(C) = x / sqrt(mean(x^2)) away from zero; the eps (1e-12)^2 / C under the root makes an
 * all-zero vector map to 0 as F.normalize does, and changes nothing measurable elsewhere.
 */
export class RMSNorm extends Module {
  readonly gamma: Param;
  readonly bias: Param | null;
  constructor(
    readonly dim: number,
    images: boolean,
    withBias = false,
  ) {
    super();
    const shape = images ? [dim, 1, 1] : [dim, 1, 1, 1];
    this.gamma = this.param('gamma', shape);
    this.bias = withBias ? this.param('bias', shape) : null;
  }

  forward(x: Tensor): Tensor {
    if (x.ndim !== 5 || x.shape[1] !== this.dim) throw new ShapeError(`RMS_norm(${this.dim}): expected (N, ${this.dim}, T, H, W), got ${fmtShape(x.shape)}`);
    const g = ops.reshape(this.gamma.value, [this.dim]);
    const b = this.bias ? ops.reshape(this.bias.value, [this.dim]) : null;
    return normOverAxis('rms', x, 1, g, b, 1e-24 / this.dim);
  }
}
