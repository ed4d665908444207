// The production bundle (`make bundle`: dist/) run for real. It is copied outside the repository
// first, so that it can reach nothing of node_modules/ or build/: what passes here is what ships.
// The agent runs from manifests and from the API stand-in, translates a ClusterIP connect in a lab
// sandbox, and `services`, `sockets` (the iterator thread, dist/iterator-worker.js) and `cleanup`
// run from the copy. This test builds nothing: `make test` makes the bundle first.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FrontendDescription } from '../../src/datapath/dump.js';
import { ApiServer } from '../fixtures/apiserver.js';
import { Lab, type Pod, type Sandbox } from '../lab/lab.js';
import {
  endpointSlice,
  manifestDirectory,
  missingPrivileges,
  service,
  socklb,
  startAgent,
  testPinDirectory,
  writeManifest,
  type RunningAgent,
} from './support.js';

const DIST = fileURLToPath(new URL('../../../dist/', import.meta.url));
const HTTP = { name: 'http', port: 80 };
const SLICE_HTTP = { name: 'http', port: 8080 };
const FROM_MANIFESTS = '10.96.0.10';
const FROM_API = '10.96.0.11';

function skipReason(): string | undefined {
  return (
    missingPrivileges() ??
    (existsSync(join(DIST, 'socklb.js')) ? undefined : 'SKIPPED: no bundle in dist/; run `make bundle` (make test does)')
  );
}

describe('the bundle (dist/) on its own', { skip: skipReason(), concurrency: false }, () => {
  const lab = new Lab();
  const pinDir = testPinDirectory('bundle');
  let copy: string;
  let entry: string;
  let manifests: string;
  let pod: Pod;
  let sandbox: Sandbox;
  let server: ApiServer | undefined;
  let agent: RunningAgent | undefined;

  const run = (args: string[]) => socklb(args, entry);
  const runArgs = (source: string[]) => [...source, '--cgroup', sandbox.cgroupPath, '--pin-dir', pinDir];
  async function services(): Promise<FrontendDescription[]> {
    const result = await run(['services', '-o', 'json', '--pin-dir', pinDir]);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout) as FrontendDescription[];
  }
  async function waitForFrontend(address: string): Promise<FrontendDescription> {
    for (const deadline = Date.now() + 5_000; Date.now() < deadline;) {
      const found = (await services()).find((frontend) => frontend.frontend === `${address}:80/TCP`);
      if (found) return found;
      await sleep(50);
    }
    assert.fail(`no frontend ${address}:80/TCP within 5 s`);
  }

  before(async () => {
    copy = await mkdtemp(join(tmpdir(), 'socklb-bundle-'));
    await cp(DIST, copy, { recursive: true });
    entry = join(copy, 'socklb.js');
    for (let directory = dirname(copy); ; directory = dirname(directory)) {
      assert.ok(
        !existsSync(join(directory, 'node_modules')),
        `${directory}/node_modules would let the copy resolve packages outside itself`,
      );
      if (directory === dirname(directory)) break;
    }
    await Lab.sweepStale();
    await run(['cleanup', '--pin-dir', pinDir]);
    [pod, sandbox] = await Promise.all([lab.addPod('pod'), lab.addSandbox('sandbox')]);
    await lab.startEchoServer(pod, { name: 'pod', port: 8080 });
    manifests = await manifestDirectory();
  });

  after(async () => {
    await agent?.stop();
    await run(['cleanup', '--pin-dir', pinDir]);
    await server?.close();
    await lab.close();
    await Promise.all([copy, manifests].filter(Boolean).map((path) => rm(path, { recursive: true, force: true })));
  });

  it('prints its help, with the BPF objects of the copy as the default', async () => {
    const help = await run(['run', '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage: socklb run \[options\]/);
    assert.ok(help.stdout.replace(/\s+/g, '').includes(`(default:"${join(copy, 'bpf', 'socklb.bpf.o')}")`), help.stdout);
  });

  it('does not list the benchmark, and says that it is not part of it', async () => {
    const help = await run(['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^ {2}cleanup /m);
    assert.doesNotMatch(help.stdout, /bench/);
    const result = await run(['bench', '--quick']);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^socklb: bench: the benchmark is not part of this build \(no [^)]*\); it comes with the source tree: run `make build` there/,
    );
  });

  it('runs from manifests: attaches, programs the maps, translates a connect, dumps sockets', async () => {
    await writeManifest(join(manifests, 'web.yaml'), [
      service('web', [FROM_MANIFESTS], [HTTP]),
      endpointSlice('web-1', 'web', 'IPv4', [SLICE_HTTP], [{ ip: pod.ipv4 }]),
    ]);
    agent = await startAgent(runArgs(['--manifests', manifests]), { entry });
    assert.deepEqual((await waitForFrontend(FROM_MANIFESTS)).backends, [`${pod.ipv4}:8080`]);

    const report = await lab.runClient(sandbox, { target: FROM_MANIFESTS, port: 80, count: 3 });
    assert.deepEqual(report.errors, {});
    assert.deepEqual(report.hits, { pod: 3 });

    const sockets = await run(['sockets', '-o', 'json', '--pin-dir', pinDir]);
    assert.equal(sockets.code, 0, sockets.stderr);
    assert.ok(Array.isArray(JSON.parse(sockets.stdout)), sockets.stdout);
    await agent.stop();
    agent = undefined;
  });

  it('runs from the Kubernetes API (the stand-in), through the bundled client', async () => {
    server = await ApiServer.start();
    server.apply('services', service('api', [FROM_API], [HTTP]));
    server.apply('endpointslices', endpointSlice('api-1', 'api', 'IPv4', [SLICE_HTTP], [{ ip: pod.ipv4 }]));
    agent = await startAgent(runArgs(['--kubeconfig', server.kubeconfigPath, '--node-name', 'node-1']), { entry });
    assert.deepEqual((await waitForFrontend(FROM_API)).backends, [`${pod.ipv4}:8080`]);
    await agent.stop();
    agent = undefined;
  });

  it('cleans up after itself', async () => {
    const cleanup = await run(['cleanup', '--pin-dir', pinDir]);
    assert.equal(cleanup.code, 0, cleanup.stderr);
    assert.match(cleanup.stdout, /^detached [1-9]\d* links, removed [1-9]\d* maps from /);
    assert.match((await run(['services', '--pin-dir', pinDir])).stderr, /no socklb datapath pinned/);
  });
});
