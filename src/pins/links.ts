// Programs attached to a cgroup by links pinned in a directory (pinned where layout.ts says), one
// per program and named after it. Pinned links keep the programs attached while no agent runs. A
// new agent swaps its freshly loaded programs into the pinned links (an atomic replacement: no
// connect() ever runs without a program), so restarts and upgrades leave no gap.

import { closeSync, existsSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { SocklbError, errnoName } from '../errors.js';
import { linkInfo } from '../kernel/bpf-objects.js';
import { libbpf, type BpfLinkHandle, type BpfProgramHandle } from '../kernel/libbpf.js';
import { lastErrno } from '../kernel/libc.js';
import { cgroupView, linkProblem, type CgroupView } from './link-health.js';

/** A new link's pin before it replaces the old one (bpffs names take no dot); a crash can leave one, which the next attach removes. */
const STAGED_PIN_SUFFIX = '-staged';

/**
 * Attaches every program of `programs` (by name) to `cgroup`, pinning the links in `directory` (or
 * replacing theirs), and detaches the links of programs no longer among them. A pinned link is
 * kept only while it serves the cgroup at the path (link-health.ts); one detached, or left on a
 * cgroup removed and made again, is replaced by a new one. Whatever fails, each program stays
 * attached by its old link or by its new one: a cgroup is never left without it.
 */
export function pinProgramLinks(
  cgroup: string,
  directory: string,
  programs: ReadonlyMap<string, BpfProgramHandle>,
): 'attached' | 'replaced' {
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  let replaced = true;
  const cgroupFd = openSync(cgroup, 'r');
  try {
    const current = cgroupView(cgroupFd, cgroup);
    for (const [name, program] of programs) {
      const pinPath = `${directory}/${name}`;
      if (existsSync(pinPath) && replaceProgram(pinPath, program, current)) continue;
      replaced = false;
      attachAndPin(program, cgroupFd, pinPath, `attach ${name} to cgroup ${cgroup}`);
    }
    for (const name of readdirSync(directory)) {
      if (!programs.has(name)) detachPin(`${directory}/${name}`);
    }
  } finally {
    closeSync(cgroupFd);
  }
  return replaced ? 'replaced' : 'attached';
}

/**
 * Attaches `program` by a new link pinned under a temporary name, then renamed over `pinPath`:
 * an old link pinned there (dead, or one whose update failed) is let go only once the new one is
 * in place. While both are attached the second program finds a backend's address, which is no
 * Service's, and leaves it alone.
 */
function attachAndPin(program: BpfProgramHandle, cgroupFd: number, pinPath: string, what: string): void {
  const staged = `${pinPath}${STAGED_PIN_SUFFIX}`;
  rmSync(staged, { force: true });
  const link = libbpf.programAttachCgroup(program, cgroupFd);
  if (!link) throw new SocklbError('SOCKLB_ERR_CGROUP', `${what}: ${errnoName(lastErrno())}`);
  const rc = libbpf.linkPin(link, staged);
  libbpf.linkDestroy(link);
  if (rc < 0) throw new SocklbError('SOCKLB_ERR_LIBBPF', `pin link ${staged}: ${errnoName(-rc)}`);
  try {
    renameSync(staged, pinPath);
  } catch (error) {
    rmSync(staged, { force: true });
    throw new SocklbError('SOCKLB_ERR_LIBBPF', `pin link ${pinPath}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

/**
 * Swaps `program` into the pinned link; false when the link is gone, does not serve `cgroup` (a
 * swap into a link left on the removed cgroup would succeed, and translate nothing), or the swap
 * failed.
 */
function replaceProgram(pinPath: string, program: BpfProgramHandle, cgroup: CgroupView): boolean {
  const link = libbpf.linkOpen(pinPath);
  if (!link) return false;
  try {
    if (linkProblem(linkInfo(libbpf.linkFd(link), `link ${pinPath}`), cgroup) !== undefined) return false;
    return libbpf.linkUpdateProgram(link, program) === 0;
  } catch (error) {
    // A link the kernel will not describe is not one to keep.
    if (error instanceof SocklbError) return false;
    throw error;
  } finally {
    libbpf.linkDestroy(link);
  }
}

/** Detaches and unpins every link in `directory` and below, then removes it; returns how many. */
export function detachDirectory(directory: string): number {
  let detached = 0;
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const pinPath = `${directory}/${entry.name}`;
    if (entry.isDirectory()) {
      detached += detachDirectory(pinPath);
      continue;
    }
    detachPin(pinPath);
    detached++;
  }
  rmdirSync(directory);
  return detached;
}

function detachPin(pinPath: string): void {
  const link: BpfLinkHandle | null = libbpf.linkOpen(pinPath);
  if (link) {
    // Detach even if some other process still holds the link open.
    libbpf.linkDetach(link);
    libbpf.linkDestroy(link);
  }
  rmSync(pinPath);
}
