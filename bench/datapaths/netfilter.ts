// What the two kube-proxy-shaped datapaths share: a route for the service range in their own
// client namespace (never in the root namespace), and timed runs of their loaders there.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Lab, Sandbox } from '../../test/lab/lab.js';
import { SERVICE_CIDR } from '../catalog.js';

/** The lab's name for the namespace end of every veth. */
const CLIENT_INTERFACE = 'eth0';
/** iptables-restore and nft at 50000 Services take minutes on this kind of machine. */
const LOADER_TIMEOUT_MS = 30 * 60_000;

/**
 * DNAT in the OUTPUT hook happens after the routing decision, so a packet to a ClusterIP must be
 * routable before kube-proxy's rules can rewrite it, as on a node (which has a default route).
 * The route is on-link, in this client's namespace only: the other datapaths' clients still have
 * no route to the service range.
 */
export async function routeServiceRange(lab: Lab, client: Sandbox): Promise<void> {
  await lab.exec(client, ['ip', 'route', 'add', SERVICE_CIDR, 'dev', CLIENT_INTERFACE], { inCgroup: false });
}

/** Runs a loader in the client's namespace; resolves to its wall time in seconds. */
export async function timedLoad(lab: Lab, client: Sandbox, argv: string[]): Promise<number> {
  const started = performance.now();
  await lab.exec(client, argv, { inCgroup: false, timeoutMs: LOADER_TIMEOUT_MS });
  return (performance.now() - started) / 1000;
}

/** Writes a ruleset file under the work directory; resolves to its path. */
export async function writeRuleset(workdir: string, name: string, text: string): Promise<string> {
  const file = path.join(workdir, name);
  await writeFile(file, text);
  return file;
}
