// The thread that reads `socklb trace`'s ring buffer (socklb_ring_v1). libbpf's ring_buffer__poll
// blocks until records come, which the agent's main thread must never do: this thread polls in a
// loop, a tenth of a second at a time, and posts what each poll brought as one message: the
// records, each of struct socklb_trace_event's size, one after the other. It stops when the
// shared stop flag is set, frees the ring and exits.
//
// workerData: TraceWorkerData. Messages out: TraceWorkerMessage.

import koffi from 'koffi';
import { parentPort, workerData } from 'node:worker_threads';
import { errnoName } from '../errors.js';
import { libbpf, ringSampleCallback } from '../kernel/libbpf.js';
import { lastErrno } from '../kernel/libc.js';
import type { TraceWorkerData, TraceWorkerMessage } from './trace-ring.js';

const POLL_TIMEOUT_MS = 100;
const EINTR = 4;

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
    while (Atomics.load(stopFlag, 0) === 0) {
      const rc = libbpf.ringBufferPoll(ring, POLL_TIMEOUT_MS);
      if (rc < 0 && -rc !== EINTR) {
        post({ error: `ring_buffer__poll(socklb_ring_v1): ${errnoName(-rc)}` });
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
