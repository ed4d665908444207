// What one Service asks of the datapath: a frontend per address and port (its
// cluster IPs, its allowed external and load-balancer IPs, and its NodePorts
// at this node's addresses), backends taken from the Service's EndpointSlices
// of the frontend's family under kube-proxy's traffic rules. Pure.

import { categorizeEndpoints } from './endpoints.js';
import { cidrContains, ipFamily, parseCidr, writeIP } from './ip.js';
import type {
  Backend,
  ClaimedFrontend,
  ClaimKind,
  Endpoint,
  EndpointSlice,
  FrontendKey,
  IPAddress,
  IPFamily,
  NodeContext,
  Service,
  ServicePort,
} from './types.js';

export interface ServiceFrontends {
  /** Sorted by address (IPv4 first), port, protocol; one address may be claimed twice (an external IP that is a cluster IP). */
  frontends: ClaimedFrontend[];
  /** Sentences about the Service, without its name: the caller adds it. */
  problems: string[];
}

/**
 * Whether this proxy serves `service`: kube-proxy leaves Services labelled
 * with another service-proxy-name, or headless, alone.
 */
export function isServedByThisProxy(service: Service, node: Pick<NodeContext, 'serviceProxyName'>): boolean {
  return !service.headlessLabel && service.serviceProxyName === node.serviceProxyName;
}

/**
 * The frontends of `service`. `slices` are the slices joined to it by name;
 * an address is served by the slices of its own family only.
 */
export function serviceFrontends(service: Service, slices: readonly EndpointSlice[], node: NodeContext): ServiceFrontends {
  if (!isServedByThisProxy(service, node)) return { frontends: [], problems: [] };
  const frontends: ClaimedFrontend[] = [];
  const problems: string[] = [];
  const addFrontends = (
    address: IPAddress,
    claim: ClaimKind,
    traffic: 'internal' | 'cluster',
    portOf: (port: ServicePort) => number | undefined,
  ) => {
    const family = familyOf(address);
    const sameFamily = slices.filter((slice) => slice.addressType === family);
    for (const port of service.ports) {
      const frontendPort = portOf(port);
      if (frontendPort === undefined) continue;
      frontends.push({
        key: { address, port: frontendPort, protocol: port.protocol },
        service: { namespace: service.namespace, name: service.name, portName: port.name },
        // Left to whatever else handles it: no backend, and no refusal (src/datapath/planner.ts).
        backends: service.skip ? [] : toBackends(categorizeEndpoints(portEndpoints(port, sameFamily, node.name), service, node)[traffic]),
        affinityTimeoutSeconds: service.affinityTimeoutSeconds ?? 0,
        claim,
        ...(service.skip ? { skip: true as const } : {}),
      });
    }
  };

  for (const clusterIP of service.clusterIPs) {
    const family = familyOf(clusterIP);
    // No slice at all is an ordinary state (no pods yet); slices of the other family only is a mistake.
    if (slices.length > 0 && !slices.some((slice) => slice.addressType === family))
      problems.push(`clusterIP ${clusterIP} (${family}) has no ${family} EndpointSlice`);
    addFrontends(clusterIP, 'cluster IP', 'internal', (port) => port.port);
  }
  // Sandbox traffic to a Service's outside addresses short-circuits to its endpoints, as kube-proxy does for pods.
  // Only in the families the Service has a cluster IP in: kube-proxy serves a Service per family
  // of its cluster IPs, and leaves the outside addresses of another family to the network. Only the
  // external IPs, which the Service's author wrote, are reported: a cloud load balancer may give a
  // single-stack Service addresses of both families, which nobody could fix.
  const served = (address: IPAddress) => service.clusterIPs.some((clusterIP) => familyOf(clusterIP) === familyOf(address));
  const allowedCidrs = node.allowedExternalIPCidrs.map((text) => parseCidr(text)).filter((cidr) => cidr !== undefined);
  for (const externalIP of service.externalIPs) {
    const family = familyOf(externalIP);
    if (!served(externalIP))
      problems.push(
        `spec.externalIPs: ${externalIP} is not translated: the Service has no ${family} cluster IP (spec.ipFamilies), ` +
          `so it has no ${family} endpoints to send it to`,
      );
    else if (allowedCidrs.some((cidr) => cidrContains(cidr, externalIP)))
      addFrontends(externalIP, 'external IP', 'cluster', (port) => port.port);
    else
      problems.push(
        `spec.externalIPs: ${externalIP} is outside --allowed-external-ip-cidrs ` +
          `(${node.allowedExternalIPCidrs.join(', ') || 'none'}); not translated, ` +
          `so that a Service cannot capture traffic to an address it does not own (CVE-2020-8554)`,
      );
  }
  for (const ip of service.loadBalancerIPs.filter(served)) addFrontends(ip, 'load-balancer IP', 'cluster', (port) => port.port);
  if (service.type !== 'ClusterIP') {
    for (const nodeAddress of node.addresses.filter(served)) addFrontends(nodeAddress, 'node port', 'cluster', (port) => port.nodePort);
  }
  if (service.sctpPorts.length > 0)
    problems.push(`SCTP ports ${service.sctpPorts.join(', ')} are not translated: socket hooks do not cover SCTP`);
  return { frontends: frontends.sort((a, b) => compareKeys(a.key, b.key)), problems };
}

type PortEndpoint = Endpoint & { port: number };

/**
 * The endpoints of the slice ports that carry `port`: same name (the
 * Service's targetPort, named or not, is resolved into the slice port's
 * number by whoever wrote the slice) and same protocol. Several slices may
 * list one endpoint: the first listing counts, unless a later one puts it on
 * this node (`nodeName`), as kube-proxy keeps the local listing.
 */
function portEndpoints(port: ServicePort, slices: readonly EndpointSlice[], nodeName: string): PortEndpoint[] {
  const unique = new Map<string, PortEndpoint>();
  for (const slice of slices) {
    for (const slicePort of slice.ports) {
      if (slicePort.name !== port.name || slicePort.protocol !== port.protocol) continue;
      for (const endpoint of slice.endpoints) {
        const key = `${endpoint.address} ${slicePort.port}`;
        if (!unique.has(key) || endpoint.nodeName === nodeName) unique.set(key, { ...endpoint, port: slicePort.port });
      }
    }
  }
  return [...unique.values()];
}

function toBackends(endpoints: readonly PortEndpoint[]): Backend[] {
  return endpoints
    .map((endpoint) => ({ address: endpoint.address, port: endpoint.port }))
    .sort((a, b) => compareIPs(a.address, b.address) || a.port - b.port);
}

function familyOf(address: IPAddress): IPFamily {
  const family = ipFamily(address);
  if (family === undefined)
    throw new Error(`${address} is not an IP address: model objects must come from parseService and parseEndpointSlice`);
  return family;
}

function compareKeys(a: FrontendKey, b: FrontendKey): number {
  return compareIPs(a.address, b.address) || a.port - b.port || a.protocol.localeCompare(b.protocol);
}

/** IPv4 before IPv6, then numerically, so that 10.0.0.9 comes before 10.0.0.10. */
function compareIPs(a: IPAddress, b: IPAddress): number {
  if (a === b) return 0;
  return (
    FAMILY_ORDER[familyOf(a)] - FAMILY_ORDER[familyOf(b)] ||
    Buffer.compare(writeIP(a, COMPARED_A.fill(0), 0), writeIP(b, COMPARED_B.fill(0), 0))
  );
}

// Reused by every comparison: sorting 10000 Services' frontends and backends allocated two buffers per comparison.
const COMPARED_A = Buffer.alloc(16);
const COMPARED_B = Buffer.alloc(16);

const FAMILY_ORDER: Record<IPFamily, number> = { IPv4: 0, IPv6: 1 };
