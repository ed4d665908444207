// The thread that runs socket iterators inside other network namespaces. A socket iterator walks
// the namespace of the thread that creates it, and setns(CLONE_NEWNET) moves only the calling
// thread: so this worker enters each namespace of a job in turn while the agent's main thread never
// leaves its own. After every job it goes back to the namespace it started in, so that it holds no
// sandbox's namespace between jobs; if it cannot, it exits (the next job starts a new thread).
//
// Messages in: IteratorJob; out: IteratorResult, one per job, in order.

import { openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { errnoName } from '../errors.js';
import { libbpf } from '../kernel/libbpf.js';
import { lastErrno, libcCalls } from '../kernel/libc.js';
import type { IteratorJob, IteratorResult, NamespaceOutput } from './socket-iterators.js';

const CLONE_NEWNET = 0x40000000;
const READ_CHUNK = 64 * 1024;

// Opened before any setns: the namespace this thread was born in, the agent's own.
const home = openSync('/proc/thread-self/ns/net', 'r');

function runIn(namespace: IteratorJob['namespaces'][number], linkFds: readonly number[]): NamespaceOutput {
  if (libcCalls.setns(namespace.fd, CLONE_NEWNET) !== 0) {
    return { inode: namespace.inode, error: `setns(netns ${namespace.inode}): ${errnoName(lastErrno())}` };
  }
  const outputs: Uint8Array[] = [];
  for (const linkFd of linkFds) {
    const iterFd = libbpf.iterCreate(linkFd);
    if (iterFd < 0) return { inode: namespace.inode, error: `bpf_iter_create in netns ${namespace.inode}: ${errnoName(-iterFd)}` };
    try {
      outputs.push(readToEnd(iterFd));
    } catch (error) {
      return { inode: namespace.inode, error: `reading the iterator in netns ${namespace.inode}: ${(error as Error).message}` };
    } finally {
      libcCalls.close(iterFd);
    }
  }
  return { inode: namespace.inode, outputs };
}

/** The iterator's programs run as it is read: at its end, every socket has been seen. */
function readToEnd(fd: number): Uint8Array {
  const chunks: Buffer[] = [];
  for (;;) {
    const chunk = Buffer.alloc(READ_CHUNK);
    const length = readSync(fd, chunk, 0, chunk.length, null);
    if (length === 0) return Buffer.concat(chunks);
    chunks.push(chunk.subarray(0, length));
  }
}

parentPort?.on('message', (job: IteratorJob) => {
  const outputs = job.namespaces.map((namespace) => runIn(namespace, job.linkFds));
  const result: IteratorResult = { id: job.id, outputs };
  if (libcCalls.setns(home, CLONE_NEWNET) !== 0) {
    // Posted first: the job itself is done.
    parentPort?.postMessage(result);
    process.exit(1);
  }
  parentPort?.postMessage(result);
});
