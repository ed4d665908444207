// Batches for the applier's tests, driven without the host's session: the planner's operations
// as the host encodes them (src/guest/writes.ts), grouped one frontend per group, cleanup and
// marker last, as docs/guest-mode.md orders them; and a snapshot ordered otherwise than the
// host's (every backend first), which the applier must take as well.

import type { Marker } from '../../src/datapath/layout.js';
import { fullScope, planCleanup, planFrontends } from '../../src/datapath/planner.js';
import { DatapathState, type Operation } from '../../src/datapath/state.js';
import type { MapWrite, WriteGroup, WriteTarget } from '../../src/guest/wire.js';
import { guestWrite, markerWrite } from '../../src/guest/writes.js';
import type { DesiredFrontend } from '../../src/model/types.js';

/** The map write of one operation, as the host sends it; undefined for the service names. */
export const operationWrite = guestWrite;

export { markerWrite };

function writesOf(operations: readonly Operation[], target: WriteTarget): MapWrite[] {
  return operations.map((operation) => guestWrite(operation, target)).filter((write) => write !== undefined);
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
