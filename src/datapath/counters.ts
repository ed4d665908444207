// Reading the programs' per-frontend counters (socklb_stats_v1) and naming
// them: for `socklb stats`, for /metrics and for tests.

import type { Protocol, ServicePortRef } from '../model/types.js';
import { serviceText } from './dump.js';
import { MAP_CODECS, sumPerCpu, ZERO_COUNTERS, type FrontendCounters } from './layout.js';
import type { BpfMap } from './maps.js';
import type { DatapathState, FrontendEntry } from './state.js';

/**
 * Up to this many ids are looked up one by one; more are read with the whole
 * map (batched on a kernel array). Measured in CPU time on 2 CPUs at 65537
 * entries: a lookup costs about 4.5 µs (65536 of them 300 ms), a batched read
 * of the whole map 44 ms, so lookups win below about 10000 ids; 1024 keeps a
 * small scrape well under the whole read.
 */
const LOOKUP_LIMIT = 1024;

/** Each service id's counters summed over CPUs; an id the map has no entry for counts 0. */
export function readCounters(stats: BpfMap, serviceIds: Iterable<number>): Map<number, FrontendCounters> {
  const wanted = new Set(serviceIds);
  const counters = new Map<number, FrontendCounters>();
  if (wanted.size <= LOOKUP_LIMIT) {
    for (const id of wanted) {
      const value = stats.lookup(MAP_CODECS.stats.key.encode(id));
      counters.set(id, value ? sumPerCpu(value) : { ...ZERO_COUNTERS });
    }
    return counters;
  }
  for (const [key, value] of stats.entries()) {
    const id = MAP_CODECS.stats.key.decode(key);
    if (wanted.has(id)) counters.set(id, sumPerCpu(value));
  }
  for (const id of wanted) if (!counters.has(id)) counters.set(id, { ...ZERO_COUNTERS });
  return counters;
}

/** Each frontend (by its key), its entry, its Service port's name (undefined when the maps hold none) and its counters. */
function countedFrontends(
  state: DatapathState,
  stats: BpfMap,
): { frontend: string; entry: FrontendEntry; name: ServicePortRef | undefined; counters: FrontendCounters }[] {
  const counters = readCounters(
    stats,
    [...state.frontends.values()].map((entry) => entry.serviceId),
  );
  return [...state.frontends].map(([frontend, entry]) => ({
    frontend,
    entry,
    name: state.serviceNames.get(entry.serviceId),
    counters: counters.get(entry.serviceId) ?? ZERO_COUNTERS,
  }));
}

/**
 * The counters' index that no frontend is given: the programs count there, as refused, the calls
 * to a service address that no frontend serves (a cluster IP's other ports, the rest of the
 * service CIDRs).
 */
export const UNSERVED_ADDRESS_SERVICE_ID = 0;

/** Calls refused because they went to a service address no frontend serves, summed over CPUs. */
export function unservedAddressRefusals(stats: BpfMap): number {
  return readCounters(stats, [UNSERVED_ADDRESS_SERVICE_ID]).get(UNSERVED_ADDRESS_SERVICE_ID)?.refused ?? 0;
}

/** One frontend's counters, as `socklb stats` shows them. */
export interface FrontendStats extends FrontendCounters {
  frontend: string;
  /** `namespace/name:port`, or '' when the maps hold no name for it. */
  service: string;
  serviceId: number;
}

/**
 * Every frontend's counters, sorted by service, then frontend; then, with service id 0 and no
 * frontend or service, the calls refused because they went to a service address no frontend serves.
 */
export function describeStats(state: DatapathState, stats: BpfMap): FrontendStats[] {
  const frontends = countedFrontends(state, stats)
    .map(({ frontend, entry, name, counters }) => ({
      frontend,
      service: name ? serviceText(name) : '',
      serviceId: entry.serviceId,
      ...counters,
    }))
    .sort((a, b) => a.service.localeCompare(b.service) || a.frontend.localeCompare(b.frontend));
  const unserved = { ...ZERO_COUNTERS, refused: unservedAddressRefusals(stats) };
  return [...frontends, { frontend: '', service: '', serviceId: UNSERVED_ADDRESS_SERVICE_ID, ...unserved }];
}

/**
 * The labels of one frontend's series: its Service port, the unit kube-proxy-style
 * dashboards chart, and the frontend (`socklb services`' key), so that a series
 * only ever grows until its frontend leaves.
 */
export interface FrontendSeriesLabels {
  namespace: string;
  service: string;
  port: string;
  protocol: Protocol;
  frontend: string;
}

/**
 * Counters per frontend, for /metrics. One series each, not a sum per Service
 * port: a sum would drop when one of its frontends (a family, a NodePort, an
 * external IP) leaves, which Prometheus takes for a counter reset. Frontends
 * whose Service name is missing are left out: they have no labels to go under.
 */
export function countersByFrontend(state: DatapathState, stats: BpfMap): { labels: FrontendSeriesLabels; counters: FrontendCounters }[] {
  return countedFrontends(state, stats).flatMap(({ frontend, entry, name, counters }) =>
    name
      ? [
          {
            labels: { namespace: name.namespace, service: name.name, port: name.portName, protocol: entry.key.protocol, frontend },
            counters,
          },
        ]
      : [],
  );
}
