// Where filesystems are mounted, read from /proc/self/mountinfo. Pure, so that
// the lab, the tests and the agent share one reading of it.

import { readFileSync } from 'node:fs';
import { SocklbError } from '../errors.js';

/**
 * Mount points of one filesystem type, from /proc/self/mountinfo text. Only
 * mounts of the filesystem's root count: a bind mount of a sub-tree has paths
 * that /proc/PID/cgroup and the kernel's cgroup ids do not match.
 */
export function mountPoints(mountinfo: string, fstype: string): string[] {
  const points: string[] = [];
  for (const line of mountinfo.split('\n')) {
    // "36 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw"
    const [before, after] = line.split(' - ');
    if (after === undefined || before === undefined) continue;
    if (after.split(' ')[0] !== fstype) continue;
    const [, , , root, mountPoint] = before.split(' ');
    if (root === '/' && mountPoint) points.push(unescapeMountPath(mountPoint));
  }
  return points;
}

// mountinfo escapes space, tab, newline and backslash as octal.
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** The cgroup v2 root: /sys/fs/cgroup on a pure v2 host, often /sys/fs/cgroup/unified on a hybrid one. */
export function cgroup2Root(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string {
  const [root] = mountPoints(mountinfo, 'cgroup2');
  if (root === undefined) {
    throw new SocklbError(
      'SOCKLB_ERR_NO_CGROUP2',
      'no cgroup v2 hierarchy is mounted (none in /proc/self/mountinfo): socklb attaches to cgroup v2; ' +
        'mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`',
    );
  }
  return root;
}
