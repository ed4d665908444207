// One connection to a guest's applier: the host's half of docs/guest-protocol.md.
//
//   HELLO ──> in the log (same epoch, marker kept, maps large enough) ──> the batches it missed
//         └─> otherwise: a snapshot: OBJECT ─ LOADED ─ BATCHes of the whole state ─ COMMIT
//   then each sync of the node: one BATCH (or more, for a large one) ending with the marker
//
// The guest is untrusted: its frames are size-limited and parsed strictly (wire.ts), each must be
// the answer the host waits for, in order, in time; anything else closes the connection. What it
// says can cost the host a snapshot to that guest and nothing else: its input never reaches the
// node's state. What the host queues for it is bounded: past the bound the guest is sent nothing
// until it drains, then the syncs it missed, or a snapshot when the log no longer has them.

import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Marker } from '../datapath/layout.js';
import type { DatapathState } from '../datapath/state.js';
import type { Logger } from '../log.js';
import { FrameReader } from './frame-reader.js';
import { guestCapacities, outgrown, undersized, type GuestCounts } from './sizing.js';
import type { LogEntry, SyncLog } from './sync-log.js';
import {
  decodeGuestMessage,
  encodeBatch,
  encodeCommit,
  encodeObject,
  encodeResync,
  packGroups,
  WIRE_VERSION,
  WriteTarget,
  type GuestMessage,
  type Hello,
  type ObjectMap,
  type WriteGroup,
} from './wire.js';
import { snapshotGroups, syncGroups, unwritable } from './writes.js';

/** The node's side, shared by every guest: the canonical state and the log of its changes. */
export interface GuestSource {
  /** Random per agent run: a guest whose marker has another epoch needs a snapshot. */
  readonly epoch: bigint;
  readonly log: SyncLog;
  /** The node's maps as the agent tracks them. */
  readonly state: DatapathState;
  /** What the node's maps hold now, counted once for every guest (a count walks every frontend). */
  readonly counts: GuestCounts;
  /** The BPF object guests load: the node's own. */
  readonly elf: Uint8Array;
}

export type GuestPhase = 'hello' | 'loading' | 'snapshot' | 'committing' | 'streaming' | 'waiting' | 'failed';

/** What outlives one connection of a guest. */
export class GuestRecord {
  snapshots = 0;
  /** Set when the guest's maps may differ from what its marker claims: a write it refused. */
  needsSnapshot = false;
  lastError: string | undefined;
  kernelRelease: string | undefined;
  /** The marker the guest last acknowledged (or said it holds); lag is counted from it. */
  marker: Marker | undefined;
  #snapshotTokens: number;
  #tokensAt: number;

  constructor(
    readonly id: string,
    private readonly limits: SessionLimits,
    now: number,
  ) {
    this.#snapshotTokens = limits.snapshotBurst;
    this.#tokensAt = now;
  }

  /** Takes a snapshot's token: 0 when one may start now, else the milliseconds until one may. */
  takeSnapshotToken(now: number): number {
    const refilled = Math.floor((now - this.#tokensAt) / this.limits.snapshotIntervalMs);
    if (refilled > 0) {
      this.#snapshotTokens = Math.min(this.limits.snapshotBurst, this.#snapshotTokens + refilled);
      this.#tokensAt += refilled * this.limits.snapshotIntervalMs;
    }
    if (this.#snapshotTokens === 0) return this.#tokensAt + this.limits.snapshotIntervalMs - now;
    this.#snapshotTokens--;
    return 0;
  }
}

export interface SessionLimits {
  /** Bytes written to the guest and not yet taken by it, past which syncs wait for it to drain. */
  queueBytes: number;
  /** Snapshots a guest may get at once, and one more per interval after. */
  snapshotBurst: number;
  snapshotIntervalMs: number;
  /** Time for the guest's HELLO after it connects (serial: after the first RESYNC). */
  helloTimeoutMs: number;
  /** Time for any answer the host waits for (a slow guest loading the object in emulation). */
  answerTimeoutMs: number;
  /** Serial: how often RESYNC is sent again until the HELLO that answers it comes. */
  resyncIntervalMs: number;
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = {
  queueBytes: 4 << 20,
  snapshotBurst: 3,
  snapshotIntervalMs: 20_000,
  helloTimeoutMs: 30_000,
  answerTimeoutMs: 120_000,
  resyncIntervalMs: 1_000,
};

/** An answer the host waits for, in the order it sent the requests. */
type Expected =
  | { kind: 'loaded' }
  | { kind: 'ack'; seq: bigint; purpose: 'snapshot' }
  | { kind: 'ack'; seq: bigint; purpose: 'commit' }
  /** `last`: the last frame of its sync, after which the guest's marker is `seq`. */
  | { kind: 'ack'; seq: bigint; purpose: 'sync'; last: boolean };

/** A closed connection says why, for the log and `socklb sandbox list`. */
class Violation extends Error {}

export class GuestSession {
  #phase: GuestPhase = 'hello';
  #reader: FrameReader;
  #target: WriteTarget | undefined;
  #hello: Hello | undefined;
  readonly #expected: Expected[] = [];
  #snapshotMarker: Marker | undefined;
  /** The capacities the last OBJECT asked for, which its staged maps must have. */
  #asked: readonly ObjectMap[] = [];
  #snapshotFailed = false;
  /** The last sync sent to the guest; those after it wait while the queue is full. */
  #sentSeq = 0n;
  #behind = false;
  #resyncNonce = 0n;
  #resyncTimer: NodeJS.Timeout | undefined;
  #answerTimer: NodeJS.Timeout | undefined;
  #snapshotTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    readonly record: GuestRecord,
    private readonly socket: Socket,
    private readonly source: GuestSource,
    private readonly logger: Logger,
    private readonly options: { serial: boolean; limits: SessionLimits; now: () => number },
  ) {
    this.#reader = new FrameReader({ awaitHello: options.serial });
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('drain', () => this.#drained());
    socket.on('error', (error: NodeJS.ErrnoException) => this.#close(`connection: ${error.code ?? error.message}`));
    socket.on('close', () => this.#close(undefined));
    this.#arm(options.limits.helloTimeoutMs, 'no HELLO');
    if (options.serial) this.#resync();
  }

  get phase(): GuestPhase {
    return this.#phase;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes queued for the guest and not yet taken by it. */
  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  /** A sync of the node: sent on to a guest that is up to date, held back for one that is not. */
  publish(entry: LogEntry): void {
    if (this.#closed || this.#phase !== 'streaming') return;
    if (this.#outgrownMaps()) return;
    if (this.#behind || this.socket.writableLength > this.options.limits.queueBytes) {
      this.#behind = true;
      return;
    }
    try {
      this.#sendSync(entry);
    } catch (error) {
      // Whatever this guest's maps are, the sync goes on for the node and the other guests.
      this.close(`sync ${entry.seq}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** Ends the connection; the guest reconnects. */
  close(reason: string): void {
    this.#close(reason);
    this.socket.destroy();
  }

  #receive(chunk: Buffer): void {
    if (this.#closed) return;
    try {
      for (const frame of this.#reader.push(chunk)) this.#answer(decodeGuestMessage(frame));
    } catch (error) {
      this.close(error instanceof Error ? error.message : String(error));
    }
  }

  #answer(message: GuestMessage): void {
    if (message.kind === 'hello') return this.#helloed(message);
    const expected = this.#expected.shift();
    if (expected === undefined) throw new Violation(`an unasked ${message.kind.toUpperCase()}`);
    this.#rearm();
    if (message.kind === 'loaded') {
      if (expected.kind !== 'loaded') throw new Violation(`LOADED where an ACK of ${expected.seq} was due`);
      return this.#loaded(message.error, message.message, message.maps);
    }
    if (expected.kind !== 'ack' || message.epoch !== this.source.epoch || message.seq !== expected.seq) {
      throw new Violation(
        `ACK of ${message.epoch}/${message.seq} where ${expected.kind === 'ack' ? `one of ${expected.seq}` : 'LOADED'} was due`,
      );
    }
    const failure =
      message.error === 0
        ? undefined
        : `error ${message.error}${message.failed ? ` at group ${message.failed.group} write ${message.failed.write}` : ''}`;
    if (expected.purpose === 'snapshot') return this.#snapshotAcked(failure);
    if (expected.purpose === 'commit') return this.#committed(failure);
    if (failure) {
      this.record.needsSnapshot = true;
      this.record.lastError = `sync ${expected.seq}: ${failure}`;
      this.logger.warn(
        { guest: this.record.id, seq: String(expected.seq) },
        `guest ${this.record.id}: sync refused (${failure}); a snapshot follows`,
      );
      return this.#snapshot();
    }
    if (expected.last) this.record.marker = { epoch: this.source.epoch, seq: expected.seq };
  }

  #helloed(hello: Hello): void {
    // Serial: every RESYNC the port held gets a HELLO; only the latest one's counts.
    if (this.options.serial && hello.resyncNonce !== this.#resyncNonce) return;
    if (this.#hello !== undefined) throw new Violation('a second HELLO');
    if (hello.version !== WIRE_VERSION) throw new Violation(`protocol version ${hello.version}, not ${WIRE_VERSION}`);
    this.#hello = hello;
    this.record.kernelRelease = hello.kernelRelease;
    this.record.marker = hello.marker;
    clearInterval(this.#resyncTimer);
    this.#disarm();
    const inStep = hello.marker.epoch === this.source.epoch && !this.record.needsSnapshot && hello.maps.length > 0;
    const missed = inStep ? this.source.log.since(hello.marker.seq) : undefined;
    if (missed === undefined || outgrown(this.source.counts, hello.maps).length > 0) return this.#snapshot();
    const problems = unwritable(hello.maps);
    if (problems.length > 0) {
      this.logger.info(
        { guest: this.record.id, problems },
        `guest ${this.record.id}: its maps cannot take the stream (${problems.join('; ')}); a snapshot follows`,
      );
      return this.#snapshot();
    }
    this.#target = new WriteTarget(hello.maps, hello.possibleCpus);
    this.#stream(hello.marker.seq, missed);
  }

  /** Sends OBJECT with capacities for the state now; the rest follows its LOADED. */
  #snapshot(): void {
    clearTimeout(this.#snapshotTimer);
    const wait = this.record.takeSnapshotToken(this.options.now());
    if (wait > 0) {
      this.#phase = 'waiting';
      this.#snapshotTimer = setTimeout(() => this.#snapshot(), wait);
      return;
    }
    const asked = guestCapacities(this.source.counts);
    let object: Buffer;
    try {
      object = encodeObject(asked, this.source.elf);
    } catch (error) {
      // The node's state is past what a guest may be sent (its maps over the protocol's limits): this
      // guest is dropped, and the others, whose publish() or timers got here too, go on.
      const reason = `no snapshot for it: ${error instanceof Error ? error.message : String(error)}`;
      this.logger.error({ guest: this.record.id }, `guest ${this.record.id}: ${reason}; closing its connection`);
      this.record.lastError = reason;
      this.#close(undefined);
      this.socket.destroy();
      return;
    }
    this.record.snapshots++;
    this.#phase = 'loading';
    this.#target = undefined;
    this.#behind = false;
    this.#asked = asked;
    this.#send(object, { kind: 'loaded' });
  }

  #loaded(error: number, message: string, maps: Hello['maps']): void {
    if (error !== 0) {
      this.#phase = 'failed';
      this.record.lastError = `the guest could not load the object: ${message || `error ${error}`}`;
      this.logger.error({ guest: this.record.id, error }, `guest ${this.record.id}: ${this.record.lastError}; it gets no stream`);
      this.#disarm();
      return;
    }
    const problems = [...unwritable(maps), ...undersized(this.#asked, maps)];
    if (problems.length > 0) {
      this.#phase = 'failed';
      this.record.lastError = `the guest's staged maps cannot take the stream: ${problems.join('; ')}`;
      this.logger.error({ guest: this.record.id }, `guest ${this.record.id}: ${this.record.lastError}; it gets no stream`);
      this.#disarm();
      return;
    }
    const staged = new WriteTarget(maps, this.#hello!.possibleCpus);
    const marker = { epoch: this.source.epoch, seq: this.source.log.seq };
    this.#phase = 'snapshot';
    this.#target = staged;
    this.#snapshotMarker = marker;
    this.#snapshotFailed = false;
    for (const groups of packGroups(snapshotGroups(this.source.state, marker, staged), staged)) {
      this.#send(encodeBatch({ ...marker, groups }, staged), { kind: 'ack', seq: marker.seq, purpose: 'snapshot' });
    }
  }

  #snapshotAcked(failure: string | undefined): void {
    if (failure) this.#snapshotFailed = true;
    if (this.#expected.some((expected) => expected.kind === 'ack' && expected.purpose === 'snapshot')) return;
    const marker = this.#snapshotMarker!;
    if (this.#snapshotFailed) {
      this.record.lastError = `snapshot ${marker.seq}: a write was refused`;
      return this.#snapshot();
    }
    this.#phase = 'committing';
    this.#send(encodeCommit(marker), { kind: 'ack', seq: marker.seq, purpose: 'commit' });
  }

  #committed(failure: string | undefined): void {
    const marker = this.#snapshotMarker!;
    if (failure) {
      this.record.lastError = `commit ${marker.seq}: ${failure}`;
      return this.#snapshot();
    }
    this.record.needsSnapshot = false;
    this.record.marker = marker;
    this.logger.info({ guest: this.record.id, seq: String(marker.seq) }, `guest ${this.record.id}: snapshot in`);
    const missed = this.source.log.since(marker.seq);
    if (missed === undefined) return this.#snapshot();
    this.#stream(marker.seq, missed);
  }

  #stream(from: bigint, missed: readonly LogEntry[]): void {
    this.#phase = 'streaming';
    this.#sentSeq = from;
    this.#behind = false;
    for (const entry of missed) this.publish(entry);
  }

  #sendSync(entry: LogEntry): void {
    const frames = entry.frames.get(this.#target!.layout) ?? this.#encodeSync(entry);
    frames.forEach((frame, index) => {
      this.#send(frame, { kind: 'ack', seq: entry.seq, purpose: 'sync', last: index === frames.length - 1 });
    });
    this.#sentSeq = entry.seq;
  }

  #encodeSync(entry: LogEntry): readonly Buffer[] {
    const target = this.#target!;
    const marker = { epoch: this.source.epoch, seq: entry.seq };
    const frames = packGroups(syncGroups(entry.writes, marker, target), target).map((groups: WriteGroup[], index) =>
      encodeBatch({ ...marker, waitForReaders: index === 0 && entry.waitForReaders, groups }, target),
    );
    entry.frames.set(target.layout, frames);
    return frames;
  }

  /** The guest took what was queued: the syncs it was not sent, or a snapshot if the log lost some. */
  #drained(): void {
    if (this.#closed || !this.#behind || this.#phase !== 'streaming') return;
    this.#behind = false;
    const missed = this.source.log.since(this.#sentSeq);
    if (missed === undefined) return this.#snapshot();
    for (const entry of missed) this.publish(entry);
  }

  /** A guest whose maps the node's state outgrew is moved into larger ones. */
  #outgrownMaps(): boolean {
    const full = outgrown(this.source.counts, this.#target!.maps);
    if (full.length === 0) return false;
    this.logger.info(
      { guest: this.record.id, maps: full },
      `guest ${this.record.id}: ${full.join(', ')} outgrown; a snapshot into larger maps follows`,
    );
    this.#snapshot();
    return true;
  }

  #send(frame: Buffer, expected: Expected): void {
    this.#expected.push(expected);
    if (this.#answerTimer === undefined) this.#arm(this.options.limits.answerTimeoutMs, 'no answer');
    this.socket.write(frame);
  }

  /** Serial: RESYNC now and again each interval, each with a new nonce, until its HELLO comes. */
  #resync(): void {
    const send = () => {
      this.#resyncNonce = randomBytes(8).readBigUInt64LE(0);
      this.socket.write(encodeResync(this.#resyncNonce));
    };
    send();
    this.#resyncTimer = setInterval(send, this.options.limits.resyncIntervalMs);
  }

  #arm(ms: number, what: string): void {
    clearTimeout(this.#answerTimer);
    this.#answerTimer = setTimeout(() => this.close(`${what} within ${ms} ms`), ms);
  }

  /** An answer came: the next one has its own time. */
  #rearm(): void {
    if (this.#expected.length > 0) this.#arm(this.options.limits.answerTimeoutMs, 'no answer');
    else this.#disarm();
  }

  #disarm(): void {
    clearTimeout(this.#answerTimer);
    this.#answerTimer = undefined;
  }

  #close(reason: string | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#resyncTimer);
    clearTimeout(this.#snapshotTimer);
    this.#disarm();
    if (reason === undefined) return;
    this.record.lastError = reason;
    this.logger.warn({ guest: this.record.id }, `guest ${this.record.id}: connection closed: ${reason}`);
  }
}
