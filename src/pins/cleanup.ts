// `socklb cleanup`: every pinned link detached, every pin and the pin directory removed.

import { existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { bypassDirectory, guestsDirectory, pinLayout } from './layout.js';
import { detachDirectory } from './links.js';

/** Detaches every pinned link and removes every pin under `pinDirectory`. */
export function cleanupPins(pinDirectory: string): { links: number; maps: number } {
  const layout = pinLayout(pinDirectory);
  let links = 0;
  let maps = 0;
  if (existsSync(layout.links)) {
    for (const name of readdirSync(layout.links)) links += detachDirectory(`${layout.links}/${name}`);
  }
  if (existsSync(layout.maps)) {
    for (const name of readdirSync(layout.maps)) {
      rmSync(`${layout.maps}/${name}`);
      maps++;
    }
  }
  // A guest's record holds nothing of the node's kernel: its maps and programs are the guest's own.
  rmSync(guestsDirectory(pinDirectory), { recursive: true, force: true });
  rmSync(bypassDirectory(pinDirectory), { recursive: true, force: true });
  for (const directory of [layout.links, layout.maps, pinDirectory]) {
    if (existsSync(directory)) rmdirSync(directory);
  }
  return { links, maps };
}
