import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProxyHealth } from '../../src/agent/health.js';
import { parseBindAddress } from '../../src/agent/http-server.js';

describe('ProxyHealth (kube-proxy semantics)', () => {
  const clock = () => {
    let now = 1_000_000;
    return { now: () => now, advance: (ms: number) => (now += ms) };
  };

  it('is healthy while no update waits', () => {
    const time = clock();
    const health = new ProxyHealth(60_000, time.now);
    time.advance(600_000);
    assert.equal(health.status().healthy, true);
  });

  it('stays healthy while an update waits less than the timeout', () => {
    const time = clock();
    const health = new ProxyHealth(60_000, time.now);
    health.updateQueued();
    time.advance(59_999);
    assert.equal(health.status().healthy, true);
  });

  it('is unhealthy once an update has waited the timeout, and healthy again when it is applied', () => {
    const time = clock();
    const health = new ProxyHealth(60_000, time.now);
    health.updateQueued();
    time.advance(30_000);
    health.updateQueued();
    time.advance(30_000);
    assert.equal(health.status().healthy, false, 'the oldest pending update counts');
    health.updated();
    assert.deepEqual(health.status(), { healthy: true, lastUpdated: new Date(time.now()), currentTime: new Date(time.now()) });
  });
});

describe('parseBindAddress', () => {
  const cases: [string, ReturnType<typeof parseBindAddress>][] = [
    ['127.0.0.1:10249', { host: '127.0.0.1', port: 10249 }],
    ['[::1]:10256', { host: '::1', port: 10256 }],
    ['0.0.0.0:0', { host: '0.0.0.0', port: 0 }],
    ['127.0.0.1', undefined],
    ['127.0.0.1:70000', undefined],
  ];
  for (const [text, expected] of cases) it(`reads ${text}`, () => assert.deepEqual(parseBindAddress(text), expected));
});
