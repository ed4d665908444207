// Named network namespaces (/run/netns) and the ip(8) calls that configure them. These run from
// the root namespace but only act inside the named one: nothing here adds a route or an address
// to the root namespace.
import { execFile } from 'node:child_process';
import { access, readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { errorCode } from './errno.js';

const execFileAsync = promisify(execFile);

export const NETNS_DIR = '/run/netns';

export function netnsPath(name: string): string {
  return path.join(NETNS_DIR, name);
}

/** Runs ip(8); `input` is fed to stdin (for -batch -). Rejects with ip's own message. */
export async function ip(args: string[], input?: string): Promise<string> {
  const run = execFileAsync('ip', args, { timeout: 10_000 });
  run.child.stdin?.end(input);
  try {
    return (await run).stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`ip ${args.join(' ')}: ${stderr || String(error)}`, { cause: error });
  }
}

/** Runs the lines of `commands` (ip subcommands without "ip") inside one namespace with one process. */
export async function ipBatch(netns: string, commands: string[]): Promise<void> {
  await ip(['-n', netns, '-batch', '-'], `${commands.join('\n')}\n`);
}

export async function listNetns(): Promise<string[]> {
  try {
    return await readdir(NETNS_DIR);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}

/**
 * Deletes a namespace; a missing one is not an error. A process inside keeps the namespace, its
 * veth and its addresses alive after the name is gone, so whatever still runs in it is killed
 * first: only lab processes ever run in a lab namespace.
 */
export async function deleteNetns(name: string): Promise<void> {
  try {
    await access(netnsPath(name));
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;
    throw error;
  }
  const pids = await ip(['netns', 'pids', name]);
  for (const pid of pids.split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch (error) {
      if (errorCode(error) !== 'ESRCH') throw error;
    }
  }
  await ip(['netns', 'delete', name]);
}
