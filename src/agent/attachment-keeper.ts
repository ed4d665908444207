// Attachments that silently stop working. A cgroup removed and made again under the same path, or
// a link detached by someone else, leaves the pins in place and nothing translated, while every
// map write succeeds and the agent looks healthy. Every resync period the keeper checks each
// attachment the agent serves (its --cgroup ones and every registered sandbox) link by link
// (src/pins/link-health.ts), attaches again where a link does not serve, forgets a sandbox whose
// cgroup is gone as a restarted agent does (src/sandbox/attachments.ts, adopt), and reports each
// repair once: a log line, the socklb_attachment_repairs_total counter and `socklb status`.

import type { Logger } from '../log.js';
import { LINK_FAULTS, type LinkFault, type LinkProblem } from '../pins/link-health.js';

/** A --cgroup of `socklb run`, or a registered sandbox (its id). */
export type Attachment = { kind: 'cgroup'; cgroup: string } | { kind: 'sandbox'; cgroup: string; sandbox: string };

/** What the keeper checks and repairs through: the pins, the datapath and the sandbox registry. */
export interface KeptAttachments {
  /** Every attachment the agent serves now. */
  list(): Attachment[];
  /** Each of its links that does not serve its cgroup; none when every one does. */
  problems(attachment: Attachment): (LinkProblem & { program: string })[];
  /** Attaches every program again, with new links where the pinned ones do not serve; a failure leaves them as they were. */
  reattach(attachment: Attachment): void;
  /** Detaches, unpins and forgets a sandbox. */
  forget(attachment: Attachment): void;
}

/**
 * reattached: its links serve again; removed: a sandbox whose cgroup is gone, forgotten; failed:
 * left as it is (a --cgroup whose directory is gone, or attaching failed), tried again at every
 * check.
 */
export type RepairOutcome = 'reattached' | 'removed' | 'failed';

export type AttachmentRepair = Attachment & {
  /** When the check found it, ISO 8601. */
  at: string;
  reason: LinkFault;
  /** The worst problem of its links, in the kernel's words, and how many other links had one. */
  detail: string;
  outcome: RepairOutcome;
  /** Why attaching again failed. */
  error?: string;
};

export type RepairAction = 'reattach' | 'forget' | 'wait';

/** What to do for an attachment whose links have `problems`; undefined when every link serves. */
export function planRepair(
  attachment: Attachment,
  problems: readonly (LinkProblem & { program: string })[],
): { action: RepairAction; reason: LinkFault; detail: string } | undefined {
  const [worst] = [...problems].sort((a, b) => LINK_FAULTS.indexOf(a.reason) - LINK_FAULTS.indexOf(b.reason));
  if (worst === undefined) return undefined;
  if (worst.reason === 'cgroup_gone') {
    // The agent cannot make a --cgroup: it waits for it. A sandbox goes, as at an agent's start.
    return { action: attachment.kind === 'sandbox' ? 'forget' : 'wait', reason: worst.reason, detail: worst.detail };
  }
  const others = problems.length - 1;
  const more = others === 0 ? '' : ` (and ${others} other link${others === 1 ? '' : 's'})`;
  return { action: 'reattach', reason: worst.reason, detail: `${worst.program}: ${worst.detail}${more}` };
}

/** How many repairs `socklb status` shows, the latest first. */
const RECENT_REPAIRS = 16;

export class AttachmentKeeper {
  private readonly recent: AttachmentRepair[] = [];
  /** The attachments the last check left unserved (a failed outcome), with the failure reported. */
  private readonly failing = new Map<string, { attachment: Attachment; report: string }>();
  private readonly listeners: ((repair: AttachmentRepair) => void)[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly attachments: KeptAttachments,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Checks every `intervalMs`, from `intervalMs` on: the attachments are fresh when the agent starts. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Called with every repair reported; for metrics. */
  onRepair(listener: (repair: AttachmentRepair) => void): void {
    this.listeners.push(listener);
  }

  /** The latest repairs reported, the latest first. */
  recentRepairs(): AttachmentRepair[] {
    return this.recent.map((repair) => ({ ...repair }));
  }

  /** The attachments the last check could not make serve. */
  failingAttachments(): Attachment[] {
    return [...this.failing.values()].map(({ attachment }) => ({ ...attachment }));
  }

  /** Checks every attachment once and repairs what does not serve; returns the repairs reported. */
  check(): AttachmentRepair[] {
    const listed = this.attachments.list();
    const keys = new Set(listed.map(keyOf));
    // One no longer served (a sandbox removed meanwhile) no longer fails.
    for (const key of this.failing.keys()) if (!keys.has(key)) this.failing.delete(key);
    return listed.flatMap((attachment) => {
      const repair = this.checkOne(attachment);
      return repair === undefined ? [] : [repair];
    });
  }

  private checkOne(attachment: Attachment): AttachmentRepair | undefined {
    let plan: ReturnType<typeof planRepair>;
    try {
      plan = planRepair(attachment, this.attachments.problems(attachment));
    } catch (error) {
      this.logger.error({ ...attachment }, `check ${describe(attachment)}: ${messageOf(error)}`);
      return undefined;
    }
    const key = keyOf(attachment);
    if (plan === undefined) {
      this.failing.delete(key);
      return undefined;
    }
    const repair = this.carryOut(attachment, plan);
    if (repair.outcome !== 'failed') {
      this.failing.delete(key);
      return this.report(repair);
    }
    // An attachment that stays unserved is reported once, and again only when why changes.
    const report = `${repair.reason}: ${repair.error ?? ''}`;
    if (this.failing.get(key)?.report === report) return undefined;
    this.failing.set(key, { attachment, report });
    return this.report(repair);
  }

  private carryOut(attachment: Attachment, plan: NonNullable<ReturnType<typeof planRepair>>): AttachmentRepair {
    const found = { ...attachment, at: new Date(this.now()).toISOString(), reason: plan.reason, detail: plan.detail };
    try {
      if (plan.action === 'wait') return { ...found, outcome: 'failed', error: 'nothing to attach to until the directory is back' };
      if (plan.action === 'forget') this.attachments.forget(attachment);
      else this.attachments.reattach(attachment);
      return { ...found, outcome: plan.action === 'forget' ? 'removed' : 'reattached' };
    } catch (error) {
      return { ...found, outcome: 'failed', error: messageOf(error) };
    }
  }

  private report(repair: AttachmentRepair): AttachmentRepair {
    if (repair.outcome === 'failed') this.logger.error({ ...repair }, repairMessage(repair));
    else this.logger.warn({ ...repair }, repairMessage(repair));
    this.recent.unshift(repair);
    this.recent.length = Math.min(this.recent.length, RECENT_REPAIRS);
    for (const listener of this.listeners) listener(repair);
    return repair;
  }
}

/** A repair in a sentence, as the log and `socklb status` say it. */
export function repairMessage(repair: AttachmentRepair): string {
  const what = describe(repair);
  if (repair.outcome === 'reattached') return `re-attached ${what}: ${repair.reason}: ${repair.detail}`;
  if (repair.outcome === 'removed') return `removed ${what}: its cgroup is gone`;
  return `cannot repair ${what}: ${repair.reason}: ${repair.detail}: ${repair.error ?? ''}`;
}

function keyOf(attachment: Attachment): string {
  return attachment.kind === 'sandbox' ? `sandbox ${attachment.sandbox}` : `cgroup ${attachment.cgroup}`;
}

function describe(attachment: Attachment): string {
  return attachment.kind === 'sandbox' ? `sandbox ${attachment.sandbox} (cgroup ${attachment.cgroup})` : `cgroup ${attachment.cgroup}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
