// No translation at all: the client connects to the backend pods' own addresses, wrk's threads
// shared among them. The physical limit the other datapaths are measured against.
import type { Sandbox } from '../../test/lab/lab.js';
import type { BenchPort, BenchService } from '../catalog.js';
import type { Datapath, Target } from './datapath.js';

export class DirectDatapath implements Datapath {
  readonly name = 'direct';
  readonly description = 'the client connects to the pod IPs themselves (wrk threads spread over the backends): no Service, no translation';

  constructor(readonly client: Sandbox) {}

  async program(): Promise<undefined> {
    return undefined;
  }

  target(service: BenchService, port: BenchPort): Target {
    const [first] = service.endpoints;
    if (first === undefined) throw new Error(`${service.name} has no endpoints`);
    return { host: first, port: port.targetPort, spreadOver: service.endpoints.map((ip) => `${ip}:${port.targetPort}`) };
  }

  async clear(): Promise<void> {}
}
