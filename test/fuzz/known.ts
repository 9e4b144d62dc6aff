/**
 * Failure classes known and not yet fixed. A case matching one is reported (as a todo), not failed. Remove an entry
 * once its fix is merged: the suite then guards it.
 */
import type { CaseResult } from './runner.js';

export interface KnownFailure {
  area: string;
  /** Matched against "<problems> | <error name>: <error message>". */
  pattern: RegExp;
  owner: string;
}

// Every class found by the first run of this suite has been fixed; add an entry here only with an issue to fix it.
export const KNOWN: KnownFailure[] = [];

export function knownFailure(r: CaseResult): KnownFailure | undefined {
  const text = `${r.problems.join('; ')} | ${r.error ? `${r.error.name}: ${r.error.message}` : ''}`;
  return KNOWN.find((k) => k.area === r.area && k.pattern.test(text));
}
