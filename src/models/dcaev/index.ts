/** DC-AE-V public API (`import ... from 'dcvideogen/dcaev'`). */
export * from './config.js';
export { DCAEV, ConvLayer3d, Encoder, Decoder, type FeatureCache, type RunContext } from './model.js';
export * from './autoencoder.js';
export { tiledEncode, tiledDecode, chooseTile, tileGeometry } from './tiling.js';
export * from './default_model.js';
