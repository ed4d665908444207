// What the UDP and DNS integration tests add to support.ts: dnsmasq backends in pods, the
// sandbox's socket client (test/lab/socket-client.ts) with its live events, and `socklb sockets`.

import type { ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SocketDescription } from '../../src/datapath/dump.js';
import type { Lab, LabNamespace, Pod, Sandbox } from '../lab/lab.js';
import { socklb } from './support.js';

export const SOCKET_CLIENT = fileURLToPath(new URL('../lab/socket-client.js', import.meta.url));

/** What a dnsmasq backend answers for its name. */
export interface DnsAnswers {
  ipv4: string;
  ipv6: string;
}

/**
 * Starts dnsmasq in a pod, answering `name` (A and AAAA) with `answers` on the pod's addresses,
 * port 53, UDP and TCP; resolves once it answers. The lab kills it on close.
 */
export async function startDnsmasq(lab: Lab, pod: Pod, name: string, answers: DnsAnswers): Promise<ChildProcess> {
  const child = lab.spawn(pod, [
    'dnsmasq',
    '--no-daemon',
    '--no-resolv',
    '--no-hosts',
    '--bind-interfaces',
    `--listen-address=${pod.ipv4},${pod.ipv6}`,
    '--port=53',
    '--pid-file=',
    '--log-facility=-',
    `--address=/${name}/${answers.ipv4}`,
    `--address=/${name}/${answers.ipv6}`,
  ]);
  // Drained, so that a chatty dnsmasq never blocks on a full pipe.
  child.stdout?.resume();
  child.stderr?.resume();
  for (let attempt = 0; attempt < 50; attempt++) {
    const answer = await lab.exec(pod, ['dig', `@${pod.ipv4}`, name, '+short', '+tries=1', '+timeout=1']).then(
      (result) => result.stdout.trim(),
      () => '',
    );
    if (answer === answers.ipv4) return child;
    await sleep(50);
  }
  throw new Error(`dnsmasq in ${pod.netns} does not answer ${name}`);
}

/** Runs socket-client.js to its end in `target` and parses its one JSON line. */
export async function runSocketClient<T>(lab: Lab, target: Pod | Sandbox, args: string[]): Promise<T> {
  const { stdout } = await lab.exec(target, [process.execPath, SOCKET_CLIENT, ...args], { timeoutMs: 120_000 });
  return JSON.parse(stdout) as T;
}

export interface StreamEvent {
  event: 'connected' | 'reply' | 'error';
  at: number;
  name?: string;
  source?: string;
  peer?: string;
  code?: string;
}

/** socket-client.js stream, running: its events as they come, and a way to wait for one. */
export class EventStream {
  readonly events: StreamEvent[] = [];
  private readonly waiters = new Set<() => void>();

  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.events.push(JSON.parse(line) as StreamEvent);
      for (const wake of this.waiters) wake();
    });
    child.stderr?.resume();
  }

  /** Starts `socket-client.js stream ARGS` in the target; it runs until stop() (or its duration). */
  static start(lab: Lab, target: Pod | Sandbox, args: string[]): EventStream {
    return new EventStream(lab.spawn(target, [process.execPath, SOCKET_CLIENT, 'stream', ...args], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  /** Resolves to the first event from index `from` on that `accept`s. */
  waitFor(accept: (event: StreamEvent) => boolean, timeoutMs: number, from = 0): Promise<StreamEvent> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.events.slice(from).find(accept);
        if (!found) return;
        cleanup();
        resolve(found);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no such event within ${timeoutMs} ms; last events: ${JSON.stringify(this.events.slice(-5))}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Closes the client's stdin, which stops it, and waits for it to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin?.end();
    await exited;
  }
}

/** `socklb sockets -o json`: the sockets socklb translated, in every namespace of the attached cgroups. */
export async function translatedSockets(pinDir: string): Promise<SocketDescription[]> {
  const result = await socklb(['sockets', '-o', 'json', '--pin-dir', pinDir]);
  if (result.code !== 0) throw new Error(`socklb sockets failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as SocketDescription[];
}

/** The inode of a lab namespace, as `socklb sockets` names namespaces. */
export async function netnsInode(namespace: LabNamespace): Promise<number> {
  return (await stat(namespace.netnsPath)).ino;
}
