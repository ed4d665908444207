// What a guest's maps are sent: the node's accepted writes of one sync, or the whole state of the
// node's maps for a snapshot, as BATCH groups (docs/guest-protocol.md). One group per frontend,
// in the planner's order, so that a write the guest refuses stops that frontend only, as on the
// node; the cleanup and then the marker last, and only if every group got in. Service names stay
// on the host: the programs never read them, and they would tell a guest the cluster's catalog.

import { MAP_CODECS, MAP_NAMES, type Marker } from '../datapath/layout.js';
import type { Operation } from '../datapath/state.js';
import type { DatapathState } from '../datapath/state.js';
import { encodeOperation } from '../datapath/writer.js';
import { BPF_MAP_TYPE } from '../kernel/map-types.js';
import type { MapDescriptor, MapWrite, WriteGroup, WriteTarget } from './wire.js';

/** One sync's writes as the node's kernel accepted them (ReconcileResult.written). */
export interface SyncWrites {
  frontends: readonly { operations: readonly Operation[] }[];
  cleanup: readonly Operation[];
  /** The cluster IPs and service CIDRs, each a write of its own, after the frontends. */
  addresses: readonly Operation[];
}

/** The maps a guest's batches write, each of the type the node's object declares. */
const STREAMED_MAPS = [
  ['frontends', BPF_MAP_TYPE.hash],
  ['slots', BPF_MAP_TYPE.hash],
  ['backends', BPF_MAP_TYPE.hash],
  ['stats', BPF_MAP_TYPE.percpuArray],
  ['marker', BPF_MAP_TYPE.array],
  ['clusterIPs', BPF_MAP_TYPE.hash],
  ['serviceRanges', BPF_MAP_TYPE.lpmTrie],
] as const satisfies readonly [keyof typeof MAP_CODECS, number][];

/**
 * Why a guest's maps (its HELLO's or LOADED's) cannot take the stream's writes: a map missing, or
 * of another type, key or value size than the node's object has. None when they can. A guest that
 * says so is never sent a batch that its maps would refuse, or that the host cannot encode.
 */
export function unwritable(maps: readonly MapDescriptor[]): string[] {
  const problems: string[] = [];
  for (const [role, type] of STREAMED_MAPS) {
    const name = MAP_NAMES[role];
    const map = maps.find((candidate) => candidate.name === name);
    if (map === undefined) {
      problems.push(`${name}: missing`);
      continue;
    }
    const expected = { type, keySize: MAP_CODECS[role].key.size, valueSize: MAP_CODECS[role].value.size };
    if (map.type !== expected.type) problems.push(`${name}: type ${map.type}, not ${expected.type}`);
    if (map.keySize !== expected.keySize) problems.push(`${name}: key_size ${map.keySize}, not ${expected.keySize}`);
    if (map.valueSize !== expected.valueSize) problems.push(`${name}: value_size ${map.valueSize}, not ${expected.valueSize}`);
  }
  return problems;
}

/** An operation as a guest's map write; undefined for a service name, which guests are not sent. */
export function guestWrite(operation: Operation, target: WriteTarget): MapWrite | undefined {
  const write = encodeOperation(operation);
  if (write.role === 'serviceNames') return undefined;
  const map = target.index(MAP_NAMES[write.role]);
  return write.action === 'update' ? { op: 'update', map, key: write.key, value: write.value } : { op: write.action, map, key: write.key };
}

/** The marker write that ends a batch: once it is in, the batch is, and every one before it. */
export function markerWrite(marker: Marker, target: WriteTarget): MapWrite {
  return {
    op: 'update',
    map: target.index(MAP_NAMES.marker),
    key: MAP_CODECS.marker.key.encode(0),
    value: MAP_CODECS.marker.value.encode(marker),
  };
}

/** A sync's writes as the groups of a batch that ends with `marker`. */
export function syncGroups(writes: SyncWrites, marker: Marker, target: WriteTarget): WriteGroup[] {
  const groups: WriteGroup[] = [];
  for (const frontend of writes.frontends) {
    const group = writesOf(frontend.operations, target);
    if (group.length > 0) groups.push({ writes: group });
  }
  const cleanup = writesOf(writes.cleanup, target);
  if (cleanup.length > 0) groups.push({ onlyIfClean: true, writes: cleanup });
  const addresses = writesOf(writes.addresses, target);
  if (addresses.length > 0) groups.push({ writes: addresses });
  groups.push({ onlyIfClean: true, writes: [markerWrite(marker, target)] });
  return groups;
}

/**
 * The node's maps as they are, for empty maps: per frontend, the backends its slots name (each
 * backend in the first group that needs it), its slots, then the frontend; the cluster IPs and
 * service CIDRs; the marker last. Fresh
 * counters are zero already. Slots and backends no frontend uses are left out: the node's next
 * cleanup removes them, and the guest never needs them.
 */
export function snapshotGroups(state: DatapathState, marker: Marker, target: WriteTarget): WriteGroup[] {
  const groups: WriteGroup[] = [];
  const sent = new Set<number>();
  for (const frontend of state.frontends.values()) {
    const operations: Operation[] = [];
    const slots = state.slots.get(frontend.serviceId);
    for (const [slot, backendId] of slots ?? []) {
      const backend = state.backends.get(backendId);
      if (backend !== undefined && !sent.has(backendId)) {
        sent.add(backendId);
        operations.push({ kind: 'upsert-backend', backendId, backend });
      }
      operations.push({ kind: 'upsert-slot', serviceId: frontend.serviceId, slot, backendId });
    }
    operations.push({ kind: 'upsert-frontend', frontend });
    groups.push({ writes: writesOf(operations, target) });
  }
  const addresses: Operation[] = [
    ...[...state.clusterIPs].map((address): Operation => ({ kind: 'upsert-cluster-ip', address })),
    ...[...state.serviceRanges].map((cidr): Operation => ({ kind: 'upsert-service-range', cidr })),
  ];
  if (addresses.length > 0) groups.push({ writes: writesOf(addresses, target) });
  groups.push({ onlyIfClean: true, writes: [markerWrite(marker, target)] });
  return groups;
}

function writesOf(operations: readonly Operation[], target: WriteTarget): MapWrite[] {
  const writes: MapWrite[] = [];
  for (const operation of operations) {
    const write = guestWrite(operation, target);
    if (write) writes.push(write);
  }
  return writes;
}
