// One description of the datapath, read from its maps, for `socklb services`,
// for tests and for bug reports (as JSON, or as the tables of src/cli/tables.ts).

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
    .map(([id, backend]) => ({
      id,
      backend: backendText(backend),
      frontends: (usersByBackend.get(id) ?? []).sort((a, b) => a.frontend.localeCompare(b.frontend)),
    }))
    .sort((a, b) => a.id - b.id);
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
