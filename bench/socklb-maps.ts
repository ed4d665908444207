// socklb's pinned maps read from the benchmark itself: one frontend's backends by direct lookups
// (what a connect() would find, without reading every map as `socklb services` does), and the
// kernel's memory accounting of each map.
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { openPinnedMaps } from '../src/datapath/kernel-maps.js';
import { MAP_CODECS } from '../src/datapath/layout.js';
import type { DatapathMaps } from '../src/datapath/maps.js';
import { backendText } from '../src/model/keys.js';
import type { FrontendKey } from '../src/model/types.js';
import { pinLayout } from '../src/pins/layout.js';

const execFileAsync = promisify(execFile);

export class FrontendReader {
  private constructor(private readonly maps: DatapathMaps & { close(): void }) {}

  static open(pinDirectory: string): FrontendReader {
    return new FrontendReader(openPinnedMaps(pinDirectory));
  }

  /** The frontend's backends ("ip:port", sorted) as the programs see them; undefined without a frontend. */
  backends(key: FrontendKey): string[] | undefined {
    const value = this.maps.frontends.lookup(MAP_CODECS.frontends.key.encode(key));
    if (value === undefined) return undefined;
    const { serviceId, backendCount } = MAP_CODECS.frontends.value.decode(value);
    const backends: string[] = [];
    for (let slot = 0; slot < backendCount; slot++) {
      const slotValue = this.maps.slots.lookup(MAP_CODECS.slots.key.encode({ serviceId, slot }));
      const backend =
        slotValue && this.maps.backends.lookup(MAP_CODECS.backends.key.encode(MAP_CODECS.slots.value.decode(slotValue).backendId));
      backends.push(backend ? backendText(MAP_CODECS.backends.value.decode(backend)) : '<missing>');
    }
    return backends.sort();
  }

  close(): void {
    this.maps.close();
  }
}

/** bytes_memlock of every map pinned under the directory, by map name, as bpftool reports it. */
export async function pinnedMapMemory(pinDirectory: string): Promise<Record<string, number>> {
  const shapes = await pinnedMapShapes(pinDirectory);
  return Object.fromEntries(Object.entries(shapes).map(([name, shape]) => [name, shape.bytes]));
}

export interface MapShape {
  /** bytes_memlock: the kernel memory the map is charged for. */
  bytes: number;
  maxEntries: number;
}

/** Every map pinned under the directory, by map name, as bpftool shows it. */
export async function pinnedMapShapes(pinDirectory: string): Promise<Record<string, MapShape>> {
  const directory = pinLayout(pinDirectory).maps;
  const shapes: Record<string, MapShape> = {};
  for (const file of await readdir(directory)) {
    const { stdout } = await execFileAsync('bpftool', ['--json', 'map', 'show', 'pinned', path.join(directory, file)], { timeout: 10_000 });
    const map = JSON.parse(stdout) as { name: string; bytes_memlock: number; max_entries: number };
    shapes[map.name] = { bytes: map.bytes_memlock, maxEntries: map.max_entries };
  }
  return shapes;
}
