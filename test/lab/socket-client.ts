// A sandbox's UDP (and long-lived TCP) workloads, for what the probe client (client.ts) does not
// cover: unconnected sockets, one socket kept for a whole run, many short-lived sockets. Every
// mode is bounded in count and time and stops by itself; output is JSON lines on stdout.
//
//   node socket-client.js dns    --targets IP,IP,... --port 53 --name NAME --count K
//       One unconnected socket sends K DNS queries (type A), to the targets in turn, with
//       sendto() and reads each reply with recvfrom(), as a resolver with several nameservers
//       does. Prints {replies: [{target, source, answer, rcode}], errors}.
//   node socket-client.js multi  --targets IP:PORT,IP:PORT,... [--hold]
//       One unconnected socket sends a datagram to each target in turn and reads the reply (an
//       echo server's name). Prints {replies: [{target, source, name}], errors}; with --hold it
//       then keeps the socket open until stdin closes.
//   node socket-client.js stream --target IP --port P [--source-port S] [--connect | --tcp]
//                                [--interval-ms 20] [--duration-ms 60000]
//       One socket for the whole run, sending every interval: unconnected UDP from a fixed source
//       port (sendto), connected UDP (connect, then send), or TCP (HTTP keep-alive on one
//       connection). On an error it reports it and starts again with a new socket, as an
//       application would. Prints one line per event as it happens:
//         {"event":"connected","at":ms,"peer":"IP:PORT"}  (connected UDP and TCP)
//         {"event":"reply","at":ms,"name":NAME,"source":"IP:PORT"}
//         {"event":"error","at":ms,"code":"ECONNABORTED"}
//       and stops when stdin closes or at --duration-ms.
//   node socket-client.js hold   --target IP --port P --count N [--duration-ms 60000]
//       N TCP connections opened one after another and kept open, sending nothing. Prints
//       {connected, errors} once all are tried, then keeps them until stdin closes or at
//       --duration-ms.
//   node socket-client.js churn  --target IP --port P --count N [--concurrency 64] [--deadline-ms 60000]
//       N sockets, each created, sending one datagram, closed. Prints {sent, errors, elapsedMs}.
import dgram from 'node:dgram';
import http from 'node:http';
import net, { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { errorCode } from './errno.js';

const [mode, ...rest] = process.argv.slice(2);
const { values } = parseArgs({
  args: rest,
  strict: true,
  options: {
    target: { type: 'string' },
    targets: { type: 'string' },
    port: { type: 'string' },
    name: { type: 'string' },
    count: { type: 'string', default: '1' },
    hold: { type: 'boolean', default: false },
    'source-port': { type: 'string' },
    connect: { type: 'boolean', default: false },
    tcp: { type: 'boolean', default: false },
    'interval-ms': { type: 'string', default: '20' },
    'duration-ms': { type: 'string', default: '60000' },
    concurrency: { type: 'string', default: '64' },
    'deadline-ms': { type: 'string', default: '60000' },
    'timeout-ms': { type: 'string', default: '2000' },
  },
});

const timeoutMs = integer('--timeout-ms', values['timeout-ms'], 1, 60_000);

switch (mode) {
  case 'dns':
    print(
      await dnsQueries(
        required('--targets', values.targets).split(','),
        integer('--port', values.port, 1, 65535),
        required('--name', values.name),
        integer('--count', values.count, 1, 10_000),
      ),
    );
    break;
  case 'multi':
    print(await multi(required('--targets', values.targets).split(',').map(parseTarget)));
    if (values.hold) await stdinClosed();
    break;
  case 'stream':
    await stream();
    break;
  case 'hold':
    await hold(
      required('--target', values.target),
      integer('--port', values.port, 1, 65535),
      integer('--count', values.count, 1, 10_000),
      integer('--duration-ms', values['duration-ms'], 1, 600_000),
    );
    break;
  case 'churn':
    print(
      await churn(
        required('--target', values.target),
        integer('--port', values.port, 1, 65535),
        integer('--count', values.count, 1, 10_000_000),
        integer('--concurrency', values.concurrency, 1, 1024),
        integer('--deadline-ms', values['deadline-ms'], 1, 600_000),
      ),
    );
    break;
  default:
    throw new Error(`mode ${JSON.stringify(mode)}: use dns, multi, stream, hold or churn`);
}
process.exit(0);

interface Target {
  address: string;
  port: number;
}

function udpSocket(address: string): dgram.Socket {
  return dgram.createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
}

function hostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Sends `request` to `target` on `socket` and resolves to the next datagram, or an error code. */
function exchange(socket: dgram.Socket, request: Buffer, target: Target): Promise<{ message: Buffer; source: string } | { error: string }> {
  return new Promise((resolve) => {
    const done = (outcome: { message: Buffer; source: string } | { error: string }) => {
      clearTimeout(timer);
      socket.off('message', onMessage);
      socket.off('error', onError);
      resolve(outcome);
    };
    const onMessage = (message: Buffer, remote: dgram.RemoteInfo) => done({ message, source: hostPort(remote.address, remote.port) });
    const onError = (error: Error) => done({ error: errorCode(error) ?? error.name });
    const timer = setTimeout(() => done({ error: 'ETIMEDOUT' }), timeoutMs);
    socket.on('message', onMessage);
    socket.on('error', onError);
    socket.send(request, target.port, target.address, (error) => {
      if (error) done({ error: errorCode(error) ?? error.name });
    });
  });
}

async function dnsQueries(addresses: string[], port: number, name: string, count: number) {
  const socket = udpSocket(addresses[0] ?? '');
  const replies: { target: string; source: string; answer: string | null; rcode: number }[] = [];
  const errors: Record<string, number> = {};
  for (let id = 1; id <= count; id++) {
    const address = addresses[(id - 1) % addresses.length] ?? '';
    const outcome = await exchange(socket, dnsQuery(id, name), { address, port });
    if ('error' in outcome) increment(errors, outcome.error);
    else replies.push({ target: hostPort(address, port), source: outcome.source, ...parseDnsReply(outcome.message, id) });
  }
  socket.close();
  return { replies, errors };
}

async function multi(targets: Target[]) {
  const socket = udpSocket(targets[0]?.address ?? '0.0.0.0');
  const replies: { target: string; source: string; name: string }[] = [];
  const errors: Record<string, number> = {};
  for (const target of targets) {
    const outcome = await exchange(socket, Buffer.from('who?'), target);
    if ('error' in outcome) increment(errors, outcome.error);
    else replies.push({ target: hostPort(target.address, target.port), source: outcome.source, name: outcome.message.toString() });
  }
  // Left open: with --hold the socket (and its translations) stays until stdin closes.
  return { replies, errors };
}

async function stream(): Promise<void> {
  const target = { address: required('--target', values.target), port: integer('--port', values.port, 1, 65535) };
  const sourcePort = values['source-port'] === undefined ? 0 : integer('--source-port', values['source-port'], 1, 65535);
  const intervalMs = integer('--interval-ms', values['interval-ms'], 1, 60_000);
  const durationMs = integer('--duration-ms', values['duration-ms'], 1, 600_000);
  const emit = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ ...event, at: Date.now() })}\n`);
  const stop = Promise.race([stdinClosed(), new Promise<void>((resolve) => setTimeout(resolve, durationMs))]);
  let stopped = false;
  void stop.then(() => (stopped = true));
  const send = values.tcp ? tcpSender(target, emit) : udpSender(target, sourcePort, values.connect, emit);
  while (!stopped) {
    await send();
    await Promise.race([stop, new Promise((resolve) => setTimeout(resolve, intervalMs))]);
  }
}

/** One UDP socket at a time; a new one after an error (a connected socket that was destroyed). */
function udpSender(
  target: Target,
  sourcePort: number,
  connect: boolean,
  emit: (event: Record<string, unknown>) => void,
): () => Promise<void> {
  let socket: dgram.Socket | undefined;
  let ready: Promise<boolean> | undefined;
  const restart = () => {
    socket?.close();
    socket = undefined;
    ready = undefined;
  };
  /** Resolves to whether the socket is ready to send; on false the next send tries a new one. */
  const open = (): Promise<boolean> =>
    new Promise((resolve) => {
      const fresh = udpSocket(target.address);
      let opened = false;
      socket = fresh;
      fresh.on('message', (message, remote) =>
        emit({ event: 'reply', name: message.toString(), source: hostPort(remote.address, remote.port) }),
      );
      // A destroyed socket reports ECONNABORTED here; so do ICMP errors (ECONNREFUSED), and bind().
      fresh.on('error', (error) => {
        emit({ event: 'error', code: errorCode(error) ?? error.name });
        if (socket === fresh) restart();
        if (!opened) resolve(false);
      });
      fresh.bind(sourcePort, () => {
        if (!connect) {
          opened = true;
          return resolve(true);
        }
        fresh.connect(target.port, target.address, (error?: Error) => {
          if (error) {
            emit({ event: 'error', code: errorCode(error) ?? error.name });
            restart();
            return resolve(false);
          }
          opened = true;
          const peer = fresh.remoteAddress();
          emit({ event: 'connected', peer: hostPort(peer.address, peer.port) });
          resolve(true);
        });
      });
    });
  return async () => {
    ready ??= open();
    if (!(await ready) || !socket) return;
    const current = socket;
    await new Promise<void>((resolve) => {
      const callback = (error: Error | null) => {
        if (error) {
          emit({ event: 'error', code: errorCode(error) ?? error.name });
          if (socket === current) restart();
        }
        resolve();
      };
      if (connect) current.send('who?', callback);
      else current.send('who?', target.port, target.address, callback);
    });
  };
}

/** HTTP keep-alive requests on one connection; Node's agent opens a new one after an error. */
function tcpSender(target: Target, emit: (event: Record<string, unknown>) => void): () => Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return () =>
    new Promise<void>((resolve) => {
      const request = http.get({ host: target.address, port: target.port, path: '/', agent, timeout: timeoutMs }, (response) => {
        // Read now: at the end of the response the socket is back in the agent's pool.
        const source = hostPort(response.socket.remoteAddress ?? '', response.socket.remotePort ?? 0);
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => {
          emit({ event: 'reply', name: body.trim(), source });
          resolve();
        });
        response.on('error', (error) => {
          emit({ event: 'error', code: errorCode(error) ?? error.name });
          resolve();
        });
      });
      request.on('socket', (socket) => {
        if (socket.remoteAddress === undefined)
          socket.once('connect', () => emit({ event: 'connected', peer: hostPort(socket.remoteAddress ?? '', socket.remotePort ?? 0) }));
      });
      request.on('timeout', () => request.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      request.on('error', (error) => {
        emit({ event: 'error', code: errorCode(error) ?? error.name });
        resolve();
      });
    });
}

async function hold(address: string, port: number, count: number, durationMs: number): Promise<void> {
  const errors: Record<string, number> = {};
  const sockets: net.Socket[] = [];
  for (let opened = 0; opened < count; opened++) {
    const socket = net.connect({ host: address, port, timeout: timeoutMs });
    const error = await new Promise<Error | undefined>((resolve) => {
      socket.once('connect', () => resolve(undefined));
      socket.once('timeout', () => resolve(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      socket.once('error', resolve);
    });
    socket.setTimeout(0);
    if (error) {
      increment(errors, errorCode(error) ?? error.name);
      socket.destroy();
    } else {
      socket.on('error', () => undefined);
      sockets.push(socket);
    }
  }
  print({ connected: sockets.length, errors });
  await Promise.race([stdinClosed(), new Promise((resolve) => setTimeout(resolve, durationMs).unref())]);
  for (const socket of sockets) socket.destroy();
}

async function churn(address: string, port: number, count: number, concurrency: number, deadlineMs: number) {
  const started = performance.now();
  const errors: Record<string, number> = {};
  let next = 0;
  let sent = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const socket = udpSocket(address);
      socket.on('error', () => undefined);
      socket.send('x', port, address, (error) => {
        if (error) increment(errors, errorCode(error) ?? error.name);
        else sent++;
        socket.close(() => resolve());
      });
    });
  const worker = async () => {
    while (next < count && performance.now() - started < deadlineMs) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { sent, errors, elapsedMs: Math.round(performance.now() - started) };
}

/** A standard query for the A record of `name`, recursion desired. */
function dnsQuery(id: number, name: string): Buffer {
  const labels = name
    .split('.')
    .filter(Boolean)
    .map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'ascii')]));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

/** The reply's rcode and its first A record (null when it has none); throws on a reply to another query. */
function parseDnsReply(message: Buffer, id: number): { answer: string | null; rcode: number } {
  if (message.readUInt16BE(0) !== id) throw new Error(`DNS reply id ${message.readUInt16BE(0)}, expected ${id}`);
  const rcode = message.readUInt16BE(2) & 0xf;
  const questions = message.readUInt16BE(4);
  const answers = message.readUInt16BE(6);
  let offset = 12;
  for (let i = 0; i < questions; i++) offset = skipName(message, offset) + 4;
  for (let i = 0; i < answers; i++) {
    offset = skipName(message, offset);
    const type = message.readUInt16BE(offset);
    const length = message.readUInt16BE(offset + 8);
    offset += 10;
    if (type === 1 && length === 4) return { answer: [...message.subarray(offset, offset + 4)].join('.'), rcode };
    offset += length;
  }
  return { answer: null, rcode };
}

function skipName(message: Buffer, offset: number): number {
  for (;;) {
    const length = message.readUInt8(offset);
    if (length === 0) return offset + 1;
    // A compression pointer ends the name.
    if ((length & 0xc0) === 0xc0) return offset + 2;
    offset += length + 1;
  }
}

function parseTarget(text: string): Target {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(text);
  if (!match?.[1] || !match[2] || isIP(match[1]) === 0) throw new Error(`--targets: ${JSON.stringify(text)} is not IP:PORT`);
  return { address: match[1], port: integer('--targets port', match[2], 1, 65535) };
}

function stdinClosed(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.on('end', resolve);
    process.stdin.on('error', resolve);
    process.stdin.resume();
  });
}

function print(report: unknown): void {
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

function increment(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

function required(flag: string, value: string | undefined): string {
  if (value === undefined) throw new Error(`${flag} is required`);
  return value;
}

function integer(flag: string, text: string | undefined, min: number, max: number): number {
  const value = Number(text);
  if (text === undefined || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${flag} ${JSON.stringify(text)}: must be an integer in ${min}..${max}`);
  }
  return value;
}
