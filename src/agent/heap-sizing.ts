// V8's sizing for small memory (--optimize-for-size), switched on once the agent has programmed
// its first state. Without it the agent keeps the heap it grew while reading that state: at 5000
// Services about 145 MiB resident against 89 on Node.js 22 (150 against 95 on Node.js 20,
// docs/footprint.md). Set from the start, it made reading and programming the first state run into
// many more, smaller collections (10000 Services on Node.js 20: 2.9 s against 1.85); set after it,
// the heap shrinks a little less (5000 Services on Node.js 20: 85.5 against 80.2 MiB) and the first
// state peaks higher: time to program chosen over a few MiB. It is set from the agent's code, not
// node's command line, so that it holds however the agent is started. Setting it
// starts a collection of the whole heap, whose pause (11 to 27 ms at 10000 Services) stalled the
// changes that came right after the first sync: it waits for a quiet moment, with a deadline for a
// cluster whose changes never pause (docs/benchmarks.md "on Node.js 22").
//
// The first state that held anything arms it (a restart that finds its maps up to date writes
// nothing, but has read it all); a sync with nothing in it before then does not.

import type { SyncResult } from './agent.js';

/** No sync for this long is a quiet moment: a burst of changes (a rollout, endpoints turning ready) has ended. */
export const QUIET_MS = 2_000;
/** Changes that never leave a quiet moment delay it no longer than this after the first state. */
export const DEADLINE_MS = 30_000;

export interface HeapSizingTimers {
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Node's timers, unref'd: a pending switch never keeps the agent alive. */
const NODE_TIMERS: HeapSizingTimers = {
  setTimeout: (run, ms) => setTimeout(run, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Calls `optimizeForSize` once, at the first quiet moment after the first state that held anything. */
export function optimizeForSizeWhenQuiet(
  agent: { onSync(listener: (result: SyncResult) => void): void },
  optimizeForSize: () => void,
  timers: HeapSizingTimers = NODE_TIMERS,
): void {
  let quiet: unknown;
  let deadline: unknown;
  let done = false;
  const switchOn = () => {
    if (done) return;
    done = true;
    timers.clearTimeout(quiet);
    timers.clearTimeout(deadline);
    optimizeForSize();
  };
  agent.onSync((result) => {
    if (done) return;
    if (deadline === undefined) {
      if (result.serviceChanges + result.endpointChanges === 0) return;
      deadline = timers.setTimeout(switchOn, DEADLINE_MS);
    }
    timers.clearTimeout(quiet);
    quiet = timers.setTimeout(switchOn, QUIET_MS);
  });
}
