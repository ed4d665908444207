import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { serviceFrontends } from '../../src/model/frontends.js';
import { backendText, frontendId } from '../../src/model/keys.js';
import type { DesiredFrontend, Endpoint, EndpointPort, EndpointSlice, IPFamily, NodeContext, Service } from '../../src/model/types.js';
import { modelEndpoint, modelService, NODE } from './model-fixtures.js';

function service(
  clusterIPs: string[],
  ports: Service['ports'] = [{ name: 'http', protocol: 'TCP', port: 80 }],
  fields: Partial<Service> = {},
): Service {
  return modelService({ namespace: 'shop', clusterIPs, ports, ...fields });
}

let sliceCount = 0;
function slice(addressType: IPFamily, ports: EndpointPort[], endpoints: Endpoint[], serviceName = 'web'): EndpointSlice {
  return { namespace: 'shop', name: `web-${++sliceCount}`, serviceName, addressType, ports, endpoints };
}

const http8080: EndpointPort[] = [{ name: 'http', protocol: 'TCP', port: 8080 }];
const ready = (...addresses: string[]): Endpoint[] => addresses.map((address) => modelEndpoint(address));

/** One line per frontend: `10.96.0.10:80/TCP http -> 10.0.0.1:8080 10.0.0.2:8080`. */
function dump(frontends: DesiredFrontend[]): string[] {
  return frontends.map(
    (frontend) =>
      `${frontendId(frontend.key)} ${frontend.service.namespace}/${frontend.service.name}:${frontend.service.portName} ->` +
      frontend.backends.map((backend) => ` ${backendText(backend)}`).join(''),
  );
}

const NODE_WITH_ADDRESSES: NodeContext = { ...NODE, addresses: ['192.168.1.5', 'fd00:1::5'], allowedExternalIPCidrs: ['203.0.113.0/24'] };

const cases: { rule: string; service: Service; slices: EndpointSlice[]; frontends: string[]; problems?: string[]; node?: NodeContext }[] = [
  {
    rule: 'each service port resolves to the slice port of the same name (a named targetPort)',
    service: service(['10.96.0.10']),
    slices: [slice('IPv4', http8080, ready('10.0.0.2', '10.0.0.1'))],
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080 10.0.0.2:8080'],
  },
  {
    rule: 'a service without slices has frontends that refuse connections, and no problem',
    service: service(['10.96.0.10']),
    slices: [],
    frontends: ['10.96.0.10:80/TCP shop/web:http ->'],
  },
  {
    rule: 'endpoints that are not ready are no backends',
    service: service(['10.96.0.10']),
    slices: [slice('IPv4', http8080, [...ready('10.0.0.1'), modelEndpoint('10.0.0.2', { ready: false })])],
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080'],
  },
  {
    rule: 'slices merge, and an endpoint listed by two slices is one backend',
    service: service(['10.96.0.10']),
    slices: [slice('IPv4', http8080, ready('10.0.0.1', '10.0.0.10')), slice('IPv4', http8080, ready('10.0.0.9', '10.0.0.1'))],
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080 10.0.0.9:8080 10.0.0.10:8080'],
  },
  {
    rule: 'one endpoint on two target ports (slices disagree during a rollout) is two backends',
    service: service(['10.96.0.10']),
    slices: [slice('IPv4', http8080, ready('10.0.0.1')), slice('IPv4', [{ name: 'http', protocol: 'TCP', port: 8081 }], ready('10.0.0.1'))],
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080 10.0.0.1:8081'],
  },
  {
    rule: 'a slice port must match protocol as well as name',
    service: service(['10.96.0.10'], [{ name: 'dns', protocol: 'UDP', port: 53 }]),
    slices: [slice('IPv4', [{ name: 'dns', protocol: 'TCP', port: 5353 }], ready('10.0.0.1'))],
    frontends: ['10.96.0.10:53/UDP shop/web:dns ->'],
  },
  {
    rule: 'an unnamed service port matches the unnamed slice port',
    service: service(['10.96.0.10'], [{ name: '', protocol: 'TCP', port: 80 }]),
    slices: [slice('IPv4', [{ name: '', protocol: 'TCP', port: 8080 }], ready('10.0.0.1'))],
    frontends: ['10.96.0.10:80/TCP shop/web: -> 10.0.0.1:8080'],
  },
  {
    rule: 'dual-stack: each cluster IP is served by the slices of its own family; IPv4 frontends first',
    service: service(['fd00::10', '10.96.0.10']),
    slices: [slice('IPv4', http8080, ready('10.0.0.1')), slice('IPv6', http8080, ready('fd00:1::1'))],
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080', '[fd00::10]:80/TCP shop/web:http -> [fd00:1::1]:8080'],
  },
  {
    rule: 'a cluster IP whose family has no slice, while the other family has some, is a problem',
    service: service(['10.96.0.10', 'fd00::10']),
    slices: [slice('IPv4', http8080, ready('10.0.0.1'))],
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080', '[fd00::10]:80/TCP shop/web:http ->'],
    problems: ['clusterIP fd00::10 (IPv6) has no IPv6 EndpointSlice'],
  },
  {
    rule: 'frontends are sorted by address, then port, then protocol',
    service: service(
      ['10.96.0.10'],
      [
        { name: 'https', protocol: 'TCP', port: 443 },
        { name: 'dns', protocol: 'UDP', port: 53 },
        { name: 'dns-tcp', protocol: 'TCP', port: 53 },
      ],
    ),
    slices: [],
    frontends: ['10.96.0.10:53/TCP shop/web:dns-tcp ->', '10.96.0.10:53/UDP shop/web:dns ->', '10.96.0.10:443/TCP shop/web:https ->'],
  },
  {
    rule: 'externalIPs inside --allowed-external-ip-cidrs are frontends like the cluster IP',
    service: service(['10.96.0.10'], undefined, { externalIPs: ['203.0.113.7'] }),
    slices: [slice('IPv4', http8080, ready('10.0.0.1'))],
    node: NODE_WITH_ADDRESSES,
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080', '203.0.113.7:80/TCP shop/web:http -> 10.0.0.1:8080'],
  },
  {
    rule: 'externalIPs outside --allowed-external-ip-cidrs are refused and reported (CVE-2020-8554)',
    service: service(['10.96.0.10'], undefined, { externalIPs: ['198.51.100.7'] }),
    slices: [],
    node: NODE_WITH_ADDRESSES,
    frontends: ['10.96.0.10:80/TCP shop/web:http ->'],
    problems: [
      'spec.externalIPs: 198.51.100.7 is outside --allowed-external-ip-cidrs (203.0.113.0/24); ' +
        'not translated, so that a Service cannot capture traffic to an address it does not own (CVE-2020-8554)',
    ],
  },
  {
    rule: 'load-balancer ingress IPs are frontends like the cluster IP',
    service: service(['10.96.0.10'], [{ name: 'http', protocol: 'TCP', port: 80, nodePort: 30080 }], {
      type: 'LoadBalancer',
      loadBalancerIPs: ['198.51.100.9'],
    }),
    slices: [slice('IPv4', http8080, ready('10.0.0.1'))],
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080', '198.51.100.9:80/TCP shop/web:http -> 10.0.0.1:8080'],
  },
  {
    rule: 'a NodePort is a frontend at each node address of a family the Service has a cluster IP in',
    service: service(['10.96.0.10'], [{ name: 'http', protocol: 'TCP', port: 80, nodePort: 30080 }], { type: 'NodePort' }),
    slices: [slice('IPv4', http8080, ready('10.0.0.1'))],
    node: NODE_WITH_ADDRESSES,
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080', '192.168.1.5:30080/TCP shop/web:http -> 10.0.0.1:8080'],
  },
  {
    rule: 'a dual-stack NodePort is a frontend at the node addresses of both families, each with its own family of endpoints',
    service: service(['10.96.0.10', 'fd00::10'], [{ name: 'http', protocol: 'TCP', port: 80, nodePort: 30080 }], { type: 'NodePort' }),
    slices: [slice('IPv4', http8080, ready('10.0.0.1')), slice('IPv6', http8080, ready('fd00:2::1'))],
    node: NODE_WITH_ADDRESSES,
    frontends: [
      '10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080',
      '192.168.1.5:30080/TCP shop/web:http -> 10.0.0.1:8080',
      '[fd00::10]:80/TCP shop/web:http -> [fd00:2::1]:8080',
      '[fd00:1::5]:30080/TCP shop/web:http -> [fd00:2::1]:8080',
    ],
  },
  {
    rule:
      'external and load-balancer IPs of a family the Service has no cluster IP in are left alone, as kube-proxy leaves them; ' +
      'the external ones reported',
    service: service(['10.96.0.10'], undefined, { type: 'LoadBalancer', externalIPs: ['fd00:3::7'], loadBalancerIPs: ['2001:db8::7'] }),
    slices: [slice('IPv4', http8080, ready('10.0.0.1'))],
    node: { ...NODE_WITH_ADDRESSES, allowedExternalIPCidrs: ['fd00:3::/64'] },
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080'],
    problems: [
      'spec.externalIPs: fd00:3::7 is not translated: the Service has no IPv6 cluster IP (spec.ipFamilies), ' +
        'so it has no IPv6 endpoints to send it to',
    ],
  },
  {
    rule: 'an endpoint listed by two slices counts once, as the listing that puts it on this node says (kube-proxy keeps the local one)',
    service: service(['10.96.0.10'], undefined, { internalTrafficPolicy: 'Local' }),
    slices: [
      slice('IPv4', http8080, [modelEndpoint('10.0.0.1', { nodeName: 'node-2' })]),
      slice('IPv4', http8080, [modelEndpoint('10.0.0.1', { nodeName: NODE.name })]),
    ],
    frontends: ['10.96.0.10:80/TCP shop/web:http -> 10.0.0.1:8080'],
  },
  {
    rule: 'external frontends use the Cluster policy even when ClusterIP traffic is Local',
    service: service(['10.96.0.10'], undefined, { externalIPs: ['203.0.113.7'], internalTrafficPolicy: 'Local' }),
    slices: [slice('IPv4', http8080, [modelEndpoint('10.0.0.1', { nodeName: 'node-2' })])],
    node: NODE_WITH_ADDRESSES,
    frontends: ['10.96.0.10:80/TCP shop/web:http ->', '203.0.113.7:80/TCP shop/web:http -> 10.0.0.1:8080'],
  },
  {
    rule: 'SCTP ports are reported once and skipped; the other ports are served',
    service: service(['10.96.0.10'], undefined, { sctpPorts: [3868, 9999] }),
    slices: [],
    frontends: ['10.96.0.10:80/TCP shop/web:http ->'],
    problems: ['SCTP ports 3868, 9999 are not translated: socket hooks do not cover SCTP'],
  },
  {
    rule: 'a Service labelled for another service proxy has no frontends here',
    service: service(['10.96.0.10'], undefined, { serviceProxyName: 'other-proxy' }),
    slices: [],
    frontends: [],
  },
  {
    rule: 'a Service labelled for this service proxy has its frontends',
    service: service(['10.96.0.10'], undefined, { serviceProxyName: 'socklb' }),
    slices: [],
    node: { ...NODE, serviceProxyName: 'socklb' },
    frontends: ['10.96.0.10:80/TCP shop/web:http ->'],
  },
  {
    rule: 'a Service labelled service.kubernetes.io/headless has no frontends',
    service: service(['10.96.0.10'], undefined, { headlessLabel: true }),
    slices: [],
    frontends: [],
  },
];

describe('serviceFrontends', () => {
  for (const { rule, service, slices, frontends, problems = [], node = NODE } of cases) {
    test(rule, () => {
      const result = serviceFrontends(service, slices, node);
      assert.deepEqual(dump(result.frontends), frontends);
      assert.deepEqual(result.problems, problems);
    });
  }
});
