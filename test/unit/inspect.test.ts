// What the inspection commands print, from in-memory maps and made-up pinned
// state: `services -o wide`, `backends`, `status` with and without an agent,
// and the agent's /statusz report and where it is served.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProxyHealth } from '../../src/agent/health.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { agentRoutes } from '../../src/agent/routes.js';
import { AgentStatus } from '../../src/agent/status.js';
import { formatBackendTable, formatFrontendTable, formatStatus, type StatusReport } from '../../src/cli/tables.js';
import { describeBackends, describeFrontends } from '../../src/datapath/dump.js';
import { memoryMaps } from '../../src/datapath/memory-maps.js';
import { reconcile } from '../../src/datapath/reconcile.js';
import { DatapathState } from '../../src/datapath/state.js';
import { frontendId } from '../../src/model/keys.js';
import type { DesiredFrontend } from '../../src/model/types.js';
import type { GuestEntry } from '../../src/sandbox/protocol.js';

const POD_A = { address: '10.244.0.2', port: 8080 };
const POD_B = { address: '10.244.0.3', port: 8080 };

function programmed() {
  const frontends: DesiredFrontend[] = [
    {
      key: { address: '10.96.0.10', port: 80, protocol: 'TCP' },
      service: { namespace: 'default', name: 'web', portName: 'http' },
      backends: [POD_A, POD_B],
      affinityTimeoutSeconds: 10800,
    },
    {
      key: { address: '10.96.0.53', port: 53, protocol: 'UDP' },
      service: { namespace: 'kube-system', name: 'dns', portName: '' },
      backends: [POD_B],
      affinityTimeoutSeconds: 0,
    },
    {
      key: { address: '10.96.0.20', port: 80, protocol: 'TCP' },
      service: { namespace: 'default', name: 'empty', portName: '' },
      backends: [],
      affinityTimeoutSeconds: 0,
    },
  ];
  const desired = new Map(frontends.map((frontend) => [frontendId(frontend.key), frontend]));
  const maps = memoryMaps();
  const state = DatapathState.read(maps);
  reconcile(maps, state, desired, desired.keys());
  return { maps, state };
}

function datapath(): DatapathState {
  return programmed().state;
}

describe('`socklb services`', () => {
  it('-o wide adds the service id, flags, affinity and slot count', () => {
    assert.equal(
      formatFrontendTable(describeFrontends(datapath()), true),
      [
        'FRONTEND           SERVICE           ID  FLAGS  AFFINITY         SLOTS  BACKENDS',
        '10.96.0.10:80/TCP  default/web:http  1   0x0    ClientIP 10800s  2      10.244.0.2:8080,10.244.0.3:8080',
        '10.96.0.20:80/TCP  default/empty     3   0x0    None             0      <none: refuses connections>',
        '10.96.0.53:53/UDP  kube-system/dns   2   0x0    None             1      10.244.0.3:8080',
      ].join('\n'),
    );
  });
});

describe('`socklb backends`', () => {
  it('lists each backend with the frontends and slots that name it', () => {
    const backends = describeBackends(datapath());
    assert.deepEqual(backends, [
      { id: 1, backend: '10.244.0.2:8080', frontends: [{ frontend: '10.96.0.10:80/TCP', service: 'default/web:http', slots: [0] }] },
      {
        id: 2,
        backend: '10.244.0.3:8080',
        frontends: [
          { frontend: '10.96.0.10:80/TCP', service: 'default/web:http', slots: [1] },
          { frontend: '10.96.0.53:53/UDP', service: 'kube-system/dns', slots: [0] },
        ],
      },
    ]);
    assert.equal(
      formatBackendTable(backends),
      [
        'ID  BACKEND          FRONTENDS',
        '1   10.244.0.2:8080  10.96.0.10:80/TCP',
        '2   10.244.0.3:8080  10.96.0.10:80/TCP,10.96.0.53:53/UDP',
      ].join('\n'),
    );
    assert.equal(
      formatBackendTable(backends, true),
      [
        'ID  BACKEND          SERVICES                          FRONTENDS (SLOTS)',
        '1   10.244.0.2:8080  default/web:http                  10.96.0.10:80/TCP[0]',
        '2   10.244.0.3:8080  default/web:http,kube-system/dns  10.96.0.10:80/TCP[1] 10.96.0.53:53/UDP[0]',
      ].join('\n'),
    );
  });
});

describe('`socklb status`', () => {
  const pinned: Omit<StatusReport, 'agent'> = {
    pinDir: '/sys/fs/bpf/socklb',
    attachments: [
      { cgroup: '/sys/fs/cgroup/sandbox', program: 'socklb_connect4', linkId: 12, programId: 40, programTag: '0123456789abcdef' },
      {
        cgroup: '/sys/fs/cgroup/sandbox',
        program: 'socklb_connect6',
        linkId: 0,
        programId: 0,
        programTag: '',
        error: 'open pin x: EPERM',
        problem: { reason: 'link_missing', detail: 'open pin x: EPERM' },
      },
      {
        cgroup: '/sys/fs/cgroup/pod-c1',
        sandbox: 'c1',
        program: 'socklb_connect4',
        linkId: 13,
        programId: 40,
        programTag: '0123456789abcdef',
        problem: { reason: 'link_detached', detail: 'link 13 is attached to no cgroup (detached, or its cgroup was removed)' },
      },
    ],
    maps: [
      { name: 'socklb_fe_v3', type: 'hash', id: 7, entries: 3, capacity: 4 },
      { name: 'socklb_stats_v1', type: 'percpu_array', id: 9, entries: null, capacity: 5 },
    ],
  };

  it('shows a running agent with its problems, then the pinned state', () => {
    const text = formatStatus({
      ...pinned,
      agent: {
        running: true,
        pid: 42,
        startedAt: '2026-01-01T00:00:00.000Z',
        lastSync: '2026-01-01T00:01:00.000Z',
        healthy: true,
        lastUpdated: '2026-01-01T00:00:30.000Z',
        frontends: 3,
        backends: 2,
        failedFrontends: [
          { frontend: '10.96.0.31:80/TCP', error: 'update socklb_fe_v3: E2BIG: map full (4 entries); raise --max-frontends' },
        ],
        failedAddresses: [
          { address: 'cluster IP 10.96.0.31', error: 'update socklb_cip_v1: E2BIG: map full (2 entries); raise --max-frontends' },
        ],
        inputProblems: [{ source: '/etc/socklb/bad.yaml', object: 'Service default/bad', reason: 'spec.clusterIP: not an IP' }],
        attachmentRepairs: [
          {
            kind: 'sandbox',
            sandbox: 'c2',
            cgroup: '/sys/fs/cgroup/pod-c2',
            at: '2026-01-01T00:00:50.000Z',
            reason: 'cgroup_gone',
            detail: 'no cgroup directory at /sys/fs/cgroup/pod-c2',
            outcome: 'removed',
          },
          {
            kind: 'cgroup',
            cgroup: '/sys/fs/cgroup/sandbox',
            at: '2026-01-01T00:00:40.000Z',
            reason: 'link_detached',
            detail: 'socklb_connect6: link 11 is attached to no cgroup (detached, or its cgroup was removed)',
            outcome: 'reattached',
          },
        ],
      },
    });
    assert.equal(
      text,
      [
        'agent: running (pid 42), healthy; last sync 2026-01-01T00:01:00.000Z, all updates in by 2026-01-01T00:00:30.000Z; ' +
          '3 frontends, 2 backends',
        'problem: frontend 10.96.0.31:80/TCP is not in the datapath (retried): update socklb_fe_v3: E2BIG: map full (4 entries); ' +
          'raise --max-frontends',
        'problem: cluster IP 10.96.0.31: its update failed (retried): update socklb_cip_v1: E2BIG: map full (2 entries); raise --max-frontends',
        'problem: /etc/socklb/bad.yaml: Service default/bad: spec.clusterIP: not an IP',
        '',
        'attachments (/sys/fs/bpf/socklb):',
        'CGROUP                  SANDBOX  PROGRAM          LINK                 PROGRAM ID  HEALTH',
        '/sys/fs/cgroup/sandbox  -        socklb_connect4  12                   40          ok',
        '/sys/fs/cgroup/sandbox  -        socklb_connect6  <open pin x: EPERM>  0           link_missing',
        '/sys/fs/cgroup/pod-c1   c1       socklb_connect4  13                   40          link_detached',
        '',
        'repairs (the latest first):',
        '2026-01-01T00:00:50.000Z removed sandbox c2 (cgroup /sys/fs/cgroup/pod-c2): its cgroup is gone',
        '2026-01-01T00:00:40.000Z re-attached cgroup /sys/fs/cgroup/sandbox: link_detached: ' +
          'socklb_connect6: link 11 is attached to no cgroup (detached, or its cgroup was removed)',
        '',
        'maps:',
        'MAP              TYPE          ID  ENTRIES  CAPACITY  FILL   PRESSURE',
        'socklb_fe_v3     hash          7   3        4         75.0%  -',
        'socklb_stats_v1  percpu_array  9   -        5         -      -',
        'pressure: none',
      ].join('\n'),
    );
  });

  it('says an agent before its first sync is not ready, not unhealthy, and that no update is in yet', () => {
    const agent = {
      running: true as const,
      pid: 42,
      startedAt: '2026-01-01T00:00:00.000Z',
      lastSync: null,
      healthy: false,
      lastUpdated: '2026-01-01T00:00:00.000Z',
      frontends: 3,
      backends: 2,
      failedFrontends: [],
      failedAddresses: [],
      inputProblems: [],
      attachmentRepairs: [],
    };
    assert.match(
      formatStatus({ ...pinned, agent }),
      /^agent: running \(pid 42\), not ready: the first sync is not done; last sync not yet; 3 frontends, 2 backends\nproblems: none\n/,
    );
    assert.match(formatStatus({ ...pinned, agent }), /\n\nrepairs: none since the agent started\n\nmaps:\n/);
    assert.match(
      formatStatus({ ...pinned, agent: { ...agent, lastSync: '2026-01-01T00:01:00.000Z' } }),
      /^agent: running \(pid 42\), UNHEALTHY: an update has waited too long; last sync 2026-01-01T00:01:00.000Z, all updates in by 2026-01-01T00:00:00.000Z;/,
    );
  });

  it('flags a full map and an evicting LRU map, each with what it costs and the flag that sizes it', () => {
    const text = formatStatus({
      ...pinned,
      agent: { running: false, reason: 'no answer' },
      maps: [
        { name: 'socklb_conn_v1', type: 'lru_hash', id: 5, entries: 60, capacity: 64, pressure: 'evicting' },
        { name: 'socklb_fe_v3', type: 'hash', id: 7, entries: 4, capacity: 4, pressure: 'full' },
      ],
    });
    assert.equal(
      text.slice(text.indexOf('maps:\n')),
      [
        'maps:',
        'MAP             TYPE      ID  ENTRIES  CAPACITY  FILL    PRESSURE',
        'socklb_conn_v1  lru_hash  5   60       64        93.8%   evicting',
        'socklb_fe_v3    hash      7   4        4         100.0%  full',
        'pressure: socklb_conn_v1 may be evicting (60 of 64 entries): a translated TCP connection whose entry is evicted ' +
          'has getpeername() answer with the backend, not the Service; raise --max-connections',
        "pressure: socklb_fe_v3 is full (4 of 4 entries): the agent's writes to it are refused and retried; raise --max-frontends",
      ].join('\n'),
    );
  });

  it('says when no agent answers, and still shows the pinned state', () => {
    const text = formatStatus({ ...pinned, agent: { running: false, reason: 'no answer at 127.0.0.1:10256 (ECONNREFUSED)' } });
    assert.match(
      text,
      /^agent: not running: no answer at 127\.0\.0\.1:10256 \(ECONNREFUSED\); the pinned datapath keeps serving what it was last given\n\nattachments/,
    );
    assert.match(text, /^socklb_fe_v3 {5}hash/m);
  });
});

describe('AgentStatus (/statusz)', () => {
  it('reports the last sync, the datapath size and what the agent could not do', () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const state = datapath();
    const status = new AgentStatus(
      {
        datapath: state,
        problems: () => [],
        failures: () => [{ frontend: 'f', error: 'e' }],
        addressFailures: () => [{ address: 'a', error: 'e' }],
      },
      { recentRepairs: () => [] },
      () => now,
    );
    const health = { healthy: true, lastUpdated: new Date(now), currentTime: new Date(now) };
    assert.equal(status.report(health).lastSync, null, 'no sync yet');
    now += 5_000;
    status.recordSync();
    const report = status.report(health);
    assert.deepEqual(
      {
        lastSync: report.lastSync,
        startedAt: report.startedAt,
        frontends: report.frontends,
        backends: report.backends,
        failedFrontends: report.failedFrontends,
        failedAddresses: report.failedAddresses,
      },
      {
        lastSync: '2026-01-01T00:00:05.000Z',
        startedAt: '2026-01-01T00:00:00.000Z',
        frontends: 3,
        backends: 2,
        failedFrontends: [{ frontend: 'f', error: 'e' }],
        failedAddresses: [{ address: 'a', error: 'e' }],
      },
    );
  });
});

describe('the per-guest metrics', () => {
  it('gauge what each guest holds now, and count its snapshots as a counter', async () => {
    const { maps, state } = programmed();
    const guest: GuestEntry = {
      id: 'vm1',
      guest: 'vsock:7',
      phase: 'streaming',
      marker: '1/4',
      lag: 0,
      queuedBytes: 12,
      snapshots: 2,
    };
    const metrics = new AgentMetrics(
      { datapath: state, maps, problemCount: () => 0 },
      { failingAttachments: () => [] },
      { list: () => [guest] },
      { check: () => [], capacities: () => [] },
    );
    const text = await metrics.registry.metrics();
    for (const line of [
      '# TYPE socklb_guest_connected gauge',
      'socklb_guest_connected{guest="vm1"} 1',
      'socklb_guest_queued_bytes{guest="vm1"} 12',
      '# TYPE socklb_guest_snapshots_total counter',
      'socklb_guest_snapshots_total{guest="vm1"} 2',
    ])
      assert.ok(text.split('\n').includes(line), `${line} in:\n${text}`);
  });
});

describe("the agent's HTTP routes", () => {
  it('/statusz is served beside /metrics, not on the health address that every pod can reach', async () => {
    const { maps, state } = programmed();
    const problem = { source: '/etc/socklb/bad.yaml', object: 'Service default/bad', reason: 'spec.clusterIP: not an IP' };
    const status = new AgentStatus(
      { datapath: state, problems: () => [problem], failures: () => [], addressFailures: () => [] },
      { recentRepairs: () => [] },
    );
    const health = new ProxyHealth(60_000);
    health.recordSync(false);
    const routes = agentRoutes(
      new AgentMetrics(
        { datapath: state, maps, problemCount: () => 1 },
        { failingAttachments: () => [] },
        { list: () => [] },
        { check: () => [], capacities: () => [] },
      ),
      health,
      status,
    );
    assert.deepEqual(Object.keys(routes.health).sort(), ['/healthz', '/livez']);
    assert.deepEqual(Object.keys(routes.metrics).sort(), ['/metrics', '/statusz']);
    const statusz = await routes.metrics['/statusz']?.();
    assert.equal(statusz?.status, 200);
    assert.deepEqual((JSON.parse(statusz?.body ?? '{}') as { inputProblems: unknown }).inputProblems, [problem]);
    const healthz = await routes.health['/healthz']?.();
    assert.equal(healthz?.status, 200);
    assert.deepEqual(
      Object.keys(JSON.parse(healthz?.body ?? '{}') as object),
      ['lastUpdated', 'currentTime'],
      "kube-proxy's answer, nothing of the agent's state",
    );
  });
});
