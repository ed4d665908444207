// The sandboxes one agent serves besides its --cgroup attachments: an id (the container's, for
// the OCI hook) and the cgroup v2 directory its programs are attached to. The rules live here,
// pure; the kernel work (attaching, detaching, pinning) is behind SandboxAttachments.
//
// Adding is idempotent (a hook that is retried, or runs as both createRuntime and poststart,
// gets the same answer, and the sandbox is attached again: a cgroup deleted and made anew under
// the same path gets fresh links), so is nothing else: removing an unknown id is an error, so that a
// mistyped id never looks like success.

import { isAbsolute, resolve } from 'node:path';
import { SocklbError, type ErrorCode } from '../errors.js';

export interface Sandbox {
  id: string;
  /** Absolute path of the sandbox's cgroup v2 directory. */
  cgroup: string;
  /** None of its own calls is translated (a sidecar that captures them needs the Service address). */
  noTranslate?: true;
  /** The Services (`namespace/name`) whose calls from it are not translated. */
  excludeServices?: string[];
}

/** What a sandbox leaves untranslated, as `add` takes it. */
export interface SandboxBypass {
  noTranslate?: boolean | undefined;
  excludeServices?: readonly string[] | undefined;
}

/** The kernel side: the sandbox's pinned links. */
export interface SandboxAttachments {
  /** The cgroup v2 mount: never a sandbox, since attaching there translates every process of the host. */
  readonly cgroupRoot: string;
  /** Attaches every program to `sandbox.cgroup` and pins the links; all or nothing. */
  attach(sandbox: Sandbox): void;
  /** Detaches and unpins the sandbox's links (its cgroup may be gone already). */
  detach(sandbox: Sandbox): void;
  /** Attaches every program again, to a sandbox attached before; a failure leaves its links as they were. */
  reattach(sandbox: Sandbox): void;
}

export type AddOutcome = 'added' | 'unchanged';

/**
 * Container ids as runc accepts them, without the characters a file name cannot carry as is: the
 * id names the sandbox's pin directory. 128 characters hold every runtime's ids (64 hex digits).
 */
const SANDBOX_ID = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/;

/** Refuses an id that cannot name a sandbox, in one sentence. */
export function checkSandboxId(id: string): void {
  if (!SANDBOX_ID.test(id)) {
    throw new SocklbError(
      'SOCKLB_ERR_SANDBOX',
      `sandbox id ${JSON.stringify(id)}: use 1-128 letters, digits, '_', '.', '+' or '-', starting with a letter or digit`,
    );
  }
}

/** A Service as --exclude-service names it: a namespace and a name, each a DNS label (RFC 1123, RFC 1035). */
const SERVICE_REF = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Refuses a Service reference that cannot name a Service, in one sentence naming `what`. */
export function checkServiceRef(ref: string, what: string, code: ErrorCode = 'SOCKLB_ERR_SANDBOX'): string {
  if (!SERVICE_REF.test(ref))
    throw new SocklbError(code, `${what} ${JSON.stringify(ref)}: not a Service as NAMESPACE/NAME, such as kube-system/kube-dns`);
  return ref;
}

/** The bypass fields of a sandbox, canonical (sorted, without repeats; absent when empty), so that equal asks compare equal. */
function bypassOf(id: string, bypass: SandboxBypass): Pick<Sandbox, 'noTranslate' | 'excludeServices'> {
  const excluded = [...new Set(bypass.excludeServices ?? [])].map((ref) => checkServiceRef(ref, `sandbox ${id}: excluded Service`)).sort();
  if (bypass.noTranslate && excluded.length > 0)
    throw new SocklbError(
      'SOCKLB_ERR_SANDBOX',
      `sandbox ${id}: no-translate leaves every Service untranslated already; give it or excluded Services, not both`,
    );
  return { ...(bypass.noTranslate ? { noTranslate: true as const } : {}), ...(excluded.length > 0 ? { excludeServices: excluded } : {}) };
}

function sameBypass(a: Sandbox, b: Pick<Sandbox, 'noTranslate' | 'excludeServices'>): boolean {
  return a.noTranslate === b.noTranslate && (a.excludeServices ?? []).join(',') === (b.excludeServices ?? []).join(',');
}

/** What a sandbox leaves untranslated, as `sandbox list` shows it: `all`, `ns/a, ns/b`, or undefined for nothing. */
export function describeBypass(sandbox: Pick<Sandbox, 'noTranslate' | 'excludeServices'>): string | undefined {
  if (sandbox.noTranslate) return 'all';
  return sandbox.excludeServices === undefined ? undefined : sandbox.excludeServices.join(', ');
}

export class SandboxRegistry {
  private readonly sandboxes = new Map<string, Sandbox>();
  private readonly listeners: (() => void)[] = [];

  /** `adopted`: the sandboxes found pinned by an earlier run, already attached. */
  constructor(
    private readonly attachments: SandboxAttachments,
    adopted: readonly Sandbox[] = [],
  ) {
    for (const sandbox of adopted) this.sandboxes.set(sandbox.id, copy(sandbox));
  }

  /**
   * Calls `listener` whenever the sandboxes change: before a new sandbox is attached (so that
   * what it leaves untranslated is in place before its first call), and after one is removed.
   */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  /** Returns the sandbox as registered, its cgroup path resolved. */
  add(id: string, path: string, asked: SandboxBypass = {}): { outcome: AddOutcome; sandbox: Sandbox } {
    checkSandboxId(id);
    const bypass = bypassOf(id, asked);
    if (!isAbsolute(path)) throw new SocklbError('SOCKLB_ERR_SANDBOX', `sandbox ${id}: cgroup ${path} is not an absolute path`);
    // One spelling per directory: /cg/c1/ or /cg/x/../c1 is the cgroup /cg/c1 already registered.
    const cgroup = resolve(path);
    if (cgroup === resolve(this.attachments.cgroupRoot)) {
      throw new SocklbError(
        'SOCKLB_ERR_SANDBOX',
        `sandbox ${id}: cgroup ${cgroup} is the cgroup v2 root, which holds every process of the host; give the sandbox's own cgroup`,
      );
    }
    const existing = this.sandboxes.get(id);
    if (existing) {
      if (existing.cgroup !== cgroup) {
        throw new SocklbError(
          'SOCKLB_ERR_SANDBOX',
          `sandbox ${id} is already registered with cgroup ${existing.cgroup}; remove it first to register ${cgroup}`,
        );
      }
      if (!sameBypass(existing, bypass)) {
        throw new SocklbError(
          'SOCKLB_ERR_SANDBOX',
          `sandbox ${id} is already registered with cgroup ${cgroup}, leaving ${describeBypass(existing) ?? 'nothing'} untranslated; ` +
            `remove it first to change that`,
        );
      }
      this.attachAgain(existing);
      return { outcome: 'unchanged', sandbox: copy(existing) };
    }
    const holder = [...this.sandboxes.values()].find((sandbox) => sandbox.cgroup === cgroup);
    if (holder) throw new SocklbError('SOCKLB_ERR_SANDBOX', `cgroup ${cgroup} is already registered as sandbox ${holder.id}`);
    const sandbox: Sandbox = { id, cgroup, ...bypass };
    this.sandboxes.set(id, sandbox);
    this.changed();
    try {
      this.attachments.attach(sandbox);
    } catch (error) {
      this.sandboxes.delete(id);
      this.changed();
      throw error;
    }
    return { outcome: 'added', sandbox: copy(sandbox) };
  }

  /**
   * Attaches sandbox `id` again because its links stopped serving (its cgroup was made again at
   * its path, or someone detached them). Unlike an add, which answers a runtime that can retry, a
   * failure keeps the sandbox registered with the links it has, as an agent's start does: it runs
   * unattended, and forgetting a running container would leave it without Services for good.
   */
  reattach(id: string): void {
    this.attachments.reattach(this.registered(id));
  }

  /** A sandbox that can no longer be attached is forgotten, as if removed: its pins are gone. */
  private attachAgain(sandbox: Sandbox): void {
    try {
      this.attachments.attach(sandbox);
    } catch (error) {
      this.attachments.detach(sandbox);
      this.sandboxes.delete(sandbox.id);
      this.changed();
      throw error;
    }
  }

  remove(id: string): Sandbox {
    const sandbox = this.registered(id);
    this.attachments.detach(sandbox);
    this.sandboxes.delete(id);
    this.changed();
    return sandbox;
  }

  private registered(id: string): Sandbox {
    const sandbox = this.sandboxes.get(id);
    if (!sandbox) throw new SocklbError('SOCKLB_ERR_NO_SANDBOX', `no sandbox ${JSON.stringify(id)} is registered`);
    return sandbox;
  }

  has(id: string): boolean {
    return this.sandboxes.has(id);
  }

  /** Every sandbox, unsorted and not copied: for a lookup per traced call, which keeps none. */
  values(): IterableIterator<Readonly<Sandbox>> {
    return this.sandboxes.values();
  }

  /** Every sandbox, by id. */
  list(): Sandbox[] {
    return [...this.sandboxes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map(copy);
  }

  cgroups(): string[] {
    return [...this.sandboxes.values()].map((sandbox) => sandbox.cgroup);
  }
}

function copy(sandbox: Sandbox): Sandbox {
  return { ...sandbox, ...(sandbox.excludeServices ? { excludeServices: [...sandbox.excludeServices] } : {}) };
}
