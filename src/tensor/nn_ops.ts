/**
 * Layer-level tensor ops with autograd: conv3d, softmax, layer/RMS norms, attention, 3-D pixel (un)shuffle, nearest
 * upsampling, average pooling, rotary embedding of adjacent pairs, and the MSE / L1 losses.
 */
import { backend } from '../backend/index.js';
import type { Conv3dParams } from '../backend/backend.js';
import { DTypeError, ShapeError, ValueError, fmtShape } from '../errors.js';
import * as ops from './ops.js';
import { Tensor, attach, denseF32, denseStored, empty, f32Of, normAxis, numelOf, zeros } from './tensor.js';

/** Dense f32 data of t (a view when contiguous f32; bf16 / f16 / i32 inputs such as norm weights are widened). */
function dense(t: Tensor): Float32Array {
  return denseF32(t);
}

// ---------------------------------------------------------------------------------------------------------------
// conv3d

export interface Conv3dOptions {
  /** number, [st, sh, sw] */
  stride?: number | readonly [number, number, number];
  /** number, [pt, ph, pw] (symmetric), or [t_front, t_back, h_top, h_bottom, w_left, w_right] */
  padding?: number | readonly number[];
  groups?: number;
}

function triple(v: number | readonly number[] | undefined, def: number, what: string): [number, number, number] {
  if (v === undefined) return [def, def, def];
  if (typeof v === 'number') return [v, v, v];
  if (v.length !== 3) throw new ValueError(`conv3d: ${what} must be a number or 3 numbers, got [${v.join(', ')}]`);
  return [v[0]!, v[1]!, v[2]!];
}

export function conv3dParams(xShape: readonly number[], wShape: readonly number[], opts: Conv3dOptions = {}): Conv3dParams {
  if (xShape.length !== 5) throw new ShapeError(`conv3d: input must be 5-D (N, C, T, H, W), got ${fmtShape(xShape)}`);
  if (wShape.length !== 5)
    throw new ShapeError(`conv3d: weight must be 5-D (Cout, Cin/groups, KT, KH, KW), got ${fmtShape(wShape)}`);
  const stride = triple(opts.stride, 1, 'stride');
  let padding: [number, number, number, number, number, number];
  const p = opts.padding ?? 0;
  if (typeof p === 'number') padding = [p, p, p, p, p, p];
  else if (p.length === 3) padding = [p[0]!, p[0]!, p[1]!, p[1]!, p[2]!, p[2]!];
  else if (p.length === 6) padding = [p[0]!, p[1]!, p[2]!, p[3]!, p[4]!, p[5]!];
  else throw new ValueError(`conv3d: padding must be a number, 3 or 6 numbers, got [${p.join(', ')}]`);
  const groups = opts.groups ?? 1;
  for (const s of stride) if (!Number.isInteger(s) || s < 1) throw new ValueError(`conv3d: stride must be positive integers, got [${stride.join(', ')}]`);
  for (const q of padding) if (!Number.isInteger(q) || q < 0) throw new ValueError(`conv3d: padding must be non-negative integers, got [${padding.join(', ')}]`);
  if (!Number.isInteger(groups) || groups < 1) throw new ValueError(`conv3d: groups must be a positive integer, got ${groups}`);
  const [N, C, T, H, W] = xShape as [number, number, number, number, number];
  const [O, Cg, KT, KH, KW] = wShape as [number, number, number, number, number];
  if (C !== Cg * groups || O % groups !== 0)
    throw new ShapeError(
      `conv3d: input ${fmtShape(xShape)} has ${C} channels but weight ${fmtShape(wShape)} with groups=${groups} expects ${Cg * groups}` +
        (O % groups !== 0 ? ` (and ${O} output channels are not divisible by groups)` : ''),
    );
  if (KT < 1 || KH < 1 || KW < 1) throw new ShapeError(`conv3d: weight ${fmtShape(wShape)} has an empty kernel`);
  const To = Math.floor((T + padding[0] + padding[1] - KT) / stride[0]) + 1;
  const Ho = Math.floor((H + padding[2] + padding[3] - KH) / stride[1]) + 1;
  const Wo = Math.floor((W + padding[4] + padding[5] - KW) / stride[2]) + 1;
  if (To < 1 || Ho < 1 || Wo < 1 || N < 1 || C < 1 || O < 1)
    throw new ShapeError(
      `conv3d: input ${fmtShape(xShape)} with kernel ${fmtShape(wShape)}, padding [${padding.join(', ')}] gives an empty output [${N}, ${O}, ${To}, ${Ho}, ${Wo}]`,
    );
  return {
    xShape: [N, C, T, H, W],
    wShape: [O, Cg, KT, KH, KW],
    yShape: [N, O, To, Ho, Wo],
    stride,
    padding,
    groups,
  };
}

/** torch.nn.functional.conv3d, with per-axis (and asymmetric) zero padding. */
export function conv3d(x: Tensor, w: Tensor, b?: Tensor | null, opts: Conv3dOptions = {}): Tensor {
  const p = conv3dParams(x.shape, w.shape, opts);
  if (b && (b.ndim !== 1 || b.shape[0] !== p.wShape[0]))
    throw new ShapeError(`conv3d: bias ${fmtShape(b.shape)} does not match ${p.wShape[0]} output channels`);
  if (w.dtype === 'i32') throw new DTypeError('conv3d: the weight is an i32 tensor; it needs f32, bf16 or f16 data');
  if (w.dtype !== 'f32' && p.groups === 1 && w.size * 4 > ops.WIDEN_BLOCK_BYTES) return conv3dWiden(p, x, w, b ?? null);
  const xd = dense(x);
  const wd = dense(w);
  const out = empty(p.yShape);
  const B = backend();
  B.conv3dForward(p, xd, wd, b ? dense(b) : null, f32Of(out));
  const inputs = b ? [x, w, b] : [x, w];
  return attach(out, 'conv3d', inputs, (g) => gradList(w, b, conv3dGrads(p, x, xd, w, wd, b ?? null, dense(g))));
}

/**
 * conv3d with a big bf16 / f16 weight (groups 1): output channels in blocks, each block's weights widened into a
 * buffer of at most WIDEN_BLOCK_BYTES, so the weight is never widened whole. The input gradient sums the blocks'
 * contributions; the weight (not f32) gets none; an f32 bias does.
 */
function conv3dWiden(p: Conv3dParams, x: Tensor, w: Tensor, b: Tensor | null): Tensor {
  const B = backend();
  const [O, Cg, KT, KH, KW] = p.wShape;
  const [N, , To, Ho, Wo] = p.yShape;
  const per = Cg * KT * KH * KW;
  const sp = To * Ho * Wo;
  const bo = Math.min(O, Math.max(1, Math.floor(ops.WIDEN_BLOCK_BYTES / 4 / per)));
  const half = w.dtype as 'bf16' | 'f16';
  const stored = denseStored(w) as Uint16Array;
  const wbuf = new Float32Array(bo * per);
  const blocks = (fn: (o0: number, no: number, wd: Float32Array, pb: Conv3dParams) => void) => {
    for (let o0 = 0; o0 < O; o0 += bo) {
      const no = Math.min(bo, O - o0);
      const wd = wbuf.subarray(0, no * per);
      B.widen(half, stored.subarray(o0 * per, (o0 + no) * per), wd);
      fn(o0, no, wd, { ...p, wShape: [no, Cg, KT, KH, KW], yShape: [N, no, To, Ho, Wo] });
    }
  };
  const xd = dense(x);
  const out = empty(p.yShape);
  const o = f32Of(out);
  const bd = b ? dense(b) : null;
  const ybuf = new Float32Array(N * bo * sp);
  blocks((o0, no, wd, pb) => {
    const y = ybuf.subarray(0, N * no * sp);
    B.conv3dForward(pb, xd, wd, bd ? bd.subarray(o0, o0 + no) : null, y);
    B.stridedScatter(y, [N, no, sp], { data: o, offset: o0 * sp, strides: [O * sp, sp, 1] });
  });
  const inputs = b ? [x, w, b] : [x, w];
  return attach(out, 'conv3d', inputs, (g) => {
    const gd = dense(g);
    let gx: Tensor | null = null;
    if (x.requiresGrad) {
      gx = zeros(x.shape);
      const gxd = f32Of(gx);
      const part = new Float32Array(gxd.length);
      const gyb = new Float32Array(N * bo * sp);
      blocks((o0, no, wd, pb) => {
        const gy = gyb.subarray(0, N * no * sp);
        B.stridedCopy({ data: gd, offset: o0 * sp, strides: [O * sp, sp, 1] }, [N, no, sp], gy);
        B.conv3dBackwardData(pb, gy, wd, part);
        B.axpy(gxd, part, 1);
      });
    }
    let gb: Tensor | null = null;
    if (b && b.requiresGrad) {
      // gb[o] = sum over n and positions of g[n, o, ...]
      const perNO = new Float32Array(N * O);
      B.reduce('sum', gd, N * O, sp, 1, perNO);
      gb = empty([O]);
      B.reduce('sum', perNO, 1, N, O, f32Of(gb));
    }
    return b ? [gx, null, gb] : [gx, null];
  });
}

interface ConvGrads {
  gx: Tensor | null;
  gw: Tensor | null;
  gb: Tensor | null;
}

/** The gradients of conv3d(x, w, b) for the upstream gradient gd: gx when x needs one, gw and gb when w or b does. */
function conv3dGrads(p: Conv3dParams, x: Tensor, xd: Float32Array, w: Tensor, wd: Float32Array, b: Tensor | null, gd: Float32Array): ConvGrads {
  const B = backend();
  const gx = x.requiresGrad ? empty(x.shape) : null;
  if (gx) B.conv3dBackwardData(p, gd, wd, f32Of(gx));
  let gw: Tensor | null = null;
  let gb: Tensor | null = null;
  if (w.requiresGrad || (b && b.requiresGrad)) {
    gw = empty(w.shape);
    gb = b ? empty(b.shape) : null;
    B.conv3dBackwardWeights(p, xd, gd, f32Of(gw), gb ? f32Of(gb) : null);
  }
  return { gx, gw, gb };
}

/** The gradient list for inputs [x, w(, b)], null where an input needs none. */
function gradList(w: Tensor, b: Tensor | null | undefined, r: ConvGrads): (Tensor | null)[] {
  return b ? [r.gx, w.requiresGrad ? r.gw : null, b.requiresGrad ? r.gb : null] : [r.gx, r.gw];
}

/**
 * DC-AE-V's chunk-causal conv over a whole clip without a feature cache, as one conv. The temporal kernel has 3 taps;
 * inside each chunk of `chunk` frames it sees both neighbours, across a chunk boundary only the left one (the previous
 * chunk's last frame; zeros before the clip), and the right neighbour of a chunk's last frame is zero. A plain conv
 * over the whole clip with one zero frame at each end differs only at the last frame of every chunk but the last: it
 * adds the third tap applied to the next chunk's first frame. That term is subtracted (a conv of the n-1 chunk-start
 * frames with the negated third tap, scatter-added into the n-1 chunk-end outputs), and the backward pass removes the
 * same term from both gradients. Equal to convolving chunk by chunk with the context frames concatenated (the
 * model's streaming path) up to float rounding, with none of its per-chunk copies, slices and gradient sums.
 * Stride 1, groups 1; spatial zero padding `ps` on each side.
 */
export function chunkCausalConv3d(x: Tensor, w: Tensor, b: Tensor | null, chunk: number, ps: number): Tensor {
  if (w.ndim !== 5 || w.shape[2] !== 3) throw new ShapeError(`chunkCausalConv3d: weight must be (Cout, Cin, 3, KH, KW), got ${fmtShape(w.shape)}`);
  if (x.ndim !== 5) throw new ShapeError(`chunkCausalConv3d: input must be 5-D (N, C, T, H, W), got ${fmtShape(x.shape)}`);
  const T = x.shape[2]!;
  if (!Number.isInteger(chunk) || chunk < 1 || T % chunk !== 0)
    throw new ValueError(`chunkCausalConv3d: ${T} frames are not a whole number of chunks of ${chunk}`);
  const p = conv3dParams(x.shape, w.shape, { padding: [1, 1, ps, ps, ps, ps] });
  if (b && (b.ndim !== 1 || b.shape[0] !== p.wShape[0]))
    throw new ShapeError(`chunkCausalConv3d: bias ${fmtShape(b.shape)} does not match ${p.wShape[0]} output channels`);
  const [N, C, , H, W] = p.xShape;
  const [O, , , KH, KW] = p.wShape;
  const [, , To, Ho, Wo] = p.yShape;
  const n = T / chunk;
  const xd = dense(x);
  const wd = dense(w);
  const out = empty(p.yShape);
  const B = backend();
  B.conv3dForward(p, xd, wd, b ? dense(b) : null, f32Of(out));
  // boundary term: frames chunk, 2 chunk, ..., (n-1) chunk of x through -w[:, :, 2] into outputs chunk-1, 2 chunk-1, ...
  const nb = n - 1;
  const p2 = nb ? conv3dParams([N, C, nb, H, W], [O, C, 1, KH, KW], { padding: [0, 0, ps, ps, ps, ps] }) : null;
  const xb = nb ? denseF32(ops.slice(x.detach(), 2, chunk, T, chunk)) : null;
  const w2neg = nb ? new Float32Array(O * C * KH * KW) : null;
  const k2 = KH * KW;
  const yEnds = (data: Float32Array) => ({ data, offset: (chunk - 1) * Ho * Wo, strides: [O * To * Ho * Wo, To * Ho * Wo, chunk * Ho * Wo, Wo, 1] });
  if (p2 && xb && w2neg) {
    for (let oc = 0; oc < O * C; oc++) for (let k = 0; k < k2; k++) w2neg[oc * k2 + k] = -wd[(oc * 3 + 2) * k2 + k]!;
    const corr = new Float32Array(numelOf(p2.yShape));
    B.conv3dForward(p2, xb, w2neg, null, corr);
    B.stridedAccumulate(corr, p2.yShape, yEnds(f32Of(out)));
  }
  const inputs = b ? [x, w, b] : [x, w];
  return attach(out, 'chunk_causal_conv3d', inputs, (g) => {
    const gd = dense(g);
    // the gradient at the chunk-end outputs that the boundary term saw
    let gEnds: Float32Array | null = null;
    if (p2) {
      gEnds = new Float32Array(numelOf(p2.yShape));
      B.stridedCopy(yEnds(gd), p2.yShape, gEnds);
    }
    const r = conv3dGrads(p, x, xd, w, wd, b, gd);
    if (r.gx && p2 && gEnds && w2neg) {
      const gxb = new Float32Array(N * C * nb * H * W);
      B.conv3dBackwardData(p2, gEnds, w2neg, gxb);
      B.stridedAccumulate(gxb, [N, C, nb, H, W], { data: f32Of(r.gx), offset: chunk * H * W, strides: [C * T * H * W, T * H * W, chunk * H * W, W, 1] });
    }
    if (r.gw && p2 && gEnds && xb) {
      // d out / d w[:, :, 2] loses the boundary term: subtract its weight gradient
      const g2 = new Float32Array(O * C * k2);
      B.conv3dBackwardWeights(p2, xb, gEnds, g2, null);
      const gws = f32Of(r.gw);
      for (let oc = 0; oc < O * C; oc++) for (let k = 0; k < k2; k++) gws[(oc * 3 + 2) * k2 + k]! -= g2[oc * k2 + k]!;
    }
    return gradList(w, b, r);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// softmax

function softmaxImpl(x: Tensor, axis: number, log: boolean): Tensor {
  const ax = normAxis(axis, x.ndim, x.shape);
  if (ax !== x.ndim - 1) {
    const moved = ops.transpose(x, ax, -1);
    return ops.transpose(softmaxImpl(moved, -1, log), ax, -1);
  }
  const cols = x.shape[ax]!;
  if (cols === 0) throw new ShapeError(`softmax over an empty axis of shape ${fmtShape(x.shape)}`);
  const rows = x.size / cols;
  const out = empty(x.shape);
  const B = backend();
  if (rows) B.softmax(dense(x), rows, cols, log, f32Of(out));
  return attach(out, log ? 'log_softmax' : 'softmax', [x], (g) => {
    const gx = empty(x.shape);
    if (rows) B.softmaxBackward(f32Of(out), dense(g), rows, cols, log, f32Of(gx));
    return [gx];
  });
}

export const softmax = (x: Tensor, axis = -1) => softmaxImpl(x, axis, false);
export const logSoftmax = (x: Tensor, axis = -1) => softmaxImpl(x, axis, true);

// ---------------------------------------------------------------------------------------------------------------
// norms

/**
 * Normalises axis `axis` at every other position: 'layer' subtracts the mean, 'rms' does not. w and b have the
 * size of that axis. Covers LayerNorm / RMSNorm over the last dim and DC-AE-V's RMSNorm3d over channels of NCTHW.
 */
export function normOverAxis(
  kind: 'layer' | 'rms',
  x: Tensor,
  axis: number,
  w: Tensor | null,
  b: Tensor | null,
  eps: number,
): Tensor {
  const ax = normAxis(axis, x.ndim, x.shape);
  const c = x.shape[ax]!;
  if (c === 0) throw new ShapeError(`${kind} norm over an empty axis of shape ${fmtShape(x.shape)}`);
  for (const [p, name] of [
    [w, 'weight'],
    [b, 'bias'],
  ] as const)
    if (p && (p.ndim !== 1 || p.shape[0] !== c))
      throw new ShapeError(`${kind} norm: ${name} ${fmtShape(p.shape)} does not match axis ${ax} of ${fmtShape(x.shape)} (size ${c})`);
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new ValueError(`${kind} norm: eps must be a finite non-negative number, got ${eps}`);
  const outer = numelOf(x.shape.slice(0, ax));
  const inner = numelOf(x.shape.slice(ax + 1));
  const xd = dense(x);
  const out = empty(x.shape);
  const npos = outer * inner;
  const mean = kind === 'layer' ? new Float32Array(npos) : null;
  const rstd = new Float32Array(npos);
  const B = backend();
  const wd = w ? dense(w) : null;
  if (npos) B.norm(kind, xd, outer, c, inner, wd, b ? dense(b) : null, eps, f32Of(out), mean, rstd);
  const inputs = [x, ...(w ? [w] : []), ...(b ? [b] : [])];
  return attach(out, `${kind}_norm`, inputs, (g) => {
    const gx = empty(x.shape);
    const gw = w ? empty(w.shape) : null;
    const gb = b ? empty(b.shape) : null;
    if (npos) B.normBackward(kind, xd, outer, c, inner, wd, mean, rstd, dense(g), f32Of(gx), gw ? f32Of(gw) : null, gb ? f32Of(gb) : null);
    return [gx, ...(w ? [gw] : []), ...(b ? [gb] : [])];
  });
}

/** LayerNorm over the last axis (optional affine). */
export function layerNorm(x: Tensor, w: Tensor | null = null, b: Tensor | null = null, eps = 1e-5): Tensor {
  return normOverAxis('layer', x, -1, w, b, eps);
}

/** RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * w. */
export function rmsNorm(x: Tensor, w: Tensor | null = null, eps = 1e-6): Tensor {
  return normOverAxis('rms', x, -1, w, null, eps);
}

/** DC-AE-V's RMSNorm3d: RMS over the channel axis (1) of NCTHW, with weight and bias. */
export function rmsNorm3d(x: Tensor, w: Tensor | null, b: Tensor | null, eps = 1e-5): Tensor {
  if (x.ndim !== 5) throw new ShapeError(`rmsNorm3d expects NCTHW input, got ${fmtShape(x.shape)}`);
  return normOverAxis('rms', x, 1, w, b, eps);
}

// ---------------------------------------------------------------------------------------------------------------
// attention

/**
 * Scaled dot-product attention without a mask: q (..., Lq, D), k (..., Lk, D), v (..., Lk, Dv) with equal leading
 * axes -> (..., Lq, Dv). Memory stays O(L) per head (never an Lq x Lk matrix). scale defaults to 1/sqrt(D).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, scale?: number): Tensor {
  if (q.ndim < 2 || k.ndim !== q.ndim || v.ndim !== q.ndim)
    throw new ShapeError(`attention: q, k, v must have the same rank >= 2, got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}, ${fmtShape(v.shape)}`);
  const lead = q.shape.slice(0, -2);
  const [Lq, D] = q.shape.slice(-2) as [number, number];
  const [Lk, Dk] = k.shape.slice(-2) as [number, number];
  const [Lv, Dv] = v.shape.slice(-2) as [number, number];
  const sameLead = (t: Tensor) => t.shape.slice(0, -2).every((d, i) => d === lead[i]);
  if (!sameLead(k) || !sameLead(v) || Dk !== D || Lv !== Lk)
    throw new ShapeError(`attention: incompatible q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}`);
  if (D === 0 || Dv === 0 || Lk === 0) throw new ShapeError(`attention: empty head or key axis in q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}`);
  const s = scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(s)) throw new ValueError(`attention: scale must be finite, got ${s}`);
  const bh = numelOf(lead);
  const qd = dense(q),
    kd = dense(k),
    vd = dense(v);
  const out = empty([...lead, Lq, Dv]);
  const lse = new Float32Array(bh * Lq);
  const B = backend();
  if (bh && Lq) B.attention(qd, kd, vd, bh, Lq, Lk, D, Dv, s, f32Of(out), lse);
  return attach(out, 'attention', [q, k, v], (g) => {
    const gq = empty(q.shape),
      gk = empty(k.shape),
      gv = empty(v.shape);
    if (bh && Lq) B.attentionBackward(qd, kd, vd, f32Of(out), lse, dense(g), bh, Lq, Lk, D, Dv, s, f32Of(gq), f32Of(gk), f32Of(gv));
    return [gq, gk, gv];
  });
}

// ---------------------------------------------------------------------------------------------------------------
// DC-AE-V pixel (un)shuffle, resampling, pooling

function check5(x: Tensor, what: string): [number, number, number, number, number] {
  if (x.ndim !== 5) throw new ShapeError(`${what} expects NCTHW input, got ${fmtShape(x.shape)}`);
  return x.shape as unknown as [number, number, number, number, number];
}

/**
 * (B, C, T, H, W) -> (B, C*tf*sf*sf, T/tf, H/sf, W/sf); output channel ((c*tf + dt)*sf + dh)*sf + dw holds input
 * (c, t*tf + dt, h*sf + dh, w*sf + dw): the DC-AE-V channel order.
 */
export function pixelUnshuffle3d(x: Tensor, sf: number, tf: number): Tensor {
  const [B, C, T, H, W] = check5(x, 'pixelUnshuffle3d');
  if (!(sf >= 1 && tf >= 1 && Number.isInteger(sf) && Number.isInteger(tf)))
    throw new ValueError(`pixelUnshuffle3d: factors must be positive integers, got sf=${sf}, tf=${tf}`);
  if (T % tf || H % sf || W % sf)
    throw new ShapeError(`pixelUnshuffle3d: ${fmtShape(x.shape)} is not divisible by temporal ${tf} / spatial ${sf}`);
  const r = ops.reshape(x, [B, C, T / tf, tf, H / sf, sf, W / sf, sf]);
  const p = ops.permute(r, [0, 1, 3, 5, 7, 2, 4, 6]);
  return ops.reshape(p, [B, C * tf * sf * sf, T / tf, H / sf, W / sf]);
}

/** The exact inverse of pixelUnshuffle3d: (B, C, T, H, W) -> (B, C/(tf*sf*sf), T*tf, H*sf, W*sf). */
export function pixelShuffle3d(x: Tensor, sf: number, tf: number): Tensor {
  const [B, C, T, H, W] = check5(x, 'pixelShuffle3d');
  if (!(sf >= 1 && tf >= 1 && Number.isInteger(sf) && Number.isInteger(tf)))
    throw new ValueError(`pixelShuffle3d: factors must be positive integers, got sf=${sf}, tf=${tf}`);
  const f = tf * sf * sf;
  if (C % f) throw new ShapeError(`pixelShuffle3d: ${C} channels of ${fmtShape(x.shape)} are not divisible by ${f}`);
  const r = ops.reshape(x, [B, C / f, tf, sf, sf, T, H, W]);
  const p = ops.permute(r, [0, 1, 5, 2, 6, 3, 7, 4]);
  return ops.reshape(p, [B, C / f, T * tf, H * sf, W * sf]);
}

/** Nearest-neighbour upsampling of NCTHW by integer factors [ft, fh, fw]. */
export function upsampleNearest3d(x: Tensor, factors: readonly [number, number, number]): Tensor {
  const [B, C, T, H, W] = check5(x, 'upsampleNearest3d');
  const [ft, fh, fw] = factors;
  for (const f of factors) if (!Number.isInteger(f) || f < 1) throw new ValueError(`upsampleNearest3d: factors must be positive integers, got [${factors.join(', ')}]`);
  const r = ops.reshape(x, [B, C, T, 1, H, 1, W, 1]);
  const e = ops.expand(r, [B, C, T, ft, H, fh, W, fw]);
  return ops.reshape(e, [B, C, T * ft, H * fh, W * fw]);
}

/** Average pooling of NCTHW with kernel = stride and no padding (torch avg_pool3d; trailing remainders dropped). */
export function avgPool3d(x: Tensor, kernel: readonly [number, number, number]): Tensor {
  const [B, C, T, H, W] = check5(x, 'avgPool3d');
  const [kt, kh, kw] = kernel;
  for (const k of kernel) if (!Number.isInteger(k) || k < 1) throw new ValueError(`avgPool3d: kernel must be positive integers, got [${kernel.join(', ')}]`);
  const To = Math.floor(T / kt),
    Ho = Math.floor(H / kh),
    Wo = Math.floor(W / kw);
  if (!To || !Ho || !Wo) throw new ShapeError(`avgPool3d: input ${fmtShape(x.shape)} is smaller than kernel [${kernel.join(', ')}]`);
  let c = x;
  if (To * kt !== T) c = ops.slice(c, 2, 0, To * kt);
  if (Ho * kh !== H) c = ops.slice(c, 3, 0, Ho * kh);
  if (Wo * kw !== W) c = ops.slice(c, 4, 0, Wo * kw);
  const r = ops.reshape(c, [B, C, To, kt, Ho, kh, Wo, kw]);
  return ops.mean(r, [3, 5, 7]);
}

// ---------------------------------------------------------------------------------------------------------------
// rotary embedding

/**
 * Rotates adjacent pairs (x[2i], x[2i+1]) of the last axis by angles[..., i]:
 * (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos). `angles` broadcasts against x with last axis D/2.
 */
export function ropePairs(x: Tensor, angles: Tensor): Tensor {
  const D = x.shape[x.ndim - 1]!;
  if (D % 2) throw new ShapeError(`ropePairs: last axis of ${fmtShape(x.shape)} must be even`);
  const cos = ops.unsqueeze(ops.cos(angles), -1);
  const sin = ops.unsqueeze(ops.sin(angles), -1);
  return ropePairsCosSin(x, cos, sin);
}

/** ropePairs with precomputed cos/sin of shape (..., D/2, 1) broadcastable against x viewed as (..., D/2, 2). */
export function ropePairsCosSin(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const D = x.shape[x.ndim - 1]!;
  const pairs = ops.reshape(x, [...x.shape.slice(0, -1), D / 2, 2]);
  const x0 = ops.slice(pairs, -1, 0, 1);
  const x1 = ops.slice(pairs, -1, 1, 2);
  const y0 = ops.sub(ops.mul(x0, cos), ops.mul(x1, sin));
  const y1 = ops.add(ops.mul(x0, sin), ops.mul(x1, cos));
  return ops.reshape(ops.cat([y0, y1], -1), x.shape);
}

// ---------------------------------------------------------------------------------------------------------------
// losses

function checkSame(a: Tensor, b: Tensor, what: string): void {
  if (a.ndim !== b.ndim || a.shape.some((d, i) => d !== b.shape[i]))
    throw new ShapeError(`${what}: prediction ${fmtShape(a.shape)} and target ${fmtShape(b.shape)} differ`);
  if (a.size === 0) throw new ShapeError(`${what}: empty tensors ${fmtShape(a.shape)}`);
}

export function mseLoss(a: Tensor, b: Tensor): Tensor {
  checkSame(a, b, 'mseLoss');
  return ops.mean(ops.square(ops.sub(a, b)));
}

export function l1Loss(a: Tensor, b: Tensor): Tensor {
  checkSame(a, b, 'l1Loss');
  return ops.mean(ops.abs(ops.sub(a, b)));
}

// ---------------------------------------------------------------------------------------------------------------
// embedding

/**
 * Rows of `weight` (V, D) picked by integer ids of any shape: out has shape (...ids.shape, D), f32. `ids` is an i32
 * tensor (token ids); an f32 tensor of integral values is accepted too. Every id must be in [0, V). `weight` may be
 * f32, bf16 or f16 (only the picked rows are widened). The gradient reaches an f32 `weight` only (rows scatter-added;
 * ids have none).
 */
export function embedding(ids: Tensor, weight: Tensor): Tensor {
  if (weight.ndim !== 2) throw new ShapeError(`embedding: weight must be 2-D (vocab, dim), got ${fmtShape(weight.shape)}`);
  if (weight.dtype === 'i32') throw new DTypeError('embedding: weight is an i32 tensor; it needs f32, bf16 or f16 data');
  if (ids.dtype === 'bf16' || ids.dtype === 'f16') throw new DTypeError(`embedding: ids must be i32 (or integral f32), got a ${ids.dtype} tensor`);
  const [V, D] = weight.shape as [number, number];
  const idv = denseStored(ids) as Int32Array | Float32Array;
  for (let i = 0; i < idv.length; i++) {
    const id = idv[i]!;
    if (!Number.isInteger(id) || id < 0 || id >= V)
      throw new ValueError(`embedding: id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
  }
  const out = empty([...ids.shape, D]);
  const o = f32Of(out);
  if (weight.dtype === 'f32') {
    const w = dense(weight);
    for (let i = 0; i < idv.length; i++) o.set(w.subarray(idv[i]! * D, idv[i]! * D + D), i * D);
  } else {
    // bf16 / f16: widen only the rows picked, straight into the output.
    const half = weight.dtype;
    const w = weight.isContiguous() ? (denseStored(weight) as Uint16Array) : null;
    const B = backend();
    for (let i = 0; i < idv.length; i++) {
      const r = idv[i]!;
      const row = w ? w.subarray(r * D, r * D + D) : (denseStored(ops.slice(weight, 0, r, r + 1)) as Uint16Array);
      B.widen(half, row, o.subarray(i * D, i * D + D));
    }
  }
  const ix = Int32Array.from(idv);
  return attach(out, 'embedding', [weight], (g) => {
    const gw = zeros(weight.shape);
    const gd = dense(g);
    const gs = f32Of(gw);
    for (let i = 0; i < ix.length; i++) {
      const r = ix[i]! * D;
      for (let j = 0; j < D; j++) gs[r + j]! += gd[i * D + j]!;
    }
    return [gw];
  });
}
