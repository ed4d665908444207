// kube-proxy's health semantics (its ProxierHealthServer), so that existing
// probes work unchanged: healthy while no datapath update has been waiting
// longer than the timeout; /healthz and /livez answer with lastUpdated and
// currentTime, 200 or 503.

export interface HealthStatus {
  healthy: boolean;
  lastUpdated: Date;
  currentTime: Date;
}

export class ProxyHealth {
  private lastUpdated: number;
  /** Since when an update has been waiting (writes failed and are being retried); undefined when none. */
  private pendingSince: number | undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.lastUpdated = now();
  }

  /** An update arrived that the datapath does not reflect yet. */
  updateQueued(): void {
    this.pendingSince ??= this.now();
  }

  /** The datapath reflects every update it was given. */
  updated(): void {
    this.lastUpdated = this.now();
    this.pendingSince = undefined;
  }

  status(): HealthStatus {
    const now = this.now();
    return {
      healthy: this.pendingSince === undefined || now - this.pendingSince < this.timeoutMs,
      lastUpdated: new Date(this.lastUpdated),
      currentTime: new Date(now),
    };
  }
}
