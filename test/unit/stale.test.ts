// Which (frontend, backend) pairs a sync takes out of the datapath, from the state the maps hold
// before and after it: the pairs whose connected sockets the agent destroys.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { StalePair } from '../../src/datapath/layout.js';
import { faultyMaps, memoryMaps } from '../../src/datapath/memory-maps.js';
import { fullScope } from '../../src/datapath/planner.js';
import { reconcile } from '../../src/datapath/reconcile.js';
import { servedBackends, stalePairs } from '../../src/datapath/stale.js';
import { DatapathState } from '../../src/datapath/state.js';
import { backendText, frontendId } from '../../src/model/keys.js';
import type { DesiredFrontend, FrontendKey } from '../../src/model/types.js';

const DNS: FrontendKey = { address: '10.96.0.10', port: 53, protocol: 'UDP' };
const WEB: FrontendKey = { address: '10.96.0.20', port: 80, protocol: 'TCP' };

/** Frontend -> backend addresses (port 8080) as the model would desire them. */
function desired(frontends: [FrontendKey, string[]][]): Map<string, DesiredFrontend> {
  return new Map(
    frontends.map(([key, addresses]) => [
      frontendId(key),
      {
        key,
        service: { namespace: 'default', name: `svc-${key.port}`, portName: '' },
        backends: addresses.map((address) => ({ address, port: 8080 })),
        affinityTimeoutSeconds: 0,
      },
    ]),
  );
}

function text(pairs: StalePair[]): string[] {
  return pairs.map((pair) => `${frontendId(pair.frontend)} -> ${backendText(pair.backend)}`).sort();
}

/** Syncs `from` then `to` as the agent does, and names the pairs the second sync took out. */
function staleAfter(from: [FrontendKey, string[]][], to: [FrontendKey, string[]][], failWrites = false): string[] {
  const maps = memoryMaps();
  const state = DatapathState.read(maps);
  const first = desired(from);
  reconcile(maps, state, first, fullScope(state, first));
  const next = desired(to);
  const scope = [...fullScope(state, next)];
  const before = servedBackends(state, scope);
  reconcile(failWrites ? faultyMaps(maps, () => true) : maps, state, next, scope);
  return text(stalePairs(before, servedBackends(state, scope)));
}

describe('stalePairs', () => {
  const cases: [string, [FrontendKey, string[]][], [FrontendKey, string[]][], string[]][] = [
    [
      'a backend that leaves a frontend is stale for it',
      [[DNS, ['10.244.0.1', '10.244.0.2']]],
      [[DNS, ['10.244.0.1']]],
      ['10.96.0.10:53/UDP -> 10.244.0.2:8080'],
    ],
    [
      'a backend replaced by a new one is stale',
      [[DNS, ['10.244.0.1']]],
      [[DNS, ['10.244.0.9']]],
      ['10.96.0.10:53/UDP -> 10.244.0.1:8080'],
    ],
    [
      'a backend that stays is not stale, even when its slot moves',
      [[DNS, ['10.244.0.1', '10.244.0.2', '10.244.0.3']]],
      [[DNS, ['10.244.0.1', '10.244.0.3']]],
      ['10.96.0.10:53/UDP -> 10.244.0.2:8080'],
    ],
    [
      'every backend of a deleted frontend is stale',
      [
        [DNS, ['10.244.0.1', '10.244.0.2']],
        [WEB, ['10.244.0.1']],
      ],
      [[WEB, ['10.244.0.1']]],
      ['10.96.0.10:53/UDP -> 10.244.0.1:8080', '10.96.0.10:53/UDP -> 10.244.0.2:8080'],
    ],
    [
      'a backend that leaves one frontend but serves another is stale for the one it left',
      [
        [DNS, ['10.244.0.1']],
        [WEB, ['10.244.0.1']],
      ],
      [
        [DNS, []],
        [WEB, ['10.244.0.1']],
      ],
      ['10.96.0.10:53/UDP -> 10.244.0.1:8080'],
    ],
    [
      'new frontends and new backends make nothing stale',
      [[DNS, ['10.244.0.1']]],
      [
        [DNS, ['10.244.0.1', '10.244.0.2']],
        [WEB, ['10.244.0.3']],
      ],
      [],
    ],
    [
      'the same backends in another order make nothing stale',
      [[DNS, ['10.244.0.1', '10.244.0.2']]],
      [[DNS, ['10.244.0.2', '10.244.0.1']]],
      [],
    ],
  ];
  for (const [rule, from, to, expected] of cases) {
    it(rule, () => assert.deepEqual(staleAfter(from, to), expected));
  }

  it('a sync whose writes fail leaves the backends in the datapath, so it names no pair', () => {
    assert.deepEqual(staleAfter([[DNS, ['10.244.0.1', '10.244.0.2']]], [[DNS, []]], true), []);
  });

  it('names exactly the pairs served before and not after, for any two states', () => {
    const state = fc.array(
      fc.tuple(
        fc.constantFrom(DNS, WEB),
        fc.uniqueArray(fc.constantFrom('10.244.0.1', '10.244.0.2', '10.244.0.3', '10.244.0.4'), { maxLength: 4 }),
      ),
      { maxLength: 2 },
    );
    fc.assert(
      fc.property(state, state, (from, to) => {
        const pairs = (frontends: [FrontendKey, string[]][]) =>
          new Set([...desired(frontends).values()].flatMap((f) => f.backends.map((b) => `${frontendId(f.key)} -> ${backendText(b)}`)));
        const after = pairs(to);
        assert.deepEqual(staleAfter(from, to), [...pairs(from)].filter((pair) => !after.has(pair)).sort());
      }),
      { numRuns: 200 },
    );
  });
});
