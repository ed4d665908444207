// What a source (manifest files, the Kubernetes API) hands the model. A source
// delivers whole states rather than events, so that a consumer never has to
// replay history to know where it stands; with each state it says which keys
// changed, so that a consumer can do work in proportion to the change rather
// than to the whole state.

import type { EndpointSlice, InputProblem, Service } from './types.js';

/**
 * The maps of a state are the source's own, kept up to date in place: they are
 * valid until the next state is delivered. A consumer that compares states
 * over time keeps copies.
 */
export interface SourceState {
  /** The Services socklb translates, keyed `${namespace}/${name}`. */
  services: ReadonlyMap<string, Service>;
  /**
   * The keys of the Services that exist but that socklb does not translate
   * (headless, ExternalName): the model leaves their slices out, and does not
   * report them as orphans.
   */
  ignoredServices: ReadonlySet<string>;
  /** Every EndpointSlice, those of ignored Services too, keyed `${namespace}/${name}`. */
  slices: ReadonlyMap<string, EndpointSlice>;
  /**
   * The keys of the Services and EndpointSlices that may differ from the
   * previous state delivered (added, changed, removed, a Service turned
   * ignored or back); every other key maps to the same object as before.
   * Undefined: anything may have changed, the consumer compares everything.
   */
  changes?: StateChanges;
  /**
   * The service CIDRs of the cluster's ServiceCIDR objects, canonical (canonicalCidr); undefined
   * from a source that has none (manifests, an API server that does not serve the resource).
   */
  serviceCIDRs?: ReadonlySet<string>;
  /** Everything currently wrong with the input. */
  problems: readonly InputProblem[];
  /** When the source first noticed a change this state carries (ms since the epoch), for network programming latency. */
  changeSeenAt?: number;
  /** This node as the source knows it (the API's Node object); undefined when it cannot tell. */
  node?: { name: string; zone?: string };
  /**
   * False when the source cannot see its input at all (a manifest path that does not exist): the
   * state carries the problems, and the objects of the last state in which it could. The consumer
   * keeps its datapath as it is, rather than take the emptiness for "no Services": a mistyped or
   * not yet mounted path at a restart would otherwise remove every Service from the pinned maps.
   * Undefined: true.
   */
  complete?: boolean;
}

export interface StateChanges {
  services: ReadonlySet<string>;
  slices: ReadonlySet<string>;
}
