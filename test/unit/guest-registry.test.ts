// Who holds an id and an address while guests are being added, and guests an earlier run
// registered that cannot be served now: requests that arrive while a guest's listener is being
// opened find its id and address taken, and a pinned guest whose listener does not open stays
// listed, removable and its id its own, and is served once the cause goes away.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { pinGuest, pinnedGuests } from '../../src/pins/layout.js';
import { sandboxDirectory } from '../../src/sandbox/directory.js';
import type { GuestEntry } from '../../src/sandbox/protocol.js';
import { SandboxRegistry, type SandboxAttachments } from '../../src/sandbox/registry.js';
import { GuestSimulator, servicesState, SimNode } from './guest-simulator.js';

const STATE = servicesState(1, () => ['10.244.1.1']);

/** Attaches nothing: the cgroup sandboxes here only take ids. */
const NO_KERNEL: SandboxAttachments = { cgroupRoot: '/cg', attach: () => undefined, detach: () => undefined, reattach: () => undefined };

/** Listening Unix sockets of this process: every one the hub opens, and those of the simulator's node. */
function unixListeners(): number {
  return process.getActiveResourcesInfo().filter((name) => name === 'PipeServerWrap').length;
}

describe('guest registrations', () => {
  let scratch: string;
  let pins: string;
  let node: SimNode;
  const logged: string[] = [];

  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'socklb-guest-registry-'));
    pins = join(scratch, 'pins');
  });

  after(() => rmSync(scratch, { recursive: true, force: true }));

  async function startNode(): Promise<SimNode> {
    return SimNode.start(pins, STATE, {
      logger: pino({ level: 'info' }, { write: (line: string) => logged.push((JSON.parse(line) as { msg: string }).msg) }),
    });
  }

  async function withNode(body: () => Promise<void>): Promise<void> {
    logged.length = 0;
    node = await startNode();
    try {
      await body();
    } finally {
      await node.stop();
      rmSync(pins, { recursive: true, force: true });
    }
  }

  function entry(id: string): GuestEntry | undefined {
    return node.hub.list().find((guest) => guest.id === id);
  }

  it('gives one of concurrent adds of one address the address, and leaves no listener behind', async () => {
    const before = unixListeners();
    await withNode(async () => {
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
    await withNode(async () => {
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
    await withNode(async () => {
      const jail = join(scratch, 'jail');
      const address = `unix:${join(jail, 'v.sock')}`;
      await node.stop();
      pinGuest(pins, 'vm1', address);
      node = await startNode();
      const why = `guest vm1: ${jail} is not a directory`;
      const { guest: listedAt, phase, lastError } = entry('vm1') ?? {};
      assert.deepEqual({ listedAt, phase, lastError }, { listedAt: address, phase: 'unserved', lastError: why });
      assert.ok(node.hub.has('vm1'));
      const directory = sandboxDirectory(new SandboxRegistry(NO_KERNEL), node.hub);
      assert.throws(() => directory.add({ op: 'add', id: 'vm1', cgroup: '/cg/vm1' }), /sandbox vm1 is already registered as a guest/);
      await assert.rejects(node.hub.add('vm2', address), /is already the address of guest vm1$/);
      assert.equal((await node.hub.add('vm1', address)).outcome, 'unchanged');
      // Retried as often as the agent likes, it is reported once for each reason.
      await node.hub.retryUnserved();
      await node.hub.retryUnserved();
      assert.deepEqual(
        logged.filter((msg) => msg.startsWith('guest vm1')),
        [`guest vm1 not served: ${why}`],
      );
      mkdirSync(jail);
      await node.hub.retryUnserved();
      assert.equal(entry('vm1')?.phase, 'disconnected');
      assert.equal(entry('vm1')?.lastError, undefined);
      assert.ok(logged.includes(`guest vm1 served; it was not: ${why}`));
      const guest = new GuestSimulator();
      guest.connect(join(jail, 'v.sock'));
      await node.caughtUp(guest, 'the guest served at last');
    });
  });

  it('removes a pinned guest it cannot serve, unpinning it', async () => {
    await withNode(async () => {
      await node.stop();
      pinGuest(pins, 'vm1', `unix:${join(scratch, 'gone', 'v.sock')}`);
      node = await startNode();
      const directory = sandboxDirectory(new SandboxRegistry(NO_KERNEL), node.hub);
      assert.equal((await directory.remove('vm1')).id, 'vm1');
      assert.equal(entry('vm1'), undefined);
      assert.deepEqual(pinnedGuests(pins), []);
      assert.equal((await directory.add({ op: 'add', id: 'vm1', cgroup: '/cg/vm1' })).outcome, 'added', 'its id free again');
    });
  });
});
