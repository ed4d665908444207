// List and watch one collection, for ever, as client-go's Reflector does:
//
//   (an optional resource) discovery          -> not served: store.replace([]), listed, done
//   LIST                                       -> store.replace(all items)
//   WATCH from the list's resourceVersion      -> store.upsert / store.remove per event
//   the watch ends (the server's timeout)      -> WATCH again from the last resourceVersion seen
//   410 Gone (history compacted away)          -> LIST again, at once (with backoff if it repeats)
//   any other failure                          -> wait (exponential backoff, jittered), then:
//       a connection that failed or dropped    -> WATCH again from the last resourceVersion seen
//       an error the server reported           -> LIST again
//
// @kubernetes/client-node 1.4's ListWatch (makeInformer) is not used: it stops
// for good at the first error that is not a 410 (kubernetes-client/javascript
// #2385; retries came in 2.x, #3034, which needs Node 22); informers restarted
// from their error callback have flooded API servers with watches (#1933); a
// stop() during its LIST still opens a WATCH afterwards (cache.js checks
// `stopped` only before listing); its Watch builds a 30 s timeout signal and
// then overwrites it, so a half-open connection stalls it for good (#364,
// #596, #2432); and it hands over typed LIST items but raw WATCH objects.
// The store is replaced only with a complete list, so no consumer ever sees
// a state missing objects while a relist is under way.

import type { Logger } from '../log.js';
import { ApiError, type ApiClient, type KubeObject, type Query, type WatchEventType } from './api-client.js';

/** A collection to list and watch. */
export interface Resource {
  /** The collection's path over all namespaces: /api/v1/services. */
  path: string;
  apiVersion: string;
  kind: string;
  /**
   * A resource that not every server has (one newer than the oldest Kubernetes supported): asked
   * for once in its group version's discovery document before the first list; a server that does
   * not serve it lists as empty, and is not asked again.
   */
  optional?: boolean;
}

/** Where a Reflector puts what it learns. */
export interface ReflectorStore {
  /** Every object that exists now, replacing all that was held before. */
  replace(objects: KubeObject[]): void;
  upsert(object: KubeObject): void;
  remove(object: KubeObject): void;
}

export interface RetryOptions {
  /** The first wait after a failure; it doubles with every further one. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Jitter source, for tests: each wait is stretched by up to half, by random() * 0.5. */
  random?: () => number;
}

export interface ReflectorOptions {
  client: ApiClient;
  resource: Resource;
  labelSelector?: string;
  fieldSelector?: string;
  store: ReflectorStore;
  logger: Logger;
  retry?: RetryOptions;
  /**
   * How long the server should keep one watch open. Default: 5 to 10 minutes
   * at random, as client-go, so that watches of many agents do not all end together.
   */
  watchTimeoutSeconds?: number;
}

const DEFAULT_INITIAL_DELAY_MS = 500;
const DEFAULT_MAX_DELAY_MS = 30_000;
// A watch the server ends this quickly without sending anything is a failure in disguise (client-go agrees).
const SHORT_WATCH_MS = 1000;
// A watch silent for its timeout and this much longer is on a dead connection.
const IDLE_GRACE_MS = 30_000;
// A watch that ran this long was healthy, however it ended: the next failure starts the backoff afresh.
const HEALTHY_WATCH_MS = 10_000;

export class Reflector {
  /** Resolves once the first complete list is in the store (never, if stopped before). */
  readonly listed: Promise<void>;
  private markListed!: () => void;
  private readonly abort = new AbortController();
  private resourceVersion = '';
  private needsList = true;
  private hasListed = false;
  /** An optional resource was found served. */
  private discovered = false;
  private failures = 0;
  /** 410s with no event in between: a server that answers every watch so must not be listed in a loop. */
  private expiredInARow = 0;
  private sleepTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly options: ReflectorOptions) {
    this.listed = new Promise((resolve) => (this.markListed = resolve));
  }

  start(): void {
    this.running ??= this.run();
  }

  /** Ends the request under way and any wait; resolves once the loop has stopped. */
  async stop(): Promise<void> {
    this.abort.abort();
    clearTimeout(this.sleepTimer);
    this.wake?.();
    await this.running;
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        if (this.options.resource.optional && !this.discovered && !(await this.served())) return;
        if (this.needsList) await this.list();
        await this.watch();
      } catch (error) {
        if (this.stopped) return;
        await this.recover(error);
      }
    }
  }

  /** Whether the server serves the resource; if not, the store is empty for good, and listed. */
  private async served(): Promise<boolean> {
    const { client, resource, store, logger } = this.options;
    const groupVersion = resource.path.slice(0, resource.path.lastIndexOf('/'));
    const name = resource.path.slice(resource.path.lastIndexOf('/') + 1);
    const resources = await client.resources(groupVersion, this.abort.signal);
    if (this.stopped) return false;
    if (resources?.includes(name)) {
      this.discovered = true;
      return true;
    }
    logger.info(
      { resource: resource.path, server: client.server },
      `the API server does not serve ${resource.kind} (${resource.apiVersion})`,
    );
    store.replace([]);
    this.hasListed = true;
    this.markListed();
    return false;
  }

  private async list(): Promise<void> {
    const { client, resource, store } = this.options;
    const list = await client.list(resource.path, { ...this.selectors(), resourceVersion: this.listResourceVersion() }, this.abort.signal);
    if (this.stopped) return;
    // LIST items carry no apiVersion and kind (only the list does); validation wants them.
    store.replace((list.items ?? []).map((item) => this.typed(item)));
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    if (this.failures > 0) this.options.logger.info({ resource: resource.path }, `LIST ${resource.path} succeeded again`);
    this.needsList = false;
    this.hasListed = true;
    this.failures = 0;
    this.markListed();
  }

  /**
   * The first list takes any recent state ("0": served from the API server's
   * cache, cheap when every node starts at once); a relist asks for the
   * latest ("": a consistent read), so that the store never goes back in time.
   */
  private listResourceVersion(): string {
    return this.hasListed ? '' : '0';
  }

  private async watch(): Promise<void> {
    const { client, resource, store } = this.options;
    const timeoutSeconds = this.options.watchTimeoutSeconds ?? Math.round(300 * (1 + Math.random()));
    const started = performance.now();
    let events = 0;
    const onEvent = (type: WatchEventType, object: KubeObject) => {
      if (this.stopped) return;
      events++;
      this.failures = 0;
      this.expiredInARow = 0;
      if (type === 'ADDED' || type === 'MODIFIED') store.upsert(this.typed(object));
      else if (type === 'DELETED') store.remove(this.typed(object));
      // BOOKMARK: nothing changed, but the version moved on, so that a quiet collection can resume after compaction.
      this.resourceVersion = object.metadata?.resourceVersion ?? this.resourceVersion;
    };
    const query: Query = { ...this.selectors(), resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds };
    try {
      await client.watch(resource.path, query, onEvent, this.abort.signal, timeoutSeconds * 1000 + IDLE_GRACE_MS);
    } finally {
      if (performance.now() - started >= HEALTHY_WATCH_MS) this.failures = this.expiredInARow = 0;
    }
    if (events === 0 && performance.now() - started < SHORT_WATCH_MS) {
      throw new Error(`WATCH ${resource.path}: the server ended the watch at once without an event`);
    }
  }

  /** After a failure: relist at once on 410, else wait and watch again (list again after an error from the server). */
  private async recover(error: unknown): Promise<void> {
    const { resource, logger } = this.options;
    const failed = this.needsList ? 'LIST' : 'WATCH';
    if (error instanceof ApiError) this.needsList = true;
    if (error instanceof ApiError && error.expired && this.expiredInARow++ === 0) {
      logger.debug(
        { resource: resource.path, resourceVersion: this.resourceVersion },
        `${resource.path}: history compacted past our version; listing again`,
      );
      return;
    }
    const delayMs = Math.round(this.nextDelay());
    const message = error instanceof Error ? error.message : String(error);
    logger.warn(
      { resource: resource.path, server: this.options.client.server, failures: this.failures, retryInMs: delayMs, error: message },
      `${failed} ${resource.path} failed (${message}); trying again in ${delayMs} ms with a ${this.needsList ? 'LIST' : 'WATCH'}`,
    );
    await this.sleep(delayMs);
  }

  private nextDelay(): number {
    const { initialDelayMs = DEFAULT_INITIAL_DELAY_MS, maxDelayMs = DEFAULT_MAX_DELAY_MS, random = Math.random } = this.options.retry ?? {};
    const delay = Math.min(maxDelayMs, initialDelayMs * 2 ** this.failures);
    this.failures++;
    return delay * (1 + random() * 0.5);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
  }

  private selectors(): Query {
    return { labelSelector: this.options.labelSelector, fieldSelector: this.options.fieldSelector };
  }

  private typed(object: KubeObject): KubeObject {
    const { apiVersion, kind } = this.options.resource;
    return object.apiVersion === apiVersion && object.kind === kind ? object : { ...object, apiVersion, kind };
  }
}
