// Operating socklb under real load (issue 6): wrk keeps 2000 short connections (Connection: close)
// going from a lab sandbox through a ClusterIP to nginx in lab pods while the agent is killed
// (SIGKILL), stopped (SIGTERM), upgraded to another build of the programs and restarted, and while
// the endpoints churn 100 times a second. Not one connection may fail. The figures are printed
// as the tests' diagnostics.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it, type TestContext } from 'node:test';
import { openPinnedMaps } from '../../src/datapath/kernel-maps.js';
import { MAP_CODECS, MAP_NAMES } from '../../src/datapath/layout.js';
import { DatapathState } from '../../src/datapath/state.js';
import { pinLayout } from '../../src/pins/layout.js';
import { NGINX_POD_SYSCTLS, readAccessLog, startNginx, type Nginx } from '../lab/backends.js';
import type { Pod, Sandbox } from '../lab/lab.js';
import { runWrk, WRK_CLIENT_SYSCTLS, WRK_SCRIPT, WRK_TIMEOUT_S, type WrkOptions, type WrkReport } from '../lab/wrk.js';
import { pinnedLinks, pinnedMapIds, type PinnedLink } from './pins.js';
import { endpointSlice, missingPrivileges, service, socklb, writeManifest, type RunningAgent } from './support.js';
import { Testbed } from './testbed.js';

const skip = missingPrivileges();

/** The same datapath built with other instructions (the Makefile's UPGRADE_TEST_BPF_OBJECTS). */
const UPGRADE_OBJECT = fileURLToPath(new URL('../../bpf-upgrade-test/socklb.bpf.o', import.meta.url));
/** The programs that build differs in: those that look a backend up. */
const UPGRADED_PROGRAM = /^socklb_(connect|sendmsg)[46]$/;

const HTTP = { name: 'http', port: 80, targetPort: 'http' };
const WEB_IP = '10.96.0.10';
const WEB_TARGET_PORT = 8080;
const CHURN_IP = '10.96.0.20';

const LOAD: Omit<WrkOptions, 'url' | 'seconds'> = { threads: 2, connections: 2000, closeEachConnection: true };
const NO_ERRORS: WrkReport['errors'] = { connect: 0, read: 0, write: 0, status: 0, timeout: 0 };
/** A restart's run: the agent goes down after RESTART_AFTER_MS and stays down for DOWN_MS. */
const RESTART_RUN_S = 12;
const RESTART_AFTER_MS = 3_000;
const DOWN_MS = 1_000;
/** A loaded machine starts node, koffi and libbpf slowly. */
const AGENT_START_TIMEOUT_MS = 20_000;

/**
 * The churn: CHURN_RATE manifest writes a second for CHURN_SECONDS, each taking the oldest
 * endpoint out and bringing the next two in, or none: GROW_WRITES writes of one kind, then as many
 * of the other, so that a frontend's count grows and shrinks between MIN_BACKENDS and
 * MIN_BACKENDS + GROW_WRITES as well as having slots rewritten in place (every kind of write the
 * planner orders). Backends are nginx ports on pods, taken in two lanes (so that two pods share
 * the load) of PORTS_PER_POD ports per pod; each backend serves once, and a pod's nginx is stopped
 * once all its backends are out of the datapath.
 */
const CHURN_RATE = 100;
const CHURN_SECONDS = 30;
const MIN_BACKENDS = 20;
const GROW_WRITES = 10;
const LANES = 2;
const PORTS_PER_POD = 300;
const FIRST_PORT = 20_000;
/**
 * How long after the test saw a backend leave the maps a connection may still reach it: one whose
 * connect() was translated just before (the datapath translates at connect(), nginx logs when it
 * accepted). Such a connection is established within microseconds on veth and wrk writes its
 * request at once (SCHEDULING_SLACK_MS allows for wrk waiting for a CPU in between); from then
 * on, an answer later than WRK_TIMEOUT_S is a timeout, an error the tests forbid. So a request
 * accepted later than this was translated after the removal, or it failed. A pod's nginx is
 * stopped this long after its last backend left: a connection after that fails, and wrk counts
 * it. (The test's own lateness in seeing the removal only loosens the check.) The figures print
 * how late the latest connection in flight really was.
 */
const SCHEDULING_SLACK_MS = 500;
const IN_FLIGHT_BOUND_MS = WRK_TIMEOUT_S * 1000 + SCHEDULING_SLACK_MS;
/** nginx writes $msec and $connection_time to the millisecond, each truncated. */
const LOG_RESOLUTION_MS = 2;

interface ChurnBackend {
  readonly index: number;
  readonly pod: number;
  readonly address: string;
  readonly port: number;
  /** Date.now() just before the manifest write that brought it in (or took it out). */
  addedAt?: number;
  removedAt?: number;
  /** When the test first saw the backend map without it. */
  goneAt?: number;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function describeLoad(report: WrkReport): string {
  const { errors, latencyUs } = report;
  return (
    `${report.requests} requests in ${report.durationS.toFixed(1)} s (${Math.round(report.requestsPerSecond)}/s); ` +
    `errors: connect ${errors.connect}, read ${errors.read}, write ${errors.write}, timeout ${errors.timeout}, non-2xx ${errors.status}; ` +
    `latency p50 ${(latencyUs.p50 / 1000).toFixed(1)} ms, p99 ${(latencyUs.p99 / 1000).toFixed(1)} ms, ` +
    `max ${(latencyUs.max / 1000).toFixed(0)} ms`
  );
}

describe('operations under load: restart, upgrade, churn', { skip, concurrency: false }, () => {
  const bed = new Testbed('load');
  const { lab, pinDir } = bed;
  let layoutPinDir: string;
  let manifests: string;
  let workdir: string;
  let wrkScript: string;
  let client: Sandbox;
  let agent: RunningAgent | undefined;
  const agentArgs = () => ['--manifests', manifests, '--cgroup', client.cgroupPath, '--pin-dir', pinDir];

  async function addBackendPod(name: string): Promise<Pod> {
    const pod = await lab.addPod(name);
    await lab.sysctl(pod, NGINX_POD_SYSCTLS);
    return pod;
  }

  before(async () => {
    await bed.prepare();
    layoutPinDir = await bed.extraPinDirectory('load-layout');
    manifests = bed.manifests;
    workdir = await bed.scratchDirectory('load');
    wrkScript = join(workdir, 'wrk-report.lua');
    await writeFile(wrkScript, WRK_SCRIPT);
    const [web1, web2] = await Promise.all(['web-1', 'web-2'].map(addBackendPod));
    client = await lab.addSandbox('client');
    await lab.sysctl(client, WRK_CLIENT_SYSCTLS);
    await Promise.all([web1!, web2!].map((pod) => startNginx(lab, pod, workdir, WEB_TARGET_PORT)));
    await writeManifest(join(manifests, 'web.yaml'), [
      service('web', [WEB_IP], [HTTP]),
      endpointSlice('web', 'web', 'IPv4', [{ name: 'http', port: WEB_TARGET_PORT }], [{ ip: web1!.ipv4 }, { ip: web2!.ipv4 }]),
    ]);
    agent = await bed.startAgent(agentArgs());
  });

  after(() => bed.close());

  /**
   * Runs wrk against the web Service and, meanwhile, stops the agent with `signal` and starts a new
   * one (with `extraArgs`); checks that no connection failed and that the pinned maps and links
   * are the same objects afterwards. Resolves to the links before and after.
   */
  async function restartUnderLoad(
    t: TestContext,
    signal: NodeJS.Signals,
    extraArgs: string[] = [],
  ): Promise<{ before: PinnedLink[]; after: PinnedLink[] }> {
    const mapIds = pinnedMapIds(pinDir);
    const linksBefore = pinnedLinks(pinDir);
    const load = runWrk(lab, client, { url: `http://${WEB_IP}/`, seconds: RESTART_RUN_S, ...LOAD }, wrkScript);
    const started = performance.now();
    await sleep(RESTART_AFTER_MS);
    await agent?.stop(signal);
    const stoppedAt = performance.now();
    await sleep(DOWN_MS);
    agent = await bed.startAgent([...agentArgs(), ...extraArgs], { timeoutMs: AGENT_START_TIMEOUT_MS });
    const servingAt = performance.now();
    const report = await load;
    const endedAt = performance.now();
    const seconds = (at: number) => ((at - started) / 1000).toFixed(1);
    t.diagnostic(
      `agent stopped (${signal}) at ${seconds(stoppedAt)} s, the new one serving at ${seconds(servingAt)} s, ` +
        `load ended at ${seconds(endedAt)} s`,
    );
    t.diagnostic(describeLoad(report));

    assert.ok(servingAt < endedAt - 1_000, 'the new agent took over while the load still ran');
    assert.deepEqual(report.errors, NO_ERRORS);
    assert.ok(report.requests > 1_000, `the load ran: ${report.requests} requests`);
    assert.deepEqual(pinnedMapIds(pinDir), mapIds, 'the same pinned maps (kernel ids) as before');
    const linksAfter = pinnedLinks(pinDir);
    const linkIds = (links: PinnedLink[]) => links.map(({ cgroup, program, linkId }) => ({ cgroup, program, linkId }));
    assert.deepEqual(linkIds(linksAfter), linkIds(linksBefore), 'the same pinned links (kernel ids) as before');
    for (const [i, link] of linksAfter.entries()) {
      assert.notEqual(
        link.programId,
        linksBefore[i]?.programId,
        `${link.cgroup} ${link.program}: the new agent's program was swapped into the link`,
      );
    }
    const synced = agent.logs.filter((line) => line.msg === 'datapath synced');
    assert.deepEqual(
      synced.map(({ frontends, operations }) => ({ frontends, operations })),
      [{ frontends: 0, operations: 0 }],
      'the new agent adopted the maps without rewriting an entry',
    );
    return { before: linksBefore, after: linksAfter };
  }

  it('serves every connection while the agent is killed (SIGKILL) and restarted', async (t) => {
    const links = await restartUnderLoad(t, 'SIGKILL');
    assert.deepEqual(
      links.after.map((link) => link.programTag),
      links.before.map((link) => link.programTag),
      'the same build runs',
    );
  });

  it('serves every connection while the agent is stopped (SIGTERM) and restarted', async (t) => {
    const links = await restartUnderLoad(t, 'SIGTERM');
    assert.deepEqual(
      links.after.map((link) => link.programTag),
      links.before.map((link) => link.programTag),
      'the same build runs',
    );
  });

  it('serves every connection while the agent is upgraded to another build of the programs', async (t) => {
    assert.ok(existsSync(UPGRADE_OBJECT), `${UPGRADE_OBJECT} is missing: run \`make build\``);
    const links = await restartUnderLoad(t, 'SIGTERM', ['--bpf-object', UPGRADE_OBJECT]);
    for (const [i, link] of links.after.entries()) {
      const changed = UPGRADED_PROGRAM.test(link.program);
      assert.equal(
        link.programTag !== links.before[i]?.programTag,
        changed,
        `${link.cgroup} ${link.program}: ${changed ? 'the new build' : 'the same instructions'} in the link`,
      );
    }
    t.diagnostic(
      `program ids before: ${links.before.map((link) => link.programId).join(' ')}; ` +
        `after: ${links.after.map((link) => link.programId).join(' ')}`,
    );
  });

  it('refuses a pinned map of another layout, says which and why, and leaves it as it was', async () => {
    const maps = pinLayout(layoutPinDir).maps;
    await mkdir(maps, { recursive: true, mode: 0o700 });
    const name = MAP_NAMES.backends;
    const valueSize = MAP_CODECS.backends.value.size + 8;
    execFileSync('bpftool', [
      'map',
      'create',
      `${maps}/${name}`,
      'type',
      'hash',
      'key',
      String(MAP_CODECS.backends.key.size),
      'value',
      String(valueSize),
      'entries',
      '64',
      'name',
      name,
    ]);
    const before = pinnedMapIds(layoutPinDir);
    const result = await socklb([
      'run',
      '--manifests',
      manifests,
      '--cgroup',
      client.cgroupPath,
      '--pin-dir',
      layoutPinDir,
      '--metrics-bind-address',
      '',
      '--healthz-bind-address',
      '',
    ]);
    assert.equal(result.code, 1);
    const expected =
      `${maps}/${name}: map ${name} has key/value sizes ${MAP_CODECS.backends.key.size}/${valueSize}, ` +
      `this build expects ${name} with ${MAP_CODECS.backends.key.size}/${MAP_CODECS.backends.value.size}; ` +
      `run \`socklb cleanup\` with the build that pinned it`;
    assert.ok(result.stderr.includes(`socklb: ${expected}\n`), `stderr: ${result.stderr}`);
    assert.deepEqual(pinnedMapIds(layoutPinDir), before, 'the same map stays pinned, and nothing else was pinned');
    assert.deepEqual(readdirSync(pinLayout(layoutPinDir).links), [], 'nothing was attached');
  });

  it('serves every connection, and none to a removed backend, while endpoints churn 100 times a second', async (t) => {
    const ticks = CHURN_RATE * CHURN_SECONDS;
    const backends: ChurnBackend[] = [];
    // As many additions as removals, over a whole number of grow-and-shrink cycles.
    const additionsOf = (tick: number) => (Math.floor(tick / GROW_WRITES) % 2 === 0 ? 2 : 0);
    const total = MIN_BACKENDS + ticks;
    const podCount = LANES * Math.ceil(total / LANES / PORTS_PER_POD);
    const pods = await Promise.all(Array.from({ length: podCount }, (_, i) => addBackendPod(`churn-${i + 1}`)));
    for (let index = 0; index < total; index++) {
      const perLane = Math.floor(index / LANES);
      const pod = LANES * Math.floor(perLane / PORTS_PER_POD) + (index % LANES);
      backends.push({ index, pod, address: pods[pod]!.ipv4, port: FIRST_PORT + (perLane % PORTS_PER_POD) });
    }
    const portsOf = (pod: number) => backends.filter((backend) => backend.pod === pod).map((backend) => backend.port);
    const servers: Nginx[] = await Promise.all(pods.map((pod, i) => startNginx(lab, pod, workdir, portsOf(i), { accessLog: true })));
    const notGoneYet = pods.map((_, i) => portsOf(i).length);
    const stopped: Promise<void>[] = [];
    const churnManifest = join(manifests, 'churn.json');
    const writeChurn = (active: ChurnBackend[]) =>
      writeManifest(churnManifest, [
        service('churn', [CHURN_IP], [HTTP]),
        // One slice per backend: a slice has one port for all its endpoints.
        ...active.map((backend) =>
          endpointSlice(`churn-${backend.index}`, 'churn', 'IPv4', [{ name: 'http', port: backend.port }], [{ ip: backend.address }]),
        ),
      ]);

    const maps = openPinnedMaps(pinDir);
    try {
      const initial = backends.slice(0, MIN_BACKENDS);
      const writtenAt = Date.now();
      for (const backend of initial) backend.addedAt = writtenAt;
      await writeChurn(initial);
      for (
        let state = DatapathState.read(maps);
        initial.some((backend) => state.backendIdOf(backend) === undefined);
        state = DatapathState.read(maps)
      ) {
        assert.ok(Date.now() - writtenAt < 10_000, 'the churned Service reaches the datapath');
        await sleep(10);
      }

      // Reads the maps as the programs do and notes every removed backend that is no longer there;
      // a pod whose backends are all gone is stopped IN_FLIGHT_BOUND_MS later.
      const leaving = new Set<ChurnBackend>();
      const observe = () => {
        if (leaving.size === 0) return;
        const state = DatapathState.read(maps);
        const now = Date.now();
        for (const backend of leaving) {
          if (state.backendIdOf(backend) !== undefined) continue;
          backend.goneAt = now;
          leaving.delete(backend);
          if (--notGoneYet[backend.pod]! === 0) stopped.push(sleep(IN_FLIGHT_BOUND_MS).then(() => servers[backend.pod]!.stop()));
        }
      };

      const load = runWrk(lab, client, { url: `http://${CHURN_IP}/`, seconds: CHURN_SECONDS + 3, ...LOAD }, wrkScript);
      await sleep(1_000);
      const syncsBefore = agent!.logs.length;
      const started = performance.now();
      let added = MIN_BACKENDS;
      let largest = 0;
      for (let tick = 0; tick < ticks; tick++) {
        const wait = started + (tick * 1000) / CHURN_RATE - performance.now();
        if (wait > 0) await sleep(wait);
        const out = backends[tick]!;
        const into = backends.slice(added, (added += additionsOf(tick)));
        out.removedAt = Date.now();
        for (const backend of into) backend.addedAt = out.removedAt;
        const active = backends.slice(tick + 1, added);
        largest = Math.max(largest, active.length);
        await writeChurn(active);
        leaving.add(out);
        observe();
      }
      assert.equal(added, total, 'as many additions as removals');
      const churnSeconds = (performance.now() - started) / 1000;
      const deadline = Date.now() + 10_000;
      while (leaving.size > 0 && Date.now() < deadline) {
        await sleep(5);
        observe();
      }
      assert.equal(leaving.size, 0, 'every removed backend left the datapath');
      const report = await load;
      await Promise.all(stopped);

      // Every request each nginx answered, checked against its backend's life in the datapath.
      const byAddress = new Map(backends.map((backend) => [`${backend.address}:${backend.port}`, backend]));
      let logged = 0;
      const late: { backend: string; afterMs: number }[] = [];
      const early: string[] = [];
      const lagsAfterGone: number[] = [];
      for (const server of servers) {
        for (const request of await readAccessLog(server)) {
          logged++;
          const backend = byAddress.get(`${server.pod.ipv4}:${request.port}`)!;
          if (request.acceptedAtMs < backend.addedAt! - LOG_RESOLUTION_MS)
            early.push(`${server.pod.ipv4}:${request.port} accepted ${backend.addedAt! - request.acceptedAtMs} ms before it was added`);
          if (backend.goneAt === undefined || request.acceptedAtMs <= backend.goneAt) continue;
          lagsAfterGone.push(request.acceptedAtMs - backend.goneAt);
          if (request.acceptedAtMs > backend.goneAt + IN_FLIGHT_BOUND_MS + LOG_RESOLUTION_MS)
            late.push({ backend: `${server.pod.ipv4}:${request.port}`, afterMs: request.acceptedAtMs - backend.goneAt });
        }
      }

      const removed = backends.filter((backend) => backend.goneAt !== undefined);
      const removalMs = removed.map((backend) => backend.goneAt! - backend.removedAt!);
      const syncs = agent!.logs.slice(syncsBefore).filter((line) => line.msg === 'datapath synced');
      t.diagnostic(
        `churn: ${ticks} manifest writes in ${churnSeconds.toFixed(1)} s (${(ticks / churnSeconds).toFixed(1)}/s), ` +
          `each one endpoint out and two or none in: ` +
          `${total - MIN_BACKENDS} additions and ${removed.length} removals ` +
          `(${((total - MIN_BACKENDS + removed.length) / churnSeconds).toFixed(0)} endpoint changes a second), ` +
          `${MIN_BACKENDS} to ${largest} endpoints at a time, ${backends.length} backends on ${pods.length} pods, ` +
          `${stopped.length} pods stopped after their backends left`,
      );
      t.diagnostic(
        `agent: ${syncs.length} syncs (${(syncs.length / churnSeconds).toFixed(1)}/s), ` +
          `${syncs.reduce((sum, line) => sum + Number(line.operations), 0)} map writes; ` +
          `a removal out of the maps after p50 ${percentile(removalMs, 50)} ms, p99 ${percentile(removalMs, 99)} ms, ` +
          `max ${Math.max(...removalMs)} ms (manifest write to the test seeing it)`,
      );
      t.diagnostic(describeLoad(report));
      t.diagnostic(
        `nginx logged ${logged} requests; ${lagsAfterGone.length} accepted after their backend left the maps ` +
          `(connects already in flight), ` +
          `at most ${lagsAfterGone.length > 0 ? Math.max(...lagsAfterGone) : 0} ms after (bound ${IN_FLIGHT_BOUND_MS} ms)`,
      );

      assert.deepEqual(report.errors, NO_ERRORS);
      assert.ok(ticks / churnSeconds >= CHURN_RATE * 0.9, `the churn ran at ${(ticks / churnSeconds).toFixed(1)} changes a second`);
      assert.ok(logged >= report.requests, `nginx logged every request wrk counted (${logged} against ${report.requests})`);
      assert.deepEqual(early, [], 'no backend was reached before it was added');
      const latest = late.sort((a, b) => b.afterMs - a.afterMs).slice(0, 5);
      assert.deepEqual(
        latest,
        [],
        `no connection reached a removed backend (${late.length} did; the latest, ms after their backend left the maps, above)`,
      );
    } finally {
      maps.close();
      await rm(churnManifest, { force: true });
    }
  });
});
