/** Wan's CLIP image encoder (the ViT-H/14 visual tower image-to-video uses) public API. */
export * from './config.js';
export { ClipVisual, ClipVisionTransformer, ClipBlock, ClipSelfAttention, type ClipBlocksMode } from './model.js';
export * from './keys.js';
export * from './preprocess.js';
export * from './run.js';
