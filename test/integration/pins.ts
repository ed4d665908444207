// What a test run pinned, read through libbpf (koffi) in the test process: kept out of
// support.ts, which unit tests import too, so that they do not load libbpf.

import { readdirSync } from 'node:fs';
import { mapInfo } from '../../src/datapath/kernel-maps.js';
import { libbpf, libcCalls } from '../../src/datapath/libbpf.js';
import { pinLayout } from '../../src/datapath/loader.js';

export { pinnedLinks, type PinnedLink } from '../../src/datapath/links.js';

/** The kernel's id of every map pinned under `pinDir`, by name: restarts and upgrades must keep them. */
export function pinnedMapIds(pinDir: string): Record<string, number> {
  const directory = pinLayout(pinDir).maps;
  return Object.fromEntries(
    readdirSync(directory)
      .sort()
      .map((name) => {
        const fd = libbpf.objGet(`${directory}/${name}`);
        if (fd < 0) throw new Error(`cannot open the pinned map ${directory}/${name}`);
        try {
          return [name, mapInfo(fd).id];
        } finally {
          libcCalls.close(fd);
        }
      }),
  );
}
