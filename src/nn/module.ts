/**
 * Module: a tree of named parameters whose dotted key paths are the checkpoint format
 * (`encoder.stages.1.op_list.0.main.conv1.conv.weight`). Parameters start as shapes only, so a 2-billion-parameter
 * model can be built and inspected (keys, shapes, counts) without allocating it; weights are attached by key from a
 * state dict, or initialised explicitly.
 */
import { DTypeError, ShapeError, StateDictError, ValueError, fmtShape, type LoadReport } from '../errors.js';
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

/** A named non-parameter tensor of a module (running statistics, tables): no gradient, never trained. */
export class Buffer {
  readonly shape: readonly number[];
  private t: Tensor | null = null;
  constructor(
    shape: readonly number[],
    /** Whether it is part of the state dict (saved and loaded with the parameters). */
    readonly persistent: boolean,
  ) {
    this.shape = Object.freeze([...shape]);
  }
  get size(): number {
    return numelOf(this.shape);
  }
  get loaded(): boolean {
    return this.t !== null;
  }
  get value(): Tensor {
    if (!this.t) throw new ShapeError(`buffer ${fmtShape(this.shape)} has no value yet (load a state dict or set it)`);
    return this.t;
  }
  set(t: Tensor, key = 'buffer'): void {
    if (t.ndim !== this.shape.length || t.shape.some((d, i) => d !== this.shape[i]))
      throw new ShapeError(`${key}: expected shape ${fmtShape(this.shape)}, got ${fmtShape(t.shape)}`);
    this.t = t.detach();
  }
  clear(): void {
    this.t = null;
  }
}

/** Which parameters a freeze/unfreeze touches: by dotted key (and the slot, for shape-based rules). */
export type ParamPredicate = (key: string, p: Param) => boolean;

export class Module {
  private readonly _params = new Map<string, Param>();
  private readonly _children = new Map<string, Module>();
  private readonly _buffers = new Map<string, Buffer>();

  protected param(name: string, shape: readonly number[]): Param {
    this.checkFreeName(name);
    const p = new Param(shape);
    this._params.set(name, p);
    return p;
  }

  /** Registers an existing parameter slot under `name` (a wrapper taking over a layer's weights keeps their values). */
  protected adoptParam(name: string, p: Param): Param {
    this.checkFreeName(name, true);
    this._params.set(name, p);
    return p;
  }

  protected module<M extends Module>(name: string, m: M): M {
    this.checkFreeName(name);
    this._children.set(name, m);
    return m;
  }

  /**
   * Registers a buffer: a named tensor that is not a parameter (no gradient, not in namedParams). Persistent buffers
   * are in the state dict (saved and loaded like parameters); non-persistent ones are not. `init` gives its value now.
   */
  protected buffer(name: string, shape: readonly number[], opts: { persistent?: boolean; init?: Tensor } = {}): Buffer {
    this.checkFreeName(name);
    const b = new Buffer(shape, opts.persistent ?? true);
    if (opts.init) b.set(opts.init, name);
    this._buffers.set(name, b);
    return b;
  }

  private checkFreeName(name: string, allowParam = false): void {
    if (!name || name.includes('.')) throw new ValueError(`module member name ${JSON.stringify(name)} must be non-empty and contain no '.'`);
    if ((!allowParam && this._params.has(name)) || this._children.has(name) || this._buffers.has(name))
      throw new ValueError(`module member ${JSON.stringify(name)} is already registered`);
  }

  /** The direct children by name, in registration order (read only: use replace() to swap one). */
  get childModules(): ReadonlyMap<string, Module> {
    return this._children;
  }

  /** This module's own parameter slots by name (not the children's). */
  get ownParams(): ReadonlyMap<string, Param> {
    return this._params;
  }

  /** This module's own buffers by name. */
  get ownBuffers(): ReadonlyMap<string, Buffer> {
    return this._buffers;
  }

  children(): [string, Module][] {
    return [...this._children.entries()];
  }

  /** The submodule at a dotted path ('' is this module). Throws a ValueError naming the first unknown segment. */
  get(path: string): Module {
    return this.resolve(path, path, '');
  }

  private resolve(path: string, asked: string, what: string): Module {
    if (path === '') return this;
    let m: Module = this;
    const parts = path.split('.');
    for (let i = 0; i < parts.length; i++) {
      const c = m._children.get(parts[i]!);
      if (!c) {
        const at = parts.slice(0, i).join('.') || '(root)';
        const names = [...m._children.keys()];
        throw new ValueError(
          `${what}no submodule "${asked}": ${at} has no child "${parts[i]}"${names.length ? ` (children: ${names.slice(0, 12).join(', ')}${names.length > 12 ? ', ...' : ''})` : ' (it has no children)'}`,
        );
      }
      m = c;
    }
    return m;
  }

  /** The parameter slot at a dotted key (`blocks.0.self_attn.q.weight`). */
  getParam(key: string): Param {
    const i = key.lastIndexOf('.');
    const owner = i < 0 ? this : this.get(key.slice(0, i));
    const p = owner._params.get(key.slice(i + 1));
    if (!p) throw new ValueError(`no parameter "${key}" (the module at "${i < 0 ? '' : key.slice(0, i)}" has ${[...owner._params.keys()].join(', ') || 'no parameters'})`);
    return p;
  }

  /**
   * Swaps the submodule at a dotted path for `m` and returns the old one. The key paths of everything under it stay
   * rooted at the same place. The parent's fields (and arrays) that held the old module are pointed at the new one,
   * so the parent's forward uses it.
   */
  replace<M extends Module>(path: string, m: M): Module {
    if (!path) throw new ValueError('replace: the path must name a submodule, not the root');
    if (!(m instanceof Module)) throw new ValueError(`replace: "${path}" must be replaced by a Module`);
    const i = path.lastIndexOf('.');
    const parent = i < 0 ? this : this.resolve(path.slice(0, i), path, 'replace: ');
    const name = path.slice(i + 1);
    const old = parent._children.get(name);
    if (!old) {
      const names = [...parent._children.keys()];
      throw new ValueError(`replace: no submodule "${path}" (children of "${path.slice(0, Math.max(i, 0))}": ${names.join(', ') || 'none'})`);
    }
    parent._children.set(name, m);
    const self = parent as unknown as Record<string, unknown>;
    for (const k of Object.keys(self)) {
      const v = self[k];
      if (v === old) self[k] = m;
      else if (Array.isArray(v)) for (let j = 0; j < v.length; j++) if (v[j] === old) v[j] = m;
    }
    return old;
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

  /** Every buffer with its dotted key (persistent or not). */
  namedBuffers(prefix = ''): [string, Buffer][] {
    const out: [string, Buffer][] = [];
    for (const [n, b] of this._buffers) out.push([prefix + n, b]);
    for (const [n, c] of this._children) out.push(...c.namedBuffers(`${prefix}${n}.`));
    return out;
  }

  /** Parameters, then persistent buffers, per module in registration order: the state dict's slots. */
  private stateSlots(prefix = ''): [string, Param | Buffer][] {
    const out: [string, Param | Buffer][] = [];
    for (const [n, p] of this._params) out.push([prefix + n, p]);
    for (const [n, b] of this._buffers) if (b.persistent) out.push([prefix + n, b]);
    for (const [n, c] of this._children) out.push(...c.stateSlots(`${prefix}${n}.`));
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

  /** Loaded, trainable parameters with their keys (for an optimizer whose state is keyed by name). */
  namedTrainableParams(): [string, Tensor][] {
    const ps = this.namedParams().filter(([, p]) => p.loaded && p.trainable);
    for (const [k, p] of ps)
      if (p.value.dtype !== 'f32')
        throw new DTypeError(`parameter ${k} is ${p.value.dtype}: only f32 parameters can be trained (freeze it, or load the weights with dtype 'f32')`);
    return ps.map(([k, p]) => [k, p.value]);
  }

  parameterCount(): number {
    return this.namedParams().reduce((s, [, p]) => s + p.size, 0);
  }

  /** Keys and shapes, without touching any data. */
  shapes(): Map<string, number[]> {
    return new Map(this.stateSlots().map(([k, p]) => [k, [...p.shape]]));
  }

  stateDict(): Map<string, Tensor> {
    return new Map(this.stateSlots().map(([k, p]) => [k, p.value]));
  }

  /**
   * Attaches weights by key. Strict (default): every key must be present with its exact shape and nothing else may
   * be in the source; otherwise a StateDictError with a readable report is thrown before anything is loaded.
   * Persistent buffers load like parameters.
   */
  loadStateDict(src: TensorSource | Map<string, Tensor>, opts: { strict?: boolean } = {}): LoadReport {
    const s = src instanceof Map ? mapSource(src) : src;
    const strict = opts.strict ?? true;
    const mine = this.stateSlots();
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
    const staged: [Param | Buffer, Tensor, string][] = [];
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
    for (const [, p] of this.namedParams()) setParamTrainable(p, flag);
  }

  /** Freezes every parameter whose dotted key (relative to this module) matches; returns the keys frozen. */
  freeze(predicate: ParamPredicate | RegExp = () => true): string[] {
    return this.setTrainableWhere(predicate, false);
  }

  /** Unfreezes every parameter whose dotted key matches; returns the keys unfrozen. */
  unfreeze(predicate: ParamPredicate | RegExp = () => true): string[] {
    return this.setTrainableWhere(predicate, true);
  }

  private setTrainableWhere(predicate: ParamPredicate | RegExp, flag: boolean): string[] {
    const test: ParamPredicate = predicate instanceof RegExp ? (k) => predicate.test(k) : predicate;
    const hit: string[] = [];
    for (const [k, p] of this.namedParams())
      if (test(k, p)) {
        setParamTrainable(p, flag);
        hit.push(k);
      }
    return hit;
  }
}

function setParamTrainable(p: Param, flag: boolean): void {
  p.trainable = flag;
  if (p.loaded) p.value.requiresGrad = flag;
}
