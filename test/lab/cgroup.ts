// cgroup v2 directories for sandboxes: where the hierarchy is mounted, and how to remove a
// directory that may still hold processes.
import { readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorCode } from './errno.js';

/**
 * The mount point of the cgroup v2 hierarchy's root in a /proc/self/mountinfo text, undefined
 * when none is mounted. Machines differ (/sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified
 * in the hybrid layout), so the lab never assumes one.
 */
export function parseCgroup2Mount(mountinfo: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    // "id parent major:minor root mount-point options [optional fields...] - fstype source super-options"
    const separator = line.indexOf(' - ');
    if (separator < 0) continue;
    const fields = line.slice(0, separator).split(' ');
    const fstype = line.slice(separator + 3).split(' ')[0];
    // root "/" skips bind mounts of a sub-tree, whose paths would not match /proc/PID/cgroup.
    if (fstype === 'cgroup2' && fields[3] === '/' && fields[4] !== undefined) return unescapeOctal(fields[4]);
  }
  return undefined;
}

export async function findCgroup2Root(): Promise<string> {
  const root = parseCgroup2Mount(await readFile('/proc/self/mountinfo', 'utf8'));
  if (root === undefined) throw new Error('no cgroup2 file system in /proc/self/mountinfo; the lab needs cgroup v2');
  return root;
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

function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
