/**
 * Initialisation schemes, as PyTorch defines them (torch.nn.init), deterministic from an Rng:
 * - PyTorch's default for Linear / Conv: weight kaiming_uniform(a = sqrt(5)), i.e. uniform(+-1/sqrt(fan_in)), and
 *   bias uniform(+-1/sqrt(fan_in));
 * - kaiming uniform (any a), xavier uniform / normal, normal(mean, std), uniform, zeros, ones.
 * fan_in = size / shape[0] (in-channels x receptive field), fan_out = shape[0] x receptive field, as torch computes
 * them for weights of two or more dimensions.
 */
import { ValueError, fmtShape } from '../errors.js';
import { Rng } from '../tensor/random.js';
import { Tensor, numelOf } from '../tensor/tensor.js';
import type { Param } from './module.js';

/** torch.nn.init._calculate_fan_in_and_fan_out: needs at least 2 dimensions. */
export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length < 2) throw new ValueError(`fan in/out need a weight of 2 or more dimensions, got ${fmtShape(shape)}`);
  const receptive = numelOf(shape.slice(2));
  return { fanIn: shape[1]! * receptive, fanOut: shape[0]! * receptive };
}

/** torch.nn.init.calculate_gain for leaky_relu with negative slope a (a = 0 is relu's sqrt(2)). */
export function leakyReluGain(a: number): number {
  return Math.sqrt(2 / (1 + a * a));
}

function rngOf(r: Rng | number): Rng {
  return r instanceof Rng ? r : new Rng(r);
}

function filled(shape: readonly number[], f: (i: number) => number): Tensor {
  const d = new Float32Array(numelOf(shape));
  for (let i = 0; i < d.length; i++) d[i] = f(i);
  return new Tensor(d, shape);
}

export function uniformInit(shape: readonly number[], lo: number, hi: number, rng: Rng | number): Tensor {
  if (!(hi >= lo)) throw new ValueError(`uniform init: need lo <= hi, got [${lo}, ${hi}]`);
  const r = rngOf(rng);
  return filled(shape, () => lo + (hi - lo) * r.uniform());
}

export function normalInit(shape: readonly number[], std: number, rng: Rng | number, mean = 0): Tensor {
  if (!(std >= 0)) throw new ValueError(`normal init: std must be >= 0, got ${std}`);
  const r = rngOf(rng);
  return filled(shape, () => mean + std * r.normal());
}

export function zerosInit(shape: readonly number[]): Tensor {
  return new Tensor(new Float32Array(numelOf(shape)), shape);
}

export function onesInit(shape: readonly number[]): Tensor {
  return filled(shape, () => 1);
}

/** kaiming_uniform_(a, mode='fan_in', nonlinearity='leaky_relu'): bound = gain(a) * sqrt(3 / fan_in). */
export function kaimingUniformBound(shape: readonly number[], a = Math.sqrt(5)): number {
  return leakyReluGain(a) * Math.sqrt(3 / fans(shape).fanIn);
}

export function kaimingUniform(shape: readonly number[], rng: Rng | number, a = Math.sqrt(5)): Tensor {
  const b = kaimingUniformBound(shape, a);
  return uniformInit(shape, -b, b, rng);
}

/** xavier_uniform_: bound = gain * sqrt(6 / (fan_in + fan_out)). */
export function xavierUniformBound(shape: readonly number[], gain = 1): number {
  const { fanIn, fanOut } = fans(shape);
  return gain * Math.sqrt(6 / (fanIn + fanOut));
}

export function xavierUniform(shape: readonly number[], rng: Rng | number, gain = 1): Tensor {
  const b = xavierUniformBound(shape, gain);
  return uniformInit(shape, -b, b, rng);
}

/** xavier_normal_: std = gain * sqrt(2 / (fan_in + fan_out)). */
export function xavierNormalStd(shape: readonly number[], gain = 1): number {
  const { fanIn, fanOut } = fans(shape);
  return gain * Math.sqrt(2 / (fanIn + fanOut));
}

export function xavierNormal(shape: readonly number[], rng: Rng | number, gain = 1): Tensor {
  return normalInit(shape, xavierNormalStd(shape, gain), rng);
}

/** PyTorch's default bias init for Linear / Conv: uniform(+-1/sqrt(fan_in)), fan_in taken from the weight's shape. */
export function defaultBiasBound(weightShape: readonly number[]): number {
  const { fanIn } = fans(weightShape);
  return fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
}

/** Fills a Linear/Conv weight (and bias) the way torch's reset_parameters does. Weight first, then bias (torch's order). */
export function torchDefaultInit(weight: Param, bias: Param | null, rng: Rng | number): void {
  const r = rngOf(rng);
  weight.set(kaimingUniform(weight.shape, r));
  if (bias) {
    const b = defaultBiasBound(weight.shape);
    bias.set(uniformInit(bias.shape, -b, b, r));
  }
}

/** Layers that know their own PyTorch-default initialisation. */
export interface ResettableLayer {
  resetParameters(rng: Rng): void;
}

function isResettable(m: unknown): m is ResettableLayer {
  return typeof (m as { resetParameters?: unknown }).resetParameters === 'function';
}

/**
 * Initialises every layer of a module tree that defines resetParameters (Linear, Conv, norms, Embedding, LoRA), in
 * module order, from one Rng; parameters owned by no such layer are left as they are. Returns the number of layers.
 */
export function resetParameters(root: { namedModules(): [string, unknown][] }, seed: number | Rng): number {
  const r = rngOf(seed);
  let n = 0;
  for (const [, m] of root.namedModules())
    if (isResettable(m)) {
      m.resetParameters(r);
      n++;
    }
  return n;
}
