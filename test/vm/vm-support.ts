// What the VM tests share: where the kernel and the shipped build are, when a VM test runs or is
// skipped, the QEMU command line (Debian's cloud kernel under TCG, a busybox initramfs from
// build-initramfs.sh), the guest's serial console, and a shell in the guest on its second serial port.

import { execFile, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { missingPrivileges } from '../integration/support.js';

const execFileAsync = promisify(execFile);
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const HERE = join(ROOT, 'test', 'vm');
export const KERNEL = process.env['SOCKLB_VM_KERNEL'] ?? join(ROOT, 'build', 'vm', 'kernel');
export const DIST = join(ROOT, 'dist');
export const AGENT = join(DIST, 'socklb.js');
export const APPLIER = join(DIST, 'socklb-applier');
const QEMU = 'qemu-system-x86_64';

/** Under TCG the applier takes seconds to load the object; a change then takes well under one. */
export const GUEST_TIMEOUT_MS = 120_000;
/**
 * Runs QEMU until it exits or this process's end closes the wrapper's stdin, whichever comes
 * first, so that a test killed mid-run leaves no VM behind.
 */
const KILL_WHEN_STDIN_CLOSES =
  'exec 3<&0 </dev/null; "$@" & qemu=$!; { read -r _ <&3; kill $qemu; } & reader=$!; wait $qemu; status=$?; kill $reader; exit $status';

/** Why QEMU cannot run a machine here (then the test is skipped, loudly), or undefined. */
function qemuUnavailable(): string | undefined {
  const probe = spawnSync(
    QEMU,
    ['-accel', 'tcg', '-M', 'q35', '-m', '64M', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-monitor', 'stdio'],
    {
      input: 'quit\n',
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  if (probe.error) return `${QEMU} cannot start: ${probe.error.message}`;
  if (probe.status !== 0) return `${QEMU} cannot start a TCG machine: exit ${probe.status ?? probe.signal}: ${probe.stderr.trim()}`;
  return undefined;
}

/**
 * Why a VM test cannot run here, or undefined. Throws when a file that `make test-vm` prepares is
 * missing: that is no reason to skip.
 */
export function vmSkipReason(): string | undefined {
  const missing = missingPrivileges();
  if (missing !== undefined) return missing;
  for (const [file, make] of [
    [join(KERNEL, 'vmlinuz'), 'make test-vm'],
    [APPLIER, 'make bundle'],
    [AGENT, 'make bundle'],
  ] as const) {
    if (!existsSync(file)) throw new Error(`${file} is missing: run \`${make}\``);
  }
  const qemu = qemuUnavailable();
  if (qemu === undefined) return undefined;
  process.stderr.write(`\n${'*'.repeat(78)}\n* SKIPPED: the VM test cannot run: ${qemu}\n${'*'.repeat(78)}\n\n`);
  return `SKIPPED: ${qemu}`;
}

/**
 * Builds an initramfs at `out` (build-initramfs.sh): `items` are files for /bin or /PATH=SOURCE
 * trees; `modules` are loaded at boot; uncompressed when it holds something as large as node.
 */
export async function buildInitramfs(out: string, items: string[], options: { modules?: string; compress?: 'gzip' | 'none' } = {}) {
  const env = { ...process.env, ...(options.modules && { MODULES: options.modules }), COMPRESS: options.compress ?? 'gzip' };
  const { stdout } = await execFileAsync(join(HERE, 'build-initramfs.sh'), [out, KERNEL, ...items], { env });
  return stdout.trim();
}

/**
 * The argv that boots the kernel with `initramfs` and runs the shell `command` as init's child,
 * with the console on stdout, a QEMU that dies with its stdin, and `devices` (QEMU arguments).
 */
export function qemuArgv(options: { initramfs: string; command: string; memory: string; devices: string[] }): string[] {
  // Under TCG the guest's TSC is the host's: telling it the frequency skips the PIT calibration,
  // which fails now and then under emulation. The command travels base64-encoded: the kernel's
  // command line eats quotes.
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]);
  const command = Buffer.from(options.command).toString('base64');
  return [
    ...['sh', '-c', KILL_WHEN_STDIN_CLOSES, 'qemu-lifeline'],
    ...[QEMU, '-accel', 'tcg', '-M', 'q35', '-m', options.memory, '-smp', '1'],
    ...['-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot'],
    ...['-kernel', join(KERNEL, 'vmlinuz'), '-initrd', options.initramfs],
    ...['-append', `console=ttyS0 panic=-1 quiet tsc_early_khz=${Math.round(mhz * 1000)} -- ${command}`],
    ...options.devices,
  ];
}

/** The guest's serial console: lines as they come, and waits for one that matches. */
export class Console {
  #text = '';
  readonly exited: Promise<number | null>;

  constructor(readonly qemu: ChildProcess) {
    qemu.stdout?.setEncoding('utf8');
    qemu.stdout?.on('data', (text: string) => {
      this.#text += text.replaceAll('\r', '');
    });
    // QEMU's own complaints land among the guest's lines, where a failure message shows them.
    qemu.stderr?.setEncoding('utf8');
    qemu.stderr?.on('data', (text: string) => {
      this.#text += text;
    });
    this.exited = new Promise((resolve) => qemu.once('exit', (code) => resolve(code)));
  }

  /** The console's last `characters`, for a failure's message. */
  tail(characters = 3000): string {
    return this.#text.slice(-characters);
  }

  /** What the guest's probe printed last for `url` (guest.sh prints an answer when it changes). */
  lastAnswer(url: string): string | undefined {
    const prefix = `guest: ${url} -> `;
    return this.#text
      .split('\n')
      .filter((line) => line.startsWith(prefix))
      .at(-1)
      ?.slice(prefix.length);
  }

  /** Resolves to the first line matching `pattern` after `from` characters of console output. */
  async waitFor(pattern: RegExp, { from = 0, timeoutMs = GUEST_TIMEOUT_MS } = {}): Promise<{ line: string; end: number }> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      const rest = this.#text.slice(from);
      for (const match of rest.matchAll(/^.*$/gm)) {
        if (pattern.test(match[0])) return { line: match[0], end: from + match.index + match[0].length };
      }
      if (exited || Date.now() > deadline) {
        const why = exited ? 'QEMU exited' : `not within ${timeoutMs / 1000} s`;
        throw new Error(`guest console: no line matching ${String(pattern)} (${why}); the console's end:\n${this.tail()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/**
 * A shell in the guest (guest-shell.sh on ttyS1, which QEMU serves on a Unix socket): runs a
 * script at a time, and answers with its exit status and output.
 */
export class GuestShell {
  readonly #lines: string[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  private constructor(private readonly socket: Socket) {
    createInterface({ input: socket }).on('line', (line) => {
      this.#lines.push(line);
      this.#wake?.();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  /** Connects to QEMU's socket for ttyS1 (`-serial chardev:` of a server socket at `path`), once the guest's shell is ready. */
  static async connect(path: string, guestConsole: Console): Promise<GuestShell> {
    let exited = false;
    void guestConsole.exited.then(() => (exited = true));
    for (;;) {
      const socket = await new Promise<Socket | undefined>((resolve) => {
        const attempt = connect(path, () => resolve(attempt)).once('error', () => resolve(undefined));
      });
      if (socket) {
        const shell = new GuestShell(socket);
        await shell.#nextLine(/^guest-shell: ready$/, GUEST_TIMEOUT_MS, guestConsole);
        return shell;
      }
      if (exited) throw new Error(`QEMU exited before its socket ${path} took a connection; the console's end:\n${guestConsole.tail()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Runs `script` (sh) in the guest. A process it leaves running must redirect its output. */
  async run(script: string, timeoutMs = GUEST_TIMEOUT_MS): Promise<{ status: number; output: string }> {
    this.socket.write(`${Buffer.from(script).toString('base64')}\n`);
    const [, status = '', output = ''] = /^status (\d+) (\S*)$/.exec(await this.#nextLine(/^status \d+ \S*$/, timeoutMs)) ?? [];
    return { status: Number(status), output: Buffer.from(output, 'base64').toString('utf8') };
  }

  /** Runs `script` in the guest and resolves to its output; rejects when it fails. */
  async exec(script: string, timeoutMs = GUEST_TIMEOUT_MS): Promise<string> {
    const { status, output } = await this.run(script, timeoutMs);
    if (status !== 0) throw new Error(`in the guest, exit ${status}: ${script}\n${output}`);
    return output;
  }

  close(): void {
    this.socket.destroy();
  }

  /** The first line matching `pattern`, dropping the lines before it (the tty's noise before the shell is ready). */
  async #nextLine(pattern: RegExp, timeoutMs: number, guestConsole?: Console): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.#lines.findIndex((line) => pattern.test(line));
      if (index >= 0) return this.#lines.splice(0, index + 1).at(-1)!;
      const why = this.#closed ? 'its socket closed' : Date.now() > deadline ? `not within ${timeoutMs / 1000} s` : undefined;
      if (why)
        throw new Error(
          `guest shell: no line matching ${String(pattern)} (${why})${guestConsole ? `; the console's end:\n${guestConsole.tail()}` : ''}`,
        );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()) + 1);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}
