// The hub serving several guests with the real agent on in-memory maps (guest-simulator.ts): a
// guest registered after syncs nobody was sent, guests whose maps the stream cannot write, a guest
// that stops reading (what the host queues for it stays bounded, and it is brought up to date from
// the log or by a snapshot), and hostile frames fuzzed at the host (400 connections, a fixed seed),
// which never disturb the agent,
// the node's maps or another guest's stream. Who holds an id and an address: requests that arrive
// while a guest's listener is being opened find its id and address taken, and a pinned guest whose
// listener does not open stays listed, removable and its id its own, and is served once it can be.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:net';
import { pino, type Logger } from 'pino';
import { MAP_NAMES, type Marker } from '../../src/datapath/layout.js';
import { FRAME_TYPES } from '../../src/guest/wire.js';
import { pinGuest, pinnedGuests } from '../../src/pins/layout.js';
import { sandboxDirectory } from '../../src/sandbox/directory.js';
import type { GuestEntry } from '../../src/sandbox/protocol.js';
import { SandboxRegistry, type SandboxAttachments } from '../../src/sandbox/registry.js';
import { GuestSimulator, nodeContents, OBJECT_MAPS, sameContents, servicesState, SimNode, until, type SimLink } from './guest-simulator.js';
import { ackPayload, guestFrame, helloPayload, loadedPayload } from './guest-wire-fixtures.js';

const OLD = servicesState(1, () => ['10.244.1.1']);
const NEW = servicesState(2, (index) => [`10.244.2.${index + 1}`, `10.244.3.${index + 1}`]);
// Syncs of some 7 KiB each: every backend of 100 Services replaced.
const MANY_A = servicesState(100, (index) => [`10.244.4.${index + 1}`]);
const MANY_B = servicesState(100, (index) => [`10.244.5.${index + 1}`]);
/** Past what the socket's kernel buffers take, so that the host's own queue fills. */
const QUEUE_BYTES = 64 << 10;

/** Attaches nothing: the cgroup sandboxes here only take ids. */
const NO_KERNEL: SandboxAttachments = { cgroupRoot: '/cg', attach: () => undefined, detach: () => undefined, reattach: () => undefined };

/** Listening Unix sockets of this process: every one the hub opens, and those of the simulator's node. */
function unixListeners(): number {
  return process.getActiveResourcesInfo().filter((name) => name === 'PipeServerWrap').length;
}

/** A logger whose messages go to `lines`. */
function loggingInto(lines: string[]): Logger {
  return pino({ level: 'info' }, { write: (line: string) => lines.push((JSON.parse(line) as { msg: string }).msg) });
}

describe('the hub and its guests', () => {
  let scratch: string;
  let pins: string;
  let node: SimNode;

  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'socklb-guest-hub-'));
    pins = join(scratch, 'pins');
  });

  after(() => rmSync(scratch, { recursive: true, force: true }));

  async function withNode(options: Parameters<typeof SimNode.start>[2], body: () => Promise<void>): Promise<void> {
    node = await SimNode.start(pins, OLD, options);
    try {
      await body();
    } finally {
      await node.stop();
      rmSync(pins, { recursive: true, force: true });
    }
  }

  /** Registers guest `id` at a socket of its own and connects `guest` there; resolves once its snapshot is in. */
  async function streamed(id: string, guest = new GuestSimulator()): Promise<{ path: string; guest: GuestSimulator; link: SimLink }> {
    const path = join(scratch, `${id}.sock`);
    await node.hub.add(id, `unix:${path}`);
    const link = guest.connect(path);
    await node.caughtUp(guest, `${id}'s snapshot`);
    return { path, guest, link };
  }

  function entry(id: string): GuestEntry {
    const found = node.hub.list().find((guest) => guest.id === id);
    assert.ok(found, `guest ${id} is listed`);
    return found;
  }

  it('brings up to date a guest registered again after a sync that no guest was sent', async () => {
    await withNode({}, async () => {
      const { path, guest, link } = await streamed('vm1');
      await node.hub.remove('vm1');
      await until(() => link.closed, 'the connection closed');
      node.source.push(NEW);
      await node.hub.add('vm1', `unix:${path}`);
      guest.connect(path);
      await node.caughtUp(guest, 'the sync made while no guest was registered');
      assert.equal(guest.contents().get(MAP_NAMES.frontends)?.size, 2);
    });
  });

  it('snapshots a guest whose live maps the stream cannot write, whatever marker it claims', async () => {
    await withNode({}, async () => {
      const streaming = await streamed('vm1');
      const { path, guest } = streaming;
      let { link } = streaming;
      link.close();
      await until(() => link.closed, 'the connection closed');
      // Up to date by its marker, but its frontends have keys of another layout: the next sync writes them.
      guest.lies.hello = (maps) => maps.map((map) => (map.name === MAP_NAMES.frontends ? { ...map, keySize: 4 } : map));
      const snapshots = entry('vm1').snapshots;
      link = guest.connect(path);
      await until(() => entry('vm1').snapshots > snapshots, 'a snapshot');
      guest.lies = {};
      node.source.push(NEW);
      await node.caughtUp(guest, 'the change, in maps that take it');
      assert.equal(entry('vm1').snapshots, snapshots + 1);
      assert.ok(sameContents(guest.contents(), nodeContents(node.maps)));
    });
  });

  it('refuses, saying why, a guest whose staged maps cannot take the stream', async () => {
    await withNode({}, async () => {
      const cases: [string, GuestSimulator['lies']['loaded'], RegExp][] = [
        [
          'a key size',
          (maps) => maps.map((map) => (map.name === MAP_NAMES.frontends ? { ...map, keySize: 4 } : map)),
          /socklb_fe_v3: key_size 4, not 20/,
        ],
        [
          'a capacity',
          (maps) => maps.map((map) => (map.name === MAP_NAMES.backends ? { ...map, maxEntries: 1 } : map)),
          /socklb_be_v2: max_entries 1, under the \d+ asked/,
        ],
        ['a missing map', (maps) => maps.filter((map) => map.name !== MAP_NAMES.marker), /socklb_mark_v1: missing/],
      ];
      for (const [what, loaded, reason] of cases) {
        const path = join(scratch, `refused-${cases.findIndex(([name]) => name === what)}.sock`);
        await node.hub.add(what.replaceAll(' ', '-'), `unix:${path}`);
        const guest = new GuestSimulator();
        guest.lies.loaded = loaded;
        guest.connect(path);
        const id = what.replaceAll(' ', '-');
        await until(() => entry(id).phase === 'failed', `${what}: the guest refused`);
        assert.match(entry(id).lastError ?? '', reason, what);
        assert.equal(guest.batches, 0, `${what}: no batch is sent to maps that cannot take it`);
        node.source.push(NEW);
        node.source.push(OLD);
        assert.equal(guest.batches, 0, `${what}: nor any sync`);
        assert.equal(entry(id).phase, 'failed', `${what}: syncs pass it by`);
      }
    });
  });

  /** Syncs made while `link`'s guest reads nothing; the largest bytes the host queued for it after one. */
  async function stalled(guest: GuestSimulator, link: SimLink, syncs: number): Promise<{ largestQueue: number; largestSync: number }> {
    let largestSync = 0;
    for (const state of [MANY_B, MANY_A]) {
      const before = link.received;
      node.source.push(state);
      await node.caughtUp(guest, 'a sync, read');
      largestSync = Math.max(largestSync, link.received - before);
    }
    link.pause();
    let largestQueue = 0;
    for (let sync = 0; sync < syncs; sync++) {
      node.source.push(sync % 2 === 0 ? MANY_B : MANY_A);
      largestQueue = Math.max(largestQueue, entry('vm1').queuedBytes);
    }
    return { largestQueue, largestSync };
  }

  it("moves a guest into larger maps once the node's state outgrows them", async () => {
    await withNode({}, async () => {
      const { guest } = await streamed('vm1');
      const capacity = (guest: GuestSimulator) => guest.live?.get(MAP_NAMES.frontends)?.descriptor.maxEntries ?? 0;
      const before = capacity(guest);
      node.source.push(servicesState(300, (index) => [`10.244.${6 + Math.floor(index / 250)}.${(index % 250) + 1}`]));
      await node.caughtUp(guest, '300 Services');
      assert.equal(entry('vm1').snapshots, 2, 'a second snapshot');
      assert.ok(before < 300 && capacity(guest) >= 300, `frontends: ${before} entries, then ${capacity(guest)}`);
    });
  });

  it('encodes a sync once per map layout, and each guest gets frames its own maps take', async () => {
    await withNode({}, async () => {
      const guests = [new GuestSimulator(2), new GuestSimulator(2), new GuestSimulator(4)];
      for (const [index, guest] of guests.entries()) await streamed(`vm${index}`, guest);
      node.source.push(NEW);
      for (const [index, guest] of guests.entries()) await node.caughtUp(guest, `guest ${index}: the sync`);
      const [last] = node.hub.log.since(node.hub.log.seq - 1n) ?? [];
      assert.equal(last?.frames.size, 2, 'one encoding for the two guests of 2 CPUs, one for the guest of 4');
    });
  });

  it('queues at most its bound and one sync for a guest that stops reading, then sends it what it missed', async () => {
    await withNode({ limits: { queueBytes: QUEUE_BYTES } }, async () => {
      node.source.push(MANY_A);
      const { guest, link } = await streamed('vm1');
      const { largestQueue, largestSync } = await stalled(guest, link, 120);
      assert.ok(largestQueue > QUEUE_BYTES, `the queue reached ${largestQueue} bytes: past its bound, by the sync that crossed it`);
      assert.ok(largestQueue <= QUEUE_BYTES + largestSync, `${largestQueue} bytes queued: at most ${QUEUE_BYTES} + ${largestSync}`);
      assert.ok((entry('vm1').lag ?? 0) > 0, 'the guest is behind');
      const snapshots = entry('vm1').snapshots;
      link.resume();
      await node.caughtUp(guest, 'the syncs it missed', 20_000);
      assert.equal(entry('vm1').snapshots, snapshots, 'from the log: no snapshot');
    });
  });

  it('snapshots a guest that stopped reading once the log no longer has what it missed', async () => {
    await withNode({ limits: { queueBytes: QUEUE_BYTES }, logOperations: 2_000 }, async () => {
      node.source.push(MANY_A);
      const { guest, link } = await streamed('vm1');
      const { largestQueue, largestSync } = await stalled(guest, link, 120);
      assert.ok(largestQueue <= QUEUE_BYTES + largestSync, `${largestQueue} bytes queued: at most ${QUEUE_BYTES} + ${largestSync}`);
      const snapshots = entry('vm1').snapshots;
      link.resume();
      await node.caughtUp(guest, 'a snapshot', 20_000);
      assert.equal(entry('vm1').snapshots, snapshots + 1, 'the log lost its place: a snapshot');
    });
  });

  it('takes fuzzed frames from one guest without disturbing the agent, the node maps or another guest', async () => {
    const reference = await SimNode.start(join(scratch, 'reference-pins'), OLD);
    try {
      await withNode({}, async () => {
        const honestPath = join(scratch, 'honest.sock');
        const hostilePath = join(scratch, 'hostile.sock');
        await node.hub.add('honest', `unix:${honestPath}`);
        await node.hub.add('hostile', `unix:${hostilePath}`);
        const honest = new GuestSimulator();
        honest.connect(honestPath);
        await node.caughtUp(honest, 'the honest guest snapshot');
        const random = seeded(18);
        for (let round = 0; round < 400; round++) {
          const socket = connect(hostilePath);
          socket.on('error', () => undefined);
          socket.on('data', () => undefined);
          for (const frame of hostileFrames(random, node.marker)) socket.write(frame);
          await new Promise((resolve) => setTimeout(resolve, 1));
          socket.destroy();
          if (round % 20 === 19) {
            const state = round % 40 === 19 ? NEW : OLD;
            node.source.push(state);
            reference.source.push(state);
            await node.caughtUp(honest, `the honest guest, at round ${round}`);
          }
        }
        assert.ok(sameContents(nodeContents(node.maps), nodeContents(reference.maps)), 'the node maps as a node without guests has them');
        assert.ok(sameContents(honest.contents(), nodeContents(node.maps)));
        assert.equal(entry('honest').snapshots, 1, 'the honest guest was streamed to throughout');
        assert.ok(entry('hostile').lastError, 'the hostile guest was refused, saying why');
      });
    } finally {
      await reference.stop();
    }
  });

  it('gives one of concurrent adds of one address the address, and leaves no listener behind', async () => {
    const before = unixListeners();
    await withNode({}, async () => {
      const address = `unix:${join(scratch, 'v.sock')}`;
      const results = await Promise.allSettled([node.hub.add('vm1', address), node.hub.add('vm1', address), node.hub.add('vm2', address)]);
      assert.deepEqual(
        results.map((result) => (result.status === 'fulfilled' ? result.value.outcome : (result.reason as Error).message)),
        ['added', 'unchanged', `${join(scratch, 'v.sock')} is already the address of guest vm1`],
      );
      assert.deepEqual(
        node.hub.list().map(({ id, guest }) => `${id} ${guest}`),
        [`vm1 ${address}`],
      );
      assert.deepEqual(pinnedGuests(pins), [{ id: 'vm1', address }]);
    });
    assert.equal(unixListeners(), before, 'every listener closed with the hub');
  });

  it('refuses a cgroup sandbox that takes the id of a guest being added', async () => {
    await withNode({}, async () => {
      const directory = sandboxDirectory(new SandboxRegistry(NO_KERNEL), node.hub);
      // As the control socket calls it: a refusal is a rejection, whenever it comes.
      const request = async (body: () => ReturnType<typeof directory.add>) => body();
      const results = await Promise.allSettled([
        request(() => directory.add({ op: 'add', id: 'vm1', guest: `unix:${join(scratch, 'v.sock')}` })),
        request(() => directory.add({ op: 'add', id: 'vm1', cgroup: '/cg/vm1' })),
      ]);
      assert.deepEqual(
        results.map((result) => (result.status === 'fulfilled' ? result.value.outcome : (result.reason as Error).message)),
        ['added', 'sandbox vm1 is already registered as a guest; remove it first'],
      );
      assert.deepEqual(
        directory.list().map(({ id }) => id),
        ['vm1'],
      );
    });
  });

  it('lists a pinned guest it cannot serve, keeps its id and address, and serves it once it can', async () => {
    const jail = join(scratch, 'jail');
    const address = `unix:${join(jail, 'v.sock')}`;
    pinGuest(pins, 'vm1', address);
    const logged: string[] = [];
    await withNode({ logger: loggingInto(logged) }, async () => {
      const why = `guest vm1: ${jail} is not a directory`;
      const { guest: listedAt, phase, lastError } = entry('vm1');
      assert.deepEqual({ listedAt, phase, lastError }, { listedAt: address, phase: 'unserved', lastError: why });
      assert.ok(node.hub.has('vm1'));
      const directory = sandboxDirectory(new SandboxRegistry(NO_KERNEL), node.hub);
      assert.throws(() => directory.add({ op: 'add', id: 'vm1', cgroup: '/cg/vm1' }), /sandbox vm1 is already registered as a guest/);
      await assert.rejects(node.hub.add('vm2', address), /is already the address of guest vm1$/);
      // Added again, it is tried at once; the registration stays as it was.
      await assert.rejects(node.hub.add('vm1', address), new RegExp(`^SocklbError: guest vm1 is registered but not served: ${why}$`));
      assert.equal(entry('vm1').phase, 'unserved');
      // Retried as often as the agent likes, it is reported once for each reason.
      await node.hub.retryUnserved();
      await node.hub.retryUnserved();
      assert.deepEqual(
        logged.filter((msg) => msg.startsWith('guest vm1')),
        [`guest vm1 not served: ${why}`],
      );
      mkdirSync(jail);
      await node.hub.retryUnserved();
      assert.equal(entry('vm1').phase, 'disconnected');
      assert.equal((await node.hub.add('vm1', address)).outcome, 'unchanged', 'served now');
      assert.equal(entry('vm1').lastError, undefined);
      assert.ok(logged.includes(`guest vm1 served; it was not: ${why}`));
      const guest = new GuestSimulator();
      guest.connect(join(jail, 'v.sock'));
      await node.caughtUp(guest, 'the guest served at last');
    });
  });

  it('reports a guest whose bind fails once for each reason, however often it is retried', async () => {
    // Nobody, root included, makes a file in /proc.
    pinGuest(pins, 'vm1', 'unix:/proc/1/socklb-test.sock');
    const logged: string[] = [];
    await withNode({ logger: loggingInto(logged) }, async () => {
      await node.hub.retryUnserved();
      await node.hub.retryUnserved();
      assert.deepEqual(
        logged.filter((msg) => msg.includes('vm1')),
        ['guest vm1 not served: guest vm1: cannot listen on /proc/1/socklb-test.sock: EACCES'],
      );
      await node.hub.remove('vm1');
    });
  });

  it('removes a pinned guest it cannot serve, unpinning it', async () => {
    pinGuest(pins, 'vm1', `unix:${join(scratch, 'gone', 'v.sock')}`);
    await withNode({}, async () => {
      const directory = sandboxDirectory(new SandboxRegistry(NO_KERNEL), node.hub);
      assert.equal((await directory.remove('vm1')).id, 'vm1');
      assert.ok(!node.hub.has('vm1'));
      assert.deepEqual(pinnedGuests(pins), []);
      assert.equal((await directory.add({ op: 'add', id: 'vm1', cgroup: '/cg/vm1' })).outcome, 'added', 'its id free again');
    });
  });
});

/** A deterministic pseudo-random source (mulberry32), so that a failure can be replayed. */
function seeded(seed: number): (below: number) => number {
  let state = seed;
  return (below) => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * below);
  };
}

/** `bytes` with a few bytes changed at random. */
function mutate(random: (below: number) => number, bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  for (let flips = 1 + random(4); flips > 0 && copy.length > 0; flips--) copy[random(copy.length)] = random(256);
  return copy;
}

/** The maps an applier of the node's object lists, of some capacity. */
const LISTED = OBJECT_MAPS.map((map) => ({ ...map, maxEntries: map.name === MAP_NAMES.marker ? 1 : 4096 })).sort((a, b) =>
  a.name < b.name ? -1 : 1,
);

/**
 * What a hostile guest sends in one connection: noise, a HELLO broken somewhere, a HELLO that
 * claims to be up to date with maps broken somewhere, or a fair HELLO followed by broken answers.
 */
function hostileFrames(random: (below: number) => number, marker: Marker): Buffer[] {
  const noise = (): Buffer => Buffer.from(Array.from({ length: random(200) }, () => random(256)));
  const hello = (maps = LISTED, claimed = marker): Buffer => guestFrame(FRAME_TYPES.hello, helloPayload({ marker: claimed, maps }));
  const ack = (): Buffer =>
    guestFrame(
      FRAME_TYPES.ack,
      ackPayload(random(2) ? marker.epoch : BigInt(random(1000)), BigInt(random(4)), -random(3), random(3), random(3)),
    );
  switch (random(5)) {
    case 0:
      return [noise()];
    case 1:
      return [mutate(random, hello(random(2) ? LISTED : []))];
    case 2:
      return [
        hello(
          LISTED.map((map) =>
            random(4) === 0 ? { ...map, [['type', 'keySize', 'valueSize', 'maxEntries', 'flags'][random(5)]!]: random(70) } : map,
          ),
        ),
      ];
    case 3:
      return [hello([]), mutate(random, guestFrame(FRAME_TYPES.loaded, loadedPayload(0, '', LISTED))), ack(), ack()];
    default:
      return [hello([]), guestFrame(FRAME_TYPES.loaded, loadedPayload(0, '', LISTED)), ...Array.from({ length: random(4) }, ack), noise()];
  }
}
