// What a host sends a guest, made from socklb's own pieces: the planner's operations as map
// writes (the codecs of src/datapath/layout.ts, as writer.ts encodes them for the node's maps),
// grouped one frontend per group, cleanup and marker last, as docs/guest-mode.md orders them.
// Service names stay on the host. A test stand-in for the host's stream, which is not built yet.

import { MAP_CODECS, MAP_NAMES, type Marker } from '../../src/datapath/layout.js';
import { fullScope, planCleanup, planFrontends } from '../../src/datapath/planner.js';
import { DatapathState, type Operation } from '../../src/datapath/state.js';
import type { MapWrite, WriteGroup, WriteTarget } from '../../src/guest/wire.js';
import type { DesiredFrontend } from '../../src/model/types.js';

/** The map write of one operation; undefined for the service names, which guests are not sent. */
export function operationWrite(operation: Operation, target: WriteTarget): MapWrite | undefined {
  switch (operation.kind) {
    case 'upsert-backend':
      return update(
        target,
        MAP_NAMES.backends,
        MAP_CODECS.backends.key.encode(operation.backendId),
        MAP_CODECS.backends.value.encode({ backendId: operation.backendId, ...operation.backend }),
      );
    case 'upsert-slot':
      return update(target, MAP_NAMES.slots, MAP_CODECS.slots.key.encode(operation), MAP_CODECS.slots.value.encode(operation));
    case 'upsert-frontend':
      return update(
        target,
        MAP_NAMES.frontends,
        MAP_CODECS.frontends.key.encode(operation.frontend.key),
        MAP_CODECS.frontends.value.encode(operation.frontend),
      );
    case 'reset-stats':
      return { op: 'zero', map: target.index(MAP_NAMES.stats), key: MAP_CODECS.stats.key.encode(operation.serviceId) };
    case 'delete-backend':
      return { op: 'delete', map: target.index(MAP_NAMES.backends), key: MAP_CODECS.backends.key.encode(operation.backendId) };
    case 'delete-slot':
      return { op: 'delete', map: target.index(MAP_NAMES.slots), key: MAP_CODECS.slots.key.encode(operation) };
    case 'delete-frontend':
      return { op: 'delete', map: target.index(MAP_NAMES.frontends), key: MAP_CODECS.frontends.key.encode(operation.key) };
    case 'upsert-cluster-ip':
      return update(
        target,
        MAP_NAMES.clusterIPs,
        MAP_CODECS.clusterIPs.key.encode(operation.address),
        MAP_CODECS.clusterIPs.value.encode(0),
      );
    case 'delete-cluster-ip':
      return { op: 'delete', map: target.index(MAP_NAMES.clusterIPs), key: MAP_CODECS.clusterIPs.key.encode(operation.address) };
    case 'upsert-service-range':
      return update(
        target,
        MAP_NAMES.serviceRanges,
        MAP_CODECS.serviceRanges.key.encode(operation.cidr),
        MAP_CODECS.serviceRanges.value.encode(0),
      );
    case 'delete-service-range':
      return { op: 'delete', map: target.index(MAP_NAMES.serviceRanges), key: MAP_CODECS.serviceRanges.key.encode(operation.cidr) };
    case 'upsert-service-name':
    case 'delete-service-name':
      return undefined;
  }
}

function update(target: WriteTarget, mapName: string, key: Buffer, value: Buffer): MapWrite {
  return { op: 'update', map: target.index(mapName), key, value };
}

function writesOf(operations: readonly Operation[], target: WriteTarget): MapWrite[] {
  return operations.map((operation) => operationWrite(operation, target)).filter((write) => write !== undefined);
}

/** The marker write that ends a batch: once it is in, the whole batch is. */
export function markerWrite(marker: Marker, target: WriteTarget): MapWrite {
  return update(target, MAP_NAMES.marker, MAP_CODECS.marker.key.encode(0), MAP_CODECS.marker.value.encode(marker));
}

/**
 * Plans `state` to `desired` and applies the plan to `state` (the host's canonical state moves on
 * whatever a guest does with it): one group per frontend, then the cleanup and the marker, which
 * run only if every frontend's group did.
 */
export function planGroups(
  state: DatapathState,
  desired: ReadonlyMap<string, DesiredFrontend>,
  marker: Marker,
  target: WriteTarget,
): WriteGroup[] {
  const groups: WriteGroup[] = [];
  for (const plan of planFrontends(state, desired, fullScope(state, desired))) {
    for (const operation of plan.operations) state.apply(operation);
    groups.push({ writes: writesOf(plan.operations, target) });
  }
  const cleanup = planCleanup(state);
  for (const operation of cleanup) state.apply(operation);
  groups.push({ onlyIfClean: true, writes: writesOf(cleanup, target) });
  groups.push({ onlyIfClean: true, writes: [markerWrite(marker, target)] });
  return groups;
}

/** The canonical state of `desired`, planned from nothing: what a host that starts now holds. */
export function stateOf(desired: ReadonlyMap<string, DesiredFrontend>): DatapathState {
  const state = new DatapathState();
  for (const plan of planFrontends(state, desired, desired.keys())) for (const operation of plan.operations) state.apply(operation);
  return state;
}

/** All of `state` for fresh maps (a snapshot): backends, then each frontend's slots and entry, then the marker. */
export function snapshotGroups(state: DatapathState, marker: Marker, target: WriteTarget): WriteGroup[] {
  const backends: Operation[] = [...state.backends].map(([backendId, backend]) => ({ kind: 'upsert-backend', backendId, backend }));
  const groups: WriteGroup[] = [{ writes: writesOf(backends, target) }];
  for (const frontend of state.frontends.values()) {
    const slots: Operation[] = [...(state.slots.get(frontend.serviceId) ?? [])].map(([slot, backendId]) => ({
      kind: 'upsert-slot',
      serviceId: frontend.serviceId,
      slot,
      backendId,
    }));
    groups.push({ writes: writesOf([...slots, { kind: 'upsert-frontend', frontend }], target) });
  }
  groups.push({ onlyIfClean: true, writes: [markerWrite(marker, target)] });
  return groups;
}
