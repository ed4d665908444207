// Health as probes read it. /healthz keeps kube-proxy's semantics (its
// ProxierHealthServer), so that existing readiness probes work unchanged:
// healthy while no datapath update has been waiting longer than the timeout,
// answered with lastUpdated and currentTime, 200 or 503. It differs in one
// point: it is unhealthy until the first sync, where kube-proxy answers 200 for
// its first timeout, so that a rolling update waits for each agent to have its
// state in.
//
// /livez answers 200 whenever the agent answers at all. An update that waits
// is a write the kernel refused (a full map, most often), retried with backoff:
// a restart cannot make room, and would hold back every other Service's
// updates while the agent starts again, which kube-proxy's /livez, the same
// verdict as its /healthz, would have the kubelet do in a loop.

export interface HealthStatus {
  healthy: boolean;
  lastUpdated: Date;
  currentTime: Date;
}

export class ProxyHealth {
  private lastUpdated: number;
  /** Since when an update has been waiting (writes failed and are being retried); undefined when none. */
  private pendingSince: number | undefined;
  private syncedOnce = false;

  constructor(
    private readonly timeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.lastUpdated = now();
  }

  /** A sync ran; `failed`: some of its writes are being retried, so an update waits. */
  recordSync(failed: boolean): void {
    this.syncedOnce = true;
    if (failed) this.pendingSince ??= this.now();
    else {
      this.lastUpdated = this.now();
      this.pendingSince = undefined;
    }
  }

  /** Ready: the first sync is done and no update has waited longer than the timeout. */
  status(): HealthStatus {
    const now = this.now();
    return {
      healthy: this.syncedOnce && (this.pendingSince === undefined || now - this.pendingSince < this.timeoutMs),
      lastUpdated: new Date(this.lastUpdated),
      currentTime: new Date(now),
    };
  }
}
