// What the figures were measured on, for the JSON and the report.
import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface MachineDescription {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  /** Each tool's own version line. */
  tools: Record<string, string>;
}

const TOOL_VERSIONS: Record<string, string[]> = {
  wrk: ['wrk', '-v'],
  nginx: ['nginx', '-v'],
  iperf3: ['iperf3', '--version'],
  'iptables-legacy': ['iptables-legacy', '--version'],
  'iptables-nft': ['iptables-nft', '--version'],
  nft: ['nft', '--version'],
  bpftool: ['bpftool', '--version'],
};

export async function describeMachine(): Promise<MachineDescription> {
  const tools: Record<string, string> = {};
  await Promise.all(
    Object.entries(TOOL_VERSIONS).map(async ([tool, [file, ...args]]) => {
      tools[tool] = await firstLine(file!, args);
    }),
  );
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    node: process.version,
    tools,
  };
}

/** The first line a tool prints about itself (some print it on stderr, some exit non-zero). */
async function firstLine(file: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, { timeout: 5_000 });
    return (stdout || stderr).split('\n')[0]?.trim() ?? '';
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; code?: string };
    const text = failed.stdout || failed.stderr;
    return text ? (text.split('\n')[0]?.trim() ?? '') : `unavailable (${failed.code ?? 'error'})`;
  }
}
