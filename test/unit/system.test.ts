import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cgroup2Root, mountPoints } from '../../src/kernel/mounts.js';
import { checkPrivileges, effectiveCapabilities } from '../../src/kernel/system.js';

const HYBRID = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 25 0:39 / /sys/fs/bpf rw,relatime - bpf bpf rw,mode=700`;
const PURE_V2 = `35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate`;
const ESCAPED = `50 24 0:44 / /mnt/my\\040cgroups rw,relatime - cgroup2 none rw`;

describe('finding mounts in /proc/self/mountinfo', () => {
  it('finds the cgroup v2 root of a hybrid layout at /sys/fs/cgroup/unified', () =>
    assert.equal(cgroup2Root(HYBRID), '/sys/fs/cgroup/unified'));
  it('finds the cgroup v2 root of a pure v2 layout at /sys/fs/cgroup', () => assert.equal(cgroup2Root(PURE_V2), '/sys/fs/cgroup'));
  it('undoes the octal escapes of mount points', () => assert.deepEqual(mountPoints(ESCAPED, 'cgroup2'), ['/mnt/my cgroups']));
  it('finds bpffs mounts', () => assert.deepEqual(mountPoints(HYBRID, 'bpf'), ['/sys/fs/bpf']));
  it('says in one sentence that there is no cgroup v2 hierarchy', () => {
    assert.throws(() => cgroup2Root(HYBRID.replace('cgroup2 cgroup2', 'cgroup cgroup')), {
      code: 'SOCKLB_ERR_NO_CGROUP2',
      message: /no cgroup v2 hierarchy is mounted/,
    });
  });
});

describe('privileges', () => {
  const bits = (...capabilities: number[]) => capabilities.reduce((set, bit) => set | (1n << BigInt(bit)), 0n);
  it('reads the effective set from /proc/self/status', () =>
    assert.equal(effectiveCapabilities('Name:\tnode\nCapEff:\t000001ffffffffff\n'), 0x1ffffffffffn));
  it('accepts CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN', () => assert.doesNotThrow(() => checkPrivileges(bits(39, 12, 21))));
  it('accepts CAP_SYS_ADMIN and CAP_NET_ADMIN without CAP_BPF, as older kernels need', () =>
    assert.doesNotThrow(() => checkPrivileges(bits(12, 21))));
  it('names the missing capabilities of an unprivileged process', () => {
    assert.throws(() => checkPrivileges(0n), {
      code: 'SOCKLB_ERR_PRIVILEGES',
      message: /needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN.*missing: CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN/,
    });
  });
});

describe('bind mounts', () => {
  it('skips a bind mount of a cgroup v2 sub-tree: its paths are not the hierarchy`s', () => {
    const bound = `60 24 0:30 /kubepods /var/lib/kubelet/cgroup rw,relatime - cgroup2 cgroup2 rw\n${PURE_V2}`;
    assert.equal(cgroup2Root(bound), '/sys/fs/cgroup');
  });
});
