// A Map keyed by small non-negative integers (map ids, slot numbers), kept as an array indexed by
// the key. The agent hands ids out lowest first, so its arrays are dense: 8 bytes an entry where a
// Map costs about 46 in its hash table alone, and a small Map (a service's few slots) about 180
// bytes before its first entry (docs/footprint.md). Iterates in key order.

/** Keys at or past this go to a Map: maps written by something else may hold any u32 as a key. */
const DENSE_KEYS = 1 << 20;

/** Below this length the array grows to its exact size: V8 would give a new array 16 spare elements. */
const EXACT_GROWTH = 64;

export class IdMap<V> implements ReadonlyMap<number, V> {
  // Plain fields, not #private: assert.deepEqual compares a state with the same read back from the
  // maps. So the form is canonical: holes for absent keys, none at the end, no empty wild Map.
  private dense: V[] = [];
  private wild: Map<number, V> | undefined;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(key: number): V | undefined {
    return key < DENSE_KEYS ? this.dense[key] : this.wild?.get(key);
  }

  has(key: number): boolean {
    return key < DENSE_KEYS ? key in this.dense : (this.wild?.has(key) ?? false);
  }

  set(key: number, value: V): this {
    if (!this.has(key)) this.count++;
    if (key >= DENSE_KEYS) (this.wild ??= new Map()).set(key, value);
    else if (key === this.dense.length && key < EXACT_GROWTH) this.dense = this.dense.concat([value]);
    else this.dense[key] = value;
    return this;
  }

  delete(key: number): boolean {
    if (!this.has(key)) return false;
    this.count--;
    if (key >= DENSE_KEYS) {
      this.wild!.delete(key);
      if (this.wild!.size === 0) this.wild = undefined;
      return true;
    }
    // eslint-disable-next-line @typescript-eslint/no-array-delete -- a hole, the canonical form of an absent key (see dense)
    delete this.dense[key];
    let end = this.dense.length;
    while (end > 0 && !(end - 1 in this.dense)) end--;
    this.dense.length = end;
    return true;
  }

  *entries(): MapIterator<[number, V]> {
    for (let key = 0; key < this.dense.length; key++) {
      if (key in this.dense) yield [key, this.dense[key]!];
    }
    if (this.wild) yield* [...this.wild].sort(([a], [b]) => a - b);
  }

  *keys(): MapIterator<number> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): MapIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): MapIterator<[number, V]> {
    return this.entries();
  }

  forEach(callback: (value: V, key: number, map: ReadonlyMap<number, V>) => void): void {
    for (const [key, value] of this.entries()) callback(value, key, this);
  }
}
