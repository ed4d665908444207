// The guest stream's messages, protocol version 1 (docs/guest-protocol.md), as the host sees
// them: it encodes OBJECT, BATCH, COMMIT and RESYNC from map writes the datapath codecs already
// encoded (src/datapath/layout.ts), and decodes the guest's HELLO, LOADED and ACK. The guest is
// untrusted: a guest message is parsed into numbers and names, every size checked against the
// payload before anything is read or allocated, and anything off is a SocklbError
// (SOCKLB_ERR_GUEST_WIRE) naming the field. applier/wire.h is the guest's side of the layout.
//
// A frame is u32 payload length, u8 type, payload; every integer little-endian.

import { SocklbError } from '../errors.js';
import type { Marker } from '../datapath/layout.js';
import { BPF_MAP_TYPE, userValueSize } from '../kernel/map-types.js';

export const WIRE_VERSION = 1;
/** "SLBA", at the start of a HELLO. */
export const HELLO_MAGIC = 0x41424c53;

export const FRAME_TYPES = { hello: 0x01, object: 0x02, batch: 0x03, commit: 0x04, resync: 0x05, loaded: 0x81, ack: 0x82 } as const;

export const FRAME_HEADER_SIZE = 5;
export const LIMITS = {
  /** A BATCH (host to guest). */
  hostPayload: 1 << 20,
  /** An OBJECT, which carries the BPF object. */
  objectPayload: 4 << 20,
  /** Any guest frame. */
  guestPayload: 64 << 10,
  /** Maps in one object, descriptor list or OBJECT (the applier's TARGET_MAX_MAPS). */
  maps: 64,
  /**
   * The max_entries an OBJECT may ask of one map (the applier's WIRE_MAX_MAP_ENTRIES): a guest's
   * kernel preallocates the whole capacity, so that no frame may make it try gigabytes. sizing.ts
   * gives at most 2^19 for a node at its default capacities, full (262,144 slots): 2^20 leaves
   * room for a node of twice that.
   */
  mapEntries: 1 << 20,
} as const;

/** failed_group and failed_write of an ACK that names no write. */
const NO_WRITE = 0xffffffff;
const RESYNC_TOKEN = Buffer.from('SLBRSYNC', 'latin1');

const NAME_SIZE = 16;
const RELEASE_SIZE = 64;
const MESSAGE_SIZE = 128;
const DESCRIPTOR_SIZE = NAME_SIZE + 5 * 4;
const HELLO_FIXED_SIZE = 4 + 2 + 2 + RELEASE_SIZE + 4 + 16 + 8 + 2 + 2;
const LOADED_FIXED_SIZE = 4 + MESSAGE_SIZE + 2 + 2;
const ACK_SIZE = 8 + 8 + 4 + 4 + 4;
const OBJECT_MAP_SIZE = NAME_SIZE + 4 + 4;
const BATCH_HEADER_SIZE = 8 + 8 + 4 + 4;
const GROUP_HEADER_SIZE = 2 + 2 + 4;
/** The kernel's NR_CPUS can be at most 8192: a larger count is no machine's. */
const MAX_POSSIBLE_CPUS = 8192;

const OBJECT_KEEP_PINNED = 0x1;
const BATCH_WAIT_FOR_READERS = 0x1;
const GROUP_ONLY_IF_CLEAN = 0x1;
const WRITE_OPS = { update: 1, delete: 2, zero: 3 } as const;

// The types of the maps a batch may write (applier/target.c).
const WRITABLE_TYPES: ReadonlySet<number> = new Set([
  BPF_MAP_TYPE.hash,
  BPF_MAP_TYPE.array,
  BPF_MAP_TYPE.lruHash,
  BPF_MAP_TYPE.lpmTrie,
  BPF_MAP_TYPE.percpuHash,
  BPF_MAP_TYPE.percpuArray,
  BPF_MAP_TYPE.lruPercpuHash,
]);

/** One map of the guest's datapath, as bpf_map_get_info_by_fd describes it. */
export interface MapDescriptor {
  name: string;
  /** enum bpf_map_type. */
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface Hello {
  kind: 'hello';
  version: number;
  kernelRelease: string;
  possibleCpus: number;
  /** 0/0 when nothing is pinned. */
  marker: Marker;
  /** The nonce of the RESYNC this HELLO answers (serial ports); 0 on a socket. */
  resyncNonce: bigint;
  /** The live maps, in the order BATCHes index them; empty when none. */
  maps: MapDescriptor[];
}

export interface Loaded {
  kind: 'loaded';
  /** 0, or the -errno of the step that failed. */
  error: number;
  message: string;
  /** The staged maps, in the order BATCHes index them; empty when the load failed. */
  maps: MapDescriptor[];
}

export interface Ack {
  kind: 'ack';
  epoch: bigint;
  seq: bigint;
  /** 0, or the -errno of the first failed write (of the commit, of the batch's refusal). */
  error: number;
  /** The first failed write; undefined when no write failed. */
  failed: { group: number; write: number } | undefined;
}

export type GuestMessage = Hello | Loaded | Ack;

/** One frame off the stream, its payload not yet read. */
export interface RawFrame {
  type: number;
  payload: Buffer;
}

/** A capacity the host sets in an OBJECT. */
export interface ObjectMap {
  name: string;
  maxEntries: number;
  /** Reuse the live map of this name when it has the same type, key, value and flags. */
  keepPinned?: boolean;
}

/** One map write, its key and value already encoded (layout.ts); `map` is an index of the target's list. */
export type MapWrite =
  | { op: 'update'; map: number; key: Uint8Array; value: Uint8Array }
  /** A delete, or an update with an all-zero value (a service id's counters reset). */
  | { op: 'delete' | 'zero'; map: number; key: Uint8Array };

export interface WriteGroup {
  /** Skipped when an earlier group of the batch failed: for cleanup and the marker. */
  onlyIfClean?: boolean;
  writes: readonly MapWrite[];
}

export interface Batch {
  epoch: bigint;
  seq: bigint;
  /** Before the first write, wait until every program run that started before has ended: ids freed earlier are reused. */
  waitForReaders?: boolean;
  groups: readonly WriteGroup[];
}

function wireError(message: string): SocklbError {
  return new SocklbError('SOCKLB_ERR_GUEST_WIRE', message);
}

/**
 * The maps a guest's BATCHes write, from its HELLO or LOADED: each index's sizes, as the applier
 * reads them. An update's value is the map's value size, or for a per-CPU map the value rounded up
 * to 8 bytes once per possible CPU (the kernel's own per-CPU layout).
 */
export class WriteTarget {
  /**
   * What a batch's bytes depend on besides its writes: the maps' order, types and sizes, and the
   * guest's CPUs (per-CPU values). Guests of one layout are sent the same frames.
   */
  readonly layout: string;

  constructor(
    readonly maps: readonly MapDescriptor[],
    readonly possibleCpus: number,
  ) {
    this.layout = `${possibleCpus}|${maps.map((map) => `${map.name}:${map.type}:${map.keySize}:${map.valueSize}`).join(',')}`;
  }

  /** The index of the map `name`; throws when the guest has none. */
  index(name: string): number {
    const index = this.maps.findIndex((map) => map.name === name);
    if (index < 0) throw wireError(`map ${name}: not among the guest's maps (${this.maps.map((map) => map.name).join(', ') || 'none'})`);
    return index;
  }

  /** The value bytes of an update of map `index`. */
  updateSize(index: number): number {
    const map = this.#map(index);
    return userValueSize(map.type, map.valueSize, this.possibleCpus);
  }

  /** The bytes `write` takes in a BATCH; throws when its map cannot take it. */
  writeSize(write: MapWrite, where: string): number {
    const map = this.#map(write.map, where);
    if (!WRITABLE_TYPES.has(map.type))
      throw wireError(`${where}: map ${write.map} (${map.name}) is of type ${map.type}, which a batch does not write`);
    if (write.key.length !== map.keySize)
      throw wireError(`${where}: a key of ${write.key.length} bytes for map ${write.map} (${map.name}), whose keys are ${map.keySize}`);
    if (write.op !== 'update') return 2 + write.key.length;
    const size = this.updateSize(write.map);
    if (write.value.length !== size)
      throw wireError(`${where}: a value of ${write.value.length} bytes for map ${write.map} (${map.name}), whose updates take ${size}`);
    return 2 + write.key.length + size;
  }

  #map(index: number, where = 'map index'): MapDescriptor {
    const map = this.maps[index];
    if (map === undefined) throw wireError(`${where}: map ${index} of ${this.maps.length}`);
    return map;
  }
}

/** A frame of `type` around `payloadSize` bytes the caller writes after the header. */
function frame(type: number, payloadSize: number): Buffer {
  const bytes = Buffer.alloc(FRAME_HEADER_SIZE + payloadSize);
  bytes.writeUInt32LE(payloadSize, 0);
  bytes.writeUInt8(type, 4);
  return bytes;
}

/** Writes `text` NUL-padded into `size` bytes; throws when it does not fit with its NUL. */
function writeName(bytes: Buffer, offset: number, text: string, size: number, what: string): void {
  const encoded = Buffer.from(text, 'utf8');
  if (encoded.length === 0 || encoded.length >= size || encoded.includes(0))
    throw wireError(`${what} ${JSON.stringify(text)}: not 1 to ${size - 1} bytes without NUL`);
  encoded.copy(bytes, offset);
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw wireError(`${what} ${value}: not a u32`);
}

function checkU64(value: bigint, what: string): void {
  if (value < 0n || value >= 1n << 64n) throw wireError(`${what} ${value}: not a u64`);
}

/** OBJECT: starts a snapshot; the guest loads `elf` with these capacities, unpinned, and answers LOADED. */
export function encodeObject(maps: readonly ObjectMap[], elf: Uint8Array): Buffer {
  if (maps.length > LIMITS.maps) throw wireError(`OBJECT map_count ${maps.length}: over ${LIMITS.maps}`);
  if (elf.length === 0) throw wireError('OBJECT elf_size 0: no BPF object');
  const payloadSize = 4 + maps.length * OBJECT_MAP_SIZE + 4 + elf.length;
  if (payloadSize > LIMITS.objectPayload) throw wireError(`OBJECT of ${payloadSize} bytes: over its limit of ${LIMITS.objectPayload}`);
  const bytes = frame(FRAME_TYPES.object, payloadSize);
  let offset = FRAME_HEADER_SIZE;
  offset = bytes.writeUInt16LE(maps.length, offset);
  offset = bytes.writeUInt16LE(0, offset);
  for (const map of maps) {
    writeName(bytes, offset, map.name, NAME_SIZE, 'OBJECT map name');
    checkU32(map.maxEntries, `OBJECT map ${map.name} max_entries`);
    if (map.maxEntries > LIMITS.mapEntries)
      throw wireError(`OBJECT map ${map.name} max_entries ${map.maxEntries}: over the limit of ${LIMITS.mapEntries}`);
    offset = bytes.writeUInt32LE(map.maxEntries, offset + NAME_SIZE);
    offset = bytes.writeUInt32LE(map.keepPinned ? OBJECT_KEEP_PINNED : 0, offset);
  }
  offset = bytes.writeUInt32LE(elf.length, offset);
  bytes.set(elf, offset);
  return bytes;
}

/** The payload bytes of a BATCH of `groups`; throws when a write does not fit its map. */
export function batchPayloadSize(groups: readonly WriteGroup[], target: WriteTarget): number {
  let size = BATCH_HEADER_SIZE;
  groups.forEach((group, g) => {
    size += GROUP_HEADER_SIZE;
    group.writes.forEach((write, w) => {
      size += target.writeSize(write, `BATCH group ${g} write ${w}`);
    });
  });
  return size;
}

/** BATCH: the groups of map writes the guest applies in order, then answers ACK. */
export function encodeBatch(batch: Batch, target: WriteTarget): Buffer {
  checkU64(batch.epoch, 'BATCH epoch');
  checkU64(batch.seq, 'BATCH seq');
  const payloadSize = batchPayloadSize(batch.groups, target);
  if (payloadSize > LIMITS.hostPayload)
    throw wireError(
      `BATCH ${batch.epoch}/${batch.seq} of ${payloadSize} bytes: over its limit of ${LIMITS.hostPayload}; split its groups (packGroups)`,
    );
  const bytes = frame(FRAME_TYPES.batch, payloadSize);
  let offset = FRAME_HEADER_SIZE;
  offset = bytes.writeBigUInt64LE(batch.epoch, offset);
  offset = bytes.writeBigUInt64LE(batch.seq, offset);
  offset = bytes.writeUInt32LE(batch.waitForReaders ? BATCH_WAIT_FOR_READERS : 0, offset);
  offset = bytes.writeUInt32LE(batch.groups.length, offset);
  for (const group of batch.groups) {
    offset = bytes.writeUInt16LE(group.onlyIfClean ? GROUP_ONLY_IF_CLEAN : 0, offset);
    offset = bytes.writeUInt16LE(0, offset);
    offset = bytes.writeUInt32LE(group.writes.length, offset);
    for (const write of group.writes) {
      offset = bytes.writeUInt8(WRITE_OPS[write.op], offset);
      offset = bytes.writeUInt8(write.map, offset);
      bytes.set(write.key, offset);
      offset += write.key.length;
      if (write.op === 'update') {
        bytes.set(write.value, offset);
        offset += write.value.length;
      }
    }
  }
  return bytes;
}

/**
 * Splits `groups` into runs that each fit one BATCH of `limit` payload bytes, in order. A group
 * is never split: a failed write stops the rest of its group, which must be in the same batch.
 */
export function packGroups(groups: readonly WriteGroup[], target: WriteTarget, limit: number = LIMITS.hostPayload): WriteGroup[][] {
  const batches: WriteGroup[][] = [];
  let current: WriteGroup[] = [];
  let size = BATCH_HEADER_SIZE;
  groups.forEach((group, g) => {
    const groupSize = batchPayloadSize([group], target) - BATCH_HEADER_SIZE;
    if (BATCH_HEADER_SIZE + groupSize > limit) throw wireError(`group ${g} of ${groupSize} bytes: no BATCH of ${limit} bytes holds it`);
    if (size + groupSize > limit) {
      batches.push(current);
      current = [];
      size = BATCH_HEADER_SIZE;
    }
    current.push(group);
    size += groupSize;
  });
  if (current.length > 0) batches.push(current);
  return batches;
}

/** COMMIT: the staged maps, which hold `marker`, become the guest's datapath; the guest answers ACK. */
export function encodeCommit(marker: Marker): Buffer {
  checkU64(marker.epoch, 'COMMIT epoch');
  checkU64(marker.seq, 'COMMIT seq');
  const bytes = frame(FRAME_TYPES.commit, 16);
  bytes.writeBigUInt64LE(marker.epoch, FRAME_HEADER_SIZE);
  bytes.writeBigUInt64LE(marker.seq, FRAME_HEADER_SIZE + 8);
  return bytes;
}

/**
 * RESYNC: on a serial port, what the host sends when it (re)opens its end, and again each second
 * until the HELLO echoing its latest `nonce` comes (HELLOs that echo older ones are stale).
 */
export function encodeResync(nonce: bigint): Buffer {
  checkU64(nonce, 'RESYNC nonce');
  const bytes = frame(FRAME_TYPES.resync, RESYNC_TOKEN.length + 8);
  RESYNC_TOKEN.copy(bytes, FRAME_HEADER_SIZE);
  bytes.writeBigUInt64LE(nonce, FRAME_HEADER_SIZE + RESYNC_TOKEN.length);
  return bytes;
}

/** Reads a guest payload front to back; every read is checked against what is left. */
class PayloadReader {
  #offset = 0;

  constructor(
    private readonly payload: Buffer,
    private readonly message: string,
  ) {}

  get left(): number {
    return this.payload.length - this.#offset;
  }

  #take(size: number, field: string): number {
    if (size > this.left) throw wireError(`${this.message} ${field}: needs ${size} bytes, ${this.left} left of ${this.payload.length}`);
    const offset = this.#offset;
    this.#offset += size;
    return offset;
  }

  u16(field: string): number {
    return this.payload.readUInt16LE(this.#take(2, field));
  }

  u32(field: string): number {
    return this.payload.readUInt32LE(this.#take(4, field));
  }

  i32(field: string): number {
    return this.payload.readInt32LE(this.#take(4, field));
  }

  u64(field: string): bigint {
    return this.payload.readBigUInt64LE(this.#take(8, field));
  }

  zero16(field: string): void {
    const value = this.u16(field);
    if (value !== 0) throw wireError(`${this.message} ${field}: ${value}, not 0`);
  }

  /** NUL-padded text: nothing but NULs after its end; `nonEmpty` for names. */
  text(size: number, field: string, nonEmpty = false): string {
    const offset = this.#take(size, field);
    const bytes = this.payload.subarray(offset, offset + size);
    const end = bytes.indexOf(0);
    if (end < 0) throw wireError(`${this.message} ${field}: no NUL within its ${size} bytes`);
    if (nonEmpty && end === 0) throw wireError(`${this.message} ${field}: empty`);
    if (bytes.subarray(end).some((byte) => byte !== 0)) throw wireError(`${this.message} ${field}: bytes after its NUL`);
    return bytes.subarray(0, end).toString('utf8');
  }

  /** `count` items of `itemSize` bytes must be exactly what is left: checked before any is read. */
  expectItems(count: number, itemSize: number, field: string): void {
    if (count * itemSize !== this.left)
      throw wireError(`${this.message} ${field} ${count}: ${count * itemSize} bytes of ${itemSize} each, but ${this.left} left`);
  }

  end(): void {
    if (this.left !== 0) throw wireError(`${this.message}: ${this.left} bytes past its end`);
  }
}

function readDescriptors(reader: PayloadReader, count: number, message: string): MapDescriptor[] {
  if (count > LIMITS.maps) throw wireError(`${message} map_count ${count}: over ${LIMITS.maps}`);
  reader.expectItems(count, DESCRIPTOR_SIZE, 'map_count');
  const maps: MapDescriptor[] = [];
  for (let index = 0; index < count; index++) {
    const field = `map ${index}`;
    const map = {
      name: reader.text(NAME_SIZE, `${field} name`, true),
      type: reader.u32(`${field} type`),
      keySize: reader.u32(`${field} key_size`),
      valueSize: reader.u32(`${field} value_size`),
      maxEntries: reader.u32(`${field} max_entries`),
      flags: reader.u32(`${field} map_flags`),
    };
    if (maps.some((other) => other.name === map.name)) throw wireError(`${message} ${field} name ${map.name}: listed twice`);
    maps.push(map);
  }
  return maps;
}

function decodeHello(payload: Buffer): Hello {
  const reader = new PayloadReader(payload, 'HELLO');
  const magic = reader.u32('magic');
  if (magic !== HELLO_MAGIC) throw wireError(`HELLO magic 0x${magic.toString(16)}: not 0x${HELLO_MAGIC.toString(16)} ("SLBA")`);
  const version = reader.u16('version');
  if (version !== WIRE_VERSION) throw wireError(`HELLO version ${version}: this host speaks version ${WIRE_VERSION}`);
  reader.zero16('reserved');
  const kernelRelease = reader.text(RELEASE_SIZE, 'kernel_release');
  const possibleCpus = reader.u32('possible_cpus');
  if (possibleCpus < 1 || possibleCpus > MAX_POSSIBLE_CPUS)
    throw wireError(`HELLO possible_cpus ${possibleCpus}: not 1 to ${MAX_POSSIBLE_CPUS}`);
  const marker = { epoch: reader.u64('marker_epoch'), seq: reader.u64('marker_seq') };
  const resyncNonce = reader.u64('resync_nonce');
  const mapCount = reader.u16('map_count');
  reader.zero16('reserved after map_count');
  return { kind: 'hello', version, kernelRelease, possibleCpus, marker, resyncNonce, maps: readDescriptors(reader, mapCount, 'HELLO') };
}

function decodeLoaded(payload: Buffer): Loaded {
  const reader = new PayloadReader(payload, 'LOADED');
  const error = reader.i32('error');
  if (error > 0) throw wireError(`LOADED error ${error}: not 0 or a negative errno`);
  const message = reader.text(MESSAGE_SIZE, 'message');
  const mapCount = reader.u16('map_count');
  reader.zero16('reserved');
  if (error !== 0 && mapCount !== 0) throw wireError(`LOADED error ${error} with map_count ${mapCount}: a failed load stages no maps`);
  return { kind: 'loaded', error, message, maps: readDescriptors(reader, mapCount, 'LOADED') };
}

function decodeAck(payload: Buffer): Ack {
  const reader = new PayloadReader(payload, 'ACK');
  if (payload.length !== ACK_SIZE) throw wireError(`ACK of ${payload.length} bytes: not ${ACK_SIZE}`);
  const epoch = reader.u64('epoch');
  const seq = reader.u64('seq');
  const error = reader.i32('error');
  const group = reader.u32('failed_group');
  const write = reader.u32('failed_write');
  reader.end();
  if (error > 0) throw wireError(`ACK error ${error}: not 0 or a negative errno`);
  if ((group === NO_WRITE) !== (write === NO_WRITE))
    throw wireError(`ACK failed_group ${group} and failed_write ${write}: one names a write, the other none`);
  if (error === 0 && group !== NO_WRITE) throw wireError(`ACK error 0 with failed write ${write} of group ${group}`);
  return { kind: 'ack', epoch, seq, error, failed: group === NO_WRITE ? undefined : { group, write } };
}

/** Decodes one guest frame; throws a SocklbError naming the field for anything malformed. */
export function decodeGuestMessage(frame: RawFrame): GuestMessage {
  if (frame.payload.length > LIMITS.guestPayload)
    throw wireError(`guest frame of ${frame.payload.length} bytes: over its limit of ${LIMITS.guestPayload}`);
  switch (frame.type) {
    case FRAME_TYPES.hello:
      if (frame.payload.length < HELLO_FIXED_SIZE)
        throw wireError(`HELLO of ${frame.payload.length} bytes: shorter than its ${HELLO_FIXED_SIZE} fixed bytes`);
      return decodeHello(frame.payload);
    case FRAME_TYPES.loaded:
      if (frame.payload.length < LOADED_FIXED_SIZE)
        throw wireError(`LOADED of ${frame.payload.length} bytes: shorter than its ${LOADED_FIXED_SIZE} fixed bytes`);
      return decodeLoaded(frame.payload);
    case FRAME_TYPES.ack:
      return decodeAck(frame.payload);
    default:
      throw wireError(`frame type 0x${frame.type.toString(16).padStart(2, '0')}: not a guest's (HELLO, LOADED or ACK)`);
  }
}
