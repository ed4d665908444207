// Runs a golden case (test/golden/README.md) through what `socklb run` runs,
// without privileges: the case's manifests as files in a directory watched by
// the manifest source, or as objects served by the Kubernetes API stand-in to
// the Kubernetes source (each chosen by chooseSource, as `socklb run` chooses
// it), the agent with its model and planner writing into in-memory maps, and
// at each expected section the maps decoded back into the table of
// `socklb services -o wide`.

import { mkdtemp, rm } from 'node:fs/promises';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { parseAllDocuments } from 'yaml';
import { Agent } from '../../src/agent/agent.js';
import { formatFrontendTable } from '../../src/cli/tables.js';
import { describeFrontends } from '../../src/datapath/dump.js';
import type { BpfMap, DatapathMaps } from '../../src/datapath/maps.js';
import { InstantReaderFence, memoryMaps } from '../../src/datapath/memory-maps.js';
import { DatapathState } from '../../src/datapath/state.js';
import { canonicalCidr, canonicalIP, parseCidr } from '../../src/model/ip.js';
import type { InputProblem, NodeContext } from '../../src/model/types.js';
import { chooseSource, type SourceFlags } from '../../src/sources/choose.js';
import type { SourceState } from '../../src/model/source-state.js';
import type { Source } from '../../src/sources/source.js';
import { ApiServer, type ResourceName } from '../fixtures/apiserver.js';
import type { Change, GoldenCase } from './golden-format.js';

export type SourceKind = 'manifests' | 'the Kubernetes API';
export const SOURCE_KINDS: readonly SourceKind[] = ['manifests', 'the Kubernetes API'];

/** How long a source may take to deliver what a step wrote. */
const SETTLE_TIMEOUT_MS = 5_000;

const logger = pino({ level: 'silent' });

/** The dump at each expected section of the case, in order. */
export async function runCase(golden: GoldenCase, kind: SourceKind): Promise<string[]> {
  const flags = parseFlags(golden.flags);
  const input = kind === 'manifests' ? await manifestInput() : await apiInput(flags);
  try {
    const sourceFlags: SourceFlags = { ...input.sourceFlags, nodeName: flags.nodeName, serviceProxyName: flags.serviceProxyName };
    const { source } = await chooseSource(sourceFlags, logger);
    const observed = new ObservedSource(source);
    const maps = memoryMaps();
    const agent = new Agent({
      source: observed,
      maps,
      readers: new InstantReaderFence(),
      logger,
      node: { ...flags.node, zone: input.zoneFromFlags ? flags.node.zone : undefined },
      serviceRanges: flags.serviceRanges,
    });
    await agent.start();
    try {
      const printed: string[] = [];
      let changes: Change[] = [];
      for (const step of golden.steps) {
        if (step.kind !== 'expect') {
          changes.push(step);
          continue;
        }
        input.apply(changes);
        changes = [];
        await observed.until(await readOnce(sourceFlags));
        printed.push(dump(maps, agent.problems()));
      }
      return printed;
    } finally {
      await agent.stop();
    }
  } finally {
    await input.close();
  }
}

/**
 * The maps as `socklb services -o wide` prints them, then how many entries each map the agent
 * writes holds (so that what no frontend names any more shows), then the agent's problems.
 */
function dump(maps: DatapathMaps, problems: readonly InputProblem[]): string {
  const count = (map: BpfMap) => [...map.entries()].length;
  const lines = [
    formatFrontendTable(describeFrontends(DatapathState.read(maps)), true),
    `maps: frontends ${count(maps.frontends)}, slots ${count(maps.slots)}, backends ${count(maps.backends)}, ` +
      `service names ${count(maps.serviceNames)}, cluster IPs ${count(maps.clusterIPs)}, service CIDRs ${count(maps.serviceRanges)}`,
    // Without their source (a path, 'kubernetes' or 'model'): both sources must agree.
    ...problems.map((problem) => `problem: ${problem.object}: ${problem.reason}`).sort(),
  ];
  return `${lines.join('\n')}\n`;
}

// ---- The agent's flags ----

interface CaseFlags {
  nodeName: string;
  serviceProxyName: string | undefined;
  node: NodeContext;
  /** --service-cluster-ip-range, canonical. */
  serviceRanges: string[];
}

/** `socklb run`'s flags that say what the model needs to know of the node and of the service range; --node-name defaults to node-1. */
function parseFlags(args: string[]): CaseFlags {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      'node-name': { type: 'string', default: 'node-1' },
      'node-zone': { type: 'string' },
      'node-ip': { type: 'string', multiple: true, default: [] },
      'allowed-external-ip-cidrs': { type: 'string', default: '' },
      'service-proxy-name': { type: 'string' },
      'service-cluster-ip-range': { type: 'string', default: '' },
    },
  });
  const addresses = values['node-ip'].map((text) => canonicalIP(text) ?? invalidFlag('--node-ip', text, 'an IP address'));
  const cidrs = values['allowed-external-ip-cidrs'].split(',').filter((text) => text !== '');
  for (const cidr of cidrs) if (parseCidr(cidr) === undefined) invalidFlag('--allowed-external-ip-cidrs', cidr, 'a CIDR');
  const serviceRanges = values['service-cluster-ip-range']
    .split(',')
    .filter((text) => text !== '')
    .map((text) => canonicalCidr(text) ?? invalidFlag('--service-cluster-ip-range', text, 'a CIDR'));
  const nodeName = values['node-name'];
  const serviceProxyName = values['service-proxy-name'];
  return {
    nodeName,
    serviceProxyName,
    node: { name: nodeName, zone: values['node-zone'], addresses, allowedExternalIPCidrs: cidrs, serviceProxyName },
    serviceRanges,
  };
}

function invalidFlag(flag: string, value: string, what: string): never {
  throw new Error(`flags: ${flag} ${value}: not ${what}`);
}

// ---- Where a case's manifests go ----

interface CaseInput {
  /** For chooseSource: --manifests or --kubeconfig. */
  sourceFlags: Pick<SourceFlags, 'manifests' | 'kubeconfig'>;
  /** The agent takes this node's zone from --node-zone; else from the Node object, as with the API. */
  zoneFromFlags: boolean;
  /** Makes the writes and deletions of one step, all of them before the source can look. */
  apply(changes: readonly Change[]): void;
  close(): Promise<void>;
}

/** A manifest directory: each file section is a file in it. */
async function manifestInput(): Promise<CaseInput> {
  const directory = await mkdtemp(join(tmpdir(), 'socklb-golden-'));
  return {
    sourceFlags: { manifests: directory },
    zoneFromFlags: true,
    // Synchronous: the source's scan, which runs on this thread, sees all of a step or none of it.
    apply(changes) {
      for (const change of changes) {
        if (change.kind === 'write') writeFileSync(join(directory, change.file), change.text);
        else rmSync(join(directory, change.file));
      }
    },
    close: () => rm(directory, { recursive: true, force: true }),
  };
}

const RESOURCES: Record<string, ResourceName> = { Service: 'services', EndpointSlice: 'endpointslices' };

interface ObjectName {
  resource: ResourceName;
  namespace: string;
  name: string;
}

/**
 * The API stand-in: each file section is applied as `kubectl apply -f` would, and a later version
 * of the file, or its deletion, deletes the objects it no longer holds. This node is a Node
 * object, with --node-zone as its topology.kubernetes.io/zone label.
 */
async function apiInput(flags: CaseFlags): Promise<CaseInput> {
  const server = await ApiServer.start();
  const zone = flags.node.zone;
  server.apply('nodes', { metadata: { name: flags.nodeName, labels: zone === undefined ? {} : { 'topology.kubernetes.io/zone': zone } } });
  const objectsByFile = new Map<string, ObjectName[]>();
  return {
    sourceFlags: { kubeconfig: server.kubeconfigPath },
    zoneFromFlags: false,
    apply(changes) {
      for (const change of changes) {
        const objects = change.kind === 'write' ? documentsOf(change.file, change.text) : [];
        const names = objects.map((object) => object.name);
        const kept = (old: ObjectName) =>
          names.some((name) => name.resource === old.resource && name.namespace === old.namespace && name.name === old.name);
        for (const old of objectsByFile.get(change.file) ?? []) if (!kept(old)) server.delete(old.resource, old.name, old.namespace);
        for (const { name, document } of objects) server.apply(name.resource, document);
        objectsByFile.set(change.file, names);
      }
    },
    close: () => server.close(),
  };
}

function documentsOf(file: string, text: string): { name: ObjectName; document: { metadata: { name: string; namespace?: string } } }[] {
  return parseAllDocuments(text).flatMap((parsed, i) => {
    if (parsed.errors.length > 0) throw new Error(`${file}: document ${i + 1}: ${parsed.errors[0]?.message}`);
    const document = parsed.toJS() as { kind?: string; metadata?: { name?: string; namespace?: string } } | null;
    if (document === null) return [];
    const resource = RESOURCES[document.kind ?? ''];
    const name = document.metadata?.name;
    if (resource === undefined || name === undefined)
      throw new Error(`${file}: document ${i + 1}: the API stand-in takes Services and EndpointSlices with a metadata.name`);
    const metadata = { ...document.metadata, name };
    return [{ name: { resource, namespace: metadata.namespace ?? 'default', name }, document: { ...document, metadata } }];
  });
}

// ---- When the agent has taken a step in ----

/** What a state says, in an order that does not depend on the order the source learnt it in. */
function stateText(state: SourceState): string {
  const sorted = (map: ReadonlyMap<string, unknown>) => [...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const problems = state.problems.map((problem) => JSON.stringify(problem)).sort();
  return JSON.stringify({
    services: sorted(state.services),
    slices: sorted(state.slices),
    problems,
    node: state.node,
    complete: state.complete ?? true,
  });
}

/** The first state a new source of the same input delivers: what the running one must come to. */
async function readOnce(flags: SourceFlags): Promise<string> {
  const { source } = await chooseSource(flags, logger);
  let first: string | undefined;
  await source.start((state) => (first ??= stateText(state)));
  await source.stop();
  if (first === undefined) throw new Error(`a new source of ${JSON.stringify(flags)} delivered no state`);
  return first;
}

/** Passes the source's states on to the agent, and remembers the last one the agent has taken in. */
class ObservedSource implements Source {
  private lastTakenIn: string | undefined;

  constructor(private readonly inner: Source) {}

  start(onState: (state: SourceState) => void): Promise<void> {
    return this.inner.start((state) => {
      // The agent handles a state synchronously: once it returns, the maps hold it.
      onState(state);
      this.lastTakenIn = stateText(state);
    });
  }

  stop(): Promise<void> {
    return this.inner.stop();
  }

  /** Resolves once the agent has taken in a state that says `expected`. */
  async until(expected: string): Promise<void> {
    const deadline = performance.now() + SETTLE_TIMEOUT_MS;
    while (this.lastTakenIn !== expected) {
      if (performance.now() > deadline)
        throw new Error(`the source did not deliver the step's input within ${SETTLE_TIMEOUT_MS} ms: ${expected}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}
