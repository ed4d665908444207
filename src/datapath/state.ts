// What the maps hold, decoded, with the indexes the planner needs. The maps are
// the truth: the agent reads them back at start (adopting a previous run's ids)
// and afterwards keeps this copy in step by applying each operation to it once
// the kernel has accepted it.

import { GroupedKeys } from '../model/grouped-keys.js';
import { backendText, frontendId } from '../model/keys.js';
import type { Backend, FrontendKey, IPAddress, ServicePortRef } from '../model/types.js';
import { IdMap } from './id-map.js';
import { isSealed, MAP_CODECS } from './layout.js';
import type { DatapathMaps } from './maps.js';

export interface FrontendEntry {
  key: FrontendKey;
  serviceId: number;
  backendCount: number;
  flags: number;
  /** sessionAffinity ClientIP timeout in seconds; 0 for none. */
  affinityTimeout: number;
}

/** One map write. Every operation is idempotent. */
export type Operation =
  | { kind: 'upsert-backend'; backendId: number; backend: Backend }
  | { kind: 'upsert-service-name'; serviceId: number; service: ServicePortRef }
  | { kind: 'upsert-slot'; serviceId: number; slot: number; backendId: number }
  | { kind: 'upsert-frontend'; frontend: FrontendEntry }
  /** Zeroes a service id's counters, so that a frontend given a reused id starts from 0. */
  | { kind: 'reset-stats'; serviceId: number }
  | { kind: 'delete-frontend'; key: FrontendKey }
  | { kind: 'delete-slot'; serviceId: number; slot: number }
  | { kind: 'delete-service-name'; serviceId: number }
  | { kind: 'delete-backend'; backendId: number }
  /** A Service's cluster IP: calls to it that no frontend serves are refused. */
  | { kind: 'upsert-cluster-ip'; address: IPAddress }
  | { kind: 'delete-cluster-ip'; address: IPAddress }
  /** A service CIDR (canonical): calls to its addresses that no frontend or cluster IP serves are refused. */
  | { kind: 'upsert-service-range'; cidr: string }
  | { kind: 'delete-service-range'; cidr: string };

export class DatapathState {
  /** By frontendId(). */
  readonly frontends = new Map<string, FrontendEntry>();
  /** service id -> slot -> backend id, including slots past the count. */
  // By id in arrays (IdMap), not Maps: ids are handed out lowest first.
  readonly slots = new IdMap<IdMap<number>>();
  readonly backends = new IdMap<Backend>();
  readonly serviceNames = new IdMap<ServicePortRef>();
  readonly clusterIPs = new Set<IPAddress>();
  /** Canonical CIDRs. */
  readonly serviceRanges = new Set<string>();
  private readonly backendIdByAddress = new Map<string, number>();
  /** backend id -> how many slots name it; absent for none. */
  private readonly slotsNamingBackend = new IdMap<number>();
  /** service id -> the frontends naming it (one, unless a crash left more). */
  private readonly frontendsByServiceId = new GroupedKeys<number>(new IdMap());
  // Which ids are free, so that the lowest is found without a walk over all.
  // Bookkeeping, not state: a state read back from the maps is equal without it.
  readonly #serviceIds = new IdUsage();
  readonly #backendIds = new IdUsage();

  /**
   * Reads every map; entries a crashed agent left half-done are kept as they are. A value that
   * does not name its key, or whose check fails, was not written whole by an agent: the programs
   * refuse it, and so the state leaves it out (a plan writes that key anew).
   */
  static read(maps: DatapathMaps): DatapathState {
    const state = new DatapathState();
    for (const [key, value] of maps.backends.entries()) {
      const backendId = MAP_CODECS.backends.key.decode(key);
      const { backendId: owner, ...backend } = MAP_CODECS.backends.value.decode(value);
      if (owner === backendId && isSealed(value)) state.apply({ kind: 'upsert-backend', backendId, backend });
    }
    for (const [key, value] of maps.slots.entries()) {
      const { serviceId, slot } = MAP_CODECS.slots.key.decode(key);
      const written = MAP_CODECS.slots.value.decode(value);
      if (written.serviceId === serviceId && written.slot === slot && isSealed(value)) state.apply({ kind: 'upsert-slot', ...written });
    }
    for (const [key, value] of maps.serviceNames.entries()) {
      state.apply({
        kind: 'upsert-service-name',
        serviceId: MAP_CODECS.serviceNames.key.decode(key),
        service: MAP_CODECS.serviceNames.value.decode(value),
      });
    }
    for (const [key, value] of maps.frontends.entries()) {
      const frontend = MAP_CODECS.frontends.value.decode(value);
      if (frontendId(frontend.key) === frontendId(MAP_CODECS.frontends.key.decode(key)) && isSealed(value))
        state.apply({ kind: 'upsert-frontend', frontend });
    }
    for (const [key] of maps.clusterIPs.entries())
      state.apply({ kind: 'upsert-cluster-ip', address: MAP_CODECS.clusterIPs.key.decode(key) });
    for (const [key] of maps.serviceRanges.entries())
      state.apply({ kind: 'upsert-service-range', cidr: MAP_CODECS.serviceRanges.key.decode(key) });
    return state;
  }

  apply(operation: Operation): void {
    switch (operation.kind) {
      case 'upsert-backend': {
        const address = backendText(operation.backend);
        // A second id for one address (left by a crash) stays reachable through its slots.
        if (!this.backendIdByAddress.has(address)) this.backendIdByAddress.set(address, operation.backendId);
        this.backends.set(operation.backendId, operation.backend);
        this.#backendIds.used(operation.backendId);
        return;
      }
      case 'delete-backend': {
        const backend = this.backends.get(operation.backendId);
        if (backend && this.backendIdByAddress.get(backendText(backend)) === operation.backendId)
          this.backendIdByAddress.delete(backendText(backend));
        this.backends.delete(operation.backendId);
        this.#backendIds.released(operation.backendId);
        return;
      }
      case 'upsert-slot': {
        let slots = this.slots.get(operation.serviceId);
        if (!slots) this.slots.set(operation.serviceId, (slots = new IdMap()));
        const previous = slots.get(operation.slot);
        if (previous !== undefined) this.countReference(previous, -1);
        slots.set(operation.slot, operation.backendId);
        this.countReference(operation.backendId, +1);
        this.#serviceIds.used(operation.serviceId);
        return;
      }
      case 'delete-slot': {
        const slots = this.slots.get(operation.serviceId);
        const previous = slots?.get(operation.slot);
        if (slots === undefined || previous === undefined) return;
        this.countReference(previous, -1);
        slots.delete(operation.slot);
        if (slots.size === 0) this.slots.delete(operation.serviceId);
        this.noteServiceId(operation.serviceId);
        return;
      }
      case 'upsert-service-name':
        this.serviceNames.set(operation.serviceId, operation.service);
        this.#serviceIds.used(operation.serviceId);
        return;
      case 'delete-service-name':
        this.serviceNames.delete(operation.serviceId);
        this.noteServiceId(operation.serviceId);
        return;
      case 'upsert-frontend': {
        const id = frontendId(operation.frontend.key);
        this.forgetFrontend(id);
        this.frontends.set(id, operation.frontend);
        this.frontendsByServiceId.add(operation.frontend.serviceId, id);
        this.#serviceIds.used(operation.frontend.serviceId);
        return;
      }
      case 'delete-frontend':
        this.forgetFrontend(frontendId(operation.key));
        return;
      case 'reset-stats':
        // Counters are the programs' business; the planner never reads them.
        return;
      case 'upsert-cluster-ip':
        this.clusterIPs.add(operation.address);
        return;
      case 'delete-cluster-ip':
        this.clusterIPs.delete(operation.address);
        return;
      case 'upsert-service-range':
        this.serviceRanges.add(operation.cidr);
        return;
      case 'delete-service-range':
        this.serviceRanges.delete(operation.cidr);
        return;
    }
  }

  /**
   * Whether ids were released since the readers were last known gone: until then they are not
   * handed out again (IdUsage).
   */
  get idsAwaitReaders(): boolean {
    return this.#serviceIds.cooling || this.#backendIds.cooling;
  }

  /** Says that every program run that started before this call has finished (a ReaderFence waited). */
  readersGone(): void {
    this.#serviceIds.readersGone();
    this.#backendIds.readersGone();
  }

  /** The service ids nothing uses and no reader can hold, lowest first, without end. */
  unusedServiceIds(): Iterator<number> {
    return this.#serviceIds.unused();
  }

  /** The backend ids the backend map does not hold and no reader can hold, lowest first, without end. */
  unusedBackendIds(): Iterator<number> {
    return this.#backendIds.unused();
  }

  /** The Service port a frontend serves, as its service id's name entry says; undefined for none. */
  servicePortOf(frontendId: string): ServicePortRef | undefined {
    const frontend = this.frontends.get(frontendId);
    return frontend && this.serviceNames.get(frontend.serviceId);
  }

  /** Whether some frontend names this service id. */
  frontendNames(serviceId: number): boolean {
    return this.frontendsByServiceId.has(serviceId);
  }

  /** How many slots of this service id some frontend exposes: the largest count of the frontends naming it; 0 for none. */
  exposedSlots(serviceId: number): number {
    let count = 0;
    for (const id of this.frontendsByServiceId.keysOf(serviceId)) count = Math.max(count, this.frontends.get(id)?.backendCount ?? 0);
    return count;
  }

  /** The id of the backend at this address and port, if the maps hold it. */
  backendIdOf(backend: Backend): number | undefined {
    return this.backendIdByAddress.get(backendText(backend));
  }

  /** How many slots, of any frontend, name this backend. */
  references(backendId: number): number {
    return this.slotsNamingBackend.get(backendId) ?? 0;
  }

  /** The backends a frontend's live slots name, in slot order (a missing slot is undefined). */
  liveSlots(frontend: FrontendEntry): (number | undefined)[] {
    const slots = this.slots.get(frontend.serviceId);
    return Array.from({ length: frontend.backendCount }, (_, slot) => slots?.get(slot));
  }

  private forgetFrontend(id: string): void {
    const previous = this.frontends.get(id);
    if (!previous) return;
    this.frontends.delete(id);
    this.frontendsByServiceId.delete(previous.serviceId, id);
    this.noteServiceId(previous.serviceId);
  }

  /** Whether any frontend, slot or service name uses this service id. */
  private serviceIdInUse(serviceId: number): boolean {
    return this.frontendNames(serviceId) || this.slots.has(serviceId) || this.serviceNames.has(serviceId);
  }

  private noteServiceId(serviceId: number): void {
    if (this.serviceIdInUse(serviceId)) this.#serviceIds.used(serviceId);
    else this.#serviceIds.released(serviceId);
  }

  private countReference(backendId: number, delta: number): void {
    const count = (this.slotsNamingBackend.get(backendId) ?? 0) + delta;
    if (count === 0) this.slotsNamingBackend.delete(backendId);
    else this.slotsNamingBackend.set(backendId, count);
  }
}

/** Skipped ids remembered at most: far more than any map's capacity. */
const MAX_GAP_REMEMBERED = 1 << 20;

/**
 * The ids handed out so far (all below a high-water mark) and those among
 * them released since: the lowest unused id is the lowest released one, or the
 * mark. A released id first cools: a program that read it before it was
 * released may still be following it, so it is handed out again only after
 * the owner of the state has waited for every such reader (readersGone). Ids
 * a map read back skips over cool too (the agent that freed them may have
 * just stopped), and are not lost: the counter map is an array indexed by
 * service id and sized with the frontends' capacity, so an id past it could
 * never be counted.
 */
class IdUsage {
  readonly #released = new Set<number>();
  readonly #cooling = new Set<number>();
  #highWater = 1;

  used(id: number): void {
    // Our own ids stay below the maps' capacity; a wilder one (a map written by
    // something else) is not worth a set of every id below it.
    if (id - this.#highWater <= MAX_GAP_REMEMBERED) {
      for (let skipped = this.#highWater; skipped < id; skipped++) this.#cooling.add(skipped);
    }
    this.#released.delete(id);
    this.#cooling.delete(id);
    if (id >= this.#highWater) this.#highWater = id + 1;
  }

  released(id: number): void {
    if (id < this.#highWater) this.#cooling.add(id);
  }

  get cooling(): boolean {
    return this.#cooling.size > 0;
  }

  readersGone(): void {
    for (const id of this.#cooling) this.#released.add(id);
    this.#cooling.clear();
  }

  *unused(): Generator<number, never> {
    yield* [...this.#released].sort((a, b) => a - b);
    for (let id = this.#highWater; ; id++) yield id;
  }
}
