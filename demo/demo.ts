// `make demo`: socklb on the embedded default (manifests, no cluster), narrated for a person
// watching and checked for CI. A throw-away lab (test/lab) holds a sandbox and three pods; the agent
// is attached to the sandbox's cgroup only; each section changes one thing and shows what the
// sandbox sees. Every check prints a ✓ line; the first surprise ends the demo with exit code 1.
// Whatever the demo creates is removed at the end, after a failure, on SIGINT/SIGTERM and when the
// time limit is reached. See README.md in this folder.

import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { stringify } from 'yaml';
import { Lab, type ClientReport, type Pod, type Sandbox } from '../test/lab/lab.js';
import { listNetns } from '../test/lab/netns.js';
import {
  endpointSlice,
  manifestDirectory,
  service,
  services,
  socklb,
  startAgent,
  waitForServices,
  writeManifest,
  type RunningAgent,
} from '../test/integration/support.js';
import { startDnsmasq } from '../test/integration/udp-support.js';

/** The demo's own pins, so that no other agent's datapath is touched. */
const PIN_DIR = '/sys/fs/bpf/socklb-demo';
const CLUSTER_IPV4 = '10.96.0.10';
const CLUSTER_IPV6 = 'fd00:96::10';
const DNS_CLUSTER_IP = '10.96.0.53';
const DNS_NAME = 'web.demo.test';
const SERVICE_PORT = { name: 'http', port: 80, targetPort: 'http' };
const SLICE_PORT = { name: 'http', port: 8080 };
const POD_NAMES = ['pod-a', 'pod-b', 'pod-c'];
const REQUESTS = 30;
/** Per client run: a hung backend shows as ETIMEDOUT within this, not as a stalled demo. */
const CLIENT_DEADLINE_MS = 10_000;
/** A manifest edit shows in the maps within a second; polling spawns the CLI, slow on a loaded machine. */
const SYNC_TIMEOUT_MS = 15_000;
/** A run takes about 6 s; past this something hangs and the demo gives up (and cleans up). */
const TIME_LIMIT_MS = 45_000;
/** Teardown is bounded too: a leftover is swept by the next run (Lab.sweepStale, socklb cleanup). */
const TEARDOWN_LIMIT_MS = 20_000;

/** Everything the demo creates lives here, so that every way out can remove it. */
const lab = new Lab();
let manifestDir: string | undefined;
/** The start as well as the agent: a Ctrl-C while it starts must still stop it. */
let agent: Promise<RunningAgent> | undefined;
let checks = 0;
/** Set by the first way out (end, failure, signal, time limit); see exit(). */
let exiting: Promise<never> | undefined;

class DemoFailure extends Error {}

/** What the steps act on. */
interface Scene {
  sandbox: Sandbox;
  pods: Pod[];
  /** The manifest file the agent watches (its directory, to be exact). */
  manifest: string;
}

// ── what the reader sees ──────────────────────────────────────────────────────────────────────

/** Once the demo is on its way out, a step still running stops at its next line instead of talking over the cleanup. */
function assertNotExiting(): void {
  if (exiting !== undefined) throw new DemoFailure('stopped');
}

function section(title: string): void {
  assertNotExiting();
  console.log(`\n━━ ${title} ${'━'.repeat(Math.max(3, 78 - title.length))}`);
}

function say(text: string): void {
  assertNotExiting();
  for (const line of text.split('\n')) console.log(line === '' ? '' : `   ${line}`);
}

/** The demo checks what it shows: a ✓ line when `actual` is `expected`, else the demo fails. */
function check(claim: string, actual: unknown, expected: unknown): void {
  assertNotExiting();
  if (!isDeepStrictEqual(actual, expected)) {
    throw new DemoFailure(`${claim}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
  checks++;
  console.log(` ✓ ${claim}`);
}

/** One bar per pod, empty ones included, so that a drained pod shows as a gap. */
function showSpread(report: ClientReport): void {
  for (const name of POD_NAMES) {
    const hits = report.hits[name] ?? 0;
    say(`${name}  ${'█'.repeat(hits).padEnd(REQUESTS)} ${String(hits).padStart(2)}`);
  }
  const errors = Object.entries(report.errors).map(([code, count]) => `${code} ×${count}`);
  say(`${report.attempts} requests in ${report.elapsedMs} ms${errors.length > 0 ? `, failed: ${errors.join(', ')}` : ', none failed'}`);
}

function url(clusterIP: string): string {
  return clusterIP.includes(':') ? `http://[${clusterIP}]/` : `http://${clusterIP}/`;
}

// ── the world the demo builds ─────────────────────────────────────────────────────────────────

/** `count` HTTP GETs from the sandbox, each on a new connection, so each one goes through connect(). */
function request(sandbox: Sandbox, target: string, count: number, inCgroup = true): Promise<ClientReport> {
  return lab.runClient(sandbox, { target, port: 80, count, deadlineMs: CLIENT_DEADLINE_MS }, { inCgroup });
}

/** The web Service and one EndpointSlice per family; `notReady` pods are listed with ready: false. */
function webManifest(pods: readonly Pod[], notReady: readonly Pod[] = []): object[] {
  const endpoints = (family: 'ipv4' | 'ipv6') => pods.map((pod) => ({ ip: pod[family], ready: !notReady.includes(pod) }));
  return [
    service('web', [CLUSTER_IPV4, CLUSTER_IPV6], [SERVICE_PORT]),
    endpointSlice('web-ipv4', 'web', 'IPv4', [SLICE_PORT], endpoints('ipv4')),
    endpointSlice('web-ipv6', 'web', 'IPv6', [SLICE_PORT], endpoints('ipv6')),
  ];
}

/** Polls `socklb services` until both web frontends list `count` backends; resolves to the ms it took. */
function waitForWebBackends(count: number): Promise<number> {
  return waitForServices(
    PIN_DIR,
    (frontends) => {
      const web = frontends.filter((frontend) => frontend.service === 'default/web:http');
      return web.length === 2 && web.every((frontend) => frontend.backends.length === count);
    },
    SYNC_TIMEOUT_MS,
  );
}

// ── the steps ─────────────────────────────────────────────────────────────────────────────────

async function buildNetwork(): Promise<Pick<Scene, 'sandbox' | 'pods'>> {
  section('1. A sandbox and three backend pods, in network namespaces of their own');
  const [sandbox, ...pods] = await Promise.all([lab.addSandbox('sandbox'), ...POD_NAMES.map((name) => lab.addPod(name))]);
  await Promise.all(pods.map((pod) => lab.startEchoServer(pod, { name: pod.name, port: 8080 })));
  say(`sandbox  ${sandbox.ipv4.padEnd(11)} ${sandbox.ipv6.padEnd(12)} netns ${sandbox.netns}, cgroup ${sandbox.cgroupPath}`);
  for (const pod of pods) say(`${pod.name}    ${pod.ipv4.padEnd(11)} ${pod.ipv6.padEnd(12)} HTTP on :8080 answers "${pod.name}"`);
  say('All are on one bridge; nothing routes the service range 10.96.0.0/12 anywhere.');
  const untranslated = await request(sandbox, CLUSTER_IPV4, 1);
  check(`without socklb, ${url(CLUSTER_IPV4)} fails at once in the sandbox (ENETUNREACH)`, untranslated.errors, { ENETUNREACH: 1 });
  return { sandbox, pods };
}

async function writeExampleManifests(pods: Pod[]): Promise<string> {
  section('2. The manifests: a Service and its EndpointSlices, as `kubectl get -o yaml` prints them');
  manifestDir = await manifestDirectory();
  const manifest = join(manifestDir, 'web.yaml');
  const [webService, ipv4Slice] = webManifest(pods);
  await writeManifest(manifest, webManifest(pods));
  say(`${manifest} holds the Service, the IPv4 slice and the IPv6 slice (web-ipv6, not shown):\n`);
  say(stringify(webService).trimEnd());
  say('---');
  say(stringify(ipv4Slice).trimEnd());
  return manifest;
}

async function startAgentAndBalance({ sandbox, manifest }: Scene): Promise<void> {
  section('3. The agent, attached to the sandbox cgroup only; requests to the ClusterIP');
  // No metrics or health ports: the demo must not collide with an agent already running here.
  const args = [
    '--manifests',
    dirname(manifest),
    '--cgroup',
    sandbox.cgroupPath,
    '--pin-dir',
    PIN_DIR,
    '--metrics-bind-address',
    '',
    '--healthz-bind-address',
    '',
  ];
  const started = performance.now();
  agent = startAgent(args);
  const { logs } = await agent;
  say(`$ socklb run ${args.map((arg) => arg || "''").join(' ')}`);
  say(`serving after ${(performance.now() - started).toFixed(0)} ms; its log: ${logs.map((line) => `"${String(line.msg)}"`).join(', ')}`);

  const first = await request(sandbox, CLUSTER_IPV4, 1);
  say(`\nGET ${url(CLUSTER_IPV4)} from the sandbox → "${Object.keys(first.hits).join(', ')}"`);
  check('answered by one of the pods', [first.errors, Object.values(first.hits)], [{}, [1]]);
  for (const clusterIP of [CLUSTER_IPV4, CLUSTER_IPV6]) {
    say(`\n${REQUESTS} × GET ${url(clusterIP)}, a new connection each:`);
    const report = await request(sandbox, clusterIP, REQUESTS);
    showSpread(report);
    check('every request answered, by all three pods', [report.errors, Object.keys(report.hits).sort()], [{}, POD_NAMES]);
    const peer = clusterIP.includes(':') ? `[${clusterIP}]:80` : `${clusterIP}:80`;
    check(`getpeername() says ${peer}: the application never sees a pod address`, report.peers, [peer]);
  }
}

async function showServicesTable({ pods }: Scene): Promise<void> {
  section('4. `socklb services`: what the datapath holds, read back from the pinned maps');
  const table = await socklb(['services', '--pin-dir', PIN_DIR]);
  say(`$ socklb services --pin-dir ${PIN_DIR}\n${table.stdout.trimEnd()}`);
  check('socklb services exits 0', table.code, 0);
  const backends = Object.fromEntries((await services(PIN_DIR)).map((frontend) => [frontend.frontend, [...frontend.backends].sort()]));
  check('each ClusterIP lists the three pods on :8080', backends, {
    [`${CLUSTER_IPV4}:80/TCP`]: pods.map((pod) => `${pod.ipv4}:8080`).sort(),
    [`[${CLUSTER_IPV6}]:80/TCP`]: pods.map((pod) => `[${pod.ipv6}]:8080`).sort(),
  });
}

async function resolveThroughClusterIP({ sandbox, pods, manifest }: Scene): Promise<void> {
  section('4b. DNS through a ClusterIP: a kube-dns-like Service in front of dnsmasq');
  const dnsPod = pods[0] as Pod;
  await startDnsmasq(lab, dnsPod, DNS_NAME, { ipv4: CLUSTER_IPV4, ipv6: CLUSTER_IPV6 });
  const ports = [
    { name: 'dns', port: 53, protocol: 'UDP' as const },
    { name: 'dns-tcp', port: 53, protocol: 'TCP' as const },
  ];
  await writeManifest(join(dirname(manifest), 'kube-dns.yaml'), [
    service('kube-dns', [DNS_CLUSTER_IP], ports),
    endpointSlice('kube-dns-1', 'kube-dns', 'IPv4', ports, [{ ip: dnsPod.ipv4 }]),
  ]);
  await waitForServices(
    PIN_DIR,
    (frontends) =>
      frontends.filter((frontend) => frontend.service.startsWith('default/kube-dns')).every((f) => f.backends.length === 1) &&
      frontends.some((f) => f.frontend === `${DNS_CLUSTER_IP}:53/UDP`),
    SYNC_TIMEOUT_MS,
  );
  say(`dnsmasq runs in ${dnsPod.name}; Service kube-dns has ClusterIP ${DNS_CLUSTER_IP}, port 53 over UDP and TCP.`);
  for (const transport of ['+notcp', '+tcp']) {
    const { stdout, stderr } = await lab.exec(sandbox, ['dig', `@${DNS_CLUSTER_IP}`, DNS_NAME, transport, '+tries=1', '+timeout=2']);
    const answer = stdout.split('\n').find((line) => line.startsWith(DNS_NAME));
    say(
      `$ dig @${DNS_CLUSTER_IP} ${DNS_NAME} ${transport}   (in the sandbox)\n` +
        `${answer ?? '(no answer)'}\n${stdout.split('\n').find((line) => line.startsWith(';; SERVER')) ?? ''}`,
    );
    check(
      `dig over ${transport === '+tcp' ? 'TCP' : 'UDP'} gets ${CLUSTER_IPV4}, from ${DNS_CLUSTER_IP}#53, ` +
        `with no "reply from unexpected source"`,
      [answer?.split(/\s+/).pop(), /unexpected source/.test(stdout + stderr)],
      [CLUSTER_IPV4, false],
    );
  }
}

async function drainOneBackend({ sandbox, pods, manifest }: Scene): Promise<void> {
  section('5. Draining a backend: pod-c turns not ready in the EndpointSlices');
  const drained = pods.filter((pod) => pod.name === 'pod-c');
  await writeManifest(manifest, webManifest(pods, drained));
  say(`${manifest} now says "ready: false" for pod-c (the agent watches the file).`);
  const latency = await waitForWebBackends(2);
  say(`The datapath lists two backends ${latency.toFixed(0)} ms later (polled with \`socklb services -o json\`).`);
  say(`\n${REQUESTS} × GET ${url(CLUSTER_IPV4)}:`);
  const report = await request(sandbox, CLUSTER_IPV4, REQUESTS);
  showSpread(report);
  check('every request answered, by pod-a and pod-b only', [report.errors, Object.keys(report.hits).sort()], [{}, ['pod-a', 'pod-b']]);
}

async function showOutsideTheCgroup({ sandbox }: Scene): Promise<void> {
  section('6a. The same network namespace, outside the sandbox cgroup: not translated');
  say("The client runs in the sandbox's namespace but stays in the demo's own cgroup, where no socklb");
  say('program is attached; its connect() keeps the ClusterIP, which no route leads to.');
  const report = await request(sandbox, CLUSTER_IPV4, 3, false);
  check(`3 × GET ${url(CLUSTER_IPV4)} fail at once with ENETUNREACH`, report.errors, { ENETUNREACH: 3 });
}

async function showNoEndpoints({ sandbox, pods, manifest }: Scene): Promise<void> {
  section('6b. A Service without endpoints: connect() is refused at once');
  await writeManifest(manifest, webManifest([]));
  say(`${manifest} now lists no endpoints at all; the datapath follows in ${(await waitForWebBackends(0)).toFixed(0)} ms.`);
  for (const clusterIP of [CLUSTER_IPV4, CLUSTER_IPV6]) {
    const report = await request(sandbox, clusterIP, 5);
    check(
      `5 × GET ${url(clusterIP)}: ECONNREFUSED in ${report.elapsedMs} ms, no timeout (under 1 s)`,
      [report.errors, report.elapsedMs < 1000],
      [{ ECONNREFUSED: 5 }, true],
    );
  }
  await writeManifest(manifest, webManifest(pods));
  say(`The three pods are back in ${(await waitForWebBackends(3)).toFixed(0)} ms.`);
}

async function stopAndCleanUp({ sandbox, manifest }: Scene): Promise<void> {
  section('7. Stopping the agent, then `socklb cleanup`');
  const running = await agent;
  await running?.stop('SIGTERM');
  say(`SIGTERM: the agent says "${String(running?.logs.at(-1)?.msg)}"`);
  check('the agent exits with 0', running?.process.exitCode, 0);
  const unattended = await request(sandbox, CLUSTER_IPV4, 10);
  check(
    'with no agent running, 10 × GET still answered: the pinned programs keep serving',
    [unattended.errors, unattended.attempts],
    [{}, 10],
  );

  const cleanup = await socklb(['cleanup', '--pin-dir', PIN_DIR]);
  say(`\n$ socklb cleanup --pin-dir ${PIN_DIR}\n${cleanup.stdout.trimEnd()}`);
  check('socklb cleanup exits 0', cleanup.code, 0);
  const after = await request(sandbox, CLUSTER_IPV4, 2);
  check(`${url(CLUSTER_IPV4)} is unreachable again (ENETUNREACH)`, after.errors, { ENETUNREACH: 2 });

  await lab.close();
  await rm(dirname(manifest), { recursive: true, force: true });
  say('\nThe lab is closed (processes killed, namespaces deleted, cgroups removed), the manifests deleted.');
  check(
    `no namespace of the lab in \`ip netns list\``,
    (await listNetns()).filter((name) => name.startsWith(lab.prefix)),
    [],
  );
  check(`no cgroup ${dirname(sandbox.cgroupPath)}`, existsSync(dirname(sandbox.cgroupPath)), false);
  check(`no pin directory ${PIN_DIR}`, existsSync(PIN_DIR), false);
  check(`no manifest directory ${dirname(manifest)}`, existsSync(dirname(manifest)), false);
}

// ── the way in and the ways out ───────────────────────────────────────────────────────────────

/** `socklb cleanup` of the demo's pin directory, unless there is none (the CLI would find nothing to do). */
async function removePins(): Promise<void> {
  if (!existsSync(PIN_DIR)) return;
  const cleanup = await socklb(['cleanup', '--pin-dir', PIN_DIR]);
  if (cleanup.code !== 0) throw new Error(`socklb cleanup --pin-dir ${PIN_DIR}: ${cleanup.stderr.trim()}`);
}

/** Leftovers of a demo that was killed (SIGKILL leaves no chance to clean up). */
async function sweepLeftovers(): Promise<void> {
  await Lab.sweepStale();
  await removePins();
}

/** Removes whatever exists of the demo's world; every step is attempted and idempotent. */
async function tearDown(): Promise<unknown[]> {
  const failures: unknown[] = [];
  const attempt = async (step: () => Promise<unknown>) => step().catch((error: unknown) => failures.push(error));
  // A start that failed left no agent to stop.
  await attempt(async () => (await agent?.catch(() => undefined))?.stop());
  await attempt(removePins);
  await attempt(() => lab.close());
  await attempt(async () => manifestDir && rm(manifestDir, { recursive: true, force: true }));
  return failures;
}

/** The one way out: tears down, then exits. Later calls (a second Ctrl-C, the failing step) wait for the first. */
function exit(code: number, reason?: string): Promise<never> {
  exiting ??= (async () => {
    if (reason !== undefined) console.log(`\n ✗ ${reason}\n   cleaning up...`);
    setTimeout(() => {
      console.error(` ✗ cleanup did not finish within ${TEARDOWN_LIMIT_MS / 1000} s; the next run sweeps what is left`);
      process.exit(1);
    }, TEARDOWN_LIMIT_MS);
    const failures = await tearDown();
    for (const failure of failures) console.error(` ✗ cleanup: ${failure instanceof Error ? failure.message : String(failure)}`);
    if (reason !== undefined && failures.length === 0) console.log('   cleaned up: nothing of the demo is left');
    process.exit(failures.length > 0 ? Math.max(code, 1) : code);
  })();
  return exiting;
}

function explain(error: unknown): string {
  if (error instanceof DemoFailure) return error.message;
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a cause is any caught value, shown as String() shows it
  const cause = error instanceof Error && error.cause !== undefined ? `\n   cause: ${String(error.cause)}` : '';
  return `${error instanceof Error ? error.message : String(error)}${cause}`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the demo needs root (network namespaces, cgroups, BPF): run `sudo make demo`');
  const started = performance.now();
  console.log('socklb demo: Kubernetes ClusterIPs translated at connect() by eBPF cgroup hooks, from manifests.');
  await sweepLeftovers();
  const { sandbox, pods } = await buildNetwork();
  const scene: Scene = { sandbox, pods, manifest: await writeExampleManifests(pods) };
  await startAgentAndBalance(scene);
  await showServicesTable(scene);
  await resolveThroughClusterIP(scene);
  await drainOneBackend(scene);
  await showOutsideTheCgroup(scene);
  await showNoEndpoints(scene);
  await stopAndCleanUp(scene);
  section(`Done: ${checks} checks passed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

process.on('SIGINT', () => void exit(130, 'interrupted (SIGINT)'));
process.on('SIGTERM', () => void exit(143, 'terminated (SIGTERM)'));
setTimeout(() => void exit(1, `the demo did not finish within ${TIME_LIMIT_MS / 1000} s`), TIME_LIMIT_MS);
try {
  await main();
  await exit(0);
} catch (error) {
  await exit(1, explain(error));
}
