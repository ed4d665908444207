// Codecs for the map keys and values of bpf/socklb.h, byte for byte.
// test/unit/layout.test.ts checks every size and offset here against the BTF
// of the compiled object, so a change on one side cannot go unnoticed.

import { formatIP, ipToBytes, isIPv4Mapped } from '../model/ip.js';
import type { Backend, FrontendKey, Protocol, ServicePortRef } from '../model/types.js';

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

/** Map names as the object declares them: versioned with their layout. */
export const MAP_NAMES = {
  frontends: 'socklb_fe_v1',
  slots: 'socklb_slot_v1',
  backends: 'socklb_be_v1',
  serviceNames: 'socklb_name_v1',
  sockets: 'socklb_sock_v1',
} as const;

const PROTOCOL_NUMBERS: Record<Protocol, number> = { TCP: 6, UDP: 17 };

function protocolFromNumber(value: number): Protocol {
  if (value === PROTOCOL_NUMBERS.TCP) return 'TCP';
  if (value === PROTOCOL_NUMBERS.UDP) return 'UDP';
  throw new Error(`IP protocol ${value} is neither TCP nor UDP`);
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
  fields: { address: { offset: 0, size: 16 }, port: { offset: 16, size: 2 }, protocol: { offset: 18, size: 1 }, pad: { offset: 19, size: 1 } },
  encode(key) {
    const bytes = Buffer.alloc(20);
    ipToBytes(key.address).copy(bytes, 0);
    bytes.writeUInt16BE(key.port, 16);
    bytes.writeUInt8(PROTOCOL_NUMBERS[key.protocol], 18);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return { address: decodeAddress(bytes, 0), port: bytes.readUInt16BE(16), protocol: protocolFromNumber(bytes.readUInt8(18)) };
  },
};

export interface FrontendValue {
  serviceId: number;
  backendCount: number;
  flags: number;
}

// struct socklb_frontend
export const frontendCodec: Codec<FrontendValue> = {
  cType: 'struct socklb_frontend',
  size: 8,
  fields: { service_id: { offset: 0, size: 4 }, backend_count: { offset: 4, size: 2 }, flags: { offset: 6, size: 2 } },
  encode(value) {
    const bytes = Buffer.alloc(8);
    bytes.writeUInt32LE(value.serviceId, 0);
    bytes.writeUInt16LE(value.backendCount, 4);
    bytes.writeUInt16LE(value.flags, 6);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return { serviceId: bytes.readUInt32LE(0), backendCount: bytes.readUInt16LE(4), flags: bytes.readUInt16LE(6) };
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
    const bytes = Buffer.alloc(8);
    bytes.writeUInt32LE(key.serviceId, 0);
    bytes.writeUInt32LE(key.slot, 4);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return { serviceId: bytes.readUInt32LE(0), slot: bytes.readUInt32LE(4) };
  },
};

// struct socklb_slot: a backend id.
export const slotCodec: Codec<number> = {
  cType: 'struct socklb_slot',
  size: 4,
  fields: { backend_id: { offset: 0, size: 4 } },
  encode: (backendId) => u32Codec.encode(backendId),
  decode: (raw) => u32Codec.decode(raw),
};

// __u32 keys of the backend and service name maps (host order).
export const u32Codec: Codec<number> = {
  cType: '__u32',
  size: 4,
  fields: {},
  encode(value) {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32LE(value, 0);
    return bytes;
  },
  decode: (raw) => view(raw).readUInt32LE(0),
};

// struct socklb_backend
export const backendCodec: Codec<Backend> = {
  cType: 'struct socklb_backend',
  size: 20,
  fields: { address: { offset: 0, size: 16 }, port: { offset: 16, size: 2 }, pad: { offset: 18, size: 2 } },
  encode(backend) {
    const bytes = Buffer.alloc(20);
    ipToBytes(backend.address).copy(bytes, 0);
    bytes.writeUInt16BE(backend.port, 16);
    return bytes;
  },
  decode(raw) {
    const bytes = view(raw);
    return { address: decodeAddress(bytes, 0), port: bytes.readUInt16BE(16) };
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
    const bytes = Buffer.alloc(144);
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

// struct socklb_translation: socket-local storage that only the programs read.
export const translationLayout: StructLayout = {
  cType: 'struct socklb_translation',
  size: 36,
  fields: {
    service_address: { offset: 0, size: 16 },
    backend_address: { offset: 16, size: 16 },
    service_port: { offset: 32, size: 2 },
    backend_port: { offset: 34, size: 2 },
  },
};

/** The key and value codec of each map the agent writes. */
export const MAP_CODECS = {
  frontends: { key: frontendKeyCodec, value: frontendCodec },
  slots: { key: slotKeyCodec, value: slotCodec },
  backends: { key: u32Codec, value: backendCodec },
  serviceNames: { key: u32Codec, value: serviceNameCodec },
} as const;
