// A timing tap between one guest's applier and the agent: the applier connects to the tap's Unix
// socket, the tap connects on to the socket the agent listens on for that guest and relays every
// byte both ways, unchanged, and reads the applier's frames as they pass to note when each ACK
// came. An ACK means the applier wrote the batch to its maps (docs/guest-protocol.md), so the time
// from a change to its ACK is the time for the change to reach the guest's maps. The agent cannot
// tell the tap from a VMM's socket; the tap costs each frame one more hop through a Unix socket
// (and this process's event loop).

import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { FrameReader } from '../../src/guest/frame-reader.js';
import { decodeGuestMessage } from '../../src/guest/wire.js';

export interface TappedAck {
  seq: bigint;
  error: number;
  /** performance.now() when it passed the tap. */
  at: number;
}

export class GuestTap {
  readonly acks: TappedAck[] = [];
  readonly #sockets = new Set<Socket>();
  #waiters: (() => void)[] = [];

  private constructor(
    readonly path: string,
    private readonly server: Server,
    agentPath: string,
  ) {
    server.on('connection', (applier) => {
      const agent = connect(agentPath);
      for (const socket of [applier, agent]) {
        this.#sockets.add(socket);
        socket.once('close', () => {
          this.#sockets.delete(socket);
          applier.destroy();
          agent.destroy();
        });
        // 'close' follows an error and ends both sides: the applier reconnects, as from a VMM.
        socket.on('error', () => {});
      }
      agent.pipe(applier);
      const reader = new FrameReader();
      applier.on('data', (chunk: Buffer) => {
        agent.write(chunk);
        const at = performance.now();
        try {
          for (const frame of reader.push(chunk)) {
            const message = decodeGuestMessage(frame);
            if (message.kind === 'ack') this.acks.push({ seq: message.seq, error: message.error, at });
          }
        } catch {
          // Not ours to judge: the agent reads the same bytes and closes the connection.
        }
        const waiters = this.#waiters;
        this.#waiters = [];
        for (const wake of waiters) wake();
      });
    });
  }

  /** Listens on `path` for the applier; relays to `agentPath`, where the agent listens for the guest. */
  static async listen(path: string, agentPath: string): Promise<GuestTap> {
    rmSync(path, { force: true });
    const server = createServer();
    server.listen(path);
    await once(server, 'listening');
    return new GuestTap(path, server, agentPath);
  }

  /** The highest sequence number ACKed so far; 0 before any ACK. */
  get ackedSeq(): bigint {
    return this.acks.reduce((highest, ack) => (ack.seq > highest ? ack.seq : highest), 0n);
  }

  /** The first ACK of a sequence number above `seq`; rejects after `timeoutMs`. */
  async ackAfter(seq: bigint, timeoutMs: number): Promise<TappedAck> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const ack = this.acks.find((candidate) => candidate.seq > seq);
      if (ack) return ack;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.path}: no ACK after ${seq} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    rmSync(this.path, { force: true });
  }
}
