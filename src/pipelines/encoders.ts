/**
 * The encoder implementations behind `dcvg generate`: the umT5 tokenizer (src/text), the umT5 encoder
 * (src/models/umt5) and the CLIP visual tower (src/models/clip), through the factories their modules export. Each
 * loader reads weights only when a run calls it (a run whose prompt embeddings are all cached never reads umT5).
 */
import { loadTokenizer } from '../text/index.js';
import { loadUmt5 } from '../models/umt5/index.js';
import { loadClipVisual } from '../models/clip/index.js';
import type { EncoderLoaders } from './model_folder.js';

export const defaultEncoderLoaders: EncoderLoaders = {
  loadTokenizer: (path) => loadTokenizer(path),
  loadTextEncoder: (path, opts) => loadUmt5(path, opts?.config !== undefined ? { config: opts.config } : {}),
  loadImageEncoder: (path, opts) => loadClipVisual(path, opts?.config !== undefined ? { config: opts.config } : {}),
};
