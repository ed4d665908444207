// What the benchmark asks of each datapath. Every datapath has a client namespace (and cgroup) of
// its own on the shared bridge, so that its rules, conntrack and programs touch no other
// datapath's traffic.
import type { Sandbox } from '../../test/lab/lab.js';
import type { BenchPort, BenchService, Catalog } from '../catalog.js';

export type DatapathName = 'direct' | 'socklb' | 'iptables' | 'nftables';

/** Where a client connects for one service port. */
export interface Target {
  host: string;
  port: number;
  /** host:port addresses to spread wrk's threads over instead (the direct datapath). */
  spreadOver?: string[];
}

/** Loading one scale's Services into the datapath from nothing. */
export interface Programming {
  /** Wall time from the first write to a datapath that translates every Service. */
  seconds: number;
  /** Datapath-specific detail, named for the report (e.g. the agent's own sync time). */
  detail: Record<string, number | string>;
}

/** Thrown by program() when a datapath cannot be measured at a scale on this machine; says why. */
export class NotMeasured extends Error {}

/** One endpoint change, applied and visible in the datapath. */
export interface EndpointChange {
  /** From the first write to the datapath holding the change. */
  latencyMs: number;
  /** Datapath-specific parts of it, in milliseconds (e.g. the agent's own sync time). */
  detail: Record<string, number>;
}

/** What the control plane holds once programmed, for the report. */
export type Footprint = Record<string, number | string>;

export interface Datapath {
  readonly name: DatapathName;
  readonly client: Sandbox;
  /** One sentence for the report: how the datapath is built. */
  readonly description: string;
  /** Programs `catalog`'s Services into an empty datapath; undefined when there is nothing to program. */
  program(catalog: Catalog): Promise<Programming | undefined>;
  /**
   * Applies the k-th change (k from 1) of bench-churn's endpoints (churnEndpoints) and resolves
   * once the datapath holds it. Absent: the datapath has no Services.
   */
  changeEndpoints?(catalog: Catalog, k: number): Promise<EndpointChange>;
  /**
   * Called once the control-plane measurements are done and before any traffic: reports what the
   * control plane holds, and stops whatever must not compete with the traffic for CPU.
   */
  finishControlPlane?(): Promise<Footprint>;
  target(service: BenchService, port: BenchPort): Target;
  /** Back to no Services, ready for the next scale. */
  clear(): Promise<void>;
}
