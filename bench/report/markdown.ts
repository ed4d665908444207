// The human-readable report of one results.json: tables per workload and for the control plane,
// with the machine and settings they came from. docs/benchmarks.md quotes it.
import type { DatapathName } from '../datapaths/datapath.js';
import type { BenchResults } from '../results.js';
import { median, percentile } from '../stats.js';
import { WORKLOADS, type WorkloadName } from '../workloads.js';
import { shortNumber } from './chart.js';
import { cell } from './summary.js';

export const CHART_FILE = 'chart.svg';

export function renderMarkdown(results: BenchResults): string {
  const { machine, options } = results;
  const lines: string[] = [`# socklb benchmark, ${results.startedAt.slice(0, 10)}`, ''];
  if (results.quick) {
    lines.push(
      '> **QUICK MODE: a smoke test of the harness.** One short round per workload: ' +
        'these figures say the benchmark runs, not how fast anything is.',
      '',
    );
  }
  lines.push(
    `Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}.`,
    `Tools: ${Object.entries(machine.tools)
      .map(([tool, version]) => `${tool} (${version})`)
      .join(', ')}.`,
    `Load average (1, 5, 15 min) when each scale started: ` +
      `${results.scales.map((scale) => `${shortNumber(scale.services)}: ${scale.loadAverage}`).join('; ')} ` +
      `(other work on the machine shows here).`,
    `Settings: ${options.endpointsPerService} endpoints per Service; ` +
      `rounds × seconds per run: ${options.workloads.map((w) => `${w} ${options.rounds[w]} × ${options.seconds[w]} s`).join(', ')}; ` +
      `iptables backend ${options.iptablesBackend}` +
      (results.perfRecorded
        ? '; every run recorded by `perf record --all-cpus` (--perf), which takes some of the CPU the runs would have had'
        : '') +
      `. Started ${results.startedAt}, finished ${results.finishedAt}.`,
    '',
  );

  for (const workload of options.workloads) lines.push(...workloadSection(results, workload), '');
  lines.push(...programmingSection(results), '', ...endpointChangeSection(results), '', ...footprintSection(results), '');

  const notes = [
    ...results.unavailable.map(({ name, reason }) => `- **${name}**: not measured: ${reason}.`),
    ...results.scales.flatMap((scale) =>
      scale.notMeasured.map((entry) => `- ${shortNumber(scale.services)} Services, **${entry.datapath}**: not measured: ${entry.reason}.`),
    ),
    ...results.scales.flatMap((scale) =>
      scale.failures.map(
        (failure) => `- ${shortNumber(scale.services)} Services, ${failure.datapath}, ${failure.stage} FAILED: ${failure.reason}`,
      ),
    ),
  ];
  if (notes.length > 0) lines.push('## Not measured, and failures', '', ...notes, '');
  return `${lines.join('\n').trimEnd()}\n`;
}

function workloadSection(results: BenchResults, workload: WorkloadName): string[] {
  const { title, unit } = WORKLOADS[workload];
  const names = results.datapaths.map((datapath) => datapath.name);
  const lines = [
    `## ${title}`,
    '',
    `Each cell: ${unit}s per second relative to direct (median of per-round ratios; ` +
      `direct: its own rate), then CPU µs per ${unit}, whole machine / client cgroup (medians).`,
    '',
    `| Services | ${names.join(' | ')} |`,
    `|---:|${names.map(() => '---:|').join('')}`,
  ];
  for (const { services } of results.scales) {
    const row = [shortNumber(services)];
    for (const name of names) {
      const measured = cell(results, services, workload, name);
      if (measured === undefined) {
        row.push('–');
        continue;
      }
      const rate = name === 'direct' ? `${group(measured.rate)}/s` : ratio(measured.ratio);
      const errors = measured.errors > 0 ? ` (${group(measured.errors)} errors)` : '';
      row.push(`${rate} · ${cpu(measured.cpuPerOperationUs)} / ${cpu(measured.clientCpuPerOperationUs)} µs${errors}`);
    }
    lines.push(`| ${row.join(' | ')} |`);
  }
  if (workload === 'short') lines.push('', `![${title}](${CHART_FILE})`);
  return lines;
}

function programmingSection(results: BenchResults): string[] {
  const names = programmedDatapaths(results, (scale) => scale.programming.map((entry) => entry.datapath));
  const lines = [
    '## Programming N Services from nothing',
    '',
    'Seconds from the first write to a datapath that translates every Service. socklb: ' +
      'manifests renamed into place until the agent logs "datapath synced" (in brackets: ' +
      'the part of it the agent spent planning and writing its maps, the rest is reading the manifests); ' +
      'iptables: `iptables-restore --noflush`; nftables: `nft -f`.',
    '',
    `| Services | ${names.join(' | ')} |`,
    `|---:|${names.map(() => '---:|').join('')}`,
  ];
  for (const scale of results.scales) {
    const row = names.map((name) => {
      const entry = scale.programming.find((candidate) => candidate.datapath === name);
      if (entry === undefined) return '–';
      const detail = entry.detail;
      const extra = [
        detail.agentSyncMs === undefined ? '' : `(agent ${milliseconds(Number(detail.agentSyncMs))} ms)`,
        Number(detail.failedFrontends) > 0 ? `${group(Number(detail.failedFrontends))} frontends failed` : '',
      ].filter(Boolean);
      return `${entry.seconds.toFixed(2)}${extra.length > 0 ? ` ${extra.join(', ')}` : ''}`;
    });
    lines.push(`| ${shortNumber(scale.services)} | ${row.join(' | ')} |`);
  }
  return lines;
}

function endpointChangeSection(results: BenchResults): string[] {
  const names = programmedDatapaths(results, (scale) => scale.endpointChanges.map((entry) => entry.datapath));
  const lines = [
    '## One EndpointSlice change to the datapath',
    '',
    'Milliseconds, p50 / p99 (n changes). socklb: from the rename that puts the new manifest file in place to the new backend in ' +
      'the pinned maps (read by lookups); iptables and nftables: ' +
      "kube-proxy's partial sync (`iptables-restore --noflush` of KUBE-SERVICES and the changed chains; " +
      '`nft` listing chains and sets, then the changed chains).',
    '',
    `| Services | ${names.join(' | ')} |`,
    `|---:|${names.map(() => '---:|').join('')}`,
  ];
  for (const scale of results.scales) {
    const row = names.map((name) => {
      const changes = scale.endpointChanges.find((entry) => entry.datapath === name)?.changes ?? [];
      if (changes.length === 0) return '–';
      const latencies = changes.map((change) => change.latencyMs);
      const parts = [...new Set(changes.flatMap((change) => Object.keys(change.detail)))].map(
        (part) => `${part} ${milliseconds(median(changes.map((change) => change.detail[part] ?? Number.NaN)))}`,
      );
      return (
        `${milliseconds(median(latencies))} / ${milliseconds(percentile(latencies, 99))} ` +
        `(${changes.length})${parts.length > 0 ? `<br>p50 ${parts.join(', ')}` : ''}`
      );
    });
    lines.push(`| ${shortNumber(scale.services)} | ${row.join(' | ')} |`);
  }
  return lines;
}

function footprintSection(results: BenchResults): string[] {
  const rows = results.scales.flatMap((scale) => {
    const footprint = scale.footprints.find((entry) => entry.datapath === 'socklb')?.footprint;
    if (footprint === undefined) return [];
    const number = (key: string) => Number(footprint[key]);
    return [
      `| ${shortNumber(scale.services)} | ${number('agentRssMiB').toFixed(0)} (${number('agentPeakRssMiB').toFixed(0)}) ` +
        `| ${number('agentIdleCpuPercent').toFixed(1)} | ${number('mapMemlockMiB').toFixed(1)} | ` +
        `${group(number('programmedFrontends'))} |`,
    ];
  });
  if (rows.length === 0) return [];
  return [
    "## socklb's footprint",
    '',
    'Agent resident memory after programming and the endpoint changes (peak in brackets), its CPU while idle for 5 s, ' +
      "and the memory the kernel charges for socklb's maps (`bpftool map show`, bytes_memlock; " +
      'the hash maps are preallocated to their capacity).',
    '',
    '| Services | agent RSS MiB (peak) | agent idle CPU % | BPF maps MiB | frontends in the maps |',
    '|---:|---:|---:|---:|---:|',
    ...rows,
  ];
}

function programmedDatapaths(results: BenchResults, names: (scale: BenchResults['scales'][number]) => DatapathName[]): DatapathName[] {
  const present = new Set(results.scales.flatMap(names));
  return results.datapaths.map((datapath) => datapath.name).filter((name) => present.has(name));
}

function ratio(value: number): string {
  if (!Number.isFinite(value)) return '–';
  return value < 0.1 ? value.toFixed(3) : value.toFixed(2);
}

function cpu(microseconds: number): string {
  return microseconds >= 10 ? microseconds.toFixed(0) : microseconds.toFixed(1);
}

function milliseconds(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

function group(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}
