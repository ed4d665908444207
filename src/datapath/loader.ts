// Loads the BPF object, pins its maps and cgroup links under one bpffs
// directory, and adopts what a previous agent pinned there:
//
//   <pin dir>/maps/socklb_fe_v3 ...          the maps (reused across restarts)
//   <pin dir>/links/<cgroup>/socklb_connect4  one link per program and cgroup
//   <pin dir>/links/sandboxes/...             the sandbox registry's (src/sandbox/pins.ts)
//
// Pinned links keep the programs attached while no agent runs. A new agent
// swaps its freshly loaded programs into the pinned links (an atomic
// replacement: no connect() ever runs without a program), so restarts and
// upgrades leave no gap.

import { closeSync, existsSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { relative } from 'node:path';
import { SocklbError, errnoName } from '../errors.js';
import { checkLayout, declaredMap, KernelMap, mapInfo } from './kernel-maps.js';
import { MAP_NAMES, SOCKET_MAPS, type SocketMapFds } from './layout.js';
import { lastErrno, libbpf, type BpfLinkHandle, type BpfObjectHandle, type BpfProgramHandle } from './libbpf.js';
import { CAPACITY_FLAGS, roleOfMap, type DatapathMaps, type MapRole } from './maps.js';
import { cgroup2Root } from './mounts.js';
import { KernelReaderFence } from './readers.js';
import { checkCgroup, checkPrivileges, ensureBpffs } from './system.js';

export const DEFAULT_PIN_DIRECTORY = '/sys/fs/bpf/socklb';

export interface PinLayout {
  maps: string;
  links: string;
}

/** Under <pin dir>/links, the sandboxes' links; never a cgroup's (those names start with %2F). */
export const SANDBOX_LINK_DIRECTORY = 'sandboxes';
/** A new link's pin before it replaces the old one (bpffs names take no dot); a crash can leave one, which the next attach removes. */
const STAGED_PIN_SUFFIX = '-staged';

export function pinLayout(pinDirectory: string): PinLayout {
  return { maps: `${pinDirectory}/maps`, links: `${pinDirectory}/links` };
}

/** What happened to one cgroup's attachment. */
export interface AttachResult {
  cgroup: string;
  action: 'attached' | 'replaced' | 'detached';
}

export class LoadedDatapath {
  private constructor(
    private readonly object: BpfObjectHandle,
    readonly maps: DatapathMaps,
    /** The maps the socket iterators read; owned by the object. */
    readonly socketMaps: SocketMapFds,
    private readonly programs: ReadonlyMap<string, BpfProgramHandle>,
    private readonly layout: PinLayout,
    /** What the agent waits on before it hands out an id a sync freed. */
    readonly readers: KernelReaderFence,
  ) {}

  /**
   * Opens and loads `objectPath`, reusing the maps pinned under
   * `pinDirectory` (created and pinned on first use).
   */
  static load(objectPath: string, pinDirectory: string, capacities: MapCapacities = DEFAULT_CAPACITIES): LoadedDatapath {
    checkPrivileges();
    ensureBpffs(pinDirectory);
    const layout = pinLayout(pinDirectory);
    mkdirSync(layout.maps, { recursive: true, mode: 0o700 });
    mkdirSync(layout.links, { recursive: true, mode: 0o700 });

    const object = libbpf.objectOpenFile(objectPath, null);
    if (!object) throw new SocklbError('SOCKLB_ERR_LIBBPF', `cannot open BPF object ${objectPath}: ${errnoName(lastErrno())}`);
    try {
      const pinnedBefore = readdirSync(layout.maps);
      for (let map = libbpf.objectNextMap(object, null); map; map = libbpf.objectNextMap(object, map)) {
        const name = libbpf.mapName(map);
        const size = sizeOf(name, capacities);
        if (size) libbpf.mapSetMaxEntries(map, size.capacity);
        checkPinnedLayout(layout, name, size);
        libbpf.mapSetPinPath(map, `${layout.maps}/${name}`);
      }
      // After every pinned map's own check, which names the map and sizes that differ.
      checkNotReplacingState(layout, pinnedBefore);
      const rc = libbpf.objectLoad(object);
      if (rc < 0) {
        throw new SocklbError(
          'SOCKLB_ERR_KERNEL',
          `cannot load ${objectPath}: ${errnoName(-rc)}; the kernel needs cgroup sock_addr hooks (connect, sendmsg, recvmsg, getpeername) and sock_release, socket-local storage, bpf_set_retval and bpf_skc_to_mptcp_sock (Linux 5.19 or later, with BTF); libbpf's log above says which part failed`,
        );
      }
      const maps = {} as Record<MapRole, KernelMap>;
      for (let map = libbpf.objectNextMap(object, null); map; map = libbpf.objectNextMap(object, map)) {
        const role = roleOfMap(libbpf.mapName(map));
        if (role) maps[role] = new KernelMap(libbpf.mapFd(map));
      }
      const programs = new Map<string, BpfProgramHandle>();
      for (let program = libbpf.objectNextProgram(object, null); program; program = libbpf.objectNextProgram(object, program)) {
        programs.set(libbpf.programName(program), program);
      }
      const socketMaps = {} as SocketMapFds;
      for (const role of SOCKET_MAPS) socketMaps[role] = libbpf.mapFd(declaredMap(object, objectPath, MAP_NAMES[role]));
      return new LoadedDatapath(object, maps, socketMaps, programs, layout, new KernelReaderFence());
    } catch (error) {
      libbpf.objectClose(object);
      throw error;
    }
  }

  /**
   * Makes the pinned attachments exactly `cgroups`: each gets every program
   * (an existing link has its program replaced in place), and cgroups
   * attached by an earlier run but no longer wanted are detached. Sandboxes are
   * not touched: their registry owns them.
   */
  attach(cgroups: readonly string[]): AttachResult[] {
    const root = cgroup2Root();
    const wanted = new Map(cgroups.map((cgroup) => [linkDirectoryName(root, cgroup), cgroup]));
    const results: AttachResult[] = [];
    for (const [name, cgroup] of wanted) {
      checkCgroup(cgroup);
      results.push({ cgroup, action: this.attachOne(cgroup, `${this.layout.links}/${name}`) });
    }
    for (const name of readdirSync(this.layout.links)) {
      if (wanted.has(name) || name === SANDBOX_LINK_DIRECTORY) continue;
      detachDirectory(`${this.layout.links}/${name}`);
      results.push({ cgroup: cgroupOfLinkDirectory(root, name), action: 'detached' });
    }
    return results;
  }

  /** Closes this process's handles; pinned maps and links stay. */
  close(): void {
    this.readers.close();
    libbpf.objectClose(this.object);
  }

  /**
   * Attaches every program to `cgroup`, pinning the links in `directory` (or replacing theirs),
   * and detaches the links of programs this build no longer has. Whatever fails, each program
   * stays attached by its old link or by its new one: a cgroup is never left without it.
   */
  attachOne(cgroup: string, directory: string): 'attached' | 'replaced' {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    let replaced = true;
    const cgroupFd = openSync(cgroup, 'r');
    try {
      for (const [name, program] of this.programs) {
        const pinPath = `${directory}/${name}`;
        if (existsSync(pinPath) && replaceProgram(pinPath, program)) continue;
        replaced = false;
        attachAndPin(program, cgroupFd, pinPath, `attach ${name} to cgroup ${cgroup}`);
      }
      for (const name of readdirSync(directory)) {
        if (!this.programs.has(name)) detachPin(`${directory}/${name}`);
      }
    } finally {
      closeSync(cgroupFd);
    }
    return replaced ? 'replaced' : 'attached';
  }
}

/** Detaches every pinned link and removes every pin under `pinDirectory`. */
export function cleanupPins(pinDirectory: string): { links: number; maps: number } {
  const layout = pinLayout(pinDirectory);
  let links = 0;
  let maps = 0;
  if (existsSync(layout.links)) {
    for (const name of readdirSync(layout.links)) links += detachDirectory(`${layout.links}/${name}`);
  }
  if (existsSync(layout.maps)) {
    for (const name of readdirSync(layout.maps)) {
      rmSync(`${layout.maps}/${name}`);
      maps++;
    }
  }
  for (const directory of [layout.links, layout.maps, pinDirectory]) {
    if (existsSync(directory)) rmdirSync(directory);
  }
  return { links, maps };
}

/** The cgroups the pinned --cgroup links are attached to (sandboxes: src/sandbox/pins.ts). */
export function attachedCgroups(pinDirectory: string): string[] {
  return pinnedLinkDirectories(pinDirectory).map(({ cgroup }) => cgroup);
}

/** Each attached cgroup with the directory of its links (one pin per program, named after it). */
export function pinnedLinkDirectories(pinDirectory: string): { cgroup: string; directory: string }[] {
  const { links } = pinLayout(pinDirectory);
  if (!existsSync(links)) return [];
  const root = cgroup2Root();
  return readdirSync(links)
    .filter((name) => name !== SANDBOX_LINK_DIRECTORY)
    .map((name) => ({ cgroup: cgroupOfLinkDirectory(root, name), directory: `${links}/${name}` }));
}

// Link directories are named after the cgroup's path below the cgroup v2 root,
// so that the pins say what they attach even to someone without socklb.
export function linkDirectoryName(root: string, cgroup: string): string {
  return encodeURIComponent(`/${relative(root, cgroup)}`);
}

export function cgroupOfLinkDirectory(root: string, name: string): string {
  const below = decodeURIComponent(name);
  return below === '/' ? root : `${root}${below}`;
}

/**
 * Attaches `program` by a new link pinned under a temporary name, then renamed over `pinPath`:
 * an old link pinned there (dead, or one whose update failed) is let go only once the new one is
 * in place. While both are attached the second program finds a backend's address, which is no
 * Service's, and leaves it alone.
 */
function attachAndPin(program: BpfProgramHandle, cgroupFd: number, pinPath: string, what: string): void {
  const staged = `${pinPath}${STAGED_PIN_SUFFIX}`;
  rmSync(staged, { force: true });
  const link = libbpf.programAttachCgroup(program, cgroupFd);
  if (!link) throw new SocklbError('SOCKLB_ERR_CGROUP', `${what}: ${errnoName(lastErrno())}`);
  const rc = libbpf.linkPin(link, staged);
  libbpf.linkDestroy(link);
  if (rc < 0) throw new SocklbError('SOCKLB_ERR_LIBBPF', `pin link ${staged}: ${errnoName(-rc)}`);
  try {
    renameSync(staged, pinPath);
  } catch (error) {
    rmSync(staged, { force: true });
    throw new SocklbError('SOCKLB_ERR_LIBBPF', `pin link ${pinPath}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

/** Swaps `program` into the pinned link; false when the link is gone or dead (its cgroup was removed), or the swap failed. */
function replaceProgram(pinPath: string, program: BpfProgramHandle): boolean {
  const link = libbpf.linkOpen(pinPath);
  if (!link) return false;
  const rc = libbpf.linkUpdateProgram(link, program);
  libbpf.linkDestroy(link);
  return rc === 0;
}

/** Detaches and unpins every link in `directory` and below, then removes it; returns how many. */
export function detachDirectory(directory: string): number {
  let detached = 0;
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const pinPath = `${directory}/${entry.name}`;
    if (entry.isDirectory()) {
      detached += detachDirectory(pinPath);
      continue;
    }
    detachPin(pinPath);
    detached++;
  }
  rmdirSync(directory);
  return detached;
}

function detachPin(pinPath: string): void {
  const link: BpfLinkHandle | null = libbpf.linkOpen(pinPath);
  if (link) {
    // Detach even if some other process still holds the link open.
    libbpf.linkDetach(link);
    libbpf.linkDestroy(link);
  }
  rmSync(pinPath);
}

/**
 * Refuses a pinned map of another layout, or of another size than asked,
 * before libbpf would try to reuse it (and fail without saying why).
 */
function checkPinnedLayout(layout: PinLayout, mapName: string, size: MapSize | undefined): void {
  const role = roleOfMap(mapName);
  const path = `${layout.maps}/${mapName}`;
  if ((!role && !size) || !existsSync(path)) return;
  const fd = libbpf.objGet(path);
  if (fd < 0) return;
  try {
    const info = mapInfo(fd);
    if (role) checkLayout(role, info, path);
    if (size && info.maxEntries !== size.capacity) {
      throw new SocklbError(
        'SOCKLB_ERR_MAP_LAYOUT',
        `${path} holds up to ${info.maxEntries} entries and ${size.flag} asks for ${size.capacity}: a pinned map cannot be resized; run with ${size.flag} ${info.maxEntries}, or \`socklb cleanup\` first (the datapath stops translating until the agent is back)`,
      );
    }
  } finally {
    closeSync(fd);
  }
}

/** The maps whose entries translate: a connect() finds nothing to translate when one is empty. */
const TRANSLATING_MAPS: readonly string[] = [MAP_NAMES.frontends, MAP_NAMES.slots, MAP_NAMES.backends];

/**
 * Refuses to create a translating map beside the maps of another build (one whose layout, so
 * whose map name, differs): the pinned links would run this build's programs on an empty map from
 * the swap to the first sync, which can be seconds, or longer when the API server is out of
 * reach; `socklb cleanup` first makes that pause explicit, and as short as this agent's start.
 */
function checkNotReplacingState(layout: PinLayout, pinnedBefore: readonly string[]): void {
  const mapName = pinnedBefore.length === 0 ? undefined : TRANSLATING_MAPS.find((name) => !pinnedBefore.includes(name));
  if (mapName === undefined) return;
  const ours: readonly string[] = Object.values(MAP_NAMES);
  const why = pinnedBefore.every((name) => ours.includes(name))
    ? 'an incomplete set of this build\'s pins (a cleanup that stopped halfway?)'
    : 'they were pinned by a build whose layout differs';
  throw new SocklbError(
    'SOCKLB_ERR_MAP_LAYOUT',
    `${layout.maps}/${mapName} is not pinned beside ${pinnedBefore.join(', ')}: ${why}, and starting with an empty ${mapName} would stop translation until the first sync; run \`socklb cleanup\` (with the old build, if another pinned them) first (the datapath stops translating until this agent is up)`,
  );
}

/** How many entries each sized map holds. */
export interface MapCapacities {
  frontends: number;
  backends: number;
  slots: number;
  /** TCP connections whose getpeername() is restored, open at once (socklb_conn_v1). */
  connections: number;
}

export const DEFAULT_CAPACITIES: MapCapacities = { frontends: 65536, backends: 65536, slots: 262144, connections: 131072 };

/** A map's entries, and the `socklb run` flag that sets them. */
interface MapSize {
  capacity: number;
  flag: string;
}

// Every frontend has one service name, and one set of counters at the index
// of its service id (ids start at 1).
function sizeOf(mapName: string, capacities: MapCapacities): MapSize | undefined {
  if (mapName === MAP_NAMES.connections) return { capacity: capacities.connections, flag: '--max-connections' };
  const role = roleOfMap(mapName);
  if (role === undefined) return undefined;
  const capacity = role === 'stats' ? capacities.frontends + 1 : capacities[role === 'serviceNames' ? 'frontends' : role];
  return { capacity, flag: CAPACITY_FLAGS[role] };
}
