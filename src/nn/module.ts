/**
 * Module: a tree of named parameters whose dotted key paths are the checkpoint format
 * (`encoder.stages.1.op_list.0.main.conv1.conv.weight`). Parameters start as shapes only, so a 2-billion-parameter
 * model can be built and inspected (keys, shapes, counts) without allocating it; weights are attached by key from a
 * state dict, or initialised explicitly.
 */
import { DTypeError, ShapeError, StateDictError, fmtShape, type LoadReport } from '../errors.js';
import { Tensor, numelOf, parameter } from '../tensor/tensor.js';
import { Rng } from '../tensor/random.js';

/** A parameter slot: a shape, and (once loaded or initialised) a leaf tensor that requires grad. */
export class Param {
  readonly shape: readonly number[];
  private t: Tensor | null = null;
  /** Whether the optimizer should update it (false = frozen). */
  trainable = true;

  constructor(shape: readonly number[]) {
    this.shape = Object.freeze([...shape]);
  }

  get size(): number {
    return numelOf(this.shape);
  }

  get loaded(): boolean {
    return this.t !== null;
  }

  /** The tensor; throws if the module was built shape-only and never loaded. */
  get value(): Tensor {
    if (!this.t) throw new ShapeError(`parameter ${fmtShape(this.shape)} has no value yet (load a state dict or initialise it)`);
    return this.t;
  }

  set(t: Tensor, key = 'parameter'): void {
    if (t.ndim !== this.shape.length || t.shape.some((d, i) => d !== this.shape[i]))
      throw new ShapeError(`${key}: expected shape ${fmtShape(this.shape)}, got ${fmtShape(t.shape)}`);
    if (t.dtype !== 'f32') {
      // A bf16 / f16 checkpoint tensor stays in its dtype (no widened copy, no clone): a frozen weight the kernels widen
      // on the fly. It can never require grad (parameters() refuses it when the slot is trainable).
      this.t = t.detach();
      return;
    }
    const p = parameter(t);
    p.requiresGrad = this.trainable;
    this.t = p;
  }

  /** Drops the value (frees the memory); the slot stays. */
  clear(): void {
    this.t = null;
  }
}

export type { LoadReport };

export function formatLoadReport(r: LoadReport, max = 10): string {
  const part = (name: string, xs: string[]) =>
    xs.length ? `${xs.length} ${name}: ${xs.slice(0, max).join(', ')}${xs.length > max ? `, ... (+${xs.length - max})` : ''}` : '';
  return [
    part('missing', r.missing),
    part('unexpected', r.unexpected),
    part(
      'with mismatched shapes',
      r.mismatched.map((m) => `${m.key} (model ${fmtShape(m.expected)}, checkpoint ${fmtShape(m.got)})`),
    ),
  ]
    .filter(Boolean)
    .join('; ');
}

/** Something that yields tensors by key (a Map, or a lazy file reader). */
export interface TensorSource {
  keys(): Iterable<string>;
  /** shape without reading data, when cheap */
  shape(key: string): readonly number[];
  get(key: string): Tensor;
}

export function mapSource(m: Map<string, Tensor>): TensorSource {
  return { keys: () => m.keys(), shape: (k) => m.get(k)!.shape, get: (k) => m.get(k)! };
}

export class Module {
  private readonly _params = new Map<string, Param>();
  private readonly _children = new Map<string, Module>();

  protected param(name: string, shape: readonly number[]): Param {
    const p = new Param(shape);
    this._params.set(name, p);
    return p;
  }

  protected module<M extends Module>(name: string, m: M): M {
    this._children.set(name, m);
    return m;
  }

  children(): [string, Module][] {
    return [...this._children.entries()];
  }

  /** Every module of the subtree with its dotted path ('' for this one), depth first in registration order. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this._children) out.push(...c.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** Every parameter slot with its dotted key, in registration order (the reference's state-dict order). */
  namedParams(prefix = ''): [string, Param][] {
    const out: [string, Param][] = [];
    for (const [n, p] of this._params) out.push([prefix + n, p]);
    for (const [n, c] of this._children) out.push(...c.namedParams(`${prefix}${n}.`));
    return out;
  }

  /** Leaf tensors of loaded, trainable parameters (for an optimizer). */
  parameters(): Tensor[] {
    const ps = this.namedParams().filter(([, p]) => p.loaded && p.trainable);
    for (const [k, p] of ps)
      if (p.value.dtype !== 'f32')
        throw new DTypeError(`parameter ${k} is ${p.value.dtype}: only f32 parameters can be trained (freeze it, or load the weights with dtype 'f32')`);
    return ps.map(([, p]) => p.value);
  }

  parameterCount(): number {
    return this.namedParams().reduce((s, [, p]) => s + p.size, 0);
  }

  /** Keys and shapes, without touching any data. */
  shapes(): Map<string, number[]> {
    return new Map(this.namedParams().map(([k, p]) => [k, [...p.shape]]));
  }

  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParams().map(([k, p]) => [k, p.value]));
  }

  /**
   * Attaches weights by key. Strict (default): every key must be present with its exact shape and nothing else may
   * be in the source; otherwise a StateDictError with a readable report is thrown before anything is loaded.
   */
  loadStateDict(src: TensorSource | Map<string, Tensor>, opts: { strict?: boolean } = {}): LoadReport {
    const s = src instanceof Map ? mapSource(src) : src;
    const strict = opts.strict ?? true;
    const mine = this.namedParams();
    const have = new Set(s.keys());
    const report: LoadReport = { missing: [], unexpected: [], mismatched: [] };
    const wanted = new Set<string>();
    for (const [k, p] of mine) {
      wanted.add(k);
      if (!have.has(k)) {
        report.missing.push(k);
        continue;
      }
      const sh = s.shape(k);
      if (sh.length !== p.shape.length || sh.some((d, i) => d !== p.shape[i])) report.mismatched.push({ key: k, expected: [...p.shape], got: [...sh] });
    }
    for (const k of have) if (!wanted.has(k)) report.unexpected.push(k);
    const bad = report.missing.length + report.mismatched.length + (strict ? report.unexpected.length : 0);
    if (bad) throw new StateDictError(`state dict does not match the model: ${formatLoadReport(report)}`, report);
    // Read (and let the source check) every tensor before assigning any: a bad tensor late in the file must not leave
    // the model half replaced. For a shape-only model this costs nothing extra; a loaded one briefly holds both.
    const staged: [Param, Tensor, string][] = [];
    for (const [k, p] of mine) if (have.has(k)) staged.push([p, s.get(k), k]);
    for (const [p, t, k] of staged) p.set(t, k);
    return report;
  }

  /** Fills every parameter with N(0, std) (weights) or zeros (1-D biases) — deterministic from the seed. */
  initRandom(seed: number, std = 0.02): void {
    const rng = new Rng(seed);
    for (const [, p] of this.namedParams()) {
      const d = new Float32Array(p.size);
      if (p.shape.length > 1) for (let i = 0; i < d.length; i++) d[i] = std * rng.normal();
      p.set(new Tensor(d, p.shape));
    }
  }

  /** Freezes or unfreezes all parameters of this subtree. */
  setTrainable(flag: boolean): void {
    for (const [, p] of this.namedParams()) {
      p.trainable = flag;
      if (p.loaded) p.value.requiresGrad = flag;
    }
  }
}
