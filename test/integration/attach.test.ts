// Attaching, in this process: a second attach swaps the programs into the pinned links, re-attaches
// a program whose link is gone, and detaches the links of programs the build no longer has (an
// upgrade that renames or drops one), so that every hook runs exactly one socklb program. The
// pinned links are checked against the cgroup at their path now: one detached by someone else, or
// left on a cgroup that was removed and made again, is found and replaced by the next attach.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { cgroup2Root } from '../../src/kernel/mounts.js';
import { LoadedDatapath } from '../../src/datapath/loader.js';
import { cleanupPins } from '../../src/pins/cleanup.js';
import { cgroupLinkDirectory } from '../../src/pins/layout.js';
import { linkProblems, readPinnedLink } from '../../src/pins/link-health.js';
import { removeCgroup } from '../lab/cgroup.js';
import { Lab, type Sandbox } from '../lab/lab.js';
import { missingPrivileges, testPinDirectory } from './support.js';

const BPF_OBJECT = fileURLToPath(new URL('../../bpf/socklb.bpf.o', import.meta.url));

/** The socklb programs attached to `cgroup` itself, by attach type, as the kernel lists them. */
function attachedPrograms(cgroup: string): Record<string, string[]> {
  const programs = JSON.parse(execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8' }).trim() || '[]') as {
    attach_type: string;
    name: string;
  }[];
  const byType: Record<string, string[]> = {};
  for (const { attach_type: type, name } of programs) (byType[type] ??= []).push(name);
  return byType;
}

/** `read()` once it equals `expected`, or its last value after 5 s. */
async function settled<T>(read: () => T, expected: T): Promise<T> {
  const deadline = Date.now() + 5000;
  let value = read();
  while (!isDeepStrictEqual(value, expected) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    value = read();
  }
  return value;
}

describe('attaching the programs to a cgroup', { skip: missingPrivileges() }, () => {
  const lab = new Lab();
  const pinDir = testPinDirectory('attach');
  let datapath: LoadedDatapath | undefined;
  let sandbox: Sandbox;
  const links = () => cgroupLinkDirectory(pinDir, cgroup2Root(), sandbox.cgroupPath);
  const linkIds = () => Object.fromEntries(readdirSync(links()).map((program) => [program, readPinnedLink(join(links(), program)).id]));
  /** What is wrong with each pinned link, by program; {} when every one serves. */
  const problems = () =>
    Object.fromEntries(linkProblems(sandbox.cgroupPath, links(), readdirSync(links())).map(({ program, reason }) => [program, reason]));
  const everyProgram = (reason: string) => Object.fromEntries(readdirSync(links()).map((program) => [program, reason]));
  const onePerHook = () => {
    const programs = attachedPrograms(sandbox.cgroupPath);
    assert.ok(Object.keys(programs).length === readdirSync(links()).length, JSON.stringify(programs));
    assert.ok(
      Object.values(programs).every((names) => names.length === 1),
      `one program per hook: ${JSON.stringify(programs)}`,
    );
  };

  before(async () => {
    await Lab.sweepStale();
    sandbox = await lab.addSandbox('s');
    datapath = LoadedDatapath.load(BPF_OBJECT, pinDir);
  });
  after(async () => {
    datapath?.close();
    cleanupPins(pinDir);
    await lab.close();
  });

  it("leaves one program per hook after re-attaching over a missing link and a retired program's link", () => {
    assert.deepEqual(datapath!.attach([sandbox.cgroupPath]), [{ cgroup: sandbox.cgroupPath, action: 'attached' }]);
    const first = attachedPrograms(sandbox.cgroupPath);
    const hooks = Object.keys(first).sort();
    assert.ok(hooks.includes('cgroup_inet4_connect') && hooks.includes('cgroup_inet6_getpeername'), `hooks: ${hooks.join(', ')}`);
    assert.ok(
      Object.values(first).every((names) => names.length === 1),
      JSON.stringify(first),
    );

    // What an older build leaves: a link pinned under a name this build has no program for, and
    // no link under the name of this build's program (still attached, through the old name).
    const links = cgroupLinkDirectory(pinDir, cgroup2Root(), sandbox.cgroupPath);
    const programs = readdirSync(links).sort();
    renameSync(`${links}/socklb_getpeername4`, `${links}/socklb_retired_program`);
    assert.equal(attachedPrograms(sandbox.cgroupPath).cgroup_inet4_getpeername?.length, 1, 'renaming a pin keeps its link attached');

    assert.deepEqual(datapath!.attach([sandbox.cgroupPath]), [{ cgroup: sandbox.cgroupPath, action: 'attached' }]);
    assert.deepEqual(readdirSync(links).sort(), programs, 'one pin per program of this build, nothing else');
    const second = attachedPrograms(sandbox.cgroupPath);
    assert.deepEqual(Object.keys(second).sort(), hooks);
    assert.ok(
      Object.values(second).every((names) => names.length === 1),
      `one program per hook: ${JSON.stringify(second)}`,
    );
  });

  it('finds a link detached by someone else, and the next attach replaces it alone', () => {
    datapath!.attach([sandbox.cgroupPath]);
    assert.deepEqual(problems(), {}, 'every link serves');
    const before = linkIds();
    execFileSync('bpftool', ['link', 'detach', 'id', String(before.socklb_connect4)]);
    assert.deepEqual(problems(), { socklb_connect4: 'link_detached' });
    assert.equal(attachedPrograms(sandbox.cgroupPath).cgroup_inet4_connect, undefined, 'nothing translates connect() over IPv4');

    assert.deepEqual(datapath!.attach([sandbox.cgroupPath]), [{ cgroup: sandbox.cgroupPath, action: 'attached' }]);
    assert.deepEqual(problems(), {});
    const after = linkIds();
    assert.notEqual(after.socklb_connect4, before.socklb_connect4, 'a new link');
    assert.deepEqual({ ...after, socklb_connect4: 0 }, { ...before, socklb_connect4: 0 }, 'the other links are kept');
    onePerHook();
  });

  // Removed, the old cgroup lives on while one of its sockets does, and its links with it; without
  // one the kernel frees it a moment after the rmdir, which detaches them.
  for (const [keepOldAlive, reason] of [
    [true, 'cgroup_replaced'],
    [false, 'link_detached'],
  ] as const) {
    it(`finds the links of a cgroup removed and made again (${reason}), and attaches anew`, async () => {
      datapath!.attach([sandbox.cgroupPath]);
      await lab.remakeCgroup(sandbox, { keepOldAlive });
      assert.deepEqual(await settled(problems, everyProgram(reason)), everyProgram(reason));
      assert.deepEqual(attachedPrograms(sandbox.cgroupPath), {}, 'the new cgroup has no programs');

      // A swap into links left on the old cgroup would succeed, and serve nothing.
      assert.deepEqual(datapath!.attach([sandbox.cgroupPath]), [{ cgroup: sandbox.cgroupPath, action: 'attached' }]);
      assert.deepEqual(problems(), {});
      onePerHook();
    });
  }

  it('says that the cgroup of every link is gone when its directory is', async () => {
    datapath!.attach([sandbox.cgroupPath]);
    await removeCgroup(sandbox.cgroupPath, join(sandbox.cgroupPath, '..'));
    try {
      assert.deepEqual(problems(), everyProgram('cgroup_gone'));
    } finally {
      mkdirSync(sandbox.cgroupPath);
    }
  });
});
