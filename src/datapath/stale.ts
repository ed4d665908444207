// Which (frontend, backend) pairs a sync took out of the datapath: the sockets connected through
// them are stuck on a backend the frontend no longer hands out. Pure: read from DatapathState
// before and after the sync, as the kernel accepted it, so a write that failed (and left a
// backend in place) names no pair.

import { backendText, frontendId } from '../model/keys.js';
import type { Backend, FrontendKey } from '../model/types.js';
import type { StalePair } from './layout.js';
import type { DatapathState } from './state.js';

/** What one frontend hands out: its key and its live backends by backendText(). */
export interface ServedBackends {
  key: FrontendKey;
  backends: Map<string, Backend>;
}

/** The live backends of each frontend of `frontendIds` that the maps hold, by frontend id. */
export function servedBackends(state: DatapathState, frontendIds: Iterable<string>): Map<string, ServedBackends> {
  const served = new Map<string, ServedBackends>();
  for (const id of frontendIds) {
    const frontend = state.frontends.get(id);
    if (!frontend) continue;
    const backends = new Map<string, Backend>();
    for (const backendId of state.liveSlots(frontend)) {
      const backend = backendId === undefined ? undefined : state.backends.get(backendId);
      if (backend) backends.set(backendText(backend), backend);
    }
    served.set(id, { key: frontend.key, backends });
  }
  return served;
}

/** Every pair served before and not after: a backend that left, or all of a deleted frontend's. */
export function stalePairs(before: ReadonlyMap<string, ServedBackends>, after: ReadonlyMap<string, ServedBackends>): StalePair[] {
  const pairs: StalePair[] = [];
  for (const [id, { key, backends }] of before) {
    const still = after.get(id)?.backends;
    for (const [text, backend] of backends) {
      if (!still?.has(text)) pairs.push({ frontend: key, backend });
    }
  }
  return pairs;
}

/** The pairs `state` does not hand out (any more). */
export function stillStale(pairs: readonly StalePair[], state: DatapathState): StalePair[] {
  const served = servedBackends(state, new Set(pairs.map((pair) => frontendId(pair.frontend))));
  return pairs.filter((pair) => !served.get(frontendId(pair.frontend))?.backends.has(backendText(pair.backend)));
}
