/**
 * The encoder implementations behind `dcvg generate`: the umT5 tokenizer (src/text), the umT5 encoder
 * (src/models/umt5) and the CLIP visual tower (src/models/clip), through the factories their modules export
 * (`loadTokenizer`, `loadUmt5`, `loadClipVisual`). Each module is imported when a run first needs it, so a run whose
 * prompt embeddings are all cached never loads the umT5 code or weights.
 */
import { ValueError } from '../errors.js';
import type { ImageEncoder, PromptTokenizer, TextEncoder } from './components.js';
import type { EncoderLoaders } from './model_folder.js';

type Factory = (path: string, opts?: { config?: string }) => unknown;

async function factory(rel: string, name: string, what: string): Promise<Factory> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(rel)) as Record<string, unknown>;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') throw new ValueError(`${what} is not part of this build of dcvideogen (${rel} is missing)`);
    throw e;
  }
  const f = mod[name];
  if (typeof f !== 'function') throw new ValueError(`${what}: ${rel} exports no ${name}()`);
  return f as Factory;
}

export const defaultEncoderLoaders: EncoderLoaders = {
  async loadTokenizer(path) {
    return (await (await factory('../text/index.js', 'loadTokenizer', 'the umT5 tokenizer'))(path)) as PromptTokenizer;
  },
  async loadTextEncoder(path, opts) {
    return (await (await factory('../models/umt5/index.js', 'loadUmt5', 'the umT5 text encoder'))(path, opts)) as TextEncoder;
  },
  async loadImageEncoder(path, opts) {
    return (await (await factory('../models/clip/index.js', 'loadClipVisual', 'the CLIP image encoder'))(path, opts)) as ImageEncoder;
  },
};
