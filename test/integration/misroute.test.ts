// The race the self-describing values close (bpf/socklb.h, docs/threat-model.md): a program that
// copies a map element the kernel has just recycled for another key. Builds that hold a window
// open between each lookup and its copy (Makefile, RACE_TEST_BPF_OBJECTS) make it common: while
// Services and their endpoints churn, with ids freed and reused, a sandbox opens many short
// connections whose backends answer with their port. With the checks, no connection reaches
// another Service's backend; the same storm against a build without them shows that it can.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { LoadedDatapath } from '../../src/datapath/loader.js';
import type { EndpointSlice, Service } from '../../src/model/types.js';
import type { SourceState } from '../../src/model/source-state.js';
import { waitForLine } from '../lab/processes.js';
import type { StormReport, StormService } from '../lab/connect-storm.js';
import { ManualSource } from '../unit/agent-fixtures.js';
import { modelEndpoint, modelService, NODE } from '../unit/model-fixtures.js';
import { missingPrivileges } from './support.js';
import { Testbed } from './testbed.js';

const SERVICES = 24;
const BACKENDS_PER_SERVICE = 4;
const FIRST_BACKEND_PORT = 20000;
const PORT_SERVER = fileURLToPath(new URL('../lab/port-server.js', import.meta.url));
const CONNECT_STORM = fileURLToPath(new URL('../lab/connect-storm.js', import.meta.url));
const buildObject = (variant: string) => fileURLToPath(new URL(`../../../build/bpf-race-${variant}/socklb.bpf.o`, import.meta.url));

function backendPorts(service: number): number[] {
  return Array.from({ length: BACKENDS_PER_SERVICE }, (_, backend) => FIRST_BACKEND_PORT + service * BACKENDS_PER_SERVICE + backend);
}

function clusterIP(service: number): string {
  return `10.96.77.${service + 1}`;
}

/** Which Services exist and which of their backends are endpoints. */
type Catalog = Map<number, number[]>;

/** The catalog as a source state: one slice per backend, since the backends differ by port only. */
function sourceState(catalog: Catalog, podAddress: string): SourceState {
  const services = new Map<string, Service>();
  const slices = new Map<string, EndpointSlice>();
  for (const [index, ports] of catalog) {
    const name = `svc-${index}`;
    services.set(
      `default/${name}`,
      modelService({ name, clusterIPs: [clusterIP(index)], ports: [{ name: 'tcp', protocol: 'TCP', port: 80 }] }),
    );
    for (const port of ports) {
      slices.set(`default/${name}-${port}`, {
        namespace: 'default',
        name: `${name}-${port}`,
        serviceName: name,
        addressType: 'IPv4',
        ports: [{ name: 'tcp', protocol: 'TCP', port }],
        endpoints: [modelEndpoint(podAddress)],
      });
    }
  }
  return { services, ignoredServices: new Set(), slices, problems: [] };
}

/**
 * Services changed together in one source state: one sync's batches then free and take elements
 * for several Services, which is how an element recycled under a reader can change Service.
 */
const SERVICES_PER_CHANGE = 8;

/** A random change to a few Services: each removed, added back, or given other endpoints. */
function churn(catalog: Catalog): void {
  for (let changed = 0; changed < SERVICES_PER_CHANGE; changed++) churnOne(catalog, Math.floor(Math.random() * SERVICES));
}

function churnOne(catalog: Catalog, index: number): void {
  const pick = () => backendPorts(index).filter(() => Math.random() < 0.5);
  const roll = Math.random();
  if (catalog.has(index) && roll < 0.3) catalog.delete(index);
  else {
    const ports = pick();
    catalog.set(index, ports.length > 0 ? ports : [backendPorts(index)[0]!]);
  }
}

interface StormResult {
  report: StormReport;
  changes: number;
}

describe('connections while Services churn, through a build that widens the read-write race', { skip: missingPrivileges() }, () => {
  const testbed = new Testbed('misroute');
  before(() => testbed.prepare());
  after(() => testbed.close());

  async function storm(variant: 'checked' | 'unchecked', connects: number, stopAfterMisroutes: number): Promise<StormResult> {
    const [pod, sandbox] = await Promise.all([testbed.lab.addPod(`b-${variant}`), testbed.lab.addSandbox(`s-${variant}`)]);
    const server = testbed.lab.spawn(
      pod,
      [process.execPath, PORT_SERVER, '--ports', `${FIRST_BACKEND_PORT}-${FIRST_BACKEND_PORT + SERVICES * BACKENDS_PER_SERVICE - 1}`],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    await waitForLine(server, 'ready', 10_000);
    const pinDir = await testbed.extraPinDirectory(`misroute-${variant}`);
    const datapath = LoadedDatapath.load(buildObject(variant), pinDir, { frontends: 256, backends: 1024, slots: 1024, connections: 65536 });
    try {
      datapath.attach([sandbox.cgroupPath]);
      const catalog: Catalog = new Map(Array.from({ length: SERVICES }, (_, index) => [index, backendPorts(index)]));
      const source = new ManualSource(sourceState(catalog, pod.ipv4));
      const agent = new Agent({ source, maps: datapath.maps, readers: datapath.readers, logger: pino({ level: 'silent' }), node: NODE });
      await agent.start();
      const services: StormService[] = Array.from({ length: SERVICES }, (_, index) => ({
        address: clusterIP(index),
        port: 80,
        backendPorts: backendPorts(index),
      }));
      const argv = [
        process.execPath,
        CONNECT_STORM,
        '--services',
        JSON.stringify(services),
        '--connects',
        String(connects),
        '--concurrency',
        '16',
        '--stop-after-misroutes',
        String(stopAfterMisroutes),
      ];
      const client = testbed.lab.spawn(sandbox, argv);
      let output = '';
      client.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const exited = once(client, 'exit');
      let changes = 0;
      let running = true;
      void exited.then(() => (running = false));
      while (running) {
        churn(catalog);
        source.push(sourceState(catalog, pod.ipv4));
        changes++;
        // Lets the client's exit be seen; the agent's syncs are synchronous.
        await new Promise((resolve) => setImmediate(resolve));
      }
      await agent.stop();
      return { report: JSON.parse(output) as StormReport, changes };
    } finally {
      datapath.close();
      await testbed.lab.stop(server);
    }
  }

  it("no connection reaches another Service's backend with the checked values", { timeout: 240_000 }, async () => {
    const { report, changes } = await storm('checked', 200_000, 0);
    process.stdout.write(`# checked: ${JSON.stringify({ ...report, changes })}\n`);
    assert.equal(report.connects, 200_000);
    assert.ok(changes >= 1000, `the Services changed ${changes} times`);
    assert.ok(report.answered > report.connects / 2, `most connections were answered: ${report.answered} of ${report.connects}`);
    assert.deepEqual(report.misroutes, []);
    assert.equal(report.misrouted, 0);
  });

  it("without the checks, the same storm sends connections to other Services' backends", { timeout: 240_000 }, async () => {
    const { report, changes } = await storm('unchecked', 200_000, 20);
    process.stdout.write(`# unchecked: ${JSON.stringify({ ...report, changes })}\n`);
    assert.ok(report.misrouted > 0, `misrouted ${report.misrouted} of ${report.connects} over ${changes} changes`);
  });
});
