/**
 * The identity of a text encoder's weights for the prompt-embedding cache (src/models/umt5/cache.ts), known without
 * reading or loading them: real path, size and modification time of each file (a folder: its files, to depth 2).
 */
import { createHash } from 'node:crypto';
import { readdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';

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
  h.update('dcvg-weights-identity-v1\n');
  for (const p of paths) visit(p, 0);
  return h.digest('hex');
}
