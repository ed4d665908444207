// `make bundle`: the production build in dist/, everything a node needs besides Node.js itself
// and the system's libbpf.so.1:
//
//   dist/socklb.js              the agent and CLI, one minified ESM file (node dist/socklb.js ...)
//   dist/iterator-worker.js     the socket iterators' thread (src/datapath/iterator-worker.ts); a
//                               file of its own, so that the thread parses a few KB, not the agent
//   dist/trace-worker.js        `socklb trace`'s ring reader (src/datapath/trace-worker.ts), likewise
//   dist/bpf/*.bpf.o            the compiled BPF objects (found as in build/: see src/cli/main.ts)
//   dist/node_modules/@koromix/koffi-<platform>-<arch>/   koffi's native addon, which no bundler
//                               can inline; koffi's own JavaScript is in socklb.js and requires it
//   dist/package.json           "type": "module", so that the .js files load as ESM anywhere
//   dist/socklb-applier         the guest applier (applier/: static, for microVM images)
//   dist/THIRD-PARTY-LICENSES   the licenses of the packages bundled, and of the libraries the
//                               applier links statically (from their Debian packages)
//
// Usage: node scripts/bundle.mjs --applier APPLIER BPF_OBJECT...

import { build } from 'esbuild';
import { chmodSync, copyFileSync, cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';

const DIST = 'dist';
const USAGE = 'usage: node scripts/bundle.mjs --applier APPLIER BPF_OBJECT...';
const [applierFlag, applier, ...bpfObjects] = process.argv.slice(2);
if (applierFlag !== '--applier' || !applier || bpfObjects.length === 0) throw new Error(USAGE);
/** The Debian packages of what socklb-applier links statically: libbpf, libelf, zlib, musl. */
const APPLIER_LIBRARY_PACKAGES = ['libbpf1', 'libelf1', 'zlib1g', 'musl'];

rmSync(DIST, { recursive: true, force: true });
const { metafile } = await build({
  entryPoints: {
    socklb: 'src/cli/main.ts',
    'iterator-worker': 'src/datapath/iterator-worker.ts',
    'trace-worker': 'src/datapath/trace-worker.ts',
  },
  outdir: DIST,
  bundle: true,
  platform: 'node',
  target: 'node22',
  format: 'esm',
  minify: true,
  metafile: true,
  logLevel: 'warning',
  // Bundled CommonJS packages require() Node's built-ins, which an ES module must be given.
  banner: { js: "import{createRequire as __socklbRequire}from'node:module';const require=__socklbRequire(import.meta.url);" },
});
chmodSync(join(DIST, 'socklb.js'), 0o755);

mkdirSync(join(DIST, 'bpf'));
for (const object of bpfObjects) copyFileSync(object, join(DIST, 'bpf', basename(object)));
copyFileSync(applier, join(DIST, 'socklb-applier'));
chmodSync(join(DIST, 'socklb-applier'), 0o755);

// koffi finds its addon with require('@koromix/koffi-<platform>-<arch>') relative to the bundle.
// Only this host's C library's build is shipped (glibc: the Node.js and libbpf of Debian).
const require = createRequire(import.meta.url);
const addonPackage = `@koromix/koffi-${process.platform}-${process.arch}`;
const addonSource = dirname(require.resolve(`${addonPackage}/package.json`));
const addonTarget = join(DIST, 'node_modules', addonPackage);
for (const file of ['package.json', 'index.js', `${process.platform}_${process.arch}`])
  cpSync(join(addonSource, file), join(addonTarget, file), { recursive: true });

const { version } = JSON.parse(readFileSync('package.json', 'utf8'));
writeFileSync(
  join(DIST, 'package.json'),
  `${JSON.stringify({ name: 'socklb', version, private: true, type: 'module', bin: { socklb: 'socklb.js' } }, null, 2)}\n`,
);
writeFileSync(
  join(DIST, 'THIRD-PARTY-LICENSES'),
  [
    thirdPartyLicenses([...bundledPackages(metafile), join('node_modules', 'koffi'), join('node_modules', addonPackage)]),
    applierLicenses(),
  ].join(`\n${'-'.repeat(72)}\n\n`),
);

for (const file of listFiles(DIST)) console.log(`${String(statSync(file).size).padStart(10)}  ${file}`);
console.log(`${String(listFiles(DIST).reduce((sum, file) => sum + statSync(file).size, 0)).padStart(10)}  in all`);

/** The node_modules package directories whose code is in the bundle. */
function bundledPackages(meta) {
  const packages = new Set();
  for (const input of Object.keys(meta.inputs)) {
    const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) packages.add(match[1]);
  }
  return [...packages].sort();
}

function thirdPartyLicenses(packageDirectories) {
  return [...new Set(packageDirectories)]
    .map((directory) => {
      const { name, version: packageVersion, license } = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8'));
      const file = readdirSync(directory).find((entry) => /^(licen[sc]e|copying)/i.test(entry));
      return (
        `${name}@${packageVersion} (${license ?? 'see its package'})\n\n` +
        `${file ? readFileSync(join(directory, file), 'utf8').trim() : 'No license file in the package.'}\n`
      );
    })
    .join(`\n${'-'.repeat(72)}\n\n`);
}

/** The Debian copyright files of the libraries in socklb-applier. */
function applierLicenses() {
  return APPLIER_LIBRARY_PACKAGES.map(
    (name) =>
      `socklb-applier links ${name} statically (Debian's copyright file):\n\n${readFileSync(`/usr/share/doc/${name}/copyright`, 'utf8').trim()}\n`,
  ).join(`\n${'-'.repeat(72)}\n\n`);
}

function listFiles(directory) {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    return entry.isDirectory() ? listFiles(path) : [path];
  });
}
