// The addresses whose unserved calls are refused (kube-proxy's cluster-ips-check chain): which
// cluster IPs and service CIDRs the model asks for, and how the agent keeps the maps in step.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { Agent, type SyncResult } from '../../src/agent/agent.js';
import { mapsByRole, type BpfMap, type DatapathMaps, type MapEntry } from '../../src/datapath/maps.js';
import { FaultyMap, InstantReaderFence, memoryMaps } from '../../src/datapath/memory-maps.js';
import { DatapathState } from '../../src/datapath/state.js';
import { DesiredServiceAddresses } from '../../src/model/service-addresses.js';
import type { SourceState } from '../../src/model/source-state.js';
import type { Service } from '../../src/model/types.js';
import { dnsState, ManualSource } from './agent-fixtures.js';
import { modelService, NODE } from './model-fixtures.js';

function state(services: Service[], serviceCIDRs?: string[], changedServices?: string[]): SourceState {
  return {
    services: new Map(services.map((service) => [`${service.namespace}/${service.name}`, service])),
    ignoredServices: new Set(),
    slices: new Map(),
    problems: [],
    ...(serviceCIDRs === undefined ? {} : { serviceCIDRs: new Set(serviceCIDRs) }),
    ...(changedServices === undefined ? {} : { changes: { services: new Set(changedServices), slices: new Set() } }),
  };
}

const sorted = (values: Iterable<string>) => [...values].sort();

describe('DesiredServiceAddresses', () => {
  it('takes the cluster IPs of every family of the Services this proxy serves', () => {
    const addresses = new DesiredServiceAddresses(NODE, []);
    const changes = addresses.update(
      state([
        modelService({ name: 'web', clusterIPs: ['10.96.0.10', 'fd00:96::10'] }),
        modelService({ name: 'other', clusterIPs: ['10.96.0.11'], serviceProxyName: 'another-proxy' }),
        modelService({ name: 'headless-label', clusterIPs: ['10.96.0.12'], headlessLabel: true }),
        modelService({ name: 'sctp-only', clusterIPs: ['10.96.0.13'], ports: [], sctpPorts: [9999] }),
      ]),
    );
    // A Service left to another proxy is not known here, as kube-proxy's informer never sees it; an
    // SCTP-only Service is, as kube-proxy rejects TCP and UDP to it.
    assert.deepEqual(sorted(addresses.clusterIPs), ['10.96.0.10', '10.96.0.13', 'fd00:96::10']);
    assert.deepEqual(sorted(changes.clusterIPs), ['10.96.0.10', '10.96.0.13', 'fd00:96::10']);
  });

  it('names only the cluster IPs that came or went, and keeps one that another Service still has', () => {
    const addresses = new DesiredServiceAddresses(NODE, []);
    const a = modelService({ name: 'a', clusterIPs: ['10.96.0.1'] });
    const b = modelService({ name: 'b', clusterIPs: ['10.96.0.2'] });
    const twin = modelService({ name: 'twin', clusterIPs: ['10.96.0.1'] });
    addresses.update(state([a, b, twin]));
    assert.deepEqual(sorted(addresses.update(state([b, twin], undefined, ['default/a'])).clusterIPs), []);
    assert.deepEqual(sorted(addresses.clusterIPs), ['10.96.0.1', '10.96.0.2']);
    const moved = modelService({ name: 'b', clusterIPs: ['10.96.0.3'] });
    assert.deepEqual(sorted(addresses.update(state([moved, twin], undefined, ['default/b'])).clusterIPs), ['10.96.0.2', '10.96.0.3']);
    assert.deepEqual(sorted(addresses.update(state([moved])).clusterIPs), ['10.96.0.1']);
    assert.deepEqual(sorted(addresses.clusterIPs), ['10.96.0.3']);
  });

  it('unions the flag ranges with the source ones, and names the ranges that came or went', () => {
    const addresses = new DesiredServiceAddresses(NODE, ['10.96.0.0/12']);
    assert.deepEqual(sorted(addresses.serviceRanges), ['10.96.0.0/12']);
    assert.deepEqual(sorted(addresses.update(state([])).serviceRanges), []);
    const changes = addresses.update(state([], ['10.96.0.0/12', 'fd00:96::/112']));
    assert.deepEqual(sorted(changes.serviceRanges), ['fd00:96::/112']);
    assert.deepEqual(sorted(addresses.serviceRanges), ['10.96.0.0/12', 'fd00:96::/112']);
    assert.deepEqual(sorted(addresses.update(state([], ['10.100.0.0/16'])).serviceRanges), ['10.100.0.0/16', 'fd00:96::/112']);
    assert.deepEqual(sorted(addresses.serviceRanges), ['10.100.0.0/16', '10.96.0.0/12']);
  });

  it('updated incrementally, holds what a fresh one computes from the last state', () => {
    const services = fc.array(
      fc.record({ name: fc.constantFrom('a', 'b', 'c', 'd'), ips: fc.subarray(['10.96.0.1', '10.96.0.2', 'fd00::1', 'fd00::2']) }),
      { maxLength: 4 },
    );
    fc.assert(
      fc.property(fc.array(services, { minLength: 1, maxLength: 6 }), (steps) => {
        const incremental = new DesiredServiceAddresses(NODE, []);
        let held = new Set<string>();
        let last: SourceState = state([]);
        for (const step of steps) {
          last = state(step.map(({ name, ips }) => modelService({ name, clusterIPs: ips })));
          const { clusterIPs } = incremental.update(last);
          const now = new Set(incremental.clusterIPs);
          const cameOrWent = [...now, ...held].filter((ip) => now.has(ip) !== held.has(ip));
          assert.deepEqual(sorted(clusterIPs), sorted(new Set(cameOrWent)), 'changes name exactly what came or went');
          held = now;
        }
        const fresh = new DesiredServiceAddresses(NODE, []);
        fresh.update(last);
        assert.deepEqual(sorted(incremental.clusterIPs), sorted(fresh.clusterIPs));
      }),
    );
  });
});

describe('the agent and the service addresses', () => {
  const logger = pino({ level: 'silent' });
  const readBack = (maps: DatapathMaps) => {
    const state = DatapathState.read(maps);
    return { clusterIPs: sorted(state.clusterIPs), serviceRanges: sorted(state.serviceRanges) };
  };

  it('writes the cluster IPs and the ranges of the flag and the source, after the frontends, and follows their changes', async () => {
    const raw = memoryMaps();
    const writes: string[] = [];
    const maps = mapsByRole((role): BpfMap => {
      const map = raw[role];
      return Object.assign(Object.create(map) as BpfMap, {
        update: (key: Buffer, value: Buffer) => (writes.push(role), map.update(key, value)),
        updateBatch: (entries: readonly MapEntry[]) => (writes.push(role), map.updateBatch(entries)),
      });
    });
    const source = new ManualSource({ ...dnsState(['10.244.0.1']), serviceCIDRs: new Set(['fd00:96::/112']) });
    const agent = new Agent({ source, maps, readers: new InstantReaderFence(), logger, node: NODE, serviceRanges: ['10.96.0.0/12'] });
    await agent.start();
    assert.deepEqual(readBack(raw), { clusterIPs: ['10.96.0.10'], serviceRanges: ['10.96.0.0/12', 'fd00:96::/112'] });
    assert.deepEqual(writes.slice(-3), ['clusterIPs', 'serviceRanges', 'serviceRanges'], 'the addresses come after every frontend write');
    source.push({ ...dnsState(['10.244.0.1']), services: new Map() });
    assert.deepEqual(readBack(raw), { clusterIPs: [], serviceRanges: ['10.96.0.0/12'] });
    await agent.stop();
  });

  it('a restarted agent adopts what the maps hold and prunes it only from the first state', async () => {
    const maps = memoryMaps();
    const previous = new Agent({
      source: new ManualSource(dnsState([])),
      maps,
      readers: new InstantReaderFence(),
      logger,
      node: NODE,
      serviceRanges: ['10.96.0.0/12'],
    });
    await previous.start();
    await previous.stop();
    const restarted = new Agent({
      source: new ManualSource({ ...dnsState([]), services: new Map() }),
      maps,
      readers: new InstantReaderFence(),
      logger,
      node: NODE,
    });
    assert.deepEqual(sorted(restarted.datapath.clusterIPs), ['10.96.0.10']);
    assert.deepEqual(sorted(restarted.datapath.serviceRanges), ['10.96.0.0/12']);
    await restarted.start();
    assert.deepEqual(readBack(maps), { clusterIPs: [], serviceRanges: [] });
    await restarted.stop();
  });

  it('retries a cluster IP the kernel refused, and says so in the sync result and its failures', async () => {
    const raw = memoryMaps();
    let refuse = true;
    const maps = { ...raw, clusterIPs: new FaultyMap(raw.clusterIPs, () => refuse) };
    const agent = new Agent({
      source: new ManualSource(dnsState([])),
      maps,
      readers: new InstantReaderFence(),
      logger,
      node: NODE,
      retryDelayMs: 1,
    });
    const results: SyncResult[] = [];
    agent.onSync((result) => results.push(result));
    await agent.start();
    assert.deepEqual(
      results.map((result) => result.failedAddresses),
      [1],
    );
    assert.deepEqual(
      agent.addressFailures().map(({ address }) => address),
      ['cluster IP 10.96.0.10'],
      'for socklb status',
    );
    refuse = false;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(readBack(raw).clusterIPs, ['10.96.0.10']);
    assert.equal(results.at(-1)?.failedAddresses, 0);
    assert.deepEqual(agent.addressFailures(), []);
    await agent.stop();
  });
});
