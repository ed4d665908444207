// What one Service asks of the datapath: a frontend per cluster IP and port,
// its backends taken from the Service's EndpointSlices. Pure.

import { usableEndpoints } from './endpoints.js';
import { ipFamily, ipToBytes } from './ip.js';
import { namespacedName } from './kubernetes.js';
import type { Backend, DesiredFrontend, EndpointSlice, FrontendKey, IPAddress, IPFamily, Service, ServicePort } from './types.js';

export interface ServiceFrontends {
  /** Sorted by address (IPv4 first), port, protocol. */
  frontends: DesiredFrontend[];
  /** Sentences about the Service, without its name: the caller adds it. */
  problems: string[];
}

/**
 * The frontends of `service`. `slices` are the slices joined to it by name;
 * a cluster IP is served by the slices of its own family only.
 */
export function serviceFrontends(service: Service, slices: readonly EndpointSlice[]): ServiceFrontends {
  const frontends: DesiredFrontend[] = [];
  const problems: string[] = [];
  for (const clusterIP of service.clusterIPs) {
    const family = familyOf(clusterIP);
    const sameFamily = slices.filter((slice) => slice.addressType === family);
    // No slice at all is an ordinary state (no pods yet); slices of the other family only is a mistake.
    if (slices.length > 0 && sameFamily.length === 0) problems.push(`clusterIP ${clusterIP} (${family}) has no ${family} EndpointSlice`);
    for (const port of service.ports) {
      frontends.push({
        key: { address: clusterIP, port: port.port, protocol: port.protocol },
        service: { namespace: service.namespace, name: service.name, portName: port.name },
        backends: backendsOf(port, sameFamily),
      });
    }
  }
  return { frontends: frontends.sort((a, b) => compareKeys(a.key, b.key)), problems };
}

export interface SliceJoin {
  /** By `${namespace}/${name}` of every Service, [] for a Service without slices. */
  byService: Map<string, EndpointSlice[]>;
  /** Slices whose kubernetes.io/service-name names no Service in their namespace. */
  orphans: EndpointSlice[];
}

export function joinSlices(services: Iterable<Service>, slices: Iterable<EndpointSlice>): SliceJoin {
  const byService = new Map<string, EndpointSlice[]>();
  for (const service of services) byService.set(namespacedName(service), []);
  const orphans: EndpointSlice[] = [];
  for (const slice of slices) {
    const joined = byService.get(namespacedName({ namespace: slice.namespace, name: slice.serviceName }));
    if (joined) joined.push(slice);
    else orphans.push(slice);
  }
  return { byService, orphans };
}

/**
 * The usable endpoints of the slice ports that carry `port`: same name (the
 * Service's targetPort, named or not, is resolved into the slice port's
 * number by whoever wrote the slice) and same protocol.
 */
function backendsOf(port: ServicePort, slices: readonly EndpointSlice[]): Backend[] {
  // Several slices may list one endpoint: each backend once.
  const unique = new Map<string, Backend>();
  for (const slice of slices) {
    for (const slicePort of slice.ports) {
      if (slicePort.name !== port.name || slicePort.protocol !== port.protocol) continue;
      for (const endpoint of usableEndpoints(slice.endpoints)) {
        unique.set(`${endpoint.address} ${slicePort.port}`, { address: endpoint.address, port: slicePort.port });
      }
    }
  }
  return [...unique.values()].sort((a, b) => compareIPs(a.address, b.address) || a.port - b.port);
}

function familyOf(address: IPAddress): IPFamily {
  const family = ipFamily(address);
  if (family === undefined) throw new Error(`${address} is not an IP address: model objects must come from parseService and parseEndpointSlice`);
  return family;
}

function compareKeys(a: FrontendKey, b: FrontendKey): number {
  return compareIPs(a.address, b.address) || a.port - b.port || a.protocol.localeCompare(b.protocol);
}

/** IPv4 before IPv6, then numerically, so that 10.0.0.9 comes before 10.0.0.10. */
function compareIPs(a: IPAddress, b: IPAddress): number {
  return FAMILY_ORDER[familyOf(a)] - FAMILY_ORDER[familyOf(b)] || Buffer.compare(ipToBytes(a), ipToBytes(b));
}

const FAMILY_ORDER: Record<IPFamily, number> = { IPv4: 0, IPv6: 1 };
