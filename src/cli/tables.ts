// The text tables of the inspection commands, made from the descriptions the datapath reads
// (src/datapath/dump.ts, counters.ts) and printed as they are; `-o json` prints the descriptions.

import { repairMessage } from '../agent/attachment-keeper.js';
import type { AgentStatusReport } from '../agent/status.js';
import { FRONTEND_SKIP } from '../datapath/layout.js';
import { UNSERVED_ADDRESS_SERVICE_ID, type FrontendStats } from '../datapath/counters.js';
import type { BackendDescription, FrontendDescription, SocketDescription } from '../datapath/dump.js';
import { fillText, pressureMessage, type MapPressure } from '../datapath/map-pressure.js';
import type { PinnedLink, PinnedMap } from '../pins/status.js';
import { describeBypass, type Sandbox } from '../sandbox/registry.js';
import type { GuestEntry, SandboxEntry } from '../sandbox/protocol.js';

/** Aligned text columns; the last one is not padded. */
export function formatColumns(rows: readonly string[][]): string {
  const columns = Math.max(...rows.map((row) => row.length));
  const widths = Array.from({ length: columns - 1 }, (_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)));
  return rows
    .map((row) => row.map((cell, column) => (column < widths.length ? cell.padEnd(widths[column] ?? 0) : cell)).join('  '))
    .join('\n');
}

/** `wide` adds the service id, flags, affinity timeout and slot count. */
export function formatFrontendTable(frontends: FrontendDescription[], wide = false): string {
  const backends = (f: FrontendDescription) =>
    f.backends.length > 0
      ? f.backends.join(',')
      : f.flags & FRONTEND_SKIP
        ? '<none: left untranslated (socklb.io/skip)>'
        : '<none: refuses connections>';
  if (!wide) return formatColumns([['FRONTEND', 'SERVICE', 'BACKENDS'], ...frontends.map((f) => [f.frontend, f.service, backends(f)])]);
  return formatColumns([
    ['FRONTEND', 'SERVICE', 'ID', 'FLAGS', 'AFFINITY', 'SLOTS', 'BACKENDS'],
    ...frontends.map((f) => [
      f.frontend,
      f.service,
      String(f.serviceId),
      `0x${f.flags.toString(16)}`,
      f.affinityTimeoutSeconds > 0 ? `ClientIP ${f.affinityTimeoutSeconds}s` : 'None',
      String(f.backends.length),
      backends(f),
    ]),
  ]);
}

/** `wide` adds the Services and each frontend's slots. */
export function formatBackendTable(backends: readonly BackendDescription[], wide = false): string {
  const frontends = (b: BackendDescription) => (b.frontends.length > 0 ? b.frontends.map((f) => f.frontend).join(',') : '<unused>');
  if (!wide) return formatColumns([['ID', 'BACKEND', 'FRONTENDS'], ...backends.map((b) => [String(b.id), b.backend, frontends(b)])]);
  return formatColumns([
    ['ID', 'BACKEND', 'SERVICES', 'FRONTENDS (SLOTS)'],
    ...backends.map((b) => [
      String(b.id),
      b.backend,
      [...new Set(b.frontends.map((f) => f.service))].join(',') || '<none>',
      b.frontends.map((f) => `${f.frontend}[${f.slots.join(',')}]`).join(' ') || '<unused>',
    ]),
  ]);
}

/** The row of service id 0 (describeStats) reads `<unserved service address>`. */
export function formatStatsTable(stats: readonly FrontendStats[]): string {
  const unserved = (s: FrontendStats) => s.serviceId === UNSERVED_ADDRESS_SERVICE_ID;
  return formatColumns([
    ['SERVICE', 'FRONTEND', 'CONNECTS', 'REFUSED', 'DATAGRAMS', 'REVERSE-NAT'],
    ...stats.map((s) => [
      unserved(s) ? '<unserved service address>' : s.service || '<unnamed>',
      unserved(s) ? '-' : s.frontend,
      String(s.connects),
      String(s.refused),
      String(s.datagrams),
      String(s.reverseNat),
    ]),
  ]);
}

export function formatSocketTable(sockets: readonly SocketDescription[]): string {
  return formatColumns([
    ['NETNS', 'COOKIE', 'PROTO', 'STATE', 'TRANSLATIONS'],
    ...sockets.map((socket) => [
      String(socket.netns),
      socket.cookie,
      `${socket.protocol}/${socket.family}`,
      socket.state,
      socket.translations.join(', '),
    ]),
  ]);
}

/** The registered sandboxes, as `socklb sandbox list` shows them. */
/** Cgroup sandboxes, then guests with how their streams go. */
export function formatSandboxTable(sandboxes: readonly SandboxEntry[]): string {
  const cgroups = sandboxes.filter((sandbox): sandbox is Sandbox => 'cgroup' in sandbox);
  const guests = sandboxes.filter((sandbox): sandbox is GuestEntry => 'guest' in sandbox);
  const tables: string[] = [];
  if (cgroups.length > 0 || guests.length === 0)
    tables.push(
      formatColumns([
        ['ID', 'CGROUP', 'UNTRANSLATED'],
        ...cgroups.map((sandbox) => [sandbox.id, sandbox.cgroup, describeBypass(sandbox) ?? '-']),
      ]),
    );
  if (guests.length > 0) {
    tables.push(
      formatColumns([
        ['ID', 'GUEST', 'PHASE', 'MARKER', 'LAG', 'QUEUED', 'SNAPSHOTS', 'LAST ERROR'],
        ...guests.map((guest) => [
          guest.id,
          guest.guest,
          guest.phase,
          guest.marker ?? '-',
          guest.lag === undefined ? '-' : String(guest.lag),
          `${guest.queuedBytes}B`,
          String(guest.snapshots),
          guest.lastError ?? '-',
        ]),
      ]),
    );
  }
  return tables.join('\n\n');
}

/** The agent as `status` found it. */
export type AgentAnswer = ({ running: true } & AgentStatusReport) | { running: false; reason: string };

export interface StatusReport {
  agent: AgentAnswer;
  pinDir: string;
  attachments: PinnedLink[];
  /** pressure: none while the map is not full, nor evicting (src/datapath/map-pressure.ts). */
  maps: (PinnedMap & { pressure?: MapPressure })[];
}

/** /healthz's verdict in words: before the first sync it is not a failure, only not ready. */
function verdict(agent: { healthy: boolean; lastSync: string | null }): string {
  if (agent.healthy) return 'healthy';
  return agent.lastSync === null ? 'not ready: the first sync is not done' : 'UNHEALTHY: an update has waited too long';
}

export function formatStatus(report: StatusReport): string {
  const { agent } = report;
  const lines: string[] = [];
  if (agent.running) {
    lines.push(
      `agent: running (pid ${agent.pid}), ${verdict(agent)}; ` +
        `last sync ${agent.lastSync ?? 'not yet'}${agent.lastSync === null ? '' : `, all updates in by ${agent.lastUpdated}`}; ` +
        `${agent.frontends} frontends, ${agent.backends} backends`,
    );
    if (agent.failedFrontends.length === 0 && agent.failedAddresses.length === 0 && agent.inputProblems.length === 0)
      lines.push('problems: none');
    for (const { frontend, error } of agent.failedFrontends)
      lines.push(`problem: frontend ${frontend} is not in the datapath (retried): ${error}`);
    for (const { address, error } of agent.failedAddresses) lines.push(`problem: ${address}: its update failed (retried): ${error}`);
    for (const problem of agent.inputProblems) lines.push(`problem: ${problem.source}: ${problem.object}: ${problem.reason}`);
  } else {
    lines.push(`agent: not running: ${agent.reason}; the pinned datapath keeps serving what it was last given`);
  }
  lines.push('', `attachments (${report.pinDir}):`);
  lines.push(
    report.attachments.length === 0
      ? '<none: no cgroup is translated>'
      : formatColumns([
          ['CGROUP', 'SANDBOX', 'PROGRAM', 'LINK', 'PROGRAM ID', 'HEALTH'],
          ...report.attachments.map((link) => [
            link.cgroup,
            link.sandbox ?? '-',
            link.program,
            link.error ? `<${link.error}>` : String(link.linkId),
            String(link.programId),
            link.problem?.reason ?? 'ok',
          ]),
        ]),
  );
  if (agent.running) {
    lines.push(
      '',
      agent.attachmentRepairs.length === 0 ? 'repairs: none since the agent started' : 'repairs (the latest first):',
      ...agent.attachmentRepairs.map((repair) => `${repair.at} ${repairMessage(repair)}`),
    );
  }
  lines.push('', 'maps:');
  lines.push(
    formatColumns([
      ['MAP', 'TYPE', 'ID', 'ENTRIES', 'CAPACITY', 'FILL', 'PRESSURE'],
      ...report.maps.map((map) => [
        map.name,
        map.type,
        String(map.id),
        map.entries === null ? '-' : String(map.entries),
        String(map.capacity),
        fillText(map),
        map.pressure ?? '-',
      ]),
    ]),
  );
  const pressures = report.maps.flatMap((map) => (map.pressure ? [`pressure: ${pressureMessage(map, map.pressure)}`] : []));
  lines.push(...(pressures.length > 0 ? pressures : ['pressure: none']));
  return lines.join('\n');
}
