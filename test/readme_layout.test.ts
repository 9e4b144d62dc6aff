/**
 * The README's "Layout" section keeps up with the tree: every folder of the repository (top level and under src/)
 * and every module of the layer library (src/nn) is named there, so a newcomer finds every layer in one look.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { repoRoot } from './helpers.js';

function layoutSection(): string {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const m = /^## Layout\n([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(readme);
  assert.ok(m, 'README.md has no "## Layout" section');
  return m[1]!;
}

/** Folders under `dir`, recursively, as paths relative to the repository root. */
function folders(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const p = join(dir, e.name);
    out.push(relative(repoRoot, p), ...folders(p));
  }
  return out;
}

test('every top-level folder and every folder under src/ is named in the README layout', () => {
  const layout = layoutSection();
  const top = ['assets', 'bench', 'docs', 'native', 'runs', 'scripts', 'src', 'test'];
  const missing: string[] = [];
  for (const f of top) if (!layout.includes(`${f}/`)) missing.push(`${f}/`);
  // A nested folder counts as named by its full path (src/models/dcaev/) or, on its parent's line, its name (video/).
  for (const f of folders(join(repoRoot, 'src'))) {
    if (!layout.includes(`${f}/`) && !layout.includes(`${basename(f)}/`)) missing.push(`${f}/`);
  }
  assert.deepEqual(missing, [], `not in the README's Layout section: ${missing.join(', ')}`);
});

test('every module of the layer library (src/nn) is named in the README layout', () => {
  const layout = layoutSection();
  const files = readdirSync(join(repoRoot, 'src', 'nn')).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
  assert.ok(files.length > 0);
  const missing = files.filter((f) => !layout.includes(f));
  assert.deepEqual(missing, [], `src/nn modules not in the README's Layout section: ${missing.join(', ')}`);
});
