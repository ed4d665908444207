// The maps pinned under a pin directory, opened without loading anything (the inspection
// commands, the benchmark, tests): descriptors opened by map name and closed together.

import { SocklbError, errnoName } from '../errors.js';
import { libbpf } from '../kernel/libbpf.js';
import { lastErrno, libcCalls } from '../kernel/libc.js';
import { pinnedMapPath } from './layout.js';

export class PinnedMapFds {
  private readonly fds: number[] = [];

  constructor(readonly pinDirectory: string) {}

  /**
   * Opens the map `name`. The first one missing means no datapath is pinned; once another was
   * opened, a missing map is one an older build did not have.
   */
  open(name: string): number {
    const path = pinnedMapPath(this.pinDirectory, name);
    const fd = libbpf.objGet(path);
    if (fd < 0) {
      const errno = -fd || lastErrno();
      if (this.fds.length > 0) {
        throw new SocklbError(
          'SOCKLB_ERR_MAP_LAYOUT',
          `${path}: not pinned (${errnoName(errno)}) beside the other maps: they were pinned by another build of socklb; ` +
            `\`socklb run\` of this build adds it`,
        );
      }
      throw new SocklbError(
        'SOCKLB_ERR_NOT_RUNNING',
        `no socklb datapath pinned at ${path} (${errnoName(errno)}); start one with \`socklb run\``,
      );
    }
    this.fds.push(fd);
    return fd;
  }

  /** Closes every map opened. */
  close(): void {
    for (const fd of this.fds.splice(0)) libcCalls.close(fd);
  }
}
