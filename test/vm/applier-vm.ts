// The applier in a real guest kernel: Debian's 6.1 cloud kernel under QEMU (the shared vm-lab,
// /work/shared/vm-lab/README.md), the production build/socklb-applier on a virtio-serial port whose
// host end is a Unix socket, driven from here with src/guest/wire.ts. A manual check for now:
//
//   make build && node build/test/vm/applier-vm.js      (root; needs qemu-system-x86)
//
// It checks that the guest says HELLO after RESYNC, loads socklb's object (kernel BTF, cgroup
// hooks, bpf_set_retval...), commits a snapshot translating 10.96.0.10:80 to an HTTP server on the
// host's 127.0.0.1 (the guest reaches it at 10.0.2.2 through QEMU's slirp; it has no default route,
// so nothing untranslated leaves it), that busybox wget in the guest gets the page, and that a host
// that closes and reopens the port gets a HELLO with the marker. It prints how long a batch takes
// with and without WAIT_FOR_READERS (this kernel's RCU grace periods are not expedited).
// Env: VMLAB_DIR (default /work/shared/vm-lab), VMLAB_BUILD (default /tmp/vm-lab-applier).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Marker } from '../../src/datapath/layout.js';
import { FrameReader } from '../../src/guest/frame-reader.js';
import {
  decodeGuestMessage,
  encodeBatch,
  encodeCommit,
  encodeObject,
  encodeResync,
  packGroups,
  WriteTarget,
  type GuestMessage,
  type Hello,
} from '../../src/guest/wire.js';
import { frontendId } from '../../src/model/keys.js';
import { markerWrite, snapshotGroups, stateOf } from '../lab/guest-writes.js';
import { CAPACITIES } from '../integration/guest-support.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const VMLAB = process.env['VMLAB_DIR'] ?? '/work/shared/vm-lab';
const BUILD = process.env['VMLAB_BUILD'] ?? '/tmp/vm-lab-applier';
const SOCKET = join(BUILD, 'applier.sock');
const CLUSTER_IP = '10.96.0.10';

/** One opening of the port: RESYNC every second until HELLO, then requests and answers. */
class SerialSession {
  readonly #messages: GuestMessage[] = [];
  #wake: (() => void) | undefined;
  #failure: Error | undefined;

  private constructor(readonly socket: Socket) {
    // The guest may have written to a host that has gone: its frames before HELLO are stale.
    const reader = new FrameReader({ awaitHello: true });
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of reader.push(chunk)) this.#messages.push(decodeGuestMessage(frame));
      } catch (error) {
        this.#failure = error instanceof Error ? error : new Error(String(error));
        socket.destroy();
      }
      this.#wake?.();
    });
  }

  /**
   * Opens the port and sends RESYNC, again whenever no HELLO came for a second; takes the HELLO that
   * echoes the latest (those echoing older ones are stale: each RESYNC read gets its HELLO).
   */
  static async open(): Promise<{ session: SerialSession; hello: Hello }> {
    const socket = connect(SOCKET);
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const session = new SerialSession(socket);
    let nonce = BigInt(Date.now());
    let timer: NodeJS.Timeout | undefined;
    const resync = () => {
      socket.write(encodeResync(++nonce));
      timer = setTimeout(resync, 1000);
    };
    resync();
    try {
      for (;;) {
        const message = await session.next(60_000);
        if (message.kind === 'hello' && message.resyncNonce === nonce) return { session, hello: message };
        process.stdout.write(`host: skipped a stale ${message.kind.toUpperCase()}\n`);
        clearTimeout(timer);
        timer = setTimeout(resync, 1000);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async next(timeoutMs = 60_000): Promise<GuestMessage> {
    const deadline = Date.now() + timeoutMs;
    while (this.#messages.length === 0) {
      if (this.#failure) throw this.#failure;
      if (Date.now() > deadline) throw new Error(`no guest frame within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 200);
      });
    }
    return this.#messages.shift() as GuestMessage;
  }

  async request(frame: Buffer): Promise<GuestMessage> {
    this.socket.write(frame);
    return this.next();
  }

  close(): void {
    this.socket.destroy();
  }
}

async function waitForSocket(): Promise<void> {
  for (let tries = 0; !existsSync(SOCKET); tries++) {
    if (tries > 300) throw new Error(`QEMU made no ${SOCKET}`);
    await sleep(100);
  }
}

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
}

async function main(): Promise<void> {
  mkdirSync(BUILD, { recursive: true });
  execFileSync(join(VMLAB, 'get-kernel.sh'), [join(BUILD, 'kernel')], { stdio: 'inherit' });
  const initramfs = join(BUILD, 'initramfs.cpio.gz');
  execFileSync(
    join(VMLAB, 'build-initramfs.sh'),
    [initramfs, join(BUILD, 'kernel'), join(ROOT, 'build', 'socklb-applier'), join(ROOT, 'test', 'vm', 'applier-guest.sh')],
    { stdio: 'inherit' },
  );

  const token = `applier-vm-ok-${process.pid}`;
  const http = createServer((_request, response) => response.end(`${token}\n`));
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const port = (http.address() as { port: number }).port;

  const vm = spawn(join(VMLAB, 'run-vm.sh'), [join(BUILD, 'kernel', 'vmlinuz'), initramfs, SOCKET, 'applier-guest.sh'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let console = '';
  vm.stdout.setEncoding('utf8');
  vm.stdout.on('data', (text: string) => {
    console += text;
    process.stdout.write(text);
  });
  const vmExit = new Promise<number | null>((resolve) => vm.once('exit', resolve));
  try {
    await waitForSocket();
    const first = await SerialSession.open();
    assert.deepEqual([first.hello.marker, first.hello.maps], [{ epoch: 0n, seq: 0n }, []], 'a fresh guest');
    const loaded = await first.session.request(encodeObject(CAPACITIES, readFileSync(join(ROOT, 'build', 'bpf', 'socklb.bpf.o'))));
    assert.ok(
      loaded.kind === 'loaded' && loaded.error === 0,
      `LOADED: ${JSON.stringify(loaded, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`,
    );
    const target = new WriteTarget(loaded.maps, first.hello.possibleCpus);
    const key = { address: CLUSTER_IP, port: 80, protocol: 'TCP' as const };
    const state = stateOf(
      new Map([
        [
          frontendId(key),
          {
            key,
            service: { namespace: 'vm', name: 'web', portName: 'http' },
            backends: [{ address: '10.0.2.2', port }],
            affinityTimeoutSeconds: 0,
          },
        ],
      ]),
    );
    const marker: Marker = { epoch: 1n, seq: 1n };
    for (const run of packGroups(snapshotGroups(state, marker, target), target)) {
      const ack = await first.session.request(encodeBatch({ ...marker, groups: run }, target));
      assert.ok(ack.kind === 'ack' && ack.error === 0, 'snapshot batch');
    }
    const commit = await first.session.request(encodeCommit(marker));
    assert.ok(commit.kind === 'ack' && commit.error === 0, 'COMMIT');
    process.stdout.write(`host: committed in the guest (kernel ${first.hello.kernelRelease}, ${first.hello.possibleCpus} possible CPUs)\n`);

    const timings: Record<'plain' | 'waitForReaders', number[]> = { plain: [], waitForReaders: [] };
    for (let round = 0; round < 10; round++) {
      for (const waitForReaders of [false, true]) {
        const started = performance.now();
        const ack = await first.session.request(
          encodeBatch({ ...marker, waitForReaders, groups: [{ writes: [markerWrite(marker, target)] }] }, target),
        );
        timings[waitForReaders ? 'waitForReaders' : 'plain'].push(performance.now() - started);
        assert.ok(ack.kind === 'ack' && ack.error === 0);
      }
    }
    process.stdout.write(
      `host: one-write batch round trip, median of 10: ${median(timings.plain).toFixed(2)} ms plain, ${median(timings.waitForReaders).toFixed(2)} ms with WAIT_FOR_READERS\n`,
    );
    first.session.close();

    // The port reopened: the applier resynchronises and says where it is.
    await sleep(500);
    const second = await SerialSession.open();
    assert.deepEqual(second.hello.marker, marker, 'HELLO after the host reopened the port');
    assert.deepEqual(second.hello.maps, target.maps);
    process.stdout.write('host: reopened the port, HELLO has marker 1/1\n');
    second.session.close();

    const status = await vmExit;
    assert.equal(status, 0, 'the guest script');
    assert.match(console, new RegExp(`guest: http://${CLUSTER_IP}/ -> ${token}`));
    process.stdout.write('applier-vm: OK\n');
  } finally {
    if (vm.exitCode === null) vm.kill();
    http.close();
  }
}

await main();
