// Codecs for the map keys and values of bpf/socklb.h, byte for byte.
// test/unit/layout.test.ts checks every size and offset here against the BTF
// of the compiled object, so a change on one side cannot go unnoticed.

import { formatIP, isIPv4Mapped, parseCidr, writeIP } from '../model/ip.js';
import type { Backend, FrontendKey, IPAddress, Protocol, ServicePortRef } from '../model/types.js';

/** Where a C struct's field lives, for the BTF check. */
export interface FieldLayout {
  offset: number;
  size: number;
}

/** The shape of one C type of bpf/socklb.h. */
export interface StructLayout {
  /** The C type mirrored: `struct socklb_frontend`, or `__u32`. */
  readonly cType: string;
  readonly size: number;
  /** C field name -> place; empty for a scalar. */
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

export interface Codec<T> extends StructLayout {
  encode(value: T): Buffer;
  decode(bytes: Uint8Array): T;
}

/** SOCKLB_FRONTEND_SKIP: calls to the frontend are left untranslated (socklb.io/skip). */
export const FRONTEND_SKIP = 1;

/** Map names as the object declares them: versioned with their layout. */
export const MAP_NAMES = {
  frontends: 'socklb_fe_v3',
  slots: 'socklb_slot_v2',
  backends: 'socklb_be_v2',
  serviceNames: 'socklb_name_v1',
  /** Unconnected sockets' datagram translations: socket-local storage, written by the programs only. */
  sockets: 'socklb_sock_v2',
  /** Connections' translations by socket cookie (LRU): written by the programs only. */
  connections: 'socklb_conn_v1',
  /** Per-frontend counters (per CPU): counted by the programs, zeroed by the agent. */
  stats: 'socklb_stats_v1',
  /** ClientIP affinity: written by the programs only. */
  affinity: 'socklb_aff_v1',
  /** The last batch a guest applied whole (guest mode): written by the host, never read by the programs. */
  marker: 'socklb_mark_v1',
  /** The Services' cluster IPs: a call to one on a port no frontend serves is refused. */
  clusterIPs: 'socklb_cip_v1',
  /** The service CIDRs (an LPM trie): a call to an address of them no Service holds is refused. */
  serviceRanges: 'socklb_range_v1',
  /** `socklb trace`'s switch and lost-event count: set by the agent, counted by the programs. */
  traceSwitch: 'socklb_trace_v1',
  /** `socklb trace`'s ring buffer of struct socklb_trace_event: written by the programs while the switch is on. */
  traceRing: 'socklb_ring_v1',
  /** The skip mark and whether any cgroup is bypassed (one entry): written by the agent. */
  config: 'socklb_cfg_v1',
  /** Cgroups whose calls are left untranslated, all or some, by cgroup id. */
  bypass: 'socklb_byp_v1',
  /** The frontends a bypassed cgroup leaves untranslated. */
  exclusions: 'socklb_excl_v1',
  /** The socket iterators' object (socklb_iter.bpf.c). */
  stale: 'socklb_stale_v1',
} as const;

/** The maps the socket iterators read, which the datapath's object owns and hands them by fd. */
export const SOCKET_MAPS = ['sockets', 'connections'] as const satisfies readonly (keyof typeof MAP_NAMES)[];

/** A file descriptor of each of SOCKET_MAPS. */
export type SocketMapFds = Record<(typeof SOCKET_MAPS)[number], number>;

const PROTOCOL_NUMBERS: Record<Protocol, number> = { TCP: 6, UDP: 17 };

function protocolFromNumber(value: number): Protocol {
  if (value === PROTOCOL_NUMBERS.TCP) return 'TCP';
  if (value === PROTOCOL_NUMBERS.UDP) return 'UDP';
  throw new Error(`IP protocol ${value} is neither TCP nor UDP`);
}

/**
 * A zeroed buffer for one encoded key or value. Taken from Node's shared pool: Buffer.alloc gives
 * each its own ArrayBuffer, which V8 accounts as external memory, and the 60000 of a first sync
 * at 10000 Services drove the garbage collector. The pool's buffers are views at an offset of a
 * larger ArrayBuffer, which koffi and the memory maps read as the view.
 */
function zeroed(size: number): Buffer {
  return Buffer.allocUnsafe(size).fill(0);
}

function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function decodeAddress(bytes: Buffer, offset: number): string {
  const address = bytes.subarray(offset, offset + 16);
  return formatIP(address, isIPv4Mapped(address) ? 'IPv4' : 'IPv6');
}

// struct socklb_frontend_key
export const frontendKeyCodec: Codec<FrontendKey> = {
  cType: 'struct socklb_frontend_key',
  size: 20,
  fields: {
    address: { offset: 0, size: 16 },
    port: { offset: 16, size: 2 },
    protocol: { offset: 18, size: 1 },
    pad: { offset: 19, size: 1 },
  },
  encode(key) {
    const bytes = zeroed(20);
    writeIP(key.address, bytes, 0);
    bytes.writeUInt16BE(key.port, 16);
    bytes.writeUInt8(PROTOCOL_NUMBERS[key.protocol], 18);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return { address: decodeAddress(bytes, 0), port: bytes.readUInt16BE(16), protocol: protocolFromNumber(bytes.readUInt8(18)) };
  },
};

const CHECK_BASIS = 2166136261;
const CHECK_PRIME = 16777619;

/** SOCKLB_CHECK_* of bpf/socklb.h: FNV-1a over the 32-bit words (host order) before the last. */
function checkOf(bytes: Buffer): number {
  let hash = CHECK_BASIS;
  for (let offset = 0; offset < bytes.length - 4; offset += 4) hash = Math.imul(hash ^ bytes.readUInt32LE(offset), CHECK_PRIME) >>> 0;
  return hash;
}

/** Ends an encoded value with its check, which the programs verify on every copy (bpf/socklb.h). */
function sealed(bytes: Buffer): Buffer {
  bytes.writeUInt32LE(checkOf(bytes), bytes.length - 4);
  return bytes;
}

/** Whether a value read back ends with the check of the rest: one the agent wrote whole. */
export function isSealed(value: Uint8Array): boolean {
  const bytes = view(value);
  return bytes.length >= 8 && bytes.readUInt32LE(bytes.length - 4) === checkOf(bytes);
}

/** A frontend's value, which names its key (bpf/socklb.h). */
export interface FrontendValue {
  key: FrontendKey;
  serviceId: number;
  backendCount: number;
  flags: number;
  /** Seconds; 0 for no session affinity. */
  affinityTimeout: number;
}

// struct socklb_frontend
export const frontendCodec: Codec<FrontendValue> = {
  cType: 'struct socklb_frontend',
  size: 36,
  fields: {
    key: { offset: 0, size: 20 },
    service_id: { offset: 20, size: 4 },
    backend_count: { offset: 24, size: 2 },
    flags: { offset: 26, size: 2 },
    affinity_timeout: { offset: 28, size: 4 },
    check: { offset: 32, size: 4 },
  },
  encode(value) {
    const bytes = zeroed(36);
    frontendKeyCodec.encode(value.key).copy(bytes, 0);
    bytes.writeUInt32LE(value.serviceId, 20);
    bytes.writeUInt16LE(value.backendCount, 24);
    bytes.writeUInt16LE(value.flags, 26);
    bytes.writeUInt32LE(value.affinityTimeout, 28);
    return sealed(bytes);
  },
  decode(raw) {
    const bytes = view(raw);
    return {
      key: frontendKeyCodec.decode(bytes.subarray(0, 20)),
      serviceId: bytes.readUInt32LE(20),
      backendCount: bytes.readUInt16LE(24),
      flags: bytes.readUInt16LE(26),
      affinityTimeout: bytes.readUInt32LE(28),
    };
  },
};

// struct socklb_affinity_key and struct socklb_affinity: the programs' own map, layouts checked only.
export const affinityKeyLayout: StructLayout = {
  cType: 'struct socklb_affinity_key',
  size: 16,
  fields: { client: { offset: 0, size: 8 }, service_id: { offset: 8, size: 4 }, pad: { offset: 12, size: 4 } },
};

export const affinityLayout: StructLayout = {
  cType: 'struct socklb_affinity',
  size: 32,
  fields: {
    last_used_ns: { offset: 0, size: 8 },
    backend_address: { offset: 8, size: 16 },
    backend_port: { offset: 24, size: 2 },
    pad: { offset: 26, size: 2 },
    slot: { offset: 28, size: 4 },
  },
};

export interface SlotKey {
  serviceId: number;
  slot: number;
}

// struct socklb_slot_key
export const slotKeyCodec: Codec<SlotKey> = {
  cType: 'struct socklb_slot_key',
  size: 8,
  fields: { service_id: { offset: 0, size: 4 }, slot: { offset: 4, size: 4 } },
  encode(key) {
    const bytes = zeroed(8);
    bytes.writeUInt32LE(key.serviceId, 0);
    bytes.writeUInt32LE(key.slot, 4);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return { serviceId: bytes.readUInt32LE(0), slot: bytes.readUInt32LE(4) };
  },
};

/** A slot's value: the backend it names, and the slot it was written for. */
export interface SlotValue extends SlotKey {
  backendId: number;
}

// struct socklb_slot
export const slotCodec: Codec<SlotValue> = {
  cType: 'struct socklb_slot',
  size: 16,
  fields: {
    service_id: { offset: 0, size: 4 },
    slot: { offset: 4, size: 4 },
    backend_id: { offset: 8, size: 4 },
    check: { offset: 12, size: 4 },
  },
  encode(value) {
    const bytes = zeroed(16);
    bytes.writeUInt32LE(value.serviceId, 0);
    bytes.writeUInt32LE(value.slot, 4);
    bytes.writeUInt32LE(value.backendId, 8);
    return sealed(bytes);
  },
  decode(raw) {
    const bytes = view(raw);
    return { serviceId: bytes.readUInt32LE(0), slot: bytes.readUInt32LE(4), backendId: bytes.readUInt32LE(8) };
  },
};

// __u32 keys of the backend and service name maps (host order).
export const u32Codec: Codec<number> = {
  cType: '__u32',
  size: 4,
  fields: {},
  encode(value) {
    const bytes = zeroed(4);
    bytes.writeUInt32LE(value, 0);
    return bytes;
  },
  decode: (raw) => view(raw).readUInt32LE(0),
};

/** A backend's value: its address, and the backend id it was written for. */
export interface BackendValue extends Backend {
  backendId: number;
}

// struct socklb_backend
export const backendCodec: Codec<BackendValue> = {
  cType: 'struct socklb_backend',
  size: 28,
  fields: {
    backend_id: { offset: 0, size: 4 },
    address: { offset: 4, size: 16 },
    port: { offset: 20, size: 2 },
    pad: { offset: 22, size: 2 },
    check: { offset: 24, size: 4 },
  },
  encode(value) {
    const bytes = zeroed(28);
    bytes.writeUInt32LE(value.backendId, 0);
    writeIP(value.address, bytes, 4);
    bytes.writeUInt16BE(value.port, 20);
    return sealed(bytes);
  },
  decode(raw) {
    const bytes = view(raw);
    return { backendId: bytes.readUInt32LE(0), address: decodeAddress(bytes, 4), port: bytes.readUInt16BE(20) };
  },
};

const NAME_FIELDS = { namespace: { offset: 0, size: 64 }, name: { offset: 64, size: 64 }, port_name: { offset: 128, size: 16 } };

function writeCString(bytes: Buffer, field: FieldLayout, text: string): void {
  const encoded = Buffer.from(text, 'utf8');
  // One byte stays for the terminating NUL; Kubernetes names fit by their own limits.
  encoded.copy(bytes, field.offset, 0, Math.min(encoded.length, field.size - 1));
}

function readCString(bytes: Buffer, field: FieldLayout): string {
  const raw = bytes.subarray(field.offset, field.offset + field.size);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? raw.length : end).toString('utf8');
}

// struct socklb_service_name
export const serviceNameCodec: Codec<ServicePortRef> = {
  cType: 'struct socklb_service_name',
  size: 144,
  fields: NAME_FIELDS,
  encode(ref) {
    const bytes = zeroed(144);
    writeCString(bytes, NAME_FIELDS.namespace, ref.namespace);
    writeCString(bytes, NAME_FIELDS.name, ref.name);
    writeCString(bytes, NAME_FIELDS.port_name, ref.portName);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return {
      namespace: readCString(bytes, NAME_FIELDS.namespace),
      name: readCString(bytes, NAME_FIELDS.name),
      portName: readCString(bytes, NAME_FIELDS.port_name),
    };
  },
};

/**
 * What the programs counted for one frontend (struct socklb_stats), on one CPU
 * or summed. Numbers, not bigints: exact up to 2^53, which a million calls a
 * second reaches in 285 years, and a scrape adds 65536 of them.
 */
export interface FrontendCounters {
  /** connect() calls sent to a backend. */
  connects: number;
  /** connect() and sendmsg() calls refused because the frontend has no backend. */
  refused: number;
  /** Datagrams of unconnected UDP sockets sent to a backend. */
  datagrams: number;
  /** getpeername() and recvmsg() answers rewritten from the backend to the Service. */
  reverseNat: number;
}

export const ZERO_COUNTERS: Readonly<FrontendCounters> = { connects: 0, refused: 0, datagrams: 0, reverseNat: 0 };

function readU64(bytes: Buffer, offset: number): number {
  return bytes.readUInt32LE(offset) + bytes.readUInt32LE(offset + 4) * 2 ** 32;
}

// struct socklb_stats: one CPU's copy. A per-CPU map's value is one copy per
// possible CPU, each rounded up to 8 bytes (this one is 32 already).
export const statsCodec: Codec<FrontendCounters> = {
  cType: 'struct socklb_stats',
  size: 32,
  fields: {
    connects: { offset: 0, size: 8 },
    refused: { offset: 8, size: 8 },
    datagrams: { offset: 16, size: 8 },
    reverse_nat: { offset: 24, size: 8 },
  },
  encode(counters) {
    const bytes = zeroed(32);
    bytes.writeBigUInt64LE(BigInt(counters.connects), 0);
    bytes.writeBigUInt64LE(BigInt(counters.refused), 8);
    bytes.writeBigUInt64LE(BigInt(counters.datagrams), 16);
    bytes.writeBigUInt64LE(BigInt(counters.reverseNat), 24);
    return bytes;
  },
  decode: (raw) => sumPerCpu(view(raw).subarray(0, 32)),
};

/** The counters of a per-CPU value (every CPU's copy, one after the other), summed. */
export function sumPerCpu(value: Buffer): FrontendCounters {
  const sum = { ...ZERO_COUNTERS };
  for (let offset = 0; offset + statsCodec.size <= value.length; offset += statsCodec.size) {
    sum.connects += readU64(value, offset);
    sum.refused += readU64(value, offset + 8);
    sum.datagrams += readU64(value, offset + 16);
    sum.reverseNat += readU64(value, offset + 24);
  }
  return sum;
}

/** A guest's position in its host's stream of batches: `seq` of the host agent's run `epoch`. */
export interface Marker {
  epoch: bigint;
  seq: bigint;
}

// struct socklb_marker: the one value of socklb_mark_v1, at key 0.
export const markerCodec: Codec<Marker> = {
  cType: 'struct socklb_marker',
  size: 16,
  fields: { epoch: { offset: 0, size: 8 }, seq: { offset: 8, size: 8 } },
  encode(marker) {
    const bytes = zeroed(16);
    bytes.writeBigUInt64LE(marker.epoch, 0);
    bytes.writeBigUInt64LE(marker.seq, 8);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return { epoch: bytes.readBigUInt64LE(0), seq: bytes.readBigUInt64LE(8) };
  },
};

// struct socklb_cluster_ip
export const clusterIPCodec: Codec<IPAddress> = {
  cType: 'struct socklb_cluster_ip',
  size: 16,
  fields: { address: { offset: 0, size: 16 } },
  encode: (address) => writeIP(address, zeroed(16), 0),
  decode: (raw) => decodeAddress(view(raw), 0),
};

/** IPv4-mapped addresses: the first 96 bits of every IPv4 key. */
const IPV4_MAPPED_BITS = 96;

// struct socklb_range_key: a CIDR, IPv4 stored IPv4-mapped. The agent writes canonical ones
// (canonicalCidr); one with bits set past its prefix, which something else wrote, is read back
// as it is, so that it can be deleted.
export const serviceRangeKeyCodec: Codec<string> = {
  cType: 'struct socklb_range_key',
  size: 20,
  fields: { prefixlen: { offset: 0, size: 4 }, address: { offset: 4, size: 16 } },
  encode(text) {
    const cidr = parseCidr(text);
    if (cidr === undefined) throw new Error(`struct socklb_range_key: ${JSON.stringify(text)} is not a CIDR`);
    const bytes = zeroed(20);
    bytes.writeUInt32LE(cidr.bits, 0);
    cidr.network.copy(bytes, 4);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    const bits = bytes.readUInt32LE(0);
    const address = bytes.subarray(4, 20);
    const ipv4 = bits >= IPV4_MAPPED_BITS && isIPv4Mapped(address);
    return `${formatIP(address, ipv4 ? 'IPv4' : 'IPv6')}/${ipv4 ? bits - IPV4_MAPPED_BITS : bits}`;
  },
};

/** An address and port, as a socket sees it. */
export interface SocketAddress {
  address: string;
  port: number;
}

/** One Service a socket reached and the backend it was given. */
export interface Translation {
  service: SocketAddress;
  backend: SocketAddress;
  /** The frontend slot the backend was picked from. */
  slot: number;
}

const TRANSLATION_FIELDS = {
  service_address: { offset: 0, size: 16 },
  backend_address: { offset: 16, size: 16 },
  service_port: { offset: 32, size: 2 },
  backend_port: { offset: 34, size: 2 },
  slot: { offset: 36, size: 4 },
};

// struct socklb_translation: an entry of the socket-local storage, which only
// the programs write; decoded for `socklb sockets`.
export const translationCodec: Codec<Translation> = {
  cType: 'struct socklb_translation',
  size: 40,
  fields: TRANSLATION_FIELDS,
  encode(translation) {
    const bytes = zeroed(40);
    writeIP(translation.service.address, bytes, 0);
    writeIP(translation.backend.address, bytes, 16);
    bytes.writeUInt16BE(translation.service.port, 32);
    bytes.writeUInt16BE(translation.backend.port, 34);
    bytes.writeUInt32LE(translation.slot, 36);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return {
      service: { address: decodeAddress(bytes, 0), port: bytes.readUInt16BE(32) },
      backend: { address: decodeAddress(bytes, 16), port: bytes.readUInt16BE(34) },
      slot: bytes.readUInt32LE(36),
    };
  },
};

/** SOCKLB_SOCK_TRANSLATIONS: the entries of one socket's storage. */
export const SOCK_TRANSLATIONS = 4;

// struct socklb_sock: the socket-local storage (socklb_sock_v2). Decoded to
// the entries in use (service port 0 marks a free one).
export const sockCodec: Codec<Translation[]> = {
  cType: 'struct socklb_sock',
  size: 168,
  fields: { translations: { offset: 0, size: 160 }, next: { offset: 160, size: 4 }, last: { offset: 164, size: 4 } },
  encode(translations) {
    if (translations.length > SOCK_TRANSLATIONS)
      throw new Error(`struct socklb_sock holds ${SOCK_TRANSLATIONS} translations, not ${translations.length}`);
    const bytes = zeroed(168);
    translations.forEach((translation, index) => translationCodec.encode(translation).copy(bytes, index * translationCodec.size));
    bytes.writeUInt32LE(translations.length, 160);
    bytes.writeUInt32LE(Math.max(0, translations.length - 1), 164);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    const translations: Translation[] = [];
    for (let index = 0; index < SOCK_TRANSLATIONS; index++) {
      const offset = index * translationCodec.size;
      if (bytes.readUInt16BE(offset + TRANSLATION_FIELDS.service_port.offset) === 0) continue;
      translations.push(translationCodec.decode(bytes.subarray(offset, offset + translationCodec.size)));
    }
    return translations;
  },
};

/** A (Service frontend, backend) pair that left the datapath. */
export interface StalePair {
  frontend: FrontendKey;
  backend: Backend;
}

// struct socklb_stale_key
export const staleKeyCodec: Codec<StalePair> = {
  cType: 'struct socklb_stale_key',
  size: 40,
  fields: {
    service_address: { offset: 0, size: 16 },
    backend_address: { offset: 16, size: 16 },
    service_port: { offset: 32, size: 2 },
    backend_port: { offset: 34, size: 2 },
    protocol: { offset: 36, size: 1 },
    pad: { offset: 37, size: 3 },
  },
  encode({ frontend, backend }) {
    const bytes = zeroed(40);
    writeIP(frontend.address, bytes, 0);
    writeIP(backend.address, bytes, 16);
    bytes.writeUInt16BE(frontend.port, 32);
    bytes.writeUInt16BE(backend.port, 34);
    bytes.writeUInt8(PROTOCOL_NUMBERS[frontend.protocol], 36);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return {
      frontend: { address: decodeAddress(bytes, 0), port: bytes.readUInt16BE(32), protocol: protocolFromNumber(bytes.readUInt8(36)) },
      backend: { address: decodeAddress(bytes, 16), port: bytes.readUInt16BE(34) },
    };
  },
};

/** A socket a destroy iterator found stuck on a stale pair. */
export interface DestroyedSocket {
  cookie: bigint;
  pair: StalePair;
  /** bpf_sock_destroy()'s result: 0, or a negative errno. */
  error: number;
}

// struct socklb_destroyed: written by the destroy iterators, read only.
export const destroyedCodec: Codec<DestroyedSocket> = {
  cType: 'struct socklb_destroyed',
  size: 56,
  fields: { cookie: { offset: 0, size: 8 }, pair: { offset: 8, size: 40 }, error: { offset: 48, size: 4 }, pad: { offset: 52, size: 4 } },
  encode(destroyed) {
    const bytes = zeroed(56);
    bytes.writeBigUInt64LE(destroyed.cookie, 0);
    staleKeyCodec.encode(destroyed.pair).copy(bytes, 8);
    bytes.writeInt32LE(destroyed.error, 48);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return { cookie: bytes.readBigUInt64LE(0), pair: staleKeyCodec.decode(bytes.subarray(8, 48)), error: bytes.readInt32LE(48) };
  },
};

const AF_INET = 2;
const AF_INET6 = 10;
/** BPF_TCP_* of linux/bpf.h, the values of struct sock_common's skc_state. */
const SOCKET_STATES = [
  '',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'CLOSING',
  'NEW_SYN_RECV',
];

/** A socket socklb translated, as the dump iterators see it. */
export interface SocketRecord {
  cookie: bigint;
  family: 'IPv4' | 'IPv6';
  protocol: Protocol;
  /** The kernel's state name: a connected UDP socket is ESTABLISHED, an unconnected one CLOSE. */
  state: string;
  /** Its connect()'s translation, if one was recorded. */
  connection: Translation | undefined;
  /** Its datagrams' translations (unconnected sends). */
  datagrams: Translation[];
}

const SOCK_RECORD_CONNECTION = 16;
const SOCK_RECORD_SOCK = SOCK_RECORD_CONNECTION + 40;

// struct socklb_sock_record: written by the dump iterators, read only.
export const sockRecordCodec: Codec<SocketRecord> = {
  cType: 'struct socklb_sock_record',
  size: SOCK_RECORD_SOCK + 168,
  fields: {
    cookie: { offset: 0, size: 8 },
    family: { offset: 8, size: 2 },
    protocol: { offset: 10, size: 1 },
    state: { offset: 11, size: 1 },
    pad: { offset: 12, size: 4 },
    connection: { offset: SOCK_RECORD_CONNECTION, size: 40 },
    sock: { offset: SOCK_RECORD_SOCK, size: 168 },
  },
  encode(record) {
    const bytes = zeroed(sockRecordCodec.size);
    bytes.writeBigUInt64LE(record.cookie, 0);
    bytes.writeUInt16LE(record.family === 'IPv4' ? AF_INET : AF_INET6, 8);
    bytes.writeUInt8(PROTOCOL_NUMBERS[record.protocol], 10);
    bytes.writeUInt8(Math.max(0, SOCKET_STATES.indexOf(record.state)), 11);
    if (record.connection) translationCodec.encode(record.connection).copy(bytes, SOCK_RECORD_CONNECTION);
    sockCodec.encode(record.datagrams).copy(bytes, SOCK_RECORD_SOCK);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    const state = bytes.readUInt8(11);
    const connection = bytes.subarray(SOCK_RECORD_CONNECTION, SOCK_RECORD_SOCK);
    return {
      cookie: bytes.readBigUInt64LE(0),
      family: bytes.readUInt16LE(8) === AF_INET ? 'IPv4' : 'IPv6',
      protocol: protocolFromNumber(bytes.readUInt8(10)),
      state: SOCKET_STATES[state] || `state ${state}`,
      // Service port 0 marks an entry not in use, as in struct socklb_sock.
      connection: connection.readUInt16BE(TRANSLATION_FIELDS.service_port.offset) === 0 ? undefined : translationCodec.decode(connection),
      datagrams: sockCodec.decode(bytes.subarray(SOCK_RECORD_SOCK, sockRecordCodec.size)),
    };
  },
};

/** The value of socklb_trace_v1 at key 0. */
export interface TraceSwitch {
  enabled: boolean;
  /** Events dropped because the ring was full, since the map was made. */
  lost: bigint;
}

// struct socklb_trace_switch
export const traceSwitchCodec: Codec<TraceSwitch> = {
  cType: 'struct socklb_trace_switch',
  size: 16,
  fields: { enabled: { offset: 0, size: 4 }, pad: { offset: 4, size: 4 }, lost: { offset: 8, size: 8 } },
  encode(value) {
    const bytes = zeroed(16);
    bytes.writeUInt32LE(value.enabled ? 1 : 0, 0);
    bytes.writeBigUInt64LE(value.lost, 8);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return { enabled: bytes.readUInt32LE(0) !== 0, lost: bytes.readBigUInt64LE(8) };
  },
};

/** enum socklb_trace_reason: what translate() did with a call, by value. */
export const TRACE_REASONS = {
  1: { cName: 'SOCKLB_TRACE_TRANSLATED', name: 'translated' },
  2: { cName: 'SOCKLB_TRACE_NO_BACKEND', name: 'no-backend' },
  3: { cName: 'SOCKLB_TRACE_UNSERVED_ADDRESS', name: 'unserved-address' },
  4: { cName: 'SOCKLB_TRACE_FRONTEND_CHANGING', name: 'frontend-changing' },
} as const;

export type TraceReason = (typeof TRACE_REASONS)[keyof typeof TRACE_REASONS]['name'];

/** enum socklb_trace_hook: the hook a call came through, by value. */
export const TRACE_HOOKS = {
  1: { cName: 'SOCKLB_TRACE_CONNECT', name: 'connect' },
  2: { cName: 'SOCKLB_TRACE_SENDMSG', name: 'sendmsg' },
} as const;

export type TraceHook = (typeof TRACE_HOOKS)[keyof typeof TRACE_HOOKS]['name'];

function enumValue<T extends string>(values: Record<number, { name: T }>, name: T, cType: string): number {
  const entry = Object.entries(values).find(([, value]) => value.name === name);
  if (entry === undefined) throw new Error(`${cType}: no value named ${name}`);
  return Number(entry[0]);
}

function enumName<T extends string>(values: Record<number, { name: T }>, value: number, cType: string): T {
  const entry = values[value];
  if (entry === undefined) throw new Error(`${cType} ${value}: not a value this build knows`);
  return entry.name;
}

/** One call the programs translated or refused, as the ring carries it. */
export interface TraceEvent {
  /** bpf_ktime_get_ns(): CLOCK_MONOTONIC, in nanoseconds. */
  timeNs: bigint;
  /** The calling task's cgroup v2 id: its directory's inode number. */
  cgroupId: bigint;
  netnsCookie: bigint;
  socketCookie: bigint;
  protocol: Protocol;
  hook: TraceHook;
  reason: TraceReason;
  /** The destination the call asked for. */
  service: SocketAddress;
  /** The frontend's service id; 0 when no frontend serves the address. */
  serviceId: number;
  /** The backend and slot it was sent to; absent for a refusal. */
  backend: SocketAddress | undefined;
  slot: number;
}

// struct socklb_trace_event: written by the programs, read only (encoded by tests).
export const traceEventCodec: Codec<TraceEvent> = {
  cType: 'struct socklb_trace_event',
  size: 80,
  fields: {
    time_ns: { offset: 0, size: 8 },
    cgroup_id: { offset: 8, size: 8 },
    netns_cookie: { offset: 16, size: 8 },
    socket_cookie: { offset: 24, size: 8 },
    service_address: { offset: 32, size: 16 },
    backend_address: { offset: 48, size: 16 },
    service_port: { offset: 64, size: 2 },
    backend_port: { offset: 66, size: 2 },
    service_id: { offset: 68, size: 4 },
    slot: { offset: 72, size: 4 },
    protocol: { offset: 76, size: 1 },
    hook: { offset: 77, size: 1 },
    reason: { offset: 78, size: 1 },
    pad: { offset: 79, size: 1 },
  },
  encode(event) {
    const bytes = zeroed(80);
    bytes.writeBigUInt64LE(event.timeNs, 0);
    bytes.writeBigUInt64LE(event.cgroupId, 8);
    bytes.writeBigUInt64LE(event.netnsCookie, 16);
    bytes.writeBigUInt64LE(event.socketCookie, 24);
    writeIP(event.service.address, bytes, 32);
    bytes.writeUInt16BE(event.service.port, 64);
    if (event.backend) {
      writeIP(event.backend.address, bytes, 48);
      bytes.writeUInt16BE(event.backend.port, 66);
    }
    bytes.writeUInt32LE(event.serviceId, 68);
    bytes.writeUInt32LE(event.slot, 72);
    bytes.writeUInt8(PROTOCOL_NUMBERS[event.protocol], 76);
    bytes.writeUInt8(enumValue(TRACE_HOOKS, event.hook, 'enum socklb_trace_hook'), 77);
    bytes.writeUInt8(enumValue(TRACE_REASONS, event.reason, 'enum socklb_trace_reason'), 78);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    const reason = enumName(TRACE_REASONS, bytes.readUInt8(78), 'enum socklb_trace_reason');
    return {
      timeNs: bytes.readBigUInt64LE(0),
      cgroupId: bytes.readBigUInt64LE(8),
      netnsCookie: bytes.readBigUInt64LE(16),
      socketCookie: bytes.readBigUInt64LE(24),
      protocol: protocolFromNumber(bytes.readUInt8(76)),
      hook: enumName(TRACE_HOOKS, bytes.readUInt8(77), 'enum socklb_trace_hook'),
      reason,
      service: { address: decodeAddress(bytes, 32), port: bytes.readUInt16BE(64) },
      serviceId: bytes.readUInt32LE(68),
      backend: reason === 'translated' ? { address: decodeAddress(bytes, 48), port: bytes.readUInt16BE(66) } : undefined,
      slot: bytes.readUInt32LE(72),
    };
  },
};

/**
 * Splits what an iterator or a ring wrote into records of one codec. What does not decode (a
 * record, or bytes short of a whole one) throws; given `skip`, it is handed to `skip` instead and
 * left out, so that one bad record costs only itself.
 */
export function decodeRecords<T>(codec: Codec<T>, bytes: Buffer, skip?: (error: Error) => void): T[] {
  const fail = (error: unknown) => {
    const reported = error instanceof Error ? error : new Error(String(error));
    if (!skip) throw reported;
    skip(reported);
  };
  if (bytes.length % codec.size !== 0) fail(new Error(`${codec.cType}: ${bytes.length} bytes is not a whole number of records`));
  const records: T[] = [];
  for (let offset = 0; offset + codec.size <= bytes.length; offset += codec.size) {
    try {
      records.push(codec.decode(bytes.subarray(offset, offset + codec.size)));
    } catch (error) {
      fail(error);
    }
  }
  return records;
}

/** The key and value codec of each map the agent writes. */
export const MAP_CODECS = {
  frontends: { key: frontendKeyCodec, value: frontendCodec },
  slots: { key: slotKeyCodec, value: slotCodec },
  backends: { key: u32Codec, value: backendCodec },
  serviceNames: { key: u32Codec, value: serviceNameCodec },
  stats: { key: u32Codec, value: statsCodec },
  marker: { key: u32Codec, value: markerCodec },
  // The values are reserved (0): the programs only look for the key.
  clusterIPs: { key: clusterIPCodec, value: u32Codec },
  serviceRanges: { key: serviceRangeKeyCodec, value: u32Codec },
} as const;

/** What socklb leaves untranslated (struct socklb_config): the skip mark, and how many cgroups are bypassed. */
export interface BypassConfig {
  skipMark: number;
  bypassCgroups: number;
  /** SOCKLB_CONFIG_SAME_NETNS: calls whose backend listens in the caller's namespace are left alone. */
  sameNetns: boolean;
}

const CONFIG_SAME_NETNS = 1;

// struct socklb_config: the one value of socklb_cfg_v1, at key 0.
export const configCodec: Codec<BypassConfig> = {
  cType: 'struct socklb_config',
  size: 16,
  fields: {
    skip_mark: { offset: 0, size: 4 },
    bypass_cgroups: { offset: 4, size: 4 },
    flags: { offset: 8, size: 4 },
    pad: { offset: 12, size: 4 },
  },
  encode(config) {
    const bytes = zeroed(16);
    bytes.writeUInt32LE(config.skipMark, 0);
    bytes.writeUInt32LE(config.bypassCgroups, 4);
    bytes.writeUInt32LE(config.sameNetns ? CONFIG_SAME_NETNS : 0, 8);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return {
      skipMark: bytes.readUInt32LE(0),
      bypassCgroups: bytes.readUInt32LE(4),
      sameNetns: (bytes.readUInt32LE(8) & CONFIG_SAME_NETNS) !== 0,
    };
  },
};

// __u64 cgroup ids (host order): the keys of socklb_byp_v1.
export const cgroupIdCodec: Codec<bigint> = {
  cType: '__u64',
  size: 8,
  fields: {},
  encode(value) {
    const bytes = zeroed(8);
    bytes.writeBigUInt64LE(value, 0);
    return bytes;
  },
  decode: (raw) => view(raw).readBigUInt64LE(0),
};

/** SOCKLB_BYPASS_ALL: none of the cgroup's calls is translated. */
export const BYPASS_ALL = 1;
/** SOCKLB_BYPASS_SOME: the cgroup's excluded frontends are in socklb_excl_v1. */
export const BYPASS_SOME = 2;

// struct socklb_bypass
export const bypassCodec: Codec<number> = {
  cType: 'struct socklb_bypass',
  size: 8,
  fields: { flags: { offset: 0, size: 4 }, pad: { offset: 4, size: 4 } },
  encode(flags) {
    const bytes = zeroed(8);
    bytes.writeUInt32LE(flags, 0);
    return bytes;
  },
  decode: (raw) => view(raw).readUInt32LE(0),
};

/** A frontend (its service id) that a bypassed cgroup leaves untranslated. */
export interface Exclusion {
  cgroupId: bigint;
  serviceId: number;
}

// struct socklb_exclusion
export const exclusionCodec: Codec<Exclusion> = {
  cType: 'struct socklb_exclusion',
  size: 16,
  fields: { cgroup_id: { offset: 0, size: 8 }, service_id: { offset: 8, size: 4 }, pad: { offset: 12, size: 4 } },
  encode(exclusion) {
    const bytes = zeroed(16);
    bytes.writeBigUInt64LE(exclusion.cgroupId, 0);
    bytes.writeUInt32LE(exclusion.serviceId, 8);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return { cgroupId: bytes.readBigUInt64LE(0), serviceId: bytes.readUInt32LE(8) };
  },
};

/** The key and value codec of each map of what is left untranslated (src/datapath/bypass.ts writes them). */
export const BYPASS_MAP_CODECS = {
  config: { key: u32Codec, value: configCodec },
  bypass: { key: cgroupIdCodec, value: bypassCodec },
  // The value is reserved (0): the programs only look for the key.
  exclusions: { key: exclusionCodec, value: u32Codec },
} as const;
