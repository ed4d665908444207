// When a pinned link serves its cgroup, from the kernel's descriptions of both, made up here: the
// kernel's own answers are in test/integration/attach.test.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LinkInfo } from '../../src/kernel/bpf-objects.js';
import { linkProblem, type CgroupView } from '../../src/pins/link-health.js';

const CONNECT4 = 10;
const SOCK_RELEASE = 34;

/** The cgroup at /cg/s1 now: id 7000, and the programs that run there by attach type. */
function cgroup(effective: Record<number, number[]>): CgroupView {
  return { path: '/cg/s1', id: 7000n, effective: (attachType) => effective[attachType] ?? [] };
}

const link = (cgroupId: bigint, attachType = CONNECT4): LinkInfo => ({ id: 12, programId: 40, cgroup: { id: cgroupId, attachType } });

describe('a pinned link serves its cgroup', () => {
  it('when attached to the cgroup at the path now, with its program among those that run there', () => {
    assert.equal(linkProblem(link(7000n), cgroup({ [CONNECT4]: [31, 40] })), undefined);
  });

  it('not when detached, or its cgroup died: the kernel says cgroup 0', () => {
    assert.deepEqual(linkProblem(link(0n), cgroup({ [CONNECT4]: [40] })), {
      reason: 'link_detached',
      detail: 'link 12 is attached to no cgroup (detached, or its cgroup was removed)',
    });
  });

  it('not when attached to a cgroup that is no longer the one at the path', () => {
    assert.deepEqual(linkProblem(link(6999n), cgroup({ [CONNECT4]: [40] })), {
      reason: 'cgroup_replaced',
      detail: 'link 12 is attached to cgroup 6999, and the cgroup at /cg/s1 is now 7000 (removed and made again)',
    });
  });

  it('not when its program is not among those that run for its hook, naming the hook as bpftool does', () => {
    assert.deepEqual(linkProblem(link(7000n, SOCK_RELEASE), cgroup({ [CONNECT4]: [40], [SOCK_RELEASE]: [41] })), {
      reason: 'not_effective',
      detail: 'program 40 of link 12 is not among the cgroup_inet_sock_release programs that run in /cg/s1',
    });
  });

  it('not when the pin holds another kind of link', () => {
    assert.deepEqual(linkProblem({ id: 12, programId: 40 }, cgroup({})), {
      reason: 'link_missing',
      detail: 'link 12 is not a cgroup link',
    });
  });
});
