// Leaving nothing behind: the steps that undo what a run made, run in reverse order at the end, on
// a failure and on Ctrl-C; and the leftovers of runs that were killed before they could run them.
import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { socklb } from '../test/integration/support.js';
import { Lab } from '../test/lab/lab.js';

export class Teardown {
  readonly #steps: { what: string; step: () => Promise<void> }[] = [];
  #running: Promise<void> | undefined;

  add(what: string, step: () => Promise<void>): void {
    this.#steps.push({ what, step });
  }

  /** Runs every step once, last added first; a failed step is reported and the others still run. */
  run(report: (line: string) => void): Promise<void> {
    this.#running ??= (async () => {
      for (const { what, step } of [...this.#steps].reverse()) {
        await step().catch((error: unknown) => report(`teardown: ${what}: ${error instanceof Error ? error.message : String(error)}`));
      }
    })();
    return this.#running;
  }
}

/** This run's work directory; the pid in its name lets a later run tell it is stale. */
export function workdirPrefix(): string {
  return path.join(os.tmpdir(), `socklb-bench-${process.pid}-`);
}

const STALE_WORKDIR = /^socklb-bench-(\d+)-/;
const STALE_PINS = /^socklb-test-bench-(\d+)$/;
const BPFFS = '/sys/fs/bpf';

/** Removes what killed runs left: lab namespaces and cgroups, socklb pins, work directories. */
export async function sweepStaleRuns(): Promise<string[]> {
  const removed = await Lab.sweepStale();
  for (const name of await entries(BPFFS)) {
    const pid = STALE_PINS.exec(name)?.[1];
    if (pid === undefined || isAlive(Number(pid))) continue;
    const result = await socklb(['cleanup', '--pin-dir', path.join(BPFFS, name)]);
    if (result.code !== 0) throw new Error(`socklb cleanup --pin-dir ${path.join(BPFFS, name)}: ${result.stderr.trim()}`);
    removed.push(path.join(BPFFS, name));
  }
  for (const name of await entries(os.tmpdir())) {
    const pid = STALE_WORKDIR.exec(name)?.[1];
    if (pid === undefined || isAlive(Number(pid))) continue;
    await rm(path.join(os.tmpdir(), name), { recursive: true, force: true });
    removed.push(path.join(os.tmpdir(), name));
  }
  return removed;
}

async function entries(directory: string): Promise<string[]> {
  return readdir(directory).catch(() => []);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
