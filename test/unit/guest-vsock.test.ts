// vhost-vsock guests (vsock:CID) without the kernel: their addresses, the one listener the hub
// opens for them and closes with the last, each connection routed by its peer's CID (a CID no
// guest has closed at once, logged at most every interval), and registrations adopted after a
// restart. The kernel's listener is checked in test/integration/guest-vsock.test.ts.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { formatGuestAddress, parseGuestAddress } from '../../src/guest/address.js';
import { REFUSED_PEER_LOG_INTERVAL_MS } from '../../src/guest/hub.js';
import { pinGuest, pinnedGuests, unpinGuest } from '../../src/pins/layout.js';
import type { GuestEntry } from '../../src/sandbox/protocol.js';
import { FakeVsock } from './fake-vsock.js';
import { GuestSimulator, servicesState, SimNode, until } from './guest-simulator.js';

const OLD = servicesState(1, () => ['10.244.1.1']);
const NEW = servicesState(2, (index) => [`10.244.2.${index + 1}`]);

describe('vsock:CID addresses', () => {
  it('takes CID 1 (loopback) and 3 to 0xFFFFFFFE, in decimal', () => {
    for (const [text, cid] of [
      ['vsock:1', 1],
      ['vsock:3', 3],
      ['vsock:42', 42],
      ['vsock:4294967294', 0xfffffffe],
    ] as const) {
      assert.deepEqual(parseGuestAddress(text, 'vm1'), { transport: 'vsock', cid }, text);
      assert.equal(formatGuestAddress(parseGuestAddress(text, 'vm1')), text);
    }
  });

  it('refuses the hypervisor, the host, "any" and what is not a decimal CID, naming the guest', () => {
    for (const text of [
      'vsock:0',
      'vsock:2',
      'vsock:4294967295',
      'vsock:4294967296',
      'vsock:0x10',
      'vsock:-3',
      'vsock:3.0',
      'vsock: 3',
      'vsock:1e3',
    ]) {
      assert.throws(
        () => parseGuestAddress(text, 'vm1'),
        /^SocklbError: guest vm1: vsock CID "[^"]*" is not a guest's: give a decimal CID, 1 \(this kernel's loopback\) or 3 to 4294967294$/,
        text,
      );
    }
    assert.throws(() => parseGuestAddress('vsock:', 'vm1'), /guest vm1: address "vsock:" is not unix:PATH, serial:PATH or vsock:CID/);
  });
});

describe('the hub and its vsock guests', () => {
  let scratch: string;
  let pins: string;
  let vsock: FakeVsock;
  let node: SimNode;
  const logged: { level: number; msg: string }[] = [];
  let clock = 0;

  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'socklb-guest-vsock-'));
    pins = join(scratch, 'pins');
  });

  after(() => rmSync(scratch, { recursive: true, force: true }));

  async function startNode(): Promise<SimNode> {
    return SimNode.start(pins, OLD, {
      listenVsock: vsock.listen,
      vsockPort: 5000,
      now: () => Date.now() + clock,
      logger: pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line) as { level: number; msg: string }) }),
    });
  }

  async function withNode(body: () => Promise<void>): Promise<void> {
    vsock = new FakeVsock(scratch);
    logged.length = 0;
    node = await startNode();
    try {
      await body();
    } finally {
      await node.stop();
      await vsock.close();
      rmSync(pins, { recursive: true, force: true });
    }
  }

  function entry(id: string): GuestEntry {
    const found = node.hub.list().find((guest) => guest.id === id);
    assert.ok(found, `guest ${id} is listed`);
    return found;
  }

  it('listens on its port with the first vsock guest, and stops with the last', async () => {
    await withNode(async () => {
      await node.hub.add('unix', `unix:${join(scratch, 'unix.sock')}`);
      assert.deepEqual(vsock.opened, [], 'a unix: guest needs no vsock listener');
      await node.hub.add('vm1', 'vsock:3');
      await node.hub.add('vm2', 'vsock:4');
      assert.deepEqual(vsock.opened, [5000], 'one listener, on the port given');
      assert.deepEqual(
        node.hub.list().map((guest) => guest.guest),
        [`unix:${join(scratch, 'unix.sock')}`, 'vsock:3', 'vsock:4'],
      );
      await node.hub.remove('vm1');
      assert.ok(vsock.listening, 'open while vm2 is registered');
      await node.hub.remove('vm2');
      assert.ok(!vsock.listening, 'closed with the last vsock guest');
      await node.hub.add('vm3', 'vsock:5');
      assert.deepEqual(vsock.opened, [5000, 5000], 'opened again for the next');
      assert.equal(vsock.closings, 1);
    });
  });

  it('routes each connection to the guest of its peer CID, a new one replacing the old', async () => {
    await withNode(async () => {
      await node.hub.add('vm1', 'vsock:3');
      await node.hub.add('vm2', 'vsock:4');
      const first = new GuestSimulator();
      const second = new GuestSimulator();
      const firstLink = first.connect(await vsock.pathFor(3));
      second.connect(await vsock.pathFor(4));
      await node.caughtUp(first, 'vm1, from CID 3');
      await node.caughtUp(second, 'vm2, from CID 4');
      assert.equal(entry('vm1').snapshots, 1);
      assert.equal(entry('vm2').snapshots, 1);
      node.source.push(NEW);
      await node.caughtUp(first, 'the sync, to vm1');
      await node.caughtUp(second, 'the sync, to vm2');
      // The applier of CID 3 restarted: its new connection is vm1's, the old one is closed.
      first.connect(await vsock.pathFor(3));
      await until(() => firstLink.closed, 'the old connection closed');
      node.source.push(OLD);
      await node.caughtUp(first, 'the sync, over the new connection');
      assert.equal(entry('vm1').phase, 'streaming');
      assert.equal(entry('vm2').snapshots, 1, 'vm2 untouched');
    });
  });

  it('closes at once a connection from a CID no guest has, logging it at most every interval', async () => {
    await withNode(async () => {
      await node.hub.add('vm1', 'vsock:3');
      const honest = new GuestSimulator();
      honest.connect(await vsock.pathFor(3));
      await node.caughtUp(honest, 'vm1');
      const refusals = () => logged.filter((line) => line.msg.includes('which no guest has'));
      for (let attempt = 0; attempt < 20; attempt++) {
        const link = new GuestSimulator().connect(await vsock.pathFor(9));
        await until(() => link.closed, `attempt ${attempt} closed`);
      }
      assert.equal(refusals().length, 1, 'one line for 20 connections in a loop');
      assert.match(refusals()[0]!.msg, /closed a connection from CID 9/);
      clock += REFUSED_PEER_LOG_INTERVAL_MS;
      const link = new GuestSimulator().connect(await vsock.pathFor(9));
      await until(() => link.closed, 'the connection after the interval closed');
      assert.equal(refusals().length, 2);
      assert.match(refusals()[1]!.msg, /20 closed so since this was last logged/);
      node.source.push(NEW);
      await node.caughtUp(honest, 'vm1, undisturbed');
      assert.deepEqual(
        node.hub.list().map((guest) => guest.id),
        ['vm1'],
      );
    });
  });

  it('refuses two guests of one CID, and a guest whose listener cannot open, saying why', async () => {
    await withNode(async () => {
      await node.hub.add('vm1', 'vsock:3');
      assert.deepEqual(await node.hub.add('vm1', 'vsock:3').then((added) => added.outcome), 'unchanged');
      await assert.rejects(node.hub.add('vm2', 'vsock:3'), /^SocklbError: vsock CID 3 is already the address of guest vm1$/);
      await node.hub.remove('vm1');
      for (const [code, reason] of [
        ['EADDRINUSE', /another process holds it \(EADDRINUSE\); give this agent another with run --guest-vsock-port$/],
        ['EAFNOSUPPORT', /this kernel has no vsock \(AF_VSOCK: EAFNOSUPPORT; load vhost_vsock\)$/],
      ] as const) {
        vsock.failWith = code;
        await assert.rejects(node.hub.add('vm3', 'vsock:5'), (error: Error) => {
          assert.match(error.message, /^guest vm3: cannot listen on vsock port 5000: /);
          assert.match(error.message, reason);
          return true;
        });
        assert.ok(!node.hub.has('vm3'), `${code}: not registered`);
        assert.deepEqual(pinnedGuests(pins), [], `${code}: not recorded`);
      }
    });
  });

  it('adopts the vsock guests an earlier run registered, listening again', async () => {
    await withNode(async () => {
      await node.hub.add('vm1', 'vsock:7');
      await node.stop();
      assert.ok(!vsock.listening, 'the agent stopped: its listener closed');
      node = await startNode();
      assert.deepEqual(vsock.opened, [5000, 5000], 'opened again at adopt');
      assert.equal(entry('vm1').guest, 'vsock:7');
      const guest = new GuestSimulator();
      guest.connect(await vsock.pathFor(7));
      await node.caughtUp(guest, 'the adopted guest');
      // A run whose listener cannot open reports the guest, lists it unserved, and serves it once it can.
      await node.stop();
      vsock.failWith = 'EADDRINUSE';
      node = await startNode();
      assert.equal(entry('vm1').phase, 'unserved');
      assert.match(entry('vm1').lastError ?? '', /^guest vm1: cannot listen on vsock port 5000: another process holds it/);
      assert.deepEqual(pinnedGuests(pins), [{ id: 'vm1', address: 'vsock:7' }]);
      assert.ok(
        logged.some((line) => /guest vm1 not served: guest vm1: cannot listen on vsock port 5000: another process holds it/.test(line.msg)),
      );
      vsock.failWith = undefined;
      // The listener a new vsock guest opens is the one vm1 lacked: served with it, not at the next retry.
      await node.hub.add('vm2', 'vsock:8');
      await until(() => entry('vm1').phase === 'disconnected', 'vm1 served with the listener vm2 opened');
      const again = new GuestSimulator();
      again.connect(await vsock.pathFor(7));
      await node.caughtUp(again, 'the guest served once its port was free');
    });
  });

  it('serves one of two pinned guests that claim the same CID, and lists the other unserved', async () => {
    await withNode(async () => {
      await node.stop();
      // Only a hand-edited pin directory can hold this: add refuses a second guest at a CID.
      pinGuest(pins, 'vm1', 'vsock:7');
      pinGuest(pins, 'vm2', 'vsock:7');
      node = await startNode();
      const served = node.hub.list().filter(({ phase }) => phase !== 'unserved');
      assert.equal(served.length, 1, `one guest served: ${JSON.stringify(node.hub.list())}`);
      const [other] = ['vm1', 'vm2'].filter((id) => id !== served[0]?.id);
      const why = `vsock CID 7 is already the address of guest ${served[0]?.id}`;
      assert.ok(
        logged.some((line) => line.msg === `guest ${other} not served: ${why}`),
        JSON.stringify(logged),
      );
      assert.equal(entry(other!).lastError, why, 'the other listed, and why');
      assert.equal(pinnedGuests(pins).length, 2, 'both records kept');
      const guest = new GuestSimulator();
      guest.connect(await vsock.pathFor(7));
      await node.caughtUp(guest, `CID 7, as guest ${served[0]?.id}`);
      await node.hub.remove(other!);
      assert.deepEqual(
        pinnedGuests(pins).map(({ id }) => id),
        [served[0]?.id],
        'the other removed as any guest',
      );
      unpinGuest(pins, served[0]!.id);
    });
  });
});
