// A source a test drives by hand, and the states it hands the agent.

import type { EndpointSlice } from '../../src/model/types.js';
import type { SourceState } from '../../src/model/source-state.js';
import type { Source } from '../../src/sources/source.js';
import { modelEndpoint, modelService } from './model-fixtures.js';

/** A source the test drives by hand. */
export class ManualSource implements Source {
  private onState: ((state: SourceState) => void) | undefined;

  constructor(private readonly first: SourceState) {}

  async start(onState: (state: SourceState) => void): Promise<void> {
    this.onState = onState;
    onState(this.first);
  }

  async stop(): Promise<void> {}

  push(state: SourceState): void {
    this.onState?.(state);
  }
}

/** The dns Service (10.96.0.10:53/UDP) backed by `addresses` on port 5353. */
export function dnsState(addresses: string[]): SourceState {
  const service = modelService({ name: 'dns', ports: [{ name: 'dns', protocol: 'UDP', port: 53 }] });
  const slice: EndpointSlice = {
    namespace: 'default',
    name: 'dns-1',
    serviceName: 'dns',
    addressType: 'IPv4',
    ports: [{ name: 'dns', protocol: 'UDP', port: 5353 }],
    endpoints: addresses.map((address) => modelEndpoint(address)),
  };
  return {
    services: new Map([['default/dns', service]]),
    ignoredServices: new Set(),
    slices: new Map([['default/dns-1', slice]]),
    problems: [],
  };
}
