/**
 * A prompt-embedding cache on disk: one safetensors file per (tokenizer, weights, text_len, text), holding the prompt's
 * (L, dim) context. With every prompt of a run cached, the text encoder need not be loaded at all.
 *
 * - key: sha256 of the tokenizer fingerprint, the weights fingerprint, text_len and the text (length-prefixed, so no
 *   two different tuples give the same bytes);
 * - writes are atomic (saveSafetensors writes a temporary file and renames it), so a crash leaves no half entry;
 * - an entry that does not read back as this key's (L, dim) context (truncated, garbage, wrong shape or key) is
 *   ignored with a warning, recomputed and rewritten.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, saveSafetensors } from '../../io/safetensors.js';
import type { PromptTokenizer, TextEncoder } from '../../pipelines/components.js';
import { ValueError } from '../../errors.js';
import { Tensor, intTensor, firstNonFinite } from '../../tensor/tensor.js';

export interface PromptCacheKey {
  tokenizer: string;
  weights: string;
  textLen: number;
  text: string;
}

/** The cache key (hex sha256). */
export function promptCacheKey(k: PromptCacheKey): string {
  const h = createHash('sha256');
  const part = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    h.update(`${b.length}:`);
    h.update(b);
  };
  part('dcvg-prompt-embedding-v1');
  part(k.tokenizer);
  part(k.weights);
  part(String(k.textLen));
  part(k.text);
  return h.digest('hex');
}

export interface PromptCacheStats {
  hits: number;
  misses: number;
  /** entries found unreadable or wrong and rewritten */
  corrupt: number;
}

export class PromptEmbeddingCache {
  readonly stats: PromptCacheStats = { hits: 0, misses: 0, corrupt: 0 };
  constructor(
    readonly dir: string,
    private readonly warn: (msg: string) => void = (m) => process.emitWarning(m),
  ) {}

  pathOf(key: string): string {
    return join(this.dir, `${key}.safetensors`);
  }

  /**
   * The cached (L, dim) context, or null on a miss. `expect` is what the entry must be (its real token count L when
   * known, the width); anything else is treated as corrupt: warned about and ignored (the caller rewrites it).
   */
  get(key: string, expect: { length?: number; dim: number }): Tensor | null {
    const p = this.pathOf(key);
    if (!existsSync(p)) {
      this.stats.misses++;
      return null;
    }
    let f: SafetensorsFile | null = null;
    try {
      f = SafetensorsFile.open(p);
      if (f.metadata.key !== key) throw new ValueError(`its key is ${JSON.stringify(f.metadata.key ?? null)}`);
      if (!f.has('context')) throw new ValueError('no tensor "context"');
      const t = f.tensor('context');
      const [L, D] = t.shape;
      if (t.ndim !== 2 || D !== expect.dim || (expect.length !== undefined && L !== expect.length) || L! < 1)
        throw new ValueError(`context has shape [${t.shape.join(', ')}], expected [${expect.length ?? 'L'}, ${expect.dim}]`);
      const bad = firstNonFinite(t.readSync());
      if (bad >= 0) throw new ValueError(`context element ${bad} is not finite`);
      this.stats.hits++;
      return t;
    } catch (e) {
      this.stats.corrupt++;
      this.stats.misses++;
      this.warn(`prompt-embedding cache: ignoring the corrupt entry ${p} (${(e as Error).message}); it will be rewritten`);
      return null;
    } finally {
      f?.close();
    }
  }

  /** Stores a context (L, dim) as float32, atomically. */
  put(key: string, context: Tensor, meta: Record<string, string> = {}): void {
    mkdirSync(this.dir, { recursive: true });
    saveSafetensors(this.pathOf(key), { context }, { dtype: 'F32', metadata: { ...meta, key } });
  }
}

/**
 * Tokenises each text, takes its context from the cache where present and encodes the rest in one call (stored back).
 * Returns the (L_i, dim) contexts in the order of `texts`. `encoder` may be a thunk, called only on a miss (so a fully
 * cached run never loads the weights); `weightsFingerprint` is then needed up front.
 */
export function encodePromptsCached(
  tokenizer: PromptTokenizer,
  encoder: TextEncoder | { fingerprint: string; dim: number; load: () => TextEncoder },
  texts: readonly string[],
  textLen: number,
  cache: PromptEmbeddingCache | null,
): Tensor[] {
  const toks = texts.map((t) => tokenizer.tokenize(t, textLen));
  const keys = texts.map((text) => promptCacheKey({ tokenizer: tokenizer.fingerprint, weights: encoder.fingerprint, textLen, text }));
  const out: (Tensor | null)[] = toks.map((tk, i) => {
    if (!cache) return null;
    const length = tk.attentionMask.reduce((a, m) => a + m, 0);
    return cache.get(keys[i]!, { length, dim: encoder.dim });
  });
  const miss = out.flatMap((t, i) => (t ? [] : [i]));
  if (miss.length) {
    const enc = 'encode' in encoder ? encoder : encoder.load();
    const ids = new Int32Array(miss.length * textLen);
    const mask = new Int32Array(miss.length * textLen);
    miss.forEach((i, r) => {
      ids.set(toks[i]!.inputIds, r * textLen);
      mask.set(toks[i]!.attentionMask, r * textLen);
    });
    const ctx = enc.encode(intTensor(ids, [miss.length, textLen]), intTensor(mask, [miss.length, textLen]));
    miss.forEach((i, r) => {
      out[i] = ctx[r]!;
      cache?.put(keys[i]!, ctx[r]!, { text_len: String(textLen), tokenizer: tokenizer.fingerprint, weights: encoder.fingerprint });
    });
  }
  return out as Tensor[];
}
