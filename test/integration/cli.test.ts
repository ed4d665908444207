// The command line's answers to a host that cannot run socklb: one sentence
// on stderr and a non-zero exit, never a stack trace.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { MAP_NAMES } from '../../src/datapath/layout.js';
import { pinnedMaps } from '../../src/pins/status.js';
import { findCgroup2Root, removeCgroup } from '../lab/cgroup.js';
import {
  assertOneSentence,
  manifestDirectory,
  missingPrivileges,
  service,
  services,
  SOCKLB,
  socklb,
  startAgent,
  testPinDirectory,
  writeManifest,
  type RunningAgent,
} from './support.js';

const execFileAsync = promisify(execFile);

describe('command line errors', { skip: missingPrivileges() }, () => {
  it('refuses to run without privileges', async () => {
    // setpriv drops to nobody with no capabilities, as an unprivileged user would run it.
    const result = await execFileAsync('setpriv', [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      '--inh-caps=-all',
      process.execPath,
      SOCKLB,
      'services',
    ]).catch((error: { code: number; stderr: string }) => error);
    assert.equal((result as { code?: number }).code, 1);
    assertOneSentence((result as { stderr: string }).stderr);
    assert.match((result as { stderr: string }).stderr, /needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN/);
  });

  it('names a --service-cluster-ip-range that is not a CIDR, before anything is loaded', async () => {
    const pinDir = testPinDirectory('cli-range');
    const result = await socklb([
      'run',
      '--manifests',
      '/nonexistent',
      '--service-cluster-ip-range',
      '10.96.0.0/12,10.96.0.0/40',
      '--pin-dir',
      pinDir,
    ]);
    assert.equal(result.code, 1);
    assertOneSentence(result.stderr);
    assert.match(result.stderr, /--service-cluster-ip-range 10\.96\.0\.0\/40: not a CIDR such as 10\.96\.0\.0\/12/);
    assert.deepEqual(await readdir(pinDir).catch(() => []), [], 'nothing was pinned');
  });

  it('names a --cgroup that does not exist', async () => {
    const pinDir = testPinDirectory('cli');
    const result = await socklb([
      'run',
      '--manifests',
      '/nonexistent',
      '--cgroup',
      '/sys/fs/cgroup/no-such-sandbox',
      '--pin-dir',
      pinDir,
      '--control-socket',
      '',
    ]);
    await socklb(['cleanup', '--pin-dir', pinDir]);
    assert.equal(result.code, 1);
    assertOneSentence(
      result.stderr
        .split('\n')
        .filter((line) => !line.startsWith('{'))
        .join('\n'),
    );
    assert.match(result.stderr, /--cgroup \/sys\/fs\/cgroup\/no-such-sandbox: (no such cgroup directory|not inside a cgroup v2 hierarchy)/);
  });

  it('refuses a --sync-period that is not a duration from 1s to 24h, before anything is touched', async () => {
    for (const period of ['5', '5ms', '25h', '1m30', 'five minutes']) {
      const result = await socklb(['run', '--sync-period', period]);
      assert.equal(result.code, 1, period);
      assertOneSentence(result.stderr);
      assert.ok(result.stderr.includes(`--sync-period ${period}: not a duration from 1s to 24h, such as 30s, 5m or 1m30s`), result.stderr);
    }
  });

  it('runs the benchmark beside it: bench is listed, passes its flags through, and its exit code back', async () => {
    assert.match((await socklb(['--help'])).stdout, /^ {2}bench /m);
    const help = await socklb(['bench', '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage: socklb bench \[options\][\s\S]*--control-plane-only/);
    const refused = await socklb(['bench', '--scales', '2']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /--scales: each at least 3/);
  });

  it('says when no datapath is pinned', async () => {
    const result = await socklb(['services', '--pin-dir', '/sys/fs/bpf/socklb-nothing-here']);
    assert.equal(result.code, 1);
    assertOneSentence(result.stderr);
    assert.match(result.stderr, /no socklb datapath pinned at .*; start one with `socklb run`/);
  });

  it('says when the BPF object cannot be loaded', async () => {
    const pinDir = testPinDirectory('cli-object');
    const result = await socklb(['run', '--manifests', '/nonexistent', '--bpf-object', '/nonexistent.bpf.o', '--pin-dir', pinDir]);
    await socklb(['cleanup', '--pin-dir', pinDir]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /socklb: cannot open BPF object \/nonexistent\.bpf\.o: ENOENT/);
  });
});

/** A pin directory, a manifest directory and a cgroup for `socklb run` (as `args`), removed after `body`. */
async function withRunArgs(
  name: string,
  body: (bed: { args: string[]; manifests: string; pinDir: string }) => Promise<void>,
): Promise<void> {
  const pinDir = testPinDirectory(name);
  const manifests = await manifestDirectory();
  const cgroupRoot = await findCgroup2Root();
  const cgroup = join(cgroupRoot, `socklb-test-${name}-${process.pid}`);
  await mkdir(cgroup, { recursive: true });
  try {
    await body({ args: ['--manifests', manifests, '--cgroup', cgroup, '--pin-dir', pinDir], manifests, pinDir });
  } finally {
    await socklb(['cleanup', '--pin-dir', pinDir]);
    await removeCgroup(cgroup, cgroupRoot);
    await rm(manifests, { recursive: true, force: true });
  }
}

describe('map capacities', { skip: missingPrivileges() }, () => {
  it('reports a frontend that does not fit, serves the others, and refuses to resize a pinned map', () =>
    withRunArgs('capacity', async ({ args, manifests, pinDir }) => {
      await writeManifest(
        join(manifests, 'services.yaml'),
        ['10.96.9.1', '10.96.9.2', '10.96.9.3'].map((ip, i) => service(`svc-${i}`, [ip], [{ name: 'http', port: 80 }])),
      );
      let agent: RunningAgent | undefined = await startAgent([...args, '--max-frontends', '2']);
      try {
        const frontends = await services(pinDir);
        assert.equal(frontends.length, 2, 'two frontends fit');
        const failure = agent.logs.find(
          (line) =>
            typeof line.msg === 'string' &&
            /update frontend 10\.96\.9\.3:80\/TCP: update socklb_(fe_v2|name_v1): E2BIG: map full \(2 entries\); raise --max-frontends/.test(
              line.msg,
            ),
        );
        assert.ok(failure, 'the frontend that does not fit is logged with the map and its size');
        await agent.stop();
        agent = undefined;
        const resized = await socklb(['run', ...args, '--max-frontends', '4', '--metrics-bind-address', '', '--healthz-bind-address', '']);
        assert.equal(resized.code, 1);
        assert.match(resized.stderr, /holds up to 2 entries and --max-frontends asks for 4: a pinned map cannot be resized/);
      } finally {
        await agent?.stop();
      }
    }));

  it('sizes the connection map with --max-connections, refuses to resize it once pinned, and says when an older build pinned the maps without it', () =>
    withRunArgs('connections', async ({ args, pinDir }) => {
      const agent = await startAgent([...args, '--max-connections', '4096']);
      await agent.stop();
      assert.equal(pinnedMaps(pinDir).find((map) => map.name === MAP_NAMES.connections)?.capacity, 4096);
      const resized = await socklb([
        'run',
        ...args,
        '--max-connections',
        '8192',
        '--metrics-bind-address',
        '',
        '--healthz-bind-address',
        '',
      ]);
      assert.equal(resized.code, 1);
      assert.match(
        resized.stderr,
        /socklb_conn_v1 holds up to 4096 entries and --max-connections asks for 8192: a pinned map cannot be resized/,
      );
      // As a datapath pinned by a build before the map: `socklb sockets` says so.
      await rm(join(pinDir, 'maps', MAP_NAMES.connections));
      const older = await socklb(['sockets', '--pin-dir', pinDir]);
      assert.equal(older.code, 1);
      assert.match(
        older.stderr,
        /socklb_conn_v1: not pinned \(ENOENT\) beside the other maps: they were pinned by another build of socklb; `socklb run` of this build adds it/,
      );
      assertOneSentence(older.stderr);
    }));
});

describe('--max-counter-memory', { skip: missingPrivileges() }, () => {
  it('refuses to start when the counters of --max-frontends would take more on this node, before pinning anything, and starts when they fit', () =>
    withRunArgs('counter-memory', async ({ args, pinDir }) => {
      const refused = await socklb([
        'run',
        ...args,
        '--max-counter-memory',
        '1Mi',
        '--metrics-bind-address',
        '',
        '--healthz-bind-address',
        '',
      ]);
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        /^socklb: the counters of --max-frontends 65536 take \d+ bytes on \d+ possible CPUs, over --max-counter-memory 1048576: lower --max-frontends to \d+ or less, or raise --max-counter-memory\n$/m,
      );
      await assert.rejects(readdir(join(pinDir, 'maps')), /ENOENT/, 'nothing was pinned');
      const agent = await startAgent([...args, '--max-counter-memory', '1Mi', '--max-frontends', '1024']);
      await agent.stop();
    }));
});

describe('an upgrade whose map layout differs', { skip: missingPrivileges() }, () => {
  it('is refused before anything is touched when a translating map has another name beside the pinned ones', () =>
    withRunArgs('layout-bump', async ({ args, pinDir }) => {
      const agent = await startAgent(args);
      await agent.stop();
      // As an older build would have left it: the frontends under the name of another layout version.
      await rename(join(pinDir, 'maps', MAP_NAMES.frontends), join(pinDir, 'maps', 'socklb_fe_v1'));
      const links = await readdir(join(pinDir, 'links'), { recursive: true });
      const result = await socklb(['run', ...args, '--control-socket', '', '--metrics-bind-address', '', '--healthz-bind-address', '']);
      assert.equal(result.code, 1);
      assertOneSentence(
        result.stderr
          .split('\n')
          .filter((line) => !line.startsWith('{'))
          .join('\n'),
      );
      assert.match(
        result.stderr,
        /socklb_fe_v3 is not pinned beside socklb_.*socklb_fe_v1.*: they were pinned by a build whose layout differs.*run `socklb cleanup` \(with the old build, if another pinned them\) first/,
      );
      assert.deepEqual(await readdir(join(pinDir, 'links'), { recursive: true }), links, 'the links still run the old programs');
      assert.ok(!(await readdir(join(pinDir, 'maps'))).includes(MAP_NAMES.frontends), 'no empty map was pinned');
    }));
});

describe('starting and stopping', { skip: missingPrivileges() }, () => {
  it('`socklb cleanup` refuses while an agent holds the maps, and cleans up once it stopped', () =>
    withRunArgs('cleanup-running', async ({ args, pinDir }) => {
      const agent = await startAgent(args);
      try {
        const refused = await socklb(['cleanup', '--pin-dir', pinDir]);
        assert.equal(refused.code, 1);
        assertOneSentence(refused.stderr);
        assert.match(
          refused.stderr,
          new RegExp(`its maps are open in pid ${agent.process.pid} \\(node\\), a running agent or socklb command: stop it first`),
        );
        assert.ok((await readdir(join(pinDir, 'maps'))).includes(MAP_NAMES.frontends), 'everything stays pinned');
      } finally {
        await agent.stop();
      }
      const cleaned = await socklb(['cleanup', '--pin-dir', pinDir]);
      assert.equal(cleaned.code, 0, cleaned.stderr);
    }));

  it('stops cleanly on SIGTERM while its first list waits for an API server out of reach', () =>
    withRunArgs('sigterm', async ({ args, manifests }) => {
      const kubeconfig = join(manifests, 'kubeconfig');
      // Port 1 on loopback: refused at once, retried with backoff for as long as the agent runs.
      await writeFile(
        kubeconfig,
        'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]\n' +
          'users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
      );
      const runArgs = args.map((arg) => (arg === '--manifests' ? '--kubeconfig' : arg === manifests ? kubeconfig : arg));
      const child = spawn(
        process.execPath,
        [SOCKLB, 'run', ...runArgs, '--control-socket', '', '--metrics-bind-address', '', '--healthz-bind-address', ''],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      try {
        for (let waited = 0; !/LIST \/api\/v1\/services failed/.test(stderr); waited += 50) {
          assert.ok(waited < 10_000, `no retried LIST within 10 s: ${stderr}`);
          await sleep(50);
        }
        child.kill('SIGTERM');
        assert.equal(await exited, 0, stderr);
        assert.match(stderr, /"signal":"SIGTERM".*"msg":"stopping; the pinned datapath keeps serving"/);
        assert.doesNotMatch(stderr, /"msg":"serving"/);
      } finally {
        child.kill('SIGKILL');
      }
    }));

  it('says which address cannot be listened on, and why, when the metrics port is taken', () =>
    withRunArgs('port-taken', async ({ args }) => {
      const taken = createServer();
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
      try {
        const address = `127.0.0.1:${(taken.address() as AddressInfo).port}`;
        const result = await socklb([
          'run',
          ...args,
          '--control-socket',
          '',
          '--metrics-bind-address',
          address,
          '--healthz-bind-address',
          '',
        ]);
        assert.equal(result.code, 1);
        assertOneSentence(
          result.stderr
            .split('\n')
            .filter((line) => !line.startsWith('{'))
            .join('\n'),
        );
        assert.match(
          result.stderr,
          new RegExp(
            `--metrics-bind-address ${address}: cannot listen: .*EADDRINUSE.*kube-proxy, or another agent, still running on this node`,
          ),
        );
      } finally {
        taken.close();
      }
    }));
});
