// `socklb trace` without a kernel: the agent's hub over a fake ring (the switch on for the first
// tracer and off after the last, filters, lost counts), the records and lines made of events, the
// protocol's trace messages, and cgroup ids placed in their sandbox.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CgroupPlaces, matches, traceRecord, Tracing, type TraceSource } from '../../src/agent/tracing.js';
import { describeFilter, formatLostLine, formatTraceLine } from '../../src/cli/trace.js';
import type { TraceEvent } from '../../src/datapath/layout.js';
import type { TraceListener } from '../../src/datapath/trace-ring.js';
import { createLogger } from '../../src/log.js';
import { parseRequest, parseTraceMessage, parseTraceStart, type TraceMessage } from '../../src/sandbox/protocol.js';

const translated: TraceEvent = {
  timeNs: 5_000_000_000n,
  cgroupId: 77n,
  netnsCookie: 4097n,
  socketCookie: 8193n,
  protocol: 'TCP',
  hook: 'connect',
  reason: 'translated',
  service: { address: '10.96.0.10', port: 80 },
  serviceId: 3,
  backend: { address: '10.244.1.5', port: 8080 },
  slot: 1,
};

const refusedV6: TraceEvent = {
  ...translated,
  protocol: 'UDP',
  hook: 'sendmsg',
  reason: 'unserved-address',
  service: { address: 'fd00:96::7', port: 53 },
  serviceId: 0,
  backend: undefined,
  slot: 0,
};

const WEB = { namespace: 'default', name: 'web', portName: 'http' };
const TIME = new Date('2026-12-06T00:12:01.123Z');

describe('trace records and lines', () => {
  it('a translation names the sandbox, the Service with its port, the backend and its slot', () => {
    const record = traceRecord(translated, TIME, { cgroup: '/sys/fs/cgroup/lab/alpha', sandbox: 'alpha' }, WEB);
    assert.deepEqual(record, {
      time: '2026-12-06T00:12:01.123Z',
      sandbox: 'alpha',
      cgroup: '/sys/fs/cgroup/lab/alpha',
      cgroupId: '77',
      netnsCookie: '4097',
      socketCookie: '8193',
      protocol: 'TCP',
      hook: 'connect',
      frontend: '10.96.0.10:80',
      service: 'default/web:http',
      backend: '10.244.1.5:8080',
      slot: 1,
      result: 'translated',
    });
    assert.equal(
      formatTraceLine(record),
      '2026-12-06T00:12:01.123Z sandbox alpha netns 4097 socket 8193 TCP connect 10.96.0.10:80 default/web:http -> 10.244.1.5:8080 slot 1',
    );
  });

  it('a refusal has its reason and no backend; IPv6 is bracketed; an unplaced caller shows its cgroup id', () => {
    const record = traceRecord(refusedV6, TIME, {}, undefined);
    assert.equal(record.backend, undefined);
    assert.equal(record.service, undefined);
    assert.equal(
      formatTraceLine(record),
      '2026-12-06T00:12:01.123Z cgroup id 77 netns 4097 socket 8193 UDP sendmsg [fd00:96::7]:53 (no Service) refused: unserved-address',
    );
  });

  it('a caller outside every sandbox shows its cgroup; an unnamed port is the Service alone', () => {
    const record = traceRecord(translated, TIME, { cgroup: '/sys/fs/cgroup/system.slice' }, { ...WEB, portName: '' });
    assert.match(formatTraceLine(record), / cgroup \/sys\/fs\/cgroup\/system\.slice .* default\/web -> /);
  });

  it('the lost line adds both causes and names each', () => {
    assert.equal(
      formatLostLine({ ring: 3, agent: 2 }),
      'lost 5 events since the trace started: 3 when the ring was full, 2 while this trace read too slowly',
    );
  });

  it('the filter in words', () => {
    assert.equal(describeFilter({}), 'every call');
    assert.equal(
      describeFilter({ protocol: 'UDP', sandbox: 's1', service: 'kube-system/dns' }),
      'UDP calls of sandbox s1 to Service kube-system/dns',
    );
  });
});

describe('trace filters', () => {
  const record = traceRecord(translated, TIME, { sandbox: 'alpha' }, WEB);
  const cases: [string, Parameters<typeof matches>[0], boolean][] = [
    ['no filter: everything', {}, true],
    ['its sandbox', { sandbox: 'alpha' }, true],
    ['another sandbox', { sandbox: 'beta' }, false],
    ['its Service, whatever the port', { service: 'default/web' }, true],
    ['a Service of the same name in another namespace', { service: 'other/web' }, false],
    ['a Service whose name it starts with', { service: 'default/we' }, false],
    ['its protocol', { protocol: 'TCP' }, true],
    ['the other protocol', { protocol: 'UDP' }, false],
    ['all three', { sandbox: 'alpha', service: 'default/web', protocol: 'TCP' }, true],
  ];
  for (const [name, filter, expected] of cases) it(name, () => assert.equal(matches(filter, record), expected));

  it('a refusal with no Service matches no Service filter', () => {
    assert.equal(matches({ service: 'default/web' }, traceRecord(refusedV6, TIME, {}, undefined)), false);
  });
});

describe('the trace messages of the control protocol', () => {
  it('a trace request with its filters', () => {
    assert.deepEqual(parseRequest('{"op":"trace","sandbox":"s1","service":"default/web","protocol":"UDP"}'), {
      op: 'trace',
      sandbox: 's1',
      service: 'default/web',
      protocol: 'UDP',
    });
    assert.deepEqual(parseRequest('{"op":"trace"}'), { op: 'trace' });
  });

  it('refuses a protocol other than TCP or UDP, and a sandbox that is not a string', () => {
    assert.throws(() => parseRequest('{"op":"trace","protocol":"tcp"}'), /"protocol": "tcp" is not TCP or UDP/);
    assert.throws(() => parseRequest('{"op":"trace","sandbox":3}'), /field "sandbox": missing or not a string/);
  });

  it('the first line is the acceptance, or the refusal as an error', () => {
    assert.deepEqual(parseTraceStart('{"ok":true,"tracing":{"sandbox":"s1"}}'), { sandbox: 's1' });
    assert.throws(
      () => parseTraceStart('{"ok":false,"code":"SOCKLB_ERR_NO_SANDBOX","message":"trace --sandbox x: no such sandbox is registered"}'),
      { code: 'SOCKLB_ERR_NO_SANDBOX', message: 'trace --sandbox x: no such sandbox is registered' },
    );
  });

  it('events and lost counts after it; anything else is refused', () => {
    const record = traceRecord(translated, TIME, {}, WEB);
    assert.deepEqual(parseTraceMessage(JSON.stringify({ event: record })), { event: record });
    assert.deepEqual(parseTraceMessage('{"lost":{"ring":1,"agent":0}}'), { lost: { ring: 1, agent: 0 } });
    assert.throws(() => parseTraceMessage('{"lost":{"ring":"1"}}'), /neither an event nor a lost count/);
  });
});

/** A ring in memory: the switch, and a listener the test feeds events to. */
class FakeRing implements TraceSource {
  enabled = false;
  lost = 0n;
  listener: TraceListener | undefined;
  starts = 0;
  stops = 0;

  readSwitch() {
    return { enabled: this.enabled, lost: this.lost };
  }
  setEnabled(enabled: boolean) {
    this.enabled = enabled;
  }
  start(listener: TraceListener) {
    this.starts++;
    this.listener = listener;
    this.enabled = true;
  }
  stop() {
    this.stops++;
    this.listener = undefined;
    this.enabled = false;
    return Promise.resolve();
  }
}

function hub(ring: FakeRing, lostIntervalMs = 60_000) {
  return new Tracing({
    ring,
    serviceName: (id) => (id === 3 ? WEB : undefined),
    places: { resolve: (cgroupId) => (cgroupId === 77n ? { cgroup: '/cg/alpha', sandbox: 'alpha' } : {}) },
    sandboxKind: (id) => (id === 'alpha' ? 'cgroup' : id === 'vm1' ? 'guest' : undefined),
    logger: createLogger('fatal'),
    lostIntervalMs,
  });
}

const settled = () => new Promise((resolve) => setImmediate(resolve));

describe('the tracing hub', () => {
  it('turns the switch on for the first tracer and off after the last; each gets what its filter matches', async () => {
    const ring = new FakeRing();
    const tracing = hub(ring);
    const all: TraceMessage[] = [];
    const udp: TraceMessage[] = [];
    const stopAll = tracing.follow({}, (message) => all.push(message) > 0);
    const stopUdp = tracing.follow({ protocol: 'UDP' }, (message) => udp.push(message) > 0);
    await settled();
    assert.equal(ring.starts, 1, 'one reader for both');
    assert.equal(ring.enabled, true);
    ring.listener!.events([translated, refusedV6]);
    assert.deepEqual(
      all.map((message) => ('event' in message ? message.event.result : 'lost')),
      ['translated', 'unserved-address'],
    );
    assert.deepEqual(
      udp.map((message) => ('event' in message ? message.event.protocol : 'lost')),
      ['UDP'],
    );
    stopAll();
    await settled();
    assert.equal(ring.enabled, true, 'one tracer left');
    stopUdp();
    stopUdp();
    await settled();
    assert.deepEqual([ring.enabled, ring.stops], [false, 1]);
    await tracing.close();
  });

  it('turns off a switch left on, and leaves an off one alone', () => {
    const ring = new FakeRing();
    ring.enabled = true;
    hub(ring).turnOffStaleSwitch();
    assert.equal(ring.enabled, false);
  });

  it('refuses a Service filter that is not NAMESPACE/NAME, an unknown sandbox, and a guest', () => {
    const tracing = hub(new FakeRing());
    assert.throws(() => tracing.follow({ service: 'web' }, () => true), { code: 'SOCKLB_ERR_USAGE' });
    assert.throws(() => tracing.follow({ sandbox: 'nobody' }, () => true), { code: 'SOCKLB_ERR_NO_SANDBOX' });
    assert.throws(() => tracing.follow({ sandbox: 'vm1' }, () => true), /guest's programs run in its own kernel/);
  });

  it('reports losses since each tracer started, only when they grew: the ring full, the tracer behind', async () => {
    const ring = new FakeRing();
    ring.lost = 10n;
    const tracing = hub(ring, 10);
    const messages: TraceMessage[] = [];
    let behind = false;
    const stop = tracing.follow({}, (message) => {
      if (behind && 'event' in message) return false;
      messages.push(message);
      return true;
    });
    await settled();
    ring.lost = 13n;
    behind = true;
    ring.listener!.events([translated, translated]);
    behind = false;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(
      messages.filter((message) => 'lost' in message),
      [{ lost: { ring: 3, agent: 2 } }],
    );
    stop();
    await tracing.close();
  });
});

describe('cgroup ids placed in their sandbox', () => {
  it('finds a cgroup, and one below a sandbox, by inode; an unknown id is looked for again only after a second', () => {
    const root = mkdtempSync(join(tmpdir(), 'socklb-places-'));
    try {
      mkdirSync(join(root, 'alpha', 'inner'), { recursive: true });
      mkdirSync(join(root, 'other'));
      let now = 0;
      const places = new CgroupPlaces(
        () => [root],
        () => [{ id: 'alpha', cgroup: join(root, 'alpha') }],
        () => now,
      );
      const id = (path: string) => statSync(path, { bigint: true }).ino;
      assert.deepEqual(places.resolve(id(join(root, 'alpha', 'inner'))), { cgroup: join(root, 'alpha', 'inner'), sandbox: 'alpha' });
      assert.deepEqual(places.resolve(id(join(root, 'other'))), { cgroup: join(root, 'other') });
      mkdirSync(join(root, 'late'));
      assert.deepEqual(places.resolve(id(join(root, 'late'))), {}, 'not walked again within a second');
      now = 1000;
      assert.deepEqual(places.resolve(id(join(root, 'late'))), { cgroup: join(root, 'late') });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
