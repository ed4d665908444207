// What is pinned under a socklb pin directory, read from the kernel without
// loading anything: each attachment (cgroup, program, link and program ids)
// and each map's fill and capacity. For `socklb status`.

import { SocklbError, errnoName } from '../errors.js';
import { mapInfo, mapKeys, mapTypeName, objectInfo } from '../kernel/bpf-objects.js';
import { libbpf } from '../kernel/libbpf.js';
import { lastErrno, libcCalls } from '../kernel/libc.js';
import { entriesOf, pinLayout, pinnedLinkDirectories, pinnedMapNames, pinnedMapPath, pinnedSandboxes } from './layout.js';

export interface PinnedLink {
  cgroup: string;
  /** The sandbox whose link this is (src/sandbox/attachments.ts); none for a --cgroup attachment. */
  sandbox?: string;
  program: string;
  /** 0 when the pin could not be read (its error says why). */
  linkId: number;
  programId: number;
  /** The hash of the program's instructions (hex): equal for the same build, different for another. */
  programTag: string;
  error?: string;
}

export interface PinnedMap {
  name: string;
  type: string;
  id: number;
  /** Keys in the map; null where counting says nothing (an array has every index) or is impossible (socket storage). */
  entries: number | null;
  capacity: number;
}

/** Opens a pin; throws what the kernel said, naming the path. */
function openPin(path: string): number {
  const fd = libbpf.objGet(path);
  if (fd < 0) throw new SocklbError('SOCKLB_ERR_LIBBPF', `open pin ${path}: ${errnoName(-fd || lastErrno())}`);
  return fd;
}

/** objectInfo of `fd`, which it closes. */
function infoOfOpened(fd: number, what: string): Buffer {
  try {
    return objectInfo(fd, what);
  } finally {
    libcCalls.close(fd);
  }
}

/**
 * Every pinned link, the --cgroup attachments' and the sandboxes', sorted by cgroup and program.
 * A restart or an upgrade keeps the links (and so their ids) and swaps the programs inside them:
 * these ids and tags are how an operator, or a test, sees that.
 */
export function pinnedLinks(pinDirectory: string): PinnedLink[] {
  const directories: { cgroup: string; sandbox?: string; directory: string }[] = [
    ...pinnedLinkDirectories(pinDirectory),
    ...pinnedSandboxes(pinDirectory).flatMap(({ id, cgroup, directory }) =>
      cgroup === undefined ? [] : [{ cgroup, sandbox: id, directory }],
    ),
  ];
  const links: PinnedLink[] = [];
  for (const { cgroup, sandbox, directory } of directories) {
    for (const program of entriesOf(directory) ?? []) {
      const path = `${directory}/${program}`;
      try {
        // struct bpf_link_info: type, id, prog_id (u32 each).
        const link = infoOfOpened(openPin(path), `link ${path}`);
        const programId = link.readUInt32LE(8);
        const programFd = libbpf.progGetFdById(programId);
        if (programFd < 0)
          throw new SocklbError('SOCKLB_ERR_LIBBPF', `open program ${programId} of link ${path}: ${errnoName(-programFd || lastErrno())}`);
        // struct bpf_prog_info: type, id (u32 each), tag[8].
        const programTag = infoOfOpened(programFd, `program ${programId}`).subarray(8, 16).toString('hex');
        links.push({ cgroup, ...(sandbox !== undefined && { sandbox }), program, linkId: link.readUInt32LE(4), programId, programTag });
      } catch (error) {
        if (!(error instanceof SocklbError)) throw error;
        links.push({
          cgroup,
          ...(sandbox !== undefined && { sandbox }),
          program,
          linkId: 0,
          programId: 0,
          programTag: '',
          error: error.message,
        });
      }
    }
  }
  return links.sort((a, b) => a.cgroup.localeCompare(b.cgroup) || a.program.localeCompare(b.program));
}

const COUNTED_TYPES = new Set(['hash', 'lru_hash', 'percpu_hash', 'lru_percpu_hash', 'lpm_trie']);

/** Every pinned map with its fill, sorted by name. */
export function pinnedMaps(pinDirectory: string): PinnedMap[] {
  let names: string[];
  try {
    names = pinnedMapNames(pinDirectory);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'ENOENT';
    throw new SocklbError(
      'SOCKLB_ERR_NOT_RUNNING',
      `no socklb datapath pinned at ${pinLayout(pinDirectory).maps} (${code}); start one with \`socklb run\``,
    );
  }
  return names.sort().map((name) => {
    const fd = openPin(pinnedMapPath(pinDirectory, name));
    try {
      const info = mapInfo(fd);
      const type = mapTypeName(info.type);
      return {
        name: info.name,
        type,
        id: info.id,
        entries: COUNTED_TYPES.has(type) ? countKeys(fd, info.keySize) : null,
        capacity: info.maxEntries,
      };
    } finally {
      libcCalls.close(fd);
    }
  });
}

/** Walks the keys: one system call per entry, a fraction of a second at a full default map. */
function countKeys(fd: number, keySize: number): number {
  let count = 0;
  for (const _key of mapKeys(fd, keySize)) count++;
  return count;
}
