// The agent's cleanups on in-memory maps: a change cleans up only the ids it
// touched, so one that could not finish makes the next sync clean everything.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { mapsByRole, type BpfMap } from '../../src/datapath/maps.js';
import { FaultyMap, InstantReaderFence, memoryMaps } from '../../src/datapath/memory-maps.js';
import { DatapathState } from '../../src/datapath/state.js';
import { backendText } from '../../src/model/keys.js';
import type { SourceState } from '../../src/model/source-state.js';
import { dnsState, ManualSource } from './agent-fixtures.js';
import { modelService, NODE } from './model-fixtures.js';

/** `state` with one more Service, web, which has no endpoints: a change that touches nothing of dns. */
function withWeb(state: SourceState): SourceState {
  return { ...state, services: new Map([...state.services, ['default/web', modelService({ name: 'web', clusterIPs: ['10.96.0.20'] })]]) };
}

describe('the agent cleaning up', () => {
  it('after a cleanup write failed, the next sync cleans up everything, not only what it touched', async () => {
    const raw = memoryMaps();
    let failNextBackendDelete = false;
    const failingDelete = (operation: 'update' | 'delete') => {
      if (operation !== 'delete' || !failNextBackendDelete) return false;
      failNextBackendDelete = false;
      return true;
    };
    const maps = mapsByRole((role): BpfMap => (role === 'backends' ? new FaultyMap(raw[role], failingDelete) : raw[role]));
    const backends = () => [...DatapathState.read(raw).backends.values()].map(backendText).sort();
    const source = new ManualSource(dnsState(['10.244.0.1', '10.244.0.2']));
    const agent = new Agent({ source, readers: new InstantReaderFence(), maps, logger: pino({ level: 'silent' }), node: NODE });
    await agent.start();

    failNextBackendDelete = true;
    source.push(dnsState(['10.244.0.1']));
    assert.deepEqual(backends(), ['10.244.0.1:5353', '10.244.0.2:5353'], 'the unused backend stayed: its delete failed');
    source.push(withWeb(dnsState(['10.244.0.1'])));
    assert.deepEqual(backends(), ['10.244.0.1:5353'], 'the next sync, about web alone, removed it');
    await agent.stop();
  });
});

describe('a source that cannot see its input', () => {
  const blind: SourceState = {
    services: new Map(),
    ignoredServices: new Set(),
    slices: new Map(),
    problems: [{ source: '/etc/socklb/manifests', object: 'path', reason: 'does not exist' }],
    // Anything may have changed, as far as this state says: taken in, it would empty the model.
    changes: undefined,
    complete: false,
  };

  it('leaves the datapath a previous run pinned as it is, until it can', async () => {
    const maps = memoryMaps();
    const logger = pino({ level: 'silent' });
    const frontends = () => [...DatapathState.read(maps).frontends.keys()];
    const backends = () => [...DatapathState.read(maps).backends.values()].map(backendText).sort();
    const previous = new Agent({
      source: new ManualSource(dnsState(['10.244.0.1', '10.244.0.2'])),
      readers: new InstantReaderFence(),
      maps,
      logger,
      node: NODE,
    });
    await previous.start();
    await previous.stop();

    const source = new ManualSource(blind);
    const restarted = new Agent({ source, readers: new InstantReaderFence(), maps, logger, node: NODE });
    await restarted.start();
    assert.deepEqual(frontends(), ['10.96.0.10:53/UDP'], 'a missing path at start is not "no Services"');
    assert.deepEqual(restarted.problems(), blind.problems);
    source.push(dnsState(['10.244.0.1']));
    assert.deepEqual(backends(), ['10.244.0.1:5353'], 'the first state it can see is synced, and prunes');
    source.push(blind);
    assert.deepEqual(frontends(), ['10.96.0.10:53/UDP'], 'nor is a path gone later');
    assert.deepEqual(restarted.problems(), blind.problems);
    await restarted.stop();
  });
});

describe('an agent that stopped', () => {
  it('takes no state in, as a first list that completes while it stops would deliver one', async () => {
    const maps = memoryMaps();
    const source = new ManualSource({ services: new Map(), ignoredServices: new Set(), slices: new Map(), problems: [], complete: false });
    const agent = new Agent({ source, readers: new InstantReaderFence(), maps, logger: pino({ level: 'silent' }), node: NODE });
    await agent.start();
    await agent.stop();
    source.push(dnsState(['10.244.0.1']));
    assert.equal(DatapathState.read(maps).frontends.size, 0);
  });
});

describe('a frontend the kernel keeps refusing', () => {
  it('is logged when it starts failing and when it gets in, not at every retry', async () => {
    const lines: { level: number; msg: string }[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) },
    );
    const maps = memoryMaps({ frontends: 1 });
    const dns = dnsState(['10.244.0.1']);
    const source = new ManualSource(withWeb(dns));
    const agent = new Agent({ source, readers: new InstantReaderFence(), maps, logger, node: NODE, retryDelayMs: 60_000 });
    await agent.start();
    const failures = () => lines.filter((line) => line.msg.startsWith('update frontend 10.96.0.20:80/TCP: '));
    assert.equal(agent.failures().length, 1, 'web does not fit beside dns');
    for (let i = 2; i <= 4; i++) source.push(withWeb(dnsState(Array.from({ length: i }, (_, j) => `10.244.0.${j + 1}`))));
    assert.deepEqual(
      failures().map((line) => line.level),
      [50],
      'four syncs retried it; one error',
    );
    source.push({ ...withWeb(dns), services: new Map([...withWeb(dns).services].filter(([key]) => key !== 'default/dns')) });
    assert.deepEqual(agent.failures(), []);
    assert.deepEqual(
      failures().map((line) => line.level),
      [50, 30],
      'and one line when it got in',
    );
    await agent.stop();
  });
});
