// The benchmark's network, built with the lab (test/lab) on its bridge:
//
//   backend-1 .. backend-E    pods running nginx (and iperf3 on backend-1): every Service's
//                             measured endpoints
//   client-<datapath>         one sandbox (namespace + cgroup) per datapath: its wrk and iperf3,
//                             and that datapath's rules, conntrack or cgroup programs, touching
//                             no other datapath's connections
import type { Lab, Pod, Sandbox } from '../test/lab/lab.js';
import { testPinDirectory } from '../test/integration/support.js';
import { NGINX_POD_SYSCTLS, startIperfServer, startNginx } from '../test/lab/backends.js';
import { WRK_CLIENT_SYSCTLS } from '../test/lab/wrk.js';
import { HTTP_TARGET_PORT, UDP_PORT } from './catalog.js';
import type { Datapath, DatapathName } from './datapaths/datapath.js';
import { DirectDatapath } from './datapaths/direct.js';
import { IptablesDatapath } from './datapaths/iptables.js';
import { NftablesDatapath } from './datapaths/nftables.js';
import { SocklbDatapath } from './datapaths/socklb.js';
import type { BenchOptions } from './options.js';

/** Where socklb's agent pins its maps and links: a directory of this run's own. */
export const SOCKLB_PIN_DIRECTORY = testPinDirectory('bench');

export interface Topology {
  backends: Pod[];
  /** In interleaving order. */
  datapaths: Datapath[];
}

/** `onDatapath` hears of each datapath as soon as it exists, so that an abort can clear it. */
export async function buildTopology(
  lab: Lab,
  workdir: string,
  options: BenchOptions,
  onDatapath: (datapath: Datapath) => void,
): Promise<Topology> {
  const backends = await Promise.all(Array.from({ length: options.endpointsPerService }, (_, i) => lab.addPod(`backend-${i + 1}`)));
  for (const backend of backends) {
    await lab.sysctl(backend, NGINX_POD_SYSCTLS);
    await startNginx(lab, backend, workdir, HTTP_TARGET_PORT);
  }
  await startIperfServer(lab, backends[0]!, workdir, UDP_PORT);

  const datapaths: Datapath[] = [];
  for (const name of options.datapaths) {
    const client = await lab.addSandbox(`client-${name}`);
    await lab.sysctl(client, WRK_CLIENT_SYSCTLS);
    const datapath = await createDatapath(name, lab, client, workdir, options);
    onDatapath(datapath);
    datapaths.push(datapath);
  }
  return { backends, datapaths };
}

function createDatapath(
  name: DatapathName,
  lab: Lab,
  client: Sandbox,
  workdir: string,
  options: BenchOptions,
): Promise<Datapath> | Datapath {
  switch (name) {
    case 'direct':
      return new DirectDatapath(client);
    case 'socklb':
      return new SocklbDatapath(client, workdir, SOCKLB_PIN_DIRECTORY);
    case 'iptables':
      return IptablesDatapath.create(lab, client, workdir, options.iptablesBackend);
    case 'nftables':
      return NftablesDatapath.create(lab, client, workdir, options.nftMaxServices);
  }
}
