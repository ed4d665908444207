// Which folder of src/ may import which (docs/design.md, "Modules"): every import of every module,
// static, dynamic or re-exported, as TypeScript's own pre-processor reads them.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';

const ROOT = new URL('../../../', import.meta.url);
const SRC = new URL('src/', ROOT);

/** Besides itself and these, what each folder of src/ may import. */
const ALLOWED: Record<string, readonly string[]> = {
  kernel: [],
  pins: ['kernel'],
  model: [],
  sources: ['model'],
  datapath: ['model', 'kernel', 'pins'],
  sandbox: ['kernel', 'pins'],
  guest: ['model', 'datapath', 'sandbox', 'kernel', 'pins'],
  agent: ['model', 'sources', 'datapath', 'sandbox', 'guest', 'kernel', 'pins'],
  cli: ['model', 'sources', 'datapath', 'sandbox', 'guest', 'agent', 'kernel', 'pins'],
};

/** Files at the top of src/: every module may import them, and they import nothing of ours. */
const SHARED = ['errors.ts', 'log.ts'];

interface Module {
  /** Below src/, with its .ts ending: `datapath/loader.ts`. */
  path: string;
  source: string;
}

function sourceModules(directory = SRC, below = ''): Module[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry): Module[] => {
    const path = `${below}${entry.name}`;
    if (entry.isDirectory()) return sourceModules(new URL(`${entry.name}/`, directory), `${path}/`);
    return entry.name.endsWith('.ts') ? [{ path, source: readFileSync(new URL(entry.name, directory), 'utf8') }] : [];
  });
}

/** The folder of a module below src/, or the file itself for one at the top. */
function folderOf(path: string): string {
  return path.includes('/') ? (path.split('/')[0] as string) : path;
}

/** Every import of `modules` that the table does not allow, as `<module> imports <module>: <why>`. */
function forbiddenImports(modules: readonly Module[]): string[] {
  const forbidden: string[] = [];
  for (const { path, source } of modules) {
    const from = folderOf(path);
    for (const { fileName } of ts.preProcessFile(source, true, true).importedFiles) {
      if (!fileName.startsWith('.')) continue; // a package or node: built-in
      const target = normalize(join(dirname(path), fileName)).replace(/\.js$/, '.ts');
      if (target.startsWith('..')) {
        forbidden.push(`${path} imports ${target}: nothing outside src/ is part of the program`);
        continue;
      }
      const to = folderOf(target);
      if (to === from) continue;
      if (SHARED.includes(from)) {
        forbidden.push(`${path} imports ${target}: ${SHARED.join(' and ')} import nothing of ours`);
      } else if (!SHARED.includes(to) && !(ALLOWED[from] ?? []).includes(to)) {
        const allowed = ALLOWED[from]?.map((folder) => `${folder}/`).join(', ') || 'nothing of ours';
        forbidden.push(`${path} imports ${target}: ${from}/ may import ${allowed}`);
      }
    }
  }
  return forbidden;
}

/** The `may import` table of docs/design.md's "Modules" section, by folder. */
function documentedTable(): Record<string, string[]> {
  const design = readFileSync(new URL('docs/design.md', ROOT), 'utf8');
  const section = design.split(/^## /m).find((part) => part.startsWith('Modules\n')) ?? '';
  const table: Record<string, string[]> = {};
  for (const [, folder, cell] of section.matchAll(/^\| `([a-z]+)\/` \| (.*) \|$/gm)) {
    table[folder as string] = [...(cell as string).matchAll(/`([a-z]+)\/`/g)].map(([, name]) => name as string);
  }
  return table;
}

describe('module boundaries', () => {
  const modules = sourceModules();

  it('lets every module of src/ import only what its folder may', () => {
    assert.deepEqual(forbiddenImports(modules), []);
  });

  it('has a rule for every folder of src/', () => {
    const folders = [...new Set(modules.map(({ path }) => folderOf(path)))].filter((folder) => !folder.endsWith('.ts'));
    assert.deepEqual(folders.sort(), Object.keys(ALLOWED).sort());
    const topFiles = modules.map(({ path }) => path).filter((path) => !path.includes('/'));
    assert.deepEqual(topFiles.sort(), [...SHARED].sort());
  });

  it('says in docs/design.md what it checks', () => {
    assert.deepEqual(documentedTable(), ALLOWED);
  });

  it('finds a forbidden import however it is written', () => {
    const sandbox = (source: string) => forbiddenImports([{ path: 'sandbox/attachments.ts', source }]);
    const why = 'sandbox/attachments.ts imports datapath/loader.ts: sandbox/ may import kernel/, pins/';
    assert.deepEqual(sandbox("import { LoadedDatapath } from '../datapath/loader.js';"), [why]);
    assert.deepEqual(sandbox("import type {\n  LoadedDatapath,\n} from '../datapath/loader.js';"), [why]);
    assert.deepEqual(sandbox("export { LoadedDatapath } from '../datapath/loader.js';"), [why]);
    assert.deepEqual(sandbox("const { LoadedDatapath } = await import('../datapath/loader.js');"), [why]);
    assert.deepEqual(
      sandbox(
        "import { cgroup2Root } from '../kernel/mounts.js';\nimport { SocklbError } from '../errors.js';\nimport type { Sandbox } from './registry.js';",
      ),
      [],
    );
    assert.deepEqual(forbiddenImports([{ path: 'kernel/libc.ts', source: "import { MAP_NAMES } from '../datapath/layout.js';" }]), [
      'kernel/libc.ts imports datapath/layout.ts: kernel/ may import nothing of ours',
    ]);
    assert.deepEqual(forbiddenImports([{ path: 'errors.ts', source: "import type { Logger } from './log.js';" }]), [
      'errors.ts imports log.ts: errors.ts and log.ts import nothing of ours',
    ]);
    assert.deepEqual(forbiddenImports([{ path: 'cli/bench.ts', source: "import '../../bench/main.js';" }]), [
      'cli/bench.ts imports ../bench/main.ts: nothing outside src/ is part of the program',
    ]);
  });
});
