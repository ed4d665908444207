// The host's side of the guest stream stopped at every point: the connection cut after every byte
// of a batch and of a snapshot, and the node agent dying there with a new run taking over. The real
// agent and hub (on in-memory maps) serve an in-memory guest (guest-simulator.ts); whatever the
// point, the guest ends holding the node's maps entry for entry, with the node's marker, and a
// snapshot cut short never replaces the datapath the guest had.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAP_NAMES } from '../../src/datapath/layout.js';
import { copyMaps, GuestSimulator, nodeContents, sameContents, servicesState, SimNode, until, type SimLink } from './guest-simulator.js';

// A change small enough to cut at each of its bytes: a backend replaced, a Service added.
const OLD = servicesState(1, () => ['10.244.1.1']);
const NEW = servicesState(2, (index) => [`10.244.2.${index + 1}`, `10.244.3.${index + 1}`]);

describe('the host cut or killed at every point of the stream', () => {
  let scratch: string;
  let path: string;

  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'socklb-guest-session-'));
    path = join(scratch, 'guest.sock');
  });

  after(() => rmSync(scratch, { recursive: true, force: true }));

  async function withNode(body: (node: SimNode) => Promise<void>): Promise<void> {
    const node = await SimNode.start(join(scratch, 'pins'), OLD);
    try {
      await node.hub.add('vm1', `unix:${path}`);
      await body(node);
    } finally {
      await node.stop();
      rmSync(join(scratch, 'pins'), { recursive: true, force: true });
    }
  }

  /** The bytes the host sends a caught-up `guest` for the change to `state`. */
  async function changeBytes(node: SimNode, guest: GuestSimulator, link: SimLink, state: typeof NEW): Promise<number> {
    const before = link.received;
    node.source.push(state);
    await node.caughtUp(guest, 'the change');
    return link.received - before;
  }

  it('gets a new guest a snapshot, then each change, as the node holds them', async () => {
    await withNode(async (node) => {
      const guest = new GuestSimulator();
      guest.connect(path);
      await node.caughtUp(guest, 'the snapshot');
      node.source.push(NEW);
      await node.caughtUp(guest, 'the change');
      assert.equal(guest.contents().get(MAP_NAMES.frontends)?.size, 2);
      assert.ok(sameContents(guest.contents(), nodeContents(node.maps)));
    });
  });

  it('a link cut after any byte of a batch, either way: the guest ends as the node is', async () => {
    await withNode(async (node) => {
      const guest = new GuestSimulator();
      let link = guest.connect(path);
      await node.caughtUp(guest, 'the snapshot');
      const sizes = new Map([
        [NEW, await changeBytes(node, guest, link, NEW)],
        [OLD, await changeBytes(node, guest, link, OLD)],
      ]);
      const largest = Math.max(...sizes.values());
      for (let cut = 0; cut <= largest; cut++) {
        for (const [state, size] of sizes) {
          if (cut > size) {
            await changeBytes(node, guest, link, state);
            continue;
          }
          link.cutAfter(cut);
          node.source.push(state);
          await until(() => link.closed, `the cut after ${cut} bytes`);
          // Up to its last byte the batch is not whole, and the guest has none of it; whole, all of it.
          const expected = cut < size ? node.marker.seq - 1n : node.marker.seq;
          assert.equal(guest.marker.seq, expected, `cut after ${cut} of ${size} bytes`);
          link = guest.connect(path);
          await node.caughtUp(guest, `the change after a cut at byte ${cut} of ${size}`);
        }
      }
    });
  });

  it('a snapshot cut after any byte leaves the datapath of the guest as it was, and the next one gets in', async () => {
    await withNode(async (node) => {
      const guest = new GuestSimulator();
      let link = guest.connect(path);
      await node.caughtUp(guest, 'the first snapshot');
      const heldBefore = copyMaps(guest.live);
      const contentsBefore = guest.contents();
      link.close();
      await until(() => link.closed, 'the guest gone');
      node.source.push(NEW);
      // A guest whose marker is of another run: a snapshot of the state now, every time.
      const foreign = { epoch: node.hub.epoch ^ 0xffn, seq: 1n };
      guest.setMarker(foreign);
      link = guest.connect(path);
      await node.caughtUp(guest, 'a whole snapshot');
      const size = link.received;
      assert.ok(size > 100, `a snapshot of ${size} bytes`);
      for (let cut = 0; cut < size; cut++) {
        guest.live = copyMaps(heldBefore);
        guest.setMarker(foreign);
        link = guest.connect(path, { cutAfter: cut });
        await until(() => link.closed, `the cut after ${cut} bytes`);
        assert.deepEqual(guest.marker, foreign, `cut after ${cut} of ${size} bytes: no COMMIT`);
        assert.ok(sameContents(guest.contents(), contentsBefore), `cut after ${cut} of ${size} bytes: the datapath as it was`);
        link = guest.connect(path);
        await node.caughtUp(guest, `the snapshot after a cut at byte ${cut} of ${size}`);
      }
    });
  });

  it('the agent killed at points of a batch: the next run snapshots the guest to the same maps', async () => {
    const pins = join(scratch, 'pins');
    let node = await SimNode.start(pins, OLD);
    try {
      await node.hub.add('vm1', `unix:${path}`);
      const guest = new GuestSimulator();
      let link = guest.connect(path);
      await node.caughtUp(guest, 'the snapshot');
      const size = await changeBytes(node, guest, link, NEW);
      await changeBytes(node, guest, link, OLD);
      for (const cut of [0, 1, 4, 5, 24, Math.floor(size / 2), size - 1, size]) {
        link.cutAfter(cut);
        node.source.push(NEW);
        await until(() => link.closed, `the cut after ${cut} bytes`);
        // The agent dies; the next run reads its state back from the node's maps, under a new epoch.
        await node.stop();
        node = await SimNode.start(pins, NEW, { maps: node.maps });
        link = guest.connect(path);
        await node.caughtUp(guest, `the next run's snapshot after a cut at byte ${cut} of ${size}`);
        await changeBytes(node, guest, link, OLD);
      }
    } finally {
      await node.stop();
      rmSync(pins, { recursive: true, force: true });
    }
  });

  it('a batch replayed to a guest that already holds it changes nothing', async () => {
    await withNode(async (node) => {
      const guest = new GuestSimulator();
      let link = guest.connect(path);
      await node.caughtUp(guest, 'the snapshot');
      const from = node.marker;
      await changeBytes(node, guest, link, NEW);
      await changeBytes(node, guest, link, OLD);
      await changeBytes(node, guest, link, NEW);
      link.close();
      await until(() => link.closed, 'the guest gone');
      // The maps hold the last sync; the marker says three before, as after a lost marker write.
      guest.setMarker(from);
      const batches = guest.batches;
      link = guest.connect(path);
      await node.caughtUp(guest, 'the replayed batches');
      assert.equal(guest.batches - batches, 3, 'the three syncs again, from the log');
      assert.equal(guest.contents().get(MAP_NAMES.backends)?.size, 4);
    });
  });
});
