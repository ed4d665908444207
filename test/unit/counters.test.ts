// The per-frontend counters on in-memory maps: the per-CPU codec, reading
// (by lookups and by a whole-map read), naming per frontend (for `socklb
// stats` and for /metrics), the reset of a reused service id, and their metrics at scrape time.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { formatStatsTable } from '../../src/cli/tables.js';
import { countersByFrontend, describeStats, readCounters } from '../../src/datapath/counters.js';
import { MAP_CODECS, statsCodec, sumPerCpu, ZERO_COUNTERS, type FrontendCounters } from '../../src/datapath/layout.js';
import type { BpfMap } from '../../src/datapath/maps.js';
import { memoryMaps } from '../../src/datapath/memory-maps.js';
import { reconcile } from '../../src/datapath/reconcile.js';
import { DatapathState } from '../../src/datapath/state.js';
import { frontendId } from '../../src/model/keys.js';
import type { DesiredFrontend, FrontendKey } from '../../src/model/types.js';

const CPUS = 2;

/** What the programs would have counted: `perCpu[cpu]` is one CPU's copy. */
function count(stats: BpfMap, serviceId: number, perCpu: Partial<FrontendCounters>[]): void {
  stats.update(
    MAP_CODECS.stats.key.encode(serviceId),
    Buffer.concat(perCpu.map((counters) => statsCodec.encode({ ...ZERO_COUNTERS, ...counters }))),
  );
}

function frontend(address: string, port: number, protocol: 'TCP' | 'UDP', name: string, portName: string): DesiredFrontend {
  const key: FrontendKey = { address, port, protocol };
  return {
    key,
    service: { namespace: 'default', name, portName },
    backends: [{ address: '10.244.0.2', port: 8080 }],
    affinityTimeoutSeconds: 0,
  };
}

function desiredOf(...frontends: DesiredFrontend[]): Map<string, DesiredFrontend> {
  return new Map(frontends.map((f) => [frontendId(f.key), f]));
}

/** Maps and state holding `frontends`, as the agent would have written them. */
function programmed(...frontends: DesiredFrontend[]) {
  const maps = memoryMaps({}, CPUS);
  const state = DatapathState.read(maps);
  const desired = desiredOf(...frontends);
  assert.equal(reconcile(maps, state, desired, desired.keys()).failed.size, 0);
  const idOf = (address: string, port: number, protocol: 'TCP' | 'UDP') =>
    state.frontends.get(frontendId({ address, port, protocol }))?.serviceId ?? -1;
  return { maps, state, idOf };
}

const WEB_V4 = frontend('10.96.0.10', 80, 'TCP', 'web', 'http');
const WEB_V6 = frontend('fd00:96::10', 80, 'TCP', 'web', 'http');
const DNS = frontend('10.96.0.53', 53, 'UDP', 'dns', 'dns');

describe('struct socklb_stats, one copy per CPU', () => {
  it('decodes what it encodes', () => {
    const counters = { connects: 1, refused: 2, datagrams: 3, reverseNat: 2 ** 40 + 7 };
    assert.deepEqual(statsCodec.decode(statsCodec.encode(counters)), counters);
  });

  it('sums the copies of every CPU', () => {
    const value = Buffer.concat([
      statsCodec.encode({ ...ZERO_COUNTERS, connects: 5, reverseNat: 1 }),
      statsCodec.encode({ ...ZERO_COUNTERS, connects: 7, refused: 2 }),
    ]);
    assert.deepEqual(sumPerCpu(value), { connects: 12, refused: 2, datagrams: 0, reverseNat: 1 });
  });
});

describe('readCounters', () => {
  it('gives 0 for an id the map has no entry for', () => {
    const { maps } = programmed();
    assert.deepEqual(readCounters(maps.stats, [7]), new Map([[7, ZERO_COUNTERS]]));
  });

  it('reads the same by lookups and by a whole-map read (past 1024 ids)', () => {
    const { maps } = programmed();
    const ids = Array.from({ length: 1500 }, (_, index) => index + 1);
    for (const id of ids) if (id % 3 === 0) count(maps.stats, id, [{ connects: id }, { datagrams: 1 }]);
    const whole = readCounters(maps.stats, ids);
    const byLookups = new Map(ids.flatMap((id) => [...readCounters(maps.stats, [id])]));
    assert.equal(whole.size, 1500);
    assert.deepEqual(whole, byLookups);
    assert.deepEqual(whole.get(300), { connects: 300, refused: 0, datagrams: 1, reverseNat: 0 });
  });
});

describe('counters by frontend', () => {
  it('`socklb stats` names each frontend, sorted by Service then frontend', () => {
    const { maps, state, idOf } = programmed(WEB_V4, WEB_V6, DNS);
    count(maps.stats, idOf('10.96.0.10', 80, 'TCP'), [{ connects: 3, reverseNat: 3 }, { connects: 2 }]);
    count(maps.stats, idOf('10.96.0.53', 53, 'UDP'), [{ datagrams: 9, reverseNat: 9 }, { refused: 1 }]);
    count(maps.stats, 0, [{ refused: 4 }, { refused: 2 }]);
    const rows = describeStats(state, maps.stats);
    assert.deepEqual(rows, [
      { frontend: '10.96.0.53:53/UDP', service: 'default/dns:dns', serviceId: 3, connects: 0, refused: 1, datagrams: 9, reverseNat: 9 },
      // The frontends' order is `socklb services`' (localeCompare, which passes over the bracket).
      { frontend: '[fd00:96::10]:80/TCP', service: 'default/web:http', serviceId: 2, connects: 0, refused: 0, datagrams: 0, reverseNat: 0 },
      { frontend: '10.96.0.10:80/TCP', service: 'default/web:http', serviceId: 1, connects: 5, refused: 0, datagrams: 0, reverseNat: 3 },
      // Service id 0: the calls to a service address no frontend serves, last.
      { frontend: '', service: '', serviceId: 0, connects: 0, refused: 6, datagrams: 0, reverseNat: 0 },
    ]);
    assert.equal(
      formatStatsTable(describeStats(state, maps.stats)),
      [
        'SERVICE                     FRONTEND              CONNECTS  REFUSED  DATAGRAMS  REVERSE-NAT',
        'default/dns:dns             10.96.0.53:53/UDP     0         1        9          9',
        'default/web:http            [fd00:96::10]:80/TCP  0         0        0          0',
        'default/web:http            10.96.0.10:80/TCP     5         0        0          3',
        '<unserved service address>  -                     0         6        0          0',
      ].join('\n'),
    );
  });

  it('a Service port reached through several frontends has one series per frontend, labelled with both', () => {
    const { maps, state, idOf } = programmed(WEB_V4, WEB_V6, DNS);
    count(maps.stats, idOf('10.96.0.10', 80, 'TCP'), [{ connects: 3 }, { connects: 2 }]);
    count(maps.stats, idOf('fd00:96::10', 80, 'TCP'), [{ connects: 10, refused: 1 }, {}]);
    const series = countersByFrontend(state, maps.stats).sort((a, b) => (a.labels.frontend < b.labels.frontend ? -1 : 1));
    assert.deepEqual(series, [
      {
        labels: { namespace: 'default', service: 'web', port: 'http', protocol: 'TCP', frontend: '10.96.0.10:80/TCP' },
        counters: { connects: 5, refused: 0, datagrams: 0, reverseNat: 0 },
      },
      {
        labels: { namespace: 'default', service: 'dns', port: 'dns', protocol: 'UDP', frontend: '10.96.0.53:53/UDP' },
        counters: ZERO_COUNTERS,
      },
      {
        labels: { namespace: 'default', service: 'web', port: 'http', protocol: 'TCP', frontend: '[fd00:96::10]:80/TCP' },
        counters: { connects: 10, refused: 1, datagrams: 0, reverseNat: 0 },
      },
    ]);
  });

  it('a series never goes down when another frontend of its Service port leaves', () => {
    const { maps, state, idOf } = programmed(WEB_V4, WEB_V6);
    count(maps.stats, idOf('10.96.0.10', 80, 'TCP'), [{ connects: 3 }, {}]);
    count(maps.stats, idOf('fd00:96::10', 80, 'TCP'), [{ connects: 10 }, {}]);
    const connectsByFrontend = () =>
      Object.fromEntries(countersByFrontend(state, maps.stats).map(({ labels, counters }) => [labels.frontend, counters.connects]));
    assert.deepEqual(connectsByFrontend(), { '10.96.0.10:80/TCP': 3, '[fd00:96::10]:80/TCP': 10 });
    // The Service drops its IPv6 family: the IPv4 series keeps its count, the IPv6 one is gone.
    reconcile(maps, state, desiredOf(WEB_V4), [frontendId(WEB_V6.key)]);
    assert.deepEqual(connectsByFrontend(), { '10.96.0.10:80/TCP': 3 });
  });
});

describe('a reused service id', () => {
  it('starts from zero: the planner zeroes its counters on every CPU before the new frontend is written', () => {
    const { maps, state, idOf } = programmed(WEB_V4, DNS);
    const webId = idOf('10.96.0.10', 80, 'TCP');
    count(maps.stats, webId, [{ connects: 40 }, { connects: 2 }]);
    // web leaves in one sync; a new Service comes in the next and gets the lowest free id.
    const withoutWeb = desiredOf(DNS);
    reconcile(maps, state, withoutWeb, [frontendId(WEB_V4.key)]);
    // As the agent does before a sync once ids were freed: no program still holds web's id.
    state.readersGone();
    const api = frontend('10.96.0.40', 80, 'TCP', 'api', 'http');
    reconcile(maps, state, desiredOf(DNS, api), [frontendId(api.key)]);
    assert.equal(idOf('10.96.0.40', 80, 'TCP'), webId);
    assert.deepEqual(readCounters(maps.stats, [webId]).get(webId), ZERO_COUNTERS);
    assert.equal(maps.stats.lookup(MAP_CODECS.stats.key.encode(webId))?.length, statsCodec.size * CPUS, "every CPU's copy is written");
  });

  it('a frontend that keeps its id keeps its counts', () => {
    const { maps, state, idOf } = programmed(WEB_V4);
    const webId = idOf('10.96.0.10', 80, 'TCP');
    count(maps.stats, webId, [{ connects: 4 }, {}]);
    const moreBackends = { ...WEB_V4, backends: [...WEB_V4.backends, { address: '10.244.0.3', port: 8080 }] };
    reconcile(maps, state, desiredOf(moreBackends), [frontendId(WEB_V4.key)]);
    assert.equal(readCounters(maps.stats, [webId]).get(webId)?.connects, 4);
  });
});

describe('AgentMetrics', () => {
  it('exports the counters per frontend at scrape time', async () => {
    const { maps, state, idOf } = programmed(WEB_V4, WEB_V6, DNS);
    const metrics = new AgentMetrics(
      { datapath: state, maps, problemCount: () => 0 },
      { failingAttachments: () => [] },
      { list: () => [] },
      { check: () => [], capacities: () => [] },
    );
    count(maps.stats, idOf('10.96.0.10', 80, 'TCP'), [{ connects: 3, reverseNat: 1 }, { connects: 4 }]);
    count(maps.stats, idOf('fd00:96::10', 80, 'TCP'), [{ refused: 2 }, {}]);
    count(maps.stats, idOf('10.96.0.53', 53, 'UDP'), [{ datagrams: 6 }, { reverseNat: 6 }]);
    const lines = (await metrics.render()).split('\n').filter((line) => /^socklb_(connections|datagrams|reverse)/.test(line));
    const dns = 'namespace="default",service="dns",port="dns",protocol="UDP",frontend="10.96.0.53:53/UDP"';
    const webV4 = 'namespace="default",service="web",port="http",protocol="TCP",frontend="10.96.0.10:80/TCP"';
    const webV6 = 'namespace="default",service="web",port="http",protocol="TCP",frontend="[fd00:96::10]:80/TCP"';
    assert.deepEqual(lines.sort(), [
      `socklb_connections_refused_total{${dns}} 0`,
      `socklb_connections_refused_total{${webV4}} 0`,
      `socklb_connections_refused_total{${webV6}} 2`,
      `socklb_connections_translated_total{${dns}} 0`,
      `socklb_connections_translated_total{${webV4}} 7`,
      `socklb_connections_translated_total{${webV6}} 0`,
      `socklb_datagrams_translated_total{${dns}} 6`,
      `socklb_datagrams_translated_total{${webV4}} 0`,
      `socklb_datagrams_translated_total{${webV6}} 0`,
      `socklb_reverse_nat_total{${dns}} 6`,
      `socklb_reverse_nat_total{${webV4}} 1`,
      `socklb_reverse_nat_total{${webV6}} 0`,
    ]);
    // A Service that is gone leaves no series behind at the next scrape.
    reconcile(maps, state, desiredOf(DNS), [frontendId(WEB_V4.key), frontendId(WEB_V6.key)]);
    assert.doesNotMatch(await metrics.render(), /service="web"/);
  });

  it('exports the calls refused at an unserved service address, counted at service id 0, as one counter', async () => {
    const { maps, state } = programmed(DNS);
    const metrics = new AgentMetrics(
      { datapath: state, maps, problemCount: () => 0 },
      { failingAttachments: () => [] },
      { list: () => [] },
      { check: () => [], capacities: () => [] },
    );
    count(maps.stats, 0, [{ refused: 5 }, { refused: 3 }]);
    const text = await metrics.render();
    assert.match(text, /^# TYPE socklb_unserved_address_refused_total counter$/m);
    assert.match(text, /^socklb_unserved_address_refused_total 8$/m);
  });
});
