// The report is derived from results.json alone: ratios are paired by round, the chart is valid
// SVG with a line per datapath, and a quick run says it is a smoke test.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderChart, ratioChart } from '../report/chart.js';
import { renderMarkdown } from '../report/markdown.js';
import { cell } from '../report/summary.js';
import { RESULTS_FORMAT, type BenchResults, type TrafficSample } from '../results.js';
import { median, percentile } from '../stats.js';
import type { DatapathName } from '../datapaths/datapath.js';

function sample(datapath: DatapathName, services: number, round: number, rate: number): TrafficSample {
  return {
    workload: 'short',
    datapath,
    services,
    round,
    rate,
    operations: rate * 5,
    durationS: 5,
    errors: 0,
    errorDetail: {},
    latencyUs: { mean: 1, p50: 1, p90: 1, p99: 2, max: 3 },
    cpuUs: { machine: rate * 50, client: rate * 10 },
    cpuPerOperationUs: { machine: 10, client: 2 },
  };
}

function results(quick: boolean): BenchResults {
  const scales = [10, 1000];
  const samples = scales.flatMap((services) =>
    [1, 2, 3].flatMap((round) => [
      // direct drifts from round to round; socklb follows it at 0.98, iptables at 0.5.
      sample('direct', services, round, 1000 * round),
      sample('socklb', services, round, 980 * round),
      sample('iptables', services, round, 500 * round),
    ]),
  );
  return {
    format: RESULTS_FORMAT,
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:30:00.000Z',
    quick,
    machine: { cpus: 2, cpuModel: 'Test CPU', memoryGiB: 24, kernel: '6.18', node: 'v20', tools: { wrk: 'wrk 4.1.0' } },
    options: {
      quick,
      scales,
      endpointsPerService: 2,
      datapaths: ['direct', 'socklb', 'iptables'],
      workloads: ['short'],
      rounds: { short: 3, keepalive: 1, connect: 1, udp: 1 },
      seconds: { short: 5, keepalive: 1, connect: 1, udp: 1 },
      endpointChanges: 3,
      endpointChangeBudgetSeconds: 10,
      iptablesBackend: 'legacy',
      nftMaxServices: 10000,
    },
    datapaths: [
      { name: 'direct', description: '' },
      { name: 'socklb', description: '' },
      { name: 'iptables', description: '' },
    ],
    unavailable: [{ name: 'ipvs', reason: 'no ip_vs' }],
    scales: scales.map((services) => ({
      services,
      endpoints: services * 2,
      loadAverage: '0.1 0.1 0.1',
      programming: [{ datapath: 'socklb', seconds: 0.5, detail: { agentSyncMs: 100, failedFrontends: 0 } }],
      endpointChanges: [
        {
          datapath: 'socklb',
          changes: [
            { latencyMs: 30, detail: { agentSyncMs: 1 } },
            { latencyMs: 40, detail: { agentSyncMs: 2 } },
          ],
        },
      ],
      footprints: [],
      notMeasured: [],
      failures: [],
    })),
    samples,
  };
}

describe('benchmark report', () => {
  it('medians and percentiles interpolate between ranks', () => {
    assert.equal(median([3, 1, 2, 4]), 2.5);
    assert.equal(percentile([1, 2, 3, 4, 5], 100), 5);
    assert.ok(Number.isNaN(median([])));
  });

  it('pairs each run with the same round of direct, so that a drift between rounds cancels', () => {
    const socklb = cell(results(false), 1000, 'short', 'socklb');
    assert.ok(socklb);
    assert.equal(socklb.ratio.toFixed(3), '0.980');
    assert.equal(socklb.rate, 1960);
    assert.equal(cell(results(false), 1000, 'short', 'direct')?.ratio, 1);
  });

  it('writes a table per workload with the chart, the control plane, and what was not measured', () => {
    const markdown = renderMarkdown(results(false));
    assert.match(markdown, /\| 1k \| 2,000\/s · 10 \/ 2\.0 µs \| 0\.98 · 10 \/ 2\.0 µs \| 0\.50 · 10 \/ 2\.0 µs \|/);
    assert.match(markdown, /!\[.*\]\(chart\.svg\)/);
    assert.match(markdown, /\*\*ipvs\*\*: not measured: no ip_vs/);
    assert.doesNotMatch(markdown, /QUICK/);
    assert.match(renderMarkdown(results(true)), /QUICK MODE: a smoke test/);
  });

  it('draws one line per datapath, direct dashed, on a log scale', () => {
    const svg = ratioChart(results(false), 'short');
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.equal(svg.match(/<polyline /g)?.length, 3);
    assert.equal(svg.match(/stroke-dasharray/g)?.length, 2); // direct's line and its legend
    assert.match(svg, />1k</);
  });

  it('leaves out points without a figure and escapes text', () => {
    const svg = renderChart({
      title: 'a < b',
      subtitle: '',
      scales: [10],
      series: [{ name: 'x', color: '#000', points: [[10, Number.NaN]] }],
    });
    assert.match(svg, /a &lt; b/);
    assert.doesNotMatch(svg, /<circle/);
  });
});
