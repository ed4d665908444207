// `socklb trace` end to end: the line of an HTTP request (curl) through a ClusterIP, with its
// sandbox, Service and backend; refusals with their reasons; the filters; and the programs
// writing nothing to the ring while no trace runs (the switch off, the ring empty, no loss
// counted), before the first tracer and after the last one left, and after an agent start that
// found the switch left on.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import koffi from 'koffi';
import { KernelMap } from '../../src/datapath/kernel-maps.js';
import { MAP_NAMES, traceSwitchCodec, u32Codec, type TraceSwitch } from '../../src/datapath/layout.js';
import { libbpf, ringSampleCallback } from '../../src/kernel/libbpf.js';
import { libcCalls } from '../../src/kernel/libc.js';
import { pinnedMapPath } from '../../src/pins/layout.js';
import type { TraceMessage, TraceRecord } from '../../src/sandbox/protocol.js';
import type { Pod, Sandbox } from '../lab/lab.js';
import { waitForLine } from '../lab/processes.js';
import { endpointSlice, missingPrivileges, service, SOCKLB, socklb, writeManifest, type RunningAgent } from './support.js';
import { Testbed } from './testbed.js';

const skip = missingPrivileges();
const WEB = '10.96.0.10';
const EMPTY = '10.96.0.20';
/** In the service range, held by no Service. */
const UNALLOCATED = '10.96.7.7';
const HTTP_SERVER = "require('http').createServer((q, r) => r.end('hello from web')).listen(8080, () => console.log('ready'))";

/** The pinned map `name` of `pinDir`, opened for one call. */
function withPinnedMap<T>(pinDir: string, name: string, use: (fd: number) => T): T {
  const fd = libbpf.objGet(pinnedMapPath(pinDir, name));
  assert.ok(fd >= 0, `${name} is pinned under ${pinDir}`);
  try {
    return use(fd);
  } finally {
    libcCalls.close(fd);
  }
}

function traceSwitch(pinDir: string): TraceSwitch {
  return withPinnedMap(pinDir, MAP_NAMES.traceSwitch, (fd) => traceSwitchCodec.decode(new KernelMap(fd).lookup(u32Codec.encode(0))!));
}

/** Reads (and so empties) the ring: how many records the programs wrote since it was last read. */
function drainRing(pinDir: string): number {
  return withPinnedMap(pinDir, MAP_NAMES.traceRing, (fd) => {
    let records = 0;
    const sample = koffi.register(() => {
      records++;
      return 0;
    }, koffi.pointer(ringSampleCallback));
    const ring = libbpf.ringBufferNew(fd, sample, null, null);
    assert.ok(ring, 'ring_buffer__new on the pinned ring');
    try {
      assert.ok(libbpf.ringBufferConsume(ring) >= 0);
    } finally {
      libbpf.ringBufferFree(ring);
      koffi.unregister(sample);
    }
    return records;
  });
}

async function eventually(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A running `socklb trace`, its output lines as they come. */
class Tracer {
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;

  constructor(controlSocket: string, args: string[]) {
    this.child = spawn(process.execPath, [SOCKLB, 'trace', '--control-socket', controlSocket, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.lines.push(line));
    this.exited = new Promise((resolve) => this.child.once('close', (code) => resolve(code)));
  }

  /** Resolves once the agent has accepted the trace: the programs write from then on. */
  async started(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`socklb trace did not start: ${this.stderr.join('\n')}`)), 10_000);
      createInterface({ input: this.child.stderr! }).on('line', (line) => {
        this.stderr.push(line);
        if (line.startsWith('tracing ')) {
          clearTimeout(timer);
          resolve();
        }
      });
      void this.exited.then((code) => reject(new Error(`socklb trace exited with ${code}: ${this.stderr.join('\n')}`)));
    });
  }

  /** The events of a JSON trace. */
  events(): TraceRecord[] {
    return this.lines.flatMap((line) => {
      const message = JSON.parse(line) as TraceMessage;
      return 'event' in message ? [message.event] : [];
    });
  }

  async waitForEvents(count: number, what: string): Promise<TraceRecord[]> {
    await eventually(() => this.events().length >= count, `${count} events: ${what}; got ${JSON.stringify(this.events())}`);
    return this.events();
  }

  /** Ctrl-C; resolves to its exit code. */
  async stop(): Promise<number | null> {
    this.child.kill('SIGINT');
    return this.exited;
  }
}

describe('socklb trace', { skip, concurrency: false }, () => {
  const bed = new Testbed('trace');
  const { lab, pinDir } = bed;
  let pod: Pod;
  let alpha: Sandbox;
  let beta: Sandbox;
  let agent: RunningAgent;
  const tracers: Tracer[] = [];

  const trace = async (args: string[]) => {
    const tracer = new Tracer(agent.controlSocket, args);
    tracers.push(tracer);
    await tracer.started();
    return tracer;
  };
  const curl = async (sandbox: Sandbox, address: string) =>
    (await lab.exec(sandbox, ['curl', '--silent', '--show-error', '--max-time', '5', `http://${address}/`])).stdout;
  const refused = async (sandbox: Sandbox, target: string, udp = false) =>
    assert.deepEqual((await lab.runClient(sandbox, { target, port: 80, count: 1, udp })).errors, { ECONNREFUSED: 1 }, target);
  const startAgent = async () => {
    agent = await bed.startAgent([
      '--manifests',
      bed.manifests,
      '--sandboxes-only',
      '--pin-dir',
      pinDir,
      '--service-cluster-ip-range',
      '10.96.0.0/12',
    ]);
    for (const sandbox of [alpha, beta]) {
      const added = await socklb([
        'sandbox',
        'add',
        '--id',
        sandbox.name,
        '--cgroup',
        sandbox.cgroupPath,
        '--control-socket',
        agent.controlSocket,
      ]);
      assert.equal(added.code, 0, added.stderr);
    }
  };

  before(async () => {
    await bed.prepare();
    [pod, alpha, beta] = await Promise.all([lab.addPod('web'), lab.addSandbox('alpha'), lab.addSandbox('beta')]);
    const server = lab.spawn(pod, [process.execPath, '-e', HTTP_SERVER], { stdio: ['pipe', 'pipe', 'pipe'] });
    await waitForLine(server, 'ready', 10_000);
    await writeManifest(join(bed.manifests, 'services.yaml'), [
      service('web', [WEB], [{ name: 'http', port: 80, targetPort: 8080 }]),
      endpointSlice('web-v4', 'web', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
      service('empty', [EMPTY], [{ name: 'http', port: 80, targetPort: 8080 }]),
    ]);
    await startAgent();
  });

  after(async () => {
    for (const tracer of tracers) await tracer.stop();
    await bed.close();
  });

  it('writes nothing to the ring while no trace runs', async () => {
    drainRing(pinDir);
    const lostBefore = traceSwitch(pinDir).lost;
    assert.equal(await curl(alpha, WEB), 'hello from web');
    await refused(alpha, EMPTY);
    assert.equal(drainRing(pinDir), 0, 'records written with no trace running');
    assert.deepEqual(traceSwitch(pinDir), { enabled: false, lost: lostBefore });
  });

  it('shows the line of an HTTP request through a ClusterIP: the sandbox, the Service, the backend and its slot', async () => {
    const json = await trace(['-o', 'json']);
    const text = await trace([]);
    assert.equal(traceSwitch(pinDir).enabled, true);
    assert.equal(await curl(alpha, WEB), 'hello from web');
    const [event] = await json.waitForEvents(1, 'the curl');
    assert.ok(event);
    assert.deepEqual(
      { ...event, time: undefined, cgroupId: undefined, netnsCookie: undefined, socketCookie: undefined },
      {
        time: undefined,
        sandbox: 'alpha',
        cgroup: alpha.cgroupPath,
        cgroupId: undefined,
        netnsCookie: undefined,
        socketCookie: undefined,
        protocol: 'TCP',
        hook: 'connect',
        frontend: `${WEB}:80`,
        service: 'default/web:http',
        backend: `${pod.ipv4}:8080`,
        slot: 0,
        result: 'translated',
      },
    );
    assert.ok(Math.abs(Date.parse(event.time) - Date.now()) < 10_000, `time ${event.time}`);
    for (const cookie of [event.cgroupId, event.netnsCookie, event.socketCookie]) assert.match(cookie, /^[1-9]\d*$/);
    await eventually(() => text.lines.length >= 1, 'the text line');
    assert.equal(
      text.lines[0],
      `${event.time} sandbox alpha netns ${event.netnsCookie} socket ${event.socketCookie} TCP connect ${WEB}:80 default/web:http -> ${pod.ipv4}:8080 slot 0`,
    );
  });

  it('shows refusals with their reason: a Service without endpoints, an unserved address of the range', async () => {
    const json = await trace(['-o', 'json']);
    await refused(alpha, EMPTY);
    await refused(alpha, UNALLOCATED);
    await refused(alpha, WEB, true);
    const events = await json.waitForEvents(3, 'the three refusals');
    assert.deepEqual(
      events.map(({ frontend, service, protocol, result, backend }) => ({ frontend, service, protocol, result, backend })),
      [
        { frontend: `${EMPTY}:80`, service: 'default/empty:http', protocol: 'TCP', result: 'no-backend', backend: undefined },
        { frontend: `${UNALLOCATED}:80`, service: undefined, protocol: 'TCP', result: 'unserved-address', backend: undefined },
        // The Service's port 80 is TCP only: UDP to it is a cluster IP on a port no frontend serves.
        { frontend: `${WEB}:80`, service: undefined, protocol: 'UDP', result: 'unserved-address', backend: undefined },
      ],
    );
  });

  it('shows only the calls its filters match: sandbox, Service, protocol', async () => {
    const filtered = await trace(['-o', 'json', '--sandbox', 'beta', '--service', 'default/web', '--protocol', 'tcp']);
    await curl(alpha, WEB);
    await refused(beta, EMPTY);
    await refused(beta, WEB, true);
    await curl(beta, WEB);
    const events = await filtered.waitForEvents(1, "beta's curl");
    // Events come in the order the programs wrote them: any the filter let through wrongly came first.
    assert.deepEqual(
      events.map(({ sandbox, service, protocol, result }) => ({ sandbox, service, protocol, result })),
      [{ sandbox: 'beta', service: 'default/web:http', protocol: 'TCP', result: 'translated' }],
    );
  });

  it('refuses a filter naming a sandbox that is not registered, in one sentence', async () => {
    const result = await socklb(['trace', '--sandbox', 'nobody', '--control-socket', agent.controlSocket]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim(), 'socklb: trace --sandbox nobody: no such sandbox is registered');
  });

  it('turns the switch off when the last tracer leaves, and the programs write nothing more', async () => {
    for (const tracer of tracers.splice(0)) assert.equal(await tracer.stop(), 0);
    await eventually(() => !traceSwitch(pinDir).enabled, 'the switch off');
    drainRing(pinDir);
    const lost = traceSwitch(pinDir).lost;
    await curl(alpha, WEB);
    await refused(beta, UNALLOCATED);
    assert.equal(drainRing(pinDir), 0);
    assert.deepEqual(traceSwitch(pinDir), { enabled: false, lost });
  });

  it('an agent that starts turns off a switch left on by one that died mid-trace', async () => {
    await trace([]);
    await agent.stop('SIGKILL');
    assert.equal(traceSwitch(pinDir).enabled, true, 'left on by the killed agent');
    for (const tracer of tracers.splice(0)) await tracer.stop();
    await startAgent();
    assert.equal(traceSwitch(pinDir).enabled, false);
    assert.ok(agent.logs.some((line) => String(line.msg).startsWith('trace switch found on')));
    drainRing(pinDir);
    await curl(alpha, WEB);
    assert.equal(drainRing(pinDir), 0);
  });
});
