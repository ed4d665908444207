// The hub serving several guests with the real agent on in-memory maps (guest-simulator.ts): a
// guest registered after syncs nobody was sent, guests whose maps the stream cannot write, a guest
// that stops reading (what the host queues for it stays bounded, and it is brought up to date from
// the log or by a snapshot), and hostile frames fuzzed at the host, which never disturb the agent,
// the node's maps or another guest's stream.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAP_NAMES } from '../../src/datapath/layout.js';
import { GuestSimulator, servicesState, SimNode, until } from './guest-simulator.js';

const OLD = servicesState(1, () => ['10.244.1.1']);
const NEW = servicesState(2, (index) => [`10.244.2.${index + 1}`, `10.244.3.${index + 1}`]);

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

  it('brings up to date a guest registered again after a sync that no guest was sent', async () => {
    await withNode({}, async () => {
      const path = join(scratch, 'again.sock');
      await node.hub.add('vm1', `unix:${path}`);
      const guest = new GuestSimulator();
      const link = guest.connect(path);
      await node.caughtUp(guest, 'the snapshot');
      await node.hub.remove('vm1');
      await until(() => link.closed, 'the connection closed');
      node.source.push(NEW);
      await node.hub.add('vm1', `unix:${path}`);
      guest.connect(path);
      await node.caughtUp(guest, 'the sync made while no guest was registered');
      assert.equal(guest.contents().get(MAP_NAMES.frontends)?.size, 2);
    });
  });
});
