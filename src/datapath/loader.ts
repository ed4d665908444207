// Loads the BPF object with its maps pinned under a pin directory (src/pins/layout.ts), reusing
// the maps a previous agent pinned there, and attaches its programs to cgroups by pinned links
// (src/pins/links.ts), swapping them into the links a previous agent pinned.

import { closeSync, existsSync } from 'node:fs';
import { SocklbError, errnoName } from '../errors.js';
import { declaredMap, mapInfo } from '../kernel/bpf-objects.js';
import { libbpf, type BpfObjectHandle, type BpfProgramHandle } from '../kernel/libbpf.js';
import { lastErrno } from '../kernel/libc.js';
import { cgroup2Root } from '../kernel/mounts.js';
import { checkCgroup, checkPrivileges } from '../kernel/system.js';
import { cgroupLinkDirectory, pinnedLinkDirectories, pinnedMapNames, pinnedMapPath, preparePinDirectory } from '../pins/layout.js';
import { detachDirectory, pinProgramLinks } from '../pins/links.js';
import type { BypassMaps } from './bypass.js';
import { checkLayout, KernelMap } from './kernel-maps.js';
import { MAP_NAMES, SOCKET_MAPS, type SocketMapFds } from './layout.js';
import {
  DEFAULT_CAPACITIES,
  mapCapacity,
  roleOfMap,
  type DatapathMaps,
  type MapCapacities,
  type MapCapacity,
  type MapRole,
} from './maps.js';
import { KernelReaderFence } from './readers.js';
import { TraceRing } from './trace-ring.js';

/** What happened to one cgroup's attachment. */
export interface AttachResult {
  cgroup: string;
  action: 'attached' | 'replaced' | 'detached';
}

/** The LRU maps the programs fill and the agent never writes. */
export interface ProgramMaps {
  connections: KernelMap;
  affinity: KernelMap;
}

export class LoadedDatapath {
  private constructor(
    private readonly object: BpfObjectHandle,
    readonly maps: DatapathMaps,
    /** The maps the socket iterators read; owned by the object. */
    readonly socketMaps: SocketMapFds,
    /** The maps only the programs write, for their fill. */
    readonly programMaps: ProgramMaps,
    private readonly programs: ReadonlyMap<string, BpfProgramHandle>,
    private readonly pinDirectory: string,
    /** What the agent waits on before it hands out an id a sync freed. */
    readonly readers: KernelReaderFence,
    /** `socklb trace`'s switch and ring. */
    readonly trace: TraceRing,
    /** What is left untranslated (src/datapath/bypass.ts). */
    readonly bypassMaps: BypassMaps,
  ) {}

  /**
   * Opens and loads `objectPath`, reusing the maps pinned under
   * `pinDirectory` (created and pinned on first use).
   */
  static load(objectPath: string, pinDirectory: string, capacities: MapCapacities = DEFAULT_CAPACITIES): LoadedDatapath {
    checkPrivileges();
    preparePinDirectory(pinDirectory);

    const object = libbpf.objectOpenFile(objectPath, null);
    if (!object) throw new SocklbError('SOCKLB_ERR_LIBBPF', `cannot open BPF object ${objectPath}: ${errnoName(lastErrno())}`);
    try {
      const pinnedBefore = pinnedMapNames(pinDirectory);
      for (let map = libbpf.objectNextMap(object, null); map; map = libbpf.objectNextMap(object, map)) {
        const name = libbpf.mapName(map);
        const size = mapCapacity(name, capacities);
        if (size) libbpf.mapSetMaxEntries(map, size.capacity);
        checkPinnedLayout(pinnedMapPath(pinDirectory, name), name, size);
        libbpf.mapSetPinPath(map, pinnedMapPath(pinDirectory, name));
      }
      // After every pinned map's own check, which names the map and sizes that differ.
      checkNotReplacingState(pinDirectory, pinnedBefore);
      const rc = libbpf.objectLoad(object);
      if (rc < 0) {
        throw new SocklbError(
          'SOCKLB_ERR_KERNEL',
          `cannot load ${objectPath}: ${errnoName(-rc)}; ` +
            `the kernel needs cgroup sock_addr hooks (connect, sendmsg, recvmsg, getpeername) and sock_release, socket-local storage, ` +
            `bpf_set_retval and bpf_skc_to_mptcp_sock (Linux 5.19 or later, with BTF); libbpf's log above says which part failed`,
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
      const mapFd = (name: string) => libbpf.mapFd(declaredMap(object, objectPath, name));
      const socketMaps = {} as SocketMapFds;
      for (const role of SOCKET_MAPS) socketMaps[role] = mapFd(MAP_NAMES[role]);
      const programMaps = {
        connections: new KernelMap(socketMaps.connections),
        affinity: new KernelMap(mapFd(MAP_NAMES.affinity)),
      };
      const trace = new TraceRing(new KernelMap(mapFd(MAP_NAMES.traceSwitch)), mapFd(MAP_NAMES.traceRing));
      const bypassMaps = {
        config: new KernelMap(mapFd(MAP_NAMES.config)),
        bypass: new KernelMap(mapFd(MAP_NAMES.bypass)),
        exclusions: new KernelMap(mapFd(MAP_NAMES.exclusions)),
      };
      return new LoadedDatapath(object, maps, socketMaps, programMaps, programs, pinDirectory, new KernelReaderFence(), trace, bypassMaps);
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
    const wanted = new Map(cgroups.map((cgroup) => [cgroupLinkDirectory(this.pinDirectory, root, cgroup), cgroup]));
    const results: AttachResult[] = [];
    for (const [directory, cgroup] of wanted) {
      checkCgroup(cgroup, `--cgroup ${cgroup}`);
      results.push({ cgroup, action: this.attachOne(cgroup, directory) });
    }
    for (const { cgroup, directory } of pinnedLinkDirectories(this.pinDirectory, root)) {
      if (wanted.has(directory)) continue;
      detachDirectory(directory);
      results.push({ cgroup, action: 'detached' });
    }
    return results;
  }

  /** Closes this process's handles; pinned maps and links stay. */
  close(): void {
    this.readers.close();
    libbpf.objectClose(this.object);
  }

  /** The names of the programs, which name their pinned links. */
  programNames(): string[] {
    return [...this.programs.keys()];
  }

  /**
   * Attaches every program to `cgroup` by links pinned in `directory` (src/pins/layout.ts says
   * where), replacing the programs of links pinned there before.
   */
  attachOne(cgroup: string, directory: string): 'attached' | 'replaced' {
    return pinProgramLinks(cgroup, directory, this.programs);
  }
}

/**
 * Refuses a pinned map of another layout, or of another size than asked,
 * before libbpf would try to reuse it (and fail without saying why).
 */
function checkPinnedLayout(path: string, mapName: string, size: MapCapacity | undefined): void {
  const role = roleOfMap(mapName);
  if ((!role && !size) || !existsSync(path)) return;
  const fd = libbpf.objGet(path);
  if (fd < 0) return;
  try {
    const info = mapInfo(fd);
    if (role) checkLayout(role, info, path);
    if (size && info.maxEntries !== size.capacity) {
      const asker = size.flag ?? 'this build';
      const resize = size.flag === undefined ? 'run ' : `run with ${size.flag} ${info.maxEntries}, or `;
      throw new SocklbError(
        'SOCKLB_ERR_MAP_LAYOUT',
        `${path} holds up to ${info.maxEntries} entries and ${asker} asks for ${size.capacity}: ` +
          `a pinned map cannot be resized; ${resize}` +
          `\`socklb cleanup\` first (the datapath stops translating until the agent is back)`,
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
function checkNotReplacingState(pinDirectory: string, pinnedBefore: readonly string[]): void {
  const mapName = pinnedBefore.length === 0 ? undefined : TRANSLATING_MAPS.find((name) => !pinnedBefore.includes(name));
  if (mapName === undefined) return;
  const ours: readonly string[] = Object.values(MAP_NAMES);
  const why = pinnedBefore.every((name) => ours.includes(name))
    ? "an incomplete set of this build's pins (a cleanup that stopped halfway?)"
    : 'they were pinned by a build whose layout differs';
  throw new SocklbError(
    'SOCKLB_ERR_MAP_LAYOUT',
    `${pinnedMapPath(pinDirectory, mapName)} is not pinned beside ${pinnedBefore.join(', ')}: ` +
      `${why}, and starting with an empty ${mapName} would stop translation until the first sync; ` +
      `run \`socklb cleanup\` (with the old build, if another pinned them) first ` +
      `(the datapath stops translating until this agent is up)`,
  );
}
