// What a test run pinned, read through libbpf (koffi) in the test process: kept out of
// support.ts, which unit tests import too, so that they do not load libbpf.

import { pinnedMaps } from '../../src/pins/status.js';

export { pinnedLinks, type PinnedLink } from '../../src/pins/status.js';

/** The kernel's id of every map pinned under `pinDir`, by name: restarts and upgrades must keep them. */
export function pinnedMapIds(pinDir: string): Record<string, number> {
  return Object.fromEntries(pinnedMaps(pinDir).map(({ name, id }) => [name, id]));
}
