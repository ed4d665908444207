// The addresses that belong to the Services as a whole, kept up to date incrementally: the
// cluster IPs of the Services this proxy serves, and the service CIDRs (--service-cluster-ip-range
// and the ServiceCIDR objects, unioned). A call to one of them that no frontend serves is refused
// at once, as kube-proxy's cluster-ips-check chain rejects a known cluster IP's other ports and
// drops the rest of the service CIDRs. Pure: no I/O.

import { isServedByThisProxy } from './frontends.js';
import { GroupedKeys } from './grouped-keys.js';
import type { SourceState } from './source-state.js';
import type { IPAddress, NodeContext, Service, ServiceAddresses } from './types.js';

/** What an update changed: the cluster IPs and service CIDRs that came or went. */
export interface AddressChanges {
  clusterIPs: Set<IPAddress>;
  serviceRanges: Set<string>;
}

export class DesiredServiceAddresses implements ServiceAddresses {
  readonly clusterIPs = new Set<IPAddress>();
  serviceRanges: ReadonlySet<string>;
  /** Service key -> the cluster IPs it contributes (none for a Service another proxy serves). */
  private readonly clusterIPsByService = new Map<string, readonly IPAddress[]>();
  /** Cluster IP -> the Services that have it: one, unless the input repeats an address. */
  private readonly servicesByClusterIP = new GroupedKeys();

  /** `configuredRanges`: the service CIDRs of the flags, canonical (canonicalCidr); the source's are added to them. */
  constructor(
    private readonly node: Pick<NodeContext, 'serviceProxyName'>,
    private readonly configuredRanges: readonly string[],
  ) {
    this.serviceRanges = new Set(configuredRanges);
  }

  update(state: SourceState): AddressChanges {
    const changes: AddressChanges = { clusterIPs: new Set(), serviceRanges: new Set() };
    const touched = new Set<IPAddress>();
    for (const key of state.changes?.services ?? new Set([...this.clusterIPsByService.keys(), ...state.services.keys()])) {
      const before = this.clusterIPsByService.get(key) ?? [];
      const after = this.clusterIPsOf(state.services.get(key));
      if (before.length === after.length && before.every((address, i) => address === after[i])) continue;
      for (const address of before) this.servicesByClusterIP.delete(address, key);
      for (const address of after) this.servicesByClusterIP.add(address, key);
      if (after.length > 0) this.clusterIPsByService.set(key, after);
      else this.clusterIPsByService.delete(key);
      for (const address of [...before, ...after]) touched.add(address);
    }
    // After every Service: an address one Service gives up and another takes is no change.
    for (const address of touched) {
      const wanted = this.servicesByClusterIP.has(address);
      if (wanted === this.clusterIPs.has(address)) continue;
      if (wanted) this.clusterIPs.add(address);
      else this.clusterIPs.delete(address);
      changes.clusterIPs.add(address);
    }
    const ranges = new Set([...this.configuredRanges, ...(state.serviceCIDRs ?? [])]);
    for (const cidr of [...this.serviceRanges, ...ranges])
      if (this.serviceRanges.has(cidr) !== ranges.has(cidr)) changes.serviceRanges.add(cidr);
    this.serviceRanges = ranges;
    return changes;
  }

  private clusterIPsOf(service: Service | undefined): readonly IPAddress[] {
    return service !== undefined && isServedByThisProxy(service, this.node) ? service.clusterIPs : [];
  }
}
