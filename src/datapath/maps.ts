// The only way the agent touches the datapath: raw map entries behind a small
// interface, with a libbpf implementation (kernel-maps.ts), an in-memory one
// and a fault-injecting one (memory-maps.ts) for tests.

import { SocklbError, errnoName } from '../errors.js';
import { MAP_CODECS, MAP_NAMES } from './layout.js';

export interface BpfMap {
  readonly name: string;
  readonly maxEntries: number;
  /**
   * Copies of the value each key has: one per possible CPU for a per-CPU map,
   * else 1. Values are read and written as all copies one after the other.
   */
  readonly valuesPerKey: number;
  /** Creates or replaces; a reader sees the old value or the new one, never a mix. */
  update(key: Buffer, value: Buffer): void;
  /**
   * Creates or replaces the entries in their order, as `update` one by one would, and stops at the
   * first refusal. A reader may see any prefix of them written, as with `update` one by one.
   */
  updateBatch(entries: readonly MapEntry[]): BatchResult;
  /** Deleting an absent key is not an error: every step can be repeated. */
  delete(key: Buffer): void;
  lookup(key: Buffer): Buffer | undefined;
  /** Each entry may be a view that the iteration's next steps overwrite: decode it, do not keep it. */
  entries(): Iterable<[Buffer, Buffer]>;
}

export type MapEntry = readonly [key: Buffer, value: Buffer];

/** How a batch of updates went: the first `written` entries are in the map; `error` refused the next one. */
export interface BatchResult {
  written: number;
  error?: Error;
}

/** updateBatch as a loop of `update`: for the maps that have no batch of their own. */
export function updateEachInTurn(map: BpfMap, entries: readonly MapEntry[]): BatchResult {
  for (let written = 0; written < entries.length; written++) {
    const [key, value] = entries[written]!;
    try {
      map.update(key, value);
    } catch (error) {
      return { written, error: error instanceof Error ? error : new Error(String(error)) };
    }
  }
  return { written: entries.length };
}

/** The maps the agent writes, by role. */
export interface DatapathMaps {
  frontends: BpfMap;
  slots: BpfMap;
  backends: BpfMap;
  serviceNames: BpfMap;
  /** Per-CPU counters by service id: the agent only zeroes an id before handing it out. */
  stats: BpfMap;
  /** The Services' cluster IPs, and the service CIDRs: the addresses whose unserved calls are refused. */
  clusterIPs: BpfMap;
  serviceRanges: BpfMap;
}

export type MapRole = keyof DatapathMaps;

export const MAP_ROLES: readonly MapRole[] = ['frontends', 'slots', 'backends', 'serviceNames', 'stats', 'clusterIPs', 'serviceRanges'];

/** Builds one map per role. */
export function mapsByRole(make: (role: MapRole) => BpfMap): DatapathMaps {
  return {
    frontends: make('frontends'),
    slots: make('slots'),
    backends: make('backends'),
    serviceNames: make('serviceNames'),
    stats: make('stats'),
    clusterIPs: make('clusterIPs'),
    serviceRanges: make('serviceRanges'),
  };
}

/** How many entries each sized map holds. */
export interface MapCapacities {
  frontends: number;
  backends: number;
  slots: number;
  /** TCP connections whose getpeername() is restored, open at once (socklb_conn_v1). */
  connections: number;
}

export const DEFAULT_CAPACITIES: MapCapacities = { frontends: 65536, backends: 65536, slots: 262144, connections: 131072 };

/** SOCKLB_MAX_SERVICE_RANGES of bpf/socklb.h: the service CIDRs at once, whatever the flags. */
export const SERVICE_RANGES_CAPACITY = 256;

/**
 * The entries of the map of `role`, the one sizing rule of the kernel's maps and the in-memory
 * ones. Every frontend has one service name, and one set of counters at the index of its service
 * id; ids start at 1 (0 is never handed out), so the counters' array holds one more. A cluster IP
 * has a frontend per port of its Service.
 */
export function roleCapacity(role: MapRole, capacities: MapCapacities): number {
  switch (role) {
    case 'stats':
      return capacities.frontends + 1;
    case 'serviceNames':
    case 'clusterIPs':
      return capacities.frontends;
    case 'serviceRanges':
      return SERVICE_RANGES_CAPACITY;
    default:
      return capacities[role];
  }
}

/**
 * The `socklb run` flag that sizes each map (a frontend has one service name and one set of
 * counters, a cluster IP one frontend or more); undefined for a map of a fixed size.
 */
export const CAPACITY_FLAGS: Record<MapRole, string | undefined> = {
  frontends: '--max-frontends',
  serviceNames: '--max-frontends',
  stats: '--max-frontends',
  clusterIPs: '--max-frontends',
  backends: '--max-backends',
  slots: '--max-slots',
  serviceRanges: undefined,
};

const ROLE_BY_MAP_NAME = new Map<string, MapRole>(MAP_ROLES.map((role) => [MAP_NAMES[role], role]));

/** The role of a map the agent writes; undefined for the programs' own maps. */
export function roleOfMap(mapName: string): MapRole | undefined {
  return ROLE_BY_MAP_NAME.get(mapName);
}

/** A map's entries, and the `socklb run` flag that sets them (none for a fixed size). */
export interface MapCapacity {
  capacity: number;
  flag: string | undefined;
}

/**
 * The entries of a map, by name, the programs' connections among them, and the flag that sets
 * them; undefined for a map whose size is its declaration's.
 */
export function mapCapacity(mapName: string, capacities: MapCapacities): MapCapacity | undefined {
  if (mapName === MAP_NAMES.connections) return { capacity: capacities.connections, flag: '--max-connections' };
  const role = roleOfMap(mapName);
  return role === undefined ? undefined : { capacity: roleCapacity(role, capacities), flag: CAPACITY_FLAGS[role] };
}

/** The flag that sizes a map, by name; undefined for a fixed size. */
export function capacityFlag(mapName: string): string | undefined {
  return mapCapacity(mapName, DEFAULT_CAPACITIES)?.flag;
}

/** A failed map write; `errno` is the kernel's answer. */
export function mapWriteError(map: BpfMap, action: 'update' | 'delete', errno: number): SocklbError {
  const name = errnoName(errno);
  const role = roleOfMap(map.name);
  const flag = role === undefined ? 'its size' : CAPACITY_FLAGS[role];
  const hint =
    name === 'E2BIG' || name === 'ENOSPC' || name === 'ENOMEM'
      ? `: map full (${map.maxEntries} entries)${flag === undefined ? ', a fixed size' : `; raise ${flag}`}`
      : '';
  const error = new SocklbError('SOCKLB_ERR_MAP_UPDATE', `${action} ${map.name}: ${name}${hint}`);
  return Object.assign(error, { errno });
}

/**
 * The bytes the kernel allocates for the per-CPU counters (socklb_stats_v1) at `frontends`: for
 * each of its entries, one copy per possible CPU (the value rounded up to 8 bytes) and the
 * pointer to them. It grows with the node's CPUs, not with the Services (docs/operations.md).
 */
export function counterMemory(frontends: number, possibleCpus: number): number {
  return roleCapacity('stats', { ...DEFAULT_CAPACITIES, frontends }) * counterEntryBytes(possibleCpus);
}

function counterEntryBytes(possibleCpus: number): number {
  return Math.ceil(MAP_CODECS.stats.value.size / 8) * 8 * possibleCpus + 8;
}

/** Refuses a --max-frontends whose counters would take more than `limit` bytes, naming the most that fits. */
export function checkCounterMemory(frontends: number, possibleCpus: number, limit: number): void {
  const needed = counterMemory(frontends, possibleCpus);
  if (needed <= limit) return;
  // Service id 0 takes an entry of its own.
  const fitting = Math.floor(limit / counterEntryBytes(possibleCpus)) - 1;
  const fix = fitting >= 1 ? `lower --max-frontends to ${fitting} or less, or raise` : 'raise';
  throw new SocklbError(
    'SOCKLB_ERR_USAGE',
    `the counters of --max-frontends ${frontends} take ${needed} bytes on ${possibleCpus} possible CPUs, ` +
      `over --max-counter-memory ${limit}: ${fix} --max-counter-memory`,
  );
}
