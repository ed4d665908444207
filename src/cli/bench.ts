// `socklb bench`: the benchmark (bench/, docs/benchmarks.md) drives nginx, wrk, iptables and
// nftables in namespaces of its own, so it is not part of the agent. A build from the source
// tree has it beside the CLI (build/bench/main.js for build/src/cli/main.js), and this runs it;
// the production bundle (dist/) does not carry it: its help leaves the command out, and the
// command says so when run all the same.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SocklbError } from '../errors.js';

const BENCH_MAIN = fileURLToPath(new URL('../../bench/main.js', import.meta.url));

/** Whether this build carries the benchmark: a build from the source tree does, the bundle not. */
export function benchAvailable(): boolean {
  return existsSync(BENCH_MAIN);
}

/** Runs the benchmark with `args` in a child process; its exit code. */
export async function runBench(args: string[]): Promise<number> {
  if (!benchAvailable()) {
    throw new SocklbError(
      'SOCKLB_ERR_USAGE',
      `bench: the benchmark is not part of this build (no ${BENCH_MAIN}); ` +
        `it comes with the source tree: run \`make build\` there, then \`node build/src/cli/main.js bench\` ` +
        `(or \`npm run bench\`, \`make bench-quick\`)`,
    );
  }
  const child = spawn(process.execPath, [BENCH_MAIN, ...args], { stdio: 'inherit' });
  // Ctrl-C reaches the benchmark too (same process group); it tears its namespaces down before it exits, and this waits for that.
  const ignore = () => {};
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, ignore);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
    });
  } finally {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.off(signal, ignore);
  }
}
