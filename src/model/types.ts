// The pure model: what the sources (manifest files, the Kubernetes API) say,
// validated, and what the datapath must hold for it. Nothing here does I/O.

export type Protocol = 'TCP' | 'UDP';
export type IPFamily = 'IPv4' | 'IPv6';

/** Canonical text of an IP address: dotted quad, or RFC 5952 IPv6. */
export type IPAddress = string;

export interface ServicePort {
  /** '' for the single unnamed port a Service may have. */
  name: string;
  protocol: Protocol;
  port: number;
  /** Set on NodePort and LoadBalancer Services. */
  nodePort?: number;
}

export type TrafficPolicy = 'Cluster' | 'Local';

/** A v1 Service that socklb translates (ClusterIP-like: it has cluster IPs). */
export interface Service {
  namespace: string;
  name: string;
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  /** One address per family, in the order of spec.clusterIPs. */
  clusterIPs: IPAddress[];
  ports: ServicePort[];
  /** SCTP ports, which socket hooks cannot translate: reported, not served. */
  sctpPorts: readonly number[];
  /** spec.externalIPs, served only inside --allowed-external-ip-cidrs. */
  externalIPs: readonly IPAddress[];
  /** status.loadBalancer.ingress[].ip, whatever the type, as kube-proxy reads them. */
  loadBalancerIPs: readonly IPAddress[];
  /** ClientIP affinity's timeout; undefined for sessionAffinity None. */
  affinityTimeoutSeconds: number | undefined;
  internalTrafficPolicy: TrafficPolicy;
  /** The service.kubernetes.io/service-proxy-name label: another proxy's Service when set. */
  serviceProxyName: string | undefined;
  /** The service.kubernetes.io/headless label is present. */
  headlessLabel: boolean;
  /** Annotated socklb.io/skip "true": its frontends are kept, and calls to them left untranslated. */
  skip?: true;
  /**
   * metadata.creationTimestamp in ms since the epoch, which decides between two Services claiming
   * one frontend (claims.ts); undefined when the object has none (a hand-written manifest).
   */
  createdAt: number | undefined;
}

export interface EndpointPort {
  /** '' when unnamed; matches ServicePort.name. */
  name: string;
  protocol: Protocol;
  port: number;
}

export interface Endpoint {
  /** The first of the endpoint's addresses, as Kubernetes consumers use it. */
  address: IPAddress;
  /** conditions.ready, with an absent value meaning ready (as kube-proxy reads it). */
  ready: boolean;
  /** conditions.serving, absent meaning serving (as kube-proxy reads it). */
  serving: boolean;
  /** conditions.terminating, absent meaning false. */
  terminating: boolean;
  nodeName: string | undefined;
  /** hints.forZones; undefined when the endpoint has none. */
  zoneHints: string[] | undefined;
  /** hints.forNodes (trafficDistribution PreferSameNode); undefined when the endpoint has none. */
  nodeHints: string[] | undefined;
}

/** A discovery.k8s.io/v1 EndpointSlice of an IP address type. */
export interface EndpointSlice {
  namespace: string;
  name: string;
  /** From the kubernetes.io/service-name label. */
  serviceName: string;
  addressType: IPFamily;
  ports: EndpointPort[];
  endpoints: Endpoint[];
}

/** The identity of one frontend in the datapath: an address, a port, a protocol. */
export interface FrontendKey {
  address: IPAddress;
  port: number;
  protocol: Protocol;
}

export interface Backend {
  address: IPAddress;
  port: number;
}

/** Which Service port a frontend serves, for people reading the datapath. */
export interface ServicePortRef {
  namespace: string;
  name: string;
  portName: string;
}

/** What the datapath must hold for one frontend. */
export interface DesiredFrontend {
  key: FrontendKey;
  service: ServicePortRef;
  /** Empty: the frontend exists and refuses connections (unless `skip`). */
  backends: Backend[];
  /** Seconds a client keeps its backend (ClientIP affinity); 0 for none. */
  affinityTimeoutSeconds: number;
  /** Calls to it are left untranslated (socklb.io/skip): it has no backends, and refuses nothing. */
  skip?: true;
}

/** A networking.k8s.io/v1 ServiceCIDR: where the cluster allocates cluster IPs. */
export interface ServiceCIDR {
  name: string;
  /** spec.cidrs, canonical (canonicalCidr): one per family. */
  cidrs: readonly string[];
}

/**
 * The addresses that belong to the Services as a whole: a call to one of them that no frontend
 * serves is refused at once, as kube-proxy's cluster-ips-check chain rejects or drops it.
 */
export interface ServiceAddresses {
  /** The cluster IPs of the Services this proxy serves: refused on the ports they do not serve. */
  clusterIPs: ReadonlySet<IPAddress>;
  /** The service CIDRs, canonical (canonicalCidr): refused where no Service has an address. */
  serviceRanges: ReadonlySet<string>;
}

/**
 * Which of a Service's addresses a frontend is: decides who serves a frontend that several
 * Services claim (claims.ts).
 */
export type ClaimKind = 'cluster IP' | 'node port' | 'external IP' | 'load-balancer IP';

/** A frontend as one Service asks for it; it serves if that Service's claim wins. */
export interface ClaimedFrontend extends DesiredFrontend {
  claim: ClaimKind;
}

/** What the model needs to know of the node it runs on and of its flags. */
export interface NodeContext {
  /** For internalTrafficPolicy Local: endpoints whose nodeName is this are local. */
  name: string;
  /** topology.kubernetes.io/zone of this node, for topology hints. */
  zone: string | undefined;
  /** This node's addresses, where NodePorts are reachable from sandboxes. */
  addresses: IPAddress[];
  /** CIDRs inside which spec.externalIPs are translated (CVE-2020-8554). */
  allowedExternalIPCidrs: string[];
  /** This proxy's service-proxy-name: Services labelled with another name are not ours. */
  serviceProxyName: string | undefined;
}

/**
 * Something wrong with the input, reported and skipped: `source` names where
 * it came from (a file path, or "kubernetes"), `object` the object
 * ("Service default/web"), `reason` what is wrong and, where it helps, the fix.
 */
export interface InputProblem {
  source: string;
  object: string;
  reason: string;
}
