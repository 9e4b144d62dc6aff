/**
 * DC-AE-V: the chunk-causal deep-compression video autoencoder, module for module as the reference, so parameter
 * key paths equal the official state dict (`encoder.stages.1.op_list.0.main.conv1.conv.weight`, ...).
 *
 * Temporal design per conv (ConvSpec.mode):
 * - chunk_causal: time is cut into chunks of `chunk` frames; inside a chunk the conv is bidirectional, across chunks
 *   causal: each chunk's left context is the last frame(s) of the previous chunk of this layer's own input (or the
 *   feature cache for the first chunk of a tile, or zeros), its right context is always zero. When T is not a
 *   multiple of the chunk the reference's inference build falls back to a plain zero-padded conv without the cache;
 *   we do the same.
 * - causal: zero padding of kt-1 frames on the left only.
 * - non_causal: zero padding of kt//2 on both sides.
 */
import { ShapeError, ValueError, fmtShape } from '../../errors.js';
import * as ops from '../../tensor/ops.js';
import { pixelShuffle3d, pixelUnshuffle3d } from '../../tensor/nn_ops.js';
import type { Tensor } from '../../tensor/tensor.js';
import { Module } from '../../nn/module.js';
import { Conv3d, type FeatureCache, type TemporalPadding } from '../../nn/conv.js';
import { RMSNorm3d } from '../../nn/norm.js';
import { Container } from '../../nn/container.js';
import { firstActiveStage, validateConfig, type ConvSpec, type DCAEVConfig, type ResampleSpec } from './config.js';

/** Per-layer temporal context carried between tiles of one streaming encode or decode. */
export type { FeatureCache };

export interface RunContext {
  /** null: whole-clip semantics (no cache read or written) */
  cache: FeatureCache | null;
}

const PADDING: Record<ConvSpec['mode'], TemporalPadding> = { non_causal: 'zero', causal: 'causal', chunk_causal: 'chunk-causal' };

/** conv -> optional RMSNorm3d -> optional SiLU, with the temporal padding of its spec (the conv does the padding). */
export class ConvLayer3d extends Module {
  readonly spec: ConvSpec;
  readonly conv: Conv3d;
  readonly norm: RMSNorm3d | null;
  readonly act: boolean;

  constructor(cin: number, cout: number, spec: ConvSpec, opts: { bias: boolean; norm: boolean; act: boolean }) {
    super();
    this.spec = spec;
    this.conv = this.module(
      'conv',
      new Conv3d(cin, cout, [spec.kt, spec.ks, spec.ks], {
        bias: opts.bias,
        temporalPadding: PADDING[spec.mode],
        ...(spec.mode === 'chunk_causal' ? { chunk: spec.chunk! } : {}),
      }),
    );
    this.norm = opts.norm ? this.module('norm', new RMSNorm3d(cout, 1e-5)) : null;
    this.act = opts.act;
  }

  /** The feature-cache key: the dotted module path + '.' (set by the model after construction). */
  get cacheKey(): string {
    return this.conv.cacheKey;
  }
  set cacheKey(k: string) {
    this.conv.cacheKey = k;
  }

  forward(x: Tensor, ctx: RunContext): Tensor {
    let y = this.conv.forward(x, ctx.cache);
    if (this.norm) y = this.norm.forward(y);
    if (this.act) y = ops.silu(y);
    return y;
  }
}

/** conv1 (bias, SiLU) -> conv2 (no bias, RMSNorm3d); used inside a residual wrapper as `main`. */
class ResBlock3d extends Module {
  readonly conv1: ConvLayer3d;
  readonly conv2: ConvLayer3d;
  constructor(c: number, spec: ConvSpec) {
    super();
    this.conv1 = this.module('conv1', new ConvLayer3d(c, c, spec, { bias: true, norm: false, act: true }));
    this.conv2 = this.module('conv2', new ConvLayer3d(c, c, spec, { bias: false, norm: true, act: false }));
  }
  forward(x: Tensor, ctx: RunContext): Tensor {
    return this.conv2.forward(this.conv1.forward(x, ctx), ctx);
  }
}

/** ConvLayer3d(in -> out/(sf^2 tf), bias) then pixel_unshuffle_3d. */
class ConvPixelUnshuffleDown extends Module {
  readonly conv: ConvLayer3d;
  constructor(
    cin: number,
    cout: number,
    readonly spec: ResampleSpec,
  ) {
    super();
    const f = spec.sf * spec.sf * spec.tf;
    if (cout % f) throw new ValueError(`ConvPixelUnshuffle: ${cout} output channels not divisible by ${f}`);
    this.conv = this.module('conv', new ConvLayer3d(cin, cout / f, spec, { bias: true, norm: false, act: false }));
  }
  forward(x: Tensor, ctx: RunContext): Tensor {
    return pixelUnshuffle3d(this.conv.forward(x, ctx), this.spec.sf, this.spec.tf);
  }
}

/** ConvLayer3d(in -> out*sf^2 tf, bias) then pixel_shuffle_3d. */
class ConvPixelShuffleUp extends Module {
  readonly conv: ConvLayer3d;
  constructor(
    cin: number,
    cout: number,
    readonly spec: ResampleSpec,
  ) {
    super();
    this.conv = this.module('conv', new ConvLayer3d(cin, cout * spec.sf * spec.sf * spec.tf, spec, { bias: true, norm: false, act: false }));
  }
  forward(x: Tensor, ctx: RunContext): Tensor {
    return pixelShuffle3d(this.conv.forward(x, ctx), this.spec.sf, this.spec.tf);
  }
}

type Shortcut = (x: Tensor) => Tensor;

/** out = main(x) + shortcut(x) (no activation after, no norm before). */
class ResidualBlock extends Module {
  readonly main: ResBlock3d | ConvPixelUnshuffleDown | ConvPixelShuffleUp;
  constructor(
    main: ResBlock3d | ConvPixelUnshuffleDown | ConvPixelShuffleUp,
    private readonly shortcut: Shortcut | null,
  ) {
    super();
    this.main = this.module('main', main);
  }
  forward(x: Tensor, ctx: RunContext): Tensor {
    const m = this.main.forward(x, ctx);
    return ops.add(m, this.shortcut ? this.shortcut(x) : x);
  }
}

/** Encoder shortcut: pixel-unshuffle, then average consecutive channel groups down to `out`. */
function averagingShortcut(cin: number, cout: number, sf: number, tf: number): Shortcut {
  const total = cin * sf * sf * tf;
  if (total % cout) throw new ValueError(`down shortcut: ${total} channels cannot be averaged into ${cout}`);
  const g = total / cout;
  return (x) => {
    const u = pixelUnshuffle3d(x, sf, tf);
    if (g === 1) return u;
    const [B, , T, H, W] = u.shape as [number, number, number, number, number];
    return ops.mean(ops.reshape(u, [B, cout, g, T, H, W]), 2);
  };
}

/** Decoder shortcut: repeat each channel r times consecutively, then pixel-shuffle. */
function duplicatingShortcut(cin: number, cout: number, sf: number, tf: number): Shortcut {
  const total = cout * sf * sf * tf;
  if (total % cin) throw new ValueError(`up shortcut: ${cin} channels cannot be duplicated into ${total}`);
  const r = total / cin;
  return (x) => pixelShuffle3d(r === 1 ? x : ops.repeatInterleave(x, r, 1), sf, tf);
}

/** op_list: a ModuleList keyed 0, 1, ... */
class OpSequential extends Container {}

interface Forwardable {
  forward(x: Tensor, ctx: RunContext): Tensor;
}

class Stage extends Module {
  readonly opList: OpSequential;
  constructor() {
    super();
    this.opList = this.module('op_list', new OpSequential());
  }
  forward(x: Tensor, ctx: RunContext): Tensor {
    let y = x;
    for (const m of this.opList.items) y = (m as unknown as Forwardable).forward(y, ctx);
    return y;
  }
}

/** stages: keyed by stage id, with gaps where a stage has depth 0. */
class StageList extends Container {
  readonly stages: (Stage | null)[] = [];
  set(i: number, s: Stage): void {
    this.add(String(i), s);
    this.stages[i] = s;
  }
}

export class Encoder extends Module {
  readonly projectIn: ConvPixelUnshuffleDown;
  readonly stageList: StageList;
  readonly projectOut: ConvLayer3d;

  constructor(cfg: DCAEVConfig) {
    super();
    const e = cfg.encoder;
    const n = e.widthList.length;
    const first = firstActiveStage(e.depthList);
    this.projectIn = this.module('project_in', new ConvPixelUnshuffleDown(cfg.inChannels, e.widthList[first]!, e.projectIn));
    this.stageList = this.module('stages', new StageList());
    for (let s = 0; s < n; s++) {
      const d = e.depthList[s]!;
      if (d === 0) continue;
      const st = new Stage();
      const w = e.widthList[s]!;
      for (let i = 0; i < d; i++) st.opList.append(new ResidualBlock(new ResBlock3d(w, e.blockType[s]!), null));
      if (s < n - 1) {
        const spec = e.downsampleBlockType[s]!;
        const wo = e.widthList[s + 1]!;
        st.opList.append(new ResidualBlock(new ConvPixelUnshuffleDown(w, wo, spec), averagingShortcut(w, wo, spec.sf, spec.tf)));
      }
      this.stageList.set(s, st);
    }
    const last = lastActiveWidth(e.widthList, e.depthList);
    this.projectOut = this.module('project_out', new ConvLayer3d(last, cfg.latentChannels, e.projectOut, { bias: true, norm: false, act: false }));
  }

  forward(x: Tensor, ctx: RunContext): Tensor {
    let y = this.projectIn.forward(x, ctx);
    for (const st of this.stageList.stages) if (st) y = st.forward(y, ctx);
    return this.projectOut.forward(y, ctx);
  }
}

function lastActiveWidth(widths: number[], depths: number[]): number {
  // The encoder's output width: that of the last stage (stages with depth 0 at the end keep the previous width).
  let w = widths[firstActiveStage(depths)]!;
  for (let s = 0; s < widths.length; s++) if (depths[s]! > 0) w = widths[s]!;
  return w;
}

class DecoderHead extends Module {
  readonly opList: OpSequential;
  readonly norm: RMSNorm3d;
  readonly up: ConvPixelShuffleUp;
  constructor(cin: number, cout: number, spec: ResampleSpec) {
    super();
    this.opList = this.module('op_list', new OpSequential());
    this.norm = this.opList.append(new RMSNorm3d(cin, 1e-5));
    this.opList.append(new Module()); // op_list.1 is the parameter-free SiLU
    this.up = this.opList.append(new ConvPixelShuffleUp(cin, cout, spec));
  }
  forward(x: Tensor, ctx: RunContext): Tensor {
    return this.up.forward(ops.silu(this.norm.forward(x)), ctx);
  }
}

export class Decoder extends Module {
  readonly projectIn: ConvLayer3d;
  readonly stageList: StageList;
  readonly projectOut: DecoderHead;
  private readonly order: number[] = [];

  constructor(cfg: DCAEVConfig) {
    super();
    const dc = cfg.decoder;
    const n = dc.widthList.length;
    const first = firstActiveStage(dc.depthList);
    this.projectIn = this.module('project_in', new ConvLayer3d(cfg.latentChannels, lastActiveWidth(dc.widthList, dc.depthList), dc.projectIn, { bias: true, norm: false, act: false }));
    this.stageList = this.module('stages', new StageList());
    // Registration (and key) order follows stage ids ascending? The reference builds stages in reverse order but
    // names them by stage id; the key set is what matters for loading, the execution order is highest id first.
    for (let s = n - 1; s >= 0; s--) {
      const d = dc.depthList[s]!;
      if (d === 0) continue;
      const st = new Stage();
      const w = dc.widthList[s]!;
      if (s < n - 1) {
        const spec = dc.upsampleBlockType[s]!;
        const wi = dc.widthList[s + 1]!;
        st.opList.append(new ResidualBlock(new ConvPixelShuffleUp(wi, w, spec), duplicatingShortcut(wi, w, spec.sf, spec.tf)));
      }
      for (let i = 0; i < d; i++) st.opList.append(new ResidualBlock(new ResBlock3d(w, dc.blockType[s]!), null));
      this.stageList.set(s, st);
      this.order.push(s);
    }
    this.projectOut = this.module('project_out', new DecoderHead(dc.widthList[first]!, cfg.inChannels, dc.projectOut));
  }

  forward(z: Tensor, ctx: RunContext): Tensor {
    let y = this.projectIn.forward(z, ctx);
    for (const s of this.order) y = this.stageList.stages[s]!.forward(y, ctx);
    return this.projectOut.forward(y, ctx);
  }
}

/** The autoencoder. Build from a config (shape only); attach weights with loadStateDict or initRandom. */
export class DCAEV extends Module {
  readonly config: DCAEVConfig;
  readonly encoder: Encoder;
  readonly decoder: Decoder;

  constructor(config: DCAEVConfig) {
    super();
    // Configs built in code get the same bounds as configs read from files, before any module is built.
    validateConfig(config);
    this.config = config;
    this.encoder = this.module('encoder', new Encoder(config));
    this.decoder = this.module('decoder', new Decoder(config));
    for (const [path, m] of this.namedModules()) if (m instanceof ConvLayer3d) m.cacheKey = `${path}.`;
  }

  /** All ConvLayer3d of the encoder or decoder (69 each for the released models). */
  convLayers(part: 'encoder' | 'decoder'): ConvLayer3d[] {
    const root = part === 'encoder' ? this.encoder : this.decoder;
    return root.namedModules(part).flatMap(([, m]) => (m instanceof ConvLayer3d ? [m] : []));
  }

  /** Raw encoder pass (unscaled latent). With a cache, runs as one tile of a streaming encode. */
  encodeRaw(x: Tensor, cache: FeatureCache | null = null): Tensor {
    if (x.ndim !== 5 || x.shape[1] !== this.config.inChannels)
      throw new ShapeError(`DC-AE-V encode expects (B, ${this.config.inChannels}, T, H, W), got ${fmtShape(x.shape)}`);
    return this.encoder.forward(x, { cache });
  }

  /** Raw decoder pass (unscaled latent in). With a cache, runs as one tile of a streaming decode. */
  decodeRaw(z: Tensor, cache: FeatureCache | null = null): Tensor {
    if (z.ndim !== 5 || z.shape[1] !== this.config.latentChannels)
      throw new ShapeError(`DC-AE-V decode expects (B, ${this.config.latentChannels}, T, H, W) latents, got ${fmtShape(z.shape)}`);
    return this.decoder.forward(z, { cache });
  }
}
