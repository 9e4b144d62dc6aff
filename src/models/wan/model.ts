/**
 * The Wan-2.1 DiT (`wan/modules/model.py`), module for module, so parameter key paths are Wan's original state-dict
 * names (`blocks.3.cross_attn.norm_k_img.weight`, `head.modulation`, ...). Parameters start shape-only (the 14B
 * presets can be built and inspected without allocating); load weights with loadStateDict or loadWanWeights.
 *
 * Everything is ordinary autograd ops, so training can backpropagate through the whole model.
 */
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import * as ops from '../../tensor/ops.js';
import { attention, layerNorm, ropePairsCosSin } from '../../tensor/nn_ops.js';
import { Tensor } from '../../tensor/tensor.js';
import { Module, type Param } from '../../nn/module.js';
import { Linear } from '../../nn/linear.js';
import { LayerNorm, RMSNorm } from '../../nn/norm.js';
import { Container } from '../../nn/container.js';
import { Mlp } from '../../nn/mlp.js';
import { AttentionLayers, splitHeads } from '../../nn/attention.js';
import { wanRopeAxisDims, validateWanConfig, type WanConfig } from './config.js';

export { Linear };

/** Linear -> activation -> Linear with torch.nn.Sequential key names `0` and `2`. */
function mlp2(cin: number, hidden: number, cout: number, act: (x: Tensor) => Tensor): Mlp {
  return new Mlp(cin, hidden, cout, act, { names: ['0', '2'] });
}

/** `time_projection`: SiLU then Linear, the Linear at Sequential index 1. */
class TimeProjection extends Module {
  readonly proj: Linear;
  constructor(dim: number) {
    super();
    this.proj = this.module('1', new Linear(dim, 6 * dim));
  }
  forward(temb: Tensor): Tensor {
    return this.proj.forward(ops.silu(temb));
  }
}

/** CLIP features -> context tokens: LN -> Linear -> GELU(erf) -> Linear -> LN (torch LayerNorm eps 1e-5). */
class ImageEmbedding extends Module {
  readonly norm1: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly norm2: LayerNorm;
  constructor(imageDim: number, dim: number) {
    super();
    const proj = this.module('proj', new Container());
    this.norm1 = proj.add('0', new LayerNorm(imageDim, 1e-5));
    this.fc1 = proj.add('1', new Linear(imageDim, imageDim));
    this.fc2 = proj.add('3', new Linear(imageDim, dim));
    this.norm2 = proj.add('4', new LayerNorm(dim, 1e-5));
  }
  forward(clip: Tensor): Tensor {
    return this.norm2.forward(this.fc2.forward(ops.gelu(this.fc1.forward(this.norm1.forward(clip)), 'none')));
  }
}

/** cos/sin of the RoPE angles for one latent grid, shaped (N, 1, d/2, 1) to broadcast over (B, N, heads, d/2, 2). */
export interface WanRopeTables {
  cos: Tensor;
  sin: Tensor;
}

/**
 * Wan's 3-D RoPE angles for a (F, H, W) token grid: per token, d/2 angles = [t_dim/2 from the frame index,
 * h_dim/2 from the row, w_dim/2 from the column], angle = pos * 10000^(-2i/axis_dim). Computed in float64 (as Wan
 * does) and rounded once.
 */
export function wanRopeTables(grid: readonly [number, number, number], headDim: number): WanRopeTables {
  const [F, H, W] = grid;
  const half = headDim / 2;
  const dims = wanRopeAxisDims(headDim);
  const inv = dims.map((dim) => Array.from({ length: dim / 2 }, (_, i) => 1 / Math.pow(10000, (2 * i) / dim)));
  const N = F * H * W;
  const cos = new Float32Array(N * half);
  const sin = new Float32Array(N * half);
  let n = 0;
  for (let f = 0; f < F; f++)
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++, n++) {
        let j = n * half;
        for (const [axis, pos] of [
          [0, f],
          [1, h],
          [2, w],
        ] as const) {
          for (const fr of inv[axis]!) {
            const a = pos * fr;
            cos[j] = Math.cos(a);
            sin[j] = Math.sin(a);
            j++;
          }
        }
      }
  return { cos: new Tensor(cos, [N, 1, half, 1]), sin: new Tensor(sin, [N, 1, half, 1]) };
}

export class WanSelfAttention extends AttentionLayers {
  constructor(dim: number, numHeads: number, qkNorm: boolean, eps: number) {
    super(dim, numHeads, { qkNormEps: qkNorm ? eps : null });
  }

  /** Self-attention with Wan's 3-D RoPE on q and k. */
  forward(x: Tensor, rope: WanRopeTables): Tensor {
    return this.attend(x, null, (t) => ropePairsCosSin(t, rope.cos, rope.sin));
  }
}

export class WanCrossAttention extends AttentionLayers {
  readonly k_img: Linear | null;
  readonly v_img: Linear | null;
  readonly norm_k_img: RMSNorm | null;
  constructor(dim: number, numHeads: number, qkNorm: boolean, eps: number, image: boolean) {
    super(dim, numHeads, { qkNormEps: qkNorm ? eps : null });
    this.k_img = image ? this.module('k_img', new Linear(dim, dim)) : null;
    this.v_img = image ? this.module('v_img', new Linear(dim, dim)) : null;
    this.norm_k_img = image && qkNorm ? this.module('norm_k_img', new RMSNorm(dim, eps)) : null;
  }

  /**
   * Keys and values, in heads, of the text context (B, S, D) and, for i2v, of the image tokens: what forward attends
   * to. They depend on the context and the weights only, so a sampler computes them once (WanModel.prepareContext).
   */
  contextKV(ctxText: Tensor, ctxImg: Tensor | null = null): CrossKV {
    const text = this.keysValues(ctxText);
    if (!ctxImg) return { text, img: null };
    if (!this.k_img || !this.v_img) throw new ShapeError('cross-attention got image context but this is not an i2v block');
    let ki = this.k_img.forward(ctxImg);
    if (this.norm_k_img) ki = this.norm_k_img.forward(ki);
    return { text, img: [splitHeads(ki, this.numHeads), splitHeads(this.v_img.forward(ctxImg), this.numHeads)] };
  }

  /**
   * ctxImg: the embedded image tokens (i2v), attended to separately with the same queries; the outputs add. kv: the
   * contexts' keys and values computed before (contextKV); the same arithmetic as computing them here.
   */
  forward(x: Tensor, ctxText: Tensor, ctxImg: Tensor | null = null, kv: CrossKV | null = null): Tensor {
    const qh = this.queries(x);
    const { text, img } = kv ?? this.contextKV(ctxText, ctxImg);
    let out = attention(qh, text[0], text[1]);
    if (img) out = ops.add(out, attention(qh, img[0], img[1]));
    return this.project(out);
  }
}

/** A cross-attention's keys and values in heads (B, heads, S, d): of the text tokens and, for i2v, the image tokens. */
export interface CrossKV {
  text: [Tensor, Tensor];
  img: [Tensor, Tensor] | null;
}

/**
 * A batch's text (and i2v image) context made ready once for many forwards: embedded, and every block's
 * cross-attention keys and values computed (WanModel.prepareContext). Valid for the model that made it while its
 * weights do not change, e.g. through one sampling run; forward gives the same result as with the raw context.
 */
export class WanPreparedContext {
  constructor(
    readonly model: WanModel,
    readonly batch: number,
    readonly text: Tensor,
    readonly image: Tensor | null,
    readonly kv: readonly CrossKV[],
  ) {}
}

export class WanAttentionBlock extends Module {
  readonly modulation: Param;
  readonly self_attn: WanSelfAttention;
  readonly norm3: LayerNorm | null;
  readonly cross_attn: WanCrossAttention;
  readonly ffn: Mlp;
  constructor(readonly cfg: WanConfig) {
    super();
    const { dim, num_heads, qk_norm, eps } = cfg;
    this.modulation = this.param('modulation', [1, 6, dim]);
    this.self_attn = this.module('self_attn', new WanSelfAttention(dim, num_heads, qk_norm, eps));
    this.norm3 = cfg.cross_attn_norm ? this.module('norm3', new LayerNorm(dim, eps)) : null;
    this.cross_attn = this.module('cross_attn', new WanCrossAttention(dim, num_heads, qk_norm, eps, cfg.model_type === 'i2v'));
    this.ffn = this.module('ffn', mlp2(dim, cfg.ffn_dim, dim, (t) => ops.gelu(t, 'tanh')));
  }

  /** x (B, N, D); e0 (B, 6, D) the projected timestep embedding. */
  forward(x: Tensor, e0: Tensor, ctxText: Tensor, ctxImg: Tensor | null, rope: WanRopeTables, kv: CrossKV | null = null): Tensor {
    const eps = this.cfg.eps;
    const [shiftA, scaleA, gateA, shiftF, scaleF, gateF] = ops.split(ops.add(this.modulation.value, e0), 1, 1) as [
      Tensor,
      Tensor,
      Tensor,
      Tensor,
      Tensor,
      Tensor,
    ];
    const modulate = (h: Tensor, shift: Tensor, scale: Tensor) => ops.add(ops.mul(layerNorm(h, null, null, eps), ops.add(scale, 1)), shift);
    x = ops.add(x, ops.mul(this.self_attn.forward(modulate(x, shiftA, scaleA), rope), gateA));
    x = ops.add(x, this.cross_attn.forward(this.norm3 ? this.norm3.forward(x) : x, ctxText, ctxImg, kv));
    return ops.add(x, ops.mul(this.ffn.forward(modulate(x, shiftF, scaleF)), gateF));
  }
}

class WanHead extends Module {
  readonly modulation: Param;
  readonly head: Linear;
  constructor(readonly cfg: WanConfig) {
    super();
    const p = cfg.patch_size;
    this.modulation = this.param('modulation', [1, 2, cfg.dim]);
    this.head = this.module('head', new Linear(cfg.dim, cfg.out_dim * p[0] * p[1] * p[2]));
  }
  /** Modulated by temb (B, D), not by the 6-way projection. */
  forward(x: Tensor, temb: Tensor): Tensor {
    const e = ops.add(this.modulation.value, ops.unsqueeze(temb, 1));
    const shift = ops.slice(e, 1, 0, 1);
    const scale = ops.slice(e, 1, 1, 2);
    return this.head.forward(ops.add(ops.mul(layerNorm(x, null, null, this.cfg.eps), ops.add(scale, 1)), shift));
  }
}

/** Inputs that only some models take. */
export interface WanConditioning {
  /** i2v: CLIP image features (B, L_img, image_dim); L_img is 257 for the released models */
  clipFea?: Tensor | null;
  /** i2v: conditioning channels (B, in_dim - C_x, F, H, W), concatenated after x on the channel axis */
  y?: Tensor | null;
}

/** Sinusoidal timestep embedding, cos first, computed in float64: (B) -> (B, freqDim). */
export function wanTimestepSinusoid(t: ArrayLike<number>, freqDim: number): Tensor {
  const half = freqDim / 2;
  const B = t.length;
  const out = new Float32Array(B * freqDim);
  for (let b = 0; b < B; b++) {
    const tb = t[b]!;
    for (let j = 0; j < half; j++) {
      const a = tb * Math.pow(10000, -j / half);
      out[b * freqDim + j] = Math.cos(a);
      out[b * freqDim + half + j] = Math.sin(a);
    }
  }
  return new Tensor(out, [B, freqDim]);
}

export class WanModel extends Module {
  readonly config: WanConfig;
  readonly patch_embedding_weight: Param;
  readonly patch_embedding_bias: Param;
  readonly text_embedding: Mlp;
  readonly time_embedding: Mlp;
  readonly time_projection: TimeProjection;
  readonly blocks: WanAttentionBlock[];
  readonly head: WanHead;
  readonly img_emb: ImageEmbedding | null;
  private readonly ropeCache = new Map<string, WanRopeTables>();

  constructor(config: WanConfig) {
    super();
    const c = validateWanConfig({ ...config, patch_size: [...config.patch_size] });
    this.config = c;
    const [pt, ph, pw] = c.patch_size;
    const pe = this.module('patch_embedding', new Container());
    this.patch_embedding_weight = pe.addParam('weight', [c.dim, c.in_dim, pt, ph, pw]);
    this.patch_embedding_bias = pe.addParam('bias', [c.dim]);
    this.text_embedding = this.module('text_embedding', mlp2(c.text_dim, c.dim, c.dim, (t) => ops.gelu(t, 'tanh')));
    this.time_embedding = this.module('time_embedding', mlp2(c.freq_dim, c.dim, c.dim, ops.silu));
    this.time_projection = this.module('time_projection', new TimeProjection(c.dim));
    const blocks = this.module('blocks', new Container());
    this.blocks = [];
    for (let i = 0; i < c.num_layers; i++) this.blocks.push(blocks.add(String(i), new WanAttentionBlock(c)));
    this.head = this.module('head', new WanHead(c));
    this.img_emb = c.model_type === 'i2v' ? this.module('img_emb', new ImageEmbedding(c.image_dim, c.dim)) : null;
  }

  get headDim(): number {
    return this.config.dim / this.config.num_heads;
  }

  /** RoPE tables for a token grid (cached: the sampler calls the model many times on one grid). */
  rope(grid: readonly [number, number, number]): WanRopeTables {
    const key = grid.join('x');
    let r = this.ropeCache.get(key);
    if (!r) {
      if (this.ropeCache.size >= 8) this.ropeCache.delete(this.ropeCache.keys().next().value!);
      r = wanRopeTables(grid, this.headDim);
      this.ropeCache.set(key, r);
    }
    return r;
  }

  /**
   * Embedded text context (B, text_len, D): each sample's (L_i, text_dim) embedding zero-padded to text_len first,
   * so the pad rows take part in cross-attention as in Wan. A (B, L, text_dim) tensor is padded the same way.
   */
  embedText(context: readonly Tensor[] | Tensor, B: number): Tensor {
    const { text_len, text_dim } = this.config;
    const padOne = (u: Tensor, what: string): Tensor => {
      if (u.ndim !== 2 || u.shape[1] !== text_dim)
        throw new ShapeError(`${what} must be (L, ${text_dim}) text embeddings, got ${fmtShape(u.shape)}`);
      const L = u.shape[0]!;
      if (L > text_len) throw new ShapeError(`${what} has ${L} tokens, more than text_len ${text_len}`);
      return L === text_len ? u : ops.pad(u, [0, 0, 0, text_len - L]);
    };
    let ctx: Tensor;
    if (context instanceof Tensor) {
      if (context.ndim !== 3 || context.shape[0] !== B)
        throw new ShapeError(`context must be a list of ${B} (L, ${text_dim}) tensors or one (${B}, L, ${text_dim}) tensor, got ${fmtShape(context.shape)}`);
      ctx = ops.stack(ops.split(context, 1, 0).map((u, i) => padOne(ops.squeeze(u, 0), `context[${i}]`)), 0);
    } else {
      if (!Array.isArray(context) || context.length !== B)
        throw new ShapeError(`context must hold one tensor per sample: expected ${B}, got ${Array.isArray(context) ? context.length : typeof context}`);
      ctx = ops.stack(
        context.map((u, i) => padOne(u, `context[${i}]`)),
        0,
      );
    }
    return this.text_embedding.forward(ctx);
  }

  /** temb (B, D) and its 6-way projection e0 (B, 6, D) for timesteps on the 0..1000 scale. */
  embedTime(t: Tensor | readonly number[], B: number): { temb: Tensor; e0: Tensor } {
    let tv: ArrayLike<number>;
    if (t instanceof Tensor) {
      if (t.ndim !== 1 || t.shape[0] !== B) throw new ShapeError(`t must have shape [${B}] (one timestep per sample), got ${fmtShape(t.shape)}`);
      tv = t.readSync();
    } else {
      if (!Array.isArray(t) || t.length !== B) throw new ShapeError(`t must hold ${B} timesteps, got ${Array.isArray(t) ? t.length : typeof t}`);
      tv = t;
    }
    for (let i = 0; i < tv.length; i++) if (!Number.isFinite(tv[i]!)) throw new ValueError(`t[${i}] = ${tv[i]} is not finite`);
    const temb = this.time_embedding.forward(wanTimestepSinusoid(tv, this.config.freq_dim));
    const e0 = ops.reshape(this.time_projection.forward(temb), [B, 6, this.config.dim]);
    return { temb, e0 };
  }

  /** (B, C, F, H, W) -> tokens (B, N, D) and the token grid; conv3d with kernel = stride = patch, as one GEMM. */
  patchify(x: Tensor): { tokens: Tensor; grid: [number, number, number] } {
    const [B, C, F, H, W] = x.shape as [number, number, number, number, number];
    const [pt, ph, pw] = this.config.patch_size;
    const grid: [number, number, number] = [F / pt, H / ph, W / pw];
    const N = grid[0] * grid[1] * grid[2];
    const K = C * pt * ph * pw;
    const patches = ops.reshape(
      ops.permute(ops.reshape(x, [B, C, grid[0], pt, grid[1], ph, grid[2], pw]), [0, 2, 4, 6, 1, 3, 5, 7]),
      [B, N, K],
    );
    const w = ops.reshape(this.patch_embedding_weight.value, [this.config.dim, K]);
    return { tokens: ops.linear(patches, w, this.patch_embedding_bias.value), grid };
  }

  /** Head output (B, N, pt*ph*pw*C) -> (B, C, F, H, W); Wan orders each token's features as (pt, ph, pw, C). */
  unpatchify(y: Tensor, grid: readonly [number, number, number]): Tensor {
    const B = y.shape[0]!;
    const [pt, ph, pw] = this.config.patch_size;
    const C = this.config.out_dim;
    const [F, H, W] = grid;
    const r = ops.reshape(y, [B, F, H, W, pt, ph, pw, C]);
    return ops.reshape(ops.permute(r, [0, 7, 1, 4, 2, 5, 3, 6]), [B, C, F * pt, H * ph, W * pw]);
  }

  /** x and cond.y; cond.clipFea too unless it went into a prepared context (clipPrepared). */
  private checkInputs(x: Tensor, cond: WanConditioning, clipPrepared: boolean): void {
    const c = this.config;
    if (x.ndim !== 5) throw new ShapeError(`x must be (B, C, F, H, W), got ${fmtShape(x.shape)}`);
    const [B, C, F, H, W] = x.shape as [number, number, number, number, number];
    if (B < 1 || F < 1 || H < 1 || W < 1) throw new ShapeError(`x ${fmtShape(x.shape)} is empty`);
    const y = cond.y ?? null;
    if (c.model_type === 'i2v' && !y) throw new ShapeError(`i2v model "${c.name}" needs y, the ${c.in_dim - C} conditioning channels`);
    if (!clipPrepared) this.checkImage(cond, B);
    let cin = C;
    if (y) {
      if (y.ndim !== 5 || y.shape[0] !== B || y.shape[2] !== F || y.shape[3] !== H || y.shape[4] !== W)
        throw new ShapeError(`y ${fmtShape(y.shape)} must be (B, C_y, F, H, W) matching x ${fmtShape(x.shape)}`);
      cin += y.shape[1]!;
    }
    if (cin !== c.in_dim)
      throw new ShapeError(
        y
          ? `x has ${C} channels and y ${y.shape[1]}, together ${cin}, but model "${c.name}" takes in_dim ${c.in_dim}`
          : `x ${fmtShape(x.shape)} has ${C} channels, model "${c.name}" takes in_dim ${c.in_dim}`,
      );
    const p = c.patch_size;
    if (F % p[0] || H % p[1] || W % p[2])
      throw new ShapeError(`x ${fmtShape(x.shape)}: frames, height and width must be multiples of the patch [${p.join(', ')}]`);
  }

  /** cond.clipFea: required by i2v models, refused by t2v ones, (B, L_img, image_dim). */
  private checkImage(cond: WanConditioning, B: number): void {
    const c = this.config;
    const clip = cond.clipFea ?? null;
    if (c.model_type === 'i2v') {
      if (!clip) throw new ShapeError(`i2v model "${c.name}" needs clip_fea (B, 257, ${c.image_dim})`);
    } else if (clip) throw new ShapeError(`t2v model "${c.name}" takes no clip_fea`);
    if (clip && (clip.ndim !== 3 || clip.shape[0] !== B || clip.shape[1]! < 1 || clip.shape[2] !== c.image_dim))
      throw new ShapeError(`clip_fea must be (${B}, L_img, ${c.image_dim}), got ${fmtShape(clip.shape)}`);
  }

  /**
   * The text context (as forward takes it) and, for i2v, cond.clipFea, embedded once with every block's
   * cross-attention keys and values, for many forwards over the same batch (a sampler's steps). forward then skips
   * that work and computes the same thing. cond.y is not part of it: forward still takes it.
   */
  prepareContext(context: readonly Tensor[] | Tensor, B: number, cond: WanConditioning = {}): WanPreparedContext {
    if (!Number.isInteger(B) || B < 1) throw new ShapeError(`prepareContext: batch must be a positive integer, got ${B}`);
    this.checkImage(cond, B);
    return this.embedContext(context, B, cond);
  }

  /** prepareContext's work, on a batch size and image features already checked (forward checks them first). */
  private embedContext(context: readonly Tensor[] | Tensor, B: number, cond: WanConditioning): WanPreparedContext {
    const text = this.embedText(context, B);
    // Wan concatenates [image tokens, text tokens] and the i2v cross-attention splits them again at
    // (length - text_len); keeping the two parts apart is the same computation.
    const image = this.img_emb && cond.clipFea ? this.img_emb.forward(cond.clipFea) : null;
    return new WanPreparedContext(this, B, text, image, this.blocks.map((blk) => blk.cross_attn.contextKV(text, image)));
  }

  /**
   * The flow velocity (B, out_dim, F, H, W) for latents x (B, C, F, H, W), timesteps t (B) on the 0..1000 scale and
   * per-sample text embeddings context[b] (L_b <= text_len, text_dim), or those made ready by prepareContext (then
   * cond.clipFea is in it and not given again); i2v also takes cond.y and cond.clipFea.
   */
  forward(x: Tensor, t: Tensor | readonly number[], context: readonly Tensor[] | Tensor | WanPreparedContext, cond: WanConditioning = {}): Tensor {
    const prepared = context instanceof WanPreparedContext ? context : null;
    if (prepared) {
      if (prepared.model !== this) throw new ValueError('forward: the prepared context was made by another model');
      if (cond.clipFea) throw new ValueError('forward: with a prepared context, give clip_fea to prepareContext, not to forward');
    }
    this.checkInputs(x, cond, prepared !== null);
    const B = x.shape[0]!;
    if (prepared && prepared.batch !== B) throw new ShapeError(`forward: the prepared context holds ${prepared.batch} samples, x has ${B}`);
    const xin = cond.y ? ops.cat([x, cond.y], 1) : x;
    const { tokens, grid } = this.patchify(xin);
    const { temb, e0 } = this.embedTime(t, B);
    const ctx = prepared ?? this.embedContext(context as readonly Tensor[] | Tensor, B, cond);
    const rope = this.rope(grid);
    let h = tokens;
    this.blocks.forEach((blk, i) => (h = blk.forward(h, e0, ctx.text, ctx.image, rope, ctx.kv[i])));
    return this.unpatchify(this.head.forward(h, temb), grid);
  }
}
