import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildCatalog, churnEndpoints, endpointCount, withEndpoints } from '../catalog.js';

const BACKENDS = ['10.244.0.2', '10.244.0.3'];

describe('benchmark catalog', () => {
  it('has N Services with distinct ClusterIPs, the measured ones in the middle, never first', () => {
    for (const services of [3, 10, 1001]) {
      const catalog = buildCatalog({ services, endpointsPerService: 2, backendIPs: BACKENDS });
      assert.equal(catalog.services.length, services);
      assert.equal(new Set(catalog.services.map((service) => service.clusterIP)).size, services);
      const position = catalog.services.indexOf(catalog.http);
      if (services > 3) assert.ok(position > 0 && position < services - 1, `bench-http at ${position} of ${services}`);
    }
  });

  it('gives bench-http every backend pod, bench-udp the first one, and the others unserved addresses of their own', () => {
    const catalog = buildCatalog({ services: 10, endpointsPerService: 2, backendIPs: BACKENDS });
    assert.deepEqual(catalog.http.endpoints, BACKENDS);
    assert.deepEqual(catalog.udp.endpoints, ['10.244.0.2']);
    const unserved = catalog.services
      .filter((service) => service !== catalog.http && service !== catalog.udp)
      .flatMap((service) => service.endpoints);
    assert.equal(new Set(unserved).size, unserved.length);
    assert.ok(unserved.every((ip) => ip.startsWith('10.128.')));
    assert.equal(endpointCount(catalog), 8 * 2 + 2 + 2);
  });

  it('changes bench-churn one endpoint at a time, to a new address each time', () => {
    const catalog = buildCatalog({ services: 10, endpointsPerService: 2, backendIPs: BACKENDS });
    const first = churnEndpoints(catalog.churn, 1);
    const second = churnEndpoints(catalog.churn, 2);
    assert.equal(first[0], catalog.churn.endpoints[0]);
    assert.notEqual(first[1], second[1]);
    const changed = withEndpoints(catalog, catalog.churn, first);
    assert.deepEqual(changed.churn.endpoints, first);
    assert.deepEqual(changed.services.find((service) => service.name === 'bench-churn')?.endpoints, first);
    assert.deepEqual(catalog.churn.endpoints, buildCatalog({ services: 10, endpointsPerService: 2, backendIPs: BACKENDS }).churn.endpoints);
  });
});
