// The traffic a datapath is measured with, one run at a time, inside its client's namespace and
// cgroup, with the CPU time the run cost.
import type { Lab } from '../test/lab/lab.js';
import type { Catalog } from './catalog.js';
import { cpuTimesSince, readCpuTimes, type CpuTimes } from './cpu.js';
import type { Datapath, DatapathName } from './datapaths/datapath.js';
import { iperfArgv, parseIperfReport } from './iperf.js';
import { runWrk } from '../test/lab/wrk.js';

export type WorkloadName = 'short' | 'keepalive' | 'connect' | 'udp';

export interface Workload {
  name: WorkloadName;
  /** What the report calls it. */
  title: string;
  /** What one operation is, for rates and CPU per operation. */
  unit: 'request' | 'connection' | 'datagram';
  wrk?: { threads: number; connections: number; closeEachConnection: boolean };
}

export const WORKLOADS: Record<WorkloadName, Workload> = {
  // The seed's test: every request on a connection of its own, 2000 at a time.
  short: {
    name: 'short',
    title: 'short connections: wrk -t2 -c2000, Connection: close',
    unit: 'connection',
    wrk: { threads: 2, connections: 2000, closeEachConnection: true },
  },
  // Translation happens once per connection: this shows what a datapath costs per packet afterwards.
  keepalive: {
    name: 'keepalive',
    title: 'keep-alive: wrk -t2 -c200',
    unit: 'request',
    wrk: { threads: 2, connections: 200, closeEachConnection: false },
  },
  // One connection after the other: each connect's translation is on the critical path, nothing
  // queues, and the CPU per connection isolates what the datapath adds to a connection.
  connect: {
    name: 'connect',
    title: 'connect probe: wrk -t1 -c1, Connection: close',
    unit: 'connection',
    wrk: { threads: 1, connections: 1, closeEachConnection: true },
  },
  udp: { name: 'udp', title: 'UDP: iperf3 -u -b 0 -l 64, one connected socket', unit: 'datagram' },
};

export const WORKLOAD_NAMES = Object.keys(WORKLOADS) as WorkloadName[];

/** iperf3's datagram payload. */
const DATAGRAM_BYTES = 64;
/** A run ends by itself after its duration; this only catches a hung client. */
const RUN_GRACE_MS = 30_000;

export interface RunResult {
  workload: WorkloadName;
  datapath: DatapathName;
  /** Operations (see Workload.unit) per second. */
  rate: number;
  operations: number;
  durationS: number;
  /**
   * Failed operations: wrk's socket errors and non-2xx answers. (A UDP sender at full speed outruns its
   * receiver: lost datagrams are not errors, they are in errorDetail.)
   */
  errors: number;
  errorDetail: Record<string, number>;
  latencyUs?: { mean: number; p50: number; p90: number; p99: number; max: number };
  /** CPU time the run cost: the whole machine's, and the client cgroup's alone. */
  cpuUs: CpuTimes;
  cpuPerOperationUs: CpuTimes;
}

export interface RunContext {
  lab: Lab;
  /** wrk's Lua script (WRK_SCRIPT), written once. */
  wrkScript: string;
}

export async function runWorkload(
  context: RunContext,
  workload: Workload,
  datapath: Datapath,
  catalog: Catalog,
  seconds: number,
): Promise<RunResult> {
  const before = await readCpuTimes(datapath.client.cgroupPath);
  const measured =
    workload.wrk === undefined
      ? await runUdp(context, datapath, catalog, seconds)
      : await runHttp(context, workload.wrk, datapath, catalog, seconds);
  const cpuUs = cpuTimesSince(before, await readCpuTimes(datapath.client.cgroupPath));
  const perOperation = (us: number) => (measured.operations > 0 ? us / measured.operations : Number.NaN);
  return {
    workload: workload.name,
    datapath: datapath.name,
    ...measured,
    rate: measured.operations / measured.durationS,
    cpuUs,
    cpuPerOperationUs: { machine: perOperation(cpuUs.machine), client: perOperation(cpuUs.client) },
  };
}

type Measured = Pick<RunResult, 'operations' | 'durationS' | 'errors' | 'errorDetail' | 'latencyUs'>;

async function runHttp(
  context: RunContext,
  wrk: NonNullable<Workload['wrk']>,
  datapath: Datapath,
  catalog: Catalog,
  seconds: number,
): Promise<Measured> {
  const target = datapath.target(catalog.http, catalog.http.ports[0]!);
  const report = await runWrk(
    context.lab,
    datapath.client,
    { url: `http://${target.host}:${target.port}/`, seconds, ...wrk, ...(target.spreadOver && { spreadOver: target.spreadOver }) },
    context.wrkScript,
  );
  const errors = Object.values(report.errors).reduce((sum, count) => sum + count, 0);
  return { operations: report.requests, durationS: report.durationS, errors, errorDetail: report.errors, latencyUs: report.latencyUs };
}

async function runUdp(context: RunContext, datapath: Datapath, catalog: Catalog, seconds: number): Promise<Measured> {
  const port = catalog.udp.ports.find((candidate) => candidate.protocol === 'UDP')!;
  const target = datapath.target(catalog.udp, port);
  const argv = iperfArgv({ host: target.host, port: target.port, seconds, datagramBytes: DATAGRAM_BYTES });
  const { stdout } = await context.lab.exec(datapath.client, argv, { timeoutMs: seconds * 1000 + RUN_GRACE_MS });
  const report = parseIperfReport(stdout);
  const lost = report.sentDatagrams - report.receivedDatagrams;
  return {
    operations: report.receivedDatagrams,
    durationS: report.durationS,
    errors: 0,
    errorDetail: { sent: report.sentDatagrams, lost },
  };
}
