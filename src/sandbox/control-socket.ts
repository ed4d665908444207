// The agent's control socket: a Unix socket only root can use (its directory root's and 0700, the
// socket 0600), through which `socklb sandbox` and `socklb oci-hook` add and remove sandboxes.
// Both ends are here; the protocol is in protocol.ts.

import { chmodSync, lstatSync, mkdirSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { SocklbError } from '../errors.js';
import type { Logger } from '../log.js';
import {
  encodeMessage,
  errorResponse,
  MAX_REQUEST_BYTES,
  parseRequest,
  parseResponse,
  parseTraceMessage,
  parseTraceStart,
  type ControlRequest,
  type ControlResponse,
  type TraceFilter,
  type TraceMessage,
  type TraceRequest,
  type TraceService,
} from './protocol.js';
import type { SandboxDirectory } from './protocol.js';
import { listenOnUnixPath, type UnixPathRefusal } from './unix-listener.js';

export const DEFAULT_CONTROL_SOCKET = '/run/socklb/control.sock';

/** A client that sends nothing is dropped after this. */
const REQUEST_TIMEOUT_MS = 5_000;
/**
 * What may wait unsent to one tracer: past it, its events are dropped and counted, so that a
 * tracer that reads slowly (a terminal scrolled back) costs the agent this much memory, no more.
 */
const MAX_TRACE_BACKLOG_BYTES = 1024 * 1024;

/** What the control socket serves. */
interface Served {
  sandboxes: SandboxDirectory;
  /** None: trace requests are refused. */
  tracing: TraceService | undefined;
}

/** Serves one request against the sandboxes; a trace is streamed by followTrace, never answered here. */
async function answer(sandboxes: SandboxDirectory, request: Exclude<ControlRequest, TraceRequest>): Promise<ControlResponse> {
  try {
    switch (request.op) {
      case 'add':
        return { ok: true, ...(await sandboxes.add(request)) };
      case 'remove':
        return { ok: true, outcome: 'removed', sandbox: await sandboxes.remove(request.id) };
      case 'list':
        return { ok: true, sandboxes: sandboxes.list() };
    }
  } catch (error) {
    return errorResponse(error);
  }
}

export interface ControlSocket {
  /** Starts answering, the requests held since the claim first. */
  serve(sandboxes: SandboxDirectory, tracing?: TraceService): void;
  /** Stops listening, drops the requests still held, and removes the socket file. */
  close(): Promise<void>;
}

/**
 * Listens on `path`, refusing when another agent serves it (a socket file left by a killed agent
 * is replaced). Called before anything is attached, so that a second agent started by mistake
 * changes nothing before it stops; requests that arrive before `serve` are held until then.
 */
export async function claimControlSocket(path: string, logger: Logger): Promise<ControlSocket> {
  secureDirectory(dirname(path));
  let resolveReady!: (served: Served) => void;
  const ready = new Promise<Served>((resolve) => (resolveReady = resolve));
  const serve = (sandboxes: SandboxDirectory, tracing?: TraceService) => resolveReady({ sandboxes, tracing });
  // Half open: a client may end its side after the request and still read the answer.
  const connections = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (connection) => {
    connections.add(connection);
    connection.once('close', () => connections.delete(connection));
    serveConnection(connection, ready, logger);
  });
  try {
    await listenOnUnixPath(server, path, (refusal) => refuseControlSocket(path, refusal));
  } catch (error) {
    if (error instanceof SocklbError) throw error;
    throw new SocklbError(
      'SOCKLB_ERR_CONTROL',
      `cannot serve the control socket ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      { cause: error },
    );
  }
  // An accept that fails (EMFILE) is reported here; without a listener it would end the agent.
  server.on('error', (error: NodeJS.ErrnoException) =>
    logger.error({ path, code: error.code }, `control socket ${path}: ${error.message}`),
  );
  return {
    serve,
    close: () => {
      // Held requests too: the server closes only once every connection has.
      for (const connection of connections) connection.destroy();
      return closeServer(server);
    },
  };
}

/**
 * The socket's directory, made 0700 if absent. One that exists is used only if nobody but root
 * can change it (a symlink, another owner or a writable mode would let someone else replace the
 * socket); the DaemonSet's hostPath makes it 0755, which is narrowed to 0700.
 */
function secureDirectory(directory: string): void {
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const status = lstatSync(directory);
  const refuse = (reason: string) =>
    new SocklbError('SOCKLB_ERR_CONTROL', `control socket directory ${directory}: ${reason}; fix it or choose another --control-socket`);
  if (status.isSymbolicLink()) throw refuse('is a symbolic link');
  if (!status.isDirectory()) throw refuse('is not a directory');
  if (status.uid !== 0 && status.uid !== process.geteuid?.()) throw refuse(`is owned by uid ${status.uid}, not root`);
  if ((status.mode & 0o077) !== 0) chmodSync(directory, 0o700);
}

function serveConnection(connection: Socket, ready: Promise<Served>, logger: Logger): void {
  const chunks: Buffer[] = [];
  let bytes = 0;
  let handled = false;
  connection.setTimeout(REQUEST_TIMEOUT_MS, () => connection.destroy());
  connection.on('error', () => connection.destroy());
  const handle = (line: Buffer | undefined) => {
    handled = true;
    connection.removeAllListeners('data');
    // The request is in: from here on the client's own timeout applies, also while it is held.
    connection.setTimeout(0);
    if (line === undefined) {
      reply(
        connection,
        errorResponse(new SocklbError('SOCKLB_ERR_CONTROL', `control socket: request longer than ${MAX_REQUEST_BYTES} bytes`)),
      );
      return;
    }
    void ready.then(async ({ sandboxes, tracing }) => {
      // A client that gave up was told the request failed: acting on it now would contradict that.
      if (connection.destroyed) return;
      let request: ControlRequest;
      try {
        request = parseRequest(line.toString('utf8'));
      } catch (error) {
        reply(connection, errorResponse(error));
        return;
      }
      if (request.op === 'trace') followTrace(connection, request, tracing, logger);
      else reply(connection, await respond(sandboxes, request, logger));
    });
  };
  connection.on('data', (chunk: Buffer) => {
    const newline = chunk.indexOf(0x0a);
    const length = bytes + (newline >= 0 ? newline : chunk.length);
    chunks.push(chunk);
    bytes += chunk.length;
    if (length > MAX_REQUEST_BYTES) handle(undefined);
    else if (newline >= 0) handle(Buffer.concat(chunks).subarray(0, length));
  });
  // A client that ends its request with EOF instead of a newline gets its answer now; one that
  // sent nothing (another agent probing, for one) is only closed.
  connection.on('end', () => {
    if (handled) return;
    if (bytes === 0) connection.end();
    else handle(Buffer.concat(chunks));
  });
}

/**
 * Streams the calls the filter matches until either side closes. A tracer whose backlog passes
 * MAX_TRACE_BACKLOG_BYTES is sent no events until it catches up; the tracing hub counts them.
 */
function followTrace(connection: Socket, request: TraceRequest, tracing: TraceService | undefined, logger: Logger): void {
  const { op: _op, ...filter } = request;
  let stop: (() => void) | undefined;
  try {
    if (!tracing) throw new SocklbError('SOCKLB_ERR_CONTROL', 'this agent serves no traces');
    stop = tracing.follow(filter, (message: TraceMessage) => {
      if (connection.destroyed || ('event' in message && connection.writableLength > MAX_TRACE_BACKLOG_BYTES)) return false;
      connection.write(encodeMessage(message));
      return true;
    });
  } catch (error) {
    reply(connection, errorResponse(error));
    return;
  }
  logger.info({ filter }, 'trace started');
  connection.write(encodeMessage({ ok: true, tracing: filter }));
  let stopped = false;
  const end = () => {
    if (stopped) return;
    stopped = true;
    stop?.();
    connection.end();
    logger.info({ filter }, 'trace ended');
  };
  connection.once('end', end);
  connection.once('close', end);
}

async function respond(
  sandboxes: SandboxDirectory,
  request: Exclude<ControlRequest, TraceRequest>,
  logger: Logger,
): Promise<ControlResponse> {
  const response = await answer(sandboxes, request);
  if (request.op !== 'list') logRequest(logger, request, response);
  return response;
}

function reply(connection: Socket, response: ControlResponse): void {
  connection.end(encodeMessage(response));
}

function logRequest(logger: Logger, request: ControlRequest, response: ControlResponse): void {
  if (!response.ok) logger.warn({ op: request.op, code: response.code }, `sandbox ${request.op} refused: ${response.message}`);
  else if ('sandbox' in response)
    logger.info({ ...response.sandbox, outcome: response.outcome }, `sandbox ${response.sandbox.id} ${response.outcome}`);
}

function refuseControlSocket(path: string, refusal: UnixPathRefusal): SocklbError {
  if (refusal.reason === 'not a socket')
    return new SocklbError(
      'SOCKLB_ERR_CONTROL',
      `control socket ${path}: the path exists and is not a socket; remove it or choose another --control-socket`,
    );
  const how = refusal.probe === 'accepted' ? '' : ` (connecting to it fails with ${refusal.probe}, not ECONNREFUSED)`;
  return new SocklbError(
    'SOCKLB_ERR_CONTROL',
    `control socket ${path}: another socklb agent is serving it${how}; stop that one or choose another --control-socket`,
  );
}

function closeServer(server: Server): Promise<void> {
  // Node removes the socket file of a server it closes.
  return new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * Connects to the agent at `path`, sends `request` and hands each chunk the agent sends back to
 * `receive`, until the connection closes (or `signal` aborts, which ends it): resolves then. Until
 * `receive` calls `answered`, nothing waits longer than `timeoutMs`. Whatever goes wrong rejects
 * with one clear error: a dead or absent agent, no answer in time, or what `receive` throws.
 */
function converseWithAgent(
  path: string,
  request: ControlRequest,
  timeoutMs: number,
  receive: (chunk: string, answered: () => void) => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const connection = createConnection(path);
    connection.setEncoding('utf8');
    const timer = setTimeout(() => {
      connection.destroy(
        new SocklbError('SOCKLB_ERR_CONTROL', `the agent at control socket ${path} did not answer within ${timeoutMs / 1000} s`),
      );
    }, timeoutMs);
    const answered = () => clearTimeout(timer);
    const abort = () => connection.end();
    signal?.addEventListener('abort', abort, { once: true });
    connection.once('connect', () => connection.write(encodeMessage(request)));
    connection.on('data', (chunk: string) => {
      try {
        receive(chunk, answered);
      } catch (error) {
        connection.destroy();
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
    connection.once('error', (error: NodeJS.ErrnoException) => reject(error instanceof SocklbError ? error : connectError(path, error)));
    connection.once('close', () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
      resolve();
    });
  });
}

/**
 * Sends one request to the agent and resolves to its answer; a refusal becomes the agent's
 * SocklbError, a dead or absent agent one sentence, and nothing waits longer than `timeoutMs`.
 */
export async function requestControl(
  path: string,
  request: ControlRequest,
  timeoutMs: number,
): Promise<Exclude<ControlResponse, { ok: false }>> {
  let received = '';
  await converseWithAgent(path, request, timeoutMs, (chunk) => {
    received += chunk;
  });
  const response = parseResponse(received.split('\n')[0] ?? '');
  if (!response.ok) throw new SocklbError(response.code, response.message);
  return response;
}

/** What a tracer is told. */
export interface TraceHandlers {
  /** The agent accepted the trace: the programs write from now on. */
  started(filter: TraceFilter): void;
  message(message: TraceMessage): void;
}

/**
 * Starts a trace and hands each line the agent sends to `handlers`, until `signal` aborts (or the
 * agent ends the stream, when it stops): resolves then. A refusal becomes the agent's SocklbError.
 */
export async function followControlTrace(
  path: string,
  filter: TraceFilter,
  timeoutMs: number,
  handlers: TraceHandlers,
  signal: AbortSignal,
): Promise<void> {
  let started = false;
  let pending = '';
  const receive = (chunk: string, answered: () => void) => {
    pending += chunk;
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (!started) {
        started = true;
        answered();
        handlers.started(parseTraceStart(line));
      } else handlers.message(parseTraceMessage(line));
    }
  };
  await converseWithAgent(path, { op: 'trace', ...filter }, timeoutMs, receive, signal);
}

function connectError(path: string, error: NodeJS.ErrnoException): SocklbError {
  switch (error.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new SocklbError(
        'SOCKLB_ERR_NOT_RUNNING',
        `no socklb agent is serving the control socket ${path} (${error.code}); start one with \`socklb run\``,
      );
    case 'EACCES':
    case 'EPERM':
      return new SocklbError('SOCKLB_ERR_PRIVILEGES', `cannot use the control socket ${path} (${error.code}): it is root-only`);
    default:
      return new SocklbError('SOCKLB_ERR_CONTROL', `control socket ${path}: ${error.code ?? error.message}`);
  }
}
