/** Wan-2.1 VAE public API (also re-exported from the package root). */
export * from './config.js';
export {
  WanVAE,
  Encoder3d as WanVaeEncoder,
  Decoder3d as WanVaeDecoder,
  ResidualBlock as WanVaeResidualBlock,
  AttentionBlock as WanVaeAttentionBlock,
  Resample as WanVaeResample,
  WanVaeEncodeStream,
  WanVaeDecodeStream,
  type WanVaeStreamOptions,
} from './model.js';
export type { FeatureCache as WanVaeFeatureCache } from '../../nn/conv.js';
export * from './keys.js';
export * from './run.js';
export * from './tiling.js';
export * from './random_init.js';
