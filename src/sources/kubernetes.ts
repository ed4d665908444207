// Services, EndpointSlices and this node's zone from the Kubernetes API, the
// way kube-proxy takes them: three list+watch loops (reflector.ts) with
// kube-proxy's server-side label selector, each object validated by the same
// parser as a manifest's (validated-objects.ts), and whole states delivered
// from the three together:
//
//   - nothing before all three have listed once: until then the agent keeps
//     the datapath a previous run pinned, rather than prune it from a
//     half-known cluster;
//   - then one state per burst of events (debounced), and none for events
//     that change no validated object (status writes, relists).

import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { Logger } from '../log.js';
import { HEADLESS_LABEL, namespacedName, parseEndpointSlice, parseService, SERVICE_PROXY_NAME_LABEL } from '../model/kubernetes.js';
import type { EndpointSlice, InputProblem, Service } from '../model/types.js';
import { ApiClient, type KubeObject } from './api-client.js';
import { Reflector, type ReflectorStore, type Resource, type RetryOptions } from './reflector.js';
import type { Source, SourceState } from './source.js';
import { ValidatedObjects } from './validated-objects.js';

export interface KubernetesSourceOptions {
  kubeConfig: KubeConfig;
  /** This node's name, as its Node object is called: the zone comes from it. */
  nodeName: string;
  /** Serve only the Services labelled service.kubernetes.io/service-proxy-name=<this>; default: only unlabelled ones. */
  serviceProxyName?: string;
  logger?: Logger;
  /** How long a burst of events may gather into one state. */
  debounceMs?: number;
  retry?: RetryOptions;
  /** How long the server keeps each watch open; default 5 to 10 minutes at random. */
  watchTimeoutSeconds?: number;
}

/** InputProblem.source of every problem this source reports. */
export const SOURCE_NAME = 'kubernetes';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';

export const SERVICES: Resource = { path: '/api/v1/services', apiVersion: 'v1', kind: 'Service' };
export const ENDPOINT_SLICES: Resource = { path: '/apis/discovery.k8s.io/v1/endpointslices', apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice' };
export const NODES: Resource = { path: '/api/v1/nodes', apiVersion: 'v1', kind: 'Node' };

/**
 * kube-proxy's label selector, for Services and EndpointSlices alike: the
 * EndpointSlice controller copies a Service's labels to its slices and puts
 * the headless label on the slices of a headless Service. Requirements in
 * key order, as Kubernetes' labels.Selector prints them.
 */
export function proxyLabelSelector(serviceProxyName?: string): string {
  const proxyName = serviceProxyName ? `${SERVICE_PROXY_NAME_LABEL}=${serviceProxyName}` : `!${SERVICE_PROXY_NAME_LABEL}`;
  return `!${HEADLESS_LABEL},${proxyName}`;
}

export class KubernetesSource implements Source {
  private readonly services: ValidatedObjects<Service>;
  private readonly slices: ValidatedObjects<EndpointSlice>;
  private readonly node: NodeZone;
  private readonly reflectors: Reflector[];
  private readonly logger: Logger;
  private readonly debounceMs: number;
  private onState: ((state: SourceState) => void) | undefined;
  private synced = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly stopped: Promise<void>;
  private markStopped!: () => void;

  constructor(options: KubernetesSourceOptions) {
    this.logger = options.logger ?? pino({ enabled: false });
    this.debounceMs = options.debounceMs ?? 10;
    this.stopped = new Promise((resolve) => (this.markStopped = resolve));
    const changed = () => this.schedule();
    this.services = new ValidatedObjects(parseService, changed);
    this.slices = new ValidatedObjects(parseEndpointSlice, changed);
    this.node = new NodeZone(options.nodeName, changed);

    const client = new ApiClient(options.kubeConfig);
    const labelSelector = proxyLabelSelector(options.serviceProxyName);
    const reflector = (resource: Resource, store: ReflectorStore, selectors: { labelSelector?: string; fieldSelector?: string }) =>
      new Reflector({ client, resource, store, logger: this.logger, retry: options.retry, watchTimeoutSeconds: options.watchTimeoutSeconds, ...selectors });
    this.reflectors = [
      reflector(SERVICES, this.services, { labelSelector }),
      reflector(ENDPOINT_SLICES, this.slices, { labelSelector }),
      // kube-proxy watches its own Node the same way: a list of one, by field selector.
      reflector(NODES, this.node, { fieldSelector: `metadata.name=${options.nodeName}` }),
    ];
  }

  /** Resolves once all three collections were listed and the first state delivered, or once stopped. */
  async start(onState: (state: SourceState) => void): Promise<void> {
    if (this.onState) throw new Error('KubernetesSource: start was called twice');
    this.onState = onState;
    for (const reflector of this.reflectors) reflector.start();
    const listed = Promise.all(this.reflectors.map((reflector) => reflector.listed)).then(() => true);
    if (!(await Promise.race([listed, this.stopped.then(() => false)]))) return;
    this.synced = true;
    const state = this.state();
    this.logger.info({ services: state.services.size, slices: state.slices.size, node: state.node }, 'Kubernetes API: first lists complete');
    onState(state);
  }

  async stop(): Promise<void> {
    this.markStopped();
    this.synced = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    await Promise.all(this.reflectors.map((reflector) => reflector.stop()));
  }

  private schedule(): void {
    if (!this.synced) return; // the first state is delivered by start(), whole
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.onState?.(this.state());
    }, this.debounceMs);
  }

  private state(): SourceState {
    const problems: InputProblem[] = [];
    const problem = (object: string, reason: string | undefined) => {
      if (reason !== undefined) problems.push({ source: SOURCE_NAME, object, reason });
    };
    const services = new Map<string, Service>();
    const ignoredServices = new Set<string>();
    for (const [key, entry] of this.services.entries) {
      problem(`Service ${key}`, entry.problem);
      if (entry.value) services.set(key, entry.value);
      else if (entry.ignored) ignoredServices.add(key);
    }
    const slices = new Map<string, EndpointSlice>();
    for (const [key, entry] of this.slices.entries) {
      problem(`EndpointSlice ${key}`, entry.problem);
      // The slices of a Service socklb ignores are left out: they are not orphans.
      const slice = entry.value;
      if (slice && !ignoredServices.has(namespacedName({ namespace: slice.namespace, name: slice.serviceName }))) slices.set(key, slice);
    }
    const { name, zone, exists } = this.node;
    problem(`Node ${name}`, exists ? undefined : 'does not exist: zone hints are not used; set --node-name to the name of the Node this agent runs on');
    return { services, slices, problems, node: zone === undefined ? { name } : { name, zone } };
  }
}

/** The one Node this agent runs on: whether it exists, and its zone label. */
class NodeZone implements ReflectorStore {
  exists = false;
  zone: string | undefined;

  constructor(
    readonly name: string,
    private readonly onChange: () => void,
  ) {}

  replace(objects: KubeObject[]): void {
    this.set(objects.find((node) => node.metadata?.name === this.name));
  }

  upsert(node: KubeObject): void {
    if (node.metadata?.name === this.name) this.set(node);
  }

  remove(node: KubeObject): void {
    if (node.metadata?.name === this.name) this.set(undefined);
  }

  private set(node: KubeObject | undefined): void {
    const zone = node?.metadata?.labels?.[ZONE_LABEL] || undefined;
    if (this.exists === (node !== undefined) && this.zone === zone) return;
    this.exists = node !== undefined;
    this.zone = zone;
    this.onChange();
  }
}
