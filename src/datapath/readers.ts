// Waiting for the programs' readers. A program holds a service or backend id
// only while it runs: it reads the id from one map and looks it up in the
// next. The planner hands out an id that a sync freed only after every
// program run that could still hold it has finished, so that no connect() can
// follow a freed id to its next owner, another Service.

import { SocklbError, errnoName } from '../errors.js';
import { libbpf } from '../kernel/libbpf.js';
import { BPF_MAP_TYPE } from '../kernel/map-types.js';
import { libcCalls } from '../kernel/libc.js';

/** Returns once every BPF program run that started before the call has finished. */
export interface ReaderFence {
  waitForReaders(): void;
}

/** sizeof(struct bpf_map_create_opts) in libbpf 1.1; inner_map_fd at offset 24 (libbpf takes a shorter or longer one). */
const CREATE_OPTS_SIZE = 48;
const INNER_MAP_FD_OFFSET = 24;

/**
 * Updating a map-of-maps makes the kernel wait for every running BPF program to finish
 * (synchronize_rcu in the bpf() syscall, so that user space knows no program still uses the
 * inner map it replaced), as the kernel's own selftests use it: a few microseconds when no
 * program runs, the rest of the longest run otherwise. The maps are the agent's own, unpinned.
 */
export class KernelReaderFence implements ReaderFence {
  private readonly inner: number;
  private readonly outer: number;
  private readonly key = Buffer.alloc(4);
  private readonly value = Buffer.alloc(4);

  constructor() {
    this.inner = created(libbpf.mapCreate(BPF_MAP_TYPE.array, 'socklb_fence_in', 4, 4, 1, null));
    const opts = Buffer.alloc(CREATE_OPTS_SIZE);
    opts.writeBigUInt64LE(BigInt(CREATE_OPTS_SIZE), 0);
    opts.writeUInt32LE(this.inner, INNER_MAP_FD_OFFSET);
    try {
      this.outer = created(libbpf.mapCreate(BPF_MAP_TYPE.arrayOfMaps, 'socklb_fence', 4, 4, 1, opts));
    } catch (error) {
      libcCalls.close(this.inner);
      throw error;
    }
    this.value.writeUInt32LE(this.inner, 0);
  }

  waitForReaders(): void {
    const rc = libbpf.mapUpdateElem(this.outer, this.key, this.value, 0);
    if (rc < 0)
      throw new SocklbError('SOCKLB_ERR_KERNEL', `waiting for the programs' readers (update of a map-of-maps): ${errnoName(-rc)}`);
  }

  close(): void {
    libcCalls.close(this.outer);
    libcCalls.close(this.inner);
  }
}

function created(fd: number): number {
  if (fd < 0) throw new SocklbError('SOCKLB_ERR_KERNEL', `cannot create the agent's reader fence (a map-of-maps): ${errnoName(-fd)}`);
  return fd;
}
