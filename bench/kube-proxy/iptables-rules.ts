// kube-proxy's iptables mode, reduced to what ClusterIP Services with ready endpoints produce, as
// iptables-restore input. It follows pkg/proxy/iptables/proxier.go (Kubernetes 1.28 and later,
// which have the minimal "partial" syncs) line for line where a ClusterIP is concerned:
//   nat    KUBE-SERVICES: one rule per service port, matched in order  -> KUBE-SVC-<hash>
//          KUBE-SVC-<hash>: masquerade mark for non-pod sources, then one rule per endpoint with
//                           `statistic --mode random --probability 1/(n-i)`  -> KUBE-SEP-<hash>
//          KUBE-SEP-<hash>: hairpin masquerade mark, DNAT to the endpoint
//          KUBE-POSTROUTING / KUBE-MARK-MASQ: the 0x4000 mark and MASQUERADE --random-fully
//   filter KUBE-FORWARD, and the empty KUBE-SERVICES, KUBE-PROXY-FIREWALL... chains with the jumps
//          to them, each new connection walking them as on a node.
// NodePorts, external IPs, load balancers, session affinity and Local traffic policies are not
// generated: the benchmark's Services have none.
import { CLUSTER_CIDR, type BenchPort, type BenchService, type Catalog } from '../catalog.js';
import { iptablesEndpointChain, iptablesServiceChain, servicePortNameString, type ServicePortName } from './names.js';

const MASQUERADE_MARK = '0x4000';
/** proxier.go largeClusterEndpointsThreshold: above it, endpoint rules lose their comments. */
const LARGE_CLUSTER_ENDPOINTS = 1000;

/** The jumps from the built-in chains, which kube-proxy makes with `iptables -I` before its first sync. */
const JUMPS: { table: 'filter' | 'nat'; chain: string; target: string; comment?: string; match?: string }[] = [
  {
    table: 'filter',
    chain: 'INPUT',
    target: 'KUBE-EXTERNAL-SERVICES',
    comment: 'kubernetes externally-visible service portals',
    match: '-m conntrack --ctstate NEW',
  },
  {
    table: 'filter',
    chain: 'FORWARD',
    target: 'KUBE-EXTERNAL-SERVICES',
    comment: 'kubernetes externally-visible service portals',
    match: '-m conntrack --ctstate NEW',
  },
  { table: 'filter', chain: 'INPUT', target: 'KUBE-NODEPORTS', comment: 'kubernetes health check service ports' },
  {
    table: 'filter',
    chain: 'FORWARD',
    target: 'KUBE-SERVICES',
    comment: 'kubernetes service portals',
    match: '-m conntrack --ctstate NEW',
  },
  { table: 'filter', chain: 'OUTPUT', target: 'KUBE-SERVICES', comment: 'kubernetes service portals', match: '-m conntrack --ctstate NEW' },
  { table: 'filter', chain: 'FORWARD', target: 'KUBE-FORWARD', comment: 'kubernetes forwarding rules' },
  {
    table: 'filter',
    chain: 'INPUT',
    target: 'KUBE-PROXY-FIREWALL',
    comment: 'kubernetes load balancer firewall',
    match: '-m conntrack --ctstate NEW',
  },
  {
    table: 'filter',
    chain: 'OUTPUT',
    target: 'KUBE-PROXY-FIREWALL',
    comment: 'kubernetes load balancer firewall',
    match: '-m conntrack --ctstate NEW',
  },
  {
    table: 'filter',
    chain: 'FORWARD',
    target: 'KUBE-PROXY-FIREWALL',
    comment: 'kubernetes load balancer firewall',
    match: '-m conntrack --ctstate NEW',
  },
  { table: 'nat', chain: 'OUTPUT', target: 'KUBE-SERVICES', comment: 'kubernetes service portals' },
  { table: 'nat', chain: 'PREROUTING', target: 'KUBE-SERVICES', comment: 'kubernetes service portals' },
  { table: 'nat', chain: 'POSTROUTING', target: 'KUBE-POSTROUTING', comment: 'kubernetes postrouting rules' },
  // kubelet's, which kube-proxy also ensures.
  { table: 'filter', chain: 'INPUT', target: 'KUBE-FIREWALL' },
  { table: 'filter', chain: 'OUTPUT', target: 'KUBE-FIREWALL' },
];

const FILTER_CHAINS = ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', 'KUBE-FIREWALL'];
const NAT_CHAINS = ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ'];

/** iptables-restore --noflush input that creates the top-level chains and the jumps to them. */
export function renderIptablesJumps(): string {
  const lines: string[] = [];
  for (const table of ['filter', 'nat'] as const) {
    lines.push(`*${table}`, ...(table === 'filter' ? FILTER_CHAINS : NAT_CHAINS).map(chainLine));
    for (const jump of JUMPS.filter((candidate) => candidate.table === table)) {
      const comment = jump.comment === undefined ? '' : ` -m comment --comment ${quote(jump.comment)}`;
      lines.push(`-I ${jump.chain}${jump.match === undefined ? '' : ` ${jump.match}`}${comment} -j ${jump.target}`);
    }
    lines.push('COMMIT');
  }
  return `${lines.join('\n')}\n`;
}

/** Deletes every rule and user chain of both tables: iptables-restore (with flushing) input. */
export function renderIptablesFlush(): string {
  return '*filter\nCOMMIT\n*nat\nCOMMIT\n';
}

export interface IptablesSyncOptions {
  /**
   * A partial sync, as kube-proxy makes after an EndpointSlice change: only these Services' own
   * chains are written (KUBE-SERVICES is always written whole). Undefined: a full sync.
   */
  changed?: ReadonlySet<string>;
}

/** The iptables-restore --noflush input of one kube-proxy sync of `catalog`. */
export function renderIptablesSync(catalog: Catalog, options: IptablesSyncOptions = {}): string {
  const totalEndpoints = catalog.services.reduce((sum, service) => sum + service.ports.length * service.endpoints.length, 0);
  const largeCluster = totalEndpoints > LARGE_CLUSTER_ENDPOINTS;
  const natChains = NAT_CHAINS.map(chainLine);
  const natRules = [
    `-A KUBE-POSTROUTING -m mark ! --mark ${MASQUERADE_MARK}/${MASQUERADE_MARK} -j RETURN`,
    `-A KUBE-POSTROUTING -j MARK --xor-mark ${MASQUERADE_MARK}`,
    `-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`,
    `-A KUBE-MARK-MASQ -j MARK --or-mark ${MASQUERADE_MARK}`,
  ];
  for (const service of catalog.services) {
    const writeChains = options.changed === undefined || options.changed.has(service.name);
    for (const port of service.ports) {
      const rendered = servicePortRules(service, port, largeCluster);
      natRules.push(rendered.capture);
      if (!writeChains) continue;
      natChains.push(...rendered.chains.map(chainLine));
      natRules.push(...rendered.rules);
    }
  }
  natRules.push(
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
  );
  const filterRules = [
    '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
    `-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark ${MASQUERADE_MARK}/${MASQUERADE_MARK} -j ACCEPT`,
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  ];
  return ['*filter', ...FILTER_CHAINS.map(chainLine), ...filterRules, 'COMMIT', '*nat', ...natChains, ...natRules, 'COMMIT', ''].join('\n');
}

/** One service port's KUBE-SERVICES rule, and its own chains and their rules. */
function servicePortRules(
  service: BenchService,
  port: BenchPort,
  largeCluster: boolean,
): { capture: string; chains: string[]; rules: string[] } {
  const spn = servicePortName(service, port);
  const name = servicePortNameString(spn);
  const protocol = spn.protocol;
  const svcChain = iptablesServiceChain(spn);
  const match = `-m comment --comment ${quote(`${name} cluster IP`)} -m ${protocol} -p ${protocol} -d ${service.clusterIP} --dport ${port.port}`;
  const endpoints = service.endpoints.map((ip) => ({
    ip,
    text: `${ip}:${port.targetPort}`,
    chain: iptablesEndpointChain(spn, `${ip}:${port.targetPort}`),
  }));
  const comment = (text: string) => (largeCluster ? '' : ` -m comment --comment ${quote(text)}`);

  const rules = [`-A ${svcChain} ${match} ! -s ${CLUSTER_CIDR} -j KUBE-MARK-MASQ`];
  endpoints.forEach((endpoint, i) => {
    const remaining = endpoints.length - i;
    const statistic = remaining > 1 ? ` -m statistic --mode random --probability ${(1 / remaining).toFixed(10)}` : '';
    rules.push(`-A ${svcChain}${comment(`${name} -> ${endpoint.text}`)}${statistic} -j ${endpoint.chain}`);
  });
  for (const endpoint of endpoints) {
    rules.push(`-A ${endpoint.chain}${comment(name)} -s ${endpoint.ip} -j KUBE-MARK-MASQ`);
    rules.push(`-A ${endpoint.chain}${comment(name)} -m ${protocol} -p ${protocol} -j DNAT --to-destination ${endpoint.text}`);
  }
  return { capture: `-A KUBE-SERVICES ${match} -j ${svcChain}`, chains: [svcChain, ...endpoints.map((endpoint) => endpoint.chain)], rules };
}

export function servicePortName(service: BenchService, port: BenchPort): ServicePortName {
  return { namespace: service.namespace, name: service.name, port: port.name, protocol: port.protocol === 'TCP' ? 'tcp' : 'udp' };
}

function chainLine(chain: string): string {
  return `:${chain} - [0:0]`;
}

function quote(text: string): string {
  return `"${text}"`;
}
