// The sandboxes' pins without a kernel: a fake datapath that attaches by making the link
// directory, over a temporary pin directory (no privileges needed).

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { cgroup2Root } from '../../src/kernel/mounts.js';
import { entriesOf, linkDirectoryName, pinnedSandboxes } from '../../src/pins/layout.js';
import { pinnedLinks } from '../../src/pins/status.js';
import { PinnedSandboxes, type ProgramAttacher } from '../../src/sandbox/attachments.js';

const root = cgroup2Root();

describe('sandbox pins', () => {
  let directory: string;
  let pins: string;
  let sandboxes: string;
  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'socklb-pins-'));
    pins = join(directory, 'pins');
    sandboxes = join(pins, 'links', 'sandboxes');
    await mkdir(sandboxes, { recursive: true });
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  /** A sandbox pinned by an earlier run, its "cgroup" a directory of the test. */
  async function pinSandbox(id: string): Promise<string> {
    const cgroup = join(directory, `cgroup-${id}`);
    await mkdir(cgroup);
    const links = join(sandboxes, id, linkDirectoryName(root, cgroup));
    await mkdir(links, { recursive: true });
    await writeFile(join(links, 'socklb_connect4'), '');
    return cgroup;
  }

  it('names a cgroup with dots without a dot, which bpffs refuses in names, and reads it back', async () => {
    const cgroup = join(root, 'kubepods.slice', 'cri-containerd-1.scope');
    const name = linkDirectoryName(root, cgroup);
    assert.doesNotMatch(name, /[./]/);
    await mkdir(join(sandboxes, 'dotted', name), { recursive: true });
    assert.deepEqual(
      pinnedSandboxes(pins, root).map((sandbox) => sandbox.cgroup),
      [cgroup],
    );
  });

  it('keeps a sandbox whose programs cannot be swapped registered with its links, reports it, and adopts the others', async () => {
    await pinSandbox('good');
    await pinSandbox('broken');
    const datapath: ProgramAttacher = {
      attachOne(cgroup: string) {
        if (cgroup.endsWith('cgroup-broken')) throw new Error('attach socklb_connect4: EPERM');
        return 'replaced';
      },
    };
    const { adopted, stale, notUpgraded } = new PinnedSandboxes(datapath, pins).adopt();
    assert.deepEqual(adopted.map((sandbox) => sandbox.id).sort(), ['broken', 'good']);
    assert.deepEqual(stale, []);
    assert.deepEqual(
      notUpgraded.map(({ id, reason }) => ({ id, reason })),
      [{ id: 'broken', reason: "attaching this build's programs failed, its links are kept as they were: attach socklb_connect4: EPERM" }],
    );
    assert.deepEqual(entriesOf(sandboxes)?.sort(), ['broken', 'good'], 'both stay pinned');
  });

  it('unpins a sandbox whose cgroup is gone as stale, and leaves the others', async () => {
    await pinSandbox('kept');
    const gone = await pinSandbox('gone');
    await rm(gone, { recursive: true });
    const datapath: ProgramAttacher = { attachOne: () => 'replaced' };
    const { adopted, stale } = new PinnedSandboxes(datapath, pins).adopt();
    assert.deepEqual(
      adopted.map((sandbox) => sandbox.id),
      ['kept'],
    );
    assert.deepEqual(
      stale.map(({ id, reason }) => ({ id, reason })),
      [{ id: 'gone', reason: 'its cgroup is gone' }],
    );
    assert.ok(stale[0]?.cgroup.endsWith('cgroup-gone'), stale[0]?.cgroup);
    assert.deepEqual(entriesOf(sandboxes), ['kept'], 'the stale sandbox is unpinned');
  });

  it('skips a sandbox directory that vanishes while the pins are read', async () => {
    await pinSandbox('kept');
    // Listed, then gone when read: what a sandbox removed during `socklb status` looks like.
    await symlink(join(directory, 'removed'), join(sandboxes, 'vanished'));
    assert.deepEqual(
      pinnedSandboxes(pins, root).map((sandbox) => sandbox.id),
      ['kept'],
    );
  });

  it('skips, in `socklb status`, sandbox and link directories that vanish while read', async () => {
    const cgroup = join(directory, 'cgroup-gone');
    await symlink(join(directory, 'removed'), join(sandboxes, 'gone'));
    await mkdir(join(sandboxes, 'half'));
    await symlink(join(directory, 'removed'), join(sandboxes, 'half', linkDirectoryName(root, cgroup)));
    assert.deepEqual(pinnedLinks(pins), []);
  });

  it('tells a missing directory from an unreadable one', async () => {
    assert.equal(entriesOf(join(directory, 'absent')), undefined);
    const file = join(directory, 'file');
    await writeFile(file, '');
    assert.throws(() => entriesOf(file), { code: 'ENOTDIR' });
  });
});
