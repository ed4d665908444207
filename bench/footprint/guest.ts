// Guest mode's footprint (issue 18, docs/footprint.md "Guest mode"), with real appliers
// (build/socklb-applier, the production build) in emulated guests (test/lab/guest.ts: each a lab
// sandbox with its own mount namespace and a fresh bpffs, its own cgroup namespace rooted at its
// cgroup, its own network namespace) served by a real agent (`socklb run`, the bundle) that
// watches the Kubernetes API stand-in (test/fixtures/apiserver.ts, in this process):
//
//   applier on disk   build/ and dist/socklb-applier, and what strip would leave of them
//   guest maps        one guest per scale (--guest-scales): bytes_memlock of every map the applier
//                     pinned in the guest, at the capacities the agent chose (src/guest/sizing.ts),
//                     and the applier's VmRSS and VmHWM once its snapshot is in
//   host per guest    the agent's VmRSS, and its live V8 heap (the self sizes in a heap snapshot,
//                     which V8 takes after a full collection: SIGUSR2 with --heapsnapshot-signal),
//                     with N guests registered, connected and drained (lag 0, nothing queued),
//                     minus the same before any guest, over N
//   change latency    with 1, 10, 100 guests (--guest-counts): one EndpointSlice changed in the API
//                     stand-in, until each guest's applier ACKed the batch that carries it (written
//                     to its maps), timed by a tap on each guest's stream (guest-tap.ts)
//   API watches       the stand-in's open watches with no guest and with each count

import { execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { requestControl } from '../../src/sandbox/control-socket.js';
import type { GuestEntry } from '../../src/sandbox/protocol.js';
import { ApiServer } from '../../test/fixtures/apiserver.js';
import { socklb, startAgent, type RunningAgent } from '../../test/integration/support.js';
import { EmulatedGuest } from '../../test/lab/guest.js';
import { Lab } from '../../test/lab/lab.js';
import { processCpuUs } from '../cpu.js';
import { pinnedMapShapes, type MapShape } from '../socklb-maps.js';
import { median } from '../stats.js';
import { GuestTap } from './guest-tap.js';
import { applyServices, changeEndpoints } from './services.js';

const execFileAsync = promisify(execFile);
const GUEST_PIN_DIR = '/sys/fs/bpf/socklb';
/** Guests started (and registered) at once: each start is a few ip(8) and nsenter(1) processes. */
const STARTS_AT_ONCE = 10;
const STREAMING_TIMEOUT_MS = 300_000;
const ACK_TIMEOUT_MS = 30_000;
/** Between two changes: each is timed alone, not queued behind the one before. */
const CHANGE_GAP_MS = 20;
const CONTROL_TIMEOUT_MS = 30_000;
const MIB = 1024 * 1024;
const HEAP_SNAPSHOT_TIMEOUT_MS = 60_000;
const WARM_UP_SNAPSHOTS = 8;
const SETTLED_HEAP_BYTES = 64 * 1024;

export interface GuestBenchOptions {
  root: string;
  /** The agent's entry (the bundle). */
  entry: string;
  cgroup: string;
  pinDir: string;
  workDirectory: string;
  scales: number[];
  counts: number[];
  changes: number;
  latencyServices: number;
  repeat: number;
  settleMs: number;
}

interface MapsSample {
  shapes: Record<string, MapShape>;
  rssKiB: number;
  peakKiB: number;
}

interface FleetSample {
  rssKiB: number;
  liveHeapBytes: number;
  openWatches: number;
  /** CPU time per change: the agent's, and this process's (the taps relaying every guest's stream). */
  agentCpuMs: number;
  tapCpuMs: number;
  /** The machine's 1-minute load average as the changes began: the machine is shared. */
  load: number;
  /** From the change in the API to each guest's ACK, ms; changes × guests values. */
  latencies: number[];
}

interface Round {
  base: { rssKiB: number; liveHeapBytes: number; openWatches: number };
  fleets: Map<number, FleetSample>;
}

/** Runs every guest measure and returns the Markdown of its tables. */
export async function guestFootprint(options: GuestBenchOptions): Promise<string[]> {
  const onDisk = await applierOnDisk(options.root, options.workDirectory);
  const maps = new Map<number, MapsSample[]>();
  const rounds: Round[] = [];
  for (let round = 1; round <= options.repeat; round++) {
    const scales = round % 2 === 1 ? options.scales : [...options.scales].reverse();
    for (const scale of scales) {
      const sample = await measureGuestMaps(options, scale);
      maps.set(scale, [...(maps.get(scale) ?? []), sample]);
      console.error(
        `round ${round}/${options.repeat}, guest at ${scale} Services: maps ${kib(total(sample.shapes))} KiB, ` +
          `applier RSS ${sample.rssKiB} KiB (peak ${sample.peakKiB})`,
      );
    }
    rounds.push(await measureFleets(options, round));
  }
  return report(options, onDisk, maps, rounds);
}

interface OnDisk {
  path: string;
  bytes: number;
  strippedBytes: number;
}

/** Each shipped applier's size, and its size once stripped (the same when it already is). */
async function applierOnDisk(root: string, workDirectory: string): Promise<OnDisk[]> {
  const sizes: OnDisk[] = [];
  for (const path of ['build/socklb-applier', 'dist/socklb-applier']) {
    const stripped = join(workDirectory, 'stripped-applier');
    await execFileAsync('strip', ['-o', stripped, join(root, path)]);
    sizes.push({ path, bytes: (await stat(join(root, path))).size, strippedBytes: (await stat(stripped)).size });
    await rm(stripped);
  }
  return sizes;
}

/** One agent, one guest: the guest's maps and its applier's memory once its snapshot is in. */
async function measureGuestMaps(options: GuestBenchOptions, scale: number): Promise<MapsSample> {
  return withAgent(options, scale, {}, async (agent) => {
    const fleet = new GuestFleet(options, agent);
    try {
      await fleet.grow(1);
      await sleep(2_000);
      const [guest] = fleet.guests;
      const status = await processStatus(await applierPid(guest!.applier));
      return {
        shapes: await pinnedMapShapes(guest!.guest.hostPath(GUEST_PIN_DIR)),
        rssKiB: status('VmRSS'),
        peakKiB: status('VmHWM'),
      };
    } finally {
      await fleet.close();
    }
  });
}

/** One agent; guests added up to each count: its memory, the API's watches, the change latency. */
async function measureFleets(options: GuestBenchOptions, round: number): Promise<Round> {
  const diagnostics = await mkdtemp(join(options.workDirectory, 'heap-'));
  const env = {
    NODE_OPTIONS: `${process.env['NODE_OPTIONS'] ?? ''} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${diagnostics}`,
    // As deploy/daemonset.yaml runs the agent.
    MALLOC_ARENA_MAX: '2',
  };
  return withAgent(options, options.latencyServices, env, async (agent, server) => {
    // Snapshots, not counted, until the live heap stops shrinking: the memory a snapshot itself
    // takes stays in the agent's RSS, so every measure must come after one; and each snapshot's full
    // collections age the bytecode of code run once at start, which V8 then flushes, a drift of
    // about 2 MiB that would otherwise be charged to the first guests.
    let settled = (await agentMemory(agent, diagnostics)).liveHeapBytes;
    for (let snapshot = 1; snapshot < WARM_UP_SNAPSHOTS; snapshot++) {
      await sleep(1_000);
      const live = (await agentMemory(agent, diagnostics)).liveHeapBytes;
      console.error(
        `round ${round}: live heap before any guest ${(live / MIB).toFixed(2)} MiB (${((live - settled) / 1024).toFixed(0)} KiB)`,
      );
      if (Math.abs(live - settled) < SETTLED_HEAP_BYTES) break;
      settled = live;
    }
    await sleep(options.settleMs);
    const base = { ...(await agentMemory(agent, diagnostics)), openWatches: server.openWatches };
    const fleets = new Map<number, FleetSample>();
    const fleet = new GuestFleet(options, agent);
    try {
      for (const count of options.counts) {
        await fleet.grow(count);
        await sleep(options.settleMs);
        const memory = await agentMemory(agent, diagnostics);
        const openWatches = server.openWatches;
        const latencies: number[] = [];
        const load = loadavg()[0]!;
        const agentCpuBefore = await processCpuUs(agent.process.pid!);
        const tapCpuBefore = process.cpuUsage();
        for (let change = 0; change < options.changes; change++) {
          const before = fleet.guests.map((guest) => guest.tap.ackedSeq);
          const changed = performance.now();
          changeEndpoints(server, round * 1_000_000 + count * 1_000 + change);
          const acks = await Promise.all(fleet.guests.map((guest, i) => guest.tap.ackAfter(before[i]!, ACK_TIMEOUT_MS)));
          const refused = acks.find((ack) => ack.error !== 0);
          if (refused) throw new Error(`a guest refused sync ${refused.seq}: error ${refused.error}`);
          latencies.push(...acks.map((ack) => ack.at - changed));
          await sleep(CHANGE_GAP_MS);
        }
        const tapCpu = process.cpuUsage(tapCpuBefore);
        fleets.set(count, {
          ...memory,
          openWatches,
          agentCpuMs: ((await processCpuUs(agent.process.pid!)) - agentCpuBefore) / 1000 / options.changes,
          tapCpuMs: (tapCpu.user + tapCpu.system) / 1000 / options.changes,
          load,
          latencies,
        });
        const sorted = [...latencies].sort((a, b) => a - b);
        console.error(
          `round ${round}/${options.repeat}, ${count} guests: agent RSS +${((memory.rssKiB - base.rssKiB) / 1024).toFixed(1)} MiB, ` +
            `live heap +${((memory.liveHeapBytes - base.liveHeapBytes) / MIB).toFixed(2)} MiB; change to ACK p50 ${percentile(sorted, 50).toFixed(1)} ms, ` +
            `p99 ${percentile(sorted, 99).toFixed(1)} ms; ${openWatches} API watches (${base.openWatches} with no guest)`,
        );
      }
    } finally {
      await fleet.close();
    }
    return { base, fleets };
  });
}

/** The agent (bundle) on fresh pins, watching a fresh API stand-in that holds `services` Services. */
async function withAgent<T>(
  options: GuestBenchOptions,
  services: number,
  env: Record<string, string>,
  use: (agent: RunningAgent, server: ApiServer) => Promise<T>,
): Promise<T> {
  await socklb(['cleanup', '--pin-dir', options.pinDir]);
  const server = await ApiServer.start();
  try {
    applyServices(server, services);
    const agent = await startAgent(
      ['--kubeconfig', server.kubeconfigPath, '--node-name', 'node-1', '--cgroup', options.cgroup, '--pin-dir', options.pinDir],
      { entry: options.entry, timeoutMs: 300_000, env },
    );
    try {
      return await use(agent, server);
    } finally {
      await agent.stop();
    }
  } finally {
    await server.close();
    await socklb(['cleanup', '--pin-dir', options.pinDir]);
  }
}

interface FleetGuest {
  id: string;
  guest: EmulatedGuest;
  tap: GuestTap;
  applier: ChildProcess;
}

/** Emulated guests, each with the production applier connected through a tap, registered with the agent. */
class GuestFleet {
  readonly guests: FleetGuest[] = [];
  readonly #lab = new Lab();
  readonly #directory: string;

  constructor(
    private readonly options: GuestBenchOptions,
    private readonly agent: RunningAgent,
  ) {
    this.#directory = join(options.workDirectory, `guests-${process.hrtime.bigint()}`);
  }

  /** Adds guests up to `count` and waits until every one is streaming, in step, nothing queued. */
  async grow(count: number): Promise<void> {
    await mkdir(this.#directory, { recursive: true });
    while (this.guests.length < count) {
      const first = this.guests.length;
      const batch = Array.from({ length: Math.min(STARTS_AT_ONCE, count - first) }, (_, i) => this.#start(`g${first + i}`));
      this.guests.push(...(await Promise.all(batch)));
    }
    const deadline = Date.now() + STREAMING_TIMEOUT_MS;
    for (;;) {
      const answer = await requestControl(this.agent.controlSocket, { op: 'list' }, CONTROL_TIMEOUT_MS);
      const entries = ('sandboxes' in answer ? answer.sandboxes : []).filter((entry): entry is GuestEntry => 'guest' in entry);
      const ready = entries.filter((entry) => entry.phase === 'streaming' && entry.lag === 0 && entry.queuedBytes === 0);
      if (ready.length === count) return;
      if (Date.now() > deadline) {
        const behind = entries.filter((entry) => !ready.includes(entry)).slice(0, 3);
        throw new Error(`${ready.length} of ${count} guests in step after ${STREAMING_TIMEOUT_MS} ms: ${JSON.stringify(behind)}`);
      }
      await sleep(250);
    }
  }

  async #start(id: string): Promise<FleetGuest> {
    const guest = await EmulatedGuest.start(this.#lab, id);
    const agentPath = join(this.#directory, `${id}.sock`);
    await requestControl(this.agent.controlSocket, { op: 'add', id, guest: `unix:${agentPath}` }, CONTROL_TIMEOUT_MS);
    const tap = await GuestTap.listen(join(this.#directory, `${id}.tap`), agentPath);
    const applier = guest.spawn([join(this.options.root, 'build', 'socklb-applier'), '--connect', `unix:${tap.path}`]);
    // Its log is a line per reconnection: read and dropped, so that the pipe never fills.
    applier.stderr?.resume();
    applier.stdout?.resume();
    return { id, guest, tap, applier };
  }

  async close(): Promise<void> {
    // The lab's close ends every holder, and with them the guests' bpffs, maps and links.
    await this.#lab.close();
    await Promise.all(this.guests.map((guest) => guest.tap.close()));
    await rm(this.#directory, { recursive: true, force: true });
  }
}

/** The applier under the process a guest's spawn() started (nsenter and env exec it, but check). */
async function applierPid(child: ChildProcess): Promise<number> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // Field 5, the process group, after the command in parentheses: lab.spawn makes the child a group leader.
    const group = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    if (group !== child.pid) continue;
    if ((await readlink(`/proc/${entry}/exe`).catch(() => '')).endsWith('/socklb-applier')) return Number(entry);
  }
  throw new Error(`no socklb-applier in process group ${child.pid}`);
}

async function processStatus(pid: number): Promise<(field: string) => number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
}

/** The agent's VmRSS, then its live heap: a heap snapshot into `diagnostics`, read and removed. */
async function agentMemory(agent: RunningAgent, diagnostics: string): Promise<{ rssKiB: number; liveHeapBytes: number }> {
  const rssKiB = (await processStatus(agent.process.pid!))('VmRSS');
  agent.process.kill('SIGUSR2');
  const deadline = Date.now() + HEAP_SNAPSHOT_TIMEOUT_MS;
  for (;;) {
    await sleep(500);
    const [file] = (await readdir(diagnostics)).filter((name) => name.endsWith('.heapsnapshot'));
    if (file !== undefined) {
      // Written in place: complete once it parses.
      const text = await readFile(join(diagnostics, file), 'utf8');
      const snapshot = parseOrUndefined(text);
      if (snapshot) {
        await rm(join(diagnostics, file));
        return { rssKiB, liveHeapBytes: liveBytes(snapshot) };
      }
    }
    if (Date.now() > deadline) throw new Error(`no complete heap snapshot of the agent within ${HEAP_SNAPSHOT_TIMEOUT_MS} ms`);
  }
}

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[] } };
  nodes: number[];
}

function parseOrUndefined(text: string): HeapSnapshot | undefined {
  try {
    return JSON.parse(text) as HeapSnapshot;
  } catch {
    return undefined;
  }
}

/** The sum of every object's own size: what a full collection left live. */
function liveBytes(heap: HeapSnapshot): number {
  const fields = heap.snapshot.meta.node_fields;
  const selfSize = fields.indexOf('self_size');
  let bytes = 0;
  for (let i = selfSize; i < heap.nodes.length; i += fields.length) bytes += heap.nodes[i]!;
  return bytes;
}

function report(options: GuestBenchOptions, onDisk: OnDisk[], maps: Map<number, MapsSample[]>, rounds: Round[]): string[] {
  const lines = [
    '### Guest mode',
    '',
    `Medians of ${options.repeat} rounds. Change latency: ${options.changes} changes per count and round, at ${options.latencyServices} Services; ` +
      `host memory ${options.settleMs / 1000} s after the guests were in step.`,
    '',
    '| applier | bytes | stripped |',
    '|---|---:|---:|',
    ...onDisk.map((file) => `| ${file.path} | ${file.bytes.toLocaleString('en')} | ${file.strippedBytes.toLocaleString('en')} |`),
    '',
    `| in one guest | ${options.scales.map((scale) => `${scale} Services`).join(' | ')} |`,
    `|---|${options.scales.map(() => '---:').join('|')}|`,
  ];
  const perScale = (pick: (sample: MapsSample) => number) => options.scales.map((scale) => median((maps.get(scale) ?? []).map(pick)));
  lines.push(
    `| applier VmRSS (KiB) | ${perScale((sample) => sample.rssKiB).join(' | ')} |`,
    `| applier VmHWM, its peak (KiB) | ${perScale((sample) => sample.peakKiB).join(' | ')} |`,
  );
  const names = [...new Set([...maps.values()].flatMap((samples) => samples.flatMap((sample) => Object.keys(sample.shapes))))].sort();
  for (const name of names) {
    const entries = perScale((sample) => sample.shapes[name]?.maxEntries ?? 0);
    const bytes = perScale((sample) => sample.shapes[name]?.bytes ?? 0);
    lines.push(`| ${name}: capacity, KiB | ${entries.map((count, i) => `${count.toLocaleString('en')}, ${kib(bytes[i]!)}`).join(' | ')} |`);
  }
  lines.push(
    `| **maps in all (KiB)** | ${perScale((sample) => total(sample.shapes))
      .map((bytes) => `**${kib(bytes)}**`)
      .join(' | ')} |`,
  );
  lines.push(
    '',
    '| guests | agent RSS per guest (KiB) | agent live heap per guest (KiB) | the same, from the count before | ' +
      'change to ACK p50 (ms) | p99 (ms) | max (ms) | agent CPU per change (ms) | taps CPU per change (ms) | load | API watches |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    `| 0 | - | - | - | - | - | - | - | - | - | ${median(rounds.map((round) => round.base.openWatches))} |`,
  );
  options.counts.forEach((count, index) => {
    const previousCount = options.counts[index - 1] ?? 0;
    const samples = rounds.map((round) => ({
      base: round.base,
      previous: round.fleets.get(previousCount) ?? round.base,
      fleet: round.fleets.get(count)!,
    }));
    const m = (pick: (sample: (typeof samples)[number]) => number) => median(samples.map(pick));
    const sorted = (sample: (typeof samples)[number]) => [...sample.fleet.latencies].sort((a, b) => a - b);
    lines.push(
      `| ${count} | ${m(({ base, fleet }) => (fleet.rssKiB - base.rssKiB) / count).toFixed(1)} | ` +
        `${m(({ base, fleet }) => (fleet.liveHeapBytes - base.liveHeapBytes) / 1024 / count).toFixed(1)} | ` +
        `${m(({ previous, fleet }) => (fleet.liveHeapBytes - previous.liveHeapBytes) / 1024 / (count - previousCount)).toFixed(1)} | ` +
        `${m((sample) => percentile(sorted(sample), 50)).toFixed(1)} | ${m((sample) => percentile(sorted(sample), 99)).toFixed(1)} | ` +
        `${m((sample) => sorted(sample).at(-1)!).toFixed(1)} | ${m(({ fleet }) => fleet.agentCpuMs).toFixed(1)} | ` +
        `${m(({ fleet }) => fleet.tapCpuMs).toFixed(1)} | ${m(({ fleet }) => fleet.load).toFixed(1)} | ${m(({ fleet }) => fleet.openWatches)} |`,
    );
  });
  return lines;
}

/** The nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function total(shapes: Record<string, MapShape>): number {
  return Object.values(shapes).reduce((sum, shape) => sum + shape.bytes, 0);
}

function kib(bytes: number): string {
  return Math.round(bytes / 1024).toLocaleString('en');
}
