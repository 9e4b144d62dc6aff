/** The layer library: modules, layers, init schemes and LoRA (see docs/layers.md). */
export * from './module.js';
export * from './init.js';
export * from './linear.js';
export * from './embedding.js';
export * from './conv.js';
export * from './norm.js';
export * from './mlp.js';
export * from './attention.js';
export * from './container.js';
export * from './lora.js';
