// A bounded probe run inside a sandbox (see client-options.ts for its command line): K sequential
// tries against one address, each a fresh connection so that every one goes through connect() and
// so through socklb's cgroup hooks. It prints one JSON line (a ClientReport) and never throws on
// a failed try: failures are what the tests count.
import dgram from 'node:dgram';
import http from 'node:http';
import { isIP } from 'node:net';
import { errorCode } from './errno.js';
import { parseClientArgv, type ClientReport, type ResolvedClientOptions as Options } from './client-options.js';

interface Outcome {
  /** The server's name on success. */
  name?: string;
  error?: string;
  peer?: string;
}

// What a UDP try sends: the server answers any datagram with its name.
const UDP_REQUEST = Buffer.from('who?');

const options = parseClientArgv(process.argv.slice(2));
process.stdout.write(`${JSON.stringify(await probe(options))}\n`);

async function probe(options: Options): Promise<ClientReport> {
  const started = performance.now();
  const deadline = started + options.deadlineMs;
  const hits: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const peers = new Set<string>();
  let attempts = 0;
  for (; attempts < options.count; attempts++) {
    const remaining = deadline - performance.now();
    if (remaining <= 0) break;
    const timeoutMs = Math.min(options.timeoutMs, remaining);
    const outcome = await (options.udp ? tryUdp(options, timeoutMs) : tryHttp(options, timeoutMs));
    if (outcome.peer !== undefined) peers.add(outcome.peer);
    if (outcome.error !== undefined) increment(errors, outcome.error);
    else if (outcome.name !== undefined) increment(hits, outcome.name);
  }
  return { hits, errors, peers: [...peers].sort(), attempts, elapsedMs: Math.round(performance.now() - started) };
}

/** One HTTP GET on a new connection (agent: false, Connection: close); the body is the server's name. */
function tryHttp(options: Options, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let peer: string | undefined;
    let settled = false;
    const settle = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...outcome, peer });
    };
    const request = http.get(
      {
        host: options.target,
        port: options.port,
        family: options.family,
        path: '/',
        agent: false,
        headers: { connection: 'close' },
      },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('error', (error) => settle({ error: errorCode(error) ?? error.name }));
        response.on('end', () => settle(response.statusCode === 200 ? { name: body.trim() } : { error: `HTTP_${response.statusCode}` }));
      },
    );
    request.on('socket', (socket) => {
      socket.once('connect', () => (peer = formatPeer(socket.remoteAddress, socket.remotePort)));
    });
    request.on('error', (error) => settle({ error: errorCode(error) ?? error.name }));
    const timer = setTimeout(() => {
      settle({ error: 'ETIMEDOUT' });
      request.destroy();
    }, timeoutMs);
  });
}

/**
 * One datagram on a new connected socket: connect() is where socklb translates, and a connected
 * socket only accepts a reply from the address it is connected to.
 */
function tryUdp(options: Options, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const family = options.family ?? (isIP(options.target) === 6 ? 6 : 4);
    const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    let peer: string | undefined;
    let settled = false;
    const settle = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.close();
      resolve({ ...outcome, peer });
    };
    // ECONNREFUSED (an ICMP port unreachable) arrives here, as a receive error.
    socket.on('error', (error) => settle({ error: errorCode(error) ?? error.name }));
    socket.on('message', (message) => settle({ name: message.toString('utf8') }));
    socket.connect(options.port, options.target, (error?: Error) => {
      if (error) return settle({ error: errorCode(error) ?? error.name });
      const remote = socket.remoteAddress();
      peer = formatPeer(remote.address, remote.port);
      socket.send(UDP_REQUEST, (sendError) => {
        if (sendError) settle({ error: errorCode(sendError) ?? sendError.name });
      });
    });
    const timer = setTimeout(() => settle({ error: 'ETIMEDOUT' }), timeoutMs);
  });
}

function formatPeer(address: string | undefined, port: number | undefined): string {
  return isIP(address ?? '') === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

function increment(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}
