// The processes that hold the maps pinned under a pin directory open, found as bpftool finds them:
// `socklb cleanup` refuses under a running agent.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mapInfo } from '../kernel/bpf-objects.js';
import { libbpf } from '../kernel/libbpf.js';
import { libcCalls } from '../kernel/libc.js';
import { pinnedMapNames, pinnedMapPath } from './layout.js';

export interface MapHolder {
  pid: number;
  /** /proc/<pid>/comm: `node` for an agent. */
  command: string;
}

/**
 * The processes, this one aside, that hold a map pinned under `pinDirectory` open: a running agent
 * (its maps are open for as long as it runs), or another `socklb` command reading them. Found as
 * bpftool finds them, through each process's file descriptors (/proc/<pid>/fdinfo: map_id).
 */
export function mapHolders(pinDirectory: string): MapHolder[] {
  let names: string[];
  try {
    names = pinnedMapNames(pinDirectory);
  } catch {
    return [];
  }
  const ids = new Set<number>();
  for (const name of names) {
    // A pin that cannot be opened is no map anyone holds: cleanup removes it all the same.
    const fd = libbpf.objGet(pinnedMapPath(pinDirectory, name));
    if (fd < 0) continue;
    try {
      ids.add(mapInfo(fd).id);
    } finally {
      libcCalls.close(fd);
    }
  }
  const holders: MapHolder[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid || !holdsMap(pid, ids)) continue;
    holders.push({ pid, command: orEmpty(() => readFileSync(`/proc/${pid}/comm`, 'utf8').trim()) });
  }
  return holders;
}

function holdsMap(pid: number, ids: ReadonlySet<number>): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // gone, or a kernel thread
  }
  return fds.some((fd) => {
    if (orEmpty(() => readlinkSync(`/proc/${pid}/fd/${fd}`)) !== 'anon_inode:bpf-map') return false;
    const id = /^map_id:\s+(\d+)$/m.exec(orEmpty(() => readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')))?.[1];
    return id !== undefined && ids.has(Number(id));
  });
}

/** What `read` returns, or '' when the file went meanwhile (a process exiting, a descriptor closed). */
function orEmpty(read: () => string): string {
  try {
    return read();
  } catch {
    return '';
  }
}
