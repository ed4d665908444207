// Desired frontends in, ordered map operations out. Pure: the same state and
// desire always give the same operations, and nothing here touches a map.
//
// The order is what a connect() that races with an update relies on. The
// programs read a frontend's count, pick a slot below it, then read the
// backend the slot names. So, for one frontend:
//   1. backends it needs that the maps lack are written,
//   2. its service name (for people) is written,
//   3. slots are rewritten in place or added past the current count,
//   4. a new frontend's service id has its counters zeroed, just before
//      anything can reach the frontend and count (an id freed by an earlier
//      plan would otherwise carry its old frontend's counts); after the
//      name, so that a frontend past --max-frontends fails on the name map,
//      whose size is the flag's, rather than at an id past the counters,
//   5. the frontend's count changes (the single switch-over),
//   6. slots past the new count are deleted.
// So no state the maps pass through has a count larger than the slots
// written, nor a slot naming a backend that is not there. A reader's three
// lookups are not one read, though: one that read the count just before a
// shrink can find its slot deleted, or the slot's backend gone. The programs
// retry such a miss against the frontend as it is then (lookup_backend in
// bpf/socklb.bpf.c), and refuse the call if the retry misses too. Backends
// no slot names any more are deleted last, by planCleanup, once every
// frontend is done.
//
// The work is in proportion to the frontends planned: ids come from the
// lowest unused one the state knows, and a cleanup may be limited to the ids
// the plans touched (cleanupScope); the whole maps are walked only when asked.
//
// Each frontend gets a group of its own: when a write fails, the rest of that
// group is skipped, and what was written of it is still consistent by the
// order above (a prefix of a group never exposes anything half-done).
// reconcile.ts writes the groups step by step across frontends (every
// frontend's backends, then every name, ...), each step's updates in batches:
// every frontend's order holds, and so does every prefix's safety.

import { backendText } from '../model/keys.js';
import type { DesiredFrontend, IPAddress, ServiceAddresses, ServicePortRef } from '../model/types.js';
import type { DatapathState, FrontendEntry, Operation } from './state.js';
import { FRONTEND_SKIP } from './layout.js';

/** The operations of one frontend, to apply in order. */
export interface FrontendPlan {
  frontend: string;
  operations: Operation[];
}

/**
 * Plans the frontends named in `scope` (frontend ids) from what the maps hold
 * to what is desired; a frontend in scope but not desired is deleted.
 * Deletions come first so that they free room for additions.
 */
export function planFrontends(
  state: DatapathState,
  desired: ReadonlyMap<string, DesiredFrontend>,
  scope: Iterable<string>,
): FrontendPlan[] {
  const ids = new IdAllocator(state);
  const deletions: FrontendPlan[] = [];
  const updates: FrontendPlan[] = [];
  for (const id of new Set(scope)) {
    const current = state.frontends.get(id);
    const wanted = desired.get(id);
    if (wanted) {
      const operations = planUpdate(state, ids, current, wanted);
      if (operations.length > 0) updates.push({ frontend: id, operations });
    } else if (current) {
      deletions.push({ frontend: id, operations: planDeletion(state, current) });
    }
  }
  return [...deletions, ...updates];
}

/** Every frontend either side knows of: the scope of a full sync. */
export function fullScope(state: DatapathState, desired: ReadonlyMap<string, DesiredFrontend>): Set<string> {
  return new Set([...state.frontends.keys(), ...desired.keys()]);
}

/** The service and backend ids a cleanup looks at. */
export interface CleanupScope {
  serviceIds: Set<number>;
  backendIds: Set<number>;
}

/**
 * The ids that applying the plans for the frontends `scope` can leave unused, taken before the
 * plans are applied: the service ids of those frontends and the backends their slots name. A plan
 * written whole leaves every id it writes in use; a plan stopped by a failed write may not, so its
 * ids are added once the plans are applied (addWrittenIds). A cleanup of these finds what a
 * cleanup of everything would, provided nothing was left unused before.
 */
export function cleanupScope(state: DatapathState, scope: Iterable<string>): CleanupScope {
  const touched: CleanupScope = { serviceIds: new Set(), backendIds: new Set() };
  for (const id of scope) {
    const current = state.frontends.get(id);
    if (!current) continue;
    touched.serviceIds.add(current.serviceId);
    for (const backendId of state.slots.get(current.serviceId)?.values() ?? []) touched.backendIds.add(backendId);
  }
  return touched;
}

/** Adds to `touched` every id the plans write: for the plans a failed write stopped. */
export function addWrittenIds(touched: CleanupScope, plans: readonly FrontendPlan[]): void {
  for (const { operations } of plans) {
    for (const operation of operations) {
      if ('serviceId' in operation) touched.serviceIds.add(operation.serviceId);
      if (operation.kind === 'upsert-frontend') touched.serviceIds.add(operation.frontend.serviceId);
      if ('backendId' in operation) touched.backendIds.add(operation.backendId);
    }
  }
}

/**
 * Removes what no frontend uses: slots past a count or of no frontend,
 * service names of no frontend, backends no slot names; among the ids in
 * `scope`, or all of them. Planned from the state as the frontend plans
 * actually left it, so a failed group's leftovers are collected too.
 */
export function planCleanup(state: DatapathState, scope?: CleanupScope): Operation[] {
  const serviceIds = scope?.serviceIds ?? new Set([...state.slots.keys(), ...state.serviceNames.keys()]);
  const backendIds = scope?.backendIds ?? state.backends.keys();
  const slotDeletions: Operation[] = [];
  const nameDeletions: Operation[] = [];
  const releasedReferences = new Map<number, number>();
  for (const serviceId of serviceIds) {
    const count = state.exposedSlots(serviceId);
    for (const [slot, backendId] of state.slots.get(serviceId) ?? []) {
      if (slot < count) continue;
      slotDeletions.push({ kind: 'delete-slot', serviceId, slot });
      releasedReferences.set(backendId, (releasedReferences.get(backendId) ?? 0) + 1);
    }
    if (state.serviceNames.has(serviceId) && !state.frontendNames(serviceId))
      nameDeletions.push({ kind: 'delete-service-name', serviceId });
  }
  const backendDeletions: Operation[] = [];
  for (const backendId of backendIds) {
    if (state.backends.has(backendId) && state.references(backendId) === (releasedReferences.get(backendId) ?? 0)) {
      backendDeletions.push({ kind: 'delete-backend', backendId });
    }
  }
  return [...slotDeletions, ...nameDeletions, ...backendDeletions];
}

/** The cluster IPs and service CIDRs a plan looks at: those that may have changed, or all. */
export interface AddressScope {
  clusterIPs: Iterable<IPAddress>;
  serviceRanges: Iterable<string>;
}

/** Every cluster IP and service CIDR either side knows of: the scope of a full sync. */
export function fullAddressScope(state: DatapathState, desired: ServiceAddresses): AddressScope {
  return {
    clusterIPs: new Set([...state.clusterIPs, ...desired.clusterIPs]),
    serviceRanges: new Set([...state.serviceRanges, ...desired.serviceRanges]),
  };
}

/**
 * The cluster IPs and service CIDRs in `scope`, from what the maps hold to what is desired. Each
 * entry stands alone (the programs follow it nowhere), so the only order is that additions come
 * before deletions: the maps pass through the union of the old set and the new one, and an address
 * refused before and after is refused throughout (a range narrowed from /12 to /16 leaves no gap).
 * Written after the frontends (reconcileAddresses), so that a new Service's frontends take the
 * calls they serve before its cluster IP refuses the others.
 */
export function planAddresses(state: DatapathState, desired: ServiceAddresses, scope: AddressScope): Operation[] {
  const additions: Operation[] = [];
  const deletions: Operation[] = [];
  for (const address of new Set(scope.clusterIPs)) {
    const wanted = desired.clusterIPs.has(address);
    if (wanted && !state.clusterIPs.has(address)) additions.push({ kind: 'upsert-cluster-ip', address });
    else if (!wanted && state.clusterIPs.has(address)) deletions.push({ kind: 'delete-cluster-ip', address });
  }
  for (const cidr of new Set(scope.serviceRanges)) {
    const wanted = desired.serviceRanges.has(cidr);
    if (wanted && !state.serviceRanges.has(cidr)) additions.push({ kind: 'upsert-service-range', cidr });
    else if (!wanted && state.serviceRanges.has(cidr)) deletions.push({ kind: 'delete-service-range', cidr });
  }
  return [...additions, ...deletions];
}

function planDeletion(state: DatapathState, current: FrontendEntry): Operation[] {
  const operations: Operation[] = [{ kind: 'delete-frontend', key: current.key }];
  for (const slot of sortedSlots(state, current.serviceId)) operations.push({ kind: 'delete-slot', serviceId: current.serviceId, slot });
  operations.push({ kind: 'delete-service-name', serviceId: current.serviceId });
  return operations;
}

function planUpdate(state: DatapathState, ids: IdAllocator, current: FrontendEntry | undefined, wanted: DesiredFrontend): Operation[] {
  const operations: Operation[] = [];
  const serviceId = current?.serviceId ?? ids.newServiceId();

  const wantedBackendIds = wanted.backends.map((backend) => {
    const existing = state.backendIdOf(backend);
    if (existing !== undefined) return existing;
    const allocated = ids.backendIdFor(backendText(backend));
    operations.push({ kind: 'upsert-backend', backendId: allocated, backend });
    return allocated;
  });

  if (!current || !sameService(state.serviceNames.get(serviceId), wanted.service)) {
    operations.push({ kind: 'upsert-service-name', serviceId, service: wanted.service });
  }

  const slots = arrangeSlots(current ? state.liveSlots(current) : [], wantedBackendIds);
  const written = state.slots.get(serviceId);
  slots.forEach((backendId, slot) => {
    if (written?.get(slot) !== backendId) operations.push({ kind: 'upsert-slot', serviceId, slot, backendId });
  });

  if (!current) operations.push({ kind: 'reset-stats', serviceId });
  const flags = wanted.skip ? FRONTEND_SKIP : 0;
  if (
    !current ||
    current.backendCount !== slots.length ||
    current.flags !== flags ||
    current.affinityTimeout !== wanted.affinityTimeoutSeconds
  ) {
    operations.push({
      kind: 'upsert-frontend',
      frontend: { key: wanted.key, serviceId, backendCount: slots.length, flags, affinityTimeout: wanted.affinityTimeoutSeconds },
    });
  }

  for (const slot of sortedSlots(state, serviceId)) {
    if (slot >= slots.length) operations.push({ kind: 'delete-slot', serviceId, slot });
  }
  return operations;
}

/**
 * The new slot order: backends that stay keep their slot, newcomers take the
 * slots of leavers, and when the list shrinks the last slots move into the
 * remaining holes. This writes as few slots as possible, and it matters:
 * a backend that stays is never absent from its frontend for a moment.
 */
export function arrangeSlots(current: readonly (number | undefined)[], wanted: readonly number[]): number[] {
  // A new frontend (10000 of them in a first sync): all are newcomers, in their order.
  if (current.length === 0) return [...wanted];
  const wantedSet = new Set(wanted);
  const kept = new Set<number>();
  const slots = current.map((id) => {
    if (id === undefined || !wantedSet.has(id) || kept.has(id)) return undefined;
    kept.add(id);
    return id;
  });
  const newcomers = wanted.filter((id) => !kept.has(id));
  let next = 0;
  for (let slot = 0; slot < slots.length && next < newcomers.length; slot++) {
    if (slots[slot] === undefined) slots[slot] = newcomers[next++];
  }
  slots.push(...newcomers.slice(next));
  for (let hole = slots.indexOf(undefined); hole >= 0; hole = slots.indexOf(undefined)) {
    while (slots.length > 0 && slots[slots.length - 1] === undefined) slots.pop();
    if (hole < slots.length) slots[hole] = slots.pop();
  }
  return slots as number[];
}

function sortedSlots(state: DatapathState, serviceId: number): number[] {
  const slots = state.slots.get(serviceId);
  return slots === undefined ? [] : [...slots.keys()].sort((a, b) => a - b);
}

function sameService(a: ServicePortRef | undefined, b: ServicePortRef): boolean {
  return a !== undefined && a.namespace === b.namespace && a.name === b.name && a.portName === b.portName;
}

/**
 * Hands out the lowest ids the maps do not use and no program can still hold
 * (DatapathState keeps a freed id back until its readers are gone). Ids freed
 * by this plan are not handed out again in it: the state still holds them
 * while the plan is made.
 */
class IdAllocator {
  private readonly plannedBackends = new Map<string, number>();
  private readonly serviceIds: Iterator<number>;
  private readonly backendIds: Iterator<number>;

  constructor(state: DatapathState) {
    this.serviceIds = state.unusedServiceIds();
    this.backendIds = state.unusedBackendIds();
  }

  newServiceId(): number {
    return this.serviceIds.next().value as number;
  }

  /** One id per backend address across the whole plan. */
  backendIdFor(address: string): number {
    const planned = this.plannedBackends.get(address);
    if (planned !== undefined) return planned;
    const id = this.backendIds.next().value as number;
    this.plannedBackends.set(address, id);
    return id;
  }
}
