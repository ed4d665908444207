// Guest frames as the applier writes them (applier/session.c), for the host codec's tests.

import type { Marker } from '../../src/datapath/layout.js';
import type { MapDescriptor } from '../../src/guest/wire.js';

/** A guest's maps, as a LOADED lists them; 5 is socket storage, which batches never write. */
export const DESCRIPTORS: MapDescriptor[] = [
  { name: 'socklb_be_v1', type: 1, keySize: 4, valueSize: 20, maxEntries: 64, flags: 0 },
  { name: 'socklb_fe_v2', type: 1, keySize: 20, valueSize: 12, maxEntries: 64, flags: 0 },
  { name: 'socklb_slot_v1', type: 1, keySize: 8, valueSize: 4, maxEntries: 256, flags: 0 },
  { name: 'socklb_stats_v1', type: 6, keySize: 4, valueSize: 32, maxEntries: 65, flags: 0 },
  { name: 'socklb_mark_v1', type: 2, keySize: 4, valueSize: 16, maxEntries: 1, flags: 0 },
  { name: 'socklb_sock_v2', type: 24, keySize: 4, valueSize: 168, maxEntries: 0, flags: 1 },
];

function text(value: string, size: number): Buffer {
  const bytes = Buffer.alloc(size);
  bytes.write(value, 'utf8');
  return bytes;
}

function descriptors(maps: readonly MapDescriptor[]): Buffer {
  return Buffer.concat(
    maps.map((map) => {
      const bytes = Buffer.alloc(36);
      text(map.name, 16).copy(bytes);
      [map.type, map.keySize, map.valueSize, map.maxEntries, map.flags].forEach((value, index) =>
        bytes.writeUInt32LE(value, 16 + 4 * index),
      );
      return bytes;
    }),
  );
}

export function helloPayload(
  options: { marker?: Marker; maps?: readonly MapDescriptor[]; cpus?: number; resyncNonce?: bigint } = {},
): Buffer {
  const maps = options.maps ?? DESCRIPTORS;
  const fixed = Buffer.alloc(104);
  fixed.writeUInt32LE(0x41424c53, 0);
  fixed.writeUInt16LE(1, 4);
  text('6.1.0-57-cloud-amd64', 64).copy(fixed, 8);
  fixed.writeUInt32LE(options.cpus ?? 2, 72);
  fixed.writeBigUInt64LE(options.marker?.epoch ?? 0n, 76);
  fixed.writeBigUInt64LE(options.marker?.seq ?? 0n, 84);
  fixed.writeBigUInt64LE(options.resyncNonce ?? 0n, 92);
  fixed.writeUInt16LE(maps.length, 100);
  return Buffer.concat([fixed, descriptors(maps)]);
}

export function loadedPayload(error: number, message: string, maps: readonly MapDescriptor[]): Buffer {
  const fixed = Buffer.alloc(136);
  fixed.writeInt32LE(error, 0);
  text(message, 128).copy(fixed, 4);
  fixed.writeUInt16LE(maps.length, 132);
  return Buffer.concat([fixed, descriptors(maps)]);
}

export function ackPayload(epoch: bigint, seq: bigint, error: number, failedGroup: number, failedWrite: number): Buffer {
  const bytes = Buffer.alloc(28);
  bytes.writeBigUInt64LE(epoch, 0);
  bytes.writeBigUInt64LE(seq, 8);
  bytes.writeInt32LE(error, 16);
  bytes.writeUInt32LE(failedGroup, 20);
  bytes.writeUInt32LE(failedWrite, 24);
  return bytes;
}

/** A whole frame around `payload`. */
export function guestFrame(type: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32LE(payload.length, 0);
  header.writeUInt8(type, 4);
  return Buffer.concat([header, payload]);
}
