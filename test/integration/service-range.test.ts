// Traffic to the service range that no Service serves, end to end: a sandbox's connect() or
// datagram to a cluster IP on a port its Service lacks, or to an address of the service CIDRs
// that no Service holds, fails at once with ECONNREFUSED (kube-proxy's cluster-ips-check chain
// rejects or drops it), counted at service id 0; an address outside the range is left alone, and
// in the lab, where nothing routes the service range, fails with ENETUNREACH as LAB.md wants.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FrontendStats } from '../../src/datapath/counters.js';
import { MAP_NAMES } from '../../src/datapath/layout.js';
import { pinnedMaps } from '../../src/pins/status.js';
import { ApiServer } from '../fixtures/apiserver.js';
import type { Pod, Sandbox } from '../lab/lab.js';
import { endpointSlice, missingPrivileges, service, socklb, waitForServices, writeManifest, type RunningAgent } from './support.js';
import { Testbed } from './testbed.js';
import { runSocketClient } from './udp-support.js';

const skip = missingPrivileges();
const WEB_IPV4 = '10.96.0.10';
const WEB_IPV6 = 'fd00:96::10';
/** Inside the lab's service range (10.96.0.0/12, fd00:96::/108), held by no Service. */
const UNALLOCATED_IPV4 = '10.96.7.7';
const UNALLOCATED_IPV6 = 'fd00:96::7:7';
/** Outside it: no Service address, and no route in the lab. */
const ELSEWHERE_IPV4 = '10.200.0.1';
const ELSEWHERE_IPV6 = 'fd00:200::1';

/** The calls refused at an unserved service address, as `socklb stats -o json` gives them (service id 0). */
async function unservedRefusals(pinDir: string): Promise<number> {
  const result = await socklb(['stats', '-o', 'json', '--pin-dir', pinDir]);
  assert.equal(result.code, 0, result.stderr);
  const rows = JSON.parse(result.stdout) as FrontendStats[];
  return rows.find((row) => row.serviceId === 0)?.refused ?? Number.NaN;
}

/** Entries of a pinned map, as `socklb status` counts them. */
function entries(pinDir: string, mapName: string): number | null | undefined {
  return pinnedMaps(pinDir).find((map) => map.name === mapName)?.entries;
}

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('calls to the service range that no Service serves', { skip, concurrency: false }, () => {
  const bed = new Testbed('range');
  const { lab, pinDir } = bed;
  let pod: Pod;
  let sandbox: Sandbox;
  let agent: RunningAgent;

  before(async () => {
    await bed.prepare();
    [pod, sandbox] = await Promise.all([lab.addPod('pod-a'), lab.addSandbox('sandbox')]);
    await lab.startEchoServer(pod, { name: pod.name, port: 8080, udp: true });
    await writeManifest(join(bed.manifests, 'web.yaml'), [
      service('web', [WEB_IPV4, WEB_IPV6], [{ name: 'http', port: 80, targetPort: 8080 }]),
      endpointSlice('web-v4', 'web', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
      endpointSlice('web-v6', 'web', 'IPv6', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv6 }]),
    ]);
    agent = await bed.startAgent([
      '--manifests',
      bed.manifests,
      '--cgroup',
      sandbox.cgroupPath,
      '--pin-dir',
      pinDir,
      '--service-cluster-ip-range',
      '10.96.0.0/12,fd00:96::/108',
    ]);
  });

  after(() => bed.close());

  it('still translates the ports the Service has', async () => {
    for (const target of [WEB_IPV4, WEB_IPV6]) {
      const report = await lab.runClient(sandbox, { target, port: 80, count: 3 });
      assert.deepEqual(report.hits, { [pod.name]: 3 }, target);
    }
  });

  it('refuses a cluster IP on a port or protocol its Service lacks at once: TCP, connected UDP, an unconnected datagram', async () => {
    const before = await unservedRefusals(pinDir);
    for (const target of [WEB_IPV4, WEB_IPV6]) {
      const tcp = await lab.runClient(sandbox, { target, port: 81, count: 5 });
      assert.deepEqual(tcp.errors, { ECONNREFUSED: 5 }, `TCP ${target}:81`);
      assert.ok(tcp.elapsedMs < 1000, `5 refused connects took ${tcp.elapsedMs} ms`);
      // The Service's port 80 is TCP only: UDP to it is another frontend, which it lacks.
      const udp = await lab.runClient(sandbox, { target, port: 80, count: 5, udp: true });
      assert.deepEqual(udp.errors, { ECONNREFUSED: 5 }, `connected UDP ${target}:80`);
    }
    const datagrams = await runSocketClient<{ errors: Record<string, number> }>(lab, sandbox, [
      'multi',
      '--targets',
      `${WEB_IPV4}:53,${WEB_IPV4}:80`,
    ]);
    assert.deepEqual(datagrams.errors, { ECONNREFUSED: 2 }, 'sendto() is refused');
    assert.equal(await unservedRefusals(pinDir), before + 2 * (5 + 5) + 2, 'each refusal counted at service id 0');
  });

  it('refuses an address of the range that no Service holds, over both families', async () => {
    const before = await unservedRefusals(pinDir);
    for (const target of [UNALLOCATED_IPV4, UNALLOCATED_IPV6]) {
      const report = await lab.runClient(sandbox, { target, port: 80, count: 3 });
      assert.deepEqual(report.errors, { ECONNREFUSED: 3 }, target);
    }
    const datagram = await runSocketClient<{ errors: Record<string, number> }>(lab, sandbox, [
      'multi',
      '--targets',
      `${UNALLOCATED_IPV4}:53`,
    ]);
    assert.deepEqual(datagram.errors, { ECONNREFUSED: 1 });
    assert.equal(await unservedRefusals(pinDir), before + 7);
    const metrics = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    assert.match(metrics, new RegExp(`^socklb_unserved_address_refused_total ${before + 7}$`, 'm'));
  });

  it('leaves an address outside the range alone: untranslated, it fails with ENETUNREACH, and a pod is reached directly', async () => {
    const before = await unservedRefusals(pinDir);
    for (const target of [ELSEWHERE_IPV4, ELSEWHERE_IPV6]) {
      const report = await lab.runClient(sandbox, { target, port: 80, count: 2 });
      assert.deepEqual(report.errors, { ENETUNREACH: 2 }, target);
    }
    const direct = await lab.runClient(sandbox, { target: pod.ipv4, port: 8080, count: 2 });
    assert.deepEqual(direct.hits, { [pod.name]: 2 });
    assert.equal(await unservedRefusals(pinDir), before);
  });

  it('a Service removed leaves its cluster IP refused by the range, and one added is translated', async () => {
    await writeManifest(join(bed.manifests, 'web.yaml'), []);
    await waitForServices(pinDir, (frontends) => frontends.length === 0);
    await eventually(() => entries(pinDir, MAP_NAMES.clusterIPs) === 0, 'no cluster IP left');
    assert.deepEqual((await lab.runClient(sandbox, { target: WEB_IPV4, port: 80, count: 2 })).errors, { ECONNREFUSED: 2 });
    await writeManifest(join(bed.manifests, 'web.yaml'), [
      service('web', [WEB_IPV4], [{ name: 'http', port: 80, targetPort: 8080 }]),
      endpointSlice('web-v4', 'web', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
    ]);
    await waitForServices(pinDir, (frontends) => frontends.some((f) => f.backends.length === 1));
    assert.deepEqual((await lab.runClient(sandbox, { target: WEB_IPV4, port: 80, count: 2 })).hits, { [pod.name]: 2 });
  });
});

describe('service CIDRs from the ServiceCIDR objects of the API', { skip, concurrency: false }, () => {
  const bed = new Testbed('range-api');
  const { lab, pinDir } = bed;
  let server: ApiServer;
  let sandbox: Sandbox;

  before(async () => {
    await bed.prepare();
    server = await ApiServer.start();
    sandbox = await lab.addSandbox('sandbox');
    server.apply('nodes', { metadata: { name: 'node-1' } });
    server.apply('services', service('web', [WEB_IPV4], [{ name: 'http', port: 80 }]));
    await bed.startAgent([
      '--kubeconfig',
      server.kubeconfigPath,
      '--node-name',
      'node-1',
      '--cgroup',
      sandbox.cgroupPath,
      '--pin-dir',
      pinDir,
    ]);
  });

  after(async () => {
    await bed.close();
    await server.close();
  });

  it('refuses the range of a ServiceCIDR while it exists, and without a flag', async () => {
    assert.equal(entries(pinDir, MAP_NAMES.serviceRanges), 0);
    assert.deepEqual((await lab.runClient(sandbox, { target: UNALLOCATED_IPV4, port: 80, count: 1 })).errors, { ENETUNREACH: 1 });
    assert.deepEqual((await lab.runClient(sandbox, { target: WEB_IPV4, port: 81, count: 1 })).errors, { ECONNREFUSED: 1 });
    server.apply('servicecidrs', { metadata: { name: 'kubernetes' }, spec: { cidrs: ['10.96.0.0/12'] } });
    await eventually(() => entries(pinDir, MAP_NAMES.serviceRanges) === 1, 'the range in the maps');
    assert.deepEqual((await lab.runClient(sandbox, { target: UNALLOCATED_IPV4, port: 80, count: 1 })).errors, { ECONNREFUSED: 1 });
    server.delete('servicecidrs', 'kubernetes');
    await eventually(() => entries(pinDir, MAP_NAMES.serviceRanges) === 0, 'the range gone');
    assert.deepEqual((await lab.runClient(sandbox, { target: UNALLOCATED_IPV4, port: 80, count: 1 })).errors, { ENETUNREACH: 1 });
  });
});
