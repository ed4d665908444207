// The agent's live objects per Service, part by part, each measured after a full collection: the
// V8 heap that the manifest source holds once started on the footprint's manifest (services.ts),
// the parsed Services and EndpointSlices alone (part of the former), the DesiredFrontends built
// from them, and the DatapathState that mirrors the maps once they are programmed. It isolates
// them from the rest of the agent, whose RSS moves with V8's heap sizing as much as with live
// bytes (docs/footprint.md). It asserts nothing.
//
//   node --expose-gc --optimize-for-size build/bench/footprint/model-bytes.js [--services 5000]

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { memoryMaps } from '../../src/datapath/memory-maps.js';
import { fullScope } from '../../src/datapath/planner.js';
import { reconcile } from '../../src/datapath/reconcile.js';
import { DatapathState } from '../../src/datapath/state.js';
import { DesiredFrontends } from '../../src/model/desired.js';
import { namespacedName, parseEndpointSlice, parseService } from '../../src/model/kubernetes.js';
import type { EndpointSlice, Service } from '../../src/model/types.js';
import { ManifestSource } from '../../src/sources/manifests.js';
import { writeServicesFile } from './services.js';

const { values } = parseArgs({ options: { services: { type: 'string', default: '5000' } } });
const count = Number(values.services);
const collect = globalThis.gc;
if (!collect) {
  console.error('run with node --expose-gc (and --optimize-for-size, as the agent runs)');
  process.exit(1);
}

const directory = await mkdtemp(join(tmpdir(), 'socklb-model-bytes-'));
let text: string;
try {
  await writeServicesFile(directory, count);
  text = await readFile(join(directory, 'services.json'), 'utf8');
  const bytes = await manifestSourceBytes(directory);
  console.log(
    `the manifest source, as it holds its first state (the validated objects and its indexes): ` +
      `${(bytes / 2 ** 20).toFixed(2)} MiB, ${Math.round(bytes / count)} bytes per Service`,
  );
} finally {
  await rm(directory, { recursive: true, force: true });
}

let heap = heapUsed();
const state = {
  services: new Map<string, Service>(),
  ignoredServices: new Set<string>(),
  slices: new Map<string, EndpointSlice>(),
  problems: [],
};
const parsed = parseAll(text, state);
heap = report(`${parsed.valid} of ${parsed.all} objects valid; the validated Services with their slices`, heap);

const desired = new DesiredFrontends({
  name: 'node-1',
  zone: undefined,
  addresses: [],
  allowedExternalIPCidrs: [],
  serviceProxyName: undefined,
});
desired.update(state);
heap = report(`DesiredFrontends (${desired.frontends.size} frontends)`, heap);

// The state as the first sync leaves it (sharing its keys and addresses with the desired frontends),
// measured as what dropping it frees, apart from the maps; then the same read back from the maps,
// as a restart finds it.
const { maps, withState, frontends, backends } = programFirstSync(desired);
heap = heapUsed();
console.log(
  `DatapathState after the first sync (${frontends} frontends, ${backends} backends): ` +
    `${((withState - heap) / 2 ** 20).toFixed(2)} MiB, ${Math.round((withState - heap) / count)} bytes per Service`,
);
const readBack = DatapathState.read(maps);
report(`DatapathState read back from the maps (${readBack.frontends.size} frontends)`, heap);

/** In a function of its own, so that its state is garbage once it returns (a top-level await would keep it). */
function programFirstSync(desired: DesiredFrontends) {
  const capacity = count * 4 + 16;
  const maps = memoryMaps({ frontends: capacity, backends: capacity, slots: capacity });
  const state = new DatapathState();
  reconcile(maps, state, desired.frontends, fullScope(state, desired.frontends));
  return { maps, withState: heapUsed(), frontends: state.frontends.size, backends: state.backends.size };
}

/** What a started manifest source holds, the model's objects included; stopped afterwards. */
async function manifestSourceBytes(path: string): Promise<number> {
  const source = new ManifestSource({ path });
  const before = heapUsed();
  await source.start(() => {});
  const bytes = heapUsed() - before;
  await source.stop();
  return bytes;
}

function heapUsed(): number {
  collect!();
  collect!();
  return process.memoryUsage().heapUsed;
}

function report(part: string, before: number): number {
  const after = heapUsed();
  const bytes = after - before;
  console.log(`${part}: ${(bytes / 2 ** 20).toFixed(2)} MiB, ${Math.round(bytes / count)} bytes per Service`);
  return after;
}

/** In a function of its own, so that the decoded JSON is garbage once it returns. */
function parseAll(
  json: string,
  into: { services: Map<string, Service>; slices: Map<string, EndpointSlice> },
): { valid: number; all: number } {
  const { items } = JSON.parse(json) as { items: { kind: string }[] };
  let valid = 0;
  for (const item of items) {
    if (item.kind === 'Service') {
      const result = parseService(item);
      if (result.kind === 'ok') into.services.set(namespacedName(result.value), result.value);
      valid += result.kind === 'ok' ? 1 : 0;
    } else {
      const result = parseEndpointSlice(item);
      if (result.kind === 'ok') into.slices.set(namespacedName(result.value), result.value);
      valid += result.kind === 'ok' ? 1 : 0;
    }
  }
  return { valid, all: items.length };
}
