// The maps the programs fill themselves (the connection map, the affinity LRU), which the agent's
// state knows nothing of: counted from the kernel at every scrape of /metrics and every check
// period, and a warning logged once when the connection map starts evicting, and once more when
// it is back under its recovery threshold (src/datapath/map-pressure.ts).

import { evictionThreshold, mapPressure, pressureMessage, recoveryThreshold, type MapFill } from '../datapath/map-pressure.js';
import type { Logger } from '../log.js';

/** A map the programs write, counted on demand. */
export interface CountedMap {
  readonly name: string;
  readonly type: string;
  readonly capacity: number;
  /** Whether its evictions deserve a warning: they lose something a user sees. */
  readonly warnOnEviction: boolean;
  count(): number;
}

export class MapPressureWatch {
  /** The maps currently reported as evicting, by name. */
  private readonly evicting = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly maps: readonly CountedMap[],
    private readonly possibleCpus: number,
    private readonly logger: Logger,
  ) {}

  /** Counts every map, logs what changed, and returns their fills. A map that cannot be read is logged and left out. */
  check(): MapFill[] {
    const fills: MapFill[] = [];
    for (const map of this.maps) {
      let entries: number;
      try {
        entries = map.count();
      } catch (error) {
        this.logger.warn({ map: map.name, err: error }, `cannot count the entries of ${map.name}`);
        continue;
      }
      const fill = { name: map.name, type: map.type, entries, capacity: map.capacity };
      fills.push(fill);
      if (map.warnOnEviction) this.report(fill);
    }
    return fills;
  }

  /** Checks every `intervalMs` as well, so that the warning comes without a scrape. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Each map's name and capacity, without counting. */
  capacities(): { name: string; capacity: number }[] {
    return this.maps.map(({ name, capacity }) => ({ name, capacity }));
  }

  private report(fill: MapFill & { entries: number }): void {
    const fields = {
      map: fill.name,
      entries: fill.entries,
      capacity: fill.capacity,
      threshold: evictionThreshold(fill.capacity, this.possibleCpus),
    };
    if (!this.evicting.has(fill.name)) {
      if (mapPressure(fill, this.possibleCpus) !== 'evicting') return;
      this.evicting.add(fill.name);
      this.logger.warn(fields, pressureMessage(fill, 'evicting'));
    } else if (fill.entries < recoveryThreshold(fill.capacity, this.possibleCpus)) {
      this.evicting.delete(fill.name);
      this.logger.info(fields, `${fill.name} is no longer evicting (${fill.entries} of ${fill.capacity} entries)`);
    }
  }
}
