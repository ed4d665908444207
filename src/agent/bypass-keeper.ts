// Keeps what socklb leaves untranslated in the maps (src/datapath/bypass.ts): the rules of the
// run's flags and of the registered sandboxes, against the frontend ids of the last sync. Written
// again after every sync (ids change as Services come and go) and whenever the sandboxes change.

import { bypassEntries, type BypassRule, type BypassWriter } from '../datapath/bypass.js';
import type { DatapathState } from '../datapath/state.js';
import { cgroupIdAt } from '../kernel/cgroups.js';
import type { Logger } from '../log.js';
import type { Sandbox } from '../sandbox/registry.js';

export class BypassKeeper {
  constructor(
    private readonly writer: BypassWriter,
    private readonly flagRules: readonly BypassRule[],
    private readonly sandboxes: () => readonly Sandbox[],
    private readonly state: () => DatapathState,
    private readonly logger: Logger,
  ) {}

  /** Writes what the rules ask for now; a failed write is logged and tried again at the next. */
  sync(): void {
    const rules = [...this.flagRules, ...this.sandboxes().map(sandboxRule)];
    try {
      this.writer.write(bypassEntries(rules, cgroupIdAt, this.state().serviceNames));
    } catch (error) {
      this.logger.warn(
        { error: error instanceof Error ? error.message : String(error) },
        'writing the untranslated cgroups and Services failed; trying again at the next sync',
      );
    }
  }
}

function sandboxRule(sandbox: Sandbox): BypassRule {
  return { cgroup: sandbox.cgroup, noTranslate: sandbox.noTranslate === true, excludedServices: sandbox.excludeServices ?? [] };
}
