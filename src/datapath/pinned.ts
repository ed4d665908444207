// What is pinned under a socklb pin directory, read from the kernel without
// loading anything: each attachment (cgroup, program, link and program ids)
// and each map's fill and capacity. For `socklb status`.

import { readdirSync } from 'node:fs';
import { SocklbError, errnoName } from '../errors.js';
import { mapInfo, mapTypeName } from './kernel-maps.js';
import { lastErrno, libbpf, libcCalls } from './libbpf.js';
import { pinLayout, pinnedLinkDirectories } from './loader.js';

export interface PinnedLink {
  cgroup: string;
  program: string;
  /** 0 when the pin could not be read (its error says why). */
  linkId: number;
  programId: number;
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

/** Every pinned link, sorted by cgroup and program. */
export function pinnedLinks(pinDirectory: string): PinnedLink[] {
  const links: PinnedLink[] = [];
  for (const { cgroup, directory } of pinnedLinkDirectories(pinDirectory)) {
    for (const program of readdirSync(directory)) {
      try {
        const fd = openPin(`${directory}/${program}`);
        try {
          // struct bpf_link_info: type, id, prog_id, then the per-type union.
          const info = Buffer.alloc(64);
          const rc = libbpf.objGetInfoByFd(fd, info, [info.length]);
          if (rc < 0) throw new SocklbError('SOCKLB_ERR_LIBBPF', `bpf_obj_get_info_by_fd(${directory}/${program}): ${errnoName(-rc)}`);
          links.push({ cgroup, program, linkId: info.readUInt32LE(4), programId: info.readUInt32LE(8) });
        } finally {
          libcCalls.close(fd);
        }
      } catch (error) {
        if (!(error instanceof SocklbError)) throw error;
        links.push({ cgroup, program, linkId: 0, programId: 0, error: error.message });
      }
    }
  }
  return links.sort((a, b) => a.cgroup.localeCompare(b.cgroup) || a.program.localeCompare(b.program));
}

const COUNTED_TYPES = new Set(['hash', 'lru_hash', 'percpu_hash', 'lru_percpu_hash']);

/** Every pinned map with its fill, sorted by name. */
export function pinnedMaps(pinDirectory: string): PinnedMap[] {
  const { maps } = pinLayout(pinDirectory);
  let names: string[];
  try {
    names = readdirSync(maps);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'ENOENT';
    throw new SocklbError('SOCKLB_ERR_NOT_RUNNING', `no socklb datapath pinned at ${maps} (${code}); start one with \`socklb run\``);
  }
  return names.sort().map((name) => {
    const fd = openPin(`${maps}/${name}`);
    try {
      const info = mapInfo(fd);
      const type = mapTypeName(info.type);
      return { name: info.name, type, id: info.id, entries: COUNTED_TYPES.has(type) ? countKeys(fd, info.keySize) : null, capacity: info.maxEntries };
    } finally {
      libcCalls.close(fd);
    }
  });
}

/** Walks the keys: one system call per entry, a fraction of a second at a full default map. */
function countKeys(fd: number, keySize: number): number {
  let count = 0;
  let key: Buffer | null = null;
  for (;;) {
    const next = Buffer.alloc(keySize);
    if (libbpf.mapGetNextKey(fd, key, next) < 0) return count;
    count++;
    key = next;
  }
}
