// What the integration tests share: the socklb CLI as a child process, the
// agent with its logs, and manifests written as kubectl would print them.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess, execFile } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import type { FrontendDescription } from '../../src/datapath/dump.js';

export const SOCKLB = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const execFileAsync = promisify(execFile);

/** Why a privileged test cannot run here, or undefined when it can. */
export function missingPrivileges(): string | undefined {
  return process.getuid?.() === 0
    ? undefined
    : 'SKIPPED: integration tests need root (network namespaces, cgroups, BPF); run `sudo make test`';
}

/** Runs the CLI; `entry` is another build of it (the bundle, dist/socklb.js); `input` goes to its stdin. */
export async function socklb(args: string[], entry = SOCKLB, input = ''): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const run = execFileAsync(process.execPath, [entry, ...args], { timeout: 30_000 });
    run.child.stdin?.end(input);
    const { stdout, stderr } = await run;
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; code?: number };
    return { stdout: failed.stdout ?? '', stderr: failed.stderr ?? '', code: failed.code ?? -1 };
  }
}

/** A refusal as the CLI must give it: one sentence on stderr, no stack trace. */
export function assertOneSentence(stderr: string): void {
  assert.match(stderr, /^socklb: [^\n]+\n$/, `one line on stderr, got ${JSON.stringify(stderr)}`);
  assert.doesNotMatch(stderr, /\bat .*\.js:\d+/, 'no stack trace');
}

export async function services(pinDir: string): Promise<FrontendDescription[]> {
  const result = await socklb(['services', '-o', 'json', '--pin-dir', pinDir]);
  if (result.code !== 0) throw new Error(`socklb services failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as FrontendDescription[];
}

/** Polls `socklb services` until `accept` says yes; resolves to the time it took. */
export async function waitForServices(
  pinDir: string,
  accept: (frontends: FrontendDescription[]) => boolean,
  timeoutMs = 5_000,
): Promise<number> {
  const started = performance.now();
  let last: FrontendDescription[] = [];
  while (performance.now() - started < timeoutMs) {
    last = await services(pinDir);
    if (accept(last)) return performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`the datapath did not reach the expected state within ${timeoutMs} ms; last seen: ${JSON.stringify(last)}`);
}

export interface RunningAgent {
  readonly process: ChildProcess;
  /** Every log line so far, parsed. */
  readonly logs: Record<string, unknown>[];
  /** Loopback ports the agent chose for /metrics and /healthz. */
  readonly metricsPort: number;
  readonly healthzPort: number;
  /** Its control socket, for `socklb sandbox` and `socklb oci-hook`. */
  readonly controlSocket: string;
  /**
   * The first log line from index `from` on that `matches`, waited for: the agent logs what its
   * worker thread did after the worker has told it, which can be after the test saw the effect.
   */
  logLine(matches: (line: Record<string, unknown>) => boolean, from: number, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Sends `signal` and resolves once the process has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface StartOptions {
  /** Another build of the CLI (the bundle, dist/socklb.js); default build/src/cli/main.js. */
  entry?: string;
  /** How long it may take to start serving; default 10 s. */
  timeoutMs?: number;
  /** Default: one of its own (testControlSocket), so that no two agents ever share one. */
  controlSocket?: string;
  /** Added to the agent's environment (NODE_OPTIONS for a benchmark's diagnostics). */
  env?: Record<string, string>;
}

let controlSocketsMade = 0;

/** A control socket path of this test run's own, as testPinDirectory is for pins. */
export function testControlSocket(name = `agent${controlSocketsMade++}`): string {
  return `/run/socklb-test/${name}-${process.pid}.sock`;
}

/**
 * Starts `socklb run` and resolves once it says it is serving. Metrics and
 * health listen on loopback ports of the kernel's choice, so that agents of
 * several tests never collide.
 */
export async function startAgent(
  args: string[],
  { entry = SOCKLB, timeoutMs = 10_000, ...options }: StartOptions = {},
): Promise<RunningAgent> {
  const controlSocket = options.controlSocket ?? testControlSocket();
  const ports = ['--metrics-bind-address', '127.0.0.1:0', '--healthz-bind-address', '127.0.0.1:0'];
  const child = spawn(process.execPath, [entry, 'run', ...ports, '--control-socket', controlSocket, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  const logs: Record<string, unknown>[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => {
      // Nobody will stop an agent that never started: a test's teardown would wait on it forever.
      child.kill('SIGKILL');
      reject(new Error(`socklb run did not start serving within ${timeoutMs / 1000} s: ${JSON.stringify(logs.slice(-5))}`));
    }, timeoutMs);
    child.stderr?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        try {
          logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          logs.push({ msg: line });
        }
        if (logs[logs.length - 1]?.msg === 'serving') {
          clearTimeout(timer);
          resolve();
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`socklb run exited with ${code} before serving: ${JSON.stringify(logs.slice(-5))}`));
    });
  });
  const portOf = (message: string) => Number(logs.find((line) => line.msg === message)?.port);
  return {
    process: child,
    logs,
    metricsPort: portOf('serving metrics'),
    healthzPort: portOf('serving health'),
    controlSocket,
    async logLine(matches, from, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = logs.slice(from).find(matches);
        if (line !== undefined) return line;
        if (Date.now() > deadline)
          throw new Error(`no such log line within ${timeoutMs / 1000} s; the last: ${JSON.stringify(logs.slice(-5))}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
      // A killed agent leaves its socket file; one the test chose is the test's to handle.
      if (options.controlSocket === undefined) await rm(controlSocket, { force: true });
    },
  };
}

export async function manifestDirectory(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'socklb-manifests-'));
}

/**
 * Writes documents as one file, atomically as editors do: a List as `kubectl get -o json` prints
 * it for a .json path (what a test that rewrites a file a hundred times a second wants), else
 * multi-document YAML.
 */
export async function writeManifest(path: string, documents: object[]): Promise<void> {
  await writeFile(`${path}.tmp`, manifestText(path, documents));
  await rename(`${path}.tmp`, path);
}

/** The text writeManifest writes: JSON for a .json path, else YAML. */
export function manifestText(path: string, documents: object[]): string {
  return path.endsWith('.json')
    ? JSON.stringify({ apiVersion: 'v1', kind: 'List', items: documents })
    : documents.map((document) => stringify(document)).join('---\n');
}

export interface ServicePortSpec {
  name: string;
  port: number;
  protocol?: 'TCP' | 'UDP';
  targetPort?: number | string;
  nodePort?: number;
}

/** A Service as `kubectl get -o yaml` prints it, with its parts open to a test's edits. */
export interface ServiceManifest {
  apiVersion: 'v1';
  kind: 'Service';
  metadata: Record<string, unknown>;
  spec: Record<string, unknown> & { ports: Record<string, unknown>[] };
  status: Record<string, unknown>;
}

export function service(name: string, clusterIPs: string[], ports: ServicePortSpec[]): ServiceManifest {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default', uid: `uid-${name}`, resourceVersion: '1' },
    spec: {
      type: 'ClusterIP',
      clusterIP: clusterIPs[0],
      clusterIPs,
      ipFamilies: clusterIPs.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4')),
      ports: ports.map((port) => ({ protocol: 'TCP', targetPort: port.port, ...port })),
      sessionAffinity: 'None',
    },
    status: { loadBalancer: {} },
  };
}

export interface EndpointSpec {
  ip: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  nodeName?: string;
  /** The endpoint's zone, also given as its topology hint. */
  zone?: string;
}

export function endpointSlice(
  name: string,
  serviceName: string,
  family: 'IPv4' | 'IPv6',
  ports: ServicePortSpec[],
  endpoints: EndpointSpec[],
): object {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      namespace: 'default',
      labels: { 'kubernetes.io/service-name': serviceName, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    addressType: family,
    ports: ports.map((port) => ({ protocol: 'TCP', ...port })),
    endpoints: endpoints.map((endpoint) => ({
      addresses: [endpoint.ip],
      conditions: {
        ready: endpoint.ready ?? true,
        serving: endpoint.serving ?? endpoint.ready ?? true,
        terminating: endpoint.terminating ?? false,
      },
      nodeName: endpoint.nodeName ?? 'node-1',
      ...(endpoint.zone === undefined ? {} : { zone: endpoint.zone, hints: { forZones: [{ name: endpoint.zone }] } }),
    })),
  };
}

/** A bpffs directory of this test run's own, so that no other agent's pins are touched. */
export function testPinDirectory(name: string): string {
  return `/sys/fs/bpf/socklb-test-${name}-${process.pid}`;
}
