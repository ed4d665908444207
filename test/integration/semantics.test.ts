// kube-proxy's Service semantics, seen from a sandbox: each case is named
// after the Kubernetes e2e test it mirrors where one exists. Every case runs
// twice: with the objects in manifest files, and served by the Kubernetes API
// stand-in to `socklb run --kubeconfig`, since both sources feed one model.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiServer, type ResourceName } from '../fixtures/apiserver.js';
import { Lab, type Pod, type Sandbox } from '../lab/lab.js';
import {
  endpointSlice,
  manifestDirectory,
  missingPrivileges,
  service,
  services,
  socklb,
  startAgent,
  testPinDirectory,
  waitForServices,
  writeManifest,
  type RunningAgent,
} from './support.js';

const NODE_NAME = 'node-1';
const NODE_ZONE = 'zone-a';
// This node's address for NodePorts: unrouted in the sandbox, so only translation reaches it.
const NODE_IP = '10.250.0.1';
const ALLOWED_EXTERNAL = '203.0.113.0/24';

/** Where a test's objects live: named groups of objects, replaced or removed whole. */
interface ObjectStore {
  /** The agent's source flags (and this node's zone, as each source learns it). */
  readonly sourceArgs: string[];
  put(group: string, documents: object[]): Promise<void>;
  remove(group: string): Promise<void>;
  close(): Promise<void>;
}

async function manifestStore(): Promise<ObjectStore> {
  const directory = await manifestDirectory();
  return {
    sourceArgs: ['--manifests', directory, '--node-zone', NODE_ZONE],
    put: (group, documents) => writeManifest(join(directory, `${group}.yaml`), documents),
    remove: (group) => rm(join(directory, `${group}.yaml`)),
    close: () => rm(directory, { recursive: true, force: true }),
  };
}

async function apiStore(): Promise<ObjectStore> {
  const server = await ApiServer.start();
  server.apply('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE_NAME, labels: { 'topology.kubernetes.io/zone': NODE_ZONE } } });
  const resourceOf = (document: { kind?: string }): ResourceName => (document.kind === 'Service' ? 'services' : 'endpointslices');
  const nameOf = (document: { metadata?: { name?: string } }) => document.metadata?.name ?? '';
  const groups = new Map<string, { resource: ResourceName; name: string }[]>();
  const remove = async (group: string) => {
    for (const { resource, name } of groups.get(group) ?? []) server.delete(resource, name);
    groups.delete(group);
  };
  return {
    sourceArgs: ['--kubeconfig', server.kubeconfigPath],
    async put(group, documents) {
      const objects = documents.map((document) => ({ resource: resourceOf(document), name: nameOf(document) }));
      for (const old of groups.get(group) ?? []) {
        if (!objects.some((object) => object.resource === old.resource && object.name === old.name)) server.delete(old.resource, old.name);
      }
      for (const document of documents) server.apply(resourceOf(document), document);
      groups.set(group, objects);
    },
    remove,
    close: () => server.close(),
  };
}

const STORES: [string, () => Promise<ObjectStore>][] = [
  ['manifests', manifestStore],
  ['the Kubernetes API', apiStore],
];


for (const [storeName, openStore] of STORES) describe(`Service semantics from ${storeName}`, { skip: missingPrivileges(), concurrency: false }, () => {
  const lab = new Lab();
  const pinDir = testPinDirectory('semantics');
  let store: ObjectStore;
  let pods: Pod[] = [];
  let sandbox: Sandbox;
  let agent: RunningAgent | undefined;

  /** Writes one Service's manifests and waits until `frontend` shows `backendCount` backends. */
  async function apply(name: string, documents: object[], frontend: string, backendCount: number): Promise<void> {
    await store.put(name, documents);
    await waitForServices(pinDir, (frontends) => frontends.find((f) => f.frontend === frontend)?.backends.length === backendCount);
  }

  async function hits(target: string, port: number, options: { udp?: boolean; count?: number } = {}) {
    return lab.runClient(sandbox, { target, port, count: options.count ?? 30, udp: options.udp ?? false });
  }

  const names = (report: { hits: Record<string, number> }) => Object.keys(report.hits).sort();
  const ipOf = (index: number) => (pods[index] as Pod).ipv4;
  const podName = (index: number) => (pods[index] as Pod).name;

  before(async () => {
    await Lab.sweepStale();
    await socklb(['cleanup', '--pin-dir', pinDir]);
    store = await openStore();
    pods = await Promise.all(['pod-a', 'pod-b', 'pod-c'].map((name) => lab.addPod(name)));
    sandbox = await lab.addSandbox('sandbox');
    await Promise.all(
      pods.flatMap((pod) => [lab.startEchoServer(pod, { name: pod.name, port: 8080, udp: true }), lab.startEchoServer(pod, { name: `${pod.name}:9090`, port: 9090 })]),
    );
    agent = await startAgent([
      ...store.sourceArgs, '--cgroup', sandbox.cgroupPath, '--pin-dir', pinDir,
      '--node-name', NODE_NAME, '--node-ip', NODE_IP, '--allowed-external-ip-cidrs', ALLOWED_EXTERNAL,
    ]);
  });

  after(async () => {
    await agent?.stop();
    await socklb(['cleanup', '--pin-dir', pinDir]);
    await lab.close();
    await store?.close();
  });

  it('should serve multiport endpoints from pods', async () => {
    const ports = [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'metrics', port: 81, targetPort: 'metrics' }];
    await apply('multiport', [
      service('multiport', ['10.96.1.1'], ports),
      endpointSlice('multiport-1', 'multiport', 'IPv4', [{ name: 'http', port: 8080 }, { name: 'metrics', port: 9090 }], [{ ip: ipOf(0) }, { ip: ipOf(1) }]),
    ], '10.96.1.1:81/TCP', 2);
    assert.deepEqual(names(await hits('10.96.1.1', 80)), [podName(0), podName(1)]);
    assert.deepEqual(names(await hits('10.96.1.1', 81)), [`${podName(0)}:9090`, `${podName(1)}:9090`]);
  });

  it('should be updated after adding or deleting ports', async () => {
    const slice = (ports: { name: string; port: number }[]) => endpointSlice('ports-1', 'ports', 'IPv4', ports, [{ ip: ipOf(0) }]);
    await apply('ports', [service('ports', ['10.96.1.2'], [{ name: 'http', port: 80 }]), slice([{ name: 'http', port: 8080 }])], '10.96.1.2:80/TCP', 1);
    assert.deepEqual((await hits('10.96.1.2', 81, { count: 2 })).errors, { ENETUNREACH: 2 }, 'port 81 is not a Service port yet');
    await apply('ports', [
      service('ports', ['10.96.1.2'], [{ name: 'http', port: 80 }, { name: 'metrics', port: 81 }]),
      slice([{ name: 'http', port: 8080 }, { name: 'metrics', port: 9090 }]),
    ], '10.96.1.2:81/TCP', 1);
    assert.deepEqual(names(await hits('10.96.1.2', 81, { count: 3 })), [`${podName(0)}:9090`]);
    await apply('ports', [service('ports', ['10.96.1.2'], [{ name: 'metrics', port: 81 }]), slice([{ name: 'metrics', port: 9090 }])], '10.96.1.2:81/TCP', 1);
    assert.deepEqual((await hits('10.96.1.2', 80, { count: 2 })).errors, { ENETUNREACH: 2 }, 'port 80 was removed');
  });

  it('should serve endpoints on same port and different protocols', async () => {
    const ports = [{ name: 'tcp', port: 53, protocol: 'TCP' as const }, { name: 'udp', port: 53, protocol: 'UDP' as const }];
    await apply('dual-protocol', [
      service('dual-protocol', ['10.96.1.3'], ports),
      endpointSlice('dual-protocol-1', 'dual-protocol', 'IPv4', [{ name: 'tcp', port: 8080, protocol: 'TCP' }, { name: 'udp', port: 8080, protocol: 'UDP' }], [{ ip: ipOf(2) }]),
    ], '10.96.1.3:53/UDP', 1);
    assert.deepEqual(names(await hits('10.96.1.3', 53, { count: 3 })), [podName(2)]);
    assert.deepEqual(names(await hits('10.96.1.3', 53, { count: 3, udp: true })), [podName(2)]);
  });

  it('should be rejected when no endpoints exist', async () => {
    await apply('empty', [service('empty', ['10.96.1.4'], [{ name: 'http', port: 80 }])], '10.96.1.4:80/TCP', 0);
    const report = await hits('10.96.1.4', 80, { count: 3 });
    assert.deepEqual(report.errors, { ECONNREFUSED: 3 });
  });

  it('uses serving terminating endpoints when no endpoint is ready (KEP-1669)', async () => {
    const endpoints = (terminatingPod: number) => [{ ip: ipOf(terminatingPod), ready: false, serving: true, terminating: true }, { ip: ipOf(1), ready: false, serving: false, terminating: true }];
    await apply('draining', [
      service('draining', ['10.96.1.5'], [{ name: 'http', port: 80 }]),
      endpointSlice('draining-1', 'draining', 'IPv4', [{ name: 'http', port: 8080 }], endpoints(0)),
    ], '10.96.1.5:80/TCP', 1);
    assert.deepEqual(names(await hits('10.96.1.5', 80, { count: 5 })), [podName(0)]);
  });

  it('should respect internalTrafficPolicy=Local Pod to Pod', async () => {
    const slice = (nodes: string[]) => endpointSlice('local-1', 'local', 'IPv4', [{ name: 'http', port: 8080 }], nodes.map((nodeName, i) => ({ ip: ipOf(i), nodeName })));
    const localService = service('local', ['10.96.1.6'], [{ name: 'http', port: 80 }]);
    localService.spec.internalTrafficPolicy = 'Local';
    await apply('local', [localService, slice([NODE_NAME, 'node-2', 'node-2'])], '10.96.1.6:80/TCP', 1);
    assert.deepEqual(names(await hits('10.96.1.6', 80)), [podName(0)]);
    await apply('local', [localService, slice(['node-2', 'node-2', 'node-2'])], '10.96.1.6:80/TCP', 0);
    assert.deepEqual((await hits('10.96.1.6', 80, { count: 3 })).errors, { ECONNREFUSED: 3 }, 'no local endpoint: the connection fails');
  });

  it('prefers endpoints hinted for this zone with trafficDistribution PreferClose', async () => {
    const preferClose = service('topology', ['10.96.1.7'], [{ name: 'http', port: 80 }]);
    preferClose.spec.trafficDistribution = 'PreferClose';
    const slice = (zones: string[]) => endpointSlice('topology-1', 'topology', 'IPv4', [{ name: 'http', port: 8080 }], zones.map((zone, i) => ({ ip: ipOf(i), zone })));
    await apply('topology', [preferClose, slice([NODE_ZONE, 'zone-b', 'zone-b'])], '10.96.1.7:80/TCP', 1);
    assert.deepEqual(names(await hits('10.96.1.7', 80)), [podName(0)]);
    // kube-proxy's rule: hints count only if one ready endpoint is hinted for this zone.
    await apply('topology', [preferClose, slice(['zone-b', 'zone-b', 'zone-c'])], '10.96.1.7:80/TCP', 3);
    assert.equal(names(await hits('10.96.1.7', 80)).length, 3);
  });

  it('translates allowed externalIPs and LoadBalancer IPs in the sandbox, and refuses externalIPs outside --allowed-external-ip-cidrs', async () => {
    const exposed = service('exposed', ['10.96.1.8'], [{ name: 'http', port: 80, nodePort: 30080 }]);
    Object.assign(exposed.spec, { type: 'LoadBalancer', externalIPs: ['203.0.113.7', '198.51.100.7'] });
    exposed.status = { loadBalancer: { ingress: [{ ip: '198.51.100.200' }] } };
    await apply('exposed', [exposed, endpointSlice('exposed-1', 'exposed', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: ipOf(1) }])], '203.0.113.7:80/TCP', 1);
    assert.deepEqual(names(await hits('203.0.113.7', 80, { count: 3 })), [podName(1)]);
    assert.deepEqual(names(await hits('198.51.100.200', 80, { count: 3 })), [podName(1)]);
    assert.deepEqual((await hits('198.51.100.7', 80, { count: 2 })).errors, { ENETUNREACH: 2 }, 'a disallowed externalIP is not captured');
    const problem = agent?.logs.find((line) => typeof line.reason === 'string' && line.reason.includes('198.51.100.7 is outside --allowed-external-ip-cidrs'));
    assert.ok(problem, 'the refused externalIP is logged');
    // NodePort reached from the sandbox at this node's address.
    assert.deepEqual(names(await hits(NODE_IP, 30080, { count: 3 })), [podName(1)]);
  });

  it('should implement service.kubernetes.io/service-proxy-name and service.kubernetes.io/headless', async () => {
    const labelled = (labels: Record<string, string>) => {
      const manifest = service('labelled', ['10.96.1.9'], [{ name: 'http', port: 80 }]);
      manifest.metadata.labels = labels;
      return manifest;
    };
    const slice = endpointSlice('labelled-1', 'labelled', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: ipOf(2) }]);
    await apply('labelled', [labelled({}), slice], '10.96.1.9:80/TCP', 1);
    assert.deepEqual(names(await hits('10.96.1.9', 80, { count: 2 })), [podName(2)]);
    const labels: Record<string, string>[] = [{ 'service.kubernetes.io/service-proxy-name': 'foo-bar' }, { 'service.kubernetes.io/headless': '' }];
    for (const label of labels) {
      await store.put('labelled', [labelled(label), slice]);
      await waitForServices(pinDir, (frontends) => !frontends.some((f) => f.frontend === '10.96.1.9:80/TCP'));
      assert.deepEqual((await hits('10.96.1.9', 80, { count: 2 })).errors, { ENETUNREACH: 2 }, `${JSON.stringify(label)} leaves the Service to another proxy`);
      await apply('labelled', [labelled({}), slice], '10.96.1.9:80/TCP', 1);
      assert.deepEqual(names(await hits('10.96.1.9', 80, { count: 2 })), [podName(2)], 'removing the label brings it back');
    }
  });

  describe('session affinity', () => {
    const affine = (timeoutSeconds: number | undefined) => {
      const manifest = service('sticky', ['10.96.1.12'], [{ name: 'http', port: 80 }]);
      if (timeoutSeconds !== undefined) Object.assign(manifest.spec, { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds } } });
      return [manifest, endpointSlice('sticky-1', 'sticky', 'IPv4', [{ name: 'http', port: 8080 }], pods.map((_, i) => ({ ip: ipOf(i) })))];
    };
    const affinityOf = async () => (await services(pinDir)).find((f) => f.frontend === '10.96.1.12:80/TCP')?.affinityTimeoutSeconds;

    it('should have session affinity work for service with type clusterIP', async () => {
      await apply('sticky', affine(10800), '10.96.1.12:80/TCP', 3);
      assert.equal(await affinityOf(), 10800);
      // Every connection of this client (the sandbox's network namespace) lands on one backend.
      assert.equal(names(await hits('10.96.1.12', 80, { count: 30 })).length, 1);
    });

    it('should have session affinity timeout work for service with type clusterIP', async () => {
      await apply('sticky', affine(1), '10.96.1.12:80/TCP', 3);
      await waitForServices(pinDir, (frontends) => frontends.find((f) => f.frontend === '10.96.1.12:80/TCP')?.affinityTimeoutSeconds === 1);
      const seen = new Set<string>();
      for (let round = 0; round < 8 && seen.size < 2; round++) {
        const report = await hits('10.96.1.12', 80, { count: 5 });
        assert.equal(names(report).length, 1, 'within the timeout, one backend');
        for (const name of names(report)) seen.add(name);
        await new Promise((resolve) => setTimeout(resolve, 1500)); // past the timeout: a new pick
      }
      assert.ok(seen.size >= 2, `after the timeout the client may move: saw ${[...seen].join(', ')}`);
    });

    it('should be able to switch session affinity for service with type clusterIP', async () => {
      await apply('sticky', affine(undefined), '10.96.1.12:80/TCP', 3);
      await waitForServices(pinDir, (frontends) => frontends.find((f) => f.frontend === '10.96.1.12:80/TCP')?.affinityTimeoutSeconds === 0);
      assert.ok(names(await hits('10.96.1.12', 80, { count: 30 })).length >= 2, 'without affinity, connections spread');
      await apply('sticky', affine(10800), '10.96.1.12:80/TCP', 3);
      await waitForServices(pinDir, (frontends) => frontends.find((f) => f.frontend === '10.96.1.12:80/TCP')?.affinityTimeoutSeconds === 10800);
      assert.equal(names(await hits('10.96.1.12', 80, { count: 30 })).length, 1, 'with affinity again, one backend');
      await store.remove('sticky');
    });

    // A frontend whose list shrinks moves its last slot into the hole: the client of the backend
    // in the last slot must stay with it. Which backend a client gets is random, so the client is
    // let go (a 1 s timeout) until it lands in the last slot, and the check is made
    // STICKY_CHECKS times: a datapath that picked again would pass each by chance one time in two.
    it('keeps a client on its backend when another backend leaves and its backend changes slot', async () => {
      const STICKY_CHECKS = 4;
      const frontend = '10.96.1.13:80/TCP';
      const documents = (timeoutSeconds: number, podIndexes: number[]) => {
        const manifest = service('moved', ['10.96.1.13'], [{ name: 'http', port: 80 }]);
        Object.assign(manifest.spec, { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds } } });
        return [manifest, endpointSlice('moved-1', 'moved', 'IPv4', [{ name: 'http', port: 8080 }], podIndexes.map((i) => ({ ip: ipOf(i) })))];
      };
      const slotOrder = async () => (await services(pinDir)).find((f) => f.frontend === frontend)?.backends.map((backend) => podName(pods.findIndex((pod) => backend === `${pod.ipv4}:8080`))) ?? [];
      let checked = 0;
      for (let attempt = 0; attempt < 40 && checked < STICKY_CHECKS; attempt++) {
        await apply('moved', documents(1, [0, 1, 2]), frontend, 3);
        await waitForServices(pinDir, (frontends) => frontends.find((f) => f.frontend === frontend)?.affinityTimeoutSeconds === 1);
        const slots = await slotOrder();
        const [client] = names(await hits('10.96.1.13', 80, { count: 1 }));
        if (client === slots[2]) {
          // The first slot's backend leaves: the last one moves into its slot.
          const leaving = pods.findIndex((pod) => pod.name === slots[0]);
          await apply('moved', documents(10800, [0, 1, 2].filter((i) => i !== leaving)), frontend, 2);
          assert.equal((await slotOrder())[0], client, 'the client\'s backend moved to the first slot');
          assert.deepEqual(names(await hits('10.96.1.13', 80, { count: 20 })), [client], 'the client stays with its backend');
          checked++;
        }
        await new Promise((resolve) => setTimeout(resolve, 1100)); // past the 1 s timeout: the next pick is new
      }
      assert.equal(checked, STICKY_CHECKS, `the client landed in the last slot ${checked} times in 40 attempts`);
      await store.remove('moved');
    });
  });

  it('leaves no stale frontend when a Service is recreated, changes its ClusterIP, or is deleted', async () => {
    const slice = endpointSlice('moving-1', 'moving', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: ipOf(0) }]);
    await apply('moving', [service('moving', ['10.96.1.10'], [{ name: 'http', port: 80 }]), slice], '10.96.1.10:80/TCP', 1);
    await store.remove('moving');
    await waitForServices(pinDir, (frontends) => !frontends.some((f) => f.frontend === '10.96.1.10:80/TCP'));
    await apply('moving', [service('moving', ['10.96.1.10'], [{ name: 'http', port: 80 }]), slice], '10.96.1.10:80/TCP', 1);
    assert.deepEqual(names(await hits('10.96.1.10', 80, { count: 2 })), [podName(0)], 'recreated with the same ClusterIP');
    await apply('moving', [service('moving', ['10.96.1.11'], [{ name: 'http', port: 80 }]), slice], '10.96.1.11:80/TCP', 1);
    assert.deepEqual((await hits('10.96.1.10', 80, { count: 2 })).errors, { ENETUNREACH: 2 }, 'the old ClusterIP is gone');
    assert.deepEqual(names(await hits('10.96.1.11', 80, { count: 2 })), [podName(0)]);
    await store.remove('moving');
    await waitForServices(pinDir, (frontends) => !frontends.some((f) => f.service.startsWith('default/moving')));
  });
});
