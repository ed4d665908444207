// A guest's socket path (unix:, serial:), in a directory that the VMM's user owns and so controls:
// the socket is handed to that user without following what it plants at the path, and a socket
// something serves there (the VMM's own) is never replaced.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { linkSync, lstatSync, mkdtempSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { GuestHub } from '../../src/guest/hub.js';
import { handOverSocket, listenOnUnixPath } from '../../src/sandbox/unix-listener.js';
import { leaveDeadSocket } from './socket-files.js';

/** Another user when root can give files away; else this one, whose mode change still shows. */
const owner = process.geteuid?.() === 0 ? { uid: 65534, gid: 65534 } : { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };

let scratch: string;
beforeEach(() => {
  scratch = mkdtempSync(join(tmpdir(), 'socklb-guest-socket-'));
});
afterEach(() => rmSync(scratch, { recursive: true, force: true }));

function closed(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe("handing a guest's socket to the owner of its directory", () => {
  async function bound(path: string): Promise<Server> {
    const server = createServer();
    await listenOnUnixPath(server, path, (refusal) => new Error(refusal.reason));
    return server;
  }

  it('gives it the socket this process bound, 0600', async () => {
    const path = join(scratch, 'v.sock');
    const server = await bound(path);
    try {
      handOverSocket(path, owner.uid, owner.gid);
      const status = lstatSync(path);
      assert.ok(status.isSocket());
      assert.deepEqual([status.uid, status.gid, status.mode & 0o7777], [owner.uid, owner.gid, 0o600]);
    } finally {
      await closed(server);
    }
  });

  const plants = [
    ['a symbolic link', symlinkSync, /^it was replaced by a symbolic link after the bind$/],
    // What a call that does not follow links at the path (lchown) would still give away.
    ['a hard link', linkSync, /^it was replaced by a file that is not a socket after the bind$/],
  ] as const;
  for (const [what, plant, message] of plants)
    it(`changes nothing through ${what} to another file swapped in after the bind`, async () => {
      const path = join(scratch, 'v.sock');
      const secret = join(scratch, 'shadow');
      writeFileSync(secret, 'root:secret\n', { mode: 0o640 });
      const before = statSync(secret);
      const server = await bound(path);
      try {
        unlinkSync(path);
        plant(secret, path);
        assert.throws(() => handOverSocket(path, owner.uid, owner.gid), { message });
        const after = statSync(secret);
        assert.deepEqual([after.uid, after.gid, after.mode], [before.uid, before.gid, before.mode], `${secret} unchanged`);
      } finally {
        await closed(server);
      }
    });

  it("changes nothing through a hard link to another of this user's sockets swapped in after the bind", async () => {
    const path = join(scratch, 'v.sock');
    const other = join(scratch, 'control.sock');
    const otherServer = await bound(other);
    const server = await bound(path);
    try {
      unlinkSync(path);
      linkSync(other, path);
      assert.throws(() => handOverSocket(path, owner.uid, owner.gid), {
        message: `it was replaced by another socket (uid ${lstatSync(other).uid}, 2 links) after the bind`,
      });
      assert.equal(lstatSync(other).mode & 0o7777, 0o600);
      assert.equal(lstatSync(other).uid, process.geteuid?.(), `${other} still this user's`);
    } finally {
      await closed(server);
      await closed(otherServer);
    }
  });
});

describe('registering a guest where a socket is already', () => {
  let hub: GuestHub;
  beforeEach(() => {
    hub = new GuestHub({
      pinDirectory: join(scratch, 'pins'),
      elf: Buffer.from('not an ELF: no guest connects'),
      state: () => assert.fail('no guest connects, so the node state is not read'),
      logger: pino({ level: 'silent' }),
    });
  });
  afterEach(() => hub.close());

  it('refuses a path a live socket serves (the VMM’s own), leaving that socket as it was', async () => {
    const path = join(scratch, 'v.sock');
    const live = createServer((connection) => connection.destroy());
    await new Promise<void>((resolve) => live.listen(path, resolve));
    try {
      const before = lstatSync(path);
      await assert.rejects(hub.add('vm1', `unix:${path}`), {
        code: 'SOCKLB_ERR_SANDBOX',
        message: `guest vm1: ${path} is a socket in use (a process serves it); only a socket nobody serves is replaced: check the path (a VMM's own socket?)`,
      });
      assert.equal(hub.has('vm1'), false);
      assert.equal(lstatSync(path).ino, before.ino, 'the live socket file is the same');
      const accepted = once(live, 'connection');
      connect(path).once('error', () => undefined);
      await accepted;
    } finally {
      await closed(live);
    }
  });

  it('replaces a socket file nobody serves (an agent that was killed)', async () => {
    const path = join(scratch, 'v.sock');
    await leaveDeadSocket(path);
    await hub.add('vm1', `serial:${path}`);
    const now = lstatSync(path);
    assert.ok(now.isSocket());
    assert.deepEqual([now.uid, now.mode & 0o7777], [statSync(scratch).uid, 0o600]);
    const probe = connect(path);
    await once(probe, 'connect');
    probe.destroy();
  });

  it('refuses a path that holds anything but a socket', async () => {
    const path = join(scratch, 'v.sock');
    symlinkSync(join(scratch, 'elsewhere'), path);
    await assert.rejects(hub.add('vm1', `unix:${path}`), {
      code: 'SOCKLB_ERR_SANDBOX',
      message: `guest vm1: ${path} exists and is not a socket`,
    });
    assert.ok(lstatSync(path).isSymbolicLink(), 'left as it was');
  });
});
