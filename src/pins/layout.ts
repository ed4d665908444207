// The layout of a socklb pin directory on bpffs, the one place that names its paths:
//
//   <pin dir>/maps/socklb_fe_v3 ...                          the maps (reused across restarts)
//   <pin dir>/links/<cgroup>/socklb_connect4 ...              one link per program and --cgroup
//   <pin dir>/links/sandboxes/<id>/<cgroup>/socklb_connect4   a sandbox's (src/sandbox/attachments.ts)
//   <pin dir>/guests/<id>/<address>                           a microVM guest's registration (src/guest)
//   <pin dir>/bypass/<id>/<entry>                             what sandbox <id> leaves untranslated
//
// <cgroup> is the cgroup's path below the cgroup v2 root, URL-encoded (so starting with %2F, never
// `sandboxes`), so that the pins say what they attach even to someone without socklb. The
// sandboxes' pins are their registry's only record: what is pinned is what is registered. A guest
// has nothing to pin in the node's kernel (its programs and maps are in its own): an empty
// directory named after its URL-encoded address (unix:/run/vm1/v.sock_1024) records it.

import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { relative } from 'node:path';
import { cgroup2Root } from '../kernel/mounts.js';
import { ensureBpffs } from '../kernel/system.js';

export const DEFAULT_PIN_DIRECTORY = '/sys/fs/bpf/socklb';

/** A bpffs name, like any other, holds at most 255 bytes. */
export const MAX_PIN_NAME_BYTES = 255;

const SANDBOX_LINK_DIRECTORY = 'sandboxes';
const GUEST_DIRECTORY = 'guests';
const BYPASS_DIRECTORY = 'bypass';

export interface PinLayout {
  maps: string;
  links: string;
}

export function pinLayout(pinDirectory: string): PinLayout {
  return { maps: `${pinDirectory}/maps`, links: `${pinDirectory}/links` };
}

/** Where the guests' registrations are recorded. */
export function guestsDirectory(pinDirectory: string): string {
  return `${pinDirectory}/${GUEST_DIRECTORY}`;
}

/** Records guest `id` at `address`, replacing what was recorded for it. */
export function pinGuest(pinDirectory: string, id: string, address: string): void {
  unpinGuest(pinDirectory, id);
  mkdirSync(`${guestsDirectory(pinDirectory)}/${id}/${pinName(address)}`, { recursive: true, mode: 0o700 });
}

export function unpinGuest(pinDirectory: string, id: string): void {
  rmSync(`${guestsDirectory(pinDirectory)}/${id}`, { recursive: true, force: true });
}

/** The guests recorded under `pinDirectory`; address undefined for a record left half made. */
export function pinnedGuests(pinDirectory: string): { id: string; address: string | undefined }[] {
  const guests = guestsDirectory(pinDirectory);
  return (entriesOf(guests) ?? []).map((id) => {
    const entries = entriesOf(`${guests}/${id}`) ?? [];
    return { id, address: entries.length === 1 ? decodeURIComponent(entries[0]!) : undefined };
  });
}

/** Where what the sandboxes leave untranslated is recorded. */
export function bypassDirectory(pinDirectory: string): string {
  return `${pinDirectory}/${BYPASS_DIRECTORY}`;
}

/**
 * Records what sandbox `id` leaves untranslated (`no-translate`, `exclude:NAMESPACE/NAME`), one
 * empty directory per entry, replacing what was recorded; nothing is recorded for no entry.
 */
export function pinSandboxBypass(pinDirectory: string, id: string, entries: readonly string[]): void {
  unpinSandboxBypass(pinDirectory, id);
  for (const entry of entries) mkdirSync(`${bypassDirectory(pinDirectory)}/${id}/${pinName(entry)}`, { recursive: true, mode: 0o700 });
}

export function unpinSandboxBypass(pinDirectory: string, id: string): void {
  rmSync(`${bypassDirectory(pinDirectory)}/${id}`, { recursive: true, force: true });
}

/** The sandboxes with a bypass recorded, each with its entries. */
export function pinnedSandboxBypasses(pinDirectory: string): Map<string, string[]> {
  const directory = bypassDirectory(pinDirectory);
  return new Map(
    (entriesOf(directory) ?? []).map((id) => [id, (entriesOf(`${directory}/${id}`) ?? []).map((name) => decodeURIComponent(name)).sort()]),
  );
}

/** Mounts bpffs when none is there and makes the directories of the maps and the links. */
export function preparePinDirectory(pinDirectory: string): void {
  ensureBpffs(pinDirectory);
  const layout = pinLayout(pinDirectory);
  mkdirSync(layout.maps, { recursive: true, mode: 0o700 });
  mkdirSync(layout.links, { recursive: true, mode: 0o700 });
}

export function pinnedMapPath(pinDirectory: string, mapName: string): string {
  return `${pinLayout(pinDirectory).maps}/${mapName}`;
}

/** The names of the maps pinned under `pinDirectory`; throws (ENOENT) when none is pinned there. */
export function pinnedMapNames(pinDirectory: string): string[] {
  return readdirSync(pinLayout(pinDirectory).maps);
}

/**
 * `text` as one bpffs name: URL-encoded, and its dots too, which bpffs refuses in names (EPERM)
 * while cgroups are full of them (kubepods.slice, cri-containerd-<id>.scope).
 */
function pinName(text: string): string {
  return encodeURIComponent(text).replaceAll('.', '%2E');
}

/** The name of a cgroup's link directory: the encoded path of `cgroup` below the cgroup v2 `root`. */
export function linkDirectoryName(root: string, cgroup: string): string {
  return pinName(`/${relative(root, cgroup)}`);
}

function cgroupOfLinkDirectory(root: string, name: string): string {
  const below = decodeURIComponent(name);
  return below === '/' ? root : `${root}${below}`;
}

/** Where the links of a --cgroup attachment are pinned, one per program, named after it. */
export function cgroupLinkDirectory(pinDirectory: string, root: string, cgroup: string): string {
  return `${pinLayout(pinDirectory).links}/${linkDirectoryName(root, cgroup)}`;
}

/** Each --cgroup attachment pinned under `pinDirectory` with the directory of its links (sandboxes: pinnedSandboxes). */
export function pinnedLinkDirectories(pinDirectory: string, root = cgroup2Root()): { cgroup: string; directory: string }[] {
  const { links } = pinLayout(pinDirectory);
  return (entriesOf(links) ?? [])
    .filter((name) => name !== SANDBOX_LINK_DIRECTORY)
    .map((name) => ({ cgroup: cgroupOfLinkDirectory(root, name), directory: `${links}/${name}` }));
}

/** The cgroups the pinned --cgroup links are attached to. */
export function attachedCgroups(pinDirectory: string): string[] {
  return pinnedLinkDirectories(pinDirectory).map(({ cgroup }) => cgroup);
}

function sandboxesDirectory(pinDirectory: string): string {
  return `${pinLayout(pinDirectory).links}/${SANDBOX_LINK_DIRECTORY}`;
}

/** Everything pinned for sandbox `id`: the directory of its cgroup's link directory. */
export function sandboxDirectory(pinDirectory: string, id: string): string {
  return `${sandboxesDirectory(pinDirectory)}/${id}`;
}

/** Where the links of sandbox `id`, attached to `cgroup`, are pinned. */
export function sandboxLinkDirectory(pinDirectory: string, id: string, root: string, cgroup: string): string {
  return `${sandboxDirectory(pinDirectory, id)}/${linkDirectoryName(root, cgroup)}`;
}

/**
 * The sandboxes pinned under `pinDirectory`, with the directory of their links; cgroup undefined
 * for a directory left half made.
 */
export function pinnedSandboxes(
  pinDirectory: string,
  root = cgroup2Root(),
): { id: string; cgroup: string | undefined; directory: string }[] {
  const sandboxes = sandboxesDirectory(pinDirectory);
  return (entriesOf(sandboxes) ?? []).flatMap((id) => {
    const entries = entriesOf(`${sandboxes}/${id}`);
    if (entries === undefined) return [];
    const [name, ...others] = entries;
    const whole = name !== undefined && others.length === 0;
    return [
      {
        id,
        cgroup: whole ? cgroupOfLinkDirectory(root, name) : undefined,
        directory: whole ? `${sandboxes}/${id}/${name}` : `${sandboxes}/${id}`,
      },
    ];
  });
}

/** Every attachment pinned under `pinDirectory`, the --cgroup ones and the sandboxes' (those whole), with the directory of its links. */
export function pinnedAttachments(pinDirectory: string, root = cgroup2Root()): { cgroup: string; sandbox?: string; directory: string }[] {
  return [
    ...pinnedLinkDirectories(pinDirectory, root),
    ...pinnedSandboxes(pinDirectory, root).flatMap(({ id, cgroup, directory }) =>
      cgroup === undefined ? [] : [{ cgroup, sandbox: id, directory }],
    ),
  ];
}

/** The cgroups of the pinned sandboxes, for `socklb sockets`. */
export function sandboxCgroups(pinDirectory: string): string[] {
  return pinnedSandboxes(pinDirectory).flatMap((sandbox) => (sandbox.cgroup === undefined ? [] : [sandbox.cgroup]));
}

/**
 * The names in a pin directory; undefined when it does not exist, which includes one removed
 * while it is read (a sandbox removed during `socklb status`).
 */
export function entriesOf(directory: string): string[] | undefined {
  try {
    return readdirSync(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
