// The agent's own view for `socklb status`, served as JSON at /statusz on the
// metrics address (a z-page, as Kubernetes components serve them): when it
// last synced, what it could not do (frontends and addresses the kernel refused,
// objects it rejected) and the attachments it repaired. What the maps hold, and whether
// each pinned link serves, is read by `status` itself.

import type { DatapathState } from '../datapath/state.js';
import type { InputProblem } from '../model/types.js';
import type { AttachmentRepair } from './attachment-keeper.js';
import type { HealthStatus } from './health.js';

export interface StatusSource {
  readonly datapath: DatapathState;
  problems(): InputProblem[];
  failures(): { frontend: string; error: string }[];
  addressFailures(): { address: string; error: string }[];
}

/** The attachment keeper (attachment-keeper.ts). */
export interface RepairSource {
  recentRepairs(): AttachmentRepair[];
}

/** What /statusz answers. */
export interface AgentStatusReport {
  pid: number;
  startedAt: string;
  /** The last sync, whatever its outcome; null before the first. */
  lastSync: string | null;
  /** /healthz's verdict and the last time every update was in the datapath. */
  healthy: boolean;
  lastUpdated: string;
  frontends: number;
  backends: number;
  /** Frontends that did not fit or that the kernel refused; retried with backoff. */
  failedFrontends: { frontend: string; error: string }[];
  /** Cluster IPs and service CIDRs the kernel refused (`cluster IP 10.96.0.1`); retried. */
  failedAddresses: { address: string; error: string }[];
  /** Objects or files rejected, each with its reason. */
  inputProblems: InputProblem[];
  /** The latest attachments found not serving their cgroup and what was done, the latest first. */
  attachmentRepairs: AttachmentRepair[];
}

export class AgentStatus {
  private readonly startedAt: number;
  private lastSync: number | undefined;

  constructor(
    private readonly source: StatusSource,
    private readonly repairs: RepairSource,
    private readonly now: () => number = Date.now,
  ) {
    this.startedAt = now();
  }

  recordSync(): void {
    this.lastSync = this.now();
  }

  report(health: HealthStatus): AgentStatusReport {
    return {
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      lastSync: this.lastSync === undefined ? null : new Date(this.lastSync).toISOString(),
      healthy: health.healthy,
      lastUpdated: health.lastUpdated.toISOString(),
      frontends: this.source.datapath.frontends.size,
      backends: this.source.datapath.backends.size,
      failedFrontends: this.source.failures(),
      failedAddresses: this.source.addressFailures(),
      inputProblems: this.source.problems(),
      attachmentRepairs: this.repairs.recentRepairs(),
    };
  }
}
