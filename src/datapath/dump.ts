// One description of the datapath, read from its maps, for `socklb services`,
// for tests and for bug reports.

import { backendText, frontendId } from '../model/keys.js';
import type { Protocol } from '../model/types.js';
import type { DatapathState } from './state.js';

export interface FrontendDescription {
  frontend: string;
  address: string;
  port: number;
  protocol: Protocol;
  /** `namespace/name:port`, or '' when the maps hold no name for it. */
  service: string;
  serviceId: number;
  backends: string[];
}

/** Every frontend with its live backends, sorted by frontend. */
export function describeFrontends(state: DatapathState): FrontendDescription[] {
  return [...state.frontends.values()]
    .map((frontend) => {
      const name = state.serviceNames.get(frontend.serviceId);
      return {
        frontend: frontendId(frontend.key),
        address: frontend.key.address,
        port: frontend.key.port,
        protocol: frontend.key.protocol,
        service: name ? `${name.namespace}/${name.name}${name.portName ? `:${name.portName}` : ''}` : '',
        serviceId: frontend.serviceId,
        backends: state.liveSlots(frontend).map((id) => {
          const backend = id === undefined ? undefined : state.backends.get(id);
          return backend ? backendText(backend) : `<missing backend ${id ?? 'slot'}>`;
        }),
      };
    })
    .sort((a, b) => a.frontend.localeCompare(b.frontend));
}

/** Aligned text columns. */
export function formatTable(frontends: FrontendDescription[]): string {
  const rows = [['FRONTEND', 'SERVICE', 'BACKENDS'], ...frontends.map((f) => [f.frontend, f.service, f.backends.length > 0 ? f.backends.join(',') : '<none: refuses connections>'])];
  const widths = [0, 1].map((column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)));
  return rows.map((row) => `${row[0]?.padEnd(widths[0] ?? 0)}  ${row[1]?.padEnd(widths[1] ?? 0)}  ${row[2]}`).join('\n');
}
