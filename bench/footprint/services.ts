// N Services for the footprint, as the agent gets them: from a manifest file, or from the API
// stand-in. Each has one port and two ready endpoints; the endpoints come from a pool of 60000 pod
// addresses, under the datapath's 65536 backends, so that 50000 Services fit the default map sizes.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ApiServer } from '../../test/fixtures/apiserver.js';
import { endpointSlice, service } from '../../test/integration/support.js';

const FIRST_CLUSTER_IP = ipv4Number('10.96.0.10');
const FIRST_POD_IP = ipv4Number('10.128.0.1');
const POD_POOL = 60_000;
/** 10.200.0.0/16, outside the pool: the addresses changeEndpoints gives. */
const CHANGED_POD_IPS = ipv4Number('10.200.0.0');
const ENDPOINTS_PER_SERVICE = 2;
const PORT = { name: 'http', port: 80, targetPort: 8080 };
const SLICE_PORT = { name: 'http', port: 8080 };

interface ServiceObjects {
  service: object;
  slice: object;
}

function* serviceObjects(count: number): Generator<ServiceObjects> {
  for (let i = 0; i < count; i++) {
    const name = `svc-${String(i).padStart(6, '0')}`;
    const pods = Array.from({ length: ENDPOINTS_PER_SERVICE }, (_, k) => ({
      ip: ipv4Text(FIRST_POD_IP + ((i * ENDPOINTS_PER_SERVICE + k) % POD_POOL)),
    }));
    yield {
      service: service(name, [ipv4Text(FIRST_CLUSTER_IP + i)], [PORT]),
      slice: endpointSlice(`${name}-1`, name, 'IPv4', [SLICE_PORT], pods),
    };
  }
}

/**
 * DIRECTORY/services.json: one `kubectl get -o json` List, which the manifest source parses with
 * JSON.parse (YAML at 50000 Services would measure the YAML parser, not the agent).
 */
export async function writeServicesFile(directory: string, count: number): Promise<void> {
  const items = [...serviceObjects(count)].flatMap(({ service, slice }) => [service, slice]);
  await writeFile(join(directory, 'services.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
}

/** Stores the Services in the stand-in, then forgets the history of their creation, as etcd compaction would. */
export function applyServices(server: ApiServer, count: number): void {
  for (const { service, slice } of serviceObjects(count)) {
    server.apply('services', service);
    server.apply('endpointslices', slice);
  }
  server.compact();
}

/**
 * One EndpointSlice change: the first Service's endpoints replaced by one pod address outside the
 * pool, a different one for each `change` (consecutive numbers never repeat an address).
 */
export function changeEndpoints(server: ApiServer, change: number): void {
  const name = 'svc-000000';
  server.apply(
    'endpointslices',
    endpointSlice(`${name}-1`, name, 'IPv4', [SLICE_PORT], [{ ip: ipv4Text(CHANGED_POD_IPS + (change % 65_536)) }]),
  );
}

function ipv4Number(text: string): number {
  return text.split('.').reduce((sum, octet) => sum * 256 + Number(octet), 0);
}

function ipv4Text(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}
