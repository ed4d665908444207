// Keys filed by group: slice keys by the Service they name, manifest paths by the object they
// define, the frontends naming a service id. A group nearly
// always has one key, so it is kept as that key, or a sorted array for several, not as a Set,
// which costs about 180 bytes before its first key (docs/footprint.md). A group with no key left
// is dropped.

/** Where the groups are kept: a Map, or an IdMap for groups that are map ids. */
interface GroupStore<G> {
  get(group: G): string | string[] | undefined;
  set(group: G, keys: string | string[]): unknown;
  delete(group: G): unknown;
}

export class GroupedKeys<G = string> {
  constructor(private readonly byGroup: GroupStore<G> = new Map<G, string | string[]>()) {}

  add(group: G, key: string): void {
    const keys = this.keysOf(group);
    if (keys.length === 0) this.byGroup.set(group, key);
    else if (!keys.includes(key)) this.byGroup.set(group, [...keys, key].sort());
  }

  delete(group: G, key: string): void {
    const others = this.keysOf(group).filter((other) => other !== key);
    if (others.length === 0) this.byGroup.delete(group);
    else this.byGroup.set(group, others.length === 1 ? others[0]! : others);
  }

  /** In sorted order; empty for a group with none. */
  keysOf(group: G): readonly string[] {
    const keys = this.byGroup.get(group);
    return keys === undefined ? [] : typeof keys === 'string' ? [keys] : keys;
  }

  has(group: G): boolean {
    return this.byGroup.get(group) !== undefined;
  }
}
