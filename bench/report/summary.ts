// The figures the report shows, derived from the samples: per scale, workload and datapath, the
// median rate and the median of per-round ratios to direct (each round's run of a datapath
// divided by the same round's direct run, so that a drift of the machine between rounds cancels).
import type { DatapathName } from '../datapaths/datapath.js';
import type { BenchResults, TrafficSample } from '../results.js';
import { median } from '../stats.js';
import type { WorkloadName } from '../workloads.js';

export interface Cell {
  runs: number;
  /** Median operations per second. */
  rate: number;
  /** Median of per-round ratios to direct; 1 for direct itself; NaN without a direct run to pair with. */
  ratio: number;
  /** Median CPU microseconds per operation: whole machine, and the client cgroup. */
  cpuPerOperationUs: number;
  clientCpuPerOperationUs: number;
  /** Median of the runs' p99 latency (wrk workloads). */
  p99LatencyUs: number;
  /** Failed operations over all runs. */
  errors: number;
}

export function cell(results: BenchResults, services: number, workload: WorkloadName, datapath: DatapathName): Cell | undefined {
  const runs = samplesOf(results.samples, services, workload, datapath);
  if (runs.length === 0) return undefined;
  const direct = samplesOf(results.samples, services, workload, 'direct');
  const ratios = runs.flatMap((run) => {
    const paired = direct.find((candidate) => candidate.round === run.round);
    return paired === undefined || paired.rate === 0 ? [] : [run.rate / paired.rate];
  });
  const latencies = runs.flatMap((run) => (run.latencyUs === undefined ? [] : [run.latencyUs.p99]));
  return {
    runs: runs.length,
    rate: median(runs.map((run) => run.rate)),
    ratio: median(ratios),
    cpuPerOperationUs: median(runs.map((run) => run.cpuPerOperationUs.machine)),
    clientCpuPerOperationUs: median(runs.map((run) => run.cpuPerOperationUs.client)),
    p99LatencyUs: median(latencies),
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
  };
}

function samplesOf(samples: readonly TrafficSample[], services: number, workload: WorkloadName, datapath: DatapathName): TrafficSample[] {
  return samples.filter((sample) => sample.services === services && sample.workload === workload && sample.datapath === datapath);
}
