// A line chart as hand-written SVG (no dependency): throughput relative to direct against the
// number of Services, log-scaled, one line per datapath.
import type { DatapathName } from '../datapaths/datapath.js';
import type { BenchResults } from '../results.js';
import { WORKLOADS, type WorkloadName } from '../workloads.js';
import { cell } from './summary.js';

export interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  /** [number of Services, ratio]; NaN ratios are left out. */
  points: [number, number][];
}

export interface ChartSpec {
  title: string;
  subtitle: string;
  /** The x ticks: every measured number of Services. */
  scales: number[];
  series: Series[];
}

const COLORS: Record<DatapathName, string> = { direct: '#7f7f7f', socklb: '#1f77b4', iptables: '#d62728', nftables: '#ff7f0e' };
const WIDTH = 760;
const HEIGHT = 440;
const PLOT = { left: 64, right: WIDTH - 150, top: 64, bottom: HEIGHT - 56 };

/** The chart of one workload's ratios to direct. */
export function ratioChart(results: BenchResults, workload: WorkloadName): string {
  const scales = results.scales.map((scale) => scale.services);
  const series = results.datapaths.map(({ name }) => ({
    name,
    color: COLORS[name],
    dashed: name === 'direct',
    points: scales.map((services): [number, number] => [services, cell(results, services, workload, name)?.ratio ?? Number.NaN]),
  }));
  const subtitle =
    `${results.quick ? 'QUICK SMOKE TEST, not a measurement. ' : ''}${results.machine.cpus} × ${results.machine.cpuModel}, ` +
    `Linux ${results.machine.kernel}`;
  return renderChart({ title: `Throughput relative to direct. ${WORKLOADS[workload].title}`, subtitle, scales, series });
}

export function renderChart(spec: ChartSpec): string {
  const ratios = spec.series.flatMap((series) => series.points.map(([, ratio]) => ratio)).filter(Number.isFinite);
  const yMax = Math.max(1.1, Math.ceil(Math.max(...ratios, 0) * 10 + 0.5) / 10);
  const [xMin, xMax] = logRange(spec.scales);
  const x = (services: number) => PLOT.left + ((Math.log10(services) - xMin) / (xMax - xMin)) * (PLOT.right - PLOT.left);
  const y = (ratio: number) => PLOT.bottom - (ratio / yMax) * (PLOT.bottom - PLOT.top);

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" ` +
      `font-family="sans-serif" font-size="12">`,
    `<title>${escape(spec.title)}</title>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${PLOT.left}" y="24" font-size="14" font-weight="bold">${escape(spec.title)}</text>`,
    `<text x="${PLOT.left}" y="42" fill="#555555">${escape(spec.subtitle)}</text>`,
  ];
  for (let tick = 0; tick <= yMax + 1e-9; tick += 0.2) {
    parts.push(`<line x1="${PLOT.left}" x2="${PLOT.right}" y1="${fmt(y(tick))}" y2="${fmt(y(tick))}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${PLOT.left - 8}" y="${fmt(y(tick) + 4)}" text-anchor="end">${tick.toFixed(1)}</text>`);
  }
  for (const services of spec.scales) {
    parts.push(`<line x1="${fmt(x(services))}" x2="${fmt(x(services))}" y1="${PLOT.top}" y2="${PLOT.bottom}" stroke="#f0f0f0"/>`);
    parts.push(`<text x="${fmt(x(services))}" y="${PLOT.bottom + 18}" text-anchor="middle">${shortNumber(services)}</text>`);
  }
  parts.push(
    `<line x1="${PLOT.left}" x2="${PLOT.right}" y1="${PLOT.bottom}" y2="${PLOT.bottom}" stroke="#333333"/>`,
    `<line x1="${PLOT.left}" x2="${PLOT.left}" y1="${PLOT.top}" y2="${PLOT.bottom}" stroke="#333333"/>`,
    `<text x="${(PLOT.left + PLOT.right) / 2}" y="${HEIGHT - 16}" text-anchor="middle">Services (log scale)</text>`,
    `<text transform="translate(18 ${(PLOT.top + PLOT.bottom) / 2}) rotate(-90)" text-anchor="middle">throughput / direct</text>`,
  );
  spec.series.forEach((series, i) => {
    const points = series.points.filter(([, ratio]) => Number.isFinite(ratio));
    const dash = series.dashed ? ' stroke-dasharray="6 4"' : '';
    if (points.length > 1) {
      const path = points.map(([services, ratio]) => `${fmt(x(services))},${fmt(y(ratio))}`).join(' ');
      parts.push(`<polyline points="${path}" fill="none" stroke="${series.color}" stroke-width="2.5"${dash}/>`);
    }
    for (const [services, ratio] of points) {
      parts.push(
        `<circle cx="${fmt(x(services))}" cy="${fmt(y(ratio))}" r="4" ` +
          `fill="${series.color}"><title>${escape(`${series.name}, ${services} Services: ${ratio.toFixed(3)}`)}</title></circle>`,
      );
    }
    const legendY = PLOT.top + 10 + i * 22;
    parts.push(
      `<line x1="${PLOT.right + 16}" x2="${PLOT.right + 44}" y1="${legendY}" y2="${legendY}" stroke="${series.color}" ` +
        `stroke-width="2.5"${dash}/>`,
    );
    parts.push(`<text x="${PLOT.right + 52}" y="${legendY + 4}">${escape(series.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** log10 bounds with a margin, and a decade of room when there is a single scale. */
function logRange(scales: number[]): [number, number] {
  const low = Math.log10(Math.min(...scales));
  const high = Math.log10(Math.max(...scales));
  const margin = Math.max(0.15, (high - low) * 0.05);
  return high - low < 1e-9 ? [low - 0.5, high + 0.5] : [low - margin, high + margin];
}

export function shortNumber(value: number): string {
  return value >= 1000 && value % 1000 === 0 ? `${value / 1000}k` : String(value);
}

function fmt(value: number): string {
  return value.toFixed(1);
}

function escape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}
