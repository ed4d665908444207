// What must be on a node besides Node.js and the system's libbpf: the bundle (dist/, make bundle)
// file by file, and for comparison what an unbundled install needs (build/'s JavaScript and BPF
// objects, and the production dependencies in node_modules/, as `npm ci --omit=dev` would leave).
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

export interface ShippedSize {
  /** dist/'s files and their sizes, in bytes. */
  files: { path: string; bytes: number }[];
  bytes: number;
  /** dist/ as a gzipped tarball, as an image layer would carry it. */
  gzippedBytes: number;
  /** build/src (JavaScript only), build/bpf and the production node_modules. */
  unbundledBytes: number;
}

export function shippedSize(root: string): ShippedSize {
  const dist = join(root, 'dist');
  const files = listFiles(dist).map((path) => ({ path: relative(dist, path), bytes: statSync(path).size }));
  const gzipped = execFileSync('tar', ['-czf', '-', '-C', dist, '.'], { maxBuffer: 1 << 30 });
  const javascript = listFiles(join(root, 'build', 'src')).filter((path) => path.endsWith('.js'));
  const unbundled = [...javascript, ...listFiles(join(root, 'build', 'bpf')), ...productionDependencies(root).flatMap(listFiles)];
  return {
    files,
    bytes: sum(files.map((file) => file.bytes)),
    gzippedBytes: gzipped.length,
    unbundledBytes: sum(unbundled.map((path) => statSync(path).size)),
  };
}

/** The top-level directories of every production dependency (nested ones are inside them). */
function productionDependencies(root: string): string[] {
  const output = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8' });
  const directories = [...new Set(output.split('\n').filter((line) => line.includes(`${sep}node_modules${sep}`)))].sort();
  return directories.filter((directory, i) => !directories.slice(0, i).some((outer) => directory.startsWith(`${outer}${sep}`)));
}

function listFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    return entry.isDirectory() ? listFiles(path) : entry.isFile() ? [path] : [];
  });
}

function sum(values: number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
