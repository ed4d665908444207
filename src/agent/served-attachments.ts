// The attachments one agent serves, as its keeper (attachment-keeper.ts) sees them: the --cgroup
// attachments of `socklb run` and the registered sandboxes, their links where src/pins/layout.ts
// pins them, attached again through the loaded datapath or the sandbox registry.

import { cgroup2Root } from '../kernel/mounts.js';
import { cgroupLinkDirectory, sandboxLinkDirectory } from '../pins/layout.js';
import { linkProblems } from '../pins/link-health.js';
import type { ProgramAttacher } from '../sandbox/attachments.js';
import type { SandboxRegistry } from '../sandbox/registry.js';
import type { Attachment, KeptAttachments } from './attachment-keeper.js';

/** The loaded datapath (LoadedDatapath): its programs, and how it attaches them. */
export interface LoadedPrograms extends ProgramAttacher {
  programNames(): string[];
}

export class ServedAttachments implements KeptAttachments {
  private readonly root = cgroup2Root();

  constructor(
    private readonly datapath: LoadedPrograms,
    private readonly registry: SandboxRegistry,
    /** The --cgroup attachments (none with --sandboxes-only). */
    private readonly cgroups: readonly string[],
    private readonly pinDirectory: string,
  ) {}

  list(): Attachment[] {
    return [
      ...this.cgroups.map((cgroup): Attachment => ({ kind: 'cgroup', cgroup })),
      ...this.registry.list().map(({ id, cgroup }): Attachment => ({ kind: 'sandbox', cgroup, sandbox: id })),
    ];
  }

  problems(attachment: Attachment) {
    return linkProblems(attachment.cgroup, this.linkDirectory(attachment), this.datapath.programNames());
  }

  reattach(attachment: Attachment): void {
    if (attachment.kind === 'sandbox') this.registry.reattach(attachment.sandbox);
    else this.datapath.attachOne(attachment.cgroup, this.linkDirectory(attachment));
  }

  forget(attachment: Attachment): void {
    if (attachment.kind === 'sandbox') this.registry.remove(attachment.sandbox);
  }

  private linkDirectory(attachment: Attachment): string {
    return attachment.kind === 'sandbox'
      ? sandboxLinkDirectory(this.pinDirectory, attachment.sandbox, this.root, attachment.cgroup)
      : cgroupLinkDirectory(this.pinDirectory, this.root, attachment.cgroup);
  }
}
