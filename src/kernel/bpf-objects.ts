// What the kernel says of BPF objects, through libbpf's low-level calls: a map's, program's or
// link's description by its fd, a map's type and keys, and a loaded object's maps by name.

import { SocklbError, errnoName } from '../errors.js';
import { libbpf, type BpfMapHandle, type BpfObjectHandle } from './libbpf.js';

// enum bpf_map_type (linux/bpf.h), the types whose values are read differently.
const BPF_MAP_TYPE_ARRAY = 2;
const BPF_MAP_TYPE_PERCPU_HASH = 5;
const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
const BPF_MAP_TYPE_LRU_PERCPU_HASH = 10;
const PER_CPU_TYPES = new Set([BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH]);
const ARRAY_TYPES = new Set([BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY]);

/** The map's type name as bpftool prints it, for the types socklb pins. */
export function mapTypeName(type: number): string {
  const names: Record<number, string> = {
    1: 'hash',
    2: 'array',
    5: 'percpu_hash',
    6: 'percpu_array',
    9: 'lru_hash',
    10: 'lru_percpu_hash',
    11: 'lpm_trie',
    24: 'sk_storage',
  };
  return names[type] ?? `type ${type}`;
}

/** How many copies of a value a map of this type keeps per key. */
export function valuesPerKey(type: number): number {
  return PER_CPU_TYPES.has(type) ? libbpf.numPossibleCpus() : 1;
}

/** Whether a map of this type is an array: every index below its max_entries is an entry. */
export function isArrayType(type: number): boolean {
  return ARRAY_TYPES.has(type);
}

/** What the kernel says of a map (struct bpf_map_info, the fields socklb reads). */
export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

/** bpf_obj_get_info_by_fd: the kernel's description of a map, program or link, by its fd. */
export function objectInfo(fd: number, what = `fd ${fd}`): Buffer {
  const info = Buffer.alloc(256);
  const rc = libbpf.objGetInfoByFd(fd, info, [info.length]);
  if (rc < 0) throw new SocklbError('SOCKLB_ERR_LIBBPF', `bpf_obj_get_info_by_fd of ${what}: ${errnoName(-rc)}`);
  return info;
}

export function mapInfo(fd: number): MapInfo {
  // struct bpf_map_info
  const info = objectInfo(fd, `map fd ${fd}`);
  const nameBytes = info.subarray(24, 40);
  const end = nameBytes.indexOf(0);
  return {
    type: info.readUInt32LE(0),
    id: info.readUInt32LE(4),
    keySize: info.readUInt32LE(8),
    valueSize: info.readUInt32LE(12),
    maxEntries: info.readUInt32LE(16),
    flags: info.readUInt32LE(20),
    name: nameBytes.subarray(0, end < 0 ? 16 : end).toString('utf8'),
  };
}

/** The map `name` of a libbpf object opened from `objectPath`. */
export function declaredMap(object: BpfObjectHandle, objectPath: string, name: string): BpfMapHandle {
  const map = libbpf.objectFindMap(object, name);
  if (!map) throw new SocklbError('SOCKLB_ERR_LIBBPF', `${objectPath} declares no map ${name}`);
  return map;
}

/** A hash map's keys, one system call each. */
export function* mapKeys(fd: number, keySize: number): Generator<Buffer> {
  let key: Buffer | null = null;
  for (;;) {
    const next = Buffer.alloc(keySize);
    if (libbpf.mapGetNextKey(fd, key, next) < 0) return;
    yield next;
    key = next;
  }
}
