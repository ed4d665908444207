// Gives the C heap that a large sync used back to the kernel. Reading the first state (and any
// large change) mallocs tens of MiB outside V8's heap, Buffers and koffi's call arguments among
// them; V8 frees them when it collects, but glibc keeps the freed pages in its arenas for the
// agent's life. malloc_trim(0) returns every whole free page of every arena: idle RSS at 5000
// Services 86 -> 81 MiB (docs/footprint.md). Fewer arenas strand less still (77 MiB with
// MALLOC_ARENA_MAX=2), but glibc fixes that limit when the process's threads first allocate,
// before any of our code: mallopt() from here measured no effect, so deploy/daemonset.yaml sets
// the variable.
//
// A trim follows a full collection by a second, one at a time: a long sync, which collects
// often, trims about once a second; an idle agent does not collect, so it never trims.

import { constants, PerformanceObserver, type NodeGCPerformanceDetail, type PerformanceEntry } from 'node:perf_hooks';
import { libcCalls } from '../kernel/libc.js';

const TRIM_DELAY_MS = 1000;

/** Starts trimming after full collections; returns what stops it. */
export function trimAfterCollections(): () => void {
  let trim: NodeJS.Timeout | undefined;
  const observer = new PerformanceObserver((list) => {
    const full = list
      .getEntries()
      .some(
        (entry) => (entry as PerformanceEntry & { detail: NodeGCPerformanceDetail }).detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR,
      );
    if (!full || trim) return;
    trim = setTimeout(() => {
      trim = undefined;
      libcCalls.mallocTrim(0);
    }, TRIM_DELAY_MS).unref();
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => {
    observer.disconnect();
    clearTimeout(trim);
  };
}
