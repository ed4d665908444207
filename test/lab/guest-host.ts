// The host end of a guest stream, for tests: a Unix socket the applier connects to (as a
// Firecracker guest's vsock connect lands on the VMM's Unix socket), and each connection's guest
// messages decoded with src/guest/wire.ts. What to send is the test's business; the planner's
// operations become map writes with operationWrite (guest-writes.ts).

import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { FrameReader } from '../../src/guest/frame-reader.js';
import { decodeGuestMessage, type Ack, type GuestMessage, type Hello, type Loaded } from '../../src/guest/wire.js';

const DEFAULT_TIMEOUT_MS = 10_000;

/** One connection from an applier: it said HELLO, and answers what it is sent. */
export class GuestConnection {
  readonly #messages: GuestMessage[] = [];
  #waiting: (() => void) | undefined;
  #ended = false;
  #failure: Error | undefined;
  readonly closed: Promise<void>;

  constructor(readonly socket: Socket) {
    const reader = new FrameReader();
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of reader.push(chunk)) this.#messages.push(decodeGuestMessage(frame));
      } catch (error) {
        this.#failure = error as Error;
        socket.destroy();
      }
      this.#wake();
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.#ended = true;
        this.#wake();
        resolve();
      });
    });
    socket.on('error', () => {
      // 'close' follows and says it all: the applier went.
    });
  }

  /** The next guest message; rejects when the connection ends first or after `timeoutMs`. */
  async next(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<GuestMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = this.#messages.shift();
      if (message) return message;
      if (this.#failure) throw this.#failure;
      if (this.#ended) throw new Error('the guest closed the connection');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no guest message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async expect<K extends GuestMessage['kind']>(kind: K, timeoutMs?: number): Promise<Extract<GuestMessage, { kind: K }>> {
    const message = await this.next(timeoutMs);
    if (message.kind !== kind) throw new Error(`expected ${kind.toUpperCase()}, the guest sent ${JSON.stringify(message, bigints)}`);
    return message as Extract<GuestMessage, { kind: K }>;
  }

  send(frame: Uint8Array): void {
    this.socket.write(frame);
  }

  /** Sends a frame that the guest answers (OBJECT, BATCH, COMMIT) and returns the answer. */
  async request(frame: Uint8Array): Promise<Loaded | Ack> {
    this.send(frame);
    const answer = await this.next();
    if (answer.kind === 'hello') throw new Error('the guest said HELLO in the middle of a connection');
    return answer;
  }

  /** Whether the guest ended the connection. */
  get ended(): boolean {
    return this.#ended;
  }

  close(): void {
    this.socket.destroy();
  }

  #wake(): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.();
  }
}

/** A Unix socket that appliers connect to; each connection is handed out once it said HELLO. */
export class GuestHost {
  readonly #pending: Socket[] = [];
  readonly #sockets = new Set<Socket>();
  #waiting: (() => void) | undefined;

  private constructor(
    readonly path: string,
    private readonly server: Server,
  ) {
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      this.#pending.push(socket);
      const waiting = this.#waiting;
      this.#waiting = undefined;
      waiting?.();
    });
  }

  static async listen(path: string): Promise<GuestHost> {
    rmSync(path, { force: true });
    const server = createServer();
    server.listen(path);
    await once(server, 'listening');
    return new GuestHost(path, server);
  }

  /** The next connection and its HELLO. */
  async accept(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ connection: GuestConnection; hello: Hello }> {
    const deadline = Date.now() + timeoutMs;
    while (this.#pending.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no applier connected to ${this.path} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const connection = new GuestConnection(this.#pending.shift() as Socket);
    const hello = await connection.expect('hello', Math.max(1, deadline - Date.now()));
    return { connection, hello };
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    rmSync(this.path, { force: true });
  }
}

/** JSON.stringify replacer for messages, whose markers are bigints. */
export function bigints(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
