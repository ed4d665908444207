// The thread that reads `socklb trace`'s ring buffer (socklb_ring_v1). The programs write without
// waking a reader (a wakeup per event made each traced call 12 us slower, bench/results/trace-cost/),
// so this thread reads the ring (ring_buffer__consume) every READ_INTERVAL_MS, sleeping in between
// on the shared stop flag, which the agent's main thread must never do, and posts what each read
// brought as one message: the records, each of struct socklb_trace_event's size, one after the
// other. It stops when the stop flag is set, frees the ring and exits.
//
// workerData: TraceWorkerData. Messages out: TraceWorkerMessage.

import koffi from 'koffi';
import { parentPort, workerData } from 'node:worker_threads';
import { errnoName } from '../errors.js';
import { libbpf, ringSampleCallback } from '../kernel/libbpf.js';
import { lastErrno } from '../kernel/libc.js';
import type { TraceWorkerData, TraceWorkerMessage } from './trace-ring.js';

/** 256 KiB of ring every 20 ms: 150,000 events a second before any is lost. */
const READ_INTERVAL_MS = 20;

const { ringFd, recordSize, stop } = workerData as TraceWorkerData;
const stopFlag = new Int32Array(stop);
let batch: Buffer[] = [];

function post(message: TraceWorkerMessage): void {
  parentPort?.postMessage(message);
}

// Records of another size (a ring written by another build) are skipped, not misread.
const sample = koffi.register((_context: unknown, data: unknown, size: number) => {
  if (size === recordSize) batch.push(Buffer.from(new Uint8Array(koffi.view(data, size)).slice()));
  return 0;
}, koffi.pointer(ringSampleCallback));

const ring = libbpf.ringBufferNew(ringFd, sample, null, null);
if (!ring) {
  post({ error: `ring_buffer__new(socklb_ring_v1): ${errnoName(lastErrno())}` });
} else {
  try {
    // Wakes at once when the flag is set; a last read after it hands over what came before.
    for (let stopping = false; !stopping;) {
      stopping = Atomics.wait(stopFlag, 0, 0, READ_INTERVAL_MS) !== 'timed-out';
      const rc = libbpf.ringBufferConsume(ring);
      if (rc < 0) {
        post({ error: `ring_buffer__consume(socklb_ring_v1): ${errnoName(-rc)}` });
        break;
      }
      if (batch.length > 0) {
        const records = Buffer.concat(batch);
        batch = [];
        post({ records });
      }
    }
  } finally {
    libbpf.ringBufferFree(ring);
    koffi.unregister(sample);
  }
}
