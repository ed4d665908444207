// IdMap, the DatapathState's Map by id: it must answer as a Map would, iterate in key order, and
// end in one canonical form whatever the order of the writes, since tests compare a state kept
// up to date with the same read back from the maps (assert.deepStrictEqual).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { IdMap } from '../../src/datapath/id-map.js';

// Small keys, some past the array's first exact growth (64), and wild ones past the dense range.
const keyArbitrary = fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 60, max: 70 }), fc.constantFrom(1 << 20, 2 ** 32 - 1));
const writeArbitrary = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: keyArbitrary, value: fc.integer() }),
  fc.record({ kind: fc.constant('delete' as const), key: keyArbitrary }),
);

describe('IdMap', () => {
  it('answers as a Map does, in key order, and ends as one built from its final entries', () => {
    fc.assert(
      fc.property(fc.array(writeArbitrary, { maxLength: 40 }), (writes) => {
        const ids = new IdMap<number>();
        const model = new Map<number, number>();
        for (const write of writes) {
          if (write.kind === 'set') {
            ids.set(write.key, write.value);
            model.set(write.key, write.value);
          } else assert.equal(ids.delete(write.key), model.delete(write.key));
        }
        const expected = [...model].sort(([a], [b]) => a - b);
        assert.deepEqual([...ids], expected);
        assert.deepEqual(
          [...ids.keys()],
          expected.map(([key]) => key),
        );
        assert.deepEqual(
          [...ids.values()],
          expected.map(([, value]) => value),
        );
        assert.equal(ids.size, model.size);
        for (const key of [0, 5, 64, 1 << 20, 2 ** 32 - 1]) {
          assert.equal(ids.has(key), model.has(key));
          assert.equal(ids.get(key), model.get(key));
        }
        const rebuilt = new IdMap<number>();
        for (const [key, value] of [...model].reverse()) rebuilt.set(key, value);
        assert.deepStrictEqual(rebuilt, ids);
      }),
      { numRuns: 500 },
    );
  });
});
