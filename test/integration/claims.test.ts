// A ClusterIP two Services claim, end to end (issue 17): a Service serving 10.96.10.10:80 from
// manifests, then a second file whose Service default/dup claims the same ClusterIP and has no
// endpoints. dup is first by name and neither has a creationTimestamp (hand-written files), so
// only the rule that the serving Service keeps its frontend (src/model/claims.ts) keeps
// connections reaching web's backend; dup is reported once. The rule holds across a restart: the
// pinned service names say who served.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Pod, Sandbox } from '../lab/lab.js';
import { endpointSlice, missingPrivileges, service, services, waitForServices, writeManifest, type RunningAgent } from './support.js';
import { Testbed } from './testbed.js';

const skip = missingPrivileges();

const CLUSTER_IP = '10.96.10.10';
const FRONTEND = `${CLUSTER_IP}:80/TCP`;
const HTTP = { name: 'http', port: 80, targetPort: 'http' };
const SLICE_HTTP = { name: 'http', port: 8080 };
const DUP_PROBLEM = `frontend ${FRONTEND} (cluster IP) is served by Service default/web (cluster IP); this port is skipped`;

describe('a ClusterIP two Services claim', { skip, concurrency: false }, () => {
  const bed = new Testbed('claims');
  const { lab, pinDir } = bed;
  let pods: Pod[] = [];
  let sandbox: Sandbox;
  let agent: RunningAgent;

  const writeWeb = (backends: Pod[]) =>
    writeManifest(join(bed.manifests, 'web.yaml'), [
      service('web', [CLUSTER_IP], [HTTP]),
      endpointSlice(
        'web-1',
        'web',
        'IPv4',
        [SLICE_HTTP],
        backends.map((pod) => ({ ip: pod.ipv4 })),
      ),
    ]);
  const startAgent = () => bed.startAgent(['--manifests', bed.manifests, '--cgroup', sandbox.cgroupPath, '--pin-dir', pinDir]);
  /** The lines that reported dup's claim. */
  const dupReports = () => agent.logs.filter((line) => line.level === 40 && line.object === 'Service default/dup');
  const servingService = async () => (await services(pinDir)).find((frontend) => frontend.frontend === FRONTEND)?.service;

  before(async () => {
    await bed.prepare();
    pods = await Promise.all(['pod-a', 'pod-b'].map((name) => lab.addPod(name)));
    sandbox = await lab.addSandbox('sandbox');
    await Promise.all(pods.map((pod) => lab.startEchoServer(pod, { name: pod.name, port: 8080 })));
    await writeWeb(pods.slice(0, 1));
    agent = await startAgent();
  });

  after(() => bed.close());

  it('keeps serving the Service that served it when a newcomer without endpoints claims it, and reports the newcomer once', async () => {
    const served = await lab.runClient(sandbox, { target: CLUSTER_IP, port: 80, count: 10 });
    assert.deepEqual(served.errors, {});
    assert.deepEqual(served.hits, { 'pod-a': 10 });

    await writeManifest(join(bed.manifests, 'dup.yaml'), [service('dup', [CLUSTER_IP], [HTTP])]);
    const deadline = Date.now() + 5_000;
    while (dupReports().length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(
      dupReports().map((line) => line.reason),
      [DUP_PROBLEM],
    );
    const report = await lab.runClient(sandbox, { target: CLUSTER_IP, port: 80, count: 10 });
    assert.deepEqual(report.errors, {}, 'connect() still reaches web');
    assert.deepEqual(report.hits, { 'pod-a': 10 });
    assert.equal(await servingService(), 'default/web:http');

    // Later syncs (web's endpoints change) do not report dup again.
    await writeWeb(pods);
    await waitForServices(pinDir, (frontends) => frontends.find((frontend) => frontend.frontend === FRONTEND)?.backends.length === 2);
    assert.equal(dupReports().length, 1, 'dup is reported once');
  });

  it('keeps the frontend with the Service that served it across a restart: the pinned service names say who served', async () => {
    await agent.stop();
    agent = await startAgent();
    assert.equal(await servingService(), 'default/web:http');
    assert.deepEqual(
      agent.logs.filter((line) => line.msg === 'datapath synced').map((line) => line.operations),
      [0],
      'the restarted agent had nothing to rewrite',
    );
    assert.deepEqual(
      dupReports().map((line) => line.reason),
      [DUP_PROBLEM],
    );
    const report = await lab.runClient(sandbox, { target: CLUSTER_IP, port: 80, count: 20 });
    assert.deepEqual(report.errors, {});
    assert.deepEqual(Object.keys(report.hits).sort(), ['pod-a', 'pod-b']);
  });
});
