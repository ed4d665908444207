// make bench-footprint (as root; make builds and bundles first): what the socklb agent costs a
// node, printed as Markdown tables for docs/footprint.md. It asserts nothing.
//
//   shipped   dist/ file by file and gzipped, against an unbundled install (shipped.ts)
//   agent     for each scale (--scales) and each way of running it (--ways), interleaved and
//             repeated (--repeat), medians of: the time from start to serving (the first state
//             programmed) and the first sync's own duration; resident memory (VmRSS, RssAnon,
//             and the peak VmHWM) at the end of an idle window (--idle-seconds) and the CPU time
//             (utime + stime) spent in that window; the kernel memory of the pinned maps
//   guest     guest mode (guest.ts): the applier on disk, a guest's maps and the applier's memory at
//             --guest-scales, and with --guest-counts guests, the agent's memory per guest, the time
//             from an EndpointSlice change to every guest's ACK, and the API watches; alone with
//             --guest-only (a few minutes), left out with --node-only
//   ways      bundle:     node dist/socklb.js run --manifests (one JSON file, services.ts)
//             build:      node build/src/cli/main.js run --manifests, the unbundled build
//             bundle-api, build-api: the same with --kubeconfig, against the API stand-in
//                         (test/fixtures/apiserver.ts, in this process)
//
// The agent attaches to an empty cgroup of its own and programs fresh maps every run; no packet
// is sent. An interrupted run leaves at most that cgroup and the pins, which the next run reuses.

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ApiServer } from '../../test/fixtures/apiserver.js';
import { findCgroup2Root, removeCgroup } from '../../test/lab/cgroup.js';
import { missingPrivileges, socklb, startAgent } from '../../test/integration/support.js';
import { processCpuUs } from '../cpu.js';
import { describeMachine } from '../machine.js';
import { pinnedMapMemory } from '../socklb-maps.js';
import { median } from '../stats.js';
import { guestFootprint } from './guest.js';
import { applyServices, writeServicesFile } from './services.js';
import { shippedSize } from './shipped.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ENTRIES = { bundle: join(ROOT, 'dist', 'socklb.js'), build: join(ROOT, 'build', 'src', 'cli', 'main.js') };
const WAYS = ['bundle', 'build', 'bundle-api', 'build-api'] as const;
type Way = (typeof WAYS)[number];
/**
 * After serving, before the idle window: V8 collects the garbage of the first sync about 8 s after
 * it (its memory reducer), a burst of CPU that is the sync's cost, not the idle agent's.
 */
const SETTLE_MS = 15_000;
/** 50000 Services take tens of seconds to program on 2 cores. */
const START_TIMEOUT_MS = 300_000;
const MIB = 1024 * 1024;

interface Sample {
  servingMs: number;
  /** The first sync's durationMs; none at 0 Services (nothing to sync). */
  syncMs: number | undefined;
  rssMiB: number;
  anonMiB: number;
  peakMiB: number;
  idleCpuMs: number;
  /** bytes_memlock by map name. */
  maps: Record<string, number>;
}

const { values } = parseArgs({
  options: {
    scales: { type: 'string', default: '0,5000,50000' },
    ways: { type: 'string', default: WAYS.join(',') },
    repeat: { type: 'string', default: '3' },
    'idle-seconds': { type: 'string', default: '10' },
    'guest-only': { type: 'boolean', default: false },
    'node-only': { type: 'boolean', default: false },
    'guest-scales': { type: 'string', default: '10,5000' },
    'guest-counts': { type: 'string', default: '1,10,100' },
    'guest-changes': { type: 'string', default: '50' },
    'guest-repeat': { type: 'string', default: '3' },
    'guest-settle-seconds': { type: 'string', default: '10' },
    'latency-services': { type: 'string', default: '1000' },
  },
});
const scales = values.scales.split(',').map(Number);
const ways = values.ways.split(',') as Way[];
const repeat = Number(values.repeat);
const idleMs = Number(values['idle-seconds']) * 1000;
if (values['guest-only'] && values['node-only']) throw new Error('--guest-only and --node-only: give one or neither');
const guestCounts = values['guest-counts'].split(',').map(Number);
if (guestCounts.some((count, i) => i > 0 && count <= guestCounts[i - 1]!)) throw new Error('--guest-counts: give them in increasing order');
for (const way of ways) if (!WAYS.includes(way)) throw new Error(`--ways: ${way} is none of ${WAYS.join(', ')}`);

const skip =
  missingPrivileges() ??
  (existsSync(ENTRIES.bundle) && existsSync(join(ROOT, 'dist', 'socklb-applier'))
    ? undefined
    : 'no bundle: run `make build bundle` (make bench-footprint does)');
if (skip) {
  console.error(skip);
  process.exit(1);
}

// Fixed, not per process: the next run removes what an interrupted one left.
const pinDir = '/sys/fs/bpf/socklb-footprint';
const cgroupRoot = await findCgroup2Root();
const cgroup = join(cgroupRoot, 'socklb-footprint');
const workDirectory = await mkdtemp(join(tmpdir(), 'socklb-footprint-'));
try {
  await mkdir(cgroup, { recursive: true });
  const lines = values['guest-only'] ? [] : await nodeFootprint();
  if (!values['node-only']) {
    if (lines.length > 0) lines.push('');
    lines.push(
      ...(await guestFootprint({
        root: ROOT,
        entry: ENTRIES.bundle,
        cgroup,
        pinDir,
        workDirectory,
        scales: values['guest-scales'].split(',').map(Number),
        counts: guestCounts,
        changes: Number(values['guest-changes']),
        latencyServices: Number(values['latency-services']),
        repeat: Number(values['guest-repeat']),
        settleMs: Number(values['guest-settle-seconds']) * 1000,
      })),
    );
  }
  const machine = await describeMachine();
  console.log(
    [
      `Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node.js ${machine.node}.`,
      ...lines,
    ].join('\n'),
  );
} finally {
  await socklb(['cleanup', '--pin-dir', pinDir]);
  await removeCgroup(cgroup, cgroupRoot);
  await rm(workDirectory, { recursive: true, force: true });
}

/** The shipped artifact and the agent at each scale and way: the tables of issue 7. */
async function nodeFootprint(): Promise<string[]> {
  const manifests = new Map<number, string>();
  for (const scale of scales) {
    const directory = join(workDirectory, String(scale));
    await mkdir(directory);
    await writeServicesFile(directory, scale);
    manifests.set(scale, directory);
  }
  const samples = new Map<string, Sample[]>();
  for (let round = 1; round <= repeat; round++) {
    for (const scale of scales) {
      // Alternated, so that neither way always runs on a machine the other just warmed or loaded.
      for (const way of round % 2 === 1 ? ways : [...ways].reverse()) {
        const sample = await measure(way, scale, manifests.get(scale)!);
        console.error(
          `round ${round}/${repeat}, ${scale} Services, ${way}: serving in ${seconds(sample.servingMs)} s, ` +
            `RSS ${sample.rssMiB.toFixed(1)} MiB, ${sample.idleCpuMs.toFixed(0)} ms CPU idle`,
        );
        const key = `${scale} ${way}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
      }
    }
  }
  return report(samples);
}

async function measure(way: Way, scale: number, manifestDirectory: string): Promise<Sample> {
  await socklb(['cleanup', '--pin-dir', pinDir]);
  let server: ApiServer | undefined;
  if (way.endsWith('-api')) {
    server = await ApiServer.start();
    applyServices(server, scale);
  }
  const source = server ? ['--kubeconfig', server.kubeconfigPath, '--node-name', 'node-1'] : ['--manifests', manifestDirectory];
  const started = performance.now();
  const agent = await startAgent([...source, '--cgroup', cgroup, '--pin-dir', pinDir], {
    entry: way.startsWith('build') ? ENTRIES.build : ENTRIES.bundle,
    timeoutMs: START_TIMEOUT_MS,
  });
  try {
    const servingMs = performance.now() - started;
    const pid = agent.process.pid!;
    await sleep(SETTLE_MS);
    const cpuBefore = await processCpuUs(pid);
    await sleep(idleMs);
    const idleCpuMs = ((await processCpuUs(pid)) - cpuBefore) / 1000;
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
    const sync = agent.logs.find((line) => line.msg === 'datapath synced')?.durationMs;
    return {
      servingMs,
      syncMs: typeof sync === 'number' ? sync : undefined,
      rssMiB: kib('VmRSS') / 1024,
      anonMiB: kib('RssAnon') / 1024,
      peakMiB: kib('VmHWM') / 1024,
      idleCpuMs,
      maps: await pinnedMapMemory(pinDir),
    };
  } finally {
    await agent.stop();
    await server?.close();
  }
}

function report(samples: Map<string, Sample[]>): string[] {
  const shipped = shippedSize(ROOT);
  const lines = [
    `Medians of ${repeat} interleaved runs; idle window ${idleMs / 1000} s, ${SETTLE_MS / 1000} s after serving.`,
    '',
    '### Shipped (dist/, without Node.js)',
    '',
    '| file | bytes |',
    '|---|---:|',
    ...shipped.files.map((file) => `| ${file.path} | ${file.bytes.toLocaleString('en')} |`),
    `| **in all** | **${shipped.bytes.toLocaleString('en')}** (${(shipped.bytes / MIB).toFixed(2)} MiB) |`,
    `| gzipped tarball | ${shipped.gzippedBytes.toLocaleString('en')} (${(shipped.gzippedBytes / MIB).toFixed(2)} MiB) |`,
    `| unbundled, for comparison: build/ + production node_modules/ | ${shipped.unbundledBytes.toLocaleString('en')} ` +
      `(${(shipped.unbundledBytes / MIB).toFixed(1)} MiB) |`,
    '',
    '### Agent',
    '',
    '| Services | way | start to serving (s) | first sync (s) | RSS idle (MiB) | of which anonymous | peak RSS (MiB) ' +
      '| CPU idle (ms per 10 s) |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
  ];
  const perTenSeconds = 10_000 / idleMs;
  for (const scale of scales) {
    for (const way of ways) {
      const runs = samples.get(`${scale} ${way}`) ?? [];
      const syncs = runs.flatMap((run) => (run.syncMs === undefined ? [] : [run.syncMs]));
      const m = (pick: (run: Sample) => number) => median(runs.map(pick));
      lines.push(
        `| ${scale} | ${way} | ${seconds(m((run) => run.servingMs))} | ${syncs.length > 0 ? seconds(median(syncs)) : '-'} | ` +
          `${m((run) => run.rssMiB).toFixed(1)} | ${m((run) => run.anonMiB).toFixed(1)} | ${m((run) => run.peakMiB).toFixed(1)} | ` +
          `${(m((run) => run.idleCpuMs) * perTenSeconds).toFixed(1)} |`,
      );
    }
  }
  const names = [...new Set([...samples.values()].flatMap((runs) => runs.flatMap((run) => Object.keys(run.maps))))].sort();
  lines.push(
    '',
    '### Kernel memory of the pinned maps (bytes_memlock, KiB)',
    '',
    `| map | ${scales.join(' | ')} |`,
    `|---|${scales.map(() => '---:').join('|')}|`,
  );
  const mapMemory = (scale: number, name: string) =>
    median([...samples].filter(([key]) => key.startsWith(`${scale} `)).flatMap(([, runs]) => runs.map((run) => run.maps[name] ?? 0)));
  for (const name of names) lines.push(`| ${name} | ${scales.map((scale) => kib(mapMemory(scale, name))).join(' | ')} |`);
  lines.push(
    `| **in all** | ${scales.map((scale) => kib(names.reduce((total, name) => total + mapMemory(scale, name), 0))).join(' | ')} |`,
  );
  return lines;
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(2);
}

function kib(bytes: number): string {
  return Math.round(bytes / 1024).toLocaleString('en');
}
