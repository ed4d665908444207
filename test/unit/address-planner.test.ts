// The cluster IPs and service CIDRs in the maps (socklb_cip_v1, socklb_range_v1): their keys, and
// how the planner and the reconciler bring the maps to the desired ones, on in-memory maps.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAP_CODECS } from '../../src/datapath/layout.js';
import type { DatapathMaps } from '../../src/datapath/maps.js';
import { faultyMaps, memoryMaps } from '../../src/datapath/memory-maps.js';
import { fullAddressScope, planAddresses } from '../../src/datapath/planner.js';
import { reconcileAddresses } from '../../src/datapath/reconcile.js';
import { DatapathState } from '../../src/datapath/state.js';
import type { ServiceAddresses } from '../../src/model/types.js';

const sorted = (values: Iterable<string>) => [...values].sort();

describe('struct socklb_range_key', () => {
  it('keys IPv4 ranges IPv4-mapped, the prefix counted over 128 bits, and decodes them back', () => {
    const key = MAP_CODECS.serviceRanges.key.encode('10.96.0.0/12');
    assert.equal(key.readUInt32LE(0), 108);
    assert.equal(key.subarray(4).toString('hex'), '00000000000000000000ffff0a600000');
    for (const cidr of ['10.96.0.0/12', 'fd00:96::/112', '0.0.0.0/0', '::/0'])
      assert.equal(MAP_CODECS.serviceRanges.key.decode(MAP_CODECS.serviceRanges.key.encode(cidr)), cidr);
  });
});

function desired(clusterIPs: string[], serviceRanges: string[]): ServiceAddresses {
  return { clusterIPs: new Set(clusterIPs), serviceRanges: new Set(serviceRanges) };
}

/** What the maps hold, decoded. */
function held(maps: DatapathMaps): { clusterIPs: string[]; serviceRanges: string[] } {
  return {
    clusterIPs: sorted([...maps.clusterIPs.entries()].map(([key]) => MAP_CODECS.clusterIPs.key.decode(key))),
    serviceRanges: sorted([...maps.serviceRanges.entries()].map(([key]) => MAP_CODECS.serviceRanges.key.decode(key))),
  };
}

describe('planAddresses and reconcileAddresses', () => {
  it('adds before it deletes, so that the maps pass through the union of before and after', () => {
    const maps = memoryMaps();
    const state = DatapathState.read(maps);
    const before = desired(['10.96.0.1'], ['10.96.0.0/12']);
    reconcileAddresses(maps, state, before, fullAddressScope(state, before));
    const after = desired(['10.96.0.2'], ['10.96.0.0/16']);
    assert.deepEqual(planAddresses(state, after, fullAddressScope(state, after)), [
      { kind: 'upsert-cluster-ip', address: '10.96.0.2' },
      { kind: 'upsert-service-range', cidr: '10.96.0.0/16' },
      { kind: 'delete-cluster-ip', address: '10.96.0.1' },
      { kind: 'delete-service-range', cidr: '10.96.0.0/12' },
    ]);
  });

  it('plans only the addresses in scope', () => {
    const state = DatapathState.read(memoryMaps());
    const wanted = desired(['10.96.0.1', '10.96.0.2'], ['10.96.0.0/12']);
    assert.deepEqual(planAddresses(state, wanted, { clusterIPs: ['10.96.0.2'], serviceRanges: [] }), [
      { kind: 'upsert-cluster-ip', address: '10.96.0.2' },
    ]);
  });

  it('over random sequences, leaves the maps exactly as desired, read back equal, and a second plan empty', () => {
    const ips = fc.subarray(['10.96.0.1', '10.96.0.2', 'fd00:96::1', '192.0.2.1']);
    const ranges = fc.subarray(['10.96.0.0/12', '10.96.0.0/16', 'fd00:96::/112', '0.0.0.0/0']);
    fc.assert(
      fc.property(fc.array(fc.tuple(ips, ranges), { minLength: 1, maxLength: 8 }), fc.array(fc.boolean()), (steps, failures) => {
        const raw = memoryMaps();
        // Writes fail as the generated list says, in turn; none once it is used up.
        let write = 0;
        const maps = faultyMaps(raw, () => failures[write++] ?? false);
        const state = DatapathState.read(raw);
        for (const [clusterIPs, serviceRanges] of steps) {
          const wanted = desired(clusterIPs, serviceRanges);
          const result = reconcileAddresses(maps, state, wanted, fullAddressScope(state, wanted));
          assert.deepEqual(DatapathState.read(raw), state, 'the tracked state follows only accepted writes');
          if (result.failed.size > 0) reconcileAddresses(raw, state, wanted, fullAddressScope(state, wanted));
          assert.deepEqual(held(raw), { clusterIPs: sorted(wanted.clusterIPs), serviceRanges: sorted(wanted.serviceRanges) });
          assert.deepEqual(planAddresses(state, wanted, fullAddressScope(state, wanted)), [], 'a second plan has nothing to do');
        }
      }),
    );
  });

  it('a cluster IP that does not fit is reported by its address, with the flag that sizes the map', () => {
    const maps = memoryMaps({ frontends: 1 });
    const state = DatapathState.read(maps);
    const wanted = desired(['10.96.0.1', '10.96.0.2'], []);
    const result = reconcileAddresses(maps, state, wanted, fullAddressScope(state, wanted));
    assert.deepEqual([...result.failed.keys()], ['cluster IP 10.96.0.2']);
    assert.match(
      result.failed.get('cluster IP 10.96.0.2')?.message ?? '',
      /socklb_cip_v1: E2BIG: map full \(1 entries\); raise --max-frontends/,
    );
  });

  it('a service CIDR past the fixed capacity is reported as such', () => {
    const maps = memoryMaps();
    const state = DatapathState.read(maps);
    const wanted = desired(
      [],
      Array.from({ length: 257 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`),
    );
    const result = reconcileAddresses(maps, state, wanted, fullAddressScope(state, wanted));
    assert.equal(result.failed.size, 1);
    assert.match([...result.failed.values()][0]?.message ?? '', /socklb_range_v1: E2BIG: map full \(256 entries\), a fixed size$/);
  });
});
