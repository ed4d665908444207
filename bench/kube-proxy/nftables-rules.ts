// kube-proxy's nftables mode, reduced to what ClusterIP Services with ready endpoints produce, as
// the `nft -f` transaction it sends (through knftables). It follows pkg/proxy/nftables/proxier.go:
//   table ip kube-proxy
//     map service-ips      ClusterIP . protocol . port : goto service-<hash>-ns/name/proto/port
//     chain services       ip daddr . meta l4proto . th dport vmap @service-ips  (from nat output)
//     chain service-...    masquerade mark for non-pod sources;
//                          numgen random mod N vmap { 0 : goto endpoint-..., ... }
//     chain endpoint-...   hairpin masquerade mark; dnat to the endpoint
//   with the filter-side chains (cluster-ips-check, service-endpoints-check, firewall-check...)
//   that every new connection passes through on a node, and the masquerading chains.
// NodePorts, external IPs, load balancers, session affinity and Local traffic policies are not
// generated: the benchmark's Services have none.
import { CLUSTER_CIDR, SERVICE_CIDR, type BenchPort, type BenchService, type Catalog } from '../catalog.js';
import { servicePortName } from './iptables-rules.js';
import { nftEndpointChain, nftServiceChain } from './names.js';

const TABLE = 'ip kube-proxy';
const MASQUERADE_MARK = '0x00004000';

// kube-proxy writes the priorities as "dstnat-10", "dstnat" and "srcnat"; Debian's nft 1.0.6
// accepts those names only on some hooks, so they are given as the numbers they stand for.
const DSTNAT = -100;
const SRCNAT = 100;
const BASE_CHAINS = [
  { name: 'filter-prerouting', type: 'filter', hook: 'prerouting', priority: DSTNAT - 10 },
  { name: 'filter-input', type: 'filter', hook: 'input', priority: DSTNAT - 10 },
  { name: 'filter-forward', type: 'filter', hook: 'forward', priority: DSTNAT - 10 },
  { name: 'filter-output', type: 'filter', hook: 'output', priority: DSTNAT - 10 },
  { name: 'filter-output-post-dnat', type: 'filter', hook: 'output', priority: DSTNAT + 10 },
  { name: 'nat-prerouting', type: 'nat', hook: 'prerouting', priority: DSTNAT },
  { name: 'nat-output', type: 'nat', hook: 'output', priority: DSTNAT },
  { name: 'nat-postrouting', type: 'nat', hook: 'postrouting', priority: SRCNAT },
];

/** nftablesJumpChains: [target, from, condition]. */
const JUMPS: [string, string, string][] = [
  ['nodeport-endpoints-check', 'filter-input', 'ct state new'],
  ['service-endpoints-check', 'filter-input', 'ct state new'],
  ['service-endpoints-check', 'filter-forward', 'ct state new'],
  ['service-endpoints-check', 'filter-output', 'ct state new'],
  ['firewall-check', 'filter-prerouting', 'ct state new'],
  ['firewall-check', 'filter-output', 'ct state new'],
  ['services', 'nat-output', ''],
  ['services', 'nat-prerouting', ''],
  ['masquerading', 'nat-postrouting', ''],
  ['cluster-ips-check', 'filter-forward', 'ct state new'],
  ['cluster-ips-check', 'filter-output-post-dnat', 'ct state new'],
];

const SERVICE_KEY = 'ipv4_addr . inet_proto . inet_service : verdict';
const NODEPORT_KEY = 'inet_proto . inet_service : verdict';

/** The `nft -f` input of kube-proxy's first sync of `catalog`: the table's setup and every Service. */
export function renderNftablesSync(catalog: Catalog): string {
  return renderNftablesSetup() + renderNftablesServices(catalog.services);
}

/** The table, its base chains, sets and maps: setupNFTables on a first sync (nothing to flush yet). */
export function renderNftablesSetup(): string {
  return `${setupLines().join('\n')}\n`;
}

/** Every port of `services`: chains, rules and map elements, as a full sync writes them. */
export function renderNftablesServices(services: readonly BenchService[]): string {
  return `${services.flatMap((service) => service.ports.flatMap((port) => servicePortLines(service, port, true))).join('\n')}\n`;
}

/**
 * A partial sync, as kube-proxy makes after an EndpointSlice change: the `changed` Services'
 * chains are rewritten (their map elements stay as they are), and `staleChains` are flushed
 * (kube-proxy deletes them a second later, in another transaction).
 */
export function renderNftablesPartialSync(catalog: Catalog, changed: ReadonlySet<string>, staleChains: readonly string[]): string {
  const lines = catalog.services
    .filter((service) => changed.has(service.name))
    .flatMap((service) => service.ports.flatMap((port) => servicePortLines(service, port, false)));
  for (const chain of staleChains) lines.push(`flush chain ${TABLE} ${chain}`);
  return `${lines.join('\n')}\n`;
}

/** Removes everything kube-proxy made (its CleanupLeftovers); adding first makes it idempotent. */
export function renderNftablesDelete(): string {
  return `add table ${TABLE}\ndelete table ${TABLE}\n`;
}

/** The endpoint chains of one Service port, for telling which a change leaves stale. */
export function nftablesEndpointChains(service: BenchService): string[] {
  return service.ports.flatMap((port) =>
    service.endpoints.map((ip) => nftEndpointChain(servicePortName(service, port), `${ip}:${port.targetPort}`)),
  );
}

/** setupNFTables on the first sync (an empty table: nothing to flush or delete first). */
function setupLines(): string[] {
  const lines = [`add table ${TABLE} { comment "rules for kube-proxy" ; }`];
  for (const chain of BASE_CHAINS) {
    lines.push(`add chain ${TABLE} ${chain.name} { type ${chain.type} hook ${chain.hook} priority ${chain.priority} ; }`);
  }
  for (const chain of [
    'nodeport-endpoints-check',
    'service-endpoints-check',
    'firewall-check',
    'services',
    'masquerading',
    'cluster-ips-check',
    'mark-for-masquerade',
  ]) {
    lines.push(`add chain ${TABLE} ${chain}`);
  }
  for (const [target, from, condition] of JUMPS)
    lines.push(`add rule ${TABLE} ${from} ${condition === '' ? '' : `${condition} `}jump ${target}`);
  lines.push(
    `add rule ${TABLE} mark-for-masquerade mark set mark or ${MASQUERADE_MARK}`,
    `add rule ${TABLE} masquerading mark and ${MASQUERADE_MARK} == 0 return`,
    `add rule ${TABLE} masquerading mark set mark xor ${MASQUERADE_MARK}`,
    `add rule ${TABLE} masquerading masquerade fully-random`,
    `add set ${TABLE} cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }`,
    `add rule ${TABLE} cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"`,
    `add rule ${TABLE} cluster-ips-check ip daddr { ${SERVICE_CIDR} } drop comment "Drop traffic to unallocated ClusterIPs"`,
    `add map ${TABLE} no-endpoint-services { type ${SERVICE_KEY} ; comment "vmap to drop or reject packets to services with no endpoints" ; }`,
    `add map ${TABLE} no-endpoint-nodeports { type ${NODEPORT_KEY} ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }`,
    `add chain ${TABLE} reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }`,
    `add rule ${TABLE} reject-chain reject`,
    `add rule ${TABLE} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services`,
    `add rule ${TABLE} nodeport-endpoints-check ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports`,
    `add map ${TABLE} firewall-ips { type ${SERVICE_KEY} ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }`,
    `add rule ${TABLE} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips`,
    `add map ${TABLE} service-ips { type ${SERVICE_KEY} ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`,
    `add map ${TABLE} service-nodeports { type ${NODEPORT_KEY} ; comment "NodePort traffic" ; }`,
    `add rule ${TABLE} services ip daddr . meta l4proto . th dport vmap @service-ips`,
    `add rule ${TABLE} services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports`,
  );
  return lines;
}

/** One service port's chains and rules, and (in a full sync) its map elements. */
function servicePortLines(service: BenchService, port: BenchPort, withElements: boolean): string[] {
  const spn = servicePortName(service, port);
  const protocol = spn.protocol;
  const serviceChain = nftServiceChain(spn);
  const endpoints = service.endpoints.map((ip) => ({ ip, chain: nftEndpointChain(spn, `${ip}:${port.targetPort}`) }));
  const lines: string[] = [];
  // ensureChain: add, then flush whatever an earlier sync left in it.
  for (const chain of [...endpoints.map((endpoint) => endpoint.chain), serviceChain])
    lines.push(`add chain ${TABLE} ${chain}`, `flush chain ${TABLE} ${chain}`);
  if (withElements) {
    lines.push(
      `add element ${TABLE} cluster-ips { ${service.clusterIP} }`,
      `add element ${TABLE} service-ips { ${service.clusterIP} . ${protocol} . ${port.port} : goto ${serviceChain} }`,
    );
  }
  lines.push(
    `add rule ${TABLE} ${serviceChain} ip daddr ${service.clusterIP} ${protocol} dport ${port.port} ip saddr != ${CLUSTER_CIDR} jump mark-for-masquerade`,
  );
  const vmap = endpoints.map((endpoint, i) => `${i} : goto ${endpoint.chain}`).join(' , ');
  lines.push(`add rule ${TABLE} ${serviceChain} numgen random mod ${endpoints.length} vmap { ${vmap} }`);
  for (const endpoint of endpoints) {
    lines.push(
      `add rule ${TABLE} ${endpoint.chain} ip saddr ${endpoint.ip} jump mark-for-masquerade`,
      `add rule ${TABLE} ${endpoint.chain} meta l4proto ${protocol} dnat to ${endpoint.ip}:${port.targetPort}`,
    );
  }
  return lines;
}
