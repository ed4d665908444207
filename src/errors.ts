import { getSystemErrorName } from 'node:util';

// Every error socklb reports on purpose, with a stable code: logs, metrics and
// docs name the code, and the message names the object, the reason and the fix.

export const ERROR_CODES = {
  SOCKLB_ERR_MAP_UPDATE: 'a BPF map write failed',
  SOCKLB_ERR_MAP_LAYOUT: 'a pinned map does not have the layout this build expects',
  SOCKLB_ERR_LIBBPF: 'a libbpf call failed',
  SOCKLB_ERR_PRIVILEGES: 'the agent lacks the privileges to load BPF programs',
  SOCKLB_ERR_NO_CGROUP2: 'no cgroup v2 hierarchy is mounted',
  SOCKLB_ERR_CGROUP: 'a cgroup to attach to is missing or unusable',
  SOCKLB_ERR_KERNEL: 'the kernel lacks a feature socklb needs',
  SOCKLB_ERR_NOT_RUNNING: 'no pinned socklb datapath was found',
  SOCKLB_ERR_USAGE: 'the command line is wrong',
  SOCKLB_ERR_SANDBOX: 'a sandbox request names an invalid or conflicting sandbox',
  SOCKLB_ERR_NO_SANDBOX: 'no sandbox of that id is registered',
  SOCKLB_ERR_CONTROL: "the agent's control socket cannot be reached, or answered out of protocol",
  SOCKLB_ERR_OCI_STATE: 'the container state an OCI runtime gave the hook is unusable',
  SOCKLB_ERR_GUEST_WIRE: 'a guest stream frame is malformed, or does not fit the maps it names',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class SocklbError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SocklbError';
  }
}

/** The errno name of a failed system call (`E2BIG`). */
export function errnoName(errno: number): string {
  return getSystemErrorName(-Math.abs(errno));
}
