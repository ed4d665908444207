// The sandbox registry end to end: `socklb run --sandboxes-only` serves only the sandboxes added
// through its control socket, each added and removed while the others keep working, and a
// restarted agent (killed or not, in either mode) finds them all again in the pins.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findCgroup2Root, removeCgroup } from '../lab/cgroup.js';
import type { Pod, Sandbox } from '../lab/lab.js';
import {
  assertOneSentence,
  endpointSlice,
  missingPrivileges,
  service,
  socklb,
  testControlSocket,
  waitForServices,
  writeManifest,
  type RunningAgent,
} from './support.js';
import { Testbed } from './testbed.js';
import { EventStream, netnsInode, translatedSockets } from './udp-support.js';

const CLUSTER_IP = '10.96.0.10';
const UDP_CLUSTER_IP = '10.96.0.53';

describe('sandboxes added and removed at run time', { skip: missingPrivileges(), concurrency: false }, () => {
  const bed = new Testbed('sandbox');
  const { lab, pinDir } = bed;
  const controlSocket = testControlSocket('sandbox');
  let manifests: string;
  let pod: Pod;
  let udpPods: Pod[];
  let first: Sandbox;
  let second: Sandbox;
  let agent: RunningAgent | undefined;

  const start = async (args: string[] = ['--sandboxes-only']) => {
    agent = await bed.startAgent(['--manifests', manifests, '--pin-dir', pinDir, ...args], { controlSocket });
  };
  const sandboxCommand = (args: string[]) => socklb(['sandbox', ...args, '--control-socket', controlSocket]);
  const registered = async () => {
    const result = await sandboxCommand(['list', '-o', 'json']);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout) as { id: string; cgroup: string }[];
  };
  const add = async (id: string, sandbox: { cgroupPath: string }) => {
    const result = await sandboxCommand(['add', '--id', id, '--cgroup', sandbox.cgroupPath]);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout;
  };
  /** Sequential connections through the ClusterIP from the sandbox: its hits and its errors. */
  const probe = async (sandbox: Sandbox) => {
    const report = await lab.runClient(sandbox, { target: CLUSTER_IP, port: 80, count: 3, timeoutMs: 2000 });
    return { hits: report.hits, errors: report.errors };
  };
  const SERVED = { hits: { 'pod-a': 3 }, errors: {} };
  const UNSERVED = { hits: {}, errors: { ENETUNREACH: 3 } };
  /** The UDP Service backed by `backend` alone. */
  const udpBackedBy = async (backend: Pod) => {
    await writeManifest(join(manifests, 'udp.yaml'), [
      service('udp', [UDP_CLUSTER_IP], [{ name: 'echo', port: 53, protocol: 'UDP', targetPort: 8080 }]),
      endpointSlice('udp-a', 'udp', 'IPv4', [{ name: 'echo', port: 8080, protocol: 'UDP' }], [{ ip: backend.ipv4 }]),
    ]);
  };
  const linkDirectories = async () => (existsSync(`${pinDir}/links`) ? (await readdir(`${pinDir}/links`)).sort() : []);

  before(async () => {
    await bed.prepare();
    manifests = bed.manifests;
    [pod, first, second, ...udpPods] = await Promise.all([
      lab.addPod('pod-a'),
      lab.addSandbox('first'),
      lab.addSandbox('second'),
      lab.addPod('udp-a'),
      lab.addPod('udp-b'),
    ]);
    await Promise.all([pod, ...udpPods].map((each) => lab.startEchoServer(each, { name: each.name, port: 8080, udp: true })));
    await writeManifest(join(manifests, 'web.yaml'), [
      service('web', [CLUSTER_IP], [{ name: 'http', port: 80, targetPort: 8080 }]),
      endpointSlice('web-a', 'web', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
    ]);
    await udpBackedBy(udpPods[0]!);
    await start();
    await waitForServices(pinDir, (frontends) => frontends.length === 2);
  });

  after(() => bed.close());

  it('attaches to nothing with --sandboxes-only, not even the cgroup root', async () => {
    assert.deepEqual(await registered(), []);
    assert.deepEqual(await linkDirectories(), []);
    assert.deepEqual(await probe(first), UNSERVED);
  });

  it('serves a sandbox once it is added, and a second one beside it', async () => {
    assert.equal(await add('first', first), `sandbox first added (cgroup ${first.cgroupPath})\n`);
    assert.deepEqual(await probe(first), SERVED);
    assert.deepEqual(await probe(second), UNSERVED, 'not added yet');
    await add('second', second);
    assert.deepEqual(await probe(second), SERVED);
    assert.deepEqual(await probe(first), SERVED);
    assert.deepEqual(await registered(), [
      { id: 'first', cgroup: first.cgroupPath },
      { id: 'second', cgroup: second.cgroupPath },
    ]);
  });

  it('serves a cgroup whose path has dots, as systemd names them (a .scope below a .slice)', async () => {
    const cgroupPath = join(second.cgroupPath, 'cri-containerd-1.scope');
    await mkdir(cgroupPath);
    try {
      assert.equal(await add('dotted', { cgroupPath }), `sandbox dotted added (cgroup ${cgroupPath})\n`);
      assert.ok((await registered()).some((sandbox) => sandbox.id === 'dotted'));
      assert.equal((await sandboxCommand(['remove', '--id', 'dotted'])).code, 0);
    } finally {
      await rmdir(cgroupPath);
    }
  });

  it("shows each sandbox's links in `socklb status`", async () => {
    const result = await socklb(['status', '-o', 'json', '--pin-dir', pinDir, '--metrics-bind-address', `127.0.0.1:${agent?.metricsPort}`]);
    assert.equal(result.code, 0, result.stderr);
    const { attachments } = JSON.parse(result.stdout) as {
      attachments: { cgroup: string; sandbox?: string; program: string; linkId: number }[];
    };
    const bySandbox = (id: string) => attachments.filter((link) => link.sandbox === id);
    for (const [id, sandbox] of [
      ['first', first],
      ['second', second],
    ] as const) {
      assert.equal(bySandbox(id).length, 9, `${id}: one link per program`);
      assert.ok(
        bySandbox(id).every((link) => link.cgroup === sandbox.cgroupPath && link.linkId > 0),
        `${id}: its links, on its cgroup`,
      );
    }
    assert.equal(attachments.length, 18, 'nothing else is attached');
  });

  it('answers the same add again with "unchanged"', async () => {
    assert.equal(await add('first', first), `sandbox first unchanged (cgroup ${first.cgroupPath})\n`);
  });

  it('attaches again on an unchanged add: a cgroup deleted and made anew at the same path is served', async () => {
    const reborn = await lab.addSandbox('reborn');
    const labCgroup = join(reborn.cgroupPath, '..');
    await add('reborn', reborn);
    assert.deepEqual(await probe(reborn), SERVED);
    await removeCgroup(reborn.cgroupPath, labCgroup);
    await mkdir(reborn.cgroupPath);
    assert.deepEqual(await probe(reborn), UNSERVED, 'the new cgroup has no programs: the old links died with the old one');
    assert.equal(await add('reborn', reborn), `sandbox reborn unchanged (cgroup ${reborn.cgroupPath})\n`);
    assert.deepEqual(await probe(reborn), SERVED);
    assert.equal((await sandboxCommand(['remove', '--id', 'reborn'])).code, 0);
  });

  it('stops serving a removed sandbox, unpins its links, and keeps serving the other', async () => {
    const result = await sandboxCommand(['remove', '--id', 'first']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `sandbox first removed (cgroup ${first.cgroupPath})\n`);
    assert.deepEqual(await probe(first), UNSERVED);
    assert.deepEqual(await probe(second), SERVED);
    assert.deepEqual(await readdir(`${pinDir}/links/sandboxes`), ['second']);
    assert.deepEqual(await registered(), [{ id: 'second', cgroup: second.cgroupPath }]);
  });

  it('refuses bad requests in one sentence each', async () => {
    // Removed with the lab's cgroup.
    const deep = join(first.cgroupPath, '..', ...['a', 'b', 'c'].map((letter) => letter.repeat(90)));
    await mkdir(deep, { recursive: true });
    const cgroupRoot = await findCgroup2Root();
    const cases: [string[], RegExp][] = [
      [['remove', '--id', 'nope'], /^socklb: no sandbox "nope" is registered\n$/],
      [
        ['add', '--id', 'second', '--cgroup', first.cgroupPath],
        /sandbox second is already registered with cgroup .*second; remove it first to register .*first/,
      ],
      [['add', '--id', 'other', '--cgroup', second.cgroupPath], /cgroup .*second is already registered as sandbox second/],
      [
        ['add', '--id', 'ghost', '--cgroup', `${first.cgroupPath}-missing`],
        /sandbox ghost: cgroup .*first-missing: no such cgroup directory/,
      ],
      [['add', '--id', 'v1', '--cgroup', '/tmp'], /sandbox v1: cgroup \/tmp: not inside a cgroup v2 hierarchy/],
      [['add', '--id', 'a/b', '--cgroup', first.cgroupPath], /sandbox id "a\/b": use 1-128 letters/],
      [
        ['add', '--id', 'host', '--cgroup', `${cgroupRoot}/`],
        /sandbox host: cgroup .* is the cgroup v2 root, which holds every process of the host/,
      ],
      [
        ['add', '--id', 'deep', '--cgroup', deep],
        /sandbox deep: cgroup .* is too deep to name its pins \(\d+ bytes encoded, at most 255\)/,
      ],
    ];
    for (const [args, message] of cases) {
      const result = await sandboxCommand(args);
      assert.equal(result.code, 1, args.join(' '));
      assertOneSentence(result.stderr);
      assert.match(result.stderr, message);
    }
    assert.deepEqual(await registered(), [{ id: 'second', cgroup: second.cgroupPath }], 'nothing registered by a refused request');
    assert.deepEqual(await readdir(`${pinDir}/links/sandboxes`), ['second'], 'nothing pinned by a refused request');
  });

  it('refuses a second agent on the same control socket before it changes anything', async () => {
    const result = await socklb([
      'run',
      '--manifests',
      manifests,
      '--pin-dir',
      pinDir,
      '--control-socket',
      controlSocket,
      '--metrics-bind-address',
      '',
      '--healthz-bind-address',
      '',
    ]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /socklb: control socket .*: another socklb agent is serving it; stop that one or choose another --control-socket\n$/,
    );
    assert.deepEqual(await linkDirectories(), ['sandboxes'], 'the refused agent attached nothing (it would have attached the cgroup root)');
    assert.deepEqual(await registered(), [{ id: 'second', cgroup: second.cgroupPath }]);
    assert.deepEqual(await probe(second), SERVED);
  });

  it('keeps the registry across a SIGKILL and restart with --sandboxes-only; the pins serve meanwhile', async () => {
    await add('first', first);
    await agent?.stop('SIGKILL');
    agent = undefined;
    const down = await sandboxCommand(['list']);
    assert.equal(down.code, 1);
    assertOneSentence(down.stderr);
    assert.match(down.stderr, /no socklb agent is serving the control socket .* \(ECONNREFUSED\); start one with `socklb run`/);
    assert.deepEqual(await probe(first), SERVED, 'the pinned links keep serving without an agent');
    await start();
    assert.deepEqual(await registered(), [
      { id: 'first', cgroup: first.cgroupPath },
      { id: 'second', cgroup: second.cgroupPath },
    ]);
    assert.ok(agent!.logs.some((line) => line.msg === 'adopted sandbox first'));
    assert.deepEqual(await probe(first), SERVED);
    assert.deepEqual(await probe(second), SERVED);
  });

  it('keeps the registry across a restart with --cgroup, and that cgroup is dropped again by --sandboxes-only', async () => {
    const third = await lab.addSandbox('third');
    await agent?.stop();
    await start(['--cgroup', third.cgroupPath]);
    assert.equal((await registered()).length, 2);
    for (const sandbox of [first, second, third]) assert.deepEqual(await probe(sandbox), SERVED, sandbox.name);
    await agent?.stop();
    await start();
    assert.deepEqual(await linkDirectories(), ['sandboxes'], 'the --cgroup link is detached, the sandboxes stay');
    assert.deepEqual(await probe(third), UNSERVED);
    assert.deepEqual(await probe(first), SERVED);
    assert.deepEqual(await probe(second), SERVED);
  });

  it('drops, on restart, a sandbox whose cgroup was removed while no agent ran', async () => {
    const labCgroup = join(first.cgroupPath, '..');
    const shortLived = join(labCgroup, 'short-lived');
    await mkdir(shortLived);
    try {
      await add('short-lived', { cgroupPath: shortLived });
      await agent?.stop();
      await removeCgroup(shortLived, labCgroup);
      await start();
      assert.deepEqual(
        (await registered()).map((sandbox) => sandbox.id),
        ['first', 'second'],
      );
      assert.deepEqual((await readdir(`${pinDir}/links/sandboxes`)).sort(), ['first', 'second']);
      assert.ok(agent!.logs.some((line) => line.msg === 'removed sandbox short-lived: its cgroup is gone'));
    } finally {
      await removeCgroup(shortLived, labCgroup);
    }
  });

  it("finds the sandboxes' sockets (socklb sockets) and destroys those stuck on a removed backend in a sandbox added at run time", async () => {
    const stream = EventStream.start(lab, second, [
      '--target',
      UDP_CLUSTER_IP,
      '--port',
      '53',
      '--source-port',
      '12353',
      '--connect',
      '--interval-ms',
      '20',
    ]);
    try {
      await stream.waitFor((event) => event.event === 'reply' && event.name === 'udp-a', 5000);
      const sockets = await translatedSockets(pinDir);
      const inSecond = await netnsInode(second);
      assert.ok(
        sockets.some(
          (socket) => socket.netns === inSecond && socket.translations.includes(`${UDP_CLUSTER_IP}:53 -> ${udpPods[0]!.ipv4}:8080`),
        ),
        `a translated socket in the sandbox's namespace: ${JSON.stringify(sockets)}`,
      );
      const from = stream.events.length;
      await udpBackedBy(udpPods[1]!);
      const failed = await stream.waitFor((event) => event.event === 'error', 5000, from);
      assert.ok(['ECONNABORTED', 'EDESTADDRREQ'].includes(failed.code ?? ''), `the socket was destroyed: ${failed.code}`);
      await stream.waitFor((event) => event.event === 'reply' && event.name === 'udp-b', 5000, from);
    } finally {
      await stream.stop();
    }
  });
});
