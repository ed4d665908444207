import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SyncResult } from '../../src/agent/agent.js';
import { DEADLINE_MS, optimizeForSizeWhenQuiet, QUIET_MS, type HeapSizingTimers } from '../../src/agent/heap-sizing.js';

/** Timers on a clock that moves only when told; the agent's syncs are fed by hand. */
function harness() {
  let now = 0;
  const pending = new Map<number, { at: number; run: () => void }>();
  let nextHandle = 1;
  const timers: HeapSizingTimers = {
    setTimeout: (run, ms) => {
      const handle = nextHandle++;
      pending.set(handle, { at: now + ms, run });
      return handle;
    },
    clearTimeout: (handle) => void pending.delete(handle as number),
  };
  let listener: ((result: SyncResult) => void) | undefined;
  let switches = 0;
  optimizeForSizeWhenQuiet({ onSync: (l) => (listener = l) }, () => switches++, timers);
  return {
    sync(changes: number) {
      listener!({
        serviceChanges: changes,
        endpointChanges: 0,
        frontends: changes,
        operations: 0,
        failed: 0,
        failedAddresses: 0,
        durationMs: 1,
      });
    },
    advance(ms: number) {
      const until = now + ms;
      for (;;) {
        const due = [...pending].filter(([, timer]) => timer.at <= until).sort(([, a], [, b]) => a.at - b.at)[0];
        if (!due) break;
        pending.delete(due[0]);
        now = due[1].at;
        due[1].run();
      }
      now = until;
    },
    switches: () => switches,
    pendingTimers: () => pending.size,
  };
}

describe('optimizeForSizeWhenQuiet', () => {
  it('waits for a state that held anything: empty syncs before it arm nothing', () => {
    const agent = harness();
    agent.sync(0);
    agent.advance(DEADLINE_MS * 2);
    assert.equal(agent.switches(), 0);
    assert.equal(agent.pendingTimers(), 0);
  });

  it('switches once the agent has been quiet for QUIET_MS after its first state', () => {
    const agent = harness();
    agent.sync(10_000);
    agent.advance(QUIET_MS - 1);
    assert.equal(agent.switches(), 0);
    agent.advance(1);
    assert.equal(agent.switches(), 1);
  });

  it('starts the quiet period again at every later sync, changes or not', () => {
    const agent = harness();
    agent.sync(10_000);
    for (let i = 0; i < 5; i++) {
      agent.advance(QUIET_MS - 1);
      agent.sync(i % 2);
    }
    assert.equal(agent.switches(), 0);
    agent.advance(QUIET_MS);
    assert.equal(agent.switches(), 1);
  });

  it('switches at the deadline when the changes never pause', () => {
    const agent = harness();
    agent.sync(10_000);
    let elapsed = 0;
    while (agent.switches() === 0 && elapsed < DEADLINE_MS * 2) {
      agent.advance(QUIET_MS / 2);
      elapsed += QUIET_MS / 2;
      agent.sync(1);
    }
    assert.equal(elapsed, DEADLINE_MS);
  });

  it('switches once, and leaves no timer behind', () => {
    const agent = harness();
    agent.sync(10_000);
    agent.advance(QUIET_MS);
    agent.sync(5);
    agent.advance(DEADLINE_MS * 2);
    assert.equal(agent.switches(), 1);
    assert.equal(agent.pendingTimers(), 0);
  });
});
