// The values the programs follow name their key and end with a check
// (bpf/socklb.h): a copy that is another key's value, or a mix of two, is
// refused by the programs and left out of a state read back.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSealed, MAP_CODECS } from '../../src/datapath/layout.js';
import { memoryMaps } from '../../src/datapath/memory-maps.js';
import { DatapathState } from '../../src/datapath/state.js';

const KEY = { address: '10.96.0.10', port: 80, protocol: 'TCP' as const };
const OTHER_KEY = { address: '10.96.0.11', port: 80, protocol: 'TCP' as const };
const FRONTEND = { key: KEY, serviceId: 7, backendCount: 2, flags: 0, affinityTimeout: 0 };
const SLOT = { serviceId: 7, slot: 1, backendId: 3 };
const BACKEND = { backendId: 3, address: '10.244.0.3', port: 8080 };

describe('a value the programs follow', () => {
  const encoded = {
    frontend: MAP_CODECS.frontends.value.encode(FRONTEND),
    slot: MAP_CODECS.slots.value.encode(SLOT),
    backend: MAP_CODECS.backends.value.encode(BACKEND),
  };

  for (const [name, value] of Object.entries(encoded)) {
    it(`${name}: is sealed as encoded, and no longer once any one of its bytes changes`, () => {
      assert.ok(isSealed(value));
      for (let offset = 0; offset < value.length; offset++) {
        const torn = Buffer.from(value);
        torn[offset]! ^= 0x01;
        assert.equal(isSealed(torn), false, `byte ${offset} changed`);
      }
    });
  }

  it('decodes to what was encoded, its key included', () => {
    assert.deepEqual(MAP_CODECS.frontends.value.decode(encoded.frontend), FRONTEND);
    assert.deepEqual(MAP_CODECS.slots.value.decode(encoded.slot), SLOT);
    assert.deepEqual(MAP_CODECS.backends.value.decode(encoded.backend), BACKEND);
  });
});

describe('a state read back', () => {
  function mapsWith(write: (maps: ReturnType<typeof memoryMaps>) => void) {
    const maps = memoryMaps();
    maps.frontends.update(MAP_CODECS.frontends.key.encode(KEY), MAP_CODECS.frontends.value.encode(FRONTEND));
    maps.slots.update(MAP_CODECS.slots.key.encode({ serviceId: 7, slot: 0 }), MAP_CODECS.slots.value.encode({ ...SLOT, slot: 0 }));
    maps.slots.update(MAP_CODECS.slots.key.encode(SLOT), MAP_CODECS.slots.value.encode(SLOT));
    maps.backends.update(MAP_CODECS.backends.key.encode(3), MAP_CODECS.backends.value.encode(BACKEND));
    write(maps);
    return DatapathState.read(maps);
  }

  it('keeps the values that name their key', () => {
    const state = mapsWith(() => {});
    assert.deepEqual([...state.frontends.keys()], ['10.96.0.10:80/TCP']);
    assert.deepEqual([...(state.slots.get(7)?.keys() ?? [])].sort(), [0, 1]);
    assert.deepEqual([...state.backends.keys()], [3]);
  });

  const cases: [string, (maps: ReturnType<typeof memoryMaps>) => void, (state: DatapathState) => boolean][] = [
    [
      'a frontend value written for another key',
      (maps) => maps.frontends.update(MAP_CODECS.frontends.key.encode(OTHER_KEY), MAP_CODECS.frontends.value.encode(FRONTEND)),
      (state) => !state.frontends.has('10.96.0.11:80/TCP'),
    ],
    [
      'a slot value written for another slot',
      (maps) => maps.slots.update(MAP_CODECS.slots.key.encode({ serviceId: 7, slot: 2 }), MAP_CODECS.slots.value.encode(SLOT)),
      (state) => !state.slots.get(7)?.has(2),
    ],
    [
      'a backend value written for another id',
      (maps) => maps.backends.update(MAP_CODECS.backends.key.encode(4), MAP_CODECS.backends.value.encode(BACKEND)),
      (state) => !state.backends.has(4),
    ],
    [
      'a value whose check fails',
      (maps) => {
        const torn = MAP_CODECS.backends.value.encode({ ...BACKEND, backendId: 5 });
        torn[4]! ^= 0x01;
        maps.backends.update(MAP_CODECS.backends.key.encode(5), torn);
      },
      (state) => !state.backends.has(5),
    ],
  ];
  for (const [rule, write, leftOut] of cases) {
    it(`leaves out ${rule}: the programs refuse it, and a plan writes the key anew`, () => assert.ok(leftOut(mapsWith(write))));
  }
});
