import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  describeObject,
  objectRef,
  parseEndpointSlice,
  parseService,
  parseServiceCIDR,
  type ParseResult,
} from '../../src/model/kubernetes.js';
import type { EndpointSlice, Service, ServiceCIDR } from '../../src/model/types.js';
import { modelEndpoint, modelService } from './model-fixtures.js';

function service(spec: Record<string, unknown>, metadata: Record<string, unknown> = { name: 'web', namespace: 'shop' }) {
  return { apiVersion: 'v1', kind: 'Service', metadata, spec };
}

function slice(body: Record<string, unknown>, metadata: Record<string, unknown> = sliceMetadata) {
  return { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata, addressType: 'IPv4', ...body };
}

const sliceMetadata = { name: 'web-x1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } };
const httpPort = [{ name: 'http', port: 80 }];

interface Case<T> {
  rule: string;
  raw: unknown;
  expected: ParseResult<T>;
}

function runCases<T>(cases: Case<T>[], parse: (raw: unknown) => ParseResult<T>): void {
  for (const { rule, raw, expected } of cases) test(rule, () => assert.deepEqual(parse(raw), expected));
}

const invalid = (reason: string) => ({ kind: 'invalid' as const, reason });
const ignored = (reason: string) => ({ kind: 'ignored' as const, reason });
const okService = (value: Partial<Service>): ParseResult<Service> => ({ kind: 'ok', value: modelService({ namespace: 'shop', ...value }) });
const okSlice = (value: Partial<EndpointSlice>): ParseResult<EndpointSlice> => ({
  kind: 'ok',
  value: { namespace: 'shop', name: 'web-x1', serviceName: 'web', addressType: 'IPv4', ports: [], endpoints: [], ...value },
});

describe('parseService', () => {
  runCases<Service>(
    [
      {
        rule: 'type defaults to ClusterIP, protocol to TCP',
        raw: service({ clusterIP: '10.96.0.10', ports: httpPort }),
        expected: okService({}),
      },
      {
        rule: 'NodePort is translated through its cluster IP; nodePort and targetPort are not socklb business',
        raw: service({
          type: 'NodePort',
          clusterIP: '10.96.0.10',
          ports: [{ name: 'http', port: 80, nodePort: 30080, targetPort: 'http' }],
        }),
        expected: okService({ type: 'NodePort', ports: [{ name: 'http', protocol: 'TCP', port: 80, nodePort: 30080 }] }),
      },
      {
        rule: 'LoadBalancer is translated through its cluster IP',
        raw: service({ type: 'LoadBalancer', clusterIP: '10.96.0.10', ports: httpPort }),
        expected: okService({ type: 'LoadBalancer' }),
      },
      {
        rule: 'clusterIPs wins over clusterIP and keeps its order (dual-stack)',
        raw: service({ clusterIP: 'fd00::10', clusterIPs: ['fd00::10', '10.96.0.10'], ports: httpPort }),
        expected: okService({ clusterIPs: ['fd00::10', '10.96.0.10'] }),
      },
      {
        rule: 'clusterIPs alone is enough',
        raw: service({ clusterIPs: ['10.96.0.10'], ports: httpPort }),
        expected: okService({}),
      },
      {
        rule: 'addresses are canonical (RFC 5952)',
        raw: service({ clusterIP: 'FD00:0:0:0::0010', ports: httpPort }),
        expected: okService({ clusterIPs: ['fd00::10'] }),
      },
      {
        rule: 'namespace defaults to default, as kubectl reads it',
        raw: service({ clusterIP: '10.96.0.10', ports: httpPort }, { name: 'web' }),
        expected: okService({ namespace: 'default' }),
      },
      {
        rule: 'a single port may be unnamed',
        raw: service({ clusterIP: '10.96.0.10', ports: [{ port: 80 }] }),
        expected: okService({ ports: [{ name: '', protocol: 'TCP', port: 80 }] }),
      },
      {
        rule: 'one port number with TCP and UDP is two ports',
        raw: service({
          clusterIP: '10.96.0.10',
          ports: [
            { name: 'dns', port: 53, protocol: 'UDP' },
            { name: 'dns-tcp', port: 53 },
          ],
        }),
        expected: okService({
          ports: [
            { name: 'dns', protocol: 'UDP', port: 53 },
            { name: 'dns-tcp', protocol: 'TCP', port: 53 },
          ],
        }),
      },
      {
        rule: 'headless (clusterIP None) is ignored',
        raw: service({ clusterIP: 'None', ports: httpPort }),
        expected: ignored('spec.clusterIP is None: a headless Service is resolved by DNS, with no cluster IP to translate'),
      },
      {
        rule: 'headless through clusterIPs [None] is ignored',
        raw: service({ clusterIP: 'None', clusterIPs: ['None'] }),
        expected: ignored('spec.clusterIP is None: a headless Service is resolved by DNS, with no cluster IP to translate'),
      },
      {
        rule: 'ExternalName is ignored, without cluster IP or ports',
        raw: service({ type: 'ExternalName', externalName: 'db.example.com' }),
        expected: ignored('spec.type is ExternalName: a DNS alias, with no cluster IP to translate'),
      },
      {
        rule: 'socklb.io/skip "true" marks the Service left to whatever else handles it',
        raw: service(
          { clusterIP: '10.96.0.10', ports: httpPort },
          { name: 'web', namespace: 'shop', annotations: { 'socklb.io/skip': 'true' } },
        ),
        expected: okService({ skip: true }),
      },
      {
        rule: 'socklb.io/skip "false" is translated',
        raw: service(
          { clusterIP: '10.96.0.10', ports: httpPort },
          { name: 'web', namespace: 'shop', annotations: { 'socklb.io/skip': 'false' } },
        ),
        expected: okService({}),
      },
      {
        rule: 'socklb.io/skip other than "true" or "false" is refused, not guessed',
        raw: service({ clusterIP: '10.96.0.10', ports: httpPort }, { name: 'web', annotations: { 'socklb.io/skip': 'yes' } }),
        expected: invalid('metadata.annotations["socklb.io/skip"]: "yes" is not "true" or "false"'),
      },
      { rule: 'apiVersion must be v1', raw: { ...service({}), apiVersion: 'v2' }, expected: invalid('apiVersion: "v2" is not "v1"') },
      {
        rule: 'metadata.name is required',
        raw: service({ clusterIP: '10.96.0.10', ports: httpPort }, {}),
        expected: invalid('metadata.name: missing; a non-empty name is required'),
      },
      {
        rule: 'metadata.name must be a DNS-1035 label',
        raw: service({ clusterIP: '10.96.0.10', ports: httpPort }, { name: 'Web_1' }),
        expected: invalid(
          'metadata.name: "Web_1" is not a DNS-1035 label: lowercase letters, digits and "-", starting with a letter, ' +
            'of at most 63 characters',
        ),
      },
      {
        rule: 'metadata.namespace must be a DNS-1123 label',
        raw: service({ clusterIP: '10.96.0.10', ports: httpPort }, { name: 'web', namespace: 'a.b' }),
        expected: invalid('metadata.namespace: "a.b" is not a DNS-1123 label: lowercase letters, digits and "-", of at most 63 characters'),
      },
      { rule: 'spec is required', raw: { ...service({}), spec: undefined }, expected: invalid('spec: missing') },
      {
        rule: 'an unknown type is invalid',
        raw: service({ type: 'Ingress', clusterIP: '10.96.0.10', ports: httpPort }),
        expected: invalid('spec.type: "Ingress" is not one of ClusterIP, NodePort, LoadBalancer, ExternalName'),
      },
      {
        rule: 'no cluster IP at all is invalid: socklb does not allocate them',
        raw: service({ ports: httpPort }),
        expected: invalid('spec.clusterIP: missing; socklb does not allocate cluster IPs from manifests: set spec.clusterIP'),
      },
      {
        rule: 'clusterIPs[0] must equal clusterIP',
        raw: service({ clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.11'], ports: httpPort }),
        expected: invalid('spec.clusterIPs[0]: "10.96.0.11" differs from spec.clusterIP "10.96.0.10"; they must be equal'),
      },
      {
        rule: 'at most two cluster IPs',
        raw: service({ clusterIPs: ['10.96.0.10', 'fd00::10', '10.96.0.11'], ports: httpPort }),
        expected: invalid('spec.clusterIPs: ["10.96.0.10","fd00::10","10.96.0.11"] has 3 addresses; at most 2, one per family'),
      },
      {
        rule: 'two cluster IPs must be of different families',
        raw: service({ clusterIPs: ['10.96.0.10', '10.96.0.11'], ports: httpPort }),
        expected: invalid('spec.clusterIPs: ["10.96.0.10","10.96.0.11"] are both IPv4; a dual-stack Service has one address per family'),
      },
      {
        rule: 'every cluster IP must be an address',
        raw: service({ clusterIPs: ['10.96.0.10', 'fd00::zz'], ports: httpPort }),
        expected: invalid('spec.clusterIPs[1]: "fd00::zz" is not an IP address'),
      },
      {
        rule: 'clusterIP must be an address',
        raw: service({ clusterIP: '10.96.0.300', ports: httpPort }),
        expected: invalid('spec.clusterIP: "10.96.0.300" is not an IP address'),
      },
      {
        rule: 'ports must not be empty',
        raw: service({ clusterIP: '10.96.0.10', ports: [] }),
        expected: invalid('spec.ports: is empty; a Service needs at least one port'),
      },
      {
        rule: 'a port is in 1-65535',
        raw: service({
          clusterIP: '10.96.0.10',
          ports: [
            { name: 'a', port: 80 },
            { name: 'b', port: 70000 },
          ],
        }),
        expected: invalid('spec.ports[1].port: 70000 is out of range 1-65535'),
      },
      {
        rule: 'a port is an integer, not a string',
        raw: service({ clusterIP: '10.96.0.10', ports: [{ port: '80' }] }),
        expected: invalid('spec.ports[0].port: "80" is not an integer'),
      },
      {
        rule: 'SCTP ports are set aside, to be reported rather than translated',
        raw: service({
          clusterIP: '10.96.0.10',
          ports: [
            { name: 'diameter', port: 3868, protocol: 'SCTP' },
            { name: 'http', port: 80 },
          ],
        }),
        expected: okService({ sctpPorts: [3868] }),
      },
      {
        rule: 'an unknown protocol is invalid',
        raw: service({ clusterIP: '10.96.0.10', ports: [{ port: 80, protocol: 'tcp' }] }),
        expected: invalid('spec.ports[0].protocol: "tcp" is an unknown protocol; use TCP or UDP'),
      },
      {
        rule: 'every port of a multi-port Service is named',
        raw: service({ clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }, { port: 443 }] }),
        expected: invalid('spec.ports[1].name: missing; every port of a multi-port Service needs a name'),
      },
      {
        rule: 'port names are unique',
        raw: service({
          clusterIP: '10.96.0.10',
          ports: [
            { name: 'http', port: 80 },
            { name: 'http', port: 8080 },
          ],
        }),
        expected: invalid('spec.ports[1]: name "http" repeats spec.ports[0]; each must appear once'),
      },
      {
        rule: 'port and protocol are unique',
        raw: service({
          clusterIP: '10.96.0.10',
          ports: [
            { name: 'a', port: 80 },
            { name: 'b', port: 80, protocol: 'TCP' },
          ],
        }),
        expected: invalid('spec.ports[1]: port 80/TCP repeats spec.ports[0]; each must appear once'),
      },
    ],
    parseService,
  );
});

describe('parseEndpointSlice', () => {
  runCases<EndpointSlice>(
    [
      {
        rule: 'ports and endpoints absent mean none',
        raw: slice({}),
        expected: okSlice({}),
      },
      {
        rule: 'ports and endpoints null mean none (what the controller writes for a Service without pods)',
        raw: slice({ ports: null, endpoints: null }),
        expected: okSlice({}),
      },
      {
        rule: 'port name defaults to empty, protocol to TCP',
        raw: slice({ ports: [{ port: 8080 }, { name: 'dns', port: 53, protocol: 'UDP' }] }),
        expected: okSlice({
          ports: [
            { name: '', protocol: 'TCP', port: 8080 },
            { name: 'dns', protocol: 'UDP', port: 53 },
          ],
        }),
      },
      {
        rule: 'absent or null ready means ready, false means not ready; the first address is the endpoint',
        raw: slice({
          endpoints: [
            { addresses: ['10.0.0.1', '10.0.0.9'] },
            { addresses: ['10.0.0.2'], conditions: { ready: null, serving: true } },
            { addresses: ['10.0.0.3'], conditions: { ready: false, serving: true, terminating: true } },
          ],
        }),
        expected: okSlice({
          endpoints: [
            modelEndpoint('10.0.0.1'),
            modelEndpoint('10.0.0.2'),
            modelEndpoint('10.0.0.3', { ready: false, serving: true, terminating: true }),
          ],
        }),
      },
      {
        rule: 'IPv6 addresses are canonical',
        raw: slice({ addressType: 'IPv6', endpoints: [{ addresses: ['FD00:0::0A'] }] }),
        expected: okSlice({ addressType: 'IPv6', endpoints: [modelEndpoint('fd00::a')] }),
      },
      {
        rule: 'FQDN slices are ignored',
        raw: slice({ addressType: 'FQDN', endpoints: [{ addresses: ['db.example.com'] }] }),
        expected: ignored('addressType is FQDN: its endpoints are names, with no address to translate to'),
      },
      {
        rule: 'kind must be EndpointSlice',
        raw: { ...slice({}), kind: 'Endpoints' },
        expected: invalid('kind: "Endpoints" is not "EndpointSlice"'),
      },
      {
        rule: 'the service-name label is required: it joins the slice to its Service',
        raw: slice({}, { name: 'web-x1' }),
        expected: invalid(
          'metadata.labels["kubernetes.io/service-name"]: missing; ' +
            "this label joins the slice to its Service: set it to the Service's name",
        ),
      },
      {
        rule: 'an unknown addressType is invalid',
        raw: slice({ addressType: 'IPv5' }),
        expected: invalid('addressType: "IPv5" is not one of IPv4, IPv6, FQDN'),
      },
      {
        rule: 'a slice port without a number (the API allows it) serves nothing; the other ports stay, as kube-proxy skips it',
        raw: slice({ ports: [{ name: 'all', port: null }, { name: 'other' }, { name: 'http', port: 8080 }] }),
        expected: okSlice({ ports: [{ name: 'http', protocol: 'TCP', port: 8080 }] }),
      },
      {
        rule: 'a slice port without a number still has a name, which no other port may repeat',
        raw: slice({ ports: [{ name: 'http' }, { name: 'http', port: 8080 }] }),
        expected: invalid('ports[1]: name "http" repeats ports[0]; each must appear once'),
      },
      {
        rule: 'a slice port is in 1-65535',
        raw: slice({ ports: [{ name: 'http', port: 0 }] }),
        expected: invalid('ports[0].port: 0 is out of range 1-65535'),
      },
      {
        rule: 'SCTP slice ports are left out: no translated Service port uses them',
        raw: slice({
          ports: [
            { name: 'diameter', port: 3868, protocol: 'SCTP' },
            { name: 'http', port: 8080 },
          ],
        }),
        expected: okSlice({ ports: [{ name: 'http', protocol: 'TCP', port: 8080 }] }),
      },
      {
        rule: 'slice port names are unique',
        raw: slice({
          ports: [
            { name: 'http', port: 80 },
            { name: 'http', port: 81 },
          ],
        }),
        expected: invalid('ports[1]: name "http" repeats ports[0]; each must appear once'),
      },
      {
        rule: 'an endpoint needs an address',
        raw: slice({ endpoints: [{ addresses: [] }] }),
        expected: invalid('endpoints[0].addresses: is empty; an endpoint needs an address'),
      },
      {
        rule: 'every address is of the slice addressType',
        raw: slice({ endpoints: [{ addresses: ['10.0.0.1', 'fd00::1'] }] }),
        expected: invalid('endpoints[0].addresses[1]: "fd00::1" is not an IPv4 address (the slice\'s addressType)'),
      },
      {
        rule: 'conditions.ready is a boolean when present',
        raw: slice({ endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: 'true' } }] }),
        expected: invalid('endpoints[0].conditions.ready: "true" is not a boolean'),
      },
    ],
    parseEndpointSlice,
  );
});

describe('objectRef and describeObject', () => {
  test('an object is named kind namespace/name', () => {
    assert.equal(describeObject({ kind: 'Service', namespace: 'shop', name: 'web' }), 'Service shop/web');
  });
  test('namespace defaults to default', () => {
    assert.deepEqual(objectRef(service({}, { name: 'web' })), { kind: 'Service', namespace: 'default', name: 'web' });
  });
  test('an object without a name or kind has no identity', () => {
    assert.equal(objectRef(service({}, {})), undefined);
    assert.equal(objectRef({ metadata: { name: 'web' } }), undefined);
    assert.equal(objectRef('web'), undefined);
  });
});

describe('parseService: kube-proxy semantics', () => {
  const base = { clusterIP: '10.96.0.10', ports: httpPort };
  runCases<Service>(
    [
      {
        rule: 'spec.externalIPs are kept, canonical',
        raw: service({ ...base, externalIPs: ['203.0.113.7', 'FD00::1'] }),
        expected: okService({ externalIPs: ['203.0.113.7', 'fd00::1'] }),
      },
      {
        rule: 'a LoadBalancer keeps the IPs of status.loadBalancer.ingress; hostname-only entries have none',
        raw: {
          ...service({ ...base, type: 'LoadBalancer' }),
          status: { loadBalancer: { ingress: [{ ip: '198.51.100.9' }, { hostname: 'lb.example.com' }] } },
        },
        expected: okService({ type: 'LoadBalancer', loadBalancerIPs: ['198.51.100.9'] }),
      },
      {
        rule: 'status.loadBalancer.ingress IPs are kept whatever the type, as kube-proxy reads them',
        raw: { ...service(base), status: { loadBalancer: { ingress: [{ ip: '198.51.100.9' }] } } },
        expected: okService({ loadBalancerIPs: ['198.51.100.9'] }),
      },
      {
        rule: 'sessionAffinity ClientIP defaults to three hours',
        raw: service({ ...base, sessionAffinity: 'ClientIP' }),
        expected: okService({ affinityTimeoutSeconds: 10800 }),
      },
      {
        rule: 'sessionAffinity ClientIP takes its timeout from sessionAffinityConfig',
        raw: service({ ...base, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 5 } } }),
        expected: okService({ affinityTimeoutSeconds: 5 }),
      },
      {
        rule: 'sessionAffinity None has no timeout',
        raw: service({ ...base, sessionAffinity: 'None', sessionAffinityConfig: { clientIP: { timeoutSeconds: 5 } } }),
        expected: okService({}),
      },
      {
        rule: 'an affinity timeout outside 1-86400 is invalid',
        raw: service({ ...base, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } }),
        expected: invalid('spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is not an integer in 1-86400'),
      },
      {
        rule: 'internalTrafficPolicy Local is kept',
        raw: service({ ...base, internalTrafficPolicy: 'Local' }),
        expected: okService({ internalTrafficPolicy: 'Local' }),
      },
      {
        rule: 'an unknown internalTrafficPolicy is invalid',
        raw: service({ ...base, internalTrafficPolicy: 'Node' }),
        expected: invalid('spec.internalTrafficPolicy: "Node" is not one of Cluster, Local'),
      },
      {
        rule: 'load-balancer addresses of ipMode Proxy are left to the load balancer; VIP and unset are kept',
        raw: {
          ...service({ ...base, type: 'LoadBalancer' }),
          status: {
            loadBalancer: {
              ingress: [{ ip: '198.51.100.7', ipMode: 'Proxy' }, { ip: '198.51.100.8', ipMode: 'VIP' }, { ip: '198.51.100.9' }],
            },
          },
        },
        expected: okService({ type: 'LoadBalancer', loadBalancerIPs: ['198.51.100.8', '198.51.100.9'] }),
      },
      {
        rule: 'IPv4 addresses with leading zeros, which legacy validation admits, are read as decimal, as kube-proxy reads them',
        raw: service({ ...base, externalIPs: ['010.001.002.003', '192.168.001.255'] }),
        expected: okService({ externalIPs: ['10.1.2.3', '192.168.1.255'] }),
      },
      {
        rule: 'an octet with leading zeros above 255 is still no address',
        raw: service({ ...base, externalIPs: ['10.0.0.0256'] }),
        expected: invalid('spec.externalIPs[0]: "10.0.0.0256" is not an IP address'),
      },
      {
        rule: 'an IPv4-mapped IPv6 address is the IPv4 address it maps, as kube-proxy reads it (the datapath keys IPv4 so)',
        raw: service({ ...base, externalIPs: ['::FFFF:10.1.2.3', '::ffff:a01:204'] }),
        expected: okService({ externalIPs: ['10.1.2.3', '10.1.2.4'] }),
      },
      {
        rule: 'the service-proxy-name and headless labels are kept for the proxy to decide',
        raw: service(base, {
          name: 'web',
          namespace: 'shop',
          labels: { 'service.kubernetes.io/service-proxy-name': 'other', 'service.kubernetes.io/headless': '' },
        }),
        expected: okService({ serviceProxyName: 'other', headlessLabel: true }),
      },
    ],
    parseService,
  );
});

describe('parseService: metadata.creationTimestamp, which decides between two claims of one frontend', () => {
  const base = { clusterIP: '10.96.0.10', ports: httpPort };
  const created = (creationTimestamp: unknown) => service(base, { name: 'web', namespace: 'shop', creationTimestamp });
  runCases<Service>(
    [
      {
        rule: 'absent: none, as in a hand-written manifest',
        raw: service(base),
        expected: okService({ createdAt: undefined }),
      },
      {
        rule: 'null, as kubectl create --dry-run writes it: none',
        raw: created(null),
        expected: okService({ createdAt: undefined }),
      },
      {
        rule: 'RFC 3339 in UTC, as the API server writes it',
        raw: created('2024-05-02T09:14:11Z'),
        expected: okService({ createdAt: Date.UTC(2024, 4, 2, 9, 14, 11) }),
      },
      {
        rule: 'fractions of a second and an offset are read',
        raw: created('2024-05-02T11:14:11.250+02:00'),
        expected: okService({ createdAt: Date.UTC(2024, 4, 2, 9, 14, 11, 250) }),
      },
      {
        rule: 'an unquoted timestamp of a YAML 1.1 document, read as a date, is taken as it is',
        raw: created(new Date(Date.UTC(2024, 4, 2, 9, 14, 11))),
        expected: okService({ createdAt: Date.UTC(2024, 4, 2, 9, 14, 11) }),
      },
      {
        rule: 'a date without a time is invalid',
        raw: created('2024-05-02'),
        expected: invalid('metadata.creationTimestamp: "2024-05-02" is not an RFC 3339 time such as "2024-05-02T09:14:11Z"'),
      },
      {
        rule: 'a day past the end of its month is invalid, not rolled over',
        raw: created('2024-02-30T09:14:11Z'),
        expected: invalid('metadata.creationTimestamp: "2024-02-30T09:14:11Z" is not an RFC 3339 time such as "2024-05-02T09:14:11Z"'),
      },
      {
        rule: 'an hour past 23 is invalid',
        raw: created('2024-05-02T24:14:11Z'),
        expected: invalid('metadata.creationTimestamp: "2024-05-02T24:14:11Z" is not an RFC 3339 time such as "2024-05-02T09:14:11Z"'),
      },
      {
        rule: 'a number is invalid',
        raw: created(1714641251),
        expected: invalid('metadata.creationTimestamp: 1714641251 is not an RFC 3339 time such as "2024-05-02T09:14:11Z"'),
      },
    ],
    parseService,
  );
});

describe('parseEndpointSlice: endpoint conditions and hints', () => {
  runCases<EndpointSlice>(
    [
      {
        rule: 'ready and serving default to true, terminating to false; nodeName, zone and node hints are kept',
        raw: slice({
          endpoints: [
            { addresses: ['10.0.0.1'], nodeName: 'node-1', hints: { forZones: [{ name: 'zone-a' }], forNodes: [{ name: 'node-1' }] } },
            { addresses: ['10.0.0.2'], conditions: { ready: false } },
            { addresses: ['10.0.0.3'], conditions: { ready: false, serving: true, terminating: true } },
          ],
        }),
        expected: okSlice({
          endpoints: [
            modelEndpoint('10.0.0.1', { nodeName: 'node-1', zoneHints: ['zone-a'], nodeHints: ['node-1'] }),
            modelEndpoint('10.0.0.2', { ready: false, serving: true }),
            modelEndpoint('10.0.0.3', { ready: false, serving: true, terminating: true }),
          ],
        }),
      },
      {
        rule: 'conditions.terminating is a boolean when present',
        raw: slice({ endpoints: [{ addresses: ['10.0.0.1'], conditions: { terminating: 'yes' } }] }),
        expected: invalid('endpoints[0].conditions.terminating: "yes" is not a boolean'),
      },
    ],
    parseEndpointSlice,
  );
});

describe('parseServiceCIDR', () => {
  const serviceCIDR = (spec: unknown) => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'ServiceCIDR',
    metadata: { name: 'kubernetes' },
    spec,
  });
  runCases<ServiceCIDR>(
    [
      {
        rule: 'spec.cidrs are kept, canonical',
        raw: serviceCIDR({ cidrs: ['10.96.0.0/12', 'FD00:10:96::/112'] }),
        expected: { kind: 'ok', value: { name: 'kubernetes', cidrs: ['10.96.0.0/12', 'fd00:10:96::/112'] } },
      },
      {
        rule: 'a CIDR with bits set past its prefix names the range it is in',
        raw: serviceCIDR({ cidrs: ['10.96.0.1/12'] }),
        expected: { kind: 'ok', value: { name: 'kubernetes', cidrs: ['10.96.0.0/12'] } },
      },
      {
        rule: 'an entry that is no CIDR rejects the object, naming the entry',
        raw: serviceCIDR({ cidrs: ['10.96.0.0/12', '10.96.0.0'] }),
        expected: invalid('spec.cidrs[1]: "10.96.0.0" is not a CIDR such as 10.96.0.0/12'),
      },
      {
        rule: 'another version is not read',
        raw: { ...serviceCIDR({ cidrs: [] }), apiVersion: 'networking.k8s.io/v1beta1' },
        expected: invalid('apiVersion: "networking.k8s.io/v1beta1" is not "networking.k8s.io/v1"'),
      },
    ],
    parseServiceCIDR,
  );
});
