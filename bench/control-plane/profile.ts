#!/usr/bin/env node
// socklb's control plane alone, in one process and without privileges, for `node --cpu-prof`:
// the benchmark's catalog written as its manifests, the manifest source and the agent on in-memory
// maps, programming from nothing, then endpoint changes of bench-churn, each timed from the rename
// that puts its new file in place to the new backends being in the maps. The kernel's map writes are not in it
// (the full benchmark has them); the code between a changed file and the writes is. Run without
// V8 flags, as the agent reads and programs its first state (it sets --optimize-for-size after).
//
//   node --cpu-prof --cpu-prof-dir=/tmp/prof build/bench/control-plane/profile.js --services 10000
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Agent, type SyncResult } from '../../src/agent/agent.js';
import { InstantReaderFence, memoryMaps } from '../../src/datapath/memory-maps.js';
import { backendText, frontendId } from '../../src/model/keys.js';
import { ManifestSource } from '../../src/sources/manifests.js';
import { buildCatalog, churnEndpoints } from '../catalog.js';
import { stageServiceManifest, writeCatalogManifests } from '../manifests.js';
import { percentile } from '../stats.js';

const { values } = parseArgs({ options: { services: { type: 'string', default: '10000' }, changes: { type: 'string', default: '50' } } });
const services = Number(values.services);
const changes = Number(values.changes);

const catalog = buildCatalog({ services, endpointsPerService: 2, backendIPs: ['10.244.0.2', '10.244.0.3'] });
const workdir = await mkdtemp(path.join(tmpdir(), 'socklb-profile-'));
const manifests = path.join(workdir, 'manifests');
const capacity = services * 4;
const maps = memoryMaps({ frontends: capacity, backends: capacity, slots: capacity });
const agent = new Agent({
  source: new ManifestSource({ path: manifests }),
  maps,
  readers: new InstantReaderFence(),
  logger: pino({ enabled: false }),
  node: { name: 'node-1', zone: undefined, addresses: [], allowedExternalIPCidrs: [], serviceProxyName: undefined },
});
try {
  await writeCatalogManifests(`${manifests}.staged`, catalog);
  // As the benchmark does: files read within a second of their writing are read again at the next scan.
  await sleep(1100);
  await agent.start();
  const started = performance.now();
  const synced = new Promise<SyncResult>((resolve) => agent.onSync(resolve));
  await rename(`${manifests}.staged`, manifests);
  const { durationMs } = await synced;
  console.log(
    `programmed ${agent.datapath.frontends.size} frontends in ${(performance.now() - started).toFixed(0)} ms, ` +
      `of which the agent's sync ${durationMs.toFixed(0)} ms`,
  );

  const port = catalog.churn.ports[0]!;
  const id = frontendId({ address: catalog.churn.clusterIP, port: port.port, protocol: port.protocol });
  const latencies: number[] = [];
  for (let k = 1; k <= changes; k++) {
    const endpoints = churnEndpoints(catalog.churn, k);
    const expected = endpoints
      .map((ip) => `${ip}:${port.targetPort}`)
      .sort()
      .join(',');
    const publish = stageServiceManifest(manifests, { ...catalog.churn, endpoints });
    const begun = performance.now();
    publish();
    while (backendsOf(id) !== expected) await setImmediate();
    latencies.push(performance.now() - begun);
  }
  console.log(
    `${changes} endpoint changes: p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms`,
  );
} finally {
  await agent.stop();
  await rm(workdir, { recursive: true, force: true });
}

/** The frontend's backends as the agent last wrote them ("ip:port", sorted). */
function backendsOf(id: string): string | undefined {
  const state = agent.datapath;
  const frontend = state.frontends.get(id);
  if (frontend === undefined) return undefined;
  return state
    .liveSlots(frontend)
    .map((backendId) => {
      const backend = backendId === undefined ? undefined : state.backends.get(backendId);
      return backend === undefined ? '<missing>' : backendText(backend);
    })
    .sort()
    .join(',');
}
