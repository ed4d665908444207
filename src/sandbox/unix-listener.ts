// Listening on a Unix socket path, for the control socket and for the guests' sockets (unix:,
// serial:): the socket file is 0600 from the start, and only a socket file nobody serves is ever
// replaced.

import { lstatSync, unlinkSync, type Stats } from 'node:fs';
import { createConnection, type Server } from 'node:net';

/** Why a path was not listened on; the caller turns it into its own sentence. */
export type UnixPathRefusal =
  | { reason: 'not a socket' }
  /** `probe`: 'accepted', or the errno of the connect that was not refused (ECONNREFUSED: nothing serves it). */
  | { reason: 'in use'; probe: string };

/**
 * Listens on `path`. A socket file left by a process that died (a killed agent) is replaced; a
 * socket something still serves, or a file of another kind, is left alone and refused with the
 * error `refuse` makes. Other failures (EACCES, ENOENT) are thrown as Node reports them.
 */
export async function listenOnUnixPath(server: Server, path: string, refuse: (refusal: UnixPathRefusal) => Error): Promise<void> {
  // Probed before binding: a bind that fails would be reported to the server's error listeners.
  await removeDeadSocket(path, refuse);
  // Lost to a process that bound the path meanwhile (an agent started at the same time): the path is its.
  if (!(await bind(server, path))) throw refuse({ reason: 'in use', probe: 'accepted' });
}

/** Resolves false when the path is taken (EADDRINUSE). */
function bind(server: Server, path: string): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const fail = (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' ? resolve(false) : reject(error));
    server.once('error', fail);
    // The socket file is created 0600 from the start: no moment when someone else could connect.
    // Node binds within listen(), so the umask is restored before anything else runs.
    const umask = process.umask(0o177);
    try {
      server.listen(path, () => {
        server.off('error', fail);
        resolve(true);
      });
    } finally {
      process.umask(umask);
    }
  });
}

/**
 * Removes the socket file at `path` if connecting to it is refused: nothing serves it. A socket
 * that accepts, or that cannot be probed (EACCES: the agent without CAP_DAC_OVERRIDE, another
 * user's socket; EAGAIN: a live server's full backlog), is not taken for dead. Only the file
 * probed is removed: one made meanwhile by a process started at the same time stays.
 */
async function removeDeadSocket(path: string, refuse: (refusal: UnixPathRefusal) => Error): Promise<void> {
  const probed = lstatOrUndefined(path);
  if (probed === undefined) return;
  if (!probed.isSocket()) throw refuse({ reason: 'not a socket' });
  const probe = await new Promise<string>((resolve) => {
    const connection = createConnection(path);
    connection.once('connect', () => {
      connection.destroy();
      resolve('accepted');
    });
    connection.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
  if (probe === 'ENOENT') return;
  if (probe !== 'ECONNREFUSED') throw refuse({ reason: 'in use', probe });
  const now = lstatOrUndefined(path);
  if (now?.ino === probed.ino && now.dev === probed.dev) unlinkSync(path);
}

function lstatOrUndefined(path: string): Stats | undefined {
  return lstatSync(path, { throwIfNoEntry: false });
}
