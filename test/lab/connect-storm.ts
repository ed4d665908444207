// Many short TCP connections to Services whose backends answer with their port (port-server.ts),
// each checked against the ports the Service may answer from: a connection answered from another
// Service's port was misrouted. Prints one JSON report at the end.
//
//   node connect-storm.js --services JSON --connects N --concurrency C [--stop-after-misroutes K]
// JSON: [{ "address": "10.96.77.1", "port": 80, "backendPorts": [20000, 20001] }, ...]
import net from 'node:net';
import { parseArgs } from 'node:util';
import { errorCode } from './errno.js';

export interface StormService {
  address: string;
  port: number;
  backendPorts: number[];
}

export interface StormReport {
  connects: number;
  /** Answered by one of the Service's own backends. */
  answered: number;
  /** Answered by another Service's backend: the failure this storm looks for. */
  misrouted: number;
  /** The first few, as "service address:port answered by backend port N". */
  misroutes: string[];
  /** Failed connects by error code (ECONNREFUSED: no backend; ENETUNREACH: not a Service then). */
  errors: Record<string, number>;
  elapsedMs: number;
}

const { values } = parseArgs({
  strict: true,
  options: {
    services: { type: 'string' },
    connects: { type: 'string' },
    concurrency: { type: 'string', default: '32' },
    'stop-after-misroutes': { type: 'string', default: '0' },
  },
});
const services = JSON.parse(values.services ?? '[]') as StormService[];
const total = Number(values.connects);
const concurrency = Number(values.concurrency);
const stopAfter = Number(values['stop-after-misroutes']);
if (services.length === 0 || !Number.isInteger(total) || total < 1 || !Number.isInteger(concurrency) || concurrency < 1) {
  throw new Error('give --services (a non-empty JSON list), --connects N >= 1 and --concurrency C >= 1');
}
const ownerOfPort = new Map<number, number>();
services.forEach((service, index) => service.backendPorts.forEach((port) => ownerOfPort.set(port, index)));

const report: StormReport = { connects: 0, answered: 0, misrouted: 0, misroutes: [], errors: {}, elapsedMs: 0 };
const started = performance.now();
let launched = 0;

function once(index: number): Promise<void> {
  const service = services[index]!;
  return new Promise((resolve) => {
    let answer = '';
    const socket = net.connect({ host: service.address, port: service.port });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', (error) => {
      const code = errorCode(error) ?? 'unknown';
      report.errors[code] = (report.errors[code] ?? 0) + 1;
    });
    socket.on('close', (hadError) => {
      report.connects++;
      if (!hadError) {
        const port = Number(answer.trim());
        if (ownerOfPort.get(port) === index) report.answered++;
        else {
          report.misrouted++;
          if (report.misroutes.length < 10)
            report.misroutes.push(`${service.address}:${service.port} answered by backend port ${answer.trim()}`);
        }
      }
      resolve();
    });
  });
}

async function worker(): Promise<void> {
  while (launched < total && !(stopAfter > 0 && report.misrouted >= stopAfter)) {
    launched++;
    await once(Math.floor(Math.random() * services.length));
  }
}

await Promise.all(Array.from({ length: concurrency }, worker));
report.elapsedMs = Math.round(performance.now() - started);
process.stdout.write(`${JSON.stringify(report)}\n`);
