// What the kernel says of BPF objects, through libbpf's low-level calls: a map's, program's or
// link's description by its fd (a cgroup link's cgroup and hook among it), a map's type and keys,
// and a loaded object's maps by name.

import { SocklbError, errnoName } from '../errors.js';
import { libbpf, type BpfMapHandle, type BpfObjectHandle } from './libbpf.js';
import { BPF_MAP_TYPE, isPerCpuType, userValueSize } from './map-types.js';

const ARRAY_TYPES: ReadonlySet<number> = new Set([BPF_MAP_TYPE.array, BPF_MAP_TYPE.percpuArray]);

/** The map's type name as bpftool prints it, for the types socklb pins. */
export function mapTypeName(type: number): string {
  const names: Record<number, string> = {
    [BPF_MAP_TYPE.hash]: 'hash',
    [BPF_MAP_TYPE.array]: 'array',
    [BPF_MAP_TYPE.percpuHash]: 'percpu_hash',
    [BPF_MAP_TYPE.percpuArray]: 'percpu_array',
    [BPF_MAP_TYPE.lruHash]: 'lru_hash',
    [BPF_MAP_TYPE.lruPercpuHash]: 'lru_percpu_hash',
    [BPF_MAP_TYPE.lpmTrie]: 'lpm_trie',
    [BPF_MAP_TYPE.skStorage]: 'sk_storage',
    [BPF_MAP_TYPE.ringbuf]: 'ringbuf',
  };
  return names[type] ?? `type ${type}`;
}

/** How many copies of a value a map of this type keeps per key. */
export function valuesPerKey(type: number): number {
  return isPerCpuType(type) ? libbpf.numPossibleCpus() : 1;
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

// enum bpf_link_type (linux/bpf.h): a link that attaches a program to a cgroup.
const BPF_LINK_TYPE_CGROUP = 3;

/** What the kernel says of a link (struct bpf_link_info, the fields socklb reads). */
export interface LinkInfo {
  id: number;
  programId: number;
  /** For a cgroup link: the cgroup it is attached to (0n once detached, or once its cgroup died) and its hook. */
  cgroup?: { id: bigint; attachType: number };
}

export function linkInfo(fd: number, what = `link fd ${fd}`): LinkInfo {
  // struct bpf_link_info: type, id, prog_id (u32 each), then a union aligned to 8 bytes, whose
  // cgroup member is cgroup_id (u64) and attach_type (u32).
  const info = objectInfo(fd, what);
  return {
    id: info.readUInt32LE(4),
    programId: info.readUInt32LE(8),
    ...(info.readUInt32LE(0) === BPF_LINK_TYPE_CGROUP && { cgroup: { id: info.readBigUInt64LE(16), attachType: info.readUInt32LE(24) } }),
  };
}

/** The hook of an attach type (enum bpf_attach_type) as bpftool prints it, for the types socklb attaches. */
export function attachTypeName(type: number): string {
  const names: Record<number, string> = {
    10: 'cgroup_inet4_connect',
    11: 'cgroup_inet6_connect',
    14: 'cgroup_udp4_sendmsg',
    15: 'cgroup_udp6_sendmsg',
    19: 'cgroup_udp4_recvmsg',
    20: 'cgroup_udp6_recvmsg',
    29: 'cgroup_inet4_getpeername',
    30: 'cgroup_inet6_getpeername',
    34: 'cgroup_inet_sock_release',
  };
  return names[type] ?? `attach type ${type}`;
}

/** The map `name` of a libbpf object opened from `objectPath`. */
export function declaredMap(object: BpfObjectHandle, objectPath: string, name: string): BpfMapHandle {
  const map = libbpf.objectFindMap(object, name);
  if (!map) throw new SocklbError('SOCKLB_ERR_LIBBPF', `${objectPath} declares no map ${name}`);
  return map;
}

/** Entries per bpf_map_lookup_batch call when counting: 4096 entries of the connection map are 192 KiB. */
const COUNT_BATCH_ENTRIES = 4096;
const ENOENT = 2;
/** What bpf() answers for a map type that has no batch operations (the kernel's ENOTSUPP, and EOPNOTSUPP). */
const NO_BATCHES = new Set([524, 95]);

/**
 * How many keys a hash-like map holds (hash, LRU hash, LPM trie), read in batches of
 * bpf_map_lookup_batch (kernel 5.6): a full connection map of 131072 entries is 32 system calls.
 * A map type without batches (the LPM trie) is walked key by key, one system call each. Programs
 * that add and delete meanwhile make it a count of some moment during the read, as any count is.
 */
export function countEntries(fd: number, info: MapInfo): number {
  // A hash map's batch position is a bucket index (u32); an array's, its next index.
  const position = Buffer.alloc(8);
  const next = Buffer.alloc(8);
  const valueSize = userValueSize(info.type, info.valueSize, libbpf.numPossibleCpus());
  const keys = Buffer.alloc(COUNT_BATCH_ENTRIES * info.keySize);
  const values = Buffer.alloc(COUNT_BATCH_ENTRIES * valueSize);
  let entries = 0;
  for (let first = true; ; first = false) {
    const count = [COUNT_BATCH_ENTRIES];
    const rc = libbpf.mapLookupBatch(fd, first ? null : position, next, keys, values, count, null);
    if (rc < 0 && -rc !== ENOENT) {
      if (first && NO_BATCHES.has(-rc)) return countKeys(fd, info.keySize);
      throw new SocklbError('SOCKLB_ERR_LIBBPF', `bpf_map_lookup_batch(${info.name}): ${errnoName(-rc)}`);
    }
    entries += count[0] ?? 0;
    if (rc < 0) return entries;
    next.copy(position);
  }
}

function countKeys(fd: number, keySize: number): number {
  let count = 0;
  for (const _key of mapKeys(fd, keySize)) count++;
  return count;
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
