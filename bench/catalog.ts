// The synthetic Services every datapath gets at one scale: the same list, in the same order, for
// socklb's manifests and for the kube-proxy rulesets. Pure.
//
// Three Services carry the measurements and N - 3 fill the tables:
//   bench-http   80/TCP -> 8080 on every backend pod (nginx): the wrk workloads
//   bench-udp    5201/TCP + 5201/UDP -> the first backend pod (iperf3): one endpoint, because
//                iperf3's control connection and its datagrams must reach the same server
//   bench-churn  80/TCP -> addresses nobody serves: the one whose endpoints change
//   svc-NNNNNN   80/TCP -> addresses nobody serves, distinct for every Service, as in a cluster
//                where each Service selects its own pods
// The three sit in the middle of the list: kube-proxy's iptables mode matches ClusterIPs one rule
// after the other in KUBE-SERVICES, whose order is Go's random map order, so the middle is where
// a probed Service lands on average (and never first, which would hide the linear walk).
// Their names sort before "svc-": where a datapath can hold fewer Services than asked for, the
// measured ones are among those written (socklb writes in name order).

export const NAMESPACE = 'default';
/** The ClusterIPs, from the default Kubernetes service range. */
export const SERVICE_CIDR = '10.96.0.0/12';
/** The cluster's pod CIDR: the lab's pods (10.244.0.0/24) and the unserved endpoints (10.128.0.0 up). */
export const CLUSTER_CIDR = '10.128.0.0/9';
const FIRST_CLUSTER_IP = ipv4ToNumber('10.96.0.10');
const FIRST_UNSERVED_ENDPOINT = ipv4ToNumber('10.128.0.1');
/** Where the endpoints of bench-churn's changes come from: far from every other address here. */
const FIRST_CHURN_ENDPOINT = ipv4ToNumber('10.200.0.1');

export const HTTP_PORT = 80;
export const HTTP_TARGET_PORT = 8080;
export const UDP_PORT = 5201;

export interface BenchPort {
  /** The Service port's name, which kube-proxy's chain names hash. */
  name: string;
  protocol: 'TCP' | 'UDP';
  port: number;
  targetPort: number;
}

export interface BenchService {
  namespace: string;
  name: string;
  clusterIP: string;
  ports: BenchPort[];
  /** Endpoint IPs; every port of the Service has them all. */
  endpoints: string[];
}

export interface Catalog {
  /** Every Service, in KUBE-SERVICES order. */
  services: BenchService[];
  http: BenchService;
  udp: BenchService;
  churn: BenchService;
}

export interface CatalogOptions {
  /** How many Services in all, the three measured ones included; at least 3. */
  services: number;
  /** Endpoints per Service. */
  endpointsPerService: number;
  /** The backend pods' addresses: bench-http's endpoints; the first one is bench-udp's. */
  backendIPs: string[];
}

export function buildCatalog(options: CatalogOptions): Catalog {
  const { services: count, endpointsPerService, backendIPs } = options;
  if (!Number.isInteger(count) || count < 3) throw new Error(`services: ${count}; the benchmark needs at least 3`);
  const firstBackend = backendIPs[0];
  if (firstBackend === undefined) throw new Error('no backend pods');

  let nextEndpoint = FIRST_UNSERVED_ENDPOINT;
  const unserved = () => Array.from({ length: endpointsPerService }, () => numberToIPv4(nextEndpoint++));
  const http = { name: 'http', protocol: 'TCP', port: HTTP_PORT, targetPort: HTTP_TARGET_PORT } as const;

  const measured = {
    http: { namespace: NAMESPACE, name: 'bench-http', ports: [http], endpoints: [...backendIPs] },
    udp: {
      namespace: NAMESPACE,
      name: 'bench-udp',
      ports: [
        { name: 'control', protocol: 'TCP', port: UDP_PORT, targetPort: UDP_PORT },
        { name: 'data', protocol: 'UDP', port: UDP_PORT, targetPort: UDP_PORT },
      ],
      endpoints: [firstBackend],
    },
    churn: { namespace: NAMESPACE, name: 'bench-churn', ports: [http], endpoints: unserved() },
  } satisfies Record<string, Omit<BenchService, 'clusterIP'>>;

  const fillers = count - 3;
  const digits = Math.max(6, String(fillers).length);
  const unaddressed: Omit<BenchService, 'clusterIP'>[] = [];
  for (let i = 0; i < fillers; i++) {
    if (i === Math.floor(fillers / 2)) unaddressed.push(measured.http, measured.udp, measured.churn);
    unaddressed.push({ namespace: NAMESPACE, name: `svc-${String(i).padStart(digits, '0')}`, ports: [http], endpoints: unserved() });
  }
  if (fillers === 0) unaddressed.push(measured.http, measured.udp, measured.churn);

  const services = unaddressed.map((service, i) => ({ ...service, clusterIP: numberToIPv4(FIRST_CLUSTER_IP + i) }));
  const byName = (name: string) => services.find((service) => service.name === name)!;
  return { services, http: byName('bench-http'), udp: byName('bench-udp'), churn: byName('bench-churn') };
}

/**
 * The k-th endpoint change of bench-churn (k from 1): its last endpoint is replaced by an address
 * of its own, so that every change is visible, and the others stay.
 */
export function churnEndpoints(churn: BenchService, k: number): string[] {
  return [...churn.endpoints.slice(0, -1), numberToIPv4(FIRST_CHURN_ENDPOINT + k)];
}

/** The same catalog with one Service's endpoints replaced. */
export function withEndpoints(catalog: Catalog, service: BenchService, endpoints: string[]): Catalog {
  const replaced = { ...service, endpoints };
  const swap = (candidate: BenchService) => (candidate.name === service.name ? replaced : candidate);
  return { services: catalog.services.map(swap), http: swap(catalog.http), udp: swap(catalog.udp), churn: swap(catalog.churn) };
}

/** How many endpoints the catalog's Service ports have in all (one per port and endpoint). */
export function endpointCount(catalog: Catalog): number {
  return catalog.services.reduce((sum, service) => sum + service.ports.length * service.endpoints.length, 0);
}

function ipv4ToNumber(ip: string): number {
  return ip.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);
}

function numberToIPv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}
