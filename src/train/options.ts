/** Checks of a run's options (new runs name the flag, resumed runs the checkpoint's `options.<key>`). */
import { showValue } from '../errors.js';

/** A check of one option's value: null when fine, else the end of the sentence "<name> must be ..., got ...". */
export type Check = (v: unknown) => string | null;

export const shown = showValue;
export const expected = (what: string, v: unknown): string => `must be ${what}, got ${shown(v)}`;
export const must = (ok: boolean, what: string, v: unknown): string | null => (ok ? null : expected(what, v));
export const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
export const posInt: Check = (v) => must(Number.isSafeInteger(v) && (v as number) >= 1, 'a positive integer', v);
export const nonNegInt: Check = (v) => must(Number.isSafeInteger(v) && (v as number) >= 0, 'an integer >= 0', v);
export const anyInt: Check = (v) => must(Number.isSafeInteger(v), 'an integer', v);
export const positive: Check = (v) => must(isNum(v) && v > 0, 'a finite number > 0', v);
export const nonNeg: Check = (v) => must(isNum(v) && v >= 0, 'a finite number >= 0', v);
export const unit: Check = (v) => must(isNum(v) && v >= 0 && v <= 1, 'in [0, 1]', v);
export const unitOpen: Check = (v) => must(isNum(v) && v >= 0 && v < 1, 'in [0, 1)', v);
export const text: Check = (v) => must(typeof v === 'string' && v !== '', 'a non-empty string', v);
export const oneOf =
  (...allowed: string[]): Check =>
  (v) =>
    must(typeof v === 'string' && allowed.includes(v), allowed.join(' or '), v);
export const optional =
  (c: Check): Check =>
  (v) =>
    v === undefined ? null : c(v);
export const nullable =
  (c: Check): Check =>
  (v) =>
    v === undefined || v === null ? null : c(v);
export const regex: Check = (v) => {
  if (typeof v !== 'string') return expected('a regular expression', v);
  try {
    new RegExp(v);
    return null;
  } catch (e) {
    return `is not a regular expression: ${(e as Error).message}`;
  }
};

/** The first option that fails its check, as "<name> must be ..., got ..." (name: the flag, or `options.<key>`). */
export function badOptionOf<K extends string>(checks: readonly (readonly [K, string, Check])[], o: Record<string, unknown>, byFlag: boolean): string | null {
  for (const [key, flag, check] of checks) {
    const why = check(o[key]);
    if (why) return `${byFlag ? flag : `options.${key}`} ${why}`;
  }
  return null;
}
