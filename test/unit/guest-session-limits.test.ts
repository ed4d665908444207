// A node whose state is past what a guest may be sent (a map over the protocol's max_entries
// limit): each guest that needs a snapshot is logged by name and dropped, from any path that asks
// for one (its HELLO, a sync that outgrows its maps), and neither the agent nor the other guests
// notice. The applier's refusal of the same OBJECT: test/integration/guest-applier.test.ts.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { MAP_NAMES } from '../../src/datapath/layout.js';
import { DatapathState } from '../../src/datapath/state.js';
import { DEFAULT_SESSION_LIMITS, GuestRecord, GuestSession, type GuestSource } from '../../src/guest/session.js';
import { countsOf } from '../../src/guest/sizing.js';
import { SyncLog } from '../../src/guest/sync-log.js';
import { FRAME_TYPES, LIMITS, type MapDescriptor } from '../../src/guest/wire.js';
import { OBJECT_MAPS } from './guest-simulator.js';
import { guestFrame, helloPayload } from './guest-wire-fixtures.js';

/** What a session uses of its socket, with what it wrote kept. */
class FakeSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  destroyed = false;
  writableLength = 0;

  write(bytes: Buffer): boolean {
    this.written.push(bytes);
    return true;
  }

  destroy(): void {
    this.destroyed = true;
  }
}

const EPOCH = 7n;
/** A service id that sizes the guest's counters (an array indexed by id) past the limit. */
const LARGE_SERVICE_ID = LIMITS.mapEntries;

/** The node object's maps, as a guest's HELLO lists them, with its counters sized as asked. */
function maps(statsEntries: number): MapDescriptor[] {
  return OBJECT_MAPS.map((map) => ({ ...map, maxEntries: map.name === MAP_NAMES.stats ? statsEntries : 64 }));
}

function growPastTheLimit(state: DatapathState): void {
  state.apply({
    kind: 'upsert-frontend',
    frontend: {
      key: { address: '10.96.0.10', port: 80, protocol: 'TCP' },
      serviceId: LARGE_SERVICE_ID,
      backendCount: 0,
      flags: 0,
      affinityTimeout: 0,
    },
  });
}

function setUp() {
  const logs: { level: number; guest?: string; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as (typeof logs)[number]) });
  const state = new DatapathState();
  const source: GuestSource = {
    epoch: EPOCH,
    log: new SyncLog(),
    state,
    get counts() {
      return countsOf(state);
    },
    elf: Buffer.from('ELF'),
  };
  const open = (id: string) => {
    const socket = new FakeSocket();
    const session = new GuestSession(new GuestRecord(id, DEFAULT_SESSION_LIMITS, 0), socket as unknown as Socket, source, logger, {
      serial: false,
      limits: DEFAULT_SESSION_LIMITS,
      now: () => 0,
    });
    const hello = (options: Parameters<typeof helloPayload>[0]) =>
      socket.emit('data', guestFrame(FRAME_TYPES.hello, helloPayload(options)));
    return { socket, session, hello };
  };
  return { logs, source, open };
}

describe('a guest whose snapshot cannot be built', () => {
  it('is logged by name and closed at its HELLO, without an OBJECT sent', () => {
    const { logs, source, open } = setUp();
    growPastTheLimit(source.state);
    const guest = open('guest-a');
    guest.hello({ maps: [] });
    assert.equal(guest.session.closed, true);
    assert.equal(guest.socket.destroyed, true);
    assert.deepEqual(guest.socket.written, []);
    const error = logs.find((line) => line.level === 50);
    assert.equal(error?.guest, 'guest-a');
    assert.match(
      error?.msg ?? '',
      /^guest guest-a: no snapshot for it: OBJECT map socklb_stats_v1 max_entries 2097152: over the limit of 1048576/,
    );
    assert.match(guest.session.record.lastError ?? '', /over the limit of 1048576/);
    assert.equal(guest.session.record.snapshots, 0);
  });

  it('is closed when a sync outgrows its maps; the same publish still reaches the other guests', () => {
    const { logs, source, open } = setUp();
    const small = open('guest-small');
    const large = open('guest-large');
    small.hello({ marker: { epoch: EPOCH, seq: 0n }, maps: maps(64) });
    // A guest whose counters already hold the large id needs no snapshot, so it is sent the sync.
    large.hello({ marker: { epoch: EPOCH, seq: 0n }, maps: maps(LARGE_SERVICE_ID * 2) });
    assert.deepEqual([small.session.phase, large.session.phase], ['streaming', 'streaming']);

    growPastTheLimit(source.state);
    const entry = source.log.append({ frontends: [], cleanup: [], addresses: [] }, false);
    for (const guest of [small, large]) guest.session.publish(entry);

    assert.equal(small.session.closed, true);
    assert.deepEqual(small.socket.written, []);
    assert.ok(logs.some((line) => line.level === 50 && line.guest === 'guest-small'));
    assert.equal(large.session.closed, false);
    assert.deepEqual(
      large.socket.written.map((frame) => frame[4]),
      [FRAME_TYPES.batch],
    );
    large.session.close('the test ends');
  });
});
