// A disposable network for integration tests, the demo and benchmarks: pods and sandboxes, each in
// its own network namespace, joined by a bridge in a hub namespace. Nothing is routed to the
// service range, so a ClusterIP connect that socklb did not translate fails at once (ENETUNREACH);
// nothing is added to the root namespace. See README.md in this folder.
import type { ChildProcess, StdioOptions } from 'node:child_process';
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findCgroup2Root, findCgroupV1Roots, removeCgroup } from './cgroup.js';
import { clientArgv, DEFAULT_DEADLINE_MS, type ClientOptions, type ClientReport } from './client-options.js';
import { errorCode } from './errno.js';
import { deleteNetns, ip, ipBatch, listNetns, netnsPath } from './netns.js';
import { ProcessGroups, waitForLine, type ExecResult } from './processes.js';
import { Subnet } from './subnet.js';

export type { ClientOptions, ClientReport } from './client-options.js';
export type { ExecResult } from './processes.js';

export interface LabOptions {
  /** The pod network's IPv4 subnet; default 10.244.0.0/24. */
  ipv4Subnet?: string;
  /** The pod network's IPv6 subnet; default fd00:244::/64. */
  ipv6Subnet?: string;
}

/** What pods and sandboxes have in common: a namespace on the pod network. */
export interface LabNamespace {
  /** The name given to addPod/addSandbox. */
  readonly name: string;
  /** The name in `ip netns list`. */
  readonly netns: string;
  /** /run/netns/<netns>, for nsenter --net or setns. */
  readonly netnsPath: string;
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface Pod extends LabNamespace {
  readonly kind: 'pod';
}

/** A namespace plus a cgroup v2 directory: where socklb's cgroup programs attach. */
export interface Sandbox extends LabNamespace {
  readonly kind: 'sandbox';
  /** Absolute path of the sandbox's cgroup directory. */
  readonly cgroupPath: string;
}

export interface RunOptions {
  /**
   * Run inside the sandbox's cgroup as well as its namespace. Defaults to true for a sandbox;
   * false runs in the sandbox's namespace but in the test's own cgroup, where socklb does not
   * translate. A pod has no cgroup.
   */
  inCgroup?: boolean;
}

export interface SpawnOptions extends RunOptions {
  /** Default ['ignore', 'pipe', 'pipe']: read the pipes, or a chatty process blocks on them. */
  stdio?: StdioOptions;
}

export interface ExecOptions extends RunOptions {
  /** Default 30 s; the process group is killed after it. */
  timeoutMs?: number;
}

export interface EchoServerOptions {
  /** What the server answers with. */
  name: string;
  port: number;
  /** Also answer UDP on the same port. */
  udp?: boolean;
}

export interface EchoServer {
  readonly name: string;
  readonly port: number;
  readonly pod: Pod;
  readonly pid: number;
  /** Kills the server and resolves once it is gone; close() does this for servers still running. */
  stop(): Promise<void>;
}

/** Names lab prefixes: "slb", the creating process's pid, "x", a counter (see Lab.prefix). */
export const LAB_PREFIX_PATTERN = /^slb(?<pid>\d+)x\d+(?:-|$)/;

const DEFAULT_IPV4_SUBNET = '10.244.0.0/24';
const DEFAULT_IPV6_SUBNET = 'fd00:244::/64';
/** Host 1 stays free: in a Kubernetes pod CIDR it is the node's bridge, should a test want one. */
const FIRST_HOST = 2;
const BRIDGE = 'br0';
/** The namespace end of every veth; the hub end is v<host number>. */
const POD_INTERFACE = 'eth0';
const MEMBER_NAME = /^[a-z0-9][a-z0-9-]{0,19}$/;
const READY_TIMEOUT_MS = 10_000;
const DEFAULT_EXEC_TIMEOUT_MS = 30_000;

const ECHO_SERVER = fileURLToPath(new URL('./echo-server.js', import.meta.url));
const CLIENT = fileURLToPath(new URL('./client.js', import.meta.url));

/**
 * ip netns exec would remount /sys and so hide the cgroup mount, and joining the cgroup from
 * outside after the start would race with the command. So the process joins the cgroup itself,
 * then enters the namespace with nsenter (which does not remount) and execs the command: one pid
 * throughout. Paths and the command arrive as positional parameters, never inside the script.
 */
const JOIN_CGROUP_THEN_NETNS = 'echo $$ > "$1/cgroup.procs" || exit 125; netns=$2; shift 2; exec nsenter --net="$netns" -- "$@"';

/**
 * A UDP socket bound on the namespace's loopback (it sends nothing), kept until stdin closes: the
 * process's lifeline, so that it ends with the test process however that ends.
 */
const HOLD_A_SOCKET = `
import { createSocket } from 'node:dgram';
createSocket('udp4').bind(0, '127.0.0.1', () => console.log('ready'));
process.stdin.on('end', () => process.exit(0)).resume();
`;

export class Lab {
  static #labsCreated = 0;

  /**
   * The start of every namespace and cgroup name of this lab: "slb<pid>x<n>". The full pid (not
   * pid % 10000) lets sweepStale tell a crashed run's leftovers from a live lab of a parallel test
   * run. Interface names (15 characters at most) do not carry it: they live inside the namespaces.
   */
  readonly prefix: string;
  readonly ipv4Subnet: Subnet;
  readonly ipv6Subnet: Subnet;

  readonly #processes = new ProcessGroups();
  readonly #members = new Set<string>();
  /** Recorded before creation, so that close() also removes what a failed step half made. */
  readonly #namespaces: string[] = [];
  /** Set before the directory is made, for close(). */
  #labCgroup: { root: string; dir: string } | undefined;
  #labCgroupMade: Promise<string> | undefined;
  #nextHost = FIRST_HOST;
  #hub: Promise<string> | undefined;
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed: Promise<void> | undefined;

  constructor(options: LabOptions = {}) {
    this.prefix = `slb${process.pid}x${Lab.#labsCreated++}`;
    this.ipv4Subnet = new Subnet(options.ipv4Subnet ?? DEFAULT_IPV4_SUBNET);
    this.ipv6Subnet = new Subnet(options.ipv6Subnet ?? DEFAULT_IPV6_SUBNET);
    if (this.ipv4Subnet.family !== 'IPv4') throw new Error(`ipv4Subnet ${this.ipv4Subnet.cidr}: not IPv4`);
    if (this.ipv6Subnet.family !== 'IPv6') throw new Error(`ipv6Subnet ${this.ipv6Subnet.cidr}: not IPv6`);
  }

  /** A namespace with lo up, one address per family on eth0, and on-link routes only. */
  addPod(name: string): Promise<Pod> {
    return this.#guard(async () => ({ kind: 'pod', ...(await this.#addNamespace(name)) }));
  }

  /** A pod-like namespace plus a cgroup directory under the cgroup v2 root. */
  addSandbox(name: string): Promise<Sandbox> {
    return this.#guard(async () => {
      const namespace = await this.#addNamespace(name);
      const labCgroup = await this.#ensureLabCgroup();
      const cgroupPath = path.join(labCgroup, name);
      await mkdir(cgroupPath);
      return { kind: 'sandbox', ...namespace, cgroupPath };
    });
  }

  /**
   * A cgroup inside the lab's for an OCI runtime to create (its linux.cgroupsPath), and the
   * directory it will be in the cgroup v2 hierarchy. Removed with the lab, in the v1 hierarchies
   * of a hybrid host too, where the runtime also makes it.
   */
  runtimeCgroup(name: string): Promise<{ cgroupsPath: string; cgroupPath: string }> {
    return this.#guard(async () => {
      if (!MEMBER_NAME.test(name)) throw new Error(`lab cgroup ${JSON.stringify(name)}: use 1-20 of [a-z0-9-]`);
      const labCgroup = await this.#ensureLabCgroup();
      return { cgroupsPath: `/${this.prefix}/${name}`, cgroupPath: path.join(labCgroup, name) };
    });
  }

  /**
   * Removes the sandbox's cgroup and makes it again at the same path, as a runtime that recreates
   * a container does: another cgroup, with another id and none of the old one's programs. With
   * `keepOldAlive`, a socket made in the old cgroup outlives it (its process is moved to the lab's
   * cgroup): the kernel keeps a removed cgroup, and the links attached to it, while one lives.
   */
  remakeCgroup(sandbox: Sandbox, { keepOldAlive = false }: { keepOldAlive?: boolean } = {}): Promise<void> {
    return this.#guard(async () => {
      if (keepOldAlive) {
        const holder = this.spawn(sandbox, [process.execPath, '--input-type=module', '-e', HOLD_A_SOCKET], {
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        await waitForLine(holder, 'ready', READY_TIMEOUT_MS);
      }
      await removeCgroup(sandbox.cgroupPath, await this.#ensureLabCgroup());
      await mkdir(sandbox.cgroupPath);
    });
  }

  /**
   * Starts `argv` in the target's namespace (and cgroup, see RunOptions) in its own process group.
   * The lab kills it on close() if it is still running.
   */
  spawn(target: Pod | Sandbox, argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
    this.#assertOpen();
    return this.#processes.spawn(this.#inside(target, argv, options), options.stdio ?? ['ignore', 'pipe', 'pipe']);
  }

  /** Runs `argv` to its end in the target (see spawn); rejects on a non-zero exit, with its stderr. */
  exec(target: Pod | Sandbox, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return this.#guard(() => this.#processes.exec(this.#inside(target, argv, options), options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS));
  }

  /** Kills a process `spawn` started (its whole group) and resolves once it is gone. */
  stop(child: ChildProcess): Promise<void> {
    return this.#processes.kill(child);
  }

  /** Sets sysctls of the target's network namespace (net.*), e.g. NGINX_POD_SYSCTLS. */
  async sysctl(target: Pod | Sandbox, settings: readonly string[]): Promise<void> {
    await this.exec(target, ['sysctl', '--quiet', '--write', ...settings], { inCgroup: false });
  }

  /** Starts echo-server.js in a pod; resolves once it listens. */
  startEchoServer(pod: Pod, options: EchoServerOptions): Promise<EchoServer> {
    return this.#guard(async () => {
      const argv = [process.execPath, ECHO_SERVER, '--name', options.name, '--port', String(options.port)];
      if (options.udp) argv.push('--udp');
      // The stdin pipe is the server's lifeline: it exits when this process dies.
      argv.push('--until-stdin-closes');
      const child = this.spawn(pod, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
      try {
        await waitForLine(child, 'ready', READY_TIMEOUT_MS);
      } catch (error) {
        await this.#processes.kill(child);
        throw new Error(`echo server ${options.name} in ${pod.netns} did not start`, { cause: error });
      }
      return { name: options.name, port: options.port, pod, pid: child.pid!, stop: () => this.#processes.kill(child) };
    });
  }

  /** Runs client.js in the target (by default inside a sandbox's cgroup) and parses its report. */
  runClient(target: Pod | Sandbox, options: ClientOptions, runOptions: RunOptions = {}): Promise<ClientReport> {
    return this.#guard(async () => {
      // The client stops itself at its deadline; the exec timeout only catches a hung process.
      const timeoutMs = (options.deadlineMs ?? DEFAULT_DEADLINE_MS) + 10_000;
      const argv = [process.execPath, CLIENT, ...clientArgv(options)];
      const { stdout } = await this.#processes.exec(this.#inside(target, argv, runOptions), timeoutMs);
      try {
        return JSON.parse(stdout) as ClientReport;
      } catch (error) {
        throw new Error(`client in ${target.netns}: not a JSON report: ${JSON.stringify(stdout)}`, { cause: error });
      }
    });
  }

  /**
   * Kills every process the lab started, deletes its namespaces (which takes the veths and the
   * bridge with them) and removes its cgroups. Idempotent; also cleans up after a failed add. It
   * attempts every step and then rejects with all the failures, if any.
   */
  close(): Promise<void> {
    this.#closed ??= this.#teardown();
    return this.#closed;
  }

  /**
   * Removes the namespaces and cgroups of labs whose process is gone (a crashed or killed run),
   * with the processes still in them. `pattern` matches the start of a name; when it captures a
   * `pid` group and that process is alive, the name is spared. Resolves to the names removed.
   */
  static async sweepStale(pattern: RegExp = LAB_PREFIX_PATTERN): Promise<string[]> {
    const isStale = (name: string) => {
      const match = pattern.exec(name);
      if (match === null) return false;
      const pid = match.groups?.['pid'];
      return pid === undefined || !isAlive(Number(pid));
    };
    const removed: string[] = [];
    // Namespaces first: deleting one kills the processes inside, which empties their cgroups.
    for (const name of (await listNetns()).filter(isStale)) {
      await deleteNetns(name);
      removed.push(name);
    }
    for (const root of [await findCgroup2Root(), ...(await findCgroupV1Roots())]) {
      for (const entry of await readdir(root, { withFileTypes: true })) {
        if (!entry.isDirectory() || !isStale(entry.name)) continue;
        await removeCgroup(path.join(root, entry.name), root);
        removed.push(entry.name);
      }
    }
    return removed;
  }

  async #addNamespace(name: string): Promise<Omit<LabNamespace, 'kind'>> {
    if (!MEMBER_NAME.test(name) || name === 'hub') {
      throw new Error(`lab member ${JSON.stringify(name)}: use 1-20 of [a-z0-9-], not "hub"`);
    }
    if (this.#members.has(name)) throw new Error(`lab member ${name}: already exists`);
    this.#members.add(name);
    // Taken synchronously, so that concurrent adds get distinct addresses.
    const host = this.#nextHost++;
    const member = {
      name,
      netns: `${this.prefix}-${name}`,
      netnsPath: netnsPath(`${this.prefix}-${name}`),
      ipv4: this.ipv4Subnet.host(host),
      ipv6: this.ipv6Subnet.host(host),
    };
    const hub = await this.#ensureHub();
    await this.#createNetns(member.netns);
    const veth = `v${host}`;
    await ip(['-n', hub, 'link', 'add', veth, 'type', 'veth', 'peer', 'name', POD_INTERFACE, 'netns', member.netns]);
    await ip(['-n', hub, 'link', 'set', veth, 'master', BRIDGE, 'up']);
    // Addresses with a prefix length give the on-link routes and nothing else: no default route.
    // nodad makes the IPv6 address usable at once instead of "tentative" for a second or more.
    await ipBatch(member.netns, [
      'link set lo up',
      `address add ${member.ipv4}/${this.ipv4Subnet.prefixLength} dev ${POD_INTERFACE}`,
      `address add ${member.ipv6}/${this.ipv6Subnet.prefixLength} dev ${POD_INTERFACE} nodad`,
      `link set ${POD_INTERFACE} up`,
    ]);
    return member;
  }

  /** The hub namespace and its bridge, made once on first use. */
  #ensureHub(): Promise<string> {
    this.#hub ??= (async () => {
      const hub = `${this.prefix}-hub`;
      await this.#createNetns(hub);
      // STP stays off (the default), so ports forward as soon as they are up.
      await ipBatch(hub, [`link add ${BRIDGE} type bridge`, `link set ${BRIDGE} up`]);
      return hub;
    })();
    return this.#hub;
  }

  async #createNetns(name: string): Promise<void> {
    this.#namespaces.push(name);
    await ip(['netns', 'add', name]);
  }

  /** <cgroup v2 root>/<prefix>: one directory per lab, a sub-directory per sandbox; made once. */
  #ensureLabCgroup(): Promise<string> {
    this.#labCgroupMade ??= (async () => {
      const root = await findCgroup2Root();
      this.#labCgroup = { root, dir: path.join(root, this.prefix) };
      await mkdir(this.#labCgroup.dir);
      return this.#labCgroup.dir;
    })();
    return this.#labCgroupMade;
  }

  /** The command line that runs `argv` inside the target. */
  #inside(target: Pod | Sandbox, argv: readonly string[], { inCgroup }: RunOptions): string[] {
    if (argv.length === 0) throw new Error('empty command');
    const joinCgroup = inCgroup ?? target.kind === 'sandbox';
    if (!joinCgroup) return ['nsenter', `--net=${target.netnsPath}`, '--', ...argv];
    if (target.kind !== 'sandbox') throw new Error(`${target.name} is a pod: only a sandbox has a cgroup`);
    return ['sh', '-c', JOIN_CGROUP_THEN_NETNS, 'lab-join', target.cgroupPath, target.netnsPath, ...argv];
  }

  /** Runs a lab operation unless the lab is closed, and lets close() wait for it to finish. */
  #guard<T>(operation: () => Promise<T>): Promise<T> {
    try {
      this.#assertOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    // A synchronous throw becomes a rejection too.
    const running = new Promise<T>((resolve) => resolve(operation()));
    this.#inFlight.add(running);
    const forget = () => this.#inFlight.delete(running);
    running.then(forget, forget);
    return running;
  }

  #assertOpen(): void {
    if (this.#closed !== undefined) throw new Error(`lab ${this.prefix} is closed`);
  }

  async #teardown(): Promise<void> {
    const failures: unknown[] = [];
    const attempt = (step: Promise<unknown>) => step.catch((error: unknown) => failures.push(error));
    // Every process is spawned synchronously by the call that starts it, and no call starts once
    // the lab is closed: so after killAll no process of the lab remains, and the clients and
    // commands still running end now instead of at their deadline.
    await attempt(this.#processes.killAll());
    // A setup step still running would create things after they are deleted.
    await Promise.allSettled([...this.#inFlight]);
    await Promise.all(this.#namespaces.map((name) => attempt(deleteNetns(name))));
    if (this.#labCgroup !== undefined) {
      await attempt(removeCgroup(this.#labCgroup.dir, this.#labCgroup.root));
      for (const root of await findCgroupV1Roots()) await attempt(removeCgroup(path.join(root, this.prefix), root));
    }
    if (failures.length > 0) throw new AggregateError(failures, `lab ${this.prefix}: teardown incomplete`);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, and someone else's.
    return errorCode(error) === 'EPERM';
  }
}
