// Guest mode on the node: the registered microVM guests, a listener for each (one vsock listener
// for all the vhost-vsock ones, which tells them apart by CID), and what every sync of the node's
// maps becomes for them. One canonical state (the node's own DatapathState) and one
// bounded log of its changes serve every guest: a guest costs the host its record, its listener,
// its connection and what is queued for it, whatever the number of Services.

import { randomBytes } from 'node:crypto';
import { statSync, type Stats } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { DatapathState } from '../datapath/state.js';
import { SocklbError } from '../errors.js';
import type { Logger } from '../log.js';
import { pinGuest, pinnedGuests, unpinGuest } from '../pins/layout.js';
import type { GuestEntry } from '../sandbox/protocol.js';
import { listenVsock, type ListenVsock, type VsockError, type VsockListener } from '../kernel/vsock.js';
import { checkSandboxId } from '../sandbox/registry.js';
import { handOverSocket, listenOnUnixPath, type UnixPathRefusal } from '../sandbox/unix-listener.js';
import {
  DEFAULT_GUEST_VSOCK_PORT,
  describeEndpoint,
  formatGuestAddress,
  parseGuestAddress,
  sameEndpoint,
  type GuestAddress,
} from './address.js';
import { DEFAULT_SESSION_LIMITS, GuestRecord, GuestSession, type GuestSource, type SessionLimits } from './session.js';
import { countsOf, type GuestCounts } from './sizing.js';
import { SyncLog } from './sync-log.js';
import type { SyncWrites } from './writes.js';

interface Guest {
  id: string;
  address: GuestAddress;
  record: GuestRecord;
  /** A unix: or serial: guest's own listener; the vsock: guests share the hub's. */
  server: Server | undefined;
  session: GuestSession | undefined;
  /** Why it is not served (its listener did not open, another guest has its address); tried again every retry. */
  unserved: string | undefined;
  /** Set while its listener is being opened. */
  opening: Promise<void> | undefined;
}

/** Connections from a CID no guest has are logged at most this often: such a peer can connect in a loop. */
export const REFUSED_PEER_LOG_INTERVAL_MS = 10_000;

export interface GuestHubOptions {
  pinDirectory: string;
  /** The BPF object the guests load: the node's own. */
  elf: Uint8Array;
  /** The node's maps as the agent tracks them (it replaces its state when it reads the maps back). */
  state: () => DatapathState;
  logger: Logger;
  limits?: SessionLimits;
  /** Operations the log of syncs keeps; default DEFAULT_LOG_OPERATIONS. */
  logOperations?: number;
  /** The vsock port of the vsock: guests; default DEFAULT_GUEST_VSOCK_PORT. */
  vsockPort?: number;
  /** Opens the vsock listener; default the kernel's (tests give a fake one). */
  listenVsock?: ListenVsock;
  now?: () => number;
}

export class GuestHub implements GuestSource {
  /** Random and never 0 (0/0 is "no marker"): a guest holding another run's state gets a snapshot. */
  readonly epoch = randomBytes(8).readBigUInt64LE(0) | 1n;
  readonly log: SyncLog;
  readonly #guests = new Map<string, Guest>();
  readonly #limits: SessionLimits;
  readonly #now: () => number;
  #counted: { state: DatapathState; seq: bigint; counts: GuestCounts } | undefined;
  /** Open while a vsock: guest is registered. */
  #vsock: VsockListener | undefined;
  readonly #refusedPeers = { count: 0, loggedAt: -Infinity };
  #retrying: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: GuestHubOptions) {
    this.log = new SyncLog(options.logOperations);
    this.#limits = options.limits ?? DEFAULT_SESSION_LIMITS;
    this.#now = options.now ?? Date.now;
  }

  get state(): DatapathState {
    return this.options.state();
  }

  /**
   * Counted again only when the state is another object or a sync was made since: the agent
   * changes its state by syncs, each of which comes through publish() or moves the log on.
   */
  get counts(): GuestCounts {
    const state = this.state;
    const seq = this.log.seq;
    if (this.#counted?.state !== state || this.#counted.seq !== seq) this.#counted = { state, seq, counts: countsOf(state) };
    return this.#counted.counts;
  }

  get elf(): Uint8Array {
    return this.options.elf;
  }

  /**
   * Registers and serves the guests an earlier run registered. One that cannot be served stays
   * registered, listed as unserved: its id and address stay its own, `remove` forgets it, and
   * retryUnserved() tries it again.
   */
  async adopt(): Promise<void> {
    for (const { id, address } of pinnedGuests(this.options.pinDirectory)) {
      let parsed: GuestAddress;
      try {
        if (address === undefined) throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id}: its record has no address`);
        parsed = parseGuestAddress(address, id);
      } catch (error) {
        this.options.logger.error({ guest: id }, `guest ${id} not served: ${(error as Error).message}`);
        continue;
      }
      await this.#tryToServe(this.#register(id, parsed));
    }
  }

  /** Tries again to serve every guest that is not, now and every `intervalMs` until close(). */
  retryUnservedEvery(intervalMs: number): void {
    clearInterval(this.#retryTimer);
    this.#retryTimer = setInterval(() => void this.retryUnserved(), intervalMs);
    this.#retryTimer.unref();
  }

  /** Tries again to serve every guest that is not, one after another; a retry already under way is joined. */
  retryUnserved(): Promise<void> {
    this.#retrying ??= (async () => {
      for (const guest of [...this.#guests.values()])
        if (guest.unserved !== undefined && this.#guests.get(guest.id) === guest) await this.#tryToServe(guest);
    })().finally(() => (this.#retrying = undefined));
    return this.#retrying;
  }

  /**
   * Registers guest `id` at `address` and listens there; the same registration again is unchanged.
   * The id and the address are taken before anything is awaited: a request that arrives meanwhile,
   * for this hub or for a cgroup sandbox (src/sandbox/directory.ts asks has()), finds them taken.
   */
  async add(id: string, addressText: string): Promise<{ outcome: 'added' | 'unchanged'; guest: GuestEntry }> {
    checkSandboxId(id);
    const address = parseGuestAddress(addressText, id);
    const existing = this.#guests.get(id);
    if (existing && formatGuestAddress(existing.address) === formatGuestAddress(address)) {
      if (existing.opening !== undefined) {
        // Being added or retried: what it comes to decides.
        await existing.opening.catch(() => undefined);
        return this.add(id, addressText);
      }
      // Not served (its directory was missing, say): asked again, it is tried at once, not at the next retry.
      if (existing.unserved !== undefined) await this.#tryToServe(existing);
      if (existing.unserved !== undefined)
        throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id} is registered but not served: ${existing.unserved}`);
      return { outcome: 'unchanged', guest: this.#view(existing) };
    }
    if (existing)
      throw new SocklbError(
        'SOCKLB_ERR_SANDBOX',
        `guest ${id} is already registered at ${formatGuestAddress(existing.address)}; remove it first`,
      );
    const holder = this.#holderOf(address, () => true);
    if (holder) throw addressTaken(address, holder);
    const guest = this.#register(id, address);
    try {
      await this.#open(guest);
    } catch (error) {
      if (this.#guests.get(id) === guest) this.#guests.delete(id);
      throw error;
    }
    if (this.#guests.get(id) !== guest) throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id} was removed while it was being added`);
    pinGuest(this.options.pinDirectory, id, formatGuestAddress(address));
    // The vsock listener it opened may be what other vsock guests were not served for.
    if (address.transport === 'vsock') void this.retryUnserved();
    return { outcome: 'added', guest: this.#view(guest) };
  }

  /** Stops serving guest `id` and forgets it, served or not; its own datapath keeps running on what it holds. */
  async remove(id: string): Promise<GuestEntry> {
    const guest = this.#guests.get(id);
    if (!guest) throw new SocklbError('SOCKLB_ERR_NO_SANDBOX', `no sandbox ${JSON.stringify(id)} is registered`);
    const view = this.#view(guest);
    this.#guests.delete(id);
    unpinGuest(this.options.pinDirectory, id);
    await this.#stop(guest);
    return view;
  }

  has(id: string): boolean {
    return this.#guests.has(id);
  }

  list(): GuestEntry[] {
    return [...this.#guests.values()].map((guest) => this.#view(guest));
  }

  /**
   * One sync of the node's maps, to every guest. While no guest is registered nothing is kept, but
   * the sync is counted: a guest registered again later, with the marker it had, must not be taken
   * for up to date.
   */
  publish(writes: SyncWrites, waitForReaders: boolean): void {
    if (writes.frontends.length === 0 && writes.cleanup.length === 0 && writes.addresses.length === 0) return;
    if (this.#guests.size === 0) return this.log.skip();
    const entry = this.log.append(writes, waitForReaders);
    for (const guest of this.#guests.values()) guest.session?.publish(entry);
  }

  /** Stops listening and closes every connection; registrations stay recorded for the next run. */
  async close(): Promise<void> {
    clearInterval(this.#retryTimer);
    const guests = [...this.#guests.values()];
    this.#guests.clear();
    await Promise.all(guests.map((guest) => this.#stop(guest)));
  }

  #register(id: string, address: GuestAddress): Guest {
    const record = new GuestRecord(id, this.#limits, this.#now());
    const guest: Guest = { id, address, record, server: undefined, session: undefined, unserved: undefined, opening: undefined };
    this.#guests.set(id, guest);
    return guest;
  }

  /** Opens its listener, one opening at a time; `unserved` says why it did not open. */
  #open(guest: Guest): Promise<void> {
    guest.opening ??= this.#listen(guest)
      .then(
        () => {
          guest.unserved = undefined;
        },
        (error: Error) => {
          guest.unserved = error.message;
          throw error;
        },
      )
      .finally(() => (guest.opening = undefined));
    return guest.opening;
  }

  /** Opens its listener if it can; why it cannot is logged once for each new reason. */
  async #tryToServe(guest: Guest): Promise<void> {
    const before = guest.unserved;
    try {
      await this.#open(guest);
      // Removed meanwhile: its listener is closed by remove(), and nothing is to be said either way.
      if (before !== undefined && this.#guests.get(guest.id) === guest)
        this.options.logger.info({ guest: guest.id }, `guest ${guest.id} served; it was not: ${before}`);
    } catch (error) {
      if (guest.unserved !== before && this.#guests.get(guest.id) === guest)
        this.options.logger.error({ guest: guest.id }, `guest ${guest.id} not served: ${(error as Error).message}`);
    }
  }

  /**
   * Only an adopted guest meets a holder here (add refuses an address any guest has): two pinned
   * records for one address (edited by hand) must not share its connections.
   */
  async #listen(guest: Guest): Promise<void> {
    const { id, address } = guest;
    const holder = this.#holderOf(address, (other) => other !== guest && (other.opening !== undefined || other.unserved === undefined));
    if (holder) throw addressTaken(address, holder);
    if (address.transport === 'vsock') return this.#openVsock(id);
    // Identity is the path: whatever connects there is this guest.
    const server = createServer((socket) => this.#accept(guest, socket));
    await listen(server, address.path, id);
    // Only once it listens: a bind that fails is the caller's to report (once for each reason), not this listener's.
    server.on('error', (error: NodeJS.ErrnoException) =>
      this.options.logger.error({ guest: id, code: error.code }, `guest ${id}: ${address.path}: ${error.message}`),
    );
    guest.server = server;
  }

  #holderOf(address: GuestAddress, counts: (guest: Guest) => boolean): Guest | undefined {
    return [...this.#guests.values()].find((guest) => counts(guest) && sameEndpoint(guest.address, address));
  }

  /** A new connection replaces the old one (an applier that restarted before its old connection timed out). */
  #accept(guest: Guest, socket: Socket): void {
    guest.session?.close('replaced by a new connection');
    guest.session = new GuestSession(guest.record, socket, this, this.options.logger, {
      serial: guest.address.transport === 'serial',
      limits: this.#limits,
      now: this.#now,
    });
  }

  /** Listens on the vsock port unless it is open already: for the first vsock: guest, registered or adopted. */
  #openVsock(id: string): void {
    if (this.#vsock) return;
    const port = this.options.vsockPort ?? DEFAULT_GUEST_VSOCK_PORT;
    try {
      this.#vsock = (this.options.listenVsock ?? listenVsock)(port, {
        connection: (peerCid, socket) => this.#vsockConnection(peerCid, socket),
        error: (error) => this.options.logger.error({ port, code: error.code }, `vsock port ${port}: ${error.message}`),
      });
    } catch (error) {
      throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id}: cannot listen on vsock port ${port}: ${whyNoVsock(error as VsockError)}`, {
        cause: error,
      });
    }
  }

  /** Identity is the peer's CID, which vhost-vsock sets, whatever the guest says. */
  #vsockConnection(peerCid: number, socket: Socket): void {
    const guest = [...this.#guests.values()].find(
      ({ address, unserved }) => unserved === undefined && address.transport === 'vsock' && address.cid === peerCid,
    );
    if (guest) return this.#accept(guest, socket);
    socket.destroy();
    const refused = this.#refusedPeers;
    refused.count++;
    const now = this.#now();
    if (now - refused.loggedAt < REFUSED_PEER_LOG_INTERVAL_MS) return;
    this.options.logger.warn(
      { cid: peerCid, refused: refused.count },
      `vsock: closed a connection from CID ${peerCid}, which no guest has; ${refused.count} closed so since this was last logged`,
    );
    refused.count = 0;
    refused.loggedAt = now;
  }

  async #stop(guest: Guest): Promise<void> {
    // A listener being opened is closed once open.
    await guest.opening?.catch(() => undefined);
    guest.session?.close('the agent stops serving this guest');
    const server = guest.server;
    if (server) return new Promise<void>((resolve) => server.close(() => resolve()));
    // The vsock listener goes with its last guest.
    const vsock = this.#vsock;
    if (!vsock || [...this.#guests.values()].some(({ address }) => address.transport === 'vsock')) return;
    this.#vsock = undefined;
    await vsock.close();
  }

  #view(guest: Guest): GuestEntry {
    const session = guest.session && !guest.session.closed ? guest.session : undefined;
    const marker = guest.record.marker;
    const held = marker && (marker.epoch !== 0n || marker.seq !== 0n) ? marker : undefined;
    return {
      id: guest.id,
      guest: formatGuestAddress(guest.address),
      phase: guest.unserved !== undefined ? 'unserved' : (session?.phase ?? 'disconnected'),
      marker: held && `${held.epoch.toString(16)}/${held.seq}`,
      lag: held?.epoch === this.epoch ? Number(this.log.seq - held.seq) : undefined,
      queuedBytes: session?.queuedBytes ?? 0,
      snapshots: guest.record.snapshots,
      lastError: guest.unserved ?? guest.record.lastError,
      kernelRelease: guest.record.kernelRelease,
    };
  }
}

function addressTaken(address: GuestAddress, holder: Guest): SocklbError {
  return new SocklbError('SOCKLB_ERR_SANDBOX', `${describeEndpoint(address)} is already the address of guest ${holder.id}`);
}

function whyNoVsock(error: VsockError): string {
  if (error.code === 'EAFNOSUPPORT') return 'this kernel has no vsock (AF_VSOCK: EAFNOSUPPORT; load vhost_vsock)';
  if (error.code === 'EADDRINUSE') return 'another process holds it (EADDRINUSE); give this agent another with run --guest-vsock-port';
  return error.message;
}

/**
 * Listens on `path`, replacing a socket file nobody serves (a killed agent's) and nothing else,
 * 0600 and owned by the owner of its directory: a VMM in a jail (Firecracker's jailer) runs as
 * that user and must connect, nobody else should.
 */
async function listen(server: Server, path: string, id: string): Promise<void> {
  const directory = statOrUndefined(dirname(path));
  if (!directory?.isDirectory()) throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id}: ${dirname(path)} is not a directory`);
  await listenOnUnixPath(server, path, (refusal) => refuseGuestPath(id, path, refusal)).catch((error: NodeJS.ErrnoException) => {
    if (error instanceof SocklbError) throw error;
    throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id}: cannot listen on ${path}: ${error.code ?? error.message}`, { cause: error });
  });
  try {
    handOverSocket(path, directory.uid, directory.gid);
  } catch (error) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id}: cannot give ${path} to uid ${directory.uid}: ${reason}`, { cause: error });
  }
}

function refuseGuestPath(id: string, path: string, refusal: UnixPathRefusal): SocklbError {
  if (refusal.reason === 'not a socket') return new SocklbError('SOCKLB_ERR_SANDBOX', `guest ${id}: ${path} exists and is not a socket`);
  const how = refusal.probe === 'accepted' ? 'a process serves it' : `connecting to it fails with ${refusal.probe}, not ECONNREFUSED`;
  return new SocklbError(
    'SOCKLB_ERR_SANDBOX',
    `guest ${id}: ${path} is a socket in use (${how}); only a socket nobody serves is replaced: check the path (a VMM's own socket?)`,
  );
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}
