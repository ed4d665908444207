// Map pressure without a kernel: when a map counts as full or evicting, the agent's warning for
// the connection map (once, then once more after it recovers), and the fill /metrics exports.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { MapPressureWatch, type CountedMap } from '../../src/agent/map-pressure-watch.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { evictionThreshold, mapPressure, recoveryThreshold } from '../../src/datapath/map-pressure.js';
import { checkCounterMemory, counterMemory } from '../../src/datapath/maps.js';
import { memoryMaps } from '../../src/datapath/memory-maps.js';
import { DatapathState } from '../../src/datapath/state.js';

describe('map pressure', () => {
  it('an LRU map may evict once its entries reach its capacity less what each CPU keeps free for itself', () => {
    // 128 free elements per CPU at most; since Linux 6.16, half a CPU's share of a small map.
    assert.equal(evictionThreshold(131072, 2), 131072 - 2 * 128);
    assert.equal(evictionThreshold(131072, 64), 131072 - 64 * 128);
    assert.equal(evictionThreshold(64, 2), 64 - 2 * 16);
    assert.equal(evictionThreshold(4, 8), 1, 'a map smaller than the CPUs may evict from its first entry');
    assert.equal(recoveryThreshold(64, 2), 32 - 7);
  });

  it('a hash map is under pressure when full, an LRU map from its eviction threshold, an array never', () => {
    const cpus = 2;
    assert.equal(mapPressure({ name: 'socklb_fe_v3', type: 'hash', entries: 3, capacity: 4 }, cpus), undefined);
    assert.equal(mapPressure({ name: 'socklb_fe_v3', type: 'hash', entries: 4, capacity: 4 }, cpus), 'full');
    assert.equal(mapPressure({ name: 'socklb_range_v1', type: 'lpm_trie', entries: 256, capacity: 256 }, cpus), 'full');
    assert.equal(mapPressure({ name: 'socklb_conn_v1', type: 'lru_hash', entries: 31, capacity: 64 }, cpus), undefined);
    assert.equal(mapPressure({ name: 'socklb_conn_v1', type: 'lru_hash', entries: 32, capacity: 64 }, cpus), 'evicting');
    assert.equal(mapPressure({ name: 'socklb_stats_v1', type: 'percpu_array', entries: null, capacity: 5 }, cpus), undefined);
    assert.equal(mapPressure({ name: 'socklb_sock_v2', type: 'sk_storage', entries: null, capacity: 0 }, cpus), undefined);
  });
});

/** A map whose count the test sets. */
function countedMap(name: string, capacity: number, warnOnEviction: boolean): CountedMap & { entries: number } {
  return {
    name,
    type: 'lru_hash',
    capacity,
    warnOnEviction,
    entries: 0,
    count() {
      return this.entries;
    },
  };
}

function capturingLogger() {
  const logs: { level: number; msg: string; map?: string; entries?: number; threshold?: number }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as (typeof logs)[number]) });
  return { logger, logs };
}

const WARN = 40;
const INFO = 30;

describe('MapPressureWatch', () => {
  it('warns once when the connection map starts evicting, says once when it recovers, and warns again after', () => {
    const connections = countedMap('socklb_conn_v1', 64, true);
    const { logger, logs } = capturingLogger();
    const watch = new MapPressureWatch([connections], 2, logger);
    const at = (entries: number) => {
      connections.entries = entries;
      watch.check();
    };
    at(10);
    at(31);
    assert.equal(logs.length, 0, 'nothing below the threshold');
    at(32);
    at(64);
    at(40);
    at(26);
    assert.equal(logs.length, 1, 'one warning while it stays above its recovery threshold');
    assert.equal(logs[0]?.level, WARN);
    assert.equal(logs[0]?.map, 'socklb_conn_v1');
    assert.equal(logs[0]?.entries, 32);
    assert.equal(logs[0]?.threshold, 32);
    assert.match(logs[0]?.msg ?? '', /^socklb_conn_v1 may be evicting \(32 of 64 entries\): .*; raise --max-connections$/);
    at(24);
    at(10);
    assert.equal(logs.length, 2);
    assert.equal(logs[1]?.level, INFO);
    assert.equal(logs[1]?.msg, 'socklb_conn_v1 is no longer evicting (24 of 64 entries)');
    at(50);
    assert.equal(logs.length, 3);
    assert.equal(logs[2]?.level, WARN);
  });

  it('counts a map whose evictions are expected without warning, and logs a map it cannot count, leaving it out', () => {
    const affinity = countedMap('socklb_aff_v1', 64, false);
    affinity.entries = 64;
    const broken: CountedMap = {
      name: 'socklb_conn_v1',
      type: 'lru_hash',
      capacity: 64,
      warnOnEviction: true,
      count: () => {
        throw new Error('bpf_map_lookup_batch(socklb_conn_v1): EPERM');
      },
    };
    const { logger, logs } = capturingLogger();
    const fills = new MapPressureWatch([affinity, broken], 2, logger).check();
    assert.deepEqual(fills, [{ name: 'socklb_aff_v1', type: 'lru_hash', entries: 64, capacity: 64 }]);
    assert.equal(logs.length, 1);
    assert.equal(logs[0]?.msg, 'cannot count the entries of socklb_conn_v1');
  });

  it("exports the programs' maps beside the agent's in socklb_map_entries and socklb_map_capacity, counted at each scrape", async () => {
    const maps = memoryMaps();
    const connections = countedMap('socklb_conn_v1', 64, true);
    const affinity = countedMap('socklb_aff_v1', 65536, false);
    const { logger, logs } = capturingLogger();
    const watch = new MapPressureWatch([connections, affinity], 2, logger);
    const metrics = new AgentMetrics(
      { datapath: DatapathState.read(maps), maps, problemCount: () => 0 },
      { failingAttachments: () => [] },
      { list: () => [] },
      watch,
    );
    connections.entries = 12;
    affinity.entries = 3;
    let text = await metrics.render();
    assert.match(text, /^socklb_map_entries\{map="socklb_conn_v1"\} 12$/m);
    assert.match(text, /^socklb_map_entries\{map="socklb_aff_v1"\} 3$/m);
    assert.match(text, /^socklb_map_capacity\{map="socklb_conn_v1"\} 64$/m);
    assert.match(text, /^socklb_map_capacity\{map="socklb_aff_v1"\} 65536$/m);
    assert.match(text, /^socklb_map_entries\{map="socklb_fe_v3"\} 0$/m, "the agent's maps are still there");
    connections.entries = 64;
    text = await metrics.render();
    assert.match(text, /^socklb_map_entries\{map="socklb_conn_v1"\} 64$/m);
    assert.equal(logs.filter((line) => line.level === WARN).length, 1, 'a scrape that finds the map evicting warns');
  });
});

describe('--max-counter-memory', () => {
  it("sizes the counters as the kernel allocates them: each entry's copy per possible CPU and a pointer to them", () => {
    // bytes_memlock of the default map on 2 CPUs was 4718976 (docs/operations.md): the formula less the map's own header.
    assert.equal(counterMemory(65536, 2), 65537 * (32 * 2 + 8));
    assert.equal(counterMemory(65536, 64), 65537 * (32 * 64 + 8));
  });

  it('refuses counters over the bound, naming the most frontends that fit, and takes those that fit', () => {
    const limit = 64 * 2 ** 20;
    assert.doesNotThrow(() => checkCounterMemory(65536, 8, limit));
    assert.throws(
      () => checkCounterMemory(65536, 64, limit),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'SOCKLB_ERR_USAGE');
        assert.equal(
          error.message,
          `the counters of --max-frontends 65536 take ${65537 * 2056} bytes on 64 possible CPUs, over --max-counter-memory ${limit}: ` +
            'lower --max-frontends to 32639 or less, or raise --max-counter-memory',
        );
        return true;
      },
    );
    assert.doesNotThrow(() => checkCounterMemory(32639, 64, limit), 'the count it names fits');
    assert.throws(() => checkCounterMemory(32640, 64, limit), /over --max-counter-memory/);
    assert.throws(() => checkCounterMemory(1, 64, 1000), /: raise --max-counter-memory$/, 'not even one frontend fits');
  });
});
