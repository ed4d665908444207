// How large a guest's maps are made. Preallocated BPF maps cost kernel memory for their whole
// capacity whether used or not (about 45 MiB at the node's defaults), which a microVM of a few
// hundred MiB must not pay: a guest gets what the node's maps hold now, with headroom, and a new
// snapshot into larger maps once they fill (docs/guest-mode.md).

import { MAP_NAMES } from '../datapath/layout.js';
import type { DatapathState } from '../datapath/state.js';
import type { MapDescriptor, ObjectMap } from './wire.js';

/** The smallest capacity given, so that a guest of a node with few Services does not resnapshot at each new one. */
const MIN_CAPACITY = 64;

/**
 * Room for a quarter more, and 64, rounded up to a power of two: 5000 frontends get 8192, 10000
 * slots 16384, as the design's sizing at 5000 Services of two endpoints.
 */
export function capacityFor(count: number): number {
  return Math.max(MIN_CAPACITY, 2 ** Math.ceil(Math.log2(count * 1.25 + MIN_CAPACITY)));
}

/**
 * Maps only the programs write, at sizes for one sandbox rather than a node: TCP connections whose
 * peer is a Service open at once (past this, the least recently used shows the backend to
 * getpeername), and clients x Services with ClientIP affinity remembered.
 */
export const GUEST_CONNECTIONS = 16_384;
export const GUEST_AFFINITY = 4_096;
const GUEST_TRACE_RING_BYTES = 65_536;

/** What a guest's maps must hold now: entries of the hash maps, ids of the arrays indexed by id. */
export interface GuestCounts {
  frontends: number;
  slots: number;
  backends: number;
  /** The highest service id plus one: the counters are an array indexed by service id. */
  serviceIds: number;
  clusterIPs: number;
}

export function countsOf(state: DatapathState): GuestCounts {
  let slots = 0;
  for (const bySlot of state.slots.values()) slots += bySlot.size;
  let serviceIds = 1;
  for (const frontend of state.frontends.values()) serviceIds = Math.max(serviceIds, frontend.serviceId + 1);
  return { frontends: state.frontends.size, slots, backends: state.backends.size, serviceIds, clusterIPs: state.clusterIPs.size };
}

/**
 * The capacities of an OBJECT for these counts. The socket storage and the connections, which
 * record addresses rather than ids, are kept from the guest's live maps across a snapshot, so
 * that sockets open through it keep their reverse translation; everything keyed by ids is new.
 */
export function guestCapacities(counts: GuestCounts): ObjectMap[] {
  return [
    { name: MAP_NAMES.frontends, maxEntries: capacityFor(counts.frontends) },
    { name: MAP_NAMES.slots, maxEntries: capacityFor(counts.slots) },
    { name: MAP_NAMES.backends, maxEntries: capacityFor(counts.backends) },
    { name: MAP_NAMES.stats, maxEntries: capacityFor(counts.serviceIds) },
    { name: MAP_NAMES.clusterIPs, maxEntries: capacityFor(counts.clusterIPs) },
    // Written on the node only: the smallest a map can be. A guest's calls are not left
    // untranslated by cgroup (the node's cgroups mean nothing in its kernel): none is streamed.
    { name: MAP_NAMES.serviceNames, maxEntries: 1 },
    { name: MAP_NAMES.bypass, maxEntries: 1 },
    { name: MAP_NAMES.exclusions, maxEntries: 1 },
    { name: MAP_NAMES.affinity, maxEntries: GUEST_AFFINITY },
    { name: MAP_NAMES.connections, maxEntries: GUEST_CONNECTIONS, keepPinned: true },
    // Socket storage has no capacity of its own: 0 is what the kernel takes.
    { name: MAP_NAMES.sockets, maxEntries: 0, keepPinned: true },
    // `socklb trace` does not reach guests, so nothing turns their programs' tracing on: the
    // smallest ring that is a power of two and a whole number of pages of 4 and of 64 KiB.
    { name: MAP_NAMES.traceRing, maxEntries: GUEST_TRACE_RING_BYTES },
  ];
}

/** The maps whose capacity the counts outgrew; none when the guest's maps still hold them. */
export function outgrown(counts: GuestCounts, maps: readonly MapDescriptor[]): string[] {
  const needs: [string, number][] = [
    [MAP_NAMES.frontends, counts.frontends],
    [MAP_NAMES.slots, counts.slots],
    [MAP_NAMES.backends, counts.backends],
    [MAP_NAMES.stats, counts.serviceIds],
    [MAP_NAMES.clusterIPs, counts.clusterIPs],
  ];
  return needs.filter(([name, count]) => count > (maps.find((map) => map.name === name)?.maxEntries ?? 0)).map(([name]) => name);
}

/**
 * Why staged maps (LOADED's) are smaller than the capacities an OBJECT asked for; none when they
 * are not. The maps kept from the live datapath keep their own capacity.
 */
export function undersized(asked: readonly ObjectMap[], maps: readonly MapDescriptor[]): string[] {
  return asked
    .filter((capacity) => !capacity.keepPinned)
    .flatMap((capacity) => {
      const map = maps.find((candidate) => candidate.name === capacity.name);
      return map !== undefined && map.maxEntries < capacity.maxEntries
        ? [`${capacity.name}: max_entries ${map.maxEntries}, under the ${capacity.maxEntries} asked`]
        : [];
    });
}
