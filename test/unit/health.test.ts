import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProxyHealth } from '../../src/agent/health.js';
import { parseBindAddress } from '../../src/agent/http-server.js';
import type { AgentMetrics } from '../../src/agent/metrics.js';
import { agentRoutes } from '../../src/agent/routes.js';
import type { AgentStatus } from '../../src/agent/status.js';

describe('ProxyHealth (kube-proxy semantics, but unready until the first sync)', () => {
  const clock = () => {
    let now = 1_000_000;
    return { now: () => now, advance: (ms: number) => (now += ms) };
  };

  it('is unhealthy until the first sync, however short the wait', () => {
    const time = clock();
    const health = new ProxyHealth(60_000, time.now);
    assert.equal(health.status().healthy, false);
    time.advance(1);
    health.recordSync(false);
    assert.equal(health.status().healthy, true);
  });

  it('stays healthy after a sync while no update waits', () => {
    const time = clock();
    const health = new ProxyHealth(60_000, time.now);
    health.recordSync(false);
    time.advance(600_000);
    assert.equal(health.status().healthy, true);
  });

  it('stays healthy while failed writes wait less than the timeout', () => {
    const time = clock();
    const health = new ProxyHealth(60_000, time.now);
    health.recordSync(true);
    time.advance(59_999);
    assert.equal(health.status().healthy, true);
  });

  it('is unhealthy once failed writes have waited the timeout, and healthy again when a sync gets them in', () => {
    const time = clock();
    const health = new ProxyHealth(60_000, time.now);
    health.recordSync(true);
    time.advance(30_000);
    health.recordSync(true);
    time.advance(30_000);
    assert.equal(health.status().healthy, false, 'the oldest waiting update counts');
    health.recordSync(false);
    assert.deepEqual(health.status(), { healthy: true, lastUpdated: new Date(time.now()), currentTime: new Date(time.now()) });
  });
});

describe('health routes', () => {
  it('/healthz follows the verdict, /livez answers 200 while the agent answers', async () => {
    const time = { now: 1_000_000 };
    const health = new ProxyHealth(60_000, () => time.now);
    const routes = agentRoutes({} as AgentMetrics, health, {} as AgentStatus).health;
    health.recordSync(true);
    time.now += 60_000;
    assert.equal((await routes['/healthz']!()).status, 503);
    assert.equal((await routes['/livez']!()).status, 200);
    health.recordSync(false);
    assert.equal((await routes['/healthz']!()).status, 200);
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
