// Who holds an id and an address while guests are being added: requests that arrive while a
// guest's listener is being opened find its id and address taken.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { pinnedGuests } from '../../src/pins/layout.js';
import { sandboxDirectory } from '../../src/sandbox/directory.js';
import { SandboxRegistry, type SandboxAttachments } from '../../src/sandbox/registry.js';
import { servicesState, SimNode } from './guest-simulator.js';

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
});
