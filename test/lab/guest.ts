// An emulated guest (docs/guest-mode.md): what a microVM gives socklb-applier, without a VM. A lab
// sandbox (its own network namespace and cgroup) plus a mount namespace with a fresh sysfs, so no
// BPF filesystem and no cgroup hierarchy until the applier mounts them, and a cgroup namespace
// rooted at the sandbox's cgroup, so that the "cgroup v2 root" the applier attaches to is the
// sandbox and nothing of the host. A holder process keeps the namespaces (and with them the
// guest's bpffs, its pins, links and maps) alive across restarts of the applier; they all go
// when it is killed.

import type { ChildProcess } from 'node:child_process';
import { waitForLine } from './processes.js';
import type { Lab, Sandbox } from './lab.js';

/**
 * The holder's script: a fresh sysfs of the guest's network namespace in place of the host's
 * /sys and everything mounted below it (lazily detached, so that the guest's mountinfo lists
 * none of the host's cgroup or bpf mounts), then nothing but waiting.
 */
const HOLDER_SCRIPT = 'umount -l /sys && mount -t sysfs sysfs /sys && echo ready && exec sleep infinity';
const READY_TIMEOUT_MS = 10_000;

export interface ApplierOptions {
  /** Environment added to the applier's (SOCKLB_APPLIER_EXIT_AT, ASAN_OPTIONS). */
  env?: Record<string, string>;
}

export class EmulatedGuest {
  private constructor(
    private readonly lab: Lab,
    readonly sandbox: Sandbox,
    private readonly holder: ChildProcess,
  ) {}

  /** A sandbox of the lab named `name`, with the guest's namespaces held open. */
  static async start(lab: Lab, name: string): Promise<EmulatedGuest> {
    const sandbox = await lab.addSandbox(name);
    // The holder joins the sandbox's cgroup and network namespace (lab.spawn), then unshares; no
    // fork on the way, so its pid is the namespaces' for nsenter.
    const holder = lab.spawn(sandbox, ['unshare', '--mount', '--cgroup', '--propagation', 'private', 'sh', '-c', HOLDER_SCRIPT]);
    try {
      await waitForLine(holder, 'ready', READY_TIMEOUT_MS);
    } catch (error) {
      await lab.stop(holder);
      throw new Error(`emulated guest ${name} did not start`, { cause: error });
    }
    return new EmulatedGuest(lab, sandbox, holder);
  }

  /** `path` inside the guest (its mount namespace), as the host reaches it. */
  hostPath(path: string): string {
    return `/proc/${this.holder.pid}/root${path}`;
  }

  /** Starts `argv` inside the guest: its cgroup, and its mount, cgroup and network namespaces. */
  spawn(argv: readonly string[], options: ApplierOptions = {}): ChildProcess {
    const env = Object.entries(options.env ?? {}).map(([name, value]) => `${name}=${value}`);
    return this.lab.spawn(this.sandbox, ['nsenter', `--target=${this.holder.pid}`, '--mount', '--cgroup', '--', 'env', ...env, ...argv]);
  }

  /** Kills a process spawn() started and resolves once it is gone. */
  stop(child: ChildProcess): Promise<void> {
    return this.lab.stop(child);
  }

  /** Ends the guest: its namespaces, and with them its bpffs and everything pinned there. */
  close(): Promise<void> {
    return this.lab.stop(this.holder);
  }
}
