// Guest mode over a real AF_VSOCK connection (`socklb sandbox add --guest vsock:CID`). The lab's
// machines have neither vhost-vsock nor vsock_loopback, so the whole exchange runs inside Debian's
// 6.1 cloud kernel under QEMU (TCG), where vsock_loopback makes a connection to CID 1
// (VMADDR_CID_LOCAL) a vsock connection within that kernel, whose peer CID is 1:
//
//   the shipped agent: node dist/socklb.js run --sandboxes-only --guest-vsock-port 1024, attached
//     to no cgroup, so that nothing but the applier's own programs translate the guest's calls
//   an emulated guest (as test/lab/guest.ts makes one on a host): cgroup /g, a mount namespace
//     with a fresh sysfs and a cgroup namespace rooted at /g, so that the applier mounts a bpffs
//     of its own and attaches at its "cgroup v2 root", which is /g
//   dist/socklb-applier --connect vsock:1:1024 in it; the client, busybox wget, in /g too
//   backends: busybox httpd on an address of the guest's loopback device
//
// The machine has no network device: nothing the guest does leaves it. The test drives the guest
// through a shell on its second serial port (guest-shell.sh, GuestShell), and QEMU runs in a
// network namespace of the test's own.
//
//   make test-vm      (root; fetches QEMU and the kernel, see the Makefile)

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { GuestEntry } from '../../src/sandbox/protocol.js';
import { endpointSlice, manifestText, service, type ServicePortSpec } from '../integration/support.js';
import { Testbed } from '../integration/testbed.js';
import { Console, DIST, GuestShell, HERE, buildInitramfs, qemuArgv, vmSkipReason } from './vm-support.js';

const WEB = '10.96.71.10';
const URL_HTTP = `http://${WEB}/`;
/** The backends' address, on the guest's loopback device. */
const BACKEND = '10.244.0.1';
const VSOCK_PORT = 1024;
/** Where the initramfs puts the shipped build. */
const GUEST_DIST = '/opt/socklb';
const CONTROL = '/tmp/control.sock';
const SOCKLB = `node ${GUEST_DIST}/socklb.js`;
const CLIENT_CGROUP = '/sys/fs/cgroup/g';
/** node and the agent take seconds to start under TCG; a guest gets its snapshot in a few more. */
const STREAMING_TIMEOUT_S = 60;

/** Where libbpf.so.1 is here: the agent opens it through koffi, which ldd cannot see. */
function libbpfPath(): string {
  const cache = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' }).stdout ?? '';
  const path = /^\s*libbpf\.so\.1 \(libc6,x86-64\) => (\S+)$/m.exec(cache)?.[1];
  if (path === undefined) throw new Error('libbpf.so.1 is not in the dynamic linker cache: run `make setup`');
  return path;
}

/**
 * The client (/bin/client URL, written by the test's setup): one GET from the client's cgroup,
 * translated by the applier's programs; prints the answer's first line or wget's complaint.
 */
const CLIENT_SCRIPT = `echo $$ > ${CLIENT_CGROUP}/cgroup.procs\ntimeout 5 wget -q -O - "$1" 2>&1 | head -n 1\n`;
/** Waits in the guest, up to `seconds` of its uptime, until `condition` (sh) holds; else exits 1. */
const waitInGuest = (condition: string, seconds: number) =>
  `now() { cut -d. -f1 /proc/uptime; }; end=$(($(now) + ${seconds}))\n` +
  `until ${condition}; do [ "$(now)" -lt $end ] || exit 1; usleep 100000; done`;

describe('guest mode over vsock, agent and applier in a real guest kernel under QEMU', { skip: vmSkipReason() }, () => {
  const bed = new Testbed('guest-vsock');
  let guestConsole: Console;
  let shell: GuestShell;

  const manifest = (ports: ServicePortSpec[], slicePorts: ServicePortSpec[]) => {
    const text = manifestText('web.yaml', [
      service('web', [WEB], ports),
      endpointSlice('web-1', 'web', 'IPv4', slicePorts, [{ ip: BACKEND }]),
    ]);
    // Whole, as writeManifest does it: the agent watches the directory.
    return shell.exec(`echo ${Buffer.from(text).toString('base64')} | base64 -d > /tmp/web.yaml && mv /tmp/web.yaml /tmp/manifests/`);
  };
  const guests = async (): Promise<GuestEntry[]> =>
    (JSON.parse(await shell.exec(`${SOCKLB} sandbox list -o json --control-socket ${CONTROL}`)) as GuestEntry[]).filter(
      (entry) => 'guest' in entry,
    );
  const logs = () => shell.run('tail -n 20 /tmp/agent.log /tmp/applier.log').then(({ output }) => output);
  /** Polls the client until the ClusterIP answers `answer`; fails with the last answer and the logs. */
  const clientGets = async (answer: string) => {
    const { status } = await shell.run(waitInGuest(`[ "$(client ${URL_HTTP})" = ${answer} ]`, STREAMING_TIMEOUT_S));
    if (status === 0) return;
    const last = (await shell.run(`client ${URL_HTTP}`)).output;
    assert.fail(`the ClusterIP did not answer ${answer} within ${STREAMING_TIMEOUT_S} s; last: ${last}\n${await logs()}`);
  };

  before(async () => {
    await bed.prepare();
    const scratch = await bed.scratchDirectory('guest-vsock');
    const shellSocket = join(scratch, 'shell.sock');
    const initramfs = join(scratch, 'initramfs.cpio');
    const libbpf = libbpfPath();
    // Uncompressed: under TCG the kernel unpacks node's 125 MB faster than it would gunzip them.
    await buildInitramfs(
      initramfs,
      [
        join(HERE, 'guest-shell.sh'),
        `/bin/node=${process.execPath}`,
        `${GUEST_DIST}=${DIST}`,
        `${libbpf}=${libbpf}`,
        // busybox's unshare has no --cgroup.
        '/usr/bin/unshare=/usr/bin/unshare',
      ],
      { modules: 'vsock_loopback', compress: 'none' },
    );

    const host = await bed.lab.addPod('vmhost');
    const qemu = bed.lab.spawn(
      host,
      qemuArgv({
        initramfs,
        command: 'guest-shell.sh',
        // The image (unpacked into RAM), node and the agent.
        memory: '1G',
        devices: ['-chardev', `socket,id=shell,path=${shellSocket},server=on,wait=off`, '-serial', 'chardev:shell'],
      }),
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    guestConsole = new Console(qemu);
    shell = await GuestShell.connect(shellSocket, guestConsole);
    await shell.exec(
      [
        `ip addr add ${BACKEND}/32 dev lo`,
        ...['a:8081', 'b:8082'].map(
          (backend) =>
            `mkdir -p /www/${backend[0]} && echo ${backend[0]} > /www/${backend[0]}/index.html && ` +
            `httpd -p ${BACKEND}:${backend.slice(2)} -h /www/${backend[0]}`,
        ),
        `mkdir -p /tmp/manifests ${CLIENT_CGROUP}`,
        `echo ${Buffer.from(CLIENT_SCRIPT).toString('base64')} | base64 -d > /bin/client && chmod +x /bin/client`,
      ].join('\n'),
    );
  });
  after(async () => {
    shell?.close();
    await bed.close();
  });

  it('an untranslated ClusterIP fails inside the guest', async () => {
    assert.match(await shell.exec(`client ${URL_HTTP}`), /Network is unreachable/);
  });

  it('the agent closes a vsock connection from a CID that no guest has', async () => {
    await manifest([{ name: 'http', port: 80 }], [{ name: 'http', port: 8081 }]);
    await shell.exec(
      `${SOCKLB} run --manifests /tmp/manifests --sandboxes-only --guest-vsock-port ${VSOCK_PORT} --control-socket ${CONTROL} ` +
        `--metrics-bind-address '' --healthz-bind-address '' >/tmp/agent.log 2>&1 &\n${waitInGuest(`[ -S ${CONTROL} ]`, STREAMING_TIMEOUT_S)}`,
    );
    // A guest of another CID, so that the agent listens on the vsock port.
    await shell.exec(`${SOCKLB} sandbox add --id other --guest vsock:3 --control-socket ${CONTROL}`);
    await shell.exec(
      `echo $$ > ${CLIENT_CGROUP}/cgroup.procs\n` +
        `/usr/bin/unshare --mount --cgroup --propagation private sh -c ` +
        `'umount -l /sys && mount -t sysfs sysfs /sys && exec ${GUEST_DIST}/socklb-applier --connect vsock:1:${VSOCK_PORT}' ` +
        '>/tmp/applier.log 2>&1 &',
    );
    const refused = await shell.run(waitInGuest(`grep -q 'closed a connection from CID 1,' /tmp/agent.log`, STREAMING_TIMEOUT_S));
    assert.equal(refused.status, 0, `the agent never refused CID 1:\n${await logs()}`);
    assert.match(await shell.exec(`client ${URL_HTTP}`), /Network is unreachable/, 'nothing streamed to the applier');
    assert.equal((await guests()).find((entry) => entry.id === 'other')?.phase, 'disconnected');
  });

  it('registered as vsock:1, the guest is streamed to and its ClusterIP reaches a backend', async () => {
    await shell.exec(`${SOCKLB} sandbox add --id g --guest vsock:1 --control-socket ${CONTROL}`);
    await clientGets('a');
    const entry = (await guests()).find((guest) => guest.id === 'g');
    assert.equal(entry?.phase, 'streaming', JSON.stringify(entry));
    assert.match(entry.marker ?? '', /^[0-9a-f]+\/[0-9]+$/, JSON.stringify(entry));
    assert.equal(entry.guest, 'vsock:1');
  });

  it('a Service change reaches the guest over vsock', async () => {
    const before = (await guests()).find((guest) => guest.id === 'g')?.marker;
    await manifest([{ name: 'http', port: 80 }], [{ name: 'http', port: 8082 }]);
    await clientGets('b');
    const entry = (await guests()).find((guest) => guest.id === 'g');
    assert.equal(entry?.phase, 'streaming', JSON.stringify(entry));
    assert.notEqual(entry.marker, before, 'a later sync');
  });
});
