// socklb-applier stopped at every point (the test build's SOCKLB_APPLIER_EXIT_AT, an abrupt
// _exit), then restarted: after every map write of a snapshot's batch and of a batch on the live
// maps, and after every change a COMMIT makes to the pins and links, first commit and replacement
// alike (and its recovery stopped once more). What a restarted applier says in HELLO, what bpftool
// reads in the maps and what a client in the guest reaches must always be the old datapath or the
// new one (docs/guest-protocol.md); a batch cut short, a consistent prefix that its replay
// finishes.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Marker } from '../../src/datapath/layout.js';
import { encodeBatch, encodeCommit, packGroups, type Hello, type WriteTarget } from '../../src/guest/wire.js';
import { frontendId } from '../../src/model/keys.js';
import type { Backend, DesiredFrontend } from '../../src/model/types.js';
import type { GuestConnection } from '../lab/guest-host.js';
import { planGroups, snapshotGroups, stateOf } from '../lab/guest-writes.js';
import { Lab, type Pod } from '../lab/lab.js';
import {
  assertConsistent,
  dumpedMarker,
  dumpMaps,
  GuestRig,
  loadObject,
  request,
  sendGroups,
  skipReason,
  snapshot,
  type MapsDump,
} from './guest-support.js';

const CLUSTER_IP = '10.96.0.10';
const OTHER_IP = '10.96.0.11';
const PROGRAMS = [
  'socklb_connect4',
  'socklb_connect6',
  'socklb_getpeername4',
  'socklb_getpeername6',
  'socklb_recvmsg4',
  'socklb_recvmsg6',
  'socklb_sendmsg4',
  'socklb_sendmsg6',
  'socklb_sock_release',
];

const marker = (epoch: number, seq: number): Marker => ({ epoch: BigInt(epoch), seq: BigInt(seq) });
const NO_MARKER = marker(0, 0);

function desired(frontends: [address: string, backends: Backend[]][]): Map<string, DesiredFrontend> {
  return new Map(
    frontends.map(([address, backends], index) => {
      const key = { address, port: 80, protocol: 'TCP' as const };
      return [
        frontendId(key),
        { key, service: { namespace: 'guest', name: `svc-${index}`, portName: 'http' }, backends, affinityTimeoutSeconds: 0 },
      ];
    }),
  );
}

describe('socklb-applier stopped at every point, then restarted (the test build)', { skip: skipReason(), concurrency: false }, () => {
  const lab = new Lab();
  let scratch: string;
  let podA: Pod;
  let podB: Pod;
  let OLD: Map<string, DesiredFrontend>;
  let NEW: Map<string, DesiredFrontend>;

  before(async () => {
    await Lab.sweepStale();
    scratch = await mkdtemp(join(tmpdir(), 'socklb-guest-faults-'));
    [podA, podB] = await Promise.all([lab.addPod('pod-a'), lab.addPod('pod-b')]);
    await Promise.all([podA, podB].map((pod) => lab.startEchoServer(pod, { name: pod.name, port: 8080 })));
    const at = (pod: Pod): Backend => ({ address: pod.ipv4, port: 8080 });
    OLD = desired([[CLUSTER_IP, [at(podA)]]]);
    NEW = desired([
      [CLUSTER_IP, [at(podB)]],
      [OTHER_IP, [at(podA), at(podB)]],
    ]);
  });

  after(async () => {
    await lab.close();
    await rm(scratch, { recursive: true, force: true });
  });

  /** Who a client in the guest reaches at the ClusterIP: a pod's name, or the error. */
  async function reached(rig: GuestRig): Promise<string> {
    const report = await lab.runClient(rig.guest.sandbox, { target: CLUSTER_IP, port: 80, count: 1 });
    return Object.keys(report.hits)[0] ?? Object.keys(report.errors)[0] ?? 'nothing';
  }

  /** A clean applier's view after a restart: its HELLO and the maps. */
  async function restart(rig: GuestRig): Promise<{ connection: GuestConnection; hello: Hello; dump: MapsDump }> {
    await rig.stopApplier();
    const { connection, hello } = await rig.connect();
    return { connection, hello, dump: await dumpMaps(rig) };
  }

  /** Sends frames the applier will not get to answer, and waits for its injected fault. */
  async function faultDuring(rig: GuestRig, connection: GuestConnection, frames: Buffer[]): Promise<void> {
    for (const frame of frames) connection.send(frame);
    await rig.applier?.faulted();
  }

  it('a snapshot cut at any write of its batch leaves the live datapath as it was', async () => {
    const rig = await GuestRig.start(lab, 'snapshot-cut', scratch);
    try {
      const first = await rig.connect();
      await snapshot(first.connection, first.hello, stateOf(OLD), marker(1, 1));
      const oldDump = await dumpMaps(rig);
      let writes = Infinity;
      for (let n = 1; n <= writes; n++) {
        await rig.stopApplier();
        const { connection, hello } = await rig.connect({ exitAt: `write:${n}` });
        const target = await loadObject(connection, hello);
        const groups = snapshotGroups(stateOf(NEW), marker(2, 1), target);
        writes = groups.reduce((sum, group) => sum + group.writes.length, 0);
        await faultDuring(
          rig,
          connection,
          packGroups(groups, target).map((run) => encodeBatch({ ...marker(2, 1), groups: run }, target)),
        );
        const after = await restart(rig);
        assert.deepEqual(after.hello.marker, marker(1, 1), `after write ${n}`);
        assert.deepEqual(after.dump, oldDump, `after write ${n}`);
        assert.equal(await reached(rig), 'pod-a', `after write ${n}`);
      }
    } finally {
      await rig.close();
    }
  });

  it('a live batch cut at any write leaves a consistent prefix under the old marker; its replay gives the new state', async () => {
    const rig = await GuestRig.start(lab, 'batch-cut', scratch);
    try {
      // The new state, once, for its dump; then the old one back for every cut.
      const { connection, hello } = await rig.connect();
      const target = await snapshotOf(connection, hello, OLD);
      const batch = encodeBatch({ ...marker(1, 2), groups: planGroups(stateOf(OLD), NEW, marker(1, 2), target) }, target);
      const writes = planGroups(stateOf(OLD), NEW, marker(1, 2), target).reduce((sum, group) => sum + group.writes.length, 0);
      assert.equal((await request(connection, batch, 'ack')).error, 0);
      const newDump = await dumpMaps(rig);
      await snapshotOf(connection, hello, OLD);
      const oldDump = await dumpMaps(rig);
      assert.notDeepEqual(newDump, oldDump);

      for (let n = 1; n <= writes; n++) {
        await rig.stopApplier();
        const { connection: faulty } = await rig.connect({ exitAt: `write:${n}` });
        await faultDuring(rig, faulty, [batch]);
        const cut = await restart(rig);
        assertConsistent(cut.dump);
        assert.deepEqual(cut.hello.marker, n < writes ? marker(1, 1) : marker(1, 2), `after write ${n} of ${writes}`);
        assert.notEqual(await reached(rig), 'ENETUNREACH', `after write ${n}`);
        assert.equal((await request(cut.connection, batch, 'ack')).error, 0);
        assert.deepEqual(await dumpMaps(rig), newDump, `replayed after write ${n}`);
        assert.equal(await reached(rig), 'pod-b');
        await snapshotOf(cut.connection, cut.hello, OLD);
      }
    } finally {
      await rig.close();
    }
  });

  for (const variant of ['the first commit', 'a commit replacing a datapath'] as const) {
    it(`${variant}, stopped after any change to the pins and links, leaves the old datapath or the new one`, async () => {
      const rig = await GuestRig.start(lab, variant === 'the first commit' ? 'commit-first' : 'commit-next', scratch);
      try {
        const { connection, hello } = await rig.connect();
        await snapshotOf(connection, hello, NEW, marker(2, 1));
        const newDump = await dumpMaps(rig);
        const newMaps = readdirSync(rig.pinPath('/maps')).sort();
        const outcomes: ('old' | 'new')[] = [];
        for (let k = 1; ; k++) {
          const old = await prepareOld(rig, variant);
          const faulty = await rig.connect({ exitAt: `commit:${k}` });
          const target = await loadObject(faulty.connection, faulty.hello);
          await sendGroups(faulty.connection, target, marker(2, 1), snapshotGroups(stateOf(NEW), marker(2, 1), target));
          faulty.connection.send(encodeCommit(marker(2, 1)));
          const ack = await faulty.connection.expect('ack').catch(() => undefined);
          if (ack) {
            assert.equal(ack.error, 0);
            break;
          }
          await rig.applier?.faulted();
          // A restart whose recovery has a change to make is stopped at it too: recovery resumes itself.
          if (existsSync(rig.pinPath('/staged/complete'))) {
            rig.start({ exitAt: 'commit:1' });
            await rig.applier?.faulted();
          }
          const after = await restart(rig);
          const where = `${variant}, stopped after change ${k}`;
          assert.deepEqual(readdirSync(rig.pinPath()).sort(), ['links', 'maps'], `${where}: no staged/ left`);
          if (after.hello.marker.epoch === 2n) {
            outcomes.push('new');
            assert.deepEqual(after.hello.marker, marker(2, 1), where);
            assert.deepEqual(after.dump, newDump, where);
            assert.deepEqual(readdirSync(rig.pinPath('/maps')).sort(), newMaps, where);
            assert.deepEqual(readdirSync(rig.pinPath('/links')).sort(), PROGRAMS, where);
            assert.equal(await reached(rig), 'pod-b', where);
          } else {
            outcomes.push('old');
            assert.deepEqual(after.hello.marker, old.marker, where);
            assert.deepEqual(after.dump, old.dump, where);
            assert.deepEqual(readdirSync(rig.pinPath('/links')).sort(), old.links, where);
            assert.equal(await reached(rig), old.reached, where);
          }
        }
        // Old up to the commit point, new from it on, and both seen.
        const firstNew = outcomes.indexOf('new');
        assert.ok(firstNew > 0, outcomes.join(' '));
        assert.ok(
          outcomes.slice(firstNew).every((outcome) => outcome === 'new'),
          outcomes.join(' '),
        );
      } finally {
        await rig.close();
      }
    });
  }

  /** Snapshots `wanted` into the guest under `at` (default 1/1); the new live maps' target. */
  async function snapshotOf(
    connection: GuestConnection,
    hello: Hello,
    wanted: Map<string, DesiredFrontend>,
    at = marker(1, 1),
  ): Promise<WriteTarget> {
    return snapshot(connection, hello, stateOf(wanted), at);
  }

  /** The datapath a commit replaces: none for a first commit (every pin removed), else OLD, committed by a clean applier. */
  async function prepareOld(
    rig: GuestRig,
    variant: 'the first commit' | 'a commit replacing a datapath',
  ): Promise<{ marker: Marker; dump: MapsDump; links: string[]; reached: string }> {
    await rig.stopApplier();
    if (variant === 'the first commit') {
      // Unpinning a link detaches it: the guest is as new.
      for (const directory of ['/maps', '/links', '/staged']) rmSync(rig.pinPath(directory), { recursive: true, force: true });
      return { marker: NO_MARKER, dump: {}, links: [], reached: 'ENETUNREACH' };
    }
    const { connection, hello } = await rig.connect();
    await snapshotOf(connection, hello, OLD);
    await rig.stopApplier();
    const dump = await dumpMaps(rig);
    assert.deepEqual(dumpedMarker(dump), marker(1, 1));
    return { marker: marker(1, 1), dump, links: PROGRAMS, reached: 'pod-a' };
  }
});
