// The agent: source states in, map writes out.
//
//   Source (files, API) --SourceState--> DesiredFrontends, DesiredServiceAddresses (pure model)
//     --changed frontends, addresses--> planFrontends/planCleanup, planAddresses (pure planner)
//     --operations--> maps (libbpf, or memory in tests)
//     --pairs taken out--> StuckSocketHandler (destroys sockets connected through them)
//
// The agent starts from what the maps hold (a previous run's ids are kept),
// and prunes what is no longer wanted only once the source has delivered its
// first complete state: until then the pinned datapath keeps serving as it was.
//
// A change costs in proportion to what changed: the source names the changed
// keys, the model recomputes their Services, the planner plans their
// frontends and cleans up only the ids they touched. The whole datapath is
// planned and cleaned up at the first state, after a cleanup that failed, and
// every resync interval, so that anything the narrow path missed is repaired.

import type { Logger } from '../log.js';
import { DesiredFrontends } from '../model/desired.js';
import { DesiredServiceAddresses, type AddressChanges } from '../model/service-addresses.js';
import type { InputProblem, NodeContext } from '../model/types.js';
import type { StalePair } from '../datapath/layout.js';
import type { DatapathMaps } from '../datapath/maps.js';
import { fullAddressScope, fullScope, type AddressScope } from '../datapath/planner.js';
import type { ReaderFence } from '../datapath/readers.js';
import type { SyncWrites } from '../guest/writes.js';
import { reconcile, reconcileAddresses, type CleanupExtent } from '../datapath/reconcile.js';
import { servedBackends, stalePairs, stillStale } from '../datapath/stale.js';
import { DatapathState } from '../datapath/state.js';
import type { StuckSocketHandler } from '../datapath/stuck-sockets.js';
import type { SourceState } from '../model/source-state.js';
import type { Source } from '../sources/source.js';

export interface AgentOptions {
  source: Source;
  maps: DatapathMaps;
  /** Waited on before ids that syncs freed are handed out again. */
  readers: ReaderFence;
  /** Told what each sync wrote, for the copies of the maps in microVM guests (src/guest/hub.ts). */
  guests?: { publish(writes: SyncWrites, waitForReaders: boolean): void };
  logger: Logger;
  node: NodeContext;
  /** The service CIDRs of --service-cluster-ip-range, canonical (canonicalCidr); the source's ServiceCIDRs are added. */
  serviceRanges?: readonly string[];
  /** First delay before frontends whose writes failed are tried again; doubles up to a minute. */
  retryDelayMs?: number;
  /** Told of the (frontend, backend) pairs each sync took out; none: sockets are left alone. */
  stuckSockets?: StuckSocketHandler;
  /** How often the whole datapath is planned and cleaned up, whatever changed; default 5 minutes. */
  resyncIntervalMs?: number;
}

/** What led to a sync: a source state's changes, or a retry or resync (no changes). */
interface SyncCause {
  serviceChanges: number;
  endpointChanges: number;
  /** When the source noticed the change (ms since the epoch), if it says. */
  changeSeenAt?: number;
}

export interface SyncResult extends SyncCause {
  frontends: number;
  operations: number;
  /** Frontends whose writes failed; they are retried with backoff. */
  failed: number;
  /** Cluster IPs and service CIDRs whose writes failed; retried with the frontends. */
  failedAddresses: number;
  durationMs: number;
}

const NO_SOURCE_CHANGE: SyncCause = { serviceChanges: 0, endpointChanges: 0 };
const NO_ADDRESS_CHANGE: AddressScope = { clusterIPs: [], serviceRanges: [] };

const MAX_RETRY_DELAY_MS = 60_000;
const DEFAULT_RESYNC_INTERVAL_MS = 5 * 60_000;

export class Agent {
  private readonly state: DatapathState;
  private readonly desired: DesiredFrontends;
  private readonly addresses: DesiredServiceAddresses;
  /** Frontend id -> the write that stopped it, until a retry gets it through. */
  private readonly failed = new Map<string, Error>();
  /** `cluster IP 10.96.0.10`, `service CIDR 10.96.0.0/12` -> the write the kernel refused, until a sync gets it through. */
  private readonly failedAddresses = new Map<string, Error>();
  private reportedProblems = new Map<string, InputProblem>();
  private firstStateSeen = false;
  private stopped = false;
  private syncedOnce = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private readerFence: NodeJS.Immediate | undefined;
  /** A fence released freed ids since the last sync, which the next may hand out again. */
  private idsReleasedSinceSync = false;
  /** Why the last fence failed, until one works: logged when it changes, not at each sync's retry. */
  private readerFenceError: string | undefined;
  private retryDelayMs: number;
  private resyncTimer: NodeJS.Timeout | undefined;
  /** The last cleanup failed somewhere: the next one looks at everything. */
  private cleanupIncomplete = false;
  private syncListeners: ((result: SyncResult) => void)[] = [];
  /** The stuck-socket runs, one at a time, in the order of the syncs. */
  private destroying: Promise<void> = Promise.resolve();

  constructor(private readonly options: AgentOptions) {
    this.state = DatapathState.read(options.maps);
    // A frontend two Services claim stays with the one the adopted maps say serves it.
    this.desired = new DesiredFrontends(options.node, (frontendId) => this.state.servicePortOf(frontendId));
    this.addresses = new DesiredServiceAddresses(options.node, options.serviceRanges ?? []);
    this.retryDelayMs = options.retryDelayMs ?? 1000;
    options.logger.info(
      {
        frontends: this.state.frontends.size,
        backends: this.state.backends.size,
        clusterIPs: this.state.clusterIPs.size,
        serviceRanges: this.state.serviceRanges.size,
      },
      'adopted the datapath state found in the maps',
    );
  }

  /**
   * Resolves once the source's first state is handled: in the datapath or, from a source that
   * cannot see its input, reported while the datapath stays as it was.
   */
  async start(): Promise<void> {
    await this.options.source.start((state) => this.onSourceState(state));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearImmediate(this.readerFence);
    clearInterval(this.resyncTimer);
    await this.options.source.stop();
    await this.destroying;
  }

  /** Called after every sync; for tests and metrics. */
  onSync(listener: (result: SyncResult) => void): void {
    this.syncListeners.push(listener);
  }

  /** The datapath as this agent last wrote it. */
  get datapath(): DatapathState {
    return this.state;
  }

  get maps(): DatapathMaps {
    return this.options.maps;
  }

  /** How many objects or files are currently rejected. */
  problemCount(): number {
    return this.reportedProblems.size;
  }

  /** The objects or files currently rejected, with why. */
  problems(): InputProblem[] {
    return [...this.reportedProblems.values()];
  }

  /** Frontends the kernel refused (a full map, among others), with its answer; retried with backoff. */
  failures(): { frontend: string; error: string }[] {
    return [...this.failed].map(([frontend, error]) => ({ frontend, error: error.message }));
  }

  /** Cluster IPs and service CIDRs the kernel refused, with its answer; retried with the frontends. */
  addressFailures(): { address: string; error: string }[] {
    return [...this.failedAddresses].map(([address, error]) => ({ address, error: error.message }));
  }

  private onSourceState(sourceState: SourceState): void {
    // A source may still deliver while it stops (a first list that completes as the agent stops).
    if (this.stopped) return;
    // A source that cannot see its input says nothing about the Services (its problems say why):
    // the model and the datapath stay as they are.
    if (sourceState.complete === false) {
      this.reportProblems(this.desired.problems(sourceState.problems));
      return;
    }
    const { changed, serviceChanges, endpointChanges } = this.desired.update(sourceState);
    const addressChanges = this.addresses.update(sourceState);
    this.apply(changed, addressChanges, { serviceChanges, endpointChanges, changeSeenAt: sourceState.changeSeenAt });
    this.reportProblems(this.desired.problems());
  }

  /** The changed frontends and addresses into the datapath; at the first state, everything, and the pruning of what is not wanted. */
  private apply(changed: Iterable<string>, addressChanges: AddressChanges, cause: SyncCause): void {
    if (this.firstStateSeen) {
      this.sync(new Set([...changed, ...this.failed.keys()]), addressChanges, cause);
      return;
    }
    this.firstStateSeen = true;
    this.resync(cause);
    this.resyncTimer = setInterval(() => this.resync(NO_SOURCE_CHANGE), this.options.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS);
    this.resyncTimer.unref();
  }

  /** Every frontend and address either side knows of, and a cleanup of everything. */
  private resync(cause: SyncCause): void {
    this.sync(fullScope(this.state, this.desired.frontends), fullAddressScope(this.state, this.addresses), cause, 'everything');
  }

  private sync(
    scope: Iterable<string>,
    addressScope: AddressScope,
    cause: SyncCause,
    cleanup: CleanupExtent = this.cleanupIncomplete ? 'everything' : 'touched',
  ): void {
    const started = performance.now();
    const frontendIds = [...scope];
    const served = this.options.stuckSockets && servedBackends(this.state, frontendIds);
    const reusesFreedIds = this.idsReleasedSinceSync;
    this.idsReleasedSinceSync = false;
    const result = reconcile(this.options.maps, this.state, this.desired.frontends, frontendIds, cleanup);
    this.cleanupIncomplete = result.cleanupErrors.length > 0;
    // Logged when a frontend starts failing or fails otherwise, and when it gets in: the retries of a
    // full map, each sync and every backoff, would otherwise log the same line per frontend each time.
    // Every sync's scope holds the frontends that failed before (they are retried), so these are all
    // that can change here.
    for (const frontend of new Set([...this.failed.keys(), ...result.failed.keys()])) {
      const before = this.failed.get(frontend);
      const error = result.failed.get(frontend);
      if (error && error.message !== before?.message)
        this.options.logger.error({ frontend, code: (error as { code?: string }).code }, `update frontend ${frontend}: ${error.message}`);
      else if (before && !error) {
        const outcome = this.desired.frontends.has(frontend) ? 'in' : 'no longer wanted';
        this.options.logger.info({ frontend }, `update frontend ${frontend}: ${outcome}, after failing with ${before.message}`);
      }
      if (error) this.failed.set(frontend, error);
      else this.failed.delete(frontend);
    }
    for (const error of result.cleanupErrors)
      this.options.logger.warn({ code: (error as { code?: string }).code }, `cleanup: ${error.message}`);
    // A write that failed is planned again with every other address: they are few, and failures rare.
    const addressResult = reconcileAddresses(
      this.options.maps,
      this.state,
      this.addresses,
      this.failedAddresses.size > 0 ? fullAddressScope(this.state, this.addresses) : addressScope,
    );
    this.recordAddressFailures(addressResult.failed);
    // A guest that applies this after the sync before, at once, must wait for its own readers
    // wherever the node waited for its before handing ids out again.
    this.options.guests?.publish({ ...result.written, addresses: addressResult.written }, reusesFreedIds);
    // Only the frontends that served something before can have stale pairs: a first sync has none to look at.
    const stale = served && stalePairs(served, servedBackends(this.state, served.keys()));
    // Logged once the sync's own work is done: "datapath synced" means the agent is free for the next change.
    const summary: SyncResult = {
      ...cause,
      frontends: result.frontends,
      operations: result.operations + addressResult.operations,
      failed: result.failed.size,
      failedAddresses: addressResult.failed.size,
      durationMs: performance.now() - started,
    };
    // The first sync is logged even when it wrote nothing: that is how a restart shows that it
    // adopted the maps as they were, without rewriting an entry.
    if (summary.frontends > 0 || addressResult.operations > 0 || summary.failed > 0 || summary.failedAddresses > 0 || !this.syncedOnce)
      this.options.logger.info(summary, 'datapath synced');
    this.syncedOnce = true;
    if (stale) this.destroyStuckSockets(stale);
    this.scheduleRetry();
    this.scheduleReaderFence();
    for (const listener of this.syncListeners) listener(summary);
  }

  /** Logs a cluster IP or service CIDR when its write starts failing or fails otherwise, and when it gets in. */
  private recordAddressFailures(failed: ReadonlyMap<string, Error>): void {
    for (const address of new Set([...this.failedAddresses.keys(), ...failed.keys()])) {
      const before = this.failedAddresses.get(address);
      const error = failed.get(address);
      if (error && error.message !== before?.message)
        this.options.logger.error({ address, code: (error as { code?: string }).code }, `update ${address}: ${error.message}`);
      else if (before && !error) this.options.logger.info({ address }, `update ${address}: done, after failing with ${before.message}`);
      if (error) this.failedAddresses.set(address, error);
      else this.failedAddresses.delete(address);
    }
  }

  /**
   * Waits for the programs' readers after a sync that freed ids, rather than in the path of the
   * next change: the wait is an RCU grace period (about 10 ms on an idle 2-core node), and a change
   * that waited for it before its writes reached the maps of a guest, which waits for its own
   * readers too, in 24 ms at the median rather than 1.4 (docs/footprint.md). A sync that runs while
   * ids still cool takes fresh ones.
   */
  private scheduleReaderFence(): void {
    if (this.readerFence !== undefined || !this.state.idsAwaitReaders) return;
    this.readerFence = setImmediate(() => {
      this.readerFence = undefined;
      if (!this.stopped && this.releaseFreedIds()) this.idsReleasedSinceSync = true;
    });
  }

  /**
   * Makes the ids earlier syncs freed available to the next, once no program run can still hold
   * them; if the kernel will not say so, the plan takes fresh ids and the freed ones wait.
   */
  private releaseFreedIds(): boolean {
    if (!this.state.idsAwaitReaders) return false;
    try {
      this.options.readers.waitForReaders();
    } catch (error) {
      const { message } = error as Error;
      if (message !== this.readerFenceError)
        this.options.logger.warn({ code: (error as { code?: string }).code }, `ids freed by earlier syncs stay unused: ${message}`);
      this.readerFenceError = message;
      return false;
    }
    if (this.readerFenceError !== undefined)
      this.options.logger.info(`ids freed by earlier syncs are used again, after failing with ${this.readerFenceError}`);
    this.readerFenceError = undefined;
    this.state.readersGone();
    return true;
  }

  /** Runs after the maps stopped handing the pairs out, so a socket that reconnects finds a live backend. */
  private destroyStuckSockets(pairs: StalePair[]): void {
    const handler = this.options.stuckSockets;
    if (!handler || pairs.length === 0) return;
    this.destroying = this.destroying
      // A run waits for the one before it and for its thread to start: by then a later sync may
      // have handed a pair's backend out again (a readiness flap), and its sockets are fine.
      .then(() => {
        const stale = stillStale(pairs, this.state);
        return stale.length > 0 ? handler.destroy(stale) : undefined;
      })
      .catch((error: unknown) => {
        const failure = error instanceof Error ? error : new Error(String(error));
        this.options.logger.warn({ code: (failure as { code?: string }).code }, `destroy stuck sockets: ${failure.message}`);
      });
  }

  private scheduleRetry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.failed.size === 0 && this.failedAddresses.size === 0) {
      this.retryDelayMs = this.options.retryDelayMs ?? 1000;
      return;
    }
    this.retryTimer = setTimeout(() => this.sync([...this.failed.keys()], NO_ADDRESS_CHANGE, NO_SOURCE_CHANGE), this.retryDelayMs);
    this.retryTimer.unref();
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, MAX_RETRY_DELAY_MS);
  }

  /** Logs each problem once when it appears and once when it is gone. */
  private reportProblems(problems: InputProblem[]): void {
    const current = new Map(problems.map((problem) => [`${problem.source}\0${problem.object}\0${problem.reason}`, problem]));
    for (const [key, problem] of current) {
      if (!this.reportedProblems.has(key)) this.options.logger.warn(problem, `${problem.source}: ${problem.object}: ${problem.reason}`);
    }
    for (const [key, problem] of this.reportedProblems) {
      if (!current.has(key)) this.options.logger.info(problem, `resolved: ${problem.source}: ${problem.object}`);
    }
    this.reportedProblems = current;
  }
}
