// `socklb bench --perf <dir>`: where each datapath's CPU goes. Every measured traffic run is
// recorded by `perf record --all-cpus` (the client, the backends, the softirqs and the datapath's
// own kernel work all share two CPUs, and the difference between datapaths is spread over them),
// and the report puts each symbol's samples per 1000 operations side by side, datapath against
// direct: what socklb's programs, map operations and locks cost, and what they change elsewhere.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { promisify } from 'node:util';
import type { DatapathName } from './datapaths/datapath.js';
import type { WorkloadName } from './workloads.js';

const execFileAsync = promisify(execFile);

/** Samples per second per CPU: enough for symbols of 0.1 % over a few seconds' run. */
const SAMPLE_HZ = 1999;
/**
 * perf's control descriptors in the child (`perf record --control fd:3,4`): it starts with its events
 * disabled and enables them when told, so that a recording covers the measured run exactly (opening
 * the events on every CPU takes perf about 250 ms here).
 */
const CONTROL_FD = 3;
const ACK_FD = 4;
/** Symbols shown per datapath, the largest differences to direct first. */
const SYMBOLS_SHOWN = 30;
/**
 * The idle loop's functions: a CPU doing nothing is not a cost. Matched by symbol, not by the idle
 * task's name: interrupts and softirqs taken on an idle CPU are charged to `swapper` too, and they
 * are work (a packet's receive path, for one).
 */
const IDLE_SYMBOL = /^\[k\] \w*(idle|safe_halt|mwait)\w*$/;
/** The report, beside the recordings (not README.md: `--perf` may name the results' own directory). */
const REPORT_FILE = 'perf.md';

export interface PerfRun {
  file: string;
  workload: WorkloadName;
  datapath: DatapathName;
  services: number;
  round: number;
  operations: number;
}

export class PerfRecorder {
  readonly #runs: PerfRun[] = [];

  private constructor(readonly directory: string) {}

  static async open(directory: string): Promise<PerfRecorder> {
    await execFileAsync('perf', ['--version']).catch(() => {
      throw new Error('--perf needs perf (Debian: apt install linux-perf)');
    });
    await mkdir(directory, { recursive: true });
    return new PerfRecorder(directory);
  }

  /** Runs `measure` while perf records every CPU; the recording ends with it. A perf that fails fails the run. */
  async record<T extends { operations: number }>(labels: Omit<PerfRun, 'file' | 'operations'>, measure: () => Promise<T>): Promise<T> {
    const file = `${labels.workload}-${labels.services}-${labels.datapath}-${labels.round}.data`;
    const args = [
      'record',
      '--all-cpus',
      '--freq',
      String(SAMPLE_HZ),
      '--delay=-1',
      '--control',
      `fd:${CONTROL_FD},${ACK_FD}`,
      '--output',
      path.join(this.directory, file),
      '--quiet',
    ];
    const perf = spawn('perf', args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    let stderr = '';
    perf.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
      perf.once('error', (error) => resolve({ code: null, signal: null, error }));
      perf.once('close', (code, signal) => resolve({ code, signal }));
    });
    let result: T;
    try {
      await perfCommand(perf, 'enable', exited);
      result = await measure();
      await perfCommand(perf, 'disable', exited);
    } finally {
      perf.kill('SIGINT');
      const { code, signal, error } = await exited;
      // perf writes its file on SIGINT, then ends by it (or exits 0 or 130).
      const recorded = signal === 'SIGINT' || code === 0 || code === 130;
      // eslint-disable-next-line no-unsafe-finally -- a failed perf is reported even over the run's own error, often its cause
      if (error || !recorded) throw new Error(`perf record ${file}: ${error?.message ?? `exit ${code ?? signal}`}: ${stderr.trim()}`);
    }
    this.#runs.push({ ...labels, file, operations: result.operations });
    await writeFile(path.join(this.directory, 'runs.json'), `${JSON.stringify(this.#runs, null, 2)}\n`);
    return result;
  }

  /** Reads every recording back and writes the report beside them; its path. */
  async writeReport(): Promise<string> {
    const recorded: RecordedRun[] = [];
    for (const run of this.#runs)
      recorded.push({ ...run, symbols: parsePerfReport(await perfReport(path.join(this.directory, run.file))) });
    const report = path.join(this.directory, REPORT_FILE);
    await writeFile(report, perfMarkdown(compareToDirect(recorded)));
    return report;
  }
}

/** Sends perf a control command and waits for its acknowledgement; perf ending first fails. */
async function perfCommand(perf: ChildProcess, command: 'enable' | 'disable', exited: Promise<unknown>): Promise<void> {
  const acknowledged = once(perf.stdio[ACK_FD]!, 'data').then(() => true);
  (perf.stdio[CONTROL_FD] as Writable).write(`${command}\n`);
  if (!(await Promise.race([acknowledged, exited.then(() => false)])))
    throw new Error(`perf record stopped before it acknowledged "${command}"`);
}

async function perfReport(file: string): Promise<string> {
  const args = ['report', '--input', file, '--no-children', '--sort', 'comm,sym', '--fields', 'sample,comm,sym', '--stdio'];
  const { stdout } = await execFileAsync('perf', args, { maxBuffer: 64 * 2 ** 20 });
  return stdout;
}

export interface SymbolSamples {
  command: string;
  symbol: string;
  samples: number;
}

/** The lines of `perf report --fields sample,comm,sym`: `   1234  nginx  [k] tcp_v4_rcv`; a command may hold spaces (`V8 DefaultWorke`). */
export function parsePerfReport(text: string): SymbolSamples[] {
  const symbols: SymbolSamples[] = [];
  for (const line of text.split('\n')) {
    const match = /^\s*(\d+)\s+(.+?)\s+(\[[^\]]+\]\s+.+?)\s*$/.exec(line);
    if (match) symbols.push({ samples: Number(match[1]), command: match[2]!, symbol: match[3]! });
  }
  return symbols;
}

export interface RecordedRun extends PerfRun {
  symbols: SymbolSamples[];
}

/** One workload at one scale: busy samples per 1000 operations, by datapath, in total and by symbol. */
export interface PerfComparison {
  workload: WorkloadName;
  services: number;
  runs: Partial<Record<DatapathName, number>>;
  total: Partial<Record<DatapathName, number>>;
  bySymbol: Map<string, Partial<Record<DatapathName, number>>>;
}

/** Pools the runs of each datapath (samples over operations: a long run weighs more), the idle loop left out. */
export function compareToDirect(runs: readonly RecordedRun[]): PerfComparison[] {
  const comparisons = new Map<
    string,
    PerfComparison & { samples: Map<DatapathName, Map<string, number>>; operations: Map<DatapathName, number> }
  >();
  for (const run of runs) {
    const id = `${run.workload} ${run.services}`;
    let comparison = comparisons.get(id);
    if (!comparison)
      comparisons.set(
        id,
        (comparison = {
          workload: run.workload,
          services: run.services,
          runs: {},
          total: {},
          bySymbol: new Map(),
          samples: new Map(),
          operations: new Map(),
        }),
      );
    comparison.runs[run.datapath] = (comparison.runs[run.datapath] ?? 0) + 1;
    comparison.operations.set(run.datapath, (comparison.operations.get(run.datapath) ?? 0) + run.operations);
    const samples = comparison.samples.get(run.datapath) ?? new Map<string, number>();
    comparison.samples.set(run.datapath, samples);
    for (const { command, symbol, samples: count } of run.symbols) {
      if (IDLE_SYMBOL.test(symbol)) continue;
      // A kernel function is the same code whoever runs it; a user-space symbol (often a bare
      // address) means something only in its own program.
      const row = symbol.startsWith('[k]') ? symbol : `${symbol} (${command})`;
      samples.set(row, (samples.get(row) ?? 0) + count);
    }
  }
  return [...comparisons.values()].map(({ samples, operations, ...comparison }) => {
    for (const [datapath, bySymbol] of samples) {
      const perThousand = 1000 / (operations.get(datapath) || Number.NaN);
      comparison.total[datapath] = [...bySymbol.values()].reduce((sum, count) => sum + count, 0) * perThousand;
      for (const [symbol, count] of bySymbol) {
        const row = comparison.bySymbol.get(symbol) ?? {};
        row[datapath] = count * perThousand;
        comparison.bySymbol.set(symbol, row);
      }
    }
    return comparison;
  });
}

export function perfMarkdown(comparisons: readonly PerfComparison[]): string {
  const lines = [
    '# Where the CPU goes: perf samples per 1000 operations',
    '',
    `\`perf record --all-cpus --freq ${SAMPLE_HZ}\` over every measured run (the idle loop left out), pooled by datapath:`,
    'samples per 1000 operations, so a datapath that spends more per connection shows more, whatever its rate.',
    'A sample taken while interrupts are disabled lands where they are enabled again',
    '(`_raw_spin_unlock_irqrestore`): the time inside irqsave locks (BPF hash buckets, LRU lists) shows there.',
  ];
  for (const comparison of comparisons) {
    const datapaths = (Object.keys(comparison.total) as DatapathName[]).sort((a, b) =>
      a === 'direct' ? -1 : b === 'direct' ? 1 : a.localeCompare(b),
    );
    lines.push('', `## ${comparison.workload}, ${comparison.services} Services`, '');
    const busy = datapaths.map(
      (datapath) => `${datapath} ${format(comparison.total[datapath])} (${plural(comparison.runs[datapath] ?? 0, 'run')})`,
    );
    lines.push(`Busy samples per 1000 operations: ${busy.join(', ')}.`);
    for (const datapath of datapaths.filter((name) => name !== 'direct')) {
      const rows = [...comparison.bySymbol]
        .map(([symbol, row]) => ({ symbol, direct: row.direct ?? 0, other: row[datapath] ?? 0 }))
        .sort((a, b) => b.other - b.direct - (a.other - a.direct))
        .slice(0, SYMBOLS_SHOWN);
      lines.push(
        '',
        `${datapath} against direct, the ${SYMBOLS_SHOWN} symbols it spends most more on:`,
        '',
        `| symbol | direct | ${datapath} | difference |`,
        '|---|---:|---:|---:|',
      );
      for (const row of rows)
        lines.push(`| \`${row.symbol}\` | ${format(row.direct)} | ${format(row.other)} | ${format(row.other - row.direct)} |`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function format(value: number | undefined): string {
  return value === undefined || Number.isNaN(value) ? '–' : value.toFixed(2);
}
