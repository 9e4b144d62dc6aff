/** Wan-2.1 DiT public API (also re-exported from the package root). */
export * from './config.js';
export {
  WanModel,
  WanAttentionBlock,
  WanSelfAttention,
  WanCrossAttention,
  Linear as WanLinear,
  wanRopeTables,
  wanTimestepSinusoid,
  WanPreparedContext,
  type CrossKV,
  type WanRopeTables,
  type WanConditioning,
} from './model.js';
export * from './keys.js';
export * from './run.js';
export * from './pipeline.js';
