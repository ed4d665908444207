// What socklb leaves untranslated, as the maps hold it: the entries the rules ask for (pure), and
// the writer's order and idempotence against in-memory maps.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bypassEntries, BypassWriter, type BypassRule } from '../../src/datapath/bypass.js';
import { BYPASS_ALL, BYPASS_MAP_CODECS, BYPASS_SOME } from '../../src/datapath/layout.js';
import { MemoryMap } from '../../src/datapath/memory-maps.js';
import type { BpfMap } from '../../src/datapath/maps.js';

const ids = new Map([
  ['/cg/sidecar', 11n],
  ['/cg/app', 12n],
]);
const cgroupId = (cgroup: string) => ids.get(cgroup);
const names: [number, { namespace: string; name: string; portName: string }][] = [
  [1, { namespace: 'kube-system', name: 'kube-dns', portName: 'dns' }],
  [2, { namespace: 'kube-system', name: 'kube-dns', portName: 'dns-tcp' }],
  [3, { namespace: 'shop', name: 'web', portName: 'http' }],
];
const rule = (cgroup: string, noTranslate: boolean, ...excludedServices: string[]): BypassRule => ({
  cgroup,
  noTranslate,
  excludedServices,
});

describe('bypassEntries', () => {
  it('a no-translate cgroup is flagged ALL, and needs no exclusions', () => {
    assert.deepEqual(bypassEntries([rule('/cg/sidecar', true), rule('/cg/sidecar', false, 'shop/web')], cgroupId, names), {
      bypass: new Map([[11n, BYPASS_ALL | BYPASS_SOME]]),
      exclusions: [],
    });
  });
  it('an excluded Service is every one of its frontends, for that cgroup only; rules on one cgroup add up', () => {
    assert.deepEqual(bypassEntries([rule('/cg/app', false, 'kube-system/kube-dns'), rule('/cg/app', false, 'shop/web')], cgroupId, names), {
      bypass: new Map([[12n, BYPASS_SOME]]),
      exclusions: [
        { cgroupId: 12n, serviceId: 1 },
        { cgroupId: 12n, serviceId: 2 },
        { cgroupId: 12n, serviceId: 3 },
      ],
    });
  });
  it('a cgroup that is gone, a Service with no frontend, and a rule asking nothing write nothing', () => {
    assert.deepEqual(
      bypassEntries([rule('/cg/gone', true), rule('/cg/app', false, 'shop/none'), rule('/cg/sidecar', false)], cgroupId, names),
      {
        bypass: new Map([[12n, BYPASS_SOME]]),
        exclusions: [],
      },
    );
  });
});

/** Records every write in order. */
function recording(map: MemoryMap, log: string[]): BpfMap {
  return new Proxy(map, {
    get(target, property, receiver) {
      if (property === 'update' || property === 'delete')
        return (key: Buffer, value?: Buffer) => {
          log.push(`${property} ${target.name}`);
          return property === 'update' ? target.update(key, value as Buffer) : target.delete(key);
        };
      return Reflect.get(target, property, receiver) as unknown;
    },
  });
}

describe('BypassWriter', () => {
  const maps = () => ({
    config: new MemoryMap('socklb_cfg_v1', 1),
    bypass: new MemoryMap('socklb_byp_v1', 16),
    exclusions: new MemoryMap('socklb_excl_v1', 16),
  });
  const config = (map: BpfMap) =>
    BYPASS_MAP_CODECS.config.value.decode(map.lookup(BYPASS_MAP_CODECS.config.key.encode(0)) ?? Buffer.alloc(16));

  it('writes new entries before the count that makes the programs walk, removes old ones after it, and nothing twice', () => {
    const memory = maps();
    const log: string[] = [];
    const writer = new BypassWriter(
      { config: recording(memory.config, log), bypass: recording(memory.bypass, log), exclusions: recording(memory.exclusions, log) },
      { skipMark: 0x200, sameNetns: true },
    );
    const some = bypassEntries([rule('/cg/app', false, 'shop/web')], cgroupId, names);
    writer.write(some);
    assert.deepEqual(log.splice(0), ['update socklb_excl_v1', 'update socklb_byp_v1', 'update socklb_cfg_v1']);
    assert.deepEqual(config(memory.config), { skipMark: 0x200, bypassCgroups: 1, sameNetns: true });
    writer.write(some);
    assert.deepEqual(log.splice(0), []);
    writer.write(bypassEntries([], cgroupId, names));
    assert.deepEqual(log.splice(0), ['update socklb_cfg_v1', 'delete socklb_byp_v1', 'delete socklb_excl_v1']);
    assert.deepEqual(config(memory.config), { skipMark: 0x200, bypassCgroups: 0, sameNetns: true });
    assert.equal([...memory.bypass.entries()].length + [...memory.exclusions.entries()].length, 0);
  });

  it("starts from what the pinned maps hold: an earlier agent's entries are kept when still asked for, else removed", () => {
    const memory = maps();
    new BypassWriter(memory, { skipMark: 0, sameNetns: false }).write(
      bypassEntries([rule('/cg/app', false, 'shop/web'), rule('/cg/sidecar', true)], cgroupId, names),
    );
    const log: string[] = [];
    const restarted = new BypassWriter(
      { config: recording(memory.config, log), bypass: recording(memory.bypass, log), exclusions: recording(memory.exclusions, log) },
      { skipMark: 0, sameNetns: false },
    );
    restarted.write(bypassEntries([rule('/cg/sidecar', true)], cgroupId, names));
    assert.deepEqual(log, ['update socklb_cfg_v1', 'delete socklb_byp_v1', 'delete socklb_excl_v1']);
    assert.deepEqual(
      [...memory.bypass.entries()].map(([key, value]) => [
        BYPASS_MAP_CODECS.bypass.key.decode(key),
        BYPASS_MAP_CODECS.bypass.value.decode(value),
      ]),
      [[11n, BYPASS_ALL]],
    );
  });
});
