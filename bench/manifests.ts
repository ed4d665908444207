// The catalog as the manifest files socklb's agent reads: Services and EndpointSlices as
// `kubectl get -o json` prints them (a List), 1000 Services to a file, and bench-churn alone in a
// file of its own so that an endpoint change rewrites one small file, as one changed object would
// be in a cluster. JSON, because the agent parses JSON a hundred times faster than YAML.
import { renameSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { endpointSlice, manifestText, service, writeManifest } from '../test/integration/support.js';
import type { BenchService, Catalog } from './catalog.js';

const SERVICES_PER_FILE = 1000;

export async function writeCatalogManifests(directory: string, catalog: Catalog): Promise<void> {
  await mkdir(directory, { recursive: true });
  const others = catalog.services.filter((candidate) => candidate.name !== catalog.churn.name);
  for (let first = 0; first < others.length; first += SERVICES_PER_FILE) {
    const file = path.join(directory, `services-${String(first / SERVICES_PER_FILE).padStart(3, '0')}.json`);
    await writeManifest(file, others.slice(first, first + SERVICES_PER_FILE).flatMap(serviceDocuments));
  }
  await writeServiceManifest(directory, catalog.churn);
}

/** Writes (atomically, as editors do) the file that holds `benchService` alone. */
async function writeServiceManifest(directory: string, benchService: BenchService): Promise<void> {
  await writeManifest(serviceManifestPath(directory, benchService), serviceDocuments(benchService));
}

/**
 * Writes the file that holds `benchService` alone beside its place, and returns the rename that
 * puts it there: the moment the change exists, which an endpoint change's latency counts from.
 * Synchronous, so that the measuring process's own thread pool and event loop are not in it.
 */
export function stageServiceManifest(directory: string, benchService: BenchService): () => void {
  const file = serviceManifestPath(directory, benchService);
  writeFileSync(`${file}.tmp`, manifestText(file, serviceDocuments(benchService)));
  return () => renameSync(`${file}.tmp`, file);
}

function serviceManifestPath(directory: string, benchService: BenchService): string {
  return path.join(directory, `${benchService.name}.json`);
}

function serviceDocuments(benchService: BenchService): object[] {
  const ports = benchService.ports.map((port) => ({
    name: port.name,
    port: port.port,
    protocol: port.protocol,
    targetPort: port.targetPort,
  }));
  const slicePorts = benchService.ports.map((port) => ({ name: port.name, port: port.targetPort, protocol: port.protocol }));
  return [
    service(benchService.name, [benchService.clusterIP], ports),
    endpointSlice(
      `${benchService.name}-1`,
      benchService.name,
      'IPv4',
      slicePorts,
      benchService.endpoints.map((ip) => ({ ip })),
    ),
  ];
}
