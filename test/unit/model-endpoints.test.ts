// kube-proxy's traffic rules (CategorizeEndpoints), one case per rule.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { categorizeEndpoints, type EndpointPolicy } from '../../src/model/endpoints.js';
import type { Endpoint } from '../../src/model/types.js';
import { modelEndpoint, NODE } from './model-fixtures.js';

const ready = (address: string, fields: Partial<Endpoint> = {}) => modelEndpoint(address, fields);
const notReady = (address: string, fields: Partial<Endpoint> = {}) => modelEndpoint(address, { ready: false, serving: false, ...fields });
const terminating = (address: string, fields: Partial<Endpoint> = {}) =>
  modelEndpoint(address, { ready: false, serving: true, terminating: true, ...fields });

const CLUSTER: EndpointPolicy = { internalTrafficPolicy: 'Cluster' };
const LOCAL: EndpointPolicy = { internalTrafficPolicy: 'Local' };
const here = { nodeName: NODE.name };
const elsewhere = { nodeName: 'node-2' };
const zoneA = { zoneHints: ['zone-a'] };
const zoneB = { zoneHints: ['zone-b'] };
const forThisNode = { nodeHints: [NODE.name] };
const forNode2 = { nodeHints: ['node-2'] };

const cases: { rule: string; endpoints: Endpoint[]; policy: EndpointPolicy; zone?: string; cluster: string[]; internal: string[] }[] = [
  {
    rule: 'ready endpoints receive traffic',
    endpoints: [ready('10.0.0.1'), ready('10.0.0.2')],
    policy: CLUSTER,
    cluster: ['10.0.0.1', '10.0.0.2'],
    internal: ['10.0.0.1', '10.0.0.2'],
  },
  {
    rule: 'endpoints that are not ready receive none while another is ready',
    endpoints: [ready('10.0.0.1'), terminating('10.0.0.2')],
    policy: CLUSTER,
    cluster: ['10.0.0.1'],
    internal: ['10.0.0.1'],
  },
  {
    rule: 'with no ready endpoint, serving and terminating endpoints are used',
    endpoints: [terminating('10.0.0.1'), notReady('10.0.0.2')],
    policy: CLUSTER,
    cluster: ['10.0.0.1'],
    internal: ['10.0.0.1'],
  },
  {
    rule: 'endpoints that are not serving are never used',
    endpoints: [notReady('10.0.0.1'), notReady('10.0.0.2', { terminating: true })],
    policy: CLUSTER,
    cluster: [],
    internal: [],
  },
  { rule: 'no endpoints means no backend', endpoints: [], policy: CLUSTER, cluster: [], internal: [] },
  {
    rule: 'internalTrafficPolicy Local keeps ClusterIP traffic to endpoints on this node',
    endpoints: [ready('10.0.0.1', here), ready('10.0.0.2', elsewhere)],
    policy: LOCAL,
    cluster: ['10.0.0.1', '10.0.0.2'],
    internal: ['10.0.0.1'],
  },
  {
    rule: 'internalTrafficPolicy Local with no local endpoint has no backend',
    endpoints: [ready('10.0.0.2', elsewhere)],
    policy: LOCAL,
    cluster: ['10.0.0.2'],
    internal: [],
  },
  {
    rule: 'internalTrafficPolicy Local falls back to local serving and terminating endpoints',
    endpoints: [terminating('10.0.0.1', here), ready('10.0.0.2', elsewhere)],
    policy: LOCAL,
    cluster: ['10.0.0.2'],
    internal: ['10.0.0.1'],
  },
  {
    rule: 'topology hints keep traffic in this zone when every ready endpoint has hints and one names it',
    endpoints: [ready('10.0.0.1', zoneA), ready('10.0.0.2', zoneB)],
    policy: CLUSTER,
    zone: 'zone-a',
    cluster: ['10.0.0.1'],
    internal: ['10.0.0.1'],
  },
  {
    rule: 'topology hints are ignored when one ready endpoint has none',
    endpoints: [ready('10.0.0.1', zoneA), ready('10.0.0.2')],
    policy: CLUSTER,
    zone: 'zone-a',
    cluster: ['10.0.0.1', '10.0.0.2'],
    internal: ['10.0.0.1', '10.0.0.2'],
  },
  {
    rule: 'topology hints are ignored when none names this zone',
    endpoints: [ready('10.0.0.1', zoneB), ready('10.0.0.2', zoneB)],
    policy: CLUSTER,
    zone: 'zone-a',
    cluster: ['10.0.0.1', '10.0.0.2'],
    internal: ['10.0.0.1', '10.0.0.2'],
  },
  {
    rule: 'topology hints are ignored when this node has no zone',
    endpoints: [ready('10.0.0.1', zoneA), ready('10.0.0.2', zoneB)],
    policy: CLUSTER,
    cluster: ['10.0.0.1', '10.0.0.2'],
    internal: ['10.0.0.1', '10.0.0.2'],
  },
  {
    rule: 'node hints (trafficDistribution PreferSameNode) keep traffic on this node, before zone hints',
    endpoints: [ready('10.0.0.1', { ...forThisNode, ...zoneB }), ready('10.0.0.2', { ...forNode2, ...zoneA })],
    policy: CLUSTER,
    zone: 'zone-a',
    cluster: ['10.0.0.1'],
    internal: ['10.0.0.1'],
  },
  {
    rule: 'node hints that do not name this node give way to zone hints',
    endpoints: [ready('10.0.0.1', { ...forNode2, ...zoneA }), ready('10.0.0.2', { ...forNode2, ...zoneB })],
    policy: CLUSTER,
    zone: 'zone-a',
    cluster: ['10.0.0.1'],
    internal: ['10.0.0.1'],
  },
  {
    rule: 'node hints are ignored when one ready endpoint has none',
    endpoints: [ready('10.0.0.1', forThisNode), ready('10.0.0.2')],
    policy: CLUSTER,
    cluster: ['10.0.0.1', '10.0.0.2'],
    internal: ['10.0.0.1', '10.0.0.2'],
  },
  {
    rule: 'under internalTrafficPolicy Local, hints do not narrow the local endpoints',
    endpoints: [ready('10.0.0.1', { ...here, ...forNode2 }), ready('10.0.0.2', { ...elsewhere, ...forThisNode })],
    policy: LOCAL,
    cluster: ['10.0.0.2'],
    internal: ['10.0.0.1'],
  },
  {
    rule: 'hints of endpoints that are not ready do not matter',
    endpoints: [ready('10.0.0.1', zoneA), ready('10.0.0.2', zoneB), terminating('10.0.0.3')],
    policy: CLUSTER,
    zone: 'zone-a',
    cluster: ['10.0.0.1'],
    internal: ['10.0.0.1'],
  },
];

describe('categorizeEndpoints', () => {
  for (const { rule, endpoints, policy, zone, cluster, internal } of cases) {
    test(rule, () => {
      const result = categorizeEndpoints(endpoints, policy, { name: NODE.name, zone });
      assert.deepEqual(
        { cluster: result.cluster.map((e) => e.address), internal: result.internal.map((e) => e.address) },
        { cluster, internal },
      );
    });
  }
});
