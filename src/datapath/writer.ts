import { MAP_CODECS } from './layout.js';
import type { BpfMap, DatapathMaps, MapEntry } from './maps.js';
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

export function isUpsert(operation: Operation): operation is Upsert {
  return UPSERT_KINDS.has(operation.kind);
}

/** The map an upsert writes. */
export function upsertMap(maps: DatapathMaps, kind: Upsert['kind']): BpfMap {
  switch (kind) {
    case 'upsert-backend':
      return maps.backends;
    case 'upsert-slot':
      return maps.slots;
    case 'upsert-service-name':
      return maps.serviceNames;
    case 'upsert-frontend':
      return maps.frontends;
    case 'reset-stats':
      return maps.stats;
    case 'upsert-cluster-ip':
      return maps.clusterIPs;
    case 'upsert-service-range':
      return maps.serviceRanges;
  }
}

/** The value of the maps whose programs only look for the key (reserved, 0). */
const PRESENT = MAP_CODECS.clusterIPs.value.encode(0);

/** The entry an upsert writes into its map, encoded. */
export function upsertEntry(maps: DatapathMaps, operation: Upsert): MapEntry {
  switch (operation.kind) {
    case 'upsert-backend':
      return [
        MAP_CODECS.backends.key.encode(operation.backendId),
        MAP_CODECS.backends.value.encode({ backendId: operation.backendId, ...operation.backend }),
      ];
    case 'upsert-slot':
      return [MAP_CODECS.slots.key.encode(operation), MAP_CODECS.slots.value.encode(operation)];
    case 'upsert-service-name':
      return [MAP_CODECS.serviceNames.key.encode(operation.serviceId), MAP_CODECS.serviceNames.value.encode(operation.service)];
    case 'upsert-frontend':
      return [MAP_CODECS.frontends.key.encode(operation.frontend.key), MAP_CODECS.frontends.value.encode(operation.frontend)];
    case 'reset-stats':
      // Every CPU's copy, zeroed.
      return [MAP_CODECS.stats.key.encode(operation.serviceId), Buffer.alloc(MAP_CODECS.stats.value.size * maps.stats.valuesPerKey)];
    case 'upsert-cluster-ip':
      return [MAP_CODECS.clusterIPs.key.encode(operation.address), PRESENT];
    case 'upsert-service-range':
      return [MAP_CODECS.serviceRanges.key.encode(operation.cidr), PRESENT];
  }
}

/** Performs one operation on the maps; throws the kernel's refusal. */
export function writeOperation(maps: DatapathMaps, operation: Operation): void {
  if (isUpsert(operation)) {
    const [key, value] = upsertEntry(maps, operation);
    return upsertMap(maps, operation.kind).update(key, value);
  }
  switch (operation.kind) {
    case 'delete-backend':
      return maps.backends.delete(MAP_CODECS.backends.key.encode(operation.backendId));
    case 'delete-slot':
      return maps.slots.delete(MAP_CODECS.slots.key.encode(operation));
    case 'delete-service-name':
      return maps.serviceNames.delete(MAP_CODECS.serviceNames.key.encode(operation.serviceId));
    case 'delete-frontend':
      return maps.frontends.delete(MAP_CODECS.frontends.key.encode(operation.key));
    case 'delete-cluster-ip':
      return maps.clusterIPs.delete(MAP_CODECS.clusterIPs.key.encode(operation.address));
    case 'delete-service-range':
      return maps.serviceRanges.delete(MAP_CODECS.serviceRanges.key.encode(operation.cidr));
  }
}
