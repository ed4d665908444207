// The network namespaces of the processes in cgroups: where a sandbox's sockets live, and so where
// a socket iterator must run, since one walks only the namespace of the thread that creates it.
//
// Found through /proc/PID/ns/net, so the agent must see the sandboxes' pids (the host's pid
// namespace). A namespace is held open while it is iterated, so it cannot go away mid-run.

import { closeSync, fstatSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface NetworkNamespace {
  /** The namespace's inode number, as `stat -L /proc/PID/ns/net` shows it. */
  inode: number;
  /** An open descriptor of the namespace, for setns(); closeNamespaces() closes it. */
  fd: number;
  /** A process in it, for logs. */
  pid: number;
}

/** The processes whose namespace could not be opened, and the first errno that said so. */
export interface DeniedProcesses {
  pids: number[];
  code?: string;
}

/**
 * Opens each network namespace that has a process in `cgroups` or below, once. A process whose
 * namespace the agent may not open (another user's, without CAP_SYS_PTRACE: /proc/PID/ns is behind
 * a ptrace access check) is added to `denied` and left out.
 */
export function openNamespacesOfCgroups(cgroups: readonly string[], denied: DeniedProcesses): NetworkNamespace[] {
  const namespaces = new Map<number, NetworkNamespace>();
  try {
    for (const pid of processesBelow(cgroups)) {
      const path = `/proc/${pid}/ns/net`;
      const inode = ofLiveProcess(() => statSync(path).ino, pid, denied);
      if (inode === undefined || namespaces.has(inode)) continue;
      const namespace = ofLiveProcess(() => openNamespace(path, pid), pid, denied);
      if (!namespace) continue;
      if (namespaces.has(namespace.inode)) closeSync(namespace.fd);
      else namespaces.set(namespace.inode, namespace);
    }
  } catch (error) {
    closeNamespaces([...namespaces.values()]);
    throw error;
  }
  return [...namespaces.values()];
}

export function closeNamespaces(namespaces: readonly NetworkNamespace[]): void {
  for (const namespace of namespaces) closeSync(namespace.fd);
}

/** The pids in the cgroup.procs of each cgroup and of every cgroup below it. */
export function processesBelow(cgroups: readonly string[]): Set<number> {
  const pids = new Set<number>();
  const visit = (directory: string) => {
    let procs: string;
    try {
      procs = readFileSync(join(directory, 'cgroup.procs'), 'utf8');
    } catch {
      return; // removed meanwhile
    }
    for (const line of procs.split('\n')) if (line) pids.add(Number(line));
    let entries;
    try {
      entries = readdirSync(directory, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) if (entry.isDirectory()) visit(join(directory, entry.name));
  };
  for (const cgroup of cgroups) visit(cgroup);
  return pids;
}

/**
 * `look()`, or undefined when it fails: a process may exit at any moment, and its namespace is
 * then simply not found through it; one the agent may not open is also reported.
 */
function ofLiveProcess<T>(look: () => T, pid: number, denied: DeniedProcesses): T | undefined {
  try {
    return look();
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
    if (code === 'EACCES' || code === 'EPERM') {
      denied.pids.push(pid);
      denied.code ??= code;
    }
    return undefined;
  }
}

/** Why a process's namespace was not opened, for a log line or a note. */
export function describeDenied(denied: DeniedProcesses): string {
  return `${denied.pids.length} processes (${denied.pids.slice(0, 5).join(', ')}${denied.pids.length > 5 ? ', ...' : ''}) were passed over: their network namespaces cannot be opened through them (${denied.code}: other users' processes need CAP_SYS_PTRACE)`;
}

function openNamespace(path: string, pid: number): NetworkNamespace {
  const fd = openSync(path, 'r');
  // The inode again, from the descriptor: the pid may have been reused since the stat.
  return { inode: fstatSync(fd).ino, fd, pid };
}
