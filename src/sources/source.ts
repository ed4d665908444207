// The contract every source of Services and EndpointSlices fulfils: manifest
// files or the Kubernetes API. What it delivers, a SourceState, is the model's
// input, so its type lives in the model (src/model/source-state.ts).

import type { SourceState } from '../model/source-state.js';

export interface Source {
  /** Delivers its first state, then every change; resolves once the first state was delivered. */
  start(onState: (state: SourceState) => void): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs `task` once for any number of schedule() calls until it runs: after `delayMs`, or, with no
 * delay, once the events already queued are handled (setImmediate), so that a burst is taken
 * together while a lone change waits for nothing.
 */
export class CoalescedTask {
  #pending: NodeJS.Timeout | NodeJS.Immediate | undefined;

  constructor(
    private readonly task: () => void,
    private readonly delayMs = 0,
  ) {}

  schedule(): void {
    if (this.#pending !== undefined) return;
    const run = () => {
      this.#pending = undefined;
      this.task();
    };
    this.#pending = this.delayMs > 0 ? setTimeout(run, this.delayMs) : setImmediate(run);
  }

  cancel(): void {
    if (this.#pending === undefined) return;
    if (this.delayMs > 0) clearTimeout(this.#pending as NodeJS.Timeout);
    else clearImmediate(this.#pending as NodeJS.Immediate);
    this.#pending = undefined;
  }
}
