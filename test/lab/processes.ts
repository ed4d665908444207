// The processes a lab starts, and the ways it waits for them.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorCode } from './errno.js';

export interface ExecResult {
  stdout: string;
  stderr: string;
}

/**
 * Every process a lab started, each in its own process group (detached: true makes it a session
 * leader) so that a kill also reaches whatever it forked, and so that the lab can wait for all of
 * them to be gone before it deletes their namespaces and cgroups.
 */
export class ProcessGroups {
  readonly #exited = new Map<ChildProcess, Promise<void>>();

  spawn(argv: readonly string[], stdio: StdioOptions): ChildProcess {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error('spawn: empty command');
    const child = spawn(file, args, { detached: true, stdio });
    const exited = new Promise<void>((resolve) => {
      // 'error' without 'exit' is a process that never started.
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    this.#exited.set(child, exited);
    void exited.then(() => this.#exited.delete(child));
    return child;
  }

  /** SIGKILLs the child's process group and resolves once the child has exited. */
  kill(child: ChildProcess): Promise<void> {
    const exited = this.#exited.get(child);
    if (exited === undefined) return Promise.resolve();
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch (error) {
        if (errorCode(error) !== 'ESRCH') throw error;
      }
    }
    return exited;
  }

  async killAll(): Promise<void> {
    await Promise.all([...this.#exited.keys()].map((child) => this.kill(child)));
  }

  /** Runs a command to its end; rejects on a non-zero exit or after `timeoutMs` (the group is killed). */
  async exec(argv: readonly string[], timeoutMs: number): Promise<ExecResult> {
    const child = this.spawn(argv, ['ignore', 'pipe', 'pipe']);
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void this.kill(child);
    }, timeoutMs);
    try {
      // 'close' rather than 'exit': it comes after the last byte of output.
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
      });
      if (code !== 0) {
        const why = timedOut ? `timed out after ${timeoutMs} ms` : `exited with ${code ?? signal}`;
        throw new Error(`${argv.join(' ')}: ${why}: ${stderr().trim()}`);
      }
      return { stdout: stdout(), stderr: stderr() };
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Resolves when the child prints `line` on stdout; rejects, with what it printed on stderr, when
 * it exits first or after `timeoutMs`. The rest of its output is consumed so that the pipes never
 * fill up and block it.
 */
export function waitForLine(child: ChildProcess, line: string, timeoutMs: number): Promise<void> {
  const stderr = collect(child.stderr);
  return new Promise<void>((resolve, reject) => {
    if (child.stdout === null) throw new Error('waitForLine: the child has no stdout pipe');
    const timer = setTimeout(() => fail(`no "${line}" within ${timeoutMs} ms`), timeoutMs);
    // 'close' rather than 'exit': it comes after the last of stderr, which says why.
    const onClose = (code: number | null, signal: NodeJS.Signals | null) => fail(`exited with ${code ?? signal}`);
    const fail = (why: string) => {
      clearTimeout(timer);
      child.off('close', onClose);
      reject(new Error(`${child.spawnargs.join(' ')}: ${why}: ${stderr().trim()}`));
    };
    child.once('close', onClose);
    createInterface({ input: child.stdout }).on('line', (text) => {
      if (text !== line) return;
      clearTimeout(timer);
      child.off('close', onClose);
      resolve();
    });
  });
}

/** Accumulates a stream as text; the returned function reads what arrived so far. */
function collect(stream: NodeJS.ReadableStream | null): () => string {
  let text = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    text += chunk;
  });
  return () => text;
}

/**
 * Waits until a spawned process has become `command`: the lab's wrapper (sh, then nsenter) keeps
 * the pid but joins the cgroup and the namespace before its final exec.
 */
export async function execedAs(pid: number, command: string): Promise<number> {
  for (let tries = 0; tries < 500; tries++) {
    if ((await readFile(`/proc/${pid}/comm`, 'utf8')).trim() === command) return pid;
    await sleep(10);
  }
  throw new Error(`process ${pid} never became ${command}`);
}
