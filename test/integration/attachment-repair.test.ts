// Attachments that stop working behind the agent's back, repaired at its next resync
// (--sync-period 1s here): a sandbox's cgroup removed and made again at the same path while a
// socket of the old one keeps it alive, a link detached by someone else (bpftool), a link unpinned,
// a sandbox's cgroup removed for good, a --cgroup removed and made again later. Each is logged,
// counted and shown by `socklb status`, and the attachments that kept working keep their links.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AgentStatusReport } from '../../src/agent/status.js';
import type { PinnedLink } from '../../src/pins/status.js';
import { removeCgroup } from '../lab/cgroup.js';
import type { Sandbox } from '../lab/lab.js';
import {
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

const CLUSTER_IP = '10.96.0.10';
const SYNC_PERIOD = ['--sync-period', '1s'];
/** Long enough for two checks, and for a repair that failed once to have been tried again. */
const REPAIRED_WITHIN_MS = 5000;

interface Status {
  agent: AgentStatusReport;
  attachments: PinnedLink[];
}

describe('attachments repaired at the resync', { skip: missingPrivileges(), concurrency: false }, () => {
  const bed = new Testbed('repair');
  const { lab, pinDir } = bed;
  const controlSocket = testControlSocket('repair');
  let agent: RunningAgent;
  /** Registered sandboxes, and one attached by --cgroup. */
  let first: Sandbox;
  let second: Sandbox;
  let attached: Sandbox;

  const probe = async (sandbox: Sandbox) => {
    const report = await lab.runClient(sandbox, { target: CLUSTER_IP, port: 80, count: 3, timeoutMs: 2000 });
    return { hits: report.hits, errors: report.errors };
  };
  const SERVED = { hits: { 'pod-a': 3 }, errors: {} };

  const status = async (): Promise<Status> => {
    const result = await socklb(['status', '-o', 'json', '--pin-dir', pinDir, '--metrics-bind-address', `127.0.0.1:${agent.metricsPort}`]);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout) as Status;
  };
  /** Each link of the attachment of `sandbox` (by --cgroup or registered): its id and its health, by program. */
  const linksOf = async (sandbox: Sandbox) =>
    Object.fromEntries(
      (await status()).attachments
        .filter((link) => link.cgroup === sandbox.cgroupPath)
        .map((link) => [link.program, { linkId: link.linkId, health: link.problem?.reason ?? 'ok' }]),
    );
  const allHealthy = (links: Record<string, { linkId: number; health: string }>) =>
    Object.values(links).length === 9 && Object.values(links).every((link) => link.health === 'ok');
  const metric = async (series: string) => {
    const text = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    const line = text.split('\n').find((each) => each.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.split(' ')[1]);
  };
  /** The first log line from `from` on whose message starts with `start`, waited for up to REPAIRED_WITHIN_MS. */
  const logged = (start: string, from: number) =>
    agent
      .logLine((each) => String(each.msg).startsWith(start), from, REPAIRED_WITHIN_MS)
      .catch((error: Error) => {
        throw new Error(`${start}...: ${error.message}; the repairs logged: ${JSON.stringify(repairsLogged())}`);
      });
  const repairsLogged = () => agent.logs.filter((line) => /^(re-attached|removed|cannot repair) /.test(String(line.msg)));

  before(async () => {
    await bed.prepare();
    let pod;
    [pod, first, second, attached] = await Promise.all([
      lab.addPod('pod-a'),
      lab.addSandbox('first'),
      lab.addSandbox('second'),
      lab.addSandbox('attached'),
    ]);
    await lab.startEchoServer(pod, { name: 'pod-a', port: 8080 });
    await writeManifest(join(bed.manifests, 'web.yaml'), [
      service('web', [CLUSTER_IP], [{ name: 'http', port: 80, targetPort: 8080 }]),
      endpointSlice('web-a', 'web', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: pod.ipv4 }]),
    ]);
    agent = await bed.startAgent(['--manifests', bed.manifests, '--pin-dir', pinDir, '--cgroup', attached.cgroupPath, ...SYNC_PERIOD], {
      controlSocket,
    });
    await waitForServices(pinDir, (frontends) => frontends.length === 1);
    for (const [id, sandbox] of [
      ['first', first],
      ['second', second],
    ] as const) {
      const result = await socklb(['sandbox', 'add', '--id', id, '--cgroup', sandbox.cgroupPath, '--control-socket', controlSocket]);
      assert.equal(result.code, 0, result.stderr);
    }
  });

  after(() => bed.close());

  it('serves every attachment, each link healthy, and has repaired nothing', async () => {
    for (const sandbox of [first, second, attached]) {
      assert.deepEqual(await probe(sandbox), SERVED, sandbox.name);
      assert.ok(allHealthy(await linksOf(sandbox)), JSON.stringify(await linksOf(sandbox)));
    }
    assert.deepEqual((await status()).agent.attachmentRepairs, []);
  });

  it("attaches a sandbox whose cgroup was removed and made again, though a socket keeps the old one's links alive", async () => {
    const others = { second: await linksOf(second), attached: await linksOf(attached) };
    const from = agent.logs.length;
    // Held while the cgroup is gone for a moment: a check then would find it removed, and forget the sandbox.
    agent.process.kill('SIGSTOP');
    try {
      await lab.remakeCgroup(first, { keepOldAlive: true });
    } finally {
      agent.process.kill('SIGCONT');
    }
    const repair = await logged(`re-attached sandbox first (cgroup ${first.cgroupPath}): cgroup_replaced: socklb_`, from);
    // The worst link's facts, with the kernel's ids.
    assert.match(
      String(repair.msg),
      new RegExp(
        `: link \\d+ is attached to cgroup \\d+, and the cgroup at ${first.cgroupPath} is now \\d+ \\(removed and made again\\) \\(and 8 other links\\)$`,
      ),
    );
    assert.deepEqual([repair.kind, repair.sandbox, repair.reason, repair.outcome], ['sandbox', 'first', 'cgroup_replaced', 'reattached']);

    assert.deepEqual(await probe(first), SERVED);
    assert.ok(allHealthy(await linksOf(first)));
    assert.equal(await metric('socklb_attachment_repairs_total{kind="sandbox",reason="cgroup_replaced",outcome="reattached"}'), 1);
    const [latest] = (await status()).agent.attachmentRepairs;
    assert.deepEqual(
      { ...latest, at: 'then', detail: 'as logged' },
      {
        kind: 'sandbox',
        cgroup: first.cgroupPath,
        sandbox: 'first',
        reason: 'cgroup_replaced',
        outcome: 'reattached',
        at: 'then',
        detail: 'as logged',
      },
    );
    assert.deepEqual({ second: await linksOf(second), attached: await linksOf(attached) }, others, 'the others keep their links');
  });

  it('attaches again a link someone else detached, and only that one', async () => {
    const before = await linksOf(attached);
    const detached = before.socklb_connect4?.linkId;
    const from = agent.logs.length;
    execFileSync('bpftool', ['link', 'detach', 'id', String(detached)]);
    const repair = await logged(`re-attached cgroup ${attached.cgroupPath}: `, from);
    assert.equal(
      repair.msg,
      `re-attached cgroup ${attached.cgroupPath}: link_detached: socklb_connect4: ` +
        `link ${detached} is attached to no cgroup (detached, or its cgroup was removed)`,
    );
    assert.deepEqual(await probe(attached), SERVED);
    const after = await linksOf(attached);
    assert.ok(allHealthy(after));
    assert.notEqual(after.socklb_connect4?.linkId, detached);
    assert.deepEqual({ ...after, socklb_connect4: undefined }, { ...before, socklb_connect4: undefined }, 'the other links are kept');
    assert.equal(await metric('socklb_attachment_repairs_total{kind="cgroup",reason="link_detached",outcome="reattached"}'), 1);
  });

  it('attaches again a link that was unpinned', async () => {
    const from = agent.logs.length;
    const pins = execFileSync('find', [`${pinDir}/links/sandboxes/second`, '-name', 'socklb_sendmsg4'], { encoding: 'utf8' }).trim();
    await rm(pins);
    const repair = await logged(`re-attached sandbox second `, from);
    assert.equal(
      repair.msg,
      `re-attached sandbox second (cgroup ${second.cgroupPath}): link_missing: socklb_sendmsg4: open pin ${pins}: ENOENT`,
    );
    assert.deepEqual(await probe(second), SERVED);
    assert.ok(allHealthy(await linksOf(second)));
  });

  it('leaves healthy attachments alone at every resync: their links keep their ids', async () => {
    const before = [await linksOf(first), await linksOf(second), await linksOf(attached)];
    const repairs = repairsLogged().length;
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.deepEqual([await linksOf(first), await linksOf(second), await linksOf(attached)], before);
    assert.equal(repairsLogged().length, repairs, JSON.stringify(repairsLogged().slice(repairs)));
  });

  it('reports a --cgroup whose directory is gone once, and attaches it when it is back', async () => {
    const from = agent.logs.length;
    await removeCgroup(attached.cgroupPath, join(attached.cgroupPath, '..'));
    const failure = await logged(`cannot repair cgroup ${attached.cgroupPath}: `, from);
    assert.equal(
      failure.msg,
      `cannot repair cgroup ${attached.cgroupPath}: cgroup_gone: no cgroup directory at ${attached.cgroupPath}: ` +
        'nothing to attach to until the directory is back',
    );
    assert.equal(await metric('socklb_attachments_failing{kind="cgroup"}'), 1);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(repairsLogged().filter((line) => String(line.msg).startsWith('cannot repair')).length, 1, 'reported once');

    await mkdir(attached.cgroupPath);
    // Its links died with the old cgroup, which the kernel may not have freed yet.
    const back = await logged(`re-attached cgroup ${attached.cgroupPath}: `, from);
    assert.ok(['link_detached', 'cgroup_replaced'].includes(String(back.reason)), String(back.msg));
    assert.deepEqual(await probe(attached), SERVED);
    assert.equal(await metric('socklb_attachments_failing{kind="cgroup"}'), 0);
    assert.equal(await metric('socklb_attachment_repairs_total{kind="cgroup",reason="cgroup_gone",outcome="failed"}'), 1);
  });

  it('forgets a sandbox whose cgroup is gone, as an agent that starts does', async () => {
    const from = agent.logs.length;
    await removeCgroup(first.cgroupPath, join(first.cgroupPath, '..'));
    const removal = await logged(`removed sandbox first `, from);
    assert.equal(removal.msg, `removed sandbox first (cgroup ${first.cgroupPath}): its cgroup is gone`);
    const list = await socklb(['sandbox', 'list', '-o', 'json', '--control-socket', controlSocket]);
    assert.deepEqual(
      (JSON.parse(list.stdout) as { id: string }[]).map((sandbox) => sandbox.id),
      ['second'],
    );
    assert.deepEqual(
      (await status()).attachments.filter((link) => link.sandbox === 'first'),
      [],
      'unpinned',
    );
    assert.equal(await metric('socklb_attachment_repairs_total{kind="sandbox",reason="cgroup_gone",outcome="removed"}'), 1);
  });
});
