/**
 * Keyed containers: the torch.nn.Sequential / ModuleList / ParameterDict shapes of a state dict. Children are keyed
 * by name ('0', '1', ... when appended), so key paths read `blocks.3.ffn.0.weight` as in the reference.
 */
import { ShapeError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { Module, type Param } from './module.js';

/** A module that holds named children (and parameters) and nothing else: a ModuleList or a keyed holder. */
export class Container<M extends Module = Module> extends Module {
  /** The children appended with append(), in order (replace() keeps this list in step). */
  readonly items: M[] = [];

  /** Adds a child under an explicit key (a Sequential with gaps, e.g. keys 0, 1, 3, 4). */
  add<T extends M>(name: string, m: T): T {
    return this.module(name, m);
  }

  /** Adds a child under the next index key ('0', '1', ...) and to `items`. */
  append<T extends M>(m: T): T {
    this.module(String(this.items.length), m);
    this.items.push(m);
    return m;
  }

  addParam(name: string, shape: readonly number[]): Param {
    return this.param(name, shape);
  }

  get length(): number {
    return this.items.length;
  }

  at(i: number): M {
    const m = this.items[i];
    if (!m) throw new ShapeError(`container index ${i} is out of range (${this.items.length} items)`);
    return m;
  }
}

interface Forward1 {
  forward(x: Tensor): Tensor;
}

/** A Container whose forward runs its appended children in order (torch.nn.Sequential). */
export class Sequential extends Container<Module & Forward1> {
  constructor(...ms: (Module & Forward1)[]) {
    super();
    for (const m of ms) this.append(m);
  }
  forward(x: Tensor): Tensor {
    let y = x;
    for (const m of this.items) y = m.forward(y);
    return y;
  }
}
