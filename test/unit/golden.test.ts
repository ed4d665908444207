// The golden corpus: kube-proxy's Service semantics as socklb implements them,
// one case per rule in test/golden/*.txt (format: test/golden/README.md). Each
// case runs twice, from manifest files and from the Kubernetes API stand-in,
// through the source, the model, the planner and in-memory maps, without
// privileges; at each `-- expected --` section the maps, decoded as
// `socklb services -o wide` prints them, must equal the section, and both
// sources must print the same.
//
// An intended change of behaviour: `make golden` (UPDATE_GOLDEN=1 on this
// test) rewrites the expected sections from a run; review the diff, commit it.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { formatArchive, parseArchive, parseCase, withExpected } from './golden-format.js';
import { runCase, SOURCE_KINDS } from './golden-runner.js';

const CORPUS = fileURLToPath(new URL('../../../test/golden/', import.meta.url));
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const CASES = readdirSync(CORPUS)
  .filter((name) => name.endsWith('.txt'))
  .sort();

describe('golden corpus', () => {
  it('has cases', () => assert.ok(CASES.length > 0, `no .txt file in ${CORPUS}`));

  for (const name of CASES) {
    it(name, async () => {
      const path = join(CORPUS, name);
      const text = readFileSync(path, 'utf8');
      const golden = parseCase(name, text);
      const [first, ...others] = SOURCE_KINDS;
      const printed = await runCase(golden, first!);
      for (const kind of others)
        assert.deepEqual(await runCase(golden, kind), printed, `${name}: ${kind} and ${first} lead to different maps`);
      const regenerated = withExpected(golden, printed);
      if (UPDATE) {
        if (regenerated !== text) writeFileSync(path, regenerated);
        return;
      }
      assert.equal(
        regenerated,
        text,
        `${name}: the maps differ from the expected sections; if the change is intended, run \`make golden\` and review the diff`,
      );
    });
  }
});

describe('golden case format', () => {
  it('reads every case back as written', () => {
    for (const name of CASES) {
      const text = readFileSync(join(CORPUS, name), 'utf8');
      assert.equal(formatArchive(parseArchive(text)), text, name);
    }
  });

  it('reads steps in order: writes, deletions and expectations, with the flags first', () => {
    const golden = parseCase(
      'steps.txt',
      '# a rule\n-- flags --\n--node-name a\n-- s.yaml --\nkind: Service\n-- expected --\none\n-- delete s.yaml --\n-- expected --\n',
    );
    assert.deepEqual(golden.flags, ['--node-name', 'a']);
    assert.deepEqual(golden.steps, [
      { kind: 'write', file: 's.yaml', text: 'kind: Service\n' },
      { kind: 'expect', section: 2, text: 'one\n' },
      { kind: 'delete', file: 's.yaml' },
      { kind: 'expect', section: 4, text: '' },
    ]);
    assert.equal(
      withExpected(golden, ['1\n', '2\n']),
      '# a rule\n-- flags --\n--node-name a\n-- s.yaml --\nkind: Service\n-- expected --\n1\n-- delete s.yaml --\n-- expected --\n2\n',
    );
  });

  it('refuses a case that would check less than it seems to', () => {
    const refusals: [string, RegExp][] = [
      ['-- s.yaml --\n-- expected --\n', /starts with no comment/],
      ['# rule\n-- s.yaml --\n-- expected --\n-- s.yaml --\n', /does not end with an expected section/],
      ['# rule\n-- s.yaml --\n-- flags --\n-- expected --\n', /flags section must come first/],
      ['# rule\n-- delete s.yaml --\n-- expected --\n', /s.yaml is not there to delete/],
      ['# rule\n-- s.txt --\n-- expected --\n', /section "s.txt" is none of/],
    ];
    for (const [text, reason] of refusals) assert.throws(() => parseCase('bad.txt', text), { message: reason }, text);
  });
});
