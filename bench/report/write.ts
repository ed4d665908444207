// Writes one run's results directory: results.json (everything), README.md (the report) and the
// chart; a full run's directory is also copied to bench/results/latest/, which docs/benchmarks.md
// shows.
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BenchResults } from '../results.js';
import { ratioChart } from './chart.js';
import { CHART_FILE, renderMarkdown } from './markdown.js';

export async function writeResults(directory: string, results: BenchResults): Promise<void> {
  await mkdir(directory, { recursive: true });
  // NaN (a median of nothing) is not JSON: null says "no figure".
  await writeFile(
    path.join(directory, 'results.json'),
    `${JSON.stringify(results, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2)}\n`,
  );
  await writeFile(path.join(directory, 'README.md'), renderMarkdown(results));
  if (results.options.workloads.includes('short')) await writeFile(path.join(directory, CHART_FILE), ratioChart(results, 'short'));
}

/** Replaces `latest` with a copy of `directory`. */
export async function copyToLatest(directory: string, latest: string): Promise<void> {
  await rm(latest, { recursive: true, force: true });
  await cp(directory, latest, { recursive: true });
}
