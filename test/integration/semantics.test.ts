// What only the kernel can show of kube-proxy's Service semantics: that
// connections from a sandbox land where the maps say. The semantics
// themselves, manifests in and maps out, are the golden corpus
// (test/golden, run without root by test/unit/golden.test.ts); here, a few
// of its cases with real connections (no endpoints, terminating endpoints,
// internalTrafficPolicy Local), and session affinity, which the datapath
// applies. Each case is named after the Kubernetes e2e test it mirrors
// where one exists, and runs twice: with the objects in manifest files, and
// served by the Kubernetes API stand-in to `socklb run --kubeconfig`.

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

/** Where a test's objects live: named groups of objects, replaced or removed whole. */
interface ObjectStore {
  /** The agent's source flags. */
  readonly sourceArgs: string[];
  put(group: string, documents: object[]): Promise<void>;
  remove(group: string): Promise<void>;
  close(): Promise<void>;
}

async function manifestStore(): Promise<ObjectStore> {
  const directory = await manifestDirectory();
  return {
    sourceArgs: ['--manifests', directory],
    put: (group, documents) => writeManifest(join(directory, `${group}.yaml`), documents),
    remove: (group) => rm(join(directory, `${group}.yaml`)),
    close: () => rm(directory, { recursive: true, force: true }),
  };
}

async function apiStore(): Promise<ObjectStore> {
  const server = await ApiServer.start();
  server.apply('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE_NAME } });
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

for (const [storeName, openStore] of STORES)
  describe(`Service semantics from ${storeName}`, { skip: missingPrivileges(), concurrency: false }, () => {
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

    async function hits(target: string, port: number, options: { count?: number } = {}) {
      return lab.runClient(sandbox, { target, port, count: options.count ?? 30 });
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
      await Promise.all(pods.map((pod) => lab.startEchoServer(pod, { name: pod.name, port: 8080 })));
      agent = await startAgent([...store.sourceArgs, '--cgroup', sandbox.cgroupPath, '--pin-dir', pinDir, '--node-name', NODE_NAME]);
    });

    after(async () => {
      await agent?.stop();
      await socklb(['cleanup', '--pin-dir', pinDir]);
      await lab.close();
      await store?.close();
    });

    it('should be rejected when no endpoints exist', async () => {
      await apply('empty', [service('empty', ['10.96.1.4'], [{ name: 'http', port: 80 }])], '10.96.1.4:80/TCP', 0);
      const report = await hits('10.96.1.4', 80, { count: 3 });
      assert.deepEqual(report.errors, { ECONNREFUSED: 3 });
    });

    it('uses serving terminating endpoints when no endpoint is ready (KEP-1669)', async () => {
      const endpoints = (terminatingPod: number) => [
        { ip: ipOf(terminatingPod), ready: false, serving: true, terminating: true },
        { ip: ipOf(1), ready: false, serving: false, terminating: true },
      ];
      await apply(
        'draining',
        [
          service('draining', ['10.96.1.5'], [{ name: 'http', port: 80 }]),
          endpointSlice('draining-1', 'draining', 'IPv4', [{ name: 'http', port: 8080 }], endpoints(0)),
        ],
        '10.96.1.5:80/TCP',
        1,
      );
      assert.deepEqual(names(await hits('10.96.1.5', 80, { count: 5 })), [podName(0)]);
    });

    it('should respect internalTrafficPolicy=Local Pod to Pod', async () => {
      const slice = (nodes: string[]) =>
        endpointSlice(
          'local-1',
          'local',
          'IPv4',
          [{ name: 'http', port: 8080 }],
          nodes.map((nodeName, i) => ({ ip: ipOf(i), nodeName })),
        );
      const localService = service('local', ['10.96.1.6'], [{ name: 'http', port: 80 }]);
      localService.spec.internalTrafficPolicy = 'Local';
      await apply('local', [localService, slice([NODE_NAME, 'node-2', 'node-2'])], '10.96.1.6:80/TCP', 1);
      assert.deepEqual(names(await hits('10.96.1.6', 80)), [podName(0)]);
      await apply('local', [localService, slice(['node-2', 'node-2', 'node-2'])], '10.96.1.6:80/TCP', 0);
      assert.deepEqual((await hits('10.96.1.6', 80, { count: 3 })).errors, { ECONNREFUSED: 3 }, 'no local endpoint: the connection fails');
    });

    describe('session affinity', () => {
      const affine = (timeoutSeconds: number | undefined) => {
        const manifest = service('sticky', ['10.96.1.12'], [{ name: 'http', port: 80 }]);
        if (timeoutSeconds !== undefined)
          Object.assign(manifest.spec, { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds } } });
        return [
          manifest,
          endpointSlice(
            'sticky-1',
            'sticky',
            'IPv4',
            [{ name: 'http', port: 8080 }],
            pods.map((_, i) => ({ ip: ipOf(i) })),
          ),
        ];
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
        await waitForServices(
          pinDir,
          (frontends) => frontends.find((f) => f.frontend === '10.96.1.12:80/TCP')?.affinityTimeoutSeconds === 1,
        );
        const seen = new Set<string>();
        // Uniform picks among 3: all of 16 rounds on one backend once in 3^15 runs.
        for (let round = 0; round < 16 && seen.size < 2; round++) {
          const report = await hits('10.96.1.12', 80, { count: 5 });
          assert.equal(names(report).length, 1, 'within the timeout, one backend');
          for (const name of names(report)) seen.add(name);
          await new Promise((resolve) => setTimeout(resolve, 1500)); // past the timeout: a new pick
        }
        assert.ok(seen.size >= 2, `after the timeout the client may move: saw ${[...seen].join(', ')}`);
      });

      it('should be able to switch session affinity for service with type clusterIP', async () => {
        await apply('sticky', affine(undefined), '10.96.1.12:80/TCP', 3);
        await waitForServices(
          pinDir,
          (frontends) => frontends.find((f) => f.frontend === '10.96.1.12:80/TCP')?.affinityTimeoutSeconds === 0,
        );
        assert.ok(names(await hits('10.96.1.12', 80, { count: 30 })).length >= 2, 'without affinity, connections spread');
        await apply('sticky', affine(10800), '10.96.1.12:80/TCP', 3);
        await waitForServices(
          pinDir,
          (frontends) => frontends.find((f) => f.frontend === '10.96.1.12:80/TCP')?.affinityTimeoutSeconds === 10800,
        );
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
          return [
            manifest,
            endpointSlice(
              'moved-1',
              'moved',
              'IPv4',
              [{ name: 'http', port: 8080 }],
              podIndexes.map((i) => ({ ip: ipOf(i) })),
            ),
          ];
        };
        const slotOrder = async () =>
          (await services(pinDir))
            .find((f) => f.frontend === frontend)
            ?.backends.map((backend) => podName(pods.findIndex((pod) => backend === `${pod.ipv4}:8080`))) ?? [];
        let checked = 0;
        for (let attempt = 0; attempt < 40 && checked < STICKY_CHECKS; attempt++) {
          await apply('moved', documents(1, [0, 1, 2]), frontend, 3);
          await waitForServices(pinDir, (frontends) => frontends.find((f) => f.frontend === frontend)?.affinityTimeoutSeconds === 1);
          const slots = await slotOrder();
          const [client] = names(await hits('10.96.1.13', 80, { count: 1 }));
          if (client === slots[2]) {
            // The first slot's backend leaves: the last one moves into its slot.
            const leaving = pods.findIndex((pod) => pod.name === slots[0]);
            await apply(
              'moved',
              documents(
                10800,
                [0, 1, 2].filter((i) => i !== leaving),
              ),
              frontend,
              2,
            );
            assert.equal((await slotOrder())[0], client, "the client's backend moved to the first slot");
            assert.deepEqual(names(await hits('10.96.1.13', 80, { count: 20 })), [client], 'the client stays with its backend');
            checked++;
          }
          await new Promise((resolve) => setTimeout(resolve, 1100)); // past the 1 s timeout: the next pick is new
        }
        assert.equal(checked, STICKY_CHECKS, `the client landed in the last slot ${checked} times in 40 attempts`);
        await store.remove('moved');
      });
    });
  });
