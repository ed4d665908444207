#!/usr/bin/env node
// The kernel's cost per run of socklb's connect4 and sendmsg4 programs, two builds side by side
// (docs/benchmarks.md, "BPF cost per connect"). Each build's agent serves a sandbox of its own, both
// read the same manifests, and rounds alternate between them (old first in even rounds, new first in
// odd ones): the same client makes the same short TCP connections through ClusterIPs, then the same
// DNS queries on one unconnected UDP socket, and the kernel's BPF run-time statistics
// (kernel.bpf_stats_enabled) give each program's runs and nanoseconds around every client run.
// Also each object's verifier figures and load time. Root; the integration tests' lock, as they share
// the kernel:
//
//   flock /tmp/socklb-root-tests.lock node build/bench/connect-cost.js --old-build DIR [--new-build DIR]
//     [--scales 10,5000] [--rounds 30] [--connects 1000] [--queries 1000] [--concurrency 16] [--trace-new] [--output DIR]
//
// A build is a `make build` output directory (DIR/src/cli/main.js, DIR/bpf/socklb.bpf.o); --new-build
// defaults to this one. With --trace-new, a `socklb trace` of the new build's agent runs through
// every round (its output discarded): the programs then write an event per call.
import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { cgroupLinkDirectory } from '../src/pins/layout.js';
import {
  endpointSlice,
  manifestDirectory,
  missingPrivileges,
  service,
  socklb,
  startAgent,
  testPinDirectory,
  writeManifest,
  type RunningAgent,
} from '../test/integration/support.js';
import { runSocketClient, startDnsmasq } from '../test/integration/udp-support.js';
import { findCgroup2Root } from '../test/lab/cgroup.js';
import type { StormReport, StormService } from '../test/lab/connect-storm.js';
import { Lab, type Pod, type Sandbox } from '../test/lab/lab.js';
import { waitForLine } from '../test/lab/processes.js';
import { describeMachine } from './machine.js';
import { median, percentile } from './stats.js';
import { Teardown } from './teardown.js';

const execFileAsync = promisify(execFile);
const CONNECT_STORM = fileURLToPath(new URL('../test/lab/connect-storm.js', import.meta.url));
const PORT_SERVER = fileURLToPath(new URL('../test/lab/port-server.js', import.meta.url));
const THIS_BUILD = fileURLToPath(new URL('..', import.meta.url));
const BPF_STATS = '/proc/sys/kernel/bpf_stats_enabled';

/** Service i answers TCP 80 from port FIRST_TCP_PORT + i of both pods, so a reply names its Service. */
const FIRST_TCP_PORT = 20000;
/** Every Service's UDP 53 goes to the pods' dnsmasq, which answers DNS_NAME with DNS_ANSWERS. */
const DNS_NAME = 'cost.test';
const DNS_ANSWERS = { ipv4: '192.0.2.1', ipv6: '2001:db8::1' };
/** The Services the TCP client picks from at random: all of them, or this many spread over the list. */
const SAMPLED_SERVICES = 50;
/** Rounds of `bpftool prog loadall` per object for its load time. */
const LOAD_REPEATS = 5;
const AGENT_START_TIMEOUT_MS = 120_000;

const BUILD_LABELS = ['old', 'new'] as const;
type BuildLabel = (typeof BUILD_LABELS)[number];
const WORKLOADS = { tcp: 'socklb_connect4', udp: 'socklb_sendmsg4' } as const;
type Workload = keyof typeof WORKLOADS;

interface Build {
  label: BuildLabel;
  directory: string;
  cli: string;
  object: string;
}

/** One client run: the program's runs and run time over it, as the kernel counted them. */
interface Sample {
  round: number;
  runs: number;
  nanoseconds: number;
}

interface VerifierFigures {
  processedInstructions: number;
  totalStates: number;
  peakStates: number;
}

interface ScaleResult {
  services: number;
  frontends: number;
  samples: Record<Workload, Record<BuildLabel, Sample[]>>;
}

const USAGE =
  'usage: connect-cost --old-build DIR [--new-build DIR] [--scales 10,5000] [--rounds 30] [--connects 1000] [--queries 1000] [--concurrency 16] [--trace-new] [--output DIR]';

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      'old-build': { type: 'string' },
      'new-build': { type: 'string', default: THIS_BUILD },
      scales: { type: 'string', default: '10,5000' },
      rounds: { type: 'string', default: '30' },
      connects: { type: 'string', default: '1000' },
      queries: { type: 'string', default: '1000' },
      concurrency: { type: 'string', default: '16' },
      'trace-new': { type: 'boolean', default: false },
      output: { type: 'string' },
    },
  });
  if (values['old-build'] === undefined) throw new Error('--old-build DIR is required: the build to compare with (a `make build` output)');
  return {
    builds: { old: build('old', values['old-build']), new: build('new', values['new-build']) } satisfies Record<BuildLabel, Build>,
    scales: values.scales.split(',').map((text) => positive('--scales', text)),
    rounds: positive('--rounds', values.rounds),
    connects: positive('--connects', values.connects),
    queries: positive('--queries', values.queries),
    concurrency: positive('--concurrency', values.concurrency),
    traceNew: values['trace-new'],
    output: values.output,
  };
}

function build(label: BuildLabel, directory: string): Build {
  const absolute = path.resolve(directory);
  return { label, directory: absolute, cli: path.join(absolute, 'src/cli/main.js'), object: path.join(absolute, 'bpf/socklb.bpf.o') };
}

function positive(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} ${JSON.stringify(text)}: must be a positive integer`);
  return value;
}

function optionsOrUsage(argv: string[]): ReturnType<typeof parseOptions> {
  try {
    return parseOptions(argv);
  } catch (error) {
    process.stderr.write(`connect-cost: ${error instanceof Error ? error.message : String(error)}\n${USAGE}\n`);
    process.exit(2);
  }
}

const settings = optionsOrUsage(process.argv.slice(2));
const { builds } = settings;

const started = performance.now();

function elapsedSeconds(): number {
  return Math.round((performance.now() - started) / 1000);
}

function log(line: string): void {
  process.stdout.write(`[${elapsedSeconds()} s] ${line}\n`);
}

/** The kernel's counters of one program; bpftool leaves them out while they are zero. */
async function programStats(id: number): Promise<{ runs: number; nanoseconds: number }> {
  const { stdout } = await execFileAsync('bpftool', ['-j', 'prog', 'show', 'id', String(id)]);
  const info = JSON.parse(stdout) as { run_cnt?: number; run_time_ns?: number };
  return { runs: info.run_cnt ?? 0, nanoseconds: info.run_time_ns ?? 0 };
}

/** The id of the program an agent attached to `cgroup`, read through the link it pinned. */
async function attachedProgramId(pinDir: string, cgroup: string, program: string): Promise<number> {
  const link = path.join(cgroupLinkDirectory(pinDir, await findCgroup2Root(), cgroup), program);
  const { stdout } = await execFileAsync('bpftool', ['-j', 'link', 'show', 'pinned', link]);
  const id = (JSON.parse(stdout) as { prog_id?: number }).prog_id;
  if (id === undefined) throw new Error(`bpftool link show pinned ${link}: no prog_id`);
  return id;
}

/** Runs `client` and reads what `programId` cost over it; the program must have run at least `calls` times. */
async function measure(programId: number, round: number, calls: number, client: () => Promise<void>): Promise<Sample> {
  const before = await programStats(programId);
  await client();
  const after = await programStats(programId);
  const sample = { round, runs: after.runs - before.runs, nanoseconds: after.nanoseconds - before.nanoseconds };
  if (sample.runs < calls)
    throw new Error(`program ${programId} ran ${sample.runs} times for ${calls} calls: not the sandbox's program, or statistics off`);
  return sample;
}

/** Each program's verifier figures, from the log `bpftool -d prog loadall` prints (hundreds of thousands of lines). */
async function verifierFigures(object: string, pinDir: string): Promise<Record<string, VerifierFigures>> {
  const figures: Record<string, VerifierFigures> = {};
  const child = spawn('bpftool', ['-d', 'prog', 'loadall', object, pinDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  let program: string | undefined;
  try {
    for await (const line of createInterface({ input: child.stderr })) {
      program = /^libbpf: prog '(\w+)': -- BEGIN PROG LOAD LOG --/.exec(line)?.[1] ?? program;
      const processed = /^processed (\d+) insns .* total_states (\d+) peak_states (\d+)/.exec(line);
      if (processed && program !== undefined) {
        figures[program] = {
          processedInstructions: Number(processed[1]),
          totalStates: Number(processed[2]),
          peakStates: Number(processed[3]),
        };
      }
    }
    const code = await exited;
    if (code !== 0) throw new Error(`bpftool -d prog loadall ${object}: exited with ${code}`);
    const missing = Object.values(WORKLOADS).filter((name) => figures[name] === undefined);
    if (missing.length > 0) throw new Error(`bpftool -d prog loadall ${object}: no verifier figures for ${missing.join(', ')}`);
    return figures;
  } finally {
    await rm(pinDir, { recursive: true, force: true });
  }
}

/** Wall time of `bpftool prog loadall` (no verifier log), every program of the object and its maps. */
async function loadMilliseconds(object: string, pinDir: string): Promise<number> {
  const started = performance.now();
  try {
    await execFileAsync('bpftool', ['prog', 'loadall', object, pinDir]);
    return performance.now() - started;
  } finally {
    await rm(pinDir, { recursive: true, force: true });
  }
}

function clusterIP(index: number): string {
  const address = ((10 << 24) | (96 << 16)) + 10 + index;
  return [24, 16, 8, 0].map((shift) => (address >>> shift) & 255).join('.');
}

/** `count` Services, two endpoints each (one per pod), TCP 80 and UDP 53; 1000 to a file, as bench/manifests.ts. */
async function writeCatalog(directory: string, count: number, pods: readonly Pod[]): Promise<void> {
  const documents = Array.from({ length: count }, (_, index) => {
    const name = `cost-${String(index).padStart(6, '0')}`;
    const ports = [
      { name: 'http', port: 80, protocol: 'TCP' as const, targetPort: FIRST_TCP_PORT + index },
      { name: 'dns', port: 53, protocol: 'UDP' as const, targetPort: 53 },
    ];
    const slicePorts = ports.map((port) => ({ name: port.name, port: port.targetPort, protocol: port.protocol }));
    return [
      service(name, [clusterIP(index)], ports),
      endpointSlice(
        `${name}-1`,
        name,
        'IPv4',
        slicePorts,
        pods.map((pod) => ({ ip: pod.ipv4 })),
      ),
    ];
  });
  for (let first = 0; first < count; first += 1000) {
    await writeManifest(path.join(directory, `services-${first / 1000}.json`), documents.slice(first, first + 1000).flat());
  }
}

/** Starts an agent of `build` on `sandbox` and waits for its first sync of every frontend. */
async function startBuildAgent(
  build: Build,
  sandbox: Sandbox,
  manifests: string,
  pinDir: string,
  frontends: number,
): Promise<RunningAgent> {
  const agent = await startAgent(
    ['--manifests', manifests, '--cgroup', sandbox.cgroupPath, '--pin-dir', pinDir, '--bpf-object', build.object],
    {
      entry: build.cli,
      timeoutMs: AGENT_START_TIMEOUT_MS,
    },
  );
  const served = agent.logs.find((line) => line.msg === 'serving')?.frontends;
  if (served !== frontends) {
    await agent.stop();
    throw new Error(`${build.label} agent serves ${String(served)} frontends, expected ${frontends}`);
  }
  return agent;
}

/** `socklb trace` of `agent` until `steps` run, its events discarded; resolves once the agent traces. */
async function startTrace(build: Build, agent: RunningAgent, steps: Teardown): Promise<void> {
  const tracer = spawn(process.execPath, [build.cli, 'trace', '--control-socket', agent.controlSocket], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => tracer.once('close', () => resolve()));
  steps.add('new trace', async () => {
    tracer.kill('SIGINT');
    await exited;
  });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    tracer.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('tracing ')) resolve();
    });
    void exited.then(() => reject(new Error(`socklb trace exited: ${stderr.trim()}`)));
  });
}

/** One scale: a lab, both agents, the interleaved rounds; what it makes, `steps` undoes. */
async function runScale(services: number, steps: Teardown): Promise<ScaleResult> {
  const lab = new Lab();
  steps.add('lab', () => lab.close());
  const pods = await Promise.all([lab.addPod('a'), lab.addPod('b')]);
  const sandboxes = { old: await lab.addSandbox('old'), new: await lab.addSandbox('new') };
  for (const pod of pods) {
    const server = lab.spawn(pod, [process.execPath, PORT_SERVER, '--ports', `${FIRST_TCP_PORT}-${FIRST_TCP_PORT + services - 1}`], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    await waitForLine(server, 'ready', 60_000);
    await startDnsmasq(lab, pod, DNS_NAME, DNS_ANSWERS);
  }
  const manifests = await manifestDirectory();
  steps.add('manifests', () => rm(manifests, { recursive: true, force: true }));
  await writeCatalog(manifests, services, pods);

  const programs = {} as Record<BuildLabel, Record<Workload, number>>;
  for (const label of BUILD_LABELS) {
    const pinDir = testPinDirectory(`connect-cost-${label}`);
    steps.add(`${label} pins`, async () => {
      const result = await socklb(['cleanup', '--pin-dir', pinDir], builds[label].cli);
      if (result.code !== 0) throw new Error(result.stderr.trim());
    });
    const agent = await startBuildAgent(builds[label], sandboxes[label], manifests, pinDir, services * 2);
    steps.add(`${label} agent`, () => agent.stop());
    if (label === 'new' && settings.traceNew) await startTrace(builds.new, agent, steps);
    const sandbox = sandboxes[label].cgroupPath;
    programs[label] = {
      tcp: await attachedProgramId(pinDir, sandbox, WORKLOADS.tcp),
      udp: await attachedProgramId(pinDir, sandbox, WORKLOADS.udp),
    };
  }

  const sampled = Array.from({ length: Math.min(services, SAMPLED_SERVICES) }, (_, k) =>
    Math.floor((k * services) / Math.min(services, SAMPLED_SERVICES)),
  );
  const stormServices: StormService[] = sampled.map((index) => ({
    address: clusterIP(index),
    port: 80,
    backendPorts: [FIRST_TCP_PORT + index],
  }));
  const clients: Record<Workload, { calls: number; run: (sandbox: Sandbox) => Promise<void> }> = {
    tcp: {
      calls: settings.connects,
      run: async (sandbox) => {
        const argv = [
          '--services',
          JSON.stringify(stormServices),
          '--connects',
          String(settings.connects),
          '--concurrency',
          String(settings.concurrency),
        ];
        const report = JSON.parse((await lab.exec(sandbox, [process.execPath, CONNECT_STORM, ...argv])).stdout) as StormReport;
        if (report.answered !== settings.connects) throw new Error(`connects from ${sandbox.name}: ${JSON.stringify(report)}`);
      },
    },
    udp: {
      calls: settings.queries,
      run: async (sandbox) => {
        const argv = [
          'dns',
          '--targets',
          clusterIP(Math.floor(services / 2)),
          '--port',
          '53',
          '--name',
          DNS_NAME,
          '--count',
          String(settings.queries),
        ];
        const report = await runSocketClient<{ replies: { answer: string | null }[]; errors: Record<string, number> }>(lab, sandbox, argv);
        const answered = report.replies.filter((reply) => reply.answer === DNS_ANSWERS.ipv4).length;
        if (answered !== settings.queries)
          throw new Error(
            `DNS queries from ${sandbox.name}: ${answered} of ${settings.queries} answered, errors ${JSON.stringify(report.errors)}`,
          );
      },
    },
  };

  const samples = { tcp: { old: [], new: [] }, udp: { old: [], new: [] } } as ScaleResult['samples'];
  // Round 0 warms both paths up (and checks them) and is not kept.
  for (let round = 0; round <= settings.rounds; round++) {
    for (const workload of ['tcp', 'udp'] as const) {
      for (const label of buildOrder(round)) {
        const { calls, run } = clients[workload];
        const sample = await measure(programs[label][workload], round, calls, () => run(sandboxes[label]));
        if (round > 0) samples[workload][label].push(sample);
      }
    }
    if (round > 0) log(`  ${services} Services, round ${round}: ${roundFigures(samples)}`);
  }
  return { services, frontends: services * 2, samples };
}

/** Old first in even rounds, new first in odd ones, so that neither always runs after the other. */
function buildOrder(round: number): BuildLabel[] {
  return round % 2 === 0 ? [...BUILD_LABELS] : [...BUILD_LABELS].reverse();
}

function perRun(sample: Sample): number {
  return sample.nanoseconds / sample.runs;
}

/** The latest round's ns per run of each program and build, for the progress log. */
function roundFigures(samples: ScaleResult['samples']): string {
  const workloads = ['tcp', 'udp'] as const;
  return workloads
    .map(
      (workload) =>
        `${WORKLOADS[workload]} ${BUILD_LABELS.map((label) => `${label} ${perRun(samples[workload][label].at(-1)!).toFixed(1)}`).join(', ')} ns`,
    )
    .join('; ');
}

function summarize(result: ScaleResult, workload: Workload) {
  const byBuild = (label: BuildLabel) => {
    const values = result.samples[workload][label].map(perRun);
    return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
  };
  const old = byBuild('old');
  const current = byBuild('new');
  const paired = result.samples[workload].new.map((sample, index) => perRun(sample) / perRun(result.samples[workload].old[index]!));
  return {
    old,
    new: current,
    ratioOfMedians: current.median / old.median,
    pairedRatio: { median: median(paired), p25: percentile(paired, 25), p75: percentile(paired, 75) },
  };
}

/** The 1-minute load average at the start and the end: other work on the machine, which widens the rounds' spread. */
interface Load {
  start: number;
  end: number;
}

function report(
  results: ScaleResult[],
  verifier: Record<BuildLabel, Record<string, VerifierFigures>>,
  loadMs: Record<BuildLabel, number[]>,
  load: Load,
  command: string,
  date: string,
): string {
  const ns = (value: number) => value.toFixed(1);
  const lines = [
    '# BPF cost per run of socklb_connect4 and socklb_sendmsg4: two builds',
    '',
    `${date}, \`${command}\`, ${elapsedSeconds()} s; load average ${load.start.toFixed(2)} at the start, ${load.end.toFixed(2)} at the end.`,
    '',
    `old: ${builds.old.directory}; new: ${builds.new.directory}${settings.traceNew ? ', traced (a `socklb trace` of its agent through every round)' : ''}. ${settings.rounds} rounds per scale after a warm-up round, the builds alternated (new first in odd rounds, old first in even ones);`,
    `per round and build ${settings.connects} TCP connections (connect-storm, concurrency ${settings.concurrency}, Services picked at random among ${SAMPLED_SERVICES} spread over the list)`,
    `and ${settings.queries} DNS queries, one after the other on one unconnected UDP socket (socket-client dns), to one Service's port 53 (dnsmasq in both pods).`,
    "ns per run = the program's run_time_ns delta / run_cnt delta over the client run; medians over rounds;",
    "new/old per round: each round's two runs of a program, median (25th-75th percentile) over rounds.",
    '',
    '| Services | program | old ns/run, median (min-max) | new ns/run, median (min-max) | new/old, medians | new/old per round |',
    '|---:|---|---:|---:|---:|---:|',
  ];
  for (const result of results) {
    for (const workload of ['tcp', 'udp'] as const) {
      const summary = summarize(result, workload);
      const cell = (figures: { median: number; min: number; max: number }) =>
        `${ns(figures.median)} (${ns(figures.min)}-${ns(figures.max)})`;
      lines.push(
        `| ${result.services} | ${WORKLOADS[workload]} | ${cell(summary.old)} | ${cell(summary.new)} | ${summary.ratioOfMedians.toFixed(2)} | ${summary.pairedRatio.median.toFixed(2)} (${summary.pairedRatio.p25.toFixed(2)}-${summary.pairedRatio.p75.toFixed(2)}) |`,
      );
    }
  }
  lines.push('', '| program | old processed insns (total/peak states) | new processed insns (total/peak states) |', '|---|---:|---:|');
  for (const program of Object.values(WORKLOADS)) {
    const cell = (figures: VerifierFigures) => `${figures.processedInstructions} (${figures.totalStates}/${figures.peakStates})`;
    lines.push(`| ${program} | ${cell(verifier.old[program]!)} | ${cell(verifier.new[program]!)} |`);
  }
  const loads = (label: BuildLabel) =>
    `${median(loadMs[label]).toFixed(0)} ms (${loadMs[label].map((value) => value.toFixed(0)).join(', ')})`;
  lines.push(
    '',
    `\`bpftool prog loadall\` of socklb.bpf.o (every program and map), median of ${LOAD_REPEATS}, alternated: old ${loads('old')}, new ${loads('new')}.`,
    '',
  );
  return lines.join('\n');
}

async function main(): Promise<number> {
  if (missingPrivileges() !== undefined) {
    process.stderr.write('connect-cost needs root: network namespaces, cgroups, BPF\n');
    return 1;
  }
  const command = ['node', path.relative(process.cwd(), process.argv[1]!), ...process.argv.slice(2)].join(' ');
  const date = new Date().toISOString();
  const teardown = new Teardown();
  let scaleSteps: Teardown | undefined;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: tearing down`);
      void (async () => {
        await scaleSteps?.run(log);
        await teardown.run(log);
        process.exit(130);
      })();
    });
  }
  try {
    const loadAtStart = os.loadavg()[0]!;
    await Lab.sweepStale();
    const statsBefore = (await readFile(BPF_STATS, 'utf8')).trim();
    await writeFile(BPF_STATS, '1');
    teardown.add('kernel.bpf_stats_enabled', () => writeFile(BPF_STATS, statsBefore));

    const verifier = {} as Record<BuildLabel, Record<string, VerifierFigures>>;
    const loadMs: Record<BuildLabel, number[]> = { old: [], new: [] };
    for (const label of BUILD_LABELS)
      verifier[label] = await verifierFigures(builds[label].object, testPinDirectory(`connect-cost-verifier-${label}`));
    for (let repeat = 0; repeat < LOAD_REPEATS; repeat++) {
      for (const label of buildOrder(repeat)) {
        loadMs[label].push(await loadMilliseconds(builds[label].object, testPinDirectory(`connect-cost-load-${label}`)));
      }
    }
    log(`verifier: ${JSON.stringify(verifier)}; load ms: ${JSON.stringify(loadMs)}`);

    const results: ScaleResult[] = [];
    for (const services of settings.scales) {
      log(`${services} Services: starting both agents`);
      scaleSteps = new Teardown();
      try {
        results.push(await runScale(services, scaleSteps));
      } finally {
        await scaleSteps.run(log);
      }
    }
    const load = { start: loadAtStart, end: os.loadavg()[0]! };
    const text = report(results, verifier, loadMs, load, command, date);
    process.stdout.write(text);
    const { output } = settings;
    if (output !== undefined) {
      await mkdir(output, { recursive: true });
      const machine = await describeMachine();
      await writeFile(
        path.join(output, 'results.json'),
        `${JSON.stringify({ date, command, settings, machine, load, verifier, loadMs, results }, null, 2)}\n`,
      );
      await writeFile(path.join(output, 'README.md'), text);
      log(`written: ${output}/results.json, README.md`);
    }
    return 0;
  } catch (error) {
    log(`FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return 1;
  } finally {
    await teardown.run(log);
  }
}

process.exitCode = await main();
