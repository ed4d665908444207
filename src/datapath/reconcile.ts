// Applies the planner's operations to the maps, keeping the DatapathState in
// step with what the kernel accepted.

import type { DesiredFrontend } from '../model/types.js';
import type { DatapathMaps } from './maps.js';
import { cleanupScope, planCleanup, planFrontends } from './planner.js';
import type { DatapathState, Operation } from './state.js';
import { writeOperation } from './writer.js';

export interface ReconcileResult {
  /** Frontends that had something to change. */
  frontends: number;
  /** Map writes the kernel accepted. */
  operations: number;
  /** Frontend id -> the write that stopped it; the rest of its plan waits for a retry. */
  failed: Map<string, Error>;
  /** Cleanup writes that failed; the next reconcile plans them again. */
  cleanupErrors: Error[];
}

/**
 * What the cleanup after the frontends looks at: 'everything' in the maps, or
 * only the ids 'touched' by this reconcile, which suffices when nothing was
 * left unused before it (the previous cleanup succeeded).
 */
export type CleanupExtent = 'everything' | 'touched';

/** Brings the frontends in `scope` to `desired`, then removes what nothing uses any more. */
export function reconcile(maps: DatapathMaps, state: DatapathState, desired: ReadonlyMap<string, DesiredFrontend>, scope: Iterable<string>, cleanup: CleanupExtent = 'everything'): ReconcileResult {
  const frontendIds = [...new Set(scope)];
  const plans = planFrontends(state, desired, frontendIds);
  const touched = cleanup === 'touched' ? cleanupScope(state, frontendIds, plans) : undefined;
  const result: ReconcileResult = { frontends: plans.length, operations: 0, failed: new Map(), cleanupErrors: [] };
  for (const plan of plans) {
    for (const operation of plan.operations) {
      const error = write(maps, state, operation);
      if (error) {
        // What was written of this frontend is consistent: the planner's order makes every prefix safe.
        result.failed.set(plan.frontend, error);
        break;
      }
      result.operations++;
    }
  }
  for (const operation of planCleanup(state, touched)) {
    const error = write(maps, state, operation);
    if (error) result.cleanupErrors.push(error);
    else result.operations++;
  }
  return result;
}

function write(maps: DatapathMaps, state: DatapathState, operation: Operation): Error | undefined {
  try {
    writeOperation(maps, operation);
    state.apply(operation);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}
