// What is pinned under a socklb pin directory, read from the kernel without
// loading anything: each attachment (cgroup, program, link and program ids, and
// whether the link still serves its cgroup) and each map's fill and capacity.
// For `socklb status`.

import { SocklbError, errnoName } from '../errors.js';
import { countEntries, mapInfo, mapTypeName, objectInfo, type LinkInfo } from '../kernel/bpf-objects.js';
import { libbpf } from '../kernel/libbpf.js';
import { lastErrno, libcCalls } from '../kernel/libc.js';
import { entriesOf, pinLayout, pinnedAttachments, pinnedMapNames, pinnedMapPath } from './layout.js';
import { cgroupGone, linkProblem, readPinnedLink, withCgroupView, type CgroupView, type LinkProblem } from './link-health.js';

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
  /** Why the link does not serve its cgroup (link-health.ts); none while it does. */
  problem?: LinkProblem;
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

/** The hash of the instructions of program `id` (hex). */
function programTag(id: number, linkPath: string): string {
  const fd = libbpf.progGetFdById(id);
  if (fd < 0) throw new SocklbError('SOCKLB_ERR_LIBBPF', `open program ${id} of link ${linkPath}: ${errnoName(-fd || lastErrno())}`);
  try {
    // struct bpf_prog_info: type, id (u32 each), tag[8].
    return objectInfo(fd, `program ${id}`).subarray(8, 16).toString('hex');
  } finally {
    libcCalls.close(fd);
  }
}

/**
 * Every pinned link, the --cgroup attachments' and the sandboxes', sorted by cgroup and program,
 * each checked against the cgroup at its path now. A restart or an upgrade keeps the links (and so
 * their ids) and swaps the programs inside them: these ids and tags are how an operator, or a
 * test, sees that.
 */
export function pinnedLinks(pinDirectory: string): PinnedLink[] {
  const links: PinnedLink[] = [];
  for (const { cgroup, sandbox, directory } of pinnedAttachments(pinDirectory)) {
    withCgroupView(cgroup, (view) => {
      for (const program of entriesOf(directory) ?? []) {
        const owner = { cgroup, ...(sandbox !== undefined && { sandbox }), program };
        links.push({ ...owner, ...describeLink(`${directory}/${program}`, view, cgroup) });
      }
    });
  }
  return links.sort((a, b) => a.cgroup.localeCompare(b.cgroup) || a.program.localeCompare(b.program));
}

/** The link pinned at `path`, and why it does not serve the cgroup at `cgroup` (now `view`). */
function describeLink(path: string, view: CgroupView | undefined, cgroup: string): Omit<PinnedLink, 'cgroup' | 'sandbox' | 'program'> {
  let link: LinkInfo;
  try {
    link = readPinnedLink(path);
  } catch (error) {
    if (!(error instanceof SocklbError)) throw error;
    const problem = view === undefined ? cgroupGone(cgroup) : { reason: 'link_missing' as const, detail: error.message };
    return { linkId: 0, programId: 0, programTag: '', error: error.message, problem };
  }
  const ids = { linkId: link.id, programId: link.programId };
  try {
    const problem = view === undefined ? cgroupGone(cgroup) : linkProblem(link, view);
    return { ...ids, programTag: programTag(link.programId, path), ...(problem && { problem }) };
  } catch (error) {
    if (!(error instanceof SocklbError)) throw error;
    return { ...ids, programTag: '', error: error.message };
  }
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
        entries: COUNTED_TYPES.has(type) ? countEntries(fd, info) : null,
        capacity: info.maxEntries,
      };
    } finally {
      libcCalls.close(fd);
    }
  });
}
