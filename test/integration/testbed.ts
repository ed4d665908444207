// What most integration suites set up and tear down alike: a lab, a pin directory, a manifest
// directory, scratch directories and the agents they start. One place, so that every suite
// clears a crashed run's leftovers first and removes everything it made, also on failure.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab } from '../lab/lab.js';
import { manifestDirectory, socklb, startAgent, testPinDirectory, type RunningAgent, type StartOptions } from './support.js';

export class Testbed {
  readonly lab = new Lab();
  readonly pinDir: string;
  #manifests: string | undefined;
  readonly #scratch: string[] = [];
  readonly #extraPinDirs: string[] = [];
  #agent: RunningAgent | undefined;

  /** `name` names the pin directory (testPinDirectory). */
  constructor(name: string) {
    this.pinDir = testPinDirectory(name);
  }

  /** The manifest directory made by prepare(). */
  get manifests(): string {
    if (this.#manifests === undefined) throw new Error('Testbed: prepare() first');
    return this.#manifests;
  }

  /** Removes what a crashed run left (namespaces, cgroups, pins), then makes the manifest directory. */
  async prepare(): Promise<void> {
    await Lab.sweepStale();
    await socklb(['cleanup', '--pin-dir', this.pinDir]);
    this.#manifests = await manifestDirectory();
  }

  /** Another pin directory the suite uses, cleaned now and at close(). */
  async extraPinDirectory(name: string): Promise<string> {
    const directory = testPinDirectory(name);
    await socklb(['cleanup', '--pin-dir', directory]);
    this.#extraPinDirs.push(directory);
    return directory;
  }

  /** A temporary directory removed at close(). */
  async scratchDirectory(prefix: string): Promise<string> {
    const directory = await mkdtemp(join(tmpdir(), `socklb-${prefix}-`));
    this.#scratch.push(directory);
    return directory;
  }

  /** Starts an agent (support.ts startAgent); the latest one started is stopped at close(). */
  async startAgent(args: string[], options?: StartOptions): Promise<RunningAgent> {
    this.#agent = await startAgent(args, options);
    return this.#agent;
  }

  async close(): Promise<void> {
    await this.#agent?.stop();
    for (const directory of [this.pinDir, ...this.#extraPinDirs]) await socklb(['cleanup', '--pin-dir', directory]);
    await this.lab.close();
    for (const directory of [this.#manifests, ...this.#scratch]) if (directory) await rm(directory, { recursive: true, force: true });
  }
}
