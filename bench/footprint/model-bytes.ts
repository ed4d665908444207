// The validated model's bytes per Service: how much V8 heap the parsed Services and
// EndpointSlices of the footprint's manifest (services.ts) hold, after a full collection. It
// isolates src/model/kubernetes.ts from the rest of the agent, whose RSS moves with V8's heap
// sizing as much as with live bytes (docs/footprint.md). It asserts nothing.
//
//   node --expose-gc --optimize-for-size build/bench/footprint/model-bytes.js [--services 5000]

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseEndpointSlice, parseService } from '../../src/model/kubernetes.js';
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
} finally {
  await rm(directory, { recursive: true, force: true });
}

collect();
const before = process.memoryUsage().heapUsed;
const parsed = parseAll(text);
collect();
const bytes = process.memoryUsage().heapUsed - before;
const valid = parsed.filter((result) => result.kind === 'ok').length;
console.log(`${valid} of ${parsed.length} objects valid; ${count} Services with their slices hold ${(bytes / 2 ** 20).toFixed(2)} MiB: ${Math.round(bytes / count)} bytes per Service`);

/** In a function of its own, so that the decoded JSON is garbage once it returns. */
function parseAll(json: string) {
  const { items } = JSON.parse(json) as { items: { kind: string }[] };
  return items.map((item) => (item.kind === 'Service' ? parseService(item) : parseEndpointSlice(item)));
}
