// What the maps hold, decoded, with the indexes the planner needs. The maps are
// the truth: the agent reads them back at start (adopting a previous run's ids)
// and afterwards keeps this copy in step by applying each operation to it once
// the kernel has accepted it.

import { backendText, frontendId } from '../model/keys.js';
import type { Backend, FrontendKey, ServicePortRef } from '../model/types.js';
import { MAP_CODECS } from './layout.js';
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
  | { kind: 'delete-backend'; backendId: number };

export class DatapathState {
  /** By frontendId(). */
  readonly frontends = new Map<string, FrontendEntry>();
  /** service id -> slot -> backend id, including slots past the count. */
  readonly slots = new Map<number, Map<number, number>>();
  readonly backends = new Map<number, Backend>();
  readonly serviceNames = new Map<number, ServicePortRef>();
  private readonly backendIdByAddress = new Map<string, number>();
  private readonly slotsNamingBackend = new Map<number, number>();

  /** Reads every map; entries a crashed agent left half-done are kept as they are. */
  static read(maps: DatapathMaps): DatapathState {
    const state = new DatapathState();
    for (const [key, value] of maps.backends.entries()) {
      state.apply({ kind: 'upsert-backend', backendId: MAP_CODECS.backends.key.decode(key), backend: MAP_CODECS.backends.value.decode(value) });
    }
    for (const [key, value] of maps.slots.entries()) {
      const { serviceId, slot } = MAP_CODECS.slots.key.decode(key);
      state.apply({ kind: 'upsert-slot', serviceId, slot, backendId: MAP_CODECS.slots.value.decode(value) });
    }
    for (const [key, value] of maps.serviceNames.entries()) {
      state.apply({ kind: 'upsert-service-name', serviceId: MAP_CODECS.serviceNames.key.decode(key), service: MAP_CODECS.serviceNames.value.decode(value) });
    }
    for (const [key, value] of maps.frontends.entries()) {
      state.apply({ kind: 'upsert-frontend', frontend: { key: MAP_CODECS.frontends.key.decode(key), ...MAP_CODECS.frontends.value.decode(value) } });
    }
    return state;
  }

  apply(operation: Operation): void {
    switch (operation.kind) {
      case 'upsert-backend': {
        const address = backendText(operation.backend);
        // A second id for one address (left by a crash) stays reachable through its slots.
        if (!this.backendIdByAddress.has(address)) this.backendIdByAddress.set(address, operation.backendId);
        this.backends.set(operation.backendId, operation.backend);
        return;
      }
      case 'delete-backend': {
        const backend = this.backends.get(operation.backendId);
        if (backend && this.backendIdByAddress.get(backendText(backend)) === operation.backendId) this.backendIdByAddress.delete(backendText(backend));
        this.backends.delete(operation.backendId);
        return;
      }
      case 'upsert-slot': {
        let slots = this.slots.get(operation.serviceId);
        if (!slots) this.slots.set(operation.serviceId, (slots = new Map()));
        const previous = slots.get(operation.slot);
        if (previous !== undefined) this.countReference(previous, -1);
        slots.set(operation.slot, operation.backendId);
        this.countReference(operation.backendId, +1);
        return;
      }
      case 'delete-slot': {
        const slots = this.slots.get(operation.serviceId);
        const previous = slots?.get(operation.slot);
        if (slots === undefined || previous === undefined) return;
        this.countReference(previous, -1);
        slots.delete(operation.slot);
        if (slots.size === 0) this.slots.delete(operation.serviceId);
        return;
      }
      case 'upsert-service-name':
        this.serviceNames.set(operation.serviceId, operation.service);
        return;
      case 'delete-service-name':
        this.serviceNames.delete(operation.serviceId);
        return;
      case 'upsert-frontend':
        this.frontends.set(frontendId(operation.frontend.key), operation.frontend);
        return;
      case 'delete-frontend':
        this.frontends.delete(frontendId(operation.key));
        return;
      case 'reset-stats':
        // Counters are the programs' business; the planner never reads them.
        return;
    }
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

  private countReference(backendId: number, delta: number): void {
    const count = (this.slotsNamingBackend.get(backendId) ?? 0) + delta;
    if (count === 0) this.slotsNamingBackend.delete(backendId);
    else this.slotsNamingBackend.set(backendId, count);
  }
}
