// The contract every source of Services and EndpointSlices fulfils: manifest
// files now, the Kubernetes API later. A source delivers whole states rather
// than events, so that a consumer never has to replay history to know where
// it stands.

import type { EndpointSlice, InputProblem, Service } from '../model/types.js';

export interface SourceState {
  /** Keyed `${namespace}/${name}`. */
  services: ReadonlyMap<string, Service>;
  /**
   * Keyed `${namespace}/${name}`. Slices of a Service that socklb ignores
   * (headless, ExternalName) are left out: they are not orphans.
   */
  slices: ReadonlyMap<string, EndpointSlice>;
  /** Everything currently wrong with the input. */
  problems: readonly InputProblem[];
  /** When the source first noticed a change this state carries (ms since the epoch), for network programming latency. */
  changeSeenAt?: number;
  /** This node as the source knows it (the API's Node object); undefined when it cannot tell. */
  node?: { name: string; zone?: string };
}

export interface Source {
  /** Delivers the first complete state, then every change; resolves once the first state was delivered. */
  start(onState: (state: SourceState) => void): Promise<void>;
  stop(): Promise<void>;
}
