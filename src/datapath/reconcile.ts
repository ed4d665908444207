// Applies the planner's operations to the maps, keeping the DatapathState in
// step with what the kernel accepted.

import type { DesiredFrontend, ServiceAddresses } from '../model/types.js';
import type { BpfMap, DatapathMaps } from './maps.js';
import { addWrittenIds, cleanupScope, planAddresses, planCleanup, planFrontends, type AddressScope, type FrontendPlan } from './planner.js';
import type { DatapathState, Operation } from './state.js';
import { isUpsert, upsertEntry, upsertMap, writeOperation, type Upsert } from './writer.js';

export interface ReconcileResult {
  /** Frontends that had something to change. */
  frontends: number;
  /** Map writes the kernel accepted. */
  operations: number;
  /** Frontend id -> the write that stopped it; the rest of its plan waits for a retry. */
  failed: Map<string, Error>;
  /** Cleanup writes that failed; the next reconcile plans them again. */
  cleanupErrors: Error[];
  /**
   * What the kernel accepted, as a copy of the maps must apply it (guest mode): each frontend's
   * accepted operations, a prefix of its plan, in plan order; then the cleanup writes that got in.
   */
  written: { frontends: FrontendPlan[]; cleanup: Operation[] };
}

/**
 * What the cleanup after the frontends looks at: 'everything' in the maps, or
 * only the ids 'touched' by this reconcile, which suffices when nothing was
 * left unused before it (the previous cleanup succeeded).
 */
export type CleanupExtent = 'everything' | 'touched';

/** Brings the frontends in `scope` to `desired`, then removes what nothing uses any more. */
export function reconcile(
  maps: DatapathMaps,
  state: DatapathState,
  desired: ReadonlyMap<string, DesiredFrontend>,
  scope: Iterable<string>,
  cleanup: CleanupExtent = 'everything',
): ReconcileResult {
  const frontendIds = [...new Set(scope)];
  const plans = planFrontends(state, desired, frontendIds);
  const touched = cleanup === 'touched' ? cleanupScope(state, frontendIds) : undefined;
  const result: ReconcileResult = {
    frontends: plans.length,
    operations: 0,
    failed: new Map(),
    cleanupErrors: [],
    written: { frontends: [], cleanup: [] },
  };
  const accepted = new Map<FrontendPlan, number>();
  writePlans(maps, state, plans, result, accepted);
  for (const plan of plans) {
    const count = accepted.get(plan) ?? 0;
    if (count > 0) result.written.frontends.push({ frontend: plan.frontend, operations: plan.operations.slice(0, count) });
  }
  if (touched && result.failed.size > 0)
    addWrittenIds(
      touched,
      plans.filter((plan) => result.failed.has(plan.frontend)),
    );
  for (const operation of planCleanup(state, touched)) {
    const error = write(maps, state, operation);
    if (error) result.cleanupErrors.push(error);
    else {
      result.operations++;
      result.written.cleanup.push(operation);
    }
  }
  return result;
}

export interface AddressReconcileResult {
  /** Map writes the kernel accepted. */
  operations: number;
  /** `cluster IP 10.96.0.10`, `service CIDR 10.96.0.0/12` -> the write the kernel refused; planned again at the next sync. */
  failed: Map<string, Error>;
  /** The writes the kernel accepted, in order, for the copies of the maps (guest mode). */
  written: Operation[];
}

/**
 * Brings the cluster IPs and service CIDRs in `scope` to `desired` (planAddresses). Called after
 * reconcile: a Service's frontends are in before its cluster IP refuses the calls they do not
 * serve. Each entry stands alone, so a refused write holds nothing else back.
 */
export function reconcileAddresses(
  maps: DatapathMaps,
  state: DatapathState,
  desired: ServiceAddresses,
  scope: AddressScope,
): AddressReconcileResult {
  const result: AddressReconcileResult = { operations: 0, failed: new Map(), written: [] };
  for (const operation of planAddresses(state, desired, scope)) {
    const error = write(maps, state, operation);
    if (error) result.failed.set(addressOf(operation), error);
    else {
      result.operations++;
      result.written.push(operation);
    }
  }
  return result;
}

function addressOf(operation: Operation): string {
  if ('address' in operation) return `cluster IP ${operation.address}`;
  if ('cidr' in operation) return `service CIDR ${operation.cidr}`;
  throw new Error(`${operation.kind} is no cluster IP or service CIDR operation`);
}

/**
 * The kinds of operation in the order the planner gives every frontend's plan (planner.ts): a
 * deletion's, then an update's. The plans are written kind by kind across all frontends, the
 * updates of a kind as one batch: each frontend's writes keep their order, and across frontends
 * every backend is written before any slot naming it, every slot before any count exposing it, so
 * a reader sees what the plans written one after the other could have shown it. Deletions still
 * come first and free room for additions.
 */
const PHASES: readonly Operation['kind'][] = [
  'delete-frontend',
  'delete-slot',
  'delete-service-name',
  'upsert-backend',
  'upsert-service-name',
  'upsert-slot',
  'reset-stats',
  'upsert-frontend',
  'delete-slot',
];

interface Step {
  plan: FrontendPlan;
  operation: Operation;
}

/** How many operations of each plan the kernel accepted: a prefix, since a refusal stops the plan. */
type AcceptedCounts = Map<FrontendPlan, number>;

/**
 * Writes the plans phase by phase; a frontend whose write fails keeps what was written of it
 * (every prefix of its plan is consistent) and skips the rest of its plan.
 */
function writePlans(
  maps: DatapathMaps,
  state: DatapathState,
  plans: readonly FrontendPlan[],
  result: ReconcileResult,
  accepted: AcceptedCounts,
): void {
  const positions = plans.map(() => 0);
  let unfinished = plans.map((_, index) => index);
  // One pass over the phases takes every plan the planner makes; a plan in another order would
  // take more passes, each still keeping its order.
  while (unfinished.length > 0) {
    for (const kind of PHASES) {
      const steps: Step[] = [];
      for (const index of unfinished) {
        const plan = plans[index]!;
        if (result.failed.has(plan.frontend)) continue;
        let position = positions[index]!;
        while (position < plan.operations.length && plan.operations[position]!.kind === kind)
          steps.push({ plan, operation: plan.operations[position++]! });
        positions[index] = position;
      }
      if (steps.length === 0) continue;
      if (isUpsert(steps[0]!.operation)) writeBatches(maps, state, steps as (Step & { operation: Upsert })[], result, accepted);
      else writeEach(maps, state, steps, result, accepted);
    }
    unfinished = unfinished.filter(
      (index) => positions[index]! < plans[index]!.operations.length && !result.failed.has(plans[index]!.frontend),
    );
  }
}

/**
 * Entries per batch: a handful of system calls for a first sync's 70000 writes, and the encoded
 * entries of one batch at a time in memory (all of them at once grew the agent's heap, and so its
 * resident memory after the first sync, by 30 MiB at 10000 Services).
 */
const BATCH_ENTRIES = 1024;

/** Updates of one kind, so of one map, in batches. */
function writeBatches(
  maps: DatapathMaps,
  state: DatapathState,
  steps: (Step & { operation: Upsert })[],
  result: ReconcileResult,
  accepted: AcceptedCounts,
): void {
  const map = upsertMap(maps, steps[0]!.operation);
  for (let next = 0; next < steps.length;) {
    const batch: (Step & { operation: Upsert })[] = [];
    for (; next < steps.length && batch.length < BATCH_ENTRIES; next++)
      if (!result.failed.has(steps[next]!.plan.frontend)) batch.push(steps[next]!);
    writeBatch(maps, map, state, batch, result, accepted);
  }
}

/** One batch, and after a refusal, a batch of the rest but the refused frontend's. */
function writeBatch(
  maps: DatapathMaps,
  map: BpfMap,
  state: DatapathState,
  batch: (Step & { operation: Upsert })[],
  result: ReconcileResult,
  accepted: AcceptedCounts,
): void {
  let pending = batch;
  while (pending.length > 0) {
    const { written, error } = map.updateBatch(pending.map((step) => upsertEntry(maps, step.operation)));
    for (const step of pending.slice(0, written)) {
      state.apply(step.operation);
      accepted.set(step.plan, (accepted.get(step.plan) ?? 0) + 1);
    }
    result.operations += written;
    if (!error) return;
    // What was written of this frontend is consistent: the planner's order makes every prefix safe.
    result.failed.set(pending[written]!.plan.frontend, error);
    pending = pending.slice(written + 1).filter((step) => !result.failed.has(step.plan.frontend));
  }
}

function writeEach(maps: DatapathMaps, state: DatapathState, steps: Step[], result: ReconcileResult, accepted: AcceptedCounts): void {
  for (const { plan, operation } of steps) {
    if (result.failed.has(plan.frontend)) continue;
    const error = write(maps, state, operation);
    if (error) result.failed.set(plan.frontend, error);
    else {
      result.operations++;
      accepted.set(plan, (accepted.get(plan) ?? 0) + 1);
    }
  }
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
