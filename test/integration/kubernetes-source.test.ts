// `socklb run --kubeconfig` end to end against the API server stand-in: the
// agent lists and watches it through the real client code and programs the
// BPF maps. No packet is sent (the datapath itself is tested from manifests
// in clusterip.test.ts and semantics.test.ts), so there is no lab network:
// the agent attaches to an empty cgroup of this test's own.

import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiServer } from '../fixtures/apiserver.js';
import { findCgroup2Root, removeCgroup } from '../lab/cgroup.js';
import {
  endpointSlice,
  missingPrivileges,
  service,
  services,
  socklb,
  startAgent,
  testPinDirectory,
  waitForServices,
  type RunningAgent,
} from './support.js';

const HTTP = { name: 'http', port: 80 };
const SLICE_HTTP = { name: 'http', port: 8080 };
const WEB = '10.96.0.10:80/TCP';
const API = '10.96.0.11:80/TCP';

describe('socklb run against the Kubernetes API (stand-in)', { skip: missingPrivileges(), concurrency: false }, () => {
  const pinDir = testPinDirectory('kubernetes');
  let server: ApiServer;
  let cgroupRoot: string;
  let cgroup: string;
  let agent: RunningAgent | undefined;

  const runArgs = () => [
    '--kubeconfig',
    server.kubeconfigPath,
    '--node-name',
    'node-1',
    '--cgroup',
    cgroup,
    '--pin-dir',
    pinDir,
    '--metrics-bind-address',
    '',
    '--healthz-bind-address',
    '',
  ];
  const backendsOf = (frontend: string) => async () => (await services(pinDir)).find((f) => f.frontend === frontend)?.backends.sort();

  before(async () => {
    server = await ApiServer.start();
    await socklb(['cleanup', '--pin-dir', pinDir]);
    cgroupRoot = await findCgroup2Root();
    cgroup = join(cgroupRoot, `socklb-test-kubernetes-${process.pid}`);
    await mkdir(cgroup, { recursive: true });
  });

  after(async () => {
    await agent?.stop();
    await socklb(['cleanup', '--pin-dir', pinDir]);
    await removeCgroup(cgroup, cgroupRoot);
    await server.close();
  });

  it('programs the Services it lists and follows what it watches', async (t) => {
    server.apply('nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-1', labels: { 'topology.kubernetes.io/zone': 'zone-a' } },
    });
    server.apply('services', service('web', ['10.96.0.10'], [HTTP]));
    server.apply('endpointslices', endpointSlice('web-abc12', 'web', 'IPv4', [SLICE_HTTP], [{ ip: '10.244.0.5' }, { ip: '10.244.0.6' }]));
    agent = await startAgent(runArgs());
    await waitForServices(pinDir, (frontends) => frontends.find((f) => f.frontend === WEB)?.backends.length === 2);
    assert.equal(agent.logs.find((line) => line.msg === 'serving')?.source, `--kubeconfig ${server.kubeconfigPath}`);
    t.diagnostic(`agent resident memory with the API source: ${await residentMiB(agent)} MiB`);

    server.apply(
      'endpointslices',
      endpointSlice('web-abc12', 'web', 'IPv4', [SLICE_HTTP], [{ ip: '10.244.0.5' }, { ip: '10.244.0.6' }, { ip: '10.244.0.7' }]),
    );
    server.apply('services', service('api', ['10.96.0.11'], [HTTP]));
    await waitForServices(
      pinDir,
      (frontends) => frontends.find((f) => f.frontend === WEB)?.backends.length === 3 && frontends.some((f) => f.frontend === API),
    );
    server.delete('services', 'web');
    await waitForServices(pinDir, (frontends) => !frontends.some((f) => f.frontend === WEB));
  });

  it('keeps the pinned datapath while the API cannot be listed, then brings it up to date', async () => {
    await agent?.stop();
    agent = undefined;
    const pinned = await backendsOf(API)();
    assert.deepEqual(pinned, []);
    server.apply('endpointslices', endpointSlice('api-abc12', 'api', 'IPv4', [SLICE_HTTP], [{ ip: '10.244.0.8' }]));
    server.failWith = 503;
    const failedLists = () => server.requests.filter((request) => !request.watch && request.status === 503).length;
    const before = failedLists();
    const starting = startAgent(runArgs());
    while (failedLists() < before + 6) await sleep(20); // a few rounds of failed LISTs
    assert.deepEqual(await backendsOf(API)(), pinned, 'not pruned, not changed before the first complete list');
    server.failWith = undefined;
    agent = await starting;
    await waitForServices(pinDir, (frontends) => frontends.find((f) => f.frontend === API)?.backends.length === 1);
    assert.ok(
      agent.logs.some((line) => /LIST \/api\/v1\/\w+ failed/.test(String(line.msg))),
      'the failures are logged',
    );
  });

  it('refuses to start without a source, or with two', async () => {
    const none = await socklb(['run', '--pin-dir', pinDir]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no source of Services: give --manifests PATH, or --kubeconfig PATH/);
    const both = await socklb(['run', '--manifests', '/nonexistent', '--kubeconfig', server.kubeconfigPath, '--pin-dir', pinDir]);
    assert.equal(both.code, 1);
    assert.match(both.stderr, /--manifests and --kubeconfig are both given/);
  });
});

async function residentMiB(agent: RunningAgent): Promise<number> {
  const status = await readFile(`/proc/${agent.process.pid}/status`, 'utf8');
  const kib = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]);
  return Math.round(kib / 1024);
}
