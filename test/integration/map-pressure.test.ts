// A connection map filled by real connections: an agent whose connection map holds 64 entries,
// 80 TCP connections held open through a ClusterIP from a sandbox. /metrics counts the map's
// entries, `socklb status` flags it as evicting, the agent warns once; once the connections
// close, it says the map recovered.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { StatusReport } from '../../src/cli/tables.js';
import { MAP_NAMES } from '../../src/datapath/layout.js';
import type { Sandbox } from '../lab/lab.js';
import { endpointSlice, missingPrivileges, service, socklb, writeManifest, type RunningAgent } from './support.js';
import { Testbed } from './testbed.js';
import { SOCKET_CLIENT } from './udp-support.js';

const skip = missingPrivileges();

const WEB_IP = '10.96.0.10';
const CONNECTION_CAPACITY = 64;
const HELD_CONNECTIONS = 80;

describe('pressure on the connection map', { skip, concurrency: false }, () => {
  const bed = new Testbed('pressure');
  const { lab, pinDir } = bed;
  let sandbox: Sandbox;
  let agent: RunningAgent;

  const scrape = async () => (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
  const gauge = (metrics: string, name: string, map: string) =>
    Number(new RegExp(`^${name}\\{map="${map}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? NaN);
  const status = async (output: 'json' | 'table') => {
    const result = await socklb(['status', '-o', output, '--pin-dir', pinDir, '--metrics-bind-address', `127.0.0.1:${agent.metricsPort}`]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout;
  };
  const logged = (pattern: RegExp) => agent.logs.filter((line) => typeof line.msg === 'string' && pattern.test(line.msg));

  before(async () => {
    await bed.prepare();
    const pod = await lab.addPod('pod');
    sandbox = await lab.addSandbox('sandbox');
    await lab.startEchoServer(pod, { name: 'pod', port: 8080 });
    await writeManifest(join(bed.manifests, 'services.yaml'), [
      service('web', [WEB_IP], [{ name: 'http', port: 80 }]),
      endpointSlice('web-a', 'web', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
    ]);
    agent = await bed.startAgent([
      '--manifests',
      bed.manifests,
      '--cgroup',
      sandbox.cgroupPath,
      '--pin-dir',
      pinDir,
      '--max-connections',
      String(CONNECTION_CAPACITY),
    ]);
  });

  after(() => bed.close());

  it('shows the fill in /metrics and `socklb status`, warns once while the map evicts, and once when it recovered', async () => {
    let metrics = await scrape();
    assert.equal(gauge(metrics, 'socklb_map_capacity', MAP_NAMES.connections), CONNECTION_CAPACITY);
    assert.equal(gauge(metrics, 'socklb_map_entries', MAP_NAMES.connections), 0);
    assert.equal(gauge(metrics, 'socklb_map_capacity', MAP_NAMES.affinity), 65536, 'the affinity LRU is there too');
    assert.match(await status('table'), /^pressure: none$/m);

    // Its stdin is a pipe: the client holds its connections until it closes.
    const holder = lab.spawn(
      sandbox,
      [process.execPath, SOCKET_CLIENT, 'hold', '--target', WEB_IP, '--port', '80', '--count', String(HELD_CONNECTIONS)],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    holder.stderr?.resume();
    const report = JSON.parse(await firstLine(holder)) as { connected: number; errors: object };
    assert.deepEqual(report, { connected: HELD_CONNECTIONS, errors: {} }, 'every connection is translated: the map never refuses');

    metrics = await scrape();
    const entries = gauge(metrics, 'socklb_map_entries', MAP_NAMES.connections);
    assert.ok(entries > CONNECTION_CAPACITY / 2 && entries <= CONNECTION_CAPACITY, `${entries} entries of ${CONNECTION_CAPACITY}`);
    const warnings = () => logged(/^socklb_conn_v1 may be evicting \(\d+ of 64 entries\): .*raise --max-connections$/);
    assert.equal(warnings().length, 1, 'the scrape that found the map evicting warned');
    assert.equal(warnings()[0]?.level, 40);

    const report2 = JSON.parse(await status('json')) as StatusReport;
    const connections = report2.maps.find((map) => map.name === MAP_NAMES.connections);
    assert.equal(connections?.pressure, 'evicting');
    assert.equal(connections?.capacity, CONNECTION_CAPACITY);
    assert.match(await status('table'), /^pressure: socklb_conn_v1 may be evicting \(\d+ of 64 entries\): /m);
    await scrape();
    assert.equal(warnings().length, 1, 'not again while it still evicts');

    await lab.stop(holder);
    // The programs delete a connection's entry when its socket is released.
    const deadline = Date.now() + 10_000;
    while (gauge(await scrape(), 'socklb_map_entries', MAP_NAMES.connections) > 0 && Date.now() < deadline) await sleep(100);
    assert.equal(gauge(await scrape(), 'socklb_map_entries', MAP_NAMES.connections), 0);
    assert.equal(logged(/^socklb_conn_v1 is no longer evicting \(\d+ of 64 entries\)$/).length, 1);
    assert.match(await status('table'), /^pressure: none$/m);
  });
});

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      lines.close();
      resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`socket-client hold exited with ${code} before its report`)));
  });
}
