// The desired frontends of all Services, kept up to date incrementally: each
// new source state recomputes only the Services whose own object or slices
// changed, and says which frontends that touched. Pure: no I/O, no clock.

import type { SourceState } from '../sources/source.js';
import { joinSlices, serviceFrontends } from './frontends.js';
import { frontendId } from './keys.js';
import type { DesiredFrontend, EndpointSlice, InputProblem, NodeContext, Service } from './types.js';

export interface DesiredUpdate {
  /** Frontend ids whose desired content may differ from before. */
  changed: Set<string>;
  /** Services and EndpointSlices added, changed or removed since the last update. */
  serviceChanges: number;
  endpointChanges: number;
}

export class DesiredFrontends {
  /** By frontend id: what the datapath must hold. */
  readonly frontends = new Map<string, DesiredFrontend>();
  private services: ReadonlyMap<string, Service> = new Map();
  private slices: ReadonlyMap<string, EndpointSlice> = new Map();
  /** Service key -> the frontends it asks for, whether or not it won them. */
  private readonly claimsByService = new Map<string, DesiredFrontend[]>();
  /** Frontend id -> the services asking for it; the first in sort order serves it. */
  private readonly claimants = new Map<string, Set<string>>();
  private readonly problemsByService = new Map<string, InputProblem[]>();
  private sourceProblems: readonly InputProblem[] = [];
  private orphanSliceProblems: InputProblem[] = [];
  private node: NodeContext;

  /** `node` comes from the flags; a source that knows this node's zone overrides it. */
  constructor(private readonly configuredNode: NodeContext) {
    this.node = configuredNode;
  }

  update(state: SourceState): DesiredUpdate {
    const serviceChanges = changedKeys(this.services, state.services);
    const sliceChanges = changedKeys(this.slices, state.slices);
    const dirty = new Set(serviceChanges);
    for (const key of sliceChanges) {
      for (const slice of [this.slices.get(key), state.slices.get(key)]) if (slice) dirty.add(`${slice.namespace}/${slice.serviceName}`);
    }
    const zone = state.node?.zone ?? this.configuredNode.zone;
    if (zone !== this.node.zone) {
      // Topology hints depend on the zone: every Service may route differently now.
      this.node = { ...this.node, zone };
      for (const key of state.services.keys()) dirty.add(key);
    }
    this.services = state.services;
    this.slices = state.slices;
    this.sourceProblems = state.problems;

    const { byService: slicesByService, orphans } = joinSlices(state.services.values(), state.slices.values());
    const changed = new Set<string>();
    for (const serviceKey of dirty) {
      for (const frontend of this.claimsByService.get(serviceKey) ?? []) this.unclaim(serviceKey, frontendId(frontend.key), changed);
      this.claimsByService.delete(serviceKey);
      this.problemsByService.delete(serviceKey);
      const service = state.services.get(serviceKey);
      if (!service) continue;
      const { frontends, problems } = serviceFrontends(service, slicesByService.get(serviceKey) ?? [], this.node);
      this.claimsByService.set(serviceKey, frontends);
      if (problems.length > 0) this.problemsByService.set(serviceKey, problems.map((reason) => ({ source: 'model', object: `Service ${serviceKey}`, reason })));
      for (const frontend of frontends) this.claim(serviceKey, frontend, changed);
    }
    this.orphanSliceProblems = orphans.map((slice) => ({
      source: 'model',
      object: `EndpointSlice ${slice.namespace}/${slice.name}`,
      reason: `names Service ${slice.namespace}/${slice.serviceName}, which does not exist; its endpoints are unused`,
    }));
    return { changed, serviceChanges: serviceChanges.length, endpointChanges: sliceChanges.length };
  }

  /** Everything wrong with the input as it is now: the sources' findings, then the model's. */
  problems(): InputProblem[] {
    return [...this.sourceProblems, ...[...this.problemsByService.values()].flat(), ...this.conflictProblems(), ...this.orphanSliceProblems];
  }

  private claim(serviceKey: string, frontend: DesiredFrontend, changed: Set<string>): void {
    const id = frontendId(frontend.key);
    let claimants = this.claimants.get(id);
    if (!claimants) this.claimants.set(id, (claimants = new Set()));
    claimants.add(serviceKey);
    if (firstClaimant(claimants) === serviceKey) {
      this.frontends.set(id, frontend);
      changed.add(id);
    }
  }

  private unclaim(serviceKey: string, id: string, changed: Set<string>): void {
    const claimants = this.claimants.get(id);
    if (!claimants) return;
    const wasServing = firstClaimant(claimants) === serviceKey;
    claimants.delete(serviceKey);
    if (!wasServing) return;
    changed.add(id);
    const next = firstClaimant(claimants);
    const nextFrontend = next === undefined ? undefined : this.claimsByService.get(next)?.find((frontend) => frontendId(frontend.key) === id);
    if (nextFrontend) this.frontends.set(id, nextFrontend);
    else {
      this.frontends.delete(id);
      this.claimants.delete(id);
    }
  }

  private conflictProblems(): InputProblem[] {
    const problems: InputProblem[] = [];
    for (const [id, claimants] of this.claimants) {
      if (claimants.size < 2) continue;
      const [winner, ...losers] = [...claimants].sort();
      for (const loser of losers) {
        problems.push({ source: 'model', object: `Service ${loser}`, reason: `frontend ${id} is already served by Service ${winner}; this port is skipped` });
      }
    }
    return problems;
  }
}

/** Keys whose object was added, removed or changed in content. */
function changedKeys<T extends object>(before: ReadonlyMap<string, T>, after: ReadonlyMap<string, T>): string[] {
  const changed: string[] = [];
  for (const key of new Set([...before.keys(), ...after.keys()])) if (!sameObject(before.get(key), after.get(key))) changed.push(key);
  return changed;
}

function firstClaimant(claimants: Set<string>): string | undefined {
  let first: string | undefined;
  for (const claimant of claimants) if (first === undefined || claimant < first) first = claimant;
  return first;
}

// Sources may hand over a fresh but equal object (a file re-read after a
// touch): equal content is no change.
function sameObject(a: object | undefined, b: object | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}
