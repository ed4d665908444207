// The registry's kernel part: each sandbox's links pinned where a restarted agent finds them
// (src/pins/layout.ts says where). The pins are the registry's only record: what is pinned is
// what is registered.

import { existsSync } from 'node:fs';
import { SocklbError } from '../errors.js';
import { cgroup2Root } from '../kernel/mounts.js';
import { checkCgroup } from '../kernel/system.js';
import {
  linkDirectoryName,
  MAX_PIN_NAME_BYTES,
  pinnedSandboxBypasses,
  pinnedSandboxes,
  pinSandboxBypass,
  sandboxDirectory,
  sandboxLinkDirectory,
  unpinSandboxBypass,
} from '../pins/layout.js';
import { detachDirectory } from '../pins/links.js';
import type { Sandbox, SandboxAttachments } from './registry.js';

/** What attaches the loaded programs by links pinned in a directory: the datapath (LoadedDatapath). */
export interface ProgramAttacher {
  attachOne(cgroup: string, directory: string): unknown;
}

/** Attaches through the loaded datapath; one instance per agent. */
export class PinnedSandboxes implements SandboxAttachments {
  readonly cgroupRoot = cgroup2Root();

  constructor(
    private readonly datapath: ProgramAttacher,
    private readonly pinDirectory: string,
  ) {}

  attach(sandbox: Sandbox): void {
    checkCgroup(sandbox.cgroup, `sandbox ${sandbox.id}: cgroup ${sandbox.cgroup}`);
    const name = linkDirectoryName(this.cgroupRoot, sandbox.cgroup);
    if (Buffer.byteLength(name) > MAX_PIN_NAME_BYTES) {
      throw new SocklbError(
        'SOCKLB_ERR_SANDBOX',
        `sandbox ${sandbox.id}: cgroup ${sandbox.cgroup} ` +
          `is too deep to name its pins (${Buffer.byteLength(name)} bytes encoded, at most ${MAX_PIN_NAME_BYTES})`,
      );
    }
    const directory = sandboxDirectory(this.pinDirectory, sandbox.id);
    // Before the links: a sandbox pinned is registered, and must come back with its bypass.
    pinSandboxBypass(this.pinDirectory, sandbox.id, bypassEntries(sandbox));
    try {
      this.datapath.attachOne(sandbox.cgroup, sandboxLinkDirectory(this.pinDirectory, sandbox.id, this.cgroupRoot, sandbox.cgroup));
    } catch (error) {
      // All or nothing: a half-attached sandbox would be adopted as registered by the next run.
      if (existsSync(directory)) detachDirectory(directory);
      unpinSandboxBypass(this.pinDirectory, sandbox.id);
      throw error;
    }
  }

  reattach(sandbox: Sandbox): void {
    this.datapath.attachOne(sandbox.cgroup, sandboxLinkDirectory(this.pinDirectory, sandbox.id, this.cgroupRoot, sandbox.cgroup));
  }

  detach(sandbox: Sandbox): void {
    const directory = sandboxDirectory(this.pinDirectory, sandbox.id);
    if (existsSync(directory)) detachDirectory(directory);
    unpinSandboxBypass(this.pinDirectory, sandbox.id);
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
    const bypasses = pinnedSandboxBypasses(this.pinDirectory);
    const pinned = pinnedSandboxes(this.pinDirectory, this.cgroupRoot);
    for (const sandbox of pinned) {
      if (sandbox.cgroup === undefined) {
        this.detach({ id: sandbox.id, cgroup: '' });
      } else if (!existsSync(sandbox.cgroup)) {
        this.detach({ id: sandbox.id, cgroup: sandbox.cgroup });
        stale.push({ id: sandbox.id, cgroup: sandbox.cgroup, reason: 'its cgroup is gone' });
      } else {
        const adoptedSandbox = { id: sandbox.id, cgroup: sandbox.cgroup, ...sandboxBypass(bypasses.get(sandbox.id) ?? []) };
        adopted.push(adoptedSandbox);
        try {
          this.reattach(adoptedSandbox);
        } catch (error) {
          notUpgraded.push({
            ...adoptedSandbox,
            reason:
              `attaching this build's programs failed, its links are kept as they were: ` +
              `${error instanceof Error ? error.message : String(error)}`,
          });
        }
      }
    }
    // A bypass recorded for no sandbox: its add stopped between the two.
    for (const id of bypasses.keys()) if (!pinned.some((sandbox) => sandbox.id === id)) unpinSandboxBypass(this.pinDirectory, id);
    return { adopted, stale, notUpgraded };
  }
}

const NO_TRANSLATE = 'no-translate';
const EXCLUDE = 'exclude:';

/** A sandbox's bypass as its pinned record's entries. */
function bypassEntries(sandbox: Sandbox): string[] {
  return [...(sandbox.noTranslate ? [NO_TRANSLATE] : []), ...(sandbox.excludeServices ?? []).map((service) => `${EXCLUDE}${service}`)];
}

/** A pinned record's entries as a sandbox's bypass; an entry this build does not know is left out. */
function sandboxBypass(entries: readonly string[]): Pick<Sandbox, 'noTranslate' | 'excludeServices'> {
  const excluded = entries.filter((entry) => entry.startsWith(EXCLUDE)).map((entry) => entry.slice(EXCLUDE.length));
  return {
    ...(entries.includes(NO_TRANSLATE) ? { noTranslate: true as const } : {}),
    ...(excluded.length > 0 ? { excludeServices: excluded.sort() } : {}),
  };
}
