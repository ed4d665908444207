// Validation of decoded Kubernetes objects (plain values from YAML or JSON)
// into the model. An object validates whole or is rejected whole: a Service
// with one bad port is not translated with its other ports, because a
// half-translated Service fails in ways that are harder to see than a
// rejected one.

import { canonicalIP, ipFamily } from './ip.js';
import type { Endpoint, EndpointPort, EndpointSlice, IPAddress, IPFamily, Protocol, Service, ServicePort } from './types.js';

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

export function parseService(raw: unknown): ParseResult<Service> {
  return validated(() => {
    const { namespace, name, body } = objectMeta(raw, 'v1', 'Service', SERVICE_NAME);
    const spec = record(body.spec, 'spec');
    const type = spec.type ?? 'ClusterIP';
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
    return { kind: 'ok', value: { namespace, name, clusterIPs, ports: servicePorts(spec.ports) } };
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
    const ports = list(body.ports, 'ports').map((port, i) => endpointPort(port, `ports[${i}]`));
    rejectDuplicate(ports, 'ports', (port) => `name ${show(port.name)}`);
    const endpoints = list(body.endpoints, 'endpoints').map((endpoint, i) => parseEndpoint(endpoint, `endpoints[${i}]`, addressType));
    return { kind: 'ok', value: { namespace, name, serviceName, addressType, ports, endpoints } };
  });
}

const TRANSLATED_SERVICE_TYPES: ReadonlySet<unknown> = new Set(['ClusterIP', 'NodePort', 'LoadBalancer']);

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
  return { namespace, name, labels, body };
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
  const ips = texts.map((text, i) => canonicalIP(text) ?? fail(fieldOf(i), `${show(text)} is not an IP address`));
  if (second !== undefined && ipFamily(first) === ipFamily(second)) {
    fail('spec.clusterIPs', `${show(texts)} are both ${ipFamily(first)}; a dual-stack Service has one address per family`);
  }
  return ips;
}

function servicePorts(raw: unknown): ServicePort[] {
  const entries = list(raw, 'spec.ports');
  if (entries.length === 0) fail('spec.ports', 'is empty; a Service needs at least one port');
  const ports = entries.map((entry, i): ServicePort => {
    const field = `spec.ports[${i}]`;
    const port = record(entry, field);
    const name = optionalString(port.name, `${field}.name`);
    if (name === '' && entries.length > 1) fail(`${field}.name`, 'missing; every port of a multi-port Service needs a name');
    return { name, protocol: protocol(port.protocol, `${field}.protocol`), port: portNumber(port.port, `${field}.port`) };
  });
  rejectDuplicate(ports, 'spec.ports', (port) => `name ${show(port.name)}`);
  rejectDuplicate(ports, 'spec.ports', (port) => `port ${port.port}/${port.protocol}`);
  return ports;
}

function endpointPort(raw: unknown, field: string): EndpointPort {
  const port = record(raw, field);
  return {
    name: optionalString(port.name, `${field}.name`),
    protocol: protocol(port.protocol, `${field}.protocol`),
    port: portNumber(port.port, `${field}.port`),
  };
}

function parseEndpoint(raw: unknown, field: string, family: IPFamily): Endpoint {
  const endpoint = record(raw, field);
  const addresses = list(endpoint.addresses, `${field}.addresses`).map((address, i) => {
    const text = string(address, `${field}.addresses[${i}]`);
    const ip = canonicalIP(text);
    if (ip === undefined || ipFamily(ip) !== family) fail(`${field}.addresses[${i}]`, `${show(text)} is not an ${family} address (the slice's addressType)`);
    return ip;
  });
  const [address] = addresses;
  if (address === undefined) fail(`${field}.addresses`, 'is empty; an endpoint needs an address');
  return { address, ready: readiness(endpoint.conditions, `${field}.conditions`) };
}

/** conditions.ready, absent or null meaning ready: kube-proxy reads an unknown state as ready. */
function readiness(raw: unknown, field: string): boolean {
  if (isAbsent(raw)) return true;
  const { ready } = record(raw, field);
  if (isAbsent(ready)) return true;
  if (typeof ready !== 'boolean') fail(`${field}.ready`, `${show(ready)} is not a boolean`);
  return ready;
}

function protocol(raw: unknown, field: string): Protocol {
  if (isAbsent(raw) || raw === 'TCP') return 'TCP';
  if (raw === 'UDP') return 'UDP';
  if (raw === 'SCTP') fail(field, 'SCTP is not translated by socket hooks');
  return fail(field, `${show(raw)} is an unknown protocol; use TCP or UDP`);
}

function portNumber(raw: unknown, field: string): number {
  if (isAbsent(raw)) fail(field, 'missing; a port number is required');
  if (typeof raw !== 'number' || !Number.isInteger(raw)) fail(field, `${show(raw)} is not an integer`);
  if (raw < 1 || raw > 65535) fail(field, `${raw} is out of range 1-65535`);
  return raw;
}

/** Rejects the second of two entries with the same key (`name "http"`), naming both. */
function rejectDuplicate<T>(entries: T[], field: string, keyOf: (entry: T) => string): void {
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
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
