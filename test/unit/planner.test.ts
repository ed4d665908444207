// The planner and reconciler on in-memory maps: the slot arrangement rules,
// and, over random sequences of desired states, the update-ordering
// invariant after every single map write (with and without failing writes).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { describeFrontends } from '../../src/datapath/dump.js';
import type { BpfMap, DatapathMaps } from '../../src/datapath/maps.js';
import { mapsByRole, updateEachInTurn, type MapEntry } from '../../src/datapath/maps.js';
import { FaultyMap, faultyMaps, memoryMaps } from '../../src/datapath/memory-maps.js';
import { arrangeSlots, fullScope, planCleanup, planFrontends } from '../../src/datapath/planner.js';
import { reconcile, type CleanupExtent } from '../../src/datapath/reconcile.js';
import { DatapathState } from '../../src/datapath/state.js';
import { writeOperation } from '../../src/datapath/writer.js';
import { backendText, frontendId } from '../../src/model/keys.js';
import type { DesiredFrontend } from '../../src/model/types.js';

describe('arrangeSlots', () => {
  const cases: [string, (number | undefined)[], number[], number[]][] = [
    ['a new frontend takes its backends in order', [], [1, 2, 3], [1, 2, 3]],
    ['nothing changes when the backends are the same', [1, 2, 3], [3, 2, 1], [1, 2, 3]],
    ['a newcomer is appended after the backends that stay', [1, 2], [1, 2, 3], [1, 2, 3]],
    ['a newcomer takes the slot of a leaver', [1, 2, 3], [1, 4, 3], [1, 4, 3]],
    ['a leaver in the middle is replaced by the last slot', [1, 2, 3], [1, 3], [1, 3]],
    ['several leavers are filled from the tail', [1, 2, 3, 4, 5], [5, 4], [5, 4]],
    ['a leaver at the end just shrinks the list', [1, 2, 3], [1, 2], [1, 2]],
    ['all leave', [1, 2], [], []],
    ['a missing slot is a hole to fill', [1, undefined, 3], [1, 2, 3], [1, 2, 3]],
    ['a backend listed twice keeps its first slot', [1, 1, 2], [1, 2], [1, 2]],
  ];
  for (const [rule, current, wanted, expected] of cases) {
    it(rule, () => assert.deepEqual(arrangeSlots(current, wanted), expected));
  }
});

/** A frontend whose count is larger than its written slots, or whose slot names a missing backend. */
function invariantViolations(maps: DatapathMaps): string[] {
  const state = DatapathState.read(maps);
  const violations: string[] = [];
  for (const [id, frontend] of state.frontends) {
    state.liveSlots(frontend).forEach((backendId, slot) => {
      if (backendId === undefined) violations.push(`${id}: slot ${slot} of ${frontend.backendCount} is not written`);
      else if (!state.backends.has(backendId)) violations.push(`${id}: slot ${slot} names missing backend ${backendId}`);
    });
  }
  return violations;
}

/** Maps that check the invariant after every write that the kernel would have accepted. */
function checkedMaps(inner: DatapathMaps, record: (violations: string[]) => void): DatapathMaps {
  const check = <T>(write: () => T): T => {
    const result = write();
    record(invariantViolations(inner));
    return result;
  };
  return mapsByRole((role): BpfMap => {
    const map = inner[role];
    const checked: BpfMap = {
      name: map.name,
      maxEntries: map.maxEntries,
      valuesPerKey: map.valuesPerKey,
      update: (key, value) => check(() => map.update(key, value)),
      // The kernel writes a batch's entries one by one: a reader may see any prefix.
      updateBatch: (entries) => updateEachInTurn(checked, entries),
      delete: (key) => check(() => map.delete(key)),
      lookup: (key) => map.lookup(key),
      entries: () => map.entries(),
    };
    return checked;
  });
}

// A small universe so that random states share frontends and backends often.
const frontendArbitrary = fc.record({
  address: fc.constantFrom('10.96.0.1', '10.96.0.2', 'fd00:96::1'),
  port: fc.constantFrom(53, 80),
  protocol: fc.constantFrom('TCP' as const, 'UDP' as const),
});
const backendArbitrary = fc.record({
  address: fc.constantFrom('10.244.0.1', '10.244.0.2', '10.244.0.3', '10.244.0.4', 'fd00:244::1'),
  port: fc.constantFrom(8080, 9090),
});
const desiredArbitrary = fc
  .array(
    fc.record({
      key: frontendArbitrary,
      backends: fc.uniqueArray(backendArbitrary, { selector: backendText, maxLength: 5 }),
      name: fc.constantFrom('web', 'dns', 'api'),
    }),
    { maxLength: 6 },
  )
  .map((entries) => {
    const desired = new Map<string, DesiredFrontend>();
    for (const entry of entries) {
      // Plain objects, as the model makes them (fast-check's records have no prototype).
      const key = { ...entry.key };
      desired.set(frontendId(key), {
        key,
        service: { namespace: 'default', name: entry.name, portName: '' },
        backends: entry.backends.map((backend) => ({ ...backend })),
        affinityTimeoutSeconds: 0,
      });
    }
    return desired;
  });

const ALL_FRONTEND_IDS = ['10.96.0.1', '10.96.0.2', 'fd00:96::1'].flatMap((address) =>
  [53, 80].flatMap((port) => (['TCP', 'UDP'] as const).map((protocol) => frontendId({ address, port, protocol }))),
);

/** Every entry of every map, as hex, sorted: maps equal entry for entry, ids included. */
function dumpMaps(maps: DatapathMaps): Record<string, string[]> {
  return Object.fromEntries(
    Object.entries(maps).map(([role, map]: [string, BpfMap]) => [
      role,
      [...map.entries()].map(([key, value]) => `${key.toString('hex')}=${value.toString('hex')}`).sort(),
    ]),
  );
}

/** What the maps must describe for a desired state, order of backends aside. */
function rendering(desired: ReadonlyMap<string, DesiredFrontend>) {
  return [...desired.values()]
    .map((frontend) => ({
      frontend: frontendId(frontend.key),
      service: `default/${frontend.service.name}`,
      backends: frontend.backends.map(backendText).sort(),
    }))
    .sort((a, b) => a.frontend.localeCompare(b.frontend));
}

function described(maps: DatapathMaps) {
  return describeFrontends(DatapathState.read(maps)).map((frontend) => ({
    frontend: frontend.frontend,
    service: frontend.service,
    backends: [...frontend.backends].sort(),
  }));
}

describe('reconcile on in-memory maps', () => {
  it('every write keeps every frontend whole, and the maps end as desired', () => {
    fc.assert(
      fc.property(fc.array(desiredArbitrary, { minLength: 1, maxLength: 8 }), (sequence) => {
        const raw = memoryMaps();
        const violations: string[] = [];
        const maps = checkedMaps(raw, (found) => violations.push(...found));
        const state = DatapathState.read(raw);
        for (const desired of sequence) {
          const result = reconcile(maps, state, desired, fullScope(state, desired));
          assert.equal(result.failed.size, 0);
          assert.deepEqual(violations, []);
          assert.deepEqual(described(raw), rendering(desired));
          assert.deepEqual(DatapathState.read(raw), state, 'the tracked state is what the maps hold');
          assert.deepEqual(planFrontends(state, desired, fullScope(state, desired)), [], 'a second plan has nothing to do');
        }
      }),
      { numRuns: 300 },
    );
  });

  it('with 10% of writes failing, nothing half-written is ever exposed, and a retry converges', () => {
    fc.assert(
      fc.property(fc.array(desiredArbitrary, { minLength: 1, maxLength: 8 }), fc.integer(), (sequence, seed) => {
        const raw = memoryMaps();
        const violations: string[] = [];
        let random = seed;
        const tenPercent = () => {
          random = (Math.imul(random, 1103515245) + 12345) | 0;
          return ((random >>> 16) & 0x7fff) % 10 === 0;
        };
        const flaky = faultyMaps(
          checkedMaps(raw, (found) => violations.push(...found)),
          tenPercent,
        );
        const state = DatapathState.read(raw);
        for (const desired of sequence) {
          reconcile(flaky, state, desired, fullScope(state, desired));
          assert.deepEqual(violations, []);
          assert.deepEqual(DatapathState.read(raw), state, 'the tracked state follows only accepted writes');
        }
        const last = sequence[sequence.length - 1] ?? new Map();
        const retry = reconcile(raw, state, last, fullScope(state, last));
        assert.equal(retry.failed.size, 0);
        assert.deepEqual(described(raw), rendering(last));
      }),
      { numRuns: 300 },
    );
  });

  it('reports what the kernel accepted, so that a copy of the maps applying it ends the same, with writes failing', () => {
    fc.assert(
      fc.property(fc.array(desiredArbitrary, { minLength: 1, maxLength: 8 }), fc.integer(), (sequence, seed) => {
        const raw = memoryMaps();
        const copy = memoryMaps();
        let random = seed;
        const tenPercent = () => {
          random = (Math.imul(random, 1103515245) + 12345) | 0;
          return ((random >>> 16) & 0x7fff) % 10 === 0;
        };
        const state = DatapathState.read(raw);
        for (const desired of sequence) {
          const { written } = reconcile(faultyMaps(raw, tenPercent), state, desired, fullScope(state, desired));
          for (const plan of written.frontends) for (const operation of plan.operations) writeOperation(copy, operation);
          for (const operation of written.cleanup) writeOperation(copy, operation);
          assert.deepEqual(dumpMaps(copy), dumpMaps(raw));
          state.readersGone();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('uses the same ids whether or not the agent restarted (read the maps back) before each change', () => {
    fc.assert(
      fc.property(fc.array(desiredArbitrary, { minLength: 1, maxLength: 10 }), (sequence) => {
        const keptMaps = memoryMaps();
        const restartedMaps = memoryMaps();
        const kept = DatapathState.read(keptMaps);
        // The frontends in one order for both: a state read back lists them in another, and ids
        // handed out in another order are other ids, which later removals free differently.
        const inOrder = (state: DatapathState, desired: ReadonlyMap<string, DesiredFrontend>) => [...fullScope(state, desired)].sort();
        for (const desired of sequence) {
          // Both wait for the programs' readers before a sync, as the agent does when ids were freed.
          kept.readersGone();
          reconcile(keptMaps, kept, desired, inOrder(kept, desired));
          const restarted = DatapathState.read(restartedMaps);
          restarted.readersGone();
          reconcile(restartedMaps, restarted, desired, inOrder(restarted, desired));
          // A restart reuses the ids freed before it, as the agent that kept running does.
          const ids = (maps: DatapathMaps) => {
            const state = DatapathState.read(maps);
            return {
              services: [...state.serviceNames.keys()].sort((a, b) => a - b),
              backends: [...state.backends.keys()].sort((a, b) => a - b),
            };
          };
          assert.deepEqual(ids(restartedMaps), ids(keptMaps));
          assert.deepEqual(described(restartedMaps), described(keptMaps));
        }
      }),
      { numRuns: 300 },
    );
  });

  it("a new frontend's counters are zeroed just before it is written, and only then", () => {
    fc.assert(
      fc.property(fc.array(desiredArbitrary, { minLength: 1, maxLength: 8 }), (sequence) => {
        const maps = memoryMaps();
        const state = DatapathState.read(maps);
        for (const desired of sequence) {
          for (const plan of planFrontends(state, desired, fullScope(state, desired))) {
            const kinds = plan.operations.map((operation) => operation.kind);
            const isNew = !state.frontends.has(plan.frontend) && desired.has(plan.frontend);
            const written = kinds.indexOf('upsert-frontend');
            assert.equal(kinds.includes('reset-stats'), isNew, `${plan.frontend}: ${kinds.join(', ')}`);
            if (isNew) assert.equal(kinds.indexOf('reset-stats'), written - 1, `${plan.frontend}: ${kinds.join(', ')}`);
          }
          reconcile(maps, state, desired, fullScope(state, desired));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('reconciling only the changed frontends, with a cleanup of the ids they touched, ends where a full reconcile does', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(desiredArbitrary, fc.subarray(ALL_FRONTEND_IDS)), { minLength: 1, maxLength: 8 }), (sequence) => {
        const narrowMaps = memoryMaps();
        const fullMaps = memoryMaps();
        const narrow = DatapathState.read(narrowMaps);
        const full = DatapathState.read(fullMaps);
        let previous = new Map<string, DesiredFrontend>();
        for (const [desired, extra] of sequence) {
          // What the model says changed, plus frontends it need not have named.
          const changed = [...fullScope(full, desired)].filter(
            (id) => JSON.stringify(previous.get(id)) !== JSON.stringify(desired.get(id)),
          );
          reconcile(narrowMaps, narrow, desired, [...changed, ...extra], 'touched');
          reconcile(fullMaps, full, desired, fullScope(full, desired), 'everything');
          assert.deepEqual(dumpMaps(narrowMaps), dumpMaps(fullMaps));
          assert.deepEqual(planCleanup(narrow), [], 'nothing is left for a cleanup of everything');
          previous = desired;
        }
      }),
      { numRuns: 300 },
    );
  });

  it('with writes failing, the narrow path as the agent runs it still converges to the desired maps', () => {
    fc.assert(
      fc.property(fc.array(desiredArbitrary, { minLength: 1, maxLength: 8 }), fc.integer(), (sequence, seed) => {
        const raw = memoryMaps();
        let random = seed;
        const tenPercent = () => {
          random = (Math.imul(random, 1103515245) + 12345) | 0;
          return ((random >>> 16) & 0x7fff) % 10 === 0;
        };
        const flaky = faultyMaps(raw, tenPercent);
        const state = DatapathState.read(raw);
        let previous = new Map<string, DesiredFrontend>();
        let failed: string[] = [];
        let cleanup: CleanupExtent = 'everything';
        for (const desired of sequence) {
          const changed = [...fullScope(state, desired)].filter(
            (id) => JSON.stringify(previous.get(id)) !== JSON.stringify(desired.get(id)),
          );
          const result = reconcile(flaky, state, desired, [...changed, ...failed], cleanup);
          failed = [...result.failed.keys()];
          cleanup = result.cleanupErrors.length > 0 ? 'everything' : 'touched';
          previous = desired;
        }
        const last = sequence[sequence.length - 1] ?? new Map();
        const retry = reconcile(raw, state, last, failed, cleanup);
        assert.equal(retry.failed.size, 0);
        assert.deepEqual(described(raw), rendering(last));
        assert.deepEqual(planCleanup(state), [], 'nothing unused is left in the maps');
      }),
      { numRuns: 300 },
    );
  });

  it('a restarted agent adopts the ids in the maps and rewrites nothing unchanged', () => {
    const maps = memoryMaps();
    const desired = new Map<string, DesiredFrontend>();
    const key = { address: '10.96.0.10', port: 53, protocol: 'UDP' as const };
    desired.set(frontendId(key), {
      key,
      service: { namespace: 'kube-system', name: 'kube-dns', portName: 'dns' },
      backends: [{ address: '10.244.0.5', port: 53 }],
      affinityTimeoutSeconds: 0,
    });
    reconcile(maps, DatapathState.read(maps), desired, desired.keys());
    const adopted = DatapathState.read(maps);
    assert.deepEqual(planFrontends(adopted, desired, fullScope(adopted, desired)), []);
    assert.equal(adopted.frontends.get(frontendId(key))?.serviceId, 1);
  });

  it('a frontend that does not fit is reported and the others are written', () => {
    const maps = memoryMaps({ frontends: 1 });
    const state = DatapathState.read(maps);
    const desired = new Map<string, DesiredFrontend>();
    for (const address of ['10.96.0.1', '10.96.0.2']) {
      const key = { address, port: 80, protocol: 'TCP' as const };
      desired.set(frontendId(key), {
        key,
        service: { namespace: 'default', name: address, portName: '' },
        backends: [{ address: '10.244.0.9', port: 80 }],
        affinityTimeoutSeconds: 0,
      });
    }
    const result = reconcile(maps, state, desired, desired.keys());
    assert.deepEqual([...result.failed.keys()], ['10.96.0.2:80/TCP']);
    // --max-frontends sizes the name map too, which the frontend's writes fill first.
    assert.match(
      result.failed.get('10.96.0.2:80/TCP')?.message ?? '',
      /socklb_name_v1: E2BIG: map full \(1 entries\); raise --max-frontends/,
    );
    assert.deepEqual(invariantViolations(maps), []);
    assert.deepEqual(described(maps), [{ frontend: '10.96.0.1:80/TCP', service: 'default/10.96.0.1', backends: ['10.244.0.9:80'] }]);
  });

  it('writes each kind of update as one batch per map across frontends, backends first and counts last', () => {
    const raw = memoryMaps();
    const batches: string[] = [];
    const maps = mapsByRole((role): BpfMap => {
      const map = raw[role];
      return Object.assign(Object.create(map) as BpfMap, {
        updateBatch: (entries: readonly MapEntry[]) => {
          batches.push(`${role} ${entries.length}`);
          return map.updateBatch(entries);
        },
      });
    });
    const desired = new Map<string, DesiredFrontend>();
    for (const address of ['10.96.0.1', '10.96.0.2', '10.96.0.3']) {
      const key = { address, port: 80, protocol: 'TCP' as const };
      desired.set(frontendId(key), {
        key,
        service: { namespace: 'default', name: 'web', portName: '' },
        backends: [
          { address, port: 8080 },
          { address: '10.244.0.9', port: 80 },
        ],
        affinityTimeoutSeconds: 0,
      });
    }
    const result = reconcile(maps, DatapathState.read(raw), desired, desired.keys());
    assert.equal(result.failed.size, 0);
    // The shared backend is written by each frontend's plan that needs it: one entry each, one id.
    assert.deepEqual(batches, ['backends 6', 'serviceNames 3', 'slots 6', 'stats 3', 'frontends 3']);
    assert.deepEqual(described(raw), rendering(desired));
  });

  it('an entry the kernel refuses in a batch stops its frontend only: the entries after it are written', () => {
    const raw = memoryMaps();
    let slotWrites = 0;
    // The third slot written (the first of the second frontend) is refused.
    const maps = { ...raw, slots: new FaultyMap(raw.slots, () => ++slotWrites === 3) };
    const state = DatapathState.read(raw);
    const desired = new Map<string, DesiredFrontend>();
    for (const address of ['10.96.0.1', '10.96.0.2', '10.96.0.3']) {
      const key = { address, port: 80, protocol: 'TCP' as const };
      desired.set(frontendId(key), {
        key,
        service: { namespace: 'default', name: 'web', portName: '' },
        backends: [
          { address, port: 8080 },
          { address, port: 9090 },
        ],
        affinityTimeoutSeconds: 0,
      });
    }
    const result = reconcile(maps, state, desired, desired.keys());
    assert.deepEqual([...result.failed.keys()], ['10.96.0.2:80/TCP']);
    assert.match(result.failed.get('10.96.0.2:80/TCP')?.message ?? '', /update socklb_slot_v2: EAGAIN/);
    assert.deepEqual(invariantViolations(raw), []);
    assert.deepEqual(DatapathState.read(raw), state, 'the tracked state holds the accepted writes only');
    assert.deepEqual(
      described(raw).map(({ frontend }) => frontend),
      ['10.96.0.1:80/TCP', '10.96.0.3:80/TCP'],
    );
    const retry = reconcile(raw, state, desired, desired.keys());
    assert.equal(retry.failed.size, 0);
    assert.deepEqual(described(raw), rendering(desired));
  });
});
