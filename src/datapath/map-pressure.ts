// When a map's fill becomes a problem, from its entries and capacity: pure, for `socklb status`,
// /metrics and the agent's warning.
//
// A hash map that is full refuses the agent's writes (each is reported and retried). An LRU map
// never refuses: the programs' insertions take the least recently used entry instead, and the
// kernel counts no such eviction. It starts before the map is full: each CPU keeps a few free
// elements of its own (kernel/bpf/bpf_lru_list.c), and a CPU whose own list and the shared one
// are empty evicts while the other CPUs still hold theirs. So an LRU map is taken for evicting
// once its entries reach its capacity less those per-CPU reserves.

import { MAP_NAMES } from './layout.js';
import { capacityFlag } from './maps.js';

/** A map's fill: entries null where counting says nothing (an array) or cannot be done (socket storage). */
export interface MapFill {
  name: string;
  /** As bpftool prints it: hash, lru_hash, lpm_trie, percpu_array... */
  type: string;
  entries: number | null;
  capacity: number;
}

/** full: the agent's writes are refused; evicting: the programs' insertions replace old entries. */
export type MapPressure = 'full' | 'evicting';

/** bpf_lru_list.c's LOCAL_FREE_TARGET: the most free elements a CPU keeps for itself. */
const LOCAL_FREE_TARGET = 128;

/**
 * The entries from which an LRU map of `capacity` may evict, with `possibleCpus`. Since Linux
 * 6.16 a CPU keeps at most half its share of the map (clamp(capacity / CPUs / 2, 1, 128)),
 * before it at most 128 whatever the size: the same for maps of a few thousand entries and more.
 */
export function evictionThreshold(capacity: number, possibleCpus: number): number {
  const perCpu = Math.min(LOCAL_FREE_TARGET, Math.max(1, Math.floor(capacity / possibleCpus / 2)));
  return Math.max(1, capacity - possibleCpus * perCpu);
}

const LRU_TYPES = new Set(['lru_hash', 'lru_percpu_hash']);

export function isLruType(type: string): boolean {
  return LRU_TYPES.has(type);
}

/** The pressure a map is under; undefined for none, or for a map whose entries are not counted. */
export function mapPressure(fill: MapFill, possibleCpus: number): MapPressure | undefined {
  if (fill.entries === null || fill.capacity === 0) return undefined;
  if (isLruType(fill.type)) return fill.entries >= evictionThreshold(fill.capacity, possibleCpus) ? 'evicting' : undefined;
  return fill.entries >= fill.capacity ? 'full' : undefined;
}

/**
 * Back under this many entries, an evicting map counts as recovered: a tenth of its capacity
 * below the threshold, so that a map hovering at the threshold is not reported at every check.
 */
export function recoveryThreshold(capacity: number, possibleCpus: number): number {
  return evictionThreshold(capacity, possibleCpus) - Math.ceil(capacity / 10);
}

/** Each map's fill as a percentage with one decimal, `-` where its entries are not counted. */
export function fillText(fill: MapFill): string {
  return fill.entries === null || fill.capacity === 0 ? '-' : `${((100 * fill.entries) / fill.capacity).toFixed(1)}%`;
}

/** What an evicting LRU map costs, by map name. */
const EVICTION_COSTS: Record<string, string> = {
  [MAP_NAMES.connections]: 'a translated TCP connection whose entry is evicted has getpeername() answer with the backend, not the Service',
  [MAP_NAMES.affinity]: 'a ClientIP-affinity client whose entry is evicted may get another backend before its timeout',
};

/** One sentence: the map, its pressure, what it costs and what to do. */
export function pressureMessage(fill: MapFill, pressure: MapPressure): string {
  const flag = capacityFlag(fill.name);
  const fix = flag === undefined ? `its size (${fill.capacity}) is fixed` : `raise ${flag}`;
  const counted = `${fill.entries} of ${fill.capacity} entries`;
  if (pressure === 'full') return `${fill.name} is full (${counted}): the agent's writes to it are refused and retried; ${fix}`;
  const cost = EVICTION_COSTS[fill.name] ?? 'the least recently used entries are replaced';
  return `${fill.name} may be evicting (${counted}): ${cost}; ${fix}`;
}
