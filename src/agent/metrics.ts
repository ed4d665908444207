// Prometheus metrics: kube-proxy's names for what dashboards already chart,
// socklb's own for what only socklb has.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { countersByServicePort } from '../datapath/counters.js';
import type { DatapathMaps, MapRole } from '../datapath/maps.js';
import type { DatapathState } from '../datapath/state.js';
import type { SyncResult } from './agent.js';

// kube-proxy's buckets: exponential from 1 ms.
const SYNC_BUCKETS = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384];

export interface MetricsSource {
  readonly datapath: DatapathState;
  readonly maps: DatapathMaps;
  problemCount(): number;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly syncDuration: Histogram;
  private readonly lastSync: Gauge;
  private readonly programmingDuration: Histogram;
  private readonly serviceChanges: Counter;
  private readonly endpointChanges: Counter;
  private readonly failedFrontends: Counter;

  constructor(source: MetricsSource) {
    const registers = [this.registry];
    // The event loop lag is sampled once a second, not every 10 ms (prom-client's default): that
    // timer alone woke the idle agent 100 times a second (docs/footprint.md).
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 1000 });
    this.syncDuration = new Histogram({ name: 'kubeproxy_sync_proxy_rules_duration_seconds', help: 'Time to bring the datapath in step with a change', buckets: SYNC_BUCKETS, registers });
    this.lastSync = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', help: 'When the datapath was last brought in step', registers });
    this.programmingDuration = new Histogram({
      name: 'kubeproxy_network_programming_duration_seconds',
      help: 'Time from a change being seen by the source to the datapath reflecting it',
      buckets: SYNC_BUCKETS,
      registers,
    });
    this.serviceChanges = new Counter({ name: 'kubeproxy_sync_proxy_rules_service_changes_total', help: 'Service changes seen', registers });
    this.endpointChanges = new Counter({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total', help: 'EndpointSlice changes seen', registers });
    this.failedFrontends = new Counter({ name: 'socklb_frontend_update_failures_total', help: 'Frontend updates the kernel refused (retried with backoff)', registers });

    // The counters' array has every entry from the start: its fill says nothing.
    const roles = ['frontends', 'slots', 'backends', 'serviceNames'] as const satisfies readonly MapRole[];
    new Gauge({
      name: 'socklb_map_entries',
      help: 'Entries in each socklb map',
      labelNames: ['map'],
      registers,
      collect() {
        const state = source.datapath;
        const slots = [...state.slots.values()].reduce((sum, bySlot) => sum + bySlot.size, 0);
        const counts: Record<(typeof roles)[number], number> = { frontends: state.frontends.size, slots, backends: state.backends.size, serviceNames: state.serviceNames.size };
        for (const role of roles) this.set({ map: source.maps[role].name }, counts[role]);
      },
    });
    new Gauge({
      name: 'socklb_map_capacity',
      help: 'Maximum entries of each socklb map',
      labelNames: ['map'],
      registers,
      collect() {
        for (const role of roles) this.set({ map: source.maps[role].name }, source.maps[role].maxEntries);
      },
    });
    this.registerCounters(source);
    new Gauge({
      name: 'socklb_input_problems',
      help: 'Objects or files currently rejected (each is logged once with its reason)',
      registers,
      collect() {
        this.set(source.problemCount());
      },
    });
  }

  /**
   * The programs' per-frontend counters, summed per Service port at scrape
   * time. The map is read once per scrape, by the first counter's collect
   * (the registry collects in registration order), which sets all four.
   */
  private registerCounters(source: MetricsSource): void {
    const labelNames = ['namespace', 'service', 'port', 'protocol'] as const;
    const registers = [this.registry];
    const counter = (name: string, help: string, collect?: () => void) => new Counter({ name, help, labelNames, registers, ...(collect ? { collect } : {}) });
    // Registered first, so that its collect runs before the others are read.
    const connects = counter('socklb_connections_translated_total', 'connect() calls sent to an endpoint of the Service port', () => {
      for (const metric of [connects, refused, datagrams, reverseNat]) metric.reset();
      for (const { labels, counters } of countersByServicePort(source.datapath, source.maps.stats)) {
        connects.inc(labels, Number(counters.connects));
        refused.inc(labels, Number(counters.refused));
        datagrams.inc(labels, Number(counters.datagrams));
        reverseNat.inc(labels, Number(counters.reverseNat));
      }
    });
    const refused = counter('socklb_connections_refused_total', 'connect() and sendmsg() calls refused at once (ECONNREFUSED) because the Service port has no endpoint');
    const datagrams = counter('socklb_datagrams_translated_total', 'Datagrams of unconnected UDP sockets sent to an endpoint of the Service port');
    const reverseNat = counter('socklb_reverse_nat_total', 'getpeername() and recvmsg() answers rewritten from the endpoint to the Service port');
  }

  recordSync(result: SyncResult): void {
    this.syncDuration.observe(result.durationMs / 1000);
    this.lastSync.setToCurrentTime();
    this.serviceChanges.inc(result.serviceChanges);
    this.endpointChanges.inc(result.endpointChanges);
    this.failedFrontends.inc(result.failed);
    if (result.changeSeenAt !== undefined && result.failed === 0) this.programmingDuration.observe((Date.now() - result.changeSeenAt) / 1000);
  }
}
