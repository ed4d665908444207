// What the guest applier's tests share: an emulated guest with its host socket (GuestRig), the
// applier started in it, a snapshot sent the way a host would, and the guest's maps read back
// with bpftool through the guest's mount namespace.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MAP_CODECS, MAP_NAMES, type Marker } from '../../src/datapath/layout.js';
import type { DatapathState } from '../../src/datapath/state.js';
import {
  encodeBatch,
  encodeCommit,
  encodeObject,
  packGroups,
  WriteTarget,
  type Ack,
  type Hello,
  type Loaded,
  type ObjectMap,
  type WriteGroup,
} from '../../src/guest/wire.js';
import { EmulatedGuest } from '../lab/guest.js';
import { GuestHost, type GuestConnection } from '../lab/guest-host.js';
import { snapshotGroups } from '../lab/guest-writes.js';
import type { Lab } from '../lab/lab.js';

const execFileAsync = promisify(execFile);
const BUILD = fileURLToPath(new URL('../../', import.meta.url));

/** The production build, and the test build (ASan, UBSan, SOCKLB_APPLIER_EXIT_AT). */
export const APPLIER = join(BUILD, 'socklb-applier');
export const APPLIER_TEST = join(BUILD, 'socklb-applier-test');
export const ELF = readFileSync(join(BUILD, 'bpf', 'socklb.bpf.o'));
/** The exit status of an injected fault (applier/faults.h). */
export const FAULT_EXIT_STATUS = 86;
export const PIN_DIR = '/sys/fs/bpf/socklb';

/** A guest's capacities: small, as a host sizes them from its counts. */
export const CAPACITIES: ObjectMap[] = [
  { name: MAP_NAMES.frontends, maxEntries: 64 },
  { name: MAP_NAMES.backends, maxEntries: 64 },
  { name: MAP_NAMES.slots, maxEntries: 256 },
  { name: MAP_NAMES.stats, maxEntries: 65 },
  { name: MAP_NAMES.affinity, maxEntries: 64 },
  // Names stay on the host: the map exists (the object declares it), with room for nothing much.
  { name: MAP_NAMES.serviceNames, maxEntries: 1 },
  { name: MAP_NAMES.connections, maxEntries: 1024, keepPinned: true },
  { name: MAP_NAMES.sockets, maxEntries: 0, keepPinned: true },
];

export function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'SKIPPED: the guest applier tests need root (namespaces, cgroups, BPF); run `sudo make test`';
  if (!existsSync(APPLIER) || !existsSync(APPLIER_TEST))
    return 'SKIPPED: no build/socklb-applier or build/socklb-applier-test; run `make build`';
  return undefined;
}

export interface ApplierExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** An applier running in a guest; its stderr kept for failure messages. */
export class RunningApplier {
  readonly exited: Promise<ApplierExit>;
  #stderr = '';

  constructor(readonly child: ChildProcess) {
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      this.#stderr += text;
    });
    child.stdout?.resume();
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Waits for an injected fault's exit; anything else (a sanitizer's report, a crash) fails. */
  async faulted(timeoutMs = 20_000): Promise<void> {
    const exit = await Promise.race([
      this.exited,
      new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref()),
    ]);
    assert.deepEqual(
      exit,
      { code: FAULT_EXIT_STATUS, signal: null },
      `the applier exited otherwise than by its injected fault:\n${this.stderr}`,
    );
  }
}

export interface ConnectOptions {
  binary?: string;
  /** SOCKLB_APPLIER_EXIT_AT for the test build. */
  exitAt?: string;
  args?: string[];
}

/** One emulated guest and the host socket its applier connects to. */
export class GuestRig {
  applier: RunningApplier | undefined;

  private constructor(
    readonly guest: EmulatedGuest,
    readonly host: GuestHost,
  ) {}

  static async start(lab: Lab, name: string, directory: string): Promise<GuestRig> {
    const guest = await EmulatedGuest.start(lab, name);
    return new GuestRig(guest, await GuestHost.listen(join(directory, `${name}.sock`)));
  }

  /** Starts an applier in the guest; the previous one must be gone. */
  start(options: ConnectOptions = {}): RunningApplier {
    const env: Record<string, string> = { ASAN_OPTIONS: 'detect_leaks=0' };
    if (options.exitAt) env['SOCKLB_APPLIER_EXIT_AT'] = options.exitAt;
    const argv = [options.binary ?? APPLIER_TEST, '--connect', `unix:${this.host.path}`, ...(options.args ?? [])];
    this.applier = new RunningApplier(this.guest.spawn(argv, { env }));
    return this.applier;
  }

  /** Starts an applier and takes its connection. */
  async connect(options: ConnectOptions = {}): Promise<{ connection: GuestConnection; hello: Hello }> {
    const applier = this.start(options);
    try {
      return await this.host.accept();
    } catch (error) {
      await this.stopApplier();
      throw new Error(`the applier did not say HELLO:\n${applier.stderr}`, { cause: error });
    }
  }

  async stopApplier(): Promise<void> {
    if (this.applier) await this.guest.stop(this.applier.child);
    this.applier = undefined;
  }

  /** A path of the guest's pin directory, as the host reaches it. */
  pinPath(path = ''): string {
    return this.guest.hostPath(`${PIN_DIR}${path}`);
  }

  async close(): Promise<void> {
    await this.stopApplier();
    await this.guest.close();
    await this.host.close();
  }
}

export async function request<K extends 'loaded' | 'ack'>(
  connection: GuestConnection,
  frame: Buffer,
  kind: K,
): Promise<K extends 'loaded' ? Loaded : Ack> {
  const answer = await connection.request(frame);
  assert.equal(
    answer.kind,
    kind,
    `expected ${kind}, got ${JSON.stringify(answer, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`,
  );
  return answer as K extends 'loaded' ? Loaded : Ack;
}

/** OBJECT, answered by a successful LOADED: the staged maps' target. */
export async function loadObject(connection: GuestConnection, hello: Hello, capacities: ObjectMap[] = CAPACITIES): Promise<WriteTarget> {
  const loaded = await request(connection, encodeObject(capacities, ELF), 'loaded');
  assert.equal(loaded.error, 0, `LOADED: ${loaded.message}`);
  return new WriteTarget(loaded.maps, hello.possibleCpus);
}

/** Sends `groups` as the BATCHes of `marker`, each answered by a clean ACK. */
export async function sendGroups(connection: GuestConnection, target: WriteTarget, marker: Marker, groups: WriteGroup[]): Promise<void> {
  for (const run of packGroups(groups, target)) {
    const ack = await request(connection, encodeBatch({ ...marker, groups: run }, target), 'ack');
    assert.deepEqual({ error: ack.error, failed: ack.failed }, { error: 0, failed: undefined });
  }
}

/** A whole snapshot of `state`: OBJECT, the batches, COMMIT; returns the new live maps' target. */
export async function snapshot(connection: GuestConnection, hello: Hello, state: DatapathState, marker: Marker): Promise<WriteTarget> {
  const target = await loadObject(connection, hello);
  await sendGroups(connection, target, marker, snapshotGroups(state, marker, target));
  const ack = await request(connection, encodeCommit(marker), 'ack');
  assert.equal(ack.error, 0, 'COMMIT');
  return target;
}

/** The translating maps and the marker as bpftool reads them: entries as "key=value" hex, sorted. */
export type MapsDump = Record<string, string[]>;

const DUMPED_MAPS = [MAP_NAMES.frontends, MAP_NAMES.slots, MAP_NAMES.backends, MAP_NAMES.marker];

export async function dumpMaps(rig: GuestRig): Promise<MapsDump> {
  return dumpMapDirectory(rig.pinPath('/maps'));
}

/** The maps `names` pinned in `directory` (those that are), entries as sorted "key=value" hex. */
export async function dumpMapDirectory(directory: string, names: readonly string[] = DUMPED_MAPS): Promise<MapsDump> {
  const dump: MapsDump = {};
  for (const name of names) {
    const path = join(directory, name);
    if (!existsSync(path)) continue;
    const { stdout } = await execFileAsync('bpftool', ['-j', 'map', 'dump', 'pinned', path]);
    const entries = JSON.parse(stdout) as { key: string[]; value: string[] }[];
    const hexOf = (bytes: string[]) => bytes.map((byte) => byte.slice(2)).join('');
    dump[name] = entries.map((entry) => `${hexOf(entry.key)}=${hexOf(entry.value)}`).sort();
  }
  return dump;
}

/**
 * What a connect() racing with the writes relies on, in a dump: every frontend's slots below its
 * count exist, and every slot names a backend that exists.
 */
export function assertConsistent(dump: MapsDump): void {
  const entries = (name: string) =>
    (dump[name] ?? []).map((entry) => entry.split('=').map((hex) => Buffer.from(hex, 'hex')) as [Buffer, Buffer]);
  const backends = new Set(entries(MAP_NAMES.backends).map(([key]) => MAP_CODECS.backends.key.decode(key)));
  const slots = new Map(
    entries(MAP_NAMES.slots).map(([key, value]) => [
      JSON.stringify(MAP_CODECS.slots.key.decode(key)),
      MAP_CODECS.slots.value.decode(value).backendId,
    ]),
  );
  for (const [, value] of entries(MAP_NAMES.frontends)) {
    const { serviceId, backendCount } = MAP_CODECS.frontends.value.decode(value);
    for (let slot = 0; slot < backendCount; slot++) {
      const backendId = slots.get(JSON.stringify({ serviceId, slot }));
      assert.ok(backendId !== undefined, `service ${serviceId} counts ${backendCount} slots but lacks slot ${slot}`);
      assert.ok(backends.has(backendId), `slot ${slot} of service ${serviceId} names backend ${backendId}, which is missing`);
    }
  }
}

/** The marker a dump holds; 0/0 without one. */
export function dumpedMarker(dump: MapsDump): Marker {
  const [entry] = dump[MAP_NAMES.marker] ?? [];
  return entry === undefined ? { epoch: 0n, seq: 0n } : MAP_CODECS.marker.value.decode(Buffer.from(entry.split('=')[1] as string, 'hex'));
}

/** The ids of the BPF maps a process holds, from /proc/PID/fdinfo (as socklb's mapHolders finds them). */
export function heldMapIds(pid: number): number[] {
  return readdirSync(`/proc/${pid}/fdinfo`).flatMap((fd) => {
    const match = /^map_id:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
    return match ? [Number(match[1])] : [];
  });
}

/** bpftool's view of a pinned object: its id, and a link's program id. */
export async function pinnedIds(rig: GuestRig, kind: 'map' | 'link', path: string): Promise<{ id: number; prog_id?: number }> {
  const { stdout } = await execFileAsync('bpftool', ['-j', kind, 'show', 'pinned', rig.pinPath(path)]);
  return JSON.parse(stdout) as { id: number; prog_id?: number };
}
