// How successive versions of one object take effect, for every source alike.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { keepLastValid, sameContent } from '../../src/model/versions.js';
import { modelEndpoint, modelService } from './model-fixtures.js';

describe('sameContent', () => {
  const web = modelService();
  const cases: { rule: string; a: unknown; b: unknown; expected: boolean }[] = [
    { rule: 'an object is the same as itself', a: web, b: web, expected: true },
    { rule: 'a fresh object with equal content is the same (a file read again)', a: web, b: modelService(), expected: true },
    { rule: 'a field that differs makes a difference', a: web, b: modelService({ clusterIPs: ['10.96.0.11'] }), expected: false },
    {
      rule: 'a difference deep inside makes a difference',
      a: [modelEndpoint('10.244.0.1')],
      b: [modelEndpoint('10.244.0.1', { ready: false })],
      expected: false,
    },
    {
      rule: 'order is content: the same items in another order differ',
      a: ['10.96.0.10', 'fd00::10'],
      b: ['fd00::10', '10.96.0.10'],
      expected: false,
    },
    { rule: 'nothing is the same as nothing', a: undefined, b: undefined, expected: true },
    { rule: 'nothing differs from an object', a: undefined, b: web, expected: false },
    { rule: 'an object differs from nothing', a: web, b: undefined, expected: false },
  ];
  for (const { rule, a, b, expected } of cases) test(rule, () => assert.equal(sameContent(a, b), expected));
});

describe('keepLastValid', () => {
  const reason = 'spec.ports[0].port: 70000 is out of range 1-65535';
  const web = modelService();
  const cases: { rule: string; lastValid: object | undefined; expected: { value: object | undefined; problem: string } }[] = [
    {
      rule: 'an object that had a valid version keeps it in effect, and the problem says so',
      lastValid: web,
      expected: { value: web, problem: `${reason}; its previous valid version stays in effect` },
    },
    {
      rule: 'an object that never had a valid version has nothing in effect, and the problem is the reason alone',
      lastValid: undefined,
      expected: { value: undefined, problem: reason },
    },
  ];
  for (const { rule, lastValid, expected } of cases) {
    test(rule, () => {
      const kept = keepLastValid(reason, lastValid);
      assert.deepEqual(kept, expected);
      assert.equal(kept.value, lastValid, 'the very object in effect before, not a copy');
    });
  }
});
