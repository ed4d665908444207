// Guest mode end to end: `socklb run` streams its datapath to socklb-applier in an emulated
// microVM guest (test/lab/guest.ts: its own mount, cgroup and network namespaces, a bpffs of its
// own), registered with `socklb sandbox add --guest unix:PATH`. A client in the guest reaches
// ClusterIPs (TCP, connected and unconnected UDP, getpeername); endpoint changes reach it; the
// guest's maps are a copy of the node's, entry for entry; the registration and the guest's
// datapath survive the agent's SIGKILL; hostile frames on one guest's socket disturb nobody else; an
// applier stopped (SIGSTOP) through changes of 300 Services costs the agent a bounded queue, and
// catches up once it runs again.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:net';
import { MAP_NAMES } from '../../src/datapath/layout.js';
import type { GuestEntry } from '../../src/sandbox/protocol.js';
import { EmulatedGuest } from '../lab/guest.js';
import type { Pod } from '../lab/lab.js';
import { APPLIER, dumpMapDirectory, skipReason } from './guest-support.js';
import { endpointSlice, missingPrivileges, service, socklb, writeManifest, type RunningAgent } from './support.js';
import { Testbed } from './testbed.js';
import { runSocketClient } from './udp-support.js';

const WEB = '10.96.60.10';
const DNS = '10.96.60.53';
const HTTP = { name: 'http', port: 80, targetPort: 8080 };
const ECHO = { name: 'echo', port: 53, protocol: 'UDP' as const, targetPort: 8080 };
/** Services published at once while the applier is stopped. */
const MANY = 300;
const manyIP = (index: number) => `10.96.${62 + Math.floor(index / 250)}.${(index % 250) + 1}`;
const TRANSLATED_MAPS = [MAP_NAMES.frontends, MAP_NAMES.slots, MAP_NAMES.backends];

describe('guest mode: a microVM guest served by the node agent', { skip: missingPrivileges() ?? skipReason() }, () => {
  const bed = new Testbed('guest-mode');
  let pods: Pod[];
  let guest: EmulatedGuest;
  let applier: ReturnType<EmulatedGuest['spawn']> | undefined;
  let agent: RunningAgent;
  let socketDirectory: string;
  let controlSocket: string;

  const manifest = (backends: Pod[]) =>
    writeManifest(join(bed.manifests, 'web.yaml'), [
      service('web', [WEB], [HTTP]),
      endpointSlice(
        'web-1',
        'web',
        'IPv4',
        [{ name: 'http', port: 8080 }],
        backends.map((pod) => ({ ip: pod.ipv4 })),
      ),
      service('echo', [DNS], [ECHO]),
      endpointSlice(
        'echo-1',
        'echo',
        'IPv4',
        [{ name: 'echo', port: 8080, protocol: 'UDP' }],
        backends.map((pod) => ({ ip: pod.ipv4 })),
      ),
    ]);
  const startAgent = async () => {
    agent = await bed.startAgent(['--manifests', bed.manifests, '--pin-dir', bed.pinDir, '--sandboxes-only'], { controlSocket });
  };
  const guests = async (): Promise<GuestEntry[]> => {
    const { stdout } = await socklb(['sandbox', 'list', '-o', 'json', '--control-socket', controlSocket]);
    return (JSON.parse(stdout) as GuestEntry[]).filter((entry) => 'guest' in entry);
  };
  const until = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const streaming = (id: string) =>
    until(`guest ${id} streaming with no lag`, async () =>
      (await guests()).find((entry) => entry.id === id && entry.phase === 'streaming' && entry.lag === 0),
    );
  const reaches = (pod: Pod) =>
    until(`${WEB} reaching ${pod.name} from the guest`, async () => {
      const report = await bed.lab.runClient(guest.sandbox, { target: WEB, port: 80, count: 4 });
      return report.hits[pod.name] === 4 ? report : undefined;
    });
  const nodeMaps = () => dumpMapDirectory(join(bed.pinDir, 'maps'), TRANSLATED_MAPS);
  const guestMaps = () => dumpMapDirectory(guest.hostPath('/sys/fs/bpf/socklb/maps'), TRANSLATED_MAPS);

  before(async () => {
    await bed.prepare();
    socketDirectory = await bed.scratchDirectory('guest-sockets');
    controlSocket = join(socketDirectory, 'control.sock');
    pods = await Promise.all([bed.lab.addPod('a'), bed.lab.addPod('b')]);
    await Promise.all(pods.map((pod) => bed.lab.startEchoServer(pod, { name: pod.name, port: 8080, udp: true })));
    guest = await EmulatedGuest.start(bed.lab, 'g1');
    await manifest([pods[0]!]);
    await startAgent();
  });
  after(async () => {
    if (applier) await guest.stop(applier);
    await bed.close();
  });

  it('a client in the guest reaches ClusterIPs once the guest is registered and its applier connects', async () => {
    const untranslated = await bed.lab.runClient(guest.sandbox, { target: WEB, port: 80, count: 1 });
    assert.deepEqual(untranslated.errors, { ENETUNREACH: 1 }, 'nothing translates before the guest is served');
    const added = await socklb([
      'sandbox',
      'add',
      '--id',
      'g1',
      '--guest',
      `unix:${join(socketDirectory, 'g1.sock')}`,
      '--control-socket',
      controlSocket,
    ]);
    assert.equal(added.code, 0, added.stderr);
    applier = guest.spawn([APPLIER, '--connect', `unix:${join(socketDirectory, 'g1.sock')}`]);
    await streaming('g1');
    const report = await reaches(pods[0]!);
    assert.deepEqual(report.peers, [`${WEB}:80`], 'getpeername() shows the Service');
    const connected = await bed.lab.runClient(guest.sandbox, { target: DNS, port: 53, count: 3, udp: true });
    assert.deepEqual(connected.hits, { a: 3 }, 'connected UDP');
    const unconnected = await runSocketClient<{ replies: { source: string; name: string }[] }>(bed.lab, guest.sandbox, [
      'multi',
      '--targets',
      `${DNS}:53`,
    ]);
    assert.deepEqual(
      unconnected.replies.map(({ source, name }) => ({ source, name })),
      [{ source: `${DNS}:53`, name: 'a' }],
      'unconnected UDP, its reply from the Service',
    );
    assert.deepEqual(await guestMaps(), await nodeMaps(), "the guest's maps are the node's, entry for entry");
  });

  it("an endpoint change reaches the guest, and its maps stay the node's", async () => {
    await manifest([pods[1]!]);
    await reaches(pods[1]!);
    await streaming('g1');
    assert.deepEqual(await guestMaps(), await nodeMaps());
  });

  it('keeps translating while the agent is killed, and is brought in step by the next agent', async () => {
    await agent.stop('SIGKILL');
    await reaches(pods[1]!);
    await manifest(pods);
    await startAgent();
    // A new agent run has a new epoch: the guest gets a snapshot, then the change.
    const entry = await streaming('g1');
    assert.ok(entry.snapshots >= 1, `the guest got a snapshot from the new agent: ${JSON.stringify(entry)}`);
    await until('both pods answering in the guest', async () => {
      const report = await bed.lab.runClient(guest.sandbox, { target: WEB, port: 80, count: 20 });
      return report.hits['a'] && report.hits['b'] ? report : undefined;
    });
    assert.deepEqual(await guestMaps(), await nodeMaps());
  });

  it("a guest's socket fed garbage disturbs neither the agent nor the other guests", async () => {
    const hostile = join(socketDirectory, 'g2.sock');
    assert.equal((await socklb(['sandbox', 'add', '--id', 'g2', '--guest', `unix:${hostile}`, '--control-socket', controlSocket])).code, 0);
    for (let round = 0; round < 20; round++) {
      await new Promise<void>((resolve) => {
        const socket = connect(hostile, () =>
          socket.end(Buffer.from(Array.from({ length: 64 + round * 97 }, (_, i) => (i * 31 + round * 7) & 0xff))),
        );
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
      });
    }
    await manifest([pods[0]!]);
    await reaches(pods[0]!);
    const entries = await guests();
    assert.equal(entries.find((entry) => entry.id === 'g1')?.phase, 'streaming');
    assert.notEqual(entries.find((entry) => entry.id === 'g2')?.phase, 'streaming', 'the hostile guest got no stream');
    assert.equal((await socklb(['sandbox', 'remove', '--id', 'g2', '--control-socket', controlSocket])).code, 0);
  });

  it('registers and unregisters a guest through the OCI hook, from the socklb.io/guest annotation', async () => {
    const state = (status: string) =>
      JSON.stringify({
        ociVersion: '1.0.2',
        id: 'vm3',
        status,
        bundle: '/b',
        annotations: { 'socklb.io/guest': `unix:${join(socketDirectory, 'vm3.sock')}` },
      });
    const created = await socklb(['oci-hook', 'createRuntime', '--control-socket', controlSocket], undefined, state('creating'));
    assert.equal(created.code, 0, created.stderr);
    assert.equal((await guests()).find((entry) => entry.id === 'vm3')?.guest, `unix:${join(socketDirectory, 'vm3.sock')}`);
    const stopped = await socklb(['oci-hook', 'poststop', '--control-socket', controlSocket], undefined, state('stopped'));
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(
      (await guests()).find((entry) => entry.id === 'vm3'),
      undefined,
    );
  });

  it('a stopped applier costs the agent a bounded queue, and is brought in step once it runs again', async () => {
    const many = (pod: Pod) =>
      writeManifest(
        join(bed.manifests, 'many.yaml'),
        Array.from({ length: MANY }, (_, index) => [
          service(`many-${index}`, [manyIP(index)], [HTTP]),
          endpointSlice(`many-${index}-1`, `many-${index}`, 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
        ]).flat(),
      );
    await many(pods[0]!);
    await streaming('g1');
    const group = -applier!.pid!;
    process.kill(group, 'SIGSTOP');
    try {
      let largestQueue = 0;
      for (let change = 1; change <= 6; change++) {
        await many(pods[change % 2]!);
        const entry = await until(`sync ${change} queued for the stopped guest`, async () =>
          (await guests()).find((guest) => guest.id === 'g1' && (guest.lag ?? 0) >= change),
        );
        largestQueue = Math.max(largestQueue, entry.queuedBytes);
      }
      // Each of these syncs is one BATCH, under its 1 MiB limit: the bound plus one sync.
      assert.ok(largestQueue <= (4 << 20) + (1 << 20), `${largestQueue} bytes queued for the stopped guest`);
    } finally {
      process.kill(group, 'SIGCONT');
    }
    await streaming('g1');
    assert.deepEqual(await guestMaps(), await nodeMaps());
    await until(`${manyIP(MANY - 1)} reaching ${pods[0]!.name} from the guest`, async () => {
      const report = await bed.lab.runClient(guest.sandbox, { target: manyIP(MANY - 1), port: 80, count: 4 });
      return report.hits[pods[0]!.name] === 4 ? report : undefined;
    });
  });
});
