// One description of the datapath, read from its maps, for `socklb services`,
// for tests and for bug reports.

import { backendText, frontendId, hostPort } from '../model/keys.js';
import type { Protocol, ServicePortRef } from '../model/types.js';
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
  /** struct socklb_frontend's flags (reserved, 0 in this layout). */
  flags: number;
  /** sessionAffinity ClientIP timeout in seconds; 0 for none. */
  affinityTimeoutSeconds: number;
  /** One per slot below the count, in slot order. */
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
        service: name ? serviceText(name) : '',
        serviceId: frontend.serviceId,
        flags: frontend.flags,
        affinityTimeoutSeconds: frontend.affinityTimeout,
        backends: state.liveSlots(frontend).map((id) => {
          const backend = id === undefined ? undefined : state.backends.get(id);
          return backend ? backendText(backend) : `<missing backend ${id ?? 'slot'}>`;
        }),
      };
    })
    .sort((a, b) => a.frontend.localeCompare(b.frontend));
}

/** `namespace/name:port`, or without `:port` for an unnamed port. */
export function serviceText(ref: ServicePortRef): string {
  return `${ref.namespace}/${ref.name}${ref.portName ? `:${ref.portName}` : ''}`;
}

/** `wide` adds the service id, flags, affinity timeout and slot count. */
export function formatTable(frontends: FrontendDescription[], wide = false): string {
  const backends = (f: FrontendDescription) => (f.backends.length > 0 ? f.backends.join(',') : '<none: refuses connections>');
  if (!wide) return formatColumns([['FRONTEND', 'SERVICE', 'BACKENDS'], ...frontends.map((f) => [f.frontend, f.service, backends(f)])]);
  return formatColumns([
    ['FRONTEND', 'SERVICE', 'ID', 'FLAGS', 'AFFINITY', 'SLOTS', 'BACKENDS'],
    ...frontends.map((f) => [f.frontend, f.service, String(f.serviceId), `0x${f.flags.toString(16)}`, f.affinityTimeoutSeconds > 0 ? `ClientIP ${f.affinityTimeoutSeconds}s` : 'None', String(f.backends.length), backends(f)]),
  ]);
}

/** A backend and the frontend slots that name it, as `socklb backends` shows it. */
export interface BackendDescription {
  id: number;
  backend: string;
  /** The frontends using it, sorted, with the slots (below the count) that name it. */
  frontends: { frontend: string; service: string; slots: number[] }[];
}

/** Every backend, sorted by id; one no live slot names has no frontends (the next sync removes it). */
export function describeBackends(state: DatapathState): BackendDescription[] {
  const usersByBackend = new Map<number, BackendDescription['frontends']>();
  for (const frontend of state.frontends.values()) {
    const name = state.serviceNames.get(frontend.serviceId);
    const slotsByBackend = new Map<number, number[]>();
    state.liveSlots(frontend).forEach((backendId, slot) => {
      if (backendId !== undefined) slotsByBackend.set(backendId, [...(slotsByBackend.get(backendId) ?? []), slot]);
    });
    for (const [backendId, slots] of slotsByBackend) {
      const users = usersByBackend.get(backendId) ?? [];
      users.push({ frontend: frontendId(frontend.key), service: name ? serviceText(name) : '', slots });
      usersByBackend.set(backendId, users);
    }
  }
  return [...state.backends]
    .map(([id, backend]) => ({ id, backend: backendText(backend), frontends: (usersByBackend.get(id) ?? []).sort((a, b) => a.frontend.localeCompare(b.frontend)) }))
    .sort((a, b) => a.id - b.id);
}

/** `wide` adds the Services and each frontend's slots. */
export function formatBackendTable(backends: readonly BackendDescription[], wide = false): string {
  const frontends = (b: BackendDescription) => (b.frontends.length > 0 ? b.frontends.map((f) => f.frontend).join(',') : '<unused>');
  if (!wide) return formatColumns([['ID', 'BACKEND', 'FRONTENDS'], ...backends.map((b) => [String(b.id), b.backend, frontends(b)])]);
  return formatColumns([
    ['ID', 'BACKEND', 'SERVICES', 'FRONTENDS (SLOTS)'],
    ...backends.map((b) => [
      String(b.id),
      b.backend,
      [...new Set(b.frontends.map((f) => f.service))].join(',') || '<none>',
      b.frontends.map((f) => `${f.frontend}[${f.slots.join(',')}]`).join(' ') || '<unused>',
    ]),
  ]);
}

/** Aligned text columns; the last one is not padded. */
export function formatColumns(rows: readonly string[][]): string {
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
  /** `service -> backend`: its connection's first, then one per Service its datagrams reached. */
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
        translations: [...(socket.connection ? [socket.connection] : []), ...socket.datagrams].map(
          ({ service, backend }) => `${hostPort(service.address, service.port)} -> ${hostPort(backend.address, backend.port)}`,
        ),
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
