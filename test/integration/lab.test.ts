// The lab itself, without socklb: the namespaces, addresses, processes and cleanup that the
// socklb integration tests, the demo and the benchmarks build on.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { findCgroup2Root } from '../lab/cgroup.js';
import { Lab, type LabNamespace } from '../lab/lab.js';
import { execedAs } from '../lab/processes.js';

const execFileAsync = promisify(execFile);
const PORT = 8080;

test('lab: two pods and a sandbox on a bridge', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('SKIPPED: the lab needs root (network namespaces, veths, cgroups): run this test as root');
    return;
  }
  await Lab.sweepStale();
  const lab = new Lab();
  t.after(() => lab.close());

  let started = performance.now();
  const [podA, podB, sandbox] = await Promise.all([lab.addPod('a'), lab.addPod('b'), lab.addSandbox('sandbox')]);
  await Promise.all([
    lab.startEchoServer(podA, { name: 'pod-a', port: PORT, udp: true }),
    lab.startEchoServer(podB, { name: 'pod-b', port: PORT, udp: true }),
  ]);
  t.diagnostic(`setup (3 namespaces, 2 echo servers): ${Math.round(performance.now() - started)} ms`);

  await t.test('the sandbox reaches each pod directly, TCP and UDP, IPv4 and IPv6', async () => {
    for (const [pod, name] of [
      [podA, 'pod-a'],
      [podB, 'pod-b'],
    ] as const) {
      for (const target of [pod.ipv4, pod.ipv6]) {
        for (const udp of [false, true]) {
          const report = await lab.runClient(sandbox, { target, port: PORT, count: 3, udp, timeoutMs: 2000 });
          const what = `${udp ? 'UDP' : 'TCP'} ${target}`;
          assert.deepEqual(report.hits, { [name]: 3 }, what);
          assert.deepEqual(report.errors, {}, what);
          assert.deepEqual(report.peers, [target.includes(':') ? `[${target}]:${PORT}` : `${target}:${PORT}`], what);
        }
      }
    }
  });

  await t.test('a ClusterIP connect fails at once with ENETUNREACH: nothing routes the service range', async () => {
    for (const target of ['10.96.0.10', 'fd00:96::a']) {
      for (const udp of [false, true]) {
        const report = await lab.runClient(sandbox, { target, port: 80, count: 2, udp, timeoutMs: 2000 });
        assert.deepEqual(report.errors, { ENETUNREACH: 2 }, `${udp ? 'UDP' : 'TCP'} ${target}`);
        assert.ok(report.elapsedMs < 1000, `${target}: ${report.elapsedMs} ms, not at once`);
      }
    }
  });

  await t.test('failures are counted by errno code: a port without a server is ECONNREFUSED', async () => {
    for (const udp of [false, true]) {
      const report = await lab.runClient(sandbox, { target: podA.ipv4, port: 9, count: 2, udp, timeoutMs: 2000 });
      assert.deepEqual(report.errors, { ECONNREFUSED: 2 }, udp ? 'UDP' : 'TCP');
      assert.deepEqual(report.hits, {}, udp ? 'UDP' : 'TCP');
    }
  });

  const inside = lab.spawn(sandbox, ['sleep', '30']);
  const outside = lab.spawn(sandbox, ['sleep', '30'], { inCgroup: false });

  await t.test('a sandbox process is in its cgroup and netns; with inCgroup: false only in its netns', async () => {
    const cgroupRoot = await findCgroup2Root();
    const sandboxCgroup = `/${path.relative(cgroupRoot, sandbox.cgroupPath)}`;
    const ownCgroup = await cgroupOf('self');
    assert.notEqual(ownCgroup, sandboxCgroup);

    const insidePid = await execedAs(inside.pid!, 'sleep');
    assert.equal(await cgroupOf(insidePid), sandboxCgroup);
    assert.equal(await netnsOf(insidePid), await netnsOf(sandbox));

    const outsidePid = await execedAs(outside.pid!, 'sleep');
    assert.equal(await cgroupOf(outsidePid), ownCgroup);
    assert.equal(await netnsOf(outsidePid), await netnsOf(sandbox));
  });

  await t.test('a second lab with its own subnets coexists and is isolated from the first', async () => {
    const other = new Lab({ ipv4Subnet: '10.245.0.0/24', ipv6Subnet: 'fd00:245::/64' });
    try {
      const [server, client] = await Promise.all([other.addPod('c'), other.addPod('d')]);
      assert.equal(server.ipv4, '10.245.0.2');
      assert.equal(server.ipv6, 'fd00:245::2');
      await other.startEchoServer(server, { name: 'pod-c', port: PORT });
      assert.deepEqual((await other.runClient(client, { target: server.ipv6, port: PORT, count: 1 })).hits, { 'pod-c': 1 });
      const across = await lab.runClient(sandbox, { target: server.ipv4, port: PORT, count: 1 });
      assert.deepEqual(across.errors, { ENETUNREACH: 1 });
    } finally {
      await other.close();
    }
    assert.deepEqual(await labNamespaces(other), []);
  });

  await t.test('close() kills the processes and removes the namespaces and cgroups; twice is fine', async () => {
    started = performance.now();
    await lab.close();
    t.diagnostic(`teardown: ${Math.round(performance.now() - started)} ms`);
    await lab.close();

    assert.deepEqual(await labNamespaces(lab), []);
    await assert.rejects(access(sandbox.cgroupPath), { code: 'ENOENT' });
    await assert.rejects(access(path.dirname(sandbox.cgroupPath)), { code: 'ENOENT' });
    for (const child of [inside, outside]) assert.notEqual(child.exitCode ?? child.signalCode, null);
    await assert.rejects(lab.addPod('late'), /closed/);
  });
});

/** The lab's names in `ip netns list`. */
async function labNamespaces(lab: Lab): Promise<string[]> {
  const { stdout } = await execFileAsync('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(`${lab.prefix}-`));
}

/** The cgroup v2 path of a process, from /proc/PID/cgroup ("0::/path"). */
async function cgroupOf(pid: number | 'self'): Promise<string> {
  const line = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n').find((entry) => entry.startsWith('0::'));
  assert.ok(line, `/proc/${pid}/cgroup has no cgroup v2 line`);
  return line.slice(3);
}

/** The network namespace of a process ("net:[inode]"), or the one a lab namespace is. */
async function netnsOf(target: number | LabNamespace): Promise<string> {
  if (typeof target === 'number') return readlink(`/proc/${target}/ns/net`);
  return `net:[${(await stat(target.netnsPath)).ino}]`;
}
