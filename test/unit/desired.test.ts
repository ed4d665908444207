// The incremental desired state: which frontends a source state change
// touches, and who serves a frontend two Services claim.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DesiredFrontends } from '../../src/model/desired.js';
import type { SourceState, StateChanges } from '../../src/model/source-state.js';
import type { EndpointSlice, Service } from '../../src/model/types.js';
import { modelEndpoint, modelService, NODE } from './model-fixtures.js';

function web(name: string, clusterIP: string): Service {
  return modelService({ name, clusterIPs: [clusterIP] });
}

function slice(serviceName: string, addresses: string[]): EndpointSlice {
  return {
    namespace: 'default',
    name: `${serviceName}-1`,
    serviceName,
    addressType: 'IPv4',
    ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
    endpoints: addresses.map((address) => modelEndpoint(address)),
  };
}

function state(services: Service[], slices: EndpointSlice[], ignoredServices: string[] = []): SourceState {
  return {
    services: new Map(services.map((service) => [`${service.namespace}/${service.name}`, service])),
    ignoredServices: new Set(ignoredServices),
    slices: new Map(slices.map((item) => [`${item.namespace}/${item.name}`, item])),
    problems: [],
  };
}

const backendsOf = (desired: DesiredFrontends, id: string) => desired.frontends.get(id)?.backends.map((backend) => backend.address);

describe('DesiredFrontends', () => {
  it('a first state makes every frontend changed', () => {
    const desired = new DesiredFrontends(NODE);
    const { changed } = desired.update(state([web('a', '10.96.0.1'), web('b', '10.96.0.2')], [slice('a', ['10.244.0.1'])]));
    assert.deepEqual([...changed].sort(), ['10.96.0.1:80/TCP', '10.96.0.2:80/TCP']);
    assert.deepEqual(backendsOf(desired, '10.96.0.1:80/TCP'), ['10.244.0.1']);
    assert.deepEqual(backendsOf(desired, '10.96.0.2:80/TCP'), []);
  });

  it('a slice change touches only the frontends of its Service', () => {
    const desired = new DesiredFrontends(NODE);
    desired.update(state([web('a', '10.96.0.1'), web('b', '10.96.0.2')], [slice('a', ['10.244.0.1'])]));
    const { changed } = desired.update(state([web('a', '10.96.0.1'), web('b', '10.96.0.2')], [slice('a', ['10.244.0.1', '10.244.0.2'])]));
    assert.deepEqual([...changed], ['10.96.0.1:80/TCP']);
  });

  it('an equal object delivered again changes nothing', () => {
    const desired = new DesiredFrontends(NODE);
    desired.update(state([web('a', '10.96.0.1')], [slice('a', ['10.244.0.1'])]));
    assert.deepEqual([...desired.update(state([web('a', '10.96.0.1')], [slice('a', ['10.244.0.1'])])).changed], []);
  });

  it('a deleted Service deletes its frontends', () => {
    const desired = new DesiredFrontends(NODE);
    desired.update(state([web('a', '10.96.0.1')], []));
    const { changed } = desired.update(state([], []));
    assert.deepEqual([...changed], ['10.96.0.1:80/TCP']);
    assert.equal(desired.frontends.size, 0);
  });

  it('of two Services claiming one frontend, one serves it and the other is reported (test/unit/claims.test.ts: which)', () => {
    const desired = new DesiredFrontends(NODE);
    desired.update(state([web('b', '10.96.0.1'), web('a', '10.96.0.1')], [slice('a', ['10.244.0.1']), slice('b', ['10.244.0.2'])]));
    assert.deepEqual(backendsOf(desired, '10.96.0.1:80/TCP'), ['10.244.0.1']);
    assert.deepEqual(desired.problems(), [
      {
        source: 'model',
        object: 'Service default/b',
        reason: 'frontend 10.96.0.1:80/TCP (cluster IP) is served by Service default/a (cluster IP); this port is skipped',
      },
    ]);
  });

  it('when the serving claimant goes, the other claimant takes the frontend over', () => {
    const desired = new DesiredFrontends(NODE);
    desired.update(state([web('a', '10.96.0.1'), web('b', '10.96.0.1')], [slice('a', ['10.244.0.1']), slice('b', ['10.244.0.2'])]));
    const { changed } = desired.update(state([web('b', '10.96.0.1')], [slice('b', ['10.244.0.2'])]));
    assert.deepEqual([...changed], ['10.96.0.1:80/TCP']);
    assert.deepEqual(backendsOf(desired, '10.96.0.1:80/TCP'), ['10.244.0.2']);
    assert.deepEqual(desired.problems(), []);
  });

  it('a slice naming no Service is reported', () => {
    const desired = new DesiredFrontends(NODE);
    desired.update(state([], [slice('ghost', ['10.244.0.1'])]));
    assert.deepEqual(desired.problems(), [
      {
        source: 'model',
        object: 'EndpointSlice default/ghost-1',
        reason: 'names Service default/ghost, which does not exist; its endpoints are unused',
      },
    ]);
  });
});

describe('DesiredFrontends: the slices of a Service socklb ignores are left out', () => {
  const a = web('a', '10.96.0.1');
  const b = web('b', '10.96.0.2');
  const movedToB: EndpointSlice = { ...slice('b', ['10.244.0.1']), name: 'a-1' };
  const cases: {
    rule: string;
    before: SourceState;
    after: SourceState;
    expected: { serviceChanges: number; endpointChanges: number; backends: Record<string, string[]>; orphans: string[] };
  }[] = [
    {
      rule: 'the slices of an ignored Service are unused, and not orphans',
      before: state([], []),
      after: state([], [slice('a', ['10.244.0.1'])], ['default/a']),
      expected: { serviceChanges: 0, endpointChanges: 0, backends: {}, orphans: [] },
    },
    {
      rule: 'a Service turning ignored takes its unchanged slices out of effect, each an endpoint change',
      before: state([a], [slice('a', ['10.244.0.1'])]),
      after: state([], [slice('a', ['10.244.0.1'])], ['default/a']),
      expected: { serviceChanges: 1, endpointChanges: 1, backends: {}, orphans: [] },
    },
    {
      rule: 'a Service turning back from ignored brings its unchanged slices into effect, each an endpoint change',
      before: state([], [slice('a', ['10.244.0.1'])], ['default/a']),
      after: state([a], [slice('a', ['10.244.0.1'])]),
      expected: { serviceChanges: 1, endpointChanges: 1, backends: { '10.96.0.1:80/TCP': ['10.244.0.1'] }, orphans: [] },
    },
    {
      rule: 'a Service turning ignored while its slice changes counts that slice once',
      before: state([a], [slice('a', ['10.244.0.1'])]),
      after: state([], [slice('a', ['10.244.0.2'])], ['default/a']),
      expected: { serviceChanges: 1, endpointChanges: 1, backends: {}, orphans: [] },
    },
    {
      rule: 'a change to a slice of an ignored Service is no endpoint change',
      before: state([], [slice('a', ['10.244.0.1'])], ['default/a']),
      after: state([], [slice('a', ['10.244.0.1', '10.244.0.2'])], ['default/a']),
      expected: { serviceChanges: 0, endpointChanges: 0, backends: {}, orphans: [] },
    },
    {
      rule: 'an ignored Service deleted leaves its slices in effect, as orphans',
      before: state([], [slice('a', ['10.244.0.1'])], ['default/a']),
      after: state([], [slice('a', ['10.244.0.1'])]),
      expected: { serviceChanges: 0, endpointChanges: 1, backends: {}, orphans: ['EndpointSlice default/a-1'] },
    },
    {
      rule: 'a slice moving from an ignored Service to a translated one comes into effect',
      before: state([b], [slice('a', ['10.244.0.1'])], ['default/a']),
      after: state([b], [movedToB], ['default/a']),
      expected: { serviceChanges: 0, endpointChanges: 1, backends: { '10.96.0.2:80/TCP': ['10.244.0.1'] }, orphans: [] },
    },
  ];
  for (const { rule, before, after, expected } of cases) {
    for (const named of [true, false]) {
      it(`${rule} (${named ? 'the changed keys named' : 'everything compared'})`, () => {
        const desired = new DesiredFrontends(NODE);
        desired.update(before);
        const changes: StateChanges = {
          services: new Set([...before.services.keys(), ...after.services.keys(), ...before.ignoredServices, ...after.ignoredServices]),
          slices: new Set([...before.slices.keys(), ...after.slices.keys()]),
        };
        const { serviceChanges, endpointChanges } = desired.update(named ? { ...after, changes } : after);
        const backends = Object.fromEntries(
          [...desired.frontends].map(([id, frontend]) => [id, frontend.backends.map((backend) => backend.address)]),
        );
        const orphans = desired.problems().flatMap((problem) => (problem.object.startsWith('EndpointSlice ') ? [problem.object] : []));
        assert.deepEqual({ serviceChanges, endpointChanges, backends, orphans }, expected);
      });
    }
  }
});

// A small universe, so that random states share keys, ClusterIPs and endpoints often, and
// Services claim one another's addresses through their external IPs.
const serviceArbitrary = fc
  .record({
    name: fc.constantFrom('a', 'b', 'c'),
    namespace: fc.constantFrom('default', 'shop'),
    clusterIP: fc.constantFrom('10.96.0.1', '10.96.0.2'),
    externalIPs: fc.subarray(['10.96.0.1', '10.96.0.2']),
    port: fc.constantFrom(80, 81),
    createdAt: fc.constantFrom(undefined, 1, 2),
  })
  .map(({ name, namespace, clusterIP, externalIPs, port, createdAt }) =>
    modelService({ name, namespace, clusterIPs: [clusterIP], externalIPs, ports: [{ name: 'http', protocol: 'TCP', port }], createdAt }),
  );
/** External IPs in the universe's addresses are translated. */
const UNIVERSE_NODE = { ...NODE, allowedExternalIPCidrs: ['10.96.0.0/24'] };
const sliceArbitrary = fc
  .record({
    name: fc.constantFrom('s1', 's2', 's3'),
    namespace: fc.constantFrom('default', 'shop'),
    serviceName: fc.constantFrom('a', 'b', 'c', 'ghost'),
    addresses: fc.uniqueArray(fc.constantFrom('10.244.0.1', '10.244.0.2', '10.244.0.3'), { maxLength: 3 }),
    ready: fc.boolean(),
  })
  .map(({ name, namespace, serviceName, addresses, ready }) => ({
    ...slice(serviceName, []),
    name,
    namespace,
    endpoints: addresses.map((address) => modelEndpoint(address, { ready })),
  }));
const stateArbitrary = fc.record({
  services: fc.array(serviceArbitrary, { maxLength: 5 }),
  // Those that are also translated Services are taken out: a source delivers a Service as one or the other.
  ignoredServices: fc.subarray(['default/a', 'shop/b', 'default/ghost', 'shop/ghost']),
  slices: fc.array(sliceArbitrary, { maxLength: 5 }),
  zone: fc.constantFrom(undefined, 'zone-a'),
});

function keyed<T extends { namespace: string; name: string }>(objects: T[]): Map<string, T> {
  return new Map(objects.map((object) => [`${object.namespace}/${object.name}`, object]));
}

/** The slices the model takes into account: not those of ignored Services. */
function inEffect(slices: ReadonlyMap<string, EndpointSlice>, ignoredServices: ReadonlySet<string>): Map<string, EndpointSlice> {
  return new Map([...slices].filter(([, item]) => !ignoredServices.has(`${item.namespace}/${item.serviceName}`)));
}

/** Keys in one set and not the other. */
function eitherNotBoth(a: ReadonlySet<string>, b: ReadonlySet<string>): string[] {
  return [...new Set([...a, ...b])].filter((key) => a.has(key) !== b.has(key));
}

/** Keys whose object differs between the two maps. */
function differing(before: ReadonlyMap<string, object>, after: ReadonlyMap<string, object>): Set<string> {
  return new Set(
    [...new Set([...before.keys(), ...after.keys()])].filter((key) => JSON.stringify(before.get(key)) !== JSON.stringify(after.get(key))),
  );
}

/** The model's whole output, in an order that does not depend on how it got there. */
function outcome(desired: DesiredFrontends) {
  const byText = (a: object, b: object) => JSON.stringify(a).localeCompare(JSON.stringify(b));
  return { frontends: [...desired.frontends].sort(([a], [b]) => a.localeCompare(b)), problems: desired.problems().sort(byText) };
}

describe('DesiredFrontends, incrementally', () => {
  // History counts only through who serves each frontend, which a model started afresh learns
  // from the datapath, as a restarted agent does.
  it('states naming their changed keys (or not) end exactly where one full recomputation of the last state does, given who served, every changed frontend is reported, and changes are counted in effect', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(stateArbitrary, fc.boolean(), fc.subarray(['default/a', 'shop/b', 'default/s1', 'shop/s3'])), {
          minLength: 1,
          maxLength: 8,
        }),
        (sequence) => {
          const incremental = new DesiredFrontends(UNIVERSE_NODE);
          let services = new Map<string, Service>();
          let ignoredServices = new Set<string>();
          let slices = new Map<string, EndpointSlice>();
          let before = outcome(incremental).frontends;
          for (const [next, named, extra] of sequence) {
            const nextServices = keyed(next.services);
            const nextIgnored = new Set(next.ignoredServices.filter((key) => !nextServices.has(key)));
            const nextSlices = keyed(next.slices);
            // The keys that differ, and a few that may not: a source may name more than changed.
            const changes: StateChanges = {
              services: new Set([...differing(services, nextServices), ...eitherNotBoth(ignoredServices, nextIgnored), ...extra]),
              slices: new Set([...differing(slices, nextSlices), ...extra]),
            };
            const state: SourceState = {
              services: nextServices,
              ignoredServices: nextIgnored,
              slices: nextSlices,
              problems: [],
              node: { name: 'node-1', zone: next.zone },
              ...(named ? { changes } : {}),
            };
            const served = new Map([...incremental.frontends].map(([id, frontend]) => [id, frontend.service]));
            const { changed, serviceChanges, endpointChanges } = incremental.update(state);
            assert.equal(serviceChanges, differing(services, nextServices).size, 'Service changes');
            assert.equal(
              endpointChanges,
              differing(inEffect(slices, ignoredServices), inEffect(nextSlices, nextIgnored)).size,
              'EndpointSlice changes in effect',
            );
            const after = outcome(incremental).frontends;
            const moved = differing(new Map(before), new Map(after));
            assert.deepEqual(
              [...moved].filter((id) => !changed.has(id)),
              [],
              'every frontend that changed is reported changed',
            );
            const fresh = new DesiredFrontends(UNIVERSE_NODE, (id) => served.get(id));
            fresh.update({ ...state, changes: undefined });
            assert.deepEqual(outcome(incremental), outcome(fresh));
            services = nextServices;
            ignoredServices = nextIgnored;
            slices = nextSlices;
            before = after;
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
