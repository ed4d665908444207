// The incremental desired state: which frontends a source state change
// touches, and who serves a frontend two Services claim.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DesiredFrontends } from '../../src/model/desired.js';
import type { EndpointSlice, Service } from '../../src/model/types.js';
import type { SourceState } from '../../src/sources/source.js';
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

function state(services: Service[], slices: EndpointSlice[]): SourceState {
  return {
    services: new Map(services.map((service) => [`${service.namespace}/${service.name}`, service])),
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

  it('of two Services claiming one frontend, the first by namespace/name serves it and the other is reported', () => {
    const desired = new DesiredFrontends(NODE);
    desired.update(state([web('b', '10.96.0.1'), web('a', '10.96.0.1')], [slice('a', ['10.244.0.1']), slice('b', ['10.244.0.2'])]));
    assert.deepEqual(backendsOf(desired, '10.96.0.1:80/TCP'), ['10.244.0.1']);
    assert.deepEqual(desired.problems(), [{ source: 'model', object: 'Service default/b', reason: 'frontend 10.96.0.1:80/TCP is already served by Service default/a; this port is skipped' }]);
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
      { source: 'model', object: 'EndpointSlice default/ghost-1', reason: 'names Service default/ghost, which does not exist; its endpoints are unused' },
    ]);
  });
});
