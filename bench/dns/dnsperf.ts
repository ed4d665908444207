// DNS queries per second through a ClusterIP against straight to the backend (make bench-dns).
//
// One dnsmasq backend pod and two sandboxes, sibling cgroups and namespaces on one bridge, so that
// both get the same share of the machine; socklb is attached to the first only. dnsperf (Debian's)
// runs for a bounded time per round, in three placements:
//   direct    the second sandbox -> the pod's address: no socklb at all
//   missed    the first sandbox -> the pod's address: socklb's hooks run and find no Service
//   clusterip the first sandbox -> the ClusterIP: dnsperf sends from unconnected sockets
//             (sendto), so the sendmsg hook translates every query, keeping each socket on its
//             backend; it reads replies without asking for their source (recvfrom(..., NULL)),
//             so the recvmsg hook has nothing to restore
// The placements take turns within each round, in a rotating order. Queries per second are
// compared two ways: the ratio of the medians, and the median of each round's own ratio (its runs
// are seconds apart, so a neighbour's load on a shared machine weighs on both alike). Two figures
// that a busy machine hardly moves come with them: dnsperf's own CPU time per query (user +
// system, where the hooks run), and the kernel's own count of the time socklb's sendmsg4 program
// takes per datagram (BPF run-time statistics, enabled for the run only), which is what the
// translation adds to each query. Prints figures; asserts nothing. Needs root, like the
// integration tests.
//
//   node build/bench/dns/dnsperf.js [--rounds 9] [--seconds 3] [--clients 4]

import { execFileSync } from 'node:child_process';
import { closeSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import koffi from 'koffi';
import { Lab, type Sandbox } from '../../test/lab/lab.js';
import {
  endpointSlice,
  manifestDirectory,
  service,
  socklb,
  startAgent,
  testPinDirectory,
  waitForServices,
  writeManifest,
  type RunningAgent,
} from '../../test/integration/support.js';
import { startDnsmasq } from '../../test/integration/udp-support.js';

const CLUSTER_IP = '10.96.0.10';
const NAME = 'name.test';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '9' },
    seconds: { type: 'string', default: '3' },
    clients: { type: 'string', default: '4' },
  },
});
const rounds = positive('--rounds', values.rounds);
const seconds = positive('--seconds', values.seconds);
const clients = positive('--clients', values.clients);

interface Placement {
  name: 'direct' | 'missed' | 'clusterip';
  sandbox: Sandbox;
  server: string;
}

interface DnsperfResult {
  qps: number;
  lost: number;
  completed: number;
  /** dnsperf's user + system CPU time per completed query. */
  cpuUsPerQuery: number;
  /** The sendmsg4 program's average run time over the run, in ns; undefined when it did not run. */
  hookNs?: number;
}

/** What the kernel counted for one program: runs and their total time (BPF_STATS_RUN_TIME). */
interface ProgramStats {
  runs: number;
  ns: number;
}

if (process.getuid?.() !== 0) {
  process.stderr.write('bench-dns needs root (network namespaces, cgroups, BPF)\n');
  process.exit(1);
}

const lab = new Lab();
const pinDir = testPinDirectory('bench-dns');
const scratch = await mkdtemp(join(tmpdir(), 'socklb-bench-dns-'));
const manifests = await manifestDirectory();
let agent: RunningAgent | undefined;
let statsFd = -1;
try {
  await Lab.sweepStale();
  await socklb(['cleanup', '--pin-dir', pinDir]);
  const [pod, sandbox, plain] = await Promise.all([lab.addPod('dns'), lab.addSandbox('client'), lab.addSandbox('plain')]);
  await startDnsmasq(lab, pod, NAME, { ipv4: '192.0.2.1', ipv6: '2001:db8::1' });
  const ports = [{ name: 'dns', port: 53, protocol: 'UDP' as const }];
  await writeManifest(join(manifests, 'dns.yaml'), [
    service('kube-dns', [CLUSTER_IP], ports),
    endpointSlice('kube-dns-1', 'kube-dns', 'IPv4', ports, [{ ip: pod.ipv4 }]),
  ]);
  agent = await startAgent([
    '--manifests',
    manifests,
    '--cgroup',
    sandbox.cgroupPath,
    '--pin-dir',
    pinDir,
    '--metrics-bind-address',
    '',
    '--healthz-bind-address',
    '',
  ]);
  await waitForServices(pinDir, (frontends) => frontends.some((f) => f.frontend === `${CLUSTER_IP}:53/UDP` && f.backends.length === 1));
  const queries = join(scratch, 'queries');
  await writeFile(queries, `${NAME} A\n`);
  // Run-time statistics of every BPF program, for as long as this descriptor is open (BPF_STATS_RUN_TIME).
  statsFd = koffi.load('libbpf.so.1').func('int bpf_enable_stats(int type)')(0) as number;
  if (statsFd < 0) process.stdout.write(`(BPF run-time statistics unavailable: ${statsFd})\n`);
  const sendmsg4 = await programId(pinDir, 'socklb_sendmsg4');

  const placements: Placement[] = [
    { name: 'direct', sandbox: plain, server: pod.ipv4 },
    { name: 'missed', sandbox, server: pod.ipv4 },
    { name: 'clusterip', sandbox, server: CLUSTER_IP },
  ];
  const results = new Map<Placement['name'], DnsperfResult[]>(placements.map((placement) => [placement.name, []]));
  process.stdout.write(`dnsperf: ${rounds} rounds of ${seconds} s per placement, ${clients} clients, one dnsmasq backend\n`);
  for (let round = 0; round < rounds; round++) {
    // A rotating order, so that no placement always runs first (or right after another).
    const order = placements.map((_, index) => placements[(index + round) % placements.length]!);
    for (const placement of order) {
      const before = programStats(sendmsg4);
      const result = await dnsperf(lab, placement, queries);
      const after = programStats(sendmsg4);
      if (after.runs > before.runs) result.hookNs = (after.ns - before.ns) / (after.runs - before.runs);
      results.get(placement.name)!.push(result);
      const hook = result.hookNs === undefined ? '' : `  sendmsg4 ${result.hookNs.toFixed(0)} ns/datagram`;
      process.stdout.write(
        `  round ${round + 1} ${placement.name.padEnd(9)} ${result.qps.toFixed(0).padStart(8)} q/s  ` +
          `${result.cpuUsPerQuery.toFixed(2)} us CPU/query${hook}  lost ${result.lost}\n`,
      );
    }
  }

  const medians = new Map([...results].map(([name, runs]) => [name, median(runs.map((run) => run.qps))]));
  const cpu = new Map([...results].map(([name, runs]) => [name, median(runs.map((run) => run.cpuUsPerQuery))]));
  const direct = medians.get('direct')!;
  process.stdout.write('\nmedians: queries per second (ratio to direct), dnsperf CPU per query (ratio to direct)\n');
  for (const placement of placements) {
    const qps = medians.get(placement.name)!;
    const cpuPerQuery = cpu.get(placement.name)!;
    const lost = results.get(placement.name)!.reduce((sum, run) => sum + run.lost, 0);
    process.stdout.write(
      `  ${placement.name.padEnd(9)} ${qps.toFixed(0).padStart(8)} q/s (${(qps / direct).toFixed(3)})  ` +
        `${cpuPerQuery.toFixed(2)} us (${(cpuPerQuery / cpu.get('direct')!).toFixed(3)})  lost ${lost}\n`,
    );
  }
  for (const name of ['missed', 'clusterip'] as const) {
    const hookNs = results.get(name)!.flatMap((run) => (run.hookNs === undefined ? [] : [run.hookNs]));
    if (hookNs.length === 0) continue;
    const share = median(hookNs) / 1000 / cpu.get(name)!;
    process.stdout.write(
      `  ${name}: socklb's sendmsg4 takes ${median(hookNs).toFixed(0)} ns per datagram (median), ` +
        `${(share * 100).toFixed(2)}% of dnsperf's CPU per query\n`,
    );
  }
  const roundRatios = results.get('clusterip')!.map((run, round) => run.qps / results.get('direct')![round]!.qps);
  process.stdout.write(
    `\nClusterIP / direct: ${(medians.get('clusterip')! / direct).toFixed(3)} (ratio of medians), ` +
      `${median(roundRatios).toFixed(3)} (median of the rounds' ratios: ${roundRatios.map((ratio) => ratio.toFixed(2)).join(' ')}); ` +
      `target >= 0.97\n`,
  );
} finally {
  if (statsFd >= 0) closeSync(statsFd);
  await agent?.stop();
  await socklb(['cleanup', '--pin-dir', pinDir]);
  await lab.close();
  await rm(scratch, { recursive: true, force: true });
  await rm(manifests, { recursive: true, force: true });
}

/** The id of the program a pinned cgroup link of this datapath runs. */
async function programId(pinDir: string, program: string): Promise<number> {
  const [cgroup] = await readdir(join(pinDir, 'links'));
  const link = JSON.parse(
    execFileSync('bpftool', ['-j', 'link', 'show', 'pinned', join(pinDir, 'links', cgroup ?? '', program)], { encoding: 'utf8' }),
  ) as { prog_id: number };
  return link.prog_id;
}

function programStats(id: number): ProgramStats {
  const info = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(id)], { encoding: 'utf8' })) as {
    run_cnt?: number;
    run_time_ns?: number;
  };
  return { runs: info.run_cnt ?? 0, ns: info.run_time_ns ?? 0 };
}

/** One bounded dnsperf run (-l seconds) in the placement's sandbox (its cgroup and namespace). */
async function dnsperf(lab: Lab, placement: Placement, queries: string): Promise<DnsperfResult> {
  const args = ['-s', placement.server, '-p', '53', '-d', queries, '-l', String(seconds), '-c', String(clients), '-q', '200', '-t', '2'];
  // bash's time reports the CPU dnsperf used, the hooks' share included (they run in its system calls).
  const argv = ['bash', '-c', 'TIMEFORMAT="cpu %U %S"; time dnsperf "$@"', 'dnsperf', ...args];
  const { stdout, stderr } = await lab.exec(placement.sandbox, argv, { timeoutMs: (seconds + 30) * 1000 });
  const qps = /Queries per second:\s+([\d.]+)/.exec(stdout)?.[1];
  const completed = /Queries completed:\s+(\d+)/.exec(stdout)?.[1];
  const lost = /Queries lost:\s+(\d+)/.exec(stdout)?.[1];
  const time = /^cpu ([\d.]+) ([\d.]+)$/m.exec(stderr);
  if (qps === undefined || completed === undefined || lost === undefined || !time)
    throw new Error(`dnsperf printed no summary: ${stdout}${stderr}`);
  const cpuUsPerQuery = ((Number(time[1]) + Number(time[2])) * 1e6) / Number(completed);
  return { qps: Number(qps), completed: Number(completed), lost: Number(lost), cpuUsPerQuery };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function positive(flag: string, text: string | undefined): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} ${JSON.stringify(text)}: must be a positive integer`);
  return value;
}
