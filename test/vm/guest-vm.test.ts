// Guest mode in a real, separate kernel: Debian's 6.1 cloud kernel under QEMU (TCG: no hardware
// virtualisation needed) boots a busybox initramfs with the shipped dist/socklb-applier on a
// virtio-serial port. The shipped agent (dist/socklb.js `run`, from manifests) is told of the VM
// with `socklb sandbox add --guest serial:PATH`: it listens on PATH, QEMU's chardev connects there
// in client mode and reconnects. From inside the guest, busybox wget reaches a ClusterIP whose
// backend is on the host's loopback, and sees an endpoint change and a new Service port arrive, and
// QEMU reconnects to an agent started after the last was SIGKILLed, which brings the guest in step.
//
//   make test-vm      (root; fetches QEMU and the kernel, see the Makefile)
//
// The backends and QEMU run in a network namespace of the test's own: QEMU's user-mode network
// (slirp) runs in QEMU's process, and takes the guest's 10.0.2.2:PORT to 127.0.0.1:PORT of the
// namespace QEMU is in, where the echo servers listen. The guest has no default route, so a
// ClusterIP that is not translated fails inside it and never reaches slirp.
// Env: SOCKLB_VM_KERNEL, the directory test/vm/get-kernel.sh filled (default build/vm/kernel).

import assert from 'node:assert/strict';
import { release } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GuestEntry } from '../../src/sandbox/protocol.js';
import type { Pod } from '../lab/lab.js';
import { endpointSlice, service, socklb, writeManifest, type RunningAgent, type ServicePortSpec } from '../integration/support.js';
import { Testbed } from '../integration/testbed.js';
import { AGENT, APPLIER, Console, HERE, buildInitramfs, qemuArgv, vmSkipReason } from './vm-support.js';

const WEB = '10.96.70.10';
/** Where the guest reaches the loopback of QEMU's network namespace (slirp's host address). */
const HOST_LOOPBACK = '10.0.2.2';
const URL_HTTP = `http://${WEB}/`;
const URL_ALT = `http://${WEB}:81/`;

describe('guest mode in a real guest kernel under QEMU', { skip: vmSkipReason() }, () => {
  const bed = new Testbed('guest-vm');
  let host: Pod;
  let controlSocket: string;
  let guestSocket: string;
  let guestConsole: Console;
  let agent: RunningAgent;
  let seen = 0;

  const manifest = (ports: ServicePortSpec[], slicePorts: ServicePortSpec[]) =>
    writeManifest(join(bed.manifests, 'web.yaml'), [
      service('web', [WEB], ports),
      endpointSlice('web-1', 'web', 'IPv4', slicePorts, [{ ip: HOST_LOOPBACK }]),
    ]);
  const startAgent = async () => {
    agent = await bed.startAgent(['--manifests', bed.manifests, '--pin-dir', bed.pinDir, '--sandboxes-only'], {
      entry: AGENT,
      controlSocket,
    });
  };
  const guests = async (): Promise<GuestEntry[]> => {
    const { stdout } = await socklb(['sandbox', 'list', '-o', 'json', '--control-socket', controlSocket], AGENT);
    return (JSON.parse(stdout) as GuestEntry[]).filter((entry) => 'guest' in entry);
  };
  /**
   * vm1's entry once it is streaming: the guest translates as soon as it commits a snapshot, a
   * moment before the agent has read the COMMIT's ACK.
   */
  const streamingGuest = async (): Promise<GuestEntry> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const entry = (await guests()).find((guest) => guest.id === 'vm1');
      if (entry?.phase === 'streaming' || Date.now() > deadline) {
        assert.equal(entry?.phase, 'streaming', JSON.stringify(entry));
        return entry;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  /**
   * Waits until the guest has printed `answer` for each [url, answer], after the lines already
   * seen, in any order: one change can land between two of the probe's URLs.
   */
  const guestSees = async (...expected: [url: string, answer: string][]) => {
    const found = await Promise.all(
      expected.map(([url, answer]) =>
        guestConsole.waitFor(new RegExp(`^guest: ${url.replace(/[.:/]/g, '\\$&')} -> ${answer}$`), { from: seen }),
      ),
    );
    seen = Math.max(...found.map(({ end }) => end));
  };

  before(async () => {
    await bed.prepare();
    const scratch = await bed.scratchDirectory('guest-vm');
    controlSocket = join(scratch, 'control.sock');
    guestSocket = join(scratch, 'vm1.serial');
    const initramfs = join(scratch, 'initramfs.cpio.gz');
    await buildInitramfs(initramfs, [APPLIER, join(HERE, 'guest.sh')]);

    host = await bed.lab.addPod('vmhost');
    await bed.lab.startEchoServer(host, { name: 'a', port: 8081 });
    await bed.lab.startEchoServer(host, { name: 'b', port: 8082 });
    await manifest([{ name: 'http', port: 80 }], [{ name: 'http', port: 8081 }]);
    await startAgent();
    const added = await socklb(
      ['sandbox', 'add', '--id', 'vm1', '--guest', `serial:${guestSocket}`, '--control-socket', controlSocket],
      AGENT,
    );
    assert.equal(added.code, 0, added.stderr);

    const qemu = bed.lab.spawn(
      host,
      qemuArgv({
        initramfs,
        command: `guest.sh ${URL_HTTP} ${URL_ALT}`,
        memory: '256M',
        devices: [
          ...['-netdev', 'user,id=n0', '-device', 'virtio-net-pci,romfile=,netdev=n0'],
          // The agent listens on the guest's socket: QEMU connects, and again whenever it is closed.
          ...['-device', 'virtio-serial-pci', '-chardev', `socket,id=s0,path=${guestSocket},reconnect=1`],
          ...['-device', 'virtserialport,chardev=s0,name=socklb'],
        ],
      }),
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    guestConsole = new Console(qemu);
  });
  after(() => bed.close());

  it('a ClusterIP in the guest reaches a backend on the host once the applier is streamed to', async () => {
    const { line } = await guestConsole.waitFor(/^guest: before the applier: /);
    assert.match(line, /Network is unreachable/, 'an untranslated ClusterIP fails inside the guest');
    await guestSees([URL_HTTP, 'a']);
    const entry = await streamingGuest();
    assert.match(entry.kernelRelease ?? '', /-cloud-amd64$/, "the guest's own kernel");
    assert.notEqual(entry.kernelRelease, release(), 'a kernel other than the host’s');
  });

  it('an endpoint change reaches the guest', async () => {
    await manifest([{ name: 'http', port: 80 }], [{ name: 'http', port: 8082 }]);
    await guestSees([URL_HTTP, 'b']);
  });

  it('a new Service port reaches the guest', async () => {
    const before = guestConsole.lastAnswer(URL_ALT);
    assert.ok(before !== undefined && !['a', 'b'].includes(before), `no port 81 yet: ${before}`);
    await manifest(
      [
        { name: 'http', port: 80 },
        { name: 'alt', port: 81 },
      ],
      [
        { name: 'http', port: 8082 },
        { name: 'alt', port: 8081 },
      ],
    );
    await guestSees([URL_ALT, 'a']);
    assert.equal(guestConsole.lastAnswer(URL_HTTP), 'b', 'port 80 as it was');
  });

  it('QEMU reconnects to the next agent, which brings the guest in step', async () => {
    await agent.stop('SIGKILL');
    const ports = [
      { name: 'http', port: 80 },
      { name: 'alt', port: 81 },
    ];
    await manifest(ports, [
      { name: 'http', port: 8081 },
      { name: 'alt', port: 8082 },
    ]);
    await startAgent();
    // A new agent run has a new epoch: the guest gets a snapshot with the change.
    await guestSees([URL_HTTP, 'a'], [URL_ALT, 'b']);
    const entry = await streamingGuest();
    assert.ok(entry.snapshots >= 1, JSON.stringify(entry));
  });
});
