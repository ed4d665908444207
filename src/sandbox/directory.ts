// The sandboxes the control socket serves, in one space of ids: the cgroup sandboxes of this
// kernel (registry.ts) and, when the agent serves guest mode, the microVM guests (src/guest), which
// this module knows only by the interface below.

import { SocklbError } from '../errors.js';
import type { AddRequest, GuestEntry, SandboxDirectory, SandboxEntry } from './protocol.js';
import type { AddOutcome, SandboxRegistry } from './registry.js';

/** The guests' side: src/guest/hub.ts. */
export interface GuestDirectory {
  add(id: string, address: string): Promise<{ outcome: AddOutcome; guest: GuestEntry }>;
  remove(id: string): Promise<GuestEntry>;
  /** Also a guest being added, or not served: its id is taken. */
  has(id: string): boolean;
  list(): GuestEntry[];
}

export function sandboxDirectory(registry: SandboxRegistry, guests: GuestDirectory | undefined): SandboxDirectory {
  return {
    add(request: AddRequest) {
      if ('guest' in request) {
        if (guests === undefined) throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${request.id}: this agent serves no guests`);
        if (registry.has(request.id)) throw taken(request.id, 'a cgroup sandbox');
        // The node's cgroups mean nothing in a guest's kernel, and its applier writes no bypass.
        if (request.noTranslate || (request.excludeServices ?? []).length > 0)
          throw new SocklbError(
            'SOCKLB_ERR_SANDBOX',
            `guest ${request.id}: a microVM guest cannot leave calls untranslated (no-translate, excluded Services); ` +
              `only a cgroup sandbox can`,
          );
        return guests.add(request.id, request.guest).then(({ outcome, guest }) => ({ outcome, sandbox: guest }));
      }
      // A guest being added is had already: guests.add takes its id before it awaits anything.
      if (guests?.has(request.id)) throw taken(request.id, 'a guest');
      return Promise.resolve(registry.add(request.id, request.cgroup, request));
    },
    remove(id: string) {
      if (guests?.has(id)) return guests.remove(id);
      return Promise.resolve(registry.remove(id));
    },
    list(): SandboxEntry[] {
      const entries: SandboxEntry[] = [...registry.list(), ...(guests?.list() ?? [])];
      return entries.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    },
  };
}

function taken(id: string, what: string): SocklbError {
  return new SocklbError('SOCKLB_ERR_SANDBOX', `sandbox ${id} is already registered as ${what}; remove it first`);
}
