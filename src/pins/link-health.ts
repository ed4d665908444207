// Whether a pinned link still does its job. A pin outlives what it attached: a cgroup removed (and
// perhaps made again at the same path by its runtime) or a link detached by someone else leaves
// the pin in place, readable, and nothing translated. A link serves when it is attached, to the
// cgroup at its path now, and its program is among those that run there for its hook.

import { closeSync } from 'node:fs';
import { SocklbError, errnoName } from '../errors.js';
import { attachTypeName, linkInfo, type LinkInfo } from '../kernel/bpf-objects.js';
import { cgroupId, effectivePrograms, openCgroup } from '../kernel/cgroups.js';
import { libbpf } from '../kernel/libbpf.js';
import { lastErrno, libcCalls } from '../kernel/libc.js';

/**
 * Why a pinned link does not serve, from the worst: the cgroup's directory is gone; the link is
 * attached to a cgroup that is no longer the one at the path (removed and made again while a
 * socket of the old one kept it alive); it is attached to no cgroup (detached by someone, or its
 * cgroup removed); no link is pinned for the program; its program does not run there.
 */
export const LINK_FAULTS = ['cgroup_gone', 'cgroup_replaced', 'link_detached', 'link_missing', 'not_effective'] as const;
export type LinkFault = (typeof LINK_FAULTS)[number];

export interface LinkProblem {
  reason: LinkFault;
  /** The kernel's facts, in a sentence naming the link, the cgroup and their ids. */
  detail: string;
}

/** The cgroup at an attachment's path, as it is now. */
export interface CgroupView {
  path: string;
  id: bigint;
  /** The ids of the programs that run for `attachType` in it, its ancestors' included. */
  effective(attachType: number): readonly number[];
}

/** What is wrong with `link` for the cgroup at its path now; undefined when it serves. */
export function linkProblem(link: LinkInfo, cgroup: CgroupView): LinkProblem | undefined {
  if (link.cgroup === undefined) return { reason: 'link_missing', detail: `link ${link.id} is not a cgroup link` };
  const { id, attachType } = link.cgroup;
  if (id === 0n)
    return { reason: 'link_detached', detail: `link ${link.id} is attached to no cgroup (detached, or its cgroup was removed)` };
  if (id !== cgroup.id) {
    return {
      reason: 'cgroup_replaced',
      detail: `link ${link.id} is attached to cgroup ${id}, and the cgroup at ${cgroup.path} is now ${cgroup.id} (removed and made again)`,
    };
  }
  if (!cgroup.effective(attachType).includes(link.programId)) {
    return {
      reason: 'not_effective',
      detail: `program ${link.programId} of link ${link.id} is not among the ${attachTypeName(attachType)} programs that run in ${cgroup.path}`,
    };
  }
  return undefined;
}

/** The cgroup open at `fd` (at `path`); each hook's programs are asked once. */
export function cgroupView(fd: number, path: string): CgroupView {
  const effective = new Map<number, readonly number[]>();
  return {
    path,
    id: cgroupId(fd),
    effective(attachType) {
      let programs = effective.get(attachType);
      if (programs === undefined) {
        programs = effectivePrograms(fd, attachType, path);
        effective.set(attachType, programs);
      }
      return programs;
    },
  };
}

/** Runs `use` on the cgroup at `path` as it is now (undefined: no directory there), then closes it. */
export function withCgroupView<T>(path: string, use: (cgroup: CgroupView | undefined) => T): T {
  const fd = openCgroup(path);
  if (fd === undefined) return use(undefined);
  try {
    return use(cgroupView(fd, path));
  } finally {
    closeSync(fd);
  }
}

/** The kernel's description of the link pinned at `path`; throws naming the path. */
export function readPinnedLink(path: string): LinkInfo {
  const fd = libbpf.objGet(path);
  if (fd < 0) throw new SocklbError('SOCKLB_ERR_LIBBPF', `open pin ${path}: ${errnoName(-fd || lastErrno())}`);
  try {
    return linkInfo(fd, `link ${path}`);
  } finally {
    libcCalls.close(fd);
  }
}

/** Every link of a cgroup whose directory is gone has this problem. */
export function cgroupGone(path: string): LinkProblem {
  return { reason: 'cgroup_gone', detail: `no cgroup directory at ${path}` };
}

/** What is wrong with the link pinned at `path` for `cgroup`, a pin that cannot be read included. */
export function pinnedLinkProblem(path: string, cgroup: CgroupView): LinkProblem | undefined {
  let link: LinkInfo;
  try {
    link = readPinnedLink(path);
  } catch (error) {
    if (!(error instanceof SocklbError)) throw error;
    return { reason: 'link_missing', detail: error.message };
  }
  return linkProblem(link, cgroup);
}

/**
 * The problems of the links of `programs` pinned in `directory` for the cgroup at `cgroup`, one
 * per program whose link does not serve; none when every one runs there.
 */
export function linkProblems(cgroup: string, directory: string, programs: Iterable<string>): (LinkProblem & { program: string })[] {
  return withCgroupView(cgroup, (view) =>
    [...programs].flatMap((program) => {
      const problem = view === undefined ? cgroupGone(cgroup) : pinnedLinkProblem(`${directory}/${program}`, view);
      return problem === undefined ? [] : [{ program, ...problem }];
    }),
  );
}
