// Services and EndpointSlices from manifest files: a file, or a directory read
// recursively, watched for changes. A failed update leaves the previous state:
// a file that stops parsing keeps the objects it had, an object that turns
// invalid keeps its last valid version; only removing a file removes objects.

import { lstatSync, readdirSync, readFileSync, realpathSync, statSync, watch, type Dirent, type FSWatcher, type Stats } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { LineCounter, parseAllDocuments } from 'yaml';
import { describeObject, namespacedName, objectRef, parseEndpointSlice, parseService, type ParseResult } from '../model/kubernetes.js';
import type { SourceState } from '../model/source-state.js';
import type { InputProblem } from '../model/types.js';
import { keepLastValid, sameContent } from '../model/versions.js';
import { ManifestAssembly, type AssemblyChanges, type ManifestObject } from './manifest-assembly.js';
import { CoalescedTask, type Source } from './source.js';

export interface ManifestSourceOptions {
  /** A manifest file, or a directory read recursively. Need not exist yet. */
  path: string;
  /**
   * How long to let events gather before a rescan. Default 0: the rescan
   * starts once the events already queued are handled, and events that come
   * during a rescan gather for the next one, so a lone change waits for nothing.
   */
  debounceMs?: number;
}

export class ManifestSource implements Source {
  private readonly root: string;
  private onState: ((state: SourceState) => void) | undefined;
  /** What each file held at the last scan, by path, in path order. */
  private files = new Map<string, FileRead>();
  /** The objects of all files together, as delivered. */
  private readonly assembly = new ManifestAssembly();
  private readonly watchers = new Map<string, { filter: WatchFilter; watcher: FSWatcher }>();
  private readonly rescan: CoalescedTask;
  private scanning: Promise<SourceState | undefined> | undefined;
  /** An event arrived during a scan, which may have missed it. */
  private dirty = false;
  /** An event about the tree arrived during the scan under way: what it read may be half of a save. */
  private eventDuringScan = false;
  private delivered = false;
  private stopped = false;
  /** When the first change not yet scanned was noticed. */
  private changeSeenAt: number | undefined;
  /** The tree's own problems (unreadable or unwatchable directories) as last delivered. */
  private deliveredTreeProblems: InputProblem[] | undefined;

  constructor(options: ManifestSourceOptions) {
    this.root = options.path;
    this.rescan = new CoalescedTask(() => void this.runScan(), options.debounceMs);
  }

  async start(onState: (state: SourceState) => void): Promise<void> {
    if (this.onState) throw new Error(`ManifestSource ${this.root}: start was called twice`);
    this.onState = onState;
    await this.runScan();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.rescan.cancel();
    for (const { watcher } of this.watchers.values()) watcher.close();
    this.watchers.clear();
    await this.scanning;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.changeSeenAt ??= Date.now();
    if (this.scanning) {
      this.dirty = true;
      this.eventDuringScan = true;
      return;
    }
    this.rescan.schedule();
  }

  private async runScan(): Promise<void> {
    this.eventDuringScan = false;
    this.scanning = this.scan();
    const state = await this.scanning;
    this.scanning = undefined;
    if (this.stopped) return;
    const changeSeenAt = this.changeSeenAt;
    if (state) this.changeSeenAt = undefined;
    if (this.dirty) {
      this.dirty = false;
      this.schedule();
    }
    if (!state) return;
    this.delivered = true;
    this.onState?.(changeSeenAt === undefined ? state : { ...state, changeSeenAt });
  }

  /**
   * Rescans the tree and re-reads the files that changed; the new state, or
   * undefined when nothing changed or what was read is set aside. Beyond listing the tree, the work is in
   * proportion to the files that changed: one edited Service among thousands
   * costs one file's parse and comparison, and the state names what changed.
   *
   * The tree is listed and the files read synchronously: a change is a few
   * stats and one small read, which the thread pool's round trips (four for a
   * readFile, one per stat) made take milliseconds where they take tens of
   * microseconds on this thread. Manifests are local files (a ConfigMap
   * volume, a host directory), not a network file system that could hang.
   */
  private async scan(): Promise<SourceState | undefined> {
    const tree = scanTree(this.root);
    const files = new Map<string, FileRead>();
    const changedFiles = new Map<string, FileRead | undefined>();
    for (const [path, stats] of [...tree.files].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const known = this.files.get(path);
      if (known !== undefined && known.signature === signatureOf(stats)) {
        files.set(path, known);
        continue;
      }
      const read = readManifestFile(path, stats, known?.objects ?? new Map());
      // A save that changed nothing socklb reads (a comment, a touch, a Deployment) keeps the objects as they were.
      if (sameContents(known ?? NOTHING_READ, read)) files.set(path, { ...(known ?? read), signature: read.signature });
      else {
        files.set(path, read);
        changedFiles.set(path, read);
      }
    }
    for (const [path, known] of this.files) if (!files.has(path) && !sameContents(known, NOTHING_READ)) changedFiles.set(path, undefined);
    // The watchers' events about writes made while this thread read are handled here. Events
    // during the scan mean the change is still being written (an editor's save is several
    // writes, a file read between them is half of it): what it read is set aside, before it
    // becomes what a broken file's previous objects are taken from, and the scan they cause
    // reads again, unless the burst has gone on for too long.
    await setImmediate();
    if (this.stopped || this.mayHaveReadHalfASave()) return undefined;
    const treeProblems = [...tree.problems, ...this.watchDirectories(tree.watch)];
    const changes: AssemblyChanges = { services: new Set(), slices: new Set() };
    // A root that cannot be listed tells nothing of its files: those read before stay known, with
    // their objects and problems, so that when it can be again only what differs from them is news.
    if (!tree.rootListed) {
      if (sameContent(treeProblems, this.deliveredTreeProblems)) return undefined;
    } else {
      this.files = files;
      if (changedFiles.size === 0 && sameContent(treeProblems, this.deliveredTreeProblems)) return undefined;
      for (const [path, read] of changedFiles) this.assembly.setFile(path, read?.objects, changes);
    }
    this.deliveredTreeProblems = treeProblems;
    const problems = [...treeProblems];
    for (const [path, read] of this.files) problems.push(...read.problems, ...this.assembly.duplicateProblems(path));
    const { services, ignoredServices, slices } = this.assembly;
    const state: SourceState = { services, ignoredServices, slices, problems, changes };
    return tree.rootListed ? state : { ...state, complete: false };
  }

  private mayHaveReadHalfASave(): boolean {
    return this.delivered && this.eventDuringScan && this.changeSeenAt !== undefined && Date.now() - this.changeSeenAt < MAX_BURST_MS;
  }

  /** Brings the watchers in step with the tree; problems for the directories that cannot be watched. */
  private watchDirectories(wanted: ReadonlyMap<string, WatchFilter>): InputProblem[] {
    for (const [directory, { watcher }] of this.watchers) {
      if (wanted.has(directory)) continue;
      watcher.close();
      this.watchers.delete(directory);
    }
    const problems: InputProblem[] = [];
    for (const [directory, filter] of wanted) {
      const known = this.watchers.get(directory);
      if (known) {
        known.filter = filter;
        continue;
      }
      try {
        const watcher = watch(directory, (_event, name) => this.onWatchEvent(directory, name));
        watcher.on('error', () => this.onWatchError(directory));
        this.watchers.set(directory, { filter, watcher });
        // Files written between the scan and now raised no event: look again.
        this.dirty = true;
      } catch (error) {
        if (isMissing(error)) continue; // gone since the scan; its parent's watcher saw that
        problems.push({
          source: directory,
          object: 'directory',
          reason:
            `cannot be watched (${errorText(error)}): its changes wait for another change to be seen; ` +
            `on Linux, raise fs.inotify.max_user_watches`,
        });
      }
    }
    return problems;
  }

  private onWatchEvent(directory: string, name: string | null): void {
    const filter = this.watchers.get(directory)?.filter;
    if (filter === undefined) return;
    if (name === null || (filter === 'all' ? this.mayBeInTree(join(directory, name)) : filter.has(name))) this.schedule();
  }

  /**
   * Whether an event about `path` may change the tree: a manifest file, a
   * directory, or something gone that was one of our directories. A writer's
   * temporary file (`web.yaml.tmp`, renamed into place afterwards) is not,
   * and a scan for it would only hold back the scan of the rename.
   */
  private mayBeInTree(path: string): boolean {
    if (MANIFEST_EXTENSIONS.has(extname(path)) || this.watchers.has(path)) return true;
    try {
      return statSync(path).isDirectory();
    } catch (error) {
      return !isMissing(error);
    }
  }

  /** A watched directory that disappears may error: drop its watcher, the rescan decides whether to watch it again. */
  private onWatchError(directory: string): void {
    this.watchers.get(directory)?.watcher.close();
    this.watchers.delete(directory);
    this.schedule();
  }
}

// ---- What one file holds ----

const NOTHING_READ: FileRead = { signature: undefined, objects: new Map(), problems: [] };

function sameContents(a: FileRead, b: FileRead): boolean {
  if (a.objects.size !== b.objects.size || a.problems.length !== b.problems.length) return false;
  return sameContent([[...a.objects], a.problems], [[...b.objects], b.problems]);
}

interface FileRead {
  /** (mtime, size, inode) when read; undefined: read it again at the next scan. */
  signature: string | undefined;
  /** By identity (`Service default/web`). */
  objects: ReadonlyMap<string, ManifestObject>;
  problems: InputProblem[];
}

interface FileContents {
  objects: Map<string, ManifestObject>;
  problems: InputProblem[];
}

// How long a burst of events may hold back the states of the scans it causes.
const MAX_BURST_MS = 100;
// A file written again within the clock tick of our read keeps its (mtime,
// size, inode): until its mtime is this far behind, it is read at every scan.
const RACY_WINDOW_MS = 1000;
// Aliases make a small file expand to a huge one; the yaml package refuses more than this many.
const MAX_ALIAS_COUNT = 100;
// The yaml package parses about half a megabyte a second here: past this size a
// file would stall the agent for a minute. JSON of any size parses fast.
const MAX_YAML_BYTES = 16 * 1024 * 1024;

function readManifestFile(path: string, stats: Stats, previous: ReadonlyMap<string, ManifestObject>): FileRead {
  const readAt = Date.now();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const problem = { source: path, object: 'file', reason: withPrevious(`cannot be read: ${errorText(error)}`, previous) };
    return { signature: undefined, objects: previous, problems: [problem] };
  }
  const racy = stats.mtimeMs > readAt - RACY_WINDOW_MS;
  let contents: FileContents;
  try {
    contents = decodeManifest(path, text, previous);
  } catch (error) {
    // A file this reader failed on, whatever the reason, is that file's problem, not the agent's end.
    const problem = { source: path, object: 'file', reason: withPrevious(`cannot be decoded: ${errorText(error)}`, previous) };
    contents = { objects: new Map(previous), problems: [problem] };
  }
  return { signature: racy ? undefined : signatureOf(stats), ...contents };
}

/**
 * JSON, as `kubectl get -o json` writes it, parsed as JSON: YAML is a superset
 * of JSON, so the objects are the same, and JSON.parse is a hundred times
 * faster than a YAML parser. Undefined when the text is not JSON.
 */
function parseJson(text: string): unknown {
  if (!/^\s*[[{]/.test(text)) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

interface DecodedDocuments {
  values: { where: string; value: unknown }[];
  syntaxProblems: InputProblem[];
}

/** The documents of a YAML text, or what keeps it from being read. */
function parseYaml(path: string, text: string): DecodedDocuments {
  if (text.length > MAX_YAML_BYTES) {
    const reason = `is ${text.length} bytes of YAML, more than the ${MAX_YAML_BYTES} socklb reads; split it, or write it as JSON`;
    return { values: [], syntaxProblems: [{ source: path, object: 'file', reason }] };
  }
  const lines = new LineCounter();
  const decoded: DecodedDocuments = { values: [], syntaxProblems: [] };
  let where = 'file';
  try {
    parseAllDocuments(text, { lineCounter: lines, prettyErrors: false }).forEach((document, i) => {
      where = `document ${i + 1}`;
      for (const error of document.errors) {
        const { line, col } = lines.linePos(error.pos[0]);
        decoded.syntaxProblems.push({ source: path, object: where, reason: `line ${line}, column ${col}: ${error.message}` });
      }
      if (document.errors.length === 0) decoded.values.push({ where, value: document.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) });
    });
  } catch (error) {
    // toJS refusing an alias bomb, or a nesting too deep for the parser.
    decoded.syntaxProblems.push({ source: path, object: where, reason: `cannot be decoded: ${errorText(error)}` });
  }
  return decoded;
}

/** The objects of one file's text; `previous`, what it held before, stands in for what no longer reads. */
function decodeManifest(path: string, text: string, previous: ReadonlyMap<string, ManifestObject>): FileContents {
  const json = parseJson(text);
  const { values, syntaxProblems } =
    json === undefined ? parseYaml(path, text) : { values: [{ where: 'document 1', value: json }], syntaxProblems: [] };
  if (syntaxProblems.length > 0) {
    // Half a file is not what anyone meant: keep all of what it held.
    return {
      objects: new Map(previous),
      problems: syntaxProblems.map((problem) => ({ ...problem, reason: withPrevious(problem.reason, previous) })),
    };
  }
  const contents: FileContents = { objects: new Map(), problems: [] };
  for (const { where, value } of values) {
    // An empty document (a trailing ---, a file of comments) holds nothing.
    if (value !== null) collectObjects(value, where, path, previous, contents);
  }
  return contents;
}

/** Adds the Services and EndpointSlices of one document, or of one item of a List (`inList`). */
function collectObjects(
  value: unknown,
  where: string,
  path: string,
  previous: ReadonlyMap<string, ManifestObject>,
  into: FileContents,
  inList = false,
): void {
  const problem = (object: string, reason: string) => into.problems.push({ source: path, object, reason });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problem(where, 'is not a mapping, so not a Kubernetes object');
    return;
  }
  const { kind, items } = value as Record<string, unknown>;
  if (typeof kind !== 'string' || kind === '') {
    problem(where, 'has no kind, so it is not a Kubernetes object');
    return;
  }
  // List, ServiceList, EndpointSliceList...: what `kubectl get -o yaml` prints for several objects.
  // Their items are objects, never Lists: reading Lists in Lists would recurse as deep as the file nests.
  if (kind.endsWith('List')) {
    if (inList) problem(where, `is a ${kind} inside a List; a List's items are objects: list them in the outer List`);
    else if (items !== undefined && items !== null && !Array.isArray(items)) problem(where, `${kind} has items that are not a list`);
    else (items ?? []).forEach((item: unknown, i: number) => collectObjects(item, `${where} items[${i}]`, path, previous, into, true));
    return;
  }
  // A manifest directory may hold Deployments and ConfigMaps too: not ours, not a problem.
  if (kind !== 'Service' && kind !== 'EndpointSlice') return;

  const ref = objectRef(value);
  const identity = ref && describeObject(ref);
  const result = kind === 'Service' ? parseServiceObject(value) : parseSliceObject(value);
  let object: ManifestObject | undefined;
  if (result.kind === 'ok') object = result.value;
  else if (result.kind === 'invalid') {
    const kept = keepLastValid(result.reason, identity === undefined ? undefined : previous.get(identity));
    object = kept.value;
    problem(identity ?? where, kept.problem);
  }
  if (object === undefined || identity === undefined) return;
  if (into.objects.has(identity)) problem(identity, 'is defined twice in this file; the first definition wins: remove one');
  else into.objects.set(identity, object);
}

function parseServiceObject(value: unknown): ParseResult<ManifestObject> {
  const result = parseService(value);
  if (result.kind === 'ok') return { kind: 'ok', value: { kind: 'Service', service: result.value } };
  // An ignored Service still exists: its slices are not orphans.
  const ref = objectRef(value);
  if (result.kind === 'ignored' && ref) return { kind: 'ok', value: { kind: 'IgnoredService', key: namespacedName(ref) } };
  return result;
}

function parseSliceObject(value: unknown): ParseResult<ManifestObject> {
  const result = parseEndpointSlice(value);
  return result.kind === 'ok' ? { kind: 'ok', value: { kind: 'EndpointSlice', slice: result.value } } : result;
}

function withPrevious(reason: string, previous: ReadonlyMap<string, ManifestObject>): string {
  if (previous.size === 0) return reason;
  return `${reason}; the ${previous.size} object(s) read from it before stay in effect until it is fixed`;
}

// ---- The tree on disk ----

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/** 'all': any event in the directory matters; a set: only events about these names. */
type WatchFilter = 'all' | Set<string>;

interface Tree {
  /**
   * The root path was read: its files are these. False when it does not exist, or cannot be read,
   * or went between its stat and its listing: nothing can be told of its files, not even that there are none.
   */
  rootListed: boolean;
  files: Map<string, Stats>;
  watch: Map<string, WatchFilter>;
  problems: InputProblem[];
}

/**
 * The manifest files under `root`, and the directories to watch: every
 * directory of the tree, and for the root itself (which may not exist yet,
 * or may be replaced) its nearest existing ancestor, for the name leading to it.
 */
function scanTree(root: string): Tree {
  const tree: Tree = { rootListed: false, files: new Map(), watch: new Map(), problems: [] };
  const ancestor = watchNearestAncestor(root, tree);
  let stats: Stats;
  try {
    stats = statSync(root);
  } catch (error) {
    const reason = isMissing(error)
      ? `does not exist; socklb watches ${ancestor ?? 'nothing'} and reads it once it appears, leaving the datapath as it is until then`
      : `cannot be read (${errorText(error)}); the datapath stays as it is until it can`;
    tree.problems.push({ source: root, object: 'path', reason });
    return tree;
  }
  if (stats.isDirectory()) tree.rootListed = walk(root, tree);
  else if (stats.isFile()) {
    watchAll(tree, dirname(root));
    const link = orUndefined(() => lstatSync(root));
    addFile(root, link?.isSymbolicLink() ?? false, tree);
    tree.rootListed = tree.files.has(root);
  } else
    tree.problems.push({
      source: root,
      object: 'path',
      reason: 'is neither a file nor a directory; the datapath stays as it is until it is one',
    });
  // In a stable order whatever order the file system answered in: an unchanged tree compares equal.
  tree.problems.sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0));
  return tree;
}

function watchNearestAncestor(root: string, tree: Tree): string | undefined {
  for (let child = root, directory = dirname(root); directory !== child; child = directory, directory = dirname(directory)) {
    const stats = orUndefined(() => statSync(directory));
    if (stats?.isDirectory()) {
      watchName(tree, directory, basename(child));
      return directory;
    }
  }
  return undefined;
}

/** Adds the files under `directory`; false when it cannot be listed. */
function walk(directory: string, tree: Tree): boolean {
  watchAll(tree, directory);
  let entries: Dirent[];
  try {
    entries = readdirSync(directory, { withFileTypes: true });
  } catch (error) {
    // Gone since its parent was listed: the parent's watcher saw that, and the next scan knows.
    if (!isMissing(error)) tree.problems.push({ source: directory, object: 'directory', reason: `cannot be read: ${errorText(error)}` });
    return false;
  }
  for (const entry of entries) {
    // Editor temp files, and the ..data directories of mounted ConfigMaps (their files are reached through symlinks).
    if (entry.name.startsWith('.')) continue;
    const path = join(directory, entry.name);
    // Symlinks to directories are not followed: a cycle would never end.
    if (entry.isDirectory()) walk(path, tree);
    else if ((entry.isFile() || entry.isSymbolicLink()) && MANIFEST_EXTENSIONS.has(extname(entry.name)))
      addFile(path, entry.isSymbolicLink(), tree);
  }
  return true;
}

function addFile(path: string, isSymlink: boolean, tree: Tree): void {
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch (error) {
    const reason = isMissing(error) ? 'is a symbolic link to a file that does not exist' : `cannot be read: ${errorText(error)}`;
    tree.problems.push({ source: path, object: 'file', reason });
    return;
  }
  if (!stats.isFile()) return;
  tree.files.set(path, stats);
  if (!isSymlink) return;
  // A symlink's target may live outside the tree: its edits raise events only in its own directory.
  const real = orUndefined(() => realpathSync(path));
  if (real !== undefined) watchName(tree, dirname(real), basename(real));
}

/** What `read` returns, or undefined if it throws: for looks whose failure the scan does not report. */
function orUndefined<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

function watchAll(tree: Tree, directory: string): void {
  tree.watch.set(directory, 'all');
}

function watchName(tree: Tree, directory: string, name: string): void {
  const filter = tree.watch.get(directory) ?? new Set<string>();
  if (filter !== 'all') tree.watch.set(directory, filter.add(name));
}

function signatureOf(stats: Stats): string {
  return `${stats.mtimeMs}:${stats.size}:${stats.ino}`;
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
