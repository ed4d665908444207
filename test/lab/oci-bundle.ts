// OCI bundles for a real runtime (runc, crun): a minimal root filesystem of busybox-static, and a
// config.json from the runtime's own `spec`, joined to a lab namespace and cgroup, with hooks.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { findCgroup2Root, findCgroupV1Roots } from './cgroup.js';

const execFileAsync = promisify(execFile);

/** Debian's busybox-static: one static binary, so the root filesystem needs nothing else. */
export const BUSYBOX = '/bin/busybox';

export interface OciHook {
  path: string;
  args: string[];
  /** Seconds the runtime waits for the hook. */
  timeout?: number;
}

export interface BundleOptions {
  /** The container's command, inside the root filesystem. */
  args: string[];
  /** A namespace the container joins (/run/netns/<name>) instead of a new one. */
  netnsPath: string;
  /** linux.cgroupsPath, relative to the cgroup roots. */
  cgroupsPath: string;
  hooks: Partial<Record<'createRuntime' | 'poststart' | 'poststop', OciHook[]>>;
}

/** Why an OCI test cannot run here, or undefined when `runtime` and busybox-static are installed and usable. */
export async function missingRuntime(runtime: string): Promise<string | undefined> {
  try {
    await execFileAsync(runtime, ['--version']);
    await execFileAsync(BUSYBOX, ['true']);
  } catch {
    return `SKIPPED: ${runtime} or busybox-static is not installed (make setup installs DEBIAN_PACKAGES)`;
  }
  if (runtime === 'crun' && (await findCgroupV1Roots()).length > 0) {
    const controllers = (await readFile(path.join(await findCgroup2Root(), 'cgroup.controllers'), 'utf8')).trim();
    // crun 1.8 refuses such a host whatever the cgroup manager: "cgroups in hybrid mode not supported".
    if (controllers !== '')
      return (
        `SKIPPED: crun does not run on a hybrid cgroup host whose cgroup v2 root has controllers (${controllers}); ` +
        `runc covers the hook here`
      );
  }
  return undefined;
}

/** A bundle directory: rootfs/ with busybox, config.json; `remove()` deletes it. */
export async function writeBundle(runtime: string, options: BundleOptions): Promise<{ directory: string; remove(): Promise<void> }> {
  const directory = await mkdtemp(path.join(tmpdir(), `socklb-oci-${runtime}-`));
  try {
    await mkdir(path.join(directory, 'rootfs', 'bin'), { recursive: true });
    await copyFile(BUSYBOX, path.join(directory, 'rootfs', 'bin', 'busybox'));
    // The runtime's own default spec, so that its mounts, devices and masks are ones it accepts.
    await execFileAsync(runtime, ['spec'], { cwd: directory });
    const config = JSON.parse(await readFile(path.join(directory, 'config.json'), 'utf8')) as {
      process: Record<string, unknown>;
      root: Record<string, unknown>;
      linux: { namespaces: { type: string; path?: string }[]; cgroupsPath?: string };
      hooks?: BundleOptions['hooks'];
    };
    config.process['args'] = options.args;
    config.process['terminal'] = false;
    config.root = { path: path.join(directory, 'rootfs'), readonly: true };
    config.linux.namespaces = [
      ...config.linux.namespaces.filter((namespace) => namespace.type !== 'network'),
      { type: 'network', path: options.netnsPath },
    ];
    config.linux.cgroupsPath = options.cgroupsPath;
    config.hooks = options.hooks;
    await writeFile(path.join(directory, 'config.json'), JSON.stringify(config, null, 2));
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
  return { directory, remove: () => rm(directory, { recursive: true, force: true }) };
}
