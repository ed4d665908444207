// wrk, the HTTP load generator, driven from a client namespace (the benchmark, the load tests): its
// command line and its report.
// A small Lua script makes wrk print its figures as one JSON line (done()), and lets a client
// without a ClusterIP spread its threads over several addresses (setup()), which is how the
// direct datapath shares its load among the backends as a Service would.

import type { Lab, Sandbox } from './lab.js';

/** For a client of short connections (2000 at a time, tens of thousands a second): every port. */
export const WRK_CLIENT_SYSCTLS = ['net.ipv4.ip_local_port_range=1024 65535'];

/** wrk counts a response that comes later than this after its request as a timeout error. */
export const WRK_TIMEOUT_S = 2;

/** A run ends by itself after its duration; this only catches a hung wrk. */
const RUN_GRACE_MS = 30_000;

export interface WrkOptions {
  url: string;
  threads: number;
  connections: number;
  seconds: number;
  /** Send `Connection: close`: one connection per request. */
  closeEachConnection: boolean;
  /** host:port addresses, one per thread in turn, instead of the URL's own. */
  spreadOver?: readonly string[];
}

export interface WrkReport {
  requests: number;
  durationS: number;
  requestsPerSecond: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyUs: { mean: number; p50: number; p90: number; p99: number; max: number };
}

/** The Lua script; written to a file once and passed with -s. */
export const WRK_SCRIPT = `-- Written by socklb's lab (test/lab/wrk.ts).
local spread = os.getenv("WRK_SPREAD")
local threads = 0
function setup(thread)
  if spread == nil or spread == "" then return end
  local targets = {}
  for host, port in string.gmatch(spread, "([^,:]+):(%d+)") do table.insert(targets, { host, port }) end
  local target = targets[(threads % #targets) + 1]
  threads = threads + 1
  thread.addr = wrk.lookup(target[1], target[2])[1]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"durationUs":%d,"requests":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

/**
 * The command line: wrk with its RLIMIT_NOFILE raised to the hard limit (2000 connections need more
 * than the usual soft 1024; raising the hard limit itself may be refused, even to root, in a
 * container), through env so that WRK_SPREAD reaches the script.
 */
export function wrkArgv(options: WrkOptions, scriptPath: string): string[] {
  const wrk = [
    'wrk',
    '-t',
    String(options.threads),
    '-c',
    String(options.connections),
    '-d',
    `${options.seconds}s`,
    '--timeout',
    `${WRK_TIMEOUT_S}s`,
    '-s',
    scriptPath,
  ];
  if (options.closeEachConnection) wrk.push('-H', 'Connection: close');
  wrk.push(options.url);
  const env = ['env', `WRK_SPREAD=${(options.spreadOver ?? []).join(',')}`];
  return ['sh', '-c', 'n=$(ulimit -H -n); [ "$n" = unlimited ] && n=1048576; ulimit -n "$n" && exec "$@"', 'wrk-nofile', ...env, ...wrk];
}

export function parseWrkReport(stdout: string): WrkReport {
  const line = stdout.split('\n').find((candidate) => candidate.startsWith('WRK_JSON '));
  if (line === undefined) throw new Error(`wrk printed no report: ${JSON.stringify(stdout.slice(-500))}`);
  const raw = JSON.parse(line.slice('WRK_JSON '.length)) as {
    durationUs: number;
    requests: number;
    errors: WrkReport['errors'];
    latencyUs: WrkReport['latencyUs'];
  };
  const durationS = raw.durationUs / 1e6;
  return { requests: raw.requests, durationS, requestsPerSecond: raw.requests / durationS, errors: raw.errors, latencyUs: raw.latencyUs };
}

/** Runs wrk to its end in the client (inside its cgroup) and reads its report. */
export async function runWrk(lab: Lab, client: Sandbox, options: WrkOptions, scriptPath: string): Promise<WrkReport> {
  const { stdout } = await lab.exec(client, wrkArgv(options, scriptPath), { timeoutMs: options.seconds * 1000 + RUN_GRACE_MS });
  return parseWrkReport(stdout);
}
