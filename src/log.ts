import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stderr, so that stdout stays for command output. */
export function createLogger(level = process.env.SOCKLB_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { component: 'socklb' } }, pino.destination({ fd: 2, sync: true }));
}
