// Attaching, in this process: a second attach swaps the programs into the pinned links, re-attaches
// a program whose link is gone, and detaches the links of programs the build no longer has (an
// upgrade that renames or drops one), so that every hook runs exactly one socklb program.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, renameSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cgroup2Root } from '../../src/kernel/mounts.js';
import { LoadedDatapath } from '../../src/datapath/loader.js';
import { cleanupPins } from '../../src/pins/cleanup.js';
import { cgroupLinkDirectory } from '../../src/pins/layout.js';
import { Lab, type Sandbox } from '../lab/lab.js';
import { missingPrivileges, testPinDirectory } from './support.js';

const BPF_OBJECT = fileURLToPath(new URL('../../bpf/socklb.bpf.o', import.meta.url));

/** The socklb programs attached to `cgroup` itself, by attach type, as the kernel lists them. */
function attachedPrograms(cgroup: string): Record<string, string[]> {
  const programs = JSON.parse(execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8' }) || '[]') as {
    attach_type: string;
    name: string;
  }[];
  const byType: Record<string, string[]> = {};
  for (const { attach_type: type, name } of programs) (byType[type] ??= []).push(name);
  return byType;
}

describe('attaching the programs to a cgroup', { skip: missingPrivileges() }, () => {
  const lab = new Lab();
  const pinDir = testPinDirectory('attach');
  let datapath: LoadedDatapath | undefined;
  let sandbox: Sandbox;

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
});
