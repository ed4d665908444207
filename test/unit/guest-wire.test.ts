// The host's side of the guest protocol (docs/guest-protocol.md): host frames byte for byte, guest
// frames decoded strictly, each malformed field named. The applier's side of the same bytes is
// checked by test/integration/guest-applier.test.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  batchPayloadSize,
  decodeGuestMessage,
  encodeBatch,
  encodeCommit,
  encodeObject,
  encodeResync,
  FRAME_TYPES,
  LIMITS,
  packGroups,
  WriteTarget,
  type MapDescriptor,
  type WriteGroup,
} from '../../src/guest/wire.js';
import { DEFAULT_CAPACITIES } from '../../src/datapath/maps.js';
import { guestCapacities } from '../../src/guest/sizing.js';
import { ackPayload, DESCRIPTORS, helloPayload, loadedPayload } from './guest-wire-fixtures.js';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const wireError = (message: RegExp) => ({ code: 'SOCKLB_ERR_GUEST_WIRE', message });

describe('host frames, byte for byte', () => {
  it('OBJECT: maps with their capacity and KEEP_PINNED, then the ELF', () => {
    const frame = encodeObject(
      [
        { name: 'socklb_fe_v2', maxEntries: 0x0102, keepPinned: false },
        { name: 'socklb_conn_v1', maxEntries: 7, keepPinned: true },
      ],
      Buffer.from('ELF!'),
    );
    const name = (text: string) => hex(Buffer.from(text.padEnd(16, '\0'), 'latin1'));
    assert.equal(
      hex(frame),
      [
        '3c000000',
        '02', // 60 bytes of OBJECT
        '0200',
        '0000', // 2 maps, flags 0
        name('socklb_fe_v2'),
        '02010000',
        '00000000',
        name('socklb_conn_v1'),
        '07000000',
        '01000000',
        '04000000',
        hex(Buffer.from('ELF!')),
      ].join(''),
    );
  });

  it('OBJECT: the capacities a guest of a node at its default capacities, full, is sized are within the limit', () => {
    const { frontends, backends, slots } = DEFAULT_CAPACITIES;
    const capacities = guestCapacities({ frontends, backends, slots, serviceIds: frontends + 1, clusterIPs: frontends });
    assert.equal(Math.max(...capacities.map((map) => map.maxEntries)), LIMITS.mapEntries / 2);
    assert.doesNotThrow(() => encodeObject(capacities, Buffer.alloc(1)));
    assert.doesNotThrow(() => encodeObject([{ name: 'socklb_stats_v1', maxEntries: LIMITS.mapEntries }], Buffer.alloc(1)));
  });

  it('BATCH: header, groups, writes of each op; a per-CPU update is the value rounded to 8, once per CPU', () => {
    const target = new WriteTarget(DESCRIPTORS, 2);
    const frame = encodeBatch(
      {
        epoch: 0x1122334455667788n,
        seq: 9n,
        waitForReaders: true,
        groups: [
          { writes: [{ op: 'update', map: 0, key: Buffer.from('aabbccdd', 'hex'), value: Buffer.alloc(20, 0xee) }] },
          {
            onlyIfClean: true,
            writes: [
              { op: 'delete', map: 2, key: Buffer.from('0102030405060708', 'hex') },
              { op: 'zero', map: 3, key: Buffer.from('05000000', 'hex') },
            ],
          },
          { writes: [{ op: 'update', map: 3, key: Buffer.from('06000000', 'hex'), value: Buffer.alloc(64, 1) }] },
        ],
      },
      target,
    );
    assert.equal(
      hex(frame),
      [
        'a0000000',
        '03',
        '8877665544332211',
        '0900000000000000',
        '01000000',
        '03000000',
        '0000',
        '0000',
        '01000000',
        '01',
        '00',
        'aabbccdd',
        'ee'.repeat(20),
        '0100',
        '0000',
        '02000000',
        '02',
        '02',
        '0102030405060708',
        '03',
        '03',
        '05000000',
        '0000',
        '0000',
        '01000000',
        '01',
        '03',
        '06000000',
        '01'.repeat(64),
      ].join(''),
    );
    assert.equal(frame.length - 5, batchPayloadSize([], target) + 8 * 3 + 2 + 4 + 20 + 2 + 8 + 2 + 4 + 2 + 4 + 64);
  });

  it('COMMIT and RESYNC', () => {
    assert.equal(hex(encodeCommit({ epoch: 1n, seq: 2n ** 64n - 1n })), `1000000004${'0100000000000000'}${'ff'.repeat(8)}`);
    assert.equal(hex(encodeResync(0x0102n)), `1000000005${hex(Buffer.from('SLBRSYNC'))}0201000000000000`);
  });
});

describe('host frames refuse what the guest would refuse', () => {
  const target = new WriteTarget(DESCRIPTORS, 2);
  const batch = (groups: WriteGroup[]) => () => encodeBatch({ epoch: 1n, seq: 1n, groups }, target);
  const cases: [string, () => unknown, RegExp][] = [
    [
      'a key of the wrong size',
      batch([{ writes: [{ op: 'delete', map: 0, key: Buffer.alloc(8) }] }]),
      /BATCH group 0 write 0: a key of 8 bytes for map 0 \(socklb_be_v1\), whose keys are 4/,
    ],
    [
      'a per-CPU value of one CPU',
      batch([{ writes: [{ op: 'update', map: 3, key: Buffer.alloc(4), value: Buffer.alloc(32) }] }]),
      /group 0 write 0: a value of 32 bytes for map 3 \(socklb_stats_v1\), whose updates take 64/,
    ],
    ['a map past the list', batch([{ writes: [{ op: 'delete', map: 9, key: Buffer.alloc(4) }] }]), /BATCH group 0 write 0: map 9 of 6/],
    [
      'a write to socket storage',
      batch([{ writes: [] }, { writes: [{ op: 'delete', map: 5, key: Buffer.alloc(4) }] }]),
      /group 1 write 0: map 5 \(socklb_sock_v2\) is of type 24, which a batch does not write/,
    ],
    [
      'a batch over 1 MiB',
      batch([
        {
          writes: Array.from({ length: 41_000 }, () => ({ op: 'update' as const, map: 0, key: Buffer.alloc(4), value: Buffer.alloc(20) })),
        },
      ]),
      /over its limit of 1048576; split its groups/,
    ],
    ['a seq that is no u64', () => encodeBatch({ epoch: 1n, seq: -1n, groups: [] }, target), /BATCH seq -1: not a u64/],
    [
      'an OBJECT map name of 16 bytes',
      () => encodeObject([{ name: 'x'.repeat(16), maxEntries: 1 }], Buffer.alloc(1)),
      /OBJECT map name "x{16}": not 1 to 15 bytes/,
    ],
    [
      'an OBJECT of 65 maps',
      () =>
        encodeObject(
          Array.from({ length: 65 }, (_, i) => ({ name: `m${i}`, maxEntries: 1 })),
          Buffer.alloc(1),
        ),
      /OBJECT map_count 65: over 64/,
    ],
    [
      'an OBJECT map of more entries than the limit',
      () => encodeObject([{ name: 'socklb_stats_v1', maxEntries: LIMITS.mapEntries + 1 }], Buffer.alloc(1)),
      /OBJECT map socklb_stats_v1 max_entries 1048577: over the limit of 1048576/,
    ],
    ['an OBJECT over 4 MiB', () => encodeObject([], Buffer.alloc(LIMITS.objectPayload)), /OBJECT of 4194312 bytes: over its limit/],
    ['a map the guest lacks', () => target.index('socklb_fe_v9'), /map socklb_fe_v9: not among the guest's maps \(socklb_be_v1, /],
  ];
  for (const [name, encode, message] of cases) it(`refuses ${name}`, () => assert.throws(encode, wireError(message)));
});

describe('packGroups', () => {
  const target = new WriteTarget(DESCRIPTORS, 2);
  const group = (writes: number): WriteGroup => ({
    writes: Array.from({ length: writes }, () => ({ op: 'delete' as const, map: 0, key: Buffer.alloc(4) })),
  });

  it('fills each batch up to the limit, in order, never splitting a group', () => {
    // Each group: 8 bytes of header and 6 per write; a batch has 24 bytes of header.
    const groups = [group(2), group(3), group(1), group(4)];
    const batches = packGroups(groups, target, 24 + 20 + 26);
    assert.deepEqual(batches, [
      [groups[0], groups[1]],
      [groups[2], groups[3]],
    ]);
    for (const run of batches) assert.ok(batchPayloadSize(run, target) <= 70);
  });

  it('refuses a group no batch holds', () => {
    assert.throws(() => packGroups([group(1), group(10)], target, 60), wireError(/group 1 of 68 bytes: no BATCH of 60 bytes holds it/));
  });
});

describe('guest frames decoded', () => {
  it('HELLO', () => {
    const payload = helloPayload({ marker: { epoch: 3n, seq: 2n ** 63n }, resyncNonce: 77n, maps: DESCRIPTORS });
    assert.deepEqual(decodeGuestMessage({ type: FRAME_TYPES.hello, payload }), {
      kind: 'hello',
      version: 1,
      kernelRelease: '6.1.0-57-cloud-amd64',
      possibleCpus: 2,
      marker: { epoch: 3n, seq: 2n ** 63n },
      resyncNonce: 77n,
      maps: DESCRIPTORS,
    });
  });

  it('LOADED, both ways', () => {
    assert.deepEqual(decodeGuestMessage({ type: FRAME_TYPES.loaded, payload: loadedPayload(0, '', DESCRIPTORS) }), {
      kind: 'loaded',
      error: 0,
      message: '',
      maps: DESCRIPTORS,
    });
    assert.deepEqual(
      decodeGuestMessage({ type: FRAME_TYPES.loaded, payload: loadedPayload(-22, 'bpf_object__load: Invalid argument', []) }),
      {
        kind: 'loaded',
        error: -22,
        message: 'bpf_object__load: Invalid argument',
        maps: [],
      },
    );
  });

  it('ACK, with and without a failed write', () => {
    assert.deepEqual(decodeGuestMessage({ type: FRAME_TYPES.ack, payload: ackPayload(1n, 5n, 0, 0xffffffff, 0xffffffff) }), {
      kind: 'ack',
      epoch: 1n,
      seq: 5n,
      error: 0,
      failed: undefined,
    });
    assert.deepEqual(decodeGuestMessage({ type: FRAME_TYPES.ack, payload: ackPayload(1n, 5n, -7, 3, 0) }), {
      kind: 'ack',
      epoch: 1n,
      seq: 5n,
      error: -7,
      failed: { group: 3, write: 0 },
    });
    assert.deepEqual(decodeGuestMessage({ type: FRAME_TYPES.ack, payload: ackPayload(1n, 5n, -2, 0xffffffff, 0xffffffff) }), {
      kind: 'ack',
      epoch: 1n,
      seq: 5n,
      error: -2,
      failed: undefined,
    });
  });
});

describe('malformed guest frames are refused, naming the field', () => {
  const hello =
    (change: (payload: Buffer) => Buffer | void, maps: MapDescriptor[] = DESCRIPTORS) =>
    () => {
      const payload = helloPayload({ maps });
      return decodeGuestMessage({ type: FRAME_TYPES.hello, payload: change(payload) ?? payload });
    };
  const cases: [string, () => unknown, RegExp][] = [
    ['an unknown type', () => decodeGuestMessage({ type: 0x02, payload: Buffer.alloc(0) }), /frame type 0x02: not a guest's/],
    [
      'a payload over 64 KiB',
      () => decodeGuestMessage({ type: FRAME_TYPES.ack, payload: Buffer.alloc(65537) }),
      /guest frame of 65537 bytes: over its limit of 65536/,
    ],
    [
      'a short HELLO',
      () => decodeGuestMessage({ type: FRAME_TYPES.hello, payload: Buffer.alloc(20) }),
      /HELLO of 20 bytes: shorter than its 104 fixed bytes/,
    ],
    ['another magic', hello((p) => void p.writeUInt32LE(0x41424c54, 0)), /HELLO magic 0x41424c54: not 0x41424c53/],
    ['another version', hello((p) => void p.writeUInt16LE(2, 4)), /HELLO version 2: this host speaks version 1/],
    ['a reserved field set', hello((p) => void p.writeUInt16LE(1, 6)), /HELLO reserved: 1, not 0/],
    ['a release without NUL', hello((p) => void p.fill(0x41, 8, 72)), /HELLO kernel_release: no NUL within its 64 bytes/],
    ['bytes after a NUL', hello((p) => void p.writeUInt8(0x41, 70)), /HELLO kernel_release: bytes after its NUL/],
    ['no CPU', hello((p) => void p.writeUInt32LE(0, 72)), /HELLO possible_cpus 0: not 1 to 8192/],
    ['a map count past the payload', hello((p) => void p.writeUInt16LE(7, 100)), /HELLO map_count 7: 252 bytes of 36 each, but 216 left/],
    ['a map count of 65535', hello((p) => void p.writeUInt16LE(65535, 100)), /HELLO map_count 65535: over 64/],
    ['trailing bytes', hello((p) => Buffer.concat([p, Buffer.alloc(1)])), /HELLO map_count 6: 216 bytes of 36 each, but 217 left/],
    ['an empty map name', hello((p) => void p.fill(0, 104, 120)), /HELLO map 0 name: empty/],
    [
      'a map listed twice',
      hello(() => undefined, [DESCRIPTORS[0] as MapDescriptor, DESCRIPTORS[0] as MapDescriptor]),
      /HELLO map 1 name socklb_be_v1: listed twice/,
    ],
    [
      'a positive LOADED error',
      () => decodeGuestMessage({ type: FRAME_TYPES.loaded, payload: loadedPayload(5, '', []) }),
      /LOADED error 5: not 0 or a negative errno/,
    ],
    [
      'a failed LOADED with maps',
      () => decodeGuestMessage({ type: FRAME_TYPES.loaded, payload: loadedPayload(-1, 'x', DESCRIPTORS) }),
      /LOADED error -1 with map_count 6: a failed load stages no maps/,
    ],
    ['a short ACK', () => decodeGuestMessage({ type: FRAME_TYPES.ack, payload: Buffer.alloc(27) }), /ACK of 27 bytes: not 28/],
    [
      'an ACK failing half a write',
      () => decodeGuestMessage({ type: FRAME_TYPES.ack, payload: ackPayload(1n, 1n, -1, 2, 0xffffffff) }),
      /ACK failed_group 2 and failed_write 4294967295: one names a write, the other none/,
    ],
    [
      'an ACK of success naming a write',
      () => decodeGuestMessage({ type: FRAME_TYPES.ack, payload: ackPayload(1n, 1n, 0, 0, 0) }),
      /ACK error 0 with failed write 0 of group 0/,
    ],
  ];
  for (const [name, decode, message] of cases) it(`refuses ${name}`, () => assert.throws(decode, wireError(message)));
});

describe('BATCH writes to the service CIDRs', () => {
  it('writes an LPM trie, whose keys and values are plain bytes', () => {
    const ranges = { name: 'socklb_range_v1', type: 11, keySize: 20, valueSize: 4, maxEntries: 256, flags: 1 };
    const target = new WriteTarget([...DESCRIPTORS, ranges], 2);
    const write = { op: 'update' as const, map: DESCRIPTORS.length, key: Buffer.alloc(20), value: Buffer.alloc(4) };
    assert.equal(target.writeSize(write, 'group 0 write 0'), 2 + 20 + 4);
  });
});
