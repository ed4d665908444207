// The stuck-socket policy: which connected sockets the agent destroys when a sync takes their
// backend out of a frontend (see docs/udp.md).
//
//   udp   connected UDP sockets (the default). UDP has no connection to fail: a socket connected
//         to a backend that left keeps sending into the void, or to a pod that no longer serves
//         the Service, until the application reconnects by itself. kube-proxy clears the UDP
//         conntrack entries of such endpoints for the same reason; Cilium destroys such sockets.
//   all   UDP and TCP. A TCP connection to a backend that is gone fails by itself (reset or
//         timeout); to one that is terminating, it is usually better left to drain. For those
//         who would rather cut it at once.
//   none  nothing is destroyed.
//
// Unconnected UDP sockets are never destroyed: their next datagram finds a live backend.

import { closeNamespaces, describeDenied, openNamespacesOfCgroups, type DeniedProcesses } from '../kernel/netns.js';
import type { Logger } from '../log.js';
import type { Protocol } from '../model/types.js';
import { backendText, frontendId } from '../model/keys.js';
import type { StalePair } from './layout.js';
import type { DestroyRun, SocketIterators } from './socket-iterators.js';

export const STUCK_SOCKET_POLICIES = ['udp', 'all', 'none'] as const;
export type StuckSocketPolicy = (typeof STUCK_SOCKET_POLICIES)[number];
export const DEFAULT_STUCK_SOCKET_POLICY: StuckSocketPolicy = 'udp';

/** The protocols whose sockets a policy destroys. */
export function policyProtocols(policy: StuckSocketPolicy): Protocol[] {
  switch (policy) {
    case 'udp':
      return ['UDP'];
    case 'all':
      return ['UDP', 'TCP'];
    case 'none':
      return [];
  }
}

/** What the agent calls once a sync has taken pairs out of the datapath. */
export interface StuckSocketHandler {
  destroy(pairs: readonly StalePair[]): Promise<void>;
}

/** Destroys the stuck sockets of the policy's protocols in every namespace of the cgroups. */
export class StuckSocketDestroyer implements StuckSocketHandler {
  /** Said once an agent run: a missing capability stays missing. */
  private deniedLogged = false;

  constructor(
    private readonly iterators: SocketIterators,
    /** Asked at each run: sandboxes come and go. */
    private readonly cgroups: () => readonly string[],
    private readonly protocols: readonly Protocol[],
    private readonly logger: Logger,
  ) {}

  async destroy(pairs: readonly StalePair[]): Promise<void> {
    const wanted = pairs.filter((pair) => this.protocols.includes(pair.frontend.protocol));
    if (wanted.length === 0) return;
    const started = performance.now();
    const denied: DeniedProcesses = { pids: [] };
    const namespaces = openNamespacesOfCgroups(this.cgroups(), denied);
    if (denied.pids.length > 0 && !this.deniedLogged) {
      this.deniedLogged = true;
      this.logger.warn(
        { code: denied.code },
        `destroy stuck sockets: ${describeDenied(denied)}; the sockets of namespaces that only they are in are left alone (said once)`,
      );
    }
    let run: DestroyRun;
    try {
      run = await this.iterators.destroy(wanted, this.protocols, namespaces);
    } finally {
      closeNamespaces(namespaces);
    }
    for (const failure of run.failures) this.logger.warn({ code: 'SOCKLB_ERR_KERNEL' }, `destroy stuck sockets: ${failure}`);
    this.logger.info(
      {
        pairs: wanted.map((pair) => `${frontendId(pair.frontend)} -> ${backendText(pair.backend)}`),
        namespaces: namespaces.length,
        destroyed: run.destroyed.filter((socket) => socket.error === 0).length,
        failed: run.destroyed
          .filter((socket) => socket.error !== 0)
          .map((socket) => ({ cookie: String(socket.cookie), error: socket.error })),
        durationMs: Math.round(performance.now() - started),
      },
      'stuck sockets destroyed',
    );
  }
}
