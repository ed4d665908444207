import { MAP_CODECS } from './layout.js';
import type { DatapathMaps } from './maps.js';
import type { Operation } from './state.js';

/** Performs one operation on the maps; throws the kernel's refusal. */
export function writeOperation(maps: DatapathMaps, operation: Operation): void {
  switch (operation.kind) {
    case 'upsert-backend':
      return maps.backends.update(MAP_CODECS.backends.key.encode(operation.backendId), MAP_CODECS.backends.value.encode(operation.backend));
    case 'delete-backend':
      return maps.backends.delete(MAP_CODECS.backends.key.encode(operation.backendId));
    case 'upsert-slot':
      return maps.slots.update(MAP_CODECS.slots.key.encode(operation), MAP_CODECS.slots.value.encode(operation.backendId));
    case 'delete-slot':
      return maps.slots.delete(MAP_CODECS.slots.key.encode(operation));
    case 'upsert-service-name':
      return maps.serviceNames.update(MAP_CODECS.serviceNames.key.encode(operation.serviceId), MAP_CODECS.serviceNames.value.encode(operation.service));
    case 'delete-service-name':
      return maps.serviceNames.delete(MAP_CODECS.serviceNames.key.encode(operation.serviceId));
    case 'upsert-frontend':
      return maps.frontends.update(MAP_CODECS.frontends.key.encode(operation.frontend.key), MAP_CODECS.frontends.value.encode(operation.frontend));
    case 'reset-stats':
      // Every CPU's copy, zeroed.
      return maps.stats.update(MAP_CODECS.stats.key.encode(operation.serviceId), Buffer.alloc(MAP_CODECS.stats.value.size * maps.stats.valuesPerKey));
    case 'delete-frontend':
      return maps.frontends.delete(MAP_CODECS.frontends.key.encode(operation.key));
  }
}
