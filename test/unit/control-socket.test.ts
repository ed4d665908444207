// The control socket's protocol, over a real Unix socket in a temporary directory (no privileges
// needed): requests, refusals, garbage, a dead agent, an agent that does not answer.

import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/log.js';
import { requestControl, serveControlSocket, type ControlServer } from '../../src/sandbox/control-socket.js';
import { encodeMessage, parseRequest, parseResponse, type ControlResponse } from '../../src/sandbox/protocol.js';
import { SandboxRegistry } from '../../src/sandbox/registry.js';

const noKernel = { attach: () => undefined, detach: () => undefined };

describe('control protocol codecs', () => {
  it('round-trips every request', () => {
    for (const request of [{ op: 'add', id: 'c1', cgroup: '/cg/c1' }, { op: 'remove', id: 'c1' }, { op: 'list' }] as const) {
      assert.deepEqual(parseRequest(encodeMessage(request)), request);
    }
  });
  it('round-trips answers and refusals', () => {
    const answers: ControlResponse[] = [
      { ok: true, outcome: 'added', sandbox: { id: 'c1', cgroup: '/cg/c1' } },
      { ok: true, sandboxes: [{ id: 'c1', cgroup: '/cg/c1' }] },
      { ok: false, code: 'SOCKLB_ERR_NO_SANDBOX', message: 'no sandbox "x" is registered' },
    ];
    for (const response of answers) assert.deepEqual(parseResponse(encodeMessage(response)), response);
  });
  for (const [line, message] of [
    ['hello', /control socket: request "hello": not JSON/],
    ['[1]', /not a JSON object/],
    ['{"op":"drop"}', /request op "drop": not add, remove or list/],
    ['{"op":"add","id":"c1"}', /request field "cgroup": missing or not a string/],
  ] as const) {
    it(`refuses the request ${line}`, () => assert.throws(() => parseRequest(line), { code: 'SOCKLB_ERR_CONTROL', message }));
  }
  it('refuses a response with an unknown error code', () => {
    assert.throws(() => parseResponse('{"ok":false,"code":"EWHAT","message":"m"}'), { code: 'SOCKLB_ERR_CONTROL', message: /response code "EWHAT": not a socklb error code/ });
  });
});

describe('control socket', () => {
  let directory: string;
  let path: string;
  let server: ControlServer;
  const logger = createLogger('silent');

  before(async () => {
    directory = await mkdtemp(join(tmpdir(), 'socklb-control-'));
    path = join(directory, 'run', 'control.sock');
    server = await serveControlSocket(path, new SandboxRegistry(noKernel), logger);
  });
  after(async () => {
    await server.close();
    await rm(directory, { recursive: true, force: true });
  });

  it('is root-only: its directory 0700, the socket 0600', async () => {
    assert.equal((await stat(join(directory, 'run'))).mode & 0o777, 0o700);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  it('adds, lists and removes', async () => {
    assert.deepEqual(await requestControl(path, { op: 'add', id: 'c1', cgroup: '/cg/c1' }, 2000), { ok: true, outcome: 'added', sandbox: { id: 'c1', cgroup: '/cg/c1' } });
    assert.deepEqual(await requestControl(path, { op: 'list' }, 2000), { ok: true, sandboxes: [{ id: 'c1', cgroup: '/cg/c1' }] });
    assert.deepEqual(await requestControl(path, { op: 'remove', id: 'c1' }, 2000), { ok: true, outcome: 'removed', sandbox: { id: 'c1', cgroup: '/cg/c1' } });
  });

  it('turns a refusal into the agent\'s error, code and sentence', async () => {
    await assert.rejects(requestControl(path, { op: 'remove', id: 'gone' }, 2000), { code: 'SOCKLB_ERR_NO_SANDBOX', message: 'no sandbox "gone" is registered' });
  });

  it('answers a malformed request with a protocol error', async () => {
    const answer = await rawExchange(path, 'not json\n');
    assert.deepEqual(parseResponse(answer), { ok: false, code: 'SOCKLB_ERR_CONTROL', message: 'control socket: request "not json": not JSON' });
  });

  it('refuses to start a second server on a live socket', async () => {
    await assert.rejects(serveControlSocket(path, new SandboxRegistry(noKernel), logger), { code: 'SOCKLB_ERR_CONTROL', message: /another socklb agent is serving it/ });
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
      await assert.rejects(requestControl(silentPath, { op: 'list' }, 300), { code: 'SOCKLB_ERR_CONTROL', message: /did not answer within 0.3 s/ });
      assert.ok(performance.now() - started < 2000);
    } finally {
      silent.close();
    }
  });
});

function rawExchange(path: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const connection = createConnection(path, () => connection.write(text));
    let received = '';
    connection.setEncoding('utf8');
    connection.on('data', (chunk: string) => (received += chunk));
    connection.once('end', () => resolve(received.trim()));
    connection.once('error', reject);
  });
}
