// The TypeScript codecs against the BTF of the compiled objects: sizes, field
// offsets and field sizes, and each map's key and value types. A struct both
// objects use (the socket storage) must match in each.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import {
  affinityKeyLayout,
  affinityLayout,
  BYPASS_MAP_CODECS,
  decodeRecords,
  destroyedCodec,
  MAP_CODECS,
  markerCodec,
  MAP_NAMES,
  sockCodec,
  sockRecordCodec,
  staleKeyCodec,
  TRACE_HOOKS,
  TRACE_REASONS,
  traceEventCodec,
  traceSwitchCodec,
  translationCodec,
  u32Codec,
  type StructLayout,
} from '../../src/datapath/layout.js';

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
  values?: { name: string; val: number }[];
}

class ObjectBtf {
  private readonly types: Map<number, BtfType>;

  constructor(readonly file: string) {
    const path = fileURLToPath(new URL(`../../bpf/${file}`, import.meta.url));
    const dump = JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', path], { encoding: 'utf8' })) as { types: BtfType[] };
    this.types = new Map(dump.types.map((type) => [type.id, type]));
  }

  byId(id: number): BtfType {
    const type = this.types.get(id);
    assert.ok(type, `BTF type ${id} of ${this.file}`);
    return type;
  }

  sizeOf(type: BtfType): number {
    if (type.kind === 'TYPEDEF' || type.kind === 'CONST' || type.kind === 'VOLATILE') return this.sizeOf(this.byId(type.type_id ?? 0));
    if (type.kind === 'ARRAY') return (type.nr_elems ?? 0) * this.sizeOf(this.byId(type.type_id ?? 0));
    return type.size ?? 0;
  }

  find(cType: string): BtfType | undefined {
    return [...this.types.values()].find((type) => cTypeName(type) === cType);
  }

  /** The key or value type a map declares, as the codecs name it. */
  mapType(mapName: string, member: 'key' | 'value'): string {
    const variable = [...this.types.values()].find((type) => type.kind === 'VAR' && type.name === mapName);
    assert.ok(variable, `map ${mapName} is declared in ${this.file}`);
    const field = this.byId(variable.type_id ?? 0).members?.find((m) => m.name === member);
    assert.ok(field, `${mapName} declares its ${member} type`);
    return cTypeName(this.byId(this.byId(field.type_id).type_id ?? 0));
  }
}

/** `struct name` for structs, the typedef's name for scalars, as the codecs write it. */
function cTypeName(type: BtfType): string {
  return type.kind === 'STRUCT' ? `struct ${type.name}` : type.name;
}

const datapath = new ObjectBtf('socklb.bpf.o');
const iterators = new ObjectBtf('socklb_iter.bpf.o');

const layouts: StructLayout[] = [
  ...[...Object.values(MAP_CODECS), ...Object.values(BYPASS_MAP_CODECS)].flatMap((codecs) => [codecs.key, codecs.value]),
  translationCodec,
  sockCodec,
  staleKeyCodec,
  destroyedCodec,
  sockRecordCodec,
  affinityKeyLayout,
  affinityLayout,
  traceSwitchCodec,
  traceEventCodec,
].filter((layout, index, all) => all.indexOf(layout) === index);

/** Each map with the codecs of its key and value, and the objects that declare it. */
const maps = [
  ...Object.entries(MAP_CODECS).map(([role, codecs]) => ({
    name: MAP_NAMES[role as keyof typeof MAP_CODECS],
    ...codecs,
    objects: [datapath],
  })),
  ...Object.entries(BYPASS_MAP_CODECS).map(([role, codecs]) => ({
    name: MAP_NAMES[role as keyof typeof BYPASS_MAP_CODECS],
    ...codecs,
    objects: [datapath],
  })),
  { name: MAP_NAMES.sockets, key: { cType: 'int' }, value: sockCodec, objects: [datapath, iterators] },
  { name: MAP_NAMES.connections, key: { cType: '__u64' }, value: translationCodec, objects: [datapath, iterators] },
  { name: MAP_NAMES.stale, key: staleKeyCodec, value: u32Codec, objects: [iterators] },
  { name: MAP_NAMES.affinity, key: affinityKeyLayout, value: affinityLayout, objects: [datapath] },
  { name: MAP_NAMES.traceSwitch, key: u32Codec, value: traceSwitchCodec, objects: [datapath] },
];

describe('codecs of the socket iterators and the guest marker decode what they encode', () => {
  const translation = { service: { address: '10.96.0.10', port: 53 }, backend: { address: 'fd00:244::5', port: 8053 }, slot: 3 };
  const pair = { frontend: { address: 'fd00:96::a', port: 53, protocol: 'UDP' as const }, backend: { address: 'fd00:244::5', port: 8053 } };
  const cases: [string, { encode(value: never): Buffer; decode(bytes: Uint8Array): unknown }, unknown][] = [
    ['struct socklb_translation', translationCodec, translation],
    ['struct socklb_sock (the entries in use)', sockCodec, [translation, { ...translation, slot: 0 }]],
    ['struct socklb_stale_key', staleKeyCodec, pair],
    ['struct socklb_destroyed', destroyedCodec, { cookie: 0x1234_5678_9abcn, pair, error: -95 }],
    [
      'struct socklb_sock_record',
      sockRecordCodec,
      { cookie: 42n, family: 'IPv6', protocol: 'UDP', state: 'ESTABLISHED', connection: translation, datagrams: [translation] },
    ],
    [
      'struct socklb_sock_record without a connection',
      sockRecordCodec,
      { cookie: 7n, family: 'IPv4', protocol: 'TCP', state: 'CLOSE', connection: undefined, datagrams: [] },
    ],
    ['struct socklb_marker', markerCodec, { epoch: 0xfedc_ba98_7654_3210n, seq: 2n ** 64n - 1n }],
    ['struct socklb_trace_switch', traceSwitchCodec, { enabled: true, lost: 2n ** 64n - 1n }],
    [
      'struct socklb_trace_event of a translation',
      traceEventCodec,
      {
        timeNs: 123_456_789_012n,
        cgroupId: 4242n,
        netnsCookie: 4097n,
        socketCookie: 0x1_0000_0001n,
        protocol: 'TCP',
        hook: 'connect',
        reason: 'translated',
        service: { address: '10.96.0.10', port: 80 },
        serviceId: 7,
        backend: { address: '10.244.1.5', port: 8080 },
        slot: 1,
      },
    ],
    [
      'struct socklb_trace_event of a refusal',
      traceEventCodec,
      {
        timeNs: 1n,
        cgroupId: 1n,
        netnsCookie: 1n,
        socketCookie: 2n,
        protocol: 'UDP',
        hook: 'sendmsg',
        reason: 'unserved-address',
        service: { address: 'fd00:96::99', port: 53 },
        serviceId: 0,
        backend: undefined,
        slot: 0,
      },
    ],
  ];
  for (const [name, codec, value] of cases) {
    it(name, () => assert.deepEqual(codec.decode(codec.encode(value as never)), value));
  }
});

describe('records split from what an iterator or a ring wrote', () => {
  const event = (timeNs: bigint) =>
    traceEventCodec.encode({
      timeNs,
      cgroupId: 1n,
      netnsCookie: 1n,
      socketCookie: 2n,
      protocol: 'TCP',
      hook: 'connect',
      reason: 'no-backend',
      service: { address: '10.96.0.10', port: 80 },
      serviceId: 3,
      backend: undefined,
      slot: 0,
    });
  const unknownReason = event(2n);
  unknownReason.writeUInt8(0xff, 78); // its reason
  const bytes = Buffer.concat([event(1n), unknownReason, event(3n)]);

  it('throws, without skip, for one bad record or bytes short of a record', () => {
    assert.throws(() => decodeRecords(traceEventCodec, bytes), /enum socklb_trace_reason 255: not a value this build knows/);
    assert.throws(() => decodeRecords(traceEventCodec, bytes.subarray(0, 100)), /100 bytes is not a whole number of records/);
  });

  it('leaves out and reports only the bad record, or the bytes short of one, when given skip', () => {
    const skipped: string[] = [];
    const skip = (error: Error) => skipped.push(error.message);
    assert.deepEqual(
      decodeRecords(traceEventCodec, bytes, skip).map((decoded) => decoded.timeNs),
      [1n, 3n],
    );
    assert.deepEqual(
      decodeRecords(traceEventCodec, Buffer.concat([event(4n), event(5n).subarray(0, 20)]), skip).map((decoded) => decoded.timeNs),
      [4n],
    );
    assert.deepEqual(skipped, [
      'enum socklb_trace_reason 255: not a value this build knows',
      'struct socklb_trace_event: 100 bytes is not a whole number of records',
    ]);
  });
});

describe('the trace enums match the BTF of bpf/socklb.bpf.o', () => {
  const tables: [string, Record<number, { cName: string }>][] = [
    ['socklb_trace_reason', TRACE_REASONS],
    ['socklb_trace_hook', TRACE_HOOKS],
  ];
  for (const [cType, values] of tables) {
    it(`enum ${cType} has the values of its table`, () => {
      const type = datapath.find(cType);
      assert.ok(type?.kind === 'ENUM', `enum ${cType} is in the BTF`);
      const btf = Object.fromEntries((type.values ?? []).map((value) => [value.val, value.name]));
      assert.deepEqual(btf, Object.fromEntries(Object.entries(values).map(([value, entry]) => [value, entry.cName])));
    });
  }
});

describe('map layouts match the BTF of bpf/socklb.bpf.o and bpf/socklb_iter.bpf.o', () => {
  for (const layout of layouts) {
    it(`${layout.cType} has the size and fields of its codec`, () => {
      const found = [datapath, iterators].filter((object) => object.find(layout.cType) !== undefined);
      assert.ok(found.length > 0, `${layout.cType} is in an object's BTF`);
      for (const object of found) {
        const type = object.find(layout.cType)!;
        assert.equal(object.sizeOf(type), layout.size, `size in ${object.file}`);
        const btfFields = Object.fromEntries(
          (type.members ?? []).map((member) => [
            member.name,
            { offset: member.bits_offset / 8, size: object.sizeOf(object.byId(member.type_id)) },
          ]),
        );
        assert.deepEqual(btfFields, layout.fields, `fields in ${object.file}`);
      }
    });
  }

  for (const map of maps) {
    for (const object of map.objects) {
      it(`map ${map.name} of ${object.file} has key ${map.key.cType} and value ${map.value.cType}`, () => {
        assert.equal(object.mapType(map.name, 'key'), map.key.cType);
        assert.equal(object.mapType(map.name, 'value'), map.value.cType);
      });
    }
  }
});
