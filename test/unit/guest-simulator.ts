// An in-memory guest for the host's tests: it speaks the guest stream as socklb-applier does
// (docs/guest-protocol.md) over a real Unix socket to the hub, and applies the writes to maps held
// in memory, with the kernel's refusals that matter (a full hash map, an index past an array). Its
// link can be cut after any byte the host sends, or stop reading, so that tests can stop the
// stream at every point of a batch or a snapshot without root or a VM. What it holds is compared
// with the node's maps (nodeContents), entry for entry.

import { connect, type Socket } from 'node:net';
import { pino, type Logger } from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { BYPASS_MAP_CODECS, MAP_CODECS, MAP_NAMES, traceSwitchCodec, type Marker } from '../../src/datapath/layout.js';
import type { DatapathMaps } from '../../src/datapath/maps.js';
import { InstantReaderFence, memoryMaps } from '../../src/datapath/memory-maps.js';
import { FrameReader } from '../../src/guest/frame-reader.js';
import { GuestHub, type GuestHubOptions } from '../../src/guest/hub.js';
import { DEFAULT_SESSION_LIMITS, type SessionLimits } from '../../src/guest/session.js';
import { FRAME_TYPES, LIMITS, type MapDescriptor } from '../../src/guest/wire.js';
import type { SourceState } from '../../src/model/source-state.js';
import type { EndpointSlice, Service } from '../../src/model/types.js';
import { ManualSource } from './agent-fixtures.js';
import { ackPayload, guestFrame, helloPayload, loadedPayload } from './guest-wire-fixtures.js';
import { modelEndpoint, modelService, NODE } from './model-fixtures.js';

const BPF_MAP_TYPE_HASH = 1;
const BPF_MAP_TYPE_ARRAY = 2;
const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
const BPF_MAP_TYPE_LRU_HASH = 9;
const BPF_MAP_TYPE_LPM_TRIE = 11;
const BPF_MAP_TYPE_SK_STORAGE = 24;
const BPF_MAP_TYPE_RINGBUF = 27;
const BPF_F_NO_PREALLOC = 1;
const E2BIG = 7;
const EINVAL = 22;
const ENOENT = 2;
const ESTALE = 116;
const NO_WRITE = 0xffffffff;

/** The maps of the node's BPF object as bpf_obj_get_info_by_fd describes them (bpf/socklb.bpf.c). */
export const OBJECT_MAPS: readonly Omit<MapDescriptor, 'maxEntries'>[] = [
  { name: MAP_NAMES.frontends, type: BPF_MAP_TYPE_HASH, keySize: 20, valueSize: MAP_CODECS.frontends.value.size, flags: 0 },
  { name: MAP_NAMES.slots, type: BPF_MAP_TYPE_HASH, keySize: 8, valueSize: MAP_CODECS.slots.value.size, flags: 0 },
  { name: MAP_NAMES.backends, type: BPF_MAP_TYPE_HASH, keySize: 4, valueSize: MAP_CODECS.backends.value.size, flags: 0 },
  { name: MAP_NAMES.serviceNames, type: BPF_MAP_TYPE_HASH, keySize: 4, valueSize: MAP_CODECS.serviceNames.value.size, flags: 1 },
  { name: MAP_NAMES.stats, type: BPF_MAP_TYPE_PERCPU_ARRAY, keySize: 4, valueSize: MAP_CODECS.stats.value.size, flags: 0 },
  { name: MAP_NAMES.marker, type: BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: MAP_CODECS.marker.value.size, flags: 0 },
  { name: MAP_NAMES.clusterIPs, type: BPF_MAP_TYPE_HASH, keySize: 16, valueSize: 4, flags: BPF_F_NO_PREALLOC },
  { name: MAP_NAMES.serviceRanges, type: BPF_MAP_TYPE_LPM_TRIE, keySize: 20, valueSize: 4, flags: BPF_F_NO_PREALLOC },
  { name: MAP_NAMES.connections, type: BPF_MAP_TYPE_LRU_HASH, keySize: 8, valueSize: 40, flags: 0 },
  { name: MAP_NAMES.affinity, type: BPF_MAP_TYPE_LRU_HASH, keySize: 16, valueSize: 32, flags: 0 },
  { name: MAP_NAMES.sockets, type: BPF_MAP_TYPE_SK_STORAGE, keySize: 4, valueSize: 168, flags: BPF_F_NO_PREALLOC },
  { name: MAP_NAMES.traceSwitch, type: BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: traceSwitchCodec.size, flags: 0 },
  { name: MAP_NAMES.traceRing, type: BPF_MAP_TYPE_RINGBUF, keySize: 0, valueSize: 0, flags: 0 },
  { name: MAP_NAMES.config, type: BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: BYPASS_MAP_CODECS.config.value.size, flags: 0 },
  { name: MAP_NAMES.bypass, type: BPF_MAP_TYPE_HASH, keySize: 8, valueSize: BYPASS_MAP_CODECS.bypass.value.size, flags: BPF_F_NO_PREALLOC },
  {
    name: MAP_NAMES.exclusions,
    type: BPF_MAP_TYPE_HASH,
    keySize: BYPASS_MAP_CODECS.exclusions.key.size,
    valueSize: 4,
    flags: BPF_F_NO_PREALLOC,
  },
];
/** Capacities an OBJECT leaves as the object declares them. */
const DEFAULT_MAX_ENTRIES: Record<string, number> = { [MAP_NAMES.marker]: 1, [MAP_NAMES.serviceRanges]: 16 };

/** The maps the node and its guests hold alike (the guests get no service names; counters are their own). */
export const COMPARED_ROLES = ['frontends', 'slots', 'backends', 'clusterIPs', 'serviceRanges'] as const;

interface SimMap {
  descriptor: MapDescriptor;
  /** hex key -> hex value */
  entries: Map<string, string>;
}

export type SimMaps = Map<string, SimMap>;

/** The node's maps that guests hold, as name -> hex key -> hex value. */
export function nodeContents(maps: DatapathMaps): Map<string, Map<string, string>> {
  return new Map(
    COMPARED_ROLES.map((role) => [
      MAP_NAMES[role],
      new Map([...maps[role].entries()].map(([key, value]) => [key.toString('hex'), value.toString('hex')])),
    ]),
  );
}

export interface LinkOptions {
  /** Bytes from the host after which the link is cut (the frame they end in is lost); none: never. */
  cutAfter?: number;
  /** Stop reading at once, until resume(). */
  paused?: boolean;
}

/** One connection of the simulated applier: what it read, and the link's faults. */
export class SimLink {
  readonly #socket: Socket;
  readonly #reader = new FrameReader({ maxPayload: LIMITS.objectPayload });
  #cutAfter: number | undefined;
  /** Bytes the host sent that this link took. */
  received = 0;
  framesReceived = 0;
  closed = false;
  /** Why the guest dropped the connection, when a host frame was malformed. */
  malformed: string | undefined;

  constructor(
    private readonly guest: GuestSimulator,
    path: string,
    options: LinkOptions,
  ) {
    this.#cutAfter = options.cutAfter;
    this.#socket = connect(path);
    if (options.paused) this.#socket.pause();
    this.#socket.on('connect', () => this.#socket.write(guestFrame(FRAME_TYPES.hello, guest.hello())));
    this.#socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    this.#socket.on('error', () => undefined);
    this.#socket.on('close', () => {
      this.closed = true;
      guest.staged = undefined;
    });
  }

  /** Cuts the link after `bytes` more bytes from the host. */
  cutAfter(bytes: number): void {
    this.#cutAfter = this.received + bytes;
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  /** Sends raw bytes as if from the guest: for hostile frames. */
  send(bytes: Buffer): void {
    if (!this.closed) this.#socket.write(bytes);
  }

  close(): void {
    this.#socket.destroy();
  }

  #receive(chunk: Buffer): void {
    if (this.closed) return;
    let taken = chunk;
    if (this.#cutAfter !== undefined) taken = chunk.subarray(0, Math.max(0, this.#cutAfter - this.received));
    this.received += taken.length;
    try {
      for (const frame of this.#reader.push(taken)) {
        this.framesReceived++;
        const answer = this.guest.handle(frame.type, frame.payload);
        if (answer) this.#socket.write(answer);
      }
    } catch (error) {
      // As the applier: a malformed frame is logged and closes the connection.
      this.malformed = (error as Error).message;
      this.closed = true;
      this.#socket.destroy();
      return;
    }
    if (this.#cutAfter !== undefined && this.received >= this.#cutAfter) {
      this.closed = true;
      this.#socket.destroy();
    }
  }
}

/** socklb-applier's state: its live maps (its pins) and, within a connection, the staged object. */
export class GuestSimulator {
  live: SimMaps | undefined;
  staged: SimMaps | undefined;
  #target: SimMaps | undefined;
  batches = 0;
  /** What the guest lists in HELLO and LOADED instead of its maps: a broken or hostile applier. */
  lies: { hello?: (maps: MapDescriptor[]) => MapDescriptor[]; loaded?: (maps: MapDescriptor[]) => MapDescriptor[] } = {};

  constructor(readonly possibleCpus = 2) {}

  /** Connects to the host at `path`, says HELLO and serves the host's frames. */
  connect(path: string, options: LinkOptions = {}): SimLink {
    this.staged = undefined;
    this.#target = this.live;
    return new SimLink(this, path, options);
  }

  /** The marker the live maps hold, as HELLO reports it. */
  get marker(): Marker {
    return markerOf(this.live);
  }

  /** Rewrites the live marker, as a guest restored from an older image (or lying) would report it. */
  setMarker(marker: Marker): void {
    this.live?.get(MAP_NAMES.marker)?.entries.set(Buffer.alloc(4).toString('hex'), MAP_CODECS.marker.value.encode(marker).toString('hex'));
  }

  hello(): Buffer {
    const live = this.live ? descriptorsOf(this.live) : [];
    const maps = this.lies.hello?.(live) ?? live;
    return helloPayload({ marker: this.marker, maps, cpus: this.possibleCpus });
  }

  /** The live maps the node's guests hold alike, as nodeContents gives the node's. */
  contents(): Map<string, Map<string, string>> {
    return new Map(COMPARED_ROLES.map((role) => [MAP_NAMES[role], new Map(this.live?.get(MAP_NAMES[role])?.entries ?? [])]));
  }

  /** The answer to one host frame, if any; throws on what the applier would call malformed. */
  handle(type: number, payload: Buffer): Buffer | undefined {
    switch (type) {
      case FRAME_TYPES.object:
        return this.#object(payload);
      case FRAME_TYPES.batch:
        this.batches++;
        return this.#batch(payload);
      case FRAME_TYPES.commit:
        return this.#commit(payload);
      default:
        throw new Error(`host frame type ${type}: not OBJECT, BATCH or COMMIT`);
    }
  }

  #object(payload: Buffer): Buffer {
    const count = payload.readUInt16LE(0);
    const capacities = new Map<string, { maxEntries: number; keepPinned: boolean }>();
    for (let index = 0; index < count; index++) {
      const offset = 4 + index * 24;
      const name = payload
        .subarray(offset, offset + 16)
        .toString('latin1')
        .replace(/\0+$/, '');
      capacities.set(name, { maxEntries: payload.readUInt32LE(offset + 16), keepPinned: (payload.readUInt32LE(offset + 20) & 1) === 1 });
    }
    for (const name of capacities.keys()) {
      if (!OBJECT_MAPS.some((map) => map.name === name)) {
        this.staged = undefined;
        this.#target = undefined;
        return guestFrame(FRAME_TYPES.loaded, loadedPayload(-ENOENT, `map ${name}: not in the object`, []));
      }
    }
    const staged: SimMaps = new Map();
    for (const map of OBJECT_MAPS) {
      const asked = capacities.get(map.name);
      const live = this.live?.get(map.name);
      if (asked?.keepPinned && live) staged.set(map.name, live);
      else
        staged.set(map.name, {
          descriptor: { ...map, maxEntries: asked?.maxEntries ?? DEFAULT_MAX_ENTRIES[map.name] ?? 64 },
          entries: new Map(),
        });
    }
    this.staged = staged;
    this.#target = staged;
    const maps = descriptorsOf(staged);
    return guestFrame(FRAME_TYPES.loaded, loadedPayload(0, '', this.lies.loaded?.(maps) ?? maps));
  }

  #batch(payload: Buffer): Buffer {
    const epoch = payload.readBigUInt64LE(0);
    const seq = payload.readBigUInt64LE(8);
    const target = this.#target;
    if (target === undefined) return ack(epoch, seq, -ENOENT);
    const maps = descriptorsOf(target);
    const groupCount = payload.readUInt32LE(20);
    let offset = 24;
    let failure: { error: number; group: number; write: number } | undefined;
    for (let group = 0; group < groupCount; group++) {
      const onlyIfClean = (payload.readUInt16LE(offset) & 1) === 1;
      const writeCount = payload.readUInt32LE(offset + 4);
      offset += 8;
      let stopped = onlyIfClean && failure !== undefined;
      for (let write = 0; write < writeCount; write++) {
        const op = payload.readUInt8(offset);
        const descriptor = maps[payload.readUInt8(offset + 1)];
        if (descriptor === undefined)
          throw new Error(`BATCH ${seq} group ${group} write ${write}: no map ${payload.readUInt8(offset + 1)}`);
        const key = payload.subarray(offset + 2, offset + 2 + descriptor.keySize);
        offset += 2 + descriptor.keySize;
        const size = updateSize(descriptor, this.possibleCpus);
        const value = op === 1 ? payload.subarray(offset, offset + size) : Buffer.alloc(size);
        if (op === 1) offset += size;
        if (stopped) continue;
        const error = applyWrite(target.get(descriptor.name)!, op, key, value);
        if (error !== 0) {
          stopped = true;
          failure ??= { error, group, write };
        }
      }
    }
    if (offset !== payload.length) throw new Error(`BATCH ${seq}: ${payload.length - offset} bytes past its writes`);
    return ack(epoch, seq, failure?.error ?? 0, failure);
  }

  #commit(payload: Buffer): Buffer {
    const marker = { epoch: payload.readBigUInt64LE(0), seq: payload.readBigUInt64LE(8) };
    if (this.staged === undefined) return ack(marker.epoch, marker.seq, -ENOENT);
    const held = markerOf(this.staged);
    if (held.epoch !== marker.epoch || held.seq !== marker.seq) return ack(marker.epoch, marker.seq, -ESTALE);
    this.live = this.staged;
    this.staged = undefined;
    this.#target = this.live;
    return ack(marker.epoch, marker.seq, 0);
  }
}

/** A copy of a guest's maps: its pins as they were, to be put back in `live`. */
export function copyMaps(maps: SimMaps | undefined): SimMaps | undefined {
  return maps && new Map([...maps].map(([name, map]) => [name, { descriptor: map.descriptor, entries: new Map(map.entries) }]));
}

function applyWrite(map: SimMap, op: number, key: Buffer, value: Buffer): number {
  const { type, maxEntries } = map.descriptor;
  const id = key.toString('hex');
  const isArray = type === BPF_MAP_TYPE_ARRAY || type === BPF_MAP_TYPE_PERCPU_ARRAY;
  if (isArray && key.readUInt32LE(0) >= maxEntries) return -E2BIG;
  if (op === 2) {
    if (isArray) return -EINVAL;
    map.entries.delete(id);
    return 0;
  }
  if (!isArray && !map.entries.has(id) && map.entries.size >= maxEntries) return -E2BIG;
  map.entries.set(id, value.toString('hex'));
  return 0;
}

function updateSize(map: MapDescriptor, cpus: number): number {
  return map.type === BPF_MAP_TYPE_PERCPU_ARRAY ? Math.ceil(map.valueSize / 8) * 8 * cpus : map.valueSize;
}

function descriptorsOf(maps: SimMaps): MapDescriptor[] {
  return [...maps.values()].map((map) => map.descriptor).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function markerOf(maps: SimMaps | undefined): Marker {
  const value = maps?.get(MAP_NAMES.marker)?.entries.get(Buffer.alloc(4).toString('hex'));
  return value === undefined ? { epoch: 0n, seq: 0n } : MAP_CODECS.marker.value.decode(Buffer.from(value, 'hex'));
}

function ack(epoch: bigint, seq: bigint, error: number, failed?: { group: number; write: number }): Buffer {
  return guestFrame(FRAME_TYPES.ack, ackPayload(epoch, seq, error, failed?.group ?? NO_WRITE, failed?.write ?? NO_WRITE));
}

/** A node as the host's tests need it: the real agent on in-memory maps, serving guests through the real hub. */
export class SimNode {
  private constructor(
    readonly maps: DatapathMaps,
    readonly source: ManualSource,
    readonly agent: Agent,
    readonly hub: GuestHub,
  ) {}

  /** An agent over `maps` (a new run over the maps an earlier one left, when given) and its hub. */
  static async start(
    pinDirectory: string,
    state: SourceState,
    options: {
      maps?: DatapathMaps;
      limits?: Partial<SessionLimits>;
      logOperations?: number;
      logger?: Logger;
    } & Pick<GuestHubOptions, 'listenVsock' | 'vsockPort' | 'now'> = {},
  ): Promise<SimNode> {
    const maps = options.maps ?? memoryMaps();
    const source = new ManualSource(state);
    const logger = options.logger ?? pino({ level: 'silent' });
    const hub: GuestHub = new GuestHub({
      pinDirectory,
      elf: Buffer.from('not an ELF: the simulator loads nothing'),
      state: () => agent.datapath,
      logger,
      limits: { ...TEST_LIMITS, ...options.limits },
      logOperations: options.logOperations,
      listenVsock: options.listenVsock,
      vsockPort: options.vsockPort,
      now: options.now,
    });
    const agent: Agent = new Agent({ source, maps, readers: new InstantReaderFence(), guests: hub, logger, node: NODE });
    await agent.start();
    await hub.adopt();
    return new SimNode(maps, source, agent, hub);
  }

  /** The marker of a guest up to date with this node. */
  get marker(): Marker {
    return { epoch: this.hub.epoch, seq: this.hub.log.seq };
  }

  /** Resolves once `guest` holds what this node's maps hold, its marker this node's last sync. */
  async caughtUp(guest: GuestSimulator, what: string, timeoutMs?: number): Promise<void> {
    await until(() => sameMarker(guest.marker, this.marker) && sameContents(guest.contents(), nodeContents(this.maps)), what, timeoutMs);
  }

  async stop(): Promise<void> {
    await this.hub.close();
    await this.agent.stop();
  }
}

/** Snapshots as often as a test needs; the rest as in production. */
export const TEST_LIMITS: SessionLimits = { ...DEFAULT_SESSION_LIMITS, snapshotBurst: 1_000_000, snapshotIntervalMs: 1 };

export function sameMarker(a: Marker, b: Marker): boolean {
  return a.epoch === b.epoch && a.seq === b.seq;
}

export function sameContents(a: Map<string, Map<string, string>>, b: Map<string, Map<string, string>>): boolean {
  for (const [name, entries] of b) {
    const other = a.get(name);
    if (other?.size !== entries.size) return false;
    for (const [key, value] of entries) if (other.get(key) !== value) return false;
  }
  return a.size === b.size;
}

/** Polls `condition` until it holds; fails naming `what` after `timeoutMs`. */
export async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** ClusterIP Services `web-0`..: each at 10.96.<i / 250>.<i % 250 + 1>:80, backed by its `endpoints(i)` on 8080. */
export function servicesState(count: number, endpoints: (index: number) => string[]): SourceState {
  const services = new Map<string, Service>();
  const slices = new Map<string, EndpointSlice>();
  for (let index = 0; index < count; index++) {
    const name = `web-${index}`;
    services.set(`default/${name}`, modelService({ name, clusterIPs: [`10.96.${Math.floor(index / 250)}.${(index % 250) + 1}`] }));
    slices.set(`default/${name}-1`, {
      namespace: 'default',
      name: `${name}-1`,
      serviceName: name,
      addressType: 'IPv4',
      ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
      endpoints: endpoints(index).map((address) => modelEndpoint(address)),
    });
  }
  return { services, ignoredServices: new Set(), slices, problems: [] };
}
