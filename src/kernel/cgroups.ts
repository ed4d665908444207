// A cgroup v2 directory as BPF sees it: the kernel's id of the cgroup at a path now, and the
// programs that run for one hook of its processes (its own and its ancestors').

import { constants, fstatSync, openSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { SocklbError, errnoName } from '../errors.js';
import { attachTypeName } from './bpf-objects.js';
import { libbpf } from './libbpf.js';

/** Opens the cgroup directory at `path`; undefined when there is none (removed, or not made yet). */
export function openCgroup(path: string): number | undefined {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

/**
 * The kernel's id of the cgroup open at `fd`, as a cgroup link's cgroup_id names it. On cgroup v2
 * it is the directory's inode number: kernfs gives both from the node's 64-bit id. A cgroup
 * removed and made again at the same path is another cgroup, with another id.
 */
export function cgroupId(fd: number): bigint {
  return fstatSync(fd, { bigint: true }).ino;
}

/** The id of the cgroup at `path` now; undefined when there is none. */
export function cgroupIdAt(path: string): bigint | undefined {
  try {
    return statSync(path, { bigint: true }).ino;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

// linux/bpf.h
const BPF_F_QUERY_EFFECTIVE = 1;
/** Room for the ids of a first query; a cgroup with more (its ancestors' included) is asked again. */
const FIRST_QUERY_ROOM = 64;

/**
 * BPF_PROG_QUERY with BPF_F_QUERY_EFFECTIVE: the ids of the programs that run for `attachType` in
 * the cgroup open at `fd`, whether attached to it or inherited from an ancestor.
 */
export function effectivePrograms(fd: number, attachType: number, what: string): number[] {
  let room = FIRST_QUERY_ROOM;
  for (;;) {
    const ids = Buffer.alloc(room * 4);
    const count = [room];
    const rc = libbpf.progQuery(fd, attachType, BPF_F_QUERY_EFFECTIVE, null, ids, count);
    const found = count[0] ?? 0;
    // ENOSPC: more programs than room, and count says how many; a program attached meanwhile can
    // make the second query short too.
    if (rc === -osConstants.errno.ENOSPC && found > room) {
      room = found;
      continue;
    }
    if (rc < 0)
      throw new SocklbError('SOCKLB_ERR_LIBBPF', `query the ${attachTypeName(attachType)} programs that run in ${what}: ${errnoName(-rc)}`);
    return Array.from({ length: found }, (_, index) => ids.readUInt32LE(index * 4));
  }
}
