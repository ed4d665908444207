// The inspection commands and the per-frontend counters on a live datapath:
// real connections and datagrams from a lab sandbox through ClusterIPs, then
// `socklb stats` and /metrics must count exactly what was sent; `status`
// with the agent up and after it was killed; `backends -o json`; a whole read
// of the kernel's counter array over several batches.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readCounters, type FrontendStats } from '../../src/datapath/counters.js';
import type { BackendDescription } from '../../src/datapath/dump.js';
import { KernelMap } from '../../src/datapath/kernel-maps.js';
import { MAP_CODECS, MAP_NAMES, statsCodec, ZERO_COUNTERS } from '../../src/datapath/layout.js';
import { DEFAULT_CAPACITIES, roleCapacity } from '../../src/datapath/maps.js';
import { libbpf } from '../../src/kernel/libbpf.js';
import { libcCalls } from '../../src/kernel/libc.js';
import type { StatusReport } from '../../src/cli/tables.js';
import type { Pod, Sandbox } from '../lab/lab.js';
import {
  endpointSlice,
  missingPrivileges,
  service,
  socklb,
  testPinDirectory,
  waitForServices,
  writeManifest,
  type RunningAgent,
} from './support.js';
import { Testbed } from './testbed.js';
import { runSocketClient } from './udp-support.js';

const skip = missingPrivileges();

const WEB_IP = '10.96.0.10';
const DNS_IP = '10.96.0.53';
const EMPTY_IP = '10.96.0.20';
const HTTP = { name: 'http', port: 80 };
const SLICE_HTTP = { name: 'http', port: 8080 };
const DNS = { name: 'dns', port: 53, protocol: 'UDP' as const };
const SLICE_DNS = { name: 'dns', port: 8080, protocol: 'UDP' as const };
// Room for the three Services and one more: a fifth frontend does not fit.
const MAX_FRONTENDS = 4;

async function json<T>(args: string[]): Promise<T> {
  const result = await socklb(args);
  assert.equal(result.code, 0, `socklb ${args.join(' ')}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

describe('inspection and counters on a live datapath', { skip, concurrency: false }, () => {
  const bed = new Testbed('inspect');
  const { lab, pinDir } = bed;
  let manifests: string;
  let pods: Pod[] = [];
  let sandbox: Sandbox;
  let agent: RunningAgent | undefined;

  const stats = () => json<FrontendStats[]>(['stats', '-o', 'json', '--pin-dir', pinDir]);
  const status = (metricsPort: number) =>
    json<StatusReport>(['status', '-o', 'json', '--pin-dir', pinDir, '--metrics-bind-address', `127.0.0.1:${metricsPort}`]);

  before(async () => {
    await bed.prepare();
    manifests = bed.manifests;
    pods = await Promise.all(['pod-a', 'pod-b'].map((name) => lab.addPod(name)));
    sandbox = await lab.addSandbox('sandbox');
    await Promise.all(pods.map((pod) => lab.startEchoServer(pod, { name: pod.name, port: 8080, udp: true })));
    const ready = pods.map((pod) => ({ ip: pod.ipv4 }));
    await writeManifest(join(manifests, 'services.yaml'), [
      service('web', [WEB_IP], [HTTP]),
      endpointSlice('web-a', 'web', 'IPv4', [SLICE_HTTP], ready),
      service('dns', [DNS_IP], [DNS]),
      endpointSlice('dns-a', 'dns', 'IPv4', [SLICE_DNS], ready),
      service('empty', [EMPTY_IP], [HTTP]),
    ]);
    agent = await bed.startAgent([
      '--manifests',
      manifests,
      '--cgroup',
      sandbox.cgroupPath,
      '--pin-dir',
      pinDir,
      '--max-frontends',
      String(MAX_FRONTENDS),
    ]);
  });

  after(() => bed.close());

  it('counts every connect, refusal, datagram and reverse-NAT rewrite, per frontend in `socklb stats` and /metrics', async () => {
    const web = await lab.runClient(sandbox, { target: WEB_IP, port: 80, count: 20 });
    assert.deepEqual(web.errors, {});
    const refused = await lab.runClient(sandbox, { target: EMPTY_IP, port: 80, count: 7 });
    assert.deepEqual(refused.errors, { ECONNREFUSED: 7 });
    // One unconnected socket: 15 sendto() to the Service, 15 replies read with recvfrom().
    const datagrams = await runSocketClient<{ replies: unknown[]; errors: object }>(lab, sandbox, [
      'multi',
      '--targets',
      Array(15).fill(`${DNS_IP}:53`).join(','),
    ]);
    assert.equal(datagrams.replies.length, 15);
    // A process outside the attached cgroup is not translated, so not counted.
    await lab.runClient(sandbox, { target: WEB_IP, port: 80, count: 3 }, { inCgroup: false });

    const counted = (await stats()).map(({ frontend, service, connects, refused, datagrams, reverseNat }) => ({
      frontend,
      service,
      connects,
      refused,
      datagrams,
      reverseNat,
    }));
    assert.deepEqual(counted, [
      // Each HTTP client reads its peer once (getpeername), each datagram's sender once (recvfrom).
      { frontend: `${DNS_IP}:53/UDP`, service: 'default/dns:dns', connects: 0, refused: 0, datagrams: 15, reverseNat: 15 },
      { frontend: `${EMPTY_IP}:80/TCP`, service: 'default/empty:http', connects: 0, refused: 7, datagrams: 0, reverseNat: 0 },
      { frontend: `${WEB_IP}:80/TCP`, service: 'default/web:http', connects: 20, refused: 0, datagrams: 0, reverseNat: 20 },
      // Service id 0: no call went to a service address that no frontend serves.
      { frontend: '', service: '', connects: 0, refused: 0, datagrams: 0, reverseNat: 0 },
    ]);

    const metrics = await (await fetch(`http://127.0.0.1:${agent?.metricsPort}/metrics`)).text();
    const series = (name: string, service: string, port: string, protocol: string, frontend: string) =>
      new RegExp(
        `^${name}\\{namespace="default",service="${service}",port="${port}",protocol="${protocol}",` +
          `frontend="${frontend.replace(/\./g, '\\.')}"\\} (\\d+)$`,
        'm',
      ).exec(metrics)?.[1];
    assert.equal(series('socklb_connections_translated_total', 'web', 'http', 'TCP', `${WEB_IP}:80/TCP`), '20');
    assert.equal(series('socklb_reverse_nat_total', 'web', 'http', 'TCP', `${WEB_IP}:80/TCP`), '20');
    assert.equal(series('socklb_connections_refused_total', 'empty', 'http', 'TCP', `${EMPTY_IP}:80/TCP`), '7');
    assert.equal(series('socklb_datagrams_translated_total', 'dns', 'dns', 'UDP', `${DNS_IP}:53/UDP`), '15');
    assert.equal(series('socklb_reverse_nat_total', 'dns', 'dns', 'UDP', `${DNS_IP}:53/UDP`), '15');
  });

  it('`backends -o json` lists each backend with its id and the frontends whose slots name it', async () => {
    const backends = await json<BackendDescription[]>(['backends', '-o', 'json', '--pin-dir', pinDir]);
    const byBackend = Object.fromEntries(
      backends.map((backend) => [
        backend.backend,
        backend.frontends.map((user) => `${user.service} ${user.frontend} slots ${user.slots.length}`),
      ]),
    );
    assert.deepEqual(
      byBackend,
      Object.fromEntries(
        pods.map((pod) => [`${pod.ipv4}:8080`, [`default/web:http ${WEB_IP}:80/TCP slots 1`, `default/dns:dns ${DNS_IP}:53/UDP slots 1`]]),
      ),
    );
    assert.deepEqual(backends.map((backend) => backend.id).sort(), [1, 2], 'ids as the planner allocates them, from 1');
    const wide = await socklb(['backends', '-o', 'wide', '--pin-dir', pinDir]);
    assert.match(wide.stdout, /^ID\s+BACKEND\s+SERVICES\s+FRONTENDS \(SLOTS\)$/m);
  });

  it("`status` shows the agent, its problems, every attachment and each map's fill", async () => {
    // A fifth frontend does not fit in --max-frontends 4; a broken object is rejected.
    const extra = join(manifests, 'extra.yaml');
    await writeManifest(extra, [
      service('one-more', ['10.96.0.30'], [HTTP]),
      service('too-many', ['10.96.0.31'], [HTTP]),
      service('bad', ['10.96.0.999'], [HTTP]),
    ]);
    await waitForServices(pinDir, (frontends) => frontends.length === MAX_FRONTENDS);
    // The status names rejected objects and kernel errors: not on the health address, which every pod can reach.
    assert.equal((await fetch(`http://127.0.0.1:${agent?.healthzPort}/statusz`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${agent?.healthzPort}/healthz`)).status, 200);
    const report = await status(agent?.metricsPort ?? 0);
    assert.ok(report.agent.running, 'the agent answers');
    if (!report.agent.running) return;
    assert.equal(report.agent.frontends, MAX_FRONTENDS);
    assert.ok(report.agent.lastSync !== null && Date.parse(report.agent.lastSync) <= Date.now());
    // Which of the two is planned first is not specified: exactly one fits.
    assert.equal(report.agent.failedFrontends.length, 1);
    const [failed] = report.agent.failedFrontends;
    assert.ok(['10.96.0.30:80/TCP', '10.96.0.31:80/TCP'].includes(failed?.frontend ?? ''), JSON.stringify(failed));
    assert.match(failed?.error ?? '', /map full \(\d+ entries\); raise --max-frontends/);
    assert.deepEqual(
      report.agent.inputProblems.map((problem) => problem.object),
      ['Service default/bad'],
    );
    // Nine programs (connect, sendmsg, recvmsg, getpeername, each family; sock_release) on the sandbox's cgroup.
    assert.deepEqual(new Set(report.attachments.map((link) => link.cgroup)), new Set([sandbox.cgroupPath]));
    assert.equal(report.attachments.length, 9);
    for (const link of report.attachments) assert.ok(link.linkId > 0 && link.programId > 0, `${link.program} has a link and a program id`);
    const maps = Object.fromEntries(report.maps.map((map) => [map.name, [map.entries, map.capacity]]));
    assert.deepEqual(maps.socklb_fe_v3, [MAX_FRONTENDS, MAX_FRONTENDS]);
    assert.deepEqual(maps.socklb_be_v2, [2, 65536]);
    assert.deepEqual(maps.socklb_stats_v1, [null, roleCapacity('stats', { ...DEFAULT_CAPACITIES, frontends: MAX_FRONTENDS })]);

    const text = await socklb(['status', '--pin-dir', pinDir, '--metrics-bind-address', `127.0.0.1:${agent?.metricsPort}`]);
    assert.match(text.stdout, /^agent: running \(pid \d+\), healthy/m);
    assert.match(text.stdout, /^problem: frontend 10\.96\.0\.3[01]:80\/TCP is not in the datapath \(retried\): .*map full/m);
    assert.match(text.stdout, /^socklb_fe_v3\s+hash\s+\d+\s+4\s+4\s+100\.0%\s+full$/m);
    assert.equal(report.maps.find((map) => map.name === 'socklb_fe_v3')?.pressure, 'full');
    assert.match(text.stdout, /^pressure: socklb_fe_v3 is full \(4 of 4 entries\): .*; raise --max-frontends$/m);
    await rm(extra);
    await waitForServices(pinDir, (frontends) => frontends.length === 3);
  });

  it('a reused service id starts its counters from zero', async () => {
    const before = await stats();
    const webId = before.find((row) => row.service === 'default/web:http')?.serviceId;
    // web leaves; in a later sync a new Service takes the lowest free id: web's.
    await writeManifest(join(manifests, 'services.yaml'), [
      service('dns', [DNS_IP], [DNS]),
      endpointSlice(
        'dns-a',
        'dns',
        'IPv4',
        [SLICE_DNS],
        pods.map((pod) => ({ ip: pod.ipv4 })),
      ),
      service('empty', [EMPTY_IP], [HTTP]),
    ]);
    await waitForServices(pinDir, (frontends) => !frontends.some((frontend) => frontend.service === 'default/web:http'));
    await writeManifest(join(manifests, 'api.yaml'), [
      service('api', ['10.96.0.40'], [HTTP]),
      endpointSlice(
        'api-a',
        'api',
        'IPv4',
        [SLICE_HTTP],
        pods.map((pod) => ({ ip: pod.ipv4 })),
      ),
    ]);
    await waitForServices(pinDir, (frontends) => frontends.some((frontend) => frontend.service === 'default/api:http'));
    const api = (await stats()).find((row) => row.service === 'default/api:http');
    assert.equal(api?.serviceId, webId, 'the freed id was handed out again');
    assert.deepEqual([api?.connects, api?.reverseNat], [0, 0]);
    const report = await lab.runClient(sandbox, { target: '10.96.0.40', port: 80, count: 4 });
    assert.deepEqual(report.errors, {});
    assert.equal((await stats()).find((row) => row.service === 'default/api:http')?.connects, 4);
  });

  it('`status` after the agent was killed says so and still shows the pinned datapath, which keeps serving', async () => {
    const metricsPort = agent?.metricsPort ?? 0;
    await agent?.stop('SIGKILL');
    agent = undefined;
    const report = await status(metricsPort);
    assert.equal(report.agent.running, false);
    assert.equal(report.attachments.length, 9);
    assert.equal(report.maps.find((map) => map.name === 'socklb_fe_v3')?.entries, 3);
    const text = await socklb(['status', '--pin-dir', pinDir, '--metrics-bind-address', `127.0.0.1:${metricsPort}`]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /^agent: not running: no answer at 127\.0\.0\.1:\d+ \(ECONNREFUSED\); the pinned datapath keeps serving/m);
    const served = await lab.runClient(sandbox, { target: '10.96.0.40', port: 80, count: 5 });
    assert.deepEqual(served.errors, {});
    assert.equal(
      (await stats()).find((row) => row.service === 'default/api:http')?.connects,
      9,
      'the programs count with no agent running',
    );
  });

  it('every inspection command refuses clearly when nothing is pinned', async () => {
    for (const command of ['status', 'services', 'backends', 'stats']) {
      const result = await socklb([command, '--pin-dir', `${pinDir}-absent`]);
      assert.equal(result.code, 1, command);
      assert.match(
        result.stderr,
        /^socklb: no socklb datapath pinned at .*-absent\/maps.* \(ENOENT\); start one with `socklb run`\n$/,
        command,
      );
    }
  });
});

describe('a whole read of the kernel counter array', { skip }, () => {
  it('reads across batches of 4096 exactly what was counted, every CPU summed', async () => {
    const path = testPinDirectory('batched-stats');
    const entries = 10_000;
    execFileSync('bpftool', [
      'map',
      'create',
      path,
      'type',
      'percpu_array',
      'key',
      '4',
      'value',
      String(statsCodec.size),
      'entries',
      String(entries),
      'name',
      MAP_NAMES.stats,
    ]);
    const fd = libbpf.objGet(path);
    try {
      assert.ok(fd >= 0, `open ${path}`);
      const stats = new KernelMap(fd);
      // The ends of each batch, and ids inside the second and third.
      const counted = [1, 4095, 4096, 4097, 5000, 8191, 8192, 9999];
      for (const id of counted) {
        const copies = Array.from({ length: stats.valuesPerKey }, (_, cpu) =>
          statsCodec.encode({ ...ZERO_COUNTERS, connects: id, datagrams: cpu + 1 }),
        );
        stats.update(MAP_CODECS.stats.key.encode(id), Buffer.concat(copies));
      }
      const ids = Array.from({ length: entries - 1 }, (_, index) => index + 1);
      const whole = readCounters(stats, ids);
      const cpus = stats.valuesPerKey;
      const expected = new Map(
        ids.map((id) => [
          id,
          counted.includes(id) ? { ...ZERO_COUNTERS, connects: id * cpus, datagrams: (cpus * (cpus + 1)) / 2 } : ZERO_COUNTERS,
        ]),
      );
      assert.deepEqual(whole, expected);
    } finally {
      if (fd >= 0) libcCalls.close(fd);
      await rm(path, { force: true });
    }
  });
});
