// cgroup v2 directories for sandboxes: where the hierarchy is mounted, and how to remove a
// directory that may still hold processes.
import { readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cgroup2Root, mountPoints } from '../../src/kernel/mounts.js';
import { errorCode } from './errno.js';

/** The cgroup v2 root, read as the agent reads it. */
export async function findCgroup2Root(): Promise<string> {
  return cgroup2Root(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** The cgroup v1 hierarchies of a hybrid host, where an OCI runtime makes a container's cgroups too. */
export async function findCgroupV1Roots(): Promise<string[]> {
  return mountPoints(await readFile('/proc/self/mountinfo', 'utf8'), 'cgroup');
}

/**
 * Removes a cgroup directory and its descendants, deepest first. rmdir needs an empty cgroup, so
 * the processes still in one are moved to the root cgroup first; a process that is exiting can
 * keep a cgroup busy for a moment, hence the bounded retries. A missing directory is not an error.
 */
export async function removeCgroup(dir: string, root: string): Promise<void> {
  let children;
  try {
    children = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;
    throw error;
  }
  for (const child of children) if (child.isDirectory()) await removeCgroup(path.join(dir, child.name), root);
  for (let attempt = 1; ; attempt++) {
    await evictProcesses(dir, root);
    try {
      await rmdir(dir);
      return;
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt === 50) throw new Error(`rmdir ${dir}: ${code}`, { cause: error });
    }
    await sleep(20);
  }
}

async function evictProcesses(dir: string, root: string): Promise<void> {
  let procs;
  try {
    procs = await readFile(path.join(dir, 'cgroup.procs'), 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;
    throw error;
  }
  for (const pid of procs.split('\n').filter(Boolean)) {
    // The kernel takes one pid per write; ESRCH means the process exited meanwhile.
    await writeFile(path.join(root, 'cgroup.procs'), pid).catch((error: unknown) => {
      if (errorCode(error) !== 'ESRCH') throw error;
    });
  }
}
