// The agent's socket iterators (bpf/socklb_iter.bpf.c): destroy the sockets stuck on a backend
// that left, and dump the sockets socklb translated. A socket iterator walks only the network
// namespace of the thread that creates it, so every run goes through a worker thread
// (iterator-worker.ts) that enters each namespace given in turn. The thread is started by the
// first run and stopped once idle for a while: it is a second V8 isolate, 6-7 MiB resident
// (docs/footprint.md), that an agent whose Services do not move has no use for. A run that finds
// it stopped waits for its start-up: 60-100 ms more (docs/footprint.md).
//
// The object reuses the datapath's socket maps (SOCKET_MAPS) by fd: the iterators read what the
// cgroup programs wrote. Its links are not pinned: only a running agent (or `socklb sockets`) runs them.

import { Worker } from 'node:worker_threads';
import { SocklbError, errnoName } from '../errors.js';
import { declaredMap } from '../kernel/bpf-objects.js';
import { libbpf, type BpfLinkHandle, type BpfObjectHandle } from '../kernel/libbpf.js';
import { lastErrno } from '../kernel/libc.js';
import type { NetworkNamespace } from '../kernel/netns.js';
import type { Protocol } from '../model/types.js';
import { KernelMap } from './kernel-maps.js';
import {
  decodeRecords,
  destroyedCodec,
  MAP_NAMES,
  SOCKET_MAPS,
  sockRecordCodec,
  staleKeyCodec,
  u32Codec,
  type DestroyedSocket,
  type SocketMapFds,
  type SocketRecord,
  type StalePair,
} from './layout.js';

/** The iterator programs by job and protocol. */
const PROGRAMS = {
  destroy: { UDP: 'socklb_destroy_udp', TCP: 'socklb_destroy_tcp' },
  dump: { UDP: 'socklb_dump_udp', TCP: 'socklb_dump_tcp' },
} as const satisfies Record<string, Record<Protocol, string>>;

type Job = keyof typeof PROGRAMS;

/** What the worker is given (fds are shared by every thread of the process). */
export interface IteratorJob {
  id: number;
  namespaces: Pick<NetworkNamespace, 'inode' | 'fd'>[];
  linkFds: number[];
}

/** What the worker answers to a job. */
export interface IteratorResult {
  id: number;
  outputs: NamespaceOutput[];
}

/** What the worker found in one namespace: one output per link, in order, or why it could not. */
export type NamespaceOutput =
  { inode: number; outputs: Uint8Array[]; error?: undefined } | { inode: number; error: string; outputs?: undefined };

export interface DestroyRun {
  destroyed: (DestroyedSocket & { netns: number })[];
  /** Namespaces the iterators could not run in, with the reason. */
  failures: string[];
}

export interface NamespaceSockets {
  netns: number;
  sockets: SocketRecord[];
}

const WORKER = new URL('./iterator-worker.js', import.meta.url);
/** Long enough that the destroys of a burst of syncs (a rollout) share one thread. */
const DEFAULT_IDLE_STOP_MS = 30_000;

export class SocketIterators {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (outputs: NamespaceOutput[]) => void; reject: (error: Error) => void }>();
  private nextJob = 1;
  private idleStop: NodeJS.Timeout | undefined;

  private constructor(
    private readonly object: BpfObjectHandle,
    private readonly links: ReadonlyMap<string, BpfLinkHandle>,
    private readonly stale: KernelMap,
    private readonly idleStopMs: number,
  ) {}

  /**
   * Loads the iterator object over the datapath's socket maps and attaches its programs.
   * The thread is stopped `idleStopMs` after its last run.
   */
  static load(objectPath: string, socketMaps: SocketMapFds, idleStopMs = DEFAULT_IDLE_STOP_MS): SocketIterators {
    const object = libbpf.objectOpenFile(objectPath, null);
    if (!object) throw new SocklbError('SOCKLB_ERR_LIBBPF', `cannot open BPF object ${objectPath}: ${errnoName(lastErrno())}`);
    const links = new Map<string, BpfLinkHandle>();
    try {
      for (const role of SOCKET_MAPS) {
        const reused = libbpf.mapReuseFd(declaredMap(object, objectPath, MAP_NAMES[role]), socketMaps[role]);
        if (reused < 0) throw new SocklbError('SOCKLB_ERR_LIBBPF', `reuse ${MAP_NAMES[role]} for ${objectPath}: ${errnoName(-reused)}`);
      }
      const rc = libbpf.objectLoad(object);
      if (rc < 0) {
        throw new SocklbError(
          'SOCKLB_ERR_KERNEL',
          `cannot load ${objectPath}: ${errnoName(-rc)}; the kernel needs BTF, ` +
            `the tcp and udp BPF socket iterators and the bpf_sock_destroy kfunc (Linux 6.5 or later); ` +
            `libbpf's log above says which part failed`,
        );
      }
      for (const name of Object.values(PROGRAMS).flatMap((byProtocol) => Object.values(byProtocol))) {
        const program = libbpf.objectFindProgram(object, name);
        const link = program && libbpf.programAttachIter(program, null);
        if (!link) throw new SocklbError('SOCKLB_ERR_LIBBPF', `attach iterator ${name}: ${errnoName(lastErrno())}`);
        links.set(name, link);
      }
      const stale = declaredMap(object, objectPath, MAP_NAMES.stale);
      return new SocketIterators(object, links, new KernelMap(libbpf.mapFd(stale)), idleStopMs);
    } catch (error) {
      for (const link of links.values()) libbpf.linkDestroy(link);
      libbpf.objectClose(object);
      throw error;
    }
  }

  /**
   * Destroys, in each namespace, the connected sockets of `protocols` whose peer is the backend of
   * one of `pairs` they were translated to. The pairs are written to socklb_stale_v1 for the run
   * (in batches of its size) and deleted after it, also when it fails.
   */
  async destroy(pairs: readonly StalePair[], protocols: readonly Protocol[], namespaces: readonly NetworkNamespace[]): Promise<DestroyRun> {
    const run: DestroyRun = { destroyed: [], failures: [] };
    if (pairs.length === 0 || protocols.length === 0 || namespaces.length === 0) return run;
    for (let start = 0; start < pairs.length; start += this.stale.maxEntries) {
      const keys = pairs.slice(start, start + this.stale.maxEntries).map((pair) => staleKeyCodec.encode(pair));
      try {
        for (const key of keys) this.stale.update(key, u32Codec.encode(0));
        for (const output of await this.run('destroy', protocols, namespaces)) {
          if (output.error !== undefined) run.failures.push(output.error);
          else
            for (const bytes of output.outputs)
              run.destroyed.push(
                ...decodeRecords(destroyedCodec, Buffer.from(bytes)).map((socket) => ({ ...socket, netns: output.inode })),
              );
        }
      } finally {
        for (const key of keys) this.stale.delete(key);
      }
    }
    return run;
  }

  /** Every socket of `protocols` in each namespace that socklb translated, with its translations. */
  async dump(protocols: readonly Protocol[], namespaces: readonly NetworkNamespace[]): Promise<NamespaceSockets[]> {
    const outputs = await this.run('dump', protocols, namespaces);
    return outputs.map((output) => {
      if (output.error !== undefined) throw new SocklbError('SOCKLB_ERR_KERNEL', output.error);
      return { netns: output.inode, sockets: output.outputs.flatMap((bytes) => decodeRecords(sockRecordCodec, Buffer.from(bytes))) };
    });
  }

  /** Whether the thread is running now (it is between a run and its idle stop). */
  get threadRunning(): boolean {
    return this.worker !== undefined;
  }

  /** Stops the thread, detaches the iterators and closes the object; the datapath's maps are not touched. */
  close(): void {
    this.stopThread();
    for (const link of this.links.values()) libbpf.linkDestroy(link);
    libbpf.objectClose(this.object);
  }

  /** Runs the job's programs for `protocols` in each namespace, on the worker thread. */
  private run(job: Job, protocols: readonly Protocol[], namespaces: readonly NetworkNamespace[]): Promise<NamespaceOutput[]> {
    if (namespaces.length === 0) return Promise.resolve([]);
    const linkFds = protocols.map((protocol) => libbpf.linkFd(this.links.get(PROGRAMS[job][protocol])!));
    const message: IteratorJob = { id: this.nextJob++, namespaces: namespaces.map(({ inode, fd }) => ({ inode, fd })), linkFds };
    clearTimeout(this.idleStop);
    return new Promise((resolve, reject) => {
      const worker = this.workerThread();
      this.pending.set(message.id, { resolve, reject });
      // Only a job in flight keeps the process alive.
      worker.ref();
      worker.postMessage(message);
    });
  }

  private workerThread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER);
    worker.unref();
    worker.on('message', ({ id, outputs }: IteratorResult) => {
      this.pending.get(id)?.resolve(outputs);
      this.pending.delete(id);
      if (this.pending.size > 0) return;
      worker.unref();
      this.idleStop = setTimeout(() => this.stopThread(), this.idleStopMs).unref();
    });
    // Once per thread: its 'exit' follows its 'error', and a thread stopped on purpose has no job.
    const fail = (error: Error) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      for (const job of this.pending.values()) job.reject(error);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) =>
      fail(new SocklbError('SOCKLB_ERR_KERNEL', `the socket iterator thread exited (${code}); the next run starts a new one`)),
    );
    this.worker = worker;
    return worker;
  }

  /** Forgotten at once, so that a run that comes next starts a new thread; runs in flight fail. */
  private stopThread(): void {
    clearTimeout(this.idleStop);
    const worker = this.worker;
    this.worker = undefined;
    void worker?.terminate();
    for (const job of this.pending.values())
      job.reject(new SocklbError('SOCKLB_ERR_KERNEL', 'the socket iterators were closed during a run'));
    this.pending.clear();
  }
}
