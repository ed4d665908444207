// One AF_VSOCK stream listener, for the guests of vhost-vsock (src/guest/hub.ts), and the CID of
// each peer it accepts.
//
// node:net can neither make an AF_VSOCK socket nor take one (libuv's uv_guess_handle knows only
// AF_UNIX and AF_INET*). So the socket is made and bound here through libc, and its fd handed to
// libuv as a pipe: libuv reads, writes and accepts on a pipe with plain read(), write() and
// accept4(), which work on any stream socket, and an accepted pipe handle becomes a net.Socket as
// a Unix one does. Node exposes that handle only as process.binding('pipe_wrap') (DEP0111, a
// documentation-only deprecation; emscripten's raw sockets use it too): it stays in this module.

import { Socket, type SocketConstructorOpts } from 'node:net';
import { errnoName } from '../errors.js';
import { lastErrno, libcCalls } from './libc.js';

const AF_VSOCK = 40;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
export const VMADDR_CID_ANY = 0xffffffff;
/** struct sockaddr_vm: u16 family, u16 reserved, u32 port, u32 cid, u8 zero[4]. */
const SOCKADDR_VM_SIZE = 16;
const BACKLOG = 64;

/** libuv's pipe handle as node:net uses it (src/node_pipe_wrap.cc, src/stream_wrap.cc). */
interface PipeHandle {
  readonly fd: number;
  open(fd: number): number;
  listen(backlog: number): number;
  close(callback?: () => void): void;
  onconnection: ((status: number, client: PipeHandle | undefined) => void) | null;
}

interface PipeWrapBinding {
  Pipe: new (type: number) => PipeHandle;
  constants: { SERVER: number };
}

const { Pipe, constants: pipeConstants } = (process as unknown as { binding(name: 'pipe_wrap'): PipeWrapBinding }).binding('pipe_wrap');

/** A system call's failure, as node:net reports one: `code` is the errno name. */
export class VsockError extends Error {
  constructor(
    readonly code: string,
    call: string,
  ) {
    super(`${call}: ${code}`);
    this.name = 'VsockError';
  }
}

export interface VsockHandlers {
  /** A connection accepted, from the guest of `peerCid` (what the kernel says, not the peer). */
  connection(peerCid: number, socket: Socket): void;
  /** accept() failed (out of file descriptors...): the listener goes on. */
  error(error: VsockError): void;
}

export interface VsockListener {
  readonly port: number;
  close(): Promise<void>;
}

/** Opens a listener: the kernel's, or a test's (test/unit/fake-vsock.ts). Throws a VsockError. */
export type ListenVsock = (port: number, handlers: VsockHandlers) => VsockListener;

/** Listens on VMADDR_CID_ANY:`port`; throws a VsockError (EAFNOSUPPORT: no vsock in this kernel, EADDRINUSE). */
export const listenVsock: ListenVsock = (port, handlers) => {
  const fd = libcCalls.socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new VsockError(errnoName(lastErrno()), 'socket(AF_VSOCK)');
  if (libcCalls.bind(fd, sockaddrVm(VMADDR_CID_ANY, port), SOCKADDR_VM_SIZE) < 0) {
    const error = new VsockError(errnoName(lastErrno()), `bind(port ${port})`);
    libcCalls.close(fd);
    throw error;
  }
  const listener = listenOnBoundSocket(fd, {
    connection: (clientFd, socket) => {
      const peerCid = peerCidOf(clientFd);
      if (peerCid === undefined) socket.destroy();
      else handlers.connection(peerCid, socket);
    },
    error: (error) => handlers.error(error),
  });
  return { port, close: () => listener.close() };
};

/**
 * Listens on `fd`, a bound stream socket of any family, through libuv; each connection accepted
 * comes as a net.Socket with its fd. Takes `fd` (closed on failure too); throws a VsockError.
 */
export function listenOnBoundSocket(
  fd: number,
  handlers: { connection(fd: number, socket: Socket): void; error(error: VsockError): void },
): { close(): Promise<void> } {
  const handle = new Pipe(pipeConstants.SERVER);
  const opened = handle.open(fd);
  if (opened < 0) {
    libcCalls.close(fd);
    throw new VsockError(errnoName(opened), 'open');
  }
  handle.onconnection = (accepted, client) => {
    if (accepted < 0 || !client) return handlers.error(new VsockError(errnoName(accepted), 'accept'));
    handlers.connection(client.fd, new Socket({ handle: client, readable: true, writable: true } as SocketConstructorOpts));
  };
  const listening = handle.listen(BACKLOG);
  if (listening < 0) {
    handle.close();
    throw new VsockError(errnoName(listening), 'listen');
  }
  return { close: () => new Promise<void>((resolve) => handle.close(resolve)) };
}

function sockaddrVm(cid: number, port: number): Buffer {
  const address = Buffer.alloc(SOCKADDR_VM_SIZE);
  address.writeUInt16LE(AF_VSOCK, 0);
  address.writeUInt32LE(port, 4);
  address.writeUInt32LE(cid, 8);
  return address;
}

/** The CID of the peer of `fd`; undefined when it is gone already (the connection is then dropped). */
function peerCidOf(fd: number): number | undefined {
  const address = Buffer.alloc(SOCKADDR_VM_SIZE);
  const length = [SOCKADDR_VM_SIZE];
  if (libcCalls.getpeername(fd, address, length) < 0 || address.readUInt16LE(0) !== AF_VSOCK) return undefined;
  return address.readUInt32LE(8);
}
