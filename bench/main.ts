#!/usr/bin/env node
// `npm run bench [-- --quick]`, `make bench`, `make bench-quick`: see docs/benchmarks.md.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { missingPrivileges } from '../test/integration/support.js';
import { parseOptions } from './options.js';
import { Progress } from './progress.js';
import { runBenchmark } from './run.js';
import { Teardown } from './teardown.js';

const RESULTS_ROOT = fileURLToPath(new URL('../../bench/results/', import.meta.url));

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  if (missingPrivileges() !== undefined) {
    process.stderr.write('socklb bench needs root: network namespaces, cgroups, BPF, iptables\n');
    return 1;
  }
  const progress = new Progress();
  const report = (line: string) => progress.log(line);
  const teardown = new Teardown();
  const stamp = new Date()
    .toISOString()
    .replace(/:/g, '-')
    .replace(/\.\d+Z$/, 'Z');
  const directory = options.output ?? path.join(RESULTS_ROOT, stamp);
  // A quick run never replaces the figures docs/benchmarks.md shows.
  const latest = options.output === undefined && !options.quick ? path.join(RESULTS_ROOT, 'latest') : undefined;

  // Ctrl-C tears down at once: killing the lab's processes ends whatever step is running.
  const abort = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      progress.log(`${signal}: stopping and tearing down`);
      abort.abort();
      void teardown.run(report);
    });
  }

  try {
    await runBenchmark(options, { directory, latest }, progress, teardown, abort.signal);
    progress.log(`done: ${path.join(directory, 'README.md')}${latest === undefined ? '' : `, copied to ${latest}`}`);
    if (options.quick) progress.log('QUICK MODE: these figures are a smoke test of the harness, not measurements.');
    return 0;
  } catch (error) {
    if (abort.signal.aborted) return 130;
    progress.log(`FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return 1;
  } finally {
    await teardown.run(report);
  }
}

process.exitCode = await main();
