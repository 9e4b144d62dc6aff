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
export { FeatureCache as WanVaeFeatureCache } from './layers.js';
export * from './keys.js';
export * from './run.js';
export * from './tiling.js';
export * from './random_init.js';
