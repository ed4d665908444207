// Model objects for unit tests: every field at the value a minimal manifest
// gives it, so that each test states only what its rule is about.

import type { Endpoint, NodeContext, Service } from '../../src/model/types.js';

export function modelService(fields: Partial<Service> = {}): Service {
  return {
    namespace: 'default',
    name: 'web',
    type: 'ClusterIP',
    clusterIPs: ['10.96.0.10'],
    ports: [{ name: 'http', protocol: 'TCP', port: 80 }],
    sctpPorts: [],
    externalIPs: [],
    loadBalancerIPs: [],
    affinityTimeoutSeconds: undefined,
    internalTrafficPolicy: 'Cluster',
    serviceProxyName: undefined,
    headlessLabel: false,
    createdAt: undefined,
    ...fields,
  };
}

/** A ready endpoint unless `fields` say otherwise. */
export function modelEndpoint(address: string, fields: Partial<Endpoint> = {}): Endpoint {
  const ready = fields.ready ?? true;
  return { address, ready, serving: ready, terminating: false, nodeName: undefined, zoneHints: undefined, nodeHints: undefined, ...fields };
}

export const NODE: NodeContext = {
  name: 'node-1',
  zone: undefined,
  addresses: [],
  allowedExternalIPCidrs: [],
  serviceProxyName: undefined,
};
