// Who serves a frontend that several Services claim (src/model/claims.ts), one case per rule:
// the claims' kinds, then the Service that serves it, then age, then name; every loser reported,
// once. Through DesiredFrontends, which sorts the Services' claims out, and through the agent,
// which tells it who served before a restart and logs its problems.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { InstantReaderFence, memoryMaps } from '../../src/datapath/memory-maps.js';
import { DatapathState } from '../../src/datapath/state.js';
import { DesiredFrontends } from '../../src/model/desired.js';
import type { SourceState } from '../../src/model/source-state.js';
import type { NodeContext, Service, ServicePortRef } from '../../src/model/types.js';
import { ManualSource } from './agent-fixtures.js';
import { modelService, NODE } from './model-fixtures.js';

const ADDRESS = '10.96.10.10';
const FRONTEND = `${ADDRESS}:80/TCP`;
const NODE_IP = '192.168.1.5';
const NODE_PORT_FRONTEND = `${NODE_IP}:30080/TCP`;
/** External IPs anywhere in the service range are translated, so that they can claim cluster IPs; NodePorts at NODE_IP. */
const CLAIMS_NODE: NodeContext = { ...NODE, addresses: [NODE_IP], allowedExternalIPCidrs: ['10.96.0.0/16', '192.168.1.0/24'] };

/** A Service with the cluster IP ADDRESS, port 80. */
function clusterIP(name: string, fields: Partial<Service> = {}): Service {
  return modelService({ name, clusterIPs: [ADDRESS], ...fields });
}

/** A Service of another cluster IP whose external IP is ADDRESS. */
function externalIP(name: string, fields: Partial<Service> = {}): Service {
  return modelService({ name, clusterIPs: ['10.96.20.20'], externalIPs: [ADDRESS], ...fields });
}

/** A LoadBalancer of another cluster IP whose ingress IP is ADDRESS. */
function loadBalancerIP(name: string, fields: Partial<Service> = {}): Service {
  return modelService({ name, type: 'LoadBalancer', clusterIPs: ['10.96.20.21'], loadBalancerIPs: [ADDRESS], ...fields });
}

function state(services: Service[]): SourceState {
  return {
    services: new Map(services.map((service) => [`${service.namespace}/${service.name}`, service])),
    ignoredServices: new Set(),
    slices: new Map(),
    problems: [],
  };
}

const servicePort = (name: string): ServicePortRef => ({ namespace: 'default', name, portName: 'http' });

interface Case {
  rule: string;
  /** Source states, in order; the outcome is that of the last. */
  steps: Service[][];
  /** Who served each frontend before the model started (a restarted agent's maps). */
  servedAtStart?: Record<string, string>;
  frontend?: string;
  /** `namespace/name (kind)` of the claim that serves the frontend. */
  serves: string;
  problems: string[];
}

const cases: Case[] = [
  {
    rule: 'a cluster IP claim beats an external IP claim, though the external IP is older, first by name and served first',
    steps: [[externalIP('a-hijack', { createdAt: 1 })], [externalIP('a-hijack', { createdAt: 1 }), clusterIP('web', { createdAt: 2 })]],
    serves: 'default/web (cluster IP)',
    problems: [
      `Service default/a-hijack: frontend ${FRONTEND} (external IP) is served by Service default/web (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'a cluster IP claim beats a load-balancer IP claim, though the load balancer is older, first by name and served first',
    steps: [[loadBalancerIP('a-lb', { createdAt: 1 })], [loadBalancerIP('a-lb', { createdAt: 1 }), clusterIP('web', { createdAt: 2 })]],
    serves: 'default/web (cluster IP)',
    problems: [
      `Service default/a-lb: frontend ${FRONTEND} (load-balancer IP) is served by Service default/web (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'a node port claim, allocated as a cluster IP is, beats an external IP claim',
    steps: [
      [
        modelService({
          name: 'a-hijack',
          clusterIPs: ['10.96.20.20'],
          externalIPs: [NODE_IP],
          ports: [{ name: 'http', protocol: 'TCP', port: 30080 }],
        }),
        modelService({ name: 'web', type: 'NodePort', ports: [{ name: 'http', protocol: 'TCP', port: 80, nodePort: 30080 }] }),
      ],
    ],
    frontend: NODE_PORT_FRONTEND,
    serves: 'default/web (node port)',
    problems: [
      `Service default/a-hijack: frontend ${NODE_PORT_FRONTEND} (external IP) is served by Service default/web (node port); this port is skipped`,
    ],
  },
  {
    rule: 'an external IP and a load-balancer IP claim are equals: the older serves',
    steps: [[externalIP('a-external', { createdAt: 2 }), loadBalancerIP('lb', { createdAt: 1 })]],
    serves: 'default/lb (load-balancer IP)',
    problems: [
      `Service default/a-external: frontend ${FRONTEND} (external IP) is served by Service default/lb (load-balancer IP); this port is skipped`,
    ],
  },
  {
    rule: 'among equals, the Service that serves the frontend keeps it, though the newcomer is older and first by name',
    steps: [[clusterIP('web', { createdAt: 2 })], [clusterIP('web', { createdAt: 2 }), clusterIP('dup', { createdAt: 1 })]],
    serves: 'default/web (cluster IP)',
    problems: [
      `Service default/dup: frontend ${FRONTEND} (cluster IP) is served by Service default/web (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'the Service that serves the frontend keeps it when it changes: it gives its claims up and makes them again',
    steps: [
      [clusterIP('web', { createdAt: 2 })],
      [clusterIP('web', { createdAt: 2 }), clusterIP('dup', { createdAt: 1 })],
      [clusterIP('web', { createdAt: 2, affinityTimeoutSeconds: 60 }), clusterIP('dup', { createdAt: 1 })],
    ],
    serves: 'default/web (cluster IP)',
    problems: [
      `Service default/dup: frontend ${FRONTEND} (cluster IP) is served by Service default/web (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'the Service that served the frontend before a restart keeps it: the datapath says who served',
    steps: [[clusterIP('web', { createdAt: 2 }), clusterIP('dup', { createdAt: 1 })]],
    servedAtStart: { [FRONTEND]: 'web' },
    serves: 'default/web (cluster IP)',
    problems: [
      `Service default/dup: frontend ${FRONTEND} (cluster IP) is served by Service default/web (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'serving does not outrank kind: an external IP that served before a restart yields to a cluster IP',
    steps: [[externalIP('a-hijack', { createdAt: 1 }), clusterIP('web', { createdAt: 2 })]],
    servedAtStart: { [FRONTEND]: 'a-hijack' },
    serves: 'default/web (cluster IP)',
    problems: [
      `Service default/a-hijack: frontend ${FRONTEND} (external IP) is served by Service default/web (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'without a Service serving it, the oldest creationTimestamp serves',
    steps: [[clusterIP('dup', { createdAt: 2 }), clusterIP('web', { createdAt: 1 })]],
    serves: 'default/web (cluster IP)',
    problems: [
      `Service default/dup: frontend ${FRONTEND} (cluster IP) is served by Service default/web (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'a Service without creationTimestamp (a hand-written manifest) is newer than any with one',
    steps: [[clusterIP('dup'), clusterIP('web', { createdAt: Date.UTC(2030, 0, 1) })]],
    serves: 'default/web (cluster IP)',
    problems: [
      `Service default/dup: frontend ${FRONTEND} (cluster IP) is served by Service default/web (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'of equal age, the first by namespace/name serves',
    steps: [[clusterIP('web', { createdAt: 1 }), clusterIP('dup', { createdAt: 1 })]],
    serves: 'default/dup (cluster IP)',
    problems: [
      `Service default/web: frontend ${FRONTEND} (cluster IP) is served by Service default/dup (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'without creationTimestamps, the first by namespace/name serves',
    steps: [[clusterIP('web'), clusterIP('dup')]],
    serves: 'default/dup (cluster IP)',
    problems: [
      `Service default/web: frontend ${FRONTEND} (cluster IP) is served by Service default/dup (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'when the Service serving it goes, the best of the others takes it over',
    steps: [
      [clusterIP('web', { createdAt: 1 }), clusterIP('dup', { createdAt: 3 }), clusterIP('zed', { createdAt: 2 })],
      [clusterIP('dup', { createdAt: 3 }), clusterIP('zed', { createdAt: 2 })],
    ],
    serves: 'default/zed (cluster IP)',
    problems: [
      `Service default/dup: frontend ${FRONTEND} (cluster IP) is served by Service default/zed (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'every loser is reported, once, with its strongest claim',
    steps: [[clusterIP('web', { createdAt: 1 }), clusterIP('dup', { createdAt: 2 }), clusterIP('both', { externalIPs: [ADDRESS] })]],
    serves: 'default/web (cluster IP)',
    problems: [
      `Service default/both: frontend ${FRONTEND} (cluster IP) is served by Service default/web (cluster IP); this port is skipped`,
      `Service default/dup: frontend ${FRONTEND} (cluster IP) is served by Service default/web (cluster IP); this port is skipped`,
    ],
  },
  {
    rule: 'one Service claiming one address twice (an external IP that is its own cluster IP) is no conflict: its cluster IP claim serves',
    steps: [[clusterIP('web', { externalIPs: [ADDRESS] })]],
    serves: 'default/web (cluster IP)',
    problems: [],
  },
];

describe('claims: who serves a frontend several Services claim', () => {
  for (const { rule, steps, servedAtStart = {}, frontend = FRONTEND, serves, problems } of cases) {
    it(rule, () => {
      const desired = new DesiredFrontends(CLAIMS_NODE, (id) => {
        const name = servedAtStart[id];
        return name === undefined ? undefined : servicePort(name);
      });
      for (const services of steps) desired.update(state(services));
      const served = desired.frontends.get(frontend);
      assert.equal(served && `${served.service.namespace}/${served.service.name} (${served.claim})`, serves);
      assert.deepEqual(
        desired
          .problems()
          .map((problem) => `${problem.object}: ${problem.reason}`)
          .sort(),
        problems,
      );
    });
  }
});

describe('claims through the agent', () => {
  const logger = pino({ level: 'silent' });
  const servingName = (maps: ReturnType<typeof memoryMaps>) => DatapathState.read(maps).servicePortOf(FRONTEND)?.name;
  const contest = state([clusterIP('web', { createdAt: 2 }), clusterIP('dup', { createdAt: 1 })]);

  it('after a restart, the Service the pinned maps name keeps the frontend; with nothing pinned, the older takes it', async () => {
    const maps = memoryMaps();
    const previous = new Agent({
      source: new ManualSource(state([clusterIP('web', { createdAt: 2 })])),
      readers: new InstantReaderFence(),
      maps,
      logger,
      node: NODE,
    });
    await previous.start();
    await previous.stop();
    assert.equal(servingName(maps), 'web');

    const restarted = new Agent({ source: new ManualSource(contest), readers: new InstantReaderFence(), maps, logger, node: NODE });
    await restarted.start();
    await restarted.stop();
    assert.equal(servingName(maps), 'web', 'the maps read back say web served');

    const empty = memoryMaps();
    const fresh = new Agent({ source: new ManualSource(contest), readers: new InstantReaderFence(), maps: empty, logger, node: NODE });
    await fresh.start();
    await fresh.stop();
    assert.equal(servingName(empty), 'dup', 'with nothing pinned, the older serves');
  });

  it('logs a loser once, however many syncs follow', async () => {
    const warnings: string[] = [];
    const capturing = pino(
      { level: 'warn' },
      { write: (line: string) => warnings.push(String((JSON.parse(line) as { msg: unknown }).msg)) },
    );
    const source = new ManualSource(state([clusterIP('web', { createdAt: 1 })]));
    const agent = new Agent({ source, readers: new InstantReaderFence(), maps: memoryMaps(), logger: capturing, node: NODE });
    await agent.start();
    source.push(state([clusterIP('web', { createdAt: 1 }), clusterIP('dup', { createdAt: 2 })]));
    source.push(state([clusterIP('web', { createdAt: 1, affinityTimeoutSeconds: 60 }), clusterIP('dup', { createdAt: 2 })]));
    source.push(state([clusterIP('web', { createdAt: 1 }), clusterIP('dup', { createdAt: 2, affinityTimeoutSeconds: 60 })]));
    await agent.stop();
    assert.deepEqual(warnings, [
      `model: Service default/dup: frontend ${FRONTEND} (cluster IP) is served by Service default/web (cluster IP); this port is skipped`,
    ]);
  });
});
