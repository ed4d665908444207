import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { SocklbError } from '../../src/errors.js';
import { ApiClient, ApiError, type KubeObject, type WatchEventType } from '../../src/sources/api-client.js';
import { loadKubeConfig } from '../../src/sources/kubeconfig.js';
import { KubernetesSource, proxyLabelSelector, type KubernetesSourceOptions } from '../../src/sources/kubernetes.js';
import type { SourceState } from '../../src/model/source-state.js';
import { ApiServer, type ResourceName } from '../fixtures/apiserver.js';
import { endpointSlice, service } from '../integration/support.js';

// ---- Objects as the cluster holds them ----

const PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
const HEADLESS_LABEL = 'service.kubernetes.io/headless';
const KUBE_PROXY_SELECTOR = `!${HEADLESS_LABEL},!${PROXY_NAME_LABEL}`;

function webService(name = 'web', clusterIP = '10.96.0.10', labels: Record<string, string> = {}, port = 80) {
  const object = service(name, [clusterIP], [{ name: 'http', port }]);
  object.metadata.labels = labels;
  return object;
}

function webSlice(name = 'web-abc12', serviceName = 'web', ips = ['10.244.0.5'], labels: Record<string, string> = {}) {
  const object = endpointSlice(
    name,
    serviceName,
    'IPv4',
    [{ name: 'http', port: 8080 }],
    ips.map((ip) => ({ ip })),
  ) as { metadata: { labels: Record<string, string> } };
  Object.assign(object.metadata.labels, labels);
  return object;
}

function node(name = 'node-1', zone?: string) {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: zone === undefined ? { 'kubernetes.io/hostname': name } : { 'topology.kubernetes.io/zone': zone } },
  };
}

// ---- The source under test, and what it delivers ----

/** Every state a source delivered, and a way to wait for one. */
class States {
  readonly all: SourceState[] = [];
  private waiters: { accept: (state: SourceState) => boolean; resolve: (state: SourceState) => void }[] = [];

  readonly push = (state: SourceState): void => {
    this.all.push(state);
    for (const waiter of [...this.waiters]) {
      if (!waiter.accept(state)) continue;
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve(state);
    }
  };

  get last(): SourceState {
    const state = this.all.at(-1);
    assert.ok(state, 'no state was delivered');
    return state;
  }

  /** The latest state if it satisfies `accept`, else the next one that does. */
  until(accept: (state: SourceState) => boolean, timeoutMs = 5000): Promise<SourceState> {
    const last = this.all.at(-1);
    if (last && accept(last)) return Promise.resolve(last);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no such state within ${timeoutMs} ms; last: ${summary(this.all.at(-1))}`)),
        timeoutMs,
      );
      this.waiters.push({ accept, resolve: (state) => (clearTimeout(timer), resolve(state)) });
    });
  }
}

function summary(state: SourceState | undefined): string {
  if (!state) return 'none';
  return JSON.stringify({
    services: [...state.services.keys()],
    slices: [...state.slices.keys()],
    problems: state.problems,
    node: state.node,
  });
}

const RETRY = { initialDelayMs: 20, maxDelayMs: 200, random: () => 0 };

/**
 * Asserts that requests came `expected` ms apart (no jitter in tests), give or
 * take what a loaded machine adds to one request and not to the next.
 */
function assertBackoff(requests: { at: number }[], expected: number[]): void {
  const gaps = requests.slice(1).map((request, i) => Math.round(request.at - (requests[i]?.at ?? 0)));
  const slack = 40;
  assert.ok(gaps.length >= expected.length, `${gaps.length} gaps`);
  expected.forEach((delay, i) =>
    assert.ok((gaps[i] ?? 0) >= delay - slack, `gaps ${gaps.join(',')} ms, expected ${expected.join(',')} ms`),
  );
  gaps.slice(1, expected.length).forEach((gap, i) => assert.ok(gap > (gaps[i] ?? 0), `gaps ${gaps.join(',')} ms grow`));
}

let server: ApiServer;
const sources: KubernetesSource[] = [];

async function newSource(
  options: Partial<KubernetesSourceOptions> = {},
): Promise<{ source: KubernetesSource; states: States; started: Promise<void> }> {
  const loaded = await loadKubeConfig(server.kubeconfigPath);
  assert.ok(loaded);
  const source = new KubernetesSource({ kubeConfig: loaded.config, nodeName: 'node-1', debounceMs: 5, retry: RETRY, ...options });
  sources.push(source);
  const states = new States();
  return { source, states, started: source.start(states.push) };
}

async function startedSource(options: Partial<KubernetesSourceOptions> = {}) {
  const running = await newSource(options);
  await running.started;
  return running;
}

const keys = (map: ReadonlyMap<string, unknown>) => [...map.keys()].sort();
const lists = (resource: ResourceName) => server.requestsFor(resource, 'list');
const watches = (resource: ResourceName) => server.requestsFor(resource, 'watch');

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(5);
  }
}

beforeEach(async () => {
  server = await ApiServer.start();
});

afterEach(async () => {
  await Promise.all(sources.splice(0).map((source) => source.stop()));
  await server.close();
});

describe('KubernetesSource: the first state', () => {
  test('holds every Service and EndpointSlice, and the node with its zone', async () => {
    server.apply('services', webService());
    server.apply('endpointslices', webSlice());
    server.apply('nodes', node('node-1', 'zone-a'));
    const { states } = await startedSource();
    assert.equal(states.all.length, 1);
    const [state] = states.all as [SourceState];
    assert.deepEqual(keys(state.services), ['default/web']);
    assert.deepEqual(state.services.get('default/web')?.clusterIPs, ['10.96.0.10']);
    assert.deepEqual(keys(state.slices), ['default/web-abc12']);
    assert.deepEqual(
      state.slices.get('default/web-abc12')?.endpoints.map((endpoint) => endpoint.address),
      ['10.244.0.5'],
    );
    assert.deepEqual(state.node, { name: 'node-1', zone: 'zone-a' });
    assert.deepEqual(state.problems, []);
  });

  test('waits for Services, EndpointSlices and the Node to be listed: no state, start() pending, retries with growing delays', async () => {
    server.apply('services', webService());
    server.apply('nodes', node());
    server.failWith = 503;
    const { states, started } = await newSource({ retry: { ...RETRY, initialDelayMs: 50, maxDelayMs: 1000 } });
    let resolved = false;
    void started.then(() => (resolved = true));
    await eventually(() => lists('services').length >= 4, 'four LIST attempts');
    assert.equal(resolved, false);
    assert.equal(states.all.length, 0);
    assertBackoff(lists('services').slice(0, 4), [50, 100, 200]);
    server.failWith = undefined;
    await started;
    assert.equal(states.all.length, 1);
    assert.deepEqual(keys(states.last.services), ['default/web']);
  });

  test('reports a Node that does not exist, and follows the zone label once it does', async () => {
    const { states } = await startedSource();
    assert.deepEqual(states.last.node, { name: 'node-1' });
    assert.deepEqual(
      states.last.problems.map((problem) => [problem.source, problem.object]),
      [['kubernetes', 'Node node-1']],
    );
    server.apply('nodes', node('node-1', 'zone-a'));
    server.apply('nodes', node('node-2', 'zone-b')); // another node: not asked for, not seen
    await states.until((state) => state.node?.zone === 'zone-a' && state.problems.length === 0);
    server.apply('nodes', node('node-1', 'zone-c'));
    await states.until((state) => state.node?.zone === 'zone-c');
    assert.deepEqual(watches('nodes')[0]?.query.fieldSelector, 'metadata.name=node-1');
  });
});

describe('KubernetesSource: selection as kube-proxy makes it', () => {
  test('proxyLabelSelector is the selector kube-proxy sends, or selects the named proxy', () => {
    assert.equal(proxyLabelSelector(), KUBE_PROXY_SELECTOR);
    assert.equal(proxyLabelSelector('socklb'), `!${HEADLESS_LABEL},${PROXY_NAME_LABEL}=socklb`);
  });

  test('asks the server for unlabelled Services and slices only, and sees a label toggle as delete and add', async () => {
    server.apply('services', webService('web'));
    server.apply('services', webService('other', '10.96.0.11', { [PROXY_NAME_LABEL]: 'other-proxy' }));
    server.apply('endpointslices', webSlice('web-abc12', 'web'));
    server.apply('endpointslices', webSlice('other-abc12', 'other', ['10.244.0.6'], { [PROXY_NAME_LABEL]: 'other-proxy' }));
    server.apply('endpointslices', webSlice('dns-abc12', 'dns', ['10.244.0.7'], { [HEADLESS_LABEL]: '' }));
    const { states } = await startedSource();
    assert.deepEqual(keys(states.last.services), ['default/web']);
    assert.deepEqual(keys(states.last.slices), ['default/web-abc12']);
    for (const resource of ['services', 'endpointslices'] as const) {
      for (const request of [...lists(resource), ...watches(resource)])
        assert.equal(request.query.labelSelector, KUBE_PROXY_SELECTOR, `${resource} ${request.watch ? 'WATCH' : 'LIST'}`);
    }

    server.apply('services', webService('web', '10.96.0.10', { [PROXY_NAME_LABEL]: 'other-proxy' }));
    await states.until((state) => !state.services.has('default/web'));
    server.apply('services', webService('web'));
    await states.until((state) => state.services.has('default/web'));
  });

  test('with --service-proxy-name, serves only the Services labelled with it', async () => {
    server.apply('services', webService('web'));
    server.apply('services', webService('mine', '10.96.0.11', { [PROXY_NAME_LABEL]: 'socklb' }));
    server.apply('endpointslices', webSlice('mine-abc12', 'mine', ['10.244.0.6'], { [PROXY_NAME_LABEL]: 'socklb' }));
    const { states } = await startedSource({ serviceProxyName: 'socklb' });
    assert.deepEqual(keys(states.last.services), ['default/mine']);
    assert.deepEqual(keys(states.last.slices), ['default/mine-abc12']);
    assert.equal(lists('services').at(-1)?.query.labelSelector, `!${HEADLESS_LABEL},${PROXY_NAME_LABEL}=socklb`);
  });
});

describe('KubernetesSource: changes', () => {
  test('adds, modifies and deletes Services and EndpointSlices as events arrive', async () => {
    server.apply('nodes', node());
    const { states } = await startedSource();
    server.apply('services', webService());
    await states.until((state) => state.services.has('default/web'));
    server.apply('endpointslices', webSlice('web-abc12', 'web', ['10.244.0.5']));
    await states.until((state) => state.slices.has('default/web-abc12'));
    server.apply('endpointslices', webSlice('web-abc12', 'web', ['10.244.0.5', '10.244.0.9']));
    await states.until((state) => state.slices.get('default/web-abc12')?.endpoints.length === 2);
    server.apply('services', webService('web', '10.96.0.10', {}, 8000));
    await states.until((state) => state.services.get('default/web')?.ports[0]?.port === 8000);
    server.delete('endpointslices', 'web-abc12');
    await states.until((state) => state.slices.size === 0);
    server.delete('services', 'web');
    await states.until((state) => state.services.size === 0);
  });

  test('each state names the keys that changed; a Service turning headless is delivered as ignored, and back', async () => {
    server.apply('services', webService());
    server.apply('services', webService('db', '10.96.0.11'));
    server.apply('endpointslices', webSlice());
    const { states } = await startedSource();
    const changesOf = (state: SourceState) => ({
      services: [...(state.changes?.services ?? [])].sort(),
      slices: [...(state.changes?.slices ?? [])].sort(),
    });
    assert.deepEqual(changesOf(states.last), { services: ['default/db', 'default/web'], slices: ['default/web-abc12'] });
    server.apply('endpointslices', webSlice('web-abc12', 'web', ['10.244.0.5', '10.244.0.9']));
    const moved = await states.until((state) => state.slices.get('default/web-abc12')?.endpoints.length === 2);
    assert.deepEqual(changesOf(moved), { services: [], slices: ['default/web-abc12'] });
    server.apply('services', webService('web', 'None'));
    const headless = await states.until((state) => !state.services.has('default/web'));
    assert.deepEqual(changesOf(headless), { services: ['default/web'], slices: [] });
    assert.deepEqual([...headless.services.keys()], ['default/db']);
    assert.deepEqual(
      [...headless.ignoredServices],
      ['default/web'],
      'the model leaves its slices out, and does not report them as orphans',
    );
    assert.deepEqual([...headless.slices.keys()], ['default/web-abc12'], 'its slices are delivered as they are');
    server.apply('services', webService());
    const translated = await states.until((state) => state.services.has('default/web'));
    assert.deepEqual(changesOf(translated), { services: ['default/web'], slices: [] });
    assert.deepEqual([...translated.ignoredServices], []);
  });

  test('a burst of events is one state, which says when its first event arrived', async () => {
    const { states } = await startedSource({ debounceMs: 50 });
    const before = Date.now();
    for (let i = 0; i < 30; i++) server.apply('services', webService(`web-${i}`, `10.96.1.${i}`));
    const burst = await states.until((state) => state.services.size === 30);
    await sleep(100);
    assert.equal(states.all.length, 2);
    assert.ok(
      burst.changeSeenAt !== undefined && burst.changeSeenAt >= before && burst.changeSeenAt <= Date.now(),
      `changeSeenAt ${burst.changeSeenAt}, for the network programming latency`,
    );
  });

  test('an update that changes nothing socklb reads delivers no state', async () => {
    server.apply('services', webService());
    const { states } = await startedSource();
    const annotated = webService();
    annotated.metadata.annotations = { 'example.com/owner': 'team-a' };
    server.apply('services', annotated);
    await eventually(() => states.all.length > 1 || server.get('services', 'web')?.metadata.annotations !== undefined, 'the update');
    await sleep(50);
    assert.equal(states.all.length, 1);
  });

  test('an invalid object is reported and keeps its last valid version; the others keep working', async () => {
    server.apply('services', webService('web'));
    server.apply('nodes', node());
    const { states } = await startedSource();
    const valid = states.last.services.get('default/web');
    server.apply('services', webService('web', '10.96.0.10', {}, 70000));
    server.apply('services', webService('broken', 'not-an-ip'));
    server.apply('services', webService('api', '10.96.0.12'));
    const reported = await states.until((state) => state.services.has('default/api') && state.problems.length === 2);
    assert.equal(reported.services.get('default/web'), valid, 'the last valid version, unchanged');
    assert.equal(reported.services.has('default/broken'), false);
    const [web, broken] = [...reported.problems].sort((a, b) => (a.object < b.object ? 1 : -1));
    assert.equal(web?.source, 'kubernetes');
    assert.equal(web?.object, 'Service default/web');
    assert.match(web?.reason ?? '', /spec\.ports\[0\]\.port: 70000 is out of range.*previous valid version stays in effect/);
    assert.equal(broken?.object, 'Service default/broken');
    assert.doesNotMatch(broken?.reason ?? '', /previous/);

    server.apply('services', webService('web', '10.96.0.10', {}, 8080));
    server.delete('services', 'broken');
    const fixed = await states.until((state) => state.problems.length === 0);
    assert.equal(fixed.services.get('default/web')?.ports[0]?.port, 8080);
  });
});

function serviceCIDR(name: string, cidrs: string[]) {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'ServiceCIDR', metadata: { name }, spec: { cidrs } };
}

describe('KubernetesSource: ServiceCIDRs', () => {
  test('delivers the union of their ranges, canonical, and follows them', async () => {
    server.apply('servicecidrs', serviceCIDR('kubernetes', ['10.96.0.0/12', 'FD00:10:96::/112']));
    const { states } = await startedSource();
    assert.deepEqual([...(states.last.serviceCIDRs ?? [])].sort(), ['10.96.0.0/12', 'fd00:10:96::/112']);
    server.apply('servicecidrs', serviceCIDR('extra', ['10.200.0.0/16']));
    await states.until((state) => state.serviceCIDRs?.has('10.200.0.0/16') === true);
    server.delete('servicecidrs', 'kubernetes');
    const after = await states.until((state) => state.serviceCIDRs?.size === 1);
    assert.deepEqual([...(after.serviceCIDRs ?? [])], ['10.200.0.0/16']);
    assert.equal(lists('servicecidrs')[0]?.query.labelSelector, undefined, 'all of them: no proxy label applies');
  });

  test('an invalid one is reported by its name and keeps its last valid ranges', async () => {
    server.apply('servicecidrs', serviceCIDR('kubernetes', ['10.96.0.0/12']));
    const { states } = await startedSource();
    server.apply('servicecidrs', serviceCIDR('kubernetes', ['10.96.0.0/40']));
    const reported = await states.until((state) => state.problems.some((problem) => problem.object === 'ServiceCIDR kubernetes'));
    assert.match(
      reported.problems.find((problem) => problem.object === 'ServiceCIDR kubernetes')?.reason ?? '',
      /spec\.cidrs\[0\]: "10\.96\.0\.0\/40" is not a CIDR.*previous valid version stays in effect/,
    );
    assert.deepEqual([...(reported.serviceCIDRs ?? [])], ['10.96.0.0/12']);
  });

  test('a server that does not serve them (before Kubernetes 1.33) is asked once, and the first state comes without them', async () => {
    await server.close();
    server = await ApiServer.start({ serviceCIDRs: false });
    server.apply('services', webService());
    const { states } = await startedSource();
    assert.deepEqual(keys(states.last.services), ['default/web']);
    assert.deepEqual([...(states.last.serviceCIDRs ?? [])], []);
    await sleep(50);
    const discovery = server.requests.filter((request) => request.path === '/apis/networking.k8s.io/v1');
    assert.deepEqual(
      discovery.map((request) => request.status),
      [404],
    );
    assert.equal(lists('servicecidrs').length + watches('servicecidrs').length, 0);
  });
});

describe('KubernetesSource: robust watching', () => {
  test('410 on a watch: lists again at once, and no state ever lacks an object that still exists', async () => {
    for (const name of ['keep-a', 'keep-b', 'web', 'old'])
      server.apply('services', webService(name, `10.96.0.${10 + ['keep-a', 'keep-b', 'web', 'old'].indexOf(name)}`));
    server.apply('endpointslices', webSlice());
    server.apply('nodes', node());
    const { states } = await startedSource();
    await eventually(() => server.openWatches === 4, 'four watches');
    const listsBefore = lists('services').length;

    // While the watches are down: changes, then the history is compacted past them.
    server.dropWatches();
    server.apply('services', webService('web', '10.96.0.12', {}, 8080));
    server.delete('services', 'old');
    server.compact();

    const relisted = await states.until((state) => !state.services.has('default/old'));
    assert.equal(relisted.services.get('default/web')?.ports[0]?.port, 8080);
    assert.equal(lists('services').length, listsBefore + 1);
    await eventually(() => watches('services').length === 3, 'a resumed watch (answered 410), then one from the new list');
    const [initial, resumed, fresh] = watches('services');
    assert.equal(resumed?.query.resourceVersion, initial?.query.resourceVersion, 'resumed where it was');
    assert.equal(fresh?.query.resourceVersion, server.currentResourceVersion, 'then from the new list');
    for (const state of states.all) {
      for (const name of ['keep-a', 'keep-b', 'web']) assert.ok(state.services.has(`default/${name}`), `default/${name} in every state`);
      assert.ok(state.slices.has('default/web-abc12'));
    }
    // The new watch goes on from the list.
    server.apply('services', webService('new', '10.96.0.20'));
    await states.until((state) => state.services.has('default/new'));
  });

  test('a relist of unchanged objects changes nothing: no state, and the same objects after a later change', async () => {
    for (const name of ['a', 'b', 'c']) server.apply('services', webService(name, `10.96.0.${['a', 'b', 'c'].indexOf(name) + 10}`));
    server.apply('endpointslices', webSlice('a-abc12', 'a'));
    server.apply('nodes', node('node-1', 'zone-a'));
    const { states } = await startedSource();
    await eventually(() => server.openWatches === 4, 'four watches');
    const first = states.last;

    server.bumpResourceVersion(); // a write elsewhere: every watch is now behind
    server.compact();
    server.dropWatches();
    await eventually(
      () => lists('services').length === 2 && lists('endpointslices').length === 2 && lists('nodes').length === 2,
      'every resource relisted',
    );
    await sleep(30);
    assert.equal(states.all.length, 1, 'a relist that finds nothing new delivers nothing');

    server.apply('services', webService('c', '10.96.0.12', {}, 8080));
    const next = await states.until((state) => state.services.get('default/c')?.ports[0]?.port === 8080);
    assert.equal(next.services.get('default/a'), first.services.get('default/a'), 'unchanged objects keep their identity');
    assert.equal(next.services.get('default/b'), first.services.get('default/b'));
    assert.equal(next.slices.get('default/a-abc12'), first.slices.get('default/a-abc12'));
    assert.deepEqual(next.node, first.node);
  });

  test('a dropped watch resumes from its resourceVersion after a backoff, without a LIST', async () => {
    server.apply('services', webService());
    const { states } = await startedSource();
    const version = server.get('services', 'web')?.metadata.resourceVersion;
    await eventually(() => server.openWatches === 4, 'four watches');
    const dropped = performance.now();
    server.dropWatches();
    await eventually(() => server.openWatches === 4, 'four watches again');
    const resumed = watches('services')[1];
    assert.ok(resumed);
    assert.ok(resumed.at - dropped >= RETRY.initialDelayMs - 2, `resumed ${resumed.at - dropped} ms after the drop`);
    assert.ok(Number(resumed.query.resourceVersion) >= Number(version));
    assert.equal(lists('services').length, 1);
    server.apply('services', webService('api', '10.96.0.11'));
    await states.until((state) => state.services.has('default/api'));
  });

  test('a server that fails every request is retried with growing delays, and the source recovers', async () => {
    server.apply('services', webService());
    const { states } = await startedSource({ retry: { ...RETRY, initialDelayMs: 50, maxDelayMs: 1000 } });
    await eventually(() => server.openWatches === 4, 'four watches');
    server.failWith = 500;
    server.dropWatches();
    // The dropped watch is resumed after 50 ms and answered 500; the server said no, so LISTs follow, 100, 200, 400 ms apart.
    await eventually(() => lists('services').length >= 4, 'retries');
    assertBackoff(lists('services').slice(1, 4), [200, 400]);
    assert.equal(states.all.length, 1, 'failures deliver nothing');
    server.failWith = undefined;
    server.apply('services', webService('api', '10.96.0.11'));
    await states.until((state) => state.services.has('default/api'));
  });

  test('a server that answers 410 to everything is not listed in a loop', async () => {
    server.apply('services', webService());
    await startedSource({ retry: { ...RETRY, initialDelayMs: 300, maxDelayMs: 5000 } });
    server.failWith = 410;
    server.dropWatches();
    await sleep(800);
    // After the first list: one 410, one LIST at once, its 410, then waits of 300 ms, 600 ms...
    assert.ok(lists('services').length <= 4, `${lists('services').length} LISTs in 800 ms`);
  });

  test('bookmarks keep a quiet watch resumable after compaction', async () => {
    server.apply('services', webService());
    server.apply('nodes', node());
    const { states } = await startedSource();
    for (let i = 0; i < 3; i++) server.apply('endpointslices', webSlice(`web-${i}`));
    await states.until((state) => state.slices.size === 3);
    server.sendBookmarks();
    await sleep(30);
    server.compact();
    server.dropWatches();
    await eventually(() => server.openWatches === 4, 'four watches again');
    assert.equal(lists('services').length, 1, 'the Services watch resumed from its bookmark: no 410, no LIST');
    assert.equal(lists('nodes').length, 1);
  });

  test('a watch the server ends (timeoutSeconds) is followed by a new one from the last resourceVersion', async () => {
    server.apply('services', webService());
    const { states } = await startedSource({ watchTimeoutSeconds: 1 });
    await eventually(() => watches('services').length >= 2, 'a second watch', 3000);
    const [first, second] = watches('services');
    assert.equal(first?.query.timeoutSeconds, '1');
    assert.equal(first?.query.allowWatchBookmarks, 'true');
    assert.equal(second?.query.resourceVersion, first?.query.resourceVersion);
    assert.equal(lists('services').length, 1);
    server.apply('services', webService('api', '10.96.0.11'));
    await states.until((state) => state.services.has('default/api'));
  });

  test('a rejected token is retried and logged, and start() waits', async () => {
    const logs: { msg: string }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => logs.push(JSON.parse(line) as { msg: string }) });
    const wrongToken = await server.writeKubeconfig('wrong');
    const loaded = await loadKubeConfig(wrongToken);
    assert.ok(loaded);
    const source = new KubernetesSource({ kubeConfig: loaded.config, nodeName: 'node-1', retry: RETRY, logger });
    sources.push(source);
    let resolved = false;
    void source.start(() => undefined).then(() => (resolved = true));
    await eventually(() => logs.length >= 3, 'three warnings');
    assert.match(logs[0]?.msg ?? '', /LIST \/api\/v1\/\w+ failed \(GET \/api\/v1\/\w+: 401 Unauthorized/);
    assert.equal(resolved, false);
  });
});

describe('KubernetesSource: stop', () => {
  test('ends every request and timer: during watches, backoff and a pending LIST', async () => {
    // Timers and sockets (the test runner's own pipes come and go).
    const handles = () =>
      process
        .getActiveResourcesInfo()
        .filter((type) => ['Timeout', 'TCPSocketWrap', 'TLSWrap'].includes(type))
        .sort();
    const before = handles();
    server.apply('services', webService());
    const watching = await startedSource();
    await eventually(() => server.openWatches === 4, 'four watches');
    await watching.source.stop();
    await eventually(async () => (await server.openConnections()) === 0, 'no connection left');

    server.failWith = 503;
    const backingOff = await newSource();
    await eventually(() => lists('services').length >= 3, 'retries');
    await backingOff.source.stop();
    await backingOff.started; // resolves, with nothing delivered
    assert.equal(backingOff.states.all.length, 0);

    server.failWith = undefined;
    server.holdLists = true;
    const listing = await newSource();
    await eventually(() => lists('services').length >= 4, 'a pending LIST');
    await listing.source.stop();
    await listing.started;
    await eventually(async () => (await server.openConnections()) === 0, 'no connection left');
    assert.deepEqual(handles(), before);
  });
});

describe('the API server stand-in (through ApiClient)', () => {
  async function client(): Promise<ApiClient> {
    const loaded = await loadKubeConfig(server.kubeconfigPath);
    assert.ok(loaded);
    return new ApiClient(loaded.config);
  }

  test('answers 401 to a wrong token, with a Status', async () => {
    const loaded = await loadKubeConfig(await server.writeKubeconfig('wrong'));
    assert.ok(loaded);
    await assert.rejects(new ApiClient(loaded.config).list('/api/v1/services', {}, new AbortController().signal), (error) => {
      assert.ok(error instanceof ApiError);
      assert.equal(error.code, 401);
      assert.equal(error.reason, 'Unauthorized');
      return true;
    });
  });

  test('lists items without apiVersion and kind, at the current resourceVersion, or exactly from history until compacted', async () => {
    const stored = server.apply('services', webService());
    server.apply('services', webService('web', '10.96.0.10', {}, 8080));
    const signal = new AbortController().signal;
    const current = await (await client()).list('/api/v1/namespaces/default/services', {}, signal);
    const one = (await (await client()).list('/api/v1/namespaces/default/services/web', {}, signal)) as KubeObject;
    assert.equal(one.kind, 'Service', 'a single GET has its kind');
    assert.equal(current.items?.[0]?.kind, undefined);
    assert.equal(current.metadata?.resourceVersion, server.get('services', 'web')?.metadata.resourceVersion);
    const exact = await (
      await client()
    ).list('/api/v1/services', { resourceVersion: stored.metadata.resourceVersion, resourceVersionMatch: 'Exact' }, signal);
    assert.equal((exact.items?.[0]?.spec as { ports: { port: number }[] }).ports[0]?.port, 80);
    server.compact();
    await assert.rejects(
      (await client()).list(
        '/api/v1/services',
        { resourceVersion: stored.metadata.resourceVersion, resourceVersionMatch: 'Exact' },
        signal,
      ),
      (error) => {
        assert.ok(error instanceof ApiError && error.expired && error.reason === 'Expired');
        return true;
      },
    );
  });

  test('watches with synthetic ADDED events first, sends objects leaving the selection as DELETED, and 410 after compaction', async () => {
    server.apply('services', webService());
    const events: [WatchEventType, KubeObject][] = [];
    const abort = new AbortController();
    const watching = (await client()).watch(
      '/api/v1/services',
      { labelSelector: `!${PROXY_NAME_LABEL}` },
      (type, object) => events.push([type, object]),
      abort.signal,
      5000,
    );
    await eventually(() => events.length === 1, 'the ADDED event');
    server.apply('services', webService('web', '10.96.0.10', { [PROXY_NAME_LABEL]: 'other' }));
    await eventually(() => events.length === 2, 'the DELETED event');
    assert.deepEqual(
      events.map(([type, object]) => [type, object.kind, object.metadata?.name]),
      [
        ['ADDED', 'Service', 'web'],
        ['DELETED', 'Service', 'web'],
      ],
    );
    abort.abort();
    await assert.rejects(watching);

    const version = server.get('services', 'web')?.metadata.resourceVersion;
    server.apply('services', webService('web'));
    server.compact();
    await assert.rejects(
      (await client()).watch('/api/v1/services', { resourceVersion: version }, () => undefined, new AbortController().signal, 5000),
      (error) => {
        assert.ok(error instanceof ApiError && error.expired);
        assert.match(error.message, /too old resource version/);
        return true;
      },
    );
  });

  test('without the watch cache, a LIST at an old resourceVersion is an exact read: 410 once compacted', async () => {
    await server.close();
    server = await ApiServer.start({ watchCache: false });
    const stored = server.apply('services', webService());
    server.apply('services', webService('api', '10.96.0.11'));
    server.compact();
    await assert.rejects(
      (await client()).list('/api/v1/services', { resourceVersion: stored.metadata.resourceVersion }, new AbortController().signal),
      /410 Expired/,
    );
  });
});

describe('loadKubeConfig', () => {
  test('takes --kubeconfig, then $KUBECONFIG, then the in-cluster service account, else nothing', async () => {
    assert.match((await loadKubeConfig(server.kubeconfigPath, {}))?.origin ?? '', /^--kubeconfig /);
    assert.equal(
      (await loadKubeConfig(undefined, { KUBECONFIG: `${server.kubeconfigPath}:` }))?.config.getCurrentCluster()?.server,
      server.url,
    );
    assert.equal(await loadKubeConfig(undefined, {}), undefined);
    await assert.rejects(
      loadKubeConfig(undefined, { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }),
      /serviceaccount\/token does not exist/,
    );
    await assert.rejects(
      loadKubeConfig('/nonexistent/kubeconfig', {}),
      (error) => error instanceof SocklbError && /--kubeconfig \/nonexistent\/kubeconfig: cannot be loaded/.test(error.message),
    );
  });
});
