/** Byte- and JSON-level mutations shared by the fuzz areas. */
import type { FuzzRng } from './rng.js';

/** A length to cut at: near the start, near the end, or anywhere. */
export function cutPoint(rng: FuzzRng, n: number): number {
  if (n <= 1) return 0;
  switch (rng.int(0, 3)) {
    case 0:
      return rng.int(0, Math.min(n - 1, 16));
    case 1:
      return Math.max(0, n - rng.int(1, Math.min(n, 16)));
    default:
      return rng.int(0, n - 1);
  }
}

/** One generic byte mutation; returns the new bytes and what was done. */
export function mutateBytes(rng: FuzzRng, src: Uint8Array): { bytes: Buffer; what: string } {
  const b = Buffer.from(src);
  const n = b.length;
  const kind = rng.int(0, 6);
  if (n === 0) return { bytes: Buffer.from(rng.bytes(rng.int(1, 64))), what: 'random bytes' };
  switch (kind) {
    case 0: {
      const k = rng.int(1, 8);
      for (let i = 0; i < k; i++) b[rng.int(0, n - 1)]! ^= 1 << rng.int(0, 7);
      return { bytes: b, what: `${k} bit flips` };
    }
    case 1: {
      const c = cutPoint(rng, n);
      return { bytes: b.subarray(0, c), what: `truncated to ${c} of ${n} bytes` };
    }
    case 2: {
      const at = rng.int(0, n - 1);
      const len = rng.int(1, Math.min(64, n - at));
      const fill = rng.pick([0x00, 0xff, -1]);
      for (let i = at; i < at + len; i++) b[i] = fill < 0 ? rng.u32() & 0xff : fill;
      return { bytes: b, what: `${len} bytes at ${at} overwritten with ${fill < 0 ? 'random' : fill}` };
    }
    case 3: {
      const extra = rng.chance(0.5) ? Buffer.from(rng.bytes(rng.int(1, 300))) : Buffer.alloc(rng.int(1, 300));
      return { bytes: Buffer.concat([b, extra]), what: `${extra.length} trailing bytes` };
    }
    case 4: {
      const at = rng.int(0, n);
      const ins = Buffer.from(rng.bytes(rng.int(1, 16)));
      return { bytes: Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]), what: `${ins.length} bytes inserted at ${at}` };
    }
    case 5: {
      const at = rng.int(0, n - 1);
      const len = rng.int(1, Math.min(32, n - at));
      return { bytes: Buffer.concat([b.subarray(0, at), b.subarray(at + len)]), what: `${len} bytes deleted at ${at}` };
    }
    default: {
      // Copy one region over another (duplicated structure, e.g. a header record repeated).
      const len = rng.int(1, Math.min(64, n));
      const from = rng.int(0, n - len);
      const to = rng.int(0, n - len);
      b.copyWithin(to, from, from + len);
      return { bytes: b, what: `${len} bytes copied from ${from} to ${to}` };
    }
  }
}

/**
 * Raw JSON fragments (text, not values) so that numbers JSON.parse turns into Infinity or imprecise doubles, and
 * duplicate keys, reach the parser under test exactly as a hostile file would hold them.
 */
export const WEIRD_JSON: readonly string[] = [
  'null', 'true', 'false', '0', '-1', '1.5', '-0', '1e308', '1e400', '-1e400', '9007199254740993', '18446744073709551616',
  '2147483648', '4294967296', '""', '"x"', '"__proto__"', '"constructor"', '"toString"', '[]', '{}', '[[]]', '[-1]', '[1e400]',
  '{"__proto__":{"polluted":1}}', '"\\u0000"', '"\\ud800"', '[0,0]', '[1,2,3]', '"1"', '1e-400', '123456789012',
];

/** JSON paths (arrays of keys/indices) of every value in a parsed JSON tree. */
export function jsonPaths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix);
  if (Array.isArray(v)) v.forEach((x, i) => jsonPaths(x, [...prefix, i], out));
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) jsonPaths((v as Record<string, unknown>)[k], [...prefix, k], out);
  return out;
}

const RAW = '\u0001RAW';

/**
 * Serialises `root` with the value at `path` replaced by a raw JSON fragment (or deleted when raw is null). The root
 * itself (empty path) becomes the fragment.
 */
export function jsonWithRaw(root: unknown, path: (string | number)[], raw: string | null): string {
  if (path.length === 0) return raw ?? '';
  const clone = JSON.parse(JSON.stringify(root)) as unknown;
  let parent = clone as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (raw === null) {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
    return JSON.stringify(clone);
  }
  parent[last] = RAW;
  return JSON.stringify(clone).replace(JSON.stringify(RAW), raw);
}

/** A random structured JSON mutation of `root`: replace a value by a weird fragment, delete one, or scale a number. */
export function mutateJson(rng: FuzzRng, root: unknown, extra: readonly string[] = []): { text: string; what: string } {
  const paths = jsonPaths(root);
  const path = rng.chance(0.03) ? [] : rng.pick(paths.slice(1).length ? paths.slice(1) : paths);
  const where = path.length ? path.join('.') : '<root>';
  const kind = rng.int(0, 9);
  if (kind === 0 && path.length) return { text: jsonWithRaw(root, path, null), what: `deleted ${where}` };
  let cur: unknown = root;
  for (const k of path) cur = (cur as Record<string | number, unknown>)[k];
  if (kind <= 2 && typeof cur === 'number') {
    const raw = rng.pick(['0', '-1', String(cur * 1000 + 1), String(cur + 0.5), '1000000', '1e9', '2147483647', String(-cur), '65536']);
    return { text: jsonWithRaw(root, path, raw), what: `${where} = ${raw}` };
  }
  if (kind <= 2 && typeof cur === 'string' && cur.includes('@')) {
    const parts = cur.split('@');
    parts[rng.int(1, parts.length - 1)] = rng.pick(['0', '-1', '999999', '1.5', '', 'x', '1e9']);
    if (rng.chance(0.2)) parts.push('3');
    const raw = JSON.stringify(parts.join('@'));
    return { text: jsonWithRaw(root, path, raw), what: `${where} = ${raw}` };
  }
  if (kind === 3 && Array.isArray(cur) && cur.length) {
    // Longer or shorter lists (e.g. more stages than block types).
    const longer = rng.chance(0.5);
    const raw = JSON.stringify(longer ? [...cur, ...cur] : cur.slice(0, -1));
    return { text: jsonWithRaw(root, path, raw), what: `${where} ${longer ? 'doubled' : 'shortened'}` };
  }
  const raw = rng.pick([...WEIRD_JSON, ...extra]);
  return { text: jsonWithRaw(root, path, raw), what: `${where} = ${raw}` };
}
