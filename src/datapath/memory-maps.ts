// In-memory maps with the kernel's semantics that matter to the agent: a
// capacity (E2BIG when full), atomic replacement, idempotent deletes. The
// faulty variant fails writes at a set rate, so that tests can show that a
// failed write never leaves the datapath inconsistent.

import { MAP_NAMES } from './layout.js';
import {
  DEFAULT_CAPACITIES,
  mapWriteError,
  mapsByRole,
  roleCapacity,
  updateEachInTurn,
  type BatchResult,
  type BpfMap,
  type DatapathMaps,
  type MapCapacities,
  type MapEntry,
} from './maps.js';
import type { ReaderFence } from './readers.js';

const E2BIG = 7;
const EAGAIN = 11;

export class MemoryMap implements BpfMap {
  private readonly entriesByKey = new Map<string, [Buffer, Buffer]>();

  constructor(
    readonly name: string,
    readonly maxEntries: number,
    readonly valuesPerKey = 1,
  ) {}

  update(key: Buffer, value: Buffer): void {
    const id = key.toString('hex');
    if (!this.entriesByKey.has(id) && this.entriesByKey.size >= this.maxEntries) throw mapWriteError(this, 'update', E2BIG);
    this.entriesByKey.set(id, [Buffer.from(key), Buffer.from(value)]);
  }

  updateBatch(entries: readonly MapEntry[]): BatchResult {
    return updateEachInTurn(this, entries);
  }

  delete(key: Buffer): void {
    this.entriesByKey.delete(key.toString('hex'));
  }

  lookup(key: Buffer): Buffer | undefined {
    return this.entriesByKey.get(key.toString('hex'))?.[1];
  }

  entries(): Iterable<[Buffer, Buffer]> {
    return [...this.entriesByKey.values()];
  }

  get size(): number {
    return this.entriesByKey.size;
  }
}

/**
 * Sized as the loader sizes the kernel's (DEFAULT_CAPACITIES where not given); `cpus`: the copies of
 * each per-CPU value (the stats map's).
 */
export function memoryMaps(capacities: Partial<MapCapacities> = {}, cpus = 1): DatapathMaps {
  const sized = { ...DEFAULT_CAPACITIES, ...capacities };
  return mapsByRole((role) => new MemoryMap(MAP_NAMES[role], roleCapacity(role, sized), role === 'stats' ? cpus : 1));
}

/** Fails each write with EAGAIN when `shouldFail(operation)` says so; reads always work. */
export class FaultyMap implements BpfMap {
  constructor(
    private readonly inner: BpfMap,
    private readonly shouldFail: (operation: 'update' | 'delete') => boolean,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  get maxEntries(): number {
    return this.inner.maxEntries;
  }

  get valuesPerKey(): number {
    return this.inner.valuesPerKey;
  }

  update(key: Buffer, value: Buffer): void {
    if (this.shouldFail('update')) throw mapWriteError(this, 'update', EAGAIN);
    this.inner.update(key, value);
  }

  /** Each entry may fail on its own, as the kernel's batch stops at whichever entry it refuses. */
  updateBatch(entries: readonly MapEntry[]): BatchResult {
    return updateEachInTurn(this, entries);
  }

  delete(key: Buffer): void {
    if (this.shouldFail('delete')) throw mapWriteError(this, 'delete', EAGAIN);
    this.inner.delete(key);
  }

  lookup(key: Buffer): Buffer | undefined {
    return this.inner.lookup(key);
  }

  entries(): Iterable<[Buffer, Buffer]> {
    return this.inner.entries();
  }
}

export function faultyMaps(inner: DatapathMaps, shouldFail: () => boolean): DatapathMaps {
  return mapsByRole((role) => new FaultyMap(inner[role], shouldFail));
}

/** The fence of maps no program reads: returns at once, and counts its calls for tests. */
export class InstantReaderFence implements ReaderFence {
  waits = 0;

  waitForReaders(): void {
    this.waits++;
  }
}
