/** Mlp: Linear -> activation -> Linear. Keys default to `fc1`, `fc2`; Sequential layouts pass ['0', '2']. */
import type { Tensor } from '../tensor/tensor.js';
import { Linear } from './linear.js';
import { Module } from './module.js';

export interface MlpOptions {
  /** the key names of the two linears (default ['fc1', 'fc2']; torch Sequential(Linear, act, Linear) is ['0', '2']) */
  names?: readonly [string, string];
  /** default true */
  bias?: boolean;
}

export class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(
    cin: number,
    hidden: number,
    cout: number,
    readonly act: (x: Tensor) => Tensor,
    opts: MlpOptions = {},
  ) {
    super();
    const [n1, n2] = opts.names ?? ['fc1', 'fc2'];
    this.fc1 = this.module(n1, new Linear(cin, hidden, { bias: opts.bias }));
    this.fc2 = this.module(n2, new Linear(hidden, cout, { bias: opts.bias }));
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.act(this.fc1.forward(x)));
  }
}
