import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  cgroupOfProcess,
  GUEST_ANNOTATION,
  guestOf,
  hookAction,
  parseContainerState,
  type ContainerState,
} from '../../src/sandbox/oci-state.js';

const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`;
const PURE_V2 = `35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate`;

// As runc 1.1 wrote them at createRuntime and poststop (the lab's test saw these).
const CREATING = '{"ociVersion":"1.0.2-dev","id":"ctr1","status":"creating","pid":26656,"bundle":"/tmp/b"}';
const STOPPED = '{"ociVersion":"1.0.2-dev","id":"ctr1","status":"stopped","bundle":"/tmp/b"}';

describe('OCI container state', () => {
  it("reads runc's createRuntime state", () => {
    assert.deepEqual(parseContainerState(CREATING), {
      ociVersion: '1.0.2-dev',
      id: 'ctr1',
      status: 'creating',
      pid: 26656,
      bundle: '/tmp/b',
      annotations: {},
    });
  });
  it('reads a stopped state without a pid, and treats pid 0 as none', () => {
    assert.equal(parseContainerState(STOPPED).pid, undefined);
    assert.equal(parseContainerState(STOPPED.replace('}', ',"pid":0}')).pid, undefined);
  });
  it('keeps the annotations', () => {
    assert.deepEqual(parseContainerState(CREATING.replace('}', ',"annotations":{"io.kubernetes.pod.name":"p"}}')).annotations, {
      'io.kubernetes.pod.name': 'p',
    });
  });
  for (const [text, message] of [
    ['', /OCI container state on stdin: "" is not JSON/],
    ['[]', /not a JSON object/],
    ['{"ociVersion":"1.0.2","status":"creating","bundle":"/b"}', /field "id" is missing or not a string/],
    [CREATING.replace('26656', '-1'), /field "pid" -1 is not a process id/],
    [CREATING.replace('26656', '"12"'), /field "pid" "12" is not a process id/],
    [CREATING.replace('}', ',"annotations":[]}'), /field "annotations" is not an object/],
  ] as const) {
    it(`refuses ${text === '' ? 'empty input' : text.slice(0, 50)} in one sentence`, () =>
      assert.throws(() => parseContainerState(text), { code: 'SOCKLB_ERR_OCI_STATE', message }));
  }
});

describe('a microVM sandbox', () => {
  const withAnnotations = (annotations: Record<string, unknown>) =>
    parseContainerState(JSON.stringify({ ociVersion: '1.0.2', id: 'vm1', status: 'creating', bundle: '/b', annotations }));

  it('names its guest in the socklb.io/guest annotation', () =>
    assert.equal(guestOf(withAnnotations({ [GUEST_ANNOTATION]: 'unix:/run/vm1/v.sock_1024' })), 'unix:/run/vm1/v.sock_1024'));
  it('is none without it: a container of this kernel', () => assert.equal(guestOf(withAnnotations({ other: 'x' })), undefined));
  it('refuses an annotation that is no address', () =>
    assert.throws(() => guestOf(withAnnotations({ [GUEST_ANNOTATION]: '' })), { code: 'SOCKLB_ERR_OCI_STATE' }));
});

describe('which stage the hook runs at', () => {
  const state = (status: string): ContainerState => ({ ...parseContainerState(CREATING), status });
  it('registers while creating (createRuntime), created or running (poststart)', () => {
    for (const status of ['creating', 'created', 'running']) assert.equal(hookAction(undefined, state(status)), 'register');
  });
  it('unregisters once stopped (poststop)', () => assert.equal(hookAction(undefined, state('stopped')), 'unregister'));
  it('follows the stage given over the status', () => {
    assert.equal(hookAction('poststop', state('running')), 'unregister');
    assert.equal(hookAction('createRuntime', state('paused')), 'register');
  });
  it('asks for the stage when a runtime reports a status of its own', () => {
    assert.throws(() => hookAction(undefined, state('paused')), {
      code: 'SOCKLB_ERR_OCI_STATE',
      message: /container ctr1 has status "paused"; give the stage/,
    });
  });
});

describe("the container's cgroup", () => {
  const procCgroup = '9:name=systemd:/lab/ctr1\n4:memory:/lab/ctr1\n0::/lab/ctr1\n';
  it('is the "0::" path below the cgroup v2 mount of a hybrid host', () =>
    assert.equal(cgroupOfProcess(7, procCgroup, HYBRID), '/sys/fs/cgroup/unified/lab/ctr1'));
  it('is the "0::" path below /sys/fs/cgroup on a pure v2 host', () =>
    assert.equal(cgroupOfProcess(7, '0::/kubepods.slice/cri-x.scope\n', PURE_V2), '/sys/fs/cgroup/kubepods.slice/cri-x.scope'));
  it('refuses a process in no cgroup v2', () =>
    assert.throws(() => cgroupOfProcess(7, '4:memory:/lab\n', HYBRID), {
      code: 'SOCKLB_ERR_CGROUP',
      message: /process 7 is in no cgroup v2/,
    }));
  it('refuses the root cgroup: attaching there would translate the whole host', () => {
    assert.throws(() => cgroupOfProcess(7, '0::/\n', HYBRID), {
      code: 'SOCKLB_ERR_CGROUP',
      message: /process 7 is in the cgroup v2 root: its container has no cgroup of its own/,
    });
  });
  it('refuses a deleted cgroup', () =>
    assert.throws(() => cgroupOfProcess(7, '0::/lab/ctr1 (deleted)\n', HYBRID), { code: 'SOCKLB_ERR_CGROUP', message: /not a live path/ }));
});
