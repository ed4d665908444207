// What the agent answers over HTTP, server by server. The health address is
// for probes: bound wider than loopback, every pod could reach it, so it
// answers kube-proxy's /healthz and /livez only.
// /statusz names rejected objects and kernel errors: it is served beside
// /metrics, on loopback unless told otherwise.

import type { ProxyHealth } from './health.js';
import type { Route } from './http-server.js';
import type { AgentMetrics } from './metrics.js';
import type { AgentStatus } from './status.js';

export function agentRoutes(
  metrics: AgentMetrics,
  health: ProxyHealth,
  status: AgentStatus,
): { metrics: Record<string, Route>; health: Record<string, Route> } {
  // The same body for both; /livez is 200 whenever the agent answers (health.ts says why).
  const healthRoute =
    (live: boolean): Route =>
    async () => {
      const verdict = health.status();
      return {
        status: live || verdict.healthy ? 200 : 503,
        contentType: 'application/json',
        body: JSON.stringify({ lastUpdated: verdict.lastUpdated, currentTime: verdict.currentTime }),
      };
    };
  return {
    metrics: {
      '/metrics': async () => ({ status: 200, contentType: metrics.registry.contentType, body: await metrics.render() }),
      '/statusz': async () => ({ status: 200, contentType: 'application/json', body: JSON.stringify(status.report(health.status())) }),
    },
    health: { '/healthz': healthRoute(false), '/livez': healthRoute(true) },
  };
}
