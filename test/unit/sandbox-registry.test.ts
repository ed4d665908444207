import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkSandboxId, describeBypass, SandboxRegistry, type Sandbox, type SandboxAttachments } from '../../src/sandbox/registry.js';

/** Records the kernel calls; fails an attach when told to. */
class FakeAttachments implements SandboxAttachments {
  readonly cgroupRoot = '/cg';
  readonly calls: string[] = [];
  failNextAttach: Error | undefined;
  attach(sandbox: Sandbox): void {
    if (this.failNextAttach) {
      const error = this.failNextAttach;
      this.failNextAttach = undefined;
      throw error;
    }
    this.calls.push(`attach ${sandbox.id} ${sandbox.cgroup}`);
  }
  detach(sandbox: Sandbox): void {
    this.calls.push(`detach ${sandbox.id} ${sandbox.cgroup}`);
  }
  reattach(sandbox: Sandbox): void {
    if (this.failNextAttach) {
      const error = this.failNextAttach;
      this.failNextAttach = undefined;
      throw error;
    }
    this.calls.push(`reattach ${sandbox.id} ${sandbox.cgroup}`);
  }
}

describe('sandbox registry: what a sandbox leaves untranslated', () => {
  it('registers no-translate and excluded Services, canonical (sorted, once each), and lists them', () => {
    const registry = new SandboxRegistry(new FakeAttachments());
    assert.deepEqual(registry.add('c1', '/cg/c1', { noTranslate: true }).sandbox, { id: 'c1', cgroup: '/cg/c1', noTranslate: true });
    registry.add('c2', '/cg/c2', { excludeServices: ['shop/web', 'kube-system/kube-dns', 'shop/web'] });
    assert.deepEqual(registry.list(), [
      { id: 'c1', cgroup: '/cg/c1', noTranslate: true },
      { id: 'c2', cgroup: '/cg/c2', excludeServices: ['kube-system/kube-dns', 'shop/web'] },
    ]);
    assert.equal(describeBypass(registry.list()[0]!), 'all');
    assert.equal(describeBypass(registry.list()[1]!), 'kube-system/kube-dns, shop/web');
    assert.equal(describeBypass({}), undefined);
  });

  it('answers "unchanged" to the same bypass again, and refuses another one for the same sandbox', () => {
    const registry = new SandboxRegistry(new FakeAttachments());
    registry.add('c1', '/cg/c1', { excludeServices: ['a/b'] });
    assert.equal(registry.add('c1', '/cg/c1', { excludeServices: ['a/b'] }).outcome, 'unchanged');
    assert.throws(() => registry.add('c1', '/cg/c1'), {
      code: 'SOCKLB_ERR_SANDBOX',
      message: 'sandbox c1 is already registered with cgroup /cg/c1, leaving a/b untranslated; remove it first to change that',
    });
  });

  it('refuses a Service that is not NAMESPACE/NAME, and no-translate with excluded Services', () => {
    const registry = new SandboxRegistry(new FakeAttachments());
    for (const ref of ['web', 'shop/', 'Shop/web', 'shop/web/x', 'shop/9web'])
      assert.throws(() => registry.add('c1', '/cg/c1', { excludeServices: [ref] }), {
        code: 'SOCKLB_ERR_SANDBOX',
        message: `sandbox c1: excluded Service ${JSON.stringify(ref)}: not a Service as NAMESPACE/NAME, such as kube-system/kube-dns`,
      });
    assert.throws(
      () => registry.add('c1', '/cg/c1', { noTranslate: true, excludeServices: ['a/b'] }),
      /give it or excluded Services, not both/,
    );
    assert.deepEqual(registry.list(), []);
  });

  it('tells its listeners before a new sandbox is attached and after one is removed or fails to attach', () => {
    const kernel = new FakeAttachments();
    const registry = new SandboxRegistry(kernel);
    const seen: string[] = [];
    registry.onChange(() =>
      seen.push(
        `${registry
          .list()
          .map((sandbox) => sandbox.id)
          .join(',')} after ${kernel.calls.length} calls`,
      ),
    );
    registry.add('c1', '/cg/c1', { noTranslate: true });
    registry.remove('c1');
    kernel.failNextAttach = new Error('no');
    assert.throws(() => registry.add('c2', '/cg/c2'));
    assert.deepEqual(seen, ['c1 after 0 calls', ' after 2 calls', 'c2 after 2 calls', ' after 2 calls']);
  });
});

describe('sandbox registry', () => {
  it('attaches a new sandbox and lists it', () => {
    const kernel = new FakeAttachments();
    const registry = new SandboxRegistry(kernel);
    assert.deepEqual(registry.add('c1', '/cg/c1'), { outcome: 'added', sandbox: { id: 'c1', cgroup: '/cg/c1' } });
    assert.deepEqual(kernel.calls, ['attach c1 /cg/c1']);
    assert.deepEqual(registry.list(), [{ id: 'c1', cgroup: '/cg/c1' }]);
    assert.deepEqual(registry.cgroups(), ['/cg/c1']);
  });

  it('answers "unchanged" to the same id and cgroup again, and attaches again: a cgroup made anew at the path gets live links', () => {
    const kernel = new FakeAttachments();
    const registry = new SandboxRegistry(kernel, [{ id: 'c1', cgroup: '/cg/c1' }]);
    assert.equal(registry.add('c1', '/cg/c1').outcome, 'unchanged');
    assert.deepEqual(kernel.calls, ['attach c1 /cg/c1']);
  });

  it('forgets a sandbox that cannot be attached again, as its pins are gone', () => {
    const kernel = new FakeAttachments();
    const registry = new SandboxRegistry(kernel, [{ id: 'c1', cgroup: '/cg/c1' }]);
    kernel.failNextAttach = new Error('cgroup /cg/c1 is gone');
    assert.throws(() => registry.add('c1', '/cg/c1'), /cgroup \/cg\/c1 is gone/);
    assert.deepEqual(kernel.calls, ['detach c1 /cg/c1']);
    assert.deepEqual(registry.list(), []);
  });

  it('attaches a sandbox again when its links stop serving, and keeps it registered with its links when that fails', () => {
    const kernel = new FakeAttachments();
    const registry = new SandboxRegistry(kernel, [{ id: 'c1', cgroup: '/cg/c1' }]);
    registry.reattach('c1');
    kernel.failNextAttach = new Error('attach socklb_connect4 to cgroup /cg/c1: EPERM');
    assert.throws(() => registry.reattach('c1'), /EPERM/);
    assert.deepEqual(kernel.calls, ['reattach c1 /cg/c1'], 'nothing detached');
    assert.deepEqual(registry.list(), [{ id: 'c1', cgroup: '/cg/c1' }]);
    assert.throws(() => registry.reattach('nope'), { code: 'SOCKLB_ERR_NO_SANDBOX', message: 'no sandbox "nope" is registered' });
  });

  for (const spelling of ['/cg/c1/', '/cg/x/../c1', '/cg//c1']) {
    it(`takes ${spelling} for the cgroup /cg/c1 already registered`, () => {
      const registry = new SandboxRegistry(new FakeAttachments(), [{ id: 'c1', cgroup: '/cg/c1' }]);
      assert.deepEqual(registry.add('c1', spelling), { outcome: 'unchanged', sandbox: { id: 'c1', cgroup: '/cg/c1' } });
      assert.throws(() => registry.add('c2', spelling), {
        code: 'SOCKLB_ERR_SANDBOX',
        message: 'cgroup /cg/c1 is already registered as sandbox c1',
      });
    });
  }

  for (const root of ['/cg', '/cg/', '/cg/c1/..']) {
    it(`refuses the cgroup v2 root spelt ${root}: every process of the host would be translated`, () => {
      const kernel = new FakeAttachments();
      assert.throws(() => new SandboxRegistry(kernel).add('c1', root), {
        code: 'SOCKLB_ERR_SANDBOX',
        message: /^sandbox c1: cgroup \/cg is the cgroup v2 root/,
      });
      assert.deepEqual(kernel.calls, []);
    });
  }

  it('refuses an id already registered with another cgroup, naming both', () => {
    const registry = new SandboxRegistry(new FakeAttachments(), [{ id: 'c1', cgroup: '/cg/c1' }]);
    assert.throws(() => registry.add('c1', '/cg/other'), {
      code: 'SOCKLB_ERR_SANDBOX',
      message: 'sandbox c1 is already registered with cgroup /cg/c1; remove it first to register /cg/other',
    });
  });

  it('refuses a cgroup already registered under another id: its programs would run twice', () => {
    const registry = new SandboxRegistry(new FakeAttachments(), [{ id: 'c1', cgroup: '/cg/c1' }]);
    assert.throws(() => registry.add('c2', '/cg/c1'), {
      code: 'SOCKLB_ERR_SANDBOX',
      message: 'cgroup /cg/c1 is already registered as sandbox c1',
    });
  });

  it('refuses a relative cgroup path', () => {
    assert.throws(() => new SandboxRegistry(new FakeAttachments()).add('c1', 'cg/c1'), {
      code: 'SOCKLB_ERR_SANDBOX',
      message: /cgroup cg\/c1 is not an absolute path/,
    });
  });

  it('registers nothing when the kernel refuses the attach', () => {
    const kernel = new FakeAttachments();
    const registry = new SandboxRegistry(kernel);
    kernel.failNextAttach = new Error('no such cgroup directory');
    assert.throws(() => registry.add('c1', '/cg/c1'), /no such cgroup directory/);
    assert.deepEqual(registry.list(), []);
    assert.equal(registry.add('c1', '/cg/c1').outcome, 'added', 'a later try attaches');
  });

  it('detaches on remove and forgets the sandbox', () => {
    const kernel = new FakeAttachments();
    const registry = new SandboxRegistry(kernel, [
      { id: 'c1', cgroup: '/cg/c1' },
      { id: 'c2', cgroup: '/cg/c2' },
    ]);
    assert.deepEqual(registry.remove('c1'), { id: 'c1', cgroup: '/cg/c1' });
    assert.deepEqual(kernel.calls, ['detach c1 /cg/c1']);
    assert.deepEqual(registry.list(), [{ id: 'c2', cgroup: '/cg/c2' }]);
  });

  it('says that an unknown id is not registered, with its own code', () => {
    assert.throws(() => new SandboxRegistry(new FakeAttachments()).remove('nope'), {
      code: 'SOCKLB_ERR_NO_SANDBOX',
      message: 'no sandbox "nope" is registered',
    });
  });

  it('lists by id', () => {
    const registry = new SandboxRegistry(new FakeAttachments(), [
      { id: 'b', cgroup: '/cg/b' },
      { id: 'a', cgroup: '/cg/a' },
    ]);
    assert.deepEqual(
      registry.list().map((sandbox) => sandbox.id),
      ['a', 'b'],
    );
  });
});

describe('sandbox ids', () => {
  for (const id of ['c1', 'a'.repeat(64), 'runc-ctr_1.2+x', 'a'.repeat(128)]) {
    it(`accepts ${id.length > 20 ? `${id.length} characters` : id}`, () => assert.doesNotThrow(() => checkSandboxId(id)));
  }
  for (const [id, why] of [
    ['', 'empty'],
    ['.', 'a dot alone'],
    ['..', 'a parent directory'],
    ['a/b', 'a path'],
    ['a b', 'a space'],
    ['-a', 'a leading dash'],
    ['a'.repeat(129), 'over 128 characters'],
  ] as const) {
    it(`refuses ${why}`, () =>
      assert.throws(() => checkSandboxId(id), { code: 'SOCKLB_ERR_SANDBOX', message: /^sandbox id .*: use 1-128 letters/ }));
  }
});
