// The agent and the stuck-socket policy, on in-memory maps: the handler hears of exactly the
// (frontend, backend) pairs a sync took out, once the maps no longer hand them out.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import type { StalePair } from '../../src/datapath/layout.js';
import { InstantReaderFence, memoryMaps } from '../../src/datapath/memory-maps.js';
import { DatapathState } from '../../src/datapath/state.js';
import type { StuckSocketHandler } from '../../src/datapath/stuck-sockets.js';
import { backendText, frontendId } from '../../src/model/keys.js';
import { dnsState, ManualSource } from './agent-fixtures.js';
import { NODE } from './model-fixtures.js';

describe('the agent and stuck sockets', () => {
  it('hands the handler the pairs a sync took out, after the maps stopped handing them out', async () => {
    const maps = memoryMaps();
    const calls: { pairs: string[]; servedThen: string[] }[] = [];
    const handler: StuckSocketHandler = {
      async destroy(pairs: readonly StalePair[]) {
        const state = DatapathState.read(maps);
        const frontend = [...state.frontends.values()][0];
        const servedThen = frontend ? state.liveSlots(frontend).map((id) => backendText(state.backends.get(id!)!)) : [];
        calls.push({ pairs: pairs.map((pair) => `${frontendId(pair.frontend)} -> ${backendText(pair.backend)}`), servedThen });
      },
    };
    const source = new ManualSource(dnsState(['10.244.0.1', '10.244.0.2']));
    const agent = new Agent({
      source,
      readers: new InstantReaderFence(),
      maps,
      logger: pino({ level: 'silent' }),
      node: NODE,
      stuckSockets: handler,
    });
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    await agent.start();
    source.push(dnsState(['10.244.0.1', '10.244.0.2', '10.244.0.3']));
    await settle();
    source.push(dnsState(['10.244.0.3']));
    await settle();
    source.push(dnsState([]));
    await agent.stop();
    assert.deepEqual(calls, [
      { pairs: ['10.96.0.10:53/UDP -> 10.244.0.1:5353', '10.96.0.10:53/UDP -> 10.244.0.2:5353'], servedThen: ['10.244.0.3:5353'] },
      { pairs: ['10.96.0.10:53/UDP -> 10.244.0.3:5353'], servedThen: [] },
    ]);
  });

  it('leaves alone the sockets of a backend handed out again before its run started', async () => {
    const calls: string[][] = [];
    let openGate: () => void = () => {};
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const handler: StuckSocketHandler = {
      async destroy(pairs: readonly StalePair[]) {
        calls.push(pairs.map((pair) => backendText(pair.backend)));
        if (calls.length === 1) await gate;
      },
    };
    const source = new ManualSource(dnsState(['10.244.0.1', '10.244.0.2', '10.244.0.3']));
    const agent = new Agent({
      source,
      readers: new InstantReaderFence(),
      maps: memoryMaps(),
      logger: pino({ level: 'silent' }),
      node: NODE,
      stuckSockets: handler,
    });
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    await agent.start();
    source.push(dnsState(['10.244.0.1', '10.244.0.2']));
    await settle();
    // While the first run is busy: .1 and .2 leave, then .1 comes back (a readiness flap).
    source.push(dnsState([]));
    await settle();
    source.push(dnsState(['10.244.0.1']));
    await settle();
    openGate();
    await agent.stop();
    assert.deepEqual(calls, [['10.244.0.3:5353'], ['10.244.0.2:5353']]);
  });

  it('logs a failing handler and carries on', async () => {
    const logs: { msg: string }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => logs.push(JSON.parse(line) as { msg: string }) });
    let runs = 0;
    const handler: StuckSocketHandler = {
      async destroy() {
        runs++;
        throw new Error('no iterator');
      },
    };
    const source = new ManualSource(dnsState(['10.244.0.1', '10.244.0.2']));
    const agent = new Agent({ source, readers: new InstantReaderFence(), maps: memoryMaps(), logger, node: NODE, stuckSockets: handler });
    await agent.start();
    source.push(dnsState(['10.244.0.1']));
    source.push(dnsState([]));
    await agent.stop();
    assert.equal(runs, 2);
    assert.deepEqual(
      logs.map((line) => line.msg),
      ['destroy stuck sockets: no iterator', 'destroy stuck sockets: no iterator'],
    );
  });
});
