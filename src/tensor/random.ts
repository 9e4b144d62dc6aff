/**
 * Seeded random numbers. Every random draw in dcvideogen takes a seed or an Rng, so runs are reproducible.
 * The generator is xoshiro128** seeded through splitmix32; normals use Box-Muller in double precision.
 */
import { ValueError } from '../errors.js';
import { allocFloat32 } from './alloc.js';
import { Tensor, checkShape, numelOf } from './tensor.js';

export class Rng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  private spare: number | null = null;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new ValueError(`Rng seed must be a finite number, got ${seed}`);
    let x = (Math.floor(seed) ^ Math.floor(seed / 4294967296)) >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    const r = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    return r;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Standard normal. */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1) throw new ValueError(`Rng.int needs a positive integer bound, got ${n}`);
    return Math.floor(this.uniform() * n);
  }

  /** Internal state, for checkpoints (resume reproduces the same stream). */
  state(): number[] {
    return [this.s0, this.s1, this.s2, this.s3, this.spare === null ? NaN : this.spare];
  }

  setState(s: readonly number[]): void {
    if (s.length !== 5) throw new ValueError(`Rng state must have 5 entries, got ${s.length}`);
    [this.s0, this.s1, this.s2, this.s3] = s.map((v) => v! >>> 0) as [number, number, number, number];
    this.spare = Number.isNaN(s[4]!) ? null : s[4]!;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

function rngOf(seedOrRng: number | Rng): Rng {
  return seedOrRng instanceof Rng ? seedOrRng : new Rng(seedOrRng);
}

/** Standard normal samples (times std, plus mean). */
export function randn(shape: readonly number[], seedOrRng: number | Rng, std = 1, mean = 0): Tensor {
  const s = checkShape(shape);
  const r = rngOf(seedOrRng);
  const out = allocFloat32(numelOf(s), s, 'randn');
  for (let i = 0; i < out.length; i++) out[i] = mean + std * r.normal();
  return new Tensor(out, s);
}

/** Uniform samples in [lo, hi). */
export function rand(shape: readonly number[], seedOrRng: number | Rng, lo = 0, hi = 1): Tensor {
  const s = checkShape(shape);
  const r = rngOf(seedOrRng);
  const out = allocFloat32(numelOf(s), s, 'rand');
  for (let i = 0; i < out.length; i++) out[i] = lo + (hi - lo) * r.uniform();
  return new Tensor(out, s);
}
