// kube-proxy's traffic rules, in one place: which endpoints of a Service port
// receive new connections. Mirrors kube-proxy's CategorizeEndpoints, so that a
// workload cannot tell socklb from kube-proxy by where its connections land.

import type { Endpoint, NodeContext, TrafficPolicy } from './types.js';

export interface EndpointPolicy {
  internalTrafficPolicy: TrafficPolicy;
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
 * Topology hints narrow the ready endpoints to those hinted for this node
 * (trafficDistribution PreferSameNode) or else for its zone (PreferClose,
 * PreferSameZone), as kube-proxy's topologyModeFromHints decides: from the
 * hints alone, whatever the Service says. Under internalTrafficPolicy Local
 * only endpoints on this node count, with the same ready-then-terminating
 * fallback; none is none (the connection fails).
 */
export function categorizeEndpoints<E extends Endpoint>(
  endpoints: readonly E[],
  policy: EndpointPolicy,
  node: Pick<NodeContext, 'name' | 'zone'>,
): CategorizedEndpoints<E> {
  const cluster = withTerminatingFallback(endpoints, topologyFilter(endpoints, node));
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

/**
 * The ready endpoints topology leaves to this node: those hinted for it when every ready endpoint
 * has node hints and one names it, else those hinted for its zone likewise, else all. One ready
 * endpoint without hints means they are being rolled out or withdrawn: they are all ignored.
 */
function topologyFilter(endpoints: readonly Endpoint[], node: Pick<NodeContext, 'name' | 'zone'>): (endpoint: Endpoint) => boolean {
  if (hintsName(endpoints, (endpoint) => endpoint.nodeHints, node.name)) return (endpoint) => endpoint.nodeHints!.includes(node.name);
  const { zone } = node;
  if (zone !== undefined && zone !== '' && hintsName(endpoints, (endpoint) => endpoint.zoneHints, zone))
    return (endpoint) => endpoint.zoneHints!.includes(zone);
  return () => true;
}

/** Whether every ready endpoint has hints of this kind and one of them names `target`. */
function hintsName(
  endpoints: readonly Endpoint[],
  hintsOf: (endpoint: Endpoint) => readonly string[] | undefined,
  target: string,
): boolean {
  let named = false;
  for (const endpoint of endpoints) {
    if (!endpoint.ready) continue;
    const hints = hintsOf(endpoint);
    if (hints === undefined || hints.length === 0) return false;
    if (hints.includes(target)) named = true;
  }
  return named;
}
