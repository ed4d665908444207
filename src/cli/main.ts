#!/usr/bin/env node
// socklb's command line: `run` the agent, inspect the live datapath with
// `sockets` and the commands of inspect.ts, remove it with `cleanup`, measure it with
// `bench`; sandboxes and the OCI hook in ./sandbox.ts.

import { Command, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import type { Server } from 'node:http';
import { Agent } from '../agent/agent.js';
import type { DatapathState } from '../datapath/state.js';
import { DEFAULT_GUEST_VSOCK_PORT } from '../guest/address.js';
import { GuestHub } from '../guest/hub.js';
import { AttachmentKeeper } from '../agent/attachment-keeper.js';
import { BypassKeeper } from '../agent/bypass-keeper.js';
import { BypassWriter, type BypassRule } from '../datapath/bypass.js';
import { ProxyHealth } from '../agent/health.js';
import { DEFAULT_METRICS_BIND_ADDRESS, listeningPort, parseBindAddress, serveRoutes, type Route } from '../agent/http-server.js';
import { optimizeForSizeWhenQuiet } from '../agent/heap-sizing.js';
import { trimAfterCollections } from '../agent/malloc-trim.js';
import { AgentMetrics } from '../agent/metrics.js';
import { MapPressureWatch } from '../agent/map-pressure-watch.js';
import { agentRoutes } from '../agent/routes.js';
import { ServedAttachments } from '../agent/served-attachments.js';
import { AgentStatus } from '../agent/status.js';
import { CgroupPlaces, Tracing } from '../agent/tracing.js';
import { describeSockets } from '../datapath/dump.js';
import { openPinnedSocketMaps, type KernelMap } from '../datapath/kernel-maps.js';
import { LoadedDatapath } from '../datapath/loader.js';
import { checkCounterMemory, DEFAULT_CAPACITIES } from '../datapath/maps.js';
import { SocketIterators } from '../datapath/socket-iterators.js';
import {
  DEFAULT_STUCK_SOCKET_POLICY,
  policyProtocols,
  STUCK_SOCKET_POLICIES,
  StuckSocketDestroyer,
  type StuckSocketPolicy,
} from '../datapath/stuck-sockets.js';
import { libbpf, setLibbpfPrint } from '../kernel/libbpf.js';
import { cgroup2Root } from '../kernel/mounts.js';
import { closeNamespaces, describeDenied, openNamespacesOfCgroups, type DeniedProcesses } from '../kernel/netns.js';
import { checkCgroup, checkPrivileges } from '../kernel/system.js';
import { cleanupPins } from '../pins/cleanup.js';
import { mapHolders } from '../pins/holders.js';
import { attachedCgroups, DEFAULT_PIN_DIRECTORY, sandboxCgroups } from '../pins/layout.js';
import { checkServiceRef } from '../sandbox/registry.js';
import { adoptSandboxes, controlSocketOption, registerSandboxCommands } from './sandbox.js';
import { SocklbError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { canonicalCidr, canonicalIP, parseCidr } from '../model/ip.js';
import type { NodeContext } from '../model/types.js';
import { chooseSource } from '../sources/choose.js';
import { registerInspectCommands } from './inspect.js';
import { registerTraceCommand } from './trace.js';
import { benchAvailable, runBench } from './bench.js';
import { formatSocketTable } from './tables.js';

const DEFAULT_BPF_OBJECT = join(bpfDirectory(), 'socklb.bpf.o');

/**
 * Where the compiled objects are: the nearest bpf/ at or above this module, at most two levels up.
 * One rule for both layouts: build/bpf/ for build/src/cli/main.js, dist/bpf/ for the bundle
 * dist/socklb.js (scripts/bundle.mjs). When none is there, the farthest is named in the error.
 */
function bpfDirectory(): string {
  const candidates = ['bpf', '../bpf', '../../bpf'].map((path) => fileURLToPath(new URL(path, import.meta.url)));
  return candidates.find((directory) => existsSync(join(directory, 'socklb.bpf.o'))) ?? (candidates[candidates.length - 1] as string);
}

interface RunOptions {
  manifests?: string;
  kubeconfig?: string;
  cgroup: string[];
  sandboxesOnly: boolean;
  controlSocket: string;
  pinDir: string;
  bpfObject: string;
  destroyStuckSockets: StuckSocketPolicy;
  logLevel: string;
  nodeName: string;
  nodeZone?: string;
  nodeIp: string[];
  allowedExternalIpCidrs: string[];
  serviceClusterIpRange: string[];
  serviceProxyName?: string;
  metricsBindAddress: string;
  maxFrontends: number;
  maxBackends: number;
  maxSlots: number;
  maxConnections: number;
  /** Bytes; no bound when absent. */
  maxCounterMemory?: number;
  skipCgroup: string[];
  excludeService: string[];
  skipMark?: number;
  skipSameNetns: boolean;
  healthzBindAddress: string;
  /** Milliseconds. */
  syncPeriod: number;
  guestVsockPort: number;
}

// kube-proxy's default: twice its 30 s sync period.
const HEALTHZ_TIMEOUT_MS = 60_000;

function bindAddress(flag: string, text: string): { host: string; port: number } | undefined {
  if (text === '') return undefined;
  const bind = parseBindAddress(text);
  if (!bind)
    throw new SocklbError('SOCKLB_ERR_USAGE', `${flag} ${text}: not an address and port such as 127.0.0.1:10249 (or '' to turn it off)`);
  return bind;
}

/** Serves /metrics (with /statusz) and /healthz, /livez as kube-proxy does; returns what to close on exit. */
async function serveObservability(
  agent: Agent,
  keeper: AttachmentKeeper,
  guests: GuestHub,
  programMaps: MapPressureWatch,
  options: RunOptions,
  logger: Logger,
): Promise<Server[]> {
  const metrics = new AgentMetrics(agent, keeper, guests, programMaps);
  const health = new ProxyHealth(HEALTHZ_TIMEOUT_MS);
  const status = new AgentStatus(agent, keeper);
  agent.onSync((result) => {
    metrics.recordSync(result);
    status.recordSync();
    health.recordSync(result.failed + result.failedAddresses > 0);
  });
  keeper.onRepair((repair) => metrics.recordRepair(repair));
  const routes = agentRoutes(metrics, health, status);
  const servers: Server[] = [];
  const serve = async (flag: string, text: string, served: Record<string, Route>, what: string) => {
    const bind = bindAddress(flag, text);
    if (!bind) return;
    const server = await serveRoutes(bind, served).catch((error: unknown) => {
      const inUse =
        (error as { code?: string }).code === 'EADDRINUSE' ? ' (kube-proxy, or another agent, still running on this node?)' : '';
      throw new SocklbError('SOCKLB_ERR_USAGE', `${flag} ${text}: cannot listen: ${(error as Error).message}${inUse}`, { cause: error });
    });
    servers.push(server);
    logger.info({ address: bind.host, port: listeningPort(server) }, `serving ${what}`);
  };
  await serve('--metrics-bind-address', options.metricsBindAddress, routes.metrics, 'metrics');
  await serve('--healthz-bind-address', options.healthzBindAddress, routes.health, 'health');
  return servers;
}

function nodeContext(options: RunOptions): NodeContext {
  for (const address of options.nodeIp) {
    if (canonicalIP(address) === undefined) throw new SocklbError('SOCKLB_ERR_USAGE', `--node-ip ${address}: not an IP address`);
  }
  for (const cidr of options.allowedExternalIpCidrs) {
    if (parseCidr(cidr) === undefined)
      throw new SocklbError('SOCKLB_ERR_USAGE', `--allowed-external-ip-cidrs ${cidr}: not a CIDR such as 203.0.113.0/24`);
  }
  return {
    name: options.nodeName,
    zone: options.nodeZone,
    addresses: options.nodeIp.map((address) => canonicalIP(address) ?? address),
    allowedExternalIPCidrs: options.allowedExternalIpCidrs,
    serviceProxyName: options.serviceProxyName,
  };
}

/** The flag's service CIDRs, canonical; a bad one is a usage error. */
function serviceRanges(options: RunOptions): string[] {
  return options.serviceClusterIpRange.map(
    (text) =>
      canonicalCidr(text) ??
      fail(`--service-cluster-ip-range ${text}: not a CIDR such as 10.96.0.0/12 or fd00:10:96::/112 (comma-separated for several)`),
  );
}

/**
 * The cgroups the flags leave untranslated: --skip-cgroup DIR (all its calls) and
 * --exclude-service DIR=NAMESPACE/NAME (those to that Service). A cgroup must exist; the cgroup v2
 * root would leave the whole host untranslated, which is not running socklb.
 */
function flagBypassRules(options: RunOptions): BypassRule[] {
  const root = resolve(cgroup2Root());
  const cgroupOf = (flag: string, path: string) => {
    const cgroup = resolve(path);
    checkCgroup(cgroup, `${flag} ${path}`);
    if (cgroup === root) fail(`${flag} ${path}: the cgroup v2 root holds every process of the host; give the cgroup to leave untranslated`);
    return cgroup;
  };
  const skipped = options.skipCgroup.map((path) => ({ cgroup: cgroupOf('--skip-cgroup', path), noTranslate: true, excludedServices: [] }));
  const excluded = options.excludeService.map((text) => {
    const at = text.lastIndexOf('=');
    if (at <= 0) fail(`--exclude-service ${text}: not DIR=NAMESPACE/NAME, such as /sys/fs/cgroup/app=kube-system/kube-dns`);
    const service = checkServiceRef(text.slice(at + 1), '--exclude-service', 'SOCKLB_ERR_USAGE');
    return { cgroup: cgroupOf('--exclude-service', text.slice(0, at)), noTranslate: false, excludedServices: [service] };
  });
  return [...skipped, ...excluded];
}

/** --skip-mark: a socket mark as SO_MARK sets it, decimal or 0x hexadecimal, not 0 (which every unmarked socket has). */
function skipMark(text: string): number {
  const mark = /^(0x[0-9a-f]+|[0-9]+)$/i.test(text) ? Number(text) : NaN;
  if (!(mark >= 1 && mark <= 0xffff_ffff))
    throw new SocklbError('SOCKLB_ERR_USAGE', `--skip-mark ${text}: not a socket mark from 1 to 0xffffffff, such as 0x200 or 512`);
  return mark;
}

function fail(message: string): never {
  throw new SocklbError('SOCKLB_ERR_USAGE', message);
}

async function run(options: RunOptions): Promise<void> {
  // Heard from the start: a first list that takes minutes (an API server out of reach) is still stopped cleanly.
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  const stopTrimming = trimAfterCollections();
  const logger = createLogger(options.logLevel);
  const node = nodeContext(options);
  const ranges = serviceRanges(options);
  const bypassRules = flagBypassRules(options);
  if (options.sandboxesOnly && options.cgroup.length > 0)
    throw new SocklbError('SOCKLB_ERR_USAGE', '--sandboxes-only attaches to no --cgroup: give one or the other');
  const { source, origin } = await chooseSource(options, logger);
  routeLibbpfLog(logger);
  if (options.maxCounterMemory !== undefined) checkCounterMemory(options.maxFrontends, libbpf.numPossibleCpus(), options.maxCounterMemory);
  const datapath = LoadedDatapath.load(options.bpfObject, options.pinDir, {
    frontends: options.maxFrontends,
    backends: options.maxBackends,
    slots: options.maxSlots,
    connections: options.maxConnections,
  });
  const cgroups = options.sandboxesOnly ? [] : options.cgroup.length > 0 ? options.cgroup : [cgroup2Root()];
  // The hub and tracing read the state of the agent, which is made after them (it is given both);
  // neither reads it before guests.adopt() and sandboxes.serve() below: keep those after the agent.
  const guests: GuestHub = new GuestHub({
    pinDirectory: options.pinDir,
    elf: readFileSync(options.bpfObject),
    state: (): DatapathState => agent.datapath,
    vsockPort: options.guestVsockPort,
    logger,
  });
  const sandboxes = await adoptSandboxes(datapath, guests, options.pinDir, options.controlSocket, logger);
  for (const result of datapath.attach(cgroups)) logger.info(result, `${result.action} cgroup ${result.cgroup}`);

  const iterators = loadStuckSocketIterators(options, datapath, logger);
  const servedCgroups = () => [...cgroups, ...sandboxes.registry.cgroups()];
  const stuckSockets =
    iterators && new StuckSocketDestroyer(iterators, servedCgroups, policyProtocols(options.destroyStuckSockets), logger);
  const tracing = new Tracing({
    ring: datapath.trace,
    serviceName: (serviceId) => agent.datapath.serviceNames.get(serviceId),
    places: new CgroupPlaces(servedCgroups, () => sandboxes.registry.values()),
    sandboxKind: (id) => (sandboxes.registry.has(id) ? 'cgroup' : guests.has(id) ? 'guest' : undefined),
    logger,
  });
  tracing.turnOffStaleSwitch();
  const agent: Agent = new Agent({
    source,
    maps: datapath.maps,
    readers: datapath.readers,
    guests,
    logger,
    node,
    serviceRanges: ranges,
    stuckSockets,
    resyncIntervalMs: options.syncPeriod,
  });
  optimizeForSizeWhenQuiet(agent, () => setFlagsFromString('--optimize-for-size'));
  const bypass = new BypassKeeper(
    new BypassWriter(datapath.bypassMaps, { skipMark: options.skipMark ?? 0, sameNetns: options.skipSameNetns }),
    bypassRules,
    () => sandboxes.registry.list(),
    () => agent.datapath,
    logger,
  );
  bypass.sync();
  sandboxes.registry.onChange(() => bypass.sync());
  agent.onSync(() => bypass.sync());
  const keeper = new AttachmentKeeper(new ServedAttachments(datapath, sandboxes.registry, cgroups, options.pinDir), logger);
  const pressure = watchProgramMaps(datapath, logger);
  const servers = await serveObservability(agent, keeper, guests, pressure, options, logger);
  keeper.start(options.syncPeriod);
  pressure.start(PRESSURE_CHECK_INTERVAL_MS);
  await guests.adopt();
  guests.retryUnservedEvery(options.syncPeriod);
  // Before the first sync, which may take a while: a container created meanwhile is not refused.
  await sandboxes.serve(tracing);
  const first = await Promise.race([agent.start().then(() => 'started' as const), stopSignal]);
  if (first === 'started') logger.info({ source: origin, pinDir: options.pinDir, frontends: agent.datapath.frontends.size }, 'serving');
  logger.info({ signal: await stopSignal }, 'stopping; the pinned datapath keeps serving');
  keeper.stop();
  pressure.stop();
  await sandboxes.close();
  await tracing.close();
  await guests.close();
  await agent.stop();
  for (const server of servers) server.close();
  iterators?.close();
  datapath.close();
  stopTrimming();
}

/**
 * How often the programs' maps are counted between scrapes, for the eviction warning: a count of
 * a full connection map is 32 system calls (docs/operations.md, Map pressure).
 */
const PRESSURE_CHECK_INTERVAL_MS = 30_000;

/** The connection map warns when it evicts; the affinity map is counted for /metrics only. */
function watchProgramMaps(datapath: LoadedDatapath, logger: Logger): MapPressureWatch {
  const counted = (map: KernelMap, warnOnEviction: boolean) => ({
    name: map.name,
    type: map.type,
    capacity: map.maxEntries,
    warnOnEviction,
    count: () => map.count(),
  });
  const { connections, affinity } = datapath.programMaps;
  return new MapPressureWatch([counted(connections, true), counted(affinity, false)], libbpf.numPossibleCpus(), logger);
}

/** The socket iterators' object, beside the datapath's. */
function iteratorObject(bpfObject: string): string {
  return join(dirname(bpfObject), 'socklb_iter.bpf.o');
}

/**
 * The iterators the stuck-socket policy needs; none for `none`. A kernel that cannot load them
 * still gets the datapath: the agent says so and leaves stuck sockets alone.
 */
function loadStuckSocketIterators(options: RunOptions, datapath: LoadedDatapath, logger: Logger): SocketIterators | undefined {
  if (policyProtocols(options.destroyStuckSockets).length === 0) return undefined;
  try {
    const iterators = SocketIterators.load(iteratorObject(options.bpfObject), datapath.socketMaps);
    logger.info({ policy: options.destroyStuckSockets }, 'sockets connected to a removed backend will be destroyed');
    return iterators;
  } catch (error) {
    if (!(error instanceof SocklbError)) throw error;
    logger.warn(
      { code: error.code },
      `--destroy-stuck-sockets ${options.destroyStuckSockets}: ${error.message}; ` +
        `connected sockets stay on removed backends until they reconnect`,
    );
    return undefined;
  }
}

/** Runs the dump iterators in every namespace of the attached cgroups, over the pinned socket maps. */
async function sockets(options: { pinDir: string; output: 'table' | 'json'; bpfObject: string }): Promise<void> {
  checkPrivileges();
  const socketMaps = openPinnedSocketMaps(options.pinDir);
  try {
    const iterators = SocketIterators.load(iteratorObject(options.bpfObject), socketMaps.fds);
    try {
      const denied: DeniedProcesses = { pids: [] };
      const namespaces = openNamespacesOfCgroups([...attachedCgroups(options.pinDir), ...sandboxCgroups(options.pinDir)], denied);
      if (denied.pids.length > 0)
        process.stderr.write(`socklb: ${describeDenied(denied)}: the sockets of namespaces that only they are in are not listed\n`);
      try {
        const described = describeSockets(await iterators.dump(['UDP', 'TCP'], namespaces));
        process.stdout.write(options.output === 'json' ? `${JSON.stringify(described, null, 2)}\n` : `${formatSocketTable(described)}\n`);
      } finally {
        closeNamespaces(namespaces);
      }
    } finally {
      iterators.close();
    }
  } finally {
    socketMaps.close();
  }
}

function cleanup(options: { pinDir: string }): void {
  checkPrivileges();
  // Under a running agent, cleanup would leave it writing maps nothing reads, healthy, while every
  // sandbox it served lost translation.
  const holders = mapHolders(options.pinDir);
  if (holders.length > 0) {
    const named = holders.map((holder) => `pid ${holder.pid} (${holder.command})`).join(', ');
    throw new SocklbError(
      'SOCKLB_ERR_USAGE',
      `${options.pinDir}: its maps are open in ${named}, a running agent or socklb command: stop it first`,
    );
  }
  const removed = cleanupPins(options.pinDir);
  process.stdout.write(`detached ${removed.links} links, removed ${removed.maps} maps from ${options.pinDir}\n`);
}

function routeLibbpfLog(logger: Logger): void {
  setLibbpfPrint((level, message) => {
    if (level === 'warn') logger.warn({ libbpf: true }, message);
    else logger.debug({ libbpf: true }, message);
  });
}

const collect = (value: string, previous: string[]) => [...previous, value];
const positiveInteger = (flag: string) => (value: string) => {
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1 || count > 2 ** 31)
    throw new SocklbError('SOCKLB_ERR_USAGE', `${flag} ${value}: not a whole number of entries`);
  return count;
};
/** A vsock port to listen on: any but VMADDR_PORT_ANY (0xFFFFFFFF). */
function vsockPort(text: string): number {
  const port = /^[0-9]{1,10}$/.test(text) ? Number(text) : NaN;
  if (!(port <= 0xfffffffe)) throw new SocklbError('SOCKLB_ERR_USAGE', `--guest-vsock-port ${text}: not a vsock port, 0 to 4294967294`);
  return port;
}
const BYTE_UNITS = new Map([
  ['', 1],
  ['Ki', 2 ** 10],
  ['Mi', 2 ** 20],
  ['Gi', 2 ** 30],
]);

/** Bytes as a whole number, or with Kubernetes' binary suffixes: 64Mi, 1Gi. */
function byteCount(flag: string) {
  return (text: string) => {
    const match = /^(\d+)(Ki|Mi|Gi)?$/.exec(text);
    const bytes = match ? Number(match[1]) * (BYTE_UNITS.get(match[2] ?? '') ?? NaN) : NaN;
    if (!(bytes >= 1 && Number.isSafeInteger(bytes)))
      throw new SocklbError('SOCKLB_ERR_USAGE', `${flag} ${text}: not a number of bytes such as 67108864 or 64Mi`);
    return bytes;
  };
}
const collectCommaSeparated = (value: string, previous: string[]) => [...previous, ...value.split(',').filter((item) => item !== '')];

/** A duration as kube-proxy's flags take Go's ("30s", "5m", "1m30s", "1.5h"), in milliseconds. */
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
const MILLISECONDS = new Map([
  ['ms', 1],
  ['s', 1000],
  ['m', 60_000],
  ['h', 3_600_000],
]);
const DEFAULT_SYNC_PERIOD = '5m';

/** --sync-period: from 1 s, which keeps a typo such as 5ms from resyncing without pause, to a day. */
function syncPeriod(text: string): number {
  const parts = DURATION.test(text) ? [...text.matchAll(DURATION_PART)] : [];
  const milliseconds = parts.reduce((sum, [, amount, unit]) => sum + Number(amount) * (MILLISECONDS.get(unit ?? '') ?? NaN), 0);
  if (!(milliseconds >= 1000 && milliseconds <= 24 * 3_600_000))
    throw new SocklbError('SOCKLB_ERR_USAGE', `--sync-period ${text}: not a duration from 1s to 24h, such as 30s, 5m or 1m30s`);
  return milliseconds;
}

const pinDirOption = () => new Option('--pin-dir <dir>', 'bpffs directory of the pinned maps and links').default(DEFAULT_PIN_DIRECTORY);
const bpfObjectOption = () =>
  new Option(
    '--bpf-object <path>',
    'compiled BPF datapath object; the socket iterators (socklb_iter.bpf.o) are read from its directory',
  ).default(DEFAULT_BPF_OBJECT);

const program = new Command('socklb')
  .description('Kubernetes Services for sandboxes, translated at the socket by eBPF')
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

program
  .command('run')
  .description('run the agent in the foreground; the pinned datapath stays when it stops')
  .option('--manifests <path>', 'file or directory of Service and EndpointSlice manifests (watched), instead of the Kubernetes API')
  .option('--kubeconfig <path>', 'watch the Kubernetes API of this kubeconfig (default: $KUBECONFIG, or the service account when in a pod)')
  .option(
    '--cgroup <path>',
    'cgroup v2 directory whose processes are translated (repeatable; default: the cgroup v2 root)',
    collect,
    [] as string[],
  )
  .option(
    '--sandboxes-only',
    'attach to no cgroup at start, not even the root: serve only the sandboxes registered (docs/sandboxes.md)',
    false,
  )
  .addOption(controlSocketOption())
  .addOption(pinDirOption())
  .addOption(bpfObjectOption())
  .addOption(
    new Option(
      '--destroy-stuck-sockets <protocols>',
      'destroy connected sockets whose backend was removed, so that they reconnect to a live one: ' +
        'udp, all (UDP and TCP) or none (see docs/udp.md)',
    )
      .choices(STUCK_SOCKET_POLICIES)
      .default(DEFAULT_STUCK_SOCKET_POLICY),
  )
  .option(
    '--node-name <name>',
    'this node, for internalTrafficPolicy Local (endpoints whose nodeName it is); default the host name, lowercased as kube-proxy does',
    hostname().toLowerCase(),
  )
  .option('--node-zone <zone>', "this node's topology.kubernetes.io/zone, for topology hints")
  .option('--node-ip <address>', 'an address of this node where NodePorts are reached (repeatable)', collect, [] as string[])
  .option(
    '--allowed-external-ip-cidrs <cidrs>',
    'comma-separated CIDRs inside which spec.externalIPs are translated (default: none, see CVE-2020-8554)',
    collectCommaSeparated,
    [] as string[],
  )
  .option(
    '--service-cluster-ip-range <cidrs>',
    'comma-separated service CIDRs: a call to an address of them that no Service serves is refused (ECONNREFUSED); ' +
      "the ServiceCIDR objects' are added when the API serves them",
    collectCommaSeparated,
    [] as string[],
  )
  .option(
    '--service-proxy-name <name>',
    'serve only Services whose service.kubernetes.io/service-proxy-name label is this (default: only unlabelled ones)',
  )
  .option(
    '--max-frontends <count>',
    'capacity of the frontend map (Service addresses x ports)',
    positiveInteger('--max-frontends'),
    DEFAULT_CAPACITIES.frontends,
  )
  .option(
    '--max-backends <count>',
    'capacity of the backend map (distinct endpoint addresses and ports)',
    positiveInteger('--max-backends'),
    DEFAULT_CAPACITIES.backends,
  )
  .option(
    '--max-slots <count>',
    'capacity of the slot map (backends summed over frontends)',
    positiveInteger('--max-slots'),
    DEFAULT_CAPACITIES.slots,
  )
  .option(
    '--max-connections <count>',
    'translated TCP connections open at once whose getpeername() shows the Service (the least recently used beyond)',
    positiveInteger('--max-connections'),
    DEFAULT_CAPACITIES.connections,
  )
  .option(
    '--max-counter-memory <bytes>',
    'refuse to start when the per-CPU counters (socklb_stats_v1) would take more: ' +
      '(--max-frontends + 1) x (32 x possible CPUs + 8) bytes; 64Mi, 1Gi or bytes (default: no bound)',
    byteCount('--max-counter-memory'),
  )
  .option(
    '--skip-cgroup <path>',
    "a cgroup v2 directory whose processes' calls are left untranslated, its child cgroups' too (repeatable; docs/sandboxes.md)",
    collect,
    [] as string[],
  )
  .option(
    '--exclude-service <path=namespace/name>',
    "leave the calls of a cgroup's processes to this Service untranslated (repeatable)",
    collect,
    [] as string[],
  )
  .addOption(
    new Option(
      '--skip-mark <mark>',
      'leave the calls of sockets with this SO_MARK untranslated (a health checker reaching one backend)',
    ).argParser(skipMark),
  )
  .option(
    '--skip-same-netns',
    "leave a call untranslated when its backend listens in the caller's own network namespace (a node-local cache " +
      'answering its own sandbox); a socket lookup per translation (docs/sandboxes.md)',
    false,
  )
  .option(
    '--metrics-bind-address <address:port>',
    "Prometheus metrics at /metrics and the agent's status at /statusz ('' turns it off)",
    DEFAULT_METRICS_BIND_ADDRESS,
  )
  .option('--healthz-bind-address <address:port>', "kube-proxy's /healthz and /livez ('' turns it off)", '127.0.0.1:10256')
  .addOption(
    new Option(
      '--sync-period <duration>',
      'how often the whole datapath is synced again, and every attachment checked and repaired where it no longer serves its cgroup',
    )
      .argParser(syncPeriod)
      .default(syncPeriod(DEFAULT_SYNC_PERIOD), DEFAULT_SYNC_PERIOD),
  )
  .option(
    '--guest-vsock-port <port>',
    'the vsock port where the applier of a vsock:CID guest connects (socklb-applier --connect vsock:2:PORT); ' +
      'listened on while such a guest is registered (docs/guest-mode.md)',
    vsockPort,
    DEFAULT_GUEST_VSOCK_PORT,
  )
  .option('--log-level <level>', 'fatal, error, warn, info, debug or trace', process.env.SOCKLB_LOG_LEVEL ?? 'info')
  .action((options: RunOptions) => run(options));

registerInspectCommands(program, pinDirOption);

program
  .command('sockets')
  .description('print the sockets socklb translated, in every network namespace of the attached cgroups, with their translations')
  .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
  .addOption(pinDirOption())
  .addOption(bpfObjectOption())
  .action(sockets);

registerSandboxCommands(program);
registerTraceCommand(program);

program
  .command('cleanup')
  .description('detach every program and remove everything socklb pinned')
  .addOption(pinDirOption())
  .action(cleanup);

// Listed only where it can run: not in the production bundle, where it says why when run.
program
  .command('bench', { hidden: !benchAvailable() })
  .description(
    'the benchmark against direct, kube-proxy iptables and nftables (docs/benchmarks.md; `socklb bench --help` for its flags); ' +
      'from a source build only',
  )
  .helpOption(false)
  .allowUnknownOption()
  .allowExcessArguments()
  .action(async (_options: unknown, command: Command) => {
    process.exitCode = await runBench(command.args);
  });

try {
  await program.parseAsync();
} catch (error) {
  if (error instanceof SocklbError) {
    process.stderr.write(`socklb: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}
