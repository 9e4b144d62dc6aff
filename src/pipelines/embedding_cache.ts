/**
 * An on-disk cache of prompt embeddings, so a prompt seen before never loads the text encoder again.
 *
 * Key: sha256 over the text encoder's identity (its weights files: real path, size and modification time, known
 * before the encoder is loaded) and the prompt's real token ids (which already depend on the tokenizer and the text;
 * the padding, which the encoder never computes, is left out). Value: one safetensors file `<key>.safetensors` holding
 * `hidden_states` (L_real, dim) float32, written atomically. A damaged or mismatched entry is ignored (and rewritten).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, saveSafetensors } from '../io/safetensors.js';
import { tensor, type Tensor } from '../tensor/tensor.js';

/** A stable identity of weights files (a file or a folder, listed recursively to depth 2) without reading them. */
export function weightsIdentity(paths: readonly string[]): string {
  const h = createHash('sha256');
  const visit = (p: string, depth: number) => {
    const st = statSync(p);
    if (st.isDirectory()) {
      if (depth > 2) return;
      for (const n of readdirSync(p).sort()) if (!n.startsWith('.')) visit(join(p, n), depth + 1);
      return;
    }
    h.update(`${realpathSync(p)}\0${st.size}\0${Math.round(st.mtimeMs)}\n`);
  };
  for (const p of paths) visit(p, 0);
  return h.digest('hex');
}

export class EmbeddingCache {
  constructor(
    readonly dir: string,
    readonly encoderId: string,
  ) {}

  key(realIds: readonly number[]): string {
    return createHash('sha256').update(`dcvg-prompt-embedding-v1\0${this.encoderId}\0${realIds.join(',')}`).digest('hex');
  }

  private path(realIds: readonly number[]): string {
    return join(this.dir, `${this.key(realIds)}.safetensors`);
  }

  /** The cached (L, dim) embedding, or null (absent, unreadable, or of another shape than `dim` expects). */
  get(realIds: readonly number[], dim: number): Tensor | null {
    const p = this.path(realIds);
    if (!existsSync(p)) return null;
    let f: SafetensorsFile | null = null;
    try {
      f = SafetensorsFile.open(p);
      const info = f.info('hidden_states');
      if (info.shape.length !== 2 || info.shape[0] !== realIds.length || info.shape[1] !== dim) return null;
      const t = f.tensor('hidden_states', { dtype: 'f32' });
      return tensor(Float32Array.from(t.readSync()), t.shape); // owned by us, independent of the closed file
    } catch {
      return null;
    } finally {
      f?.close();
    }
  }

  put(realIds: readonly number[], hidden: Tensor): void {
    mkdirSync(this.dir, { recursive: true });
    saveSafetensors(this.path(realIds), { hidden_states: hidden }, { metadata: { format: 'dcvideogen-prompt-embedding', encoder: this.encoderId } });
  }
}
