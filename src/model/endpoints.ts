// kube-proxy's traffic rules, in one place: which endpoints of a Service port
// receive new connections. Mirrors kube-proxy's CategorizeEndpoints, so that a
// workload cannot tell socklb from kube-proxy by where its connections land.

import type { Endpoint, NodeContext, TrafficPolicy } from './types.js';

export interface EndpointPolicy {
  internalTrafficPolicy: TrafficPolicy;
  topologyAware: boolean;
}

export interface CategorizedEndpoints<E extends Endpoint> {
  /** For traffic under the Cluster policy: external IPs, NodePorts, and ClusterIPs without Local. */
  cluster: E[];
  /** For ClusterIP traffic: `cluster`, or the local endpoints under internalTrafficPolicy Local. */
  internal: E[];
}

/**
 * Ready endpoints are used; when none is ready anywhere, endpoints that are
 * serving and terminating are (KEP-1669); endpoints not serving never are.
 * Topology hints narrow the ready endpoints to this node's zone when every
 * ready endpoint has hints and one of them names this zone. Under
 * internalTrafficPolicy Local only endpoints on this node count, with the
 * same ready-then-terminating fallback; none is none (the connection fails).
 */
export function categorizeEndpoints<E extends Endpoint>(endpoints: readonly E[], policy: EndpointPolicy, node: Pick<NodeContext, 'name' | 'zone'>): CategorizedEndpoints<E> {
  const zone = policy.topologyAware ? usableZone(endpoints, node.zone) : undefined;
  const cluster = withTerminatingFallback(endpoints, (endpoint) => zone === undefined || (endpoint.zoneHints ?? []).includes(zone));
  if (policy.internalTrafficPolicy === 'Cluster') return { cluster, internal: cluster };
  const local = endpoints.filter((endpoint) => endpoint.nodeName === node.name);
  return { cluster, internal: withTerminatingFallback(local, () => true) };
}

/** The ready endpoints `eligible` accepts, or else every serving and terminating one. */
function withTerminatingFallback<E extends Endpoint>(endpoints: readonly E[], eligible: (endpoint: E) => boolean): E[] {
  const ready = endpoints.filter((endpoint) => endpoint.ready && eligible(endpoint));
  if (ready.length > 0) return ready;
  return endpoints.filter((endpoint) => endpoint.serving && endpoint.terminating);
}

/** This node's zone when hints can be trusted for it, as kube-proxy's canUseTopology decides. */
function usableZone(endpoints: readonly Endpoint[], zone: string | undefined): string | undefined {
  if (zone === undefined || zone === '') return undefined;
  let hasEndpointForZone = false;
  for (const endpoint of endpoints) {
    if (!endpoint.ready) continue;
    // One ready endpoint without hints: the hints are being rolled out or withdrawn; ignore them all.
    if (endpoint.zoneHints === undefined || endpoint.zoneHints.length === 0) return undefined;
    if (endpoint.zoneHints.includes(zone)) hasEndpointForZone = true;
  }
  return hasEndpointForZone ? zone : undefined;
}
