// Socket files as a killed process leaves them, for the tests of listening on a Unix path.

import { rename } from 'node:fs/promises';
import { createServer } from 'node:net';

/** Leaves at `path` the socket file of a server that is gone: connecting to it is refused. */
export async function leaveDeadSocket(path: string): Promise<void> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(`${path}.live`, resolve));
  // Node removes the file of a server it closes, but only under the name it was made with.
  await rename(`${path}.live`, path);
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
