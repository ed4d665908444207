// What the pinned links hold: each link's id and the program it runs now.
// A restart or an upgrade keeps the links (and so their ids) and swaps the
// programs inside them; these ids are how an operator or a test sees that.

import { existsSync, readdirSync } from 'node:fs';
import { SocklbError, errnoName } from '../errors.js';
import { lastErrno, libbpf, libcCalls } from './libbpf.js';
import { pinLayout } from './loader.js';

export interface PinnedLink {
  /** Below the links directory: <cgroup directory>/<program name>. */
  pin: string;
  linkId: number;
  programId: number;
  /** The hash of the program's instructions (hex): equal for the same build, different for another. */
  programTag: string;
}

/** Every link pinned under `pinDirectory`, sorted by pin. */
export function pinnedLinks(pinDirectory: string): PinnedLink[] {
  const { links } = pinLayout(pinDirectory);
  if (!existsSync(links)) return [];
  const found: PinnedLink[] = [];
  for (const directory of readdirSync(links).sort()) {
    for (const program of readdirSync(`${links}/${directory}`).sort()) {
      const pin = `${directory}/${program}`;
      // struct bpf_link_info: type, id, prog_id (u32 each).
      const link = objectInfo(libbpf.objGet(`${links}/${pin}`), `link ${links}/${pin}`);
      const programId = link.readUInt32LE(8);
      // struct bpf_prog_info: type, id (u32 each), tag[8].
      const info = objectInfo(libbpf.progGetFdById(programId), `program ${programId} of link ${links}/${pin}`);
      found.push({ pin, linkId: link.readUInt32LE(4), programId, programTag: info.subarray(8, 16).toString('hex') });
    }
  }
  return found;
}

/** bpf_obj_get_info_by_fd of `fd` (a negative fd is the failed open's -errno); closes it. */
function objectInfo(fd: number, what: string): Buffer {
  if (fd < 0) throw new SocklbError('SOCKLB_ERR_LIBBPF', `cannot open ${what}: ${errnoName(-fd || lastErrno())}`);
  try {
    const info = Buffer.alloc(256);
    const rc = libbpf.objGetInfoByFd(fd, info, [info.length]);
    if (rc < 0) throw new SocklbError('SOCKLB_ERR_LIBBPF', `bpf_obj_get_info_by_fd of ${what}: ${errnoName(-rc)}`);
    return info;
  } finally {
    libcCalls.close(fd);
  }
}
