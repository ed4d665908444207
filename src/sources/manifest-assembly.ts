// All manifest files together as one state, kept up to date file by file: the
// first file in path order to define an object wins it, the others are
// reported. Replacing a file costs in proportion to the objects it held and
// holds, not to the whole tree, and says which keys that may have changed.

import { namespacedName } from '../model/kubernetes.js';
import { firstInOrder } from '../model/keys.js';
import type { EndpointSlice, InputProblem, Service } from '../model/types.js';
import { GroupedKeys } from '../model/grouped-keys.js';

/** An object a file defines, once validated. */
export type ManifestObject =
  | { kind: 'Service'; service: Service }
  | { kind: 'EndpointSlice'; slice: EndpointSlice }
  /** A Service socklb does not translate (headless, ExternalName): it exists, so its slices are not orphans. */
  | { kind: 'IgnoredService'; key: string };

/** Keys of Services and EndpointSlices whose delivered object (or a Service's being ignored) may have changed. */
export interface AssemblyChanges {
  services: Set<string>;
  slices: Set<string>;
}

export class ManifestAssembly {
  /** What the state delivers, by `namespace/name`: the translated Services, the ignored ones, every slice. */
  readonly services = new Map<string, Service>();
  readonly ignoredServices = new Set<string>();
  readonly slices = new Map<string, EndpointSlice>();
  /** What each file defines, by path, then by identity (`Service default/web`). */
  private readonly files = new Map<string, ReadonlyMap<string, ManifestObject>>();
  /** Identity -> the paths defining it; the first in path order wins. */
  private readonly definers = new GroupedKeys();
  /** Identity -> the object in effect: the winning file's. */
  private readonly winners = new Map<string, ManifestObject>();
  /** Path -> the identities it defines that an earlier path wins. */
  private readonly shadowed = new Map<string, Set<string>>();

  /** Replaces what the file at `path` defines; undefined: the file is gone. */
  setFile(path: string, objects: ReadonlyMap<string, ManifestObject> | undefined, changes: AssemblyChanges): void {
    const before = this.files.get(path);
    if (objects) this.files.set(path, objects);
    else this.files.delete(path);
    for (const identity of before?.keys() ?? []) {
      if (objects?.has(identity)) continue;
      this.definers.delete(identity, path);
      this.shadowed.get(path)?.delete(identity);
      this.resolve(identity, changes);
    }
    for (const identity of objects?.keys() ?? []) {
      this.definers.add(identity, path);
      this.resolve(identity, changes);
    }
  }

  /** The objects that lose to an earlier file, as problems of the file `path`. */
  duplicateProblems(path: string): InputProblem[] {
    return [...(this.shadowed.get(path) ?? [])].map((identity) => ({
      source: path,
      object: identity,
      reason: `is also defined in ${firstInOrder(this.definers.keysOf(identity))}, which wins as the first in path order: remove one`,
    }));
  }

  private resolve(identity: string, changes: AssemblyChanges): void {
    const definers = this.definers.keysOf(identity);
    const winner = firstInOrder(definers);
    for (const path of definers) {
      let shadowed = this.shadowed.get(path);
      if (path === winner) shadowed?.delete(identity);
      else {
        if (!shadowed) this.shadowed.set(path, (shadowed = new Set()));
        shadowed.add(identity);
      }
      if (shadowed?.size === 0) this.shadowed.delete(path);
    }
    const before = this.winners.get(identity);
    const after = winner === undefined ? undefined : this.files.get(winner)?.get(identity);
    if (before === after) return;
    if (after) this.winners.set(identity, after);
    else this.winners.delete(identity);
    if (before) this.deliver(before, false, changes);
    if (after) this.deliver(after, true, changes);
  }

  /** Puts `object` in the state delivered, or takes it out (`present` false). */
  private deliver(object: ManifestObject, present: boolean, changes: AssemblyChanges): void {
    switch (object.kind) {
      case 'Service': {
        const key = namespacedName(object.service);
        if (present) this.services.set(key, object.service);
        else this.services.delete(key);
        changes.services.add(key);
        return;
      }
      case 'IgnoredService':
        if (present) this.ignoredServices.add(object.key);
        else this.ignoredServices.delete(object.key);
        changes.services.add(object.key);
        return;
      case 'EndpointSlice': {
        const key = namespacedName(object.slice);
        if (present) this.slices.set(key, object.slice);
        else this.slices.delete(key);
        changes.slices.add(key);
        return;
      }
    }
  }
}
