// BpfMap over a kernel map file descriptor, through libbpf's low-level calls.

import { SocklbError, errnoName } from '../errors.js';
import { countEntries, isArrayType, mapInfo, mapKeys, mapTypeName, valuesPerKey, type MapInfo } from '../kernel/bpf-objects.js';
import { userValueSize } from '../kernel/map-types.js';
import { libbpf } from '../kernel/libbpf.js';
import { pinnedMapPath } from '../pins/layout.js';
import { PinnedMapFds } from '../pins/maps.js';
import { MAP_CODECS, MAP_NAMES, SOCKET_MAPS, type SocketMapFds } from './layout.js';
import { mapWriteError, mapsByRole, updateEachInTurn, type BatchResult, type BpfMap, type DatapathMaps, type MapEntry } from './maps.js';

const ENOENT = 2;

/** Entries per bpf_map_lookup_batch call: 4096 counters of 2 CPUs are 256 KiB. */
const BATCH_ENTRIES = 4096;

export class KernelMap implements BpfMap {
  readonly name: string;
  readonly maxEntries: number;
  readonly id: number;
  readonly valuesPerKey: number;
  /** As bpftool prints it. */
  readonly type: string;
  private readonly keySize: number;
  /** All copies of a value: a per-CPU map's are each rounded up to 8 bytes. */
  private readonly valueSize: number;
  private readonly isArray: boolean;

  /** `fd` stays owned by the caller (a libbpf object, or openPinnedMaps). */
  constructor(
    readonly fd: number,
    private readonly info: MapInfo = mapInfo(fd),
  ) {
    this.name = info.name;
    this.type = mapTypeName(info.type);
    this.maxEntries = info.maxEntries;
    this.id = info.id;
    this.keySize = info.keySize;
    this.valuesPerKey = valuesPerKey(info.type);
    this.valueSize = userValueSize(info.type, info.valueSize, this.valuesPerKey);
    this.isArray = isArrayType(info.type);
  }

  update(key: Buffer, value: Buffer): void {
    const rc = libbpf.mapUpdateElem(this.fd, key, value, 0);
    if (rc < 0) throw mapWriteError(this, 'update', -rc);
  }

  /**
   * One bpf_map_update_batch (kernel 5.6) for all the entries: the kernel updates them one by one
   * in order, as bpf_map_update_elem would, stops at the first it refuses and says how many it
   * wrote. One system call and one koffi call instead of one of each per entry: a first sync at
   * 10000 Services writes 70000 entries.
   */
  updateBatch(entries: readonly MapEntry[]): BatchResult {
    if (entries.length === 0) return { written: 0 };
    const keys = Buffer.allocUnsafe(entries.length * this.keySize);
    const values = Buffer.allocUnsafe(entries.length * this.valueSize);
    entries.forEach(([key, value], entry) => {
      // A short entry would shift every later one onto its neighbour's bytes.
      if (key.length !== this.keySize || value.length !== this.valueSize) {
        throw new Error(
          `${this.name}: a batch entry of ${key.length}/${value.length} bytes, the map's are ${this.keySize}/${this.valueSize}`,
        );
      }
      key.copy(keys, entry * this.keySize);
      value.copy(values, entry * this.valueSize);
    });
    const count = [entries.length];
    const rc = libbpf.mapUpdateBatch(this.fd, keys, values, count, null);
    if (rc >= 0) return { written: entries.length };
    const written = count[0] ?? 0;
    // Refused before its first entry, the kernel leaves the count as given (a map type without
    // batch updates does): one by one then, so that each entry is accepted or refused on its own.
    if (written === entries.length) return updateEachInTurn(this, entries);
    return { written, error: mapWriteError(this, 'update', -rc) };
  }

  delete(key: Buffer): void {
    const rc = libbpf.mapDeleteElem(this.fd, key);
    if (rc < 0 && -rc !== ENOENT) throw mapWriteError(this, 'delete', -rc);
  }

  lookup(key: Buffer): Buffer | undefined {
    const value = Buffer.alloc(this.valueSize);
    return libbpf.mapLookupElem(this.fd, key, value) < 0 ? undefined : value;
  }

  /** The keys it holds, counted in batches (countEntries). */
  count(): number {
    return countEntries(this.fd, this.info);
  }

  /** An array's entries come in batches: a handful of system calls instead of two per entry. */
  entries(): Iterable<[Buffer, Buffer]> {
    return this.isArray ? this.batchedEntries() : this.walkedEntries();
  }

  /**
   * One pair of buffers for the whole read, reused batch after batch (a read of
   * 65537 counters on 2 CPUs allocated 4 MiB, now 256 KiB): an entry handed out
   * is a view that the next batch overwrites, so it must be used, not kept.
   */
  private *batchedEntries(): Generator<[Buffer, Buffer]> {
    // An array's batch position is its next index.
    const next = Buffer.alloc(4);
    let position: Buffer | null = null;
    const keys = Buffer.alloc(BATCH_ENTRIES * this.keySize);
    const values = Buffer.alloc(BATCH_ENTRIES * this.valueSize);
    for (;;) {
      const count = [BATCH_ENTRIES];
      const rc = libbpf.mapLookupBatch(this.fd, position, next, keys, values, count, null);
      if (rc < 0 && -rc !== ENOENT) throw new SocklbError('SOCKLB_ERR_LIBBPF', `bpf_map_lookup_batch(${this.name}): ${errnoName(-rc)}`);
      for (let entry = 0; entry < (count[0] ?? 0); entry++) {
        yield [
          keys.subarray(entry * this.keySize, (entry + 1) * this.keySize),
          values.subarray(entry * this.valueSize, (entry + 1) * this.valueSize),
        ];
      }
      if (rc < 0) return;
      position ??= Buffer.alloc(4);
      next.copy(position);
    }
  }

  private *walkedEntries(): Generator<[Buffer, Buffer]> {
    for (const key of mapKeys(this.fd, this.keySize)) {
      const value = this.lookup(key);
      // A key deleted between the two calls is simply gone.
      if (value) yield [key, value];
    }
  }
}

/**
 * Checks a map against the layout this build was compiled with: a pinned map
 * of another layout must be refused, never read with the wrong codec.
 */
export function checkLayout(role: keyof DatapathMaps, info: MapInfo, where: string): void {
  const codecs = MAP_CODECS[role];
  if (info.name !== MAP_NAMES[role] || info.keySize !== codecs.key.size || info.valueSize !== codecs.value.size) {
    throw new SocklbError(
      'SOCKLB_ERR_MAP_LAYOUT',
      `${where}: map ${info.name} has key/value sizes ${info.keySize}/${info.valueSize}, ` +
        `this build expects ${MAP_NAMES[role]} with ${codecs.key.size}/${codecs.value.size}; ` +
        `run \`socklb cleanup\` with the build that pinned it`,
    );
  }
}

/** Opens the maps pinned under `pinDirectory` without loading anything, each checked against this build's layout. */
export function openPinnedMaps(pinDirectory: string): DatapathMaps & { close(): void } {
  const pinned = new PinnedMapFds(pinDirectory);
  try {
    const maps = mapsByRole((role) => {
      const fd = pinned.open(MAP_NAMES[role]);
      const info = mapInfo(fd);
      checkLayout(role, info, pinnedMapPath(pinDirectory, MAP_NAMES[role]));
      return new KernelMap(fd, info);
    });
    return { ...maps, close: () => pinned.close() };
  } catch (error) {
    pinned.close();
    throw error;
  }
}

/** The socket maps pinned under `pinDirectory`, for the socket iterators of a command run beside the agent. */
export function openPinnedSocketMaps(pinDirectory: string): { fds: SocketMapFds; close(): void } {
  const pinned = new PinnedMapFds(pinDirectory);
  try {
    const fds = {} as SocketMapFds;
    for (const role of SOCKET_MAPS) fds[role] = pinned.open(MAP_NAMES[role]);
    return { fds, close: () => pinned.close() };
  } catch (error) {
    pinned.close();
    throw error;
  }
}
