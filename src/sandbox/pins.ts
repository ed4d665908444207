// The registry's kernel part: each sandbox's links pinned where a restarted agent finds them,
//
//   <pin dir>/links/sandboxes/<id>/<cgroup>/socklb_connect4 ...
//
// with <cgroup> named as the --cgroup links are (the URL-encoded path below the cgroup v2 root).
// The pins are the registry's only record: what is pinned is what is registered.

import { existsSync, readdirSync } from 'node:fs';
import { SocklbError } from '../errors.js';
import { cgroupOfLinkDirectory, detachDirectory, linkDirectoryName, pinLayout, SANDBOX_LINK_DIRECTORY, type LoadedDatapath } from '../datapath/loader.js';
import { cgroup2Root } from '../kernel/mounts.js';
import { checkCgroup } from '../kernel/system.js';
import type { Sandbox, SandboxAttachments } from './registry.js';

/** A bpffs name, like any other, holds at most 255 bytes. */
const MAX_NAME_BYTES = 255;

function sandboxesDirectory(pinDirectory: string): string {
  return `${pinLayout(pinDirectory).links}/${SANDBOX_LINK_DIRECTORY}`;
}

/** Attaches through the loaded datapath; one instance per agent. */
export class PinnedSandboxes implements SandboxAttachments {
  readonly cgroupRoot = cgroup2Root();

  constructor(
    private readonly datapath: LoadedDatapath,
    private readonly pinDirectory: string,
  ) {}

  attach(sandbox: Sandbox): void {
    checkCgroup(sandbox.cgroup, `sandbox ${sandbox.id}: cgroup ${sandbox.cgroup}`);
    const name = linkDirectoryName(this.cgroupRoot, sandbox.cgroup);
    if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
      throw new SocklbError('SOCKLB_ERR_SANDBOX', `sandbox ${sandbox.id}: cgroup ${sandbox.cgroup} is too deep to name its pins (${Buffer.byteLength(name)} bytes encoded, at most ${MAX_NAME_BYTES})`);
    }
    const directory = this.directoryOf(sandbox.id);
    try {
      this.datapath.attachOne(sandbox.cgroup, `${directory}/${name}`);
    } catch (error) {
      // All or nothing: a half-attached sandbox would be adopted as registered by the next run.
      if (existsSync(directory)) detachDirectory(directory);
      throw error;
    }
  }

  detach(sandbox: Sandbox): void {
    const directory = this.directoryOf(sandbox.id);
    if (existsSync(directory)) detachDirectory(directory);
  }

  /**
   * Rebuilds the registry from the pins of an earlier run: the programs just loaded are swapped
   * into each sandbox's links. A sandbox whose cgroup is gone (its container was deleted while no
   * agent ran, so its poststop hook failed) is detached and unpinned. One whose programs cannot be
   * swapped stays registered with the links it has (a running container must not lose its
   * Services because of an upgrade), and is reported: one sandbox must not keep the agent, and so
   * every other, from starting.
   */
  adopt(): { adopted: Sandbox[]; stale: (Sandbox & { reason: string })[]; notUpgraded: (Sandbox & { reason: string })[] } {
    const adopted: Sandbox[] = [];
    const stale: (Sandbox & { reason: string })[] = [];
    const notUpgraded: (Sandbox & { reason: string })[] = [];
    for (const sandbox of pinnedSandboxes(this.pinDirectory, this.cgroupRoot)) {
      if (sandbox.cgroup === undefined) {
        detachDirectory(this.directoryOf(sandbox.id));
      } else if (!existsSync(sandbox.cgroup)) {
        detachDirectory(this.directoryOf(sandbox.id));
        stale.push({ id: sandbox.id, cgroup: sandbox.cgroup, reason: 'its cgroup is gone' });
      } else {
        const adoptedSandbox = { id: sandbox.id, cgroup: sandbox.cgroup };
        adopted.push(adoptedSandbox);
        try {
          this.datapath.attachOne(sandbox.cgroup, `${this.directoryOf(sandbox.id)}/${linkDirectoryName(this.cgroupRoot, sandbox.cgroup)}`);
        } catch (error) {
          notUpgraded.push({ ...adoptedSandbox, reason: `attaching this build's programs failed, its links are kept as they were: ${error instanceof Error ? error.message : String(error)}` });
        }
      }
    }
    return { adopted, stale, notUpgraded };
  }

  private directoryOf(id: string): string {
    return `${sandboxesDirectory(this.pinDirectory)}/${id}`;
  }
}

/**
 * The sandboxes pinned under `pinDirectory`, with the directory of their links; cgroup undefined
 * for a directory left half made.
 */
export function pinnedSandboxes(pinDirectory: string, root = cgroup2Root()): { id: string; cgroup: string | undefined; directory: string }[] {
  const sandboxes = sandboxesDirectory(pinDirectory);
  return (entriesOf(sandboxes) ?? []).flatMap((id) => {
    const entries = entriesOf(`${sandboxes}/${id}`);
    if (entries === undefined) return [];
    const [name, ...others] = entries;
    const whole = name !== undefined && others.length === 0;
    return [{ id, cgroup: whole ? cgroupOfLinkDirectory(root, name) : undefined, directory: whole ? `${sandboxes}/${id}/${name}` : `${sandboxes}/${id}` }];
  });
}

/**
 * The names in a pin directory; undefined when it does not exist, which includes one removed
 * while it is read (a sandbox removed during `socklb status`).
 */
export function entriesOf(directory: string): string[] | undefined {
  try {
    return readdirSync(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** The cgroups of the pinned sandboxes, for `socklb sockets`. */
export function sandboxCgroups(pinDirectory: string): string[] {
  return pinnedSandboxes(pinDirectory).flatMap((sandbox) => (sandbox.cgroup === undefined ? [] : [sandbox.cgroup]));
}

