// Prometheus metrics: kube-proxy's names for what dashboards already chart,
// socklb's own for what only socklb has.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { countersByFrontend, unservedAddressRefusals, type FrontendSeriesLabels } from '../datapath/counters.js';
import type { FrontendCounters } from '../datapath/layout.js';
import type { DatapathMaps, MapRole } from '../datapath/maps.js';
import type { DatapathState } from '../datapath/state.js';
import type { SyncResult } from './agent.js';
import type { GuestEntry } from '../sandbox/protocol.js';
import type { Attachment, AttachmentRepair } from './attachment-keeper.js';

// kube-proxy's buckets: exponential from 1 ms.
const SYNC_BUCKETS = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384];

export interface MetricsSource {
  readonly datapath: DatapathState;
  readonly maps: DatapathMaps;
  problemCount(): number;
}

/** The guests of guest mode (src/guest/hub.ts). */
export interface GuestsSource {
  list(): GuestEntry[];
}

/** The attachment keeper (attachment-keeper.ts). */
export interface AttachmentSource {
  failingAttachments(): Attachment[];
}

/** The maps the programs fill, counted from the kernel (map-pressure-watch.ts). */
export interface ProgramMapsSource {
  check(): { name: string; entries: number | null }[];
  capacities(): { name: string; capacity: number }[];
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly syncDuration: Histogram;
  private readonly lastSync: Gauge;
  private readonly programmingDuration: Histogram;
  private readonly serviceChanges: Counter;
  private readonly endpointChanges: Counter;
  private readonly failedFrontends: Counter;
  private readonly failedAddresses: Counter;
  private readonly attachmentRepairs: Counter;

  constructor(
    private readonly source: MetricsSource,
    attachments: AttachmentSource,
    guests: GuestsSource,
    programMaps: ProgramMapsSource,
  ) {
    const registers = [this.registry];
    // The event loop lag is sampled once a second, not every 10 ms (prom-client's default): that
    // timer alone woke the idle agent 100 times a second (docs/footprint.md).
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 1000 });
    this.syncDuration = new Histogram({
      name: 'kubeproxy_sync_proxy_rules_duration_seconds',
      help: 'Time to bring the datapath in step with a change',
      buckets: SYNC_BUCKETS,
      registers,
    });
    this.lastSync = new Gauge({
      name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
      help: 'When the datapath was last brought in step',
      registers,
    });
    this.programmingDuration = new Histogram({
      name: 'kubeproxy_network_programming_duration_seconds',
      help: 'Time from a change being seen by the source to the datapath reflecting it',
      buckets: SYNC_BUCKETS,
      registers,
    });
    this.serviceChanges = new Counter({
      name: 'kubeproxy_sync_proxy_rules_service_changes_total',
      help: 'Service changes seen',
      registers,
    });
    this.endpointChanges = new Counter({
      name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total',
      help: 'EndpointSlice changes seen',
      registers,
    });
    this.failedFrontends = new Counter({
      name: 'socklb_frontend_update_failures_total',
      help: 'Frontend updates the kernel refused (retried with backoff)',
      registers,
    });
    this.failedAddresses = new Counter({
      name: 'socklb_address_update_failures_total',
      help: 'Cluster IP and service CIDR updates the kernel refused (retried with backoff)',
      registers,
    });

    // The counters' array has every entry from the start: its fill says nothing. The maps the
    // agent writes are counted in its state; those the programs fill, in the kernel.
    const roles = ['frontends', 'slots', 'backends', 'serviceNames', 'clusterIPs', 'serviceRanges'] as const satisfies readonly MapRole[];
    new Gauge({
      name: 'socklb_map_entries',
      help: 'Entries in each socklb map',
      labelNames: ['map'],
      registers,
      collect() {
        const state = source.datapath;
        const slots = [...state.slots.values()].reduce((sum, bySlot) => sum + bySlot.size, 0);
        const counts: Record<(typeof roles)[number], number> = {
          frontends: state.frontends.size,
          slots,
          backends: state.backends.size,
          serviceNames: state.serviceNames.size,
          clusterIPs: state.clusterIPs.size,
          serviceRanges: state.serviceRanges.size,
        };
        for (const role of roles) this.set({ map: source.maps[role].name }, counts[role]);
        for (const { name, entries } of programMaps.check()) if (entries !== null) this.set({ map: name }, entries);
      },
    });
    new Gauge({
      name: 'socklb_map_capacity',
      help: 'Maximum entries of each socklb map',
      labelNames: ['map'],
      registers,
      collect() {
        for (const role of roles) this.set({ map: source.maps[role].name }, source.maps[role].maxEntries);
        for (const { name, capacity } of programMaps.capacities()) this.set({ map: name }, capacity);
      },
    });
    this.attachmentRepairs = new Counter({
      name: 'socklb_attachment_repairs_total',
      help: 'Attachments found not serving their cgroup, by kind (cgroup or sandbox), reason and outcome (reattached, removed, failed)',
      labelNames: ['kind', 'reason', 'outcome'],
      registers,
    });
    new Gauge({
      name: 'socklb_attachments_failing',
      help: 'Attachments the last check could not make serve their cgroup, by kind (cgroup or sandbox)',
      labelNames: ['kind'],
      registers,
      collect() {
        const failing = attachments.failingAttachments();
        for (const kind of ['cgroup', 'sandbox'] as const)
          this.set({ kind }, failing.filter((attachment) => attachment.kind === kind).length);
      },
    });
    const perGuest = (name: string, help: string, value: (guest: GuestEntry) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ['guest'],
        registers,
        collect() {
          this.reset();
          for (const guest of guests.list()) {
            const measured = value(guest);
            if (measured !== undefined) this.set({ guest: guest.id }, measured);
          }
        },
      });
    perGuest('socklb_guest_connected', 'Whether the applier of each microVM guest is connected', (guest) =>
      guest.phase === 'disconnected' || guest.phase === 'unserved' ? 0 : 1,
    );
    perGuest(
      'socklb_guest_lag_syncs',
      "Syncs of this agent each guest has yet to acknowledge (absent while it holds another run's state)",
      (guest) => guest.lag,
    );
    perGuest('socklb_guest_queued_bytes', 'Bytes written to each guest and not yet taken by it', (guest) => guest.queuedBytes);
    new Counter({
      name: 'socklb_guest_snapshots_total',
      help: 'Snapshots sent to each guest since the agent started or the guest was registered',
      labelNames: ['guest'],
      registers,
      collect() {
        this.reset();
        for (const guest of guests.list()) this.inc({ guest: guest.id }, guest.snapshots);
      },
    });
    new Gauge({
      name: 'socklb_input_problems',
      help: 'Objects or files currently rejected (each is logged once with its reason)',
      registers,
      collect() {
        this.set(source.problemCount());
      },
    });
  }

  /** The Prometheus text of a scrape: the registry's metrics, then the counters the programs keep. */
  async render(): Promise<string> {
    const { datapath, maps } = this.source;
    return (
      `${await this.registry.metrics()}\n${formatFrontendCounters(countersByFrontend(datapath, maps.stats))}` +
      formatUnservedAddressCounter(unservedAddressRefusals(maps.stats))
    );
  }

  recordRepair(repair: AttachmentRepair): void {
    this.attachmentRepairs.inc({ kind: repair.kind, reason: repair.reason, outcome: repair.outcome });
  }

  recordSync(result: SyncResult): void {
    this.syncDuration.observe(result.durationMs / 1000);
    const complete = result.failed === 0 && result.failedAddresses === 0;
    // As kube-proxy's: the last sync that got everything in.
    if (complete) this.lastSync.setToCurrentTime();
    this.serviceChanges.inc(result.serviceChanges);
    this.endpointChanges.inc(result.endpointChanges);
    this.failedFrontends.inc(result.failed);
    this.failedAddresses.inc(result.failedAddresses);
    if (result.changeSeenAt !== undefined && complete) this.programmingDuration.observe((Date.now() - result.changeSeenAt) / 1000);
  }
}

/** The per-frontend counter families, with their help: see README.md, Operations. */
const FRONTEND_COUNTERS: readonly { name: string; help: string; counter: keyof FrontendCounters }[] = [
  {
    name: 'socklb_connections_translated_total',
    help: 'connect() calls to the frontend sent to an endpoint of its Service port',
    counter: 'connects',
  },
  {
    name: 'socklb_connections_refused_total',
    help: 'connect() and sendmsg() calls to the frontend refused at once (ECONNREFUSED) because its Service port has no endpoint',
    counter: 'refused',
  },
  {
    name: 'socklb_datagrams_translated_total',
    help: 'Datagrams of unconnected UDP sockets to the frontend sent to an endpoint of its Service port',
    counter: 'datagrams',
  },
  {
    name: 'socklb_reverse_nat_total',
    help: 'getpeername() and recvmsg() answers rewritten from the endpoint to the frontend',
    counter: 'reverseNat',
  },
];

/**
 * Written here rather than through prom-client Counters: at 65536 frontends
 * (four series each) a Counter's reset, per-label inc and formatting cost
 * seconds per scrape; this is one pass over the rows. The frontend label is
 * socklb's own text (an address, a port, a protocol): nothing to escape.
 */
function formatFrontendCounters(rows: readonly { labels: FrontendSeriesLabels; counters: FrontendCounters }[]): string {
  const labelText = rows.map(
    ({ labels }) =>
      `{namespace="${escapeLabel(labels.namespace)}",service="${escapeLabel(labels.service)}",port="${escapeLabel(labels.port)}",` +
      `protocol="${labels.protocol}",frontend="${labels.frontend}"}`,
  );
  const lines: string[] = [];
  for (const { name, help, counter } of FRONTEND_COUNTERS) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
    rows.forEach((row, index) => lines.push(`${name}${labelText[index]} ${row.counters[counter]}`));
  }
  return `${lines.join('\n')}\n`;
}

/** The calls refused at service id 0 (src/datapath/counters.ts): one series, of no frontend. */
function formatUnservedAddressCounter(refused: number): string {
  const name = 'socklb_unserved_address_refused_total';
  return (
    `# HELP ${name} connect() and sendmsg() calls refused at once (ECONNREFUSED) because they went to a service address ` +
    `no frontend serves: a cluster IP on a port or protocol its Service does not have, or an address of the service CIDRs no Service holds\n` +
    `# TYPE ${name} counter\n${name} ${refused}\n`
  );
}

/** The text format's escapes; Kubernetes names never need them, a hostile manifest might. */
function escapeLabel(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : value;
}
