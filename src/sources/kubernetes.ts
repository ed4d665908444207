// Services, EndpointSlices, this node's zone and the ServiceCIDRs from the
// Kubernetes API, the way kube-proxy takes them: four list+watch loops
// (reflector.ts), Services and EndpointSlices with kube-proxy's server-side
// label selector, each object validated by the same parser as a manifest's
// (validated-objects.ts), and whole states delivered from the four together:
//
//   - nothing before all four have listed once (the ServiceCIDRs count as
//     listed, empty, on a server that does not serve them, as before
//     Kubernetes 1.33): until then the agent keeps
//     the datapath a previous run pinned, rather than prune it from a
//     half-known cluster;
//   - then one state per burst of events (those already queued when the
//     first is handled, with no fixed delay by default), and none for events
//     that change no validated object (status writes, relists); each state
//     names the keys that changed and is brought up to date key by key.

import type { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import type { Logger } from '../log.js';
import { HEADLESS_LABEL, parseEndpointSlice, parseService, parseServiceCIDR, SERVICE_PROXY_NAME_LABEL } from '../model/kubernetes.js';
import type { SourceState } from '../model/source-state.js';
import type { EndpointSlice, InputProblem, Service, ServiceCIDR } from '../model/types.js';
import { ApiClient, type KubeObject } from './api-client.js';
import { Reflector, type ReflectorStore, type Resource, type RetryOptions } from './reflector.js';
import { CoalescedTask, type Source } from './source.js';
import { ValidatedObjects } from './validated-objects.js';

export interface KubernetesSourceOptions {
  kubeConfig: KubeConfig;
  /** This node's name, as its Node object is called: the zone comes from it. */
  nodeName: string;
  /** Serve only the Services labelled service.kubernetes.io/service-proxy-name=<this>; default: only unlabelled ones. */
  serviceProxyName?: string;
  logger?: Logger;
  /** How long a burst of events may gather into one state; default 0: the events already queued. */
  debounceMs?: number;
  retry?: RetryOptions;
  /** How long the server keeps each watch open; default 5 to 10 minutes at random. */
  watchTimeoutSeconds?: number;
}

/** InputProblem.source of every problem this source reports. */
export const SOURCE_NAME = 'kubernetes';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';

export const SERVICES: Resource = { path: '/api/v1/services', apiVersion: 'v1', kind: 'Service' };
export const ENDPOINT_SLICES: Resource = {
  path: '/apis/discovery.k8s.io/v1/endpointslices',
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
};
export const NODES: Resource = { path: '/api/v1/nodes', apiVersion: 'v1', kind: 'Node' };
/** Where cluster IPs are allocated (GA in Kubernetes 1.33): kube-proxy's service CIDRs. */
export const SERVICE_CIDRS: Resource = {
  path: '/apis/networking.k8s.io/v1/servicecidrs',
  apiVersion: 'networking.k8s.io/v1',
  kind: 'ServiceCIDR',
  optional: true,
};

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
  private readonly serviceObjects: ValidatedObjects<Service>;
  private readonly sliceObjects: ValidatedObjects<EndpointSlice>;
  private readonly serviceCIDRObjects: ValidatedObjects<ServiceCIDR>;
  private readonly node: NodeZone;
  /** The state as delivered, brought up to date key by key in state(). */
  private readonly services = new Map<string, Service>();
  private readonly ignoredServices = new Set<string>();
  private readonly slices = new Map<string, EndpointSlice>();
  private readonly serviceProblems = new Map<string, string>();
  private readonly sliceProblems = new Map<string, string>();
  /** The union of the ServiceCIDRs' ranges, remade when one changed: they are few. */
  private serviceCIDRs: ReadonlySet<string> = new Set();
  private serviceCIDRsChanged = false;
  /** Keys changed since the last state. */
  private pending = { services: new Set<string>(), slices: new Set<string>() };
  /** When the first of the pending changes arrived, for the network programming latency. */
  private changeSeenAt: number | undefined;
  private readonly reflectors: Reflector[];
  private readonly logger: Logger;
  private onState: ((state: SourceState) => void) | undefined;
  private synced = false;
  private readonly delivery: CoalescedTask;
  private readonly stopped: Promise<void>;
  private markStopped!: () => void;

  constructor(options: KubernetesSourceOptions) {
    this.logger = options.logger ?? pino({ enabled: false });
    this.delivery = new CoalescedTask(() => this.onState?.(this.state()), options.debounceMs);
    this.stopped = new Promise((resolve) => (this.markStopped = resolve));
    this.serviceObjects = new ValidatedObjects(parseService, (key) => {
      this.pending.services.add(key);
      this.schedule();
    });
    this.sliceObjects = new ValidatedObjects(parseEndpointSlice, (key) => {
      this.pending.slices.add(key);
      this.schedule();
    });
    this.serviceCIDRObjects = new ValidatedObjects(parseServiceCIDR, () => {
      this.serviceCIDRsChanged = true;
      this.schedule();
    });
    this.node = new NodeZone(options.nodeName, () => this.schedule());

    const client = new ApiClient(options.kubeConfig);
    const labelSelector = proxyLabelSelector(options.serviceProxyName);
    const reflector = (resource: Resource, store: ReflectorStore, selectors: { labelSelector?: string; fieldSelector?: string }) =>
      new Reflector({
        client,
        resource,
        store,
        logger: this.logger,
        retry: options.retry,
        watchTimeoutSeconds: options.watchTimeoutSeconds,
        ...selectors,
      });
    this.reflectors = [
      reflector(SERVICES, this.serviceObjects, { labelSelector }),
      reflector(ENDPOINT_SLICES, this.sliceObjects, { labelSelector }),
      // kube-proxy watches its own Node the same way: a list of one, by field selector.
      reflector(NODES, this.node, { fieldSelector: `metadata.name=${options.nodeName}` }),
      // All of them, as kube-proxy's ServiceCIDR informer: no proxy label applies to them.
      reflector(SERVICE_CIDRS, this.serviceCIDRObjects, {}),
    ];
  }

  /** Resolves once all four collections were listed and the first state delivered, or once stopped. */
  async start(onState: (state: SourceState) => void): Promise<void> {
    if (this.onState) throw new Error('KubernetesSource: start was called twice');
    this.onState = onState;
    for (const reflector of this.reflectors) reflector.start();
    const listed = Promise.all(this.reflectors.map((reflector) => reflector.listed)).then(() => true);
    if (!(await Promise.race([listed, this.stopped.then(() => false)]))) return;
    this.synced = true;
    const state = this.state();
    this.logger.info(
      { services: state.services.size, slices: state.slices.size, node: state.node, serviceCIDRs: [...this.serviceCIDRs] },
      'Kubernetes API: first lists complete',
    );
    onState(state);
  }

  async stop(): Promise<void> {
    this.markStopped();
    this.synced = false;
    this.delivery.cancel();
    await Promise.all(this.reflectors.map((reflector) => reflector.stop()));
  }

  private schedule(): void {
    if (!this.synced) return; // the first state is delivered by start(), whole
    this.changeSeenAt ??= Date.now();
    this.delivery.schedule();
  }

  /** The delivered state brought up to date with the keys changed since the last one. */
  private state(): SourceState {
    const changes = this.pending;
    this.pending = { services: new Set(), slices: new Set() };
    const { changeSeenAt } = this;
    this.changeSeenAt = undefined;
    for (const key of changes.services) {
      const entry = this.serviceObjects.entries.get(key);
      setOrDelete(this.serviceProblems, key, entry?.problem);
      setOrDelete(this.services, key, entry?.value);
      if (entry?.ignored) this.ignoredServices.add(key);
      else this.ignoredServices.delete(key);
    }
    for (const key of changes.slices) {
      const entry = this.sliceObjects.entries.get(key);
      setOrDelete(this.sliceProblems, key, entry?.problem);
      setOrDelete(this.slices, key, entry?.value);
    }
    if (this.serviceCIDRsChanged) {
      this.serviceCIDRsChanged = false;
      this.serviceCIDRs = new Set([...this.serviceCIDRObjects.entries.values()].flatMap((entry) => entry.value?.cidrs ?? []));
    }
    const problems: InputProblem[] = [
      ...[...this.serviceProblems].map(([key, reason]) => ({ source: SOURCE_NAME, object: `Service ${key}`, reason })),
      ...[...this.sliceProblems].map(([key, reason]) => ({ source: SOURCE_NAME, object: `EndpointSlice ${key}`, reason })),
      // Cluster-scoped: named without the namespace ("default") of their key.
      ...[...this.serviceCIDRObjects.entries].flatMap(([key, { problem }]) =>
        problem === undefined ? [] : [{ source: SOURCE_NAME, object: `ServiceCIDR ${key.slice(key.indexOf('/') + 1)}`, reason: problem }],
      ),
    ];
    const { name, zone, exists } = this.node;
    if (!exists)
      problems.push({
        source: SOURCE_NAME,
        object: `Node ${name}`,
        reason: 'does not exist: zone hints are not used; set --node-name to the name of the Node this agent runs on',
      });
    const { services, ignoredServices, slices, serviceCIDRs } = this;
    const node = zone === undefined ? { name } : { name, zone };
    return { services, ignoredServices, slices, serviceCIDRs, problems, changes, node, changeSeenAt };
  }
}

function setOrDelete<T>(map: Map<string, T>, key: string, value: T | undefined): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
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
