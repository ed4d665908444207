// `socklb trace`'s hub in the agent, the ring's only reader: the first tracer turns the programs'
// switch on, the last to leave turns it off (so a node nobody traces pays nothing), and each event
// is resolved once (its Service by service id, its sandbox by cgroup id) and sent to every tracer
// whose filter it matches. Losses are reported to each tracer as counts since it started: the
// ring's (the programs found it full) and the agent's (the tracer read too slowly), every second
// while they grow.

import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SocklbError } from '../errors.js';
import type { Logger } from '../log.js';
import type { TraceEvent } from '../datapath/layout.js';
import type { TraceListener } from '../datapath/trace-ring.js';
import { serviceText } from '../datapath/dump.js';
import { hostPort } from '../model/keys.js';
import type { ServicePortRef } from '../model/types.js';
import type { TraceFilter, TraceMessage, TraceRecord, TraceService } from '../sandbox/protocol.js';
import type { Sandbox } from '../sandbox/registry.js';

/** The ring's side: src/datapath/trace-ring.ts. */
export interface TraceSource {
  readSwitch(): { enabled: boolean; lost: bigint };
  setEnabled(enabled: boolean): void;
  start(listener: TraceListener): void;
  stop(): Promise<void>;
}

/** Where a cgroup id belongs: found by the agent among the cgroups it serves. */
export interface CallerPlace {
  cgroup?: string;
  sandbox?: string;
}

export interface TracingOptions {
  ring: TraceSource;
  /** The Service port a service id names now. */
  serviceName(serviceId: number): ServicePortRef | undefined;
  places: { resolve(cgroupId: bigint): CallerPlace };
  /** Whether `id` names a sandbox whose calls this kernel's programs see (a cgroup sandbox), a guest, or nothing. */
  sandboxKind(id: string): 'cgroup' | 'guest' | undefined;
  logger: Logger;
  /** How often losses are looked at; 1 s. */
  lostIntervalMs?: number;
}

interface Tracer {
  filter: TraceFilter;
  /** False when the message could not be sent: the tracer is behind. */
  send(message: TraceMessage): boolean;
  /** The ring's lost count when it started. */
  lostAtStart: bigint;
  /** Events it was not sent because it was behind. */
  dropped: number;
  /** The losses last reported to it. */
  reported: { ring: number; agent: number };
}

const SERVICE_FILTER = /^[^/\s]+\/[^/\s]+$/;

export class Tracing implements TraceService {
  private readonly tracers = new Set<Tracer>();
  /** Starts and stops of the ring, one after the other. */
  private transition: Promise<void> = Promise.resolve();
  private lostTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: TracingOptions) {}

  /** At the agent's start: a switch left on by an agent that died mid-trace is turned off. */
  turnOffStaleSwitch(): void {
    if (!this.options.ring.readSwitch().enabled) return;
    this.options.ring.setEnabled(false);
    this.options.logger.warn({}, 'trace switch found on, left by an agent that stopped mid-trace: turned off');
  }

  follow(filter: TraceFilter, send: (message: TraceMessage) => boolean): () => void {
    this.check(filter);
    const tracer: Tracer = { filter, send, lostAtStart: this.options.ring.readSwitch().lost, dropped: 0, reported: { ring: 0, agent: 0 } };
    this.tracers.add(tracer);
    if (this.tracers.size === 1) this.startRing();
    return () => {
      if (!this.tracers.delete(tracer)) return;
      if (this.tracers.size === 0) this.stopRing();
    };
  }

  /** Ends every trace and turns the switch off. */
  async close(): Promise<void> {
    this.tracers.clear();
    this.stopRing();
    await this.transition;
  }

  private check(filter: TraceFilter): void {
    if (filter.service !== undefined && !SERVICE_FILTER.test(filter.service))
      throw new SocklbError('SOCKLB_ERR_USAGE', `trace --service ${filter.service}: not NAMESPACE/NAME, such as default/web`);
    if (filter.sandbox === undefined) return;
    const kind = this.options.sandboxKind(filter.sandbox);
    if (kind === undefined)
      throw new SocklbError('SOCKLB_ERR_NO_SANDBOX', `trace --sandbox ${filter.sandbox}: no such sandbox is registered`);
    if (kind === 'guest')
      throw new SocklbError(
        'SOCKLB_ERR_SANDBOX',
        `trace --sandbox ${filter.sandbox}: a microVM guest's programs run in its own kernel, whose events are not forwarded yet`,
      );
  }

  private startRing(): void {
    const listener: TraceListener = {
      events: (events) => this.dispatch(events),
      error: (error) => this.options.logger.warn({ code: (error as { code?: string }).code }, `trace: ${error.message}`),
    };
    this.transition = this.transition.then(() => {
      // A tracer that came and left while the last stop finished needs no start.
      if (this.tracers.size > 0) this.options.ring.start(listener);
    });
    this.transition.catch((error: unknown) => this.options.logger.error({}, `trace: cannot start: ${(error as Error).message}`));
    this.lostTimer ??= setInterval(() => this.reportLost(), this.options.lostIntervalMs ?? 1000);
  }

  private stopRing(): void {
    clearInterval(this.lostTimer);
    this.lostTimer = undefined;
    this.transition = this.transition
      .then(() => (this.tracers.size === 0 ? this.options.ring.stop() : undefined))
      .catch((error: unknown) => this.options.logger.error({}, `trace: cannot stop: ${(error as Error).message}`));
  }

  private dispatch(events: readonly TraceEvent[]): void {
    if (this.tracers.size === 0 || events.length === 0) return;
    const clock = wallClock();
    for (const event of events) {
      const record = this.record(event, clock);
      for (const tracer of this.tracers) if (matches(tracer.filter, record) && !tracer.send({ event: record })) tracer.dropped++;
    }
  }

  private record(event: TraceEvent, clock: (timeNs: bigint) => Date): TraceRecord {
    const name = event.serviceId === 0 ? undefined : this.options.serviceName(event.serviceId);
    return traceRecord(event, clock(event.timeNs), this.options.places.resolve(event.cgroupId), name);
  }

  /** Sends each tracer its losses since it started, when they grew. */
  private reportLost(): void {
    let lost: bigint;
    try {
      lost = this.options.ring.readSwitch().lost;
    } catch (error) {
      this.options.logger.warn({}, `trace: cannot read the lost count: ${(error as Error).message}`);
      return;
    }
    for (const tracer of this.tracers) {
      const now = { ring: Number(lost - tracer.lostAtStart), agent: tracer.dropped };
      if (now.ring === tracer.reported.ring && now.agent === tracer.reported.agent) continue;
      // Sent whatever the backlog: a report is what tells the tracer that it is behind.
      tracer.send({ lost: now });
      tracer.reported = now;
    }
  }
}

/** CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns, process.hrtime) to wall-clock time, as of now. */
function wallClock(): (timeNs: bigint) => Date {
  const nowMs = Date.now();
  const nowNs = process.hrtime.bigint();
  return (timeNs) => new Date(nowMs - Number(nowNs - timeNs) / 1e6);
}

/** An event as tracers are sent it. Pure. */
export function traceRecord(event: TraceEvent, time: Date, place: CallerPlace, service: ServicePortRef | undefined): TraceRecord {
  return {
    time: time.toISOString(),
    ...(place.sandbox === undefined ? {} : { sandbox: place.sandbox }),
    ...(place.cgroup === undefined ? {} : { cgroup: place.cgroup }),
    cgroupId: event.cgroupId.toString(),
    netnsCookie: event.netnsCookie.toString(),
    socketCookie: event.socketCookie.toString(),
    protocol: event.protocol,
    hook: event.hook,
    frontend: hostPort(event.service.address, event.service.port),
    ...(service === undefined ? {} : { service: serviceText(service) }),
    ...(event.backend === undefined ? {} : { backend: hostPort(event.backend.address, event.backend.port), slot: event.slot }),
    result: event.reason,
  };
}

/** Whether a tracer with `filter` is shown `record`. Pure. */
export function matches(filter: TraceFilter, record: TraceRecord): boolean {
  if (filter.protocol !== undefined && record.protocol !== filter.protocol) return false;
  if (filter.sandbox !== undefined && record.sandbox !== filter.sandbox) return false;
  if (filter.service !== undefined) {
    const service = record.service?.split(':')[0];
    if (service !== filter.service) return false;
  }
  return true;
}

/** How many cgroup directories a lookup walks at most: a node has a few thousand. */
const MAX_CGROUPS_WALKED = 100_000;
/** A cgroup id not found is looked for again at most this often: a burst of them walks once. */
const REWALK_INTERVAL_MS = 1000;

/**
 * Cgroup ids (a cgroup v2 directory's inode number) to the directory and the sandbox holding it,
 * found by walking the cgroups the agent serves; walked again when an id is not known, at most
 * once a second.
 */
export class CgroupPlaces {
  private byId = new Map<bigint, string>();
  private walkedAt = -Infinity;

  constructor(
    /** The cgroups the programs are attached to: --cgroup attachments and sandboxes. */
    private readonly served: () => readonly string[],
    private readonly sandboxes: () => Iterable<Readonly<Sandbox>>,
    private readonly now: () => number = Date.now,
  ) {}

  resolve(cgroupId: bigint): CallerPlace {
    let cgroup = this.byId.get(cgroupId);
    if (cgroup === undefined && this.now() - this.walkedAt >= REWALK_INTERVAL_MS) {
      this.walk();
      cgroup = this.byId.get(cgroupId);
    }
    if (cgroup === undefined) return {};
    for (const sandbox of this.sandboxes())
      if (cgroup === sandbox.cgroup || cgroup.startsWith(`${sandbox.cgroup}/`)) return { cgroup, sandbox: sandbox.id };
    return { cgroup };
  }

  private walk(): void {
    this.walkedAt = this.now();
    const byId = new Map<bigint, string>();
    const pending = [...new Set(this.served())];
    while (pending.length > 0 && byId.size < MAX_CGROUPS_WALKED) {
      const directory = pending.pop()!;
      try {
        byId.set(statSync(directory, { bigint: true }).ino, directory);
        for (const entry of readdirSync(directory, { withFileTypes: true }))
          if (entry.isDirectory()) pending.push(join(directory, entry.name));
      } catch {
        // Removed while walked: its processes are gone too.
      }
    }
    this.byId = byId;
  }
}
