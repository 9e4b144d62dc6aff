/** umT5 text encoder public API. */
export * from './config.js';
export * from './model.js';
export * from './keys.js';
export * from './run.js';
export * from './cache.js';
