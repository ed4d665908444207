import { NODE } from './model-fixtures.js';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, symlink, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import { DesiredFrontends } from '../../src/model/desired.js';
import { serviceFrontends } from '../../src/model/frontends.js';
import { backendText, frontendId } from '../../src/model/keys.js';
import { ManifestSource } from '../../src/sources/manifests.js';
import type { SourceState } from '../../src/model/source-state.js';

// ---- Manifests as `kubectl get -o yaml` prints them ----

const webList = `apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"}}
    creationTimestamp: "2024-05-02T09:14:11Z"
    labels:
      app: web
    managedFields:
    - apiVersion: v1
      fieldsType: FieldsV1
      fieldsV1:
        f:spec:
          f:ports: {}
      manager: kubectl-client-side-apply
      operation: Update
      time: "2024-05-02T09:14:11Z"
    name: web
    namespace: shop
    resourceVersion: "48213"
    uid: 6f1c2d7e-9a41-4b8e-a0d5-2f3c9e1b7a60
  spec:
    clusterIP: 10.96.12.34
    clusterIPs:
    - 10.96.12.34
    - fd00:10:96::1234
    internalTrafficPolicy: Cluster
    ipFamilies:
    - IPv4
    - IPv6
    ipFamilyPolicy: PreferDualStack
    ports:
    - name: http
      port: 80
      protocol: TCP
      targetPort: http
    - name: https
      port: 443
      protocol: TCP
      targetPort: 8443
    selector:
      app: web
    sessionAffinity: None
    type: ClusterIP
  status:
    loadBalancer: {}
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses:
    - 10.244.1.5
    conditions:
      ready: true
      serving: true
      terminating: false
    nodeName: node-a
    targetRef:
      kind: Pod
      name: web-7d4b9c-x2x9z
      namespace: shop
      uid: 0b7e4c1a-5d2f-4e8b-9c3a-1f6d8e2a4b70
    zone: zone-a
  - addresses:
    - 10.244.2.7
    conditions:
      ready: true
      serving: true
      terminating: false
    nodeName: node-b
    zone: zone-b
  - addresses:
    - 10.244.3.9
    conditions:
      ready: false
      serving: true
      terminating: true
    nodeName: node-c
  kind: EndpointSlice
  metadata:
    creationTimestamp: "2024-05-02T09:14:11Z"
    generateName: web-
    generation: 7
    labels:
      endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
      kubernetes.io/service-name: web
    name: web-8kq2p
    namespace: shop
    ownerReferences:
    - apiVersion: v1
      blockOwnerDeletion: true
      controller: true
      kind: Service
      name: web
      uid: 6f1c2d7e-9a41-4b8e-a0d5-2f3c9e1b7a60
    resourceVersion: "48301"
    uid: 3c5e7a9b-1d2f-4a6c-8e0b-7f9a1c3e5d20
  ports:
  - name: http
    port: 8080
    protocol: TCP
  - name: https
    port: 8443
    protocol: TCP
- addressType: IPv6
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses:
    - fd00:10:244:1::5
    conditions:
      ready: true
    nodeName: node-a
  kind: EndpointSlice
  metadata:
    labels:
      kubernetes.io/service-name: web
    name: web-v6r2t
    namespace: shop
  ports:
  - name: http
    port: 8080
    protocol: TCP
  - name: https
    port: 8443
    protocol: TCP
kind: List
metadata:
  resourceVersion: ""
`;

// Two slices of one Service (the controller splits large ones) listing one endpoint twice, and a Deployment.
const apiMultiDoc = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
spec:
  replicas: 2
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: shop
spec:
  clusterIP: 10.96.20.1
  ports:
  - port: 8000
    targetPort: 8000
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-aaaaa
  namespace: shop
  labels:
    kubernetes.io/service-name: api
addressType: IPv4
ports:
- name: ""
  port: 8000
  protocol: TCP
endpoints:
- addresses: [10.244.1.20]
- addresses: [10.244.1.21]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-bbbbb
  namespace: shop
  labels:
    kubernetes.io/service-name: api
addressType: IPv4
ports:
- port: 8000
endpoints:
- addresses: [10.244.1.21]
- addresses: [10.244.1.22]
`;

const dnsJson = JSON.stringify({
  apiVersion: 'v1',
  kind: 'ServiceList',
  items: [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: 'kube-system', uid: 'a8c2e4f6-0b1d-4c3e-9f5a-7b8d6e2c4a10' },
      spec: {
        clusterIP: '10.96.0.10',
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
          { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
        ],
      },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'kube-dns-x7k2m', namespace: 'kube-system', labels: { 'kubernetes.io/service-name': 'kube-dns' } },
      addressType: 'IPv4',
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'dns-tcp', port: 53, protocol: 'TCP' },
      ],
      endpoints: [{ addresses: ['10.244.0.3'], conditions: { ready: true } }],
    },
  ],
});

const notTranslated = `apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: shop
spec:
  clusterIP: None
  clusterIPs: [None]
  ports:
  - port: 5432
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-q9w8e
  namespace: shop
  labels:
    kubernetes.io/service-name: db
addressType: IPv4
ports:
- port: 5432
endpoints:
- addresses: [10.244.1.30]
---
apiVersion: v1
kind: Service
metadata:
  name: payments
  namespace: shop
spec:
  type: ExternalName
  externalName: payments.example.com
`;

const badObjects = `apiVersion: v1
kind: Service
metadata: {name: sctp, namespace: shop}
spec:
  clusterIP: 10.96.30.1
  ports: [{name: assoc, port: 9899, protocol: SCTP}, {name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: big, namespace: shop}
spec:
  clusterIP: 10.96.30.2
  ports: [{port: 70000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: unlabelled, namespace: shop}
addressType: IPv4
---
just a sentence
---
metadata: {name: kindless}
---
apiVersion: v1
kind: Service
metadata: {namespace: shop}
spec: {clusterIP: 10.96.30.3, ports: [{port: 80}]}
`;

const orphanSlice = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: gone-1, namespace: shop, labels: {kubernetes.io/service-name: gone}}
addressType: IPv4
`;

function simpleService(name: string, clusterIP: string, port = 80, namespace = 'default'): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
  clusterIP: ${clusterIP}
  ports:
  - port: ${port}
`;
}

// ---- Helpers ----

const root = await mkdtemp(join(tmpdir(), 'socklb-manifests-'));
after(() => rm(root, { recursive: true, force: true }));
let dirCount = 0;

async function freshDir(): Promise<string> {
  const dir = join(root, `case-${++dirCount}`);
  await mkdir(dir);
  return dir;
}

/**
 * Writes in place in one go, as another process's save would: an asynchronous write would let the
 * source, which shares this thread, scan between the file's truncation and its content.
 */
async function put(dir: string, path: string, text: string): Promise<void> {
  await mkdir(dirname(join(dir, path)), { recursive: true });
  writeFileSync(join(dir, path), text);
}

const WAIT_MS = 2000;

/** A started source whose states are recorded; stopped when the test ends. */
async function watched(t: TestContext, path: string) {
  const states: SourceState[] = [];
  let waiter: { matches: (state: SourceState) => boolean; resolve: (state: SourceState) => void } | undefined;
  const source = new ManifestSource({ path });
  t.after(() => source.stop());
  await source.start((state) => {
    states.push(state);
    if (waiter?.matches(state)) waiter.resolve(state);
  });
  return {
    states,
    latest: () => states[states.length - 1] as SourceState,
    /** Resolves with the first next state that matches, and how long it took; call it before the change. */
    next(matches: (state: SourceState) => boolean, what: string): Promise<{ state: SourceState; ms: number }> {
      const started = performance.now();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no state where ${what} within ${WAIT_MS} ms`)), WAIT_MS);
        waiter = {
          matches,
          resolve: (state) => {
            clearTimeout(timer);
            waiter = undefined;
            resolve({ state, ms: Math.round(performance.now() - started) });
          },
        };
      });
    },
  };
}

/**
 * The state as sorted text: frontends with their backends, orphan slices as the model finds them, then
 * problems with paths relative to `dir`.
 */
function dump(state: SourceState, dir: string): string[] {
  const slicesOf = (key: string) => [...state.slices.values()].filter((slice) => `${slice.namespace}/${slice.serviceName}` === key);
  const model = new DesiredFrontends(NODE);
  model.update(state);
  const orphans = model.problems().filter((problem) => problem.source === 'model' && problem.object.startsWith('EndpointSlice '));
  const lines: string[] = [];
  for (const [key, service] of [...state.services].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const { frontends, problems } = serviceFrontends(service, slicesOf(key), NODE);
    for (const { key: frontend, service: ref, backends } of frontends) {
      lines.push(
        `${frontendId(frontend)} ${ref.namespace}/${ref.name}:${ref.portName} ->${backends.map((b) => ` ${backendText(b)}`).join('')}`,
      );
    }
    for (const problem of problems) lines.push(`Service ${key}: ${problem}`);
  }
  for (const { object, reason } of orphans) lines.push(`orphan ${object}: ${reason}`);
  for (const { source, object, reason } of state.problems) lines.push(`problem ${relative(dir, source) || '.'}: ${object}: ${reason}`);
  return lines;
}

const hasService = (key: string) => (state: SourceState) => state.services.has(key);
const lacksService = (key: string) => (state: SourceState) => !state.services.has(key);
const servicePort = (state: SourceState, key: string) => state.services.get(key)?.ports[0]?.port;

// ---- Reading ----

describe('reading manifests', () => {
  test('a tree as kubectl prints it: List, multi-document, JSON, nested directories, dual-stack, merged slices', async (t) => {
    const dir = await freshDir();
    await put(dir, 'web.yaml', webList);
    await put(dir, 'team/api/api.yml', apiMultiDoc);
    await put(dir, 'kube-system/dns.json', dnsJson);
    await put(dir, 'not-translated.yaml', notTranslated);
    await put(dir, 'orphan.yaml', orphanSlice);
    // Not manifests: other extensions, editor temp files, a ConfigMap's ..data directory.
    await put(dir, 'README.md', '# not a manifest');
    await put(dir, '.web.yaml.swp', 'garbage: [');
    await put(dir, '..data/web.yaml', simpleService('hidden', '10.96.99.99'));
    const source = await watched(t, dir);
    assert.deepEqual(dump(source.latest(), dir), [
      '10.96.0.10:53/TCP kube-system/kube-dns:dns-tcp -> 10.244.0.3:53',
      '10.96.0.10:53/UDP kube-system/kube-dns:dns -> 10.244.0.3:53',
      '10.96.20.1:8000/TCP shop/api: -> 10.244.1.20:8000 10.244.1.21:8000 10.244.1.22:8000',
      '10.96.12.34:80/TCP shop/web:http -> 10.244.1.5:8080 10.244.2.7:8080',
      '10.96.12.34:443/TCP shop/web:https -> 10.244.1.5:8443 10.244.2.7:8443',
      '[fd00:10:96::1234]:80/TCP shop/web:http -> [fd00:10:244:1::5]:8080',
      '[fd00:10:96::1234]:443/TCP shop/web:https -> [fd00:10:244:1::5]:8443',
      'orphan EndpointSlice shop/gone-1: names Service shop/gone, which does not exist; its endpoints are unused',
    ]);
    assert.deepEqual(
      [...source.latest().ignoredServices].sort(),
      ['shop/db', 'shop/payments'],
      'headless and ExternalName: not translated, and their slices are no orphans',
    );
    assert.equal(source.states.length, 1, 'one state for the initial read');
  });

  test('each kind of bad object is reported with file, object and reason; the other objects stay', async (t) => {
    const dir = await freshDir();
    await put(dir, 'a/bad.yaml', badObjects);
    await put(dir, 'b/good.yaml', simpleService('good', '10.96.40.1'));
    const source = await watched(t, dir);
    assert.deepEqual(dump(source.latest(), dir), [
      '10.96.40.1:80/TCP default/good: ->',
      '10.96.30.1:80/TCP shop/sctp:http ->',
      'Service shop/sctp: SCTP ports 9899 are not translated: socket hooks do not cover SCTP',
      'problem a/bad.yaml: Service shop/big: spec.ports[0].port: 70000 is out of range 1-65535',
      'problem a/bad.yaml: EndpointSlice shop/unlabelled: metadata.labels["kubernetes.io/service-name"]: missing; ' +
        "this label joins the slice to its Service: set it to the Service's name",
      'problem a/bad.yaml: document 4: is not a mapping, so not a Kubernetes object',
      'problem a/bad.yaml: document 5: has no kind, so it is not a Kubernetes object',
      'problem a/bad.yaml: document 6: metadata.name: missing; a non-empty name is required',
    ]);
  });

  test('a YAML syntax error is reported with its line and column', async (t) => {
    const dir = await freshDir();
    await put(dir, 'broken.yaml', `${simpleService('one', '10.96.0.1')}---\nkind: Service\nmetadata: {name: [x}\n`);
    const source = await watched(t, dir);
    assert.deepEqual(dump(source.latest(), dir), [
      'problem broken.yaml: document 2: line 12, column 20: ' +
        'Flow sequence in block collection must be sufficiently indented and end with a ]',
      'problem broken.yaml: document 2: line 12, column 21: Flow map in block collection must be sufficiently indented and end with a }',
    ]);
  });

  test('an alias bomb is rejected, not expanded', async (t) => {
    const dir = await freshDir();
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 8; i++)
      levels.push(
        `l${i}: &l${i} [${Array(9)
          .fill(i === 1 ? '*a' : `*l${i - 1}`)
          .join(', ')}]`,
      );
    await put(dir, 'bomb.yaml', `${levels.join('\n')}\n`);
    const source = await watched(t, dir);
    assert.deepEqual(dump(source.latest(), dir), [
      'problem bomb.yaml: document 1: cannot be decoded: Excessive alias count indicates a resource exhaustion attack',
    ]);
  });

  test('JSON nested deeper than the stack is reported, not followed: Lists in Lists, a field holding a deep value', async (t) => {
    const dir = await freshDir();
    const depth = 20_000;
    await put(dir, 'lists.json', `${'{"kind":"List","items":['.repeat(depth)}${']}'.repeat(depth)}`);
    const deepPorts = `${'['.repeat(depth)}${']'.repeat(depth)}`;
    await put(
      dir,
      'ports.json',
      `{"apiVersion":"v1","kind":"Service","metadata":{"name":"deep"},"spec":{"clusterIP":"10.96.40.2","ports":${deepPorts}}}`,
    );
    await put(dir, 'good.yaml', simpleService('good', '10.96.40.1'));
    const source = await watched(t, dir);
    assert.deepEqual(dump(source.latest(), dir), [
      '10.96.40.1:80/TCP default/good: ->',
      "problem lists.json: document 1 items[0]: is a List inside a List; a List's items are objects: list them in the outer List",
      'problem ports.json: Service default/deep: spec.ports[0]: a list nested too deeply to print is not a mapping',
    ]);
  });

  test('the same object in two files: the first file in path order wins, the other is reported', async (t) => {
    const dir = await freshDir();
    await put(dir, 'a.yaml', simpleService('web', '10.96.0.1'));
    await put(dir, 'b.yaml', simpleService('web', '10.96.0.2'));
    const source = await watched(t, dir);
    assert.deepEqual(dump(source.latest(), dir), [
      '10.96.0.1:80/TCP default/web: ->',
      `problem b.yaml: Service default/web: is also defined in ${join(dir, 'a.yaml')}, which wins as the first in path order: remove one`,
    ]);
    const change = source.next((state) => state.services.get('default/web')?.clusterIPs[0] === '10.96.0.2', 'b.yaml takes over');
    await rm(join(dir, 'a.yaml'));
    await change;
    assert.deepEqual(source.latest().problems, []);
  });

  test('a file path is read whatever its extension; symlinked files are followed', async (t) => {
    const dir = await freshDir();
    await put(dir, 'real/service.manifest', simpleService('web', '10.96.0.1'));
    await symlink(join(dir, 'real/service.manifest'), join(dir, 'link.yaml'));
    const source = await watched(t, join(dir, 'link.yaml'));
    assert.deepEqual(dump(source.latest(), dir), ['10.96.0.1:80/TCP default/web: ->']);
    const { ms } = await (async () => {
      const change = source.next((state) => servicePort(state, 'default/web') === 81, 'the target edit is seen');
      await put(dir, 'real/service.manifest', simpleService('web', '10.96.0.1', 81));
      return change;
    })();
    t.diagnostic(`edit of a symlink target seen after ${ms} ms`);
  });
});

// ---- Last-good ----

describe('a failed update leaves the previous state', () => {
  test('broken YAML keeps the file objects, an invalid object keeps its last valid version, removal removes', async (t) => {
    const dir = await freshDir();
    await put(dir, 'web.yaml', simpleService('web', '10.96.0.1'));
    const source = await watched(t, dir);
    const good = ['10.96.0.1:80/TCP default/web: ->'];
    assert.deepEqual(dump(source.latest(), dir), good);

    let change = source.next((state) => state.problems.length > 0, 'the syntax error is reported');
    await put(dir, 'web.yaml', 'apiVersion: v1\nkind: Service\nmetadata: {name: web\n');
    assert.deepEqual(dump((await change).state, dir), [
      ...good,
      'problem web.yaml: document 1: line 4, column 1: Flow map in block collection must be sufficiently indented and end with a }; ' +
        'the 1 object(s) read from it before stay in effect until it is fixed',
    ]);

    change = source.next((state) => state.problems.some((p) => p.reason.includes('70000')), 'the invalid port is reported');
    await put(dir, 'web.yaml', simpleService('web', '10.96.0.1', 70000));
    assert.deepEqual(dump((await change).state, dir), [
      ...good,
      'problem web.yaml: Service default/web: spec.ports[0].port: 70000 is out of range 1-65535; ' +
        'its previous valid version stays in effect',
    ]);

    change = source.next((state) => servicePort(state, 'default/web') === 81, 'the fix takes effect');
    await put(dir, 'web.yaml', simpleService('web', '10.96.0.1', 81));
    assert.deepEqual(dump((await change).state, dir), ['10.96.0.1:81/TCP default/web: ->']);

    change = source.next(lacksService('default/web'), 'the removed file takes its objects');
    await rm(join(dir, 'web.yaml'));
    assert.deepEqual(dump((await change).state, dir), []);
  });
});

// ---- Watching ----

describe('watching', () => {
  test('add, edit, atomic replace, rename away and back, new and removed directories', async (t) => {
    const dir = await freshDir();
    const source = await watched(t, dir);
    assert.deepEqual(dump(source.latest(), dir), []);
    const steps: { what: string; matches: (state: SourceState) => boolean; act: () => Promise<void> }[] = [
      { what: 'a file is added', matches: hasService('default/web'), act: () => put(dir, 'web.yaml', simpleService('web', '10.96.0.1')) },
      {
        what: 'a file is edited in place',
        matches: (state) => servicePort(state, 'default/web') === 81,
        act: () => put(dir, 'web.yaml', simpleService('web', '10.96.0.1', 81)),
      },
      {
        what: 'a file is replaced by rename, as editors and kubectl-like tools do',
        matches: (state) => servicePort(state, 'default/web') === 82,
        act: async () => {
          await put(dir, '.web.yaml.tmp', simpleService('web', '10.96.0.1', 82));
          await rename(join(dir, '.web.yaml.tmp'), join(dir, 'web.yaml'));
        },
      },
      {
        what: 'a file is renamed away',
        matches: lacksService('default/web'),
        act: () => rename(join(dir, 'web.yaml'), join(dir, 'web.yaml.bak')),
      },
      {
        what: 'a file is renamed back',
        matches: hasService('default/web'),
        act: () => rename(join(dir, 'web.yaml.bak'), join(dir, 'web.yaml')),
      },
      {
        what: 'a new directory tree appears',
        matches: hasService('default/deep'),
        act: () => put(dir, 'x/y/z/deep.yaml', simpleService('deep', '10.96.0.2')),
      },
      {
        what: 'a file in the new directory is edited',
        matches: (state) => servicePort(state, 'default/deep') === 90,
        act: () => put(dir, 'x/y/z/deep.yaml', simpleService('deep', '10.96.0.2', 90)),
      },
      { what: 'the directory is removed', matches: lacksService('default/deep'), act: () => rm(join(dir, 'x'), { recursive: true }) },
      { what: 'a file is removed', matches: lacksService('default/web'), act: () => rm(join(dir, 'web.yaml')) },
    ];
    for (const { what, matches, act } of steps) {
      const change = source.next(matches, what);
      await act();
      const { ms } = await change;
      t.diagnostic(`${what}: new state after ${ms} ms`);
    }
  });

  test('a ConfigMap volume update (..data symlink swap) takes effect', async (t) => {
    const dir = await freshDir();
    await put(dir, '..2024_05_02_09_14_11.1/web.yaml', simpleService('web', '10.96.0.1'));
    await symlink('..2024_05_02_09_14_11.1', join(dir, '..data'));
    await symlink('..data/web.yaml', join(dir, 'web.yaml'));
    const source = await watched(t, dir);
    assert.deepEqual(dump(source.latest(), dir), ['10.96.0.1:80/TCP default/web: ->']);
    const change = source.next((state) => servicePort(state, 'default/web') === 81, 'the new ConfigMap content is read');
    // What the kubelet does: write a new timestamped directory, swap ..data atomically, remove the old one.
    await put(dir, '..2024_05_02_09_20_00.2/web.yaml', simpleService('web', '10.96.0.1', 81));
    await symlink('..2024_05_02_09_20_00.2', join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    await rm(join(dir, '..2024_05_02_09_14_11.1'), { recursive: true });
    t.diagnostic(`ConfigMap swap seen after ${(await change).ms} ms`);
  });

  test('a path that does not exist yet is a problem, and is read once it appears', async (t) => {
    const dir = await freshDir();
    const path = join(dir, 'later', 'manifests');
    const source = await watched(t, path);
    assert.deepEqual(dump(source.latest(), dir), [
      `problem later/manifests: path: does not exist; socklb watches ${dir} and reads it once it appears, ` +
        `leaving the datapath as it is until then`,
    ]);
    assert.equal(source.latest().complete, false, 'a path that does not exist tells nothing of the Services');
    const change = source.next(hasService('default/web'), 'the new directory is read');
    await put(path, 'web.yaml', simpleService('web', '10.96.0.1'));
    const { state, ms } = await change;
    t.diagnostic(`path appeared: new state after ${ms} ms`);
    assert.deepEqual(state.problems, []);
  });

  test('a manifest file path that is missing, created, replaced and deleted', async (t) => {
    const dir = await freshDir();
    const path = join(dir, 'web.yaml');
    const source = await watched(t, path);
    assert.deepEqual(dump(source.latest(), dir), [
      `problem web.yaml: path: does not exist; socklb watches ${dir} and reads it once it appears, ` +
        `leaving the datapath as it is until then`,
    ]);
    let change = source.next(hasService('default/web'), 'the file is read once created');
    await put(dir, 'web.yaml', simpleService('web', '10.96.0.1'));
    const created = await change;
    t.diagnostic(`file created: new state after ${created.ms} ms`);
    assert.notEqual(created.state.complete, false);
    change = source.next((state) => servicePort(state, 'default/web') === 81, 'the replaced file is read');
    await put(dir, 'web.yaml.new', simpleService('web', '10.96.0.1', 81));
    await rename(join(dir, 'web.yaml.new'), path);
    t.diagnostic(`file replaced: new state after ${(await change).ms} ms`);
    change = source.next((state) => state.complete === false, 'the deleted file is said to be missing');
    await rm(path);
    const deleted = await change;
    t.diagnostic(`file deleted: new state after ${deleted.ms} ms`);
    assert.equal(deleted.state.problems[0]?.object, 'path');
    assert.equal(servicePort(deleted.state, 'default/web'), 81, 'a missing file is not read as an empty one: its objects stay');
    change = source.next((state) => state.complete !== false && !state.services.has('default/web'), 'an emptied file takes its objects');
    await put(dir, 'web.yaml', '');
    t.diagnostic(`file emptied: new state after ${(await change).ms} ms`);
  });

  test('events about temporary files are passed over, but not a new directory whose name looks like one', async (t) => {
    const dir = await freshDir();
    const source = await watched(t, dir);
    const change = source.next(hasService('default/web'), 'the directory is read');
    await put(dir, 'web.json.tmp', 'not read');
    await mkdir(join(dir, 'v2.tmp'));
    await put(dir, 'v2.tmp/web.yaml', simpleService('web', '10.96.0.1'));
    t.diagnostic(`new directory read after ${(await change).ms} ms`);
  });

  test('no new state when nothing socklb reads changed', async (t) => {
    const dir = await freshDir();
    await put(dir, 'web.yaml', simpleService('web', '10.96.0.1'));
    const source = await watched(t, dir);
    await utimes(join(dir, 'web.yaml'), new Date(), new Date());
    await put(dir, 'deployment.yaml', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n');
    await put(dir, 'notes.txt', 'not a manifest');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(source.states.length, 1);
  });
});

test('stop closes every watcher and timer, and no state comes after it', async (t) => {
  const dir = await freshDir();
  await put(dir, 'sub/web.yaml', simpleService('web', '10.96.0.1'));
  const states: SourceState[] = [];
  const source = new ManifestSource({ path: dir });
  await source.start((state) => states.push(state));
  await put(dir, 'sub/other.yaml', simpleService('other', '10.96.0.2'));
  await source.stop();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const watchers = process.getActiveResourcesInfo().filter((resource) => resource === 'FSEventWrap');
  t.diagnostic(`active resources after stop: ${process.getActiveResourcesInfo().join(', ') || 'none'}`);
  assert.deepEqual(watchers, []);
  assert.equal(states.length, 1);
});
