// All manifest files together as one state, kept up to date file by file: the
// first file in path order to define an object wins it, the others are
// reported. Replacing a file costs in proportion to the objects it held and
// holds, not to the whole tree, and says which keys that may have changed.

import { namespacedName, sliceServiceKey } from '../model/kubernetes.js';
import { firstInOrder } from '../model/keys.js';
import type { EndpointSlice, InputProblem, Service } from '../model/types.js';
import { GroupedKeys } from '../model/grouped-keys.js';

/** An object a file defines, once validated. */
export type ManifestObject =
  | { kind: 'Service'; service: Service }
  | { kind: 'EndpointSlice'; slice: EndpointSlice }
  /** A Service socklb does not translate (headless, ExternalName): its slices are left out too. */
  | { kind: 'IgnoredService'; key: string };

/** Keys of Services and EndpointSlices whose delivered object may have changed. */
export interface AssemblyChanges {
  services: Set<string>;
  slices: Set<string>;
}

export class ManifestAssembly {
  /** By `namespace/name`: what the state delivers. */
  readonly services = new Map<string, Service>();
  /** By `namespace/name`, without the slices of ignored Services (they are not orphans). */
  readonly slices = new Map<string, EndpointSlice>();
  /** What each file defines, by path, then by identity (`Service default/web`). */
  private readonly files = new Map<string, ReadonlyMap<string, ManifestObject>>();
  /** Identity -> the paths defining it; the first in path order wins. */
  private readonly definers = new GroupedKeys();
  /** Identity -> the object in effect: the winning file's. */
  private readonly winners = new Map<string, ManifestObject>();
  /** Path -> the identities it defines that an earlier path wins. */
  private readonly shadowed = new Map<string, Set<string>>();
  private readonly ignoredServices = new Set<string>();
  /** Every winning slice, those of ignored Services too, by key; and their keys by the Service they name. */
  private readonly allSlices = new Map<string, EndpointSlice>();
  private readonly sliceKeysByService = new GroupedKeys();

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
    if (before) this.withdraw(before, changes);
    if (after) this.put(after, changes);
  }

  private put(object: ManifestObject, changes: AssemblyChanges): void {
    switch (object.kind) {
      case 'Service': {
        const key = namespacedName(object.service);
        this.services.set(key, object.service);
        changes.services.add(key);
        return;
      }
      case 'IgnoredService':
        this.ignoredServices.add(object.key);
        this.redeliverSlicesOf(object.key, changes);
        return;
      case 'EndpointSlice': {
        const key = namespacedName(object.slice);
        this.allSlices.set(key, object.slice);
        this.sliceKeysByService.add(sliceServiceKey(object.slice), key);
        this.redeliverSlice(key, changes);
        return;
      }
    }
  }

  private withdraw(object: ManifestObject, changes: AssemblyChanges): void {
    switch (object.kind) {
      case 'Service': {
        const key = namespacedName(object.service);
        this.services.delete(key);
        changes.services.add(key);
        return;
      }
      case 'IgnoredService':
        this.ignoredServices.delete(object.key);
        this.redeliverSlicesOf(object.key, changes);
        return;
      case 'EndpointSlice': {
        const key = namespacedName(object.slice);
        this.allSlices.delete(key);
        this.sliceKeysByService.delete(sliceServiceKey(object.slice), key);
        this.redeliverSlice(key, changes);
        return;
      }
    }
  }

  private redeliverSlicesOf(serviceKey: string, changes: AssemblyChanges): void {
    for (const key of this.sliceKeysByService.keysOf(serviceKey)) this.redeliverSlice(key, changes);
  }

  /** Delivers the slice at `key` unless it is gone or its Service is ignored. */
  private redeliverSlice(key: string, changes: AssemblyChanges): void {
    const slice = this.allSlices.get(key);
    if (slice && !this.ignoredServices.has(sliceServiceKey(slice))) this.slices.set(key, slice);
    else this.slices.delete(key);
    changes.slices.add(key);
  }
}
