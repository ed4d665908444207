// What socklb leaves untranslated (docs/sandboxes.md, "Leaving calls untranslated"): cgroups
// whose calls are all left alone (--skip-cgroup, `sandbox add --no-translate`), cgroups that
// leave some Services alone (--exclude-service, `sandbox add --exclude-service`), and the skip
// mark (--skip-mark). The programs look the caller's cgroup and its ancestors up by cgroup id in
// socklb_byp_v1, and an excluding cgroup's (cgroup id, frontend id) pairs in socklb_excl_v1;
// frontend ids change as Services come and go, so the pairs are rewritten after every sync.

import { BYPASS_ALL, BYPASS_MAP_CODECS, BYPASS_SOME, type Exclusion } from './layout.js';
import type { BpfMap } from './maps.js';
import { namespacedName } from '../model/kubernetes.js';
import type { ServicePortRef } from '../model/types.js';

/** One cgroup's calls left untranslated: all of them, or those to some Services. */
export interface BypassRule {
  cgroup: string;
  noTranslate: boolean;
  /** `namespace/name` of each Service left alone. */
  excludedServices: readonly string[];
}

/** What the maps should hold: cgroup id -> SOCKLB_BYPASS_* flags, and the excluded pairs. */
export interface BypassEntries {
  bypass: Map<bigint, number>;
  exclusions: Exclusion[];
}

/**
 * The entries `rules` ask for, given the frontends' service ids and names. Rules on one cgroup
 * add up; a cgroup that translates nothing needs no exclusions. `cgroupId` is undefined for a
 * cgroup that is gone: nothing of it can run, so nothing of it is written. Pure.
 */
export function bypassEntries(
  rules: readonly BypassRule[],
  cgroupId: (cgroup: string) => bigint | undefined,
  serviceNames: Iterable<[number, ServicePortRef]>,
): BypassEntries {
  const bypass = new Map<bigint, number>();
  const excludedBy = new Map<bigint, Set<string>>();
  for (const rule of rules) {
    const id = cgroupId(rule.cgroup);
    if (id === undefined) continue;
    let flags = bypass.get(id) ?? 0;
    if (rule.noTranslate) flags |= BYPASS_ALL;
    if (rule.excludedServices.length > 0) {
      flags |= BYPASS_SOME;
      const services = excludedBy.get(id) ?? new Set<string>();
      for (const service of rule.excludedServices) services.add(service);
      excludedBy.set(id, services);
    }
    if (flags !== 0) bypass.set(id, flags);
  }
  // A cgroup that translates nothing needs no exclusions; without any, the frontends are not read.
  for (const id of excludedBy.keys()) if ((bypass.get(id) ?? 0) & BYPASS_ALL) excludedBy.delete(id);
  const exclusions: Exclusion[] = [];
  if (excludedBy.size === 0) return { bypass, exclusions };
  for (const [serviceId, ref] of serviceNames) {
    const service = namespacedName(ref);
    for (const [id, services] of excludedBy) if (services.has(service)) exclusions.push({ cgroupId: id, serviceId });
  }
  return { bypass, exclusions };
}

export interface BypassMaps {
  config: BpfMap;
  bypass: BpfMap;
  exclusions: BpfMap;
}

const CODECS = BYPASS_MAP_CODECS;
const CONFIG_KEY = CODECS.config.key.encode(0);
const PRESENT = CODECS.exclusions.value.encode(0);

/**
 * Keeps the maps at what the rules ask for, writing only what changed since the last write (read
 * back once from the pinned maps, which an earlier agent may have filled). New entries go in
 * before the count that makes the programs walk the cgroups, removed ones after it.
 */
export class BypassWriter {
  private readonly bypass = new Map<string, Buffer>();
  private readonly exclusions = new Map<string, Buffer>();
  private config: Buffer | undefined;

  constructor(
    private readonly maps: BypassMaps,
    private readonly options: { skipMark: number; sameNetns: boolean },
  ) {
    for (const [key, value] of maps.bypass.entries()) this.bypass.set(key.toString('hex'), Buffer.from(value));
    for (const [key] of maps.exclusions.entries()) this.exclusions.set(key.toString('hex'), Buffer.from(key));
    const config = maps.config.lookup(CONFIG_KEY);
    this.config = config && Buffer.from(config);
  }

  write(entries: BypassEntries): void {
    const bypass = new Map(
      [...entries.bypass].map(([id, flags]) => [CODECS.bypass.key.encode(id), CODECS.bypass.value.encode(flags)] as const),
    );
    const exclusions = entries.exclusions.map((exclusion) => CODECS.exclusions.key.encode(exclusion));
    const wantedBypass = new Set([...bypass.keys()].map((key) => key.toString('hex')));
    const wantedExclusions = new Set(exclusions.map((key) => key.toString('hex')));
    for (const key of exclusions) {
      const hex = key.toString('hex');
      if (this.exclusions.has(hex)) continue;
      this.maps.exclusions.update(key, PRESENT);
      this.exclusions.set(hex, key);
    }
    for (const [key, value] of bypass) {
      const hex = key.toString('hex');
      if (this.bypass.get(hex)?.equals(value)) continue;
      this.maps.bypass.update(key, value);
      this.bypass.set(hex, value);
    }
    const config = CODECS.config.value.encode({ ...this.options, bypassCgroups: bypass.size });
    if (!this.config?.equals(config)) {
      this.maps.config.update(CONFIG_KEY, config);
      this.config = config;
    }
    for (const hex of this.bypass.keys()) {
      if (wantedBypass.has(hex)) continue;
      this.maps.bypass.delete(Buffer.from(hex, 'hex'));
      this.bypass.delete(hex);
    }
    for (const [hex, key] of this.exclusions) {
      if (wantedExclusions.has(hex)) continue;
      this.maps.exclusions.delete(key);
      this.exclusions.delete(hex);
    }
  }
}
