// A whole benchmark run: the machine described, the topology built, every scale measured, the
// results written after each scale (a run stopped halfway keeps what it measured).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Lab, type Sandbox } from '../test/lab/lab.js';
import { SERVICE_CIDR } from './catalog.js';
import type { Datapath } from './datapaths/datapath.js';
import { probeIpvs } from './datapaths/ipvs.js';
import { describeMachine } from './machine.js';
import { PerfRecorder } from './perf.js';
import type { BenchOptions } from './options.js';
import type { Progress } from './progress.js';
import { copyToLatest, writeResults } from './report/write.js';
import { RESULTS_FORMAT, type BenchResults } from './results.js';
import { runScale } from './scale.js';
import { buildTopology } from './topology.js';
import { sweepStaleRuns, workdirPrefix, type Teardown } from './teardown.js';
import { WRK_SCRIPT } from '../test/lab/wrk.js';

const execFileAsync = promisify(execFile);

/** What the run executes; `make setup` installs them (the Makefile's DEBIAN_PACKAGES). */
const REQUIRED_TOOLS = [
  'wrk',
  'nginx',
  'iperf3',
  'iptables-legacy-restore',
  'iptables-nft-restore',
  'nft',
  'bpftool',
  'ss',
  'nsenter',
  'sysctl',
];

export interface RunTarget {
  /** Where results.json and the report go. */
  directory: string;
  /** Also copied here at the end (a full run's default). */
  latest: string | undefined;
}

export async function runBenchmark(
  options: BenchOptions,
  target: RunTarget,
  progress: Progress,
  teardown: Teardown,
  signal: AbortSignal,
): Promise<BenchResults> {
  await checkTools();
  const swept = await sweepStaleRuns();
  if (swept.length > 0) progress.log(`removed leftovers of killed runs: ${swept.join(', ')}`);
  if (options.quick)
    progress.log('QUICK MODE: a smoke test of the harness. Its figures are NOT measurements; run the full benchmark for those.');

  const [machine, ipvs] = await Promise.all([describeMachine(), probeIpvs()]);
  progress.log(`machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}`);
  if (!ipvs.available) progress.log(`ipvs: unavailable: ${ipvs.reason}`);

  const perf = options.perfDirectory === undefined ? undefined : await PerfRecorder.open(options.perfDirectory);
  const workdir = await mkdtemp(workdirPrefix());
  teardown.add(`remove ${workdir}`, () => rm(workdir, { recursive: true, force: true }));
  const lab = new Lab();
  teardown.add(`close lab ${lab.prefix}`, () => lab.close());
  const datapaths: Datapath[] = [];
  // Added after the lab's step, so it runs first: the agent stops and its pins go before the namespaces do.
  teardown.add('clear the datapaths', async () => {
    for (const datapath of datapaths) await datapath.clear();
  });
  const wrkScript = path.join(workdir, 'wrk-report.lua');
  await writeFile(wrkScript, WRK_SCRIPT);

  progress.log(
    `building the topology: ${options.endpointsPerService} nginx backends, a client per datapath (${options.datapaths.join(', ')})`,
  );
  const topology = await buildTopology(lab, workdir, options, (datapath) => datapaths.push(datapath));
  for (const datapath of topology.datapaths) await checkServiceRoute(lab, datapath);

  const { output: _output, perfDirectory: _perfDirectory, ...recordedOptions } = options;
  const results: BenchResults = {
    format: RESULTS_FORMAT,
    startedAt: new Date().toISOString(),
    finishedAt: '',
    quick: options.quick,
    ...(perf && { perfRecorded: true }),
    machine,
    options: recordedOptions,
    datapaths: topology.datapaths.map(({ name, description }) => ({ name, description })),
    unavailable: ipvs.available ? [] : [{ name: 'ipvs', reason: ipvs.reason }],
    scales: [],
    samples: [],
  };
  const context = {
    lab,
    wrkScript,
    options,
    datapaths: topology.datapaths,
    backendIPs: topology.backends.map((backend) => backend.ipv4),
    progress,
    onSample: (sample: BenchResults['samples'][number]) => results.samples.push(sample),
    signal,
    perf,
  };
  for (const services of options.scales) {
    results.scales.push(await runScale(context, services));
    results.finishedAt = new Date().toISOString();
    await writeResults(target.directory, results);
    progress.log(`results so far: ${target.directory}`);
  }
  if (target.latest !== undefined) await copyToLatest(target.directory, target.latest);
  if (perf) progress.log(`perf report: ${await perf.writeReport()}`);
  return results;
}

async function checkTools(): Promise<void> {
  const missing: string[] = [];
  for (const tool of REQUIRED_TOOLS) {
    await execFileAsync('sh', ['-c', 'command -v "$1"', 'check', tool]).catch(() => missing.push(tool));
  }
  if (missing.length > 0)
    throw new Error(`missing tools: ${missing.join(', ')}; run \`make setup\` (it installs the Makefile's DEBIAN_PACKAGES)`);
}

/**
 * Only the kube-proxy-shaped datapaths' clients may route the service range (their DNAT needs it):
 * for direct and socklb, a ClusterIP that nothing translates must fail at once (LAB.md).
 */
async function checkServiceRoute(lab: Lab, datapath: Datapath): Promise<void> {
  const mayRoute = datapath.name === 'iptables' || datapath.name === 'nftables';
  const routed = await hasRoute(lab, datapath.client, SERVICE_CIDR.split('/')[0]!);
  if (routed !== mayRoute)
    throw new Error(
      `client of ${datapath.name}: ${routed ? 'routes' : 'does not route'} ${SERVICE_CIDR}, which it must ${mayRoute ? '' : 'not '}do`,
    );
}

async function hasRoute(lab: Lab, client: Sandbox, address: string): Promise<boolean> {
  return lab.exec(client, ['ip', 'route', 'get', address], { inCgroup: false }).then(
    () => true,
    () => false,
  );
}
