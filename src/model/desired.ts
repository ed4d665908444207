// The desired frontends of all Services, kept up to date incrementally: each
// new source state recomputes only the Services whose own object or slices
// changed, and says which frontends that touched. When the source names the
// keys that changed (SourceState.changes) the work is in proportion to the
// change; otherwise every key is compared. Pure: no I/O, no clock.
//
// Whichever source feeds it, this is where the slices are filed by the Service
// they name, as kube-proxy's EndpointSliceCache files those of its informer,
// where the slices of a Service socklb ignores are left out (inEffect), and
// where a frontend that several Services claim goes to one of them (claims.ts).

import { compareClaims, winningClaim, type Claim } from './claims.js';
import { serviceFrontends } from './frontends.js';
import { GroupedKeys } from './grouped-keys.js';
import { frontendId } from './keys.js';
import { namespacedName, sliceServiceKey } from './kubernetes.js';
import type { SourceState } from './source-state.js';
import { sameContent } from './versions.js';
import type { ClaimedFrontend, EndpointSlice, InputProblem, NodeContext, Service, ServicePortRef } from './types.js';

/**
 * The Service port a frontend serves in the datapath, if any: what the maps an agent adopted at
 * start say (their service names), so that a restart keeps each contested frontend where it was.
 */
export type ServingLookup = (frontendId: string) => ServicePortRef | undefined;

export interface DesiredUpdate {
  /** Frontend ids whose desired content may differ from before. */
  changed: Set<string>;
  /** Services added, changed or removed since the last update. */
  serviceChanges: number;
  /** EndpointSlices added, changed or removed in effect since the last update (see inEffect). */
  endpointChanges: number;
}

export class DesiredFrontends {
  /** By frontend id: what the datapath must hold, each the claim that won it. */
  readonly frontends = new Map<string, ClaimedFrontend>();
  /** The objects as last seen: the model's own copies of the source's maps. */
  private readonly services = new Map<string, Service>();
  private readonly ignoredServices = new Set<string>();
  private readonly slices = new Map<string, EndpointSlice>();
  /** Service key -> the keys of its slices, for every Service named by a slice, whether it exists, is ignored, or not. */
  private readonly slicesByService = new GroupedKeys();
  /** Service key -> the frontends it asks for, whether or not it won them. */
  private readonly claimsByService = new Map<string, ClaimedFrontend[]>();
  /** Frontend id -> the claims on it: one, nearly always, or several (kept so, not as a list each: docs/footprint.md). */
  private readonly claimsOn = new Map<string, ClaimedFrontend | ClaimedFrontend[]>();
  /** Frontend ids that more than one Service claims. */
  private readonly contested = new Set<string>();
  private readonly problemsByService = new Map<string, InputProblem[]>();
  /** Services that slices in effect name but that do not exist: those slices are orphans. */
  private readonly missingServices = new Set<string>();
  private sourceProblems: readonly InputProblem[] = [];
  private node: NodeContext;

  /**
   * `node` comes from the flags; a source that knows this node's zone overrides it. `servedAtStart`
   * says who serves a frontend before this model has decided it (the datapath an agent adopted).
   */
  constructor(
    private readonly configuredNode: NodeContext,
    private readonly servedAtStart: ServingLookup = () => undefined,
  ) {
    this.node = configuredNode;
  }

  update(state: SourceState): DesiredUpdate {
    const dirty = new Set<string>();
    // Sources may hand over a fresh but equal object (a file re-read after a touch): equal content is no change.
    // Slices first, while the ignored Services are those of the last update.
    let endpointChanges = 0;
    const changedSlices = new Set<string>();
    for (const key of state.changes?.slices ?? allKeys(this.slices, state.slices)) {
      const before = this.slices.get(key);
      const after = state.slices.get(key);
      if (sameContent(before, after)) continue;
      changedSlices.add(key);
      if (inEffect(before, this.ignoredServices) || inEffect(after, state.ignoredServices)) endpointChanges++;
      if (before) dirty.add(this.unindexSlice(key, before));
      if (after) {
        this.slices.set(key, after);
        dirty.add(this.indexSlice(key, after));
      } else this.slices.delete(key);
    }
    let serviceChanges = 0;
    for (const key of state.changes?.services ?? allKeys(this.services, state.services, this.ignoredServices, state.ignoredServices)) {
      const ignored = state.ignoredServices.has(key);
      if (ignored !== this.ignoredServices.has(key)) {
        if (ignored) this.ignoredServices.add(key);
        else this.ignoredServices.delete(key);
        dirty.add(key);
        // Its slices that did not change come into effect, or leave it.
        endpointChanges += this.slicesByService.keysOf(key).filter((sliceKey) => !changedSlices.has(sliceKey)).length;
      }
      const before = this.services.get(key);
      const after = state.services.get(key);
      if (sameContent(before, after)) continue;
      serviceChanges++;
      dirty.add(key);
      if (after) this.services.set(key, after);
      else this.services.delete(key);
    }
    const zone = state.node?.zone ?? this.configuredNode.zone;
    if (zone !== this.node.zone) {
      // Topology hints depend on the zone: every Service may route differently now.
      this.node = { ...this.node, zone };
      for (const key of this.services.keys()) dirty.add(key);
    }
    this.sourceProblems = state.problems;

    // Claims first, then who wins each frontend they touched: a Service recomputed gives up its
    // claims and makes them again, which must not cost it a frontend it serves.
    const claimed = new Set<string>();
    for (const serviceKey of dirty) this.recompute(serviceKey, claimed);
    const changed = new Set<string>();
    for (const id of claimed) this.award(id, changed);
    return { changed, serviceChanges, endpointChanges };
  }

  /**
   * Everything wrong with the input as it is now: the sources' findings (those of the last state,
   * or `sourceProblems`, those of a state that was not taken in), then the model's.
   */
  problems(sourceProblems: readonly InputProblem[] = this.sourceProblems): InputProblem[] {
    return [...sourceProblems, ...[...this.problemsByService.values()].flat(), ...this.conflictProblems(), ...this.orphanSliceProblems()];
  }

  /** Claims anew the frontends of one Service, from its object and its slices as they are now; adds the ids to `claimed`. */
  private recompute(serviceKey: string, claimed: Set<string>): void {
    for (const frontend of this.claimsByService.get(serviceKey) ?? []) this.unclaim(frontend, claimed);
    this.claimsByService.delete(serviceKey);
    this.problemsByService.delete(serviceKey);
    const service = this.services.get(serviceKey);
    const sliceKeys = this.slicesByService.keysOf(serviceKey);
    if (!service && sliceKeys.some((key) => inEffect(this.slices.get(key), this.ignoredServices))) this.missingServices.add(serviceKey);
    else this.missingServices.delete(serviceKey);
    if (!service) return;
    // In key order, whatever order they arrived in: where two slices list one endpoint, the first one's conditions count.
    const ordered = sliceKeys.map((key) => this.slices.get(key)!);
    const { frontends, problems } = serviceFrontends(service, ordered, this.node);
    this.claimsByService.set(serviceKey, frontends);
    if (problems.length > 0)
      this.problemsByService.set(
        serviceKey,
        problems.map((reason) => ({ source: 'model', object: `Service ${serviceKey}`, reason })),
      );
    for (const frontend of frontends) this.claim(frontend, claimed);
  }

  /** Files the slice under the Service it names; that Service's key. */
  private indexSlice(key: string, slice: EndpointSlice): string {
    const serviceKey = sliceServiceKey(slice);
    this.slicesByService.add(serviceKey, key);
    return serviceKey;
  }

  private unindexSlice(key: string, slice: EndpointSlice): string {
    const serviceKey = sliceServiceKey(slice);
    this.slicesByService.delete(serviceKey, key);
    return serviceKey;
  }

  private claim(frontend: ClaimedFrontend, claimed: Set<string>): void {
    const id = frontendId(frontend.key);
    const claims = this.claimsOn.get(id);
    this.claimsOn.set(id, claims === undefined ? frontend : [...asList(claims), frontend]);
    claimed.add(id);
  }

  private unclaim(frontend: ClaimedFrontend, claimed: Set<string>): void {
    const id = frontendId(frontend.key);
    const others = asList(this.claimsOn.get(id)).filter((claim) => claim !== frontend);
    if (others.length === 0) this.claimsOn.delete(id);
    else this.claimsOn.set(id, others.length === 1 ? others[0]! : others);
    claimed.add(id);
  }

  /** Gives the frontend to the claim that wins it (claims.ts), or takes it out when nobody claims it. */
  private award(id: string, changed: Set<string>): void {
    const claims = asList(this.claimsOn.get(id));
    const serving = this.frontends.get(id);
    // Claims of one Service only are no contest (an external IP that is its own cluster IP): the rank decides.
    const contested = claims.some((claim) => !sameService(claim.service, claims[0]!.service));
    if (contested) this.contested.add(id);
    else this.contested.delete(id);
    const incumbent = contested ? (serving?.service ?? this.servedAtStart(id)) : undefined;
    const ranked = claims.length > 1 ? claims.map((frontend) => this.claimOf(frontend)) : undefined;
    const winner = ranked ? winningClaim(ranked, incumbent && namespacedName(incumbent))?.frontend : claims[0];
    if (winner === serving) return;
    changed.add(id);
    if (winner) this.frontends.set(id, winner);
    else this.frontends.delete(id);
  }

  private claimOf(frontend: ClaimedFrontend): Claim & { frontend: ClaimedFrontend } {
    const service = namespacedName(frontend.service);
    return { service, kind: frontend.claim, createdAt: this.services.get(service)?.createdAt, frontend };
  }

  /** One line per Service that claims a frontend another serves, with its strongest claim on it. */
  private conflictProblems(): InputProblem[] {
    const problems: InputProblem[] = [];
    for (const id of this.contested) {
      const served = this.frontends.get(id)!;
      const winner = this.claimOf(served);
      const reported = new Set([winner.service]);
      // In the order the rule ranks them: a Service's strongest claim comes first.
      const claims = asList(this.claimsOn.get(id)).map((frontend) => this.claimOf(frontend));
      for (const loser of claims.sort((a, b) => compareClaims(a, b, winner.service))) {
        if (reported.has(loser.service)) continue;
        reported.add(loser.service);
        problems.push({
          source: 'model',
          object: `Service ${loser.service}`,
          reason: `frontend ${id} (${loser.kind}) is served by Service ${winner.service} (${winner.kind}); this port is skipped`,
        });
      }
    }
    return problems;
  }

  private orphanSliceProblems(): InputProblem[] {
    const orphans = [...this.missingServices].flatMap((serviceKey) => this.slicesByService.keysOf(serviceKey));
    return orphans.sort().map((key) => {
      const slice = this.slices.get(key)!;
      return {
        source: 'model',
        object: `EndpointSlice ${key}`,
        reason: `names Service ${sliceServiceKey(slice)}, which does not exist; its endpoints are unused`,
      };
    });
  }
}

/**
 * Whether a slice takes part. The slices of a Service socklb ignores (headless, ExternalName) are
 * left out: unused, not reported as orphans, and their changes are no endpoint changes.
 */
function inEffect(slice: EndpointSlice | undefined, ignoredServices: ReadonlySet<string>): boolean {
  return slice !== undefined && !ignoredServices.has(sliceServiceKey(slice));
}

function asList<T extends object>(items: T | T[] | undefined): readonly T[] {
  return items === undefined ? [] : Array.isArray(items) ? items : [items];
}

function sameService(a: ServicePortRef, b: ServicePortRef): boolean {
  return a.namespace === b.namespace && a.name === b.name;
}

function allKeys(...collections: { keys(): Iterable<string> }[]): Set<string> {
  return new Set(collections.flatMap((collection) => [...collection.keys()]));
}
