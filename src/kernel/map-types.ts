// enum bpf_map_type (linux/bpf.h): the types socklb makes, pins or writes, and the size of a
// value as user space reads and writes it. Pure: the guest stream sizes another kernel's values.

export const BPF_MAP_TYPE = {
  hash: 1,
  array: 2,
  percpuHash: 5,
  percpuArray: 6,
  lruHash: 9,
  lruPercpuHash: 10,
  lpmTrie: 11,
  arrayOfMaps: 12,
  skStorage: 24,
  ringbuf: 27,
} as const;

const PER_CPU_TYPES: ReadonlySet<number> = new Set([BPF_MAP_TYPE.percpuHash, BPF_MAP_TYPE.percpuArray, BPF_MAP_TYPE.lruPercpuHash]);

export function isPerCpuType(type: number): boolean {
  return PER_CPU_TYPES.has(type);
}

/** A value's bytes through bpf(): a per-CPU map's holds a copy per possible CPU, each rounded up to 8 bytes. */
export function userValueSize(type: number, valueSize: number, possibleCpus: number): number {
  return isPerCpuType(type) ? Math.ceil(valueSize / 8) * 8 * possibleCpus : valueSize;
}
