// `socklb oci-hook` under a real OCI runtime from Debian (runc, and crun): a busybox container
// in a lab namespace, whose config.json registers it with the agent at createRuntime and
// unregisters it at poststop, reaches a ClusterIP from inside; once it is deleted, nothing of it
// stays attached. Without an agent, the hook makes the create fail at once, saying why.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Lab, type Pod } from '../lab/lab.js';
import { missingRuntime, writeBundle, type OciHook } from '../lab/oci-bundle.js';
import {
  assertOneSentence,
  endpointSlice,
  manifestDirectory,
  missingPrivileges,
  service,
  SOCKLB,
  socklb,
  startAgent,
  testControlSocket,
  testPinDirectory,
  waitForServices,
  writeManifest,
  type RunningAgent,
} from './support.js';

const execFileAsync = promisify(execFile);
const CLUSTER_IP = '10.96.0.10';
// busybox nc rather than wget: Debian's static wget crashes in a root filesystem without libc's files.
const HTTP_GET_CLUSTER_IP = [
  '/bin/busybox',
  'sh',
  '-c',
  `/bin/busybox printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 5 ${CLUSTER_IP} 80`,
];

/** The hook as a runtime runs it: the built CLI under this node, no environment. */
function hook(controlSocket: string, stage?: string): OciHook {
  return {
    path: process.execPath,
    args: [process.execPath, SOCKLB, 'oci-hook', ...(stage ? [stage] : []), '--control-socket', controlSocket],
    timeout: 20,
  };
}

/** One runtime with a state directory of this test's own, so that no other container is seen. */
class Runtime {
  constructor(
    readonly name: string,
    readonly stateRoot: string,
  ) {}

  async run(args: string[]): Promise<string> {
    return (await execFileAsync(this.name, ['--root', this.stateRoot, ...args], { timeout: 30_000 })).stdout;
  }

  /** `create`, with the container's stdout and stderr going to `outputPath`; rejects with the runtime's stderr. */
  async create(id: string, bundle: string, outputPath: string): Promise<{ elapsedMs: number }> {
    const output = await open(outputPath, 'w');
    const started = performance.now();
    try {
      const child = spawn(this.name, ['--root', this.stateRoot, 'create', '--bundle', bundle, id], {
        stdio: ['ignore', output.fd, output.fd],
      });
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      if (code !== 0) throw new Error(`${this.name} create ${id} exited with ${code}: ${await readFile(outputPath, 'utf8')}`);
    } finally {
      await output.close();
    }
    return { elapsedMs: performance.now() - started };
  }

  async waitStopped(id: string, timeoutMs = 15_000): Promise<void> {
    const started = performance.now();
    while (performance.now() - started < timeoutMs) {
      const state = JSON.parse(await this.run(['state', id])) as { status: string };
      if (state.status === 'stopped') return;
      await sleep(50);
    }
    throw new Error(`${this.name}: container ${id} still running after ${timeoutMs} ms`);
  }

  async containers(): Promise<string[]> {
    return ((JSON.parse((await this.run(['list', '--format', 'json'])) || '[]') as { id: string }[] | null) ?? []).map(
      (container) => container.id,
    );
  }
}

describe('socklb oci-hook refusals', { skip: missingPrivileges() }, () => {
  const state = (fields: object) => JSON.stringify({ ociVersion: '1.0.2', id: 'c1', bundle: '/tmp/b', ...fields });
  const cases: [string, string[], string, RegExp][] = [
    ['state that is not JSON', [], 'garbage', /^socklb: OCI container state on stdin: "garbage" is not JSON\n$/],
    [
      'status it cannot place',
      [],
      state({ status: 'paused', pid: 1 }),
      /^socklb: OCI container state on stdin: container c1 has status "paused"; give the stage/,
    ],
    // A pid that no process can have (above pid_max).
    [
      'container process that is gone',
      ['createRuntime'],
      state({ status: 'creating', pid: 2 ** 22 + 1 }),
      /^socklb: container c1: process 4194305 is gone \(ENOENT\)/,
    ],
    [
      'container in the cgroup v2 root',
      ['createRuntime'],
      state({ status: 'creating', pid: 1 }),
      /^socklb: container c1: process 1 is in the cgroup v2 root/,
    ],
  ];
  for (const [what, args, input, message] of cases) {
    it(`refuses a ${what} in one sentence`, async () => {
      const result = await socklb(['oci-hook', ...args, '--control-socket', testControlSocket('refusals')], SOCKLB, input);
      assert.equal(result.code, 1);
      assertOneSentence(result.stderr);
      assert.match(result.stderr, message);
    });
  }
});

for (const runtimeName of ['runc', 'crun']) {
  describe(
    `socklb oci-hook under ${runtimeName}`,
    { skip: missingPrivileges() ?? (await missingRuntime(runtimeName)), concurrency: false },
    () => {
      const lab = new Lab();
      const pinDir = testPinDirectory(`oci-${runtimeName}`);
      const controlSocket = testControlSocket(`oci-${runtimeName}`);
      const runtime = new Runtime(runtimeName, `/run/socklb-test/${runtimeName}-${process.pid}`);
      let manifests: string;
      let pod: Pod;
      let containerNetns: Pod;
      let agent: RunningAgent | undefined;
      const bundles: { remove(): Promise<void> }[] = [];

      const registered = async () => {
        const result = await socklb(['sandbox', 'list', '-o', 'json', '--control-socket', controlSocket]);
        assert.equal(result.code, 0, result.stderr);
        return JSON.parse(result.stdout) as { id: string; cgroup: string }[];
      };

      before(async () => {
        await Lab.sweepStale();
        await socklb(['cleanup', '--pin-dir', pinDir]);
        await mkdir(runtime.stateRoot, { recursive: true, mode: 0o700 });
        manifests = await manifestDirectory();
        // The container's namespace is a lab pod's: on the pod network, nothing routed to the service range.
        [pod, containerNetns] = await Promise.all([lab.addPod('backend'), lab.addPod('container')]);
        await lab.startEchoServer(pod, { name: 'backend', port: 8080 });
        await writeManifest(join(manifests, 'web.yaml'), [
          service('web', [CLUSTER_IP], [{ name: 'http', port: 80, targetPort: 8080 }]),
          endpointSlice('web-a', 'web', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
        ]);
        agent = await startAgent(['--sandboxes-only', '--manifests', manifests, '--pin-dir', pinDir], { controlSocket });
        await waitForServices(pinDir, (frontends) => frontends.length === 1);
      });

      after(async () => {
        for (const id of await runtime.containers().catch(() => [])) await runtime.run(['delete', '--force', id]).catch(() => undefined);
        await agent?.stop();
        await socklb(['cleanup', '--pin-dir', pinDir]);
        await lab.close();
        for (const bundle of bundles) await bundle.remove();
        await rm(runtime.stateRoot, { recursive: true, force: true });
        if (manifests) await rm(manifests, { recursive: true, force: true });
      });

      it('registers the container at createRuntime, translates its ClusterIP connect, and unregisters it at poststop', async () => {
        const id = `socklb-${runtimeName}-${process.pid}`;
        const { cgroupsPath, cgroupPath } = await lab.runtimeCgroup(`${runtimeName}-ctr`);
        const bundle = await writeBundle(runtimeName, {
          args: HTTP_GET_CLUSTER_IP,
          netnsPath: containerNetns.netnsPath,
          cgroupsPath,
          // createRuntime tells the stage by the state's status (creating); poststop is named.
          hooks: { createRuntime: [hook(controlSocket)], poststop: [hook(controlSocket, 'poststop')] },
        });
        bundles.push(bundle);
        const output = join(bundle.directory, 'output');
        await runtime.create(id, bundle.directory, output);
        assert.deepEqual(await registered(), [{ id, cgroup: cgroupPath }]);
        assert.ok(existsSync(`${pinDir}/links/sandboxes/${id}`), 'the links are pinned under the container id');

        await runtime.run(['start', id]);
        await runtime.waitStopped(id);
        assert.match(
          await readFile(output, 'utf8'),
          /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nbackend\n$/,
          "the container got the backend's answer through the ClusterIP",
        );

        await runtime.run(['delete', id]);
        assert.deepEqual(await registered(), []);
        assert.deepEqual(await readdir(`${pinDir}/links/sandboxes`), [], 'no link pins remain');
        assert.equal(existsSync(cgroupPath), false, 'the runtime removed the cgroup');
      });

      it('fails the create at once, in one sentence, when no agent serves the control socket', async () => {
        const id = `socklb-${runtimeName}-noagent-${process.pid}`;
        const absent = testControlSocket(`absent-${runtimeName}`);
        const { cgroupsPath } = await lab.runtimeCgroup(`${runtimeName}-noagent`);
        const bundle = await writeBundle(runtimeName, {
          args: ['/bin/busybox', 'true'],
          netnsPath: containerNetns.netnsPath,
          cgroupsPath,
          hooks: { createRuntime: [hook(absent)], poststop: [hook(absent, 'poststop')] },
        });
        bundles.push(bundle);
        const output = join(bundle.directory, 'output');
        const started = performance.now();
        await assert.rejects(runtime.create(id, bundle.directory, output), (error: Error) => {
          assert.match(
            error.message,
            new RegExp(
              `socklb: container ${id}: no socklb agent is serving the control socket ${absent} \\(ENOENT\\); ` +
                `start one with \`socklb run\``,
            ),
          );
          return true;
        });
        const elapsedMs = performance.now() - started;
        assert.ok(elapsedMs < 10_000, `the create failed after ${Math.round(elapsedMs)} ms`);
        assert.equal((await runtime.containers()).includes(id), false, 'the runtime tore the container down');
        assert.deepEqual(await registered(), []);
      });
    },
  );
}
