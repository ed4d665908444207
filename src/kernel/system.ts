// What the host must offer before anything is loaded: privileges, a cgroup v2
// hierarchy, a BPF filesystem. Each missing piece is one clear sentence.

import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { SocklbError, errnoName } from '../errors.js';
import { lastErrno, libcCalls } from './libc.js';
import { mountPoints } from './mounts.js';

/** Checks that `path` is a directory of a cgroup v2 hierarchy; `subject` names it in the error. */
export function checkCgroup(path: string, subject: string, mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): void {
  const roots = mountPoints(mountinfo, 'cgroup2');
  if (!roots.some((root) => path === root || path.startsWith(`${root}/`))) {
    throw new SocklbError(
      'SOCKLB_ERR_CGROUP',
      `${subject}: not inside a cgroup v2 hierarchy (mounted at ${roots.join(', ') || 'nowhere'})`,
    );
  }
  let isDirectory = false;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch {
    // reported below
  }
  if (!isDirectory) throw new SocklbError('SOCKLB_ERR_CGROUP', `${subject}: no such cgroup directory`);
}

/** Mounts a BPF filesystem at the mount point above `pinDirectory` when there is none. */
export function ensureBpffs(pinDirectory: string, mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): void {
  const bpffsMounts = mountPoints(mountinfo, 'bpf');
  if (bpffsMounts.some((mount) => pinDirectory === mount || pinDirectory.startsWith(`${mount}/`))) return;
  // Pins live on a bpffs; /sys/fs/bpf is its conventional place.
  const mountPoint = pinDirectory.startsWith('/sys/fs/bpf/') ? '/sys/fs/bpf' : dirname(pinDirectory);
  mkdirSync(mountPoint, { recursive: true });
  if (libcCalls.mount('bpf', mountPoint, 'bpf', 0, 'mode=0700') !== 0) {
    const errno = lastErrno();
    throw new SocklbError(
      'SOCKLB_ERR_KERNEL',
      `cannot mount a BPF filesystem at ${mountPoint} for the pins under ${pinDirectory}: ${errnoName(errno)}`,
    );
  }
}

// Capability bits, from linux/capability.h.
const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_BPF = 39;

/** The effective capability set of this process, from /proc/self/status. */
export function effectiveCapabilities(status = readFileSync('/proc/self/status', 'utf8')): bigint {
  const line = status.split('\n').find((l) => l.startsWith('CapEff:'));
  return line ? BigInt(`0x${line.split(/\s+/)[1]}`) : 0n;
}

/** Refuses to go on without the privileges to load and attach programs. */
export function checkPrivileges(capabilities = effectiveCapabilities()): void {
  const has = (bit: number) => (capabilities & (1n << BigInt(bit))) !== 0n;
  const missing = [
    [CAP_BPF, 'CAP_BPF'],
    [CAP_NET_ADMIN, 'CAP_NET_ADMIN'],
    [CAP_SYS_ADMIN, 'CAP_SYS_ADMIN'],
  ]
    .filter(([bit]) => !has(bit as number))
    .map(([, name]) => name);
  // CAP_SYS_ADMIN alone covers BPF on kernels that predate CAP_BPF.
  if (missing.length === 0 || (missing.length === 1 && missing[0] === 'CAP_BPF')) return;
  throw new SocklbError(
    'SOCKLB_ERR_PRIVILEGES',
    `socklb needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN, to load and attach BPF programs; missing: ${missing.join(', ')}`,
  );
}
