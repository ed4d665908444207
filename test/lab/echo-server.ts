// A pod's workload in the lab: answers every HTTP request with "NAME\n" and, with --udp, every
// datagram with "NAME", so a client can tell which backend it reached. Both listen on :: with
// IPv6-only off, so one socket per protocol serves both families. Prints "ready" once listening.
//
//   node echo-server.js --name NAME --port N [--udp] [--until-stdin-closes]
//
// --until-stdin-closes: exit when stdin reaches its end. The lab gives the server a pipe, so the
// server also goes away when the test process dies without closing its lab.
import dgram from 'node:dgram';
import { once } from 'node:events';
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  strict: true,
  options: {
    name: { type: 'string' },
    port: { type: 'string' },
    udp: { type: 'boolean', default: false },
    'until-stdin-closes': { type: 'boolean', default: false },
  },
});
const name = values.name;
const port = Number(values.port);
if (!name) throw new Error('--name is required');
if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`--port ${JSON.stringify(values.port)}: must be 1..65535`);

const body = `${name}\n`;
// Node's HTTP server already honours "Connection: close": it answers with it and closes the socket.
const server = http.createServer((request, response) => {
  request.resume();
  response.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  response.end(body);
});
server.listen({ port, host: '::', ipv6Only: false });
await once(server, 'listening');

if (values.udp) {
  const socket = dgram.createSocket({ type: 'udp6', ipv6Only: false });
  // The reply goes to the sender's address (IPv4-mapped for IPv4 clients), from the pod address.
  socket.on('message', (_request, sender) => socket.send(name, sender.port, sender.address));
  socket.bind(port, '::');
  await once(socket, 'listening');
}

if (values['until-stdin-closes']) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
process.stdout.write('ready\n');
