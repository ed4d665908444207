// One scale: the same N Services programmed into every datapath, the control plane measured, then
// the traffic in interleaved rounds whose order rotates (A B C D, B C D A, ...), so that a slow
// drift of the machine lands on every datapath alike and none always follows the same one (the
// backends are shared: a run leaves their TIME_WAIT sockets and caches to the next); then every
// datapath is emptied for the next scale.
import { readFile } from 'node:fs/promises';
import type { Lab } from '../test/lab/lab.js';
import { buildCatalog, endpointCount, type Catalog } from './catalog.js';
import { NotMeasured, type Datapath, type EndpointChange } from './datapaths/datapath.js';
import type { BenchOptions } from './options.js';
import type { PerfRecorder } from './perf.js';
import type { Progress } from './progress.js';
import type { ScaleResult, TrafficSample } from './results.js';
import { median } from './stats.js';
import { runWorkload, WORKLOADS, type RunContext } from './workloads.js';

/** At least this many endpoint changes, whatever the time budget says. */
const MIN_ENDPOINT_CHANGES = 3;
const VERIFY_SECONDS = 1;
// One connection's lost SYN waits a second for its retransmission, as long as the whole run: a
// datapath is left out only when no attempt gets an answer to every request.
const VERIFY_ATTEMPTS = 3;

export interface ScaleContext extends RunContext {
  lab: Lab;
  options: BenchOptions;
  datapaths: Datapath[];
  backendIPs: string[];
  progress: Progress;
  /** Called with each sample as soon as it exists (the caller keeps them all). */
  onSample: (sample: TrafficSample) => void;
  /** Aborted on Ctrl-C: no new step starts, and what fails because of it is not reported. */
  signal: AbortSignal;
  /** Records every measured run (--perf); undefined: none. */
  perf: PerfRecorder | undefined;
}

export async function runScale(context: ScaleContext, services: number): Promise<ScaleResult> {
  const { options, progress } = context;
  const catalog = buildCatalog({ services, endpointsPerService: options.endpointsPerService, backendIPs: context.backendIPs });
  const loadAverage = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  const result: ScaleResult = {
    services,
    endpoints: endpointCount(catalog),
    loadAverage,
    programming: [],
    endpointChanges: [],
    footprints: [],
    notMeasured: [],
    failures: [],
  };
  const fail = (datapath: Datapath, stage: string, error: unknown) => {
    context.signal.throwIfAborted();
    const reason = error instanceof Error ? error.message : String(error);
    result.failures.push({ datapath: datapath.name, stage, reason });
    progress.log(`  ${datapath.name}: ${stage} FAILED: ${reason}`);
  };
  progress.log(`== ${services} Services (${result.endpoints} endpoints), load average ${loadAverage} ==`);

  const ready: Datapath[] = [];
  for (const datapath of context.datapaths) {
    context.signal.throwIfAborted();
    try {
      await programAndMeasure(context, datapath, catalog, result);
      await verify(context, datapath, catalog);
      ready.push(datapath);
    } catch (error) {
      if (!(error instanceof NotMeasured)) fail(datapath, 'control plane', error);
      else {
        result.notMeasured.push({ datapath: datapath.name, reason: error.message });
        progress.log(`  ${datapath.name}: not measured: ${error.message}`);
      }
    }
  }

  await runRounds(context, ready, catalog, services, fail);

  for (const datapath of context.datapaths) {
    await datapath.clear().catch((error: unknown) => fail(datapath, 'clear', error));
  }
  return result;
}

/** Programming from nothing, endpoint changes, and what the control plane holds. */
async function programAndMeasure(context: ScaleContext, datapath: Datapath, catalog: Catalog, result: ScaleResult): Promise<void> {
  const { options, progress } = context;
  const programming = await datapath.program(catalog);
  if (programming !== undefined) {
    result.programming.push({ datapath: datapath.name, ...programming });
    progress.log(`  ${datapath.name}: programmed in ${programming.seconds.toFixed(2)} s ${JSON.stringify(programming.detail)}`);
  }
  if (datapath.changeEndpoints !== undefined) {
    const changes: EndpointChange[] = [];
    const started = performance.now();
    for (let k = 1; k <= options.endpointChanges; k++) {
      const spent = (performance.now() - started) / 1000;
      if (changes.length >= MIN_ENDPOINT_CHANGES && spent > options.endpointChangeBudgetSeconds) break;
      changes.push(await datapath.changeEndpoints(catalog, k));
    }
    result.endpointChanges.push({ datapath: datapath.name, changes });
    const latencies = changes.map((change) => change.latencyMs);
    progress.log(
      `  ${datapath.name}: ${changes.length} endpoint changes, median ${median(latencies).toFixed(1)} ms, ` +
        `max ${Math.max(...latencies).toFixed(1)} ms`,
    );
  }
  if (datapath.finishControlPlane !== undefined) {
    const footprint = await datapath.finishControlPlane();
    result.footprints.push({ datapath: datapath.name, footprint });
    progress.log(
      `  ${datapath.name}: ` +
        `${JSON.stringify(footprint, (_key, value: unknown) => (typeof value === 'number' ? Number(value.toFixed(2)) : value))}`,
    );
  }
}

/** A short run that must answer every request: a datapath that does not translate is not measured. */
async function verify(context: ScaleContext, datapath: Datapath, catalog: Catalog): Promise<void> {
  const failures: string[] = [];
  for (let attempt = 1; attempt <= VERIFY_ATTEMPTS; attempt++) {
    const run = await runWorkload(context, WORKLOADS.connect, datapath, catalog, VERIFY_SECONDS);
    if (run.operations > 0 && run.errors === 0) return;
    failures.push(`${run.operations} requests answered, errors ${JSON.stringify(run.errorDetail)}`);
  }
  throw new Error(`verification runs: ${failures.join('; ')}`);
}

async function runRounds(
  context: ScaleContext,
  datapaths: Datapath[],
  catalog: Catalog,
  services: number,
  fail: (datapath: Datapath, stage: string, error: unknown) => void,
): Promise<void> {
  const { options, progress } = context;
  const rounds = Math.max(...options.workloads.map((workload) => options.rounds[workload]));
  for (let round = 1; round <= rounds; round++) {
    for (const workload of options.workloads.filter((name) => round <= options.rounds[name])) {
      const line: string[] = [];
      for (const datapath of rotated(datapaths, round - 1)) {
        context.signal.throwIfAborted();
        try {
          const measure = () => runWorkload(context, WORKLOADS[workload], datapath, catalog, options.seconds[workload]);
          const run = await (context.perf
            ? context.perf.record({ workload, datapath: datapath.name, services, round }, measure)
            : measure());
          context.onSample({ ...run, services, round });
          line.push(`${datapath.name} ${formatRate(run.rate)}${run.errors > 0 ? ` (${run.errors} errors)` : ''}`);
        } catch (error) {
          fail(datapath, `${workload} round ${round}`, error);
        }
      }
      progress.log(`  round ${round}/${options.rounds[workload]} ${workload.padEnd(9)} ${line.join(' | ')} /s`);
    }
  }
}

function rotated<T>(items: readonly T[], by: number): T[] {
  const start = by % items.length;
  return [...items.slice(start), ...items.slice(0, start)];
}

function formatRate(rate: number): string {
  return rate >= 10_000 ? `${(rate / 1000).toFixed(1)}k` : rate.toFixed(0);
}
