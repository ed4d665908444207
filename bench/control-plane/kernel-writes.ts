#!/usr/bin/env node
// The map writes of a first sync into real kernel maps, batched (bpf_map_update_batch, as the agent
// writes) against one bpf_map_update_elem per entry: the same reconcile of N new frontends with 2
// backends each, the two alternating, each on maps loaded afresh and removed after. Root, and a
// bpffs at /sys/fs/bpf; no program is attached.
//
//   node build/bench/control-plane/kernel-writes.js --services 10000 --rounds 5
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LoadedDatapath } from '../../src/datapath/loader.js';
import { DEFAULT_CAPACITIES, mapsByRole, updateEachInTurn, type DatapathMaps } from '../../src/datapath/maps.js';
import { reconcile } from '../../src/datapath/reconcile.js';
import { DatapathState } from '../../src/datapath/state.js';
import { frontendId } from '../../src/model/keys.js';
import { cleanupPins } from '../../src/pins/cleanup.js';
import type { DesiredFrontend } from '../../src/model/types.js';
import { percentile } from '../stats.js';

const { values } = parseArgs({ options: { services: { type: 'string', default: '10000' }, rounds: { type: 'string', default: '5' } } });
const services = Number(values.services);
const rounds = Number(values.rounds);
const bpfObject = fileURLToPath(new URL('../../bpf/socklb.bpf.o', import.meta.url));
const pinDirectory = `/sys/fs/bpf/socklb-kernel-writes-${process.pid}`;

const desired = new Map<string, DesiredFrontend>();
for (let i = 0; i < services; i++) {
  const [high, low] = [i >> 8, i & 255];
  const key = { address: `10.96.${high}.${low}`, port: 80, protocol: 'TCP' as const };
  const backends = [10, 11].map((network) => ({ address: `10.${network}.${high}.${low}`, port: 8080 }));
  desired.set(frontendId(key), {
    key,
    service: { namespace: 'default', name: `service-${i}`, portName: '' },
    backends,
    affinityTimeoutSeconds: 0,
  });
}

/** The same maps, each batch written as one bpf_map_update_elem per entry. */
function oneByOne(maps: DatapathMaps): DatapathMaps {
  return mapsByRole((role) => {
    const map = maps[role];
    return Object.assign(Object.create(map) as typeof map, {
      updateBatch: (entries: Parameters<typeof map.updateBatch>[0]) => updateEachInTurn(map, entries),
    });
  });
}

const capacity = Math.max(65536, services * 2);
const milliseconds: Record<'batched' | 'oneByOne', number[]> = { batched: [], oneByOne: [] };
for (let round = 0; round < rounds; round++) {
  for (const mode of round % 2 === 0 ? (['batched', 'oneByOne'] as const) : (['oneByOne', 'batched'] as const)) {
    const datapath = LoadedDatapath.load(bpfObject, pinDirectory, {
      ...DEFAULT_CAPACITIES,
      frontends: capacity,
      backends: capacity,
      slots: capacity,
    });
    try {
      const state = DatapathState.read(datapath.maps);
      const started = performance.now();
      const result = reconcile(mode === 'batched' ? datapath.maps : oneByOne(datapath.maps), state, desired, desired.keys());
      milliseconds[mode].push(performance.now() - started);
      if (result.failed.size > 0) throw new Error(`${result.failed.size} frontends failed: ${[...result.failed.values()][0]?.message}`);
    } finally {
      datapath.close();
      cleanupPins(pinDirectory);
    }
  }
}
for (const [mode, samples] of Object.entries(milliseconds)) {
  console.log(
    `${mode}: reconcile of ${services} new frontends p50 ${percentile(samples, 50).toFixed(0)} ms ` +
      `(${samples.map((sample) => sample.toFixed(0)).join(', ')})`,
  );
}
