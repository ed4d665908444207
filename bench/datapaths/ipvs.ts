// kube-proxy's IPVS mode needs the kernel's ip_vs. Where it is missing, the benchmark says why
// instead of leaving the column out silently.
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import os from 'node:os';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface Availability {
  available: boolean;
  reason: string;
}

export async function probeIpvs(): Promise<Availability> {
  if (await exists('/proc/net/ip_vs')) {
    return {
      available: true,
      reason: 'the kernel has ip_vs, but this benchmark does not drive IPVS yet (it needs ipvsadm and kube-proxy-shaped virtual servers)',
    };
  }
  try {
    await execFileAsync('modprobe', ['ip_vs'], { timeout: 10_000 });
  } catch (error) {
    const failed = error as { code?: string | number; stderr?: string };
    const why = failed.code === 'ENOENT' ? 'modprobe is not installed' : failed.stderr?.trim() || `modprobe exited with ${failed.code}`;
    const modules = (await exists(`/lib/modules/${os.release()}`)) ? '' : `; /lib/modules/${os.release()} does not exist`;
    return {
      available: false,
      reason:
        `/proc/net/ip_vs is missing (ip_vs is not built into kernel ${os.release()}) and the module cannot be loaded: ` +
        `${why}${modules}`,
    };
  }
  return (await exists('/proc/net/ip_vs'))
    ? {
        available: true,
        reason: 'ip_vs was loaded, but this benchmark does not drive IPVS yet (it needs ipvsadm and kube-proxy-shaped virtual servers)',
      }
    : { available: false, reason: 'modprobe ip_vs succeeded but /proc/net/ip_vs is still missing' };
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
