// `socklb trace`: the calls the programs translate or refuse, live, one line each, streamed by the
// agent over its control socket (src/agent/tracing.ts). It runs until Ctrl-C, or until the agent
// stops.

import { type Command, Option } from 'commander';
import { followControlTrace } from '../sandbox/control-socket.js';
import type { TraceFilter, TraceLost, TraceMessage, TraceRecord } from '../sandbox/protocol.js';
import { controlSocketOption, timeoutOption } from './sandbox.js';

/** Who made a call: its sandbox, else its cgroup, else the cgroup id the agent could not place. */
function caller(record: TraceRecord): string {
  if (record.sandbox !== undefined) return `sandbox ${record.sandbox}`;
  if (record.cgroup !== undefined) return `cgroup ${record.cgroup}`;
  return `cgroup id ${record.cgroupId}`;
}

/**
 * One call as a line:
 *   TIME CALLER netns COOKIE socket COOKIE PROTOCOL HOOK FRONTEND SERVICE -> BACKEND slot N
 *   TIME CALLER netns COOKIE socket COOKIE PROTOCOL HOOK FRONTEND SERVICE refused: REASON
 */
export function formatTraceLine(record: TraceRecord): string {
  const service = record.service ?? '(no Service)';
  const outcome =
    record.result === 'translated' && record.backend !== undefined
      ? `-> ${record.backend} slot ${record.slot ?? '?'}`
      : `refused: ${record.result}`;
  return [
    record.time,
    caller(record),
    `netns ${record.netnsCookie}`,
    `socket ${record.socketCookie}`,
    record.protocol,
    record.hook,
    record.frontend,
    service,
    outcome,
  ].join(' ');
}

/** The lost-events line: what the tracer missed since it started, and why. */
export function formatLostLine(lost: TraceLost): string {
  return `lost ${lost.ring + lost.agent} events since the trace started: ${lost.ring} when the ring was full, ${lost.agent} while this trace read too slowly`;
}

/** What a trace shows, in words. */
export function describeFilter(filter: TraceFilter): string {
  const parts = [
    filter.protocol === undefined ? 'every call' : `${filter.protocol} calls`,
    filter.sandbox === undefined ? undefined : `of sandbox ${filter.sandbox}`,
    filter.service === undefined ? undefined : `to Service ${filter.service}`,
  ];
  return parts.filter((part) => part !== undefined).join(' ');
}

interface TraceOptions {
  sandbox?: string;
  service?: string;
  protocol?: 'tcp' | 'udp';
  output: 'text' | 'json';
  controlSocket: string;
  timeout: number;
}

function write(message: TraceMessage, output: TraceOptions['output']): void {
  if (output === 'json') {
    process.stdout.write(`${JSON.stringify(message)}\n`);
    return;
  }
  if ('event' in message) process.stdout.write(`${formatTraceLine(message.event)}\n`);
  else process.stderr.write(`${formatLostLine(message.lost)}\n`);
}

/** Adds `trace` to the command line. */
export function registerTraceCommand(program: Command): void {
  program
    .command('trace')
    .description(
      'print every call the programs translate or refuse, live, one line each: caller, network namespace and socket cookies, ' +
        'protocol, Service and frontend, backend and slot or why it was refused (through the agent; until Ctrl-C)',
    )
    .option('--sandbox <id>', "only the calls of this sandbox's processes")
    .option('--service <namespace/name>', 'only the calls to this Service')
    .addOption(new Option('--protocol <protocol>', 'only TCP or UDP calls').choices(['tcp', 'udp']))
    .addOption(
      new Option('-o, --output <format>', 'output format: a line per call, or a JSON object per line')
        .choices(['text', 'json'])
        .default('text'),
    )
    .addOption(controlSocketOption())
    .addOption(timeoutOption('how long to wait for the agent to start the trace'))
    .action(async (options: TraceOptions) => {
      const filter: TraceFilter = {
        ...(options.sandbox === undefined ? {} : { sandbox: options.sandbox }),
        ...(options.service === undefined ? {} : { service: options.service }),
        ...(options.protocol === undefined ? {} : { protocol: options.protocol === 'tcp' ? ('TCP' as const) : ('UDP' as const) }),
      };
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        await followControlTrace(
          options.controlSocket,
          filter,
          options.timeout * 1000,
          {
            // On stderr, so that stdout holds only events.
            started: () => process.stderr.write(`tracing ${describeFilter(filter)}; Ctrl-C to stop\n`),
            message: (message) => write(message, options.output),
          },
          stop.signal,
        );
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
