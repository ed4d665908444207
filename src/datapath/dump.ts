// One description of the datapath, read from its maps, for `socklb services`,
// for tests and for bug reports.

import { backendText, frontendId, hostPort } from '../model/keys.js';
import type { Protocol } from '../model/types.js';
import type { NamespaceSockets } from './socket-iterators.js';
import type { DatapathState } from './state.js';

export interface FrontendDescription {
  frontend: string;
  address: string;
  port: number;
  protocol: Protocol;
  /** `namespace/name:port`, or '' when the maps hold no name for it. */
  service: string;
  serviceId: number;
  /** sessionAffinity ClientIP timeout in seconds; 0 for none. */
  affinityTimeoutSeconds: number;
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
        affinityTimeoutSeconds: frontend.affinityTimeout,
        backends: state.liveSlots(frontend).map((id) => {
          const backend = id === undefined ? undefined : state.backends.get(id);
          return backend ? backendText(backend) : `<missing backend ${id ?? 'slot'}>`;
        }),
      };
    })
    .sort((a, b) => a.frontend.localeCompare(b.frontend));
}

export function formatTable(frontends: FrontendDescription[]): string {
  return formatColumns([['FRONTEND', 'SERVICE', 'BACKENDS'], ...frontends.map((f) => [f.frontend, f.service, f.backends.length > 0 ? f.backends.join(',') : '<none: refuses connections>'])]);
}

/** Aligned text columns; the last one is not padded. */
function formatColumns(rows: readonly string[][]): string {
  const columns = Math.max(...rows.map((row) => row.length));
  const widths = Array.from({ length: columns - 1 }, (_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)));
  return rows.map((row) => row.map((cell, column) => (column < widths.length ? cell.padEnd(widths[column] ?? 0) : cell)).join('  ')).join('\n');
}

/** A socket socklb translated, as `socklb sockets` shows it. */
export interface SocketDescription {
  /** The network namespace's inode. */
  netns: number;
  /** The socket cookie, as `ss -e` shows it (sk:<hex>). */
  cookie: string;
  protocol: Protocol;
  family: 'IPv4' | 'IPv6';
  state: string;
  /** `service -> backend`, one per Service the socket reached. */
  translations: string[];
}

/** Every socket of every namespace, sorted by namespace and cookie. */
export function describeSockets(namespaces: readonly NamespaceSockets[]): SocketDescription[] {
  return namespaces
    .flatMap(({ netns, sockets }) =>
      sockets.map((socket) => ({
        netns,
        cookie: socket.cookie.toString(16),
        protocol: socket.protocol,
        family: socket.family,
        state: socket.state,
        translations: socket.translations.map(({ service, backend }) => `${hostPort(service.address, service.port)} -> ${hostPort(backend.address, backend.port)}`),
      })),
    )
    .sort((a, b) => a.netns - b.netns || a.cookie.localeCompare(b.cookie));
}

export function formatSocketTable(sockets: readonly SocketDescription[]): string {
  return formatColumns([
    ['NETNS', 'COOKIE', 'PROTO', 'STATE', 'TRANSLATIONS'],
    ...sockets.map((socket) => [String(socket.netns), socket.cookie, `${socket.protocol}/${socket.family}`, socket.state, socket.translations.join(', ')]),
  ]);
}
