/** What a fuzz case must satisfy, shared by the in-process runner and the CLI cases. */
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { DcvgError } from '../../src/errors.js';
import { tempOwnerPid } from '../../src/io/files.js';

/** Every path under `root` (relative) -> content hash, 'dir', or 'link:<target>'. */
export function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const rel = relative(root, p);
      const st = lstatSync(p);
      if (st.isDirectory()) {
        out.set(rel, 'dir');
        walk(p);
      } else if (st.isFile()) out.set(rel, createHash('sha256').update(readFileSync(p)).digest('hex'));
      else out.set(rel, st.isSymbolicLink() ? 'link' : 'special');
    }
  };
  walk(root);
  return out;
}

/**
 * Problems between two snapshots: inputs changed or removed (unless `mayChange` allows it), files added after a
 * failure (unless `mayAdd`), and temporaries of our naming left anywhere.
 */
export function compareSnapshots(before: Map<string, string>, after: Map<string, string>, o: { failed: boolean; mayChange?: (rel: string) => boolean; mayAdd?: (rel: string) => boolean }): string[] {
  const problems: string[] = [];
  for (const [rel, h] of before) {
    const now = after.get(rel);
    if (now === h || o.mayChange?.(rel)) continue;
    problems.push(now === undefined ? `input removed: ${rel}` : `input modified: ${rel}`);
  }
  for (const rel of after.keys()) {
    if (tempOwnerPid(basename(rel)) !== null) problems.push(`temporary left behind: ${rel}`);
    else if (!before.has(rel) && o.failed && !o.mayAdd?.(rel)) problems.push(`output left behind after a failure: ${rel}`);
  }
  return problems;
}

/** Raw JavaScript / system error text that must never reach a user. */
export const RAW_ERROR_RE = /\b(TypeError|RangeError|ReferenceError|SyntaxError|EvalError|InternalError)\b|Cannot read propert|is not a function|is not iterable|Maximum call stack|Invalid typed array length|Array buffer allocation failed|^ENOENT|\bENOENT:|\bEISDIR:|\bEACCES:|\bENOTDIR:|\bELOOP:|Invalid array length|\[object Object\]|^\s+at .+:\d+:\d+\)?$/m;

/** Checks a thrown value: a DcvgError with one clear line, else a problem string. */
export function errorProblem(e: unknown): string | null {
  if (!(e instanceof Error)) return `threw a non-Error: ${String(e).slice(0, 100)}`;
  if (!(e instanceof DcvgError)) return `untyped ${e.constructor.name}`;
  if (!e.message.trim()) return `${e.constructor.name} with an empty message`;
  if (e.message.includes('\n')) return `${e.constructor.name} message spans several lines`;
  const raw = RAW_ERROR_RE.exec(e.message);
  if (raw) return `${e.constructor.name} message carries raw text "${raw[0].trim()}"`;
  return null;
}

/** A stable class for grouping failures: digits, paths and quoted names folded. */
export function failureClass(problem: string, message: string): string {
  const m = message
    .replace(/\/[^\s:"',)]+/g, '<path>')
    .replace(/"[^"]*"/g, '"…"')
    .replace(/'[^']*'/g, "'…'")
    .replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/gi, 'N')
    .slice(0, 90);
  return `${problem} | ${m}`;
}
