// The requests socklb makes to the Kubernetes API: LIST a collection and
// WATCH it, and ask a group version which resources it serves. Credentials, TLS and proxies come from @kubernetes/client-node's
// KubeConfig (kubeconfig files, exec plugins, the rotating in-cluster token);
// the requests themselves are plain node:https, so that both return the
// objects exactly as the server sent them (the generated typed client drops
// fields its models do not know) and so that every request can be aborted
// at any point, before its response too, which the library's Watch cannot.

import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

/** An object as the API serves it, before validation. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> | null };
  [field: string]: unknown;
}

export interface ObjectList {
  metadata?: { resourceVersion?: string };
  items?: KubeObject[] | null;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';

export type Query = Record<string, string | number | boolean | undefined>;

/** A failure the API server reported: an HTTP status, or a watch's ERROR event, with its Status. */
export class ApiError extends Error {
  constructor(
    /** HTTP status code (410: the resourceVersion is too old). */
    readonly code: number,
    /** Status.reason: Expired, Unauthorized, Forbidden... */
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The resourceVersion asked for is compacted away: list again. */
  get expired(): boolean {
    return this.code === 410;
  }
}

// Status bodies of failed requests are small; a huge one is not a Status.
const MAX_ERROR_BODY = 64 * 1024;
// A group version's discovery document lists its resources: a few KiB (a cut one is not JSON).
const MAX_DISCOVERY_BODY = 1024 * 1024;
// A LIST that receives nothing for this long (connecting included) is on a dead connection: fail it, so it is retried.
const LIST_IDLE_TIMEOUT_MS = 60_000;

export class ApiClient {
  constructor(private readonly config: KubeConfig) {}

  /** The API server's URL, for messages. */
  get server(): string {
    return this.config.getCurrentCluster()?.server ?? '(no cluster)';
  }

  async list(path: string, query: Query, signal: AbortSignal): Promise<ObjectList> {
    const response = await this.get(path, query, signal, LIST_IDLE_TIMEOUT_MS);
    const body = await readBody(response, Infinity);
    try {
      return JSON.parse(body) as ObjectList;
    } catch (error) {
      throw new Error(`GET ${path}: the response is not JSON (${(error as Error).message})`);
    }
  }

  /**
   * The resources a group version serves (its discovery document, /apis/GROUP/VERSION): their
   * plural names; undefined when the server does not serve the group version at all (404).
   */
  async resources(groupVersionPath: string, signal: AbortSignal): Promise<string[] | undefined> {
    let response: http.IncomingMessage;
    try {
      response = await this.get(groupVersionPath, {}, signal, LIST_IDLE_TIMEOUT_MS);
    } catch (error) {
      if (error instanceof ApiError && error.code === 404) return undefined;
      throw error;
    }
    const body = await readBody(response, MAX_DISCOVERY_BODY);
    const list = parseJSON(body) as { resources?: { name?: unknown }[] } | undefined;
    if (!Array.isArray(list?.resources)) throw new Error(`GET ${groupVersionPath}: the response is not an APIResourceList`);
    return list.resources.map((resource) => resource.name).filter((name): name is string => typeof name === 'string');
  }

  /**
   * Streams a watch: `onEvent` is called for each event as it arrives.
   * Resolves when the server ends the stream (its timeout); rejects when the
   * connection fails, when nothing arrived for `idleTimeoutMs`, or with an
   * ApiError for an ERROR event (the server ends the watch after one).
   */
  async watch(
    path: string,
    query: Query,
    onEvent: (type: WatchEventType, object: KubeObject) => void,
    signal: AbortSignal,
    idleTimeoutMs: number,
  ): Promise<void> {
    const response = await this.get(path, { ...query, watch: true }, signal, idleTimeoutMs);
    response.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      const fail = (error: Error) => {
        response.destroy();
        reject(error);
      };
      const line = (text: string) => {
        if (text.trim() === '') return;
        let event: { type?: string; object?: KubeObject };
        try {
          event = JSON.parse(text) as typeof event;
        } catch {
          return fail(new Error(`WATCH ${path}: an event is not JSON: ${text.slice(0, 80)}`));
        }
        const { type, object } = event;
        if (type === 'ERROR') return fail(statusError(object, 500, `WATCH ${path}`));
        if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED' && type !== 'BOOKMARK') return;
        if (typeof object !== 'object' || object === null) return fail(new Error(`WATCH ${path}: a ${type} event without an object`));
        onEvent(type, object);
      };
      response.on('data', (chunk: string) => {
        buffered += chunk;
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const text of lines) {
          if (response.destroyed) return;
          line(text);
        }
      });
      response.on('end', () => {
        line(buffered);
        resolve();
      });
      response.on('error', fail);
      // A connection reset mid-stream closes the response without 'end'.
      response.on('close', () => {
        if (!response.complete) reject(signal.aborted ? signal.reason : new Error(`WATCH ${path}: the connection closed mid-stream`));
      });
    });
  }

  /** A GET whose response has status 200; an ApiError otherwise. */
  private async get(path: string, query: Query, signal: AbortSignal, idleTimeoutMs: number): Promise<http.IncomingMessage> {
    const cluster = this.config.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    // The server URL may carry a path prefix (an API proxy's): keep it.
    const url = new URL(cluster.server.replace(/\/+$/, '') + path);
    for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value));
    const options: https.RequestOptions = { headers: { Accept: 'application/json' } };
    await this.config.applyToHTTPSOptions(options);
    signal.throwIfAborted();
    const transport = url.protocol === 'http:' ? http : https;
    return new Promise((resolve, reject) => {
      const request = transport.get(url, { ...options, signal }, (response) => {
        if (response.statusCode === 200) return resolve(response);
        readBody(response, MAX_ERROR_BODY).then(
          (body) => reject(statusError(parseJSON(body), response.statusCode ?? 500, `GET ${url.pathname}`)),
          reject,
        );
      });
      request.on('error', reject);
      // TCP keepalive finds a dead peer of an idle watch; the idle timeout bounds how long that may take.
      request.on('socket', (socket) => socket.setKeepAlive(true, 30_000));
      request.setTimeout(idleTimeoutMs, () => request.destroy(new Error(`GET ${url.pathname}: nothing received for ${idleTimeoutMs} ms`)));
    });
  }
}

/** An ApiError from a Status object, or from the HTTP status alone when the body is not one. */
function statusError(status: unknown, fallbackCode: number, request: string): ApiError {
  const fields = typeof status === 'object' && status !== null ? (status as Record<string, unknown>) : {};
  const code = typeof fields.code === 'number' ? fields.code : fallbackCode;
  const reason = typeof fields.reason === 'string' ? fields.reason : (http.STATUS_CODES[code] ?? 'Unknown');
  const message = typeof fields.message === 'string' ? fields.message : reason;
  return new ApiError(code, reason, `${request}: ${code} ${reason}: ${message}`);
}

function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function readBody(response: http.IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    response.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    response.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    response.on('error', reject);
    response.on('close', () => {
      if (!response.complete) reject(new Error('the connection closed before the response was complete'));
    });
  });
}
