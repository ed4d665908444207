// Validation of decoded Kubernetes objects (plain values from YAML or JSON)
// into the model. An object validates whole or is rejected whole: a Service
// with one bad port is not translated with its other ports, because a
// half-translated Service fails in ways that are harder to see than a
// rejected one.

import { canonicalCidr, canonicalIP, formatIP, ipFamily, ipToBytes, ipv4WithLeadingZeros, isIPv4Mapped } from './ip.js';
import type {
  Endpoint,
  EndpointPort,
  EndpointSlice,
  IPAddress,
  IPFamily,
  Protocol,
  Service,
  ServiceCIDR,
  ServicePort,
  TrafficPolicy,
} from './types.js';

export type ParseResult<T> =
  | { kind: 'ok'; value: T }
  /** Valid, but nothing socklb translates (headless, ExternalName, FQDN). */
  | { kind: 'ignored'; reason: string }
  /** `reason` names the field, its value and what is wrong with it. */
  | { kind: 'invalid'; reason: string };

/** Who an object is: its kind, and its namespace ("default" when absent, as kubectl reads it) and name. */
export interface ObjectRef {
  kind: string;
  namespace: string;
  name: string;
}

/** The label that joins an EndpointSlice to its Service. */
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** Labels by which kube-proxy leaves a Service to another proxy, or to DNS only. */
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';
/** The annotation by which a Service is left to whatever else handles it (a mesh, kube-proxy): "true" or "false". */
export const SKIP_ANNOTATION = 'socklb.io/skip';
/** Kubernetes' default for sessionAffinityConfig.clientIP.timeoutSeconds: three hours. */
const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;

/** The identity of a raw object, undefined when it has no usable kind or name. */
export function objectRef(raw: unknown): ObjectRef | undefined {
  if (!isRecord(raw) || !isRecord(raw.metadata)) return undefined;
  const { kind } = raw;
  const { name } = raw.metadata;
  const namespace = raw.metadata.namespace ?? 'default';
  if (!isNonEmptyString(kind) || !isNonEmptyString(name) || !isNonEmptyString(namespace)) return undefined;
  return { kind, namespace, name };
}

/** `Service default/web`: how problems name an object. */
export function describeObject(ref: ObjectRef): string {
  return `${ref.kind} ${namespacedName(ref)}`;
}

/** `default/web`: the key of an object among the objects of its kind. */
export function namespacedName(object: { namespace: string; name: string }): string {
  return `${object.namespace}/${object.name}`;
}

/** The `namespace/name` of the Service an EndpointSlice belongs to (its kubernetes.io/service-name label). */
export function sliceServiceKey(slice: { namespace: string; serviceName: string }): string {
  return namespacedName({ namespace: slice.namespace, name: slice.serviceName });
}

export function parseService(raw: unknown): ParseResult<Service> {
  return validated(() => {
    const { namespace, name, body, metadata, labels } = objectMeta(raw, 'v1', 'Service', SERVICE_NAME);
    const spec = record(body.spec, 'spec');
    const type = isAbsent(spec.type) ? 'ClusterIP' : spec.type;
    if (type === 'ExternalName') {
      return { kind: 'ignored', reason: 'spec.type is ExternalName: a DNS alias, with no cluster IP to translate' };
    }
    if (!TRANSLATED_SERVICE_TYPES.has(type)) {
      fail('spec.type', `${show(type)} is not one of ClusterIP, NodePort, LoadBalancer, ExternalName`);
    }
    const clusterIPs = serviceClusterIPs(spec);
    if (clusterIPs === 'None') {
      return { kind: 'ignored', reason: 'spec.clusterIP is None: a headless Service is resolved by DNS, with no cluster IP to translate' };
    }
    const allPorts = servicePorts(spec.ports);
    const proxyName = labels[SERVICE_PROXY_NAME_LABEL];
    return {
      kind: 'ok',
      value: {
        namespace,
        name,
        type: type as Service['type'],
        clusterIPs,
        ports: withoutSctp(allPorts),
        sctpPorts: sharedIfEmpty(allPorts.filter((port) => port.protocol === 'SCTP').map((port) => port.port)),
        externalIPs: sharedIfEmpty(addresses(spec.externalIPs, 'spec.externalIPs')),
        loadBalancerIPs: sharedIfEmpty(loadBalancerIPs(body.status)),
        affinityTimeoutSeconds: affinityTimeout(spec),
        internalTrafficPolicy: trafficPolicy(spec.internalTrafficPolicy, 'spec.internalTrafficPolicy'),
        serviceProxyName: typeof proxyName === 'string' ? proxyName : undefined,
        headlessLabel: HEADLESS_LABEL in labels,
        ...(skipAnnotation(metadata) ? { skip: true as const } : {}),
        createdAt: creationTime(metadata.creationTimestamp, 'metadata.creationTimestamp'),
      },
    };
  });
}

export function parseEndpointSlice(raw: unknown): ParseResult<EndpointSlice> {
  return validated(() => {
    const { namespace, name, body, labels } = objectMeta(raw, 'discovery.k8s.io/v1', 'EndpointSlice', SUBDOMAIN);
    const { addressType } = body;
    if (addressType === 'FQDN') {
      return { kind: 'ignored', reason: 'addressType is FQDN: its endpoints are names, with no address to translate to' };
    }
    if (addressType !== 'IPv4' && addressType !== 'IPv6') {
      fail('addressType', `${show(addressType)} is not one of IPv4, IPv6, FQDN`);
    }
    const serviceName = labels[SERVICE_NAME_LABEL];
    if (!isNonEmptyString(serviceName)) {
      fail(
        `metadata.labels["${SERVICE_NAME_LABEL}"]`,
        `${show(serviceName)}; this label joins the slice to its Service: set it to the Service's name`,
      );
    }
    const listed = list(body.ports, 'ports').map((port, i) => endpointPort(port, `ports[${i}]`));
    rejectDuplicate(listed, 'ports', (port) => `name ${show(port.name)}`);
    const allPorts = listed.filter((port): port is AnyProtocol<EndpointPort> => port.port !== undefined);
    // SCTP ports serve SCTP Service ports, which socklb reports and skips.
    const ports = withoutSctp(allPorts);
    const endpoints = list(body.endpoints, 'endpoints').map((endpoint, i) => parseEndpoint(endpoint, `endpoints[${i}]`, addressType));
    return { kind: 'ok', value: { namespace, name, serviceName, addressType, ports, endpoints } };
  });
}

/**
 * A ServiceCIDR, cluster-scoped: its spec.cidrs, each a CIDR (the API server takes them in
 * canonical form; another spelling is read as the range it names).
 */
export function parseServiceCIDR(raw: unknown): ParseResult<ServiceCIDR> {
  return validated(() => {
    const { name, body } = objectMeta(raw, 'networking.k8s.io/v1', 'ServiceCIDR', SUBDOMAIN);
    const spec = record(body.spec, 'spec');
    const cidrs = list(spec.cidrs, 'spec.cidrs').map((entry, i) => {
      const text = string(entry, `spec.cidrs[${i}]`);
      return canonicalCidr(text) ?? fail(`spec.cidrs[${i}]`, `${show(text)} is not a CIDR such as 10.96.0.0/12`);
    });
    return { kind: 'ok', value: { name, cidrs } };
  });
}

const TRANSLATED_SERVICE_TYPES: ReadonlySet<unknown> = new Set(['ClusterIP', 'NodePort', 'LoadBalancer']);

// The model is kept for every Service the agent serves (docs/footprint.md counts its bytes): the
// lists most Services leave empty share one empty list, and the parsed lists carry no spare room.

const EMPTY: readonly never[] = Object.freeze([]);

/** The list, or the one shared empty list when it is empty (SCTP ports, external IPs...). */
function sharedIfEmpty<T>(list: readonly T[]): readonly T[] {
  return list.length > 0 ? list : EMPTY;
}

/** The ports other than SCTP: the list itself when it has none (a filtered copy has spare capacity). */
function withoutSctp<Port extends { protocol: Protocol | 'SCTP' }>(ports: Port[]): (Port & { protocol: Protocol })[] {
  const translated = ports.filter((port): port is Port & { protocol: Protocol } => port.protocol !== 'SCTP');
  return translated.length === ports.length ? (ports as (Port & { protocol: Protocol })[]) : translated;
}

interface NameRule {
  pattern: RegExp;
  maxLength: number;
  description: string;
}

// The rules the API server applies, so that a manifest socklb accepts is one `kubectl apply` accepts.
const SERVICE_NAME: NameRule = {
  pattern: /^[a-z]([-a-z0-9]*[a-z0-9])?$/,
  maxLength: 63,
  description: 'a DNS-1035 label: lowercase letters, digits and "-", starting with a letter',
};
const NAMESPACE: NameRule = {
  pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
  maxLength: 63,
  description: 'a DNS-1123 label: lowercase letters, digits and "-"',
};
const SUBDOMAIN: NameRule = {
  pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
  maxLength: 253,
  description: 'a DNS-1123 subdomain: lowercase letters, digits, "-" and "."',
};

type Fields = Record<string, unknown>;

interface ObjectMeta {
  namespace: string;
  name: string;
  labels: Fields;
  metadata: Fields;
  body: Fields;
}

function objectMeta(raw: unknown, apiVersion: string, kind: string, nameRule: NameRule): ObjectMeta {
  const body = record(raw, 'object');
  if (body.apiVersion !== apiVersion) fail('apiVersion', `${show(body.apiVersion)} is not ${show(apiVersion)}`);
  if (body.kind !== kind) fail('kind', `${show(body.kind)} is not ${show(kind)}`);
  const metadata = record(body.metadata, 'metadata');
  const name = validName(metadata.name, 'metadata.name', nameRule);
  const namespace = isAbsent(metadata.namespace) ? 'default' : validName(metadata.namespace, 'metadata.namespace', NAMESPACE);
  const labels = isAbsent(metadata.labels) ? {} : record(metadata.labels, 'metadata.labels');
  return { namespace, name, labels, metadata, body };
}

/** Whether the Service asks to be skipped; a value other than "true" or "false" is refused, not guessed. */
function skipAnnotation(metadata: Fields): boolean {
  if (isAbsent(metadata.annotations)) return false;
  const value = record(metadata.annotations, 'metadata.annotations')[SKIP_ANNOTATION];
  if (value === undefined || value === 'false') return false;
  if (value === 'true') return true;
  return fail(`metadata.annotations["${SKIP_ANNOTATION}"]`, `${show(value)} is not "true" or "false"`);
}

function validName(value: unknown, field: string, rule: NameRule): string {
  if (!isNonEmptyString(value)) fail(field, `${show(value)}; a non-empty name is required`);
  if (value.length > rule.maxLength || !rule.pattern.test(value)) {
    fail(field, `${show(value)} is not ${rule.description}, of at most ${rule.maxLength} characters`);
  }
  return value;
}

/** The cluster IPs of a Service, or 'None' for a headless one. */
function serviceClusterIPs(spec: Fields): IPAddress[] | 'None' {
  const single = optionalString(spec.clusterIP, 'spec.clusterIP');
  const listed = list(spec.clusterIPs, 'spec.clusterIPs').map((ip, i) => string(ip, `spec.clusterIPs[${i}]`));
  if (listed.length > 0 && single !== '' && listed[0] !== single) {
    fail('spec.clusterIPs[0]', `${show(listed[0])} differs from spec.clusterIP ${show(single)}; they must be equal`);
  }
  const fromList = listed.length > 0;
  const texts = fromList ? listed : single === '' ? [] : [single];
  const fieldOf = (i: number) => (fromList ? `spec.clusterIPs[${i}]` : 'spec.clusterIP');
  const [first, second] = texts;
  if (first === undefined) fail('spec.clusterIP', 'missing; socklb does not allocate cluster IPs from manifests: set spec.clusterIP');
  if (first === 'None') {
    if (texts.length > 1) fail('spec.clusterIPs', `${show(texts)}: None must be the only entry of a headless Service`);
    return 'None';
  }
  if (texts.length > 2) fail('spec.clusterIPs', `${show(texts)} has ${texts.length} addresses; at most 2, one per family`);
  const ips = texts.map((text, i) => ipAddress(text, fieldOf(i)));
  if (second !== undefined && ipFamily(first) === ipFamily(second)) {
    fail('spec.clusterIPs', `${show(texts)} are both ${ipFamily(first)}; a dual-stack Service has one address per family`);
  }
  return ips;
}

type AnyProtocol<Port> = Omit<Port, 'protocol'> & { protocol: Protocol | 'SCTP' };
type AnyProtocolPort = AnyProtocol<ServicePort>;

function servicePorts(raw: unknown): AnyProtocolPort[] {
  const entries = list(raw, 'spec.ports');
  if (entries.length === 0) fail('spec.ports', 'is empty; a Service needs at least one port');
  const ports = entries.map((entry, i): AnyProtocolPort => {
    const field = `spec.ports[${i}]`;
    const port = record(entry, field);
    const name = optionalString(port.name, `${field}.name`);
    if (name === '' && entries.length > 1) fail(`${field}.name`, 'missing; every port of a multi-port Service needs a name');
    const parsed: AnyProtocolPort = {
      name,
      protocol: protocol(port.protocol, `${field}.protocol`, { sctp: true }),
      port: portNumber(port.port, `${field}.port`),
    };
    if (!isAbsent(port.nodePort)) parsed.nodePort = portNumber(port.nodePort, `${field}.nodePort`);
    return parsed;
  });
  rejectDuplicate(ports, 'spec.ports', (port) => `name ${show(port.name)}`);
  rejectDuplicate(ports, 'spec.ports', (port) => `port ${port.port}/${port.protocol}`);
  return ports;
}

/** A slice port; one without a number (the API allows it for slices no Service owns) serves nothing, as kube-proxy skips it. */
function endpointPort(raw: unknown, field: string): Omit<AnyProtocol<EndpointPort>, 'port'> & { port: number | undefined } {
  const port = record(raw, field);
  return {
    name: optionalString(port.name, `${field}.name`),
    protocol: protocol(port.protocol, `${field}.protocol`, { sctp: true }),
    port: isAbsent(port.port) ? undefined : portNumber(port.port, `${field}.port`),
  };
}

function parseEndpoint(raw: unknown, field: string, family: IPFamily): Endpoint {
  const endpoint = record(raw, field);
  const addresses = list(endpoint.addresses, `${field}.addresses`).map((address, i) => {
    const text = string(address, `${field}.addresses[${i}]`);
    const ip = ipAddress(text, `${field}.addresses[${i}]`);
    if (ipFamily(ip) !== family) fail(`${field}.addresses[${i}]`, `${show(text)} is not an ${family} address (the slice's addressType)`);
    return ip;
  });
  const [address] = addresses;
  if (address === undefined) fail(`${field}.addresses`, 'is empty; an endpoint needs an address');
  const conditions = isAbsent(endpoint.conditions) ? {} : record(endpoint.conditions, `${field}.conditions`);
  // kube-proxy reads an unknown readiness or serving as true (endpointslicecache.go).
  return {
    address,
    ready: condition(conditions.ready, `${field}.conditions.ready`, true),
    serving: condition(conditions.serving, `${field}.conditions.serving`, true),
    terminating: condition(conditions.terminating, `${field}.conditions.terminating`, false),
    nodeName: isAbsent(endpoint.nodeName) ? undefined : string(endpoint.nodeName, `${field}.nodeName`),
    ...topologyHints(endpoint.hints, `${field}.hints`),
  };
}

/** A condition: absent or null means `unknown`. */
function condition(raw: unknown, field: string, unknown: boolean): boolean {
  if (isAbsent(raw)) return unknown;
  if (typeof raw !== 'boolean') fail(field, `${show(raw)} is not a boolean`);
  return raw;
}

function topologyHints(raw: unknown, field: string): Pick<Endpoint, 'zoneHints' | 'nodeHints'> {
  if (isAbsent(raw)) return { zoneHints: undefined, nodeHints: undefined };
  const hints = record(raw, field);
  return { zoneHints: hintNames(hints.forZones, `${field}.forZones`), nodeHints: hintNames(hints.forNodes, `${field}.forNodes`) };
}

function hintNames(raw: unknown, field: string): string[] | undefined {
  if (isAbsent(raw)) return undefined;
  return list(raw, field).map((hint, i) => string(record(hint, `${field}[${i}]`).name, `${field}[${i}].name`));
}

function protocol(raw: unknown, field: string): Protocol;
function protocol(raw: unknown, field: string, accept: { sctp: true }): Protocol | 'SCTP';
function protocol(raw: unknown, field: string, accept?: { sctp: true }): Protocol | 'SCTP' {
  if (isAbsent(raw) || raw === 'TCP') return 'TCP';
  if (raw === 'UDP') return 'UDP';
  if (raw === 'SCTP') return accept?.sctp ? 'SCTP' : fail(field, 'SCTP is not translated by socket hooks');
  return fail(field, `${show(raw)} is an unknown protocol; use TCP or UDP`);
}

/**
 * An address in canonical form, read as kube-proxy reads the two spellings the API server's legacy
 * validation lets into objects (netutils.ParseIPSloppy): IPv4 with leading zeros as decimal, and
 * IPv4-mapped IPv6 (::ffff:a.b.c.d) as the IPv4 address it maps. The datapath keys IPv4 as exactly
 * those bytes, so kept as IPv6 it would be the IPv4 address under another name, and read back as
 * IPv4 after a restart. Flags (--node-ip) are not objects: they take canonicalIP's addresses only.
 */
function ipAddress(text: string, field: string): IPAddress {
  const ip = canonicalIP(text) ?? ipv4WithLeadingZeros(text) ?? fail(field, `${show(text)} is not an IP address`);
  // Canonical text starts so for every mapped address: the bytes are looked at only then.
  if (!ip.startsWith('::ffff:')) return ip;
  const bytes = ipToBytes(ip);
  return isIPv4Mapped(bytes) ? formatIP(bytes, 'IPv4') : ip;
}

/** A list of IP addresses, canonical. */
function addresses(raw: unknown, field: string): IPAddress[] {
  return list(raw, field).map((entry, i) => {
    const text = string(entry, `${field}[${i}]`);
    return ipAddress(text, `${field}[${i}]`);
  });
}

/**
 * The IPs of status.loadBalancer.ingress that are virtual IPs (ipMode VIP or unset): entries with
 * only a hostname have none, and traffic to an address of any other mode (Proxy) must reach the
 * load balancer, which may terminate TLS or add a PROXY header: kube-proxy leaves it alone (KEP-1860).
 * Whatever the Service's type, as kube-proxy reads them: a load balancer controller may serve a
 * Service of another type (one being converted, or one a controller of its own selects).
 */
function loadBalancerIPs(status: unknown): IPAddress[] {
  if (isAbsent(status)) return [];
  const loadBalancer = record(status, 'status').loadBalancer;
  if (isAbsent(loadBalancer)) return [];
  const ingress = list(record(loadBalancer, 'status.loadBalancer').ingress, 'status.loadBalancer.ingress');
  return ingress.flatMap((entry, i) => {
    const field = `status.loadBalancer.ingress[${i}]`;
    const { ip, ipMode } = record(entry, field);
    return isAbsent(ip) || !(isAbsent(ipMode) || ipMode === 'VIP') ? [] : addresses([ip], `${field}.ip`);
  });
}

/** RFC 3339, as Kubernetes writes metav1.Time: `2024-05-02T09:14:11Z`, with optional fractions and offset. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * A creation time in ms since the epoch; absent or null (what `kubectl create --dry-run -o yaml`
 * writes) is undefined. The API server always sets one; a manifest may have any text there.
 */
function creationTime(raw: unknown, field: string): number | undefined {
  if (isAbsent(raw)) return undefined;
  // A YAML 1.1 document (`%YAML 1.1`) reads an unquoted timestamp as a Date.
  if (raw instanceof Date && !Number.isNaN(raw.getTime())) return raw.getTime();
  const match = typeof raw === 'string' ? RFC3339.exec(raw) : null;
  if (match) {
    const time = Date.parse(match[0]);
    const [year, month, day] = [match[1], match[2], match[3]].map(Number) as [number, number, number];
    // Date.parse rolls February 30 over into March; Go's time.Parse, as the API server, refuses it.
    if (!Number.isNaN(time) && new Date(Date.UTC(year, month - 1, day)).getUTCDate() === day) return time;
  }
  return fail(field, `${show(raw)} is not an RFC 3339 time such as "2024-05-02T09:14:11Z"`);
}

function affinityTimeout(spec: Fields): number | undefined {
  const affinity = isAbsent(spec.sessionAffinity) ? 'None' : spec.sessionAffinity;
  if (affinity === 'None') return undefined;
  if (affinity !== 'ClientIP') fail('spec.sessionAffinity', `${show(affinity)} is not one of None, ClientIP`);
  const config = isAbsent(spec.sessionAffinityConfig) ? {} : record(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig');
  const clientIP = isAbsent(config.clientIP) ? {} : record(config.clientIP, 'spec.sessionAffinityConfig.clientIP');
  const timeout = clientIP.timeoutSeconds;
  if (isAbsent(timeout)) return DEFAULT_AFFINITY_TIMEOUT_SECONDS;
  if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1 || timeout > 86400) {
    fail('spec.sessionAffinityConfig.clientIP.timeoutSeconds', `${show(timeout)} is not an integer in 1-86400`);
  }
  return timeout;
}

function trafficPolicy(raw: unknown, field: string): TrafficPolicy {
  if (isAbsent(raw) || raw === 'Cluster') return 'Cluster';
  if (raw === 'Local') return 'Local';
  return fail(field, `${show(raw)} is not one of Cluster, Local`);
}

function portNumber(raw: unknown, field: string): number {
  if (isAbsent(raw)) fail(field, 'missing; a port number is required');
  if (typeof raw !== 'number' || !Number.isInteger(raw)) fail(field, `${show(raw)} is not an integer`);
  if (raw < 1 || raw > 65535) fail(field, `${raw} is out of range 1-65535`);
  return raw;
}

/** Rejects the second of two entries with the same key (`name "http"`), naming both. */
function rejectDuplicate<T>(entries: T[], field: string, keyOf: (entry: T) => string): void {
  // Most Services and slices have one port, which cannot repeat; its key would cost a JSON.stringify.
  if (entries.length < 2) return;
  const firstIndex = new Map<string, number>();
  entries.forEach((entry, i) => {
    const key = keyOf(entry);
    const first = firstIndex.get(key);
    if (first !== undefined) fail(`${field}[${i}]`, `${key} repeats ${field}[${first}]; each must appear once`);
    firstIndex.set(key, i);
  });
}

/** Thrown by the field checks below and turned into an 'invalid' result: it never leaves this module. */
class InvalidField extends Error {}

function fail(field: string, problem: string): never {
  throw new InvalidField(`${field}: ${problem}`);
}

function validated<T>(parse: () => ParseResult<T>): ParseResult<T> {
  try {
    return parse();
  } catch (error) {
    if (error instanceof InvalidField) return { kind: 'invalid', reason: error.message };
    throw error;
  }
}

function record(raw: unknown, field: string): Fields {
  if (raw === undefined) fail(field, 'missing');
  if (!isRecord(raw)) fail(field, `${show(raw)} is not a mapping`);
  return raw;
}

/** A list where absent and null mean empty, as Kubernetes serializes empty lists. */
function list(raw: unknown, field: string): unknown[] {
  if (isAbsent(raw)) return [];
  if (!Array.isArray(raw)) fail(field, `${show(raw)} is not a list`);
  return raw;
}

function string(raw: unknown, field: string): string {
  if (typeof raw !== 'string') fail(field, `${show(raw)} is not a string`);
  return raw;
}

/** A string where absent and null mean ''. */
function optionalString(raw: unknown, field: string): string {
  return isAbsent(raw) ? '' : string(raw, field);
}

/** Absent or null: Kubernetes serializes an unset field either way. */
function isAbsent(value: unknown): value is undefined | null {
  return value === undefined || value === null;
}

function isRecord(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}

/** A value as JSON, so that the string "80" and the number 80 read differently. */
function show(value: unknown): string {
  if (value === undefined) return 'missing';
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch {
    // Nested deeper than the stack allows: named, not printed.
    return `a ${Array.isArray(value) ? 'list' : typeof value} nested too deeply to print`;
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
