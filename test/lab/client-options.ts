// The command line of client.ts and the JSON it prints: shared by the probe and by Lab.runClient,
// so that the two never disagree.
import { parseArgs } from 'node:util';

export interface ClientOptions {
  /** An address (or a name, resolved in the family of `family`). */
  target: string;
  port: number;
  /** Sequential tries: one connection (TCP) or one connected socket (UDP) each. */
  count: number;
  udp?: boolean;
  /** Per try; default DEFAULT_TRY_TIMEOUT_MS. */
  timeoutMs?: number;
  /** For the whole run: tries not started by then are not made; default DEFAULT_DEADLINE_MS. */
  deadlineMs?: number;
  family?: 4 | 6;
}

export interface ClientReport {
  /** Replies by the name the server answered with. */
  hits: Record<string, number>;
  /** Failed tries by errno code (ECONNREFUSED, ENETUNREACH, ETIMEDOUT...) or HTTP_<status>. */
  errors: Record<string, number>;
  /** Distinct getpeername() results, "a.b.c.d:port" or "[v6]:port", sorted. */
  peers: string[];
  /** Tries made: less than `count` when the deadline stopped the run. */
  attempts: number;
  elapsedMs: number;
}

export const DEFAULT_TRY_TIMEOUT_MS = 2_000;
export const DEFAULT_DEADLINE_MS = 30_000;

export function clientArgv(options: ClientOptions): string[] {
  const argv = ['--target', options.target, '--port', String(options.port), '--count', String(options.count)];
  if (options.udp) argv.push('--udp');
  if (options.timeoutMs !== undefined) argv.push('--timeout-ms', String(options.timeoutMs));
  if (options.deadlineMs !== undefined) argv.push('--deadline-ms', String(options.deadlineMs));
  if (options.family !== undefined) argv.push('--family', String(options.family));
  return argv;
}

/** Options with every default filled in; `family` stays optional (the target's own family). */
export type ResolvedClientOptions = Required<Omit<ClientOptions, 'family'>> & Pick<ClientOptions, 'family'>;

export function parseClientArgv(argv: string[]): ResolvedClientOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      target: { type: 'string' },
      port: { type: 'string' },
      count: { type: 'string', default: '1' },
      udp: { type: 'boolean', default: false },
      'timeout-ms': { type: 'string', default: String(DEFAULT_TRY_TIMEOUT_MS) },
      'deadline-ms': { type: 'string', default: String(DEFAULT_DEADLINE_MS) },
      family: { type: 'string' },
    },
  });
  if (values.target === undefined) throw new Error('--target is required');
  const family = values.family === undefined ? undefined : integer('--family', values.family, 4, 6);
  if (family !== undefined && family !== 4 && family !== 6) throw new Error(`--family ${family}: must be 4 or 6`);
  return {
    target: values.target,
    port: integer('--port', values.port, 1, 65535),
    count: integer('--count', values.count, 1, 1_000_000),
    udp: values.udp,
    timeoutMs: integer('--timeout-ms', values['timeout-ms'], 1, 600_000),
    deadlineMs: integer('--deadline-ms', values['deadline-ms'], 1, 600_000),
    family,
  };
}

function integer(flag: string, text: string | undefined, min: number, max: number): number {
  const value = Number(text);
  if (text === undefined || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${flag} ${JSON.stringify(text)}: must be an integer in ${min}..${max}`);
  }
  return value;
}
