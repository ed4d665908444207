// Ids freed by one sync and handed out by a later one only once no program
// run can still hold them (src/datapath/readers.ts): otherwise a connect()
// that read a freed id could follow it to its next owner, another Service.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate } from 'node:timers/promises';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { memoryMaps } from '../../src/datapath/memory-maps.js';
import { reconcile } from '../../src/datapath/reconcile.js';
import type { ReaderFence } from '../../src/datapath/readers.js';
import { DatapathState } from '../../src/datapath/state.js';
import { frontendId } from '../../src/model/keys.js';
import type { DesiredFrontend } from '../../src/model/types.js';
import { dnsState, ManualSource } from './agent-fixtures.js';
import { NODE } from './model-fixtures.js';

function desired(...frontends: [address: string, backend: string][]): Map<string, DesiredFrontend> {
  return new Map(
    frontends.map(([address, backend]) => {
      const key = { address, port: 80, protocol: 'TCP' as const };
      return [
        frontendId(key),
        {
          key,
          service: { namespace: 'default', name: address, portName: '' },
          backends: [{ address: backend, port: 8080 }],
          affinityTimeoutSeconds: 0,
        },
      ];
    }),
  );
}

/** The service id of each frontend and the backend id of each backend address. */
function ids(state: DatapathState): { services: Record<string, number>; backends: Record<string, number> } {
  return {
    services: Object.fromEntries([...state.frontends].map(([id, entry]) => [id, entry.serviceId])),
    backends: Object.fromEntries([...state.backends].map(([id, backend]) => [backend.address, id])),
  };
}

describe('ids freed by a sync', () => {
  const first = desired(['10.96.0.1', '10.244.0.1'], ['10.96.0.2', '10.244.0.2']);
  const second = desired(['10.96.0.2', '10.244.0.2']);
  const third = desired(['10.96.0.2', '10.244.0.2'], ['10.96.0.3', '10.244.0.3']);

  it('are not handed out again until the readers are gone', () => {
    const maps = memoryMaps();
    const state = DatapathState.read(maps);
    reconcile(maps, state, first, first.keys());
    reconcile(maps, state, second, first.keys());
    assert.ok(state.idsAwaitReaders);
    reconcile(maps, state, third, third.keys());
    assert.deepEqual(ids(state), {
      services: { '10.96.0.2:80/TCP': 2, '10.96.0.3:80/TCP': 3 },
      backends: { '10.244.0.2': 2, '10.244.0.3': 3 },
    });
  });

  it('are handed out again, lowest first, once the readers are gone', () => {
    const maps = memoryMaps();
    const state = DatapathState.read(maps);
    reconcile(maps, state, first, first.keys());
    reconcile(maps, state, second, first.keys());
    state.readersGone();
    assert.equal(state.idsAwaitReaders, false);
    reconcile(maps, state, third, third.keys());
    assert.deepEqual(ids(state), {
      services: { '10.96.0.2:80/TCP': 2, '10.96.0.3:80/TCP': 1 },
      backends: { '10.244.0.2': 2, '10.244.0.3': 1 },
    });
  });

  it('include the ids a state read back skips over: the agent that freed them may have just stopped', () => {
    const maps = memoryMaps();
    const state = DatapathState.read(maps);
    reconcile(maps, state, first, first.keys());
    reconcile(maps, state, second, first.keys());
    const restarted = DatapathState.read(maps);
    assert.ok(restarted.idsAwaitReaders);
    reconcile(maps, restarted, third, third.keys());
    assert.equal(ids(restarted).services['10.96.0.3:80/TCP'], 3);
  });
});

describe('the agent and the readers of freed ids', () => {
  class RecordingFence implements ReaderFence {
    waits = 0;
    failing = false;
    waitForReaders(): void {
      this.waits++;
      if (this.failing) throw new Error('EPERM');
    }
  }

  it('waits for the readers right after a sync that freed ids, not in the next sync', async () => {
    const fence = new RecordingFence();
    const published: boolean[] = [];
    const guests = { publish: (_writes: unknown, waitForReaders: boolean) => published.push(waitForReaders) };
    const source = new ManualSource(dnsState(['10.244.0.1', '10.244.0.2']));
    const agent = new Agent({ source, maps: memoryMaps(), readers: fence, guests, logger: pino({ level: 'silent' }), node: NODE });
    await agent.start();
    await setImmediate();
    assert.equal(fence.waits, 0, 'the first sync of empty maps freed nothing');
    source.push(dnsState(['10.244.0.1']));
    assert.equal(fence.waits, 0, 'not in the sync that frees an id');
    await setImmediate();
    assert.equal(fence.waits, 1, 'right after it');
    source.push(dnsState(['10.244.0.1', '10.244.0.3']));
    assert.equal(fence.waits, 1, 'the next sync does not wait');
    assert.deepEqual([...agent.datapath.backends.keys()].sort(), [1, 2], 'the freed backend id went to the new backend');
    assert.deepEqual(published, [false, false, true], "guests wait for their readers in the sync that reuses the node's freed ids");
    await setImmediate();
    assert.equal(fence.waits, 1, 'nothing was freed: no wait');
    await agent.stop();
  });

  it('takes fresh ids in a sync that runs before the readers were waited for', async () => {
    const fence = new RecordingFence();
    const source = new ManualSource(dnsState(['10.244.0.1', '10.244.0.2']));
    const agent = new Agent({ source, maps: memoryMaps(), readers: fence, logger: pino({ level: 'silent' }), node: NODE });
    await agent.start();
    source.push(dnsState(['10.244.0.1']));
    source.push(dnsState(['10.244.0.1', '10.244.0.3']));
    assert.equal(fence.waits, 0);
    assert.deepEqual([...agent.datapath.backends.keys()].sort(), [1, 3], 'id 2 still cools');
    await setImmediate();
    assert.equal(fence.waits, 1);
    assert.equal(agent.datapath.idsAwaitReaders, false, 'id 2 is free again');
    await agent.stop();
  });

  it('takes fresh ids when the kernel will not say that the readers are gone, logging it once', async () => {
    const fence = new RecordingFence();
    const lines: { level: number; msg: string }[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) },
    );
    const fenceLines = () => lines.filter(({ msg }) => msg.startsWith('ids freed by earlier syncs')).map(({ level }) => level);
    const source = new ManualSource(dnsState(['10.244.0.1', '10.244.0.2']));
    const agent = new Agent({ source, maps: memoryMaps(), readers: fence, logger, node: NODE });
    await agent.start();
    fence.failing = true;
    source.push(dnsState(['10.244.0.1']));
    await setImmediate();
    source.push(dnsState(['10.244.0.1', '10.244.0.3']));
    assert.deepEqual([...agent.datapath.backends.keys()].sort(), [1, 3]);
    assert.ok(agent.datapath.idsAwaitReaders, 'the freed id still waits');
    await setImmediate();
    source.push(dnsState(['10.244.0.1', '10.244.0.4']));
    await setImmediate();
    assert.equal(fence.waits, 3, 'tried after each sync');
    assert.deepEqual(fenceLines(), [40], 'one warning for three failures');
    fence.failing = false;
    source.push(dnsState(['10.244.0.1']));
    await setImmediate();
    assert.equal(agent.datapath.idsAwaitReaders, false, 'the freed ids are free again');
    assert.deepEqual(fenceLines(), [40, 30], 'and one line when it works again');
    await agent.stop();
  });
});
