import assert from 'node:assert/strict';
import { test } from 'node:test';
import { usableEndpoints } from '../../src/model/endpoints.js';
import type { Endpoint } from '../../src/model/types.js';

const ready = (address: string): Endpoint => ({ address, ready: true });
const notReady = (address: string): Endpoint => ({ address, ready: false });

const cases: { rule: string; endpoints: Endpoint[]; usable: string[] }[] = [
  { rule: 'ready endpoints receive traffic', endpoints: [ready('10.0.0.1'), ready('10.0.0.2')], usable: ['10.0.0.1', '10.0.0.2'] },
  { rule: 'endpoints that are not ready receive none', endpoints: [ready('10.0.0.1'), notReady('10.0.0.2')], usable: ['10.0.0.1'] },
  { rule: 'no ready endpoint means no backend (no fallback yet)', endpoints: [notReady('10.0.0.1')], usable: [] },
  { rule: 'no endpoints means no backend', endpoints: [], usable: [] },
  { rule: 'order is kept', endpoints: [ready('10.0.0.2'), notReady('10.0.0.3'), ready('10.0.0.1')], usable: ['10.0.0.2', '10.0.0.1'] },
];

for (const { rule, endpoints, usable } of cases) {
  test(rule, () => assert.deepEqual(usableEndpoints(endpoints).map((endpoint) => endpoint.address), usable));
}
