// vsock:CID guests on this kernel's AF_VSOCK: `socklb run` listens on --guest-vsock-port exactly
// while a vsock guest is registered (the port is taken, then free again), again when a restarted
// agent adopts the registration, and a second agent on the same port refuses its vsock guest in
// one sentence. This lab has no vsock transport to connect over (no vhost-vsock, no
// vsock_loopback): the routing of connections by CID is checked in test/unit/guest-vsock.test.ts,
// and over vsock_loopback in the QEMU guest.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { GuestEntry } from '../../src/sandbox/protocol.js';
import { listenVsock, VsockError } from '../../src/kernel/vsock.js';
import { assertOneSentence, missingPrivileges, socklb, startAgent, type RunningAgent } from './support.js';
import { Testbed } from './testbed.js';

/** Away from the default (1024), and from another run of this test. */
const PORT = 40_000 + (process.pid % 10_000);
const IGNORE_CONNECTIONS = { connection: () => undefined, error: () => undefined };

function vsockMissing(): string | undefined {
  try {
    void listenVsock(PORT, IGNORE_CONNECTIONS).close();
    return undefined;
  } catch (error) {
    return `SKIPPED: this kernel cannot listen on vsock port ${PORT}: ${(error as Error).message}`;
  }
}

/** Whether something holds `port`: binding it fails with EADDRINUSE. */
async function portTaken(port: number): Promise<boolean> {
  try {
    await listenVsock(port, IGNORE_CONNECTIONS).close();
    return false;
  } catch (error) {
    if (error instanceof VsockError && error.code === 'EADDRINUSE') return true;
    throw error;
  }
}

describe('vsock guests on the kernel', { skip: missingPrivileges() ?? vsockMissing(), concurrency: false, timeout: 120_000 }, () => {
  const bed = new Testbed('guest-vsock');
  let agent: RunningAgent;
  const agentArgs = (pinDir: string) => [
    '--manifests',
    bed.manifests,
    '--pin-dir',
    pinDir,
    '--sandboxes-only',
    '--guest-vsock-port',
    String(PORT),
  ];
  const sandbox = (args: string[], controlSocket = agent.controlSocket) => socklb(['sandbox', ...args, '--control-socket', controlSocket]);
  const guests = async (): Promise<GuestEntry[]> => {
    const { stdout, stderr, code } = await sandbox(['list', '-o', 'json']);
    assert.equal(code, 0, stderr);
    return JSON.parse(stdout) as GuestEntry[];
  };

  before(async () => {
    await bed.prepare();
    agent = await bed.startAgent(agentArgs(bed.pinDir));
  });

  after(() => bed.close());

  it('listens on the port while a vsock guest is registered, and lists it', async () => {
    assert.equal(await portTaken(PORT), false, 'no vsock guest: the port is free');
    const added = await sandbox(['add', '--id', 'vm1', '--guest', 'vsock:3']);
    assert.equal(added.code, 0, added.stderr);
    assert.equal(added.stdout, 'sandbox vm1 added (guest vsock:3)\n');
    assert.equal(await portTaken(PORT), true, 'the agent listens');
    assert.equal((await sandbox(['add', '--id', 'vm2', '--guest', 'vsock:4'])).code, 0);
    assert.deepEqual(
      (await guests()).map((entry) => [entry.id, entry.guest, entry.phase]),
      [
        ['vm1', 'vsock:3', 'disconnected'],
        ['vm2', 'vsock:4', 'disconnected'],
      ],
    );
    const table = await sandbox(['list']);
    assert.match(table.stdout, /^vm1\s+vsock:3\s+disconnected/m);
    assert.equal((await sandbox(['remove', '--id', 'vm1'])).code, 0);
    assert.equal(await portTaken(PORT), true, 'vm2 is still registered');
    assert.equal((await sandbox(['remove', '--id', 'vm2'])).code, 0);
    assert.equal(await portTaken(PORT), false, 'the last vsock guest gone: the port is free');
  });

  it('refuses a shared CID and a CID no guest can have, in one sentence', async () => {
    assert.equal((await sandbox(['add', '--id', 'vm1', '--guest', 'vsock:3'])).code, 0);
    const shared = await sandbox(['add', '--id', 'vm2', '--guest', 'vsock:3']);
    assert.notEqual(shared.code, 0);
    assertOneSentence(shared.stderr);
    assert.match(shared.stderr, /vsock CID 3 is already the address of guest vm1/);
    const host = await sandbox(['add', '--id', 'vm3', '--guest', 'vsock:2']);
    assert.notEqual(host.code, 0);
    assertOneSentence(host.stderr);
    assert.match(host.stderr, /guest vm3: vsock CID "2" is not a guest's/);
    assert.equal((await sandbox(['remove', '--id', 'vm1'])).code, 0);
  });

  it('listens again when a restarted agent adopts its vsock guests, killed or stopped', async () => {
    assert.equal((await sandbox(['add', '--id', 'vm1', '--guest', 'vsock:3'])).code, 0);
    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      await agent.stop(signal);
      assert.equal(await portTaken(PORT), false, `${signal}: the port went with the agent`);
      agent = await bed.startAgent(agentArgs(bed.pinDir));
      assert.equal(await portTaken(PORT), true, `${signal}: the restarted agent listens`);
      assert.deepEqual(
        (await guests()).map((entry) => entry.guest),
        ['vsock:3'],
      );
    }
  });

  it("refuses a vsock guest of a second agent on the first one's port, saying why", async () => {
    const otherPins = await bed.extraPinDirectory('guest-vsock-second');
    const second = await startAgent(agentArgs(otherPins));
    try {
      const refused = await sandbox(['add', '--id', 'vm9', '--guest', 'vsock:9'], second.controlSocket);
      assert.notEqual(refused.code, 0);
      assertOneSentence(refused.stderr);
      assert.match(
        refused.stderr,
        new RegExp(
          `guest vm9: cannot listen on vsock port ${PORT}: another process holds it \\(EADDRINUSE\\); give this agent another with run --guest-vsock-port`,
        ),
      );
      const listed = await sandbox(['list', '-o', 'json'], second.controlSocket);
      assert.deepEqual(JSON.parse(listed.stdout), [], 'not registered');
      assert.equal(second.process.exitCode, null, 'the second agent runs on');
    } finally {
      await second.stop();
    }
  });
});
