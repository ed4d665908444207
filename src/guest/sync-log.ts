// The last syncs' writes, numbered. A guest whose marker names one of them is, by construction, a
// copy of the node's maps as they were after that sync, and needs only the ones after it; a guest
// further behind (or new, or of another epoch) needs a snapshot. Bounded in operations, so that a
// burst of changes costs the host a fixed amount whatever the number of guests.

import type { SyncWrites } from './writes.js';

export interface LogEntry {
  seq: bigint;
  /** The sync hands out ids freed before it: the guest waits for its programs' readers first. */
  waitForReaders: boolean;
  writes: SyncWrites;
  /** How many operations it holds, which the log's bound counts. */
  operations: number;
  /**
   * Its BATCH frames per guest map layout (WriteTarget.layout), encoded for the first guest of a
   * layout and written as they are to the others: a sync costs the host one encoding per layout,
   * not one per guest.
   */
  readonly frames: Map<string, readonly Buffer[]>;
}

/** Operations kept at most: a few hundred ordinary syncs, a few MiB of objects. */
export const DEFAULT_LOG_OPERATIONS = 100_000;

export class SyncLog {
  readonly #entries: LogEntry[] = [];
  #operations = 0;
  #seq = 0n;

  constructor(private readonly maxOperations = DEFAULT_LOG_OPERATIONS) {}

  /** The seq of the last sync appended: the state of the node's maps now. */
  get seq(): bigint {
    return this.#seq;
  }

  append(writes: SyncWrites, waitForReaders: boolean): LogEntry {
    let operations = writes.cleanup.length + writes.addresses.length;
    for (const frontend of writes.frontends) operations += frontend.operations.length;
    const entry: LogEntry = { seq: ++this.#seq, waitForReaders, writes, operations, frames: new Map() };
    this.#entries.push(entry);
    this.#operations += operations;
    // The newest stays even when it alone is over the bound: guests up to date still need it.
    while (this.#operations > this.maxOperations && this.#entries.length > 1) this.#operations -= this.#entries.shift()!.operations;
    return entry;
  }

  /**
   * A sync no guest was sent (none was registered): its seq is taken all the same, so that a guest
   * whose marker names an earlier one is never taken for up to date, and the entries go, since they
   * no longer lead to the node's state.
   */
  skip(): void {
    this.#seq++;
    this.#entries.length = 0;
    this.#operations = 0;
  }

  /** The entries after `seq`, oldest first; undefined when some of them are no longer kept. */
  since(seq: bigint): LogEntry[] | undefined {
    if (seq > this.#seq) return undefined;
    if (seq === this.#seq) return [];
    const first = this.#entries[0];
    if (first === undefined || first.seq > seq + 1n) return undefined;
    return this.#entries.slice(Number(seq + 1n - first.seq));
  }
}
