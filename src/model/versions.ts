// How the successive versions of one object take effect, the same for every
// source: a version with the same content as the one in effect is no change,
// and a version that is invalid leaves the last valid one in effect, reported,
// so that a bad edit does not take a working Service down; only deleting the
// object removes it.

/**
 * Whether `a` and `b` hold the same plain data (the model's objects, problems, arrays of them),
 * though they may be different objects: a file read again, an object the API sent again. Compared
 * as JSON: the parsers build every object of a kind with its fields in one order. JSON reads a Map
 * or a Set as {}: pass their entries, as arrays.
 */
export function sameContent(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  // A new or deleted object: no need to write the other out.
  if (a === undefined || b === undefined) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What is in effect of an object whose latest version is invalid for `reason`, and the problem to report. */
export function keepLastValid<T>(reason: string, lastValid: T | undefined): { value: T | undefined; problem: string } {
  return { value: lastValid, problem: lastValid === undefined ? reason : `${reason}; its previous valid version stays in effect` };
}
