// The agent's control socket: a Unix socket only root can use (its directory is made 0700 and the
// socket 0600), through which `socklb sandbox` and `socklb oci-hook` add and remove sandboxes.
// Both ends are here; the protocol is in protocol.ts.

import { existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { SocklbError } from '../errors.js';
import type { Logger } from '../log.js';
import { encodeMessage, errorResponse, MAX_REQUEST_BYTES, parseRequest, parseResponse, type ControlRequest, type ControlResponse } from './protocol.js';
import type { SandboxRegistry } from './registry.js';

export const DEFAULT_CONTROL_SOCKET = '/run/socklb/control.sock';

/** A client that sends nothing is dropped after this. */
const REQUEST_TIMEOUT_MS = 5_000;

/** Serves one request against the registry. */
export function answer(registry: SandboxRegistry, request: ControlRequest): ControlResponse {
  try {
    switch (request.op) {
      case 'add':
        return { ok: true, outcome: registry.add(request.id, request.cgroup), sandbox: { id: request.id, cgroup: request.cgroup } };
      case 'remove':
        return { ok: true, outcome: 'removed', sandbox: registry.remove(request.id) };
      case 'list':
        return { ok: true, sandboxes: registry.list() };
    }
  } catch (error) {
    return errorResponse(error);
  }
}

export interface ControlServer {
  /** Stops listening and removes the socket file. */
  close(): Promise<void>;
}

/**
 * Makes the socket's directory, and refuses when another agent answers at `path`; a socket file
 * left by a killed agent is removed. Called before anything is attached, so that a second agent
 * started by mistake changes nothing before it stops.
 */
export async function claimControlSocket(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  await removeDeadSocket(path);
}

/** Listens on `path` (see claimControlSocket). */
export async function serveControlSocket(path: string, registry: SandboxRegistry, logger: Logger): Promise<ControlServer> {
  await claimControlSocket(path);
  const server = createServer((connection) => serveConnection(connection, registry, logger));
  // The socket file is created 0600 from the start: no moment when someone else could connect.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    throw new SocklbError('SOCKLB_ERR_CONTROL', `cannot serve the control socket ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
  } finally {
    process.umask(umask);
  }
  return { close: () => closeServer(server) };
}

function serveConnection(connection: Socket, registry: SandboxRegistry, logger: Logger): void {
  let buffered = '';
  connection.setEncoding('utf8');
  connection.setTimeout(REQUEST_TIMEOUT_MS, () => connection.destroy());
  connection.on('error', () => connection.destroy());
  connection.on('data', (chunk: string) => {
    buffered += chunk;
    const end = buffered.indexOf('\n');
    if (end < 0 && buffered.length <= MAX_REQUEST_BYTES) return;
    connection.removeAllListeners('data');
    let response: ControlResponse;
    try {
      if (end < 0) throw new SocklbError('SOCKLB_ERR_CONTROL', `control socket: request longer than ${MAX_REQUEST_BYTES} bytes`);
      const request = parseRequest(buffered.slice(0, end));
      response = answer(registry, request);
      if (request.op !== 'list') logRequest(logger, request, response);
    } catch (error) {
      response = errorResponse(error);
    }
    connection.end(encodeMessage(response));
  });
}

function logRequest(logger: Logger, request: ControlRequest, response: ControlResponse): void {
  if (!response.ok) logger.warn({ op: request.op, code: response.code }, `sandbox ${request.op} refused: ${response.message}`);
  else if ('sandbox' in response) logger.info({ ...response.sandbox, outcome: response.outcome }, `sandbox ${response.sandbox.id} ${response.outcome}`);
}

/** A socket file left by an agent that was killed is removed; a live agent's is not. */
async function removeDeadSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new SocklbError('SOCKLB_ERR_CONTROL', `control socket ${path}: the path exists and is not a socket; remove it or choose another --control-socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new SocklbError('SOCKLB_ERR_CONTROL', `control socket ${path}: another socklb agent is serving it; stop that one or choose another --control-socket`);
  unlinkSync(path);
}

function closeServer(server: Server): Promise<void> {
  // Node removes the socket file of a server it closes.
  return new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * Sends one request to the agent and resolves to its answer; a refusal becomes the agent's
 * SocklbError, a dead or absent agent one sentence, and nothing waits longer than `timeoutMs`.
 */
export async function requestControl(path: string, request: ControlRequest, timeoutMs: number): Promise<Exclude<ControlResponse, { ok: false }>> {
  const line = await new Promise<string>((resolve, reject) => {
    const connection = createConnection(path);
    let received = '';
    const timer = setTimeout(() => {
      connection.destroy();
      reject(new SocklbError('SOCKLB_ERR_CONTROL', `the agent at control socket ${path} did not answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    connection.setEncoding('utf8');
    connection.once('connect', () => connection.write(encodeMessage(request)));
    connection.on('data', (chunk: string) => {
      received += chunk;
    });
    connection.once('end', () => {
      clearTimeout(timer);
      resolve(received.split('\n')[0] ?? '');
    });
    connection.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(connectError(path, error));
    });
  });
  const response = parseResponse(line);
  if (!response.ok) throw new SocklbError(response.code, response.message);
  return response;
}

function connectError(path: string, error: NodeJS.ErrnoException): SocklbError {
  switch (error.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new SocklbError('SOCKLB_ERR_NOT_RUNNING', `no socklb agent is serving the control socket ${path} (${error.code}); start one with \`socklb run\``);
    case 'EACCES':
    case 'EPERM':
      return new SocklbError('SOCKLB_ERR_PRIVILEGES', `cannot use the control socket ${path} (${error.code}): it is root-only`);
    default:
      return new SocklbError('SOCKLB_ERR_CONTROL', `control socket ${path}: ${error.code ?? error.message}`);
  }
}
