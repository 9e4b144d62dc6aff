/**
 * LoRA (low-rank adaptation) on Linear and on 1x1x1 Conv3d, keyed as peft keys it:
 *   `<layer>.weight`, `<layer>.bias`       the base layer's parameters, where they always were (frozen)
 *   `<layer>.lora_A.weight`               A: (rank, in)  [(rank, in, 1, 1, 1) for a conv], kaiming_uniform(a = sqrt(5))
 *   `<layer>.lora_B.weight`               B: (out, rank) [(out, rank, 1, 1, 1)], zeros
 * forward(x) = base(x) + (alpha / rank) * B(A(x)); dropout is 0 (other values are rejected).
 * merge() folds the update into the base weight (W += scale * B A) and unmerge() takes it out again.
 * applyLora() swaps matching layers of a model through Module.replace, so every base key stays where it was.
 */
import { ValueError } from '../errors.js';
import * as ops from '../tensor/ops.js';
import { Rng } from '../tensor/random.js';
import { Tensor, noGrad } from '../tensor/tensor.js';
import { Conv3d, type FeatureCache } from './conv.js';
import { kaimingUniform, zerosInit } from './init.js';
import { Linear } from './linear.js';
import type { Module, Param } from './module.js';

export interface LoraOptions {
  rank: number;
  /** scale = alpha / rank (default alpha = rank: scale 1) */
  alpha?: number;
  /** must be 0 (dropout is not supported) */
  dropout?: number;
  /** seeds A's init (default 0) */
  seed?: number | Rng;
}

function checkLora(opts: LoraOptions, inF: number, outF: number): { rank: number; alpha: number } {
  const { rank } = opts;
  if (!Number.isInteger(rank) || rank < 1) throw new ValueError(`LoRA: rank must be a positive integer, got ${rank}`);
  if (rank > Math.min(inF, outF)) throw new ValueError(`LoRA: rank ${rank} exceeds min(in ${inF}, out ${outF})`);
  const alpha = opts.alpha ?? rank;
  if (!Number.isFinite(alpha)) throw new ValueError(`LoRA: alpha must be a finite number, got ${alpha}`);
  if ((opts.dropout ?? 0) !== 0) throw new ValueError(`LoRA: dropout ${opts.dropout} is not supported (only 0)`);
  return { rank, alpha };
}

function rngOf(r: number | Rng | undefined): Rng {
  return r instanceof Rng ? r : new Rng(r ?? 0);
}

/** What LoraLinear and LoraConv3d share. */
export interface LoraLayer {
  readonly rank: number;
  readonly alpha: number;
  readonly scale: number;
  readonly merged: boolean;
  readonly lora_A: Linear | Conv3d;
  readonly lora_B: Linear | Conv3d;
  merge(): void;
  unmerge(): void;
}

/** W +/- scale * (B A), as a new tensor (f32; noGrad). Shapes: W (out, in, ...1), A (r, in, ...1), B (out, r, ...1). */
function foldedWeight(w: Param, a: Param, b: Param, scale: number, sign: 1 | -1): Tensor {
  return noGrad(() => {
    const W = w.value.detach();
    const A = ops.reshape(a.value.detach(), [a.shape[0]!, a.shape[1]!]);
    const B = ops.reshape(b.value.detach(), [b.shape[0]!, b.shape[1]!]);
    const delta = ops.reshape(ops.mul(ops.matmul(B, A), sign * scale), [...w.shape]);
    return ops.add(W, delta);
  });
}

/** Sets a base slot keeping its freeze state (Param.set applies `trainable`). */
function setBase(p: Param, t: Tensor, key: string): void {
  p.set(t, key);
}

export class LoraLinear extends Linear implements LoraLayer {
  readonly lora_A: Linear;
  readonly lora_B: Linear;
  readonly rank: number;
  readonly alpha: number;
  readonly scale: number;
  private _merged = false;

  /** Wraps `base`: takes over its weight/bias slots (frozen) and adds A (kaiming-uniform) and B (zeros). */
  constructor(base: Linear, opts: LoraOptions) {
    super(base.inFeatures, base.outFeatures, { share: base });
    const { rank, alpha } = checkLora(opts, base.inFeatures, base.outFeatures);
    this.rank = rank;
    this.alpha = alpha;
    this.scale = alpha / rank;
    this.lora_A = this.module('lora_A', new Linear(base.inFeatures, rank, { bias: false }));
    this.lora_B = this.module('lora_B', new Linear(rank, base.outFeatures, { bias: false }));
    this.resetLora(rngOf(opts.seed));
    for (const p of [this.weight, this.bias]) if (p) freezeSlot(p);
  }

  get merged(): boolean {
    return this._merged;
  }

  /** A kaiming_uniform(a = sqrt(5)) as peft, B zeros. */
  resetLora(rng: Rng): void {
    this.lora_A.weight.set(kaimingUniform(this.lora_A.weight.shape, rng));
    this.lora_B.weight.set(zerosInit(this.lora_B.weight.shape));
  }

  /** Only A and B are re-initialised: the base layer keeps its (loaded) weights. */
  override resetParameters(rng: Rng): void {
    this.resetLora(rng);
  }

  override forward(x: Tensor): Tensor {
    const y = super.forward(x);
    if (this._merged) return y;
    return ops.add(y, ops.mul(this.lora_B.forward(this.lora_A.forward(x)), this.scale));
  }

  merge(): void {
    if (this._merged) throw new ValueError('LoRA: the adapter is already merged');
    setBase(this.weight, foldedWeight(this.weight, this.lora_A.weight, this.lora_B.weight, this.scale, 1), 'weight');
    this._merged = true;
  }

  unmerge(): void {
    if (!this._merged) throw new ValueError('LoRA: the adapter is not merged');
    setBase(this.weight, foldedWeight(this.weight, this.lora_A.weight, this.lora_B.weight, this.scale, -1), 'weight');
    this._merged = false;
  }
}

export class LoraConv3d extends Conv3d implements LoraLayer {
  readonly lora_A: Conv3d;
  readonly lora_B: Conv3d;
  readonly rank: number;
  readonly alpha: number;
  readonly scale: number;
  private _merged = false;

  /** Wraps a 1x1x1 conv the same way as LoraLinear (A and B are 1x1x1 convs without bias). */
  constructor(base: Conv3d, opts: LoraOptions) {
    if (base.kernel.some((k) => k !== 1)) throw new ValueError(`LoRA: only 1x1x1 convs are supported, got kernel ${base.kernel.join('x')}`);
    super(base.inChannels, base.outChannels, base.kernel, { ...base.geometry(), share: base });
    const { rank, alpha } = checkLora(opts, base.inChannels, base.outChannels);
    this.rank = rank;
    this.alpha = alpha;
    this.scale = alpha / rank;
    this.lora_A = this.module('lora_A', new Conv3d(base.inChannels, rank, 1, { bias: false, stride: base.stride }));
    this.lora_B = this.module('lora_B', new Conv3d(rank, base.outChannels, 1, { bias: false }));
    this.resetLora(rngOf(opts.seed));
    for (const p of [this.weight, this.bias]) if (p) freezeSlot(p);
  }

  get merged(): boolean {
    return this._merged;
  }

  resetLora(rng: Rng): void {
    this.lora_A.weight.set(kaimingUniform(this.lora_A.weight.shape, rng));
    this.lora_B.weight.set(zerosInit(this.lora_B.weight.shape));
  }

  override resetParameters(rng: Rng): void {
    this.resetLora(rng);
  }

  override forward(x: Tensor, cache: FeatureCache | null = null): Tensor {
    const y = super.forward(x, cache);
    if (this._merged) return y;
    return ops.add(y, ops.mul(this.lora_B.forward(this.lora_A.forward(x)), this.scale));
  }

  merge(): void {
    if (this._merged) throw new ValueError('LoRA: the adapter is already merged');
    setBase(this.weight, foldedWeight(this.weight, this.lora_A.weight, this.lora_B.weight, this.scale, 1), 'weight');
    this._merged = true;
  }

  unmerge(): void {
    if (!this._merged) throw new ValueError('LoRA: the adapter is not merged');
    setBase(this.weight, foldedWeight(this.weight, this.lora_A.weight, this.lora_B.weight, this.scale, -1), 'weight');
    this._merged = false;
  }
}

function freezeSlot(p: Param): void {
  p.trainable = false;
  if (p.loaded) p.value.requiresGrad = false;
}

export function isLoraLayer(m: unknown): m is LoraLayer & Module {
  return m instanceof LoraLinear || m instanceof LoraConv3d;
}

export type LayerPredicate = (path: string, layer: Linear | Conv3d) => boolean;

export interface ApplyLoraOptions extends LoraOptions {
  /**
   * 'model' (default): freeze every parameter of the model except the adapters (then unfreeze what should train);
   * 'wrapped': freeze only the wrapped layers' base weights.
   */
  freeze?: 'model' | 'wrapped';
}

/**
 * Wraps every Linear and Conv3d of `model` whose dotted path matches (a RegExp on the path, or a predicate) in a LoRA
 * layer, through model.replace(path): base keys stay where they were, adapters appear at `<path>.lora_A.weight` and
 * `<path>.lora_B.weight`. A matching conv must be 1x1x1. Layers already wrapped and the adapters themselves are never
 * matched. A's draw comes from one Rng in module order. Returns the wrapped paths; throws if none matched.
 */
export function applyLora(model: Module, match: RegExp | LayerPredicate, opts: ApplyLoraOptions): string[] {
  const test: LayerPredicate = match instanceof RegExp ? (p) => match.test(p) : match;
  const rng = rngOf(opts.seed);
  const inside = new Set<string>();
  const targets: [string, Linear | Conv3d][] = [];
  for (const [path, m] of model.namedModules()) {
    if (path === '') continue;
    if (isLoraLayer(m)) {
      inside.add(path);
      continue;
    }
    const parent = path.includes('.') ? path.slice(0, path.lastIndexOf('.')) : '';
    if (inside.has(parent)) continue;
    if ((m instanceof Linear || m instanceof Conv3d) && test(path, m)) targets.push([path, m]);
  }
  if (!targets.length) throw new ValueError(`applyLora: no Linear or Conv3d layer matches ${match instanceof RegExp ? String(match) : 'the predicate'}`);
  for (const [path, m] of targets)
    if (m instanceof Conv3d && m.kernel.some((k) => k !== 1))
      throw new ValueError(`applyLora: "${path}" is a ${m.kernel.join('x')} conv; LoRA supports Linear and 1x1x1 Conv3d only`);
  if ((opts.freeze ?? 'model') === 'model') model.freeze(() => true);
  for (const [path, m] of targets) {
    const w = m instanceof Linear ? new LoraLinear(m, { ...opts, seed: rng }) : new LoraConv3d(m, { ...opts, seed: rng });
    model.replace(path, w);
  }
  return targets.map(([p]) => p);
}

/** Every LoRA layer of a model with its path. */
export function loraLayers(model: Module): [string, LoraLayer & Module][] {
  return model.namedModules().flatMap(([p, m]) => (isLoraLayer(m) ? [[p, m] as [string, LoraLayer & Module]] : []));
}

/** The adapter tensors (`...lora_A.weight`, `...lora_B.weight`) by key: what an adapter checkpoint holds. */
export function loraStateDict(model: Module): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [path, l] of loraLayers(model))
    for (const part of ['lora_A', 'lora_B'] as const) out.set(`${path ? `${path}.` : ''}${part}.weight`, l[part].weight.value);
  return out;
}

/** Loads adapter tensors (as loraStateDict names them); every adapter key must be given, nothing else. */
export function loadLoraStateDict(model: Module, sd: Map<string, Tensor>): void {
  const mine = new Map<string, Param>();
  for (const [path, l] of loraLayers(model))
    for (const part of ['lora_A', 'lora_B'] as const) mine.set(`${path ? `${path}.` : ''}${part}.weight`, l[part].weight);
  const missing = [...mine.keys()].filter((k) => !sd.has(k));
  const extra = [...sd.keys()].filter((k) => !mine.has(k));
  if (missing.length || extra.length)
    throw new ValueError(`LoRA state dict does not match the model: ${missing.length} missing (${missing.slice(0, 5).join(', ')}), ${extra.length} unexpected (${extra.slice(0, 5).join(', ')})`);
  const staged: [Param, Tensor, string][] = [...mine].map(([k, p]) => [p, sd.get(k)!, k]);
  for (const [p, t, k] of staged) if (t.ndim !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) p.set(t, k); // throws a ShapeError naming the key
  for (const [p, t, k] of staged) p.set(t, k);
}

/** Merges every adapter of the model into its base weight. */
export function mergeLora(model: Module): void {
  for (const [, l] of loraLayers(model)) l.merge();
}

/** Takes every merged adapter back out of its base weight. */
export function unmergeLora(model: Module): void {
  for (const [, l] of loraLayers(model)) l.unmerge();
}
