// The network namespaces of a cgroup's processes (src/kernel/netns.ts), where the socket iterators
// run: opened through /proc/PID/ns/net, which is behind a ptrace access check. Root passes it for
// another user's process only with CAP_SYS_PTRACE; without it the process is reported, not
// silently passed over. Runs a process of uid 65534 in a lab sandbox.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { closeNamespaces, openNamespacesOfCgroups, type DeniedProcesses } from '../../src/kernel/netns.js';
import { Lab, type Sandbox } from '../lab/lab.js';
import { execedAs } from '../lab/processes.js';
import { missingPrivileges } from './support.js';

const execFileAsync = promisify(execFile);
const NETNS_MODULE = new URL('../../src/kernel/netns.js', import.meta.url).href;

describe("the network namespaces of a cgroup's processes", { skip: missingPrivileges() }, () => {
  const lab = new Lab();
  let sandbox: Sandbox;
  let pid: number;

  before(async () => {
    await Lab.sweepStale();
    sandbox = await lab.addSandbox('ns');
    const child = lab.spawn(sandbox, ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '600']);
    // In the cgroup at once, but in the namespace and of uid 65534 only once it is sleep.
    pid = await execedAs(child.pid!, 'sleep');
  });
  after(() => lab.close());

  it("opens another user's process's namespace with CAP_SYS_PTRACE", () => {
    const denied: DeniedProcesses = { pids: [] };
    const namespaces = openNamespacesOfCgroups([sandbox.cgroupPath], denied);
    try {
      assert.deepEqual(
        namespaces.map(({ inode }) => inode),
        [statSync(sandbox.netnsPath).ino],
      );
      assert.deepEqual(denied, { pids: [] });
    } finally {
      closeNamespaces(namespaces);
    }
  });

  it('reports the process, and opens nothing, without CAP_SYS_PTRACE', async () => {
    const script =
      `const { openNamespacesOfCgroups } = await import(${JSON.stringify(NETNS_MODULE)});` +
      `const denied = { pids: [] };` +
      `const opened = openNamespacesOfCgroups([${JSON.stringify(sandbox.cgroupPath)}], denied).length;` +
      `console.log(JSON.stringify({ opened, denied }));`;
    const { stdout } = await execFileAsync('setpriv', [
      '--bounding-set=-sys_ptrace',
      process.execPath,
      '--input-type=module',
      '-e',
      script,
    ]);
    assert.deepEqual(JSON.parse(stdout), { opened: 0, denied: { pids: [pid], code: 'EACCES' } });
  });
});
