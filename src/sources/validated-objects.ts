// One collection of API objects, validated as they arrive, with the rule of
// every source (src/model/versions.ts): an object that turns invalid is
// reported and its last valid version stays in effect; only deleting it
// removes it. It also decides what
// counts as a change, so that a relist or an update that leaves every
// validated object as it was (a status write, a new resourceVersion) wakes
// no one, and an unchanged object keeps its identity (the model compares
// references before content).

import { namespacedName, objectRef, type ParseResult } from '../model/kubernetes.js';
import { keepLastValid, sameContent } from '../model/versions.js';
import type { KubeObject } from './api-client.js';
import type { ReflectorStore } from './reflector.js';

export interface ValidatedEntry<T> {
  resourceVersion: string | undefined;
  /** The version in effect: the object's own, or its last valid one while it is invalid. */
  value: T | undefined;
  /** Valid, but nothing socklb translates (headless, ExternalName, FQDN). */
  ignored: boolean;
  /** Why the object's current version is rejected. */
  problem: string | undefined;
}

export class ValidatedObjects<T extends object> implements ReflectorStore {
  private current = new Map<string, ValidatedEntry<T>>();

  constructor(
    private readonly parse: (raw: unknown) => ParseResult<T>,
    /** Called with the key of every object whose entry changed in effect (added, changed, removed). */
    private readonly onChange: (key: string) => void,
  ) {}

  /** By `namespace/name`. */
  get entries(): ReadonlyMap<string, ValidatedEntry<T>> {
    return this.current;
  }

  replace(objects: KubeObject[]): void {
    const next = new Map<string, ValidatedEntry<T>>();
    const changed: string[] = [];
    for (const object of objects) {
      const key = keyOf(object);
      if (key === undefined) continue;
      const before = this.current.get(key);
      const after = this.validate(object, before);
      next.set(key, after);
      if (!sameEffect(before, after)) changed.push(key);
    }
    for (const key of this.current.keys()) if (!next.has(key)) changed.push(key);
    this.current = next;
    for (const key of changed) this.onChange(key);
  }

  upsert(object: KubeObject): void {
    const key = keyOf(object);
    if (key === undefined) return;
    const before = this.current.get(key);
    const after = this.validate(object, before);
    this.current.set(key, after);
    if (!sameEffect(before, after)) this.onChange(key);
  }

  remove(object: KubeObject): void {
    const key = keyOf(object);
    if (key !== undefined && this.current.delete(key)) this.onChange(key);
  }

  private validate(object: KubeObject, before: ValidatedEntry<T> | undefined): ValidatedEntry<T> {
    const resourceVersion = object.metadata?.resourceVersion;
    // The same version of an object was validated already (a relist brings every object again).
    if (before !== undefined && resourceVersion !== undefined && before.resourceVersion === resourceVersion) return before;
    const result = this.parse(object);
    switch (result.kind) {
      case 'ok': {
        const previous = before?.value;
        return {
          resourceVersion,
          value: previous !== undefined && sameContent(previous, result.value) ? previous : result.value,
          ignored: false,
          problem: undefined,
        };
      }
      case 'ignored':
        return { resourceVersion, value: undefined, ignored: true, problem: undefined };
      case 'invalid':
        return { resourceVersion, ignored: false, ...keepLastValid(result.reason, before?.value) };
    }
  }
}

/** `namespace/name`; undefined for an object without a name, which the API server never serves. */
function keyOf(object: KubeObject): string | undefined {
  const ref = objectRef(object);
  return ref && namespacedName(ref);
}

function sameEffect<T>(before: ValidatedEntry<T> | undefined, after: ValidatedEntry<T>): boolean {
  return before !== undefined && before.value === after.value && before.ignored === after.ignored && before.problem === after.problem;
}
