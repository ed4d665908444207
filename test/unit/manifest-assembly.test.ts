// The manifest files assembled file by file: over random sequences of file
// contents, the state and the duplicate reports are those of an assembly of
// the final files made at once, and the changes named cover every key whose
// delivered object changed.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ManifestAssembly, type AssemblyChanges, type ManifestObject } from '../../src/sources/manifest-assembly.js';
import { modelEndpoint, modelService } from './model-fixtures.js';

const PATHS = ['/m/a.yaml', '/m/b.yaml', '/m/sub/c.yaml'];

// A small universe: files often define the same objects, a Service often translated in one and ignored in another.
const objectArbitrary: fc.Arbitrary<[string, ManifestObject]> = fc.oneof(
  fc
    .record({ name: fc.constantFrom('web', 'db'), port: fc.constantFrom(80, 81) })
    .map(({ name, port }): [string, ManifestObject] => [
      `Service default/${name}`,
      { kind: 'Service', service: modelService({ name, ports: [{ name: 'http', protocol: 'TCP', port }] }) },
    ]),
  fc
    .constantFrom('web', 'db')
    .map((name): [string, ManifestObject] => [`Service default/${name}`, { kind: 'IgnoredService', key: `default/${name}` }]),
  fc
    .record({
      name: fc.constantFrom('s1', 's2'),
      serviceName: fc.constantFrom('web', 'db'),
      address: fc.constantFrom('10.244.0.1', '10.244.0.2'),
    })
    .map(({ name, serviceName, address }): [string, ManifestObject] => [
      `EndpointSlice default/${name}`,
      {
        kind: 'EndpointSlice',
        slice: {
          namespace: 'default',
          name,
          serviceName,
          addressType: 'IPv4',
          ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
          endpoints: [modelEndpoint(address)],
        },
      },
    ]),
);
/** One file's new contents, or its removal (undefined). */
const fileChangeArbitrary = fc.tuple(
  fc.constantFrom(...PATHS),
  fc.option(
    fc.array(objectArbitrary, { maxLength: 4 }).map((entries) => new Map(entries)),
    { nil: undefined },
  ),
);

function view(assembly: ManifestAssembly) {
  const sorted = <T>(map: ReadonlyMap<string, T>) => [...map].sort(([a], [b]) => (a < b ? -1 : 1));
  return {
    services: sorted(assembly.services),
    ignoredServices: [...assembly.ignoredServices].sort(),
    slices: sorted(assembly.slices),
    duplicates: PATHS.flatMap((path) => assembly.duplicateProblems(path)).sort((a, b) =>
      JSON.stringify(a).localeCompare(JSON.stringify(b)),
    ),
  };
}

describe('ManifestAssembly', () => {
  it('file by file ends where an assembly of the final files does, and names every key whose object changed', () => {
    fc.assert(
      fc.property(fc.array(fileChangeArbitrary, { minLength: 1, maxLength: 12 }), (sequence) => {
        const incremental = new ManifestAssembly();
        const files = new Map<string, ReadonlyMap<string, ManifestObject>>();
        for (const [path, objects] of sequence) {
          const before = view(incremental);
          const changes: AssemblyChanges = { services: new Set(), slices: new Set() };
          incremental.setFile(path, objects, changes);
          if (objects) files.set(path, objects);
          else files.delete(path);
          const after = view(incremental);
          for (const [kind, named] of [
            ['services', changes.services],
            ['slices', changes.slices],
          ] as const) {
            const differing = [...new Set([...before[kind], ...after[kind]].map(([key]) => key))].filter(
              (key) => before[kind].find(([k]) => k === key)?.[1] !== after[kind].find(([k]) => k === key)?.[1],
            );
            assert.deepEqual(
              differing.filter((key) => !named.has(key)),
              [],
              `every changed ${kind} key is named`,
            );
          }
          const turned = [...new Set([...before.ignoredServices, ...after.ignoredServices])].filter(
            (key) => before.ignoredServices.includes(key) !== after.ignoredServices.includes(key),
          );
          assert.deepEqual(
            turned.filter((key) => !changes.services.has(key)),
            [],
            'every Service turned ignored or back is named',
          );
          const whole = new ManifestAssembly();
          for (const [filePath, fileObjects] of files) whole.setFile(filePath, fileObjects, { services: new Set(), slices: new Set() });
          assert.deepEqual(after, view(whole));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('the first file in path order wins an object defined twice; the other file is told which', () => {
    const assembly = new ManifestAssembly();
    const changes: AssemblyChanges = { services: new Set(), slices: new Set() };
    const web = (port: number): ManifestObject => ({
      kind: 'Service',
      service: modelService({ name: 'web', ports: [{ name: 'http', protocol: 'TCP', port }] }),
    });
    assembly.setFile('/m/b.yaml', new Map([['Service default/web', web(81)]]), changes);
    assembly.setFile('/m/a.yaml', new Map([['Service default/web', web(80)]]), changes);
    assert.equal(assembly.services.get('default/web')?.ports[0]?.port, 80);
    assert.deepEqual(assembly.duplicateProblems('/m/b.yaml'), [
      {
        source: '/m/b.yaml',
        object: 'Service default/web',
        reason: 'is also defined in /m/a.yaml, which wins as the first in path order: remove one',
      },
    ]);
    assembly.setFile('/m/a.yaml', undefined, changes);
    assert.equal(assembly.services.get('default/web')?.ports[0]?.port, 81);
    assert.deepEqual(assembly.duplicateProblems('/m/b.yaml'), []);
  });
});
