// socklb: the agent (`socklb run`) reads the catalog's manifests and writes its maps; its programs,
// attached to this client's cgroup only, translate the ClusterIP at connect(). Programming time is
// measured from the moment the manifests appear (a directory renamed into place) to the agent's
// "datapath synced"; an endpoint change, from the rename that puts the new file in place to the new
// backend being in the map.
import { readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_CAPACITIES } from '../../src/datapath/maps.js';
import { socklb, startAgent, type RunningAgent } from '../../test/integration/support.js';
import type { Sandbox } from '../../test/lab/lab.js';
import { churnEndpoints, type BenchPort, type BenchService, type Catalog } from '../catalog.js';
import { processCpuUs } from '../cpu.js';
import { stageServiceManifest, writeCatalogManifests } from '../manifests.js';
import { FrontendReader, pinnedMapMemory } from '../socklb-maps.js';
import type { Datapath, EndpointChange, Footprint, Programming, Target } from './datapath.js';

type LogLine = Record<string, unknown>;

/** Programming 50000 Services from manifests takes minutes (YAML parsing); a hang, much longer. */
const SYNC_TIMEOUT_MS = 15 * 60_000;
const CHANGE_TIMEOUT_MS = 60_000;
/**
 * The manifest source re-reads, at its next scan, any file it read less than a second after the
 * file was written (a write within the same clock tick would go unseen otherwise; RACY_WINDOW_MS in
 * src/sources/manifests.ts). Manifests written just before the agent reads them would make the
 * first endpoint change re-read all of them (4 s at 1000 Services), so they are left to age this
 * long first, as files that already exist when they appear.
 */
const MANIFEST_SETTLE_MS = 1_100;
const AGENT_STOP_TIMEOUT_MS = 5_000;
const POLL_INTERVAL_MS = 0.2;
const POLL_SLEEPER = new Int32Array(new SharedArrayBuffer(4));
/** How long the agent is watched doing nothing, for its idle CPU (retries of failed writes show here). */
const IDLE_WINDOW_MS = 5_000;

export class SocklbDatapath implements Datapath {
  readonly name = 'socklb';
  readonly description =
    "socklb's agent programs its maps from the manifests; its cgroup programs translate the ClusterIP at connect() " +
    "for this client's cgroup only";
  readonly #manifests: string;
  #agent: RunningAgent | undefined;
  #reader: FrontendReader | undefined;
  #lastSync: LogLine | undefined;

  constructor(
    readonly client: Sandbox,
    workdir: string,
    private readonly pinDirectory: string,
  ) {
    this.#manifests = path.join(workdir, 'manifests');
  }

  async program(catalog: Catalog): Promise<Programming> {
    const staged = `${this.#manifests}.staged`;
    await writeCatalogManifests(staged, catalog);
    await sleep(MANIFEST_SETTLE_MS);
    // The agent starts on a path that does not exist yet: it serves nothing and watches for it.
    const agent = await startAgent([
      '--manifests',
      this.#manifests,
      '--cgroup',
      this.client.cgroupPath,
      '--pin-dir',
      this.pinDirectory,
      ...capacityFlags(catalog),
    ]);
    this.#agent = agent;
    const from = agent.logs.length;
    const started = performance.now();
    await rename(staged, this.#manifests);
    const synced = await nextLog(agent, from, (line) => line.msg === 'datapath synced', SYNC_TIMEOUT_MS);
    const seconds = (performance.now() - started) / 1000;
    this.#lastSync = synced;
    this.#reader = FrontendReader.open(this.pinDirectory);
    return {
      seconds,
      detail: {
        agentSyncMs: Number(synced.durationMs),
        frontends: Number(synced.frontends),
        failedFrontends: Number(synced.failed),
        mapWrites: Number(synced.operations),
        capacityFlags: capacityFlags(catalog).join(' '),
      },
    };
  }

  async changeEndpoints(catalog: Catalog, k: number): Promise<EndpointChange> {
    const agent = this.#running();
    const port = catalog.churn.ports[0]!;
    const endpoints = churnEndpoints(catalog.churn, k);
    const expected = endpoints
      .map((ip) => `${ip}:${port.targetPort}`)
      .sort()
      .join(',');
    const key = { address: catalog.churn.clusterIP, port: port.port, protocol: port.protocol };
    const from = agent.logs.length;
    const publish = stageServiceManifest(this.#manifests, { ...catalog.churn, endpoints });
    const writtenAt = Date.now();
    const started = performance.now();
    publish();
    // Polled every POLL_INTERVAL_MS by sleeping the thread: a timer's millisecond would blur a latency of a
    // few milliseconds, and a busy loop would take a core from the agent it measures (there are two).
    while (this.#reader?.backends(key)?.join(',') !== expected) {
      if (performance.now() - started > CHANGE_TIMEOUT_MS)
        throw new Error(`socklb: endpoint change ${k} not in the maps after ${CHANGE_TIMEOUT_MS} ms`);
      Atomics.wait(POLL_SLEEPER, 0, 0, POLL_INTERVAL_MS);
    }
    const latencyMs = performance.now() - started;
    const synced = await nextLog(agent, from, (line) => line.msg === 'datapath synced', CHANGE_TIMEOUT_MS);
    // The log line's time (epoch ms, when the sync ended) less the sync itself: when the source's
    // new state reached the agent, so the part before is the manifest source's (watch, debounce, rescan).
    const agentSyncMs = Number(synced.durationMs);
    return { latencyMs, detail: { agentSourceMs: Number(synced.time) - agentSyncMs - writtenAt, agentSyncMs } };
  }

  /** The agent's memory and idle CPU, the maps' memory; then the agent stops (the pinned datapath stays). */
  async finishControlPlane(): Promise<Footprint> {
    const agent = this.#running();
    const pid = agent.process.pid!;
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const cpuBefore = await processCpuUs(pid);
    await sleep(IDLE_WINDOW_MS);
    const idleCpuPercent = ((await processCpuUs(pid)) - cpuBefore) / (IDLE_WINDOW_MS * 10);
    const mapBytes = await pinnedMapMemory(this.pinDirectory);
    await this.#stopAgent();
    return {
      agentRssMiB: statusMiB(status, 'VmRSS'),
      agentPeakRssMiB: statusMiB(status, 'VmHWM'),
      agentIdleCpuPercent: idleCpuPercent,
      programmedFrontends: Number(this.#lastSync?.frontends ?? 0) - Number(this.#lastSync?.failed ?? 0),
      mapMemlockMiB: Object.values(mapBytes).reduce((sum, bytes) => sum + bytes, 0) / 2 ** 20,
      ...Object.fromEntries(Object.entries(mapBytes).map(([name, bytes]) => [`memlockMiB.${name}`, bytes / 2 ** 20])),
    };
  }

  target(service: BenchService, port: BenchPort): Target {
    return { host: service.clusterIP, port: port.port };
  }

  async clear(): Promise<void> {
    await this.#stopAgent();
    const cleanup = await socklb(['cleanup', '--pin-dir', this.pinDirectory]);
    if (cleanup.code !== 0) throw new Error(`socklb cleanup --pin-dir ${this.pinDirectory}: ${cleanup.stderr.trim()}`);
    this.#lastSync = undefined;
    await Promise.all([this.#manifests, `${this.#manifests}.staged`].map((directory) => rm(directory, { recursive: true, force: true })));
  }

  #running(): RunningAgent {
    if (this.#agent === undefined) throw new Error('socklb: the agent is not running; program() first');
    return this.#agent;
  }

  /** SIGTERM, then SIGKILL if the agent is too busy (parsing manifests) to stop soon. */
  async #stopAgent(): Promise<void> {
    this.#reader?.close();
    this.#reader = undefined;
    const agent = this.#agent;
    this.#agent = undefined;
    if (agent === undefined) return;
    const kill = setTimeout(() => void agent.stop('SIGKILL'), AGENT_STOP_TIMEOUT_MS);
    await agent.stop();
    clearTimeout(kill);
  }
}

/**
 * The map capacities an operator would give the agent for this catalog: the defaults while they
 * suffice (so that the footprint is the default one), otherwise what the catalog needs with a
 * quarter to spare (an endpoint change holds its old and new backend for a moment).
 */
function capacityFlags(catalog: Catalog): string[] {
  const ports = catalog.services.flatMap((service) => service.ports.map((port) => ({ port, endpoints: service.endpoints })));
  const needed = {
    frontends: ports.length,
    backends: new Set(ports.flatMap(({ port, endpoints }) => endpoints.map((ip) => `${ip}:${port.targetPort}`))).size,
    slots: ports.reduce((sum, { endpoints }) => sum + endpoints.length, 0),
  };
  return (Object.keys(needed) as (keyof typeof needed)[]).flatMap((map) =>
    needed[map] <= DEFAULT_CAPACITIES[map] ? [] : [`--max-${map}`, String(Math.ceil(needed[map] * 1.25))],
  );
}

/** Resolves to the first log line from index `from` on that `accept`s; rejects if the agent exits first. */
function nextLog(agent: RunningAgent, from: number, accept: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
  return new Promise((resolve, reject) => {
    const stderr = agent.process.stderr;
    const check = () => {
      const line = agent.logs.slice(from).find(accept);
      if (line === undefined) return;
      finish();
      resolve(line);
    };
    const onExit = () => {
      finish();
      reject(new Error(`socklb run exited; last log lines: ${JSON.stringify(agent.logs.slice(-3))}`));
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`socklb: no matching log line within ${timeoutMs} ms; last: ${JSON.stringify(agent.logs.slice(-3))}`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      stderr?.off('data', check);
      agent.process.off('exit', onExit);
    };
    // startAgent's own listener runs first and has parsed the lines by the time this one runs.
    stderr?.on('data', check);
    agent.process.once('exit', onExit);
    check();
  });
}

function statusMiB(status: string, field: string): number {
  const kib = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1];
  return kib === undefined ? Number.NaN : Number(kib) / 1024;
}
