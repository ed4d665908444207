// kube-proxy's iptables mode, in this client's namespace: its rules loaded as kube-proxy loads them
// (iptables-restore --noflush), programming time being the restore's wall time; an endpoint
// change is kube-proxy's partial sync (KUBE-SERVICES rewritten whole, the changed Service's chains).
import type { Lab, Sandbox } from '../../test/lab/lab.js';
import { churnEndpoints, withEndpoints, type BenchPort, type BenchService, type Catalog } from '../catalog.js';
import { renderIptablesFlush, renderIptablesJumps, renderIptablesSync } from '../kube-proxy/iptables-rules.js';
import type { Datapath, EndpointChange, Programming, Target } from './datapath.js';
import { routeServiceRange, timedLoad, writeRuleset } from './netfilter.js';

/**
 * legacy: x_tables, what kube-proxy's iptables mode was built on; nft: the same rules through
 * iptables-nft, whose `--noflush` restores grow quadratically with the ruleset on this machine.
 */
export type IptablesBackend = 'legacy' | 'nft';

export class IptablesDatapath implements Datapath {
  readonly name = 'iptables';
  readonly description: string;
  readonly #restore: string;

  private constructor(
    private readonly lab: Lab,
    readonly client: Sandbox,
    private readonly workdir: string,
    private readonly backend: IptablesBackend,
  ) {
    this.#restore = `iptables-${backend}-restore`;
    this.description =
      `kube-proxy's iptables-mode rules (KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP DNAT), ` +
      `loaded with ${this.#restore} --noflush in this client's namespace`;
  }

  static async create(lab: Lab, client: Sandbox, workdir: string, backend: IptablesBackend): Promise<IptablesDatapath> {
    await routeServiceRange(lab, client);
    return new IptablesDatapath(lab, client, workdir, backend);
  }

  async program(catalog: Catalog): Promise<Programming> {
    // The jumps from the built-in chains come first and untimed: kube-proxy makes them once, with iptables -I.
    await timedLoad(this.lab, this.client, [
      this.#restore,
      '--noflush',
      await writeRuleset(this.workdir, 'iptables-jumps.txt', renderIptablesJumps()),
    ]);
    const rules = renderIptablesSync(catalog);
    const file = await writeRuleset(this.workdir, 'iptables-sync.txt', rules);
    const seconds = await timedLoad(this.lab, this.client, [this.#restore, '--noflush', file]);
    return {
      seconds,
      detail: { backend: this.backend, rules: countLines(rules, '-A '), chains: countLines(rules, ':'), bytes: rules.length },
    };
  }

  async changeEndpoints(catalog: Catalog, k: number): Promise<EndpointChange> {
    const changed = withEndpoints(catalog, catalog.churn, churnEndpoints(catalog.churn, k));
    const file = await writeRuleset(
      this.workdir,
      'iptables-partial.txt',
      renderIptablesSync(changed, { changed: new Set([catalog.churn.name]) }),
    );
    return { latencyMs: (await timedLoad(this.lab, this.client, [this.#restore, '--noflush', file])) * 1000, detail: {} };
  }

  target(service: BenchService, port: BenchPort): Target {
    return { host: service.clusterIP, port: port.port };
  }

  async clear(): Promise<void> {
    // Without --noflush: every chain of both tables flushed, every user chain deleted.
    await timedLoad(this.lab, this.client, [this.#restore, await writeRuleset(this.workdir, 'iptables-flush.txt', renderIptablesFlush())]);
  }
}

function countLines(text: string, prefix: string): number {
  return text.split('\n').filter((line) => line.startsWith(prefix)).length;
}
