// The JSON the benchmark writes: every sample, and what they were measured on. The report
// (report/*.ts) is derived from it alone, so a results.json can be re-rendered or compared later.
import type { DatapathName, EndpointChange, Footprint, Programming } from './datapaths/datapath.js';
import type { MachineDescription } from './machine.js';
import type { BenchOptions } from './options.js';
import type { RunResult } from './workloads.js';

export const RESULTS_FORMAT = 'socklb-bench/1';

export interface BenchResults {
  format: typeof RESULTS_FORMAT;
  startedAt: string;
  finishedAt: string;
  /** A smoke test: its figures are not to be quoted. */
  quick: boolean;
  /** Every traffic run was recorded by `perf record --all-cpus` (--perf), which takes CPU from it; absent: not. */
  perfRecorded?: boolean;
  machine: MachineDescription;
  options: Omit<BenchOptions, 'output' | 'perfDirectory'>;
  datapaths: { name: DatapathName; description: string }[];
  /** Datapaths that could not be measured on this machine, and why (IPVS without ip_vs). */
  unavailable: { name: string; reason: string }[];
  scales: ScaleResult[];
  /** Every traffic run, in the order run. */
  samples: TrafficSample[];
}

export interface ScaleResult {
  services: number;
  /** Endpoints of all Service ports together. */
  endpoints: number;
  programming: ({ datapath: DatapathName } & Programming)[];
  endpointChanges: { datapath: DatapathName; changes: EndpointChange[] }[];
  /** /proc/loadavg when the scale started: other work on the machine shows here. */
  loadAverage: string;
  footprints: { datapath: DatapathName; footprint: Footprint }[];
  /** Datapaths that cannot be measured at this scale on this machine, and why. */
  notMeasured: { datapath: DatapathName; reason: string }[];
  /** Whatever failed at this scale; the run went on without it. */
  failures: { datapath: DatapathName; stage: string; reason: string }[];
}

export interface TrafficSample extends RunResult {
  services: number;
  /** From 1. */
  round: number;
}
