// The half of the vsock listener that needs no vsock (src/kernel/vsock.ts): a stream socket made
// and bound through libc, listened on as a libuv pipe, its connections net.Sockets that carry
// bytes both ways and close; here an AF_UNIX one, which every kernel has. The AF_VSOCK half is
// checked in test/integration/guest-vsock.test.ts.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { libcCalls } from '../../src/kernel/libc.js';
import { listenOnBoundSocket } from '../../src/kernel/vsock.js';

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCKADDR_UN_SIZE = 110;

function boundUnixSocket(path: string): number {
  const fd = libcCalls.socket(AF_UNIX, SOCK_STREAM, 0);
  assert.ok(fd >= 0, 'socket(AF_UNIX)');
  const address = Buffer.alloc(SOCKADDR_UN_SIZE);
  address.writeUInt16LE(AF_UNIX, 0);
  address.write(path, 2);
  assert.equal(libcCalls.bind(fd, address, SOCKADDR_UN_SIZE), 0, `bind ${path}`);
  return fd;
}

describe('a bound socket listened on through libuv', () => {
  let scratch: string;

  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'socklb-vsock-handoff-'));
  });

  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('accepts connections as net.Sockets that carry bytes both ways, and stops when closed', async () => {
    const path = join(scratch, 'listener.sock');
    const accepted: { fd: number; socket: Socket }[] = [];
    const listener = listenOnBoundSocket(boundUnixSocket(path), {
      connection: (fd, socket) => {
        accepted.push({ fd, socket });
        socket.on('data', (chunk: Buffer) => socket.end(`pong ${chunk.toString()}`));
      },
      error: (error) => assert.fail(error),
    });
    for (const round of [1, 2]) {
      const client = connect(path);
      client.write(`ping ${round}`);
      const answer: Buffer[] = [];
      for await (const chunk of client) answer.push(chunk as Buffer);
      assert.equal(Buffer.concat(answer).toString(), `pong ping ${round}`);
    }
    assert.equal(accepted.length, 2);
    assert.ok(
      accepted.every(({ fd }) => fd > 2),
      'each with its own descriptor',
    );
    await listener.close();
    const outcome = await new Promise<string | undefined>((resolve) => {
      const late = connect(path);
      late.on('error', (error: NodeJS.ErrnoException) => resolve(error.code));
      late.on('connect', () => resolve('connected'));
    });
    assert.equal(outcome, 'ECONNREFUSED', 'closed: nothing listens');
  });
});
