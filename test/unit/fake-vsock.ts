// A vsock listener without the kernel (this lab has no vsock transport to connect over): the hub
// opens and closes it as it would the kernel's, and a connection to pathFor(cid), a Unix socket,
// reaches the hub as a connection from a guest of that CID.

import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { VsockError, type ListenVsock, type VsockHandlers } from '../../src/kernel/vsock.js';

export class FakeVsock {
  /** The ports listened on, in order; one entry per opening. */
  readonly opened: number[] = [];
  closings = 0;
  /** The errno name the next openings fail with (EADDRINUSE, EAFNOSUPPORT), as the kernel's would. */
  failWith: string | undefined;
  #listening: { port: number; handlers: VsockHandlers } | undefined;
  readonly #servers = new Map<number, Server>();

  constructor(private readonly directory: string) {}

  get listening(): boolean {
    return this.#listening !== undefined;
  }

  readonly listen: ListenVsock = (port, handlers) => {
    if (this.failWith !== undefined) throw new VsockError(this.failWith, `bind(port ${port})`);
    if (this.#listening) throw new VsockError('EADDRINUSE', `bind(port ${port})`);
    this.#listening = { port, handlers };
    this.opened.push(port);
    return {
      port,
      close: () => {
        this.#listening = undefined;
        this.closings++;
        return Promise.resolve();
      },
    };
  };

  /** A path where a connection is, to the hub, one from the guest of `cid`; closed at once while nothing listens. */
  async pathFor(cid: number): Promise<string> {
    const path = join(this.directory, `vsock-cid-${cid}.sock`);
    if (this.#servers.has(cid)) return path;
    const server = createServer((socket) => {
      if (this.#listening) this.#listening.handlers.connection(cid, socket);
      else socket.destroy();
    });
    this.#servers.set(cid, server);
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return path;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#servers.values()].map((server) => new Promise((resolve) => server.close(resolve))));
    this.#servers.clear();
  }
}
