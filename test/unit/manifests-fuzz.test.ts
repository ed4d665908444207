// Hostile and malformed manifests by the thousand: the source and the model
// never throw, every bad file is reported, and the good Services beside them
// are served exactly as if the bad ones were not there.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { DesiredFrontends } from '../../src/model/desired.js';
import { backendText } from '../../src/model/keys.js';
import { ManifestSource } from '../../src/sources/manifests.js';
import type { SourceState } from '../../src/model/source-state.js';
import { NODE } from './model-fixtures.js';

function goodService(index: number): object[] {
  const name = `good-${index}`;
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: 'fuzz' },
      spec: { clusterIP: `10.96.200.${index}`, ports: [{ name: 'http', port: 80 }] },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${name}-1`, namespace: 'fuzz', labels: { 'kubernetes.io/service-name': name } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080 }],
      endpoints: [{ addresses: [`10.244.200.${index}`] }],
    },
  ];
}

/** A valid object with one field replaced by anything at all. */
const mutatedObject = fc
  .tuple(
    fc.integer({ min: 0, max: 1 }),
    fc.constantFrom(
      'metadata',
      'metadata.name',
      'metadata.namespace',
      'metadata.labels',
      'spec',
      'spec.clusterIP',
      'spec.clusterIPs',
      'spec.ports',
      'spec.type',
      'spec.sessionAffinity',
      'spec.externalIPs',
      'addressType',
      'ports',
      'endpoints',
      'apiVersion',
    ),
    fc.anything({
      maxDepth: 3,
      withNullPrototype: false,
      withBigInt: false,
      withDate: false,
      withTypedArray: false,
      withSparseArray: true,
    }),
  )
  .map(([which, path, junk]) => {
    const object = structuredClone(goodService(250)[which]) as Record<string, unknown>;
    const keys = path.split('.');
    let parent: Record<string, unknown> = object;
    for (const key of keys.slice(0, -1)) {
      if (typeof parent[key] !== 'object' || parent[key] === null) parent[key] = {};
      parent = parent[key] as Record<string, unknown>;
    }
    parent[keys[keys.length - 1] as string] = junk;
    return stringify(object);
  });

/** Texts no parser should choke on. */
const hostileText = fc.oneof(
  // A billion laughs: each alias level multiplies the expansion.
  fc.constant(
    `a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\nkind: Service\n`,
  ),
  fc.integer({ min: 100, max: 5000 }).map((depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`),
  fc.integer({ min: 1000, max: 20_000 }).map((count) =>
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'huge', namespace: 'fuzz' },
      spec: { clusterIP: '10.96.201.1', ports: Array.from({ length: count }, (_, i) => ({ name: `p${i}`, port: 1 + (i % 65535) })) },
    }),
  ),
  fc.string({ maxLength: 300 }),
  fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  fc.constantFrom(
    '---\n---\n',
    'kind: List\nitems: 7\n',
    'kind: List\nitems: [1, "two", null]\n',
    '{"kind": "Service", "metadata": {"name": "x"}, "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": "eighty"}]}}',
    '%YAML 9.9\n---\nkind: Service\n',
  ),
);

/** Two Services claiming one ClusterIP: the second is reported, never both served. */
const duplicateClaim = fc.constant(
  stringify({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'thief', namespace: 'fuzz' },
    spec: { clusterIP: '10.96.200.1', ports: [{ name: 'http', port: 80 }] },
  }),
);

describe('manifest source under hostile input', () => {
  const directories: string[] = [];
  after(() => Promise.all(directories.map((directory) => rm(directory, { recursive: true, force: true }))));

  it('keeps serving the good Services beside 2000 malformed or hostile files, reporting the bad ones', async (t) => {
    const directory = await mkdtemp(join(tmpdir(), 'socklb-fuzz-'));
    directories.push(directory);
    const goodCount = 20;
    for (let i = 1; i <= goodCount; i++)
      await writeFile(
        join(directory, `good-${i}.yaml`),
        goodService(i)
          .map((object) => stringify(object))
          .join('---\n'),
      );
    const bad = fc.sample(
      fc.oneof({ weight: 6, arbitrary: mutatedObject }, { weight: 3, arbitrary: hostileText }, { weight: 1, arbitrary: duplicateClaim }),
      { numRuns: 2000, seed: 4242 },
    );
    await Promise.all(bad.map((text, i) => writeFile(join(directory, `bad-${i}.yaml`), text)));

    const started = performance.now();
    const source = new ManifestSource({ path: directory });
    let state: SourceState | undefined;
    await source.start((delivered) => {
      state = delivered;
    });
    await source.stop();
    t.diagnostic(`2020 files read and validated in ${(performance.now() - started).toFixed(0)} ms`);
    assert.ok(state, 'a state was delivered');

    const desired = new DesiredFrontends(NODE);
    desired.update(state);
    for (let i = 1; i <= goodCount; i++) {
      const frontend = desired.frontends.get(`10.96.200.${i}:80/TCP`);
      assert.deepEqual(frontend?.backends.map(backendText), [`10.244.200.${i}:8080`], `good Service ${i} is served as written`);
      assert.equal(frontend?.service.name, `good-${i}`);
    }
    const problems = desired.problems();
    const reportedFiles = new Set(problems.map((problem) => problem.source));
    const badFilesReported = bad.filter((_, i) => reportedFiles.has(join(directory, `bad-${i}.yaml`))).length;
    t.diagnostic(
      `${problems.length} problems reported; ${badFilesReported} of ${bad.length} bad files named in them ` +
        `(the rest parsed into objects that are valid, or of other kinds)`,
    );
    assert.ok(badFilesReported > bad.length / 2, 'most bad files are reported by name');
    for (const problem of problems) {
      assert.ok(
        problem.object.length > 0 && problem.reason.length > 0,
        `a problem names its object and reason: ${JSON.stringify(problem)}`,
      );
      assert.ok(problem.reason.length < 2000, 'reasons stay readable');
    }
    assert.ok(
      problems.some((problem) => problem.object === 'Service fuzz/thief' && /is served by Service fuzz\/good-1 /.test(problem.reason)),
      'a duplicate ClusterIP claim is reported',
    );
  });
});
