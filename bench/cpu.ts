// CPU time, read around each run: the whole machine's busy time (every process and the kernel's
// softirq work, where netfilter and conntrack spend theirs) and the client cgroup's own.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** USER_HZ, the unit of /proc/stat and /proc/PID/stat: 100 on every architecture Linux runs Node on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Microseconds. */
export interface CpuTimes {
  /** Busy time of all CPUs: user, nice, system, irq, softirq, steal. */
  machine: number;
  /** The client cgroup's usage_usec. */
  client: number;
}

export async function readCpuTimes(clientCgroup: string): Promise<CpuTimes> {
  const [machine, client] = await Promise.all([machineBusyUs(), cgroupUsageUs(clientCgroup)]);
  return { machine, client };
}

export function cpuTimesSince(before: CpuTimes, after: CpuTimes): CpuTimes {
  return { machine: after.machine - before.machine, client: after.client - before.client };
}

async function machineBusyUs(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0] ?? '';
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  return ((user + nice + system + irq + softirq + steal) * 1_000_000) / CLOCK_TICKS_PER_SECOND;
}

async function cgroupUsageUs(cgroup: string): Promise<number> {
  const stat = await readFile(path.join(cgroup, 'cpu.stat'), 'utf8');
  const usage = /^usage_usec (\d+)$/m.exec(stat)?.[1];
  if (usage === undefined) throw new Error(`${cgroup}/cpu.stat has no usage_usec`);
  return Number(usage);
}

/** user + system time of one process, microseconds. */
export async function processCpuUs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / CLOCK_TICKS_PER_SECOND;
}
