// The control socket's protocol: one request per connection, one JSON object on one line each
// way (docs/sandboxes.md). Pure: both ends and the tests share these codecs.
//
//   {"op":"add","id":"c1","cgroup":"/sys/fs/cgroup/c1"}  -> {"ok":true,"outcome":"added","sandbox":{...}}
//   {"op":"add","id":"c1","cgroup":"/sys/fs/cgroup/c1","noTranslate":true}           (its calls left untranslated)
//   {"op":"add","id":"c1","cgroup":"/sys/fs/cgroup/c1","excludeServices":["ns/name"]} (those to these Services)
//   {"op":"add","id":"vm1","guest":"unix:/run/vm1.sock"} -> {"ok":true,"outcome":"added","sandbox":{...}}
//   {"op":"remove","id":"c1"}                            -> {"ok":true,"outcome":"removed","sandbox":{...}}
//   {"op":"list"}                                        -> {"ok":true,"sandboxes":[{...}]}
//   {"op":"trace","sandbox":"c1","protocol":"TCP"}        -> {"ok":true,"tracing":{...}}, then one
//       {"event":{...}} or {"lost":{...}} per line until the client closes (`socklb trace`)
//   anything refused                                     -> {"ok":false,"code":"SOCKLB_ERR_...","message":"..."}

import { ERROR_CODES, SocklbError, type ErrorCode } from '../errors.js';
import type { AddOutcome, Sandbox } from './registry.js';

/** A microVM guest as the agent serves it (src/guest): its address and how its stream goes. */
export interface GuestEntry {
  id: string;
  /** unix:PATH, serial:PATH or vsock:CID. */
  guest: string;
  /** What its connection is doing: streaming when it is up to date; disconnected without one. */
  phase: string;
  /** The sync its maps hold, `epoch/seq`. */
  marker?: string | undefined;
  /** Syncs it has yet to acknowledge; absent while it holds another agent run's state. */
  lag?: number | undefined;
  queuedBytes: number;
  snapshots: number;
  lastError?: string | undefined;
  kernelRelease?: string | undefined;
}

/** A registered sandbox: a cgroup on this kernel, or a guest with its own. */
export type SandboxEntry = Sandbox | GuestEntry;

export type AddRequest =
  | { op: 'add'; id: string; cgroup: string; noTranslate?: boolean; excludeServices?: string[] }
  | { op: 'add'; id: string; guest: string; noTranslate?: boolean; excludeServices?: string[] };

/** Which calls a tracer is shown; every one when empty. */
export interface TraceFilter {
  sandbox?: string;
  /** NAMESPACE/NAME of a Service. */
  service?: string;
  protocol?: 'TCP' | 'UDP';
}

export type TraceRequest = { op: 'trace' } & TraceFilter;

export type ControlRequest = AddRequest | { op: 'remove'; id: string } | { op: 'list' } | TraceRequest;

/** One call the programs translated or refused, as the agent streams it to tracers. */
export interface TraceRecord {
  /** When the program ran (ISO 8601, UTC). */
  time: string;
  /** The sandbox whose cgroup holds the caller's, if any. */
  sandbox?: string;
  /** The caller's cgroup directory, when the agent found it among those it serves. */
  cgroup?: string;
  /** Its cgroup v2 id; 64-bit numbers are decimal strings. */
  cgroupId: string;
  netnsCookie: string;
  socketCookie: string;
  protocol: 'TCP' | 'UDP';
  /** connect() or sendmsg() (a datagram of an unconnected UDP socket). */
  hook: string;
  /** The destination asked for, ADDRESS:PORT ([ADDRESS]:PORT for IPv6). */
  frontend: string;
  /** NAMESPACE/NAME:PORT-NAME of the frontend's Service (no :PORT-NAME for an unnamed port); absent when none serves it. */
  service?: string;
  /** Where the call was sent, and the frontend slot that named it; absent for a refusal. */
  backend?: string;
  slot?: number;
  /** translated, or why the call was refused (ECONNREFUSED): no-backend, unserved-address, frontend-changing. */
  result: string;
}

/** Events dropped for one tracer since it started: the ring was full, or the tracer read too slowly. */
export interface TraceLost {
  ring: number;
  agent: number;
}

/** What a tracer receives after the first line. */
export type TraceMessage = { event: TraceRecord } | { lost: TraceLost };

/** The agent's side of `trace`: src/agent/tracing.ts. */
export interface TraceService {
  /**
   * Starts sending `send` the calls `filter` matches until the returned function is called;
   * throws a SocklbError for a filter that names what is not there. `send` answers false for a
   * message it dropped because the tracer is behind.
   */
  follow(filter: TraceFilter, send: (message: TraceMessage) => boolean): () => void;
}

export type ControlResponse =
  | { ok: true; outcome: AddOutcome | 'removed'; sandbox: SandboxEntry }
  | { ok: true; sandboxes: SandboxEntry[] }
  | { ok: false; code: ErrorCode; message: string };

/** What the control socket serves: the cgroup sandboxes and the guests, in one space of ids. */
export interface SandboxDirectory {
  add(request: AddRequest): Promise<{ outcome: AddOutcome; sandbox: SandboxEntry }>;
  remove(id: string): Promise<SandboxEntry>;
  list(): SandboxEntry[];
}

/** Longer lines are refused: a request is a few hundred bytes, a list a line per sandbox. */
export const MAX_REQUEST_BYTES = 16 * 1024;

export function encodeMessage(message: ControlRequest | ControlResponse | TraceMessage | { ok: true; tracing: TraceFilter }): string {
  return `${JSON.stringify(message)}\n`;
}

export function parseRequest(line: string): ControlRequest {
  const fields = parseObject(line, 'request');
  switch (fields['op']) {
    case 'add': {
      const id = stringField(fields, 'id', 'request');
      const bypass = bypassFields(fields, 'request');
      if ('guest' in fields && !('cgroup' in fields)) return { op: 'add', id, guest: stringField(fields, 'guest', 'request'), ...bypass };
      return { op: 'add', id, cgroup: stringField(fields, 'cgroup', 'request'), ...bypass };
    }
    case 'remove':
      return { op: 'remove', id: stringField(fields, 'id', 'request') };
    case 'list':
      return { op: 'list' };
    case 'trace':
      return { op: 'trace', ...traceFilterOf(fields) };
    default:
      throw protocolError(`request op ${JSON.stringify(fields['op'])}: not add, remove, list or trace`);
  }
}

function traceFilterOf(fields: Record<string, unknown>): TraceFilter {
  const filter: TraceFilter = {};
  if (fields['sandbox'] !== undefined) filter.sandbox = stringField(fields, 'sandbox', 'request');
  if (fields['service'] !== undefined) filter.service = stringField(fields, 'service', 'request');
  const protocol = fields['protocol'];
  if (protocol !== undefined) {
    if (protocol !== 'TCP' && protocol !== 'UDP')
      throw protocolError(`request field "protocol": ${JSON.stringify(protocol)} is not TCP or UDP`);
    filter.protocol = protocol;
  }
  return filter;
}

/** The first line of a trace: the agent's acceptance (or refusal, as any response). */
export function parseTraceStart(line: string): TraceFilter {
  const fields = parseObject(line, 'response');
  if (fields['ok'] === true && isObject(fields['tracing'])) return traceFilterOf(fields['tracing']);
  const response = parseResponse(line);
  if (!response.ok) throw new SocklbError(response.code, response.message);
  throw protocolError('trace response without "tracing"');
}

/** A line of a trace after the first. */
export function parseTraceMessage(line: string): TraceMessage {
  const fields = parseObject(line, 'trace message');
  if (isObject(fields['event'])) return { event: fields['event'] as unknown as TraceRecord };
  const lost = fields['lost'];
  if (isObject(lost) && typeof lost['ring'] === 'number' && typeof lost['agent'] === 'number')
    return { lost: { ring: lost['ring'], agent: lost['agent'] } };
  throw protocolError(`trace message ${JSON.stringify(line.slice(0, 80))}: neither an event nor a lost count`);
}

export function parseResponse(line: string): ControlResponse {
  const fields = parseObject(line, 'response');
  if (fields['ok'] === false) {
    const code = fields['code'];
    const message = stringField(fields, 'message', 'response');
    if (typeof code !== 'string' || !(code in ERROR_CODES))
      throw protocolError(`response code ${JSON.stringify(code)}: not a socklb error code`);
    return { ok: false, code: code as ErrorCode, message };
  }
  if (fields['ok'] !== true) throw protocolError('response without "ok": true or false');
  if (Array.isArray(fields['sandboxes'])) return { ok: true, sandboxes: fields['sandboxes'].map((item) => sandboxOf(item)) };
  const outcome = fields['outcome'];
  if (outcome !== 'added' && outcome !== 'unchanged' && outcome !== 'removed')
    throw protocolError(`response outcome ${JSON.stringify(outcome)}: not added, unchanged or removed`);
  return { ok: true, outcome, sandbox: sandboxOf(fields['sandbox']) };
}

/** What the server answers for an error thrown while serving a request. */
export function errorResponse(error: unknown): ControlResponse {
  if (error instanceof SocklbError) return { ok: false, code: error.code, message: error.message };
  return {
    ok: false,
    code: 'SOCKLB_ERR_CONTROL',
    message: `the agent failed to serve the request: ${error instanceof Error ? error.message : String(error)}`,
  };
}

function sandboxOf(value: unknown): SandboxEntry {
  const fields = isObject(value) ? value : {};
  const id = stringField(fields, 'id', 'response sandbox');
  if (!('guest' in fields)) {
    const { noTranslate, excludeServices } = bypassFields(fields, 'response sandbox');
    return {
      id,
      cgroup: stringField(fields, 'cgroup', 'response sandbox'),
      ...(noTranslate ? { noTranslate: true as const } : {}),
      ...(excludeServices ? { excludeServices } : {}),
    };
  }
  return {
    id,
    guest: stringField(fields, 'guest', 'response sandbox'),
    phase: stringField(fields, 'phase', 'response sandbox'),
    marker: optionalField(fields, 'marker', 'string'),
    lag: optionalField(fields, 'lag', 'number'),
    queuedBytes: optionalField(fields, 'queuedBytes', 'number') ?? 0,
    snapshots: optionalField(fields, 'snapshots', 'number') ?? 0,
    lastError: optionalField(fields, 'lastError', 'string'),
    kernelRelease: optionalField(fields, 'kernelRelease', 'string'),
  };
}

function optionalField<T extends 'string' | 'number'>(
  fields: Record<string, unknown>,
  name: string,
  type: T,
): (T extends 'string' ? string : number) | undefined {
  const value = fields[name];
  if (value === undefined) return undefined;
  if (typeof value !== type) throw protocolError(`response sandbox field "${name}": not a ${type}`);
  return value as T extends 'string' ? string : number;
}

/** The optional noTranslate (a boolean) and excludeServices (strings) of a sandbox. */
function bypassFields(fields: Record<string, unknown>, what: string): { noTranslate?: boolean; excludeServices?: string[] } {
  const { noTranslate, excludeServices } = fields;
  if (noTranslate !== undefined && typeof noTranslate !== 'boolean') throw protocolError(`${what} field "noTranslate": not a boolean`);
  if (excludeServices !== undefined && !(Array.isArray(excludeServices) && excludeServices.every((item) => typeof item === 'string')))
    throw protocolError(`${what} field "excludeServices": not a list of strings`);
  return {
    ...(noTranslate === undefined ? {} : { noTranslate }),
    ...(excludeServices === undefined ? {} : { excludeServices }),
  };
}

function parseObject(line: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw protocolError(`${what} ${JSON.stringify(line.slice(0, 80))}: not JSON`);
  }
  if (!isObject(value)) throw protocolError(`${what} ${JSON.stringify(line.slice(0, 80))}: not a JSON object`);
  return value;
}

function stringField(fields: Record<string, unknown>, name: string, what: string): string {
  const value = fields[name];
  if (typeof value !== 'string') throw protocolError(`${what} field "${name}": missing or not a string`);
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function protocolError(message: string): SocklbError {
  return new SocklbError('SOCKLB_ERR_CONTROL', `control socket: ${message}`);
}
