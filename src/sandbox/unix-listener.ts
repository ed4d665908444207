// Listening on a Unix socket path, for the control socket and for the guests' sockets (unix:,
// serial:): the socket file is 0600 from the start, and only a socket file nobody serves is ever
// replaced. A guest's socket is then handed to the owner of its directory without a call that
// follows the path, which that owner controls.

import { chmodSync, chownSync, closeSync, constants, fstatSync, lstatSync, openSync, unlinkSync, type Stats } from 'node:fs';
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

/** Linux's O_PATH, its generic value (x86-64, arm64); node:fs has no constant for it. */
const O_PATH = 0o10000000;

/**
 * Gives the socket file that this process just bound at `path` to `uid`:`gid`, 0600. The owner
 * of the directory can replace that name at any moment (with a symbolic link or a hard link to
 * /etc/shadow), so nothing here resolves it twice: the file is opened once without following a
 * link (O_PATH | O_NOFOLLOW), checked to be a socket of this process's user with one link, as
 * bind(2) made it, and changed through that descriptor (/proc/self/fd), which names that inode
 * whatever the path holds by then. Throws before changing anything when the check fails.
 */
export function handOverSocket(path: string, uid: number, gid: number): void {
  const descriptor = openSync(path, O_PATH | constants.O_NOFOLLOW);
  try {
    const status = fstatSync(descriptor);
    const found = status.isSymbolicLink() ? 'a symbolic link' : !status.isSocket() ? 'a file that is not a socket' : undefined;
    if (found) throw new Error(`it was replaced by ${found} after the bind`);
    if (status.uid !== process.geteuid?.() || status.nlink !== 1)
      throw new Error(`it was replaced by another socket (uid ${status.uid}, ${status.nlink} links) after the bind`);
    const inode = `/proc/self/fd/${descriptor}`;
    // The umask made it 0600 unless the directory has a default ACL, which bind(2) applies instead.
    // Before the chown: once it is another user's, only CAP_FOWNER could, which the unit lacks.
    chmodSync(inode, 0o600);
    chownSync(inode, uid, gid);
  } finally {
    closeSync(descriptor);
  }
}
