// The control socket's protocol, over a real Unix socket in a temporary directory (no privileges
// needed but for one case): requests, refusals, garbage, a dead agent, an agent that does not answer,
// two agents at once, the socket's directory.

import assert from 'node:assert/strict';
import { chmod, chown, lstat, mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { createConnection, createServer, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { setTimeout } from 'node:timers/promises';
import { pino } from 'pino';
import { createLogger } from '../../src/log.js';
import { claimControlSocket, requestControl, type ControlSocket } from '../../src/sandbox/control-socket.js';
import {
  encodeMessage,
  MAX_REQUEST_BYTES,
  parseRequest,
  parseResponse,
  type ControlRequest,
  type ControlResponse,
} from '../../src/sandbox/protocol.js';
import { SandboxRegistry } from '../../src/sandbox/registry.js';
import { sandboxDirectory } from '../../src/sandbox/directory.js';
import { leaveDeadSocket } from './socket-files.js';

const noKernel = { cgroupRoot: '/cg', attach: () => undefined, detach: () => undefined, reattach: () => undefined };

describe('control protocol codecs', () => {
  it('round-trips every request', () => {
    for (const request of [
      { op: 'add', id: 'c1', cgroup: '/cg/c1' },
      { op: 'add', id: 'c1', cgroup: '/cg/c1', noTranslate: true },
      { op: 'add', id: 'c1', cgroup: '/cg/c1', excludeServices: ['kube-system/kube-dns'] },
      { op: 'remove', id: 'c1' },
      { op: 'list' },
    ] satisfies ControlRequest[]) {
      assert.deepEqual(parseRequest(encodeMessage(request)), request);
    }
  });
  it('round-trips answers and refusals', () => {
    const answers: ControlResponse[] = [
      { ok: true, outcome: 'added', sandbox: { id: 'c1', cgroup: '/cg/c1' } },
      { ok: true, sandboxes: [{ id: 'c1', cgroup: '/cg/c1' }] },
      { ok: true, sandboxes: [{ id: 'c1', cgroup: '/cg/c1', noTranslate: true }] },
      { ok: true, sandboxes: [{ id: 'c1', cgroup: '/cg/c1', excludeServices: ['a/b', 'c/d'] }] },
      { ok: false, code: 'SOCKLB_ERR_NO_SANDBOX', message: 'no sandbox "x" is registered' },
    ];
    for (const response of answers) assert.deepEqual(parseResponse(encodeMessage(response)), response);
  });
  for (const [line, message] of [
    ['hello', /control socket: request "hello": not JSON/],
    ['[1]', /not a JSON object/],
    ['{"op":"drop"}', /request op "drop": not add, remove, list or trace/],
    ['{"op":"add","id":"c1"}', /request field "cgroup": missing or not a string/],
    ['{"op":"add","id":"c1","cgroup":"/cg/c1","noTranslate":"yes"}', /request field "noTranslate": not a boolean/],
    ['{"op":"add","id":"c1","cgroup":"/cg/c1","excludeServices":"a/b"}', /request field "excludeServices": not a list of strings/],
  ] as const) {
    it(`refuses the request ${line}`, () => assert.throws(() => parseRequest(line), { code: 'SOCKLB_ERR_CONTROL', message }));
  }
  it('refuses a response with an unknown error code', () => {
    assert.throws(() => parseResponse('{"ok":false,"code":"EWHAT","message":"m"}'), {
      code: 'SOCKLB_ERR_CONTROL',
      message: /response code "EWHAT": not a socklb error code/,
    });
  });
});

describe('control socket', () => {
  let directory: string;
  let path: string;
  let socket: ControlSocket;

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), 'socklb-control-'));
    path = join(directory, 'run', 'control.sock');
    socket = await serve(path);
  });
  after(async () => {
    await socket.close();
    await rm(directory, { recursive: true, force: true });
  });

  it('is root-only: its directory 0700, the socket 0600', async () => {
    assert.equal((await stat(join(directory, 'run'))).mode & 0o777, 0o700);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  it('adds, lists and removes', async () => {
    assert.deepEqual(await requestControl(path, { op: 'add', id: 'c1', cgroup: '/cg/c1' }, 2000), {
      ok: true,
      outcome: 'added',
      sandbox: { id: 'c1', cgroup: '/cg/c1' },
    });
    assert.deepEqual(await requestControl(path, { op: 'list' }, 2000), { ok: true, sandboxes: [{ id: 'c1', cgroup: '/cg/c1' }] });
    assert.deepEqual(await requestControl(path, { op: 'remove', id: 'c1' }, 2000), {
      ok: true,
      outcome: 'removed',
      sandbox: { id: 'c1', cgroup: '/cg/c1' },
    });
  });

  it('answers with the cgroup as registered, its path resolved', async () => {
    assert.deepEqual(await requestControl(path, { op: 'add', id: 'c2', cgroup: '/cg/x/../c2/' }, 2000), {
      ok: true,
      outcome: 'added',
      sandbox: { id: 'c2', cgroup: '/cg/c2' },
    });
    await requestControl(path, { op: 'remove', id: 'c2' }, 2000);
  });

  it("turns a refusal into the agent's error, code and sentence", async () => {
    await assert.rejects(requestControl(path, { op: 'remove', id: 'gone' }, 2000), {
      code: 'SOCKLB_ERR_NO_SANDBOX',
      message: 'no sandbox "gone" is registered',
    });
  });

  it('answers a malformed request with a protocol error', async () => {
    const answer = await rawExchange(path, 'not json\n');
    assert.deepEqual(parseResponse(answer), {
      ok: false,
      code: 'SOCKLB_ERR_CONTROL',
      message: 'control socket: request "not json": not JSON',
    });
  });

  it('answers a request ended by EOF instead of a newline at once', async () => {
    const started = performance.now();
    assert.deepEqual(parseResponse(await rawExchange(path, '{"op":"list"}', { end: true })), { ok: true, sandboxes: [] });
    assert.ok(performance.now() - started < 1000, 'not after the request timeout');
  });

  it("counts a request's length in bytes, not characters", async () => {
    // 10000 characters, 20000 bytes: under the limit counted in UTF-16 units, over it in bytes.
    const answer = await rawExchange(path, `{"op":"remove","id":"${'é'.repeat(10_000)}"}\n`);
    assert.deepEqual(parseResponse(answer), {
      ok: false,
      code: 'SOCKLB_ERR_CONTROL',
      message: `control socket: request longer than ${MAX_REQUEST_BYTES} bytes`,
    });
  });

  it('refuses to start a second server on a live socket', async () => {
    await assert.rejects(claimControlSocket(path, logger), { code: 'SOCKLB_ERR_CONTROL', message: /another socklb agent is serving it/ });
  });

  it('says in one sentence that no agent is running', async () => {
    await assert.rejects(requestControl(join(directory, 'absent.sock'), { op: 'list' }, 2000), {
      code: 'SOCKLB_ERR_NOT_RUNNING',
      message: `no socklb agent is serving the control socket ${join(directory, 'absent.sock')} (ENOENT); start one with \`socklb run\``,
    });
  });

  it('gives up on an agent that accepts but never answers', async () => {
    const silentPath = join(directory, 'silent.sock');
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(silentPath, resolve));
    try {
      const started = performance.now();
      await assert.rejects(requestControl(silentPath, { op: 'list' }, 300), {
        code: 'SOCKLB_ERR_CONTROL',
        message: /did not answer within 0.3 s/,
      });
      assert.ok(performance.now() - started < 2000);
    } finally {
      silent.close();
    }
  });
});

describe('control socket claim', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'socklb-claim-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('holds a request that arrives before the registry is ready, and answers it once served', async () => {
    const path = join(directory, 'control.sock');
    const socket = await claimControlSocket(path, logger);
    try {
      let answered = false;
      const answer = requestControl(path, { op: 'list' }, 5000).then((response) => {
        answered = true;
        return response;
      });
      await setTimeout(300);
      assert.equal(answered, false, 'answered before the registry was ready');
      socket.serve(sandboxDirectory(new SandboxRegistry(noKernel, [{ id: 'c1', cgroup: '/cg/c1' }]), undefined));
      assert.deepEqual(await answer, { ok: true, sandboxes: [{ id: 'c1', cgroup: '/cg/c1' }] });
    } finally {
      await socket.close();
    }
  });

  it('lets one of two agents claiming at the same time win', async () => {
    const path = join(directory, 'control.sock');
    const claims = await Promise.allSettled([claimControlSocket(path, logger), claimControlSocket(path, logger)]);
    const won = claims.flatMap((claim) => (claim.status === 'fulfilled' ? [claim.value] : []));
    try {
      assert.equal(won.length, 1, 'exactly one claim succeeds');
      const lost = claims.find((claim) => claim.status === 'rejected');
      assert.match(((lost as PromiseRejectedResult).reason as Error).message, /another socklb agent is serving it/);
    } finally {
      for (const socket of won) await socket.close();
    }
  });

  it('replaces the socket file of an agent that was killed', async () => {
    const path = join(directory, 'control.sock');
    await leaveDeadSocket(path);
    assert.ok((await lstat(path)).isSocket());
    const socket = await serve(path);
    try {
      assert.deepEqual(await requestControl(path, { op: 'list' }, 2000), { ok: true, sandboxes: [] });
    } finally {
      await socket.close();
    }
  });

  it("narrows a root-owned directory made 0755 (the DaemonSet's hostPath) to 0700", async () => {
    await chmod(directory, 0o755);
    const socket = await claimControlSocket(join(directory, 'control.sock'), logger);
    await socket.close();
    assert.equal((await stat(directory)).mode & 0o777, 0o700);
  });

  it('refuses a directory that is a symbolic link', async () => {
    await mkdir(join(directory, 'real'));
    await symlink(join(directory, 'real'), join(directory, 'link'));
    await assert.rejects(claimControlSocket(join(directory, 'link', 'control.sock'), logger), {
      code: 'SOCKLB_ERR_CONTROL',
      message: `control socket directory ${join(directory, 'link')}: is a symbolic link; fix it or choose another --control-socket`,
    });
  });

  it(
    'refuses a directory owned by another user',
    { skip: process.geteuid?.() !== 0 && 'SKIPPED: giving a directory to another user needs root' },
    async () => {
      await chown(directory, 65534, 65534);
      await assert.rejects(claimControlSocket(join(directory, 'control.sock'), logger), {
        code: 'SOCKLB_ERR_CONTROL',
        message: /is owned by uid 65534, not root/,
      });
    },
  );

  it('logs an accept error instead of ending the agent', async (t) => {
    // libuv absorbs EMFILE itself (it closes a spare descriptor and drops the waiting connections),
    // so what still reaches the server (ENFILE when that fails, ENOMEM) is emitted here by hand.
    const listen = t.mock.method(Server.prototype, 'listen');
    const lines: string[] = [];
    const recording = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    const path = join(directory, 'control.sock');
    const socket = await claimControlSocket(path, recording);
    try {
      const server = listen.mock.calls.at(-1)?.this as Server;
      assert.doesNotThrow(() => server.emit('error', Object.assign(new Error('accept ENFILE'), { code: 'ENFILE' })));
      assert.match(lines.join(''), /control socket .*: accept ENFILE/);
      socket.serve(sandboxDirectory(new SandboxRegistry(noKernel), undefined));
      assert.deepEqual(await requestControl(path, { op: 'list' }, 2000), { ok: true, sandboxes: [] }, 'still serving');
    } finally {
      await socket.close();
    }
  });
});

const logger = createLogger('silent');

async function serve(path: string): Promise<ControlSocket> {
  const socket = await claimControlSocket(path, logger);
  socket.serve(sandboxDirectory(new SandboxRegistry(noKernel), undefined));
  return socket;
}

/** A socket file as a killed agent leaves it: nobody listens behind it. */
function rawExchange(path: string, text: string, { end = false } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const connection = createConnection(path, () => (end ? connection.end(text) : connection.write(text)));
    let received = '';
    connection.setEncoding('utf8');
    connection.on('data', (chunk: string) => (received += chunk));
    connection.once('end', () => resolve(received.trim()));
    connection.once('error', reject);
  });
}
