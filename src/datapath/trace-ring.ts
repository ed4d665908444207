// `socklb trace`'s kernel side: the switch (socklb_trace_v1) that makes the programs write an event
// per translation or refusal, and the reader of the ring they write to (socklb_ring_v1), a thread
// of its own (trace-worker.ts), which sleeps between reads. The agent is the ring's only reader:
// it turns the switch on for its first tracer and off when the last leaves (src/agent/tracing.ts).

import { Worker } from 'node:worker_threads';
import { SocklbError } from '../errors.js';
import { decodeRecords, traceEventCodec, traceSwitchCodec, u32Codec, type TraceEvent, type TraceSwitch } from './layout.js';
import type { BpfMap } from './maps.js';

/** What the worker is given (fds are shared by every thread of the process). */
export interface TraceWorkerData {
  ringFd: number;
  recordSize: number;
  /** One Int32: set to 1 to stop the worker. */
  stop: SharedArrayBuffer;
}

/** What the worker posts: records (struct socklb_trace_event each, one after the other), or why it stopped. */
export type TraceWorkerMessage = { records: Uint8Array } | { error: string };

const WORKER = new URL('./trace-worker.js', import.meta.url);
const SWITCH_KEY = u32Codec.encode(0);

export interface TraceListener {
  events(events: TraceEvent[]): void;
  /** The reader stopped or a record could not be read; the trace goes on where it can. */
  error(error: Error): void;
}

export class TraceRing {
  private worker: Worker | undefined;
  private stopFlag: Int32Array | undefined;
  private exited: Promise<void> = Promise.resolve();

  /** `switchMap`: socklb_trace_v1; `ringFd`: socklb_ring_v1's. Both stay owned by the caller. */
  constructor(
    private readonly switchMap: BpfMap,
    private readonly ringFd: number,
  ) {}

  readSwitch(): TraceSwitch {
    const value = this.switchMap.lookup(SWITCH_KEY);
    if (!value) throw new SocklbError('SOCKLB_ERR_LIBBPF', `${this.switchMap.name}: no entry at key 0`);
    return traceSwitchCodec.decode(value);
  }

  /**
   * Writes the switch. The whole value is written: a drop the programs count between the read and
   * the write is lost from the count, which only a full ring at that very moment can make.
   */
  setEnabled(enabled: boolean): void {
    this.switchMap.update(SWITCH_KEY, traceSwitchCodec.encode({ ...this.readSwitch(), enabled }));
  }

  /**
   * Starts the reader, then turns the switch on. Records written before (by a trace that an agent
   * left running when it died) are dropped: the listener hears only of calls made from now on.
   */
  start(listener: TraceListener): void {
    if (this.worker) return;
    const since = process.hrtime.bigint();
    const stop = new SharedArrayBuffer(4);
    const data: TraceWorkerData = { ringFd: this.ringFd, recordSize: traceEventCodec.size, stop };
    const worker = new Worker(WORKER, { workerData: data });
    this.worker = worker;
    this.stopFlag = new Int32Array(stop);
    worker.on('message', (message: TraceWorkerMessage) => {
      if ('error' in message) {
        listener.error(new SocklbError('SOCKLB_ERR_LIBBPF', message.error));
        return;
      }
      const records = Buffer.from(message.records.buffer, message.records.byteOffset, message.records.byteLength);
      const events = decodeRecords(traceEventCodec, records, (error) => listener.error(error));
      listener.events(events.filter((event) => event.timeNs >= since));
    });
    this.exited = new Promise<void>((resolve) => {
      worker.once('error', (error) => listener.error(error));
      worker.once('exit', () => resolve());
    });
    this.setEnabled(true);
  }

  /** Turns the switch off, then stops the reader once it has handed over what was written before. */
  async stop(): Promise<void> {
    if (!this.worker || !this.stopFlag) return;
    this.setEnabled(false);
    Atomics.store(this.stopFlag, 0, 1);
    Atomics.notify(this.stopFlag, 0);
    this.worker = undefined;
    this.stopFlag = undefined;
    await this.exited;
  }
}
