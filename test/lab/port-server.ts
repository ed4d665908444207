// Answers every TCP connection on each of its ports with that port's number and closes it, so a
// client can tell exactly which backend it reached. Listens on :: with IPv6-only off. Prints
// "ready" once every port listens; exits when stdin closes (the lab gives it a pipe).
//
//   node port-server.js --ports FIRST-LAST
import { once } from 'node:events';
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ strict: true, options: { ports: { type: 'string' } } });
const range = /^(\d+)-(\d+)$/.exec(values.ports ?? '');
if (!range) throw new Error(`--ports ${JSON.stringify(values.ports)}: give FIRST-LAST`);
const [first, last] = [Number(range[1]), Number(range[2])];

for (let port = first; port <= last; port++) {
  const answer = `${port}\n`;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.end(answer);
  });
  server.listen({ port, host: '::', ipv6Only: false, backlog: 4096 });
  await once(server, 'listening');
}
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.stdout.write('ready\n');
