// The benchmark's settings: the full run by default, --quick for a CI smoke test, flags for the rest.
import { Command, InvalidArgumentError, Option } from 'commander';
import type { DatapathName } from './datapaths/datapath.js';
import type { IptablesBackend } from './datapaths/iptables.js';
import { WORKLOAD_NAMES, type WorkloadName } from './workloads.js';

export const DATAPATH_NAMES: readonly DatapathName[] = ['direct', 'socklb', 'iptables', 'nftables'];

export interface BenchOptions {
  quick: boolean;
  /** Numbers of Services, in the order run. */
  scales: number[];
  /** Endpoints of every Service, and backend pods running nginx. */
  endpointsPerService: number;
  /** In interleaving order; direct must be among them (every ratio is to it). */
  datapaths: DatapathName[];
  workloads: WorkloadName[];
  /** Interleaved rounds per workload; each round runs every datapath once. */
  rounds: Record<WorkloadName, number>;
  /** Duration of one run. */
  seconds: Record<WorkloadName, number>;
  /** Endpoint changes measured per datapath and scale... */
  endpointChanges: number;
  /** ...unless this many seconds of them have passed (kube-proxy's syncs take seconds at scale). */
  endpointChangeBudgetSeconds: number;
  iptablesBackend: IptablesBackend;
  /** Above this many Services, nftables is not measured: loading its ruleset takes too long (see datapaths/nftables.ts). */
  nftMaxServices: number;
  /** Where the results go; undefined: bench/results/<timestamp>/, copied to bench/results/latest/ for a full run. */
  output: string | undefined;
  /** Where `perf record` puts a recording of every measured run, and its report (perf.ts); undefined: none. */
  perfDirectory: string | undefined;
}

const FULL: Omit<BenchOptions, 'output' | 'perfDirectory'> = {
  quick: false,
  scales: [10, 1000, 5000, 10000, 50000],
  endpointsPerService: 2,
  datapaths: [...DATAPATH_NAMES],
  workloads: [...WORKLOAD_NAMES],
  // The headline workload: 8 rounds put each of four datapaths twice in every place of the rotating order.
  rounds: { short: 8, keepalive: 3, connect: 3, udp: 3 },
  seconds: { short: 5, keepalive: 5, connect: 3, udp: 3 },
  endpointChanges: 50,
  endpointChangeBudgetSeconds: 60,
  iptablesBackend: 'legacy',
  nftMaxServices: 10000,
};

/** Under two minutes: a smoke test of the harness, not figures to quote. */
const QUICK: Omit<BenchOptions, 'output' | 'perfDirectory'> = {
  ...FULL,
  quick: true,
  scales: [10, 1000],
  rounds: { short: 1, keepalive: 1, connect: 1, udp: 1 },
  seconds: { short: 1, keepalive: 1, connect: 1, udp: 1 },
  endpointChanges: 5,
  endpointChangeBudgetSeconds: 10,
};

export function parseOptions(argv: string[]): BenchOptions {
  const program = new Command('socklb bench')
    .description(
      'socklb against direct, kube-proxy iptables and nftables datapaths (see docs/benchmarks.md); also `npm run bench --`, `make bench`',
    )
    .option('--quick', 'a smoke test under two minutes: 10 and 1000 Services, one short round each')
    .option('--scales <list>', 'numbers of Services, comma-separated (each at least 3)', list(positiveInteger))
    .option('--endpoints <n>', 'endpoints per Service (and backend pods)', positiveInteger)
    .option('--datapaths <list>', `comma-separated, from ${DATAPATH_NAMES.join(',')} (direct is required)`, list(choice(DATAPATH_NAMES)))
    .option('--workloads <list>', `comma-separated, from ${WORKLOAD_NAMES.join(',')}`, list(choice(WORKLOAD_NAMES)))
    .option('--control-plane-only', 'programming, endpoint changes and footprint only: no traffic rounds')
    .option('--rounds <n>', 'interleaved rounds of every workload', positiveInteger)
    .option('--seconds <n>', 'duration of every run', positiveInteger)
    .option('--endpoint-changes <n>', 'endpoint changes measured per datapath and scale', positiveInteger)
    .addOption(new Option('--iptables-backend <backend>', 'iptables flavour of the iptables datapath').choices(['legacy', 'nft']))
    .option('--nft-max-services <n>', 'measure nftables up to this many Services (its loading is quadratic)', positiveInteger)
    .option('--output <dir>', 'results directory (default: bench/results/<timestamp>/)')
    .option(
      '--perf <dir>',
      'record every measured run with `perf record --all-cpus` into <dir>, ' +
        "and report each symbol's samples per 1000 operations against direct",
    )
    .showHelpAfterError()
    .parse(argv, { from: 'user' });
  const flags = program.opts<{
    quick?: boolean;
    scales?: number[];
    endpoints?: number;
    datapaths?: DatapathName[];
    workloads?: WorkloadName[];
    controlPlaneOnly?: boolean;
    rounds?: number;
    seconds?: number;
    endpointChanges?: number;
    iptablesBackend?: IptablesBackend;
    nftMaxServices?: number;
    output?: string;
    perf?: string;
  }>();
  const base = flags.quick ? QUICK : FULL;
  const perWorkload = (value: number | undefined, fallback: Record<WorkloadName, number>) =>
    value === undefined ? fallback : (Object.fromEntries(WORKLOAD_NAMES.map((name) => [name, value])) as Record<WorkloadName, number>);
  const options: BenchOptions = {
    ...base,
    scales: flags.scales ?? base.scales,
    endpointsPerService: flags.endpoints ?? base.endpointsPerService,
    datapaths: flags.datapaths ?? base.datapaths,
    workloads: flags.controlPlaneOnly ? [] : (flags.workloads ?? base.workloads),
    rounds: perWorkload(flags.rounds, base.rounds),
    seconds: perWorkload(flags.seconds, base.seconds),
    endpointChanges: flags.endpointChanges ?? base.endpointChanges,
    iptablesBackend: flags.iptablesBackend ?? base.iptablesBackend,
    nftMaxServices: flags.nftMaxServices ?? base.nftMaxServices,
    output: flags.output,
    perfDirectory: flags.perf,
  };
  if (flags.controlPlaneOnly && flags.workloads) program.error('--control-plane-only runs no workloads: drop --workloads');
  if (flags.controlPlaneOnly && flags.perf !== undefined)
    program.error('--perf records the traffic runs, and --control-plane-only runs none: drop one');
  if (!options.datapaths.includes('direct')) program.error('--datapaths: direct is required, every ratio is to it');
  if (options.scales.some((scale) => scale < 3)) program.error('--scales: each at least 3 (the three measured Services)');
  return options;
}

function positiveInteger(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(`${JSON.stringify(text)} is not a positive integer`);
  return value;
}

function choice<T extends string>(allowed: readonly T[]): (text: string) => T {
  return (text) => {
    if (!(allowed as readonly string[]).includes(text))
      throw new InvalidArgumentError(`${JSON.stringify(text)} is not one of ${allowed.join(', ')}`);
    return text as T;
  };
}

function list<T>(parse: (text: string) => T): (text: string) => T[] {
  return (text) => [...new Set(text.split(',').map((item) => parse(item.trim())))];
}
