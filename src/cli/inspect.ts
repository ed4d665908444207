// The inspection commands: `status`, `services`, `backends` and `stats`, all
// reading the live pinned state (and, for `status`, asking the agent at its
// metrics address). Registered on the main command by registerInspectCommands.

import { Command, Option } from 'commander';
import { DEFAULT_METRICS_BIND_ADDRESS, parseBindAddress } from '../agent/http-server.js';
import type { AgentStatusReport } from '../agent/status.js';
import { describeStats } from '../datapath/counters.js';
import { describeBackends, describeFrontends } from '../datapath/dump.js';
import { openPinnedMaps } from '../datapath/kernel-maps.js';
import type { DatapathMaps } from '../datapath/maps.js';
import { DatapathState } from '../datapath/state.js';
import { mapPressure } from '../datapath/map-pressure.js';
import { libbpf } from '../kernel/libbpf.js';
import { checkPrivileges } from '../kernel/system.js';
import { pinnedLinks, pinnedMaps } from '../pins/status.js';
import { SocklbError } from '../errors.js';
import { formatBackendTable, formatFrontendTable, formatStatsTable, formatStatus, type AgentAnswer, type StatusReport } from './tables.js';

type Output = 'table' | 'json' | 'wide';

/**
 * How long `status` waits for the agent. It answers from memory, but only between two pieces of
 * work on its one thread: a first sync of 50000 Services holds it for seconds, a scrape of full
 * maps for most of one. An agent that is down refuses at once, whatever this is.
 */
const AGENT_TIMEOUT_MS = 10_000;

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

function printJson(value: unknown): void {
  print(JSON.stringify(value, null, 2));
}

/** Reads the pinned maps (refusing clearly when there are none), then closes them. */
function withPinnedState<T>(pinDir: string, read: (state: DatapathState, maps: DatapathMaps) => T): T {
  checkPrivileges();
  const maps = openPinnedMaps(pinDir);
  try {
    return read(DatapathState.read(maps), maps);
  } finally {
    maps.close();
  }
}

function services(options: { pinDir: string; output: Output }): void {
  const frontends = withPinnedState(options.pinDir, (state) => describeFrontends(state));
  if (options.output === 'json') printJson(frontends);
  else print(formatFrontendTable(frontends, options.output === 'wide'));
}

function backends(options: { pinDir: string; output: Output }): void {
  const described = withPinnedState(options.pinDir, (state) => describeBackends(state));
  if (options.output === 'json') printJson(described);
  else print(formatBackendTable(described, options.output === 'wide'));
}

function stats(options: { pinDir: string; output: Output }): void {
  const described = withPinnedState(options.pinDir, (state, maps) => describeStats(state, maps.stats));
  if (options.output === 'json') printJson(described);
  else print(formatStatsTable(described));
}

/** Asks the agent's /statusz; an agent that does not answer is not running. */
async function queryAgent(metricsBindAddress: string): Promise<AgentAnswer> {
  const bind = parseBindAddress(metricsBindAddress);
  if (!bind)
    throw new SocklbError(
      'SOCKLB_ERR_USAGE',
      `--metrics-bind-address ${metricsBindAddress}: not an address and port such as ${DEFAULT_METRICS_BIND_ADDRESS}`,
    );
  const host = bind.host.includes(':') ? `[${bind.host}]` : bind.host;
  try {
    const response = await fetch(`http://${host}:${bind.port}/statusz`, { signal: AbortSignal.timeout(AGENT_TIMEOUT_MS) });
    if (!response.ok)
      return {
        running: false,
        reason: `${metricsBindAddress}/statusz answered ${response.status}; is this a socklb agent of this version?`,
      };
    const report = (await response.json()) as Partial<Pick<AgentStatusReport, 'failedAddresses'>> &
      Omit<AgentStatusReport, 'failedAddresses'>;
    // An agent of the version before has no failedAddresses: right after an upgrade, the new CLI asks the old agent.
    return { running: true, ...report, failedAddresses: report.failedAddresses ?? [] };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
    const hung =
      (error as Error).name === 'TimeoutError'
        ? `; no answer within ${AGENT_TIMEOUT_MS / 1000} s: a hung agent, or an address whose packets are dropped?`
        : '';
    return { running: false, reason: `no answer at ${metricsBindAddress} (${cause})${hung}` };
  }
}

async function status(options: { pinDir: string; output: 'table' | 'json'; metricsBindAddress: string }): Promise<void> {
  checkPrivileges();
  const possibleCpus = libbpf.numPossibleCpus();
  const maps = pinnedMaps(options.pinDir).map((map) => {
    const pressure = mapPressure(map, possibleCpus);
    return { ...map, ...(pressure && { pressure }) };
  });
  const report: StatusReport = {
    agent: await queryAgent(options.metricsBindAddress),
    pinDir: options.pinDir,
    attachments: pinnedLinks(options.pinDir),
    maps,
  };
  if (options.output === 'json') printJson(report);
  else print(formatStatus(report));
}

const outputOption = (formats: Output[]) => new Option('-o, --output <format>', 'output format').choices(formats).default('table');

/** Adds the inspection commands; `pinDirOption` is the --pin-dir every command shares. */
export function registerInspectCommands(program: Command, pinDirOption: () => Option): void {
  program
    .command('status')
    .description("print the agent (asked at its metrics address), the attachments and every pinned map's fill, capacity and pressure")
    .addOption(outputOption(['table', 'json']))
    .addOption(pinDirOption())
    .option('--metrics-bind-address <address:port>', 'where the agent serves /metrics and /statusz', DEFAULT_METRICS_BIND_ADDRESS)
    .action(status);
  program
    .command('services')
    .description('print every frontend and its backends, read from the live pinned maps (wide: service id, flags, affinity, slots)')
    .addOption(outputOption(['table', 'json', 'wide']))
    .addOption(pinDirOption())
    .action(services);
  program
    .command('backends')
    .description('print every backend, its id and the frontends whose slots name it, read from the live pinned maps')
    .addOption(outputOption(['table', 'json', 'wide']))
    .addOption(pinDirOption())
    .action(backends);
  program
    .command('stats')
    .description("print each frontend's counters (connects, refusals, datagrams, reverse NAT), summed over CPUs")
    .addOption(outputOption(['table', 'json']))
    .addOption(pinDirOption())
    .action(stats);
}
