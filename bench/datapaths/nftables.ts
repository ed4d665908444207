// kube-proxy's nftables mode, in this client's namespace: its table loaded with `nft -f` as one
// transaction, as kube-proxy's first sync sends it; an endpoint change is kube-proxy's partial sync
// (it lists the family's chains and sets, then sends the changed Service's chains).
//
// Loading grows quadratically with the number of Services on this kernel: the anonymous `numgen`
// verdict map of every service chain costs a walk of the transaction when it is bound (18 s at
// 5000 Services, 81 to 119 s at 10000 on this machine), and split into transactions of 1000 Services
// it is no better (one into a table already holding 29000 Services took 32 s). Above `maxServices` the
// datapath is therefore reported as not measured, with that reason, rather than loaded for an hour.
import type { Lab, Sandbox } from '../../test/lab/lab.js';
import { churnEndpoints, withEndpoints, type BenchPort, type BenchService, type Catalog } from '../catalog.js';
import {
  nftablesEndpointChains,
  renderNftablesDelete,
  renderNftablesPartialSync,
  renderNftablesSync,
} from '../kube-proxy/nftables-rules.js';
import { NotMeasured, type Datapath, type EndpointChange, type Programming, type Target } from './datapath.js';
import { routeServiceRange, timedLoad, writeRuleset } from './netfilter.js';

export class NftablesDatapath implements Datapath {
  readonly name = 'nftables';
  readonly description =
    "kube-proxy's nftables-mode table (service-ips verdict map -> service chain with numgen random -> endpoint chain with dnat), " +
    "loaded with nft -f in this client's namespace";

  private constructor(
    private readonly lab: Lab,
    readonly client: Sandbox,
    private readonly workdir: string,
    private readonly maxServices: number,
  ) {}

  static async create(lab: Lab, client: Sandbox, workdir: string, maxServices: number): Promise<NftablesDatapath> {
    await routeServiceRange(lab, client);
    return new NftablesDatapath(lab, client, workdir, maxServices);
  }

  async program(catalog: Catalog): Promise<Programming> {
    if (catalog.services.length > this.maxServices) {
      throw new NotMeasured(
        `above ${this.maxServices} Services (--nft-max-services): ` +
          `loading kube-proxy's nftables ruleset grows quadratically on this kernel (over a minute at 10000 Services), ` +
          `see docs/benchmarks.md`,
      );
    }
    const rules = renderNftablesSync(catalog);
    const seconds = await timedLoad(this.lab, this.client, ['nft', '-f', await writeRuleset(this.workdir, 'nft-sync.txt', rules)]);
    return { seconds, detail: { lines: rules.split('\n').length - 1, bytes: rules.length } };
  }

  async changeEndpoints(catalog: Catalog, k: number): Promise<EndpointChange> {
    const before = k === 1 ? catalog.churn : { ...catalog.churn, endpoints: churnEndpoints(catalog.churn, k - 1) };
    const changed = withEndpoints(catalog, catalog.churn, churnEndpoints(catalog.churn, k));
    const kept = new Set(nftablesEndpointChains(changed.churn));
    const stale = nftablesEndpointChains(before).filter((chain) => !kept.has(chain));
    const file = await writeRuleset(
      this.workdir,
      'nft-partial.txt',
      renderNftablesPartialSync(changed, new Set([catalog.churn.name]), stale),
    );
    // knftables' List: every chain (set) of the family, filtered to its table afterwards.
    const listChains = await timedLoad(this.lab, this.client, ['nft', '--json', 'list', 'chains', 'ip']);
    const listSets = await timedLoad(this.lab, this.client, ['nft', '--json', 'list', 'sets', 'ip']);
    const transaction = await timedLoad(this.lab, this.client, ['nft', '-f', file]);
    return {
      latencyMs: (listChains + listSets + transaction) * 1000,
      detail: { listMs: (listChains + listSets) * 1000, transactionMs: transaction * 1000 },
    };
  }

  target(service: BenchService, port: BenchPort): Target {
    return { host: service.clusterIP, port: port.port };
  }

  async clear(): Promise<void> {
    await timedLoad(this.lab, this.client, ['nft', '-f', await writeRuleset(this.workdir, 'nft-delete.txt', renderNftablesDelete())]);
  }
}
