// What each operation writes: which map, which key, which value. One description, encoded with
// the codecs of layout.ts, for the node's maps (here) and for the copies of them that guest mode
// streams to microVM guests (src/guest/writes.ts).

import { MAP_CODECS } from './layout.js';
import type { BpfMap, DatapathMaps, MapEntry, MapRole } from './maps.js';
import type { Operation } from './state.js';

/** The operations that create or replace an entry: they can be written in batches. */
export type Upsert = Extract<
  Operation,
  {
    kind:
      | 'upsert-backend'
      | 'upsert-slot'
      | 'upsert-service-name'
      | 'upsert-frontend'
      | 'reset-stats'
      | 'upsert-cluster-ip'
      | 'upsert-service-range';
  }
>;

const UPSERT_KINDS: ReadonlySet<Operation['kind']> = new Set<Upsert['kind']>([
  'upsert-backend',
  'upsert-slot',
  'upsert-service-name',
  'upsert-frontend',
  'reset-stats',
  'upsert-cluster-ip',
  'upsert-service-range',
]);

/** The value of the maps whose programs only look for the key (reserved, 0). */
const PRESENT = MAP_CODECS.clusterIPs.value.encode(0);

export function isUpsert(operation: Operation): operation is Upsert {
  return UPSERT_KINDS.has(operation.kind);
}

/**
 * One operation as a map write: an update with its value, an update to all zeroes (a service id's
 * counters reset, whose value is one copy per CPU of the map it goes to), or a delete.
 */
export type EncodedWrite =
  { action: 'update'; role: MapRole; key: Buffer; value: Buffer } | { action: 'zero' | 'delete'; role: MapRole; key: Buffer };

export function encodeOperation(operation: Operation): EncodedWrite {
  switch (operation.kind) {
    case 'upsert-backend':
      return {
        action: 'update',
        role: 'backends',
        key: MAP_CODECS.backends.key.encode(operation.backendId),
        value: MAP_CODECS.backends.value.encode({ backendId: operation.backendId, ...operation.backend }),
      };
    case 'upsert-slot':
      return {
        action: 'update',
        role: 'slots',
        key: MAP_CODECS.slots.key.encode(operation),
        value: MAP_CODECS.slots.value.encode(operation),
      };
    case 'upsert-service-name':
      return {
        action: 'update',
        role: 'serviceNames',
        key: MAP_CODECS.serviceNames.key.encode(operation.serviceId),
        value: MAP_CODECS.serviceNames.value.encode(operation.service),
      };
    case 'upsert-frontend':
      return {
        action: 'update',
        role: 'frontends',
        key: MAP_CODECS.frontends.key.encode(operation.frontend.key),
        value: MAP_CODECS.frontends.value.encode(operation.frontend),
      };
    case 'reset-stats':
      return { action: 'zero', role: 'stats', key: MAP_CODECS.stats.key.encode(operation.serviceId) };
    case 'delete-backend':
      return { action: 'delete', role: 'backends', key: MAP_CODECS.backends.key.encode(operation.backendId) };
    case 'delete-slot':
      return { action: 'delete', role: 'slots', key: MAP_CODECS.slots.key.encode(operation) };
    case 'delete-service-name':
      return { action: 'delete', role: 'serviceNames', key: MAP_CODECS.serviceNames.key.encode(operation.serviceId) };
    case 'delete-frontend':
      return { action: 'delete', role: 'frontends', key: MAP_CODECS.frontends.key.encode(operation.key) };
    case 'upsert-cluster-ip':
      return { action: 'update', role: 'clusterIPs', key: MAP_CODECS.clusterIPs.key.encode(operation.address), value: PRESENT };
    case 'delete-cluster-ip':
      return { action: 'delete', role: 'clusterIPs', key: MAP_CODECS.clusterIPs.key.encode(operation.address) };
    case 'upsert-service-range':
      return { action: 'update', role: 'serviceRanges', key: MAP_CODECS.serviceRanges.key.encode(operation.cidr), value: PRESENT };
    case 'delete-service-range':
      return { action: 'delete', role: 'serviceRanges', key: MAP_CODECS.serviceRanges.key.encode(operation.cidr) };
  }
}

/** The map an upsert writes. */
export function upsertMap(maps: DatapathMaps, operation: Upsert): BpfMap {
  return maps[encodeOperation(operation).role];
}

/** The entry an upsert writes into its map, encoded. */
export function upsertEntry(maps: DatapathMaps, operation: Upsert): MapEntry {
  const write = encodeOperation(operation);
  return [write.key, valueOf(write, maps[write.role])];
}

/** Performs one operation on the maps; throws the kernel's refusal. */
export function writeOperation(maps: DatapathMaps, operation: Operation): void {
  const write = encodeOperation(operation);
  const map = maps[write.role];
  if (write.action === 'delete') map.delete(write.key);
  else map.update(write.key, valueOf(write, map));
}

/** The value an update or a zeroing writes into `map`: zeroes for each of its per-CPU copies. */
function valueOf(write: EncodedWrite, map: BpfMap): Buffer {
  if (write.action === 'update') return write.value;
  return Buffer.alloc(MAP_CODECS[write.role].value.size * map.valuesPerKey);
}
